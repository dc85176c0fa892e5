//! The single entry of every signal: checks a decoded OTLP request against the limits,
//! rejects the items that break them (reported back as the OTLP partial success), and
//! appends the rest, re-encoded as protobuf, to the write-ahead log. Only once the log has
//! synced it does the sender hear that the data was accepted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::batch::Profile;
use crate::metrics::{CollectorMetrics, RefusalLabels, SignalLabels};
use crate::wal::{AppendError, Signal, Wal};

/// Limits on what one item (span, log record, metric data point) may carry. Items over them
/// are rejected one by one; the rest of the request is accepted.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Attributes on one item or resource.
    pub max_attributes: usize,
    /// Bytes of one attribute value or log body (strings and bytes, nested values included).
    pub max_value_bytes: usize,
    /// Export requests being received, decoded and appended at once, over every protocol;
    /// more are refused with a retry delay before their bodies are read (see
    /// [`crate::sources::admission`]).
    pub max_in_flight: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_attributes: 128,
            max_value_bytes: 64 * 1024,
            max_in_flight: 32,
        }
    }
}

/// What happened to a request: how many items were rejected and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Items rejected (spans, log records or data points).
    pub rejected: i64,
    /// Why, for the partial-success message; empty when nothing was rejected.
    pub message: String,
}

/// The request was not accepted at all.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The log is full: retry later.
    #[error("the collector is at capacity; retry in {} ms", retry_after.as_millis())]
    Full {
        /// When to retry.
        retry_after: Duration,
    },
    /// One request too large for a log record.
    #[error("the request is too large")]
    TooLarge,
    /// The log could not be written.
    #[error("the collector could not store the data")]
    Unavailable,
}

/// The ingest path shared by the OTLP/gRPC and OTLP/HTTP receivers.
#[derive(Debug, Clone)]
pub struct Ingest {
    wal: Arc<Wal>,
    limits: IngestLimits,
    metrics: Arc<CollectorMetrics>,
    in_flight: Arc<Semaphore>,
}

/// A request's place among the ones in flight; the place is free again when it is dropped.
#[derive(Debug)]
pub struct Admitted {
    _place: OwnedSemaphorePermit,
}

impl Ingest {
    /// Ingest into `wal` with `limits`, counting into `metrics`.
    pub fn new(wal: Arc<Wal>, limits: IngestLimits, metrics: Arc<CollectorMetrics>) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            wal,
            limits,
            metrics,
        }
    }

    /// A place for one more request of `signal`, or `None` (counted as refused, reason
    /// `busy`) when [`IngestLimits::max_in_flight`] requests are in flight.
    pub fn admit(&self, signal: Signal) -> Option<Admitted> {
        match Arc::clone(&self.in_flight).try_acquire_owned() {
            Ok(place) => Some(Admitted { _place: place }),
            Err(_) => {
                self.metrics
                    .refused_requests
                    .get_or_create(&RefusalLabels {
                        signal: signal.into(),
                        reason: "busy",
                    })
                    .inc();
                None
            }
        }
    }

    /// Items of `signal` written to the log so far.
    pub fn accepted_items(&self, signal: Signal) -> u64 {
        self.metrics
            .accepted_items
            .get_or_create(&labels(signal))
            .get()
    }

    /// Records a request that did not decode.
    pub fn malformed(&self, signal: Signal) {
        self.metrics
            .malformed_requests
            .get_or_create(&labels(signal))
            .inc();
    }

    /// Traces.
    pub async fn traces(
        &self,
        mut request: ExportTraceServiceRequest,
    ) -> Result<Accepted, IngestError> {
        let limits = self.limits;
        let mut rejected = Rejections::default();
        for resource in &mut request.resource_spans {
            let resource_ok = resource
                .resource
                .as_ref()
                .is_none_or(|r| attributes_fit(&r.attributes, &limits));
            for scope in &mut resource.scope_spans {
                scope.spans.retain(|span| {
                    let fits = resource_ok
                        && attributes_fit(&span.attributes, &limits)
                        && span
                            .events
                            .iter()
                            .all(|e| attributes_fit(&e.attributes, &limits))
                        && span
                            .links
                            .iter()
                            .all(|l| attributes_fit(&l.attributes, &limits));
                    rejected.note(fits, "span");
                    fits
                });
            }
        }
        let items: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.append(Signal::Traces, items, request.encode_to_vec(), rejected)
            .await
    }

    /// Metrics.
    pub async fn metrics(
        &self,
        mut request: ExportMetricsServiceRequest,
    ) -> Result<Accepted, IngestError> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let limits = self.limits;
        let mut rejected = Rejections::default();
        let mut items = 0usize;
        for resource in &mut request.resource_metrics {
            let resource_ok = resource
                .resource
                .as_ref()
                .is_none_or(|r| attributes_fit(&r.attributes, &limits));
            for scope in &mut resource.scope_metrics {
                for metric in &mut scope.metrics {
                    macro_rules! filter_points {
                        ($points:expr) => {{
                            $points.retain(|p| {
                                let fits = resource_ok && attributes_fit(&p.attributes, &limits);
                                rejected.note(fits, "data point");
                                fits
                            });
                            items += $points.len();
                        }};
                    }
                    match &mut metric.data {
                        Some(Data::Gauge(g)) => filter_points!(g.data_points),
                        Some(Data::Sum(s)) => filter_points!(s.data_points),
                        Some(Data::Histogram(h)) => filter_points!(h.data_points),
                        Some(Data::ExponentialHistogram(h)) => filter_points!(h.data_points),
                        Some(Data::Summary(s)) => filter_points!(s.data_points),
                        None => {}
                    }
                }
            }
        }
        self.append(Signal::Metrics, items, request.encode_to_vec(), rejected)
            .await
    }

    /// Logs.
    pub async fn logs(
        &self,
        mut request: ExportLogsServiceRequest,
    ) -> Result<Accepted, IngestError> {
        let limits = self.limits;
        let mut rejected = Rejections::default();
        for resource in &mut request.resource_logs {
            let resource_ok = resource
                .resource
                .as_ref()
                .is_none_or(|r| attributes_fit(&r.attributes, &limits));
            for scope in &mut resource.scope_logs {
                scope.log_records.retain(|record| {
                    let fits = resource_ok
                        && attributes_fit(&record.attributes, &limits)
                        && record
                            .body
                            .as_ref()
                            .is_none_or(|b| value_bytes(b) <= limits.max_value_bytes);
                    rejected.note(fits, "log record");
                    fits
                });
            }
        }
        let items: usize = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        self.append(Signal::Logs, items, request.encode_to_vec(), rejected)
            .await
    }

    /// A pprof profile (Pyroscope `/ingest`), stored as [`crate::batch::encode_profile`]
    /// writes it.
    pub async fn profile(&self, profile: Profile) -> Result<(), IngestError> {
        let encoded = crate::batch::encode_profile(&profile).to_vec();
        self.append(Signal::Profiles, 1, encoded, Rejections::default())
            .await
            .map(|_| ())
    }

    async fn append(
        &self,
        signal: Signal,
        items: usize,
        encoded: Vec<u8>,
        rejected: Rejections,
    ) -> Result<Accepted, IngestError> {
        let metrics = &self.metrics;
        let signal_labels = labels(signal);
        metrics.requests.get_or_create(&signal_labels).inc();
        metrics
            .rejected_items
            .get_or_create(&signal_labels)
            .inc_by(rejected.count as u64);
        if items > 0 {
            let appended = self.wal.append(signal, Bytes::from(encoded)).await;
            if let Err(error) = appended {
                let (reason, refusal) = match error {
                    AppendError::Full { retry_after } => {
                        ("log_full", IngestError::Full { retry_after })
                    }
                    AppendError::NoSpace { retry_after } => {
                        ("disk_full", IngestError::Full { retry_after })
                    }
                    AppendError::TooLarge { .. } => ("too_large", IngestError::TooLarge),
                    other => {
                        tracing::error!(error = %other, "write-ahead log append failed");
                        ("unavailable", IngestError::Unavailable)
                    }
                };
                let refusal_labels = RefusalLabels {
                    signal: signal.into(),
                    reason,
                };
                metrics
                    .refused_requests
                    .get_or_create(&refusal_labels)
                    .inc();
                return Err(refusal);
            }
            metrics
                .accepted_items
                .get_or_create(&signal_labels)
                .inc_by(items as u64);
            metrics
                .batch_items
                .get_or_create(&signal_labels)
                .observe(items as f64);
        }
        Ok(rejected.into_accepted(&self.limits))
    }
}

fn labels(signal: Signal) -> SignalLabels {
    SignalLabels {
        signal: signal.into(),
    }
}

#[derive(Default)]
struct Rejections {
    count: i64,
    kind: &'static str,
}

impl Rejections {
    fn note(&mut self, fits: bool, kind: &'static str) {
        if !fits {
            self.count += 1;
            self.kind = kind;
        }
    }

    fn into_accepted(self, limits: &IngestLimits) -> Accepted {
        if self.count == 0 {
            return Accepted::default();
        }
        Accepted {
            rejected: self.count,
            message: format!(
                "{} {}(s) rejected: more than {} attributes, or a value or body over {} bytes",
                self.count, self.kind, limits.max_attributes, limits.max_value_bytes
            ),
        }
    }
}

fn attributes_fit(attributes: &[KeyValue], limits: &IngestLimits) -> bool {
    attributes.len() <= limits.max_attributes
        && attributes.iter().all(|kv| {
            kv.key.len() <= limits.max_value_bytes
                && kv
                    .value
                    .as_ref()
                    .is_none_or(|v| value_bytes(v) <= limits.max_value_bytes)
        })
}

/// Bytes of a value, nested arrays and maps included.
fn value_bytes(value: &AnyValue) -> usize {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.len(),
        Some(any_value::Value::BytesValue(b)) => b.len(),
        Some(any_value::Value::ArrayValue(a)) => a.values.iter().map(value_bytes).sum(),
        Some(any_value::Value::KvlistValue(kv)) => kv
            .values
            .iter()
            .map(|kv| kv.key.len() + kv.value.as_ref().map_or(0, value_bytes))
            .sum(),
        _ => 8,
    }
}
