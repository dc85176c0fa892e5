//! Harness for tests that run the real binary: free ports, a minimal HTTP client, a
//! collector process that can be started, killed with SIGKILL, and stopped with SIGTERM, and
//! a whole platform (a collector, `serve` and `worker` exporting their telemetry to it).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_fertivision");

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free ports (held together while chosen, so never the same twice).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// An HTTP answer: status, lower-cased headers, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// A minimal HTTP/1.1 exchange with `Connection: close`.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.get(9..12))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// (status, body) of a request with an optional bearer token and JSON body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let answer = request(port, method, path, &headers, body.as_bytes())?;
    Ok((answer.status, answer.body))
}

/// A `fertivision collector` process on free ports with its own pipeline file.
pub struct Collector {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pipeline: PathBuf,
    pub grpc_port: u16,
    pub http_port: u16,
    pub query_port: u16,
    /// Extra `FERTIVISION_*` settings.
    env: Vec<(String, String)>,
    /// The collector's stderr, appended over restarts (read it when a test fails).
    pub log: PathBuf,
}

impl Collector {
    /// Writes `pipeline` with `{grpc}` and `{http}` replaced by free ports and starts it.
    pub fn start(data_dir: &Path, pipeline: &str, env: &[(&str, &str)]) -> Self {
        let [grpc_port, http_port, query_port] = free_ports::<3>();
        let pipeline_path = data_dir.join("pipeline.toml");
        let text = pipeline
            .replace("{grpc}", &grpc_port.to_string())
            .replace("{http}", &http_port.to_string());
        std::fs::write(&pipeline_path, text).unwrap();
        let mut collector = Self {
            child: None,
            data_dir: data_dir.to_owned(),
            pipeline: pipeline_path,
            grpc_port,
            http_port,
            query_port,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            log: data_dir.join("collector.log"),
        };
        collector.restart();
        collector
    }

    /// Starts the process (again) on the same ports and data, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["collector", "--data-dir"])
            .arg(&self.data_dir)
            .env("RUST_LOG", "info")
            .env("FERTIVISION_COLLECTOR__PIPELINE", &self.pipeline)
            .env(
                "FERTIVISION_COLLECTOR__QUERY_LISTEN",
                format!("127.0.0.1:{}", self.query_port),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(self.query_port, "GET", "/healthz", None, None).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the collector exited with {status}:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "the collector did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and wait (at most 30 s) for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `/metrics` as text.
    pub fn metrics(&self) -> String {
        http(self.query_port, "GET", "/metrics", None, None)
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of one sample of `/metrics`, e.g.
    /// `collector_accepted_items_total{signal="logs"}`; 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|value| value.split_whitespace().next())
                    .and_then(|value| value.parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Resident memory of the process now, in bytes (Linux).
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// What the collector wrote on stderr.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `probe` every 200 ms until it gives a value; panics naming `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A `multipart/form-data` upload of one text file as a lab report: (content type, body).
pub fn text_upload(filename: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "process-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"document_type\"\r\n\r\nlab_report\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The platform as processes: a collector on the default pipeline (on free ports), and
/// `fertivision serve` and `fertivision worker` on one SQLite database, exporting traces,
/// logs, metrics and CPU profiles (2 s windows) to it. Killed when dropped.
pub struct Platform {
    pub collector: Collector,
    pub api_port: u16,
    /// An admin token.
    pub token: String,
    /// The stderr of `serve` and of `worker`.
    pub app_logs: [PathBuf; 2],
    data_dir: PathBuf,
    children: Vec<Child>,
    /// Extra `FERTIVISION_*` settings of the app's processes.
    env: Vec<(String, String)>,
}

impl Platform {
    /// Starts everything under `dir` and waits until the API answers.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// [`Platform::start`] with extra settings for `serve`, `worker` and the CLI.
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> Self {
        let collector_dir = dir.join("collector");
        std::fs::create_dir_all(&collector_dir).unwrap();
        let pipeline = telemetry::config::DEFAULT_PIPELINE
            .replace("127.0.0.1:4317", "127.0.0.1:{grpc}")
            .replace("127.0.0.1:4318", "127.0.0.1:{http}");
        let collector = Collector::start(&collector_dir, &pipeline, &[]);
        let data_dir = dir.join("app");
        let app_logs = [dir.join("serve.log"), dir.join("worker.log")];
        let mut platform = Self {
            collector,
            api_port: free_port(),
            token: String::new(),
            app_logs,
            data_dir,
            children: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let token = platform
            .command(&["token", "create", "--role", "admin"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(token.status.success(), "{token:?}");
        platform.token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
        let serve = platform
            .command(&["serve"])
            .env(
                "FERTIVISION_API__LISTEN",
                format!("127.0.0.1:{}", platform.api_port),
            )
            .stderr(File::create(&platform.app_logs[0]).unwrap())
            .spawn()
            .unwrap();
        let worker = platform
            .command(&["worker", "--concurrency", "2"])
            .stderr(File::create(&platform.app_logs[1]).unwrap())
            .spawn()
            .unwrap();
        platform.children = vec![serve, worker];
        let port = platform.api_port;
        wait_for("the API", Duration::from_secs(30), || {
            http(port, "GET", "/healthz", None, None)
                .ok()
                .filter(|(status, _)| *status == 200)
        });
        platform
    }

    /// The binary with `args`, on the platform's data and collector.
    pub fn command(&self, args: &[&str]) -> Command {
        let collector = &self.collector;
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env(
                "FERTIVISION_TELEMETRY__OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", collector.grpc_port),
            )
            .env("FERTIVISION_TELEMETRY__BATCH_DELAY_MS", "200")
            .env("FERTIVISION_TELEMETRY__METRICS_INTERVAL_MS", "500")
            .env(
                "FERTIVISION_TELEMETRY__PROFILE_ENDPOINT",
                format!("http://127.0.0.1:{}/ingest", collector.query_port),
            )
            .env("FERTIVISION_TELEMETRY__PROFILE_INTERVAL_SECS", "2")
            .env("FERTIVISION_JOBS__POLL_INTERVAL_MS", "100")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped());
        command
    }

    /// An API call with the admin token: (status, body).
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.api_port, method, path, Some(&self.token), body).unwrap()
    }

    /// Stops `serve` and `worker` with SIGTERM, so that they send what they still hold.
    pub fn stop_app(&mut self) {
        for child in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
