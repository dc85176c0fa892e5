//! Opening the dependencies from the configuration and running the HTTP listener.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::auth::{Role, generate_token};
use crate::config::{Config, LogFormat};
use crate::objects::Objects;
use crate::store::{Store, StoreOptions};

/// Sets up the process log on stderr from `log.filter` (`RUST_LOG` wins when set).
pub fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: the first subscriber stays.
    let _ = match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Opens the database named by the configuration. Migrations run when `migrate` is set.
pub async fn open_store(config: &Config, migrate: bool) -> anyhow::Result<Store> {
    if config.database.url.is_empty() {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
    }
    let options = StoreOptions {
        max_connections: config.database.max_connections,
        acquire_timeout: Duration::from_secs(config.database.acquire_timeout_secs),
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

/// Serves the API until SIGTERM or Ctrl-C, then lets in-flight requests finish.
pub async fn run_api(config: Arc<Config>, store: Store) -> anyhow::Result<()> {
    let objects = Objects::from_config(&config).context("cannot open object storage")?;
    let state = AppState {
        store: store.clone(),
        objects,
        config: Arc::clone(&config),
    };
    let app = api::router(state);
    let listener = TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, database = store.backend_name(), "api listening");
    let grace = Duration::from_secs(config.api.shutdown_grace_secs);
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
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
    store.close().await;
    tracing::info!("stopped");
    outcome
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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
