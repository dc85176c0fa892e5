-- Alert notifications received from Alertmanager (POST /api/v1/alerts/webhook): one row per
-- alert per notification, so an alert's firing and its resolution are both kept.
--   labels, annotations: the alert's, as JSON objects of strings.
CREATE TABLE alert_notifications (
    id          uuid PRIMARY KEY,
    received_at timestamptz NOT NULL,
    alertname   text NOT NULL,
    status      text NOT NULL,
    severity    text NOT NULL,
    fingerprint text NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz,
    labels      text NOT NULL,
    annotations text NOT NULL,
    receiver    text NOT NULL
);
-- Newest first, for the list and for pruning.
CREATE INDEX alert_notifications_received ON alert_notifications (received_at, id);
