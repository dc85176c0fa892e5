//! Bounded, counted export. The SDK's batch processors drop what does not fit in their queue
//! but keep the count to themselves (0.33); here a gate in front of each processor admits at
//! most `queue` items that have not yet left for the collector, so the processor itself never
//! drops, and everything turned away at the gate or failed in export is counted in
//! `fertivision.telemetry.lost` and reported on the local log, at most once a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::Context;
use opentelemetry::InstrumentationScope;
use opentelemetry::logs::Severity;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchLogProcessor, LogBatch, LogExporter, LogProcessor, SdkLogRecord,
};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};

/// Items admitted but not yet handed to an export, per signal.
#[derive(Debug)]
pub(crate) struct Gate {
    signal: &'static str,
    capacity: usize,
    in_flight: AtomicUsize,
}

impl Gate {
    pub(crate) fn new(signal: &'static str, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            signal,
            capacity,
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Takes a slot, or counts a loss.
    fn admit(&self) -> bool {
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            lost(self.signal, "queue_full", 1);
        }
        admitted
    }

    /// `n` items left the queue for an export.
    fn release(&self, n: usize) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

/// Counts `n` lost items of `signal` and says so on the local log (not exported: the target
/// is filtered out of the export layers), at most once a minute.
pub(crate) fn lost(signal: &'static str, reason: &'static str, n: u64) {
    super::metrics()
        .telemetry_lost
        .add(n as f64, &[signal, reason]);
    static LAST_WARNING: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            target: "fertivision::otel",
            signal,
            reason,
            items = n,
            "telemetry lost on the way to the collector (counted in fertivision_telemetry_lost_total; this warning repeats at most once a minute)"
        );
    }
}

/// A span exporter that frees gate slots as batches leave and counts failed exports.
#[derive(Debug)]
pub(crate) struct CountedSpans<E> {
    pub(crate) inner: E,
    pub(crate) gate: Arc<Gate>,
}

impl<E: SpanExporter> SpanExporter for CountedSpans<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let n = batch.len();
        self.gate.release(n);
        let export = self.inner.export(batch);
        async move {
            let outcome = export.await;
            if outcome.is_err() {
                lost("traces", "export_failed", n as u64);
            }
            outcome
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A batch span processor behind a gate.
#[derive(Debug)]
pub(crate) struct GatedSpans {
    pub(crate) inner: BatchSpanProcessor,
    pub(crate) gate: Arc<Gate>,
}

impl SpanProcessor for GatedSpans {
    fn on_start(&self, span: &mut Span, context: &Context) {
        self.inner.on_start(span, context);
    }

    fn on_end(&self, span: SpanData) {
        if self.gate.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A log exporter that frees gate slots as batches leave and counts failed exports.
#[derive(Debug)]
pub(crate) struct CountedLogs<E> {
    pub(crate) inner: E,
    pub(crate) gate: Arc<Gate>,
}

impl<E: LogExporter> LogExporter for CountedLogs<E> {
    fn export(&self, batch: LogBatch<'_>) -> impl Future<Output = OTelSdkResult> + Send {
        let n = batch.iter().count();
        self.gate.release(n);
        let export = self.inner.export(batch);
        async move {
            let outcome = export.await;
            if outcome.is_err() {
                lost("logs", "export_failed", n as u64);
            }
            outcome
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A batch log processor behind a gate.
#[derive(Debug)]
pub(crate) struct GatedLogs {
    pub(crate) inner: BatchLogProcessor,
    pub(crate) gate: Arc<Gate>,
    /// `telemetry.logs_follow_sampling`: see [`left_out_by_sampling`].
    pub(crate) follow_sampling: bool,
}

/// Whether a record is detail of a trace that head sampling left out: below `WARN` and
/// inside a trace not flagged sampled. Such records are not exported when logs follow
/// sampling, so a deployment exporting a tenth of its traces also indexes about a tenth of
/// their routine logs; warnings, errors and records outside any trace always go. Not a loss:
/// nothing counts them.
pub(crate) fn left_out_by_sampling(record: &SdkLogRecord) -> bool {
    let detail = record
        .severity_number()
        .is_none_or(|severity| severity < Severity::Warn);
    let unsampled = record
        .trace_context()
        .and_then(|context| context.trace_flags)
        .is_some_and(|flags| !flags.is_sampled());
    detail && unsampled
}

impl LogProcessor for GatedLogs {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        if self.follow_sampling && left_out_by_sampling(record) {
            return;
        }
        if self.gate.admit() {
            self.inner.emit(record, scope);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_up_to_its_capacity_and_counts_the_rest() {
        let gate = Gate::new("test", 2);
        let lost_before = lost_count();
        assert!(gate.admit());
        assert!(gate.admit());
        assert!(!gate.admit());
        gate.release(1);
        assert!(gate.admit());
        assert!(!gate.admit());
        gate.release(5);
        assert_eq!(gate.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(lost_count() - lost_before, 2.0);
    }

    #[test]
    fn only_detail_of_unsampled_traces_is_left_out() {
        use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
        use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

        let logger = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .build()
            .logger("test");
        let record = |severity: Option<Severity>, flags: Option<Option<TraceFlags>>| {
            let mut record = logger.create_log_record();
            if let Some(severity) = severity {
                record.set_severity_number(severity);
            }
            if let Some(flags) = flags {
                record.set_trace_context(TraceId::from(7), SpanId::from(9), flags);
            }
            left_out_by_sampling(&record)
        };
        let unsampled = Some(Some(TraceFlags::NOT_SAMPLED));
        let sampled = Some(Some(TraceFlags::SAMPLED));
        assert!(record(Some(Severity::Info), unsampled));
        assert!(record(Some(Severity::Debug), unsampled));
        assert!(record(None, unsampled), "no severity counts as detail");
        assert!(!record(Some(Severity::Warn), unsampled));
        assert!(!record(Some(Severity::Error), unsampled));
        assert!(!record(Some(Severity::Info), sampled));
        assert!(!record(Some(Severity::Info), None), "outside any trace");
        assert!(!record(Some(Severity::Info), Some(None)), "flags unknown");
    }

    fn lost_count() -> f64 {
        use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
        let request = super::super::metrics()
            .meter
            .export(opentelemetry_proto::tonic::resource::v1::Resource::default());
        request.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .filter(|m| m.name == "fertivision.telemetry.lost")
            .filter_map(|m| match &m.data {
                Some(metric::Data::Sum(sum)) => Some(sum),
                _ => None,
            })
            .flat_map(|sum| &sum.data_points)
            .filter(|p| {
                p.attributes.iter().any(|a| {
                    a.value.as_ref().and_then(|v| v.value.clone())
                        == Some(
                            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                                "test".into(),
                            ),
                        )
                })
            })
            .map(|p| match p.value {
                Some(number_data_point::Value::AsDouble(v)) => v,
                _ => 0.0,
            })
            .sum()
    }
}
