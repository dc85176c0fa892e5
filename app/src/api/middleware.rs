//! The middleware every request passes through, outermost first: observation (the request
//! id, the server span, `traceparent` in and out, the request metrics, slow-request logging)
//! together with the conventions every response follows (JSON error bodies for anything the
//! framework answers itself, security headers), then panic catching, compression, timeout and
//! body limits.
//!
//! The conventions live in one layer with the observation, as plain functions on the
//! response, rather than as a layer each: the stack is cloned and its futures are nested for
//! every request, and each layer costs its share of that (ten layers made a tenth of a cached
//! read's instructions).

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{HeaderMap, Response, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use super::ApiError;
use crate::config::Config;

/// Room for the multipart envelope around the largest upload.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// The request id header: taken from the request when it carries one, made otherwise, and
/// always returned.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers every response carries.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// Wraps the application in the middleware stack.
pub fn apply(app: Router, config: &Config) -> Router {
    let slow = Duration::from_millis(config.api.slow_request_ms);
    let hard_body_limit =
        usize::try_from(config.api.max_upload_bytes + MULTIPART_OVERHEAD).unwrap_or(usize::MAX);
    app.layer(
        ServiceBuilder::new()
            .layer(axum::middleware::from_fn_with_state(
                Observe { slow },
                observe,
            ))
            .layer(CatchPanicLayer::custom(|_| {
                ApiError::internal("a handler panicked").into_response()
            }))
            .layer(CompressionLayer::new())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                config.request_timeout(),
            ))
            .layer(RequestBodyLimitLayer::new(hard_body_limit))
            .layer(DefaultBodyLimit::max(config.api.max_json_bytes)),
    )
}

/// Settings of [`observe`].
#[derive(Debug, Clone, Copy)]
struct Observe {
    /// Requests slower than this are logged as warnings.
    slow: Duration,
}

/// Gives every request its id and its server span (named after the route template, never
/// the raw path or query, which may carry a record number), continuing the caller's trace
/// when a valid `traceparent` comes in; counts it in `http.server.active_requests` while it
/// runs, times it into `http.server.request.duration` with its trace as the exemplar, and
/// logs slow requests. The response gets the conventions of [`conventions`] and names the
/// request (`x-request-id`) and its trace (`traceparent`, `x-trace-id`).
async fn observe(
    axum::extract::State(settings): axum::extract::State<Observe>,
    mut request: Request,
    next: Next,
) -> Response<Body> {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = method_label(request.method().as_str());
    let request_id = request_id(request.headers_mut());
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        request_id = request_id.to_str().unwrap_or_default(),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    crate::otel::propagation::continue_from_headers(&span, request.headers());
    let trace = crate::otel::propagation::trace_of(&span);
    let exemplar = trace.and_then(|(trace, sampled)| sampled.then_some(trace));
    let metrics = crate::otel::metrics();
    let active = Active::start(&metrics.http_active, method);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let latency = started.elapsed();
    drop(active);
    let mut response = conventions(response);
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    metrics.http_duration.record(
        latency.as_secs_f64(),
        &[route, method, status.as_str()],
        exemplar,
    );
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, request_id);
    if let Some((trace, sampled)) = trace {
        headers.insert(
            "traceparent",
            crate::otel::propagation::traceparent_header(&trace, sampled),
        );
        headers.insert(
            "x-trace-id",
            crate::otel::propagation::trace_id_header(&trace),
        );
    }
    let latency_ms = latency.as_millis();
    if latency > settings.slow {
        tracing::warn!(parent: &span, latency_ms, status = status.as_u16(), "slow request");
    } else {
        tracing::debug!(parent: &span, latency_ms, status = status.as_u16(), "request");
    }
    response
}

/// Known methods by name, anything else as `_OTHER` (semantic conventions): a client must not
/// be able to mint label values.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "_OTHER",
    }
}

/// The request's `x-request-id`, made (a random uuid) and set on the request when it has
/// none.
fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&REQUEST_ID) {
        return id.clone();
    }
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    let id = HeaderValue::from_str(id).expect("a uuid is a valid header value");
    headers.insert(REQUEST_ID, id.clone());
    id
}

/// One request in `http.server.active_requests`, until dropped (also when the client goes
/// away and the request's future is dropped).
struct Active<'a> {
    gauge: &'a telemetry::catalogue::Gauge,
    method: &'a str,
}

impl<'a> Active<'a> {
    fn start(gauge: &'a telemetry::catalogue::Gauge, method: &'a str) -> Self {
        gauge.add(1.0, &[method]);
        Self { gauge, method }
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.gauge.add(-1.0, &[self.method]);
    }
}

/// What every response follows: an error has the API's JSON error body, and the security
/// headers are set (`Cache-Control: no-store` unless the handler chose a policy).
fn conventions(response: Response<Body>) -> Response<Body> {
    let mut response = json_errors(response);
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Gives the answers that axum and tower-http produce themselves (unknown route, wrong method,
/// body over the hard limit, timeout) the same JSON error shape as the handlers' answers.
fn json_errors(response: Response<Body>) -> Response<Body> {
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
