//! The fertility score of a patient and the clinic-wide patient summaries.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{
    ApiError, ApiPath, ApiQuery, AppState, ErrorBody, JsonBytes, Page, PageParams, missing,
};
use crate::auth::{Action, Caller};
use crate::cache::score_key;
use crate::clinic;
use crate::domain::{FertilityScore, fertility_score};
use crate::store::PatientSummary;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_fertility_score))
        .routes(routes!(list_summaries))
}

/// A patient's fertility score with its domains, critical findings and recommendations.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PatientScore {
    /// The patient.
    pub patient_id: Uuid,
    /// The score.
    #[serde(flatten)]
    pub score: FertilityScore,
}

/// The fertility score, computed from the patient's recorded analyses (DOMAIN.md).
#[utoipa::path(get, path = "/api/v1/patients/{id}/fertility-score", params(("id" = Uuid, Path, description = "patient id")), tag = "scores",
    responses((status = 200, body = PatientScore), (status = 404, body = ErrorBody)))]
async fn get_fertility_score(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(patient_id): ApiPath<Uuid>,
) -> Result<JsonBytes, ApiError> {
    caller.require(Action::Read)?;
    let store = &state.store;
    let score = state
        .cache
        .json_or_load(&score_key(patient_id), async {
            store
                .get_patient(patient_id)
                .await
                .map_err(missing("patient"))?;
            let analyses = store.list_analyses(patient_id).await?;
            let documents = store.completed_document_analyses(patient_id).await?;
            let score = fertility_score(&clinic::evidence(&analyses, &documents));
            Ok::<_, ApiError>(PatientScore { patient_id, score })
        })
        .await?;
    Ok(JsonBytes(score))
}

/// Per patient: document count, completed analyses, latest score, last document date.
#[utoipa::path(get, path = "/api/v1/summaries", params(PageParams), tag = "scores",
    responses((status = 200, body = Page<PatientSummary>), (status = 422, body = ErrorBody)))]
async fn list_summaries(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<JsonBytes, ApiError> {
    caller.require(Action::Read)?;
    let limit = page.limit()?;
    let generation = state.cache.summary_generation().await;
    let cursor = page.cursor.map(|c| c.to_string()).unwrap_or_default();
    let key = format!("summaries:{generation}:{limit}:{cursor}");
    let store = &state.store;
    let page = state
        .cache
        .json_or_load(&key, async {
            let items = store.list_summaries(limit, page.cursor).await?;
            Ok::<_, ApiError>(Page::new(items, limit, |s| s.patient_id))
        })
        .await?;
    Ok(JsonBytes(page))
}
