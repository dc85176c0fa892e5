//! The chaos scenarios against the real binaries, PostgreSQL and Redis; each prints its table
//! of expectations, observed values and verdicts. Then the suite proves it can tell a broken
//! platform from a working one: the PostgreSQL scenario again with the database breaker
//! disabled must fail its fail-fast bound.
//!
//!     cargo build -p fertivision && cargo test -p chaos --test scenarios

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chaos::platform::Platform;
use chaos::proxy::Faults;
use chaos::report::Report;
use reqwest::Method;
use serde_json::json;

const POSTGRES: &str = "postgres slow, down, back";
const FAIL_FAST: &str = "writes fail fast while the breaker is open: p99 < 250 ms";

/// The settings the scenario runs the platform with: a call to PostgreSQL times out after 1 s
/// (so 2 s of latency is a failure), and an open breaker tries again after 2 s.
const POSTGRES_SETTINGS: &[(&str, &str)] = &[
    ("FERTIVISION_DATABASE__CALL_TIMEOUT_MS", "1000"),
    ("FERTIVISION_DATABASE__BREAKER_OPEN_MS", "2000"),
    ("FERTIVISION_DATABASE__BREAKER_FAILURE_THRESHOLD", "5"),
];

fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort();
    let index = (latencies.len() * 99).div_ceil(100).saturating_sub(1);
    latencies.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// PostgreSQL gets 2 s slower, then goes away, then comes back, while writes keep coming.
async fn postgres_slow_down_back(report: &mut Report, extra: &[(&str, &str)]) {
    let settings: Vec<(&str, &str)> = POSTGRES_SETTINGS.iter().chain(extra).copied().collect();
    let platform = Arc::new(
        Platform::start(&settings)
            .await
            .expect("the platform starts"),
    );
    let (status, _, body) = platform
        .call(
            Method::POST,
            "/api/v1/patients",
            Some(json!({"name": "Chaos Patient", "date_of_birth": "1988-03-02", "sex": "female"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let patient: serde_json::Value = serde_json::from_str(&body).unwrap();
    let patient = patient["id"].as_str().unwrap().to_owned();
    let write_path = format!("/api/v1/patients/{patient}/analyses/follicle");
    let read_path = format!("/api/v1/patients/{patient}");
    let analysis = json!({"ovary": "left", "antral_follicle_count": 9});
    // The read is cached from here on.
    let (status, _, _) = platform.call(Method::GET, &read_path, None).await;
    assert_eq!(status, 200);

    // Writes all along, counting what was accepted.
    let accepted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..3 {
        let (platform, accepted, stop) = (
            Arc::clone(&platform),
            Arc::clone(&accepted),
            Arc::clone(&stop),
        );
        let (path, body) = (write_path.clone(), analysis.clone());
        writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, _, _) = platform.call(Method::POST, &path, Some(body.clone())).await;
                if status == 201 {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let healthy_writes = accepted.load(Ordering::Relaxed);
    report.check(
        POSTGRES,
        "writes succeed before the fault",
        format!("{healthy_writes} accepted in 1 s"),
        healthy_writes > 0,
    );

    let breaker = [("job", "fertivision-api"), ("dependency", "database")];
    let state_is = |level: f64| {
        let platform = Arc::clone(&platform);
        move || {
            let platform = Arc::clone(&platform);
            async move {
                platform
                    .metric("fertivision_breaker_state_ratio", &breaker)
                    .await
                    == Some(level)
            }
        }
    };

    // Slow: 2 s more on every exchange with PostgreSQL.
    platform
        .postgres
        .set(Faults::slow(Duration::from_secs(2), Duration::ZERO));
    let opened = platform
        .wait_for(
            "the breaker to open",
            Duration::from_secs(15),
            state_is(2.0),
        )
        .await;
    report.check(
        POSTGRES,
        "the database breaker opens within 15 s (fertivision_breaker_state_ratio = 2)",
        opened
            .as_ref()
            .map_or_else(|e| e.to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
        opened.is_ok(),
    );

    let mut latencies = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let (status, took, _) = platform
            .call(Method::POST, &write_path, Some(analysis.clone()))
            .await;
        latencies.push(took);
        if status == 503 {
            refused += 1;
        }
    }
    let slow_p99 = p99(&mut latencies);
    report.check(
        POSTGRES,
        FAIL_FAST,
        format!("p99 {}, {refused}/20 answered 503", ms(slow_p99)),
        slow_p99 < Duration::from_millis(250),
    );

    let started = Instant::now();
    let (health, _, _) = platform.call(Method::GET, "/healthz", None).await;
    let (read, read_took, _) = platform.call(Method::GET, &read_path, None).await;
    report.check(
        POSTGRES,
        "what needs no database still answers: /healthz 200, a cached read 200 within 250 ms",
        format!(
            "/healthz {health}, read {read} in {}",
            ms(read_took.min(started.elapsed()))
        ),
        health == 200 && read == 200 && read_took < Duration::from_millis(250),
    );

    // Down: connections reset.
    platform.postgres.set(Faults::down());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let (_, took, _) = platform
            .call(Method::POST, &write_path, Some(analysis.clone()))
            .await;
        latencies.push(took);
    }
    let down_p99 = p99(&mut latencies);
    report.check(
        POSTGRES,
        "writes fail fast while PostgreSQL is down: p99 < 250 ms",
        format!("p99 {}", ms(down_p99)),
        down_p99 < Duration::from_millis(250),
    );

    // Back.
    platform.postgres.normal();
    let closed = platform
        .wait_for(
            "the breaker to close",
            Duration::from_secs(20),
            state_is(0.0),
        )
        .await;
    report.check(
        POSTGRES,
        "it closes within 20 s of PostgreSQL coming back",
        closed
            .as_ref()
            .map_or_else(|e| e.to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
        closed.is_ok(),
    );
    let transitions = |to: &'static str| {
        let platform = Arc::clone(&platform);
        async move {
            platform
                .metric(
                    "fertivision_breaker_transitions_total",
                    &[
                        ("job", "fertivision-api"),
                        ("dependency", "database"),
                        ("to", to),
                    ],
                )
                .await
                .unwrap_or(0.0)
        }
    };
    let (open, half_open, close) = (
        transitions("open").await,
        transitions("half_open").await,
        transitions("closed").await,
    );
    report.check(
        POSTGRES,
        "the transitions metric shows open, a half-open probe, closed",
        format!("open {open}, half_open {half_open}, closed {close}"),
        open >= 1.0 && half_open >= 1.0 && close >= 1.0,
    );
    let searchable = platform
        .wait_for("the breaker's logs", Duration::from_secs(10), || {
            let platform = Arc::clone(&platform);
            async move {
                platform
                    .log_hits("service:fertivision-api AND \"circuit breaker state change\"")
                    .await
                    >= 2
            }
        })
        .await;
    report.check(
        POSTGRES,
        "the breaker's state changes are in the log search within 10 s",
        searchable
            .as_ref()
            .map_or_else(|e| e.to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
        searchable.is_ok(),
    );

    // Nothing accepted is lost: every 201 is a stored analysis.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = writer.await;
    }
    let accepted = accepted.load(Ordering::Relaxed);
    let (status, _, body) = platform
        .call(
            Method::GET,
            &format!("/api/v1/patients/{patient}/analyses"),
            None,
        )
        .await;
    let stored = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0);
    report.check(
        POSTGRES,
        "every accepted write is stored, once",
        format!("{accepted} accepted, {stored} stored (status {status})"),
        status == 200 && stored == accepted,
    );
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (working, broken) = runtime.block_on(async {
        let mut working = Report::new();
        postgres_slow_down_back(&mut working, &[]).await;
        let mut broken = Report::new();
        postgres_slow_down_back(
            &mut broken,
            &[("FERTIVISION_DATABASE__BREAKER_ENABLED", "false")],
        )
        .await;
        (working, broken)
    });
    println!("\nThe scenarios:\n\n{working}");
    println!(
        "\nThe same with the database breaker disabled (must fail its fail-fast bound):\n\n{broken}"
    );
    let told_apart = broken
        .failures()
        .iter()
        .any(|check| check.expectation == FAIL_FAST);
    if working.passed() && told_apart {
        println!("\nchaos: every expectation holds, and the broken platform was caught");
        ExitCode::SUCCESS
    } else {
        if !working.passed() {
            println!(
                "\nchaos: FAILED: {} expectation(s) broken",
                working.failures().len()
            );
        }
        if !told_apart {
            println!("\nchaos: FAILED: the platform without a breaker passed the fail-fast bound");
        }
        ExitCode::FAILURE
    }
}
