//! Opening the dependencies from the configuration and running the HTTP listener.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, AppState, Resources};
use crate::auth::{Role, generate_token};
use crate::cache::Cache;
use crate::config::Config;
use crate::jobs::worker::{self, WorkerContext};
use crate::jobs::{Jobs, Queue, reconciler};
use crate::limits::RateLimits;
use crate::objects::Objects;
use crate::redis::Redis;
use crate::resilience::BreakerConfig;
use crate::store::{Store, StoreOptions};

/// Opens the database named by the configuration. Migrations run when `migrate` is set.
pub async fn open_store(config: &Config, migrate: bool) -> anyhow::Result<Store> {
    if config.database.url.is_empty() {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
    }
    let database = &config.database;
    let options = StoreOptions {
        max_connections: database.max_connections,
        acquire_timeout: Duration::from_secs(database.acquire_timeout_secs),
        call_timeout: Duration::from_millis(database.call_timeout_ms),
        breaker: BreakerConfig {
            enabled: database.breaker_enabled,
            failure_threshold: database.breaker_failure_threshold,
            open_for: Duration::from_millis(database.breaker_open_ms),
        },
    };
    let store = Store::connect(&config.database_url(), &options)
        .await
        .context("cannot open the database")?;
    if migrate {
        store.migrate().await.context("cannot apply migrations")?;
    }
    Ok(store)
}

/// Creates a token and returns it (the only time it exists in clear).
pub async fn create_token(store: &Store, role: Role, label: &str) -> anyhow::Result<String> {
    let (token, hash) = generate_token();
    let id = store.insert_token(&hash, role.as_str(), label).await?;
    tracing::info!(token_id = %id, role = %role, "token created");
    Ok(token)
}

/// On a database without any token, creates an admin token and prints it once, so that a
/// newcomer running `fertivision up` can call the API straight away.
pub async fn ensure_first_token(store: &Store) -> anyhow::Result<()> {
    if store.count_tokens().await? > 0 {
        return Ok(());
    }
    let token = create_token(store, Role::Admin, "first admin token (fertivision up)").await?;
    eprintln!(
        "\nNo API token existed, so an admin token was created. It is shown only this once:\n\n    {token}\n\nUse it as `Authorization: Bearer {token}`. More: `fertivision token create --role clinician|lab|admin`.\n"
    );
    Ok(())
}

/// The queue the configuration names: Redis Streams when `redis.url` is set, else the
/// database.
pub async fn open_queue(config: &Config) -> anyhow::Result<Queue> {
    if config.redis.url.is_empty() {
        return Ok(Queue::Database);
    }
    let timeout = Duration::from_millis(config.redis.command_timeout_ms);
    Queue::redis(&config.redis.url, &config.redis.key_prefix, timeout)
        .await
        .context("invalid redis configuration")
}

/// What every long-running command opens.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Settings.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// Object storage.
    pub objects: Objects,
    /// The job queue.
    pub queue: Queue,
    /// The read-through cache.
    pub cache: Cache,
    /// Per-token rate limits.
    pub limits: Arc<RateLimits>,
}

impl Runtime {
    /// Opens object storage and the queue next to an open store.
    pub async fn open(config: Config, store: Store) -> anyhow::Result<Self> {
        let objects = Objects::from_config(&config).context("cannot open object storage")?;
        let queue = open_queue(&config).await?;
        let redis = if config.redis.url.is_empty() {
            None
        } else {
            let timeout = Duration::from_millis(config.redis.command_timeout_ms);
            Some(
                Redis::connect(&config.redis.url, &config.redis.key_prefix, timeout)
                    .await
                    .context("invalid redis configuration")?,
            )
        };
        let ttl = Duration::from_secs(config.cache.ttl_secs);
        let cache = match (&redis, config.cache.enabled) {
            (_, false) => Cache::off(),
            (Some(redis), true) => Cache::redis(
                redis.clone(),
                ttl,
                Duration::from_millis(config.cache.redis_timeout_ms),
            ),
            (None, true) => Cache::local(config.cache.capacity, ttl),
        };
        let limits = Arc::new(RateLimits::new(config.limits.enabled, redis));
        Ok(Self {
            config: Arc::new(config),
            store,
            objects,
            queue,
            cache,
            limits,
        })
    }

    /// The workers' view of this runtime.
    pub fn worker_context(&self) -> WorkerContext {
        WorkerContext {
            store: self.store.clone(),
            objects: self.objects.clone(),
            queue: self.queue.clone(),
            config: Arc::clone(&self.config),
            worker_id: worker::worker_id(),
            cache: self.cache.clone(),
        }
    }

    /// Runs the worker pool and the reconciler until `shutdown`.
    pub async fn run_workers(&self, concurrency: usize, shutdown: Shutdown) -> anyhow::Result<()> {
        self.run_background(concurrency, shutdown).await;
        self.store.close().await;
        Ok(())
    }

    /// The worker pool and the reconciler, until `shutdown`.
    async fn run_background(&self, concurrency: usize, shutdown: Shutdown) {
        let reconciler = tokio::spawn(reconciler::run(
            self.store.clone(),
            self.queue.clone(),
            Duration::from_millis(self.config.jobs.reconcile_interval_ms),
            stopped(shutdown.clone()),
        ));
        let sampler = tokio::spawn(crate::otel::sample(
            self.store.clone(),
            true,
            stopped(shutdown.clone()),
        ));
        worker::run(self.worker_context(), concurrency, stopped(shutdown)).await;
        let _ = reconciler.await;
        let _ = sampler.await;
    }
}

/// Turns true once SIGTERM or Ctrl-C arrived. Every long-running part of a process waits on
/// one of these, all fed by [`listen_for_shutdown`], so that a signal arriving while a part is
/// still starting is not missed by it.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;

/// Starts listening for SIGTERM and Ctrl-C now, before anything else starts.
pub fn listen_for_shutdown() -> Shutdown {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}

/// Resolves when the watch turns true.
pub async fn stopped(mut stop: Shutdown) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves the API until `shutdown`, then lets in-flight requests finish. With `workers`, the
/// worker pool and the reconciler run in the same process (`up`).
pub async fn run_api(
    runtime: Runtime,
    workers: Option<usize>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let Runtime {
        config,
        store,
        objects,
        queue,
        cache,
        limits,
    } = runtime.clone();
    let state = AppState::new(Resources {
        store: store.clone(),
        objects,
        config: Arc::clone(&config),
        jobs: Jobs::new(store.clone(), queue.clone()),
        cache,
        limits,
        tokens: crate::auth::TokenCache::default(),
    });
    let background = workers.map(|concurrency| {
        let (runtime, shutdown) = (runtime.clone(), shutdown.clone());
        tokio::spawn(async move { runtime.run_background(concurrency, shutdown).await })
    });
    if workers.is_none() {
        // With workers, `run_background` samples the pool along with the jobs.
        tokio::spawn(crate::otel::sample(
            store.clone(),
            false,
            stopped(shutdown.clone()),
        ));
    }
    let app = api::router(state);
    let listener = TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, database = store.backend_name(), "api listening");
    let grace = Duration::from_secs(config.api.shutdown_grace_secs);
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        stopped(shutdown).await;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: no new connections"
        );
        let _ = drained_tx.send(());
    });
    let serving = tokio::spawn(async move { server.await });
    // After the signal, in-flight requests get `grace` to finish.
    let outcome = tokio::select! {
        result = serving => result.context("api task failed")?.context("api server failed"),
        () = async {
            if drained_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!("grace period over with requests still running");
            Ok(())
        }
    };
    if let Some(background) = background {
        let _ = background.await;
    }
    store.close().await;
    tracing::info!("stopped");
    outcome
}

/// The collector's settings from the configuration: its pipeline file (or the built-in
/// default), the write-ahead log under the data directory, the query port.
pub fn collector_settings(
    config: &Config,
) -> anyhow::Result<telemetry::collector::CollectorSettings> {
    let collector = &config.collector;
    let text = if collector.pipeline.as_os_str().is_empty() {
        telemetry::config::DEFAULT_PIPELINE.to_owned()
    } else {
        std::fs::read_to_string(&collector.pipeline).with_context(|| {
            format!(
                "cannot read the pipeline file {}",
                collector.pipeline.display()
            )
        })?
    };
    let pipeline = telemetry::config::PipelineConfig::from_toml_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid collector pipeline: {e}"))?;
    Ok(telemetry::collector::CollectorSettings {
        pipeline,
        data_dir: config.data_dir.clone(),
        wal_max_bytes: collector.wal_max_bytes,
        fsync: collector.fsync,
        query_listen: collector.query_listen,
    })
}

/// Runs the collector until `shutdown`.
pub async fn run_collector(config: &Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let settings = collector_settings(config)?;
    telemetry::collector::run(settings, stopped(shutdown))
        .await
        .context("collector failed")
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
