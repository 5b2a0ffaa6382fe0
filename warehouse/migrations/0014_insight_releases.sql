-- Insights across people as released (warehouse/insight_rules.py, docs/insights.md): one row per figure and week,
-- written once and never changed. The figures anyone sees are these rows, noise included, so asking again spends
-- nothing; the privacy budget spent per week is the sum of their epsilon and delta. They describe no one: no user
-- id, no exact count, no exact share. Should two releases of a figure ever be stored (two releasers at once), the
-- first is the one shown and both are counted as spent.
CREATE TABLE IF NOT EXISTS insight_releases
(
    week            Date,
    figure          LowCardinality(String),
    released_at     DateTime64(3, 'UTC'),
    shown           Bool,
    shares          Array(Float64),
    people          UInt32,
    epsilon         Float64,
    delta           Float64,
    mechanism       LowCardinality(String),
    share_scale     Float64,
    count_scale     Float64,
    k               UInt32,
    min_active_days UInt8
)
ENGINE = MergeTree
ORDER BY (week, figure, released_at);
