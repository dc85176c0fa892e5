//! Personal health information never enters telemetry (DOMAIN.md, Privacy), proven against the
//! platform as processes: patients with distinctive names, record numbers, emails, phone
//! numbers and birth dates go through every endpoint, failures included; then none of those
//! values is in anything the app sent the collector (its write-ahead log, byte for byte), in
//! the log index, in span attributes, in the metric labels, in the CPU profiles, or on the
//! processes' own stderr. Second, code that logs them by mistake: the collector's `redact`
//! transform takes them out before anything is indexed.

mod process;

use std::path::Path;
use std::time::Duration;

use process::{Platform, http, request, text_upload, wait_for};
use serde_json::{Value, json};

/// Patients whose data must never leave the database.
const ZEBULON: [&str; 5] = [
    "Zebulon Quattrocchi",
    "MRN-ZQ-80417",
    "zebulon.quattrocchi@privacy.example",
    "+31 6 4821 9937",
    "1987-03-14",
];
const PHILIPPA: [&str; 5] = [
    "Philippa Vandersloot",
    "PV-55190-X",
    "philippa.vandersloot@privacy.example",
    "+44 20 7946 0312",
    "1979-11-02",
];
/// Values changed by a PATCH, and ones sent in requests that fail.
const LATER: [&str; 4] = [
    "zq.new-address@privacy.example",
    "+31 6 1111 7788",
    "Quattrocchi-Bellweather",
    "zebulon-at-nowhere",
];

fn phi() -> Vec<String> {
    let mut values: Vec<String> = ZEBULON
        .iter()
        .chain(&PHILIPPA)
        .chain(&LATER)
        .map(|v| (*v).to_owned())
        .collect();
    // Surnames alone, and the way a phone number may be normalised.
    values.extend(["Quattrocchi", "Vandersloot"].map(str::to_owned));
    values.extend(
        [ZEBULON[3], PHILIPPA[3]].map(|p| p.chars().filter(|c| !c.is_whitespace()).collect()),
    );
    values
}

fn patient_body(p: &[&str; 5]) -> String {
    json!({
        "name": p[0], "mrn": p[1], "email": p[2], "phone": p[3],
        "date_of_birth": p[4], "sex": "female"
    })
    .to_string()
}

/// Every failure a clinic's client can cause, each with personal data in it.
fn failures(platform: &Platform, patient: &str) {
    let cases: Vec<(&str, String, Option<String>, u16)> = vec![
        // A second patient with the same record number.
        (
            "POST",
            "/api/v1/patients".to_owned(),
            Some(patient_body(&ZEBULON)),
            409,
        ),
        (
            "POST",
            "/api/v1/patients".to_owned(),
            Some(json!({"name": ZEBULON[0], "date_of_birth": ZEBULON[4], "sex": "female", "email": LATER[3]}).to_string()),
            422,
        ),
        (
            "POST",
            "/api/v1/patients".to_owned(),
            Some(json!({"name": ZEBULON[0], "date_of_birth": "2999-01-01", "sex": "female"}).to_string()),
            422,
        ),
        (
            "POST",
            "/api/v1/patients".to_owned(),
            Some(format!("{{\"name\": \"{}\", \"date_of_birth\": ", ZEBULON[0])),
            400,
        ),
        (
            "PATCH",
            format!("/api/v1/patients/{patient}"),
            Some(json!({"phone": format!("call {}", ZEBULON[0])}).to_string()),
            422,
        ),
        (
            "POST",
            format!("/api/v1/patients/{patient}/analyses/semen"),
            Some(json!({"concentration": -1, "note": ZEBULON[0]}).to_string()),
            422,
        ),
        (
            "GET",
            format!("/api/v1/patients?mrn={}", PHILIPPA[1]),
            None,
            200,
        ),
        (
            "GET",
            format!("/api/v1/patients/{}", uuid_like()),
            None,
            404,
        ),
    ];
    for (method, path, body, expected) in cases {
        let (status, answer) = platform.call(method, &path, body.as_deref());
        assert_eq!(status, expected, "{method} {path}: {answer}");
    }
    let (status, _) = http(
        platform.api_port,
        "GET",
        &format!("/api/v1/patients?mrn={}", ZEBULON[1]),
        Some("fv_not_a_token"),
        None,
    )
    .unwrap();
    assert_eq!(status, 401);
}

fn uuid_like() -> &'static str {
    "0193a0a0-0000-7000-8000-000000000000"
}

/// Every page of a search API, as JSON text.
fn all_pages(port: u16, path: &str) -> (usize, String) {
    let mut text = String::new();
    let mut hits = 0;
    let mut cursor = String::new();
    loop {
        let (status, body) = http(
            port,
            "GET",
            &format!("{path}?q=*&limit=1000{cursor}"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        hits += page["hits"].as_array().map_or(0, Vec::len);
        text.push_str(&body);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return (hits, text),
        }
    }
}

fn files_under(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            bytes.extend(files_under(&path));
        } else {
            bytes.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    bytes
}

fn assert_clean(place: &str, haystack: &[u8]) {
    let lower = String::from_utf8_lossy(haystack).to_lowercase();
    for value in phi() {
        assert!(
            !lower.contains(&value.to_lowercase()),
            "{value:?} is in {place}"
        );
    }
}

/// The log index's total count once it has stopped growing.
fn settled_logs(port: u16) -> u64 {
    let mut last = u64::MAX;
    wait_for("the log index to settle", Duration::from_secs(30), || {
        let (_, body) = http(port, "GET", "/api/v1/logs/search?q=*&limit=1", None, None).ok()?;
        let total = serde_json::from_str::<Value>(&body).ok()?["total"].as_u64()?;
        let settled = total == last && total > 0;
        last = total;
        std::thread::sleep(Duration::from_millis(1300));
        settled.then_some(total)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_never_reaches_telemetry_and_redaction_catches_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Platform::start(dir.path());

    // Every endpoint, with both patients.
    let mut ids = Vec::new();
    for p in [&ZEBULON, &PHILIPPA] {
        let (status, body) = platform.call("POST", "/api/v1/patients", Some(&patient_body(p)));
        assert_eq!(status, 201, "{body}");
        let patient: Value = serde_json::from_str(&body).unwrap();
        ids.push(patient["id"].as_str().unwrap().to_owned());
    }
    let zebulon = ids[0].clone();
    for (kind, body) in [
        (
            "semen",
            json!({"concentration": 30, "progressive_motility": 40, "normal_morphology": 5}),
        ),
        ("oocyte", json!({"maturity": "MII", "morphology_score": 3})),
        (
            "embryo",
            json!({"day": 5, "expansion": 4, "inner_cell_mass": "A", "trophectoderm": "B"}),
        ),
        (
            "follicle",
            json!({"ovary": "left", "antral_follicle_count": 9}),
        ),
        (
            "hysteroscopy",
            json!({"findings": ["normal"], "endometrial_thickness_mm": 8.5}),
        ),
    ] {
        let (status, answer) = platform.call(
            "POST",
            &format!("/api/v1/patients/{zebulon}/analyses/{kind}"),
            Some(&body.to_string()),
        );
        assert_eq!(status, 201, "{kind}: {answer}");
    }
    let (status, body) = platform.call(
        "PATCH",
        &format!("/api/v1/patients/{zebulon}"),
        Some(&json!({"email": LATER[0], "phone": LATER[1], "name": LATER[2]}).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    // A document that names the patient in its text, as lab reports do.
    let text = format!(
        "Patient: {}\nMRN: {}\nDOB: {}\nPhone: {}\nAMH: 1.9 ng/mL\nFSH: 7.1 mIU/mL\n",
        ZEBULON[0], ZEBULON[1], ZEBULON[4], ZEBULON[3]
    );
    let (content_type, form) = text_upload("quattrocchi-panel.txt", text.as_bytes());
    let bearer = format!("Bearer {}", platform.token);
    let upload = request(
        platform.api_port,
        "POST",
        &format!("/api/v1/patients/{zebulon}/documents"),
        &[("Authorization", &bearer), ("Content-Type", &content_type)],
        &form,
    )
    .unwrap();
    assert_eq!(upload.status, 202, "{}", upload.body);
    let document: Value = serde_json::from_str(&upload.body).unwrap();
    let document = document["id"].as_str().unwrap().to_owned();
    wait_for("the analysis", Duration::from_secs(60), || {
        let (_, body) = platform.call("GET", &format!("/api/v1/documents/{document}"), None);
        let doc: Value = serde_json::from_str(&body).ok()?;
        (doc["analysis_status"] == "completed").then_some(())
    });
    let (status, body) =
        platform.call("POST", &format!("/api/v1/patients/{zebulon}/reports"), None);
    assert_eq!(status, 202, "{body}");
    let task: Value = serde_json::from_str(&body).unwrap();
    let task = task["id"].as_str().unwrap().to_owned();
    wait_for("the report", Duration::from_secs(60), || {
        let (_, body) = platform.call("GET", &format!("/api/v1/tasks/{task}"), None);
        let task: Value = serde_json::from_str(&body).ok()?;
        (task["status"] == "completed").then_some(())
    });
    for path in [
        format!("/api/v1/patients/{zebulon}"),
        "/api/v1/patients?limit=10".to_owned(),
        format!("/api/v1/patients?mrn={}", ZEBULON[1]),
        format!("/api/v1/patients/{zebulon}/analyses"),
        format!("/api/v1/patients/{zebulon}/documents"),
        format!("/api/v1/patients/{zebulon}/fertility-score"),
        format!("/api/v1/documents/{document}"),
        format!("/api/v1/documents/{document}/content"),
        "/api/v1/summaries".to_owned(),
        "/api/v1/jobs".to_owned(),
        format!("/api/v1/tasks/{task}"),
        format!("/api/v1/tasks/{task}/report.pdf"),
        "/readyz".to_owned(),
    ] {
        let (status, body) = platform.call("GET", &path, None);
        assert_eq!(status, 200, "{path}: {body}");
    }
    failures(&platform, &zebulon);
    let (status, body) = platform.call("DELETE", &format!("/api/v1/patients/{}", ids[1]), None);
    assert_eq!(status, 204, "{body}");

    // SIGTERM: the processes send what they still hold, then the index settles.
    platform.stop_app();
    let query = platform.collector.query_port;
    let logs_total = settled_logs(query);

    // Nothing the app sent carries personal data: the write-ahead log holds every byte the
    // collector accepted, before any redaction.
    let wal = files_under(&platform.collector.data_dir.join("wal"));
    assert!(wal.len() > 10_000, "the log holds the app's telemetry");
    assert_clean("the collector's write-ahead log", &wal);
    let (log_hits, logs) = all_pages(query, "/api/v1/logs/search");
    let (span_hits, spans) = all_pages(query, "/api/v1/spans/search");
    assert!(
        log_hits as u64 == logs_total && log_hits > 10,
        "{log_hits} of {logs_total}"
    );
    assert!(span_hits > 100, "{span_hits} spans");
    assert_clean("the log index", logs.as_bytes());
    assert_clean("the span index", spans.as_bytes());
    let (_, metrics) = http(query, "GET", "/metrics", None, None).unwrap();
    assert!(metrics.contains("fertivision_patients_total"));
    assert_clean("/metrics", metrics.as_bytes());
    for service in ["fertivision-api", "fertivision-worker"] {
        let (status, stacks) = http(
            query,
            "GET",
            &format!("/api/v1/profiles/{service}/collapsed?from=0&until=99999999999"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{service}: {stacks}");
        assert_clean("the CPU profiles", stacks.as_bytes());
    }
    assert_clean(
        "the profile store",
        &files_under(&platform.collector.data_dir.join("profiles")),
    );
    for log in &platform.app_logs {
        assert_clean("the processes' stderr", &std::fs::read(log).unwrap());
    }

    // Code that logs personal data by mistake, through the app's own export: the collector's
    // `redact` transform takes it out before anything is indexed. (A name in free text has no
    // pattern to catch it; under a key that names it, it is caught, as here.)
    let mut config = fertivision::config::Config::default();
    config.telemetry.otlp_endpoint = format!("http://127.0.0.1:{}", platform.collector.grpc_port);
    config.telemetry.batch_delay_ms = 100;
    config.telemetry.profiling = false;
    let telemetry = fertivision::otel::init(&config, Some("privacy-mistake"), false);
    tracing::info_span!("careless", patient.name = ZEBULON[0], email = ZEBULON[2]).in_scope(|| {
        tracing::info!(
            patient.name = ZEBULON[0],
            dob = ZEBULON[4],
            "created patient MRN: 80417231, email {}, phone {}, born on 14/03/1987",
            ZEBULON[2],
            ZEBULON[3]
        );
    });
    telemetry.shutdown().await;
    let (_, careless) = wait_for("the careless record", Duration::from_secs(30), || {
        let page = all_pages(query, "/api/v1/logs/search");
        page.1.contains("created patient").then_some(page)
    });
    assert!(careless.contains("[REDACTED:"), "redacted, not dropped");
    for value in [ZEBULON[0], ZEBULON[2], ZEBULON[3], ZEBULON[4], "80417231"] {
        assert!(!careless.contains(value), "{value} escaped redaction");
    }
    let (_, spans) = all_pages(query, "/api/v1/spans/search");
    assert!(spans.contains("careless"), "the careless span is indexed");
    assert_clean("the span index after the mistake", spans.as_bytes());
}
