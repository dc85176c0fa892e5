//! `/patients/{id}/analyses`: record a lab analysis (validated, classified by the rules of
//! `crate::domain`, stored with the recomputed fertility score) and list them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiError, ApiJson, ApiPath, AppState, ErrorBody, decode_value, missing};
use crate::auth::{Action, Caller};
use crate::domain::{
    AnalysisKind, EmbryoInput, FieldError, FollicleInput, HysteroscopyInput, OocyteInput,
    SemenInput,
};
use crate::store::{Analysis, NewAnalysis};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(record_analysis))
        .routes(routes!(list_analyses))
}

impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        ApiError::invalid_field(err.field, err.message)
    }
}

/// Decodes, validates and classifies one kind's input; returns (input, result) as JSON.
fn classify<I, R>(
    body: Value,
    validate: fn(&I) -> Result<(), FieldError>,
    run: fn(&I) -> R,
) -> Result<(Value, Value), ApiError>
where
    I: DeserializeOwned + Serialize,
    R: Serialize,
{
    let input: I = decode_value(body)?;
    validate(&input)?;
    let result = run(&input);
    let input = serde_json::to_value(&input).map_err(ApiError::internal)?;
    let result = serde_json::to_value(&result).map_err(ApiError::internal)?;
    Ok((input, result))
}

/// Record a lab analysis of one kind. The body is the kind's input schema (`SemenInput`,
/// `OocyteInput`, `EmbryoInput`, `FollicleInput`, `HysteroscopyInput`); the answer carries the
/// classification in `result`.
#[utoipa::path(post, path = "/api/v1/patients/{id}/analyses/{kind}",
    params(("id" = Uuid, Path, description = "patient id"), ("kind" = AnalysisKind, Path, description = "semen, oocyte, embryo, follicle or hysteroscopy")),
    request_body(content = Object, description = "SemenInput, OocyteInput, EmbryoInput, FollicleInput or HysteroscopyInput, by kind"),
    tag = "analyses",
    responses((status = 201, body = Analysis), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn record_analysis(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((patient_id, kind)): ApiPath<(Uuid, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Analysis>), ApiError> {
    caller.require(Action::RecordAnalyses)?;
    let kind: AnalysisKind = kind.parse().map_err(|message: String| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_analysis_kind", message)
    })?;
    let (input, result) = match kind {
        AnalysisKind::Semen => classify(body, SemenInput::validate, SemenInput::classify)?,
        AnalysisKind::Oocyte => classify(body, OocyteInput::validate, OocyteInput::classify)?,
        AnalysisKind::Embryo => classify(body, EmbryoInput::validate, EmbryoInput::classify)?,
        AnalysisKind::Follicle => classify(body, FollicleInput::validate, FollicleInput::classify)?,
        AnalysisKind::Hysteroscopy => classify(
            body,
            HysteroscopyInput::validate,
            HysteroscopyInput::classify,
        )?,
    };
    let analysis = state
        .store
        .insert_analysis(NewAnalysis {
            patient_id,
            kind,
            input,
            result,
        })
        .await
        .map_err(missing("patient"))?;
    state.cache.score_changed(patient_id).await;
    tracing::info!(patient_id = %patient_id, analysis_id = %analysis.id, kind = kind.as_str(), "analysis recorded");
    Ok((StatusCode::CREATED, Json(analysis)))
}

/// A patient's analyses, oldest first.
#[utoipa::path(get, path = "/api/v1/patients/{id}/analyses", params(("id" = Uuid, Path, description = "patient id")), tag = "analyses",
    responses((status = 200, body = [Analysis]), (status = 404, body = ErrorBody)))]
async fn list_analyses(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(patient_id): ApiPath<Uuid>,
) -> Result<Json<Vec<Analysis>>, ApiError> {
    caller.require(Action::Read)?;
    state
        .store
        .get_patient(patient_id)
        .await
        .map_err(missing("patient"))?;
    Ok(Json(state.store.list_analyses(patient_id).await?))
}
