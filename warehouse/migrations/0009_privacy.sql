-- An account's privacy choices (schemas/privacy_rules.py, docs/privacy-rules.md): how window titles are kept
-- (off, scrubbed, full) and its exclusion rules. Written by the gateway when a person edits them in the dashboard;
-- read by the gateway for the account's devices, which apply them before anything touches disk, and by the
-- workers, which apply them again. Latest version wins; a removed rule is a version with deleted = true.
CREATE TABLE IF NOT EXISTS privacy_rules
(
    user_id    String,
    rule_id    UUID,
    target     LowCardinality(String),
    pattern    String,
    action     LowCardinality(String),
    deleted    Bool,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (user_id, rule_id);

CREATE TABLE IF NOT EXISTS privacy_settings
(
    user_id    String,
    title_mode LowCardinality(String),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY user_id;
