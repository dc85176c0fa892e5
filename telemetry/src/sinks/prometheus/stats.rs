//! The sink's own metrics, as prometheus-client metrics so that the collector's self-metrics
//! registry can hold them (see [`Exposition::register_self_metrics`](super::Exposition::register_self_metrics)).
//!
//! Every data point of a metrics batch ends up in exactly one of: `data_points_written`,
//! `dropped_data_points{reason}`, `dropped_series` (a point that would have created a series
//! over a cap).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a data point was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A kind the sink does not expose: exponential histograms.
    Unsupported,
    /// Malformed: no value, a negative or non-finite counter, unspecified temporality,
    /// buckets that do not match their bounds, a quantile outside [0, 1], a name with no
    /// valid character.
    Invalid,
    /// Older than what the series holds, or a delta overlapping what was already added
    /// (a redelivered batch).
    OutOfOrder,
    /// Its Prometheus name is taken by a metric of another type.
    TypeConflict,
}

impl DropReason {
    /// Every reason.
    pub const ALL: [DropReason; 4] = [
        DropReason::Unsupported,
        DropReason::Invalid,
        DropReason::OutOfOrder,
        DropReason::TypeConflict,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Unsupported => "unsupported",
            DropReason::Invalid => "invalid",
            DropReason::OutOfOrder => "out_of_order",
            DropReason::TypeConflict => "type_conflict",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What one batch did, counted without atomics, then added to the metrics at once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    pub written: u64,
    pub dropped: [u64; 4],
    pub dropped_series: u64,
    pub truncated_label_values: u64,
}

impl Tally {
    pub(crate) fn drop_points(&mut self, reason: DropReason, points: usize) {
        self.dropped[reason.index()] += points as u64;
    }

    #[cfg(test)]
    pub(crate) fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }
}

/// A snapshot of the sink's own metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Metrics batches written.
    pub batches: u64,
    /// Data points applied to a series.
    pub data_points_written: u64,
    /// Data points refused because they would have created a series over `max_series` or
    /// `max_series_per_metric`.
    pub dropped_series: u64,
    /// Label values cut to `max_label_value_bytes`.
    pub truncated_label_values: u64,
    /// Series held now (stale ones not yet swept included).
    pub series: u64,
    dropped: [u64; 4],
}

impl SinkStats {
    /// Data points dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }
}

type ReasonLabels = [(&'static str, &'static str); 1];

/// The metrics themselves; clones share the values.
#[derive(Debug, Clone)]
pub(crate) struct SinkMetrics {
    batches: Counter,
    data_points_written: Counter,
    dropped_data_points: Family<ReasonLabels, Counter>,
    /// The family's counters, one per reason, so a batch adds without hashing.
    dropped_by_reason: [Counter; 4],
    dropped_series: Counter,
    truncated_label_values: Counter,
    series: Gauge,
}

impl SinkMetrics {
    pub(crate) fn new() -> Self {
        let dropped_data_points = Family::<ReasonLabels, Counter>::default();
        // Created up front so every reason shows, at 0, before anything is dropped.
        let dropped_by_reason = DropReason::ALL
            .map(|reason| dropped_data_points.get_or_create_owned(&[("reason", reason.as_str())]));
        SinkMetrics {
            batches: Counter::default(),
            data_points_written: Counter::default(),
            dropped_data_points,
            dropped_by_reason,
            dropped_series: Counter::default(),
            truncated_label_values: Counter::default(),
            series: Gauge::default(),
        }
    }

    /// Adds one batch's tally; `series` is the store's size after it.
    pub(crate) fn record(&self, tally: &Tally, series: usize) {
        self.batches.inc();
        self.data_points_written.inc_by(tally.written);
        for (counter, dropped) in self.dropped_by_reason.iter().zip(tally.dropped) {
            if dropped > 0 {
                counter.inc_by(dropped);
            }
        }
        self.dropped_series.inc_by(tally.dropped_series);
        self.truncated_label_values
            .inc_by(tally.truncated_label_values);
        self.series.set(i64::try_from(series).unwrap_or(i64::MAX));
    }

    /// Registers every metric under `prometheus_sink_*`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "prometheus_sink_batches",
            "Metrics batches written to the Prometheus sink",
            self.batches.clone(),
        );
        registry.register(
            "prometheus_sink_data_points_written",
            "Data points the Prometheus sink applied to a series",
            self.data_points_written.clone(),
        );
        registry.register(
            "prometheus_sink_dropped_data_points",
            "Data points the Prometheus sink dropped, by reason",
            self.dropped_data_points.clone(),
        );
        registry.register(
            "prometheus_sink_dropped_series",
            "Data points the Prometheus sink dropped because their new series would pass a series cap",
            self.dropped_series.clone(),
        );
        registry.register(
            "prometheus_sink_truncated_label_values",
            "Label values the Prometheus sink cut to the configured length",
            self.truncated_label_values.clone(),
        );
        registry.register(
            "prometheus_sink_series",
            "Series the Prometheus sink holds",
            self.series.clone(),
        );
    }

    pub(crate) fn snapshot(&self) -> SinkStats {
        SinkStats {
            batches: self.batches.get(),
            data_points_written: self.data_points_written.get(),
            dropped_series: self.dropped_series.get(),
            truncated_label_values: self.truncated_label_values.get(),
            series: u64::try_from(self.series.get()).unwrap_or(0),
            dropped: self.dropped_by_reason.each_ref().map(Counter::get),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_adds_up_in_the_snapshot() {
        let metrics = SinkMetrics::new();
        let mut tally = Tally {
            written: 5,
            dropped_series: 2,
            truncated_label_values: 1,
            ..Tally::default()
        };
        tally.drop_points(DropReason::OutOfOrder, 3);
        metrics.record(&tally, 7);
        metrics.record(&Tally::default(), 6);
        let stats = metrics.snapshot();
        assert_eq!(
            (
                stats.batches,
                stats.data_points_written,
                stats.dropped_series,
                stats.truncated_label_values,
                stats.series
            ),
            (2, 5, 2, 1, 6)
        );
        assert_eq!(stats.dropped(DropReason::OutOfOrder), 3);
        assert_eq!(stats.dropped(DropReason::Invalid), 0);
    }

    #[test]
    fn registered_metrics_render_with_every_reason() {
        let metrics = SinkMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for reason in DropReason::ALL {
            let line = format!(
                "prometheus_sink_dropped_data_points_total{{reason=\"{}\"}} 0",
                reason.as_str()
            );
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(
            text.lines().any(|l| l == "prometheus_sink_batches_total 0"),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l == "prometheus_sink_series 0"),
            "{text}"
        );
    }
}
