//! `/healthz` (the process answers) and `/readyz` (its dependencies answer), without token.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// How long a readiness check waits for a dependency.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// Readiness and the state of each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `degraded` (Redis is down: cache bypassed, local rate limits, jobs wait in
    /// the database) or `unavailable`.
    pub status: &'static str,
    /// `sqlite` or `postgresql`.
    pub database_backend: &'static str,
    /// `ok` or what failed.
    pub database: String,
    /// `ok` or what failed.
    pub storage: String,
    /// `ok`, `error`, or `embedded` when the queue is the database (no Redis).
    pub queue: String,
    /// Circuit breaker state per dependency: `closed`, `open` or `half_open`.
    pub breakers: std::collections::BTreeMap<&'static str, &'static str>,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database and object storage answer.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let queue = state.jobs.queue();
    let (database, storage, queue_check) = tokio::join!(
        check(state.store.ping()),
        check(state.objects.ping()),
        check(queue.ping())
    );
    let queue_state = match queue {
        crate::jobs::Queue::Database => "embedded".to_owned(),
        crate::jobs::Queue::Redis(_) => queue_check,
    };
    let ready = database == "ok" && storage == "ok";
    let (status, word) = match (ready, queue_state.as_str()) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (true, "ok" | "embedded") => (StatusCode::OK, "ready"),
        (true, _) => (StatusCode::OK, "degraded"),
    };
    let breakers = [state.store.breaker(), state.objects.breaker()]
        .into_iter()
        .map(|b| (b.name(), b.state().as_str()))
        .collect();
    (
        status,
        Json(Readiness {
            status: word,
            database_backend: state.store.backend_name(),
            database,
            storage,
            queue: queue_state,
            breakers,
        }),
    )
}

/// `ok`, `timeout` or `error` (the detail goes to the log, not to the unauthenticated caller).
async fn check<E: std::fmt::Display>(probe: impl Future<Output = Result<(), E>>) -> String {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            "error".to_owned()
        }
        Err(_) => "timeout".to_owned(),
    }
}
