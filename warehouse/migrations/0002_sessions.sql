-- App sessions and focus sessions as the stream jobs cut them (DESIGN.md, "Sessions").
-- An open session is rewritten as it grows: each write is a new version of the same row
-- (ReplacingMergeTree keyed by the session, `version` = the device_seq that produced the write),
-- so a query with FINAL sees the latest version, and a redelivered write is a no-op.
CREATE TABLE IF NOT EXISTS app_sessions
(
    user_id     LowCardinality(String),
    device_id   LowCardinality(String),
    session_id  String,
    app         LowCardinality(String),
    site        LowCardinality(String),
    start       DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    `end`       DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    active_ms   UInt64 CODEC(T64, ZSTD(1)),
    keystrokes  UInt64 CODEC(T64, ZSTD(1)),
    clicks      UInt64 CODEC(T64, ZSTD(1)),
    intervals   UInt32 CODEC(T64, ZSTD(1)),
    closed      Bool,
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(start)
ORDER BY (user_id, device_id, start, session_id);

CREATE TABLE IF NOT EXISTS focus_sessions
(
    user_id          LowCardinality(String),
    device_id        LowCardinality(String),
    session_id       String,
    start            DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    `end`            DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    active_ms        UInt64 CODEC(T64, ZSTD(1)),
    context_switches UInt32 CODEC(T64, ZSTD(1)),
    app_sessions     UInt32 CODEC(T64, ZSTD(1)),
    keystrokes       UInt64 CODEC(T64, ZSTD(1)),
    clicks           UInt64 CODEC(T64, ZSTD(1)),
    closed           Bool,
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(start)
ORDER BY (user_id, device_id, start, session_id)
