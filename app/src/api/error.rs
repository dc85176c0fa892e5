//! The one error type of the API and its JSON shape:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.
//!
//! A 4xx says exactly what is wrong with the request. A 5xx says nothing internal: the cause
//! is logged with the request id, and the body only says that the failure is on our side.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `invalid_field`.
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
    /// The request field at fault, when there is one (a JSON path like `findings[1]`).
    pub field: Option<String>,
    /// Seconds for `Retry-After` on 429 and 503 answers.
    pub retry_after_secs: u64,
}

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error inside [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// The request field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_secs: 5,
        }
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty() && field != ".").then_some(field);
        self
    }

    /// 422: a field has a value out of its range or of the wrong type.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
    }

    /// 400: the request cannot be parsed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 for a resource named in the path.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 500 with nothing internal in the body; the detail is logged here.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }

    /// 503: a dependency is down; the detail is logged here.
    pub fn unavailable(dependency: &'static str, detail: impl std::fmt::Display) -> Self {
        tracing::error!(dependency, error = %detail, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the {dependency} is unavailable; retry later"),
        )
    }

    /// Whether this answers a write the database may have applied without confirming it
    /// (504 `unconfirmed`).
    pub fn is_unconfirmed(&self) -> bool {
        self.code == UNCONFIRMED
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(self.retry_after_secs),
            );
        }
        response
    }
}

/// The code of a 504 for a write that may have been applied: see [`StoreError::Unconfirmed`].
const UNCONFIRMED: &str = "unconfirmed";

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Conflict(rule) => ApiError::new(StatusCode::CONFLICT, "conflict", rule),
            StoreError::CircuitOpen(retry_after) => {
                let mut error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; retry later",
                );
                error.retry_after_secs = retry_after.as_secs().max(1);
                error
            }
            StoreError::Unconfirmed(cause) => {
                tracing::error!(error = %cause, "a write was not confirmed by the database");
                ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    UNCONFIRMED,
                    "the database did not confirm the write; it may have been stored: read before retrying",
                )
            }
            other if other.is_unavailable() => ApiError::unavailable("database", other),
            other => ApiError::internal(other),
        }
    }
}

/// Maps a store error, naming `what` when the store says it does not exist.
pub fn missing(what: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |err| match err {
        StoreError::NotFound => ApiError::not_found(what),
        other => other.into(),
    }
}

/// A response that does not serialize is our failure, never the client's.
impl From<serde_json::Error> for ApiError {
    fn from(err: serde_json::Error) -> Self {
        ApiError::internal(format!("response not serializable: {err}"))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfirmed_write_is_a_504_that_does_not_invite_a_retry() {
        let cause = StoreError::Timeout(std::time::Duration::from_secs(1));
        let error = ApiError::from(StoreError::Unconfirmed(Box::new(cause)));
        assert!(error.is_unconfirmed());
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(!response.headers().contains_key("retry-after"));

        let refused = ApiError::from(StoreError::CircuitOpen(std::time::Duration::from_secs(2)));
        assert!(!refused.is_unconfirmed());
        let response = refused.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "2");
    }
}
