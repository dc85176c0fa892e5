//! `telemetry.trace_sample_ratio`: with a ratio of 0, a request without a `traceparent` is not
//! recorded but its response still names its trace (flagged not sampled), while a request
//! whose caller sampled its trace is recorded whole.

mod process;

use std::time::Duration;

use process::{Platform, request, wait_for};

#[test]
fn only_sampled_traces_are_recorded_and_every_response_names_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::start_with(
        dir.path(),
        &[("FERTIVISION_TELEMETRY__TRACE_SAMPLE_RATIO", "0")],
    );
    let bearer = format!("Bearer {}", platform.token);
    let get = |headers: &[(&str, &str)]| {
        let mut all = vec![("Authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        let answer = request(platform.api_port, "GET", "/api/v1/patients", &all, b"").unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer
    };
    let unsampled = get(&[]);
    let unsampled_trace = unsampled.headers["x-trace-id"].clone();
    assert_eq!(unsampled_trace.len(), 32);
    assert!(
        unsampled.headers["traceparent"].ends_with("-00"),
        "{:?}",
        unsampled.headers
    );
    let sampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let sampled = get(&[(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )]);
    assert_eq!(sampled.headers["x-trace-id"], sampled_trace);
    assert!(sampled.headers["traceparent"].ends_with("-01"));

    let query = platform.collector.query_port;
    let trace = |id: &str| {
        request(query, "GET", &format!("/api/v1/traces/{id}"), &[], b"")
            .unwrap()
            .status
    };
    wait_for("the sampled trace", Duration::from_secs(30), || {
        (trace(sampled_trace) == 200).then_some(())
    });
    // Exported together with the sampled one, had it been recorded.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        trace(&unsampled_trace),
        404,
        "an unsampled trace is not recorded"
    );
}
