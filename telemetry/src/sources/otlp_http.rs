//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`, protobuf
//! (`application/x-protobuf`) or JSON (`application/json`), optionally gzip-compressed.
//!
//! Answers follow the OTLP/HTTP specification: 200 with the export response (carrying the
//! partial success when items were rejected), 400 for a body that does not decode, 413 for
//! one too large, 415 for another content type, 429 with `Retry-After` when the log is full,
//! 503 when it cannot be written; error bodies are a `google.rpc.Status` in the request's
//! encoding.

use std::io::Read;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use crate::ingest::{Accepted, Ingest, IngestError};
use crate::sources::admission;
use crate::wal::Signal;

/// Sizes the receiver accepts.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest body as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Largest body once decompressed (a guard against compression bombs).
    pub max_decoded_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 * 1024 * 1024,
            max_decoded_bytes: 32 * 1024 * 1024,
        }
    }
}

#[derive(Clone)]
struct HttpState {
    ingest: Ingest,
    limits: HttpLimits,
}

/// The OTLP/HTTP routes.
pub fn router(ingest: Ingest, limits: HttpLimits) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            ingest.clone(),
            admission::http,
        ))
        .with_state(HttpState { ingest, limits })
}

/// `google.rpc.Status`, the error body of OTLP/HTTP.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// A gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

async fn traces(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    export(
        &state,
        Signal::Traces,
        &headers,
        body,
        |ingest, req: ExportTraceServiceRequest| async move {
            ingest
                .traces(req)
                .await
                .map(|a| ExportTraceServiceResponse {
                    partial_success: partial(&a, |a| ExportTracePartialSuccess {
                        rejected_spans: a.rejected,
                        error_message: a.message.clone(),
                    }),
                })
        },
    )
    .await
}

async fn metrics(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    export(
        &state,
        Signal::Metrics,
        &headers,
        body,
        |ingest, req: ExportMetricsServiceRequest| async move {
            ingest
                .metrics(req)
                .await
                .map(|a| ExportMetricsServiceResponse {
                    partial_success: partial(&a, |a| ExportMetricsPartialSuccess {
                        rejected_data_points: a.rejected,
                        error_message: a.message.clone(),
                    }),
                })
        },
    )
    .await
}

async fn logs(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    export(
        &state,
        Signal::Logs,
        &headers,
        body,
        |ingest, req: ExportLogsServiceRequest| async move {
            ingest.logs(req).await.map(|a| ExportLogsServiceResponse {
                partial_success: partial(&a, |a| ExportLogsPartialSuccess {
                    rejected_log_records: a.rejected,
                    error_message: a.message.clone(),
                }),
            })
        },
    )
    .await
}

fn partial<P>(accepted: &Accepted, make: impl Fn(&Accepted) -> P) -> Option<P> {
    (accepted.rejected > 0).then(|| make(accepted))
}

async fn export<Req, Resp, F, Fut>(
    state: &HttpState,
    signal: Signal,
    headers: &HeaderMap,
    body: Bytes,
    handle: F,
) -> Response
where
    Req: Message + Default + serde::de::DeserializeOwned,
    Resp: Message + serde::Serialize,
    F: FnOnce(Ingest, Req) -> Fut,
    Fut: Future<Output = Result<Resp, IngestError>>,
{
    let encoding = match content_type(headers) {
        Some(encoding) => encoding,
        None => {
            return status_response(
                Encoding::Json,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                3,
                "Content-Type must be application/x-protobuf or application/json",
            );
        }
    };
    let body = match decompress(headers, body, state.limits.max_decoded_bytes) {
        Ok(body) => body,
        Err((status, message)) => {
            state.ingest.malformed(signal);
            return status_response(encoding, status, 3, &message);
        }
    };
    let request: Result<Req, String> = match encoding {
        Encoding::Protobuf => Req::decode(body.as_ref()).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice(&body).map_err(|e| e.to_string()),
    };
    let request = match request {
        Ok(request) => request,
        Err(reason) => {
            state.ingest.malformed(signal);
            return status_response(
                encoding,
                StatusCode::BAD_REQUEST,
                3,
                &format!("the body is not a valid OTLP export request: {reason}"),
            );
        }
    };
    match handle(state.ingest.clone(), request).await {
        Ok(response) => ok_response(encoding, &response),
        Err(IngestError::Full { retry_after }) => refusal(
            encoding,
            "the collector is at capacity; retry later",
            retry_after,
        ),
        Err(IngestError::TooLarge) => status_response(
            encoding,
            StatusCode::PAYLOAD_TOO_LARGE,
            3,
            "the request is larger than one log record may be",
        ),
        Err(IngestError::Unavailable) => status_response(
            encoding,
            StatusCode::SERVICE_UNAVAILABLE,
            14,
            "the collector could not store the data; retry later",
        ),
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1) and a `RESOURCE_EXHAUSTED` status body.
fn refusal(encoding: Encoding, message: &str, retry_after: Duration) -> Response {
    let mut response = status_response(encoding, StatusCode::TOO_MANY_REQUESTS, 8, message);
    let seconds = retry_after.as_secs().max(1);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// [`refusal`] in the encoding of a request with these headers (JSON when it names none).
pub(crate) fn refusal_for(headers: &HeaderMap, message: &str, retry_after: Duration) -> Response {
    refusal(
        content_type(headers).unwrap_or(Encoding::Json),
        message,
        retry_after,
    )
}

fn content_type(headers: &HeaderMap) -> Option<Encoding> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    match value.split(';').next()?.trim() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// Inflates a gzip body, refusing to produce more than `max` bytes.
pub(crate) fn decompress(
    headers: &HeaderMap,
    body: Bytes,
    max: usize,
) -> Result<Bytes, (StatusCode, String)> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding {
        "identity" | "" => Ok(body),
        "gzip" => {
            let mut inflated = Vec::new();
            let mut reader = flate2::read::GzDecoder::new(body.as_ref()).take(max as u64 + 1);
            reader.read_to_end(&mut inflated).map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("the gzip body does not inflate: {e}"),
                )
            })?;
            if inflated.len() > max {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body inflates to more than {max} bytes"),
                ));
            }
            Ok(Bytes::from(inflated))
        }
        other => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding '{other}'; use gzip or none"),
        )),
    }
}

fn ok_response<Resp: Message + serde::Serialize>(encoding: Encoding, response: &Resp) -> Response {
    match encoding {
        Encoding::Protobuf => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            response.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec()),
        )
            .into_response(),
    }
}

fn status_response(encoding: Encoding, status: StatusCode, code: i32, message: &str) -> Response {
    let body = RpcStatus {
        code,
        message: message.to_owned(),
    };
    match encoding {
        Encoding::Protobuf => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            body.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "code": code, "message": message }).to_string(),
        )
            .into_response(),
    }
}
