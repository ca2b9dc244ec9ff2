-- Notifications: what the core tells the outside world happened (a rate-limit alert
-- firing, later a verification email to send), written in the same transaction as the
-- change that causes it, kept for consumers to read in order (`GET /v1/notifications`)
-- and for delivery channels to send. Ids sort by creation time.
CREATE TABLE notifications (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX notifications_by_kind ON notifications (kind, id);
CREATE INDEX notifications_by_subject ON notifications (subject, id);

-- Whether each policy's alert is firing; a replica that moves a row from one state to
-- the other (a conditional UPDATE) is the one that notifies, so an alert fires once
-- however many replicas evaluate it.
CREATE TABLE ratelimit_alerts (
    policy_id   TEXT PRIMARY KEY,
    firing      INTEGER NOT NULL,
    changed_at  BIGINT NOT NULL
);
