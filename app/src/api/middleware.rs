//! The middleware every request passes through, outermost first: request id, observation
//! (the server span, `traceparent` in and out, the request metrics, slow-request logging),
//! panic catching, JSON error bodies for anything the framework answers itself, security
//! headers, compression, timeout and body limits.

use std::time::{Duration, Instant};

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
use tracing::Instrument;

use super::ApiError;
use crate::config::Config;

/// Room for the multipart envelope around the largest upload.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// Wraps the application in the middleware stack.
pub fn apply(app: Router, config: &Config) -> Router {
    let slow = Duration::from_millis(config.api.slow_request_ms);
    let hard_body_limit =
        usize::try_from(config.api.max_upload_bytes + MULTIPART_OVERHEAD).unwrap_or(usize::MAX);
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
            .layer(axum::middleware::from_fn_with_state(
                Observe { slow },
                observe,
            ))
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

/// Settings of [`observe`].
#[derive(Debug, Clone, Copy)]
struct Observe {
    /// Requests slower than this are logged as warnings.
    slow: Duration,
}

/// Gives every request its server span (named after the route template, never the raw path
/// or query, which may carry a record number), continuing the caller's trace when a valid
/// `traceparent` comes in; counts it in `http.server.active_requests` while it runs, times it
/// into `http.server.request.duration` with its trace as the exemplar, names the trace in the
/// response (`traceparent`, `x-trace-id`), and logs slow requests.
async fn observe(
    axum::extract::State(settings): axum::extract::State<Observe>,
    request: Request,
    next: Next,
) -> Response<Body> {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    // Known methods by name, anything else as `_OTHER` (semantic conventions): a client must
    // not be able to mint label values.
    let method = match request.method().as_str() {
        known @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" | "CONNECT"
        | "TRACE") => known,
        _ => "_OTHER",
    }
    .to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        request_id,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    crate::otel::propagation::continue_from_headers(&span, request.headers());
    let trace = crate::otel::propagation::trace_ref(&span);
    let exemplar = crate::otel::propagation::exemplar(&span);
    let metrics = crate::otel::metrics();
    let active = Active::start(&metrics.http_active, &method);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let latency = started.elapsed();
    drop(active);
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    metrics.http_duration.record(
        latency.as_secs_f64(),
        &[&route, &method, status.as_str()],
        exemplar,
    );
    if let Some(trace) = trace {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&crate::otel::propagation::traceparent(
            &trace,
            exemplar.is_some(),
        )) {
            headers.insert("traceparent", value);
        }
        if let Ok(value) = HeaderValue::from_str(&hex::encode(trace.trace_id)) {
            headers.insert("x-trace-id", value);
        }
    }
    let _entered = span.enter();
    let latency_ms = latency.as_millis();
    if latency > settings.slow {
        tracing::warn!(latency_ms, status = status.as_u16(), "slow request");
    } else {
        tracing::debug!(latency_ms, status = status.as_u16(), "request");
    }
    response
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
