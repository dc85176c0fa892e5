//! The collector: opens the write-ahead log for the pipeline's sinks, serves the OTLP
//! sources, runs one log reader per sink through its transform chains, and serves the query
//! port (`/metrics`: the Prometheus sink's series and the collector's own metrics; `/healthz`).
//! Everything stops on the shutdown signal: servers first (no new data), then the sinks (each
//! commits what it finished), then the log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::config::{SinkOptions, SourceConfig, ValidatedPipeline};
use crate::ingest::{Ingest, IngestLimits};
use crate::metrics::{CollectorMetrics, IndexLabels, QueryLabels};
use crate::pipeline::spawn_sink;
use crate::query;
use crate::sinks::Sink;
use crate::sinks::blackhole::Blackhole;
use crate::sinks::file::FileSink;
use crate::sinks::index::{LogIndexSink, SpanIndexSink};
use crate::sinks::otlp::OtlpSink;
use crate::sinks::profiles::{self, ProfileStore, ProfilesSink};
use crate::sinks::prometheus::{
    Exposition, ExpositionFormat, PrometheusSink, PrometheusSinkConfig,
};
use crate::sources::otlp_grpc::OtlpGrpc;
use crate::sources::otlp_http::{self, HttpLimits};
use crate::sources::pyroscope;
use crate::topology::{Chain, plan};
use crate::wal::{Lsn, Wal, WalConfig};
use log_index::{LogIndex, SpanIndex, StoreConfig};

/// Where and how the collector runs.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// The validated pipeline.
    pub pipeline: ValidatedPipeline,
    /// Directory of the collector's state: the write-ahead log in `wal/`, the profile store
    /// in `profiles/`.
    pub data_dir: PathBuf,
    /// Bytes the log may hold before senders are refused with retry information.
    pub wal_max_bytes: u64,
    /// Whether appends are synced to disk before they are acknowledged (off only for
    /// benchmarks).
    pub fsync: bool,
    /// Address of the query port (`/metrics`, `/healthz`).
    pub query_listen: SocketAddr,
}

/// A collector that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The log could not be opened.
    #[error("write-ahead log: {0}")]
    Wal(#[from] crate::wal::WalError),
    /// A port could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A sink's settings are invalid.
    #[error("{0}")]
    Sink(String),
}

/// How long one forwarded export may take before it is retried.
const OTLP_FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct QueryState {
    expositions: Arc<Vec<Exposition>>,
    registry: Arc<Registry>,
}

/// Runs the collector until `shutdown` resolves.
pub async fn run(
    settings: CollectorSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CollectorError> {
    let (listening, _) = oneshot::channel();
    run_and_tell(settings, shutdown, listening).await
}

/// [`run`], sending on `listening` once every port is bound, so that a caller can start what
/// sends to it or queries it. Dropped unsent when the collector stops before that.
pub async fn run_and_tell(
    settings: CollectorSettings,
    shutdown: impl Future<Output = ()>,
    listening: oneshot::Sender<()>,
) -> Result<(), CollectorError> {
    let pipeline = &settings.pipeline;
    for warning in pipeline.warnings() {
        tracing::warn!(%warning, "pipeline");
    }
    let metrics = Arc::new(CollectorMetrics::default());
    let mut registry = Registry::with_prefix("collector");
    metrics.register(&mut registry);

    // Sinks first: a type this build lacks is a start-up error, before any port is bound.
    let mut sinks: Vec<(String, Box<dyn Sink>)> = Vec::new();
    let mut expositions = Vec::new();
    // Routes that sinks add to the query port (the profile store's API).
    let mut extra_routes: Router = Router::new();
    // The indexes of the log_index and span_index sinks, for the search API.
    let mut indexes = query::Indexes::default();
    for (name, sink) in pipeline.sinks() {
        let built: Box<dyn Sink> = match &sink.options {
            SinkOptions::Prometheus(options) => {
                let config = PrometheusSinkConfig {
                    stale_after_secs: options.stale_after_secs,
                    max_series: options.max_series,
                    max_label_value_bytes: options.max_label_value_bytes,
                    ..PrometheusSinkConfig::default()
                };
                let prometheus = PrometheusSink::new(&config)
                    .map_err(|e| CollectorError::Sink(format!("sinks.{name}: {e}")))?;
                let exposition = prometheus.exposition();
                exposition.register_self_metrics(
                    registry.sub_registry_with_label(("sink".into(), name.clone().into())),
                );
                expositions.push(exposition);
                Box::new(prometheus)
            }
            SinkOptions::Profiles(options) => {
                let dir = settings.data_dir.join("profiles");
                let store = ProfileStore::open(&dir, options.into()).map_err(|e| {
                    CollectorError::Sink(format!(
                        "sinks.{name}: cannot open {}: {e}",
                        dir.display()
                    ))
                })?;
                extra_routes = extra_routes.merge(profiles::router(store.clone()));
                Box::new(ProfilesSink::new(store))
            }
            SinkOptions::Otlp(options) => Box::new(
                OtlpSink::new(&options.endpoint, OTLP_FORWARD_TIMEOUT)
                    .map_err(|e| CollectorError::Sink(format!("sinks.{name}: {e}")))?,
            ),
            SinkOptions::LogIndex(options) => {
                let config = store_config(options.retention_days, options.max_bytes);
                metrics
                    .index_max_bytes
                    .get_or_create(&IndexLabels { index: "logs" })
                    .set(i64::try_from(options.max_bytes).unwrap_or(i64::MAX));
                let index = open_index(&settings.data_dir, name, config, LogIndex::open)?;
                indexes.logs = Some(Arc::clone(&index));
                Box::new(LogIndexSink::new(index, "logs", options.nice))
            }
            SinkOptions::SpanIndex(options) => {
                let config = store_config(options.retention_days, options.max_bytes);
                metrics
                    .index_max_bytes
                    .get_or_create(&IndexLabels { index: "spans" })
                    .set(i64::try_from(options.max_bytes).unwrap_or(i64::MAX));
                let index = open_index(&settings.data_dir, name, config, SpanIndex::open)?;
                indexes.spans = Some(Arc::clone(&index));
                Box::new(SpanIndexSink::new(index, "spans", options.nice))
            }
            SinkOptions::Blackhole(options) => Box::new(match options.rate {
                Some(rate) => Blackhole::with_rate(rate),
                None => Blackhole::new(),
            }),
            SinkOptions::File(options) => {
                let path = settings.data_dir.join(&options.path);
                Box::new(
                    FileSink::open(&path)
                        .map_err(|e| CollectorError::Sink(format!("sinks.{name}: {e}")))?,
                )
            }
        };
        sinks.push((name.clone(), built));
    }
    // The query routes, timed per route template.
    extra_routes = extra_routes
        .merge(query::router(indexes.clone()))
        .merge(crate::jaeger::router(indexes.clone()))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&metrics),
            time_query,
        ));
    metrics
        .wal_max_bytes
        .set(i64::try_from(settings.wal_max_bytes).unwrap_or(i64::MAX));
    let wal = Arc::new(
        Wal::open(WalConfig {
            sinks: sinks.iter().map(|(name, _)| name.clone()).collect(),
            max_bytes: settings.wal_max_bytes,
            fsync: settings.fsync,
            lsn_floor: sinks
                .iter()
                .filter_map(|(_, sink)| sink.durable_position())
                .max()
                .unwrap_or(Lsn::ZERO),
            ..WalConfig::new(settings.data_dir.join("wal"))
        })
        .await?,
    );
    let ingest = Ingest::new(
        Arc::clone(&wal),
        IngestLimits::default(),
        Arc::clone(&metrics),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = JoinSet::new();
    let mut query = extra_routes;
    for (name, source) in pipeline.sources() {
        match source {
            SourceConfig::OtlpGrpc(grpc) => {
                let listener = bind(grpc.address).await?;
                tracing::info!(source = %name, address = %listener.local_addr().map_err(|e| CollectorError::Listen { address: grpc.address, source: e })?, "otlp grpc listening");
                let routes = OtlpGrpc::new(ingest.clone()).router();
                let stopped = wait(stop_rx.clone());
                servers.spawn(async move {
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    if let Err(error) = tonic::transport::Server::builder()
                        .add_routes(routes)
                        .serve_with_incoming_shutdown(incoming, stopped)
                        .await
                    {
                        tracing::error!(%error, "otlp grpc server failed");
                    }
                });
            }
            SourceConfig::OtlpHttp(http) => {
                let listener = bind(http.address).await?;
                tracing::info!(source = %name, address = %http.address, "otlp http listening");
                let app = otlp_http::router(ingest.clone(), HttpLimits::default());
                serve(&mut servers, listener, app, stop_rx.clone());
            }
            SourceConfig::Pyroscope(_) => {
                tracing::info!(source = %name, "pyroscope /ingest on the query port");
                query = query.merge(pyroscope::router(ingest.clone()));
            }
        }
    }
    let own_routes = Router::new()
        .route("/metrics", get(metrics_endpoint))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(QueryState {
            expositions: Arc::new(expositions),
            registry: Arc::new(registry),
        });
    let query = query.merge(own_routes);
    let query_listener = bind(settings.query_listen).await?;
    tracing::info!(address = %settings.query_listen, "collector query port listening");
    serve(&mut servers, query_listener, query, stop_rx.clone());
    let _ = listening.send(());

    let mut runners = JoinSet::new();
    let plans = plan(pipeline);
    for (name, sink) in sinks {
        let chains: Vec<Chain> = plans
            .iter()
            .filter(|p| p.sink == name)
            .flat_map(|p| p.paths.iter().cloned())
            .map(|path| Chain::new(pipeline, path))
            .collect();
        let reader = wal.reader(&name)?;
        let context = format!("sinks.{name}");
        let running = spawn_sink(
            name,
            reader,
            chains,
            sink,
            Arc::clone(&metrics),
            stop_rx.clone(),
        )
        .map_err(|e| CollectorError::Sink(format!("{context}: {e}")))?;
        runners.spawn(running);
    }
    let retention = tokio::spawn(enforce_retention(
        indexes,
        Arc::clone(&metrics),
        stop_rx.clone(),
    ));
    // The log's gauges, refreshed while running.
    let observer = {
        let (wal, metrics, stop) = (Arc::clone(&wal), Arc::clone(&metrics), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                metrics.observe_wal(&wal.stats());
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = wait(stop.clone()) => return,
                }
            }
        })
    };

    shutdown.await;
    tracing::info!("collector stopping");
    let _ = stop_tx.send(true);
    while servers.join_next().await.is_some() {}
    while runners.join_next().await.is_some() {}
    let _ = observer.await;
    let _ = retention.await;
    drop(ingest);
    match Arc::try_unwrap(wal) {
        Ok(wal) => wal.close().await?,
        Err(_) => tracing::warn!("write-ahead log still in use at shutdown; synced data is safe"),
    }
    tracing::info!("collector stopped");
    Ok(())
}

/// An index sink's partition limits.
fn store_config(retention_days: u32, max_bytes: u64) -> StoreConfig {
    StoreConfig {
        retention_days,
        max_bytes,
        ..StoreConfig::default()
    }
}

/// Opens a sink's index under `<data_dir>/index`.
fn open_index<T>(
    data_dir: &std::path::Path,
    name: &str,
    config: StoreConfig,
    open: impl FnOnce(&std::path::Path, StoreConfig) -> Result<T, log_index::IndexError>,
) -> Result<Arc<T>, CollectorError> {
    let dir = data_dir.join("index");
    open(&dir, config).map(Arc::new).map_err(|e| {
        CollectorError::Sink(format!(
            "sinks.{name}: cannot open the index in {}: {e}",
            dir.display()
        ))
    })
}

/// How often the indexes' sizes are measured.
const INDEX_SIZE_EVERY: Duration = Duration::from_secs(10);
/// How often partitions past their age or size limits are looked for (in size rounds).
const RETENTION_EVERY_ROUNDS: u32 = 6;

/// Measures the indexes' bytes on disk every [`INDEX_SIZE_EVERY`] and drops the partitions
/// past their retention every [`RETENTION_EVERY_ROUNDS`] of those, until `stop`.
async fn enforce_retention(
    indexes: query::Indexes,
    metrics: Arc<CollectorMetrics>,
    stop: watch::Receiver<bool>,
) {
    if indexes.logs.is_none() && indexes.spans.is_none() {
        return;
    }
    for round in 0u32.. {
        let today = chrono::Utc::now().date_naive();
        let retain = round % RETENTION_EVERY_ROUNDS == 0;
        let (logs, spans) = (indexes.logs.clone(), indexes.spans.clone());
        let metrics = Arc::clone(&metrics);
        let _ = tokio::task::spawn_blocking(move || {
            let measure = |index: &'static str, store: &log_index::IndexStore| {
                if retain {
                    store.apply_retention(today);
                }
                metrics
                    .index_bytes
                    .get_or_create(&IndexLabels { index })
                    .set(i64::try_from(store.size_bytes()).unwrap_or(i64::MAX));
            };
            if let Some(logs) = logs {
                measure("logs", logs.store());
            }
            if let Some(spans) = spans {
                measure("spans", spans.store());
            }
        })
        .await;
        tokio::select! {
            () = tokio::time::sleep(INDEX_SIZE_EVERY) => {}
            () = wait(stop.clone()) => return,
        }
    }
}

/// Times one query-API request into `collector_query_seconds` under its route template.
async fn time_query(
    State(metrics): State<Arc<CollectorMetrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", axum::extract::MatchedPath::as_str)
        .to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics
        .query_seconds
        .get_or_create(&QueryLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, CollectorError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| CollectorError::Listen { address, source })
}

fn serve(
    servers: &mut JoinSet<()>,
    listener: tokio::net::TcpListener,
    app: Router,
    stop: watch::Receiver<bool>,
) {
    servers.spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(wait(stop))
            .await
        {
            tracing::error!(%error, "http server failed");
        }
    });
}

async fn wait(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// `/metrics`: the collector's own metrics, then every Prometheus sink's series, in the
/// format the scraper asks for.
async fn metrics_endpoint(
    State(state): State<QueryState>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = ExpositionFormat::from_accept(accept);
    let mut out = String::with_capacity(64 * 1024);
    let encoded = match format {
        ExpositionFormat::OpenMetrics => {
            prometheus_client::encoding::text::encode_registry(&mut out, &state.registry)
        }
        ExpositionFormat::PrometheusText => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &state.registry)
        }
    };
    debug_assert!(encoded.is_ok());
    for exposition in state.expositions.iter() {
        exposition.encode_series(&mut out, format);
    }
    if format == ExpositionFormat::OpenMetrics {
        out.push_str("# EOF\n");
    }
    ([(header::CONTENT_TYPE, format.content_type())], out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::catalogue::MetricKind;

    /// The dashboards and alerts read `catalogue::collector`; this holds it to what `/metrics`
    /// serves, assembled as [`run`] assembles it: the same families, kinds and labels.
    #[test]
    fn the_catalogue_declares_exactly_the_served_families() {
        use crate::metrics::{RefusalLabels, SignalLabel, SignalLabels, SinkLabels};
        let metrics = CollectorMetrics::default();
        let mut registry = Registry::with_prefix("collector");
        metrics.register(&mut registry);
        let sink = PrometheusSink::new(&PrometheusSinkConfig::default()).expect("sink");
        sink.exposition().register_self_metrics(
            registry.sub_registry_with_label(("sink".into(), "prometheus".into())),
        );
        // One series in each labelled family (an empty family is not rendered).
        let signal = SignalLabels {
            signal: SignalLabel::traces,
        };
        let sink_labels = SinkLabels {
            sink: "logs".into(),
        };
        metrics.requests.get_or_create(&signal).inc();
        metrics.accepted_items.get_or_create(&signal).inc();
        metrics.rejected_items.get_or_create(&signal).inc();
        metrics.malformed_requests.get_or_create(&signal).inc();
        metrics.batch_items.get_or_create(&signal).observe(1.0);
        metrics
            .refused_requests
            .get_or_create(&RefusalLabels {
                signal: SignalLabel::traces,
                reason: "log_full",
            })
            .inc();
        metrics.sink_lag_records.get_or_create(&sink_labels).set(1);
        metrics.sink_lag_bytes.get_or_create(&sink_labels).set(1);
        metrics.sink_batches.get_or_create(&sink_labels).inc();
        metrics.sink_items.get_or_create(&sink_labels).inc();
        metrics.sink_dropped.get_or_create(&sink_labels).inc();
        metrics.sink_retries.get_or_create(&sink_labels).inc();
        metrics
            .sink_write_seconds
            .get_or_create(&sink_labels)
            .observe(0.1);
        let index = IndexLabels { index: "logs" };
        metrics.index_bytes.get_or_create(&index).set(1);
        metrics.index_max_bytes.get_or_create(&index).set(1);
        metrics
            .query_seconds
            .get_or_create(&QueryLabels {
                route: "/api/v1/logs/search".into(),
            })
            .observe(0.1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &registry).expect("encode");
        let kinds: BTreeSet<(String, String)> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.split_once(' '))
            .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
            .collect();
        let families: BTreeSet<&String> = kinds.iter().map(|(name, _)| name).collect();
        // Label keys per family, from the samples.
        let mut labels: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, rest) = line.split_once('{').unwrap_or((line, ""));
            let name = name.split(' ').next().unwrap_or_default();
            let family = families
                .iter()
                .filter(|f| name.starts_with(f.as_str()))
                .max_by_key(|f| f.len())
                .map(|f| (*f).clone())
                .unwrap_or_default();
            let keys = labels.entry(family).or_default();
            for pair in rest.split('}').next().unwrap_or_default().split(',') {
                if let Some((key, _)) = pair.split_once('=')
                    && key != "le"
                {
                    keys.insert(key.to_owned());
                }
            }
        }
        let mut declared_kinds = BTreeSet::new();
        for def in crate::catalogue::collector::ALL {
            let kind = match def.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge | MetricKind::UpDownCounter => "gauge",
                MetricKind::Histogram => "histogram",
            };
            declared_kinds.insert((def.prometheus_name(), kind.to_owned()));
            let keys: BTreeSet<String> = def.labels.iter().map(|l| (*l).to_owned()).collect();
            assert_eq!(
                labels.get(&def.prometheus_name()),
                Some(&keys),
                "labels of {}",
                def.prometheus_name()
            );
        }
        assert_eq!(kinds, declared_kinds);
    }
}
