//! The SRE's and the developer's commands against a running collector: `logs search` (lines
//! and `--json`), `logs tail` (records as they arrive), `trace show` (the waterfall of a trace
//! from two services with their logs), and clear errors.

mod process;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process::{BIN, Collector};
use serde_json::{Value, json};

const PIPELINE: &str = r#"
[sources.http]
type = "otlp_http"
address = "127.0.0.1:{http}"

[sources.grpc]
type = "otlp_grpc"
address = "127.0.0.1:{grpc}"

[sinks.logs]
type = "log_index"
inputs = ["http", "grpc"]

[sinks.spans]
type = "span_index"
inputs = ["http", "grpc"]
"#;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn resource(service: &str) -> Value {
    json!({ "attributes": [{ "key": "service.name", "value": { "stringValue": service } }] })
}

fn post(collector: &Collector, path: &str, body: &Value) {
    let answer = process::request(
        collector.http_port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
}

fn log(service: &str, ts: u64, severity: u32, text: &str, body: &str, span: Option<&str>) -> Value {
    let mut record = json!({
        "timeUnixNano": ts.to_string(), "severityNumber": severity, "severityText": text,
        "body": { "stringValue": body }
    });
    if let Some(span) = span {
        record["traceId"] = json!(TRACE);
        record["spanId"] = json!(span);
    }
    json!({ "resourceLogs": [{ "resource": resource(service), "scopeLogs": [{ "logRecords": [record] }] }] })
}

fn run(collector: &Collector, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--collector")
        .arg(format!("http://127.0.0.1:{}", collector.query_port))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wait_for(collector: &Collector, path: &str, total: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = process::http(collector.query_port, "GET", path, None, None).unwrap();
        let page: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if page["total"].as_u64() == Some(total) {
            return;
        }
        assert!(Instant::now() < deadline, "{path}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn logs_search_tail_and_trace_show_against_a_running_collector() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(dir.path(), PIPELINE, &[]);
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap() as u64;
    let ms = 1_000_000u64;
    post(
        &collector,
        "/v1/traces",
        &json!({ "resourceSpans": [
            { "resource": resource("fertivision-api"), "scopeSpans": [{ "spans": [{
                "traceId": TRACE, "spanId": "00f067aa0ba902b7", "name": "POST /api/v1/patients/{id}/reports", "kind": 2,
                "startTimeUnixNano": (now - 500 * ms).to_string(), "endTimeUnixNano": now.to_string() }]}]},
            { "resource": resource("fertivision-worker"), "scopeSpans": [{ "spans": [{
                "traceId": TRACE, "spanId": "53995c3f42cd8ad8", "parentSpanId": "00f067aa0ba902b7", "name": "render_report",
                "startTimeUnixNano": (now - 400 * ms).to_string(), "endTimeUnixNano": (now - 100 * ms).to_string(),
                "status": { "code": 2, "message": "font missing" } }]}]}
        ]}),
    );
    post(
        &collector,
        "/v1/logs",
        &log(
            "fertivision-api",
            now - 450 * ms,
            9,
            "INFO",
            "report requested",
            Some("00f067aa0ba902b7"),
        ),
    );
    post(
        &collector,
        "/v1/logs",
        &log(
            "fertivision-worker",
            now - 150 * ms,
            17,
            "ERROR",
            "report rendering failed: font missing",
            Some("53995c3f42cd8ad8"),
        ),
    );
    wait_for(&collector, "/api/v1/logs/search", 2);
    wait_for(&collector, "/api/v1/spans/search", 2);

    let (ok, out, err) = run(
        &collector,
        &["logs", "search", "severity:ERROR", "--since", "1h"],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("ERROR fertivision-worker")
            && lines[0].contains("font missing")
            && lines[0].contains(TRACE),
        "{out}"
    );
    assert!(err.contains("1 of 1 matching records"), "{err}");

    let (ok, out, _) = run(&collector, &["logs", "search", "--json", "--limit", "5"]);
    assert!(ok);
    let bodies: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        bodies,
        ["report rendering failed: font missing", "report requested"],
        "newest first"
    );

    let (ok, out, err) = run(&collector, &["trace", "show", TRACE]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "trace {TRACE}  2 spans, 2 services, 2 log records, 500.0 ms"
        )),
        "{out}"
    );
    assert!(
        lines[1].starts_with("fertivision-api")
            && lines[1].contains("POST /api/v1/patients/{id}/reports"),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("fertivision-worker")
            && l.contains("render_report")
            && l.contains("✗")),
        "{out}"
    );
    assert!(
        out.contains("error: font missing") && out.contains("ERROR report rendering failed"),
        "{out}"
    );

    // A bad query and an unknown trace are errors that say why.
    let (ok, _, err) = run(&collector, &["logs", "search", "nosuchfield:x"]);
    assert!(
        !ok && err.contains("400") && err.contains("nosuchfield"),
        "{err}"
    );
    let (ok, _, err) = run(
        &collector,
        &["trace", "show", "00000000000000000000000000000001"],
    );
    assert!(!ok && err.contains("404"), "{err}");

    // The live tail prints what arrives after it started.
    let mut tail = Command::new(BIN)
        .args(["logs", "tail", "service:fertivision-worker", "--collector"])
        .arg(format!("http://127.0.0.1:{}", collector.query_port))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    post(
        &collector,
        "/v1/logs",
        &log("fertivision-api", now, 9, "INFO", "not for this tail", None),
    );
    post(
        &collector,
        "/v1/logs",
        &log("fertivision-worker", now, 13, "WARN", "queue is slow", None),
    );
    let line = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a tailed line");
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(
        line.contains("WARN  fertivision-worker") && line.contains("queue is slow"),
        "{line}"
    );
    assert!(rx.try_recv().is_err(), "only the matching record");
}
