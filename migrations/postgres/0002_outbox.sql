-- Changes waiting to be published to edge KV, written in the same transaction as the
-- change itself. Rows are deleted once every edge store holds the change.
CREATE TABLE outbox (
    id          TEXT PRIMARY KEY,
    dataset     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
