-- Customers: end users of a project, who sign in at the core and carry PASETO access
-- tokens to the edge. `email_folded` is the case-folded address that makes an account
-- unique per project; `customer_terms` holds each customer's searchable words
-- (case-folded, diacritics folded) so a prefix search is one index range scan; on
-- PostgreSQL they use the C collation, so a range of bytes is a range of prefixes.
CREATE TABLE customers (
    id                 TEXT PRIMARY KEY,
    project            TEXT NOT NULL,
    email              TEXT NOT NULL,
    email_folded       TEXT COLLATE "C" NOT NULL,
    name               TEXT,
    phone              TEXT,
    metadata           TEXT NOT NULL,
    password_hash      TEXT,
    email_verified_at  BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    UNIQUE (project, email_folded)
);
CREATE INDEX customers_by_project ON customers (project, id);

CREATE TABLE customer_terms (
    project      TEXT NOT NULL,
    term         TEXT COLLATE "C" NOT NULL,
    customer_id  TEXT NOT NULL,
    PRIMARY KEY (project, term, customer_id)
);
CREATE INDEX customer_terms_by_customer ON customer_terms (customer_id);

-- One row per sign-in: the refresh token family. Only the SHA-256 of the current refresh
-- token is kept; the hashes it replaced stay in `customer_refresh_used`, so presenting one
-- again is recognised as reuse and ends the family.
CREATE TABLE customer_sessions (
    id                TEXT PRIMARY KEY,
    project           TEXT NOT NULL,
    customer_id       TEXT NOT NULL,
    refresh_hash      TEXT NOT NULL UNIQUE,
    remember          INTEGER NOT NULL,
    user_agent        TEXT NOT NULL,
    browser           TEXT NOT NULL,
    os                TEXT NOT NULL,
    ip                TEXT,
    place             TEXT,
    created_at        BIGINT NOT NULL,
    last_seen_at      BIGINT NOT NULL,
    idle_expires_at   BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    revoked_at        BIGINT,
    revoked_reason    TEXT
);
CREATE INDEX customer_sessions_by_customer ON customer_sessions (customer_id, id);

CREATE TABLE customer_refresh_used (
    refresh_hash  TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL,
    used_at       BIGINT NOT NULL
);
CREATE INDEX customer_refresh_used_by_session ON customer_refresh_used (session_id);

-- Single-use tokens for email verification and password reset, stored as SHA-256.
CREATE TABLE customer_tokens (
    token_hash   TEXT PRIMARY KEY,
    purpose      TEXT NOT NULL,
    project      TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX customer_tokens_by_customer ON customer_tokens (customer_id);

-- Per-project session settings (lifetimes, session cap), as JSON; absent means defaults.
CREATE TABLE customer_auth_settings (
    project     TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Ed25519 signing keys for access tokens, named by PASERK k4.pid. The newest key without
-- `retires_at` signs; a rotated key keeps validating until `retires_at`.
CREATE TABLE session_keys (
    kid         TEXT PRIMARY KEY,
    public_key  TEXT NOT NULL,
    secret_key  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retires_at  BIGINT
);

-- What the edge must refuse before tokens expire on their own: a revoked session
-- (`sess/r/s/<id>`) or a customer's "issued before this are void" (`sess/r/c/<project>/<id>`).
-- Kept until `keep_until`, when every token it could refuse has expired.
CREATE TABLE session_revocations (
    kv_key      TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    keep_until  BIGINT NOT NULL
);
