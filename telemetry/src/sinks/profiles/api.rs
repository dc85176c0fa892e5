//! The profile query API, served on the query port:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /api/v1/profiles/services` | `{"services": ["..."]}` |
//! | `GET /api/v1/profiles/{service}/flamegraph.svg?from=&until=&sample_type=` | `image/svg+xml` |
//! | `GET /api/v1/profiles/{service}/collapsed?from=&until=&sample_type=` | `text/plain`, `a;b;c 42` lines |
//! | `GET /api/v1/profiles/{service}/profile.pb.gz?from=&until=` | the merged pprof, gzip |
//!
//! `from` and `until` are unix seconds, by default the last hour. Errors are
//! `{"error": {"code", "message"}}`: 400 for bad parameters or an unknown sample type, 404 for
//! an unknown service (or no sample to draw), 413 when the answer exceeds the size cap.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::query::QueryError;
use super::store::{ProfileStore, TimeRange};

/// The range a query covers when it names none, seconds.
pub const DEFAULT_RANGE_SECS: i64 = 3600;

/// The routes of the profile API over `store`.
pub fn router(store: ProfileStore) -> Router {
    Router::new()
        .route("/api/v1/profiles/services", get(services))
        .route("/api/v1/profiles/{service}/flamegraph.svg", get(flamegraph))
        .route("/api/v1/profiles/{service}/collapsed", get(collapsed))
        .route("/api/v1/profiles/{service}/profile.pb.gz", get(pprof))
        .with_state(store)
}

/// Query parameters of the per-service routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeParams {
    from: Option<i64>,
    until: Option<i64>,
    sample_type: Option<String>,
}

struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    fn internal() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error".into(),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        let message = error.to_string();
        match error {
            QueryError::UnknownService => Self {
                status: StatusCode::NOT_FOUND,
                code: "unknown_service",
                message,
            },
            QueryError::NoSamples => Self {
                status: StatusCode::NOT_FOUND,
                code: "no_samples",
                message,
            },
            QueryError::UnknownSampleType(_) => Self {
                status: StatusCode::BAD_REQUEST,
                code: "unknown_sample_type",
                message,
            },
            QueryError::TooLarge { .. } => Self {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "too_large",
                message,
            },
            QueryError::Io(error) => {
                tracing::error!(%error, "profile query failed");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        (self.status, Json(body)).into_response()
    }
}

fn range(
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<(TimeRange, Option<String>), ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let until = params.until.unwrap_or(now);
    let from = params
        .from
        .unwrap_or_else(|| until.saturating_sub(DEFAULT_RANGE_SECS));
    if from < 0 || until < 0 {
        return Err(ApiError::bad_request(
            "from and until are unix seconds, not negative",
        ));
    }
    if from > until {
        return Err(ApiError::bad_request("from is after until"));
    }
    Ok((TimeRange { from, until }, params.sample_type))
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(ApiError::from)
}

async fn services(State(store): State<ProfileStore>) -> Result<Response, ApiError> {
    let services = blocking(move || store.services().map_err(QueryError::from)).await?;
    Ok(Json(serde_json::json!({ "services": services })).into_response())
}

async fn flamegraph(
    State(store): State<ProfileStore>,
    Path(service): Path<String>,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (range, sample_type) = range(params)?;
    let svg = blocking(move || store.flamegraph(&service, range, sample_type.as_deref())).await?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn collapsed(
    State(store): State<ProfileStore>,
    Path(service): Path<String>,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (range, sample_type) = range(params)?;
    let text = blocking(move || store.collapsed(&service, range, sample_type.as_deref())).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn pprof(
    State(store): State<ProfileStore>,
    Path(service): Path<String>,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (range, _) = range(params)?;
    let gz = blocking(move || store.merged_pprof_gz(&service, range)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"profile.pb.gz\"",
            ),
        ],
        gz,
    )
        .into_response())
}
