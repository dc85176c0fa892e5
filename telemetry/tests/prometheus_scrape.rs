//! A real Prometheus scrapes the collector: OTLP metrics go in over HTTP, the `prometheus`
//! sink exposes them on the query port's `/metrics`, and the `prometheus` binary (Debian
//! package `prometheus`) scrapes that every second and stores the series, exemplars
//! included; `promtool check metrics` finds nothing to say about the exposition.
//!
//! Without the binaries the test prints `SKIPPED`; with `CI=true` it fails instead.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exemplar, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use telemetry::collector::{CollectorSettings, run};
use telemetry::config::PipelineConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const TRACE_ID_HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const SPAN_ID_HEX: &str = "00f067aa0ba902b7";

/// How long Prometheus may take to start, scrape and answer (the CI machine is busy).
const PROMETHEUS_DEADLINE: Duration = Duration::from_secs(90);

/// `N` distinct free ports on loopback (held together while chosen, so never the same twice).
fn free_ports<const N: usize>() -> [SocketAddr; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap())
}

/// `name` on `PATH` (or in `/usr/bin`, where the Debian package puts it).
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The two binaries, or `None` (after printing `SKIPPED`) outside CI; in CI a missing binary
/// fails the test.
fn binaries() -> Option<(PathBuf, PathBuf)> {
    match (find_binary("prometheus"), find_binary("promtool")) {
        (Some(prometheus), Some(promtool)) => Some((prometheus, promtool)),
        _ => {
            let message = "prometheus_scrape needs the `prometheus` and `promtool` binaries: \
                           install the Debian package `prometheus` (apt-get install prometheus)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{message}");
            }
            eprintln!("SKIPPED: {message}");
            None
        }
    }
}

/// The Prometheus child process: killed and reaped when dropped, panics included.
struct PrometheusProcess {
    child: Child,
    log: PathBuf,
}

impl PrometheusProcess {
    fn start(binary: &Path, dir: &Path, target: SocketAddr, listen: SocketAddr) -> Self {
        let config = dir.join("prometheus.yml");
        // honor_labels: the collector's series carry their own job and instance (from the
        // OTLP resource), which must not be renamed to exported_job / exported_instance.
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: collector\n    honor_labels: true\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        PrometheusProcess { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("prometheus exited with {status}:\n{}", self.log());
        }
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A counter, a histogram with an exemplar, and a gauge, from one resource.
fn metrics_request() -> ExportMetricsServiceRequest {
    let now = now_nanos();
    let start = now - 60_000_000_000;
    let counter = Metric {
        name: "fertivision.scrape.requests".into(),
        description: "Requests served".into(),
        unit: "1".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                attributes: vec![string("route", "/api/v1/patients")],
                start_time_unix_nano: start,
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsInt(42)),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let histogram = Metric {
        name: "fertivision.scrape.duration".into(),
        description: "Request duration".into(),
        unit: "s".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: vec![string("route", "/api/v1/patients")],
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: 6,
                sum: Some(2.0),
                bucket_counts: vec![3, 2, 1, 0],
                explicit_bounds: vec![0.1, 0.5, 1.0],
                exemplars: vec![Exemplar {
                    time_unix_nano: now,
                    trace_id: TRACE_ID.to_vec(),
                    span_id: SPAN_ID.to_vec(),
                    value: Some(exemplar::Value::AsDouble(0.3)),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let gauge = Metric {
        name: "fertivision.scrape.queue.depth".into(),
        description: "Jobs waiting".into(),
        unit: String::new(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsDouble(7.5)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    string("service.name", "fertivision-api"),
                    string("service.instance.id", "api-1"),
                    string("deployment.environment", "ci"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![counter, histogram, gauge],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One HTTP/1.0 exchange over a raw socket (1.0, so neither side uses chunked encoding):
/// the status and the body.
async fn http(address: SocketAddr, head: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (headers, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end: {response}")))?;
    assert!(
        !headers
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{headers}"
    );
    let status = headers
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status: {headers}")))?;
    Ok((status, body.to_owned()))
}

async fn get(address: SocketAddr, target: &str, accept: &str) -> std::io::Result<(u16, String)> {
    http(
        address,
        &format!("GET {target} HTTP/1.0\r\nHost: {address}\r\nAccept: {accept}\r\n\r\n"),
        b"",
    )
    .await
}

/// Percent-encodes a query parameter.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/api/v1/query`: the result vector, empty while Prometheus is not up or has no sample.
async fn query(prometheus: SocketAddr, promql: &str) -> Vec<Value> {
    let target = format!("/api/v1/query?query={}", encode(promql));
    api(prometheus, &target).await
}

/// A Prometheus API call's `data` (`data.result` for queries), empty on any failure.
async fn api(prometheus: SocketAddr, target: &str) -> Vec<Value> {
    let Ok((200, body)) = get(prometheus, target, "application/json").await else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<Value>(&body) else {
        return Vec::new();
    };
    if json["status"] != "success" {
        return Vec::new();
    }
    let data = &json["data"];
    let items = data.get("result").unwrap_or(data);
    items.as_array().cloned().unwrap_or_default()
}

/// The sample value of one instant-vector element.
fn sample(element: &Value) -> f64 {
    element["value"][1].as_str().unwrap().parse().unwrap()
}

fn label<'a>(element: &'a Value, name: &str) -> Option<&'a str> {
    element["metric"][name].as_str()
}

/// Polls `check` until it returns `Some`, or fails with the Prometheus log.
async fn eventually<T, F, Fut>(prometheus: &mut PrometheusProcess, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + PROMETHEUS_DEADLINE;
    loop {
        prometheus.assert_running();
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                if tokio::time::Instant::now() >= deadline {
                    panic!(
                        "{what}: not seen within {PROMETHEUS_DEADLINE:?}; last: {last}\nprometheus log:\n{}",
                        prometheus.log()
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_and_stores_the_series() {
    let Some((prometheus_binary, promtool)) = binaries() else {
        return;
    };
    let version = Command::new(&prometheus_binary)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default();
    eprintln!(
        "{}",
        version
            .lines()
            .next()
            .unwrap_or("prometheus: unknown version")
    );

    // The collector: OTLP/HTTP in, the prometheus sink out.
    let dir = tempfile::tempdir().unwrap();
    let [http_port, query_port] = free_ports::<2>();
    let pipeline = PipelineConfig::from_toml_str(&format!(
        r#"
        [sources.otlp_http]
        type = "otlp_http"
        address = "{http_port}"
        [sinks.metrics]
        type = "prometheus"
        inputs = ["otlp_http"]
        "#
    ))
    .unwrap();
    let settings = CollectorSettings {
        pipeline,
        data_dir: dir.path().join("collector"),
        wal_max_bytes: 64 * 1024 * 1024,
        fsync: true,
        query_listen: query_port,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(run(settings, async move {
        let _ = stop_rx.await;
    }));

    // One OTLP/HTTP export with all three metrics.
    let body = metrics_request().encode_to_vec();
    let head = format!(
        "POST /v1/metrics HTTP/1.0\r\nHost: {http_port}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        match http(http_port, &head, &body).await {
            Ok((status, _)) => break status,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "collector never listened: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(status, 200);

    // The collector exposes them before Prometheus is asked to look.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let openmetrics = loop {
        let (status, text) = get(
            query_port,
            "/metrics",
            "application/openmetrics-text;version=1.0.0",
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{text}");
        if text.contains("fertivision_scrape_requests_total")
            && text.contains("fertivision_scrape_duration_seconds_bucket")
            && text.contains("fertivision_scrape_queue_depth")
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "series never appeared:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let exemplar_line = openmetrics
        .lines()
        .find(|l| {
            l.starts_with("fertivision_scrape_duration_seconds_bucket{") && l.contains(" # {")
        })
        .unwrap_or_else(|| panic!("no exemplar in the exposition:\n{openmetrics}"));
    assert!(
        exemplar_line.contains(r#"le="0.5""#)
            && exemplar_line.contains(&format!(r#"trace_id="{TRACE_ID_HEX}""#))
            && exemplar_line.contains(&format!(r#"span_id="{SPAN_ID_HEX}""#)),
        "{exemplar_line}"
    );

    // `promtool check metrics` on the Prometheus text format: silent, exit 0.
    let (status, text) = get(query_port, "/metrics", "text/plain;version=0.0.4")
        .await
        .unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("fertivision_scrape_requests_total"), "{text}");
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = check.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let output = check.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success() && out.is_empty() && err.is_empty(),
        "promtool check metrics: {}\nstdout:\n{out}\nstderr:\n{err}\nexposition:\n{text}",
        output.status
    );

    // The real Prometheus, scraping the query port every second.
    let prometheus_dir = tempfile::tempdir().unwrap();
    let web = free_ports::<1>()[0];
    let mut prometheus =
        PrometheusProcess::start(&prometheus_binary, prometheus_dir.path(), query_port, web);

    // The counter, with the job and instance of the OTLP resource and the value sent.
    let counter = eventually(&mut prometheus, "the counter", || async {
        let result = query(web, "fertivision_scrape_requests_total").await;
        result
            .iter()
            .find(|e| {
                label(e, "job") == Some("fertivision-api") && label(e, "instance") == Some("api-1")
            })
            .cloned()
            .ok_or_else(|| format!("{result:?}"))
    })
    .await;
    assert_eq!(sample(&counter), 42.0, "{counter}");
    assert_eq!(
        label(&counter, "route"),
        Some("/api/v1/patients"),
        "{counter}"
    );

    // The histogram's buckets and count.
    let buckets = eventually(&mut prometheus, "the histogram buckets", || async {
        let result = query(
            web,
            r#"fertivision_scrape_duration_seconds_bucket{job="fertivision-api",instance="api-1"}"#,
        )
        .await;
        if result.len() == 4 {
            Ok(result)
        } else {
            Err(format!("{result:?}"))
        }
    })
    .await;
    let bucket = |le: &str| {
        buckets
            .iter()
            .find(|e| label(e, "le") == Some(le))
            .map(sample)
            .unwrap_or_else(|| panic!("no le={le}: {buckets:?}"))
    };
    assert_eq!(
        [bucket("0.1"), bucket("0.5"), bucket("1.0"), bucket("+Inf")],
        [3.0, 5.0, 6.0, 6.0],
        "{buckets:?}"
    );
    let count = eventually(&mut prometheus, "the histogram count", || async {
        let result = query(
            web,
            r#"fertivision_scrape_duration_seconds_count{job="fertivision-api",instance="api-1"}"#,
        )
        .await;
        result.first().cloned().ok_or_else(|| format!("{result:?}"))
    })
    .await;
    assert_eq!(sample(&count), 6.0, "{count}");

    // The gauge.
    let gauge = eventually(&mut prometheus, "the gauge", || async {
        let result = query(
            web,
            r#"fertivision_scrape_queue_depth{job="fertivision-api",instance="api-1"}"#,
        )
        .await;
        result.first().cloned().ok_or_else(|| format!("{result:?}"))
    })
    .await;
    assert_eq!(sample(&gauge), 7.5, "{gauge}");

    // The collector's own metrics, labelled with the scrape job.
    let accepted = eventually(
        &mut prometheus,
        "collector_accepted_items_total",
        || async {
            let result = query(
                web,
                r#"collector_accepted_items_total{job="collector",signal="metrics"}"#,
            )
            .await;
            result.first().cloned().ok_or_else(|| format!("{result:?}"))
        },
    )
    .await;
    assert!(sample(&accepted) >= 1.0, "{accepted}");
    assert_eq!(
        label(&accepted, "instance"),
        Some(query_port.to_string().as_str()),
        "{accepted}"
    );

    // The exemplar, stored with its trace id (OpenMetrics scrape + exemplar storage).
    let exemplars = eventually(&mut prometheus, "the exemplar", || async {
        let end = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let target = format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            encode("fertivision_scrape_duration_seconds_bucket"),
            end - 3600,
            end + 60
        );
        let result = api(web, &target).await;
        let stored: Vec<Value> = result
            .iter()
            .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
            .collect();
        if stored.is_empty() {
            Err(format!("{result:?}"))
        } else {
            Ok(result)
        }
    })
    .await;
    let series = &exemplars[0];
    assert_eq!(series["seriesLabels"]["le"], "0.5", "{series}");
    assert_eq!(series["seriesLabels"]["job"], "fertivision-api", "{series}");
    let stored = &series["exemplars"][0];
    assert_eq!(stored["labels"]["trace_id"], TRACE_ID_HEX, "{series}");
    assert_eq!(stored["labels"]["span_id"], SPAN_ID_HEX, "{series}");
    assert_eq!(stored["value"], "0.3", "{series}");

    drop(prometheus);
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), collector)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
