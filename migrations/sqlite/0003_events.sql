-- Events edges send back (clicks, evaluations, limit decisions), keyed by the id the
-- edge minted so a retried batch is stored once. `source` is the ingest key's id.
CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    at           BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    source       TEXT NOT NULL,
    data         TEXT NOT NULL
);
CREATE INDEX events_kind_at ON events (kind, at);
