-- The identity store's first schema: accounts, their devices, revoked tokens, one-time codes, sign-up policy.
-- Times are Unix seconds (REAL) from the store's clock; tokens_valid_after is whole seconds, like a JWT's iat.

-- WITHOUT ROWID: users and devices are looked up by their uuid on every ingest batch; clustering the table
-- on that key makes device_is_active two B-tree searches instead of four.
CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash      TEXT NOT NULL,
    created_at         REAL NOT NULL,
    disabled_at        REAL,
    is_admin           INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    -- A token whose iat is earlier than this is revoked: set on password change, reset and disable.
    tokens_valid_after INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE devices (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    os             TEXT NOT NULL DEFAULT '',
    os_version     TEXT NOT NULL DEFAULT '',
    created_at     REAL NOT NULL,
    revoked_at     REAL,
    -- Hex: X.509 serials are up to 159 bits, beyond SQLite's 64-bit integers.
    cert_serial    TEXT NOT NULL,
    cert_not_after REAL NOT NULL,
    renewed_at     REAL
) WITHOUT ROWID;
CREATE INDEX devices_by_user ON devices (user_id);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);

-- Only a SHA-256 of each code is kept: a copy of this file does not let anyone enroll a device.
CREATE TABLE enrollment_codes (
    code_hash  TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at    REAL
);
CREATE INDEX enrollment_codes_by_user ON enrollment_codes (user_id);
CREATE INDEX enrollment_codes_by_expiry ON enrollment_codes (expires_at);

CREATE TABLE invites (
    code_hash  TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at    REAL,
    used_by    TEXT REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX invites_by_user ON invites (used_by);

-- key is 'addr:<client address>' or 'email-addr:<normalised email> <client address>' (identity_store.failure_keys;
-- versions before that wrote 'email:<normalised email>'); rows older than the throttle window are purged.
CREATE TABLE login_failures (
    key TEXT NOT NULL,
    at  REAL NOT NULL
);
CREATE INDEX login_failures_by_key ON login_failures (key, at);
CREATE INDEX login_failures_by_time ON login_failures (at);

-- One row: the instance's settings.
CREATE TABLE instance (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    signup_mode TEXT NOT NULL CHECK (signup_mode IN ('open', 'invite', 'closed'))
);
-- Open by default: the local all-in-one stack's first user signs up from the dashboard, and an account
-- only ever sees its own data. An operator exposing the gateway switches to invite or closed.
INSERT INTO instance (id, signup_mode) VALUES (1, 'open');
