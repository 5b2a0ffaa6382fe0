-- A person's goals (warehouse/goal_rules.py, docs/dashboard.md "Goals"): limiting or aspiring minutes per day or
-- week on an app, a site, a category or all activity. Written by the gateway when a person edits them in the
-- dashboard, read by the dashboard. Latest version wins; a removed goal is a version with deleted = true.
CREATE TABLE IF NOT EXISTS goals
(
    user_id    String,
    goal_id    UUID,
    kind       LowCardinality(String),
    target     String,
    direction  LowCardinality(String),
    period     LowCardinality(String),
    minutes    UInt32,
    weekdays   Array(UInt8),
    devices    Array(String),
    deleted    Bool,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (user_id, goal_id);
