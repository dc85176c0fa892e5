//! The load generator against the collector's real ingest path: the OTLP/gRPC and OTLP/HTTP
//! receivers over a write-ahead log in a temp dir, on loopback sockets. What it reports as
//! acknowledged must be in the log exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message;
use telemetry::ingest::{Ingest, IngestLimits};
use telemetry::loadgen::{self, LoadgenConfig, LoadgenReport, Protocol, SEQ_ATTRIBUTE, SignalKind};
use telemetry::sources::otlp_grpc::OtlpGrpc;
use telemetry::sources::otlp_http::{self, HttpLimits};
use telemetry::wal::{Signal, Wal, WalConfig};

/// A collector on loopback: its WAL and the gRPC and HTTP base URLs.
struct Collector {
    wal: Arc<Wal>,
    grpc: String,
    http: String,
}

async fn collector(dir: &std::path::Path, max_bytes: Option<u64>) -> Collector {
    let mut config = WalConfig::new(dir);
    config.sinks = vec!["test".to_owned()];
    if let Some(max_bytes) = max_bytes {
        config.max_bytes = max_bytes;
        config.segment_bytes = max_bytes / 2;
    }
    let wal = Arc::new(Wal::open(config).await.unwrap());
    let ingest = Ingest::new(
        Arc::clone(&wal),
        IngestLimits::default(),
        Default::default(),
    );

    let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = format!("http://{}", grpc_listener.local_addr().unwrap());
    let routes = OtlpGrpc::new(ingest.clone()).router();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(incoming(grpc_listener))
            .await
            .unwrap();
    });

    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = format!("http://{}", http_listener.local_addr().unwrap());
    let router = otlp_http::router(ingest, HttpLimits::default());
    tokio::spawn(async move { axum::serve(http_listener, router).await.unwrap() });
    Collector { wal, grpc, http }
}

fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

fn seq_of(attributes: &[KeyValue]) -> u64 {
    let value = attributes
        .iter()
        .find(|kv| kv.key == SEQ_ATTRIBUTE)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref());
    match value {
        Some(any_value::Value::IntValue(seq)) => *seq as u64,
        other => panic!("no {SEQ_ATTRIBUTE} int attribute: {other:?}"),
    }
}

/// Every `loadgen.seq` in the log (committing as it reads), with how often it occurs.
async fn read_sequence_numbers(wal: &Wal) -> HashMap<u64, u32> {
    let mut reader = wal.reader("test").unwrap();
    let mut seen = HashMap::new();
    while let Some(record) = reader.try_next().await.unwrap() {
        let seqs: Vec<u64> = match record.signal {
            Signal::Traces => ExportTraceServiceRequest::decode(record.payload)
                .unwrap()
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| seq_of(&s.attributes))
                .collect(),
            Signal::Logs => ExportLogsServiceRequest::decode(record.payload)
                .unwrap()
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
                .map(|l| seq_of(&l.attributes))
                .collect(),
            Signal::Metrics => ExportMetricsServiceRequest::decode(record.payload)
                .unwrap()
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .flat_map(|m| match &m.data {
                    Some(metric::Data::Sum(sum)) => sum.data_points.clone(),
                    other => panic!("not a counter: {other:?}"),
                })
                .map(|p| seq_of(&p.attributes))
                .collect(),
            other => panic!("unexpected signal {other:?}"),
        };
        for seq in seqs {
            *seen.entry(seq).or_insert(0) += 1;
        }
        reader.commit(record.lsn).await.unwrap();
    }
    seen
}

/// Every acknowledged item is in the log exactly once, and the log holds nothing else.
fn assert_exactly_once(report: &LoadgenReport, seen: &HashMap<u64, u32>) {
    let acknowledged = report
        .acknowledged_ids
        .as_ref()
        .expect("final report has ids");
    assert_eq!(acknowledged.len(), report.acknowledged_items);
    for range in acknowledged.iter() {
        for seq in range {
            assert_eq!(seen.get(&seq), Some(&1), "seq {seq}");
        }
    }
    let duplicated = seen.values().filter(|&&n| n != 1).count();
    assert_eq!(duplicated, 0, "items written more than once");
    assert_eq!(seen.len() as u64, report.acknowledged_items);
}

fn config(endpoint: &str, protocol: Protocol, signal: SignalKind, total: u64) -> LoadgenConfig {
    LoadgenConfig {
        total: Some(total),
        duration: Duration::from_secs(30),
        ..LoadgenConfig::new(endpoint, protocol, signal)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_spans_arrive_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let collector = collector(dir.path(), None).await;
    let report = loadgen::run(
        config(&collector.grpc, Protocol::Grpc, SignalKind::Traces, 5000),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.sent_items, 5000);
    assert_eq!(report.acknowledged_items, 5000);
    assert_eq!((report.refused_items, report.failed_items), (0, 0));
    assert_eq!(report.requests, 10); // 9 × 512 + 392
    assert_exactly_once(&report, &read_sequence_numbers(&collector.wal).await);
    eprintln!(
        "grpc traces: {} spans in {:?}, {:.0} spans/s",
        report.acknowledged_items, report.elapsed, report.acknowledged_per_sec
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_logs_and_metrics_arrive_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let collector = collector(dir.path(), None).await;
    let logs = loadgen::run(
        config(&collector.http, Protocol::Http, SignalKind::Logs, 3000),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(logs.acknowledged_items, 3000);
    assert_eq!((logs.refused_items, logs.failed_items), (0, 0));
    assert_exactly_once(&logs, &read_sequence_numbers(&collector.wal).await);
    eprintln!(
        "http logs: {} records in {:?}, {:.0} records/s",
        logs.acknowledged_items, logs.elapsed, logs.acknowledged_per_sec
    );

    let metrics = loadgen::run(
        config(&collector.http, Protocol::Http, SignalKind::Metrics, 1000),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(metrics.acknowledged_items, 1000);
    assert_exactly_once(&metrics, &read_sequence_numbers(&collector.wal).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_and_retried_until_a_reader_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    // Room for a few batches of 100 spans (~60 KB each) only.
    let collector = collector(dir.path(), Some(256 * 1024)).await;
    let wal = Arc::clone(&collector.wal);
    // A slow sink: starts reading after a second, then commits what it read.
    let drain = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut reader = wal.reader("test").unwrap();
        let mut seen: HashMap<u64, u32> = HashMap::new();
        loop {
            let record = match tokio::time::timeout(Duration::from_secs(3), reader.next()).await {
                Ok(record) => record.unwrap(),
                Err(_) => return seen,
            };
            let request = ExportTraceServiceRequest::decode(record.payload).unwrap();
            for span in request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
            {
                *seen.entry(seq_of(&span.attributes)).or_insert(0) += 1;
            }
            reader.commit(record.lsn).await.unwrap();
        }
    });
    let config = LoadgenConfig {
        batch_size: 100,
        concurrency: 2,
        ..config(&collector.grpc, Protocol::Grpc, SignalKind::Traces, 2000)
    };
    let mut progress_calls = 0;
    let report = loadgen::run(config, |_| progress_calls += 1).await.unwrap();
    assert!(report.refused_items > 0, "{report:?}");
    assert_eq!(report.acknowledged_items, 2000, "{report:?}");
    assert_eq!(report.failed_items, 0);
    assert!(report.requests > 20, "resends are requests: {report:?}");
    assert!(progress_calls >= 1);
    eprintln!("refusals: {report:?}");
    let seen = drain.await.unwrap();
    assert_exactly_once(&report, &seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refusals_honour_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let collector = collector(dir.path(), Some(128 * 1024)).await;
    // Nobody reads: the log fills and stays full; the run ends at its duration.
    let config = LoadgenConfig {
        batch_size: 100,
        concurrency: 2,
        duration: Duration::from_secs(2),
        ..LoadgenConfig::new(&collector.http, Protocol::Http, SignalKind::Logs)
    };
    let report = loadgen::run(config, |_| {}).await.unwrap();
    assert!(report.refused_items > 0, "{report:?}");
    assert_eq!(report.failed_items, 0);
    // Retry-After is 1 s (at least): each of the 2 slots resends at most about twice.
    assert!(report.requests < 20, "{report:?}");
    assert_exactly_once(&report, &read_sequence_numbers(&collector.wal).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let collector = collector(dir.path(), None).await;
    let config = LoadgenConfig {
        rate: Some(2000),
        duration: Duration::from_secs(1),
        ..LoadgenConfig::new(&collector.grpc, Protocol::Grpc, SignalKind::Traces)
    };
    let report = loadgen::run(config, |_| {}).await.unwrap();
    assert!(
        (1600..=2400).contains(&report.sent_items),
        "sent {} items",
        report.sent_items
    );
    assert_eq!(report.acknowledged_items, report.sent_items);
}
