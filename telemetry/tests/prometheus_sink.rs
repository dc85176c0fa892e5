//! The Prometheus sink end to end: OTLP export requests built by hand go in through the
//! `Sink` trait, the exposition text comes out and is checked line by line (and, in the
//! Prometheus text format, by `promtool check metrics`).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exemplar, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use telemetry::batch::Batch;
use telemetry::sinks::Sink;
use telemetry::sinks::prometheus::{
    DropReason, Exposition, ExpositionFormat, ManualClock, PrometheusSink, PrometheusSinkConfig,
};

const CUMULATIVE: AggregationTemporality = AggregationTemporality::Cumulative;
const DELTA: AggregationTemporality = AggregationTemporality::Delta;
const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const TRACE_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const SPAN_HEX: &str = "00f067aa0ba902b7";
/// 2023-11-14T22:13:20Z, in nanoseconds.
const T0: u64 = 1_700_000_000_000_000_000;
const SECOND: u64 = 1_000_000_000;

// ---- building OTLP by hand ----

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn i(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// The API's resource: job `fertivision/api`, instance `api-1`, and a host attribute that
/// belongs in `target_info`, not on the series.
fn api_resource() -> Vec<KeyValue> {
    vec![
        s("service.name", "api"),
        s("service.namespace", "fertivision"),
        s("service.instance.id", "api-1"),
        s("host.name", "node-7"),
    ]
}

fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric(name: &str, unit: &str, description: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: description.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn number(attributes: Vec<KeyValue>, start: u64, time: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn int_number(attributes: Vec<KeyValue>, start: u64, time: u64, value: i64) -> NumberDataPoint {
    NumberDataPoint {
        value: Some(number_data_point::Value::AsInt(value)),
        ..number(attributes, start, time, 0.0)
    }
}

fn sum(monotonic: bool, temporality: AggregationTemporality, points: Vec<NumberDataPoint>) -> Data {
    Data::Sum(Sum {
        data_points: points,
        aggregation_temporality: temporality as i32,
        is_monotonic: monotonic,
    })
}

fn gauge(points: Vec<NumberDataPoint>) -> Data {
    Data::Gauge(Gauge {
        data_points: points,
    })
}

fn exemplar(value: f64, time: u64) -> Exemplar {
    Exemplar {
        time_unix_nano: time,
        trace_id: TRACE_ID.to_vec(),
        span_id: SPAN_ID.to_vec(),
        value: Some(exemplar::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn histogram_point(
    attributes: Vec<KeyValue>,
    start: u64,
    time: u64,
    bounds: &[f64],
    counts: &[u64],
    sum: f64,
) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: counts.iter().sum(),
        sum: Some(sum),
        bucket_counts: counts.to_vec(),
        explicit_bounds: bounds.to_vec(),
        ..Default::default()
    }
}

fn histogram(temporality: AggregationTemporality, points: Vec<HistogramDataPoint>) -> Data {
    Data::Histogram(Histogram {
        data_points: points,
        aggregation_temporality: temporality as i32,
    })
}

// ---- running the sink ----

fn config() -> PrometheusSinkConfig {
    PrometheusSinkConfig {
        stale_after_secs: 60,
        ..PrometheusSinkConfig::default()
    }
}

fn sink_with(config: PrometheusSinkConfig) -> (PrometheusSink, Exposition, ManualClock) {
    let clock = ManualClock::new();
    let sink = PrometheusSink::with_clock(&config, Arc::new(clock.clone())).expect("valid config");
    let exposition = sink.exposition();
    (sink, exposition, clock)
}

async fn write(sink: &mut PrometheusSink, request: ExportMetricsServiceRequest) {
    sink.write(Batch::Metrics(request))
        .await
        .expect("the sink accepts metrics");
}

/// The OTLP families of a render, without the sink's own metrics.
fn series_text(exposition: &Exposition, format: ExpositionFormat) -> String {
    let mut out = String::new();
    exposition.encode_series(&mut out, format);
    out
}

#[track_caller]
fn assert_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "line\n  {line}\nnot in:\n{text}"
    );
}

#[track_caller]
fn assert_no_line_starting(text: &str, prefix: &str) {
    assert!(
        !text.lines().any(|l| l.starts_with(prefix)),
        "a line starting {prefix:?} in:\n{text}"
    );
}

/// `block` appears in `text` as consecutive lines.
#[track_caller]
fn assert_block(text: &str, block: &[&str]) {
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.windows(block.len()).any(|w| w == block),
        "block\n  {}\nnot in:\n{text}",
        block.join("\n  ")
    );
}

const JOB: &str = r#"job="fertivision/api",instance="api-1""#;

// ---- the tests ----

#[tokio::test]
async fn counter_gets_total_unit_help_and_job_instance_labels() {
    let (mut sink, exposition, _clock) = sink_with(config());
    let points = vec![
        int_number(
            vec![
                s("http.request.method", "GET"),
                i("http.response.status_code", 200),
            ],
            T0,
            T0 + 10 * SECOND,
            41,
        ),
        int_number(
            vec![
                s("http.request.method", "POST"),
                i("http.response.status_code", 201),
            ],
            T0,
            T0 + 10 * SECOND,
            2,
        ),
    ];
    write(
        &mut sink,
        request(
            api_resource(),
            vec![metric(
                "network.io",
                "By",
                "Bytes \"moved\"",
                sum(true, CUMULATIVE, points),
            )],
        ),
    )
    .await;

    let text = exposition.render();
    assert_block(
        &text,
        &[
            r#"# HELP network_io_bytes Bytes \"moved\""#,
            "# TYPE network_io_bytes counter",
            "# UNIT network_io_bytes bytes",
            r#"network_io_bytes_total{job="fertivision/api",instance="api-1",http_request_method="GET",http_response_status_code="200"} 41.0"#,
            r#"network_io_bytes_total{job="fertivision/api",instance="api-1",http_request_method="POST",http_response_status_code="201"} 2.0"#,
        ],
    );
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(
        exposition.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    // Resource attributes other than service.* are not series labels.
    assert_no_line_starting(
        &text,
        "network_io_bytes_total{job=\"fertivision/api\",instance=\"api-1\",host",
    );
    let stats = exposition.stats();
    assert_eq!(
        (stats.batches, stats.data_points_written, stats.series),
        (1, 2, 3),
        "two series plus target_info"
    );
}

#[tokio::test]
async fn gauges_and_non_monotonic_sums_are_gauges() {
    let (mut sink, exposition, _clock) = sink_with(config());
    let metrics = vec![
        metric(
            "process.cpu.utilization",
            "1",
            "",
            gauge(vec![number(vec![], 0, T0, 0.25)]),
        ),
        metric(
            "http.server.active_requests",
            "{request}",
            "Active requests",
            sum(false, CUMULATIVE, vec![int_number(vec![], T0, T0, 3)]),
        ),
        metric(
            "queue.depth",
            "{job}",
            "Jobs waiting",
            sum(false, DELTA, vec![int_number(vec![], T0, T0 + SECOND, 5)]),
        ),
    ];
    write(&mut sink, request(api_resource(), metrics)).await;
    // The up-down counter goes down: a delta of -2.
    let down = metric(
        "queue.depth",
        "{job}",
        "Jobs waiting",
        sum(
            false,
            DELTA,
            vec![int_number(vec![], T0 + SECOND, T0 + 2 * SECOND, -2)],
        ),
    );
    write(&mut sink, request(api_resource(), vec![down])).await;

    let text = series_text(&exposition, ExpositionFormat::OpenMetrics);
    assert_block(
        &text,
        &[
            "# HELP process_cpu_utilization_ratio process.cpu.utilization",
            "# TYPE process_cpu_utilization_ratio gauge",
            "# UNIT process_cpu_utilization_ratio ratio",
            &format!("process_cpu_utilization_ratio{{{JOB}}} 0.25"),
        ],
    );
    assert_block(
        &text,
        &[
            "# HELP http_server_active_requests Active requests",
            "# TYPE http_server_active_requests gauge",
            &format!("http_server_active_requests{{{JOB}}} 3.0"),
        ],
    );
    assert_block(
        &text,
        &[
            "# HELP queue_depth Jobs waiting",
            "# TYPE queue_depth gauge",
            &format!("queue_depth{{{JOB}}} 3.0"),
        ],
    );
    assert_no_line_starting(&text, "http_server_active_requests_total");
}

#[tokio::test]
async fn histogram_has_cumulative_le_buckets_count_sum_and_trace_exemplars() {
    let (mut sink, exposition, _clock) = sink_with(config());
    let mut point = histogram_point(
        vec![s("http.route", "/api/v1/patients")],
        T0,
        T0 + 10 * SECOND,
        &[0.005, 0.1, 1.0],
        &[1, 3, 0, 1],
        2.75,
    );
    point.exemplars = vec![
        exemplar(0.042, T0 + 5 * SECOND + 250_000_000),
        exemplar(2.5, T0 + 6 * SECOND),
    ];
    let duration = metric(
        "http.server.request.duration",
        "s",
        "Duration of HTTP server requests.",
        histogram(CUMULATIVE, vec![point]),
    );
    write(&mut sink, request(api_resource(), vec![duration])).await;

    let name = "http_server_request_duration_seconds";
    let labels = format!(r#"{JOB},http_route="/api/v1/patients""#);
    let text = exposition.render();
    assert_block(
        &text,
        &[
            &format!("# HELP {name} Duration of HTTP server requests."),
            &format!("# TYPE {name} histogram"),
            &format!("# UNIT {name} seconds"),
            &format!(r#"{name}_bucket{{{labels},le="0.005"}} 1"#),
            &format!(
                r#"{name}_bucket{{{labels},le="0.1"}} 4 # {{trace_id="{TRACE_HEX}",span_id="{SPAN_HEX}"}} 0.042 1700000005.250"#
            ),
            &format!(r#"{name}_bucket{{{labels},le="1.0"}} 4"#),
            &format!(
                r#"{name}_bucket{{{labels},le="+Inf"}} 5 # {{trace_id="{TRACE_HEX}",span_id="{SPAN_HEX}"}} 2.5 1700000006.000"#
            ),
            &format!("{name}_count{{{labels}}} 5"),
            &format!("{name}_sum{{{labels}}} 2.75"),
        ],
    );

    // The Prometheus text format has no exemplars and no UNIT line.
    let text = series_text(&exposition, ExpositionFormat::PrometheusText);
    assert_line(&text, &format!(r#"{name}_bucket{{{labels},le="0.1"}} 4"#));
    assert_no_line_starting(&text, "# UNIT");
    assert!(!text.contains("trace_id"), "{text}");
}

#[tokio::test]
async fn delta_sums_and_histograms_accumulate_across_batches() {
    let (mut sink, exposition, _clock) = sink_with(config());
    let batch = |start: u64, end: u64, jobs: i64, counts: &[u64], total: f64| {
        request(
            api_resource(),
            vec![
                metric(
                    "fertivision.jobs.completed",
                    "{job}",
                    "Jobs completed",
                    sum(
                        true,
                        DELTA,
                        vec![int_number(vec![s("queue", "reports")], start, end, jobs)],
                    ),
                ),
                metric(
                    "job.duration",
                    "s",
                    "Job duration",
                    histogram(
                        DELTA,
                        vec![histogram_point(
                            vec![],
                            start,
                            end,
                            &[1.0, 10.0],
                            counts,
                            total,
                        )],
                    ),
                ),
            ],
        )
    };
    write(&mut sink, batch(T0, T0 + 10 * SECOND, 3, &[1, 2, 0], 9.5)).await;
    let first = series_text(&exposition, ExpositionFormat::OpenMetrics);
    assert_line(
        &first,
        &format!(r#"fertivision_jobs_completed_total{{{JOB},queue="reports"}} 3.0"#),
    );

    write(
        &mut sink,
        batch(T0 + 10 * SECOND, T0 + 20 * SECOND, 4, &[0, 1, 1], 20.0),
    )
    .await;
    let text = series_text(&exposition, ExpositionFormat::OpenMetrics);
    assert_line(
        &text,
        &format!(r#"fertivision_jobs_completed_total{{{JOB},queue="reports"}} 7.0"#),
    );
    assert_block(
        &text,
        &[
            &format!(r#"job_duration_seconds_bucket{{{JOB},le="1.0"}} 1"#),
            &format!(r#"job_duration_seconds_bucket{{{JOB},le="10.0"}} 4"#),
            &format!(r#"job_duration_seconds_bucket{{{JOB},le="+Inf"}} 5"#),
            &format!("job_duration_seconds_count{{{JOB}}} 5"),
            &format!("job_duration_seconds_sum{{{JOB}}} 29.5"),
        ],
    );

    // The second batch delivered again (a retry) does not count twice.
    write(
        &mut sink,
        batch(T0 + 10 * SECOND, T0 + 20 * SECOND, 4, &[0, 1, 1], 20.0),
    )
    .await;
    let text = series_text(&exposition, ExpositionFormat::OpenMetrics);
    assert_line(
        &text,
        &format!(r#"fertivision_jobs_completed_total{{{JOB},queue="reports"}} 7.0"#),
    );
    assert_line(&text, &format!("job_duration_seconds_count{{{JOB}}} 5"));
    assert_eq!(exposition.stats().dropped(DropReason::OutOfOrder), 2);
}

#[tokio::test]
async fn cumulative_restart_resets_the_counter() {
    let (mut sink, exposition, _clock) = sink_with(config());
    let counter = |start: u64, time: u64, value: i64| {
        request(
            api_resource(),
            vec![metric(
                "logins",
                "",
                "",
                sum(
                    true,
                    CUMULATIVE,
                    vec![int_number(vec![], start, time, value)],
                ),
            )],
        )
    };
    write(&mut sink, counter(T0, T0 + 10 * SECOND, 100)).await;
    write(&mut sink, counter(T0, T0 + 5 * SECOND, 90)).await;
    assert_line(
        &series_text(&exposition, ExpositionFormat::OpenMetrics),
        &format!("logins_total{{{JOB}}} 100.0"),
    );
    // The process restarted: a new start time, a smaller value.
    write(&mut sink, counter(T0 + 60 * SECOND, T0 + 70 * SECOND, 4)).await;
    assert_line(
        &series_text(&exposition, ExpositionFormat::OpenMetrics),
        &format!("logins_total{{{JOB}}} 4.0"),
    );
    assert_eq!(exposition.stats().dropped(DropReason::OutOfOrder), 1);
}

#[tokio::test]
async fn counter_exemplar_carries_the_trace_and_span_ids() {
    let (mut sink, exposition, _clock) = sink_with(config());
    let mut point = int_number(vec![], T0, T0 + 10 * SECOND, 12);
    let mut older = exemplar(1.0, T0 + SECOND);
    older.trace_id = vec![0x11; 16];
    point.exemplars = vec![exemplar(1.0, T0 + 9 * SECOND), older];
    write(
        &mut sink,
        request(
            api_resource(),
            vec![metric(
                "fertivision.analyses",
                "{analysis}",
                "Analyses run",
                sum(true, CUMULATIVE, vec![point]),
            )],
        ),
    )
    .await;

    let text = exposition.render();
    assert_line(
        &text,
        &format!(
            r#"fertivision_analyses_total{{{JOB}}} 12.0 # {{trace_id="{TRACE_HEX}",span_id="{SPAN_HEX}"}} 1.0 1700000009.000"#
        ),
    );
    // Without a new exemplar the newest one stays; the Prometheus text format drops it.
    write(
        &mut sink,
        request(
            api_resource(),
            vec![metric(
                "fertivision.analyses",
                "{analysis}",
                "Analyses run",
                sum(
                    true,
                    CUMULATIVE,
                    vec![int_number(vec![], T0, T0 + 20 * SECOND, 13)],
                ),
            )],
        ),
    )
    .await;
    assert_line(
        &exposition.render(),
        &format!(
            r#"fertivision_analyses_total{{{JOB}}} 13.0 # {{trace_id="{TRACE_HEX}",span_id="{SPAN_HEX}"}} 1.0 1700000009.000"#
        ),
    );
    assert_line(
        &series_text(&exposition, ExpositionFormat::PrometheusText),
        &format!("fertivision_analyses_total{{{JOB}}} 13.0"),
    );
}

#[tokio::test]
async fn job_and_instance_follow_the_service_attributes() {
    let (mut sink, exposition, _clock) = sink_with(config());
    let point = || vec![int_number(vec![s("job", "from-attribute")], T0, T0, 1)];
    write(
        &mut sink,
        request(
            vec![s("service.name", "worker")],
            vec![metric("ticks", "", "", sum(true, CUMULATIVE, point()))],
        ),
    )
    .await;
    write(
        &mut sink,
        request(
            vec![
                s("service.name", "api"),
                s("service.namespace", "fv"),
                s("service.instance.id", "a-2"),
            ],
            vec![metric("ticks", "", "", sum(true, CUMULATIVE, point()))],
        ),
    )
    .await;
    write(
        &mut sink,
        request(
            vec![],
            vec![metric("ticks", "", "", sum(true, CUMULATIVE, point()))],
        ),
    )
    .await;

    let text = series_text(&exposition, ExpositionFormat::OpenMetrics);
    assert_line(&text, r#"ticks_total{job="worker"} 1.0"#);
    assert_line(&text, r#"ticks_total{job="fv/api",instance="a-2"} 1.0"#);
    // Without a service.name the attribute is an ordinary label.
    assert_line(&text, r#"ticks_total{job="from-attribute"} 1.0"#);
}

#[tokio::test]
async fn target_info_holds_the_other_resource_attributes() {
    let (mut sink, exposition, _clock) = sink_with(config());
    write(
        &mut sink,
        request(
            api_resource(),
            vec![metric(
                "ticks",
                "",
                "",
                sum(true, CUMULATIVE, vec![int_number(vec![], T0, T0, 1)]),
            )],
        ),
    )
    .await;
    let text = series_text(&exposition, ExpositionFormat::OpenMetrics);
    assert_block(
        &text,
        &[
            "# HELP target Target metadata",
            "# TYPE target info",
            r#"target_info{job="fertivision/api",instance="api-1",host_name="node-7"} 1"#,
        ],
    );
    let text = series_text(&exposition, ExpositionFormat::PrometheusText);
    assert_block(
        &text,
        &[
            "# HELP target_info Target metadata",
            "# TYPE target_info gauge",
            r#"target_info{job="fertivision/api",instance="api-1",host_name="node-7"} 1"#,
        ],
    );

    let (mut sink, exposition, _clock) = sink_with(PrometheusSinkConfig {
        target_info: false,
        ..config()
    });
    write(
        &mut sink,
        request(
            api_resource(),
            vec![metric(
                "ticks",
                "",
                "",
                sum(true, CUMULATIVE, vec![int_number(vec![], T0, T0, 1)]),
            )],
        ),
    )
    .await;
    assert_no_line_starting(
        &series_text(&exposition, ExpositionFormat::OpenMetrics),
        "target",
    );
}

#[tokio::test]
async fn summaries_expose_quantiles_count_and_sum() {
    let (mut sink, exposition, _clock) = sink_with(config());
    let point = SummaryDataPoint {
        start_time_unix_nano: T0,
        time_unix_nano: T0 + SECOND,
        count: 10,
        sum: 4.5,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.99,
                value: 1.2,
            },
            ValueAtQuantile {
                quantile: 0.5,
                value: 0.3,
            },
        ],
        ..Default::default()
    };
    write(
        &mut sink,
        request(
            api_resource(),
            vec![metric(
                "gc.pause",
                "s",
                "GC pauses",
                Data::Summary(Summary {
                    data_points: vec![point],
                }),
            )],
        ),
    )
    .await;
    assert_block(
        &series_text(&exposition, ExpositionFormat::OpenMetrics),
        &[
            "# HELP gc_pause_seconds GC pauses",
            "# TYPE gc_pause_seconds summary",
            "# UNIT gc_pause_seconds seconds",
            &format!(r#"gc_pause_seconds{{{JOB},quantile="0.5"}} 0.3"#),
            &format!(r#"gc_pause_seconds{{{JOB},quantile="0.99"}} 1.2"#),
            &format!("gc_pause_seconds_count{{{JOB}}} 10"),
            &format!("gc_pause_seconds_sum{{{JOB}}} 4.5"),
        ],
    );
}

#[tokio::test]
async fn exponential_histograms_and_invalid_points_are_dropped_and_counted() {
    let (mut sink, exposition, _clock) = sink_with(config());
    let exponential = Data::ExponentialHistogram(ExponentialHistogram {
        data_points: vec![
            ExponentialHistogramDataPoint {
                count: 1,
                ..Default::default()
            };
            2
        ],
        aggregation_temporality: CUMULATIVE as i32,
    });
    let metrics = vec![
        metric("rpc.duration", "s", "", exponential),
        metric(
            "negative",
            "",
            "",
            sum(true, CUMULATIVE, vec![number(vec![], T0, T0, -1.0)]),
        ),
        metric(
            "unspecified",
            "",
            "",
            sum(
                true,
                AggregationTemporality::Unspecified,
                vec![number(vec![], T0, T0, 1.0)],
            ),
        ),
        metric(
            "bad.buckets",
            "",
            "",
            histogram(
                CUMULATIVE,
                vec![histogram_point(vec![], T0, T0, &[1.0], &[1, 2, 3], 1.0)],
            ),
        ),
        // A counter and a gauge that both map to `clash`.
        metric("clash", "", "", gauge(vec![number(vec![], T0, T0, 1.0)])),
        metric(
            "clash.total",
            "",
            "",
            sum(true, CUMULATIVE, vec![number(vec![], T0, T0, 1.0)]),
        ),
    ];
    write(&mut sink, request(api_resource(), metrics)).await;
    let stats = exposition.stats();
    assert_eq!(stats.dropped(DropReason::Unsupported), 2);
    assert_eq!(stats.dropped(DropReason::Invalid), 3);
    assert_eq!(stats.dropped(DropReason::TypeConflict), 1);
    assert_eq!(stats.data_points_written, 1);
    let text = exposition.render();
    assert_line(
        &text,
        r#"telemetry_prometheus_sink_dropped_data_points_total{reason="unsupported"} 2"#,
    );
    assert_line(
        &text,
        r#"telemetry_prometheus_sink_dropped_data_points_total{reason="invalid"} 3"#,
    );
    assert_line(&text, "telemetry_prometheus_sink_batches_total 1");
    assert_line(&text, &format!("clash{{{JOB}}} 1.0"));
    assert_no_line_starting(&text, "rpc_duration");
}

#[tokio::test]
async fn series_go_stale_after_stale_after_and_leave_the_store() {
    let (mut sink, exposition, clock) = sink_with(PrometheusSinkConfig {
        target_info: false,
        ..config()
    });
    let temperature = |room: &str, value: f64| {
        request(
            api_resource(),
            vec![metric(
                "incubator.temperature",
                "Cel",
                "",
                gauge(vec![number(vec![s("room", room)], 0, 0, value)]),
            )],
        )
    };
    write(&mut sink, temperature("a", 37.0)).await;
    write(&mut sink, temperature("b", 37.1)).await;
    clock.advance(Duration::from_secs(40));
    write(&mut sink, temperature("b", 37.2)).await;
    clock.advance(Duration::from_secs(20));

    // 60 s after its last write, room a is gone; room b was written 20 s ago.
    let text = series_text(&exposition, ExpositionFormat::OpenMetrics);
    assert_no_line_starting(
        &text,
        r#"incubator_temperature_celsius{job="fertivision/api",instance="api-1",room="a"}"#,
    );
    assert_line(
        &text,
        &format!(r#"incubator_temperature_celsius{{{JOB},room="b"}} 37.2"#),
    );
    assert_eq!(exposition.stats().series, 2, "not swept yet");

    clock.advance(Duration::from_secs(40));
    assert_eq!(
        series_text(&exposition, ExpositionFormat::OpenMetrics),
        "",
        "every series stale: not even a HELP line"
    );
    // The next write sweeps them out of the store.
    write(&mut sink, temperature("c", 36.9)).await;
    assert_eq!(exposition.stats().series, 1);
    assert_line(
        &series_text(&exposition, ExpositionFormat::OpenMetrics),
        &format!(r#"incubator_temperature_celsius{{{JOB},room="c"}} 36.9"#),
    );
}

#[tokio::test]
async fn series_caps_drop_new_series_and_count_them() {
    let (mut sink, exposition, clock) = sink_with(PrometheusSinkConfig {
        max_series: 5,
        max_series_per_metric: 3,
        target_info: false,
        ..config()
    });
    let users = |metric_name: &str, ids: std::ops::Range<i64>| {
        let points = ids
            .map(|id| int_number(vec![i("user.id", id)], T0, T0, 1))
            .collect();
        request(
            api_resource(),
            vec![metric(metric_name, "", "", sum(true, CUMULATIVE, points))],
        )
    };
    write(&mut sink, users("logins", 0..10)).await;
    let stats = exposition.stats();
    assert_eq!(
        (
            stats.series,
            stats.data_points_written,
            stats.dropped_series
        ),
        (3, 3, 7),
        "the per-metric cap"
    );

    write(&mut sink, users("logouts", 0..10)).await;
    let stats = exposition.stats();
    assert_eq!(
        (
            stats.series,
            stats.data_points_written,
            stats.dropped_series
        ),
        (5, 5, 15),
        "the total cap"
    );

    // Existing series still update at the cap.
    write(
        &mut sink,
        request(
            api_resource(),
            vec![metric(
                "logins",
                "",
                "",
                sum(
                    true,
                    CUMULATIVE,
                    vec![int_number(vec![i("user.id", 0)], T0, T0 + SECOND, 2)],
                ),
            )],
        ),
    )
    .await;
    let text = exposition.render();
    assert_line(&text, &format!(r#"logins_total{{{JOB},user_id="0"}} 2.0"#));
    assert_no_line_starting(
        &text,
        r#"logins_total{job="fertivision/api",instance="api-1",user_id="3"}"#,
    );
    assert_line(&text, "telemetry_prometheus_sink_dropped_series_total 15");
    assert_line(&text, "telemetry_prometheus_sink_series 5");

    // Once the old series are stale and swept, new ones have room again.
    clock.advance(Duration::from_secs(61));
    write(&mut sink, users("signups", 0..1)).await;
    assert_eq!(exposition.stats().series, 1);
}

#[tokio::test]
async fn label_values_are_truncated_to_the_limit() {
    let (mut sink, exposition, _clock) = sink_with(PrometheusSinkConfig {
        max_label_value_bytes: 8,
        target_info: false,
        ..config()
    });
    let point = int_number(
        vec![s("url.path", "/api/v1/patients/123"), s("note", "naïveté")],
        T0,
        T0,
        1,
    );
    write(
        &mut sink,
        request(
            vec![s("service.name", "a-very-long-service-name")],
            vec![metric("hits", "", "", sum(true, CUMULATIVE, vec![point]))],
        ),
    )
    .await;
    // "naïveté" is 9 bytes: the cut falls inside "é" and moves back to a character boundary.
    assert_line(
        &series_text(&exposition, ExpositionFormat::OpenMetrics),
        r#"hits_total{job="a-very-l",note="naïvet",url_path="/api/v1/"} 1.0"#,
    );
    assert_eq!(exposition.stats().truncated_label_values, 3);
}

#[tokio::test]
async fn other_signals_are_acknowledged_and_ignored() {
    let (mut sink, exposition, _clock) = sink_with(config());
    sink.write(Batch::Traces(ExportTraceServiceRequest::default()))
        .await
        .expect("ignored");
    assert_eq!(exposition.stats().batches, 0);
    assert_eq!(series_text(&exposition, ExpositionFormat::OpenMetrics), "");
}

#[tokio::test]
async fn renders_run_while_the_sink_writes() {
    let (mut sink, exposition, _clock) = sink_with(config());
    let reader = {
        let exposition = exposition.clone();
        std::thread::spawn(move || {
            let mut renders = 0;
            loop {
                let done = exposition.stats().batches == 50;
                let text = exposition.render();
                assert!(text.ends_with("# EOF\n"));
                renders += 1;
                if done {
                    return renders;
                }
            }
        })
    };
    for batch in 0..50u64 {
        let points = (0..20)
            .map(|id| int_number(vec![i("id", id)], T0, T0 + batch * SECOND, batch as i64))
            .collect();
        write(
            &mut sink,
            request(
                api_resource(),
                vec![metric("work", "", "", sum(true, CUMULATIVE, points))],
            ),
        )
        .await;
    }
    assert!(reader.join().expect("the reader did not panic") > 0);
    assert_line(
        &exposition.render(),
        &format!(r#"work_total{{{JOB},id="19"}} 49.0"#),
    );
}

/// The module documentation's example.
#[test]
fn documented_example() {
    let sink =
        PrometheusSink::new(&PrometheusSinkConfig::default()).expect("the defaults are valid");
    let exposition = sink.exposition();
    let format = ExpositionFormat::from_accept(Some("application/openmetrics-text; version=1.0.0"));
    let body = exposition.render_as(format);
    assert!(body.ends_with("# EOF\n"));
    assert_eq!(format.content_type(), exposition.content_type());
}

/// One request with every kind the sink exposes, as an application would send it.
fn realistic_request() -> ExportMetricsServiceRequest {
    let mut duration = histogram_point(
        vec![
            s("http.request.method", "GET"),
            s("http.route", "/api/v1/patients/{id}"),
            i("http.response.status_code", 200),
        ],
        T0,
        T0 + 10 * SECOND,
        &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
        &[3, 5, 8, 2, 1, 0, 0, 1, 0, 0, 0],
        1.234,
    );
    duration.exemplars = vec![exemplar(0.007, T0 + 3 * SECOND)];
    let mut analyses = int_number(
        vec![
            s("kind", "semen"),
            s("note", "quote \" backslash \\ newline \n end"),
        ],
        T0,
        T0 + 10 * SECOND,
        7,
    );
    analyses.exemplars = vec![exemplar(1.0, T0 + 4 * SECOND)];
    let summary = SummaryDataPoint {
        start_time_unix_nano: T0,
        time_unix_nano: T0 + 10 * SECOND,
        count: 3,
        sum: 0.6,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.5,
                value: 0.2,
            },
            ValueAtQuantile {
                quantile: 1.0,
                value: 0.3,
            },
        ],
        ..Default::default()
    };
    request(
        api_resource(),
        vec![
            metric(
                "http.server.request.duration",
                "s",
                "Duration of HTTP server requests.",
                histogram(CUMULATIVE, vec![duration]),
            ),
            metric(
                "fertivision.analyses",
                "{analysis}",
                "Analyses classified",
                sum(true, CUMULATIVE, vec![analyses]),
            ),
            metric(
                "http.server.active_requests",
                "{request}",
                "Requests in flight",
                sum(false, CUMULATIVE, vec![int_number(vec![], T0, T0, 2)]),
            ),
            metric(
                "process.memory.usage",
                "By",
                "",
                gauge(vec![number(vec![], 0, T0, 5.24288e7)]),
            ),
            metric(
                "db.client.connection.wait_time",
                "s",
                "Waits for a pooled connection",
                Data::Summary(Summary {
                    data_points: vec![summary],
                }),
            ),
        ],
    )
}

/// `promtool check metrics` on the Prometheus text rendering must find nothing to report.
/// (promtool parses only the Prometheus text format, not OpenMetrics with exemplars; the
/// OpenMetrics rendering of the same series is checked line by line above.)
#[tokio::test]
async fn promtool_finds_the_prometheus_text_clean() {
    let Some(promtool) = which("promtool") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is missing with CI=true: install the Debian package `prometheus`"
        );
        println!(
            "SKIPPED promtool_finds_the_prometheus_text_clean: promtool not found (apt-get install prometheus)"
        );
        return;
    };
    let (mut sink, exposition, _clock) = sink_with(config());
    write(&mut sink, realistic_request()).await;
    let text = exposition.render_as(ExpositionFormat::PrometheusText);
    assert!(
        text.contains("http_server_request_duration_seconds_bucket"),
        "{text}"
    );

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("promtool reads");
    let output = child.wait_with_output().expect("promtool ends");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && report.trim().is_empty(),
        "promtool check metrics: {:?}\n{report}\non:\n{text}",
        output.status
    );
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|path| path.is_file())
}
