-- The opt-in weekly summary e-mail (docs/dashboard.md "Notices"), switched on per account; latest version wins.
-- `since` is when it was last switched on: a summary covers only weeks that end after it, so switching it on
-- mid-week never brings a summary of the week before. A summary sent is a goal_notices row of the nil goal
-- (warehouse/notice_rules.py WEEKLY_GOAL_ID): at most one per week, ever. A table of its own rather than columns
-- added to notice_accounts: a new table is the same statement on one server and on a cluster.
CREATE TABLE IF NOT EXISTS notice_weekly
(
    user_id    String,
    enabled    Bool,
    since      DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY user_id;
