//! Lab analyses and the fertility score they feed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::jobs::recompute_score;
use super::{Store, StoreError, StoreResult, on_backend};
use crate::domain::AnalysisKind;

/// A stored lab analysis: the measurements as given and the classification computed from them.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, ToSchema)]
pub struct Analysis {
    /// Identifier.
    pub id: Uuid,
    /// The patient it belongs to.
    pub patient_id: Uuid,
    /// `semen`, `oocyte`, `embryo`, `follicle` or `hysteroscopy`.
    pub kind: String,
    /// The validated measurements.
    #[schema(value_type = Object)]
    pub input: Json<Value>,
    /// The classification (fields depend on the kind).
    #[schema(value_type = Object)]
    pub result: Json<Value>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// A validated, classified analysis to store.
#[derive(Debug, Clone)]
pub struct NewAnalysis {
    /// The patient.
    pub patient_id: Uuid,
    /// Its kind.
    pub kind: AnalysisKind,
    /// The validated measurements.
    pub input: Value,
    /// The classification.
    pub result: Value,
}

impl Store {
    /// Stores an analysis and, in the same transaction, the patient's recomputed fertility
    /// score (and, on SQLite, their summary row). [`StoreError::NotFound`] when the patient
    /// does not exist.
    pub async fn insert_analysis(&self, new: NewAnalysis) -> StoreResult<Analysis> {
        let now = Utc::now();
        let id = Uuid::now_v7();
        let analysis = on_backend!(self, ("INSERT", "analyses"), |pool, pg| {
            let mut tx = pool.begin().await?;
            let analysis: Analysis = sqlx::query_as(
                "INSERT INTO analyses (id, patient_id, kind, input, result, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            )
            .bind(id)
            .bind(new.patient_id)
            .bind(new.kind.as_str())
            .bind(Json(&new.input))
            .bind(Json(&new.result))
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| StoreError::classify(e, "duplicate analysis id"))?;

            recompute_score!(tx, new.patient_id, now, pg);
            tx.commit().await?;
            Ok(analysis)
        })?;
        self.summary_input_changed();
        Ok(analysis)
    }

    /// A patient's analyses, oldest first. Empty when the patient has none; the caller checks
    /// that the patient exists.
    pub async fn list_analyses(&self, patient_id: Uuid) -> StoreResult<Vec<Analysis>> {
        on_backend!(read self, ("SELECT", "analyses"), |pool, _pg| {
            Ok(
                sqlx::query_as("SELECT * FROM analyses WHERE patient_id = $1 ORDER BY id")
                    .bind(patient_id)
                    .fetch_all(pool)
                    .await?,
            )
        })
    }
}
