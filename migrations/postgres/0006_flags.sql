-- Feature flags. Each environment of a project holds its flags as one flagd flag-set
-- document (JSON), the format edges evaluate and `verge flags import/export` exchange;
-- it is published whole as the `flags/<project>/<environment>` dataset.
CREATE TABLE flag_environments (
    project    TEXT NOT NULL,
    name       TEXT NOT NULL,
    protected  INTEGER NOT NULL DEFAULT 0,
    document   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project, name)
);

-- Client keys for OFREP at the edge, one environment each; only a SHA-256 of the token
-- is kept (and published), so the edge can check a key without the core.
CREATE TABLE flag_client_keys (
    id          TEXT PRIMARY KEY,
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
