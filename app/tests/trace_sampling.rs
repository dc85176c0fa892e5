//! `telemetry.trace_sample_ratio`, `telemetry.max_traces_per_second` and
//! `telemetry.logs_follow_sampling`. With a ratio of 0, a request without a `traceparent` is
//! not recorded but its response still names its trace (flagged not sampled), while a request
//! whose caller sampled its trace is recorded whole. Past its budget of traces a second, a
//! process records no more of its own, but still the caller's sampled ones. The logs follow:
//! an unsampled request's info records stay home, its warnings do not, and a sampled request's
//! records all arrive; with `logs_follow_sampling = false` every record arrives.

mod process;

use std::time::{Duration, Instant};

use process::{Platform, request, wait_for};
use serde_json::Value;

const SAMPLED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const PATIENT: &[u8] = br#"{"name":"Sampling Test","date_of_birth":"1990-01-01","sex":"female"}"#;

/// A platform that samples no trace of its own, with `extra` settings.
fn unsampling_platform(dir: &std::path::Path, extra: &[(&str, &str)]) -> Platform {
    let mut env = vec![("FERTIVISION_TELEMETRY__TRACE_SAMPLE_RATIO", "0")];
    env.extend_from_slice(extra);
    Platform::start_with(dir, &env)
}

/// Sends a request with the platform's token and `headers`; returns the trace id it names.
fn send(platform: &Platform, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let bearer = format!("Bearer {}", platform.token);
    let mut all = vec![
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    all.extend_from_slice(headers);
    let body: &[u8] = if method == "POST" { PATIENT } else { b"" };
    let answer = request(platform.api_port, method, path, &all, body).unwrap();
    assert!(answer.status < 300, "{} {}", answer.status, answer.body);
    let trace = answer.headers["x-trace-id"].clone();
    assert_eq!(trace.len(), 32);
    let sampled = headers.iter().any(|(name, _)| *name == "traceparent");
    let flag = if sampled { "-01" } else { "-00" };
    assert!(
        answer.headers["traceparent"].ends_with(flag),
        "{:?}",
        answer.headers
    );
    trace
}

/// `/api/v1/traces/{id}`: the status, and the span names and log bodies when found.
fn trace(platform: &Platform, id: &str) -> (u16, Vec<String>, Vec<String>) {
    let answer = request(
        platform.collector.query_port,
        "GET",
        &format!("/api/v1/traces/{id}"),
        &[],
        b"",
    )
    .unwrap();
    if answer.status != 200 {
        return (answer.status, Vec::new(), Vec::new());
    }
    let found: Value = serde_json::from_str(&answer.body).unwrap();
    let strings = |list: &str, key: &str| -> Vec<String> {
        found[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item[key].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    (200, strings("spans", "name"), strings("logs", "body"))
}

/// Waits for the sampled request's trace to hold its span and its "patient created" record,
/// then lets anything exported with it arrive.
fn wait_for_sampled(platform: &Platform) {
    wait_for("the sampled trace", Duration::from_secs(30), || {
        let (_, spans, logs) = trace(platform, SAMPLED_TRACE);
        (!spans.is_empty() && logs.iter().any(|body| body == "patient created")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
}

#[test]
fn only_sampled_traces_are_recorded_and_every_response_names_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let platform = unsampling_platform(dir.path(), &[]);
    let read = send(&platform, "GET", "/api/v1/patients", &[]);
    let write = send(&platform, "POST", "/api/v1/patients", &[]);
    let sampled = send(
        &platform,
        "POST",
        "/api/v1/patients",
        &[("traceparent", SAMPLED)],
    );
    assert_eq!(sampled, SAMPLED_TRACE);
    wait_for_sampled(&platform);
    // Exported together with the sampled one, had they been recorded.
    assert_eq!(
        trace(&platform, &read).0,
        404,
        "an unsampled read is not recorded"
    );
    assert_eq!(
        trace(&platform, &write).0,
        404,
        "an unsampled write is not recorded, its info record \"patient created\" neither"
    );
}

#[test]
fn past_its_budget_a_process_records_no_trace_of_its_own_but_a_callers_sampled_one() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::start_with(
        dir.path(),
        &[("FERTIVISION_TELEMETRY__MAX_TRACES_PER_SECOND", "2")],
    );
    let bearer = format!("Bearer {}", platform.token);
    let started = Instant::now();
    // (trace id, whether the response says it was recorded)
    let reads: Vec<(String, bool)> = (0..30)
        .map(|_| {
            let answer = request(
                platform.api_port,
                "GET",
                "/api/v1/patients",
                &[("Authorization", bearer.as_str())],
                b"",
            )
            .unwrap();
            assert_eq!(answer.status, 200, "{}", answer.body);
            let recorded = answer.headers["traceparent"].ends_with("-01");
            (answer.headers["x-trace-id"].clone(), recorded)
        })
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let recorded = reads.iter().filter(|(_, recorded)| *recorded).count();
    // A second's worth at once, then 2 a second.
    assert!(
        recorded >= 1 && recorded as f64 <= 2.0 + 2.0 * elapsed + 1.0,
        "{recorded} of 30 reads recorded in {elapsed:.2} s at 2 a second"
    );
    assert!(recorded < reads.len(), "the budget left none out");
    send(
        &platform,
        "POST",
        "/api/v1/patients",
        &[("traceparent", SAMPLED)],
    );
    wait_for_sampled(&platform);
    for (id, recorded) in &reads {
        let status = trace(&platform, id).0;
        assert_eq!(status == 200, *recorded, "trace {id}: {status}");
    }
}

#[test]
fn warnings_of_unsampled_traces_are_exported_and_info_follows_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    // Every request is slow: each logs "slow request" at WARN.
    let slow = ("FERTIVISION_API__SLOW_REQUEST_MS", "0");
    let following = unsampling_platform(&dir.path().join("following"), &[slow]);
    let all = unsampling_platform(
        &dir.path().join("all"),
        &[
            slow,
            ("FERTIVISION_TELEMETRY__LOGS_FOLLOW_SAMPLING", "false"),
        ],
    );
    let logs_of_unsampled_write = |platform: &Platform| {
        let write = send(platform, "POST", "/api/v1/patients", &[]);
        send(
            platform,
            "POST",
            "/api/v1/patients",
            &[("traceparent", SAMPLED)],
        );
        wait_for_sampled(platform);
        let (status, spans, mut logs) = trace(platform, &write);
        assert_eq!(status, 200, "the warning names the trace");
        assert!(spans.is_empty(), "no span of an unsampled trace: {spans:?}");
        logs.sort();
        logs
    };
    assert_eq!(logs_of_unsampled_write(&following), ["slow request"]);
    assert_eq!(
        logs_of_unsampled_write(&all),
        ["patient created", "slow request"]
    );
}
