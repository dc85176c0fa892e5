//! The official OpenTelemetry Rust SDK (`opentelemetry_sdk` + `opentelemetry-otlp`) sends
//! traces, metrics and logs to the collector over OTLP/gRPC and over OTLP/HTTP (protobuf);
//! they arrive: accepted per signal, written by the blackhole sink, and the counter exposed by
//! the Prometheus sink under `job="<service.name>"`.

#[path = "sdk/harness.rs"]
mod harness;

use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider, Severity};
use opentelemetry::metrics::MeterProvider;
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use opentelemetry_otlp::{LogExporter, MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use harness::Collector;

const SPANS: usize = 3;
const LOGS: usize = 4;

#[derive(Debug, Clone, Copy)]
enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// Builds the three providers with OTLP exporters for `protocol`, emits spans, a counter, a
/// histogram and log records, then flushes and shuts every provider down. Blocking: the SDK's
/// batch processors and periodic reader run on their own threads.
fn send(protocol: Protocol, collector_grpc: String, collector_http: String, service: &str) {
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .with_attribute(KeyValue::new(
            "service.instance.id",
            format!("rust-{}", protocol.name()),
        ))
        .build();
    let (spans, metrics, logs) = match protocol {
        Protocol::Grpc => (
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&collector_grpc)
                .build()
                .unwrap(),
            MetricExporter::builder()
                .with_tonic()
                .with_endpoint(&collector_grpc)
                .build()
                .unwrap(),
            LogExporter::builder()
                .with_tonic()
                .with_endpoint(&collector_grpc)
                .build()
                .unwrap(),
        ),
        Protocol::Http => (
            SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{collector_http}/v1/traces"))
                .build()
                .unwrap(),
            MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{collector_http}/v1/metrics"))
                .build()
                .unwrap(),
            LogExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{collector_http}/v1/logs"))
                .build()
                .unwrap(),
        ),
    };

    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_batch_exporter(spans)
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_resource(resource.clone())
        .with_periodic_exporter(metrics)
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(logs)
        .build();

    let tracer = tracer_provider.tracer("sdk-rust-test");
    for i in 0..SPANS {
        let mut span = tracer.start(format!("rust-span-{i}"));
        span.set_attribute(KeyValue::new("protocol", protocol.name()));
        span.end();
    }

    let meter = meter_provider.meter("sdk-rust-test");
    let counter = meter
        .u64_counter("sdk_rust_requests")
        .with_description("requests")
        .build();
    counter.add(3, &[KeyValue::new("protocol", protocol.name())]);
    let histogram = meter
        .f64_histogram("sdk_rust_latency")
        .with_unit("ms")
        .build();
    for value in [1.0, 5.0, 20.0] {
        histogram.record(value, &[KeyValue::new("protocol", protocol.name())]);
    }

    let logger = logger_provider.logger("sdk-rust-test");
    for i in 0..LOGS {
        let mut record = logger.create_log_record();
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        record.set_body(AnyValue::from(format!(
            "rust sdk log {i} over {}",
            protocol.name()
        )));
        record.add_attribute("protocol", protocol.name());
        logger.emit(record);
    }

    let what = protocol.name();
    tracer_provider
        .force_flush()
        .unwrap_or_else(|e| panic!("{what}: traces flush: {e}"));
    meter_provider
        .force_flush()
        .unwrap_or_else(|e| panic!("{what}: metrics flush: {e}"));
    logger_provider
        .force_flush()
        .unwrap_or_else(|e| panic!("{what}: logs flush: {e}"));
    tracer_provider
        .shutdown()
        .unwrap_or_else(|e| panic!("{what}: traces shutdown: {e}"));
    meter_provider
        .shutdown()
        .unwrap_or_else(|e| panic!("{what}: metrics shutdown: {e}"));
    logger_provider
        .shutdown()
        .unwrap_or_else(|e| panic!("{what}: logs shutdown: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_sends_traces_metrics_and_logs_over_grpc_and_http() {
    let collector = Collector::start().await;
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let service = format!("rust-sdk-{}", protocol.name());
        let before = collector.counts().await;
        let (grpc, http) = (
            format!("http://{}", collector.grpc),
            format!("http://{}", collector.http),
        );
        let sender = service.clone();
        // The exporters block (and the gRPC one needs this runtime's context): a blocking
        // thread of the runtime, so the collector keeps running on the workers.
        tokio::task::spawn_blocking(move || send(protocol, grpc, http, &sender))
            .await
            .unwrap();
        let line = collector
            .expect(
                protocol.name(),
                before,
                // Two data points (the counter and the histogram) at least: the flush and the
                // shutdown may each export them.
                (SPANS as f64, 2.0, LOGS as f64),
                "sdk_rust_requests_total",
                &service,
            )
            .await;
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(value, 3.0, "{line}");
        assert!(
            line.contains(&format!(r#"protocol="{}""#, protocol.name())),
            "{line}"
        );
    }
    collector.stop().await;
}
