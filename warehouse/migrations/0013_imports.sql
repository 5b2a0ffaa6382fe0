-- Imported activity (docs/activitywatch.md). An import is a stream of its own, stamped with a device id the gateway
-- derives from the account, the device the data describes, the ActivityWatch host and the source kind: it has its
-- own device_seq, numbered by the gateway, so it never mixes with a collector's. A stream's row is written before
-- any record of it reaches the broker, so a worker that finds no row for a device knows it is a collector.
-- `live_device` is the enrolled device whose time the stream describes ('' for none): imported window time is
-- cut where that device recorded, so nothing counts twice, and deleting that device's data deletes the stream's.
CREATE TABLE IF NOT EXISTS import_streams
(
    user_id     LowCardinality(String),
    device_id   String,
    live_device String,
    host        String,
    source      LowCardinality(String),
    created_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY (user_id, device_id);

-- Intervals of a source kind other than the window in front (an editor's project, a terminal, media playing):
-- kept apart from `intervals`, so they never add to the time in front, its rollups or its sessions. Keyed like
-- `intervals`: a redelivered one replaces its copy.
CREATE TABLE IF NOT EXISTS source_intervals
(
    user_id     LowCardinality(String),
    device_id   LowCardinality(String),
    source      LowCardinality(String),
    event_id    UUID,
    device_seq  UInt64,
    start       DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    `end`       DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    app         LowCardinality(String),
    title       String CODEC(ZSTD(3)),
    site        LowCardinality(String),
    received_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(start)
ORDER BY (user_id, start, device_id, event_id);
