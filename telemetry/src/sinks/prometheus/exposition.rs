//! The read side: the text a scrape of `/metrics` gets, in OpenMetrics 1.0 (with exemplars)
//! or the Prometheus text format 0.0.4 (without them), chosen from the `Accept` header.
//!
//! The OTLP series are written here rather than through prometheus-client's `Collector`:
//! in prometheus-client 0.26 an `Exemplar` can only be made by `CounterWithExemplar::inc_by`
//! or `HistogramWithExemplars::observe` (its fields are crate-private and it has no
//! constructor), so a collector cannot attach the exemplars OTLP sends to histogram buckets
//! whose counts it did not observe itself, and the crate has no summary type. The sink's own
//! metrics are prometheus-client metrics, encoded by that crate into the same response.

use std::fmt;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prometheus_client::registry::Registry;

use super::clock::Clock;
use super::naming::Kind;
use super::series::{Exemplar, Limits, Store, Value, is_stale, write_float};
use super::stats::{SinkMetrics, SinkStats, Tally};

/// The `Content-Type` of OpenMetrics text 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The prefix of the sink's own metrics in [`Exposition::render`].
const SELF_METRICS_PREFIX: &str = "telemetry";

/// A text exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpositionFormat {
    /// OpenMetrics 1.0 text: `# UNIT`, exemplars, `# EOF`. What Prometheus asks for first.
    OpenMetrics,
    /// Prometheus text 0.0.4: no exemplars; what `promtool check metrics` reads.
    PrometheusText,
}

impl ExpositionFormat {
    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            ExpositionFormat::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            ExpositionFormat::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
        }
    }

    /// The format a scrape's `Accept` header prefers: OpenMetrics when it is accepted with a
    /// weight at least that of `text/plain`, the Prometheus text format otherwise (no header,
    /// `*/*`, a browser).
    pub fn from_accept(accept: Option<&str>) -> Self {
        let mut openmetrics = 0.0f32;
        let mut text = 0.0f32;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let weight = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                openmetrics = openmetrics.max(weight);
            } else if media.eq_ignore_ascii_case("text/plain") {
                text = text.max(weight);
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            ExpositionFormat::OpenMetrics
        } else {
            ExpositionFormat::PrometheusText
        }
    }
}

/// The shared handle the `/metrics` endpoint renders from while the sink writes. Clones
/// share everything.
///
/// Rendering takes a read lock on the series for one pass over them (O(series), the output
/// string its only allocation apart from the sink's own metrics); a render can take
/// milliseconds for a large exposition, so an async handler calls it on a blocking thread.
#[derive(Clone)]
pub struct Exposition {
    shared: Arc<Shared>,
}

struct Shared {
    limits: Limits,
    clock: Arc<dyn Clock>,
    store: RwLock<Store>,
    metrics: SinkMetrics,
    /// The sink's own metrics under [`SELF_METRICS_PREFIX`], for [`Exposition::render`].
    self_registry: Registry,
    /// The length of the last render, to size the next one in one allocation.
    last_render_len: AtomicUsize,
}

impl fmt::Debug for Exposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exposition")
            .field("limits", &self.shared.limits)
            .field("clock", &self.shared.clock)
            .finish_non_exhaustive()
    }
}

impl Exposition {
    pub(crate) fn new(limits: Limits, clock: Arc<dyn Clock>) -> Self {
        let metrics = SinkMetrics::new();
        let mut self_registry = Registry::with_prefix(SELF_METRICS_PREFIX);
        metrics.register(&mut self_registry);
        Exposition {
            shared: Arc::new(Shared {
                limits,
                clock,
                store: RwLock::new(Store::default()),
                metrics,
                self_registry,
                last_render_len: AtomicUsize::new(0),
            }),
        }
    }

    /// The complete OpenMetrics exposition: the sink's own metrics (`telemetry_prometheus_sink_*`),
    /// every series written within `stale_after`, and `# EOF`.
    pub fn render(&self) -> String {
        self.render_as(ExpositionFormat::OpenMetrics)
    }

    /// The `Content-Type` of [`Exposition::render`]'s text.
    pub fn content_type(&self) -> &'static str {
        OPENMETRICS_CONTENT_TYPE
    }

    /// The complete exposition in `format`: for a server that honours `Accept` (see
    /// [`ExpositionFormat::from_accept`]).
    pub fn render_as(&self, format: ExpositionFormat) -> String {
        let mut out =
            String::with_capacity(self.shared.last_render_len.load(Ordering::Relaxed) + 1024);
        let encoded = match format {
            ExpositionFormat::OpenMetrics => prometheus_client::encoding::text::encode_registry(
                &mut out,
                &self.shared.self_registry,
            ),
            ExpositionFormat::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(
                    &mut out,
                    &self.shared.self_registry,
                )
            }
        };
        debug_assert!(encoded.is_ok(), "writing to a String cannot fail");
        self.encode_series(&mut out, format);
        if format == ExpositionFormat::OpenMetrics {
            out.push_str("# EOF\n");
        }
        self.shared
            .last_render_len
            .store(out.len(), Ordering::Relaxed);
        out
    }

    /// Appends only the OTLP series' metric families, without the sink's own metrics and
    /// without `# EOF`: for a server composing one response from several sources, which
    /// registers the sink's metrics in its own registry ([`Exposition::register_self_metrics`])
    /// and ends an OpenMetrics response with `# EOF` itself.
    pub fn encode_series(&self, out: &mut String, format: ExpositionFormat) {
        let now = self.shared.clock.now();
        let stale_after = self.shared.limits.stale_after;
        let store = self
            .shared
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, family) in &store.families {
            let mut described = false;
            for (labels, series) in &family.series {
                if is_stale(series, now, stale_after) {
                    continue;
                }
                if !described {
                    write_descriptor(
                        out,
                        name,
                        family.kind,
                        &family.help,
                        family.unit.as_deref(),
                        format,
                    );
                    described = true;
                }
                write_series(out, name, family.kind, labels, &series.value, format);
            }
        }
    }

    /// Registers the sink's own metrics (`prometheus_sink_*`) in the collector's
    /// self-metrics registry; the values are shared, so call it once.
    pub fn register_self_metrics(&self, registry: &mut Registry) {
        self.shared.metrics.register(registry);
    }

    /// The sink's own metrics now.
    pub fn stats(&self) -> SinkStats {
        self.shared.metrics.snapshot()
    }

    /// Applies one export request (the sink's write, on a blocking thread).
    pub(crate) fn write(&self, request: &ExportMetricsServiceRequest) {
        let now = self.shared.clock.now();
        let mut tally = Tally::default();
        let series = {
            let mut store = self
                .shared
                .store
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            store.write(request, &self.shared.limits, now, &mut tally);
            store.series_total()
        };
        self.shared.metrics.record(&tally, series);
    }
}

/// `# HELP`, `# TYPE` and, in OpenMetrics, `# UNIT`. The Prometheus text format names a
/// counter family with its `_total`, and has no info type (a gauge `_info` instead).
fn write_descriptor(
    out: &mut String,
    name: &str,
    kind: Kind,
    help: &str,
    unit: Option<&str>,
    format: ExpositionFormat,
) {
    let openmetrics = format == ExpositionFormat::OpenMetrics;
    let (suffix, type_name) = match kind {
        Kind::Counter => (if openmetrics { "" } else { "_total" }, "counter"),
        Kind::Gauge => ("", "gauge"),
        Kind::Histogram => ("", "histogram"),
        Kind::Summary => ("", "summary"),
        Kind::Info if openmetrics => ("", "info"),
        Kind::Info => ("_info", "gauge"),
    };
    let _ = write!(out, "# HELP {name}{suffix} ");
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if openmetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    let _ = writeln!(out, "\n# TYPE {name}{suffix} {type_name}");
    if openmetrics && let Some(unit) = unit {
        let _ = writeln!(out, "# UNIT {name} {unit}");
    }
}

fn write_series(
    out: &mut String,
    name: &str,
    kind: Kind,
    labels: &str,
    value: &Value,
    format: ExpositionFormat,
) {
    let openmetrics = format == ExpositionFormat::OpenMetrics;
    match value {
        Value::Number(number) if kind == Kind::Counter => {
            write_sample_name(out, name, "_total", labels, None);
            out.push(' ');
            write_float(out, number.value);
            if openmetrics && let Some(exemplar) = &number.exemplar {
                write_exemplar(out, exemplar);
            }
            out.push('\n');
        }
        Value::Number(number) => {
            write_sample_name(out, name, "", labels, None);
            out.push(' ');
            write_float(out, number.value);
            out.push('\n');
        }
        Value::Info => {
            write_sample_name(out, name, "_info", labels, None);
            out.push_str(" 1\n");
        }
        Value::Histogram(histogram) => {
            let mut cumulative = 0u64;
            for (bucket, count) in histogram.counts.iter().enumerate() {
                cumulative = cumulative.saturating_add(*count);
                let bound = histogram
                    .bounds
                    .get(bucket)
                    .copied()
                    .unwrap_or(f64::INFINITY);
                write_sample_name(out, name, "_bucket", labels, Some(("le", bound)));
                let _ = write!(out, " {cumulative}");
                if openmetrics && let Some(Some(exemplar)) = histogram.exemplars.get(bucket) {
                    write_exemplar(out, exemplar);
                }
                out.push('\n');
            }
            write_sample_name(out, name, "_count", labels, None);
            let _ = writeln!(out, " {}", histogram.count);
            if let Some(sum) = histogram.sum {
                write_sample_name(out, name, "_sum", labels, None);
                out.push(' ');
                write_float(out, sum);
                out.push('\n');
            }
        }
        Value::Summary(summary) => {
            for (quantile, value) in summary.quantiles.iter() {
                write_sample_name(out, name, "", labels, Some(("quantile", *quantile)));
                out.push(' ');
                write_float(out, *value);
                out.push('\n');
            }
            write_sample_name(out, name, "_count", labels, None);
            let _ = writeln!(out, " {}", summary.count);
            write_sample_name(out, name, "_sum", labels, None);
            out.push(' ');
            write_float(out, summary.sum);
            out.push('\n');
        }
    }
}

/// `name_suffix{labels,extra="x"}`, without braces when there are no labels.
fn write_sample_name(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<(&str, f64)>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    out.push_str(labels);
    if let Some((label, value)) = extra {
        if !labels.is_empty() {
            out.push(',');
        }
        out.push_str(label);
        out.push_str("=\"");
        write_float(out, value);
        out.push('"');
    }
    out.push('}');
}

/// ` # {trace_id="…",span_id="…"} value timestamp` (OpenMetrics only).
fn write_exemplar(out: &mut String, exemplar: &Exemplar) {
    out.push_str(" # {trace_id=\"");
    write_hex(out, &exemplar.trace_id);
    if let Some(span_id) = &exemplar.span_id {
        out.push_str("\",span_id=\"");
        write_hex(out, span_id);
    }
    out.push_str("\"} ");
    write_float(out, exemplar.value);
    if exemplar.time_unix_nano != 0 {
        let seconds = exemplar.time_unix_nano / 1_000_000_000;
        let millis = exemplar.time_unix_nano % 1_000_000_000 / 1_000_000;
        let _ = write!(out, " {seconds}.{millis:03}");
    }
}

fn write_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_choose_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(
            ExpositionFormat::from_accept(Some(prometheus)),
            ExpositionFormat::OpenMetrics
        );
        let text_first =
            "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5";
        assert_eq!(
            ExpositionFormat::from_accept(Some(text_first)),
            ExpositionFormat::PrometheusText
        );
        assert_eq!(
            ExpositionFormat::from_accept(Some("application/openmetrics-text; q=0")),
            ExpositionFormat::PrometheusText
        );
        assert_eq!(
            ExpositionFormat::from_accept(Some("*/*")),
            ExpositionFormat::PrometheusText
        );
        assert_eq!(
            ExpositionFormat::from_accept(None),
            ExpositionFormat::PrometheusText
        );
        assert_eq!(
            ExpositionFormat::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            ExpositionFormat::PrometheusText.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }

    #[test]
    fn descriptors_differ_by_format() {
        let mut om = String::new();
        write_descriptor(
            &mut om,
            "io_bytes",
            Kind::Counter,
            "Bytes \"moved\"\\\nin",
            Some("bytes"),
            ExpositionFormat::OpenMetrics,
        );
        assert_eq!(
            om,
            "# HELP io_bytes Bytes \\\"moved\\\"\\\\\\nin\n# TYPE io_bytes counter\n# UNIT io_bytes bytes\n"
        );
        let mut text = String::new();
        write_descriptor(
            &mut text,
            "io_bytes",
            Kind::Counter,
            "Bytes \"moved\"",
            Some("bytes"),
            ExpositionFormat::PrometheusText,
        );
        assert_eq!(
            text,
            "# HELP io_bytes_total Bytes \"moved\"\n# TYPE io_bytes_total counter\n"
        );
        let mut info = String::new();
        write_descriptor(
            &mut info,
            "target",
            Kind::Info,
            "Target metadata",
            None,
            ExpositionFormat::PrometheusText,
        );
        assert_eq!(
            info,
            "# HELP target_info Target metadata\n# TYPE target_info gauge\n"
        );
    }

    #[test]
    fn exemplars_write_hex_ids_and_seconds() {
        let mut out = String::new();
        let exemplar = Exemplar {
            trace_id: [0xab; 16],
            span_id: Some([0x01; 8]),
            value: 0.25,
            time_unix_nano: 1_700_000_000_123_456_789,
        };
        write_exemplar(&mut out, &exemplar);
        assert_eq!(
            out,
            " # {trace_id=\"abababababababababababababababab\",span_id=\"0101010101010101\"} 0.25 1700000000.123"
        );
        out.clear();
        write_exemplar(
            &mut out,
            &Exemplar {
                span_id: None,
                time_unix_nano: 0,
                ..exemplar
            },
        );
        assert_eq!(
            out,
            " # {trace_id=\"abababababababababababababababab\"} 0.25"
        );
    }

    #[test]
    fn samples_without_labels_have_no_braces() {
        let mut out = String::new();
        write_sample_name(&mut out, "up", "", "", None);
        out.push('|');
        write_sample_name(&mut out, "h", "_bucket", "", Some(("le", 0.5)));
        out.push('|');
        write_sample_name(
            &mut out,
            "h",
            "_bucket",
            "job=\"a\"",
            Some(("le", f64::INFINITY)),
        );
        assert_eq!(
            out,
            "up|h_bucket{le=\"0.5\"}|h_bucket{job=\"a\",le=\"+Inf\"}"
        );
    }
}
