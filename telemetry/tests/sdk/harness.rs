//! Shared by the SDK interoperability tests (`sdk_rust.rs`, `sdk_python.rs`): a collector
//! started in-process on free ports (OTLP/gRPC and OTLP/HTTP in; a Prometheus sink and a
//! blackhole sink named `devnull` out) and a reader of its `/metrics`.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use telemetry::collector::{CollectorError, CollectorSettings, run};
use telemetry::config::PipelineConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `N` distinct free ports on loopback (held together while chosen, so never the same twice).
fn free_ports<const N: usize>() -> [SocketAddr; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap())
}

/// A running collector.
pub struct Collector {
    /// OTLP/gRPC address.
    pub grpc: SocketAddr,
    /// OTLP/HTTP address.
    pub http: SocketAddr,
    query: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), CollectorError>>,
    _dir: tempfile::TempDir,
}

/// What the collector counted: items accepted per signal and items the blackhole sink wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub traces: f64,
    pub metrics: f64,
    pub logs: f64,
    pub devnull: f64,
}

impl Counts {
    fn read(text: &str) -> Self {
        Self {
            traces: value(text, r#"collector_accepted_items_total{signal="traces"}"#),
            metrics: value(text, r#"collector_accepted_items_total{signal="metrics"}"#),
            logs: value(text, r#"collector_accepted_items_total{signal="logs"}"#),
            devnull: value(text, r#"collector_sink_items_total{sink="devnull"}"#),
        }
    }
}

/// The value of the sample `series` (name and labels exactly), 0 when absent.
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(series))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|v| v.parse::<f64>().ok())
        .fold(0.0, |sum, v| sum + v)
}

impl Collector {
    /// Starts the collector and waits until its query port answers.
    pub async fn start() -> Self {
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
            [sinks.metrics]
            type = "prometheus"
            inputs = ["otlp_grpc", "otlp_http"]
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
            fsync: false,
            query_listen: query,
        };
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(settings, async move {
            let _ = stop_rx.await;
        }));
        let collector = Self {
            grpc,
            http,
            query,
            stop,
            task,
            _dir: dir,
        };
        collector.scrape().await;
        collector
    }

    /// `/metrics`, retrying the connection for up to 10 seconds.
    pub async fn scrape(&self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match tokio::net::TcpStream::connect(self.query).await {
                Ok(stream) => break stream,
                Err(error) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "query port {}: {error}",
                        self.query
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
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

    /// The counts now.
    pub async fn counts(&self) -> Counts {
        Counts::read(&self.scrape().await)
    }

    /// Waits (up to 30 seconds) until at least `traces`, `metrics` and `logs` more items than
    /// in `before` were accepted, the blackhole sink wrote more than before, and a series
    /// `counter` labelled `job="<job>"` is exposed; returns that series' line.
    pub async fn expect(
        &self,
        what: &str,
        before: Counts,
        (traces, metrics, logs): (f64, f64, f64),
        counter: &str,
        job: &str,
    ) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let job_label = format!(r#"job="{job}""#);
        loop {
            let text = self.scrape().await;
            let now = Counts::read(&text);
            let series = text
                .lines()
                .find(|line| line.starts_with(&format!("{counter}{{")) && line.contains(&job_label))
                .map(str::to_owned);
            let arrived = now.traces - before.traces >= traces
                && now.metrics - before.metrics >= metrics
                && now.logs - before.logs >= logs
                && now.devnull > before.devnull;
            if let (true, Some(series)) = (arrived, series) {
                return series;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: expected +{traces} spans, +{metrics} points, +{logs} log records \
                 accepted, the devnull sink to grow and `{counter}{{..{job_label}..}}`; \
                 before {before:?}, now {now:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the collector cleanly.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the collector stops within 10 s")
            .unwrap()
            .unwrap();
    }
}
