-- Intervals the worker refused after the gateway had taken them: one that breaks the contract (a record that
-- reached the topic without passing the gateway), a second interval under an event_id the device already
-- stored, or one the warehouse itself refused. Ids and the reason only, never content: the gateway reads it
-- to answer the device with the reason instead of waiting for a row that will never come. Kept 30 days, and
-- deleted with the device's or the account's data.
CREATE TABLE IF NOT EXISTS refused_intervals
(
    user_id    LowCardinality(String),
    device_id  String,
    device_seq UInt64,
    event_id   String,
    reason     String,
    refused_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(refused_at)
ORDER BY (user_id, device_id, device_seq)
TTL toDateTime(refused_at) + INTERVAL 30 DAY
