//! Patients: the one table that holds personal health information.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, on_backend, summaries::SQLITE_UPSERT_SUMMARY};

/// A patient as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Patient {
    /// Stable identifier; the only patient reference allowed in telemetry.
    pub id: Uuid,
    /// Medical record number, unique within the clinic.
    pub mrn: String,
    /// Full name.
    pub name: String,
    /// Date of birth.
    pub date_of_birth: NaiveDate,
    /// `female`, `male` or `other`.
    pub sex: String,
    /// Contact email.
    pub email: Option<String>,
    /// Contact phone.
    pub phone: Option<String>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

/// A validated new patient.
#[derive(Debug, Clone)]
pub struct NewPatient {
    /// Medical record number.
    pub mrn: String,
    /// Full name.
    pub name: String,
    /// Date of birth.
    pub date_of_birth: NaiveDate,
    /// `female`, `male` or `other`.
    pub sex: String,
    /// Contact email.
    pub email: Option<String>,
    /// Contact phone.
    pub phone: Option<String>,
}

/// A validated partial update: `None` leaves a field as it is; for the optional contact
/// fields `Some(None)` clears them.
#[derive(Debug, Clone, Default)]
pub struct PatientPatch {
    /// New record number.
    pub mrn: Option<String>,
    /// New name.
    pub name: Option<String>,
    /// New date of birth.
    pub date_of_birth: Option<NaiveDate>,
    /// New sex.
    pub sex: Option<String>,
    /// New or cleared email.
    pub email: Option<Option<String>>,
    /// New or cleared phone.
    pub phone: Option<Option<String>>,
}

const MRN_TAKEN: &str = "a patient with this medical record number already exists";

impl Store {
    /// Creates a patient; [`StoreError::Conflict`] when the record number is taken.
    pub async fn create_patient(&self, new: NewPatient) -> StoreResult<Patient> {
        let now = Utc::now();
        let id = Uuid::now_v7();
        let patient = on_backend!(self, ("INSERT", "patients"), |pool, pg| {
            let mut tx = pool.begin().await?;
            let patient: Patient = sqlx::query_as(
                "INSERT INTO patients (id, mrn, name, date_of_birth, sex, email, phone, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING *",
            )
            .bind(id)
            .bind(&new.mrn)
            .bind(&new.name)
            .bind(new.date_of_birth)
            .bind(&new.sex)
            .bind(&new.email)
            .bind(&new.phone)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| StoreError::classify(e, MRN_TAKEN))?;
            if !pg {
                sqlx::query(SQLITE_UPSERT_SUMMARY)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(patient)
        })?;
        self.summary_input_changed();
        Ok(patient)
    }

    /// One patient by id.
    pub async fn get_patient(&self, id: Uuid) -> StoreResult<Patient> {
        on_backend!(read self, ("SELECT", "patients"), |pool, _pg| {
            sqlx::query_as("SELECT * FROM patients WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)
        })
    }

    /// Patients in creation order, after `cursor` (the last id of the previous page).
    pub async fn list_patients(
        &self,
        limit: i64,
        cursor: Option<Uuid>,
    ) -> StoreResult<Vec<Patient>> {
        on_backend!(read self, ("SELECT", "patients"), |pool, _pg| {
            Ok(sqlx::query_as(
                "SELECT * FROM patients WHERE ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
            )
            .bind(cursor)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The patient with this record number, if any.
    pub async fn find_patient_by_mrn(&self, mrn: &str) -> StoreResult<Option<Patient>> {
        on_backend!(read self, ("SELECT", "patients"), |pool, _pg| {
            Ok(sqlx::query_as("SELECT * FROM patients WHERE mrn = $1")
                .bind(mrn)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Applies a partial update in one statement.
    pub async fn update_patient(&self, id: Uuid, patch: PatientPatch) -> StoreResult<Patient> {
        let now = Utc::now();
        on_backend!(self, ("UPDATE", "patients"), |pool, _pg| {
            sqlx::query_as(
                "UPDATE patients SET
                    mrn = coalesce($2, mrn),
                    name = coalesce($3, name),
                    date_of_birth = coalesce($4, date_of_birth),
                    sex = coalesce($5, sex),
                    email = CASE WHEN $6 THEN $7 ELSE email END,
                    phone = CASE WHEN $8 THEN $9 ELSE phone END,
                    updated_at = $10
                 WHERE id = $1 RETURNING *",
            )
            .bind(id)
            .bind(&patch.mrn)
            .bind(&patch.name)
            .bind(patch.date_of_birth)
            .bind(&patch.sex)
            .bind(patch.email.is_some())
            .bind(patch.email.clone().flatten())
            .bind(patch.phone.is_some())
            .bind(patch.phone.clone().flatten())
            .bind(now)
            .fetch_optional(pool)
            .await
            .map_err(|e| StoreError::classify(e, MRN_TAKEN))?
            .ok_or(StoreError::NotFound)
        })
    }

    /// Deletes a patient with their analyses, documents, score and summary. Returns the object
    /// keys of the deleted documents, for the caller to remove from object storage.
    pub async fn delete_patient(&self, id: Uuid) -> StoreResult<Vec<String>> {
        let keys = on_backend!(self, ("DELETE", "patients"), |pool, _pg| {
            let mut tx = pool.begin().await?;
            // Writes first: a SQLite transaction that reads before it writes can fail to
            // upgrade its lock under concurrency.
            let keys: Vec<String> = sqlx::query_scalar(
                "DELETE FROM documents WHERE patient_id = $1 RETURNING object_key",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let deleted = sqlx::query("DELETE FROM patients WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if deleted.rows_affected() == 0 {
                // Explicitly: a dropped transaction leaves its connection idle in transaction
                // until the pool reuses it.
                tx.rollback().await?;
                return Err(StoreError::NotFound);
            }
            tx.commit().await?;
            Ok(keys)
        })?;
        self.summary_input_changed();
        Ok(keys)
    }
}
