-- Goal notices (warehouse/notice_rules.py, docs/dashboard.md "Notices"). Off by default: a person switches a goal's
-- channel on (notice_switches) and may pause every channel of the account (notice_accounts, which also holds the
-- time zone the account's goal periods fall in). goal_notices holds at most one row per goal, threshold, period
-- and channel (its notice_id is derived from those), written by the gateway when it finds a limit crossed, and
-- rewritten once when it is sent or dropped: its version is its stage (0 waiting, 1 done), so a late copy of the
-- waiting row can never bring a sent notice back. The switches: latest version wins.
CREATE TABLE IF NOT EXISTS notice_switches
(
    user_id    String,
    goal_id    UUID,
    channel    LowCardinality(String),
    enabled    Bool,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (user_id, goal_id, channel);

CREATE TABLE IF NOT EXISTS notice_accounts
(
    user_id    String,
    paused     Bool,
    tz         String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY user_id;

CREATE TABLE IF NOT EXISTS goal_notices
(
    user_id      String,
    notice_id    UUID,
    goal_id      UUID,
    period_start Date,
    threshold    UInt8,
    channel      LowCardinality(String),
    state        LowCardinality(String),
    stage        UInt8,
    summary      String,
    body         String,
    created_at   DateTime64(3, 'UTC'),
    updated_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(stage)
ORDER BY (user_id, notice_id);
