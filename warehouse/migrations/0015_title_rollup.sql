-- The daily rollup by title (issue 24): per user, day, device, app, site and window title, the totals of that day as
-- recomputed from the raw intervals by the writer after every insert (warehouse/rollups.py), as usage_by_hour is.
-- It takes the place of usage_by_day, which no query read (dropped below: its rows beyond the raw intervals' retention
-- answered nothing): the questions about titles (top titles, categories by a title rule) read whole days here and only
-- the part-days at a period's edges from the raw intervals, instead of scanning every raw interval of the period.
-- `version` is the number of the device's raw intervals that overlap the day, as in 0004.
CREATE TABLE IF NOT EXISTS usage_by_title_day
(
    user_id    LowCardinality(String),
    day        Date,
    device_id  LowCardinality(String),
    app        LowCardinality(String),
    site       LowCardinality(String),
    title      String CODEC(ZSTD(3)),
    active_ms  UInt64 CODEC(T64, ZSTD(1)),
    idle_ms    UInt64 CODEC(T64, ZSTD(1)),
    keystrokes UInt64 CODEC(T64, ZSTD(1)),
    clicks     UInt64 CODEC(T64, ZSTD(1)),
    version    UInt64 CODEC(T64, ZSTD(1))
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (user_id, day, device_id, app, site, title);

-- The days the raw intervals hold, rolled up once (the same arithmetic as warehouse/rollups.py `_totals`). Run
-- again after stopping half-way, it writes the same rows at the same versions, which the engine collapses.
INSERT INTO usage_by_title_day (user_id, day, device_id, app, site, title, active_ms, idle_ms, keystrokes, clicks, version)
SELECT user_id, day, device_id, app, site, title, active_ms, idle_ms, keystrokes, clicks,
       sum(n) OVER (PARTITION BY user_id, device_id, day) AS version
FROM
(
    SELECT user_id, CAST(toDateTime(span_start, 'UTC') AS Date) AS day, device_id, app, site, title,
           sumIf(part_ms, NOT idle) AS active_ms, sumIf(part_ms, idle) AS idle_ms,
           toUInt64(sumIf(keystrokes, first_span)) AS keystrokes, toUInt64(sumIf(clicks, first_span)) AS clicks,
           count() AS n
    FROM (
        SELECT user_id, device_id, app, site, title, idle, keystrokes, clicks,
               toUnixTimestamp64Milli(start) AS s_ms, toUnixTimestamp64Milli(`end`) AS e_ms,
               intDiv(s_ms, 86400000) * 86400 AS first_start,
               greatest(first_start, intDiv(greatest(e_ms, s_ms + 1) - 1, 86400000) * 86400) AS last_start,
               arrayJoin(range(toUInt32(first_start), toUInt32(last_start) + 1, 86400)) AS span_start,
               toUInt64(greatest(0, least(e_ms, (span_start + 86400) * 1000) - greatest(s_ms, span_start * 1000)))
                   AS part_ms,
               span_start = first_start AS first_span
        FROM intervals FINAL)
    GROUP BY user_id, day, device_id, app, site, title
);

DROP TABLE IF EXISTS usage_by_day
