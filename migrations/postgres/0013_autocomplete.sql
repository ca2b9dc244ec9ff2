-- Autocomplete indexes, their terms and curation rules, and the queries edges report.
CREATE TABLE autocomplete_indexes (
    id         TEXT PRIMARY KEY,
    project    TEXT NOT NULL,
    name       TEXT NOT NULL,
    -- verge_shared::autocomplete::Settings as JSON.
    settings   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (project, name)
);

-- A term is named by the caller's id (its folded text when none is given).
CREATE TABLE autocomplete_terms (
    index_id   TEXT NOT NULL,
    term_id    TEXT COLLATE "C" NOT NULL,
    text       TEXT NOT NULL,
    weight     BIGINT NOT NULL,
    payload    TEXT,
    language   TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (index_id, term_id)
);

-- boost, pin, block and synonym rules; `document` is the rule's JSON.
CREATE TABLE autocomplete_rules (
    id         TEXT PRIMARY KEY,
    index_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX autocomplete_rules_by_index ON autocomplete_rules (index_id, id);

-- Queries per hour, as edges reported them (folded): how often, and how often nothing
-- was suggested. Trending decays these by the index's half-life.
CREATE TABLE autocomplete_queries (
    index_id TEXT NOT NULL,
    query    TEXT NOT NULL,
    hour     BIGINT NOT NULL,
    searches BIGINT NOT NULL,
    empty    BIGINT NOT NULL,
    PRIMARY KEY (index_id, query, hour)
);
CREATE INDEX autocomplete_queries_by_hour ON autocomplete_queries (hour);
