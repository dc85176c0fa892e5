//! Background jobs: document analysis, reports, retries and dead letters, the Redis stream
//! and its reconciler, and a worker process killed mid-run.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Backend, TestApp, multipart, sample_png};
use fertivision::api;
use fertivision::jobs::{Queue, reconciler};
use serde_json::{Value, json};

const LAB_TEXT: &str =
    "Hormone panel\nAMH: 0.8 ng/mL\nFSH 7.2 IU/L\nSperm concentration 12 x10^6/mL\n";

fn redis_url(db: u8) -> String {
    let base = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    format!("{}/{db}", base.trim_end_matches('/'))
}

async fn upload(
    app: &TestApp,
    patient: &str,
    name: &str,
    content_type: &str,
    bytes: &[u8],
) -> Value {
    let (form_type, body) = multipart(Some("lab_report"), Some((name, content_type, bytes)));
    let request = Request::post(format!("/api/v1/patients/{patient}/documents"))
        .header(header::AUTHORIZATION, format!("Bearer {}", app.clinician))
        .header(header::CONTENT_TYPE, form_type)
        .body(Body::from(body))
        .unwrap();
    let answer = app.send(request).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
    answer.json
}

async fn patient(app: &TestApp) -> String {
    app.create_patient(
        json!({"name": "Job Patient", "date_of_birth": "1987-04-12", "sex": "female"}),
    )
    .await
}

async fn document(app: &TestApp, id: &str) -> Value {
    app.call(
        Method::GET,
        &format!("/api/v1/documents/{id}"),
        Some(&app.lab),
        None,
    )
    .await
    .json
}

#[tokio::test]
async fn uploads_are_analysed_and_feed_the_score() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let patient = patient(&app).await;
    let text = upload(
        &app,
        &patient,
        "panel.txt",
        "text/plain",
        LAB_TEXT.as_bytes(),
    )
    .await;
    assert_eq!(text["analysis_status"], "pending");
    let image = upload(&app, &patient, "scan.png", "image/png", &sample_png()).await;
    app.drain_jobs(Duration::from_secs(20)).await;

    let analysed = document(&app, text["id"].as_str().unwrap()).await;
    assert_eq!(analysed["analysis_status"], "completed", "{analysed}");
    let values = analysed["values"].as_array().unwrap();
    let value = |name: &str| {
        values
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        (
            value("AMH")["value"].as_f64(),
            value("AMH")["unit"].as_str()
        ),
        (Some(0.8), Some("ng/mL"))
    );
    assert_eq!(value("FSH")["value"].as_f64(), Some(7.2));
    assert_eq!(value("sperm_concentration")["unit"], "million/mL");
    assert!(!analysed["key_findings"].as_array().unwrap().is_empty());
    assert!(
        analysed["domains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "ovarian")
    );

    let reviewed = document(&app, image["id"].as_str().unwrap()).await;
    assert_eq!(reviewed["analysis_status"], "needs_review");
    assert_eq!(
        reviewed["values"],
        json!([]),
        "no invented findings for an image"
    );

    // The score uses the document's values: AMH < 1 asks to expedite treatment.
    let score = app
        .call(
            Method::GET,
            &format!("/api/v1/patients/{patient}/fertility-score"),
            Some(&app.lab),
            None,
        )
        .await;
    let ovarian = score.json["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == "ovarian")
        .unwrap()
        .clone();
    assert_eq!(ovarian["has_data"], true, "{}", score.json);
    assert!(
        score.json["recommendations"]
            .to_string()
            .to_lowercase()
            .contains("expedite"),
        "{}",
        score.json
    );
    let summary = app
        .call(Method::GET, "/api/v1/summaries", Some(&app.lab), None)
        .await;
    assert_eq!(
        summary.json["items"][0]["completed_analyses"], 1,
        "{}",
        summary.json
    );
    assert!(summary.json["items"][0]["latest_score"].is_number());
}

#[tokio::test]
async fn a_job_that_always_fails_ends_dead_with_its_error() {
    let app = TestApp::with_config(Backend::Sqlite, |c| {
        c.jobs.max_attempts = 3;
        c.jobs.backoff_base_ms = 10;
        c.jobs.backoff_max_ms = 50;
    })
    .await
    .unwrap();
    let patient = patient(&app).await;
    let doc = upload(
        &app,
        &patient,
        "panel.txt",
        "text/plain",
        LAB_TEXT.as_bytes(),
    )
    .await;
    // The object disappears from storage: every attempt fails to read it.
    let objects = app.objects_dir();
    for entry in walk(&objects) {
        std::fs::remove_file(entry).unwrap();
    }
    app.drain_jobs(Duration::from_secs(20)).await;

    let task_id = doc["job_id"].as_str().unwrap();
    let task = app
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{task_id}"),
            Some(&app.lab),
            None,
        )
        .await;
    assert_eq!(task.json["status"], "failed", "{}", task.json);
    assert_eq!(task.json["attempts"], 3);
    assert!(
        task.json["error"]
            .as_str()
            .unwrap()
            .contains("read document content"),
        "{}",
        task.json
    );

    let dead = app
        .call(
            Method::GET,
            "/api/v1/jobs?status=dead",
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(dead.status, StatusCode::OK);
    let items = dead.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], task_id);
    assert_eq!(items[0]["status"], "dead");
    let forbidden = app
        .call(
            Method::GET,
            "/api/v1/jobs?status=dead",
            Some(&app.clinician),
            None,
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(
        document(&app, doc["id"].as_str().unwrap()).await["analysis_status"],
        "running"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path))
            } else {
                out.push(path)
            }
        }
    }
    out
}

#[tokio::test]
async fn a_report_pdf_has_every_section() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let patient = patient(&app).await;
    for (kind, body) in [
        (
            "semen",
            json!({"concentration": 12, "progressive_motility": 35, "normal_morphology": 5}),
        ),
        (
            "follicle",
            json!({"ovary": "right", "antral_follicle_count": 9}),
        ),
        (
            "hysteroscopy",
            json!({"findings": ["normal"], "endometrial_thickness_mm": 9}),
        ),
    ] {
        let path = format!("/api/v1/patients/{patient}/analyses/{kind}");
        let answer = app
            .call(Method::POST, &path, Some(&app.clinician), Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED);
    }
    upload(
        &app,
        &patient,
        "panel.txt",
        "text/plain",
        LAB_TEXT.as_bytes(),
    )
    .await;
    app.drain_jobs(Duration::from_secs(20)).await;

    let requested = app
        .call(
            Method::POST,
            &format!("/api/v1/patients/{patient}/reports"),
            Some(&app.clinician),
            None,
        )
        .await;
    assert_eq!(requested.status, StatusCode::ACCEPTED, "{}", requested.json);
    let task_id = requested.json["id"].as_str().unwrap().to_owned();
    app.drain_jobs(Duration::from_secs(30)).await;
    let task = app
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{task_id}"),
            Some(&app.clinician),
            None,
        )
        .await;
    assert_eq!(task.json["status"], "completed", "{}", task.json);
    let url = task.json["result"]["url"].as_str().unwrap().to_owned();
    let pdf = app
        .call(Method::GET, &url, Some(&app.clinician), None)
        .await;
    assert_eq!(pdf.status, StatusCode::OK);
    assert_eq!(
        pdf.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/pdf"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, &pdf.bytes).unwrap();
    let out = Command::new("pdftotext")
        .arg("-layout")
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let score = app
        .call(
            Method::GET,
            &format!("/api/v1/patients/{patient}/fertility-score"),
            Some(&app.clinician),
            None,
        )
        .await;
    let overall = format!("{:.1}", score.json["score"].as_f64().unwrap());
    let band = score.json["band"].as_str().unwrap().to_owned();
    let mut at = 0;
    for section in [
        "FertiVision Comprehensive Fertility Report",
        patient.as_str(),
        "Patient Information",
        "Fertility Score Summary",
        overall.as_str(),
        band.as_str(),
        "Domain Scores",
        "Document Summary",
        "panel.txt",
        "Detailed Findings",
        "Clinical Recommendations",
        "does not replace clinical judgement",
    ] {
        let found = text[at..]
            .find(section)
            .unwrap_or_else(|| panic!("'{section}' missing or out of order in:\n{text}"));
        at += found;
    }
}

/// An application whose queue is the Redis stream under a fresh key prefix of `db`.
async fn redis_app(backend: Backend, db: u8) -> Option<(TestApp, Queue)> {
    redis_app_at(backend, &redis_url(db), Duration::from_secs(1)).await
}

async fn redis_app_at(backend: Backend, url: &str, timeout: Duration) -> Option<(TestApp, Queue)> {
    let mut app = TestApp::new(backend).await?;
    let prefix = format!("fvtest-{}", uuid::Uuid::new_v4().simple());
    let queue = Queue::redis(url, &prefix, timeout).await.unwrap();
    if redis_down() {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true and Redis is unreachable at {}",
            redis_url(0)
        );
        eprintln!("SKIPPED (not CI): Redis unreachable");
        return None;
    }
    let s = app.store.store.clone();
    app.router = api::router(common::app_state(
        &s,
        &app.objects,
        &app.config,
        &queue,
        &app.cache,
    ));
    app.queue = queue.clone();
    Some((app, queue))
}

#[tokio::test]
async fn a_flushed_stream_is_rebuilt_by_the_reconciler() {
    // Database 9 of the test server belongs to this test alone: it is flushed.
    let Some((app, queue)) = redis_app(Backend::Sqlite, 9).await else {
        return;
    };
    let patient = patient(&app).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            upload(
                &app,
                &patient,
                &format!("p{i}.txt"),
                "text/plain",
                LAB_TEXT.as_bytes(),
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let client = redis::flush(&redis_url(9));
    assert!(client, "FLUSHDB");
    let report = reconciler::pass(&app.store.store, &queue).await.unwrap();
    assert!(report.stream_lost, "{report:?}");
    assert_eq!(report.published, 5);
    app.drain_jobs(Duration::from_secs(20)).await;
    for id in ids {
        assert_eq!(document(&app, &id).await["analysis_status"], "completed");
    }
}

/// Whether the test Redis server is unreachable (the Redis tests then skip, except in CI).
fn redis_down() -> bool {
    let up = Command::new("redis-cli")
        .args(["-u", &redis_url(0), "PING"])
        .output();
    !up.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
}

#[tokio::test]
async fn with_redis_down_the_api_serves_and_jobs_flow_when_it_returns() {
    let proxy = common::Proxy::start(("127.0.0.1".to_owned(), 6379)).await;
    proxy.set_down(true).await;
    let url = format!("redis://127.0.0.1:{}/0", proxy.port);
    let Some((app, queue)) = redis_app_at(Backend::Sqlite, &url, Duration::from_millis(300)).await
    else {
        return;
    };
    let patient = patient(&app).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        let doc = upload(
            &app,
            &patient,
            &format!("d{i}.txt"),
            "text/plain",
            LAB_TEXT.as_bytes(),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "upload waited {:?}",
            started.elapsed()
        );
        ids.push(doc["id"].as_str().unwrap().to_owned());
    }
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json["status"], "degraded", "{}", ready.json);
    let waiting = app
        .store
        .store
        .list_jobs(Some("pending"), 10, None)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 3);
    assert!(
        waiting.iter().all(|j| j.enqueued_at.is_none()),
        "jobs wait in the database, unqueued"
    );

    proxy.set_down(false).await;
    let started = Instant::now();
    while queue.ping().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "redis client did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = reconciler::pass(&app.store.store, &queue).await.unwrap();
    assert_eq!(report.published, 3, "{report:?}");
    app.drain_jobs(Duration::from_secs(20)).await;
    for id in ids {
        assert_eq!(document(&app, &id).await["analysis_status"], "completed");
    }
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.json["status"], "ready", "{}", ready.json);
}

/// Minimal Redis access for the tests, through redis-cli.
mod redis {
    pub fn flush(url: &str) -> bool {
        std::process::Command::new("redis-cli")
            .args(["-u", url, "FLUSHDB"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "OK")
    }
}

#[tokio::test]
async fn two_hundred_documents_survive_a_worker_killed_mid_run() {
    let Some((app, _queue)) = redis_app(Backend::Postgres, 0).await else {
        return;
    };
    let patient = patient(&app).await;
    let mut documents = Vec::new();
    for i in 0..200 {
        let doc = upload(
            &app,
            &patient,
            &format!("r{i}.txt"),
            "text/plain",
            LAB_TEXT.as_bytes(),
        )
        .await;
        documents.push(doc["id"].as_str().unwrap().to_owned());
    }
    let Queue::Redis(redis) = &app.queue else {
        unreachable!()
    };
    let prefix = redis.stream_key().trim_end_matches(":jobs").to_owned();
    let schema = app.store.schema().expect("postgres schema").to_owned();
    let database_url = format!(
        "{}?options=-c%20search_path%3D{schema}",
        common::database_url().split('?').next().unwrap()
    );
    let start_worker = || {
        Command::new(env!("CARGO_BIN_EXE_fertivision"))
            .args(["worker", "--concurrency", "4", "--data-dir"])
            .arg(app.store.dir.path())
            .env("FERTIVISION_DATABASE__URL", &database_url)
            .env("FERTIVISION_REDIS__URL", redis_url(0))
            .env("FERTIVISION_REDIS__KEY_PREFIX", &prefix)
            .env("FERTIVISION_STORAGE__BACKEND", "local")
            .env("FERTIVISION_STORAGE__PATH", app.objects_dir())
            .env("FERTIVISION_JOBS__LEASE_SECS", "4")
            .env("FERTIVISION_JOBS__RECLAIM_IDLE_MS", "3000")
            .env("FERTIVISION_JOBS__RECONCILE_INTERVAL_MS", "300")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let store = app.store.store.clone();
    let completed = || async {
        store
            .count_jobs_by_status()
            .await
            .unwrap()
            .into_iter()
            .find(|(s, _)| s == "completed")
            .map_or(0, |(_, n)| n)
    };

    let mut first = start_worker();
    let started = Instant::now();
    while completed().await < 30 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first worker made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL, mid-run
    first.wait().unwrap();
    let at_kill = completed().await;
    println!("worker SIGKILLed with {at_kill} of 200 analyses completed");
    assert!(
        at_kill < 200,
        "the kill must happen mid-run (completed {at_kill})"
    );

    let mut second = start_worker();
    let started = Instant::now();
    while completed().await < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "stuck at {} completed",
            completed().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();

    let counts = store.count_jobs_by_status().await.unwrap();
    assert_eq!(
        counts,
        vec![("completed".to_owned(), 200)],
        "none pending, running, failed or dead"
    );
    for id in &documents {
        let doc = document(&app, id).await;
        assert_eq!(doc["analysis_status"], "completed", "{doc}");
        // Exactly once in effect: one set of values, not two.
        assert_eq!(doc["values"].as_array().unwrap().len(), 3, "{doc}");
    }
    let summary = app
        .call(Method::GET, "/api/v1/summaries", Some(&app.lab), None)
        .await;
    assert_eq!(summary.json["items"][0]["completed_analyses"], 200);
    app.store.cleanup().await;
}
