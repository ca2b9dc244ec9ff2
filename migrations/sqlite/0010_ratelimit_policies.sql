-- Rate-limit policies. `document` is the policy's JSON form (verge_shared::ratelimit),
-- which the edge reads as published; `descriptor` is its descriptor in canonical JSON, so
-- two policies that no request could tell apart cannot both exist in one domain.
CREATE TABLE ratelimit_policies (
    id         TEXT PRIMARY KEY,
    domain     TEXT NOT NULL,
    name       TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (domain, descriptor)
);
CREATE INDEX ratelimit_policies_by_domain ON ratelimit_policies (domain, id);
