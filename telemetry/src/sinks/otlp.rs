//! `otlp`: forwards traces, metrics and logs to another OTLP/gRPC endpoint, to scale out to
//! an existing backend (another collector, Tempo, Jaeger, an OpenTelemetry Collector, ...).
//!
//! One lazily connected [`Channel`] (connect timeout, per-request timeout) carries the three
//! generated clients of `opentelemetry-proto`. Profiles are not OTLP here and are skipped.
//!
//! Failures are classified the way the OTLP specification asks exporters to:
//! `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, `ABORTED`, `CANCELLED` and
//! transport errors (refused connection, timeout, broken stream) are retryable, so the
//! pipeline writes the same batch again from the log; anything else (`INVALID_ARGUMENT`, ...)
//! is not, and the batch is counted as dropped. A `RESOURCE_EXHAUSTED` carrying a `RetryInfo`
//! is honoured: the sink waits that long (at most [`MAX_RETRY_WAIT`]) before reporting the
//! failure. A partial success is logged and its rejected items counted, never retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{BoxFuture, Sink, SinkError};
use crate::batch::Batch;

/// Longest wait a downstream's `RetryInfo` may impose before the failure is reported.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// Longest time to establish the connection (shorter if the request timeout is shorter).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What went through, and what did not.
#[derive(Debug, Default)]
pub struct OtlpSinkCounts {
    /// Batches the downstream accepted (fully or partially).
    pub batches: AtomicU64,
    /// Items (spans, data points, log records) the downstream accepted.
    pub items: AtomicU64,
    /// Items the downstream rejected in a partial success.
    pub rejected_items: AtomicU64,
    /// Failed writes that will be retried (the batch is written again).
    pub retryable_failures: AtomicU64,
    /// Batches dropped after a non-retryable failure.
    pub dropped_batches: AtomicU64,
    /// Items in the dropped batches.
    pub dropped_items: AtomicU64,
    /// Profiles skipped (not forwarded: this sink speaks OTLP traces, metrics and logs).
    pub skipped_profiles: AtomicU64,
}

/// The OTLP/gRPC forwarding sink.
#[derive(Debug, Clone)]
pub struct OtlpSink {
    endpoint: String,
    traces: TraceServiceClient<Channel>,
    metrics: MetricsServiceClient<Channel>,
    logs: LogsServiceClient<Channel>,
    max_retry_wait: Duration,
    counts: Arc<OtlpSinkCounts>,
}

impl OtlpSink {
    /// A sink forwarding to `endpoint` (`http://host:port`), each export limited to `timeout`.
    ///
    /// Connects lazily: an unreachable endpoint is not an error here, only a retryable write
    /// failure later. Must be called within a Tokio runtime. `https://` endpoints are refused
    /// for now: this build of tonic has no TLS support (the `tls-ring` and
    /// `tls-native-roots` features would add it).
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, String> {
        let uri = validate_endpoint(endpoint)?;
        if timeout.is_zero() {
            return Err("the otlp sink's timeout must be more than zero".to_owned());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("the otlp sink must be created within a Tokio runtime".to_owned());
        }
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| format!("otlp endpoint '{endpoint}': {e}"))?
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            .timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            endpoint: endpoint.to_owned(),
            traces: TraceServiceClient::new(channel.clone()),
            metrics: MetricsServiceClient::new(channel.clone()),
            logs: LogsServiceClient::new(channel),
            max_retry_wait: MAX_RETRY_WAIT,
            counts: Arc::default(),
        })
    }

    /// Gzip-compresses the requests it sends (off by default).
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        if gzip {
            self.traces = self.traces.send_compressed(CompressionEncoding::Gzip);
            self.metrics = self.metrics.send_compressed(CompressionEncoding::Gzip);
            self.logs = self.logs.send_compressed(CompressionEncoding::Gzip);
        }
        self
    }

    /// Caps the wait a downstream's `RetryInfo` may impose ([`MAX_RETRY_WAIT`] by default).
    pub fn with_max_retry_wait(mut self, max: Duration) -> Self {
        self.max_retry_wait = max;
        self
    }

    /// The endpoint it forwards to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Its counts, shared.
    pub fn counts(&self) -> Arc<OtlpSinkCounts> {
        Arc::clone(&self.counts)
    }

    async fn forward(&mut self, batch: Batch) -> Result<(), SinkError> {
        let items = batch.items() as u64;
        let signal = batch.signal();
        let outcome = match batch {
            Batch::Traces(request) => self.traces.export(request).await.map(|response| {
                response
                    .into_inner()
                    .partial_success
                    .map(|p| (p.rejected_spans, p.error_message))
            }),
            Batch::Metrics(request) => self.metrics.export(request).await.map(|response| {
                response
                    .into_inner()
                    .partial_success
                    .map(|p| (p.rejected_data_points, p.error_message))
            }),
            Batch::Logs(request) => self.logs.export(request).await.map(|response| {
                response
                    .into_inner()
                    .partial_success
                    .map(|p| (p.rejected_log_records, p.error_message))
            }),
            Batch::Profile(_) => {
                self.counts.skipped_profiles.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        };
        match outcome {
            Ok(partial) => {
                let rejected = partial
                    .as_ref()
                    .map_or(0, |(rejected, _)| (*rejected).max(0) as u64)
                    .min(items);
                if let Some((_, message)) = &partial
                    && (rejected > 0 || !message.is_empty())
                {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        signal = ?signal,
                        rejected,
                        message = %message,
                        "otlp downstream accepted the batch only partially"
                    );
                }
                self.counts.batches.fetch_add(1, Ordering::Relaxed);
                self.counts
                    .items
                    .fetch_add(items - rejected, Ordering::Relaxed);
                self.counts
                    .rejected_items
                    .fetch_add(rejected, Ordering::Relaxed);
                Ok(())
            }
            Err(status) => {
                let error = classify(&self.endpoint, &status);
                if error.retryable {
                    self.counts
                        .retryable_failures
                        .fetch_add(1, Ordering::Relaxed);
                    if let Some(wait) = retry_wait(&status, self.max_retry_wait) {
                        tracing::debug!(
                            endpoint = %self.endpoint,
                            wait_ms = wait.as_millis() as u64,
                            "otlp downstream asked to retry later; waiting"
                        );
                        tokio::time::sleep(wait).await;
                    }
                } else {
                    self.counts.dropped_batches.fetch_add(1, Ordering::Relaxed);
                    self.counts
                        .dropped_items
                        .fetch_add(items, Ordering::Relaxed);
                }
                Err(error)
            }
        }
    }
}

impl Sink for OtlpSink {
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(self.forward(batch))
    }
}

/// Checks `http://host[:port]` (no path) and returns it as tonic wants it.
fn validate_endpoint(endpoint: &str) -> Result<String, String> {
    let bad = || format!("otlp endpoint '{endpoint}' must be http://host:port");
    let uri: tonic::codegen::http::Uri = endpoint.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "otlp endpoint '{endpoint}': https is not supported by this build (no TLS in \
                 tonic); use http://"
            ));
        }
        _ => return Err(bad()),
    }
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(bad());
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad());
    }
    Ok(format!("http://{authority}"))
}

/// Whether a failed export may succeed if sent again.
pub fn is_retryable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Cancelled => true,
        // Raised on this side, with a cause: a transport failure tonic did not map to a code.
        Code::Unknown => std::error::Error::source(status).is_some(),
        _ => false,
    }
}

fn classify(endpoint: &str, status: &Status) -> SinkError {
    let retryable = is_retryable(status);
    let mut message = format!(
        "otlp export to {endpoint} failed: {:?}: {}",
        status.code(),
        status.message()
    );
    if let Some(source) = std::error::Error::source(status) {
        message.push_str(&format!(" ({source})"));
    }
    SinkError { message, retryable }
}

/// How long a `RESOURCE_EXHAUSTED` asks to wait (its `RetryInfo`), capped at `max`.
fn retry_wait(status: &Status, max: Duration) -> Option<Duration> {
    if status.code() != Code::ResourceExhausted {
        return None;
    }
    let delay = status.get_details_retry_info()?.retry_delay?;
    Some(delay.min(max)).filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn otlp_endpoints_are_validated() {
        assert_eq!(
            validate_endpoint("http://127.0.0.1:4317").unwrap(),
            "http://127.0.0.1:4317"
        );
        assert_eq!(
            validate_endpoint("http://collector:4317/").unwrap(),
            "http://collector:4317"
        );
        assert!(validate_endpoint("http://[::1]:4317").is_ok());
        assert!(validate_endpoint("https://collector:4317").is_err());
        assert!(validate_endpoint("collector:4317").is_err());
        assert!(validate_endpoint("ftp://collector:4317").is_err());
        assert!(validate_endpoint("http://collector:4317/v1/traces").is_err());
        assert!(validate_endpoint("http://").is_err());
        assert!(validate_endpoint("").is_err());
    }

    #[test]
    fn otlp_status_codes_are_classified() {
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::Cancelled,
        ] {
            assert!(is_retryable(&Status::new(code, "x")), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::Unknown,
            Code::Internal,
            Code::Unimplemented,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::NotFound,
            Code::DataLoss,
        ] {
            assert!(!is_retryable(&Status::new(code, "x")), "{code:?}");
        }
        let transport = Status::from_error(Box::new(std::io::Error::other("broken pipe")));
        assert_eq!(transport.code(), Code::Unknown);
        assert!(is_retryable(&transport));
    }

    #[test]
    fn otlp_retry_info_is_honoured_and_capped() {
        let exhausted = |delay| {
            Status::with_error_details(
                Code::ResourceExhausted,
                "full",
                ErrorDetails::with_retry_info(Some(delay)),
            )
        };
        let max = Duration::from_secs(30);
        assert_eq!(
            retry_wait(&exhausted(Duration::from_millis(250)), max),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_wait(&exhausted(Duration::from_secs(3600)), max),
            Some(max)
        );
        assert_eq!(retry_wait(&exhausted(Duration::ZERO), max), None);
        assert_eq!(retry_wait(&Status::resource_exhausted("full"), max), None);
        let unavailable = Status::with_error_details(
            Code::Unavailable,
            "down",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
        );
        assert_eq!(retry_wait(&unavailable, max), None);
    }
}
