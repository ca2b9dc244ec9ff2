-- Short links. `code` is unique per domain; JSON columns hold small maps and lists the
-- core reads whole. `clicks` is reconciled from click events; `exhausted` flips when it
-- reaches `max_clicks`, and the edge record says so.
CREATE TABLE links (
    id            TEXT PRIMARY KEY,
    domain        TEXT NOT NULL,
    code          TEXT NOT NULL,
    url           TEXT NOT NULL,
    status        INTEGER NOT NULL,
    expires_at    BIGINT,
    expired_url   TEXT,
    max_clicks    BIGINT,
    password_hash TEXT,
    tags          TEXT NOT NULL,
    utm           TEXT NOT NULL,
    ios_url       TEXT,
    android_url   TEXT,
    desktop_url   TEXT,
    country_urls  TEXT NOT NULL,
    forward_query INTEGER NOT NULL,
    clicks        BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (domain, code)
);
CREATE INDEX links_created ON links (created_at);

-- Branded domains (the default domain needs no row).
CREATE TABLE link_domains (
    domain        TEXT PRIMARY KEY,
    not_found_url TEXT,
    created_at    BIGINT NOT NULL
);

-- The counter behind generated codes (see links::codes).
CREATE TABLE link_code_counter (
    id   INTEGER PRIMARY KEY,
    next BIGINT NOT NULL
);
INSERT INTO link_code_counter (id, next) VALUES (1, 0);

-- One row per click event, typed for analytics; the event id keeps retries out.
CREATE TABLE link_clicks (
    event_id      TEXT PRIMARY KEY,
    link_id       TEXT NOT NULL,
    at            BIGINT NOT NULL,
    domain        TEXT NOT NULL,
    country       TEXT,
    device        TEXT NOT NULL,
    browser       TEXT NOT NULL,
    os            TEXT NOT NULL,
    referrer_host TEXT,
    bot           INTEGER NOT NULL,
    visitor       TEXT NOT NULL
);
CREATE INDEX link_clicks_link_at ON link_clicks (link_id, at);
CREATE INDEX link_clicks_at ON link_clicks (at);
