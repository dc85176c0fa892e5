//! Admission: at most [`IngestLimits::max_in_flight`](crate::ingest::IngestLimits) export
//! requests, over every protocol together, are being received, decoded and appended at once.
//! A request past the limit is refused before its body is read: 429 with `Retry-After`
//! (OTLP/HTTP, Pyroscope) or `RESOURCE_EXHAUSTED` with `RetryInfo` (OTLP/gRPC), counted as
//! `collector_refused_requests_total{reason="busy"}`. With the per-request size limits this
//! bounds the memory the receivers use, however many clients send at once.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tonic_types::{ErrorDetails, StatusExt};

use crate::ingest::Ingest;
use crate::wal::Signal;

/// The delay a busy collector asks for.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The signal a request path carries: `/v1/traces` and the gRPC `.../TraceService/Export`
/// are traces, `/ingest` is profiles.
pub fn signal_of(path: &str) -> Signal {
    if path.contains("trace") {
        Signal::Traces
    } else if path.contains("metrics") {
        Signal::Metrics
    } else if path.contains("logs") {
        Signal::Logs
    } else {
        Signal::Profiles
    }
}

/// For the HTTP routers (`axum::middleware::from_fn_with_state`).
pub async fn http(State(ingest): State<Ingest>, request: Request, next: Next) -> Response {
    let Some(_admitted) = ingest.admit(signal_of(request.uri().path())) else {
        let mut response = crate::sources::otlp_http::refusal_for(
            request.headers(),
            "the collector is busy; retry later",
            BUSY_RETRY_AFTER,
        );
        if !request.uri().path().starts_with("/v1/") {
            response = (
                StatusCode::TOO_MANY_REQUESTS,
                "the collector is busy; retry later",
            )
                .into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(BUSY_RETRY_AFTER.as_secs()),
            );
        }
        return response;
    };
    next.run(request).await
}

/// For the gRPC routes, as an axum router (`tonic::service::Routes::into_axum_router`).
pub async fn grpc(State(ingest): State<Ingest>, request: Request, next: Next) -> Response {
    let Some(_admitted) = ingest.admit(signal_of(request.uri().path())) else {
        let status = tonic::Status::with_error_details(
            tonic::Code::ResourceExhausted,
            "the collector is busy; retry later",
            ErrorDetails::with_retry_info(Some(BUSY_RETRY_AFTER)),
        );
        return status.into_http();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_signal() {
        assert_eq!(signal_of("/v1/traces"), Signal::Traces);
        assert_eq!(
            signal_of("/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
            Signal::Traces
        );
        assert_eq!(
            signal_of("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"),
            Signal::Metrics
        );
        assert_eq!(signal_of("/v1/logs"), Signal::Logs);
        assert_eq!(signal_of("/ingest"), Signal::Profiles);
    }
}
