//! The collector end to end on real sockets: OTLP over HTTP and gRPC in, through the
//! write-ahead log and the redact transform, out as Prometheus series and the collector's own
//! metrics on `/metrics`; a clean stop.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::free_ports;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use telemetry::collector::{CollectorSettings, run};
use telemetry::config::PipelineConfig;

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn counter(name: &str, value: i64, labels: Vec<KeyValue>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    string("service.name", "fertivision-api"),
                    string("service.instance.id", "api-1"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    description: "requests".into(),
                    unit: "1".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            attributes: labels,
                            start_time_unix_nano: 1,
                            time_unix_nano: 2,
                            value: Some(number_data_point::Value::AsInt(value)),
                            ..Default::default()
                        }],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn scrape(query: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(query).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn otlp_in_prometheus_out_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let [grpc, http, query] = free_ports::<3>();
    let pipeline = PipelineConfig::from_toml_str(&format!(
        r#"
        [sources.otlp_grpc]
        type = "otlp_grpc"
        address = "{grpc}"
        [sources.otlp_http]
        type = "otlp_http"
        address = "{http}"
        [transforms.phi]
        type = "redact"
        inputs = ["otlp_grpc", "otlp_http"]
        [sinks.metrics]
        type = "prometheus"
        inputs = ["phi"]
        [sinks.devnull]
        type = "blackhole"
        inputs = ["otlp_grpc", "otlp_http"]
        "#
    ))
    .unwrap();
    let settings = CollectorSettings {
        pipeline,
        data_dir: dir.path().to_path_buf(),
        wal_max_bytes: 64 * 1024 * 1024,
        fsync: true,
        query_listen: query,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(run(settings, async move {
        let _ = stop_rx.await;
    }));

    // OTLP/HTTP, protobuf: a counter whose label carries an email by mistake.
    let client = reqwest_free_post(http);
    let body = counter(
        "fertivision.test.requests",
        5,
        vec![
            string("route", "/api/v1/patients"),
            string("contact", "ana@example.org"),
        ],
    );
    let status = client(body.encode_to_vec()).await;
    assert_eq!(status, 200);

    // OTLP/gRPC through the generated client.
    let mut grpc_client = loop {
        if let Ok(c) = MetricsServiceClient::connect(format!("http://{grpc}")).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    grpc_client
        .export(counter("fertivision.grpc.requests", 7, vec![]))
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(query).await;
        if text.contains("fertivision_grpc_requests_total")
            && text.contains("fertivision_test_requests_total")
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "series never appeared:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let line = text
        .lines()
        .find(|l| l.starts_with("fertivision_test_requests_total{"))
        .unwrap();
    assert!(
        line.contains(r#"job="fertivision-api""#) && line.contains(r#"instance="api-1""#),
        "{line}"
    );
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(value, 5.0, "{line}");
    assert!(
        !text.contains("ana@example.org"),
        "the redact transform ran before the sink:\n{line}"
    );
    assert!(text.contains("[REDACTED:email]"), "{line}");
    assert!(
        text.contains(r#"collector_accepted_items_total{signal="metrics"} 2"#),
        "{text}"
    );
    assert!(text.contains("collector_wal_bytes"), "{text}");
    assert!(
        text.contains(r#"collector_sink_batches_total{sink="devnull"}"#),
        "{text}"
    );

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), collector)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A minimal OTLP/HTTP client over a raw socket (protobuf body).
fn reqwest_free_post(
    http: SocketAddr,
) -> impl Fn(Vec<u8>) -> std::pin::Pin<Box<dyn Future<Output = u16>>> {
    move |body: Vec<u8>| {
        Box::pin(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = loop {
                if let Ok(s) = tokio::net::TcpStream::connect(http).await {
                    break s;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let head = format!(
                "POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(&body).await.unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            String::from_utf8_lossy(&response[9..12]).parse().unwrap()
        })
    }
}
