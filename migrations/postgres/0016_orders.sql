-- Orders and payments, idempotency keys, the order timeline, and webhook endpoints with
-- their delivery log. Amounts are integer minor units of the order's currency.

-- A POST carrying an Idempotency-Key: the first response is kept and replayed. state:
-- running (locked_until bounds a crashed first attempt) or done.
CREATE TABLE idempotency_keys (
    owner        TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    state        TEXT NOT NULL,
    status       BIGINT,
    response     TEXT,
    locked_until BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (owner, idem_key)
);
CREATE INDEX idempotency_keys_expiring ON idempotency_keys (expires_at);

-- status: pending (the saga runs), confirmed, fulfilled, cancelled or failed.
-- payment_status: pending, authorized, captured, partially_refunded, refunded, voided or failed.
CREATE TABLE orders (
    id               TEXT PRIMARY KEY,
    project          TEXT,
    customer_id      TEXT,
    email            TEXT NOT NULL,
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL,
    payment_status   TEXT NOT NULL,
    subtotal         BIGINT NOT NULL CHECK (subtotal >= 0),
    tax              BIGINT NOT NULL CHECK (tax >= 0),
    total            BIGINT NOT NULL CHECK (total = subtotal + tax),
    tax_region       TEXT NOT NULL,
    tax_rate_bp      BIGINT NOT NULL,
    shipping_address TEXT NOT NULL,
    billing_address  TEXT NOT NULL,
    payment_provider TEXT NOT NULL,
    payment_method   TEXT NOT NULL,
    payment_ref      TEXT,
    captured         BIGINT NOT NULL CHECK (captured >= 0),
    refunded         BIGINT NOT NULL CHECK (refunded >= 0 AND refunded <= captured),
    reservation_id   TEXT,
    tracking         TEXT,
    failure_code     TEXT,
    failure_detail   TEXT,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX orders_by_status ON orders (status, id);
CREATE INDEX orders_by_customer ON orders (project, customer_id, id);

CREATE TABLE order_lines (
    order_id     TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position     BIGINT NOT NULL,
    sku          TEXT NOT NULL,
    variant_id   TEXT NOT NULL,
    title        TEXT NOT NULL,
    quantity     BIGINT NOT NULL CHECK (quantity > 0),
    unit_amount  BIGINT NOT NULL CHECK (unit_amount >= 0),
    compare_at   BIGINT,
    subtotal     BIGINT NOT NULL,
    tax          BIGINT NOT NULL,
    PRIMARY KEY (order_id, position)
);

-- status: pending, succeeded or failed.
CREATE TABLE order_refunds (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id),
    amount       BIGINT NOT NULL CHECK (amount > 0),
    reason       TEXT NOT NULL,
    status       TEXT NOT NULL,
    provider_ref TEXT,
    actor        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX order_refunds_by_order ON order_refunds (order_id, id);

-- The timeline: every state change of an order or its payment, who made it, and what it
-- carried; the source of server-sent events and webhooks. seq counts from 1 per order
-- (writers hold the order's row lock), and is the events' SSE id.
CREATE TABLE order_events (
    id             TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL REFERENCES orders (id),
    seq            BIGINT NOT NULL,
    type           TEXT NOT NULL,
    status         TEXT NOT NULL,
    payment_status TEXT NOT NULL,
    actor          TEXT NOT NULL,
    data           TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX order_events_by_order ON order_events (order_id, seq);

-- Where events are delivered; secret signs them (Standard Webhooks). event_types: JSON
-- array, empty for every type.
CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    description TEXT NOT NULL,
    event_types TEXT NOT NULL,
    secret      TEXT NOT NULL,
    disabled    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- One event for one endpoint (its message id is the event id), and each attempt at it.
-- status: pending, delivered or failed (attempts exhausted).
CREATE TABLE webhook_messages (
    id          TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_messages_by_endpoint ON webhook_messages (endpoint_id, id);

CREATE TABLE webhook_attempts (
    id            TEXT PRIMARY KEY,
    message_id    TEXT NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    response_code BIGINT,
    error         TEXT,
    duration_ms   BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_by_message ON webhook_attempts (message_id, id);

-- The built-in test payment provider's ledger: what a card processor in test mode would
-- hold on its side, keyed by the idempotency key of each call, so a repeated call returns
-- the first answer (and a restarted core cannot charge twice). kind: authorization,
-- capture, void or refund; reference: the authorization a call concerns.
CREATE TABLE payment_test_ledger (
    idem_key   TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    reference  TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    currency   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX payment_test_ledger_by_reference ON payment_test_ledger (reference, kind);

-- Outages of the test provider (for outage drills): while one lasts, every call fails as
-- an unreachable provider's would.
CREATE TABLE payment_test_outages (
    id       TEXT PRIMARY KEY,
    until_ms BIGINT NOT NULL
);
