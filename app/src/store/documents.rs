//! Uploaded documents: the metadata row; the bytes live in object storage.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use serde_json::Value;
use sqlx::types::Json;

use super::jobs::{Job, NewJob};
use super::{Store, StoreError, StoreResult, on_backend, summaries::SQLITE_UPSERT_SUMMARY};

/// A stored document.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, ToSchema)]
pub struct Document {
    /// Identifier.
    pub id: Uuid,
    /// The patient it belongs to.
    pub patient_id: Uuid,
    /// One of the document types of DOMAIN.md, e.g. `lab_report`.
    pub document_type: String,
    /// The file name the client gave.
    pub filename: String,
    /// Media type detected from the content: `application/pdf`, `image/png`, `image/jpeg` or
    /// `text/plain`.
    pub content_type: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Where the bytes are in object storage.
    #[serde(skip)]
    pub object_key: String,
    /// `pending`, `running`, `completed`, `needs_review` (images: no automatic findings) or
    /// `failed` (see `analysis_error`).
    pub analysis_status: String,
    /// Values, key findings and domains found by the analysis (JSON of
    /// `analysis::DocumentAnalysis`).
    #[serde(skip)]
    pub analysis: Option<Json<Value>>,
    /// Why the analysis failed or needs review.
    pub analysis_error: Option<String>,
    /// When the analysis finished.
    pub analyzed_at: Option<DateTime<Utc>>,
    /// The analysis job (a task id).
    pub job_id: Option<Uuid>,
    /// When it was uploaded.
    pub created_at: DateTime<Utc>,
}

/// A document whose bytes are already in object storage.
#[derive(Debug, Clone)]
pub struct NewDocument {
    /// Identifier chosen before the upload (it names the object).
    pub id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// Document type.
    pub document_type: String,
    /// Client file name.
    pub filename: String,
    /// Detected media type.
    pub content_type: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Object key.
    pub object_key: String,
}

impl Store {
    /// Records an uploaded document (analysis status `pending`) and, in the same transaction,
    /// the job that will analyse it.
    pub async fn insert_document(
        &self,
        new: NewDocument,
        analysis_job: Option<NewJob>,
    ) -> StoreResult<(Document, Option<Job>)> {
        let now = Utc::now();
        let inserted = on_backend!(self, ("INSERT", "documents"), |pool, pg| {
            let mut tx = pool.begin().await?;
            let job: Option<Job> = match &analysis_job {
                Some(job) => Some(
                    sqlx::query_as(
                        "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts,
                                           run_after, created_at, updated_at)
                         VALUES ($1, $2, $3, 'pending', 0, $4, $5, $5, $5) RETURNING *",
                    )
                    .bind(Uuid::now_v7())
                    .bind(job.kind)
                    .bind(Json(&job.payload))
                    .bind(job.max_attempts)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?,
                ),
                None => None,
            };
            let document: Document = sqlx::query_as(
                "INSERT INTO documents (id, patient_id, document_type, filename, content_type,
                                        size_bytes, sha256, object_key, analysis_status,
                                        created_at, job_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10) RETURNING *",
            )
            .bind(new.id)
            .bind(new.patient_id)
            .bind(&new.document_type)
            .bind(&new.filename)
            .bind(&new.content_type)
            .bind(new.size_bytes)
            .bind(&new.sha256)
            .bind(&new.object_key)
            .bind(now)
            .bind(job.as_ref().map(|j| j.id))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| StoreError::classify(e, "duplicate document id"))?;
            if !pg {
                sqlx::query(SQLITE_UPSERT_SUMMARY)
                    .bind(new.patient_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok((document, job))
        })?;
        self.summary_input_changed();
        Ok(inserted)
    }

    /// One document by id.
    pub async fn get_document(&self, id: Uuid) -> StoreResult<Document> {
        on_backend!(read self, ("SELECT", "documents"), |pool, _pg| {
            sqlx::query_as("SELECT * FROM documents WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)
        })
    }

    /// All of a patient's documents, in upload order (for the report).
    pub async fn list_all_documents(&self, patient_id: Uuid) -> StoreResult<Vec<Document>> {
        on_backend!(read self, ("SELECT", "documents"), |pool, _pg| {
            Ok(
                sqlx::query_as("SELECT * FROM documents WHERE patient_id = $1 ORDER BY id")
                    .bind(patient_id)
                    .fetch_all(pool)
                    .await?,
            )
        })
    }

    /// The analyses of a patient's completed documents, oldest first (for the score).
    pub async fn completed_document_analyses(&self, patient_id: Uuid) -> StoreResult<Vec<Value>> {
        on_backend!(read self, ("SELECT", "documents"), |pool, _pg| {
            let rows: Vec<Option<Json<Value>>> = sqlx::query_scalar(
                "SELECT analysis FROM documents
                 WHERE patient_id = $1 AND analysis_status = 'completed' ORDER BY id",
            )
            .bind(patient_id)
            .fetch_all(pool)
            .await?;
            Ok(rows.into_iter().flatten().map(|j| j.0).collect())
        })
    }

    /// A patient's documents in upload order, after `cursor`.
    pub async fn list_documents(
        &self,
        patient_id: Uuid,
        limit: i64,
        cursor: Option<Uuid>,
    ) -> StoreResult<Vec<Document>> {
        on_backend!(read self, ("SELECT", "documents"), |pool, _pg| {
            Ok(sqlx::query_as(
                "SELECT * FROM documents WHERE patient_id = $1 AND ($2 IS NULL OR id > $2)
                 ORDER BY id LIMIT $3",
            )
            .bind(patient_id)
            .bind(cursor)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }
}
