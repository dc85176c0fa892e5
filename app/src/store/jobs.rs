//! Jobs: the truth about background work. A queue carries only job ids; every state change
//! happens here, conditioned on the state it expects, so that a duplicate delivery, a worker
//! that died, or one that comes back after its lease was taken over cannot apply an effect
//! twice.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, on_backend};

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, ToSchema)]
pub struct Job {
    /// Identifier (also the task id of the API).
    pub id: Uuid,
    /// `analyze_document` or `generate_report`.
    pub kind: String,
    /// What the job works on, e.g. `{"document_id": "..."}`.
    #[schema(value_type = Object)]
    pub payload: Json<Value>,
    /// `pending`, `running`, `failed` (retry scheduled), `completed` or `dead`.
    pub status: String,
    /// Attempts started so far (a worker that died mid-job counts as one).
    pub attempts: i32,
    /// Attempts allowed before the job is dead.
    pub max_attempts: i32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// What the job produced, when completed.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Json<Value>>,
    /// Not to be run before this time (retry back-off).
    pub run_after: DateTime<Utc>,
    /// When the id was last handed to the queue.
    pub enqueued_at: Option<DateTime<Utc>>,
    /// The worker holding the lease.
    pub locked_by: Option<String>,
    /// End of the lease; past it, another worker may take the job over.
    pub locked_until: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it completed or died.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its kind.
    pub kind: &'static str,
    /// Its payload.
    pub payload: Value,
    /// Attempts allowed.
    pub max_attempts: i32,
}

/// The effect of a document analysis, applied with the job's completion.
#[derive(Debug, Clone)]
pub struct DocumentAnalysisEffect {
    /// The document.
    pub document_id: Uuid,
    /// `completed`, `needs_review` or `failed`.
    pub status: &'static str,
    /// Values, key findings and domains (JSON of `analysis::DocumentAnalysis`).
    pub analysis: Option<Value>,
    /// Why the document could not be analysed.
    pub error: Option<String>,
}

const CLAIM_NEXT_SQLITE: &str = "
UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, locked_until = $2,
                updated_at = $3
WHERE id = (SELECT id FROM jobs WHERE status IN ('pending', 'failed') AND run_after <= $3
            ORDER BY run_after, id LIMIT 1)
  AND status IN ('pending', 'failed')
RETURNING *";

const CLAIM_NEXT_POSTGRES: &str = "
UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, locked_until = $2,
                updated_at = $3
WHERE id = (SELECT id FROM jobs WHERE status IN ('pending', 'failed') AND run_after <= $3
            ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED)
  AND status IN ('pending', 'failed')
RETURNING *";

/// Completes job $1 with result $3 at $4, if worker $2 still holds it.
const COMPLETE_JOB: &str = "
UPDATE jobs SET status = 'completed', result = $3, locked_by = NULL, locked_until = NULL,
                last_error = NULL, updated_at = $4, finished_at = $4
WHERE id = $1 AND locked_by = $2 AND status = 'running'";

/// The score of a patient from all their evidence, written in the caller's transaction.
macro_rules! recompute_score {
    ($tx:expr, $patient_id:expr, $now:expr, $pg:expr) => {{
        let analyses: Vec<$crate::store::Analysis> =
            sqlx::query_as("SELECT * FROM analyses WHERE patient_id = $1 ORDER BY id")
                .bind($patient_id)
                .fetch_all(&mut *$tx)
                .await?;
        let documents: Vec<Option<sqlx::types::Json<serde_json::Value>>> = sqlx::query_scalar(
            "SELECT analysis FROM documents
             WHERE patient_id = $1 AND analysis_status = 'completed' ORDER BY id",
        )
        .bind($patient_id)
        .fetch_all(&mut *$tx)
        .await?;
        let documents: Vec<serde_json::Value> = documents.into_iter().flatten().map(|j| j.0).collect();
        let evidence = crate::clinic::evidence(&analyses, &documents);
        let has_evidence = evidence != crate::domain::Evidence::default();
        if has_evidence {
            let score = crate::domain::fertility_score(&evidence);
            sqlx::query(
                "INSERT INTO fertility_scores (patient_id, score, band, computed_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (patient_id) DO UPDATE
                 SET score = excluded.score, band = excluded.band, computed_at = excluded.computed_at",
            )
            .bind($patient_id)
            .bind(score.score)
            .bind(score.band.as_str())
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        }
        if !$pg {
            sqlx::query($crate::store::summaries::SQLITE_UPSERT_SUMMARY)
                .bind($patient_id)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
pub(super) use recompute_score;

impl Store {
    /// Creates a job, pending and due now.
    pub async fn create_job(&self, new: NewJob) -> StoreResult<Job> {
        let now = Utc::now();
        on_backend!(self, ("INSERT", "jobs"), |pool, _pg| {
            Ok(sqlx::query_as(
                "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_after,
                                   created_at, updated_at)
                 VALUES ($1, $2, $3, 'pending', 0, $4, $5, $5, $5) RETURNING *",
            )
            .bind(Uuid::now_v7())
            .bind(new.kind)
            .bind(Json(&new.payload))
            .bind(new.max_attempts)
            .bind(now)
            .fetch_one(pool)
            .await?)
        })
    }

    /// One job.
    pub async fn get_job(&self, id: Uuid) -> StoreResult<Job> {
        on_backend!(read self, ("SELECT", "jobs"), |pool, _pg| {
            sqlx::query_as("SELECT * FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)
        })
    }

    /// Jobs, optionally of one status, in creation order after `cursor`.
    pub async fn list_jobs(
        &self,
        status: Option<&str>,
        limit: i64,
        cursor: Option<Uuid>,
    ) -> StoreResult<Vec<Job>> {
        on_backend!(read self, ("SELECT", "jobs"), |pool, _pg| {
            Ok(sqlx::query_as(
                "SELECT * FROM jobs WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR id > $2)
                 ORDER BY id LIMIT $3",
            )
            .bind(status)
            .bind(cursor)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Counts jobs per status.
    pub async fn count_jobs_by_status(&self) -> StoreResult<Vec<(String, i64)>> {
        on_backend!(read self, ("SELECT", "jobs"), |pool, _pg| {
            Ok(
                sqlx::query_as("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status")
                    .fetch_all(pool)
                    .await?,
            )
        })
    }

    /// Since when the longest-waiting due job (pending, or failed and past its retry time) has
    /// been due, if one is.
    pub async fn oldest_due_job(&self, now: DateTime<Utc>) -> StoreResult<Option<DateTime<Utc>>> {
        on_backend!(read self, ("SELECT", "jobs"), |pool, _pg| {
            let row: Option<(DateTime<Utc>,)> = sqlx::query_as(
                "SELECT run_after FROM jobs WHERE status IN ('pending', 'failed') AND run_after <= $1 \
                 ORDER BY run_after LIMIT 1",
            )
            .bind(now)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|(run_after,)| run_after))
        })
    }

    /// The database queue: leases the next due job to `worker` until `locked_until`.
    pub async fn claim_next_job(
        &self,
        worker: &str,
        locked_until: DateTime<Utc>,
    ) -> StoreResult<Option<Job>> {
        let now = Utc::now();
        on_backend!(self, ("UPDATE", "jobs"), |pool, pg| {
            let sql = if pg {
                CLAIM_NEXT_POSTGRES
            } else {
                CLAIM_NEXT_SQLITE
            };
            Ok(sqlx::query_as(sql)
                .bind(worker)
                .bind(locked_until)
                .bind(now)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Leases job `id` to `worker` if it is due, or if its previous holder's lease expired.
    /// `None`: completed, dead, held by a live worker, or not due yet; the delivery that named
    /// it can be dropped.
    pub async fn claim_job(
        &self,
        id: Uuid,
        worker: &str,
        locked_until: DateTime<Utc>,
    ) -> StoreResult<Option<Job>> {
        let now = Utc::now();
        on_backend!(self, ("UPDATE", "jobs"), |pool, _pg| {
            Ok(sqlx::query_as(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $2,
                                 locked_until = $3, updated_at = $4
                 WHERE id = $1
                   AND ((status IN ('pending', 'failed') AND run_after <= $4)
                        OR (status = 'running' AND locked_until < $4))
                 RETURNING *",
            )
            .bind(id)
            .bind(worker)
            .bind(locked_until)
            .bind(now)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Marks a job completed with `result`, if `worker` still holds it.
    pub async fn complete_job(&self, id: Uuid, worker: &str, result: Value) -> StoreResult<bool> {
        let now = Utc::now();
        on_backend!(self, ("UPDATE", "jobs"), |pool, _pg| {
            let done = sqlx::query(COMPLETE_JOB)
                .bind(id)
                .bind(worker)
                .bind(Json(&result))
                .bind(now)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Records a failed attempt: `failed` with a retry at `retry_at`, or `dead` when the
    /// attempts are used up. Returns the new status, or `None` if `worker` no longer held it.
    pub async fn fail_job(
        &self,
        id: Uuid,
        worker: &str,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> StoreResult<Option<String>> {
        let now = Utc::now();
        on_backend!(self, ("UPDATE", "jobs"), |pool, _pg| {
            Ok(sqlx::query_scalar(
                "UPDATE jobs SET
                    status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'failed' END,
                    finished_at = CASE WHEN attempts >= max_attempts THEN $5 ELSE NULL END,
                    last_error = $3, run_after = $4, enqueued_at = NULL, locked_by = NULL,
                    locked_until = NULL, updated_at = $5
                 WHERE id = $1 AND locked_by = $2 AND status = 'running'
                 RETURNING status",
            )
            .bind(id)
            .bind(worker)
            .bind(error)
            .bind(retry_at)
            .bind(now)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Gives a job back untouched (a worker shutting down): pending again, the attempt not
    /// counted.
    pub async fn release_job(&self, id: Uuid, worker: &str) -> StoreResult<bool> {
        let now = Utc::now();
        on_backend!(self, ("UPDATE", "jobs"), |pool, _pg| {
            let released = sqlx::query(
                "UPDATE jobs SET status = 'pending', attempts = attempts - 1, locked_by = NULL,
                                 locked_until = NULL, enqueued_at = NULL, updated_at = $3
                 WHERE id = $1 AND locked_by = $2 AND status = 'running'",
            )
            .bind(id)
            .bind(worker)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(released.rows_affected() == 1)
        })
    }

    /// Jobs whose worker's lease ran out (it died or hung): pending again, or dead when that
    /// was their last attempt. Returns how many.
    pub async fn requeue_expired_jobs(&self) -> StoreResult<u64> {
        let now = Utc::now();
        on_backend!(self, ("UPDATE", "jobs"), |pool, _pg| {
            let done = sqlx::query(
                "UPDATE jobs SET
                    status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
                    finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END,
                    last_error = coalesce(last_error, 'the worker holding the job stopped'),
                    locked_by = NULL, locked_until = NULL, enqueued_at = NULL, updated_at = $1
                 WHERE status = 'running' AND locked_until < $1",
            )
            .bind(now)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Due jobs that no queue holds: never handed over, or handed back after a failure.
    pub async fn due_unqueued_jobs(&self, limit: i64) -> StoreResult<Vec<Uuid>> {
        let now = Utc::now();
        on_backend!(read self, ("SELECT", "jobs"), |pool, _pg| {
            Ok(sqlx::query_scalar(
                "SELECT id FROM jobs
                 WHERE status IN ('pending', 'failed') AND run_after <= $1 AND enqueued_at IS NULL
                 ORDER BY run_after, id LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Records that `id` was handed to the queue.
    pub async fn mark_job_enqueued(&self, id: Uuid) -> StoreResult<()> {
        let now = Utc::now();
        on_backend!(self, ("UPDATE", "jobs"), |pool, _pg| {
            sqlx::query("UPDATE jobs SET enqueued_at = $2 WHERE id = $1 AND enqueued_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The queue lost its contents (Redis restarted without persistence, or was flushed):
    /// every waiting job must be handed over again. Returns how many.
    pub async fn forget_enqueued_jobs(&self) -> StoreResult<u64> {
        on_backend!(self, ("UPDATE", "jobs"), |pool, _pg| {
            let done = sqlx::query(
                "UPDATE jobs SET enqueued_at = NULL
                 WHERE status IN ('pending', 'failed') AND enqueued_at IS NOT NULL",
            )
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Marks the document of an analysis job as being analysed.
    pub async fn mark_document_running(&self, document_id: Uuid) -> StoreResult<()> {
        on_backend!(self, ("UPDATE", "documents"), |pool, _pg| {
            sqlx::query(
                "UPDATE documents SET analysis_status = 'running'
                 WHERE id = $1 AND analysis_status = 'pending'",
            )
            .bind(document_id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Applies a document analysis and completes its job in one transaction, only if
    /// `worker` still holds the job: a second run of the same job (a redelivery, or a worker
    /// that outlived its lease) changes nothing. Recomputes the patient's score and summary.
    pub async fn finish_document_analysis(
        &self,
        job_id: Uuid,
        worker: &str,
        effect: DocumentAnalysisEffect,
    ) -> StoreResult<bool> {
        let now = Utc::now();
        let result = serde_json::json!({
            "document_id": effect.document_id,
            "analysis_status": effect.status,
        });
        let applied = on_backend!(self, ("UPDATE", "documents"), |pool, pg| {
            let mut tx = pool.begin().await?;
            let held = sqlx::query(COMPLETE_JOB)
                .bind(job_id)
                .bind(worker)
                .bind(Json(&result))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if held.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            let patient_id: Option<Uuid> = sqlx::query_scalar(
                "UPDATE documents SET analysis_status = $2, analysis = $3, analysis_error = $4,
                                      analyzed_at = $5
                 WHERE id = $1 RETURNING patient_id",
            )
            .bind(effect.document_id)
            .bind(effect.status)
            .bind(effect.analysis.as_ref().map(Json))
            .bind(&effect.error)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            // The patient (and so the document) may have been deleted meanwhile: the job is
            // still done.
            if let Some(patient_id) = patient_id {
                recompute_score!(tx, patient_id, now, pg);
            }
            tx.commit().await?;
            Ok::<bool, StoreError>(true)
        })?;
        if applied {
            self.summary_refreshed().await?;
        }
        Ok(applied)
    }
}
