//! What each kind of job does. A handler returns `Ok` only after it recorded the job's
//! completion (with its effect, in one transaction where there is an effect); any `Err` is a
//! failed attempt, retried with back-off.

use serde::Deserialize;
use uuid::Uuid;

use super::worker::WorkerContext;
use super::{ANALYZE_DOCUMENT, GENERATE_REPORT};
use crate::analysis::{self, DocumentAnalysis, Outcome};
use crate::report::{self, ReportData, ReportDocument, ReportPatient, ReportValue};
use crate::store::{DocumentAnalysisEffect, Job, StoreError};

/// A failed attempt, with the reason recorded as the job's last error. The reason names the
/// step that failed and never carries personal data.
#[derive(Debug)]
pub struct JobError(pub String);

impl JobError {
    fn at(step: &str, error: impl std::fmt::Display) -> Self {
        JobError(format!("{step}: {error}"))
    }
}

/// Runs `job` with the handler of its kind.
pub async fn run(ctx: &WorkerContext, job: &Job) -> Result<(), JobError> {
    match job.kind.as_str() {
        ANALYZE_DOCUMENT => analyze_document(ctx, job).await,
        GENERATE_REPORT => generate_report(ctx, job).await,
        other => Err(JobError(format!("unknown job kind '{other}'"))),
    }
}

#[derive(Deserialize)]
struct DocumentPayload {
    document_id: Uuid,
}

#[derive(Deserialize)]
struct PatientPayload {
    patient_id: Uuid,
}

fn payload<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T, JobError> {
    serde_json::from_value(job.payload.0.clone()).map_err(|e| JobError::at("payload", e))
}

async fn analyze_document(ctx: &WorkerContext, job: &Job) -> Result<(), JobError> {
    let DocumentPayload { document_id } = payload(job)?;
    let started = std::time::Instant::now();
    let document = match ctx.store.get_document(document_id).await {
        Ok(document) => document,
        Err(StoreError::NotFound) => {
            // Deleted with its patient: nothing left to analyse.
            let result =
                serde_json::json!({ "document_id": document_id, "analysis_status": "deleted" });
            ctx.store
                .complete_job(job.id, &ctx.worker_id, result)
                .await
                .map_err(|e| JobError::at("complete", e))?;
            return Ok(());
        }
        Err(e) => return Err(JobError::at("load document", e)),
    };
    ctx.store
        .mark_document_running(document_id)
        .await
        .map_err(|e| JobError::at("mark running", e))?;
    let bytes = ctx
        .objects
        .get_bytes(&document.object_key)
        .await
        .map_err(|e| JobError::at("read document content", e))?;
    let content_type = document.content_type.clone();
    let outcome =
        tokio::task::spawn_blocking(move || analysis::analyse_document(&content_type, &bytes))
            .await
            .map_err(|e| JobError::at("analysis task", e))?;
    let effect = match outcome {
        Outcome::Completed(found) => DocumentAnalysisEffect {
            document_id,
            status: "completed",
            analysis: Some(serde_json::to_value(&found).map_err(|e| JobError::at("encode", e))?),
            error: None,
        },
        Outcome::NeedsReview { reason } => DocumentAnalysisEffect {
            document_id,
            status: "needs_review",
            analysis: None,
            error: Some(reason),
        },
        Outcome::Failed { reason } => DocumentAnalysisEffect {
            document_id,
            status: "failed",
            analysis: None,
            error: Some(reason),
        },
    };
    let status = effect.status;
    let applied = ctx
        .store
        .finish_document_analysis(job.id, &ctx.worker_id, effect)
        .await
        .map_err(|e| JobError::at("store analysis", e))?;
    crate::otel::metrics().document_processing.record(
        started.elapsed().as_secs_f64(),
        &[status],
        crate::otel::propagation::exemplar(&tracing::Span::current()),
    );
    if !applied {
        tracing::warn!(job_id = %job.id, "analysis finished after the lease was taken over; discarded");
    } else {
        ctx.cache.score_changed(document.patient_id).await;
    }
    Ok(())
}

async fn generate_report(ctx: &WorkerContext, job: &Job) -> Result<(), JobError> {
    let PatientPayload { patient_id } = payload(job)?;
    let started = std::time::Instant::now();
    let store = &ctx.store;
    let patient = store
        .get_patient(patient_id)
        .await
        .map_err(|e| JobError::at("load patient", e))?;
    let analyses = store
        .list_analyses(patient_id)
        .await
        .map_err(|e| JobError::at("load analyses", e))?;
    let documents = store
        .list_all_documents(patient_id)
        .await
        .map_err(|e| JobError::at("load documents", e))?;
    let completed: Vec<serde_json::Value> = documents
        .iter()
        .filter(|d| d.analysis_status == "completed")
        .filter_map(|d| d.analysis.as_ref().map(|a| a.0.clone()))
        .collect();
    let score = crate::domain::fertility_score(&crate::clinic::evidence(&analyses, &completed));
    let mut report_documents: Vec<ReportDocument> = documents
        .iter()
        .map(|d| {
            let found: Option<DocumentAnalysis> = d
                .analysis
                .as_ref()
                .and_then(|a| serde_json::from_value(a.0.clone()).ok());
            let (key_findings, values) = match found {
                Some(found) => (
                    found.key_findings,
                    found
                        .values
                        .into_iter()
                        .map(|v| ReportValue {
                            name: v.name.to_string(),
                            value: v.value,
                            unit: v.unit.to_string(),
                            confidence: v.confidence,
                        })
                        .collect(),
                ),
                None => (d.analysis_error.iter().cloned().collect(), Vec::new()),
            };
            ReportDocument {
                filename: d.filename.clone(),
                document_type: d.document_type.clone(),
                uploaded_at: d.created_at,
                analysis_status: d.analysis_status.clone(),
                key_findings,
                values,
            }
        })
        .collect();
    report_documents.sort_by_key(|d| std::cmp::Reverse(d.uploaded_at));
    let data = ReportData {
        generated_at: chrono::Utc::now(),
        patient: ReportPatient {
            id: patient.id,
            mrn: patient.mrn,
            name: patient.name,
            date_of_birth: patient.date_of_birth,
            sex: patient.sex,
        },
        score,
        documents: report_documents,
    };
    let rendering = std::time::Instant::now();
    let pdf = tokio::task::spawn_blocking(move || report::render_report(&data))
        .await
        .map_err(|e| JobError::at("render task", e))?
        .map_err(|e| JobError::at("render", e))?;
    tracing::debug!(
        render_ms = rendering.elapsed().as_millis() as u64,
        size_bytes = pdf.len(),
        "report rendered"
    );
    // The key depends only on the job: a second run overwrites the same object.
    let key = format!("reports/{patient_id}/{}.pdf", job.id);
    let size = pdf.len();
    ctx.objects
        .put(&key, pdf)
        .await
        .map_err(|e| JobError::at("store report", e))?;
    let result = serde_json::json!({ "object_key": key, "size_bytes": size });
    let completed = store
        .complete_job(job.id, &ctx.worker_id, result)
        .await
        .map_err(|e| JobError::at("complete", e))?;
    if !completed {
        tracing::warn!(job_id = %job.id, "report finished after the lease was taken over; discarded");
    }
    crate::otel::metrics().report_generation.record(
        started.elapsed().as_secs_f64(),
        &[],
        crate::otel::propagation::exemplar(&tracing::Span::current()),
    );
    Ok(())
}
