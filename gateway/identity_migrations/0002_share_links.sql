-- Read-only share links: a signed token (scope "share") names its row here by its id, so the owner can list
-- and revoke links, and the gateway refuses a revoked, expired or orphaned one on every view.
-- The token itself is not stored: a copy of this file opens no link.
CREATE TABLE share_links (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    view         TEXT NOT NULL,
    period_start REAL NOT NULL,
    period_end   REAL NOT NULL,
    tz           TEXT NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    revoked_at   REAL
) WITHOUT ROWID;
CREATE INDEX share_links_by_user ON share_links (user_id);
