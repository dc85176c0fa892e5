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
use tokio::sync::{Mutex, watch};
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
        // A call's future (span, breaker, timeout, retry and sqlx's, for either backend) is
        // kilobytes: on the heap, the futures of the requests that await it stay small, and so
        // cheap to move.
        Box::pin(store.guarded(call, $idempotent, || async {
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
            }))
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
    /// The refresh of the patient summary view failed (its error is logged); a summary read
    /// cannot promise the caller's writes are in it.
    #[error("the patient summary could not be refreshed")]
    RefreshFailed,
    /// A write failed after it may have reached the database (it timed out, or the
    /// connection broke under it): it may have been applied, and only a read can tell. The
    /// API says so (504 `unconfirmed`) instead of inviting a blind retry.
    #[error("the database did not confirm the write: {0}")]
    Unconfirmed(Box<StoreError>),
}

impl StoreError {
    /// Whether the error means the database was unavailable (as opposed to answering with
    /// an error): these trip the breaker and become 503 with Retry-After, or 504 when a
    /// write is [`StoreError::Unconfirmed`].
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Timeout(_)
            | StoreError::CircuitOpen(_)
            | StoreError::RefreshFailed
            | StoreError::Unconfirmed(_) => true,
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

    /// Whether a write that failed this way may still have been applied: it timed out (its
    /// statements, or its COMMIT, may have reached the database before the answer could come
    /// back) or its connection broke mid-exchange. The breaker refusing it and the pool having
    /// no connection for it mean nothing was sent.
    fn may_have_applied(&self) -> bool {
        match self {
            StoreError::Timeout(_) => true,
            StoreError::Database(e) => matches!(
                e,
                sqlx::Error::Io(_)
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
        // A call cut off by its timeout in the middle of `BEGIN` can leave its connection in
        // a transaction the pool does not know about; the next statements on it would then
        // hold their locks forever (the chaos of a write benchmark found one holding the
        // summary view's). PostgreSQL ends such a session once it has idled in a transaction
        // for twice the call timeout: no call of ours leaves a transaction idle that long.
        let idle_limit = (2 * options.call_timeout).as_millis().max(1000);
        let connect = connect.options([(
            "idle_in_transaction_session_timeout",
            format!("{idle_limit}ms"),
        )]);
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
    /// unless the breaker has opened meanwhile; writes are never retried here, and a write
    /// that may have been applied fails as [`StoreError::Unconfirmed`].
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
        match outcome {
            Err(e) if !idempotent && e.may_have_applied() => {
                Err(StoreError::Unconfirmed(Box::new(e)))
            }
            other => other,
        }
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
            self.summary_refresh.start(pool);
        }
    }

    /// Like [`Store::summary_input_changed`], but returns once the refresh has ended, so a
    /// summary read in any process afterwards sees the write. For the workers: their jobs are
    /// not waited on by a client, and a job is done once its effect is visible.
    async fn summary_refreshed(&self) -> StoreResult<()> {
        if let Backend::Postgres(pool) = &self.backend {
            let ticket = self.summary_refresh.start(pool);
            self.summary_refresh.wait(ticket, pool).await?;
        }
        Ok(())
    }

    /// Waits for the refreshes this process started: a client reads its own writes in the
    /// summary (those it made through this instance).
    async fn summary_settled(&self) -> StoreResult<()> {
        if let Backend::Postgres(pool) = &self.backend {
            let ticket = self.summary_refresh.requested.load(Ordering::SeqCst);
            self.summary_refresh.wait(ticket, pool).await?;
        }
        Ok(())
    }
}

/// A refresh of the summary view waits at most 10 s for its lock (another refresh, in another
/// process, holds it while it runs) and runs at most 60 s; then it fails, and the next change
/// or read tries again.
const SUMMARY_REFRESH_LIMITS: [&str; 2] = [
    "SET LOCAL lock_timeout = '10s'",
    "SET LOCAL statement_timeout = '60s'",
];

/// Coalesces refreshes of the PostgreSQL materialized view. Every change takes a ticket; one
/// refresh runs at a time, and when it starts it covers every ticket taken before, so N
/// concurrent writers cause about two refreshes, not N. Refreshes run in tasks of their own:
/// a caller that stops waiting (its request timed out) never cuts one off halfway.
#[derive(Debug)]
struct SummaryRefresh {
    requested: AtomicU64,
    /// Serializes the refreshes of this process.
    running: Mutex<()>,
    progress: watch::Sender<RefreshProgress>,
}

/// The highest tickets covered by a refresh that ended, and by one that failed; how many
/// failed.
#[derive(Debug, Clone, Copy, Default)]
struct RefreshProgress {
    done: u64,
    failed: u64,
    failures: u64,
}

impl Default for SummaryRefresh {
    fn default() -> Self {
        Self {
            requested: AtomicU64::new(0),
            running: Mutex::new(()),
            progress: watch::Sender::new(RefreshProgress::default()),
        }
    }
}

impl SummaryRefresh {
    /// Takes a ticket and starts a task that refreshes unless a refresh has covered it.
    fn start(self: &Arc<Self>, pool: &PgPool) -> u64 {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.spawn_until(ticket, pool);
        ticket
    }

    fn spawn_until(self: &Arc<Self>, ticket: u64, pool: &PgPool) {
        let (this, pool) = (Arc::clone(self), pool.clone());
        tokio::spawn(async move { this.run_until(ticket, &pool).await });
    }

    /// Waits until a refresh covering `ticket` has ended. Fails if a refresh that covered it
    /// fails while this waits; a ticket that an earlier failure left uncovered gets a new
    /// attempt first.
    async fn wait(self: &Arc<Self>, ticket: u64, pool: &PgPool) -> StoreResult<()> {
        let mut updates = self.progress.subscribe();
        let start = *updates.borrow_and_update();
        if start.done >= ticket {
            return Ok(());
        }
        if start.failed >= ticket {
            self.spawn_until(ticket, pool);
        }
        loop {
            if updates.changed().await.is_err() {
                return Err(StoreError::RefreshFailed);
            }
            let now = *updates.borrow_and_update();
            if now.done >= ticket {
                return Ok(());
            }
            if now.failed >= ticket && now.failures > start.failures {
                return Err(StoreError::RefreshFailed);
            }
        }
    }

    async fn run_until(&self, ticket: u64, pool: &PgPool) {
        let _running = self.running.lock().await;
        if self.progress.borrow().done >= ticket {
            return;
        }
        let covers = self.requested.load(Ordering::SeqCst);
        match refresh_summaries(pool).await {
            Ok(()) => self.progress.send_modify(|p| p.done = p.done.max(covers)),
            Err(error) => {
                tracing::warn!(%error, "patient summary refresh failed; the next change or summary read tries again");
                self.progress.send_modify(|p| {
                    p.failed = p.failed.max(covers);
                    p.failures += 1;
                });
            }
        }
    }
}

/// One refresh, in a transaction of its own with server-side limits on its lock wait and
/// its run time (a limit that PostgreSQL enforces leaves the connection clean; a client-side
/// timeout would cut the statement off mid-flight).
async fn refresh_summaries(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for limit in SUMMARY_REFRESH_LIMITS {
        sqlx::query(limit).execute(&mut *tx).await?;
    }
    sqlx::query("REFRESH MATERIALIZED VIEW CONCURRENTLY patient_summaries")
        .execute(&mut *tx)
        .await?;
    tx.commit().await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL at `DATABASE_URL` (CI starts it; a test that cannot reach it fails).
    async fn postgres(call_timeout: Duration) -> Store {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let options = StoreOptions {
            call_timeout,
            ..StoreOptions::default()
        };
        Store::from_pg_options(PgConnectOptions::from_str(&url).unwrap(), &options)
            .await
            .expect("PostgreSQL at DATABASE_URL answers")
    }

    #[tokio::test]
    async fn a_transaction_left_idle_ends_with_its_session() {
        let store = postgres(Duration::from_millis(600)).await;
        let Backend::Postgres(pool) = &store.backend else {
            unreachable!("a PostgreSQL store");
        };
        let mut conn = pool.acquire().await.unwrap();
        let limit: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(limit, "1200ms", "twice the call timeout");
        // What a call cancelled in the middle of BEGIN leaves behind: a transaction the pool
        // does not know about. The server ends it (and its locks) with the session.
        sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(
            sqlx::query("SELECT 1").execute(&mut *conn).await.is_err(),
            "the session outlived its idle transaction"
        );
    }
}
