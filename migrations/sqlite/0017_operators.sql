-- Operators: the people who use the admin console, each with one role (owner, admin,
-- editor, viewer; docs/console.md lists each role's API scopes). Email is stored folded
-- (trimmed, lowercased) and unique. A disabled operator keeps their rows for the audit
-- trail and can no longer sign in; their sessions are ended at once.
CREATE TABLE operators (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    invited_by    TEXT NOT NULL,
    disabled_at   BIGINT,
    -- TOTP second factor (RFC 6238): the confirmed secret, one being set up, and the last
    -- time step a code was accepted for (a code is good once).
    totp_secret   TEXT,
    totp_pending  TEXT,
    totp_step     BIGINT NOT NULL DEFAULT 0
);
-- One-time invitations: the link carries the token, the table only its SHA-256. The first
-- owner's invitation is made by `verge dev` / `verge operators invite` (created_by 'system'
-- or 'cli').
CREATE TABLE operator_invitations (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT,
    accepted_by TEXT
);
-- Console sessions: the cookie carries the token, the table its SHA-256 and the session's
-- CSRF token, which every form and mutating request must echo.
CREATE TABLE operator_sessions (
    token_hash   TEXT PRIMARY KEY,
    operator_id  TEXT NOT NULL REFERENCES operators (id),
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX operator_sessions_by_operator ON operator_sessions (operator_id);
