//! Uploads: the 10 MB limit, magic-byte checks, and byte-for-byte storage.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Backend, TestApp, multipart, sample_pdf, sample_png};
use serde_json::json;
use sha2::{Digest, Sha256};

const LIMIT: usize = 10 * 1024 * 1024;

async fn upload(
    app: &TestApp,
    patient: &str,
    document_type: &str,
    file: (&str, &str, &[u8]),
) -> common::Answer {
    let (content_type, body) = multipart(Some(document_type), Some(file));
    let request = Request::post(format!("/api/v1/patients/{patient}/documents"))
        .header(header::AUTHORIZATION, format!("Bearer {}", app.clinician))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    app.send(request).await
}

fn stored_files(app: &TestApp) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out)
            } else {
                out.push(path)
            }
        }
    }
    let mut files = Vec::new();
    walk(&app.objects_dir(), &mut files);
    files
}

async fn new_patient(app: &TestApp) -> String {
    app.create_patient(
        json!({"name": "Upload Patient", "date_of_birth": "1985-07-01", "sex": "female"}),
    )
    .await
}

async fn documents_of(app: &TestApp, patient: &str) -> usize {
    let list = app
        .call(
            Method::GET,
            &format!("/api/v1/patients/{patient}/documents"),
            Some(&app.lab),
            None,
        )
        .await;
    list.json["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn one_byte_over_ten_megabytes_is_refused_and_not_stored() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let patient = new_patient(&app).await;
    let mut big = b"%PDF-1.4\n".to_vec();
    big.resize(LIMIT + 1, b'a');
    let answer = upload(
        &app,
        &patient,
        "lab_report",
        ("big.pdf", "application/pdf", &big),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.json
    );
    assert_eq!(answer.json["error"]["code"], "file_too_large");
    assert_eq!(
        stored_files(&app),
        Vec::<std::path::PathBuf>::new(),
        "nothing stored"
    );
    assert_eq!(documents_of(&app, &patient).await, 0, "no document row");
}

#[tokio::test]
async fn exactly_ten_megabytes_is_accepted() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let patient = new_patient(&app).await;
    let mut file = b"%PDF-1.4\n".to_vec();
    file.resize(LIMIT, b'a');
    let answer = upload(
        &app,
        &patient,
        "lab_report",
        ("max.pdf", "application/pdf", &file),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    assert_eq!(answer.json["size_bytes"], LIMIT);
    assert_eq!(stored_files(&app).len(), 1);
}

#[tokio::test]
async fn a_png_declared_as_pdf_is_refused() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let patient = new_patient(&app).await;
    let answer = upload(
        &app,
        &patient,
        "lab_report",
        ("scan.pdf", "application/pdf", &sample_png()),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        answer.json
    );
    assert_eq!(answer.json["error"]["code"], "content_type_mismatch");
    assert!(
        answer.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("image/png")
    );
    assert!(stored_files(&app).is_empty());
    assert_eq!(documents_of(&app, &patient).await, 0);
    // The same bytes declared as what they are are accepted.
    let answer = upload(
        &app,
        &patient,
        "ultrasound_image",
        ("scan.png", "image/png", &sample_png()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    assert_eq!(answer.json["content_type"], "image/png");
}

async fn pdf_round_trip(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else {
        return;
    };
    let patient = new_patient(&app).await;
    let pdf = sample_pdf();
    let answer = upload(
        &app,
        &patient,
        "hormone_panel",
        ("../panel.pdf", "application/pdf", &pdf),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    let document = answer.json;
    assert_eq!(document["analysis_status"], "pending");
    assert_eq!(document["content_type"], "application/pdf");
    assert_eq!(document["document_type"], "hormone_panel");
    assert_eq!(document["filename"], "panel.pdf");
    assert_eq!(document["size_bytes"], pdf.len());
    assert_eq!(document["sha256"], hex::encode(Sha256::digest(&pdf)));
    assert!(
        document.get("object_key").is_none(),
        "storage keys stay internal"
    );
    let id = document["id"].as_str().unwrap();

    let meta = app
        .call(
            Method::GET,
            &format!("/api/v1/documents/{id}"),
            Some(&app.lab),
            None,
        )
        .await;
    assert_eq!(meta.json, document);
    let content = app
        .call(
            Method::GET,
            &format!("/api/v1/documents/{id}/content"),
            Some(&app.lab),
            None,
        )
        .await;
    assert_eq!(content.status, StatusCode::OK);
    assert_eq!(
        content.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/pdf"
    );
    assert_eq!(content.bytes.as_ref(), pdf.as_slice(), "byte for byte");

    let summaries = app
        .call(Method::GET, "/api/v1/summaries", Some(&app.lab), None)
        .await;
    assert_eq!(summaries.json["items"][0]["document_count"], 1);
    assert!(summaries.json["items"][0]["last_document_at"].is_string());
    app.store.cleanup().await;
}

#[tokio::test]
async fn a_real_pdf_round_trips_on_sqlite() {
    pdf_round_trip(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_real_pdf_round_trips_on_postgres() {
    pdf_round_trip(Backend::Postgres).await;
}

#[tokio::test]
async fn text_and_jpeg_are_accepted_and_unknown_binaries_are_not() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let patient = new_patient(&app).await;
    let text = "FSH 7.2 IU/L\nAMH: 0.8 ng/mL\n".as_bytes();
    let answer = upload(
        &app,
        &patient,
        "lab_report",
        ("labs.txt", "text/plain", text),
    )
    .await;
    assert_eq!(
        (answer.status, answer.json["content_type"].as_str()),
        (StatusCode::ACCEPTED, Some("text/plain"))
    );
    let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0];
    let answer = upload(
        &app,
        &patient,
        "microscopy_image",
        ("m.jpg", "image/jpeg", &jpeg),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    let zip = b"PK\x03\x04\x14\x00\x00\x00";
    let answer = upload(
        &app,
        &patient,
        "lab_report",
        ("x.pdf", "application/octet-stream", zip),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.json["error"]["code"], "unsupported_file_type");
    assert_eq!(stored_files(&app).len(), 2);
}
