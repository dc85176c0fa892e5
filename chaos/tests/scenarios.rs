//! The chaos scenarios against the real binaries, PostgreSQL and Redis (PostgreSQL slow, down
//! and back; Redis down for 30 s; a worker SIGKILLed mid-run; object storage failing); each
//! prints its table
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
const REDIS: &str = "redis down 30 s";
const WORKER: &str = "worker SIGKILLed mid-run";
const OBJECTS: &str = "object storage failing";
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
                    .log_hits("service:fertivision-api AND \"circuit breaker state change\"")
                    .await
                    >= 2
            }
        })
        .await;
    report.check(
        POSTGRES,
        "the breaker's state changes are in the log search within 10 s",
        took(&searchable),
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
                    .log_hits("\"circuit breaker state change\" AND attributes.dependency:redis")
                    .await
                    >= 2
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

/// The worker is SIGKILLed while it works through a batch of uploads, then started again.
async fn worker_killed(report: &mut Report) {
    let mut platform = Platform::start(&[
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
    let mut documents = Vec::new();
    for i in 0..DOCUMENTS {
        let text =
            format!("Lab report {i}\nAMH 2.{i} ng/mL\nFSH 5.{i} mIU/mL\nEstradiol 4{i} pg/mL\n");
        let (status, body) = platform.upload(&patient, "lab.txt", text.as_bytes()).await;
        assert_eq!(status, 202, "{body}");
        let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        documents.push(id);
    }
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
    let done = platform
        .wait_for("every document analysed", Duration::from_secs(60), || {
            let platform = &platform;
            let documents = &documents;
            async move {
                for id in documents {
                    let (_, _, body) = platform
                        .call(Method::GET, &format!("/api/v1/documents/{id}"), None)
                        .await;
                    if !body.contains("\"analysis_status\":\"completed\"") {
                        return false;
                    }
                }
                true
            }
        })
        .await;
    report.check(
        WORKER,
        "every accepted document is analysed within 60 s of the worker's restart",
        took(&done),
        done.is_ok(),
    );
    // Each job completed once: one completed job per document, none dead.
    let jobs = |status: &'static str| {
        let platform = &platform;
        async move {
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
    };
    let completed = jobs("completed").await;
    let dead = jobs("dead").await;
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

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (working, broken) = runtime.block_on(async {
        let mut working = Report::new();
        postgres_slow_down_back(&mut working, &[]).await;
        redis_down(&mut working).await;
        worker_killed(&mut working).await;
        object_storage_failing(&mut working).await;
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
