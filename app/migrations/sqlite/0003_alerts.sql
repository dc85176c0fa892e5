-- Alert notifications received from Alertmanager (POST /api/v1/alerts/webhook): one row per
-- alert per notification, so an alert's firing and its resolution are both kept.
--   labels, annotations: the alert's, as JSON objects of strings.
CREATE TABLE alert_notifications (
    id          BLOB PRIMARY KEY NOT NULL,
    received_at TEXT NOT NULL,
    alertname   TEXT NOT NULL,
    status      TEXT NOT NULL,
    severity    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    starts_at   TEXT NOT NULL,
    ends_at     TEXT,
    labels      TEXT NOT NULL,
    annotations TEXT NOT NULL,
    receiver    TEXT NOT NULL
);
-- Newest first, for the list and for pruning.
CREATE INDEX alert_notifications_received ON alert_notifications (received_at, id);
