//! The collector's own metrics, declared once here and counted through these declarations:
//! what came in per signal (requests, items accepted, rejected, refused by reason,
//! malformed), the write-ahead log (bytes, its limit, segments, lag per sink), each sink
//! (batches, items, drops, retries, write latency), the log and span indexes (bytes on disk,
//! their size limit) and the query API (latency per route). Served on the same `/metrics` as
//! the data; [`crate::catalogue::COLLECTOR`] declares each for the dashboards and alerts.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::wal::{Signal, WalStats};

/// `signal` label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum SignalLabel {
    /// Spans.
    traces,
    /// Metric data points.
    metrics,
    /// Log records.
    logs,
    /// Profiles.
    profiles,
}

impl From<Signal> for SignalLabel {
    fn from(signal: Signal) -> Self {
        match signal {
            Signal::Traces => SignalLabel::traces,
            Signal::Metrics => SignalLabel::metrics,
            Signal::Logs => SignalLabel::logs,
            Signal::Profiles => SignalLabel::profiles,
        }
    }
}

/// Labels of per-signal metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SignalLabels {
    /// The signal.
    pub signal: SignalLabel,
}

/// Labels of refusals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The signal.
    pub signal: SignalLabel,
    /// `log_full`, `disk_full` (the log's disk), `too_large`, `unavailable`, or `busy` (too many
    /// requests in flight).
    pub reason: &'static str,
}

/// Labels of per-sink metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SinkLabels {
    /// The sink's name in the pipeline.
    pub sink: String,
}

/// Labels of per-index metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IndexLabels {
    /// `logs` or `spans`.
    pub index: &'static str,
}

/// Labels of query metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueryLabels {
    /// The route template (`/api/v1/logs/search`), never the raw path.
    pub route: String,
}

/// Every metric of the collector itself.
#[derive(Debug, Clone)]
pub struct CollectorMetrics {
    /// Export requests received.
    pub requests: Family<SignalLabels, Counter>,
    /// Items written to the log.
    pub accepted_items: Family<SignalLabels, Counter>,
    /// Items rejected by the limits (reported as partial success).
    pub rejected_items: Family<SignalLabels, Counter>,
    /// Requests refused whole, by reason.
    pub refused_requests: Family<RefusalLabels, Counter>,
    /// Requests that did not decode.
    pub malformed_requests: Family<SignalLabels, Counter>,
    /// Items per accepted request.
    pub batch_items: Family<SignalLabels, Histogram>,
    /// Bytes of the retained log.
    pub wal_bytes: Gauge,
    /// Segments of the retained log.
    pub wal_segments: Gauge,
    /// Records found corrupted or torn and skipped.
    pub wal_corrupted_records: Gauge,
    /// Records a sink has not finished yet.
    pub sink_lag_records: Family<SinkLabels, Gauge>,
    /// Bytes a sink has not finished yet.
    pub sink_lag_bytes: Family<SinkLabels, Gauge>,
    /// Batches a sink wrote.
    pub sink_batches: Family<SinkLabels, Counter>,
    /// Items a sink wrote.
    pub sink_items: Family<SinkLabels, Counter>,
    /// Batches a sink dropped (undecodable, or a failure it cannot retry).
    pub sink_dropped: Family<SinkLabels, Counter>,
    /// Writes a sink retried.
    pub sink_retries: Family<SinkLabels, Counter>,
    /// Seconds per sink write.
    pub sink_write_seconds: Family<SinkLabels, Histogram>,
    /// The log's limit in bytes.
    pub wal_max_bytes: Gauge,
    /// Bytes on disk per index.
    pub index_bytes: Family<IndexLabels, Gauge>,
    /// The size limit of each index (its retention drops the oldest day past it).
    pub index_max_bytes: Family<IndexLabels, Gauge>,
    /// Seconds per query, by route.
    pub query_seconds: Family<QueryLabels, Histogram>,
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            accepted_items: Family::default(),
            rejected_items: Family::default(),
            refused_requests: Family::default(),
            malformed_requests: Family::default(),
            batch_items: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 4.0, 10))
            }),
            wal_bytes: Gauge::default(),
            wal_segments: Gauge::default(),
            wal_corrupted_records: Gauge::default(),
            sink_lag_records: Family::default(),
            sink_lag_bytes: Family::default(),
            sink_batches: Family::default(),
            sink_items: Family::default(),
            sink_dropped: Family::default(),
            sink_retries: Family::default(),
            sink_write_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 4.0, 10))
            }),
            wal_max_bytes: Gauge::default(),
            index_bytes: Family::default(),
            index_max_bytes: Family::default(),
            // 0.5 ms to about 30 s.
            query_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_5, 4.0, 9))
            }),
        }
    }
}

impl CollectorMetrics {
    /// Registers every metric under `registry` (give it the prefix `collector`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "received_requests",
            "OTLP export requests received",
            self.requests.clone(),
        );
        registry.register(
            "accepted_items",
            "Spans, data points and log records written to the log",
            self.accepted_items.clone(),
        );
        registry.register(
            "rejected_items",
            "Items rejected by the size limits (partial success)",
            self.rejected_items.clone(),
        );
        registry.register(
            "refused_requests",
            "Requests refused whole, by reason",
            self.refused_requests.clone(),
        );
        registry.register(
            "malformed_requests",
            "Requests that did not decode",
            self.malformed_requests.clone(),
        );
        registry.register(
            "batch_items",
            "Items per accepted request",
            self.batch_items.clone(),
        );
        registry.register(
            "wal_bytes",
            "Bytes of the retained write-ahead log",
            self.wal_bytes.clone(),
        );
        registry.register(
            "wal_segments",
            "Segments of the retained write-ahead log",
            self.wal_segments.clone(),
        );
        registry.register(
            "wal_corrupted_records",
            "Log records found corrupted or torn and skipped",
            self.wal_corrupted_records.clone(),
        );
        registry.register(
            "sink_lag_records",
            "Log records a sink has not finished",
            self.sink_lag_records.clone(),
        );
        registry.register(
            "sink_lag_bytes",
            "Log bytes a sink has not finished",
            self.sink_lag_bytes.clone(),
        );
        registry.register(
            "sink_batches",
            "Batches written by a sink",
            self.sink_batches.clone(),
        );
        registry.register(
            "sink_items",
            "Items written by a sink",
            self.sink_items.clone(),
        );
        registry.register(
            "sink_dropped_batches",
            "Batches a sink dropped",
            self.sink_dropped.clone(),
        );
        registry.register(
            "sink_retries",
            "Sink writes retried",
            self.sink_retries.clone(),
        );
        registry.register(
            "sink_write_seconds",
            "Duration of one sink write",
            self.sink_write_seconds.clone(),
        );
        registry.register(
            "wal_max_bytes",
            "The write-ahead log's limit; past it, requests are refused",
            self.wal_max_bytes.clone(),
        );
        registry.register(
            "index_bytes",
            "Bytes on disk of the log or span index",
            self.index_bytes.clone(),
        );
        registry.register(
            "index_max_bytes",
            "Size limit of the log or span index; retention drops the oldest days past it",
            self.index_max_bytes.clone(),
        );
        registry.register(
            "query_seconds",
            "Duration of one query of the query API, by route",
            self.query_seconds.clone(),
        );
    }

    /// Copies a snapshot of the log's state into the gauges.
    pub fn observe_wal(&self, stats: &WalStats) {
        self.wal_bytes
            .set(i64::try_from(stats.bytes_on_disk).unwrap_or(i64::MAX));
        self.wal_segments
            .set(i64::try_from(stats.segments).unwrap_or(i64::MAX));
        self.wal_corrupted_records
            .set(i64::try_from(stats.corrupted_records).unwrap_or(i64::MAX));
        for sink in &stats.sinks {
            let labels = SinkLabels {
                sink: sink.sink.clone(),
            };
            self.sink_lag_records
                .get_or_create(&labels)
                .set(i64::try_from(sink.lag_records).unwrap_or(i64::MAX));
            self.sink_lag_bytes
                .get_or_create(&labels)
                .set(i64::try_from(sink.lag_bytes).unwrap_or(i64::MAX));
        }
    }
}
