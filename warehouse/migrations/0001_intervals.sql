-- Raw activity intervals, one row per interval a collector reported, identity stamped by the gateway.
-- The sorting key holds event_id, so a redelivered interval (same event, same start) replaces its
-- earlier copy instead of counting twice; queries read with FINAL until the merge has happened.
CREATE TABLE IF NOT EXISTS intervals
(
    user_id     LowCardinality(String),
    device_id   LowCardinality(String),
    event_id    UUID,
    device_seq  UInt64,
    start       DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    `end`       DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    app         LowCardinality(String),
    title       String CODEC(ZSTD(3)),
    site        LowCardinality(String),
    keystrokes  UInt32 CODEC(T64, ZSTD(1)),
    clicks      UInt32 CODEC(T64, ZSTD(1)),
    idle        Bool,
    received_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(start)
ORDER BY (user_id, start, device_id, event_id)
