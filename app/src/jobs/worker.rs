//! The worker pool: takes jobs from the queue, runs up to `concurrency` at once, records each
//! job's fate in the database before acknowledging its delivery. On shutdown it stops taking
//! jobs, lets the running ones finish for `jobs.shutdown_grace_secs`, then releases the rest
//! (pending again, the attempt not counted) and returns.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use super::queue::{Delivery, Queue};
use super::{backoff, handlers};
use crate::cache::Cache;
use crate::config::Config;
use crate::objects::Objects;
use crate::store::{Job, Store};

/// What a worker needs.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// The database.
    pub store: Store,
    /// Object storage.
    pub objects: Objects,
    /// The queue.
    pub queue: Queue,
    /// Settings.
    pub config: Arc<Config>,
    /// This worker's name: its consumer name on Redis and the holder of its leases.
    pub worker_id: String,
    /// The cache to invalidate when a job changes a cached value.
    pub cache: Cache,
}

/// A name unique to this process: host, pid and a random suffix.
pub fn worker_id() -> String {
    let suffix: u16 = rand::random();
    format!("{}-{suffix:04x}", crate::otel::instance_id())
}

impl WorkerContext {
    fn lease_until(&self) -> chrono::DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.config.jobs.lease_secs as i64)
    }
}

/// Runs the pool until `shutdown` resolves.
pub async fn run(ctx: WorkerContext, concurrency: usize, shutdown: impl Future<Output = ()>) {
    tracing::info!(worker = %ctx.worker_id, concurrency, queue = ctx.queue.name(), "worker started");
    let slots = Arc::new(Semaphore::new(concurrency));
    let in_flight: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let mut last_reclaim = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit.expect("semaphore never closes"),
            () = &mut shutdown => break,
        };
        while let Some(finished) = tasks.try_join_next() {
            if let Err(e) = finished {
                tracing::error!(error = %e, "job task panicked");
            }
        }
        let work = tokio::select! {
            work = next_work(&ctx, &mut last_reclaim) => work,
            () = &mut shutdown => break,
        };
        let Some((job, delivery)) = work else {
            continue;
        };
        in_flight.lock().expect("not poisoned").insert(job.id);
        let ctx = ctx.clone();
        let in_flight = Arc::clone(&in_flight);
        tasks.spawn(async move {
            run_job(&ctx, &job, delivery.as_ref()).await;
            in_flight.lock().expect("not poisoned").remove(&job.id);
            drop(permit);
        });
    }

    let grace = Duration::from_secs(ctx.config.jobs.shutdown_grace_secs);
    tracing::info!(
        running = tasks.len(),
        grace_secs = grace.as_secs(),
        "worker stopping: no new jobs"
    );
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let unfinished: Vec<Uuid> = in_flight.lock().expect("not poisoned").drain().collect();
        for job_id in unfinished {
            match ctx.store.release_job(job_id, &ctx.worker_id).await {
                Ok(true) => tracing::info!(%job_id, "job released at shutdown"),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%job_id, %error, "could not release a job; its lease will expire")
                }
            }
        }
    }
    tracing::info!(worker = %ctx.worker_id, "worker stopped");
}

/// The next job this worker now holds, with the delivery to acknowledge; `None` after a wait
/// with nothing to do (or a failure, logged).
async fn next_work(
    ctx: &WorkerContext,
    last_reclaim: &mut Instant,
) -> Option<(Job, Option<Delivery>)> {
    let idle = Duration::from_millis(ctx.config.jobs.poll_interval_ms);
    match &ctx.queue {
        Queue::Database => match ctx
            .store
            .claim_next_job(&ctx.worker_id, ctx.lease_until())
            .await
        {
            Ok(Some(job)) => Some((job, None)),
            Ok(None) => {
                tokio::time::sleep(idle).await;
                None
            }
            Err(error) => {
                tracing::warn!(%error, "could not claim a job");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
        },
        Queue::Redis(redis) => {
            let reclaim_every = Duration::from_millis(ctx.config.jobs.reconcile_interval_ms);
            let deliveries = if last_reclaim.elapsed() >= reclaim_every {
                *last_reclaim = Instant::now();
                let min_idle = Duration::from_millis(ctx.config.jobs.reclaim_idle_ms);
                redis.reclaim(&ctx.worker_id, min_idle, 1).await
            } else {
                redis
                    .receive(&ctx.worker_id, 1, Duration::from_secs(1))
                    .await
            };
            let delivery = match deliveries {
                Ok(mut deliveries) => deliveries.pop()?,
                Err(error) => {
                    tracing::warn!(%error, "could not read the job stream; jobs wait in the database");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return None;
                }
            };
            match ctx
                .store
                .claim_job(delivery.job_id, &ctx.worker_id, ctx.lease_until())
                .await
            {
                Ok(Some(job)) => Some((job, Some(delivery))),
                Ok(None) => {
                    // Done, dead, held by a live worker, or not due: this delivery is stale.
                    if let Err(error) = redis.ack(&delivery).await {
                        tracing::warn!(%error, "could not acknowledge a stale delivery");
                    }
                    None
                }
                Err(error) => {
                    // Left unacknowledged: it will be reclaimed and tried again.
                    tracing::warn!(job_id = %delivery.job_id, %error, "could not claim a delivered job");
                    None
                }
            }
        }
    }
}

/// Runs one job within its lease and records the outcome, then acknowledges the delivery; all
/// in the job's consumer span, which continues the trace of the request that queued it.
async fn run_job(ctx: &WorkerContext, job: &Job, delivery: Option<&Delivery>) {
    let span = super::consumer_span(job);
    let waited = (Utc::now() - job.run_after).num_milliseconds().max(0) as f64 / 1000.0;
    crate::otel::metrics().job_queue_wait.record(
        waited,
        &[&job.kind],
        crate::otel::propagation::exemplar(&span),
    );
    let started = Instant::now();
    let outcome = attempt(ctx, job, delivery).instrument(span.clone()).await;
    if outcome != "completed" {
        span.record("otel.status_code", "error");
    }
    let metrics = crate::otel::metrics();
    if outcome == "retry" {
        metrics.job_retries.add(1.0, &[&job.kind]);
    }
    metrics.job_duration.record(
        started.elapsed().as_secs_f64(),
        &[&job.kind, outcome],
        crate::otel::propagation::exemplar(&span),
    );
}

/// One attempt of `job`: `completed`, `retry` (failed, scheduled again), `dead` (failed for the
/// last time) or `unknown` (its fate could not be recorded).
async fn attempt(ctx: &WorkerContext, job: &Job, delivery: Option<&Delivery>) -> &'static str {
    let started = Instant::now();
    let limit = Duration::from_secs(ctx.config.jobs.lease_secs).mul_f64(0.9);
    let outcome = match tokio::time::timeout(limit, handlers::run(ctx, job)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(handlers::JobError(format!(
            "the job ran longer than {} s",
            limit.as_secs()
        ))),
    };
    let fate = match outcome {
        Ok(()) => {
            tracing::info!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, elapsed_ms = started.elapsed().as_millis() as u64, "job completed");
            "completed"
        }
        Err(error) => {
            let retry_at = Utc::now()
                + chrono::Duration::from_std(backoff(job.attempts, &ctx.config.jobs))
                    .unwrap_or_default();
            match ctx
                .store
                .fail_job(job.id, &ctx.worker_id, &error.0, retry_at)
                .await
            {
                Ok(Some(status)) if status == "dead" => {
                    tracing::error!(job_id = %job.id, kind = %job.kind, attempts = job.attempts, error = %error.0, "job dead after its last attempt");
                    if let Queue::Redis(redis) = &ctx.queue
                        && let Err(e) = redis.dead_letter(job.id, &error.0).await
                    {
                        tracing::warn!(job_id = %job.id, error = %e, "could not write the dead-letter stream");
                    }
                    "dead"
                }
                Ok(Some(_)) => {
                    tracing::warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, error = %error.0, "job failed; retry scheduled");
                    "retry"
                }
                Ok(None) => {
                    tracing::warn!(job_id = %job.id, "job failed after its lease was taken over");
                    "unknown"
                }
                Err(e) => {
                    tracing::error!(job_id = %job.id, error = %e, "could not record a job failure; its lease will expire");
                    "unknown"
                }
            }
        }
    };
    if let (Some(delivery), Queue::Redis(redis)) = (delivery, &ctx.queue)
        && let Err(error) = redis.ack(delivery).await
    {
        tracing::warn!(job_id = %job.id, %error, "could not acknowledge a delivery; it will be reclaimed and dropped");
    }
    fate
}
