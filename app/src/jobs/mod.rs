//! Background jobs: document analysis and report generation.
//!
//! The truth about every job is its row in the database (`store::Job`): kind, status,
//! attempts, last error, lease. A [`Queue`] only carries job ids to workers: Redis Streams
//! with a consumer group in production, or the jobs table itself in the embedded default.
//! Every transition is a conditional update of the row, so:
//! - a duplicate delivery finds the job completed, or leased to a live worker, and is dropped;
//! - a worker that dies leaves a lease that expires; the [`reconciler`] (or, on Redis, a
//!   consumer's `XAUTOCLAIM`) hands the job to another worker;
//! - a failed attempt is retried after a jittered exponential back-off, and after
//!   `jobs.max_attempts` the job is dead and its id goes to the dead-letter stream;
//! - a job whose effect is applied commits that effect and its completion in one transaction,
//!   guarded by the lease, so running a job twice leaves the same result as once.

pub mod handlers;
pub mod queue;
pub mod reconciler;
pub mod worker;

use std::time::Duration;

use rand::Rng;
use uuid::Uuid;

pub use queue::{Delivery, Queue};

use crate::config::JobsConfig;
use crate::store::{Job, NewJob, Store, StoreResult};

/// Job kind: extract the lab values of an uploaded document.
pub const ANALYZE_DOCUMENT: &str = "analyze_document";
/// Job kind: render a patient's PDF report.
pub const GENERATE_REPORT: &str = "generate_report";

/// The job that analyses `document_id`, queued in `enqueue` (see [`enqueue_span`]).
pub fn analyze_document_job(
    document_id: Uuid,
    config: &JobsConfig,
    enqueue: &tracing::Span,
) -> NewJob {
    NewJob {
        kind: ANALYZE_DOCUMENT,
        payload: serde_json::json!({
            "document_id": document_id,
            TRACE_KEY: crate::otel::propagation::carrier(enqueue),
        }),
        max_attempts: config.max_attempts,
    }
}

/// The job that renders the report of `patient_id`, queued in `enqueue`.
pub fn generate_report_job(
    patient_id: Uuid,
    config: &JobsConfig,
    enqueue: &tracing::Span,
) -> NewJob {
    NewJob {
        kind: GENERATE_REPORT,
        payload: serde_json::json!({
            "patient_id": patient_id,
            TRACE_KEY: crate::otel::propagation::carrier(enqueue),
        }),
        max_attempts: config.max_attempts,
    }
}

/// The payload key of the trace context a job carries (W3C `traceparent`, `tracestate`).
pub const TRACE_KEY: &str = "trace";

/// The producer span of queueing a job of `kind`: its context travels in the job's payload,
/// so the worker's consumer span ([`consumer_span`]) continues the same trace.
pub fn enqueue_span(kind: &'static str) -> tracing::Span {
    tracing::info_span!(
        "enqueue",
        otel.name = %format!("publish {kind}"),
        otel.kind = "producer",
        messaging.system = "fertivision.jobs",
        messaging.operation.type = "send",
        messaging.destination.name = kind,
    )
}

/// The consumer span of one attempt of `job`, a child of the span that queued it when the
/// job carries one.
pub fn consumer_span(job: &Job) -> tracing::Span {
    let span = tracing::info_span!(
        "job",
        otel.name = %format!("process {}", job.kind),
        otel.kind = "consumer",
        messaging.system = "fertivision.jobs",
        messaging.operation.type = "process",
        messaging.destination.name = %job.kind,
        job.id = %job.id,
        job.attempt = job.attempts,
        otel.status_code = tracing::field::Empty,
    );
    let carrier: Option<std::collections::HashMap<String, String>> = job
        .payload
        .0
        .get(TRACE_KEY)
        .and_then(|value| serde_json::from_value(value.clone()).ok());
    if let Some(carrier) = carrier {
        crate::otel::propagation::continue_from_carrier(&span, &carrier);
    }
    span
}

/// Delay before retry number `attempt` (1 = after the first failure): the base doubled per
/// attempt, capped, then scaled by a random factor in [0.5, 1.0] so that jobs that failed
/// together do not retry together.
pub fn backoff(attempt: i32, config: &JobsConfig) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let raw = config.backoff_base_ms.saturating_mul(1u64 << exponent);
    let capped = raw.min(config.backoff_max_ms);
    let factor = rand::rng().random_range(0.5..=1.0);
    Duration::from_millis((capped as f64 * factor) as u64)
}

/// Submits jobs: the row first (the truth), then the id to the queue. A queue that is down
/// loses nothing: the row stays unqueued and the reconciler hands it over later.
#[derive(Debug, Clone)]
pub struct Jobs {
    store: Store,
    queue: Queue,
}

impl Jobs {
    /// Jobs over `store` and `queue`.
    pub fn new(store: Store, queue: Queue) -> Self {
        Self { store, queue }
    }

    /// The queue in use.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Creates a job and hands it to the queue.
    pub async fn submit(&self, new: NewJob) -> StoreResult<Job> {
        let job = self.store.create_job(new).await?;
        self.hand_over(job.id).await;
        Ok(job)
    }

    /// Hands an existing job (created in another transaction) to the queue. The database
    /// queue needs nothing: the row is the queue.
    pub async fn hand_over(&self, job_id: Uuid) {
        if let Queue::Database = self.queue {
            return;
        }
        match self.queue.publish(job_id).await {
            Ok(()) => {
                if let Err(error) = self.store.mark_job_enqueued(job_id).await {
                    tracing::warn!(%job_id, %error, "job queued but not marked; it may be queued twice");
                }
            }
            Err(error) => {
                tracing::warn!(%job_id, %error, "queue unavailable; the reconciler will queue the job");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let config = JobsConfig {
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
            ..JobsConfig::default()
        };
        for _ in 0..100 {
            let first = backoff(1, &config).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = backoff(3, &config).as_millis();
            assert!((200..=400).contains(&third), "{third}");
            let late = backoff(20, &config).as_millis();
            assert!((500..=1000).contains(&late), "{late}");
        }
        let spread: std::collections::BTreeSet<u128> =
            (0..50).map(|_| backoff(4, &config).as_millis()).collect();
        assert!(spread.len() > 5, "jitter spreads retries: {spread:?}");
    }
}
