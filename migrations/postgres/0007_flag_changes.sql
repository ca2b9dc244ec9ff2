-- Flags, continued: the project-wide catalog (what a flag is for), changes that wait for
-- approval or for their time, and when edges last evaluated each flag.

-- One row per flag key in a project, whatever environments hold it: a description, the
-- type every environment's variants must share, and tags for finding it.
CREATE TABLE flags (
    project     TEXT NOT NULL,
    key         TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    flag_type   TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '[]',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (project, key)
);

-- Changes to an environment's flag set held back: a change request in a protected
-- environment (pending until a different key holder approves it) and scheduled changes
-- (applied at `apply_at` by the core's scheduler). `changes` is a JSON list of edits.
CREATE TABLE flag_changes (
    id          TEXT PRIMARY KEY,
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    changes     TEXT NOT NULL,
    comment     TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,
    apply_at    BIGINT,
    author      TEXT NOT NULL,
    reviewer    TEXT,
    reviewed_at BIGINT,
    applied_at  BIGINT,
    failure     TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX flag_changes_by_environment ON flag_changes (project, environment, id);
CREATE INDEX flag_changes_due ON flag_changes (status, apply_at);

-- Projected from the edges' `flag.evaluation` events: when each flag was last evaluated
-- in each environment. `flag_key` '' stands for bulk evaluations (every flag at once).
CREATE TABLE flag_evaluations (
    project           TEXT NOT NULL,
    environment       TEXT NOT NULL,
    flag_key          TEXT NOT NULL,
    last_evaluated_at BIGINT NOT NULL,
    evaluations       BIGINT NOT NULL,
    PRIMARY KEY (project, environment, flag_key)
);
