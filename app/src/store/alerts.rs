//! Alert notifications from Alertmanager, as the webhook receiver keeps them: one row per
//! alert per notification, the newest [`KEEP_ALERT_NOTIFICATIONS`] kept.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreResult, on_backend};

/// Rows kept; older ones are pruned when new ones arrive.
pub const KEEP_ALERT_NOTIFICATIONS: i64 = 10_000;

/// One alert of one notification, to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlertNotification {
    /// The `alertname` label.
    pub alertname: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// The `severity` label, or `""`.
    pub severity: String,
    /// Alertmanager's fingerprint of the alert's labels.
    pub fingerprint: String,
    /// When it started firing.
    pub starts_at: DateTime<Utc>,
    /// When it was resolved (Alertmanager sends a zero time while it fires: `None`).
    pub ends_at: Option<DateTime<Utc>>,
    /// Its labels as a JSON object.
    pub labels: String,
    /// Its annotations as a JSON object.
    pub annotations: String,
    /// The Alertmanager receiver that sent it.
    pub receiver: String,
}

/// A stored alert notification.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AlertNotification {
    /// Identifier (time-ordered).
    pub id: Uuid,
    /// When the platform received it.
    pub received_at: DateTime<Utc>,
    /// See [`NewAlertNotification`].
    pub alertname: String,
    /// See [`NewAlertNotification`].
    pub status: String,
    /// See [`NewAlertNotification`].
    pub severity: String,
    /// See [`NewAlertNotification`].
    pub fingerprint: String,
    /// See [`NewAlertNotification`].
    pub starts_at: DateTime<Utc>,
    /// See [`NewAlertNotification`].
    pub ends_at: Option<DateTime<Utc>>,
    /// See [`NewAlertNotification`].
    pub labels: String,
    /// See [`NewAlertNotification`].
    pub annotations: String,
    /// See [`NewAlertNotification`].
    pub receiver: String,
}

impl Store {
    /// Stores the alerts of one notification together, then prunes past the newest
    /// [`KEEP_ALERT_NOTIFICATIONS`].
    pub async fn insert_alert_notifications(
        &self,
        alerts: &[NewAlertNotification],
    ) -> StoreResult<()> {
        on_backend!(self, ("INSERT", "alert_notifications"), |pool, _pg| {
            let mut tx = pool.begin().await?;
            let received_at = Utc::now();
            for alert in alerts {
                sqlx::query(
                    "INSERT INTO alert_notifications (id, received_at, alertname, status, \
                     severity, fingerprint, starts_at, ends_at, labels, annotations, receiver)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(Uuid::now_v7())
                .bind(received_at)
                .bind(&alert.alertname)
                .bind(&alert.status)
                .bind(&alert.severity)
                .bind(&alert.fingerprint)
                .bind(alert.starts_at)
                .bind(alert.ends_at)
                .bind(&alert.labels)
                .bind(&alert.annotations)
                .bind(&alert.receiver)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "DELETE FROM alert_notifications WHERE id IN (
                     SELECT id FROM alert_notifications
                     ORDER BY received_at DESC, id DESC LIMIT 1000000000 OFFSET $1)",
            )
            .bind(KEEP_ALERT_NOTIFICATIONS)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The newest `limit` notifications, newest first; only those of `status` when given.
    pub async fn list_alert_notifications(
        &self,
        limit: i64,
        status: Option<&str>,
    ) -> StoreResult<Vec<AlertNotification>> {
        let status = status.unwrap_or("").to_owned();
        on_backend!(read self, ("SELECT", "alert_notifications"), |pool, _pg| {
            Ok(sqlx::query_as(
                "SELECT id, received_at, alertname, status, severity, fingerprint, starts_at, \
                 ends_at, labels, annotations, receiver
                 FROM alert_notifications
                 WHERE ($1 = '' OR status = $1)
                 ORDER BY received_at DESC, id DESC
                 LIMIT $2",
            )
            .bind(&status)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }
}
