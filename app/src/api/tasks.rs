//! Background work seen from the API: `POST /patients/{id}/reports` queues a report and
//! answers 202 with a task; `GET /tasks/{id}` follows it; `GET /tasks/{id}/report.pdf` serves
//! the finished PDF; `GET /jobs` (admin) lists jobs by status, dead letters included.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiError, ApiPath, ApiQuery, AppState, ErrorBody, Page, missing, validate_limit};
use crate::auth::{Action, Caller};
use crate::jobs::{GENERATE_REPORT, enqueue_span, generate_report_job};
use crate::limits::Limit;
use crate::store::Job;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_report))
        .routes(routes!(get_task))
        .routes(routes!(get_report_pdf))
        .routes(routes!(list_jobs))
}

/// A background task as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Task {
    /// Task id.
    pub id: Uuid,
    /// `analyze_document` or `generate_report`.
    pub kind: String,
    /// `pending`, `running`, `completed` or `failed`. A failed attempt that will be retried is
    /// `pending`; `failed` is final (the job is dead-lettered).
    pub status: &'static str,
    /// Attempts started.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The last attempt's error.
    pub error: Option<String>,
    /// When completed: what it produced; for a report, `url` of the PDF.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it completed or failed for good.
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Job> for Task {
    fn from(job: Job) -> Self {
        let status = match job.status.as_str() {
            "running" => "running",
            "completed" => "completed",
            "dead" => "failed",
            _ => "pending",
        };
        let result = (status == "completed").then(|| {
            if job.kind == GENERATE_REPORT {
                serde_json::json!({ "url": format!("/api/v1/tasks/{}/report.pdf", job.id) })
            } else {
                job.result.as_ref().map(|r| r.0.clone()).unwrap_or_default()
            }
        });
        Task {
            id: job.id,
            kind: job.kind,
            status,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            error: job.last_error,
            result,
            created_at: job.created_at,
            finished_at: job.finished_at,
        }
    }
}

/// Queue the "FertiVision Comprehensive Fertility Report" of a patient.
#[utoipa::path(post, path = "/api/v1/patients/{id}/reports", params(("id" = Uuid, Path, description = "patient id")), tag = "tasks",
    responses((status = 202, body = Task), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn request_report(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(patient_id): ApiPath<Uuid>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Task>), ApiError> {
    caller.require(Action::Read)?;
    state
        .limits
        .check(caller.token_id, Limit::GenerateReport)
        .await?;
    state
        .store
        .get_patient(patient_id)
        .await
        .map_err(missing("patient"))?;
    let enqueue = enqueue_span(GENERATE_REPORT);
    let job = state
        .jobs
        .submit(generate_report_job(
            patient_id,
            &state.config.jobs,
            &enqueue,
        ))
        .instrument(enqueue)
        .await?;
    tracing::info!(%patient_id, task_id = %job.id, "report requested");
    let location = format!("/api/v1/tasks/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(job.into()),
    ))
}

/// A task's status and, when completed, its result.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", params(("id" = Uuid, Path, description = "task id")), tag = "tasks",
    responses((status = 200, body = Task), (status = 404, body = ErrorBody)))]
async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Task>, ApiError> {
    caller.require(Action::Read)?;
    Ok(Json(
        state
            .store
            .get_job(id)
            .await
            .map_err(missing("task"))?
            .into(),
    ))
}

/// The PDF of a completed report task.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/report.pdf", params(("id" = Uuid, Path, description = "task id")), tag = "tasks",
    responses((status = 200, description = "the report", content_type = "application/pdf"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn get_report_pdf(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    caller.require(Action::Read)?;
    let job = state.store.get_job(id).await.map_err(missing("task"))?;
    if job.kind != GENERATE_REPORT {
        return Err(ApiError::not_found("report"));
    }
    let key = job
        .result
        .as_ref()
        .filter(|_| job.status == "completed")
        .and_then(|r| r.0.get("object_key")?.as_str().map(str::to_owned))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_ready",
                "the report is not ready yet",
            )
        })?;
    let stream = state
        .objects
        .get(&key)
        .await
        .map_err(|e| ApiError::unavailable("object storage", e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"fertility-report-{id}.pdf\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Query of the job list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListJobs {
    /// Only jobs with this status: pending, running, failed, completed or dead.
    status: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

const JOB_STATUSES: [&str; 5] = ["pending", "running", "failed", "completed", "dead"];

/// Jobs with their full state (admin): attempts, last error, lease. `status=dead` lists the
/// dead letters.
#[utoipa::path(get, path = "/api/v1/jobs", params(ListJobs), tag = "tasks",
    responses((status = 200, body = Page<Job>), (status = 403, body = ErrorBody)))]
async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListJobs>,
) -> Result<Json<Page<Job>>, ApiError> {
    caller.require(Action::Operate)?;
    let limit = validate_limit(query.limit)?;
    if let Some(status) = &query.status
        && !JOB_STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::invalid_field(
            "status",
            format!(
                "unknown status '{status}'; expected one of {}",
                JOB_STATUSES.join(", ")
            ),
        ));
    }
    let items = state
        .store
        .list_jobs(query.status.as_deref(), limit, query.cursor)
        .await?;
    Ok(Json(Page::new(items, limit, |j| j.id)))
}
