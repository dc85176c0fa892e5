//! The committed search scenario (`tests/fixtures/search_scenario/`): a clinic's morning of
//! log records and spans sent over OTLP/HTTP to a running collector, searchable within 2 s of
//! the acknowledgement, then every query of `queries.toml` answered with its expected hits.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{exchange, free_ports, url_encode as encode};
use serde::Deserialize;
use serde_json::{Value, json};
use telemetry::config::PipelineConfig;

const SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/search_scenario"
);

#[derive(Debug, Deserialize)]
struct Queries {
    query: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    api: String,
    #[serde(default)]
    q: String,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    limit: Option<usize>,
    trace: Option<String>,
    service: Option<String>,
    interval: Option<String>,
    expect: Option<Vec<String>>,
    expect_total: Option<u64>,
    expect_counts: Option<Vec<u64>>,
    expect_errors: Option<Vec<u64>>,
}

/// Ids from names: the same name, the same id, in every run.
fn id(name: &str, bytes: usize) -> String {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut out = String::new();
    while out.len() < bytes * 2 {
        for b in name.bytes().chain([out.len() as u8]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{hash:016x}"));
    }
    out.truncate(bytes * 2);
    out
}

fn attributes(value: &Value) -> Value {
    let Some(map) = value.as_object() else {
        return json!([]);
    };
    Value::Array(
        map.iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::Number(n) if n.is_i64() => json!({ "intValue": n.to_string() }),
                    Value::Number(n) => json!({ "doubleValue": n.as_f64() }),
                    other => json!({ "stringValue": other.as_str().unwrap_or_default() }),
                };
                json!({ "key": k, "value": value })
            })
            .collect(),
    )
}

fn resource(service: &str) -> Value {
    json!({ "attributes": [{ "key": "service.name", "value": { "stringValue": service } }] })
}

/// The corpus as OTLP/JSON export requests, one per record or span.
fn requests(corpus: &Value, base_ns: i64) -> Vec<(&'static str, Value)> {
    let at = |v: &Value| (base_ns + v["at_ms"].as_i64().unwrap() * 1_000_000).to_string();
    let mut out = Vec::new();
    for log in corpus["logs"].as_array().unwrap() {
        let severity = log["severity"].as_str().unwrap();
        let number = match severity {
            "DEBUG" => 5,
            "INFO" => 9,
            "WARN" => 13,
            "ERROR" => 17,
            _ => 21,
        };
        let mut record = json!({
            "timeUnixNano": at(log), "severityNumber": number, "severityText": severity,
            "body": { "stringValue": log["body"] }, "attributes": attributes(&log["attributes"]),
        });
        if let Some(trace) = log["trace"].as_str() {
            record["traceId"] = json!(id(trace, 16));
            record["spanId"] = json!(id(log["span"].as_str().unwrap(), 8));
        }
        out.push(("/v1/logs", json!({ "resourceLogs": [{ "resource": resource(log["service"].as_str().unwrap()), "scopeLogs": [{ "logRecords": [record] }] }] })));
    }
    for span in corpus["spans"].as_array().unwrap() {
        let start = base_ns + span["at_ms"].as_i64().unwrap() * 1_000_000;
        let end = start + span["duration_ms"].as_i64().unwrap() * 1_000_000;
        let kind = match span["kind"].as_str().unwrap() {
            "internal" => 1,
            "server" => 2,
            "client" => 3,
            "producer" => 4,
            _ => 5,
        };
        let mut otlp = json!({
            "traceId": id(span["trace"].as_str().unwrap(), 16), "spanId": id(span["span"].as_str().unwrap(), 8),
            "name": span["name"], "kind": kind, "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string(),
            "attributes": attributes(&span["attributes"]),
        });
        if let Some(parent) = span["parent"].as_str() {
            otlp["parentSpanId"] = json!(id(parent, 8));
        }
        if span["status"] == "error" {
            otlp["status"] = json!({ "code": 2, "message": span["message"] });
        }
        out.push(("/v1/traces", json!({ "resourceSpans": [{ "resource": resource(span["service"].as_str().unwrap()), "scopeSpans": [{ "spans": [otlp] }] }] })));
    }
    out
}

fn texts(hits: &Value, key: &str) -> Vec<String> {
    hits.as_array()
        .into_iter()
        .flatten()
        .map(|h| h[key].as_str().unwrap_or("?").to_owned())
        .collect()
}

async fn answer(query: SocketAddr, case: &Case, base_ns: i64) -> Result<(), String> {
    let ns = |ms: i64| (base_ns + ms * 1_000_000).to_string();
    let mut params = vec![format!("q={}", encode(&case.q))];
    if let Some(since) = case.since_ms {
        params.push(format!("start={}", ns(since)));
    }
    if let Some(until) = case.until_ms {
        params.push(format!("end={}", ns(until)));
    }
    let get = |path: String| async move {
        let (status, body) = exchange(query, "GET", &path, None).await;
        if status == 200 {
            Ok(body)
        } else {
            Err(format!("{path}: {status} {body}"))
        }
    };
    let found: Vec<String> = match case.api.as_str() {
        "logs" | "spans" => {
            let key = if case.api == "logs" { "body" } else { "name" };
            let path = format!("/api/v1/{}/search", case.api);
            if let (Some(total), None) = (case.expect_total, &case.expect) {
                // Every page through the cursor: all records once, newest first.
                let mut seen: Vec<(i64, u64)> = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let mut page_params = params.clone();
                    page_params.push(format!("limit={}", case.limit.unwrap_or(100)));
                    if let Some(cursor) = &cursor {
                        page_params.push(format!("cursor={cursor}"));
                    }
                    let page = get(format!("{path}?{}", page_params.join("&"))).await?;
                    if page["total"] != total {
                        return Err(format!("total {} instead of {total}", page["total"]));
                    }
                    seen.extend(
                        page["hits"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|h| (h["ts"].as_i64().unwrap(), h["seq"].as_u64().unwrap())),
                    );
                    match page["next_cursor"].as_str() {
                        Some(next) => cursor = Some(next.to_owned()),
                        None => break,
                    }
                }
                let mut sorted = seen.clone();
                sorted.sort_by(|a, b| b.cmp(a));
                sorted.dedup();
                if seen.len() as u64 != total || sorted != seen {
                    return Err(format!(
                        "{} records over the pages, {} distinct in order",
                        seen.len(),
                        sorted.len()
                    ));
                }
                return Ok(());
            }
            if let Some(limit) = case.limit {
                params.push(format!("limit={limit}"));
            }
            texts(
                &get(format!("{path}?{}", params.join("&"))).await?["hits"],
                key,
            )
        }
        "trace_logs" | "trace_spans" => {
            let trace = get(format!(
                "/api/v1/traces/{}",
                id(case.trace.as_deref().unwrap(), 16)
            ))
            .await?;
            if case.api == "trace_logs" {
                texts(&trace["logs"], "body")
            } else {
                texts(&trace["spans"], "name")
            }
        }
        "histogram" => {
            params.push(format!(
                "interval={}",
                case.interval.as_deref().unwrap_or("1m")
            ));
            params.push("by=severity".to_owned());
            let histogram = get(format!("/api/v1/logs/histogram?{}", params.join("&"))).await?;
            let buckets = histogram["buckets"].as_array().unwrap();
            let counts: Vec<u64> = buckets
                .iter()
                .map(|b| b["count"].as_u64().unwrap())
                .collect();
            let errors: Vec<u64> = buckets
                .iter()
                .map(|b| b["by_severity"]["ERROR"].as_u64().unwrap_or(0))
                .collect();
            if Some(&counts) != case.expect_counts.as_ref()
                || Some(&errors) != case.expect_errors.as_ref()
            {
                return Err(format!("counts {counts:?}, errors {errors:?}"));
            }
            return Ok(());
        }
        "services" => texts_of(&get("/api/services".to_owned()).await?["data"]),
        "operations" => texts_of(
            &get(format!(
                "/api/services/{}/operations",
                case.service.as_deref().unwrap()
            ))
            .await?["data"],
        ),
        other => return Err(format!("unknown api '{other}'")),
    };
    let expected = case.expect.clone().unwrap_or_default();
    if found == expected {
        Ok(())
    } else {
        Err(format!("found {found:?}"))
    }
}

fn texts_of(values: &Value) -> Vec<String> {
    values
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_of_the_scenario_finds_its_expected_hits() {
    let corpus: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{SCENARIO}/corpus.json")).unwrap())
            .unwrap();
    let queries: Queries =
        toml::from_str(&std::fs::read_to_string(format!("{SCENARIO}/queries.toml")).unwrap())
            .unwrap();
    assert!(
        queries.query.len() >= 20,
        "the scenario has {} queries",
        queries.query.len()
    );

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
        [sinks.spans]
        type = "span_index"
        inputs = ["otlp_http"]
        "#
    ))
    .unwrap();
    let settings = common::settings(pipeline, dir.path(), query);
    let collector = common::start(settings).await;
    common::wait_up(http).await;

    // Ten minutes ago, on a 5 s boundary (the histogram's buckets start on multiples of it).
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let base = now - 600_000_000_000;
    let base = base - base.rem_euclid(5_000_000_000);
    for (path, body) in requests(&corpus, base) {
        let (status, answer) = exchange(http, "POST", path, Some(&body)).await;
        assert_eq!(status, 200, "{answer}");
    }
    let acknowledged = Instant::now();
    let (logs, spans) = (
        corpus["logs"].as_array().unwrap().len(),
        corpus["spans"].as_array().unwrap().len(),
    );
    loop {
        let (_, l) = exchange(query, "GET", "/api/v1/logs/search?limit=1", None).await;
        let (_, s) = exchange(query, "GET", "/api/v1/spans/search?limit=1", None).await;
        if l["total"] == logs && s["total"] == spans {
            break;
        }
        assert!(
            acknowledged.elapsed() < Duration::from_secs(2),
            "not all searchable within 2 s: {l} {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "{logs} log records and {spans} spans searchable {:?} after the last acknowledgement",
        acknowledged.elapsed()
    );

    let mut failures = BTreeMap::new();
    for case in &queries.query {
        match answer(query, case, base).await {
            Ok(()) => eprintln!("ok    {}", case.name),
            Err(why) => {
                eprintln!("FAIL  {}: {why}", case.name);
                failures.insert(case.name.clone(), why);
            }
        }
    }
    collector.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} queries failed: {failures:#?}",
        failures.len(),
        queries.query.len()
    );
}
