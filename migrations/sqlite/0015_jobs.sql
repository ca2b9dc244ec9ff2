-- The durable job queue behind every asynchronous step (order saga steps, webhook
-- deliveries). A job is enqueued in the transaction of the write that causes it.
-- state: queued (due at run_at), running (claimed by locked_by until locked_until),
-- succeeded, dead (its last attempt failed) or discarded (by an operator).
-- unique_key: at most one job per key, ever (NULLs do not collide).
-- errors: JSON array of the latest failures, newest last.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    unique_key   TEXT UNIQUE,
    priority     BIGINT NOT NULL,
    state        TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    backoff_ms   BIGINT NOT NULL,
    timeout_ms   BIGINT NOT NULL,
    run_at       BIGINT NOT NULL,
    locked_by    TEXT,
    locked_until BIGINT,
    last_error   TEXT,
    errors       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX jobs_due ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_by_state ON jobs (state, kind, id);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state = 'succeeded';
