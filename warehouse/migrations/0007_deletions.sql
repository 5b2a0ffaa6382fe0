-- What was deleted: one row per deletion a person asked for (schemas/deletions.py). Every writer applies these
-- right before it inserts and to the state it keeps, so nothing a deletion covered is ever stored again: not an
-- interval in flight when it ran, not a redelivery, not a replay by a new consumer group, not a re-driven dead
-- letter (docs/design.md, "Delete means gone"). Opaque ids and times only, never content; kept for good, even
-- after the account is gone, because the broker may still hold that account's records.
CREATE TABLE IF NOT EXISTS deletions
(
    deletion_id UUID,
    user_id     String,
    device_id   String,
    kind        LowCardinality(String),
    start       DateTime64(3, 'UTC'),
    `end`       DateTime64(3, 'UTC'),
    deleted_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(deleted_at)
ORDER BY (user_id, deletion_id)
