//! Documents: streamed upload to object storage (at most `api.max_upload_bytes`, type checked
//! by magic bytes), metadata, download.

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::Instrument;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiError, ApiPath, ApiQuery, AppState, ErrorBody, Page, PageParams, missing};
use crate::analysis::{DocumentAnalysis, LabValue};
use crate::auth::{Action, Caller};
use crate::domain::Domain;
use crate::jobs::{ANALYZE_DOCUMENT, analyze_document_job, enqueue_span};
use crate::limits::Limit;
use crate::objects::Upload;
use crate::store::{Document, NewDocument};

/// The document types of DOMAIN.md.
pub const DOCUMENT_TYPES: [&str; 10] = [
    "lab_report",
    "hormone_panel",
    "ultrasound_image",
    "microscopy_image",
    "medical_report",
    "prescription",
    "consultation_notes",
    "surgical_report",
    "imaging_study",
    "pathology_report",
];

/// Bytes looked at to recognise the content.
const SNIFF_LEN: usize = 1024;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    // The upload handler counts the file's bytes itself against `api.max_upload_bytes`;
    // the hard limit of the middleware bounds the whole body.
    let upload = OpenApiRouter::new()
        .routes(routes!(upload_document, list_documents))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .merge(upload)
        .routes(routes!(get_document))
        .routes(routes!(get_document_content))
}

/// The multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    /// The file: PDF, PNG, JPEG or plain text, at most 10 MB.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// One of lab_report, hormone_panel, ultrasound_image, microscopy_image, medical_report,
    /// prescription, consultation_notes, surgical_report, imaging_study, pathology_report.
    document_type: String,
}

/// A document with what its analysis found.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    /// The stored document.
    #[serde(flatten)]
    pub document: Document,
    /// Lab values found, in canonical units, each with a confidence.
    pub values: Vec<LabValue>,
    /// Key findings, in plain clinical sentences.
    pub key_findings: Vec<String>,
    /// The fertility domains the values bear on.
    pub domains: Vec<Domain>,
}

impl From<Document> for DocumentView {
    fn from(document: Document) -> Self {
        let found: DocumentAnalysis = document
            .analysis
            .as_ref()
            .and_then(|a| serde_json::from_value(a.0.clone()).ok())
            .unwrap_or_default();
        DocumentView {
            document,
            values: found.values,
            key_findings: found.key_findings,
            domains: found.domains,
        }
    }
}

/// A file received and stored under its key.
struct ReceivedFile {
    filename: String,
    content_type: &'static str,
    size: u64,
    sha256: String,
}

/// Upload a document; its analysis starts in the background (status `pending`).
#[utoipa::path(post, path = "/api/v1/patients/{id}/documents", params(("id" = Uuid, Path, description = "patient id")),
    request_body(content = UploadForm, content_type = "multipart/form-data"), tag = "documents",
    responses((status = 202, body = DocumentView), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn upload_document(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(patient_id): ApiPath<Uuid>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<DocumentView>), ApiError> {
    caller.require(Action::UploadDocuments)?;
    state
        .limits
        .check(caller.token_id, Limit::UploadDocument)
        .await?;
    let mut multipart = multipart.map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_multipart",
            "the body must be multipart/form-data with the fields file and document_type",
        )
    })?;
    state
        .store
        .get_patient(patient_id)
        .await
        .map_err(missing("patient"))?;

    let id = Uuid::now_v7();
    let key = format!("documents/{patient_id}/{id}");
    let mut object_written = false;
    let outcome = receive_form(&state, &mut multipart, &key, &mut object_written).await;
    let enqueue = enqueue_span(ANALYZE_DOCUMENT);
    let stored = match outcome {
        Ok((document_type, file)) => {
            let new = NewDocument {
                id,
                patient_id,
                document_type,
                filename: file.filename,
                content_type: file.content_type.to_owned(),
                size_bytes: i64::try_from(file.size).unwrap_or(i64::MAX),
                sha256: file.sha256,
                object_key: key.clone(),
            };
            let job = analyze_document_job(id, &state.config.jobs, &enqueue);
            state
                .store
                .insert_document(new, Some(job))
                .instrument(enqueue.clone())
                .await
                .map_err(missing("patient"))
        }
        Err(e) => Err(e),
    };
    match stored {
        Ok((document, job)) => {
            if let Some(job) = job {
                state.jobs.hand_over(job.id).instrument(enqueue).await;
            }
            state.cache.bump_summaries().await;
            tracing::info!(patient_id = %patient_id, document_id = %document.id, size_bytes = document.size_bytes, content_type = %document.content_type, "document stored");
            Ok((StatusCode::ACCEPTED, Json(document.into())))
        }
        Err(error) if object_written && error.is_unconfirmed() => {
            // The row may be stored: its content stays. At worst an object without a row.
            tracing::warn!(document_id = %id, "kept the object of an upload the database did not confirm");
            Err(error)
        }
        Err(error) => {
            // Nothing half-written: an object stored for a request that then failed goes.
            if object_written && let Err(e) = state.objects.delete(&key).await {
                tracing::warn!(document_id = %id, error = %e, "could not remove the object of a failed upload");
            }
            Err(error)
        }
    }
}

/// Reads the form. `object_written` is set once the file is in object storage, so that the caller
/// can remove it when a later step fails.
async fn receive_form(
    state: &AppState,
    multipart: &mut Multipart,
    key: &str,
    object_written: &mut bool,
) -> Result<(String, ReceivedFile), ApiError> {
    let mut document_type = None;
    let mut file = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "document_type" => {
                let text = field.text().await.map_err(multipart_error)?;
                document_type = Some(parse_document_type(text.trim())?);
            }
            "file" => {
                if file.is_some() {
                    return Err(ApiError::invalid_field("file", "send exactly one file"));
                }
                let max = state.config.api.max_upload_bytes;
                file = Some(receive_file(state, field, key, max).await?);
                *object_written = true;
            }
            other => {
                return Err(ApiError::invalid_field(
                    other,
                    format!("unknown form field '{other}'; expected file and document_type"),
                ));
            }
        }
    }
    let document_type = document_type.ok_or_else(|| {
        ApiError::invalid_field("document_type", "the document_type field is missing")
    })?;
    let file = file.ok_or_else(|| ApiError::invalid_field("file", "the file field is missing"))?;
    Ok((document_type, file))
}

fn parse_document_type(value: &str) -> Result<String, ApiError> {
    if DOCUMENT_TYPES.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::invalid_field(
            "document_type",
            format!(
                "unknown document type '{value}'; expected one of {}",
                DOCUMENT_TYPES.join(", ")
            ),
        ))
    }
}

/// Streams the file to object storage. The first bytes decide the type before anything is
/// written; the size is counted as bytes arrive; any failure aborts the upload, leaving
/// nothing stored.
async fn receive_file(
    state: &AppState,
    mut field: Field<'_>,
    key: &str,
    max: u64,
) -> Result<ReceivedFile, ApiError> {
    let declared = field.content_type().map(str::to_owned);
    let filename = sanitize_filename(field.file_name());
    let mut upload: Option<Upload> = None;
    let mut head = Vec::with_capacity(SNIFF_LEN);
    let mut content_type = None;
    let mut size = 0u64;
    let mut hasher = Sha256::new();
    let streamed: Result<(), ApiError> = async {
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            size += chunk.len() as u64;
            if size > max {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "file_too_large",
                    format!("the file is larger than the limit of {max} bytes"),
                )
                .with_field("file"));
            }
            hasher.update(&chunk);
            match upload.as_mut() {
                Some(upload) => upload.write(&chunk).await.map_err(storage_error)?,
                None => {
                    head.extend_from_slice(&chunk);
                    if head.len() >= SNIFF_LEN {
                        let kind = check_content(&head, false, declared.as_deref())?;
                        content_type = Some(kind);
                        upload = Some(start(state, key, &head).await?);
                    }
                }
            }
        }
        if upload.is_none() {
            if head.is_empty() {
                return Err(ApiError::invalid_field("file", "the file is empty"));
            }
            content_type = Some(check_content(&head, true, declared.as_deref())?);
            upload = Some(start(state, key, &head).await?);
        }
        Ok(())
    }
    .await;
    match (streamed, upload) {
        (Ok(()), Some(upload)) => upload.finish().await.map_err(storage_error)?,
        (Ok(()), None) => unreachable!("a successful read always starts the upload"),
        (Err(e), Some(upload)) => {
            if let Err(abort) = upload.abort().await {
                tracing::warn!(error = %abort, "could not abort an upload");
            }
            return Err(e);
        }
        (Err(e), None) => return Err(e),
    }
    Ok(ReceivedFile {
        filename,
        content_type: content_type.expect("set with the upload"),
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

async fn start(state: &AppState, key: &str, head: &[u8]) -> Result<Upload, ApiError> {
    let mut upload = state
        .objects
        .start_upload(key)
        .await
        .map_err(storage_error)?;
    upload.write(head).await.map_err(storage_error)?;
    Ok(upload)
}

/// Recognises PDF, PNG, JPEG and plain text by their first bytes and checks the type the
/// client declared, if it declared one of those.
pub fn check_content(
    head: &[u8],
    complete: bool,
    declared: Option<&str>,
) -> Result<&'static str, ApiError> {
    let detected = detect(head, complete).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_file_type",
            "the content is not a PDF, PNG, JPEG or plain text file",
        )
        .with_field("file")
    })?;
    let declared = declared
        .and_then(|d| d.split(';').next())
        .map(|d| d.trim().to_ascii_lowercase());
    let declared = match declared.as_deref() {
        None | Some("" | "application/octet-stream") => return Ok(detected),
        Some("image/jpg") => "image/jpeg".to_owned(),
        Some(other) => other.to_owned(),
    };
    if declared == detected {
        Ok(detected)
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type_mismatch",
            format!("the file was declared as {declared} but its content is {detected}"),
        )
        .with_field("file"))
    }
}

fn detect(head: &[u8], complete: bool) -> Option<&'static str> {
    if head.starts_with(b"%PDF-") {
        return Some("application/pdf");
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if head.starts_with(b"\xFF\xD8\xFF") {
        return Some("image/jpeg");
    }
    if head.contains(&0) {
        return None;
    }
    match std::str::from_utf8(head) {
        Ok(_) => Some("text/plain"),
        // The sniffed prefix may end inside a multi-byte character.
        Err(e) if !complete && e.error_len().is_none() => Some("text/plain"),
        Err(_) => None,
    }
}

/// The last path component, without control characters, at most 255 characters.
fn sanitize_filename(name: Option<&str>) -> String {
    let base = name
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect::<String>();
    if base.trim().is_empty() {
        "document".to_owned()
    } else {
        base
    }
}

fn multipart_error(err: MultipartError) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body is larger than the upload limit",
        )
    } else {
        ApiError::bad_request("malformed_multipart", err.body_text())
    }
}

fn storage_error(err: object_store::Error) -> ApiError {
    ApiError::unavailable("object storage", err)
}

/// A patient's documents in upload order.
#[utoipa::path(get, path = "/api/v1/patients/{id}/documents", params(("id" = Uuid, Path, description = "patient id"), PageParams), tag = "documents",
    responses((status = 200, body = Page<DocumentView>), (status = 404, body = ErrorBody)))]
async fn list_documents(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(patient_id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<DocumentView>>, ApiError> {
    caller.require(Action::Read)?;
    let limit = page.limit()?;
    state
        .store
        .get_patient(patient_id)
        .await
        .map_err(missing("patient"))?;
    let items = state
        .store
        .list_documents(patient_id, limit, page.cursor)
        .await?;
    let page = Page::new(items, limit, |d| d.id);
    Ok(Json(Page {
        items: page.items.into_iter().map(DocumentView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One document's metadata, analysis status and what the analysis found.
#[utoipa::path(get, path = "/api/v1/documents/{id}", params(("id" = Uuid, Path, description = "document id")), tag = "documents",
    responses((status = 200, body = DocumentView), (status = 404, body = ErrorBody)))]
async fn get_document(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<DocumentView>, ApiError> {
    caller.require(Action::Read)?;
    let document = state
        .store
        .get_document(id)
        .await
        .map_err(missing("document"))?;
    Ok(Json(document.into()))
}

/// The document's bytes, as uploaded.
#[utoipa::path(get, path = "/api/v1/documents/{id}/content", params(("id" = Uuid, Path, description = "document id")), tag = "documents",
    responses((status = 200, description = "the file", content_type = "application/octet-stream"), (status = 404, body = ErrorBody)))]
async fn get_document_content(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    caller.require(Action::Read)?;
    let document = state
        .store
        .get_document(id)
        .await
        .map_err(missing("document"))?;
    let stream = state
        .objects
        .get(&document.object_key)
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                ApiError::internal(format!("document {id} has no object in storage"))
            }
            other => storage_error(other),
        })?;
    let ascii_name: String = document
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, document.content_type.clone()),
            (header::CONTENT_LENGTH, document.size_bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{ascii_name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_recognised_by_magic_bytes() {
        type Case<'a> = (&'a [u8], Option<&'a str>, Result<&'a str, &'a str>);
        let cases: [Case; 9] = [
            (b"%PDF-1.7\n", None, Ok("application/pdf")),
            (
                b"%PDF-1.7\n",
                Some("application/pdf"),
                Ok("application/pdf"),
            ),
            (
                b"\x89PNG\r\n\x1a\n\0\0",
                Some("application/pdf"),
                Err("content_type_mismatch"),
            ),
            (b"\xFF\xD8\xFF\xE0", Some("image/jpg"), Ok("image/jpeg")),
            (
                b"FSH 7.2 IU/L\n",
                Some("text/plain; charset=utf-8"),
                Ok("text/plain"),
            ),
            (
                b"FSH 7.2 IU/L\n",
                Some("application/pdf"),
                Err("content_type_mismatch"),
            ),
            (b"PK\x03\x04\0\0", None, Err("unsupported_file_type")),
            (b"\xC3", None, Err("unsupported_file_type")),
            (
                b"MZ\x90\0",
                Some("application/octet-stream"),
                Err("unsupported_file_type"),
            ),
        ];
        for (head, declared, expected) in cases {
            let got = check_content(head, true, declared).map_err(|e| e.code);
            assert_eq!(got, expected, "{head:?} declared {declared:?}");
        }
        // A prefix cut inside a multi-byte character is still text.
        assert_eq!(
            detect("é".as_bytes().get(..1).unwrap(), false),
            Some("text/plain")
        );
    }

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(sanitize_filename(Some("../../etc/passwd")), "passwd");
        assert_eq!(sanitize_filename(Some("C:\\x\\report.pdf")), "report.pdf");
        assert_eq!(sanitize_filename(Some("a\nb.txt")), "ab.txt");
        assert_eq!(sanitize_filename(None), "document");
    }
}
