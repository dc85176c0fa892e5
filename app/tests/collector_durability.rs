//! The collector keeps what it acknowledged: SIGKILL under load five times in a row loses and
//! duplicates nothing acknowledged, and ten times the rate its sinks can take is refused with
//! retry information while memory stays bounded and nothing acknowledged is lost.
//!
//! Both run the real binary (`fertivision collector`) with a `file` sink, whose lines are
//! counted per `loadgen.seq` against what the load generator saw acknowledged; the kill test
//! also checks that the log and span indexes hold as many records as the file.

mod process;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use process::Collector;
use serde_json::Value;
use telemetry::loadgen::{self, LoadgenConfig, LoadgenReport, Protocol, SignalKind};

/// Sources on the test's ports, and an archive that records every item once.
const ARCHIVE_PIPELINE: &str = r#"
[sources.grpc]
type = "otlp_grpc"
address = "127.0.0.1:{grpc}"

[sources.http]
type = "otlp_http"
address = "127.0.0.1:{http}"

[sinks.archive]
type = "file"
inputs = ["grpc", "http"]
path = "archive.jsonl"

[sinks.logs]
type = "log_index"
inputs = ["grpc", "http"]

[sinks.spans]
type = "span_index"
inputs = ["grpc", "http"]
"#;

/// Records the index holds: the `total` of a search for everything.
fn indexed(collector: &Collector, kind: &str) -> u64 {
    let (status, body) = process::http(
        collector.query_port,
        "GET",
        &format!("/api/v1/{kind}/search?limit=1"),
        None,
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    page["total"].as_u64().unwrap()
}

/// How many times each `loadgen.seq` is in the archive, per signal (`traces`, `logs`).
/// Lines are read whole; a half-written last line (the collector still running) is left out.
fn archived(data_dir: &Path) -> HashMap<&'static str, HashMap<u64, u32>> {
    let text = std::fs::read_to_string(data_dir.join("archive.jsonl")).unwrap_or_default();
    let mut counts: HashMap<&'static str, HashMap<u64, u32>> = HashMap::new();
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let line: Value = serde_json::from_str(line).expect("archive lines are JSON");
        let (signal, items) = if let Some(resources) = line["resourceSpans"].as_array() {
            let spans = resources
                .iter()
                .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
                .flat_map(|s| s["spans"].as_array().into_iter().flatten())
                .collect::<Vec<_>>();
            ("traces", spans)
        } else if let Some(resources) = line["resourceLogs"].as_array() {
            let records = resources
                .iter()
                .flat_map(|r| r["scopeLogs"].as_array().into_iter().flatten())
                .flat_map(|s| s["logRecords"].as_array().into_iter().flatten())
                .collect::<Vec<_>>();
            ("logs", records)
        } else {
            panic!("unexpected archive line {line}");
        };
        for item in items {
            let seq = item["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|kv| kv["key"] == loadgen::SEQ_ATTRIBUTE)
                .map(|kv| &kv["value"]["intValue"])
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                .expect("every generated item has its seq");
            *counts.entry(signal).or_default().entry(seq).or_default() += 1;
        }
    }
    counts
}

/// Loads that run for `duration`: spans over gRPC and log records over HTTP.
fn loads(
    collector: &Collector,
    rate: u64,
    duration: Duration,
) -> [(&'static str, LoadgenConfig); 2] {
    let config = |endpoint: String, protocol, signal| LoadgenConfig {
        rate: Some(rate),
        duration,
        batch_size: 200,
        concurrency: 4,
        ..LoadgenConfig::new(endpoint, protocol, signal)
    };
    [
        (
            "traces",
            config(
                format!("http://127.0.0.1:{}", collector.grpc_port),
                Protocol::Grpc,
                SignalKind::Traces,
            ),
        ),
        (
            "logs",
            config(
                format!("http://127.0.0.1:{}", collector.http_port),
                Protocol::Http,
                SignalKind::Logs,
            ),
        ),
    ]
}

/// Waits until every acknowledged item is in the archive, then checks that none is there
/// twice and that everything there was sent. Returns (acknowledged, archived) per signal.
fn check_archive(
    collector: &Collector,
    reports: &[(&'static str, LoadgenReport)],
) -> Vec<(&'static str, u64, usize)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = archived(&collector.data_dir);
        let missing: Vec<(&str, u64)> = reports
            .iter()
            .map(|(signal, report)| {
                let ids = report.acknowledged_ids.as_ref().expect("final report");
                let seen = counts.get(signal);
                let missing = ids
                    .iter()
                    .flatten()
                    .filter(|seq| seen.is_none_or(|s| !s.contains_key(seq)))
                    .count() as u64;
                (*signal, missing)
            })
            .filter(|(_, missing)| *missing > 0)
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged items missing from the archive after 60 s: {missing:?}\n{}",
            collector.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let counts = archived(&collector.data_dir);
    reports
        .iter()
        .map(|(signal, report)| {
            let seen = &counts[signal];
            let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(10).collect();
            assert!(
                twice.is_empty(),
                "{signal}: archived more than once: {twice:?}"
            );
            assert!(
                seen.keys().all(|seq| *seq < report.sent_items),
                "{signal}: an item that was never sent"
            );
            (*signal, report.acknowledged_items, seen.len())
        })
        .collect()
}

fn run_loads(
    runtime: &tokio::runtime::Runtime,
    loads: [(&'static str, LoadgenConfig); 2],
) -> Vec<tokio::task::JoinHandle<(&'static str, LoadgenReport)>> {
    loads
        .into_iter()
        .map(|(signal, config)| {
            runtime.spawn(async move {
                let report = loadgen::run(config, |_| {}).await.expect("load runs");
                (signal, report)
            })
        })
        .collect()
}

#[test]
fn five_sigkills_under_load_lose_and_duplicate_nothing_acknowledged() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path(), ARCHIVE_PIPELINE, &[]);
    let kills = 5;
    let started = Instant::now();
    let loads = run_loads(&runtime, loads(&collector, 4_000, Duration::from_secs(6)));
    for kill in 0..kills {
        // Kill only once this run has taken some of both signals: under load.
        let deadline = Instant::now() + Duration::from_secs(20);
        while collector.metric(r#"collector_accepted_items_total{signal="traces"}"#) < 1000.0
            || collector.metric(r#"collector_accepted_items_total{signal="logs"}"#) < 1000.0
        {
            assert!(
                Instant::now() < deadline,
                "kill {kill}: no load arrived\n{}",
                collector.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100 * kill));
        collector.kill();
        collector.restart();
        eprintln!("kill {kill} at {:?}", started.elapsed());
    }
    let reports: Vec<_> = loads
        .into_iter()
        .map(|load| runtime.block_on(load).unwrap())
        .collect();
    for (signal, report) in &reports {
        assert!(
            report.acknowledged_items >= 5_000,
            "{signal}: too little load to prove anything: {report:?}"
        );
    }
    eprintln!("loads done at {:?}", started.elapsed());
    let checked = check_archive(&collector, &reports);
    eprintln!("checked at {:?}", started.elapsed());
    // The indexes hold each record once too (they commit with the archive's cadence).
    let archived = |signal: &str| checked.iter().find(|c| c.0 == signal).unwrap().2 as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while indexed(&collector, "logs") != archived("logs")
        || indexed(&collector, "spans") != archived("traces")
    {
        assert!(
            Instant::now() < deadline,
            "indexed logs {} spans {}, archived {checked:?}",
            indexed(&collector, "logs"),
            indexed(&collector, "spans")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(collector.stop().success());
    eprintln!("stopped at {:?}", started.elapsed());
    // A clean restart replays nothing twice either.
    collector.restart();
    std::thread::sleep(Duration::from_secs(1));
    assert!(collector.stop().success());
    assert_eq!(check_archive(&collector, &reports), checked);
    collector.restart();
    assert_eq!(indexed(&collector, "logs"), archived("logs"));
    assert_eq!(indexed(&collector, "spans"), archived("traces"));
    assert!(collector.stop().success());
    for (signal, report) in &reports {
        eprintln!(
            "{signal}: sent {} acknowledged {} failed {} (in flight at a kill)",
            report.sent_items, report.acknowledged_items, report.failed_items
        );
    }
    eprintln!("archived once each (acknowledged, archived): {checked:?}");
}

/// A sink that takes 2,000 items a second, beside the archive; the log holds 4 MiB.
const SLOW_PIPELINE: &str = r#"
[sources.grpc]
type = "otlp_grpc"
address = "127.0.0.1:{grpc}"

[sources.http]
type = "otlp_http"
address = "127.0.0.1:{http}"

[sinks.slow]
type = "blackhole"
inputs = ["grpc", "http"]
rate = 2000

[sinks.archive]
type = "file"
inputs = ["grpc", "http"]
path = "archive.jsonl"
"#;

/// The resident memory the collector stays under while refusing ten times the load its
/// slowest sink takes (documented in README.md, "Limits").
const OVERLOAD_RSS_BOUND: u64 = 128 * 1024 * 1024;

#[test]
fn ten_times_the_sustainable_rate_is_refused_with_retry_info_and_memory_stays_bounded() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(
        dir.path(),
        SLOW_PIPELINE,
        &[("FERTIVISION_COLLECTOR__WAL_MAX_BYTES", "4194304")],
    );
    // 10,000 spans/s and 10,000 log records/s: ten times what the slow sink takes.
    let loads = run_loads(&runtime, loads(&collector, 10_000, Duration::from_secs(6)));
    let mut peak_rss = 0;
    let mut refused_over_http = None;
    while !loads.iter().all(|l| l.is_finished()) {
        peak_rss = peak_rss.max(collector.rss_bytes());
        if refused_over_http.is_none()
            && collector
                .metric(r#"collector_refused_requests_total{signal="logs",reason="log_full"}"#)
                > 0.0
        {
            // While full, a plain OTLP/HTTP export (200 KB: larger than the room the load
            // leaves) is told when to come back.
            let record = format!(r#"{{"body":{{"stringValue":"{}"}}}}"#, "x".repeat(10_000));
            let body = format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
                vec![record; 20].join(",")
            );
            let answer = process::request(
                collector.http_port,
                "POST",
                "/v1/logs",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .unwrap();
            if answer.status == 429 {
                refused_over_http = Some(answer);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let reports: Vec<_> = loads
        .into_iter()
        .map(|load| runtime.block_on(load).unwrap())
        .collect();
    for (signal, report) in &reports {
        assert!(
            report.refused_items > 0,
            "{signal}: never refused: {report:?}"
        );
        assert_eq!(
            report.refusals_without_retry_info, 0,
            "{signal}: refusals without a retry delay"
        );
        assert_eq!(report.failed_items, 0, "{signal}: {report:?}");
    }
    let refused = refused_over_http.unwrap_or_else(|| {
        panic!(
            "no 429 while the log was full:\n{}",
            collector
                .metrics()
                .lines()
                .filter(|l| l.contains("refused") || l.contains("wal"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let retry_after: u64 = refused.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{refused:?}");
    assert!(
        peak_rss <= OVERLOAD_RSS_BOUND,
        "peak RSS {} MiB over the documented {} MiB",
        peak_rss >> 20,
        OVERLOAD_RSS_BOUND >> 20
    );
    let checked = check_archive(&collector, &reports);
    for (signal, report) in &reports {
        eprintln!(
            "{signal}: sent {} acknowledged {} refused {} (items, resends counted)",
            report.sent_items, report.acknowledged_items, report.refused_items
        );
    }
    eprintln!(
        "peak RSS {:.1} MiB; archived once each (acknowledged, archived): {checked:?}",
        peak_rss as f64 / (1 << 20) as f64
    );
}
