//! Jaeger's HTTP query API in a running collector: one trace from two services, sent as
//! OTLP/JSON, read back from `/api/traces/{id}` in exactly the shape Jaeger's query service
//! gives (the committed sample `fixtures/jaeger_trace.json`), and found by service, operation,
//! tags and duration; the service and operation pickers; bad parameters and unknown traces.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{exchange, free_ports, url_encode as enc, wait_up};
use serde_json::{Value, json};
use telemetry::config::{PipelineConfig, ValidatedPipeline};

fn pipeline(http: SocketAddr) -> ValidatedPipeline {
    PipelineConfig::from_toml_str(&format!(
        r#"
        [sources.otlp_http]
        type = "otlp_http"
        address = "{http}"
        [sinks.spans]
        type = "span_index"
        inputs = ["otlp_http"]
        "#
    ))
    .unwrap()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ROOT: &str = "00f067aa0ba902b7";
const CHILD: &str = "b7ad6b7169203331";
/// The root span's start in the fixture: 2026-11-29T10:00:00Z, in microseconds.
const FIXTURE_ROOT_START_US: i64 = 1_795_946_400_000_000;

fn string(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

fn int(key: &str, value: i64) -> Value {
    json!({ "key": key, "value": { "intValue": value.to_string() } })
}

/// The trace of the fixture as OTLP/JSON, its root starting at `root_ns`.
fn otlp_trace(root_ns: i64) -> Value {
    let at = |offset_us: i64| ((root_ns + offset_us * 1000) as u64).to_string();
    json!({ "resourceSpans": [
        {
            "resource": { "attributes": [
                string("service.name", "fertivision-api"),
                string("service.version", "1.14.2"),
                string("service.instance.id", "api-7c9d5b6f4-x2x8q"),
                string("deployment.environment.name", "production"),
                string("telemetry.sdk.language", "rust"),
                string("telemetry.sdk.name", "opentelemetry"),
                string("telemetry.sdk.version", "0.31.0"),
            ]},
            "scopeSpans": [{
                "scope": { "name": "fertivision_api::http" },
                "spans": [{
                    "traceId": TRACE,
                    "spanId": ROOT,
                    "name": "POST /api/v1/patients/{id}/documents",
                    "kind": 2,
                    "startTimeUnixNano": at(0),
                    "endTimeUnixNano": at(412_337),
                    "attributes": [
                        string("http.request.method", "POST"),
                        string("http.route", "/api/v1/patients/{id}/documents"),
                        string("url.path", "/api/v1/patients/8812/documents"),
                        int("http.response.status_code", 422),
                        { "key": "fertivision.upload.megabytes", "value": { "doubleValue": 2.5 } },
                        { "key": "fertivision.consent_checked", "value": { "boolValue": true } },
                    ],
                    "status": {}
                }]
            }]
        },
        {
            "resource": { "attributes": [
                string("service.name", "fertivision-worker"),
                string("service.version", "1.14.2"),
                string("host.name", "worker-2"),
                int("process.pid", 4711),
                string("telemetry.sdk.language", "python"),
            ]},
            "scopeSpans": [{
                "spans": [{
                    "traceId": TRACE,
                    "spanId": CHILD,
                    "parentSpanId": ROOT,
                    "name": "analyse_document",
                    "kind": 1,
                    "startTimeUnixNano": at(35_210),
                    "endTimeUnixNano": at(35_210 + 250_125),
                    "attributes": [
                        string("fertivision.document.kind", "referral_letter"),
                        int("fertivision.document.pages", 12),
                    ],
                    "events": [{
                        "timeUnixNano": at(284_901),
                        "name": "exception",
                        "attributes": [
                            string("exception.type", "PdfError"),
                            string("exception.message", "the PDF has no text layer"),
                        ]
                    }],
                    "status": { "code": 2, "message": "the PDF has no text layer" }
                }]
            }]
        }
    ]})
}

/// Tags Jaeger's collector adds that do not come from the input.
const JAEGER_ONLY_TAGS: &[&str] = &["internal.span.format"];

/// Tags without Jaeger's own, sorted by key (their order is not part of the model).
fn normalized_tags(tags: &mut Value) {
    let Some(list) = tags.as_array_mut() else {
        return;
    };
    list.retain(|t| !JAEGER_ONLY_TAGS.contains(&t["key"].as_str().unwrap_or_default()));
    list.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
}

/// A `/api/traces/{id}` answer with every tag and log field list normalized (the order of
/// attributes is not kept by the index), and (when `shift_us` is given)
/// every time moved by that many microseconds.
fn normalized(mut answer: Value, shift_us: i64) -> Value {
    for trace in answer["data"].as_array_mut().into_iter().flatten() {
        for span in trace["spans"].as_array_mut().into_iter().flatten() {
            span["startTime"] = json!(span["startTime"].as_i64().unwrap() + shift_us);
            normalized_tags(&mut span["tags"]);
            for log in span["logs"].as_array_mut().into_iter().flatten() {
                log["timestamp"] = json!(log["timestamp"].as_i64().unwrap() + shift_us);
                normalized_tags(&mut log["fields"]);
            }
        }
        for process in trace["processes"]
            .as_object_mut()
            .into_iter()
            .flat_map(|p| p.values_mut())
        {
            normalized_tags(&mut process["tags"]);
        }
    }
    answer
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every difference between `expected` and `actual`: keys, types, lengths and values, each
/// with its path.
fn differences(expected: &Value, actual: &Value, path: &str, found: &mut Vec<String>) {
    if type_name(expected) != type_name(actual) {
        found.push(format!(
            "{path}: expected {} {expected}, got {} {actual}",
            type_name(expected),
            type_name(actual)
        ));
        return;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for key in e.keys().filter(|k| !a.contains_key(*k)) {
                found.push(format!("{path}.{key}: missing"));
            }
            for key in a.keys().filter(|k| !e.contains_key(*k)) {
                found.push(format!("{path}.{key}: not in Jaeger's shape"));
            }
            for (key, value) in e {
                if let Some(other) = a.get(key) {
                    differences(value, other, &format!("{path}.{key}"), found);
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                found.push(format!(
                    "{path}: expected {} elements, got {}: {actual}",
                    e.len(),
                    a.len()
                ));
            }
            for (i, (value, other)) in e.iter().zip(a).enumerate() {
                differences(value, other, &format!("{path}[{i}]"), found);
            }
        }
        _ if expected != actual => found.push(format!("{path}: expected {expected}, got {actual}")),
        _ => {}
    }
}

/// The trace ids of a `/api/traces` answer.
fn trace_ids(answer: &Value) -> Vec<&str> {
    answer["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {answer}"))
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_reads_our_traces_through_the_jaeger_api() {
    let dir = tempfile::tempdir().unwrap();
    let [http, query] = free_ports::<2>();
    let settings = common::settings(pipeline(http), dir.path(), query);
    let collector = common::start(settings).await;
    wait_up(http).await;

    // The fixture's times are fixed; the trace is sent an hour ago (well inside the index's
    // retention), on a whole second, and the fixture moved by the difference.
    let root_s = chrono::Utc::now().timestamp() - 3600;
    let root_us = root_s * 1_000_000;
    let shift_us = root_us - FIXTURE_ROOT_START_US;
    let (status, answer) = exchange(
        http,
        "POST",
        "/v1/traces",
        Some(&otlp_trace(root_s * 1_000_000_000)),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    let sent = Instant::now();
    let trace = loop {
        let (status, answer) = exchange(query, "GET", &format!("/api/traces/{TRACE}"), None).await;
        if status == 200 && answer["data"][0]["spans"].as_array().map(Vec::len) == Some(2) {
            break answer;
        }
        assert!(
            status == 200 || status == 404,
            "unexpected answer {status}: {answer}"
        );
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "not searchable within 5 s: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Exactly Jaeger's shape and values.
    let fixture: Value = serde_json::from_str(include_str!("fixtures/jaeger_trace.json")).unwrap();
    let expected = normalized(fixture, shift_us);
    let actual = normalized(trace.clone(), 0);
    let mut found = Vec::new();
    differences(&expected, &actual, "$", &mut found);
    assert!(
        found.is_empty(),
        "the answer differs from Jaeger's:\n{}\n\nthe answer: {}",
        found.join("\n"),
        serde_json::to_string_pretty(&trace).unwrap()
    );
    // Upper-case and 64-bit-style ids are read as Jaeger reads them.
    let (status, again) = exchange(
        query,
        "GET",
        &format!("/api/traces/{}", TRACE.to_uppercase()),
        None,
    )
    .await;
    assert_eq!((status, &again), (200, &trace));

    // The pickers.
    let (status, services) = exchange(query, "GET", "/api/services", None).await;
    assert_eq!(status, 200, "{services}");
    assert_eq!(
        services,
        json!({
            "data": ["fertivision-api", "fertivision-worker"],
            "total": 2, "limit": 0, "offset": 0, "errors": null
        })
    );
    let (status, operations) = exchange(
        query,
        "GET",
        "/api/services/fertivision-worker/operations",
        None,
    )
    .await;
    assert_eq!(status, 200, "{operations}");
    assert_eq!(operations["data"], json!(["analyse_document"]));
    assert_eq!(operations["total"], 1);
    let (status, operations) = exchange(
        query,
        "GET",
        "/api/operations?service=fertivision-api&spanKind=server",
        None,
    )
    .await;
    assert_eq!(status, 200, "{operations}");
    assert_eq!(
        operations["data"],
        json!([{ "name": "POST /api/v1/patients/{id}/documents", "spanKind": "server" }])
    );
    let (_, operations) = exchange(
        query,
        "GET",
        "/api/operations?service=fertivision-api&spanKind=client",
        None,
    )
    .await;
    assert_eq!(operations["data"], json!([]));

    // Searches, as Grafana sends them (times in microseconds).
    let window = format!(
        "start={}&end={}&lookback=custom",
        root_us - 60_000_000,
        root_us + 60_000_000
    );
    let search = |params: String| {
        let window = window.clone();
        async move {
            exchange(
                query,
                "GET",
                &format!("/api/traces?{params}&{window}"),
                None,
            )
            .await
        }
    };
    let error_tag = enc(r#"{"error":"true"}"#);
    let (status, found) = search(format!(
        "service=fertivision-worker&tags={error_tag}&limit=20"
    ))
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(trace_ids(&found), [TRACE]);
    assert_eq!(found["total"], 1);
    assert_eq!(found["errors"], Value::Null);
    assert_eq!(found["data"][0]["spans"].as_array().unwrap().len(), 2);
    let (_, found) = search(format!("service=fertivision-api&tags={error_tag}")).await;
    assert!(trace_ids(&found).is_empty(), "{found}");
    let (_, found) = search("service=fertivision-worker&minDuration=1s".into()).await;
    assert!(trace_ids(&found).is_empty(), "{found}");
    let (_, found) = search("service=fertivision-worker&minDuration=100ms".into()).await;
    assert_eq!(trace_ids(&found), [TRACE]);
    let (_, found) = search("service=fertivision-api&maxDuration=400ms".into()).await;
    assert!(trace_ids(&found).is_empty(), "{found}");
    let (_, found) = search(format!(
        "service=fertivision-worker&operation={}",
        enc("analyse_document")
    ))
    .await;
    assert_eq!(trace_ids(&found), [TRACE]);
    let (_, found) = search(format!(
        "service=fertivision-api&operation={}",
        enc("analyse_document")
    ))
    .await;
    assert!(trace_ids(&found).is_empty(), "{found}");
    // Numbers match numeric attributes; logfmt and resource attributes too.
    let (_, found) = search(format!(
        "service=fertivision-api&tags={}",
        enc(r#"{"http.response.status_code":"422"}"#)
    ))
    .await;
    assert_eq!(trace_ids(&found), [TRACE]);
    let (_, found) = search(format!(
        "service=fertivision-api&tags={}",
        enc("http.response.status_code=500")
    ))
    .await;
    assert!(trace_ids(&found).is_empty(), "{found}");
    let (_, found) = search(format!(
        "tags={}",
        enc(r#"host.name=worker-2 http.route="/api/v1/patients/{id}/documents""#)
    ))
    .await;
    assert!(
        trace_ids(&found).is_empty(),
        "one span must match every tag: {found}"
    );
    let (_, found) = search(format!("tags={}", enc("host.name=worker-2"))).await;
    assert_eq!(trace_ids(&found), [TRACE]);
    // Outside the time window.
    let (_, found) = exchange(
        query,
        "GET",
        &format!(
            "/api/traces?service=fertivision-api&start={}&end={}",
            root_us + 10_000_000,
            root_us + 20_000_000
        ),
        None,
    )
    .await;
    assert!(trace_ids(&found).is_empty(), "{found}");

    // What is wrong, in Jaeger's envelope.
    for bad in [
        "/api/traces?service=fertivision-api&minDuration=fast",
        "/api/traces?service=fertivision-api&start=yesterday",
        "/api/traces?service=fertivision-api&tags=%7Bnot-json",
        "/api/operations?spanKind=server",
        "/api/traces/not-a-trace-id",
    ] {
        let (status, answer) = exchange(query, "GET", bad, None).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert_eq!(answer["data"], Value::Null, "{bad}: {answer}");
        assert_eq!(answer["errors"][0]["code"], 400, "{bad}: {answer}");
        assert!(answer["errors"][0]["msg"].as_str().is_some(), "{answer}");
    }
    let (status, answer) = exchange(
        query,
        "GET",
        "/api/traces/00000000000000000000000000000001",
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(answer["data"], Value::Null);
    assert_eq!(
        answer["errors"],
        json!([{ "code": 404, "msg": "trace not found" }])
    );

    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_span_index_the_api_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let [http, query] = free_ports::<2>();
    let pipeline = PipelineConfig::from_toml_str(&format!(
        r#"
        [sources.otlp_http]
        type = "otlp_http"
        address = "{http}"
        [sinks.logs]
        type = "log_index"
        inputs = ["otlp_http"]
        "#
    ))
    .unwrap();
    let settings = common::settings(pipeline, dir.path(), query);
    let collector = common::start(settings).await;
    for path in ["/api/services", &format!("/api/traces/{TRACE}")] {
        let (status, answer) = exchange(query, "GET", path, None).await;
        assert_eq!(status, 404, "{path}: {answer}");
        let message = answer["errors"][0]["msg"].as_str().unwrap();
        assert!(message.contains("span_index"), "{message}");
    }
    collector.stop().await;
}
