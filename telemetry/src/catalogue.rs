//! The metric catalogue: every metric the platform records is declared once, as a
//! [`MetricDef`] (name, kind, unit, labels, help, the SLO it serves), and recorded through that
//! declaration by a [`Meter`]. The generators of dashboards and alert rules read the same
//! declarations, so a renamed metric cannot leave a panel or a rule behind.
//!
//! The [`Meter`] aggregates in the process, cumulatively (OTLP's cumulative temporality), and
//! turns its state into an OTLP `ExportMetricsServiceRequest`. It is ours rather than the
//! OpenTelemetry SDK's because the SDK (0.33) keeps no exemplars: here every histogram bucket
//! keeps the trace and span id of its latest measurement, which the collector's Prometheus
//! sink shows as the bucket's exemplar, so a slow bucket links to a trace.
//!
//! Bounds: an instrument keeps at most [`MAX_SERIES`] label sets; measurements for more are
//! dropped and counted ([`Meter::dropped`]), so a label that turns out unbounded cannot
//! exhaust memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Gauge as OtlpGauge, Histogram as OtlpHistogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exemplar,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::sinks::prometheus::naming::{Source, metric_name};

/// Label sets one instrument keeps at most.
pub const MAX_SERIES: usize = 2_000;

/// How a metric aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonic sum (requests, errors, bytes).
    Counter,
    /// A sum that goes up and down (requests in flight).
    UpDownCounter,
    /// A sampled value (queue depth, pool connections in use).
    Gauge,
    /// A distribution over explicit buckets (durations), with exemplars.
    Histogram,
}

/// One metric, as declared in a catalogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDef {
    /// The OpenTelemetry name (`http.server.request.duration`, `fertivision.patients`).
    pub name: &'static str,
    /// How it aggregates.
    pub kind: MetricKind,
    /// UCUM unit: `s`, `By`, `1`, or an annotation such as `{request}`.
    pub unit: &'static str,
    /// Label (attribute) keys, in the order measurements give their values.
    pub labels: &'static [&'static str],
    /// One sentence on what it counts.
    pub help: &'static str,
    /// The service-level objectives it is the indicator of (none for a diagnostic metric);
    /// the alert generator turns each into burn-rate alerts.
    pub slos: &'static [Slo],
    /// Upper bounds of the histogram buckets (ascending); empty for other kinds.
    pub buckets: &'static [f64],
}

impl MetricDef {
    /// The family name the collector's Prometheus sink gives it (`http.server.request.duration`
    /// in seconds is `http_server_request_duration_seconds`). A counter's samples add `_total`,
    /// a histogram's `_bucket`, `_sum` and `_count`.
    pub fn prometheus_name(&self) -> String {
        let source = match self.kind {
            MetricKind::Counter => Source::MonotonicSum,
            MetricKind::UpDownCounter => Source::NonMonotonicSum,
            MetricKind::Gauge => Source::Gauge,
            MetricKind::Histogram => Source::Histogram,
        };
        metric_name(self.name, self.unit, source)
            .map(|name| name.family)
            .unwrap_or_default()
    }

    /// What is wrong with this declaration's SLOs, if anything: a matcher or an error label
    /// that is not one of its labels, a latency SLO on something other than a histogram or
    /// with a threshold that is not a bucket bound, an objective outside (0, 1).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for slo in self.slos {
            let mut label = |key: &str| {
                if !self.labels.contains(&key) {
                    problems.push(format!(
                        "{}: SLO {} names the label {key}, which it does not have",
                        self.name, slo.id
                    ));
                }
            };
            for (key, _) in slo.events {
                label(key);
            }
            match slo.indicator {
                Indicator::Errors { label: key, .. } => {
                    label(key);
                    if !matches!(self.kind, MetricKind::Counter | MetricKind::Histogram) {
                        problems.push(format!(
                            "{}: SLO {} counts events, which a {:?} does not",
                            self.name, slo.id, self.kind
                        ));
                    }
                }
                Indicator::Latency { threshold } => {
                    if self.kind != MetricKind::Histogram {
                        problems.push(format!(
                            "{}: latency SLO {} needs a histogram",
                            self.name, slo.id
                        ));
                    }
                    if !self.buckets.contains(&threshold) {
                        problems.push(format!(
                            "{}: latency SLO {} threshold {threshold} s is not a bucket bound",
                            self.name, slo.id
                        ));
                    }
                }
            }
            if !(slo.objective > 0.0 && slo.objective < 1.0) {
                problems.push(format!(
                    "{}: SLO {} objective {} is not between 0 and 1",
                    self.name, slo.id, slo.objective
                ));
            }
        }
        problems
    }

    /// The Prometheus label name the collector gives one of its label keys
    /// (`http.route` is `http_route`).
    pub fn prometheus_label(key: &str) -> String {
        crate::sinks::prometheus::naming::label_name(key)
            .map(|name| name.into_owned())
            .unwrap_or_default()
    }

    /// The name of its main series in PromQL: `_total` for a counter, `_bucket` for a
    /// histogram, the family name otherwise.
    pub fn prometheus_series(&self) -> String {
        let family = self.prometheus_name();
        match self.kind {
            MetricKind::Counter => format!("{family}_total"),
            MetricKind::Histogram => format!("{family}_bucket"),
            MetricKind::UpDownCounter | MetricKind::Gauge => family,
        }
    }
}

/// A service-level objective: the share of a metric's events that must be good, over the
/// rolling 30 days that error budgets are counted in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// A short identifier, unique in the catalogue: `api-availability`.
    pub id: &'static str,
    /// What it promises, in one sentence a clinic would understand.
    pub description: &'static str,
    /// The fraction of events that must be good: `0.999`.
    pub objective: f64,
    /// Which of the metric's events count, as label matchers ANDed together: (label key,
    /// regular expression). Empty: all of them.
    pub events: &'static [(&'static str, &'static str)],
    /// How a counted event is judged good or bad.
    pub indicator: Indicator,
}

/// How an [`Slo`] tells a good event from a bad one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Indicator {
    /// Bad when the label `label` matches the regular expression `bad` (a 5xx status, a dead
    /// job). For a counter, or for the `_count` of a histogram.
    Errors {
        /// The label key (OpenTelemetry name).
        label: &'static str,
        /// The regular expression of bad values.
        bad: &'static str,
    },
    /// Good when it took at most `threshold` seconds, which must be one of the histogram's
    /// bucket bounds (the `le` the rules read).
    Latency {
        /// Seconds.
        threshold: f64,
    },
}

impl Slo {
    /// The error budget: the fraction of events allowed to be bad, without float noise
    /// (`0.001` for 99.9 %, not `0.0010000000000000009`), as rules and panels write it.
    pub fn budget(&self) -> f64 {
        ((1.0 - self.objective) * 1e9).round() / 1e9
    }
}

/// The trace a measurement was made in: the exemplar of a histogram bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRef {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// The span id.
    pub span_id: [u8; 8],
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    value: f64,
    time_ns: u64,
    trace: TraceRef,
}

#[derive(Debug)]
enum Series {
    Number(f64),
    Histogram {
        counts: Vec<u64>,
        sum: f64,
        count: u64,
        exemplars: Vec<Option<Sample>>,
    },
}

#[derive(Debug)]
struct Instrument {
    def: &'static MetricDef,
    /// By the label values joined with U+001F: the values and the series.
    series: Mutex<HashMap<String, (Vec<String>, Series)>>,
}

#[derive(Debug)]
struct MeterInner {
    start_ns: u64,
    instruments: Mutex<Vec<Arc<Instrument>>>,
    dropped: AtomicU64,
}

/// Records the metrics of one process through their declarations; cheap to clone.
#[derive(Debug, Clone)]
pub struct Meter {
    inner: Arc<MeterInner>,
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Meter {
    /// A meter with nothing recorded; cumulative series start now.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(MeterInner {
                start_ns: now_ns(),
                instruments: Mutex::new(Vec::new()),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    fn instrument(&self, def: &'static MetricDef, kinds: &[MetricKind]) -> Arc<Instrument> {
        assert!(
            kinds.contains(&def.kind),
            "{} is a {:?}, not one of {kinds:?}",
            def.name,
            def.kind
        );
        let mut instruments = self.inner.instruments.lock().expect("not poisoned");
        if let Some(found) = instruments.iter().find(|i| std::ptr::eq(i.def, def)) {
            return Arc::clone(found);
        }
        let instrument = Arc::new(Instrument {
            def,
            series: Mutex::new(HashMap::new()),
        });
        instruments.push(Arc::clone(&instrument));
        instrument
    }

    /// The counter `def` (a [`MetricKind::Counter`]; anything else is a programming error
    /// and panics).
    pub fn counter(&self, def: &'static MetricDef) -> Counter {
        Counter {
            instrument: self.instrument(def, &[MetricKind::Counter]),
            meter: self.clone(),
        }
    }

    /// The gauge or up-down counter `def`.
    pub fn gauge(&self, def: &'static MetricDef) -> Gauge {
        Gauge {
            instrument: self.instrument(def, &[MetricKind::Gauge, MetricKind::UpDownCounter]),
            meter: self.clone(),
        }
    }

    /// The histogram `def`.
    pub fn histogram(&self, def: &'static MetricDef) -> Histogram {
        Histogram {
            instrument: self.instrument(def, &[MetricKind::Histogram]),
            meter: self.clone(),
        }
    }

    /// Measurements dropped: over [`MAX_SERIES`], or with the wrong number of labels.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Applies `change` to the series of `labels`, creating it with `new` when bounds allow.
    fn update(
        &self,
        instrument: &Instrument,
        labels: &[&str],
        new: impl FnOnce() -> Series,
        change: impl FnOnce(&mut Series),
    ) {
        if labels.len() != instrument.def.labels.len() {
            debug_assert!(
                false,
                "{} takes labels {:?}, got {labels:?}",
                instrument.def.name, instrument.def.labels
            );
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        thread_local! {
            /// The key being looked up, reused: a measurement allocates only for a new series.
            static KEY: RefCell<String> = const { RefCell::new(String::new()) };
        }
        KEY.with_borrow_mut(|key| {
            key.clear();
            for (i, label) in labels.iter().enumerate() {
                if i > 0 {
                    key.push('\u{1f}');
                }
                key.push_str(label);
            }
            let mut series = instrument.series.lock().expect("not poisoned");
            if let Some((_, existing)) = series.get_mut(key.as_str()) {
                change(existing);
                return;
            }
            if series.len() >= MAX_SERIES {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut created = new();
            change(&mut created);
            let values = labels.iter().map(|l| (*l).to_owned()).collect();
            series.insert(key.clone(), (values, created));
        });
    }

    /// Adds `delta` to a number series.
    fn add(&self, instrument: &Instrument, delta: f64, labels: &[&str]) {
        self.update(
            instrument,
            labels,
            || Series::Number(0.0),
            |s| {
                if let Series::Number(v) = s {
                    *v += delta;
                }
            },
        );
    }

    /// Everything recorded so far as one OTLP request from `resource`.
    pub fn export(&self, resource: Resource) -> ExportMetricsServiceRequest {
        let now = now_ns();
        let instruments: Vec<Arc<Instrument>> =
            self.inner.instruments.lock().expect("not poisoned").clone();
        let metrics = instruments
            .iter()
            .map(|instrument| self.metric(instrument, now))
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "fertivision".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn metric(&self, instrument: &Instrument, now: u64) -> Metric {
        let def = instrument.def;
        let start = self.inner.start_ns;
        let series = instrument.series.lock().expect("not poisoned");
        let attributes = |key: &[String]| -> Vec<KeyValue> {
            def.labels
                .iter()
                .zip(key)
                .map(|(k, v)| KeyValue {
                    key: (*k).to_owned(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(v.clone())),
                    }),
                    ..Default::default()
                })
                .collect()
        };
        let numbers = || -> Vec<NumberDataPoint> {
            series
                .values()
                .filter_map(|(key, s)| match s {
                    Series::Number(v) => Some(NumberDataPoint {
                        attributes: attributes(key),
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsDouble(*v)),
                        ..Default::default()
                    }),
                    Series::Histogram { .. } => None,
                })
                .collect()
        };
        let cumulative = AggregationTemporality::Cumulative as i32;
        let data = match def.kind {
            MetricKind::Counter | MetricKind::UpDownCounter => metric::Data::Sum(Sum {
                data_points: numbers(),
                aggregation_temporality: cumulative,
                is_monotonic: def.kind == MetricKind::Counter,
            }),
            MetricKind::Gauge => metric::Data::Gauge(OtlpGauge {
                data_points: numbers(),
            }),
            MetricKind::Histogram => metric::Data::Histogram(OtlpHistogram {
                data_points: series
                    .values()
                    .filter_map(|(key, s)| match s {
                        Series::Histogram {
                            counts,
                            sum,
                            count,
                            exemplars,
                        } => Some(HistogramDataPoint {
                            attributes: attributes(key),
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            count: *count,
                            sum: Some(*sum),
                            bucket_counts: counts.clone(),
                            explicit_bounds: def.buckets.to_vec(),
                            exemplars: exemplars.iter().flatten().map(otlp_exemplar).collect(),
                            ..Default::default()
                        }),
                        Series::Number(_) => None,
                    })
                    .collect(),
                aggregation_temporality: cumulative,
            }),
        };
        Metric {
            name: def.name.to_owned(),
            description: def.help.to_owned(),
            unit: def.unit.to_owned(),
            metadata: Vec::new(),
            data: Some(data),
        }
    }
}

fn otlp_exemplar(sample: &Sample) -> Exemplar {
    Exemplar {
        filtered_attributes: Vec::new(),
        time_unix_nano: sample.time_ns,
        span_id: sample.trace.span_id.to_vec(),
        trace_id: sample.trace.trace_id.to_vec(),
        value: Some(exemplar::Value::AsDouble(sample.value)),
    }
}

/// A monotonic counter.
#[derive(Debug, Clone)]
pub struct Counter {
    instrument: Arc<Instrument>,
    meter: Meter,
}

impl Counter {
    /// Adds `value` (negative values are ignored: a counter only grows).
    pub fn add(&self, value: f64, labels: &[&str]) {
        if value.is_nan() || value < 0.0 {
            return;
        }
        self.meter.add(&self.instrument, value, labels);
    }
}

/// A gauge (set) or an up-down counter (add).
#[derive(Debug, Clone)]
pub struct Gauge {
    instrument: Arc<Instrument>,
    meter: Meter,
}

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: f64, labels: &[&str]) {
        self.meter.update(
            &self.instrument,
            labels,
            || Series::Number(0.0),
            |s| *s = Series::Number(value),
        );
    }

    /// Adds `delta` (negative to go down).
    pub fn add(&self, delta: f64, labels: &[&str]) {
        self.meter.add(&self.instrument, delta, labels);
    }
}

/// A histogram over the buckets of its declaration.
#[derive(Debug, Clone)]
pub struct Histogram {
    instrument: Arc<Instrument>,
    meter: Meter,
}

impl Histogram {
    /// Records `value`; `trace` becomes the exemplar of the bucket it falls in.
    pub fn record(&self, value: f64, labels: &[&str], trace: Option<TraceRef>) {
        if value.is_nan() {
            return;
        }
        let bounds = self.instrument.def.buckets;
        // Bucket i holds (bounds[i-1], bounds[i]]; the last one everything above.
        let bucket = bounds.partition_point(|bound| *bound < value);
        self.meter.update(
            &self.instrument,
            labels,
            || Series::Histogram {
                counts: vec![0; bounds.len() + 1],
                sum: 0.0,
                count: 0,
                exemplars: vec![None; bounds.len() + 1],
            },
            |s| {
                if let Series::Histogram {
                    counts,
                    sum,
                    count,
                    exemplars,
                } = s
                {
                    counts[bucket] += 1;
                    *sum += value;
                    *count += 1;
                    if let Some(trace) = trace {
                        exemplars[bucket] = Some(Sample {
                            value,
                            time_ns: now_ns(),
                            trace,
                        });
                    }
                }
            },
        );
    }
}

/// Declares one of the collector's own metrics (registered under the `collector` prefix).
macro_rules! collector_metric {
    ($ident:ident, $name:literal, $kind:ident, $unit:literal, [$($label:literal),*], $help:literal) => {
        #[doc = $help]
        pub static $ident: MetricDef = MetricDef {
            name: $name,
            kind: MetricKind::$kind,
            unit: $unit,
            labels: &[$($label),*],
            help: $help,
            slos: &[],
            buckets: &[],
        };
    };
}

/// The collector's own metrics as its `/metrics` serves them ([`crate::metrics`] and each
/// Prometheus sink's statistics), for the dashboard and alert generators. Their buckets are
/// prometheus-client's, so `buckets` stays empty; a test renders the collector's registry and
/// checks that these are exactly the families it serves.
pub mod collector {
    use super::{MetricDef, MetricKind};

    collector_metric!(
        RECEIVED_REQUESTS,
        "collector.received_requests",
        Counter,
        "{request}",
        ["signal"],
        "OTLP export requests received, by signal."
    );
    collector_metric!(
        ACCEPTED_ITEMS,
        "collector.accepted_items",
        Counter,
        "{item}",
        ["signal"],
        "Spans, data points and log records written to the log, by signal."
    );
    collector_metric!(
        REJECTED_ITEMS,
        "collector.rejected_items",
        Counter,
        "{item}",
        ["signal"],
        "Items rejected by the size limits (partial success), by signal."
    );
    collector_metric!(
        REFUSED_REQUESTS,
        "collector.refused_requests",
        Counter,
        "{request}",
        ["signal", "reason"],
        "Requests refused whole, by signal and reason (log_full, disk_full, too_large, unavailable, busy)."
    );
    collector_metric!(
        MALFORMED_REQUESTS,
        "collector.malformed_requests",
        Counter,
        "{request}",
        ["signal"],
        "Requests that did not decode, by signal."
    );
    collector_metric!(
        BATCH_ITEMS,
        "collector.batch_items",
        Histogram,
        "{item}",
        ["signal"],
        "Items per accepted request, by signal."
    );
    collector_metric!(
        WAL_BYTES,
        "collector.wal_bytes",
        Gauge,
        "By",
        [],
        "Bytes of the retained write-ahead log."
    );
    collector_metric!(
        WAL_MAX_BYTES,
        "collector.wal_max_bytes",
        Gauge,
        "By",
        [],
        "The write-ahead log's limit; past it, requests are refused."
    );
    collector_metric!(
        WAL_SEGMENTS,
        "collector.wal_segments",
        Gauge,
        "{segment}",
        [],
        "Segments of the retained write-ahead log."
    );
    collector_metric!(
        WAL_CORRUPTED_RECORDS,
        "collector.wal_corrupted_records",
        Gauge,
        "{record}",
        [],
        "Log records found corrupted or torn and skipped."
    );
    collector_metric!(
        SINK_LAG_RECORDS,
        "collector.sink_lag_records",
        Gauge,
        "{record}",
        ["sink"],
        "Log records a sink has not finished."
    );
    collector_metric!(
        SINK_LAG_BYTES,
        "collector.sink_lag_bytes",
        Gauge,
        "By",
        ["sink"],
        "Log bytes a sink has not finished."
    );
    collector_metric!(
        SINK_BATCHES,
        "collector.sink_batches",
        Counter,
        "{batch}",
        ["sink"],
        "Batches written by a sink."
    );
    collector_metric!(
        SINK_ITEMS,
        "collector.sink_items",
        Counter,
        "{item}",
        ["sink"],
        "Items written by a sink."
    );
    collector_metric!(
        SINK_DROPPED_BATCHES,
        "collector.sink_dropped_batches",
        Counter,
        "{batch}",
        ["sink"],
        "Batches a sink dropped (data lost)."
    );
    collector_metric!(
        SINK_RETRIES,
        "collector.sink_retries",
        Counter,
        "{write}",
        ["sink"],
        "Sink writes retried."
    );
    collector_metric!(
        SINK_WRITE_SECONDS,
        "collector.sink_write_seconds",
        Histogram,
        "s",
        ["sink"],
        "Duration of one sink write."
    );
    collector_metric!(
        INDEX_BYTES,
        "collector.index_bytes",
        Gauge,
        "By",
        ["index"],
        "Bytes on disk of the log or span index."
    );
    collector_metric!(
        INDEX_MAX_BYTES,
        "collector.index_max_bytes",
        Gauge,
        "By",
        ["index"],
        "Size limit of the log or span index; retention drops the oldest days past it."
    );
    collector_metric!(
        QUERY_SECONDS,
        "collector.query_seconds",
        Histogram,
        "s",
        ["route"],
        "Duration of one query of the query API, by route template."
    );
    collector_metric!(
        PROMETHEUS_SINK_BATCHES,
        "collector.prometheus_sink_batches",
        Counter,
        "{batch}",
        ["sink"],
        "Metrics batches written to a Prometheus sink."
    );
    collector_metric!(
        PROMETHEUS_SINK_DATA_POINTS_WRITTEN,
        "collector.prometheus_sink_data_points_written",
        Counter,
        "{point}",
        ["sink"],
        "Data points a Prometheus sink applied to a series."
    );
    collector_metric!(
        PROMETHEUS_SINK_DROPPED_DATA_POINTS,
        "collector.prometheus_sink_dropped_data_points",
        Counter,
        "{point}",
        ["sink", "reason"],
        "Data points a Prometheus sink dropped, by reason."
    );
    collector_metric!(
        PROMETHEUS_SINK_DROPPED_SERIES,
        "collector.prometheus_sink_dropped_series",
        Counter,
        "{point}",
        ["sink"],
        "Data points a Prometheus sink dropped because their new series would pass its series cap."
    );
    collector_metric!(
        PROMETHEUS_SINK_TRUNCATED_LABEL_VALUES,
        "collector.prometheus_sink_truncated_label_values",
        Counter,
        "{value}",
        ["sink"],
        "Label values a Prometheus sink cut to its configured length."
    );
    collector_metric!(
        PROMETHEUS_SINK_SERIES,
        "collector.prometheus_sink_series",
        Gauge,
        "{series}",
        ["sink"],
        "Series a Prometheus sink holds."
    );

    /// Every declaration.
    pub static ALL: &[&MetricDef] = &[
        &RECEIVED_REQUESTS,
        &ACCEPTED_ITEMS,
        &REJECTED_ITEMS,
        &REFUSED_REQUESTS,
        &MALFORMED_REQUESTS,
        &BATCH_ITEMS,
        &WAL_BYTES,
        &WAL_MAX_BYTES,
        &WAL_SEGMENTS,
        &WAL_CORRUPTED_RECORDS,
        &SINK_LAG_RECORDS,
        &SINK_LAG_BYTES,
        &SINK_BATCHES,
        &SINK_ITEMS,
        &SINK_DROPPED_BATCHES,
        &SINK_RETRIES,
        &SINK_WRITE_SECONDS,
        &INDEX_BYTES,
        &INDEX_MAX_BYTES,
        &QUERY_SECONDS,
        &PROMETHEUS_SINK_BATCHES,
        &PROMETHEUS_SINK_DATA_POINTS_WRITTEN,
        &PROMETHEUS_SINK_DROPPED_DATA_POINTS,
        &PROMETHEUS_SINK_DROPPED_SERIES,
        &PROMETHEUS_SINK_TRUNCATED_LABEL_VALUES,
        &PROMETHEUS_SINK_SERIES,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    static REQUESTS: MetricDef = MetricDef {
        name: "http.server.request.duration",
        kind: MetricKind::Histogram,
        unit: "s",
        labels: &["http.route", "http.request.method"],
        help: "Duration of HTTP requests.",
        slos: &[],
        buckets: &[0.005, 0.01, 0.1],
    };
    static PATIENTS: MetricDef = MetricDef {
        name: "fertivision.patients",
        kind: MetricKind::Counter,
        unit: "{patient}",
        labels: &[],
        help: "Patients created.",
        slos: &[],
        buckets: &[],
    };
    static ACTIVE: MetricDef = MetricDef {
        name: "http.server.active_requests",
        kind: MetricKind::UpDownCounter,
        unit: "{request}",
        labels: &["http.request.method"],
        help: "Requests being served.",
        slos: &[],
        buckets: &[],
    };

    #[test]
    fn slo_declarations_are_checked_against_their_metric() {
        static GOOD: &[Slo] = &[Slo {
            id: "reads",
            description: "reads within 10 ms",
            objective: 0.99,
            events: &[("http.request.method", "GET")],
            indicator: Indicator::Latency { threshold: 0.01 },
        }];
        static BAD: &[Slo] = &[
            Slo {
                id: "slow",
                description: "",
                objective: 1.0,
                events: &[("tenant", "a")],
                indicator: Indicator::Latency { threshold: 0.02 },
            },
            Slo {
                id: "errors",
                description: "",
                objective: 0.9,
                events: &[],
                indicator: Indicator::Errors {
                    label: "status",
                    bad: "5..",
                },
            },
        ];
        let good = MetricDef {
            slos: GOOD,
            ..REQUESTS
        };
        assert_eq!(good.problems(), Vec::<String>::new());
        assert!((GOOD[0].budget() - 0.01).abs() < 1e-12);
        let bad = MetricDef {
            slos: BAD,
            ..REQUESTS
        };
        let problems = bad.problems().join("\n");
        for expected in [
            "SLO slow names the label tenant",
            "threshold 0.02 s is not a bucket bound",
            "objective 1 is not between 0 and 1",
            "SLO errors names the label status",
        ] {
            assert!(problems.contains(expected), "{expected} in {problems}");
        }
        let gauge = MetricDef {
            slos: GOOD,
            ..ACTIVE
        };
        assert!(gauge.problems().join(" ").contains("needs a histogram"));
        assert_eq!(MetricDef::prometheus_label("http.route"), "http_route");
    }

    #[test]
    fn prometheus_names_follow_the_collector() {
        assert_eq!(
            REQUESTS.prometheus_name(),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            REQUESTS.prometheus_series(),
            "http_server_request_duration_seconds_bucket"
        );
        assert_eq!(PATIENTS.prometheus_series(), "fertivision_patients_total");
        assert_eq!(ACTIVE.prometheus_name(), "http_server_active_requests");
    }

    #[test]
    fn histograms_bucket_sum_count_and_keep_the_latest_exemplar_per_bucket() {
        let meter = Meter::new();
        let h = meter.histogram(&REQUESTS);
        let trace = |n: u8| TraceRef {
            trace_id: [n; 16],
            span_id: [n; 8],
        };
        h.record(0.004, &["/a", "GET"], Some(trace(1)));
        h.record(0.005, &["/a", "GET"], Some(trace(2)));
        h.record(0.05, &["/a", "GET"], None);
        h.record(7.0, &["/a", "GET"], Some(trace(3)));
        h.record(0.001, &["/b", "POST"], None);
        let request = meter.export(Resource::default());
        let metric = &request.resource_metrics[0].scope_metrics[0].metrics[0];
        assert_eq!(metric.name, "http.server.request.duration");
        assert_eq!(metric.unit, "s");
        let Some(metric::Data::Histogram(histogram)) = &metric.data else {
            panic!("{metric:?}")
        };
        let a = histogram
            .data_points
            .iter()
            .find(|p| {
                p.attributes[0].value.as_ref().unwrap().value
                    == Some(any_value::Value::StringValue("/a".into()))
            })
            .unwrap();
        assert_eq!(a.bucket_counts, [2, 0, 1, 1]);
        assert_eq!(a.count, 4);
        assert!((a.sum.unwrap() - 7.059).abs() < 1e-9);
        assert_eq!(a.explicit_bounds, [0.005, 0.01, 0.1]);
        let exemplar_traces: Vec<u8> = a.exemplars.iter().map(|e| e.trace_id[0]).collect();
        assert_eq!(
            exemplar_traces,
            [2, 3],
            "latest per bucket, none without a trace"
        );
        assert_eq!(histogram.data_points.len(), 2);
    }

    #[test]
    fn counters_gauges_and_bounds() {
        let meter = Meter::new();
        let patients = meter.counter(&PATIENTS);
        patients.add(1.0, &[]);
        patients.add(2.0, &[]);
        patients.add(-5.0, &[]);
        let active = meter.gauge(&ACTIVE);
        active.add(1.0, &["GET"]);
        active.add(1.0, &["GET"]);
        active.add(-1.0, &["GET"]);
        let request = meter.export(Resource::default());
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        let value = |m: &Metric| match &m.data {
            Some(metric::Data::Sum(sum)) => (sum.is_monotonic, sum.data_points[0].value.unwrap()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            value(&metrics[0]),
            (true, number_data_point::Value::AsDouble(3.0))
        );
        assert_eq!(
            value(&metrics[1]),
            (false, number_data_point::Value::AsDouble(1.0))
        );

        let h = meter.histogram(&REQUESTS);
        for i in 0..MAX_SERIES + 10 {
            h.record(0.1, &[&i.to_string(), "GET"], None);
        }
        assert_eq!(meter.dropped(), 10);
    }

    #[test]
    #[should_panic(expected = "is a Counter")]
    fn a_declaration_is_recorded_as_its_kind() {
        let _ = Meter::new().histogram(&PATIENTS);
    }
}
