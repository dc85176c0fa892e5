//! The chaos scenarios against the real binaries, PostgreSQL, Redis, Prometheus and nginx
//! (PostgreSQL slow, down and back; Redis down for 30 s; a worker SIGKILLed mid-run; object
//! storage failing; the collector black-holed, then SIGKILLed under load; the collector's disk
//! full; an API instance frozen behind nginx); each prints its table of expectations, observed
//! values and verdicts, including the alerts Prometheus fires from the generated rules. Then
//! the suite proves it can tell a broken platform from a working one: the PostgreSQL scenario
//! again with the database breaker disabled must fail its fail-fast bound.
//!
//!     cargo build -p fertivision && cargo test -p chaos --test scenarios

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chaos::platform::{Options, Platform};
use chaos::proxy::Faults;
use chaos::report::Report;
use reqwest::Method;
use serde_json::json;
use telemetry::loadgen::{self, LoadgenConfig, Protocol, SignalKind};

const POSTGRES: &str = "postgres slow, down, back";
const REDIS: &str = "redis down 30 s";
const WORKER: &str = "worker SIGKILLed mid-run";
const OBJECTS: &str = "object storage failing";
const COLLECTOR: &str = "collector black-holed, then SIGKILLed under load";
const DISK: &str = "collector's disk full";
const FROZEN: &str = "API instance frozen behind nginx";
const WORKER_FROZEN: &str = "worker frozen past its lease";
/// How long a scenario waits for an alert (rules evaluated every second, `for:` in seconds).
const ALERT_WITHIN: Duration = Duration::from_secs(20);
/// The service name of the load generator's telemetry.
const LOADGEN_LOGS: &str = "service:fertivision-loadgen";
const FAIL_FAST: &str = "writes fail fast while the breaker is open: p99 < 250 ms";

/// The settings the scenario runs the platform with: a call to PostgreSQL times out after 1 s
/// (so 2 s of latency is a failure), and an open breaker tries again after 2 s.
/// The longest the whole suite may take (issue 8: at most 10 minutes in CI).
const SUITE_LIMIT: Duration = Duration::from_secs(600);

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

/// How long a wait took, or why it gave up.
fn took(waited: &anyhow::Result<Duration>) -> String {
    waited
        .as_ref()
        .map_or_else(|e| e.to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
}

/// A new patient's id.
async fn new_patient(platform: &Platform, name: &str) -> String {
    let (status, _, body) = platform
        .call(
            Method::POST,
            "/api/v1/patients",
            Some(json!({"name": name, "date_of_birth": "1988-03-02", "sex": "female"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let patient: serde_json::Value = serde_json::from_str(&body).unwrap();
    patient["id"].as_str().unwrap().to_owned()
}

/// PostgreSQL gets 2 s slower, then goes away, then comes back, while writes keep coming.
async fn postgres_slow_down_back(report: &mut Report, extra: &[(&str, &str)]) {
    let settings: Vec<(&str, &str)> = POSTGRES_SETTINGS.iter().chain(extra).copied().collect();
    let platform = Arc::new(
        Platform::start(&settings)
            .await
            .expect("the platform starts"),
    );
    let patient = new_patient(&platform, "Chaos Patient").await;
    let write_path = format!("/api/v1/patients/{patient}/analyses/follicle");
    let read_path = format!("/api/v1/patients/{patient}");
    let analysis = json!({"ovary": "left", "antral_follicle_count": 9});
    // The read is cached from here on.
    let (status, _, _) = platform.call(Method::GET, &read_path, None).await;
    assert_eq!(status, 200);

    // Writes all along, counting what was accepted, and what the API could not confirm (504
    // `unconfirmed`: it timed out after it may have reached the database).
    let accepted = Arc::new(AtomicUsize::new(0));
    let unconfirmed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..3 {
        let (platform, accepted, unconfirmed, stop) = (
            Arc::clone(&platform),
            Arc::clone(&accepted),
            Arc::clone(&unconfirmed),
            Arc::clone(&stop),
        );
        let (path, body) = (write_path.clone(), analysis.clone());
        writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, _, _) = platform.call(Method::POST, &path, Some(body.clone())).await;
                match status {
                    201 => accepted.fetch_add(1, Ordering::Relaxed),
                    504 => unconfirmed.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
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

    let state_is = |level: f64| {
        let platform = Arc::clone(&platform);
        move || {
            let platform = Arc::clone(&platform);
            async move { platform.api_breaker("database").await == Some(level) }
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
        took(&opened),
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

    let breaker_alert = platform
        .alert_fires(
            "CircuitBreakerOpen",
            &[("job", "fertivision-api"), ("dependency", "database")],
            ALERT_WITHIN,
        )
        .await;
    report.check(
        POSTGRES,
        "the alert CircuitBreakerOpen{dependency=database} fires",
        took(&breaker_alert),
        breaker_alert.is_ok(),
    );
    let burn_alert = platform
        .alert_fires(
            "ApiAvailabilityBudgetBurn",
            &[("severity", "page")],
            ALERT_WITHIN,
        )
        .await;
    report.check(
        POSTGRES,
        "the alert ApiAvailabilityBudgetBurn (page) fires on the 503 and 504 answers",
        took(&burn_alert),
        burn_alert.is_ok(),
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
        took(&closed),
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
                    .log_total("service:fertivision-api AND \"circuit breaker state change\"")
                    .await
                    .is_some_and(|n| n >= 2)
            }
        })
        .await;
    report.check(
        POSTGRES,
        "the breaker's state changes are in the log search within 10 s",
        took(&searchable),
        searchable.is_ok(),
    );

    // Nothing accepted is lost: every 201 is a stored analysis. Nothing refused is stored: an
    // analysis without a 201 is one the API said it could not confirm.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = writer.await;
    }
    let accepted = accepted.load(Ordering::Relaxed);
    let unconfirmed = unconfirmed.load(Ordering::Relaxed);
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
        "every accepted write is stored, once; of the rest only those answered 504 unconfirmed may be",
        format!("{accepted} accepted, {unconfirmed} unconfirmed, {stored} stored (status {status})"),
        status == 200 && (accepted..=accepted + unconfirmed).contains(&stored),
    );
}

/// Redis (cache, job stream) goes away for 30 s while reads, writes and an upload go on.
async fn redis_down(report: &mut Report) {
    let platform = Arc::new(Platform::start(&[]).await.expect("the platform starts"));
    let patient = new_patient(&platform, "Chaos Redis").await;
    let read_path = format!("/api/v1/patients/{patient}");
    let write_path = format!("/api/v1/patients/{patient}/analyses/follicle");
    let (status, _, _) = platform.call(Method::GET, &read_path, None).await;
    assert_eq!(status, 200);

    // Reads and writes all through the outage: (is a read, status, latency).
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(bool, u16, Duration)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (platform, seen, stop) = (Arc::clone(&platform), Arc::clone(&seen), Arc::clone(&stop));
        let (read_path, write_path) = (read_path.clone(), write_path.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, took, _) = platform.call(Method::GET, &read_path, None).await;
                seen.lock().unwrap().push((true, status, took));
                let (status, took, _) = platform
                    .call(
                        Method::POST,
                        &write_path,
                        Some(json!({"ovary": "right", "antral_follicle_count": 7})),
                    )
                    .await;
                seen.lock().unwrap().push((false, status, took));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    platform.redis.set(Faults::down());
    let outage = Instant::now();
    let opened = platform
        .wait_for("the redis breaker to open", Duration::from_secs(15), || {
            let platform = Arc::clone(&platform);
            async move { platform.api_breaker("redis").await == Some(2.0) }
        })
        .await;
    report.check(
        REDIS,
        "the redis breaker opens within 15 s",
        took(&opened),
        opened.is_ok(),
    );
    let alert = platform
        .alert_fires(
            "CircuitBreakerOpen",
            &[("job", "fertivision-api"), ("dependency", "redis")],
            ALERT_WITHIN,
        )
        .await;
    report.check(
        REDIS,
        "the alert CircuitBreakerOpen{dependency=redis} fires",
        took(&alert),
        alert.is_ok(),
    );
    let (uploaded, body) = platform
        .upload(&patient, "lab.txt", b"AMH 1.9 ng/mL\nFSH 6.1 mIU/mL\n")
        .await;
    let document = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned));
    report.check(
        REDIS,
        "an upload during the outage is accepted (202)",
        format!("status {uploaded}"),
        uploaded == 202 && document.is_some(),
    );
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    let during: Vec<(bool, u16, Duration)> = seen.lock().unwrap().drain(..).collect();
    platform.redis.normal();

    let mut reads: Vec<Duration> = during.iter().filter(|s| s.0).map(|s| s.2).collect();
    let reads_ok = during.iter().filter(|s| s.0 && s.1 == 200).count();
    let writes = during.iter().filter(|s| !s.0).count();
    let writes_ok = during.iter().filter(|s| !s.0 && s.1 == 201).count();
    let read_p99 = p99(&mut reads);
    report.check(
        REDIS,
        "reads keep answering without the cache: all 200, p99 < 250 ms",
        format!("{reads_ok}/{} 200, p99 {}", reads.len(), ms(read_p99)),
        !reads.is_empty() && reads_ok == reads.len() && read_p99 < Duration::from_millis(250),
    );
    report.check(
        REDIS,
        "writes keep answering: all 201",
        format!("{writes_ok}/{writes} 201"),
        writes > 0 && writes_ok == writes,
    );

    let closed = platform
        .wait_for(
            "the redis breaker to close",
            Duration::from_secs(20),
            || {
                let platform = Arc::clone(&platform);
                async move { platform.api_breaker("redis").await == Some(0.0) }
            },
        )
        .await;
    report.check(
        REDIS,
        "it closes within 20 s of Redis coming back",
        took(&closed),
        closed.is_ok(),
    );
    let analysed = match &document {
        Some(id) => {
            platform
                .wait_for("the document's analysis", Duration::from_secs(30), || {
                    let platform = Arc::clone(&platform);
                    let path = format!("/api/v1/documents/{id}");
                    async move {
                        let (_, _, body) = platform.call(Method::GET, &path, None).await;
                        body.contains("\"analysis_status\":\"completed\"")
                    }
                })
                .await
        }
        None => Err(anyhow::anyhow!("no document")),
    };
    report.check(
        REDIS,
        "the job queued during the outage is analysed, at the latest 30 s after Redis is back",
        took(&analysed),
        analysed.is_ok(),
    );
    let logged = platform
        .wait_for("the redis breaker's logs", Duration::from_secs(10), || {
            let platform = Arc::clone(&platform);
            async move {
                platform
                    .log_total("\"circuit breaker state change\" AND attributes.dependency:redis")
                    .await
                    .is_some_and(|n| n >= 2)
            }
        })
        .await;
    report.check(
        REDIS,
        "the redis breaker's state changes are in the log search within 10 s",
        took(&logged),
        logged.is_ok(),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.await;
}

/// The attempts of every `analyze_document` job in `status`.
async fn analysis_attempts(platform: &Platform, status: &str) -> Vec<i64> {
    let (_, _, body) = platform
        .call(
            Method::GET,
            &format!("/api/v1/jobs?status={status}&limit=200"),
            None,
        )
        .await;
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v["items"].as_array().map(|items| {
                items
                    .iter()
                    .filter(|j| j["kind"] == "analyze_document")
                    .map(|j| j["attempts"].as_i64().unwrap_or(0))
                    .collect::<Vec<i64>>()
            })
        })
        .unwrap_or_default()
}

/// Uploads `count` distinct lab reports for `patient`; the documents' ids.
async fn upload_reports(platform: &Platform, patient: &str, count: usize) -> Vec<String> {
    let mut documents = Vec::new();
    for i in 0..count {
        let text =
            format!("Lab report {i}\nAMH 2.{i} ng/mL\nFSH 5.{i} mIU/mL\nEstradiol 4{i} pg/mL\n");
        let (status, body) = platform.upload(patient, "lab.txt", text.as_bytes()).await;
        assert_eq!(status, 202, "{body}");
        let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        documents.push(id);
    }
    documents
}

/// Waits until every one of `documents` is analysed.
async fn all_analysed(
    platform: &Platform,
    documents: &[String],
    limit: Duration,
) -> anyhow::Result<Duration> {
    platform
        .wait_for("every document analysed", limit, || async move {
            for id in documents {
                let (_, _, body) = platform
                    .call(Method::GET, &format!("/api/v1/documents/{id}"), None)
                    .await;
                if !body.contains("\"analysis_status\":\"completed\"") {
                    return false;
                }
            }
            true
        })
        .await
}

/// Two workers share the queue; one is frozen (SIGSTOP) for longer than its lease while it
/// works, then thawed (SIGCONT): the other takes its jobs over, and what the thawed one
/// finishes late changes nothing.
async fn worker_frozen(report: &mut Report) {
    let platform = Platform::start(&[
        ("FERTIVISION_JOBS__LEASE_SECS", "3"),
        ("FERTIVISION_JOBS__RECLAIM_IDLE_MS", "4000"),
    ])
    .await
    .expect("the platform starts");
    platform.spawn("worker-2").expect("a second worker");
    let patient = new_patient(&platform, "Chaos Frozen Worker").await;
    const DOCUMENTS: usize = 20;
    platform
        .worker_postgres
        .set(Faults::slow(Duration::from_millis(400), Duration::ZERO));
    let documents = upload_reports(&platform, &patient, DOCUMENTS).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    platform.signal("worker", "STOP").expect("SIGSTOP");
    tokio::time::sleep(Duration::from_secs(10)).await;
    platform.signal("worker", "CONT").expect("SIGCONT");
    platform.worker_postgres.normal();
    let done = all_analysed(&platform, &documents, Duration::from_secs(60)).await;
    report.check(
        WORKER_FROZEN,
        "every document is analysed within 60 s of the thaw",
        took(&done),
        done.is_ok(),
    );
    // The thawed worker's late attempts meet the lease fence (and say so in its log).
    let fence_logs = "\"after the lease was taken over\" OR \"after its lease was taken over\"";
    let fenced = platform
        .wait_for(
            "the fenced late attempts in the log",
            Duration::from_secs(15),
            || async { platform.log_total(fence_logs).await.is_some_and(|n| n >= 1) },
        )
        .await;
    let fenced_attempts = platform.log_total(fence_logs).await.unwrap_or(0);
    let completed = analysis_attempts(&platform, "completed").await;
    let dead = analysis_attempts(&platform, "dead").await;
    let taken_over = completed.iter().filter(|a| **a > 1).count();
    report.check(
        WORKER_FROZEN,
        "the other worker took over the frozen one's jobs; each completed exactly once, none dead",
        format!(
            "{} completed ({taken_over} taken over), {} dead",
            completed.len(),
            dead.len()
        ),
        completed.len() == DOCUMENTS && dead.is_empty() && taken_over >= 1,
    );
    report.check(
        WORKER_FROZEN,
        "the thawed worker's late results are refused by the lease fence, and logged",
        format!(
            "{fenced_attempts} late attempt(s) fenced, logged after {}",
            took(&fenced)
        ),
        fenced.is_ok(),
    );
}

/// The worker is SIGKILLed while it works through a batch of uploads, then started again.
async fn worker_killed(report: &mut Report) {
    let platform = Platform::start(&[
        // A lease lost with its worker is taken over after 3 s (and the stream entry after 4 s),
        // not the production 2 minutes.
        ("FERTIVISION_JOBS__LEASE_SECS", "3"),
        ("FERTIVISION_JOBS__RECLAIM_IDLE_MS", "4000"),
    ])
    .await
    .expect("the platform starts");
    let patient = new_patient(&platform, "Chaos Worker").await;
    const DOCUMENTS: usize = 30;
    // The worker's database calls take 0.4 s more each way: its jobs last seconds, and the
    // SIGKILL lands while some run.
    platform
        .worker_postgres
        .set(Faults::slow(Duration::from_millis(400), Duration::ZERO));
    let documents = upload_reports(&platform, &patient, DOCUMENTS).await;
    // Let it take jobs, then kill it in the middle of them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    platform.kill("worker");
    platform.worker_postgres.normal();
    report.check(
        WORKER,
        "uploads are accepted while the worker is slow",
        format!("{} of {DOCUMENTS} accepted", documents.len()),
        documents.len() == DOCUMENTS,
    );
    platform.spawn("worker").expect("the worker starts again");
    let done = all_analysed(&platform, &documents, Duration::from_secs(60)).await;
    report.check(
        WORKER,
        "every accepted document is analysed within 60 s of the worker's restart",
        took(&done),
        done.is_ok(),
    );
    // Each job completed once: one completed job per document, none dead.
    let completed = analysis_attempts(&platform, "completed").await;
    let dead = analysis_attempts(&platform, "dead").await;
    let retried = completed.iter().filter(|a| **a > 1).count();
    report.check(
        WORKER,
        "each document's job completed exactly once, none dead",
        format!(
            "{} completed ({retried} after a lost attempt), {} dead",
            completed.len(),
            dead.len()
        ),
        completed.len() == DOCUMENTS && dead.is_empty(),
    );
    report.check(
        WORKER,
        "the SIGKILL interrupted at least one running job, which another attempt finished",
        format!("{retried} finished after a lost attempt"),
        retried >= 1,
    );
}

/// Object storage fails (its directory replaced by a file), then comes back.
async fn object_storage_failing(report: &mut Report) {
    let platform = Arc::new(Platform::start(&[]).await.expect("the platform starts"));
    let patient = new_patient(&platform, "Chaos Objects").await;
    let read_path = format!("/api/v1/patients/{patient}");
    let report_text = b"AMH 2.2 ng/mL\nFSH 5.8 mIU/mL\n";
    let (status, _) = platform.upload(&patient, "before.txt", report_text).await;
    assert_eq!(status, 202);

    // The directory is moved away (its objects kept for later) and a file put in its place.
    let objects = platform.objects_dir();
    let away = objects.with_extension("away");
    std::fs::rename(&objects, &away).expect("move the objects directory away");
    std::fs::write(&objects, b"object storage is gone").expect("a file in its place");
    let opened = platform
        .wait_for(
            "the object storage breaker to open",
            Duration::from_secs(15),
            || {
                let platform = Arc::clone(&platform);
                let patient = patient.clone();
                async move {
                    let _ = platform
                        .upload(&patient, "during.txt", b"AMH 1.0 ng/mL\n")
                        .await;
                    platform.api_breaker("object_storage").await == Some(2.0)
                }
            },
        )
        .await;
    report.check(
        OBJECTS,
        "the object storage breaker opens within 15 s",
        took(&opened),
        opened.is_ok(),
    );
    let mut latencies = Vec::new();
    let mut unavailable = 0;
    for _ in 0..10 {
        let started = Instant::now();
        let (status, _) = platform
            .upload(&patient, "during.txt", b"AMH 1.0 ng/mL\n")
            .await;
        latencies.push(started.elapsed());
        if status == 503 {
            unavailable += 1;
        }
    }
    let upload_p99 = p99(&mut latencies);
    report.check(
        OBJECTS,
        "uploads fail fast while it is open: 503, p99 < 250 ms",
        format!("{unavailable}/10 answered 503, p99 {}", ms(upload_p99)),
        unavailable == 10 && upload_p99 < Duration::from_millis(250),
    );
    let (read, read_took, _) = platform.call(Method::GET, &read_path, None).await;
    let alert = platform
        .alert_fires(
            "CircuitBreakerOpen",
            &[("job", "fertivision-api"), ("dependency", "object_storage")],
            ALERT_WITHIN,
        )
        .await;
    report.check(
        OBJECTS,
        "the alert CircuitBreakerOpen{dependency=object_storage} fires",
        took(&alert),
        alert.is_ok(),
    );
    report.check(
        OBJECTS,
        "what needs no object storage still answers: a patient read 200 within 250 ms",
        format!("{read} in {}", ms(read_took)),
        read == 200 && read_took < Duration::from_millis(250),
    );

    std::fs::remove_file(&objects).expect("remove the file");
    std::fs::rename(&away, &objects).expect("the directory back");
    let closed = platform
        .wait_for(
            "the object storage breaker to close",
            Duration::from_secs(20),
            || {
                let platform = Arc::clone(&platform);
                let patient = patient.clone();
                async move {
                    let _ = platform
                        .upload(&patient, "after.txt", b"AMH 3.0 ng/mL\n")
                        .await;
                    platform.api_breaker("object_storage").await == Some(0.0)
                }
            },
        )
        .await;
    report.check(
        OBJECTS,
        "it closes within 20 s of object storage coming back",
        took(&closed),
        closed.is_ok(),
    );
    // Nothing half-written: every document listed has its content.
    let (status, _, body) = platform
        .call(
            Method::GET,
            &format!("/api/v1/patients/{patient}/documents?limit=200"),
            None,
        )
        .await;
    let ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v["items"].as_array().map(|items| {
                items
                    .iter()
                    .filter_map(|d| d["id"].as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default();
    let mut readable = 0;
    for id in &ids {
        let (status, _, _) = platform
            .call(
                Method::GET,
                &format!("/api/v1/documents/{id}/content"),
                None,
            )
            .await;
        if status == 200 {
            readable += 1;
        }
    }
    report.check(
        OBJECTS,
        "no failed upload left a document behind: every listed document has its content",
        format!(
            "{readable} of {} listed readable (status {status})",
            ids.len()
        ),
        status == 200 && !ids.is_empty() && readable == ids.len(),
    );
}

/// Each read's start, status (0: no answer) and latency.
type Seen = Arc<std::sync::Mutex<Vec<(Instant, u16, Duration)>>>;

/// Reads of `base` + `path` from `readers` tasks (each waits `pause` between its reads) until
/// `stop`.
fn read_traffic(
    platform: &Arc<Platform>,
    base: &str,
    path: &str,
    readers: usize,
    pause: Duration,
    stop: &Arc<AtomicBool>,
) -> (Seen, Vec<tokio::task::JoinHandle<()>>) {
    let seen: Seen = Arc::default();
    let tasks = (0..readers)
        .map(|_| {
            let (platform, seen, stop) =
                (Arc::clone(platform), Arc::clone(&seen), Arc::clone(stop));
            let url = format!("{base}{path}");
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let status = platform
                        .http
                        .get(&url)
                        .bearer_auth(&platform.token)
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    seen.lock()
                        .unwrap()
                        .push((started, status, started.elapsed()));
                    tokio::time::sleep(pause).await;
                }
            })
        })
        .collect();
    (seen, tasks)
}

/// Of the reads that started in `from..to`: how many answered 200, how many there were, and
/// their latencies.
fn reads_between(seen: &Seen, from: Instant, to: Instant) -> (usize, usize, Vec<Duration>) {
    let seen = seen.lock().unwrap();
    let window: Vec<_> = seen
        .iter()
        .filter(|(started, _, _)| *started >= from && *started < to)
        .collect();
    let ok = window
        .iter()
        .filter(|(_, status, _)| *status == 200)
        .count();
    let latencies = window.iter().map(|(_, _, took)| *took).collect();
    (ok, window.len(), latencies)
}

/// Checks that the reads that started in `from..to` all answered 200, with p99 < 250 ms.
fn check_reads_unslowed(
    report: &mut Report,
    scenario: &str,
    expectation: &str,
    seen: &Seen,
    (from, to): (Instant, Instant),
) {
    let (ok, total, mut latencies) = reads_between(seen, from, to);
    let slowest = p99(&mut latencies);
    report.check(
        scenario,
        expectation,
        format!(
            "{ok}/{total} 200 in {:.1} s, p99 {}",
            (to - from).as_secs_f64(),
            ms(slowest)
        ),
        total > 0 && ok == total && slowest < Duration::from_millis(250),
    );
}

/// Waits up to 30 s until the log index holds at least `acknowledged` records of the load
/// generator: how long that took, and how many it holds.
async fn loadgen_indexed(
    platform: &Platform,
    acknowledged: u64,
) -> (anyhow::Result<Duration>, u64) {
    let waited = platform
        .wait_for(
            "every acknowledged record in the index",
            Duration::from_secs(30),
            || async {
                platform
                    .log_total(LOADGEN_LOGS)
                    .await
                    .is_some_and(|n| n >= acknowledged)
            },
        )
        .await;
    (waited, platform.log_total(LOADGEN_LOGS).await.unwrap_or(0))
}

/// A load generator sending log records over OTLP/HTTP straight to the collector.
fn log_load(
    platform: &Platform,
    rate: u64,
    duration: Duration,
) -> tokio::task::JoinHandle<loadgen::LoadgenReport> {
    let config = LoadgenConfig {
        rate: Some(rate),
        duration,
        batch_size: 100,
        concurrency: 4,
        ..LoadgenConfig::new(platform.otlp_http.clone(), Protocol::Http, SignalKind::Logs)
    };
    tokio::spawn(async move { loadgen::run(config, |_| {}).await.expect("the load runs") })
}

/// The collector stops answering (a black hole), then is SIGKILLed under load and started
/// again on its data.
async fn collector_killed(report: &mut Report) {
    let shared = Arc::new(Platform::start(&[]).await.expect("the platform starts"));
    let patient = new_patient(&shared, "Chaos Collector").await;
    let read_path = format!("/api/v1/patients/{patient}");
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, readers) = read_traffic(
        &shared,
        &shared.api,
        &read_path,
        2,
        Duration::from_millis(50),
        &stop,
    );

    // A black hole: the exporters' connections are accepted and never answered.
    shared.collector.set(Faults::blackhole());
    let holed = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    shared.collector.normal();
    check_reads_unslowed(
        report,
        COLLECTOR,
        "while the collector never answers, reads are not slowed: all 200, p99 < 250 ms",
        &seen,
        (holed, Instant::now()),
    );
    let lost_metric = (
        "fertivision_telemetry_lost_total",
        [("job", "fertivision-api")],
    );
    let counted = shared
        .metric_above(lost_metric.0, &lost_metric.1, 0.0, Duration::from_secs(20))
        .await;
    let lost = shared
        .metric(lost_metric.0, &lost_metric.1)
        .await
        .unwrap_or(0.0);
    report.check(
        COLLECTOR,
        "the API counts what it could not hand over (fertivision_telemetry_lost_total > 0)",
        format!("{lost} lost items counted, seen after {}", took(&counted)),
        counted.is_ok(),
    );

    // SIGKILL under load: an OTLP client that knows what was acknowledged, and the API's reads.
    let load = log_load(&shared, 2_000, Duration::from_secs(14));
    tokio::time::sleep(Duration::from_secs(3)).await;
    shared.kill("collector");
    let killed = Instant::now();
    let down_alert = shared
        .alert_fires(
            "ScrapeTargetDown",
            &[("job", "fertivision-collector")],
            ALERT_WITHIN,
        )
        .await;
    report.check(
        COLLECTOR,
        "the alert ScrapeTargetDown{job=fertivision-collector} fires while it is down",
        took(&down_alert),
        down_alert.is_ok(),
    );
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(killed.elapsed())).await;
    shared
        .spawn("collector")
        .expect("the collector starts again");
    check_reads_unslowed(
        report,
        COLLECTOR,
        "while the collector is dead, reads are not slowed: all 200, p99 < 250 ms",
        &seen,
        (killed, Instant::now()),
    );
    let loaded = load.await.expect("the load task");
    let acknowledged = loaded.acknowledged_items;
    let (kept, indexed) = loadgen_indexed(&shared, acknowledged).await;
    report.check(
        COLLECTOR,
        "no acknowledged telemetry lost: the log index holds at least every acknowledged record, and nothing never sent",
        format!(
            "{acknowledged} acknowledged, {} refused while it was down, {indexed} indexed",
            loaded.failed_items
        ),
        kept.is_ok() && acknowledged > 0 && indexed <= loaded.sent_items,
    );

    // Telemetry flows again end to end: a new request's trace is searchable.
    let response = shared
        .http
        .get(format!("{}{read_path}", shared.api))
        .bearer_auth(&shared.token)
        .send()
        .await
        .expect("a read");
    let trace_id = response
        .headers()
        .get("x-trace-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let trace_url = format!("{}/api/v1/traces/{trace_id}", shared.query);
    let traced = shared
        .wait_for("a new trace", Duration::from_secs(20), || async {
            shared
                .get_json(&trace_url)
                .await
                .is_some_and(|t| t["spans"].as_array().is_some_and(|s| !s.is_empty()))
        })
        .await;
    report.check(
        COLLECTOR,
        "after the restart a new request's trace reaches the trace API within 20 s",
        took(&traced),
        traced.is_ok(),
    );
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let _ = reader.await;
    }
}

/// The collector's log runs out of disk while telemetry keeps coming, then space is freed.
async fn collector_disk_full(report: &mut Report) {
    let shared = Arc::new(
        Platform::start_with(Options {
            wal_disk_bytes: Some(16 << 20),
            ..Options::default()
        })
        .await
        .expect("the platform starts"),
    );
    let patient = new_patient(&shared, "Chaos Disk").await;
    let read_path = format!("/api/v1/patients/{patient}");
    let load = log_load(&shared, 1_000, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let filled = shared.fill_wal_disk().expect("fill the disk");
    let full = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, readers) = read_traffic(
        &shared,
        &shared.api,
        &read_path,
        2,
        Duration::from_millis(50),
        &stop,
    );
    let refused = (
        "collector_refused_requests_total",
        [("reason", "disk_full")],
    );
    let refusing = shared
        .metric_above(refused.0, &refused.1, 0.0, Duration::from_secs(10))
        .await;
    report.check(
        DISK,
        "with the disk full, the collector refuses data, retryably (reason disk_full)",
        format!(
            "{} MiB filler; refusals seen after {}",
            filled >> 20,
            took(&refusing)
        ),
        refusing.is_ok(),
    );
    let alert = shared
        .alert_fires(
            "CollectorRefusingData",
            &[("reason", "disk_full")],
            ALERT_WITHIN,
        )
        .await;
    report.check(
        DISK,
        "the alert CollectorRefusingData{reason=disk_full} fires",
        took(&alert),
        alert.is_ok(),
    );
    let searchable = shared.log_total("*").await;
    let alive = shared.running("collector");
    // When it died, its last words say why.
    let last_words = if alive {
        String::new()
    } else {
        let log = std::fs::read_to_string(shared.log_path("collector")).unwrap_or_default();
        format!(", last log line: {}", log.lines().last().unwrap_or("none"))
    };
    report.check(
        DISK,
        "the collector stays up and its search answers",
        format!("running {alive}, search total {searchable:?}{last_words}"),
        alive && searchable.is_some(),
    );
    shared.free_wal_disk().expect("free the disk");
    let freed = Instant::now();
    check_reads_unslowed(
        report,
        DISK,
        "the API is not slowed while the collector's disk is full: all 200, p99 < 250 ms",
        &seen,
        (full, freed),
    );
    let accepted = ("collector_accepted_items_total", [("signal", "logs")]);
    let before = shared.metric(accepted.0, &accepted.1).await.unwrap_or(0.0);
    let resumed = shared
        .metric_above(accepted.0, &accepted.1, before, Duration::from_secs(10))
        .await;
    report.check(
        DISK,
        "once space is freed the collector accepts again, without a restart",
        took(&resumed),
        resumed.is_ok(),
    );
    let loaded = load.await.expect("the load task");
    let (kept, indexed) = loadgen_indexed(&shared, loaded.acknowledged_items).await;
    report.check(
        DISK,
        "nothing lost: every refused batch was accepted on a retry, and every acknowledged record is indexed",
        format!(
            "{} sent, {} acknowledged, {} refusals retried, {} failed, {indexed} indexed",
            loaded.sent_items, loaded.acknowledged_items, loaded.refused_items, loaded.failed_items
        ),
        loaded.refused_items > 0
            && loaded.acknowledged_items == loaded.sent_items
            && loaded.failed_items == 0
            && kept.is_ok(),
    );
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let _ = reader.await;
    }
}

/// One of two API instances behind compose's nginx is frozen (SIGSTOP) for 20 s, then thawed
/// (SIGCONT), while clients read through nginx.
async fn api_frozen(report: &mut Report) {
    let shared = Arc::new(
        Platform::start_with(Options {
            api_instances: 2,
            ..Options::default()
        })
        .await
        .expect("the platform starts"),
    );
    let nginx = shared.start_nginx().await.expect("nginx starts");
    let patient = new_patient(&shared, "Chaos Frozen").await;
    let read_path = format!("/api/v1/patients/{patient}");
    let frozen_api = shared.apis[1].clone();
    let frozen_address = frozen_api.trim_start_matches("http://").to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    // Four clients, each reading every 100 ms: under nginx's 100 requests/s per address.
    let (seen, readers) = read_traffic(
        &shared,
        &nginx,
        &read_path,
        4,
        Duration::from_millis(100),
        &stop,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    shared.signal("serve-2", "STOP").expect("SIGSTOP");
    let frozen = Instant::now();
    let direct = tokio::time::timeout(
        Duration::from_secs(1),
        shared.http.get(format!("{frozen_api}/healthz")).send(),
    )
    .await;
    report.check(
        FROZEN,
        "the frozen instance answers nothing (its /healthz, asked directly, within 1 s)",
        if direct.is_err() {
            "no answer".to_owned()
        } else {
            "answered".to_owned()
        },
        direct.is_err(),
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    let log_before_thaw = shared.nginx_access_log().len();
    shared.signal("serve-2", "CONT").expect("SIGCONT");
    let thawed = Instant::now();
    // The reads that met the frozen instance wait out nginx's read timeout.
    tokio::time::sleep(Duration::from_secs(14)).await;

    let (ok, total, mut latencies) = reads_between(&seen, frozen, thawed);
    latencies.sort();
    let median = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    let slowest = latencies.last().copied().unwrap_or_default();
    let fast = latencies
        .iter()
        .filter(|l| **l < Duration::from_millis(250))
        .count();
    report.check(
        FROZEN,
        "every read through nginx answers 200 while an instance is frozen",
        format!("{ok}/{total} 200"),
        total > 0 && ok == total,
    );
    report.check(
        FROZEN,
        "most reads do not notice: median < 50 ms, at least 95 % under 250 ms",
        format!("median {}, {fast}/{total} under 250 ms", ms(median)),
        median < Duration::from_millis(50) && fast * 100 >= total * 95,
    );
    report.check(
        FROZEN,
        "a read that met the frozen instance waits at most nginx's read timeout (12 s) plus 1 s, then another instance answers it",
        format!("slowest {}", ms(slowest)),
        slowest < Duration::from_secs(13),
    );
    let back = shared
        .wait_for(
            "nginx to use the thawed instance",
            Duration::from_secs(20),
            || async {
                shared.nginx_access_log()[log_before_thaw..]
                    .iter()
                    .any(|entry| {
                        entry["status"] == 200
                            && entry["upstream"].as_str().is_some_and(|u| {
                                u.rsplit(", ").next() == Some(frozen_address.as_str())
                            })
                    })
            },
        )
        .await;
    report.check(
        FROZEN,
        "after SIGCONT nginx sends it reads again, and it answers them",
        match &back {
            Ok(_) => format!("{:.1} s after the thaw", thawed.elapsed().as_secs_f64()),
            Err(e) => e.to_string(),
        },
        back.is_ok(),
    );
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let _ = reader.await;
    }
}

/// The scenarios by the name that selects them on the command line.
const SCENARIOS: &[&str] = &[
    "postgres",
    "redis",
    "worker",
    "worker-frozen",
    "objects",
    "collector",
    "disk",
    "frozen",
    "no-breaker",
];

fn main() -> ExitCode {
    // `cargo test -p chaos --test scenarios -- disk frozen` runs those alone; libtest's own
    // flags (which `cargo test --workspace` may pass) select nothing.
    let chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| SCENARIOS.contains(&a.as_str()))
        .collect();
    let unknown: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && !SCENARIOS.contains(&a.as_str()))
        .collect();
    if !unknown.is_empty() {
        eprintln!("unknown scenario(s) {unknown:?}; the scenarios are {SCENARIOS:?}");
        return ExitCode::FAILURE;
    }
    let runs = |name: &str| chosen.is_empty() || chosen.iter().any(|c| c == name);
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (working, broken) = runtime.block_on(async {
        let mut working = Report::new();
        if runs("postgres") {
            postgres_slow_down_back(&mut working, &[]).await;
        }
        if runs("redis") {
            redis_down(&mut working).await;
        }
        if runs("worker") {
            worker_killed(&mut working).await;
        }
        if runs("worker-frozen") {
            worker_frozen(&mut working).await;
        }
        if runs("objects") {
            object_storage_failing(&mut working).await;
        }
        if runs("collector") {
            collector_killed(&mut working).await;
        }
        if runs("disk") {
            collector_disk_full(&mut working).await;
        }
        if runs("frozen") {
            api_frozen(&mut working).await;
        }
        let mut broken = Report::new();
        if runs("no-breaker") {
            postgres_slow_down_back(
                &mut broken,
                &[("FERTIVISION_DATABASE__BREAKER_ENABLED", "false")],
            )
            .await;
        }
        (working, broken)
    });
    println!("\nThe scenarios:\n\n{working}");
    let told_apart = !runs("no-breaker")
        || broken
            .failures()
            .iter()
            .any(|check| check.expectation == FAIL_FAST);
    if runs("no-breaker") {
        println!(
            "\nThe same with the database breaker disabled (must fail its fail-fast bound):\n\n{broken}"
        );
    }
    // The bound for the whole suite in CI.
    let took = started.elapsed();
    let in_time = !chosen.is_empty() || took <= SUITE_LIMIT;
    println!(
        "\nchaos: the scenarios took {:.0} s (the whole suite must take at most {} s)",
        took.as_secs_f64(),
        SUITE_LIMIT.as_secs()
    );
    if working.passed() && told_apart && in_time {
        if runs("no-breaker") {
            println!("\nchaos: every expectation holds, and the broken platform was caught");
        } else {
            println!("\nchaos: every expectation holds");
        }
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
        if !in_time {
            println!("\nchaos: FAILED: the whole suite took longer than its bound");
        }
        ExitCode::FAILURE
    }
}
