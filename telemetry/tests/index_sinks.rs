//! The `log_index` and `span_index` sinks in a running collector: OTLP/HTTP in, through
//! redaction, searchable within 2 s of the acknowledgement; one trace from two services with
//! its logs at `/api/v1/traces/{id}`; bad queries answered 400; a restart indexes nothing twice.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{exchange, free_ports, wait_up};
use serde_json::{Value, json};
use telemetry::config::{PipelineConfig, ValidatedPipeline};

const TRACE: &str = "5b8efff798038103d269b633813fc60c";

fn resource(service: &str) -> Value {
    json!({ "attributes": [{ "key": "service.name", "value": { "stringValue": service } }] })
}

fn spans(now: u64) -> Value {
    json!({ "resourceSpans": [
        { "resource": resource("fertivision-api"), "scopeSpans": [{ "spans": [{
            "traceId": TRACE, "spanId": "eee19b7ec3c1b174", "name": "POST /api/v1/patients/{id}/documents",
            "kind": 2, "startTimeUnixNano": (now - 400_000_000).to_string(), "endTimeUnixNano": now.to_string(),
            "attributes": [{ "key": "http.route", "value": { "stringValue": "/api/v1/patients/{id}/documents" } }]
        }]}]},
        { "resource": resource("fertivision-worker"), "scopeSpans": [{ "spans": [{
            "traceId": TRACE, "spanId": "0102030405060708", "parentSpanId": "eee19b7ec3c1b174", "name": "analyse_document",
            "startTimeUnixNano": (now - 300_000_000).to_string(), "endTimeUnixNano": (now - 50_000_000).to_string(),
            "status": { "code": 2, "message": "the PDF has no text layer" }
        }]}]}
    ]})
}

fn logs(now: u64) -> Value {
    json!({ "resourceLogs": [
        { "resource": resource("fertivision-api"), "scopeLogs": [{ "logRecords": [{
            "timeUnixNano": (now - 390_000_000).to_string(), "severityNumber": 9, "severityText": "INFO",
            "body": { "stringValue": "document uploaded by ana.lopez@example.org" },
            "traceId": TRACE, "spanId": "eee19b7ec3c1b174"
        }]}]},
        { "resource": resource("fertivision-worker"), "scopeLogs": [{ "logRecords": [{
            "timeUnixNano": (now - 60_000_000).to_string(), "severityNumber": 17, "severityText": "ERROR",
            "body": { "stringValue": "analysis failed: the PDF has no text layer" },
            "traceId": TRACE, "spanId": "0102030405060708",
            "attributes": [{ "key": "job.kind", "value": { "stringValue": "analyse_document" } }]
        }]}]}
    ]})
}

fn pipeline(http: SocketAddr) -> ValidatedPipeline {
    PipelineConfig::from_toml_str(&format!(
        r#"
        [sources.otlp_http]
        type = "otlp_http"
        address = "{http}"
        [transforms.phi]
        type = "redact"
        inputs = ["otlp_http"]
        [sinks.logs]
        type = "log_index"
        inputs = ["phi"]
        [sinks.spans]
        type = "span_index"
        inputs = ["phi"]
        "#
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_spans_are_searchable_within_two_seconds_and_linked_by_trace() {
    let dir = tempfile::tempdir().unwrap();
    let [http, query] = free_ports::<2>();
    let settings = common::settings(pipeline(http), dir.path(), query);
    let collector = common::start(settings.clone()).await;
    wait_up(http).await;

    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap() as u64;
    assert_eq!(
        exchange(http, "POST", "/v1/traces", Some(&spans(now)))
            .await
            .0,
        200
    );
    assert_eq!(
        exchange(http, "POST", "/v1/logs", Some(&logs(now))).await.0,
        200
    );
    let acknowledged = Instant::now();
    let searchable = loop {
        let (status, logs) =
            exchange(query, "GET", "/api/v1/logs/search?q=severity:ERROR", None).await;
        assert_eq!(status, 200, "{logs}");
        let (status, spans) =
            exchange(query, "GET", "/api/v1/spans/search?q=status:error", None).await;
        assert_eq!(status, 200, "{spans}");
        if logs["total"] == 1 && spans["total"] == 1 {
            break acknowledged.elapsed();
        }
        assert!(
            acknowledged.elapsed() < Duration::from_secs(2),
            "not searchable within 2 s: {logs} {spans}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("searchable {searchable:?} after the acknowledgement");

    // The email went through the redact transform before the index.
    let (_, page) = exchange(query, "GET", "/api/v1/logs/search?q=uploaded", None).await;
    let body = page["hits"][0]["body"].as_str().unwrap();
    assert!(
        !body.contains("ana.lopez@example.org") && body.contains("[REDACTED:email]"),
        "{body}"
    );
    let (_, page) = exchange(
        query,
        "GET",
        "/api/v1/logs/search?q=%22ana.lopez%40example.org%22",
        None,
    )
    .await;
    assert_eq!(page["total"], 0);

    // Spans by duration and status; the trace with its logs.
    let (_, page) = exchange(
        query,
        "GET",
        "/api/v1/spans/search?q=duration_ms:%3E350",
        None,
    )
    .await;
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["hits"][0]["service"], "fertivision-api");
    let (status, trace) = exchange(
        query,
        "GET",
        &format!("/api/v1/traces/{}", TRACE.to_uppercase()),
        None,
    )
    .await;
    assert_eq!(status, 200, "{trace}");
    let services: Vec<&str> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["fertivision-api", "fertivision-worker"]);
    assert_eq!(trace["spans"][1]["parent_span_id"], "eee19b7ec3c1b174");
    assert_eq!(trace["logs"].as_array().unwrap().len(), 2);
    assert_eq!(
        trace["logs"][1]["attributes"]["job.kind"],
        "analyse_document"
    );

    // Counts per interval and severity.
    let (status, histogram) = exchange(
        query,
        "GET",
        "/api/v1/logs/histogram?start=5m&interval=1m&by=severity",
        None,
    )
    .await;
    assert_eq!(status, 200, "{histogram}");
    let buckets = histogram["buckets"].as_array().unwrap();
    assert!((5..=7).contains(&buckets.len()), "{histogram}");
    let total: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 2, "{histogram}");
    let errors: u64 = buckets
        .iter()
        .filter_map(|b| b["by_severity"]["ERROR"].as_u64())
        .sum();
    assert_eq!(errors, 1, "{histogram}");
    let (status, _) = exchange(query, "GET", "/api/v1/logs/histogram?interval=fast", None).await;
    assert_eq!(status, 400);

    // What is wrong, and where.
    let (status, answer) = exchange(query, "GET", "/api/v1/logs/search?q=nosuch:field", None).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("nosuch"),
        "{answer}"
    );
    let (status, answer) =
        exchange(query, "GET", "/api/v1/logs/search?start=yesterday", None).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().starts_with("start:"),
        "{answer}"
    );
    let (status, _) = exchange(query, "GET", "/api/v1/logs/search?limit=100000", None).await;
    assert_eq!(status, 400);
    let (status, _) = exchange(
        query,
        "GET",
        "/api/v1/traces/00000000000000000000000000000001",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // A clean stop and a restart: the log is replayed from the checkpoints, and the indexes
    // skip what they stored.
    collector.stop().await;
    let collector = common::start(settings).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, page) = exchange(query, "GET", "/api/v1/logs/search", None).await;
    assert_eq!(page["total"], 2, "{page}");
    let (_, page) = exchange(query, "GET", "/api/v1/spans/search", None).await;
    assert_eq!(page["total"], 2, "{page}");
    collector.stop().await;
}
