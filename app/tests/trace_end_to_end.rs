//! One request traced end to end, with real processes: a collector on the default pipeline,
//! `fertivision serve` and `fertivision worker` on one SQLite database, both exporting to the
//! collector. A document is uploaded with a given `traceparent`; after its analysis the
//! collector holds, under that trace id, the API's server span, the enqueue (producer) span,
//! the worker's consumer span with its database and storage children, and log records of both
//! services; its `/metrics` has the request in `http_server_request_duration_seconds` with an
//! exemplar of that trace; and its profile store has a CPU profile of each service covering
//! the time of the request.

mod process;

use std::time::{Duration, Instant};

use process::{Platform, http, request, text_upload, wait_for};
use serde_json::Value;

/// The trace the client starts.
const TRACE_ID: &str = "5e1f0a7c2b9d4e38a6c1d2e3f4a5b6c7";
/// The client's span: the parent of the API's server span.
const CLIENT_SPAN: &str = "a1b2c3d4e5f60718";

fn spans_named<'a>(trace: &'a Value, service: &str, name: &str) -> Vec<&'a Value> {
    trace["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["service"] == service && s["name"].as_str() == Some(name))
        .collect()
}

#[test]
fn an_uploaded_document_is_one_trace_from_the_request_to_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::start(dir.path());
    let (collector, api_port, token) = (&platform.collector, platform.api_port, &platform.token);

    // A patient, then the upload the client traces.
    let (status, body) = http(
        api_port,
        "POST",
        "/api/v1/patients",
        Some(token),
        Some(
            r#"{"mrn":"E2E-1","name":"Trace Patient","date_of_birth":"1990-02-03","sex":"female"}"#,
        ),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let patient: Value = serde_json::from_str(&body).unwrap();
    let patient_id = patient["id"].as_str().unwrap();
    let (content_type, form) = text_upload(
        "panel.txt",
        b"Hormone panel\nAMH: 2.1 ng/mL\nFSH: 6.2 mIU/mL\nLH: 5.0 mIU/mL\n",
    );
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let bearer = format!("Bearer {token}");
    let upload = request(
        api_port,
        "POST",
        &format!("/api/v1/patients/{patient_id}/documents"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", &content_type),
            ("traceparent", &traceparent),
        ],
        &form,
    )
    .unwrap();
    assert_eq!(upload.status, 202, "{}", upload.body);
    assert_eq!(
        upload.headers["x-trace-id"], TRACE_ID,
        "the response names its trace"
    );
    assert!(
        upload.headers["traceparent"].starts_with(&format!("00-{TRACE_ID}-")),
        "{:?}",
        upload.headers
    );
    let uploaded_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let document: Value = serde_json::from_str(&upload.body).unwrap();
    let document_id = document["id"].as_str().unwrap();
    wait_for("the analysis", Duration::from_secs(60), || {
        let (_, body) = http(
            api_port,
            "GET",
            &format!("/api/v1/documents/{document_id}"),
            Some(token),
            None,
        )
        .ok()?;
        let document: Value = serde_json::from_str(&body).ok()?;
        (document["analysis_status"] == "completed").then_some(())
    });

    // Everything of the trace, in the collector's index.
    let route = "POST /api/v1/patients/{id}/documents";
    let trace = wait_for("the whole trace", Duration::from_secs(30), || {
        let (status, body) = http(
            collector.query_port,
            "GET",
            &format!("/api/v1/traces/{TRACE_ID}"),
            None,
            None,
        )
        .ok()?;
        if status != 200 {
            return None;
        }
        let trace: Value = serde_json::from_str(&body).ok()?;
        let has_logs_of = |service: &str| {
            trace["logs"]
                .as_array()
                .is_some_and(|logs| logs.iter().any(|l| l["service"] == service))
        };
        let complete = !spans_named(&trace, "fertivision-api", route).is_empty()
            && !spans_named(&trace, "fertivision-worker", "process analyze_document").is_empty()
            && !spans_named(&trace, "fertivision-worker", "object_store get").is_empty()
            && has_logs_of("fertivision-api")
            && has_logs_of("fertivision-worker");
        complete.then_some(trace)
    });
    let server = spans_named(&trace, "fertivision-api", route)[0];
    assert_eq!(server["kind"], "server");
    assert_eq!(
        server["parent_span_id"], CLIENT_SPAN,
        "the incoming traceparent is the parent"
    );
    assert_eq!(server["attributes"]["http.response.status_code"], 202);
    let enqueue = spans_named(&trace, "fertivision-api", "publish analyze_document");
    assert_eq!(enqueue.len(), 1, "{trace:#}");
    assert_eq!(enqueue[0]["kind"], "producer");
    let consumer = spans_named(&trace, "fertivision-worker", "process analyze_document")[0];
    assert_eq!(consumer["kind"], "consumer");
    assert_eq!(
        consumer["parent_span_id"], enqueue[0]["span_id"],
        "the job carried the producer's context"
    );
    let children_of = |parent: &Value| -> Vec<String> {
        trace["spans"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["parent_span_id"] == parent["span_id"])
            .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let worker_children = children_of(consumer);
    for expected in ["SELECT documents", "UPDATE documents", "object_store get"] {
        assert!(
            worker_children.iter().any(|n| n == expected),
            "the worker span has a {expected} child: {worker_children:?}"
        );
    }
    let database = spans_named(&trace, "fertivision-worker", "UPDATE documents")[0];
    assert_eq!(database["kind"], "client");
    assert_eq!(database["attributes"]["db.system.name"], "sqlite");
    assert_eq!(database["attributes"]["db.collection.name"], "documents");

    // The request in the latency histogram, with this trace as an exemplar.
    let exemplar = format!("trace_id=\"{TRACE_ID}\"");
    let line = wait_for("the exemplar", Duration::from_secs(30), || {
        let answer = request(
            collector.query_port,
            "GET",
            "/metrics",
            &[("Accept", "application/openmetrics-text; version=1.0.0")],
            b"",
        )
        .ok()?;
        answer
            .body
            .lines()
            .find(|l| {
                l.starts_with("http_server_request_duration_seconds_bucket")
                    && l.contains("http_route=\"/api/v1/patients/{id}/documents\"")
                    && l.contains(&exemplar)
            })
            .map(str::to_owned)
    });
    assert!(line.contains("http_request_method=\"POST\""), "{line}");

    // The catalogue's series this flow records, under the names the catalogue gives them.
    use fertivision::otel::catalogue as c;
    let recorded = [
        &c::PATIENTS,
        &c::DOCUMENT_PROCESSING,
        &c::JOB_DURATION,
        &c::JOB_QUEUE_WAIT,
        &c::JOBS,
        &c::JOBS_OLDEST_DUE_AGE,
        &c::DB_CLIENT_OPERATION_DURATION,
        &c::DB_CLIENT_CONNECTION_COUNT,
        &c::HTTP_SERVER_ACTIVE_REQUESTS,
    ];
    wait_for("the catalogue's series", Duration::from_secs(30), || {
        let (_, text) = http(collector.query_port, "GET", "/metrics", None, None).ok()?;
        recorded
            .iter()
            .all(|def| {
                text.lines()
                    .any(|l| l.starts_with(&format!("{}{{", def.prometheus_series())))
            })
            .then_some(())
    });

    // A CPU profile of each service over the time of the request (windows of 2 s).
    for service in ["fertivision-api", "fertivision-worker"] {
        let path = format!(
            "/api/v1/profiles/{service}/collapsed?from={}&until={}",
            uploaded_at.saturating_sub(3),
            uploaded_at + 3
        );
        // 200 once a profile of the service overlaps the range; a mostly idle process may
        // have had no sample in it, so the stacks may be empty, but each line is a stack.
        let started = Instant::now();
        let stacks = loop {
            let (status, body) = http(collector.query_port, "GET", &path, None, None).unwrap();
            if status == 200 {
                break body;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let services = http(
                    collector.query_port,
                    "GET",
                    "/api/v1/profiles/services",
                    None,
                    None,
                );
                panic!(
                    "no profile of {service} over {path}: {status} {body}; services: {services:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            stacks.lines().all(|l| l
                .rsplit_once(' ')
                .is_some_and(|(_, n)| n.parse::<u64>().is_ok())),
            "collapsed stacks of {service}: {stacks}"
        );
    }
}
