//! The OTLP receivers over a real write-ahead log in a temp dir: what they accept reaches the
//! log; what they refuse gets the answer the OTLP specification prescribes.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use telemetry::ingest::{Ingest, IngestLimits};
use telemetry::sources::otlp_grpc::OtlpGrpc;
use telemetry::sources::otlp_http::{self, HttpLimits, RpcStatus};
use telemetry::wal::{Signal, Wal, WalConfig};
use tower::ServiceExt;

async fn wal(dir: &std::path::Path, max_bytes: u64) -> Arc<Wal> {
    Arc::new(
        Wal::open(WalConfig {
            dir: dir.to_path_buf(),
            segment_bytes: 1024 * 1024,
            max_bytes,
            max_record_bytes: 4 * 1024 * 1024,
            fsync: true,
            sinks: vec!["test".to_owned()],
            ..WalConfig::new(dir)
        })
        .await
        .unwrap(),
    )
}

fn attribute(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn span(name: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![7; 16],
        span_id: vec![9; 8],
        name: name.to_owned(),
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes,
        ..Default::default()
    }
}

fn traces(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn post(
    router: &axum::Router,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, content_type);
    if let Some(encoding) = encoding {
        request = request.header(header::CONTENT_ENCODING, encoding);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, bytes)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn http_accepts_protobuf_json_and_gzip_and_the_log_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let wal = wal(dir.path(), 64 * 1024 * 1024).await;
    let ingest = Ingest::new(
        Arc::clone(&wal),
        IngestLimits::default(),
        Default::default(),
    );
    let router = otlp_http::router(ingest.clone(), HttpLimits::default());

    let request = traces(vec![span("protobuf", vec![])]);
    let (status, _, body) = post(
        &router,
        "/v1/traces",
        "application/x-protobuf",
        None,
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ExportTraceServiceResponse::decode(body.as_slice())
            .unwrap()
            .partial_success,
        None
    );

    let json = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
        "name": "json", "startTimeUnixNano": "1", "endTimeUnixNano": "2", "kind": 2
    }]}]}]});
    let (status, _, body) = post(
        &router,
        "/v1/traces",
        "application/json",
        None,
        json.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

    let request = traces(vec![span("gzip", vec![])]);
    let (status, _, _) = post(
        &router,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        gzip(&request.encode_to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("hello".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, _, _) = post(
        &router,
        "/v1/logs",
        "application/x-protobuf",
        None,
        logs.encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let mut reader = wal.reader("test").unwrap();
    let mut names = Vec::new();
    let mut signals = Vec::new();
    while let Some(record) = reader.try_next().await.unwrap() {
        signals.push(record.signal);
        if record.signal == Signal::Traces {
            let decoded = ExportTraceServiceRequest::decode(record.payload).unwrap();
            names.push(
                decoded.resource_spans[0].scope_spans[0].spans[0]
                    .name
                    .clone(),
            );
        }
    }
    assert_eq!(names, ["protobuf", "json", "gzip"]);
    assert_eq!(signals.last(), Some(&Signal::Logs));
    let json_trace_id = {
        let mut reader = wal.reader("test").unwrap();
        reader.try_next().await.unwrap();
        let record = reader.try_next().await.unwrap().unwrap();
        ExportTraceServiceRequest::decode(record.payload)
            .unwrap()
            .resource_spans[0]
            .scope_spans[0]
            .spans[0]
            .trace_id
            .clone()
    };
    assert_eq!(
        json_trace_id,
        vec![
            0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80,
            0x31, 0x9c
        ],
        "hex ids in JSON"
    );
    assert_eq!(ingest.accepted_items(Signal::Traces), 3);
}

#[tokio::test]
async fn http_refuses_bad_input_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let wal = wal(dir.path(), 64 * 1024 * 1024).await;
    let ingest = Ingest::new(
        Arc::clone(&wal),
        IngestLimits {
            max_attributes: 4,
            max_value_bytes: 64,
            ..IngestLimits::default()
        },
        Default::default(),
    );
    let limits = HttpLimits {
        max_body_bytes: 64 * 1024,
        max_decoded_bytes: 256 * 1024,
    };
    let router = otlp_http::router(ingest, limits);

    let (status, _, body) = post(
        &router,
        "/v1/traces",
        "application/x-protobuf",
        None,
        vec![0xff, 0xff, 0xff],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        RpcStatus::decode(body.as_slice())
            .unwrap()
            .message
            .contains("not a valid OTLP")
    );

    let (status, _, body) = post(
        &router,
        "/v1/traces",
        "application/json",
        None,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("not a valid OTLP"));

    let (status, _, _) = post(&router, "/v1/traces", "text/plain", None, b"x".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (status, _, _) = post(
        &router,
        "/v1/traces",
        "application/x-protobuf",
        None,
        vec![0; 65 * 1024],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // A compression bomb: small on the wire, over the limit inflated.
    let (status, _, _) = post(
        &router,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        gzip(&vec![0; 1024 * 1024]),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, _) = post(
        &router,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Absurd attributes: those spans are rejected, the rest accepted (partial success).
    let many = (0..10)
        .map(|i| attribute(&format!("k{i}"), "v".into()))
        .collect();
    let huge = vec![attribute("big", "x".repeat(1000))];
    let request = traces(vec![
        span("ok", vec![]),
        span("many", many),
        span("huge", huge),
    ]);
    let (status, _, body) = post(
        &router,
        "/v1/traces",
        "application/x-protobuf",
        None,
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let partial = ExportTraceServiceResponse::decode(body.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("more than 4 attributes"),
        "{}",
        partial.error_message
    );
    let mut reader = wal.reader("test").unwrap();
    let record = reader.try_next().await.unwrap().unwrap();
    let kept = ExportTraceServiceRequest::decode(record.payload).unwrap();
    assert_eq!(kept.resource_spans[0].scope_spans[0].spans.len(), 1);
    assert!(reader.try_next().await.unwrap().is_none());
}

#[tokio::test]
async fn a_full_log_refuses_with_retry_information_on_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let wal = wal(dir.path(), 4 * 1024).await;
    let ingest = Ingest::new(
        Arc::clone(&wal),
        IngestLimits::default(),
        Default::default(),
    );
    let router = otlp_http::router(ingest.clone(), HttpLimits::default());
    let request = traces(vec![span(
        "filler",
        vec![attribute("pad", "p".repeat(1500))],
    )]);
    let mut refused = None;
    for _ in 0..20 {
        let (status, headers, _) = post(
            &router,
            "/v1/traces",
            "application/x-protobuf",
            None,
            request.encode_to_vec(),
        )
        .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(headers);
            break;
        }
        assert_eq!(status, StatusCode::OK);
    }
    let headers = refused.expect("the log filled up and the receiver pushed back");
    assert!(headers.contains_key(header::RETRY_AFTER));

    // gRPC, through the generated client over a real socket.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let routes = OtlpGrpc::new(ingest).router();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let mut client = connect(address).await;
    let status = client.export(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    use tonic_types::StatusExt;
    let retry = status.get_details_retry_info().expect("RetryInfo detail");
    assert!(retry.retry_delay.is_some_and(|d| d > Duration::ZERO));
}

#[tokio::test]
async fn grpc_accepts_traces_and_reports_partial_success() {
    let dir = tempfile::tempdir().unwrap();
    let wal = wal(dir.path(), 64 * 1024 * 1024).await;
    let ingest = Ingest::new(
        Arc::clone(&wal),
        IngestLimits {
            max_attributes: 2,
            max_value_bytes: 1024,
            ..IngestLimits::default()
        },
        Default::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let routes = OtlpGrpc::new(ingest).router();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let mut client = connect(address).await;
    let many = (0..3)
        .map(|i| attribute(&format!("k{i}"), "v".into()))
        .collect();
    let response = client
        .export(traces(vec![span("grpc", vec![]), span("too-many", many)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.partial_success.unwrap().rejected_spans, 1);
    let mut reader = wal.reader("test").unwrap();
    let record = reader.try_next().await.unwrap().unwrap();
    assert_eq!(
        ExportTraceServiceRequest::decode(record.payload)
            .unwrap()
            .resource_spans[0]
            .scope_spans[0]
            .spans[0]
            .name,
        "grpc"
    );
}

async fn connect(address: std::net::SocketAddr) -> TraceServiceClient<tonic::transport::Channel> {
    for _ in 0..50 {
        if let Ok(client) = TraceServiceClient::connect(format!("http://{address}")).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gRPC server did not start");
}

#[tokio::test]
async fn requests_past_the_in_flight_limit_are_refused_before_their_bodies_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let wal = wal(dir.path(), 64 * 1024 * 1024).await;
    let metrics = Arc::new(telemetry::metrics::CollectorMetrics::default());
    let ingest = Ingest::new(
        Arc::clone(&wal),
        IngestLimits {
            max_in_flight: 1,
            ..IngestLimits::default()
        },
        Arc::clone(&metrics),
    );
    let router = otlp_http::router(ingest.clone(), HttpLimits::default());
    // The one place, taken by a request whose body never finishes arriving.
    let stalled = Request::post("/v1/logs")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Body::from_stream(futures_util::stream::pending::<
            Result<axum::body::Bytes, std::io::Error>,
        >()))
        .unwrap();
    let stalled = tokio::spawn(router.clone().oneshot(stalled));
    // One thread: let the stalled request run until it waits for its body.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut answer = None;
    for _ in 0..100 {
        let (status, headers, body) = post(
            &router,
            "/v1/logs",
            "application/x-protobuf",
            None,
            logs.encode_to_vec(),
        )
        .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            answer = Some((headers, body));
            break;
        }
        assert!(!stalled.is_finished(), "{:?}", stalled.await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (headers, body) = answer.expect("refused while the place is taken");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    let status = RpcStatus::decode(body.as_slice()).unwrap();
    assert_eq!(status.code, 8, "RESOURCE_EXHAUSTED");

    // gRPC shares the limit.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let routes = OtlpGrpc::new(ingest.clone()).router();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let mut client = connect(address).await;
    let request = traces(vec![span("one", Vec::new())]);
    let status = client.export(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    use tonic_types::StatusExt;
    let retry = status.get_details_retry_info().expect("RetryInfo detail");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));

    // Once the stalled request is gone, the place is free again.
    stalled.abort();
    let _ = stalled.await;
    client.export(request).await.expect("admitted again");
    let mut text = String::new();
    let mut registry = prometheus_client::registry::Registry::with_prefix("collector");
    metrics.register(&mut registry);
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"collector_refused_requests_total{signal="logs",reason="busy"} 1"#)
            && text
                .contains(r#"collector_refused_requests_total{signal="traces",reason="busy"} 1"#),
        "{text}"
    );
}
