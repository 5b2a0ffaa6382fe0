-- Rollups that can never drift from the raw intervals (docs/design.md, "Delivery"). The materialized views of
-- 0003 added every inserted block to SummingMergeTree rows: a redelivered batch counted twice and a server
-- killed between an insert and its views lost rows for good. These tables instead hold, per user, device,
-- app and site, the totals of one hour (one day) as recomputed from the raw intervals by the writer after
-- every insert (warehouse/rollups.py). `version` is the number of the device's raw intervals that overlap
-- that hour (day): it only grows as intervals arrive, so the rebuild that saw the most rows wins, and
-- rebuilding the same hour again, from any worker, at any time, changes nothing.
CREATE TABLE IF NOT EXISTS usage_by_hour
(
    user_id    LowCardinality(String),
    hour       DateTime('UTC'),
    device_id  LowCardinality(String),
    app        LowCardinality(String),
    site       LowCardinality(String),
    active_ms  UInt64,
    idle_ms    UInt64,
    keystrokes UInt64,
    clicks     UInt64,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (user_id, hour, device_id, app, site);

CREATE TABLE IF NOT EXISTS usage_by_day
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
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (user_id, day, device_id, app, site);

-- What the old rollups hold moves over at version 0 (they may cover hours whose raw intervals retention
-- already removed); any rebuild from raw supersedes it. Repeating these copies inserts the same keys at the
-- same version, which the engine collapses: the migration can be run again after stopping half-way.
INSERT INTO usage_by_hour (user_id, hour, device_id, app, site, active_ms, idle_ms, keystrokes, clicks, version)
SELECT user_id, hour, device_id, app, site, sum(active_ms), sum(idle_ms), sum(keystrokes), sum(clicks), 0
FROM usage_hourly
GROUP BY user_id, hour, device_id, app, site;

INSERT INTO usage_by_day (user_id, day, device_id, app, site, active_ms, idle_ms, keystrokes, clicks, version)
SELECT user_id, day, device_id, app, site, sum(active_ms), sum(idle_ms), sum(keystrokes), sum(clicks), 0
FROM usage_daily
GROUP BY user_id, day, device_id, app, site;

DROP VIEW IF EXISTS usage_daily_mv;

DROP VIEW IF EXISTS usage_hourly_mv;

-- Per device, the sessionizer's state after the last interval it processed (stream_jobs/sessionize.py,
-- DeviceState as JSON): kept in the warehouse, beside the rows it produced, instead of in a broker changelog,
-- so a restarted or newly joined worker, or one facing a broker that lost its data, reads it in one query.
-- The latest `last_seq` wins; deleting a device's or an account's data deletes its state with the rest.
CREATE TABLE IF NOT EXISTS device_state
(
    user_id    LowCardinality(String),
    device_id  String,
    last_seq   UInt64,
    state      String CODEC(ZSTD(1)),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(last_seq)
ORDER BY (user_id, device_id)
