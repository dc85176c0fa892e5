//! `/patients`: create, list (by page or by record number), read, update, delete.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{NaiveDate, Utc};
use rand::Rng;
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{
    ApiError, ApiJson, ApiPath, ApiQuery, AppState, ErrorBody, JsonBytes, Page, missing,
    validate_limit,
};
use crate::auth::{Action, Caller};
use crate::cache::{patient_key, score_key};
use crate::limits::Limit;
use crate::store::{NewPatient, Patient, PatientPatch};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_patient, list_patients))
        .routes(routes!(get_patient, update_patient, delete_patient))
}

/// Sex as recorded.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    /// Female.
    Female,
    /// Male.
    Male,
    /// Other or not stated.
    Other,
}

impl Sex {
    fn as_str(self) -> &'static str {
        match self {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Other => "other",
        }
    }
}

/// A new patient.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePatient {
    /// Full name, 1 to 200 characters.
    name: String,
    /// Date of birth, `YYYY-MM-DD`, between 1900-01-01 and today.
    date_of_birth: String,
    /// `female`, `male` or `other`.
    sex: Sex,
    /// Medical record number, 3 to 32 letters, digits or `-`; generated (`MR-` + 8
    /// characters) when absent.
    mrn: Option<String>,
    /// Contact email.
    email: Option<String>,
    /// Contact phone: digits, spaces and `+-()`.
    phone: Option<String>,
}

/// A partial update. Absent fields stay as they are; `null` clears `email` or `phone`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePatient {
    name: Option<String>,
    date_of_birth: Option<String>,
    sex: Option<Sex>,
    mrn: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    phone: Option<Option<String>>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Query of the patient list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListPatients {
    /// Page size, 1 to 200 (default 50).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<Uuid>,
    /// Find the patient with this medical record number.
    mrn: Option<String>,
}

fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid_field(
            "name",
            "name must be 1 to 200 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "name",
            "name must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

fn validate_birth_date(value: &str) -> Result<NaiveDate, ApiError> {
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
        ApiError::invalid_field(
            "date_of_birth",
            "date_of_birth must be a date as YYYY-MM-DD",
        )
    })?;
    let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date");
    if date < earliest || date > Utc::now().date_naive() {
        return Err(ApiError::invalid_field(
            "date_of_birth",
            "date_of_birth must be between 1900-01-01 and today",
        ));
    }
    Ok(date)
}

fn validate_mrn(mrn: &str) -> Result<String, ApiError> {
    let ok =
        (3..=32).contains(&mrn.len()) && mrn.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !ok {
        return Err(ApiError::invalid_field(
            "mrn",
            "mrn must be 3 to 32 letters, digits or '-'",
        ));
    }
    Ok(mrn.to_owned())
}

fn validate_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(ApiError::invalid_field(
            "email",
            "email must be an address like name@example.org",
        ));
    }
    Ok(email.to_owned())
}

fn validate_phone(phone: &str) -> Result<String, ApiError> {
    let phone = phone.trim();
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let ok = (5..=20).contains(&digits)
        && phone.len() <= 32
        && phone
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if !ok {
        return Err(ApiError::invalid_field(
            "phone",
            "phone must have 5 to 20 digits and only digits, spaces and +-().",
        ));
    }
    Ok(phone.to_owned())
}

/// A record number for a patient created without one: `MR-` and 8 characters from an alphabet
/// without look-alikes (no 0/O, 1/I).
fn generate_mrn() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let suffix: String = (0..8)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("MR-{suffix}")
}

/// Register a patient.
#[utoipa::path(post, path = "/api/v1/patients", request_body = CreatePatient, tag = "patients",
    responses((status = 201, body = Patient), (status = 409, description = "record number taken", body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_patient(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreatePatient>,
) -> Result<(StatusCode, Json<Patient>), ApiError> {
    caller.require(Action::WritePatients)?;
    state
        .limits
        .check(caller.token_id, Limit::CreatePatient)
        .await?;
    let new = NewPatient {
        name: validate_name(&body.name)?,
        date_of_birth: validate_birth_date(&body.date_of_birth)?,
        sex: body.sex.as_str().to_owned(),
        mrn: match &body.mrn {
            Some(mrn) => validate_mrn(mrn)?,
            None => generate_mrn(),
        },
        email: body.email.as_deref().map(validate_email).transpose()?,
        phone: body.phone.as_deref().map(validate_phone).transpose()?,
    };
    let patient = state.store.create_patient(new).await?;
    crate::otel::metrics().patients.add(1.0, &[]);
    state.cache.bump_summaries().await;
    tracing::info!(patient_id = %patient.id, "patient created");
    Ok((StatusCode::CREATED, Json(patient)))
}

/// List patients in creation order, or find one by record number.
#[utoipa::path(get, path = "/api/v1/patients", params(ListPatients), tag = "patients",
    responses((status = 200, body = Page<Patient>), (status = 400, body = ErrorBody)))]
async fn list_patients(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListPatients>,
) -> Result<Json<Page<Patient>>, ApiError> {
    caller.require(Action::Read)?;
    let limit = validate_limit(query.limit)?;
    if let Some(mrn) = &query.mrn {
        let mrn = validate_mrn(mrn)?;
        let items: Vec<Patient> = state
            .store
            .find_patient_by_mrn(&mrn)
            .await?
            .into_iter()
            .collect();
        return Ok(Json(Page {
            items,
            next_cursor: None,
        }));
    }
    let items = state.store.list_patients(limit, query.cursor).await?;
    Ok(Json(Page::new(items, limit, |p| p.id)))
}

/// One patient.
#[utoipa::path(get, path = "/api/v1/patients/{id}", params(("id" = Uuid, Path, description = "patient id")), tag = "patients",
    responses((status = 200, body = Patient), (status = 404, body = ErrorBody)))]
async fn get_patient(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<JsonBytes, ApiError> {
    caller.require(Action::Read)?;
    let store = &state.store;
    let patient = state
        .cache
        .json_or_load(&patient_key(id), async {
            store.get_patient(id).await.map_err(missing("patient"))
        })
        .await?;
    Ok(JsonBytes(patient))
}

/// Change some of a patient's fields.
#[utoipa::path(patch, path = "/api/v1/patients/{id}", params(("id" = Uuid, Path, description = "patient id")), request_body = UpdatePatient, tag = "patients",
    responses((status = 200, body = Patient), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_patient(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdatePatient>,
) -> Result<Json<Patient>, ApiError> {
    caller.require(Action::WritePatients)?;
    let patch = PatientPatch {
        name: body.name.as_deref().map(validate_name).transpose()?,
        date_of_birth: body
            .date_of_birth
            .as_deref()
            .map(validate_birth_date)
            .transpose()?,
        sex: body.sex.map(|s| s.as_str().to_owned()),
        mrn: body.mrn.as_deref().map(validate_mrn).transpose()?,
        email: body
            .email
            .map(|e| e.as_deref().map(validate_email).transpose())
            .transpose()?,
        phone: body
            .phone
            .map(|p| p.as_deref().map(validate_phone).transpose())
            .transpose()?,
    };
    let nothing = patch.name.is_none()
        && patch.date_of_birth.is_none()
        && patch.sex.is_none()
        && patch.mrn.is_none()
        && patch.email.is_none()
        && patch.phone.is_none();
    if nothing {
        return Err(ApiError::invalid_field(
            "",
            "the update names no field to change",
        ));
    }
    let patient = state
        .store
        .update_patient(id, patch)
        .await
        .map_err(missing("patient"))?;
    state.cache.invalidate(&[patient_key(id)]).await;
    tracing::info!(patient_id = %patient.id, "patient updated");
    Ok(Json(patient))
}

/// Delete a patient with all their records and documents (admin only).
#[utoipa::path(delete, path = "/api/v1/patients/{id}", params(("id" = Uuid, Path, description = "patient id")), tag = "patients",
    responses((status = 204, description = "deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_patient(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require(Action::DeletePatients)?;
    let keys = state
        .store
        .delete_patient(id)
        .await
        .map_err(missing("patient"))?;
    state
        .cache
        .invalidate(&[patient_key(id), score_key(id)])
        .await;
    state.cache.bump_summaries().await;
    for key in keys {
        // The rows are gone; an object left behind is unreachable, so log and go on.
        if let Err(error) = state.objects.delete(&key).await {
            tracing::warn!(patient_id = %id, %error, "could not delete a document object");
        }
    }
    tracing::info!(patient_id = %id, "patient deleted");
    Ok(StatusCode::NO_CONTENT)
}
