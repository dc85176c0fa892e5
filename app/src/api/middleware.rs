//! The middleware every request passes through, outermost first: request id, tracing (with
//! slow-request logging), panic catching, JSON error bodies for anything the framework
//! answers itself, security headers, compression, timeout and body limits.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::header::{self, HeaderValue};
use axum::http::{Response, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{OnResponse, TraceLayer};
use tracing::Span;

use super::ApiError;
use crate::config::Config;

/// Room for the multipart envelope around the largest upload.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// Wraps the application in the middleware stack.
pub fn apply(app: Router, config: &Config) -> Router {
    let slow = Duration::from_millis(config.api.slow_request_ms);
    let hard_body_limit =
        usize::try_from(config.api.max_upload_bytes + MULTIPART_OVERHEAD).unwrap_or(usize::MAX);
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<Body>| {
            // The route template, never the raw path or query: a query may carry a record
            // number, and telemetry must not.
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!(
                "request",
                http.request.method = %request.method(),
                http.route = route,
                request_id,
                http.response.status_code = tracing::field::Empty,
            )
        })
        .on_request(())
        .on_response(LogResponse { slow });
    let security_headers = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    app.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(trace)
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(CatchPanicLayer::custom(|_| {
                ApiError::internal("a handler panicked").into_response()
            }))
            .layer(axum::middleware::from_fn(json_errors))
            .layer(security_headers)
            .layer(CompressionLayer::new())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                config.request_timeout(),
            ))
            .layer(RequestBodyLimitLayer::new(hard_body_limit))
            .layer(DefaultBodyLimit::max(config.api.max_json_bytes)),
    )
}

/// Records the status on the request span and logs requests slower than `slow` as warnings.
#[derive(Debug, Clone, Copy)]
struct LogResponse {
    slow: Duration,
}

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        let status = response.status().as_u16();
        span.record("http.response.status_code", status);
        let latency_ms = latency.as_millis();
        if latency > self.slow {
            tracing::warn!(latency_ms, status, "slow request");
        } else {
            tracing::debug!(latency_ms, status, "request");
        }
    }
}

/// Gives the answers that axum and tower-http produce themselves (unknown route, wrong method,
/// body over the hard limit, timeout) the same JSON error shape as the handlers' answers.
async fn json_errors(request: Request, next: Next) -> Response<Body> {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::new(status, "not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method_not_allowed",
            "this route does not accept that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "body_too_large",
            "the request body is larger than the limit",
        ),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long; retry later",
        ),
        s if s.is_server_error() => ApiError::internal(format!("status {s} without a body")),
        s => ApiError::new(
            s,
            "bad_request",
            s.canonical_reason().unwrap_or("bad request"),
        ),
    };
    let mut replaced = error.into_response();
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::CONTENT_ENCODING
        {
            replaced.headers_mut().insert(name.clone(), value.clone());
        }
    }
    replaced
}
