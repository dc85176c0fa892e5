//! The `otlp` sink against real tonic servers on 127.0.0.1: what it forwards arrives in the
//! downstream collector's log; refusals, timeouts and a closed port give the retryable or
//! non-retryable errors the OTLP specification prescribes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use telemetry::batch::{Batch, Profile};
use telemetry::ingest::{Ingest, IngestLimits};
use telemetry::sinks::Sink;
use telemetry::sinks::otlp::OtlpSink;
use telemetry::sources::otlp_grpc::OtlpGrpc;
use telemetry::wal::{Wal, WalConfig};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn wal(dir: &std::path::Path) -> Arc<Wal> {
    Arc::new(
        Wal::open(WalConfig {
            dir: dir.to_path_buf(),
            segment_bytes: 1024 * 1024,
            max_bytes: 64 * 1024 * 1024,
            max_record_bytes: 4 * 1024 * 1024,
            fsync: false,
            sinks: vec!["test".to_owned()],
            ..WalConfig::new(dir)
        })
        .await
        .unwrap(),
    )
}

fn traces(names: &[&str]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: names
                    .iter()
                    .map(|name| Span {
                        trace_id: vec![7; 16],
                        span_id: vec![9; 8],
                        name: (*name).to_owned(),
                        start_time_unix_nano: 1,
                        end_time_unix_nano: 2,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics() -> ExportMetricsServiceRequest {
    let point = |v: f64| NumberDataPoint {
        time_unix_nano: 5,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "temperature".to_owned(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![point(36.6), point(37.0)],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs() -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 3,
                    severity_text: "INFO".to_owned(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The listener as the stream of connections tonic serves.
fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

/// Serves `routes` on 127.0.0.1; returns `http://address`.
async fn serve(routes: tonic::service::Routes) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(incoming(listener))
            .await
            .unwrap();
    });
    format!("http://{address}")
}

/// A trace service answering whatever `reply` says, after `delay`.
#[derive(Clone)]
struct Scripted {
    reply: Arc<dyn Fn() -> Result<ExportTraceServiceResponse, Status> + Send + Sync>,
    delay: Duration,
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl TraceService for Scripted {
    async fn export(
        &self,
        _request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        (self.reply)().map(Response::new)
    }
}

async fn scripted(
    delay: Duration,
    reply: impl Fn() -> Result<ExportTraceServiceResponse, Status> + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let service = Scripted {
        reply: Arc::new(reply),
        delay,
        calls: Arc::clone(&calls),
    };
    let endpoint = serve(tonic::service::Routes::new(TraceServiceServer::new(
        service,
    )))
    .await;
    (endpoint, calls)
}

#[tokio::test]
async fn traces_metrics_and_logs_arrive_in_the_downstream_log() {
    let dir = tempfile::tempdir().unwrap();
    let wal = wal(dir.path()).await;
    let ingest = Ingest::new(
        Arc::clone(&wal),
        IngestLimits::default(),
        Default::default(),
    );
    let endpoint = serve(OtlpGrpc::new(ingest).router()).await;

    let plain = OtlpSink::new(&endpoint, TIMEOUT).unwrap();
    let mut gzip = OtlpSink::new(&endpoint, TIMEOUT).unwrap().with_gzip(true);
    assert_eq!(plain.endpoint(), endpoint);
    let mut plain_sink = plain.clone();

    let sent = vec![
        Batch::Traces(traces(&["a", "b", "c"])),
        Batch::Metrics(metrics()),
        Batch::Logs(logs()),
        Batch::Traces(traces(&["gzipped"])),
    ];
    plain_sink.write(sent[0].clone()).await.unwrap();
    plain_sink.write(sent[1].clone()).await.unwrap();
    plain_sink.write(sent[2].clone()).await.unwrap();
    gzip.write(sent[3].clone()).await.unwrap();
    // Profiles are not forwarded, and not an error.
    plain_sink
        .write(Batch::Profile(Profile {
            service: "api".to_owned(),
            labels: vec![],
            from: 1,
            until: 2,
            pprof: Bytes::from_static(b"pprof"),
        }))
        .await
        .unwrap();

    let mut reader = wal.reader("test").unwrap();
    for expected in &sent {
        let record = tokio::time::timeout(TIMEOUT, reader.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&Batch::decode(&record).unwrap(), expected);
    }
    assert!(reader.try_next().await.unwrap().is_none());

    let counts = plain.counts();
    assert_eq!(counts.batches.load(Ordering::Relaxed), 3);
    assert_eq!(counts.items.load(Ordering::Relaxed), 3 + 2 + 1);
    assert_eq!(counts.skipped_profiles.load(Ordering::Relaxed), 1);
    assert_eq!(counts.retryable_failures.load(Ordering::Relaxed), 0);
    assert_eq!(counts.dropped_batches.load(Ordering::Relaxed), 0);
    assert_eq!(gzip.counts().items.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn resource_exhausted_waits_its_retry_info_then_is_retryable() {
    let (endpoint, calls) = scripted(Duration::ZERO, || {
        Err(Status::with_error_details(
            Code::ResourceExhausted,
            "at capacity",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(600))),
        ))
    })
    .await;
    let mut sink = OtlpSink::new(&endpoint, TIMEOUT).unwrap();
    let started = Instant::now();
    let error = sink.write(Batch::Traces(traces(&["x"]))).await.unwrap_err();
    let waited = started.elapsed();
    assert!(error.retryable, "{error}");
    assert!(error.message.contains("ResourceExhausted"), "{error}");
    assert!(waited >= Duration::from_millis(600), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(sink.counts().retryable_failures.load(Ordering::Relaxed), 1);
    assert_eq!(sink.counts().dropped_batches.load(Ordering::Relaxed), 0);

    // The wait is capped.
    let mut capped = OtlpSink::new(&endpoint, TIMEOUT)
        .unwrap()
        .with_max_retry_wait(Duration::from_millis(50));
    let started = Instant::now();
    assert!(
        capped
            .write(Batch::Traces(traces(&["x"])))
            .await
            .unwrap_err()
            .retryable
    );
    assert!(started.elapsed() < Duration::from_millis(550));
}

#[tokio::test]
async fn unavailable_is_retryable_without_waiting() {
    let (endpoint, _) = scripted(Duration::ZERO, || Err(Status::unavailable("restarting"))).await;
    let mut sink = OtlpSink::new(&endpoint, TIMEOUT).unwrap();
    let error = sink.write(Batch::Traces(traces(&["x"]))).await.unwrap_err();
    assert!(error.retryable, "{error}");
}

#[tokio::test]
async fn a_closed_port_is_retryable_quickly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let mut sink = OtlpSink::new(&format!("http://{address}"), TIMEOUT).unwrap();
    let started = Instant::now();
    let error = sink.write(Batch::Logs(logs())).await.unwrap_err();
    assert!(error.retryable, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sink.counts().retryable_failures.load(Ordering::Relaxed), 1);
    assert_eq!(sink.counts().batches.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_slow_downstream_times_out_retryably() {
    let (endpoint, _) = scripted(Duration::from_secs(10), || {
        Ok(ExportTraceServiceResponse::default())
    })
    .await;
    let mut sink = OtlpSink::new(&endpoint, Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    let error = sink.write(Batch::Traces(traces(&["x"]))).await.unwrap_err();
    assert!(error.retryable, "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn invalid_argument_is_not_retryable_and_counted_as_dropped() {
    let (endpoint, _) = scripted(Duration::ZERO, || {
        Err(Status::invalid_argument("malformed span"))
    })
    .await;
    let mut sink = OtlpSink::new(&endpoint, TIMEOUT).unwrap();
    let error = sink
        .write(Batch::Traces(traces(&["x", "y"])))
        .await
        .unwrap_err();
    assert!(!error.retryable, "{error}");
    assert!(error.message.contains("malformed span"), "{error}");
    let counts = sink.counts();
    assert_eq!(counts.dropped_batches.load(Ordering::Relaxed), 1);
    assert_eq!(counts.dropped_items.load(Ordering::Relaxed), 2);
    assert_eq!(counts.retryable_failures.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn an_unimplemented_signal_is_not_retryable() {
    // The scripted downstream serves traces only: metrics get UNIMPLEMENTED.
    let (endpoint, _) = scripted(Duration::ZERO, || Ok(Default::default())).await;
    let mut sink = OtlpSink::new(&endpoint, TIMEOUT).unwrap();
    let error = sink.write(Batch::Metrics(metrics())).await.unwrap_err();
    assert!(!error.retryable, "{error}");
}

#[tokio::test]
async fn a_partial_success_is_counted_not_retried() {
    let (endpoint, calls) = scripted(Duration::ZERO, || {
        Ok(ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 2,
                error_message: "two spans too large".to_owned(),
            }),
        })
    })
    .await;
    let mut sink = OtlpSink::new(&endpoint, TIMEOUT).unwrap();
    sink.write(Batch::Traces(traces(&["a", "b", "c"])))
        .await
        .unwrap();
    let counts = sink.counts();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(counts.batches.load(Ordering::Relaxed), 1);
    assert_eq!(counts.items.load(Ordering::Relaxed), 1);
    assert_eq!(counts.rejected_items.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn bad_endpoints_are_refused() {
    for endpoint in ["localhost:4317", "ftp://x:1", "http://x:1/v1/traces", ""] {
        assert!(OtlpSink::new(endpoint, TIMEOUT).is_err(), "{endpoint}");
    }
    assert!(OtlpSink::new("http://127.0.0.1:4317", Duration::ZERO).is_err());
}

#[test]
fn outside_a_runtime_the_constructor_errs_instead_of_panicking() {
    assert!(OtlpSink::new("http://127.0.0.1:4317", TIMEOUT).is_err());
}
