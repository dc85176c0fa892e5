//! The official OpenTelemetry Python SDK (PyPI: `opentelemetry-sdk` and the OTLP exporters,
//! pinned in `tests/sdk/requirements.txt`) sends traces, metrics and logs to the collector
//! over OTLP/gRPC and over OTLP/HTTP (protobuf) through `tests/sdk/send.py`; they arrive:
//! accepted per signal, written by the blackhole sink, and the counter exposed by the
//! Prometheus sink under `job="<service.name>"`.
//!
//! Without the packages the test fails under CI (`CI` set) with what to install, and is
//! skipped otherwise.

#[path = "sdk/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::process::Command;

use harness::Collector;

const SPANS: usize = 3;
const LOGS: usize = 2;
const INSTALL: &str = "python3 -m pip install -r telemetry/tests/sdk/requirements.txt";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/send.py")
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Why the SDK cannot run here, if it cannot.
fn missing() -> Option<String> {
    let probe = Command::new(python())
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, \
             opentelemetry.exporter.otlp.proto.http",
        ])
        .output();
    match probe {
        Err(error) => Some(format!("cannot run {}: {error}", python())),
        Ok(out) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let error = stderr.lines().last().unwrap_or("").trim();
            Some(format!(
                "the OpenTelemetry Python SDK is not installed{}; install it with `{INSTALL}`",
                if error.is_empty() {
                    String::new()
                } else {
                    format!(" ({error})")
                }
            ))
        }
        Ok(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_sends_traces_metrics_and_logs_over_grpc_and_http() {
    if let Some(why) = missing() {
        assert!(!in_ci(), "CI: {why}");
        eprintln!("SKIPPED python_sdk_sends_traces_metrics_and_logs_over_grpc_and_http: {why}");
        return;
    }
    let collector = Collector::start().await;
    for (protocol, endpoint) in [
        ("grpc", format!("http://{}", collector.grpc)),
        ("http", format!("http://{}", collector.http)),
    ] {
        let service = format!("python-sdk-{protocol}");
        let before = collector.counts().await;
        let mut command = tokio::process::Command::new(python());
        command
            .arg(script())
            .args(["--protocol", protocol, "--endpoint", &endpoint])
            .args(["--service-name", &service])
            .args(["--spans", &SPANS.to_string(), "--logs", &LOGS.to_string()])
            // No proxy between the SDK and the collector on loopback.
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .kill_on_drop(true);
        let out = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
            .await
            .unwrap_or_else(|_| panic!("{protocol}: send.py did not finish in 120 s"))
            .unwrap();
        assert!(
            out.status.success(),
            "{protocol}: send.py failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = collector
            .expect(
                protocol,
                before,
                // The counter's and the histogram's points, at least.
                (SPANS as f64, 2.0, LOGS as f64),
                "sdk_python_requests_total",
                &service,
            )
            .await;
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(value, 3.0, "{line}");
        assert!(
            line.contains(&format!(r#"protocol="{protocol}""#)),
            "{line}"
        );
    }
    collector.stop().await;
}
