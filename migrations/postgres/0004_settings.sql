-- Named settings documents (JSON), one row each; `edge` holds what every edge reads
-- (published as the `edge/settings` dataset).
CREATE TABLE settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL
);
