//! The `prometheus` sink: OTLP metrics become a Prometheus scrape target.
//!
//! OTLP pushes data points; Prometheus pulls the current value of every series. The sink
//! sits between the two: [`PrometheusSink`] applies each metrics batch to a table of series
//! (the latest value of each, delta temporality accumulated into running totals), and
//! [`Exposition`], a shared handle, renders that table whenever `/metrics` is scraped.
//!
//! | OTLP | Prometheus |
//! | --- | --- |
//! | sum, monotonic | counter `<name>_total`, with the newest exemplar |
//! | sum, not monotonic | gauge |
//! | gauge | gauge (`_ratio` when the unit is `1`) |
//! | histogram (explicit buckets) | histogram: `_bucket{le}`, `_count`, `_sum`, an exemplar per bucket |
//! | summary | summary: `{quantile}`, `_count`, `_sum` |
//! | exponential histogram | dropped, counted as `reason="unsupported"` |
//!
//! - **Temporality.** Cumulative points replace the series' value; a point older than the
//!   held one is dropped, unless its `start_time_unix_nano` differs (the producer restarted:
//!   the value starts over, which Prometheus reads as a counter reset). Delta points are added
//!   to a running total; a delta whose start lies before the end of what was already added
//!   (a redelivered batch) is dropped rather than counted twice; a histogram whose bucket
//!   bounds change starts over.
//! - **Names** follow the OpenTelemetry Prometheus compatibility specification (the rules
//!   are listed in `prometheus/naming.rs`): `http.server.request.duration` in `s` is
//!   `http_server_request_duration_seconds`; counters end in `_total`.
//! - **Labels.** The resource's `service.name` (prefixed `service.namespace/` when present)
//!   is `job`, `service.instance.id` is `instance`; the data point's attributes follow with
//!   sanitized names. Other resource attributes are not labels: they are the labels of one
//!   `target_info` series per resource (switch off with `target_info = false`).
//! - **Exemplars.** OTLP exemplars with a trace id become OpenMetrics exemplars
//!   `{trace_id="…",span_id="…"}` on counters and on the histogram bucket their value falls
//!   in, which is how a latency panel links to the trace.
//! - **Bounds.** A series not written for `stale_after_secs` leaves the exposition at once
//!   and the store at the next sweep; label values are cut to `max_label_value_bytes`; a
//!   data point that would create a series past `max_series` or `max_series_per_metric` is
//!   dropped and counted in `dropped_series`. Memory is bounded by those caps.
//!
//! ```
//! use telemetry::sinks::prometheus::{ExpositionFormat, PrometheusSink, PrometheusSinkConfig};
//!
//! let sink = PrometheusSink::new(&PrometheusSinkConfig::default()).expect("the defaults are valid");
//! let exposition = sink.exposition(); // for the /metrics handler
//! // The topology runs `sink` on its metrics input; a scrape renders:
//! let format = ExpositionFormat::from_accept(Some("application/openmetrics-text; version=1.0.0"));
//! let body = exposition.render_as(format);
//! assert!(body.ends_with("# EOF\n"));
//! assert_eq!(format.content_type(), exposition.content_type());
//! ```

mod clock;
mod exposition;
pub(crate) mod naming;
mod series;
mod stats;

use std::sync::Arc;
use std::time::Duration;

pub use clock::{Clock, ManualClock, SystemClock};
pub use exposition::{
    Exposition, ExpositionFormat, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE,
};
pub use stats::{DropReason, SinkStats};

use crate::batch::Batch;
use crate::sinks::{BoxFuture, Sink, SinkError};
use crate::wal::Signal;
use series::Limits;

/// The `[sinks.NAME]` settings of a `type = "prometheus"` sink.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusSinkConfig {
    /// Seconds after its last data point that a series leaves the exposition (default 300:
    /// several export intervals, so one late export does not make a gap).
    pub stale_after_secs: u64,
    /// Series held at most, over all metrics (default 50 000).
    pub max_series: usize,
    /// Series one metric may hold at most (default 5 000), so that one metric with an
    /// unbounded attribute cannot take the whole budget.
    pub max_series_per_metric: usize,
    /// Bytes of one label value at most; longer values are cut at a character boundary
    /// (default 256).
    pub max_label_value_bytes: usize,
    /// Whether resource attributes other than `service.*` are exposed as `target_info`
    /// (default true).
    pub target_info: bool,
}

impl Default for PrometheusSinkConfig {
    fn default() -> Self {
        PrometheusSinkConfig {
            stale_after_secs: 300,
            max_series: 50_000,
            max_series_per_metric: 5_000,
            max_label_value_bytes: 256,
            target_info: true,
        }
    }
}

/// A setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrometheusConfigError {
    /// A limit of zero would expose nothing.
    #[error("prometheus sink: {0} must be greater than zero")]
    Zero(&'static str),
}

impl PrometheusSinkConfig {
    fn validate(&self) -> Result<Limits, PrometheusConfigError> {
        let positive = |value: u64, name: &'static str| {
            if value == 0 {
                Err(PrometheusConfigError::Zero(name))
            } else {
                Ok(())
            }
        };
        positive(self.stale_after_secs, "stale_after_secs")?;
        positive(self.max_series as u64, "max_series")?;
        positive(self.max_series_per_metric as u64, "max_series_per_metric")?;
        positive(self.max_label_value_bytes as u64, "max_label_value_bytes")?;
        Ok(Limits {
            stale_after: Duration::from_secs(self.stale_after_secs),
            max_series: self.max_series,
            max_series_per_metric: self.max_series_per_metric,
            max_label_value_bytes: self.max_label_value_bytes,
            target_info: self.target_info,
        })
    }
}

/// The sink: applies metrics batches to the series that [`Exposition`] renders. Batches of
/// other signals are not its input and are acknowledged untouched.
#[derive(Debug)]
pub struct PrometheusSink {
    exposition: Exposition,
}

impl PrometheusSink {
    /// A sink on the system clock.
    pub fn new(config: &PrometheusSinkConfig) -> Result<Self, PrometheusConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A sink whose staleness follows `clock` (a [`ManualClock`] in tests).
    pub fn with_clock(
        config: &PrometheusSinkConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PrometheusConfigError> {
        Ok(PrometheusSink {
            exposition: Exposition::new(config.validate()?, clock),
        })
    }

    /// The handle for `/metrics`.
    pub fn exposition(&self) -> Exposition {
        self.exposition.clone()
    }
}

impl Sink for PrometheusSink {
    /// Applies the batch on a blocking thread (a large batch takes longer than async code
    /// may block); once it returns, a scrape shows the batch.
    fn write(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let Batch::Metrics(request) = batch else {
                return Ok(());
            };
            let exposition = self.exposition.clone();
            tokio::task::spawn_blocking(move || exposition.write(&request))
                .await
                .map_err(|e| SinkError {
                    message: format!("prometheus sink: applying a batch failed: {e}"),
                    retryable: false,
                })
        })
    }

    fn takes(&self, signal: Signal) -> bool {
        signal == Signal::Metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_are_refused() {
        assert!(PrometheusSinkConfig::default().validate().is_ok());
        let zero = PrometheusSinkConfig {
            max_series: 0,
            ..PrometheusSinkConfig::default()
        };
        assert_eq!(
            zero.validate().unwrap_err(),
            PrometheusConfigError::Zero("max_series")
        );
        let zero = PrometheusSinkConfig {
            stale_after_secs: 0,
            ..PrometheusSinkConfig::default()
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "prometheus sink: stale_after_secs must be greater than zero"
        );
    }

    #[test]
    fn config_parses_with_defaults_and_refuses_unknown_keys() {
        let config: PrometheusSinkConfig =
            serde_json::from_str(r#"{"max_series": 10, "target_info": false}"#).expect("parses");
        assert_eq!(
            config,
            PrometheusSinkConfig {
                max_series: 10,
                target_info: false,
                ..PrometheusSinkConfig::default()
            }
        );
        assert!(serde_json::from_str::<PrometheusSinkConfig>(r#"{"max_serie": 10}"#).is_err());
    }
}
