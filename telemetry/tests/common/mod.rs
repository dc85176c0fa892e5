//! Helpers shared by the tests that run a collector on real sockets.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `N` distinct free ports on loopback (held together while chosen, so never the same twice).
pub fn free_ports<const N: usize>() -> [SocketAddr; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap())
}

/// One HTTP/1.1 exchange with a JSON body: (status, body as JSON, or null when it is not).
pub async fn exchange(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    let status = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    // Chunked bodies: the JSON is the one line that parses.
    let json = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(body).unwrap_or(Value::Null)
    };
    (status, json)
}

/// Waits (at most 2 s) until something listens on `address`.
pub async fn wait_up(address: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nothing listens on {address}");
}

/// `text` percent-encoded for a query string.
pub fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A collector running in this process, on `query` and the ports of its pipeline.
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), telemetry::collector::CollectorError>>,
}

/// The settings of a test collector: `pipeline`, state in `dir`, a 64 MiB log, fsync on.
pub fn settings(
    pipeline: telemetry::config::ValidatedPipeline,
    dir: &std::path::Path,
    query: SocketAddr,
) -> telemetry::collector::CollectorSettings {
    telemetry::collector::CollectorSettings {
        pipeline,
        data_dir: dir.to_path_buf(),
        wal_max_bytes: 64 << 20,
        fsync: true,
        query_listen: query,
    }
}

/// Starts a collector and waits until its query port answers.
pub async fn start(settings: telemetry::collector::CollectorSettings) -> Running {
    let query = settings.query_listen;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(telemetry::collector::run(settings, async move {
        let _ = stopped.await;
    }));
    wait_up(query).await;
    Running { stop, task }
}

impl Running {
    /// Stops it and checks that it stopped cleanly.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}
