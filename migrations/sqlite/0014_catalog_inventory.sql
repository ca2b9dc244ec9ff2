-- The catalog (products, their variants and prices, categories, collections, price
-- lists) and inventory (locations, stock levels, adjustments, reservations).

CREATE TABLE catalog_categories (
    id          TEXT PRIMARY KEY,
    handle      TEXT NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    parent_id   TEXT REFERENCES catalog_categories (id),
    position    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX catalog_categories_by_parent ON catalog_categories (parent_id);

CREATE TABLE catalog_collections (
    id          TEXT PRIMARY KEY,
    handle      TEXT NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- status: draft, published or archived; images, options and metadata are JSON.
CREATE TABLE catalog_products (
    id          TEXT PRIMARY KEY,
    handle      TEXT NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    status      TEXT NOT NULL,
    images      TEXT NOT NULL,
    options     TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX catalog_products_by_status ON catalog_products (status, id);

CREATE TABLE catalog_product_categories (
    product_id  TEXT NOT NULL REFERENCES catalog_products (id) ON DELETE CASCADE,
    category_id TEXT NOT NULL REFERENCES catalog_categories (id),
    PRIMARY KEY (product_id, category_id)
);
CREATE INDEX catalog_product_categories_by_category ON catalog_product_categories (category_id, product_id);

CREATE TABLE catalog_product_collections (
    product_id    TEXT NOT NULL REFERENCES catalog_products (id) ON DELETE CASCADE,
    collection_id TEXT NOT NULL REFERENCES catalog_collections (id),
    PRIMARY KEY (product_id, collection_id)
);
CREATE INDEX catalog_product_collections_by_collection ON catalog_product_collections (collection_id, product_id);

-- options: JSON object, option name to value. manage_inventory: 1 when stock is tracked.
CREATE TABLE catalog_variants (
    id               TEXT PRIMARY KEY,
    product_id       TEXT NOT NULL REFERENCES catalog_products (id) ON DELETE CASCADE,
    sku              TEXT NOT NULL UNIQUE,
    title            TEXT NOT NULL,
    options          TEXT NOT NULL,
    position         BIGINT NOT NULL,
    manage_inventory BIGINT NOT NULL
);
CREATE INDEX catalog_variants_by_product ON catalog_variants (product_id, position);

-- Amounts in the currency's minor units; sale_amount, when set, is what is charged.
CREATE TABLE catalog_prices (
    variant_id  TEXT NOT NULL REFERENCES catalog_variants (id) ON DELETE CASCADE,
    currency    TEXT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount >= 0),
    sale_amount BIGINT CHECK (sale_amount >= 0),
    PRIMARY KEY (variant_id, currency)
);

-- A promotion: its prices apply from starts_at until ends_at (open when NULL).
CREATE TABLE catalog_price_lists (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    starts_at  BIGINT NOT NULL,
    ends_at    BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX catalog_price_lists_by_start ON catalog_price_lists (starts_at);
CREATE INDEX catalog_price_lists_by_end ON catalog_price_lists (ends_at);

CREATE TABLE catalog_price_list_prices (
    price_list_id TEXT NOT NULL REFERENCES catalog_price_lists (id) ON DELETE CASCADE,
    sku           TEXT NOT NULL,
    currency      TEXT NOT NULL,
    amount        BIGINT NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (price_list_id, sku, currency)
);
CREATE INDEX catalog_price_list_prices_by_sku ON catalog_price_list_prices (sku);

-- How many pages of each listing were last published, so pages beyond a shrunk listing
-- are deleted from the edge.
CREATE TABLE catalog_listing_pages (
    listing TEXT PRIMARY KEY,
    pages   BIGINT NOT NULL
);

CREATE TABLE inventory_locations (
    id         TEXT PRIMARY KEY,
    handle     TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- on_hand counts units held, reserved ones included; committed counts units sold out of
-- this location. The sum of adjustments always equals on_hand + committed.
CREATE TABLE inventory_levels (
    sku         TEXT NOT NULL,
    location_id TEXT NOT NULL REFERENCES inventory_locations (id),
    on_hand     BIGINT NOT NULL,
    reserved    BIGINT NOT NULL,
    committed   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (sku, location_id),
    CHECK (reserved >= 0 AND reserved <= on_hand AND committed >= 0)
);

CREATE TABLE inventory_adjustments (
    id          TEXT PRIMARY KEY,
    sku         TEXT NOT NULL,
    location_id TEXT NOT NULL,
    delta       BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    note        TEXT,
    actor       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX inventory_adjustments_by_sku ON inventory_adjustments (sku, id);

-- status: active, released, expired or committed.
CREATE TABLE inventory_reservations (
    id         TEXT PRIMARY KEY,
    reference  TEXT NOT NULL,
    status     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX inventory_reservations_expiring ON inventory_reservations (status, expires_at);
CREATE INDEX inventory_reservations_by_reference ON inventory_reservations (reference);

CREATE TABLE inventory_reservation_lines (
    reservation_id TEXT NOT NULL REFERENCES inventory_reservations (id),
    sku            TEXT NOT NULL,
    location_id    TEXT NOT NULL,
    quantity       BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, sku, location_id)
);

-- The admin's full-text search over titles and descriptions, kept in step by triggers.
CREATE VIRTUAL TABLE catalog_products_fts USING fts5 (
    title, description, content = 'catalog_products', content_rowid = 'rowid'
);
CREATE TRIGGER catalog_products_fts_insert AFTER INSERT ON catalog_products BEGIN
    INSERT INTO catalog_products_fts (rowid, title, description) VALUES (new.rowid, new.title, new.description);
END;
CREATE TRIGGER catalog_products_fts_delete AFTER DELETE ON catalog_products BEGIN
    INSERT INTO catalog_products_fts (catalog_products_fts, rowid, title, description)
    VALUES ('delete', old.rowid, old.title, old.description);
END;
CREATE TRIGGER catalog_products_fts_update AFTER UPDATE ON catalog_products BEGIN
    INSERT INTO catalog_products_fts (catalog_products_fts, rowid, title, description)
    VALUES ('delete', old.rowid, old.title, old.description);
    INSERT INTO catalog_products_fts (rowid, title, description) VALUES (new.rowid, new.title, new.description);
END;
