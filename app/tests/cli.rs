//! The real binary: `up` on a fresh data directory serves the API over SQLite, prints an admin
//! token once, and stops cleanly on SIGTERM; `token create`, `migrate`, `--help` and config
//! errors behave as documented.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod process;

use process::{BIN, free_port, free_ports, http};

struct Running {
    child: Child,
    stderr: mpsc::Receiver<String>,
    /// The collector's query port (`/metrics`, `/healthz`).
    query_port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str], dir: &std::path::Path) -> Running {
    // The collector inside `up` on free ports, so tests never collide on 4317/4318/7070.
    let [grpc, http, query_port] = free_ports::<3>();
    let pipeline = dir.join("pipeline.toml");
    let text = telemetry::config::DEFAULT_PIPELINE
        .replace("127.0.0.1:4317", &format!("127.0.0.1:{grpc}"))
        .replace("127.0.0.1:4318", &format!("127.0.0.1:{http}"));
    std::fs::write(&pipeline, text).unwrap();
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "info")
        .env("FERTIVISION_COLLECTOR__PIPELINE", &pipeline)
        .env(
            "FERTIVISION_COLLECTOR__QUERY_LISTEN",
            format!("127.0.0.1:{query_port}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running {
        child,
        stderr: rx,
        query_port,
    }
}

fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok((200, _)) = http(port, "GET", "/healthz", None, None) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the API did not answer /healthz within 30 s");
}

#[test]
fn up_serves_the_api_on_a_fresh_data_directory_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut up = start(&["up", "--listen", &listen], dir.path());
    wait_healthy(port);
    assert!(
        dir.path().join("fertivision.db").exists(),
        "SQLite database created"
    );
    assert!(
        dir.path().join("objects").is_dir(),
        "object directory created"
    );

    // The first start printed an admin token, once.
    let token = loop {
        let line = up
            .stderr
            .recv_timeout(Duration::from_secs(10))
            .expect("token line");
        if let Some(token) = line.trim().strip_prefix("fv_") {
            break format!("fv_{token}");
        }
    };
    let (status, body) = http(port, "GET", "/readyz", None, None).unwrap();
    assert_eq!(status, 200, "{body}");
    // The collector runs inside `up`: its query port serves its own metrics.
    let (status, metrics) = http(up.query_port, "GET", "/metrics", None, None).unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("collector_wal_bytes"), "{metrics}");
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/patients",
        Some(&token),
        Some(r#"{"name":"Cli Patient","date_of_birth":"1991-03-04","sex":"female"}"#),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, _) = http(port, "GET", "/api/v1/patients", None, None).unwrap();
    assert_eq!(status, 401);

    // A token made by the command works against the running server.
    let out = Command::new(BIN)
        .args(["token", "create", "--role", "lab", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lab = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(lab.starts_with("fv_") && lab.len() == 67, "{lab}");
    let (status, body) = http(port, "GET", "/api/v1/summaries", Some(&lab), None).unwrap();
    assert_eq!(status, 200, "{body}");

    // SIGTERM: graceful exit with status 0.
    let pid = up.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let log: Vec<String> = up.stderr.try_iter().collect();
            panic!(
                "no exit within 20 s of SIGTERM; its log:\n{}",
                log.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");

    // A second start does not print a new admin token.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let again = start(&["up", "--listen", &listen], dir.path());
    wait_healthy(port);
    std::thread::sleep(Duration::from_millis(200));
    let printed: Vec<String> = again.stderr.try_iter().collect();
    assert!(
        !printed.iter().any(|l| l.trim().starts_with("fv_")),
        "{printed:?}"
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["token", "create", "--help"],
        vec!["worker", "--help"],
        vec!["collector", "--help"],
        vec!["loadgen", "--help"],
        vec!["logs", "search", "--help"],
        vec!["logs", "tail", "--help"],
        vec!["trace", "show", "--help"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for command in [
        "up",
        "serve",
        "worker",
        "collector",
        "loadgen",
        "migrate",
        "token",
        "logs",
        "trace",
    ] {
        assert!(text.contains(command), "{command} in --help");
    }
}

#[test]
fn migrate_then_bad_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("migrate")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("migrations applied (sqlite)"));

    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[database]\nurll = \"x\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("urll"), "{stderr}");

    let out = Command::new(BIN)
        .arg("migrate")
        .env("FERTIVISION_API__LISTN", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listn"));

    let out = Command::new(BIN)
        .args(["token", "create", "--role", "root"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("clinician"));
}

#[test]
fn the_collector_command_takes_load_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = telemetry::config::DEFAULT_PIPELINE
        .replace("127.0.0.1:4317", "127.0.0.1:{grpc}")
        .replace("127.0.0.1:4318", "127.0.0.1:{http}");
    let mut collector = process::Collector::start(dir.path(), &pipeline, &[]);
    let (grpc, http_port) = (collector.grpc_port, collector.http_port);
    for (protocol, port, signal) in [("grpc", grpc, "traces"), ("http", http_port, "logs")] {
        let out = Command::new(BIN)
            .args([
                "loadgen",
                "--protocol",
                protocol,
                "--signal",
                signal,
                "--total",
                "2000",
                "--endpoint",
            ])
            .arg(format!("http://127.0.0.1:{port}"))
            .output()
            .unwrap();
        let summary = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{summary} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(summary.contains("acknowledged 2000"), "{summary}");
    }
    // The binary turns transparent huge pages off for itself (main.rs). Kernels since 5.0
    // say so in the status file; an older one lacks the line, and there is nothing to check.
    let status = std::fs::read_to_string(format!("/proc/{}/status", collector.pid())).unwrap();
    if let Some(thp) = status.lines().find_map(|l| l.strip_prefix("THP_enabled:")) {
        assert_eq!(thp.trim(), "0", "transparent huge pages are on");
    }
    let metrics = collector.metrics();
    assert!(
        metrics.contains(r#"collector_accepted_items_total{signal="traces"} 2000"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"collector_accepted_items_total{signal="logs"} 2000"#),
        "{metrics}"
    );
    let status = collector.stop();
    assert!(status.success(), "{status}");
}
