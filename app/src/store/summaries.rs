//! The patient summary (DOMAIN.md): document count, completed analyses, latest fertility score,
//! last document date.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Store, StoreResult, on_backend};

/// One row of the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct PatientSummary {
    /// The patient.
    pub patient_id: Uuid,
    /// Documents uploaded.
    pub document_count: i64,
    /// Lab analyses recorded plus documents whose analysis completed.
    pub completed_analyses: i64,
    /// The latest fertility score, when any analysis exists.
    pub latest_score: Option<f64>,
    /// Its band.
    pub latest_band: Option<String>,
    /// When the latest document was uploaded.
    pub last_document_at: Option<DateTime<Utc>>,
}

/// SQLite: recomputes one patient's summary row. Runs inside the transaction of every write
/// that changes an input (the PostgreSQL materialized view has the same definition).
pub(super) const SQLITE_UPSERT_SUMMARY: &str = "
INSERT INTO patient_summaries
    (patient_id, document_count, completed_analyses, latest_score, latest_band, last_document_at)
SELECT
    p.id,
    (SELECT count(*) FROM documents d WHERE d.patient_id = p.id),
    (SELECT count(*) FROM analyses a WHERE a.patient_id = p.id)
        + (SELECT count(*) FROM documents d
           WHERE d.patient_id = p.id AND d.analysis_status = 'completed'),
    s.score,
    s.band,
    (SELECT max(d.created_at) FROM documents d WHERE d.patient_id = p.id)
FROM patients p LEFT JOIN fertility_scores s ON s.patient_id = p.id
WHERE p.id = $1
ON CONFLICT (patient_id) DO UPDATE SET
    document_count = excluded.document_count,
    completed_analyses = excluded.completed_analyses,
    latest_score = excluded.latest_score,
    latest_band = excluded.latest_band,
    last_document_at = excluded.last_document_at";

impl Store {
    /// Summaries in patient creation order, after `cursor` (the last patient id of the
    /// previous page).
    pub async fn list_summaries(
        &self,
        limit: i64,
        cursor: Option<Uuid>,
    ) -> StoreResult<Vec<PatientSummary>> {
        self.summary_settled().await?;
        on_backend!(read self, ("SELECT", "patient_summaries"), |pool, _pg| {
            Ok(sqlx::query_as(
                "SELECT patient_id, document_count, completed_analyses, latest_score, latest_band,
                        last_document_at
                 FROM patient_summaries
                 WHERE ($1 IS NULL OR patient_id > $1)
                 ORDER BY patient_id LIMIT $2",
            )
            .bind(cursor)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Whether the summary is a materialized view (PostgreSQL) rather than a table; tests and
    /// `/readyz` report it.
    pub async fn summary_is_materialized_view(&self) -> StoreResult<bool> {
        on_backend!(read self, ("SELECT", "pg_matviews"), |pool, pg| {
            if !pg {
                return Ok(false);
            }
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_matviews WHERE matviewname = 'patient_summaries'
                 AND schemaname = current_schema()",
            )
            .fetch_one(pool)
            .await?;
            Ok(n == 1)
        })
    }
}
