//! Uploaded documents: the metadata row; the bytes live in object storage.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

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
    /// `pending`, `running`, `completed` or `failed`.
    pub analysis_status: String,
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
    /// Records an uploaded document (analysis status `pending`).
    pub async fn insert_document(&self, new: NewDocument) -> StoreResult<Document> {
        let document = on_backend!(self, |pool, pg| {
            let mut tx = pool.begin().await?;
            let document: Document = sqlx::query_as(
                "INSERT INTO documents (id, patient_id, document_type, filename, content_type,
                                        size_bytes, sha256, object_key, analysis_status, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9) RETURNING *",
            )
            .bind(new.id)
            .bind(new.patient_id)
            .bind(&new.document_type)
            .bind(&new.filename)
            .bind(&new.content_type)
            .bind(new.size_bytes)
            .bind(&new.sha256)
            .bind(&new.object_key)
            .bind(Utc::now())
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
            document
        });
        self.after_summary_input_changed().await?;
        Ok(document)
    }

    /// One document by id.
    pub async fn get_document(&self, id: Uuid) -> StoreResult<Document> {
        on_backend!(self, |pool, _pg| {
            sqlx::query_as("SELECT * FROM documents WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)
        })
    }

    /// A patient's documents in upload order, after `cursor`.
    pub async fn list_documents(
        &self,
        patient_id: Uuid,
        limit: i64,
        cursor: Option<Uuid>,
    ) -> StoreResult<Vec<Document>> {
        on_backend!(self, |pool, _pg| {
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
