//! Alert notifications: `POST /alerts/webhook` is an Alertmanager webhook receiver (its
//! version 4 payload, authenticated by `alerts.webhook_token`) that keeps every alert of every
//! notification; `GET /alerts` (admin) shows them newest first, each with links to the logs
//! and traces of its service in its window.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiError, ApiJson, ApiQuery, AppState, ErrorBody, validate_limit};
use crate::auth::{Action, Caller};
use crate::config::AlertsConfig;
use crate::store::{AlertNotification, NewAlertNotification};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive_webhook))
        .routes(routes!(list_alerts))
}

/// How far before an alert started (and after it ended) its links look.
const LINK_MARGIN_MINUTES: i64 = 5;

/// Alertmanager's webhook payload (version 4). Unknown fields are ignored: Alertmanager adds
/// some over time.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Must be `4`.
    pub version: String,
    /// The receiver in Alertmanager's configuration.
    #[serde(default)]
    pub receiver: String,
    /// The alerts of this notification.
    pub alerts: Vec<WebhookAlert>,
}

/// One alert of a notification.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Its labels (`alertname`, `severity`, `job`, ...).
    pub labels: BTreeMap<String, String>,
    /// Its annotations (`summary`, `description`, `runbook_url`, `dashboard`, `logs`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    pub starts_at: DateTime<Utc>,
    /// When it was resolved; a zero time while it fires.
    pub ends_at: Option<DateTime<Utc>>,
    /// Alertmanager's fingerprint of its labels.
    #[serde(default)]
    pub fingerprint: String,
}

/// What the receiver kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct Received {
    /// Alerts stored.
    pub stored: usize,
}

/// 401 unless the request carries `Authorization: Bearer <alerts.webhook_token>`; 403 when no
/// token is configured.
fn authenticate(config: &AlertsConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    if config.webhook_token.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "webhook_disabled",
            "the alert webhook is off: set alerts.webhook_token (FERTIVISION_ALERTS__WEBHOOK_TOKEN)",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Digests of equal length, so the comparison says nothing about a prefix of the token.
    if Sha256::digest(given.as_bytes()) != Sha256::digest(config.webhook_token.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the alert webhook needs Authorization: Bearer <alerts.webhook_token>",
        ));
    }
    Ok(())
}

/// Receives an Alertmanager notification and keeps each of its alerts.
#[utoipa::path(post, path = "/api/v1/alerts/webhook", request_body = WebhookPayload, tag = "alerts",
    security(()),
    responses((status = 200, body = Received), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn receive_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(payload): ApiJson<WebhookPayload>,
) -> Result<Json<Received>, ApiError> {
    let config = &state.config.alerts;
    authenticate(config, &headers)?;
    if payload.version != "4" {
        return Err(ApiError::invalid_field(
            "version",
            format!(
                "Alertmanager webhook version '{}' is not supported; expected '4'",
                payload.version
            ),
        ));
    }
    if payload.alerts.len() > config.max_alerts_per_notification {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_alerts",
            format!(
                "{} alerts in one notification; at most {} (alerts.max_alerts_per_notification)",
                payload.alerts.len(),
                config.max_alerts_per_notification
            ),
        ));
    }
    let mut rows = Vec::with_capacity(payload.alerts.len());
    for (i, alert) in payload.alerts.iter().enumerate() {
        if alert.status != "firing" && alert.status != "resolved" {
            return Err(ApiError::invalid_field(
                "alerts",
                format!(
                    "alert {i}: status '{}' is neither firing nor resolved",
                    alert.status
                ),
            ));
        }
        let Some(alertname) = alert.labels.get("alertname") else {
            return Err(ApiError::invalid_field(
                "alerts",
                format!("alert {i} has no alertname label"),
            ));
        };
        rows.push(NewAlertNotification {
            alertname: alertname.clone(),
            status: alert.status.clone(),
            severity: alert.labels.get("severity").cloned().unwrap_or_default(),
            fingerprint: alert.fingerprint.clone(),
            starts_at: alert.starts_at,
            // Alertmanager writes 0001-01-01T00:00:00Z while an alert fires.
            ends_at: alert.ends_at.filter(|t| t.timestamp() > 0),
            labels: serde_json::to_string(&alert.labels).unwrap_or_default(),
            annotations: serde_json::to_string(&alert.annotations).unwrap_or_default(),
            receiver: payload.receiver.clone(),
        });
    }
    state.store.insert_alert_notifications(&rows).await?;
    for row in &rows {
        tracing::info!(alertname = %row.alertname, status = %row.status, severity = %row.severity, "alert notification received");
    }
    Ok(Json(Received { stored: rows.len() }))
}

/// An alert notification as the list shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    /// Identifier.
    pub id: Uuid,
    /// When the platform received it.
    pub received_at: DateTime<Utc>,
    /// The alert's name.
    pub alertname: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// `page`, `ticket`, or empty.
    pub severity: String,
    /// When it started firing.
    pub starts_at: DateTime<Utc>,
    /// When it was resolved.
    pub ends_at: Option<DateTime<Utc>>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// The log search of its service over its window (five minutes either side).
    pub logs_url: String,
    /// The traces of its service over the same window.
    pub traces_url: String,
}

impl AlertView {
    /// The stored row, with its links built on `query_url` (the collector's query API);
    /// `now` ends the window of an alert still firing.
    pub fn new(row: AlertNotification, query_url: &str, now: DateTime<Utc>) -> Self {
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&row.labels).unwrap_or_default();
        let annotations: BTreeMap<String, String> =
            serde_json::from_str(&row.annotations).unwrap_or_default();
        let margin = Duration::minutes(LINK_MARGIN_MINUTES);
        let start = row.starts_at - margin;
        let end = row.ends_at.map_or(now, |end| end + margin);
        let (logs_url, traces_url) = links(query_url, labels.get("job"), start, end);
        AlertView {
            id: row.id,
            received_at: row.received_at,
            alertname: row.alertname,
            status: row.status,
            severity: row.severity,
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            labels,
            annotations,
            logs_url,
            traces_url,
        }
    }
}

/// The log search and the trace list of `service` (every service when `None`) between
/// `start` and `end`.
fn links(
    query_url: &str,
    service: Option<&String>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> (String, String) {
    let base = query_url.trim_end_matches('/');
    let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let q = service.map(|s| format!("service:{s}")).unwrap_or_default();
    let logs = reqwest::Url::parse_with_params(
        &format!("{base}/api/v1/logs/search"),
        &[
            ("q", q.as_str()),
            ("start", &rfc3339(start)),
            ("end", &rfc3339(end)),
        ],
    );
    let traces = match service {
        Some(service) => reqwest::Url::parse_with_params(
            &format!("{base}/api/traces"),
            &[
                ("service", service.as_str()),
                ("start", &start.timestamp_micros().to_string()),
                ("end", &end.timestamp_micros().to_string()),
                ("limit", "20"),
            ],
        ),
        None => reqwest::Url::parse_with_params(
            &format!("{base}/api/v1/spans/search"),
            &[
                ("q", ""),
                ("start", &rfc3339(start)),
                ("end", &rfc3339(end)),
            ],
        ),
    };
    (
        logs.map(String::from).unwrap_or_default(),
        traces.map(String::from).unwrap_or_default(),
    )
}

/// Parameters of the list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListAlerts {
    /// `firing` or `resolved`; both when absent.
    status: Option<String>,
    /// How many, 1 to 200 (default 50).
    limit: Option<u32>,
}

/// The alert notifications received, newest first (admin).
#[utoipa::path(get, path = "/api/v1/alerts", params(ListAlerts), tag = "alerts",
    responses((status = 200, body = Vec<AlertView>), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListAlerts>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    caller.require(Action::Operate)?;
    let limit = validate_limit(query.limit)?;
    if let Some(status) = &query.status
        && status != "firing"
        && status != "resolved"
    {
        return Err(ApiError::invalid_field(
            "status",
            format!("unknown status '{status}'; expected firing or resolved"),
        ));
    }
    let rows = state
        .store
        .list_alert_notifications(limit, query.status.as_deref())
        .await?;
    let now = Utc::now();
    Ok(Json(
        rows.into_iter()
            .map(|row| AlertView::new(row, &state.config.alerts.query_url, now))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_cover_the_service_and_window() {
        let start = DateTime::parse_from_rfc3339("2026-11-30T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let end = start + Duration::minutes(10);
        let (logs, traces) = links(
            "http://collector:7070/",
            Some(&"fertivision-api".to_owned()),
            start,
            end,
        );
        assert_eq!(
            logs,
            "http://collector:7070/api/v1/logs/search?q=service%3Afertivision-api&start=2026-11-30T01%3A00%3A00Z&end=2026-11-30T01%3A10%3A00Z"
        );
        assert_eq!(
            traces,
            format!(
                "http://collector:7070/api/traces?service=fertivision-api&start={}&end={}&limit=20",
                start.timestamp_micros(),
                end.timestamp_micros()
            )
        );
        let (_, spans) = links("http://c:7070", None, start, end);
        assert!(spans.starts_with("http://c:7070/api/v1/spans/search?q=&start="));
    }

    #[test]
    fn the_webhook_needs_its_token() {
        let mut config = AlertsConfig::default();
        let mut headers = HeaderMap::new();
        assert_eq!(
            authenticate(&config, &headers).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        config.webhook_token = "s3cret".into();
        assert_eq!(
            authenticate(&config, &headers).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        headers.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert!(authenticate(&config, &headers).is_err());
        headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authenticate(&config, &headers).is_ok());
    }
}
