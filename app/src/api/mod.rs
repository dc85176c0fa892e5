//! The HTTP API: JSON under `/api/v1`, every route behind a bearer token, plus `/healthz` and
//! `/readyz`. Each file owns its routes, handlers, request and response types; this file
//! assembles them, adds the middleware, and produces the OpenAPI document from the same
//! route declarations (so the document cannot list a route that does not exist, or miss one).

pub mod alerts;
mod analyses;
mod documents;
mod error;
mod extract;
mod health;
mod middleware;
mod patients;
mod scores;
mod tasks;

use std::sync::Arc;

use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

pub use error::{ApiError, ErrorBody, ErrorDetail, missing};
pub use extract::{ApiJson, ApiPath, ApiQuery, decode_json, decode_value};

use crate::cache::Cache;
use crate::config::Config;
use crate::jobs::Jobs;
use crate::limits::{RateLimits, Refused};
use crate::objects::Objects;
use crate::store::{MAX_PAGE, Store};

/// What every handler can reach: [`Resources`] behind one `Arc`, as axum clones the state
/// for every request (a clone of each part cost a few percent of a cached read).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Resources>);

impl AppState {
    /// The state over `resources`.
    pub fn new(resources: Resources) -> Self {
        Self(Arc::new(resources))
    }
}

impl std::ops::Deref for AppState {
    type Target = Resources;

    fn deref(&self) -> &Resources {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Resources {
    /// The database.
    pub store: Store,
    /// Object storage for documents.
    pub objects: Objects,
    /// Settings.
    pub config: Arc<Config>,
    /// Submits background jobs.
    pub jobs: Jobs,
    /// Read-through cache.
    pub cache: Cache,
    /// Per-token rate limits.
    pub limits: Arc<RateLimits>,
    /// Tokens already checked against the database.
    pub tokens: crate::auth::TokenCache,
}

/// A page of a list; pass `next_cursor` as `cursor` to get the next one.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Cursor of the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

impl<T> Page<T> {
    /// A page whose cursor is the id of its last item when the page is full.
    pub fn new(items: Vec<T>, limit: i64, id_of: impl Fn(&T) -> Uuid) -> Self {
        let full = i64::try_from(items.len()).unwrap_or(i64::MAX) >= limit;
        let next_cursor = if full { items.last().map(id_of) } else { None };
        Self { items, next_cursor }
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        let (count, window) = refused.limit.quota();
        let per = if window.as_secs() >= 3600 {
            "hour"
        } else {
            "minute"
        };
        let mut error = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many {}: at most {count} per {per} per token; retry in {} s",
                refused.limit.name(),
                refused.retry_after.as_secs().max(1)
            ),
        );
        error.retry_after_secs = refused.retry_after.as_secs().max(1);
        error
    }
}

/// A JSON answer already written: what the cache holds (see [`Cache::json_or_load`]).
#[derive(Debug)]
pub struct JsonBytes(pub bytes::Bytes);

impl axum::response::IntoResponse for JsonBytes {
    fn into_response(self) -> axum::response::Response {
        let content_type = axum::http::HeaderValue::from_static("application/json");
        ([(axum::http::header::CONTENT_TYPE, content_type)], self.0).into_response()
    }
}

/// Paging parameters shared by the lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

impl PageParams {
    /// The validated page size.
    pub fn limit(&self) -> Result<i64, ApiError> {
        validate_limit(self.limit)
    }
}

/// 422 unless `limit` is within 1..=200; 50 when absent.
pub fn validate_limit(limit: Option<u32>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(l) if (1..=MAX_PAGE).contains(&i64::from(l)) => Ok(i64::from(l)),
        Some(l) => Err(ApiError::invalid_field(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE}, got {l}"),
        )),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "FertiVision API",
        description = "Patients, lab classifications, documents and fertility scores for IVF and andrology clinics. Every /api/v1 route needs `Authorization: Bearer <token>`.",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(
        ErrorBody, ErrorDetail,
        crate::domain::SemenInput, crate::domain::SemenResult,
        crate::domain::OocyteInput, crate::domain::OocyteResult,
        crate::domain::EmbryoInput, crate::domain::EmbryoResult,
        crate::domain::FollicleInput, crate::domain::FollicleResult,
        crate::domain::HysteroscopyInput, crate::domain::HysteroscopyResult,
    )),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every documented route: `/api/v1/...` and the health checks. Each handler declares its
/// whole path: a nested router would rewrite every request's URI on its way in.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(patients::routes())
        .merge(analyses::routes())
        .merge(documents::routes())
        .merge(scores::routes())
        .merge(tasks::routes())
        .merge(alerts::routes())
        .merge(health::routes())
}

/// The OpenAPI document, generated from the route declarations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().into_openapi()
}

/// The whole application: routes, the OpenAPI document at `/api/v1/openapi.json` (public, like
/// the health checks), middleware.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = documented_routes().split_for_parts();
    let doc = Arc::new(doc);
    let app = routes.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let doc = Arc::clone(&doc);
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    );
    middleware::apply(app.with_state(state.clone()), &state.config)
}
