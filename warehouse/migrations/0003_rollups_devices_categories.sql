-- Rollups of the intervals, kept by materialized views as intervals are inserted. They are exact because
-- the stream worker never inserts an interval twice (it skips device_seq values the warehouse or its own
-- state already holds, and retries an insert with the same deduplication token), and the window below
-- (on the rollups too) makes a repeated insert block a no-op for the views as well.
ALTER TABLE intervals MODIFY SETTING non_replicated_deduplication_window = 1000;

-- Per user, day (UTC), device, app and site.
CREATE TABLE IF NOT EXISTS usage_daily
(
    user_id    LowCardinality(String),
    day        Date,
    device_id  LowCardinality(String),
    app        LowCardinality(String),
    site       LowCardinality(String),
    active_ms  UInt64,
    idle_ms    UInt64,
    keystrokes UInt64,
    clicks     UInt64,
    intervals  UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (user_id, day, device_id, app, site)
SETTINGS non_replicated_deduplication_window = 1000;

-- Per user, hour (UTC), device, app and site: the heatmap and intensity read this. An interval that
-- crosses an hour is split at the hour; its keys and clicks count in the hour it started.
CREATE TABLE IF NOT EXISTS usage_hourly
(
    user_id    LowCardinality(String),
    hour       DateTime('UTC'),
    device_id  LowCardinality(String),
    app        LowCardinality(String),
    site       LowCardinality(String),
    active_ms  UInt64,
    idle_ms    UInt64,
    keystrokes UInt64,
    clicks     UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (user_id, hour, device_id, app, site)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv TO usage_hourly AS
SELECT
    user_id,
    toDateTime(hour_start, 'UTC') AS hour,
    device_id,
    app,
    site,
    sumIf(part_ms, NOT idle) AS active_ms,
    sumIf(part_ms, idle) AS idle_ms,
    sumIf(keystrokes, first_hour) AS keystrokes,
    sumIf(clicks, first_hour) AS clicks
FROM
(
    SELECT
        user_id, device_id, app, site, idle, keystrokes, clicks,
        arrayJoin(range(
            toUInt32(toStartOfHour(start)),
            toUInt32(greatest(toStartOfHour(start), toStartOfHour(`end` - toIntervalMillisecond(1)))) + 1,
            3600)) AS hour_start,
        toUInt64(greatest(0, dateDiff('millisecond',
            greatest(start, toDateTime64(hour_start, 3, 'UTC')),
            least(`end`, toDateTime64(hour_start + 3600, 3, 'UTC'))))) AS part_ms,
        hour_start = toUInt32(toStartOfHour(start)) AS first_hour
    FROM intervals
)
GROUP BY user_id, hour, device_id, app, site;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_mv TO usage_daily AS
SELECT
    user_id,
    toDate(hour) AS day,
    device_id,
    app,
    site,
    sum(active_ms) AS active_ms,
    sum(idle_ms) AS idle_ms,
    sum(keystrokes) AS keystrokes,
    sum(clicks) AS clicks,
    toUInt64(0) AS intervals
FROM usage_hourly
GROUP BY user_id, day, device_id, app, site;

-- Devices as the gateway knows them, for names in per-device views (the identity store is the source).
CREATE TABLE IF NOT EXISTS devices
(
    user_id    LowCardinality(String),
    device_id  String,
    name       String,
    os         LowCardinality(String),
    os_version LowCardinality(String),
    revoked    Bool,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (user_id, device_id);

-- Per-user category rules: a regular expression (RE2) on app, title or site gives a category path such as
-- Work/Programming. They are applied at query time, so editing a rule relabels all of history.
CREATE TABLE IF NOT EXISTS category_rules
(
    user_id    LowCardinality(String),
    rule_id    UUID,
    position   UInt32,
    field      Enum8('app' = 1, 'title' = 2, 'site' = 3),
    pattern    String,
    category   String,
    deleted    Bool,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (user_id, rule_id)
