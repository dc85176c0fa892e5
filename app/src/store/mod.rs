//! Storage: one interface, two sqlx backends.
//!
//! [`Store`] holds either a SQLite pool (the embedded default) or a PostgreSQL pool
//! (production). Both backends share the SQL of every query: the schemas differ only in column
//! types (see `migrations/sqlite` and `migrations/postgres`), and each method body is expanded
//! once per backend by [`on_backend!`], so a query cannot exist for one backend and be missing
//! for the other.
//!
//! The one real difference is the patient summary: a materialized view in PostgreSQL, refreshed
//! concurrently after the writes that change its inputs, and a table in SQLite, maintained in
//! the same transaction as those writes.

mod alerts;
mod analyses;
mod documents;
mod jobs;
mod patients;
pub(crate) mod summaries;
mod tokens;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::resilience::{Breaker, BreakerConfig, Guarded};

pub use alerts::{AlertNotification, KEEP_ALERT_NOTIFICATIONS, NewAlertNotification};
pub use analyses::{Analysis, NewAnalysis};
pub use documents::{Document, NewDocument};
pub use jobs::{DocumentAnalysisEffect, Job, NewJob};
pub use patients::{NewPatient, Patient, PatientPatch};
pub use summaries::PatientSummary;
pub use tokens::TokenRecord;

/// Runs `$body` with `$pool` bound to the backend's pool and `$pg` telling which one it is.
/// The body is compiled once per backend. `($op, $table)` name the call's main statement for
/// its span and metric (`("SELECT", "patients")`): constants, never values.
/// The body must evaluate to a `StoreResult`; it runs under the database's circuit breaker
/// and timeout (see [`Store::guarded`]). The `read` form marks an idempotent call: after an
/// outage error it is retried once.
macro_rules! on_backend {
    (read $store:expr, ($op:expr, $table:expr), |$pool:ident, $pg:ident| $body:expr) => {
        on_backend!(@run true, $store, ($op, $table), |$pool, $pg| $body)
    };
    ($store:expr, ($op:expr, $table:expr), |$pool:ident, $pg:ident| $body:expr) => {
        on_backend!(@run false, $store, ($op, $table), |$pool, $pg| $body)
    };
    (@run $idempotent:expr, $store:expr, ($op:expr, $table:expr), |$pool:ident, $pg:ident| $body:expr) => {{
        let store: &$crate::store::Store = &$store;
        let call = $crate::store::DbCall {
            operation: $op,
            table: $table,
        };
        store
            .guarded(call, $idempotent, || async {
                match &store.backend {
                    $crate::store::Backend::Sqlite($pool) => {
                        #[allow(unused_variables)]
                        let $pg = false;
                        $body
                    }
                    $crate::store::Backend::Postgres($pool) => {
                        #[allow(unused_variables)]
                        let $pg = true;
                        $body
                    }
                }
            })
            .await
    }};
}
pub(crate) use on_backend;

/// What can go wrong in the store, in terms the API can map to a status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row, or the row it refers to, does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; the string names the rule.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database could not be reached or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database did not answer within the timeout.
    #[error("database timed out after {0:?}")]
    Timeout(Duration),
    /// The database's circuit breaker is open: calls fail fast until it may be probed again.
    #[error("database circuit open; retry in {0:?}")]
    CircuitOpen(Duration),
}

impl StoreError {
    /// Whether the error means the database was unavailable (as opposed to answering with
    /// an error): these trip the breaker and become 503 with Retry-After.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Timeout(_) | StoreError::CircuitOpen(_) => true,
            StoreError::Database(e) => matches!(
                e,
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::WorkerCrashed
            ),
            _ => false,
        }
    }

    /// Maps the constraint violations every write can hit.
    fn classify(err: sqlx::Error, unique: &'static str) -> Self {
        if let Some(db) = err.as_database_error() {
            if db.is_unique_violation() {
                return StoreError::Conflict(unique);
            }
            if db.is_foreign_key_violation() {
                return StoreError::NotFound;
            }
        }
        StoreError::Database(err)
    }
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// The pool of the backend in use.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Settings for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// How long one store call (all its statements) may take.
    pub call_timeout: Duration,
    /// The database's circuit breaker.
    pub breaker: BreakerConfig,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(10),
            breaker: BreakerConfig {
                enabled: true,
                failure_threshold: 5,
                open_for: Duration::from_secs(10),
            },
        }
    }
}

/// The clinic's records: patients, analyses, documents, summaries and API tokens.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    summary_refresh: Arc<SummaryRefresh>,
    breaker: Arc<Breaker>,
    call_timeout: Duration,
}

impl Store {
    /// Opens the database named by `url` (`sqlite:...` or `postgres://...`).
    pub async fn connect(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            Ok(Self::from_backend(Backend::Sqlite(pool), options))
        } else {
            let connect = PgConnectOptions::from_str(url)?;
            Ok(Self::from_pg_options(connect, options).await?)
        }
    }

    /// Opens PostgreSQL with explicit connection options (tests use a schema per test).
    pub async fn from_pg_options(
        connect: PgConnectOptions,
        options: &StoreOptions,
    ) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self::from_backend(Backend::Postgres(pool), options))
    }

    /// Wraps an open pool.
    pub fn from_backend(backend: Backend, options: &StoreOptions) -> Self {
        Self {
            backend,
            summary_refresh: Arc::new(SummaryRefresh::default()),
            breaker: Arc::new(Breaker::new("database", options.breaker)),
            call_timeout: options.call_timeout,
        }
    }

    /// The database's circuit breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Runs one store call under the breaker and the call timeout, in a database client span
    /// (`db.system.name`, `db.operation.name`, `db.collection.name`; never a statement's
    /// values) and timed into `db.client.operation.duration`. An idempotent call (a read)
    /// that failed because the database was unavailable is retried once after a short pause,
    /// unless the breaker has opened meanwhile; writes are never retried here.
    async fn guarded<T, F, Fut>(&self, db: DbCall, idempotent: bool, call: F) -> StoreResult<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let system = self.backend_name();
        let span = tracing::info_span!(
            "db",
            otel.name = %db.span_name(),
            otel.kind = "client",
            db.system.name = system,
            db.operation.name = db.operation,
            db.collection.name = db.table,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let outcome = async {
            let first = self.guarded_once(call()).await;
            match first {
                Err(e)
                    if idempotent
                        && e.is_unavailable()
                        && !matches!(e, StoreError::CircuitOpen(_)) =>
                {
                    tokio::time::sleep(READ_RETRY_PAUSE).await;
                    self.guarded_once(call()).await
                }
                other => other,
            }
        }
        .instrument(span.clone())
        .await;
        let result = match &outcome {
            Ok(_) | Err(StoreError::NotFound | StoreError::Conflict(_)) => "ok",
            Err(StoreError::Timeout(_)) => "timeout",
            Err(StoreError::CircuitOpen(_)) => "circuit_open",
            Err(_) => "error",
        };
        if result != "ok" {
            span.record("otel.status_code", "error");
            span.record("error.type", result);
        }
        crate::otel::metrics().db_duration.record(
            started.elapsed().as_secs_f64(),
            &[system, db.operation, db.table, result],
            crate::otel::propagation::exemplar(&span),
        );
        outcome
    }

    async fn guarded_once<T>(&self, call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let healthy = |e: &StoreError| !e.is_unavailable();
        match self.breaker.call(self.call_timeout, call, healthy).await {
            Ok(value) => Ok(value),
            Err(Guarded::Failed(e)) => Err(e),
            Err(Guarded::TimedOut(after)) => Err(StoreError::Timeout(after)),
            Err(Guarded::Open(open)) => Err(StoreError::CircuitOpen(open.retry_after)),
        }
    }

    /// `"sqlite"` or `"postgresql"` (the OpenTelemetry `db.system` names).
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// Connections of the pool: (in use, idle).
    pub fn pool_usage(&self) -> (u32, u32) {
        let (size, idle) = match &self.backend {
            Backend::Sqlite(pool) => (pool.size(), pool.num_idle()),
            Backend::Postgres(pool) => (pool.size(), pool.num_idle()),
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX);
        (size.saturating_sub(idle), idle)
    }

    /// Applies the migrations that have not run yet.
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
            Backend::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        on_backend!(read self, ("SELECT", ""), |pool, _pg| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    /// Called on the request path after a committed write that changed an input of the
    /// patient summary. PostgreSQL: a refresh of the materialized view starts in the
    /// background (coalesced across writers), so the write's answer does not wait for a
    /// refresh of the whole view; the next summary read in this process waits for it.
    /// SQLite: nothing, the write maintained the table in its own transaction.
    fn summary_input_changed(&self) {
        if let Backend::Postgres(pool) = &self.backend {
            self.summary_refresh.start(pool.clone());
        }
    }

    /// Like [`Store::summary_input_changed`], but returns once the refresh has ended, so a
    /// summary read in any process afterwards sees the write. For the workers: their jobs are
    /// not waited on by a client, and a job is done once its effect is visible.
    async fn summary_refreshed(&self) -> StoreResult<()> {
        if let Backend::Postgres(pool) = &self.backend {
            self.summary_refresh.refresh(pool).await?;
        }
        Ok(())
    }

    /// Waits for the refreshes this process started: a client reads its own writes in the
    /// summary (those it made through this instance).
    async fn summary_settled(&self) -> StoreResult<()> {
        if let Backend::Postgres(pool) = &self.backend {
            self.summary_refresh.settle(pool).await?;
        }
        Ok(())
    }
}

/// Coalesces refreshes of the PostgreSQL materialized view. Every change takes a ticket; one
/// refresh runs at a time, and when it starts it covers every ticket taken before. A caller
/// waiting for its ticket either finds it covered by a refresh that has ended or runs the next
/// refresh itself, so N concurrent writers cause about two refreshes, not N.
#[derive(Debug, Default)]
struct SummaryRefresh {
    requested: AtomicU64,
    completed: Mutex<u64>,
}

impl SummaryRefresh {
    /// Takes a ticket and waits until a refresh that began after it has ended.
    async fn refresh(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.run_until(ticket, pool).await
    }

    /// Takes a ticket and leaves the refresh to a task. A failure is logged; the ticket stays
    /// uncovered, so the next summary read runs the refresh again (and reports its error).
    fn start(self: &Arc<Self>, pool: PgPool) {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(error) = this.run_until(ticket, &pool).await {
                tracing::warn!(%error, "patient summary refresh failed; the next summary read retries it");
            }
        });
    }

    /// Waits until every ticket taken so far is covered.
    async fn settle(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let ticket = self.requested.load(Ordering::SeqCst);
        self.run_until(ticket, pool).await
    }

    async fn run_until(&self, ticket: u64, pool: &PgPool) -> Result<(), sqlx::Error> {
        let mut completed = self.completed.lock().await;
        if *completed >= ticket {
            return Ok(());
        }
        let covers = self.requested.load(Ordering::SeqCst);
        sqlx::query("REFRESH MATERIALIZED VIEW CONCURRENTLY patient_summaries")
            .execute(pool)
            .await?;
        *completed = covers;
        Ok(())
    }
}

/// What a store call does, for its span and metric: the SQL verb and the main table.
#[derive(Debug, Clone, Copy)]
pub struct DbCall {
    /// `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
    pub operation: &'static str,
    /// The table, or `""` for none.
    pub table: &'static str,
}

impl DbCall {
    /// `"SELECT patients"`: the span name the semantic conventions ask for.
    fn span_name(&self) -> String {
        if self.table.is_empty() {
            self.operation.to_owned()
        } else {
            format!("{} {}", self.operation, self.table)
        }
    }
}

/// Pause before the one retry of a read.
const READ_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Largest page any list returns.
pub const MAX_PAGE: i64 = 200;

/// Clamps a requested page size to `1..=MAX_PAGE` (default 50).
pub fn page_size(limit: Option<u32>) -> i64 {
    limit.map_or(50, |l| i64::from(l).clamp(1, MAX_PAGE))
}
