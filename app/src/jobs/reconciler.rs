//! The reconciler: makes the queue agree with the database, which holds the truth.
//!
//! Each pass (every `jobs.reconcile_interval_ms`):
//! 1. jobs whose lease expired (their worker died or hung) become pending again, or dead if
//!    that was their last attempt;
//! 2. Redis: if the stream's consumer group is gone (a restart without persistence, or a
//!    flush), it is recreated and every waiting job is marked unqueued;
//! 3. Redis: every due job that no queue holds (new, retry due, or lost) is published.
//!
//! Several reconcilers may run (one per worker process); a job published twice is harmless,
//! since claiming it is a conditional update.

use std::future::Future;
use std::time::Duration;

use super::Queue;
use crate::store::Store;

/// How many jobs one pass publishes at most.
const PUBLISH_BATCH: i64 = 500;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Jobs whose lease had expired.
    pub expired: u64,
    /// Whether the Redis stream had been lost.
    pub stream_lost: bool,
    /// Jobs published.
    pub published: usize,
}

/// One pass.
pub async fn pass(store: &Store, queue: &Queue) -> anyhow::Result<PassReport> {
    let mut report = PassReport {
        expired: store.requeue_expired_jobs().await?,
        ..PassReport::default()
    };
    if report.expired > 0 {
        tracing::warn!(jobs = report.expired, "leases expired; jobs queued again");
    }
    let Queue::Redis(_) = queue else {
        return Ok(report);
    };
    if queue.ensure_group().await? {
        let forgotten = store.forget_enqueued_jobs().await?;
        report.stream_lost = true;
        if forgotten > 0 {
            tracing::warn!(
                jobs = forgotten,
                "the job stream was lost; waiting jobs will be queued again"
            );
        }
    }
    for job_id in store.due_unqueued_jobs(PUBLISH_BATCH).await? {
        queue.publish(job_id).await?;
        store.mark_job_enqueued(job_id).await?;
        report.published += 1;
    }
    Ok(report)
}

/// Runs passes until `shutdown` resolves. Failures are logged once per outage.
pub async fn run(
    store: Store,
    queue: Queue,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut healthy = true;
    loop {
        match pass(&store, &queue).await {
            Ok(_) if !healthy => {
                healthy = true;
                tracing::info!("reconciler recovered");
            }
            Ok(_) => {}
            Err(error) if healthy => {
                healthy = false;
                tracing::warn!(%error, "reconciler pass failed; retrying");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut shutdown => return,
        }
    }
}
