//! What the API and the workers tell about themselves: traces (the `tracing` spans, through
//! tracing-opentelemetry), logs (the `tracing` events, through the OpenTelemetry appender) and
//! metrics (the [`catalogue`]), all exported over OTLP/gRPC to the collector named in
//! `[telemetry]`; and CPU profiles ([`profiling`]) to the collector's `/ingest`.
//!
//! Export never slows or fails a request: spans and log records wait in bounded queues that
//! batch processors drain on their own threads; what does not fit, or what the collector does
//! not take, is dropped, counted (`fertivision.telemetry.lost`) and reported on the local log
//! ([`export`]). Metrics are pushed by a task on an interval, each push bounded by a timeout.
//! The exporters' connections and the pushes run on a runtime of their own ([`runtime`]), so
//! a busy request runtime does not hold up the telemetry about it.
//!
//! What is exported is filtered apart from what the process log shows: the export layers take
//! `info` and above of this crate and of the libraries that matter, never the collector's own
//! internals (which would feed themselves) nor sqlx's statement log.

pub mod catalogue;
mod export;
mod logs;
mod profiling;
pub mod propagation;
mod runtime;
mod sampling;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{LogExporter, SpanExporter, WithExportConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLoggerProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use tokio::task::JoinHandle;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use catalogue::metrics;

use crate::config::{Config, LogFormat, TelemetryConfig};

/// What the export layers leave out: transport libraries (their events about an export would
/// be exported in turn), the collector's internals, the SQL statement log, and this module's
/// own reports of lost telemetry.
const EXPORT_FILTER: &str = "info,hyper=off,h2=off,tonic=off,tower=off,reqwest=off,tokio=off,\
runtime=off,telemetry=off,log_index=off,tantivy=off,opentelemetry=off,opentelemetry_sdk=off,\
opentelemetry_otlp=off,sqlx=off,pprof=off,fertivision::otel=off";

/// The telemetry of a running process; [`Telemetry::shutdown`] sends what is still queued.
#[derive(Debug)]
pub struct Telemetry {
    tracer: SdkTracerProvider,
    logger: Option<SdkLoggerProvider>,
    metrics: Option<MetricsPush>,
    profiler: Option<profiling::Profiler>,
    /// Carries the exporters' connections and the pushes; stopped last.
    runtime: Option<runtime::ExportRuntime>,
}

#[derive(Debug)]
struct MetricsPush {
    task: JoinHandle<()>,
    push: Arc<Push>,
}

/// Sets up the process log on stderr (from `log.filter`; `RUST_LOG` wins when set) and, when
/// `service` is given and `telemetry.enabled`, the export of traces, logs and metrics as that
/// service. The exporters' connections and the pushes live on a runtime of their own
/// ([`runtime`]), started here.
///
/// With `console`, the tokio-console layer serves the runtime's tasks (on 127.0.0.1:6669 or
/// `TOKIO_CONSOLE_BIND`); the binary must be built with `--cfg tokio_unstable`.
pub fn init(config: &Config, service: Option<&'static str>, console: bool) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // pprof announces every profile window at info.
    let filter = match "pprof=warn".parse() {
        Ok(quiet) => filter.add_directive(quiet),
        Err(_) => filter,
    };
    // Colours only for a person at a terminal, not in files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = match config.log.format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    let settings = &config.telemetry;
    let mut exporting = service.filter(|_| settings.enabled);
    let runtime = match exporting.map(|_| runtime::ExportRuntime::start()) {
        Some(Ok(runtime)) => Some(runtime),
        Some(Err(error)) => {
            eprintln!("fertivision: telemetry export is off: its thread did not start: {error}");
            exporting = None;
            None
        }
        None => None,
    };
    let resource = resource(exporting.unwrap_or("fertivision"));
    let mut tracer = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut spans_exported = false;
    let mut logger = None;
    let mut metrics = None;
    let mut profiler = None;
    if let (Some(service), Some(runtime)) = (exporting, &runtime) {
        profiler = settings
            .profiling
            .then(|| profiling::Profiler::start(settings, service, runtime.handle().clone()));
        // The exporters' channels spawn their connection tasks where they are built.
        let built = {
            let _entered = runtime.handle().enter();
            exporters(settings)
        };
        match built {
            Ok((spans, logs)) => {
                let gate = export::Gate::new("traces", settings.queue_size);
                let processor = BatchSpanProcessor::builder(export::CountedSpans {
                    inner: spans,
                    gate: Arc::clone(&gate),
                })
                .with_batch_config(
                    opentelemetry_sdk::trace::BatchConfigBuilder::default()
                        .with_max_queue_size(settings.queue_size)
                        .with_max_export_batch_size(settings.export_batch_size)
                        .with_scheduled_delay(Duration::from_millis(settings.batch_delay_ms))
                        .build(),
                )
                .build();
                tracer = tracer.with_span_processor(export::GatedSpans {
                    inner: processor,
                    gate,
                });
                spans_exported = true;
                let gate = export::Gate::new("logs", settings.queue_size);
                let processor = BatchLogProcessor::builder(export::CountedLogs {
                    inner: logs,
                    gate: Arc::clone(&gate),
                })
                .with_batch_config(
                    opentelemetry_sdk::logs::BatchConfigBuilder::default()
                        .with_max_queue_size(settings.queue_size)
                        .with_max_export_batch_size(settings.export_batch_size)
                        .with_scheduled_delay(Duration::from_millis(settings.batch_delay_ms))
                        .build(),
                )
                .build();
                logger = Some(
                    SdkLoggerProvider::builder()
                        .with_resource(resource.clone())
                        .with_log_processor(export::GatedLogs {
                            inner: processor,
                            gate,
                            follow_sampling: settings.logs_follow_sampling,
                        })
                        .build(),
                );
                metrics = Some(MetricsPush::start(settings, service, runtime.handle()));
            }
            Err(error) => {
                eprintln!(
                    "fertivision: telemetry export is off: {error} (telemetry.otlp_endpoint = {})",
                    settings.otlp_endpoint
                );
            }
        }
    }
    // Spans that go nowhere are not recorded: without export, every one is sampled out at
    // its start (it keeps its trace id, which the response names and its logs carry).
    let sampler = if spans_exported {
        Sampler::ParentBased(Box::new(sampling::TraceBudget::new(
            settings.trace_sample_ratio,
            settings.max_traces_per_second,
        )))
    } else {
        Sampler::AlwaysOff
    };
    let tracer = tracer.with_sampler(sampler).build();
    // The layer is there even without export: every request still gets a trace id, which
    // its response names and its log lines carry.
    // No busy/idle timing, thread or source-location attributes: each costs work on every
    // span, and the trace does not need them. No context activation at every span entry
    // either: the log records get their trace from [`logs::TracedLogs`].
    let traces = tracing_opentelemetry::layer()
        .with_tracer(tracer.tracer("fertivision"))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_context_activation(false)
        .with_filter(EnvFilter::new(EXPORT_FILTER));
    let console = (console && cfg!(tokio_unstable)).then(|| {
        console_subscriber::ConsoleLayer::builder()
            .with_default_env()
            .spawn()
    });
    let dispatch = logs::DispatchSlot::default();
    let logs = logger.as_ref().map(|provider| {
        logs::TracedLogs::new(OpenTelemetryTracingBridge::new(provider), dispatch.clone())
            .with_filter(EnvFilter::new(EXPORT_FILTER))
    });
    // A second initialisation (tests) is harmless: the first subscriber stays.
    let installed = tracing_subscriber::registry()
        .with(console)
        .with(fmt)
        .with(traces)
        .with(logs)
        .try_init();
    if installed.is_ok() {
        dispatch.fill();
    }
    Telemetry {
        tracer,
        logger,
        metrics,
        profiler,
        runtime,
    }
}

fn exporters(settings: &TelemetryConfig) -> anyhow::Result<(SpanExporter, LogExporter)> {
    let timeout = Duration::from_millis(settings.export_timeout_ms);
    let spans = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(&settings.otlp_endpoint)
        .with_timeout(timeout)
        .build()?;
    let logs = LogExporter::builder()
        .with_tonic()
        .with_endpoint(&settings.otlp_endpoint)
        .with_timeout(timeout)
        .build()?;
    Ok((spans, logs))
}

/// `service.name`, `service.instance.id` (host and process), `service.version`.
fn resource(service: &str) -> Resource {
    Resource::builder_empty()
        .with_service_name(service.to_owned())
        .with_attributes([
            KeyValue::new("service.instance.id", instance_id()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build()
}

/// This process: `<host>-<pid>`.
pub fn instance_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", std::process::id())
}

/// One metrics push: the catalogue's state, as OTLP, to the collector.
#[derive(Debug)]
struct Push {
    endpoint: String,
    timeout: Duration,
    resource: opentelemetry_proto::tonic::resource::v1::Resource,
}

impl Push {
    async fn once(&self) {
        let request = metrics().meter.export(self.resource.clone());
        let points: usize = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .map(|s| s.metrics.len())
            .sum();
        let sent = tokio::time::timeout(self.timeout, async {
            let mut client = MetricsServiceClient::connect(self.endpoint.clone()).await?;
            client.export(request).await?;
            Ok::<(), anyhow::Error>(())
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            export::lost("metrics", "export_failed", points as u64);
        }
    }
}

impl MetricsPush {
    fn start(settings: &TelemetryConfig, service: &str, runtime: &tokio::runtime::Handle) -> Self {
        let attribute =
            |key: &str, value: String| opentelemetry_proto::tonic::common::v1::KeyValue {
                key: key.to_owned(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(value)),
                }),
                ..Default::default()
            };
        let push = Arc::new(Push {
            endpoint: settings.otlp_endpoint.clone(),
            timeout: Duration::from_millis(settings.export_timeout_ms),
            resource: opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![
                    attribute("service.name", service.to_owned()),
                    attribute("service.instance.id", instance_id()),
                    attribute("service.version", env!("CARGO_PKG_VERSION").to_owned()),
                ],
                ..Default::default()
            },
        });
        let interval = Duration::from_millis(settings.metrics_interval_ms);
        let task = runtime.spawn({
            let push = Arc::clone(&push);
            async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    push.once().await;
                }
            }
        });
        Self { task, push }
    }
}

impl Telemetry {
    /// Sends what is queued (spans, log records, the metrics' last state, the current profile
    /// window), waiting at most a few seconds: a collector that is down does not hold up the exit.
    pub async fn shutdown(self) {
        if let (Some(metrics), Some(runtime)) = (self.metrics, &self.runtime) {
            metrics.task.abort();
            let push = metrics.push;
            let _ = runtime
                .handle()
                .spawn(async move { push.once().await })
                .await;
        }
        let tracer = self.tracer;
        let logger = self.logger;
        let profiler = self.profiler;
        let runtime = self.runtime;
        let flushed = tokio::task::spawn_blocking(move || {
            if let Some(profiler) = profiler {
                profiler.stop();
            }
            let _ = tracer.shutdown_with_timeout(Duration::from_secs(3));
            if let Some(logger) = logger {
                let _ = logger.shutdown_with_timeout(Duration::from_secs(3));
            }
            if let Some(runtime) = runtime {
                runtime.stop();
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(12), flushed).await;
    }
}

/// How often [`sample`] reads the gauges.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Reads the gauges that are states rather than events until `stop`: the database pool's
/// connections, and with `jobs` the jobs by status (the queue depth) and how long the
/// longest-waiting due job has waited. A read that fails leaves the last values (and the database's own span says
/// why).
pub async fn sample(store: crate::store::Store, jobs: bool, stop: impl Future<Output = ()>) {
    const STATUSES: [&str; 5] = ["pending", "running", "completed", "failed", "dead"];
    let metrics = metrics();
    let system = store.backend_name();
    let read = async {
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let (used, idle) = store.pool_usage();
            metrics
                .db_connections
                .set(f64::from(used), &[system, "used"]);
            metrics
                .db_connections
                .set(f64::from(idle), &[system, "idle"]);
            if !jobs {
                continue;
            }
            if let Ok(counts) = store.count_jobs_by_status().await {
                for status in STATUSES {
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == status)
                        .map_or(0, |(_, n)| *n);
                    metrics.jobs.set(n as f64, &[status]);
                }
            }
            let now = chrono::Utc::now();
            if let Ok(oldest) = store.oldest_due_job(now).await {
                let age = oldest.map_or(0.0, |due| {
                    (now - due).num_milliseconds().max(0) as f64 / 1000.0
                });
                metrics.jobs_oldest_due_age.set(age, &[]);
            }
        }
    };
    tokio::select! {
        () = read => {}
        () = stop => {}
    }
}
