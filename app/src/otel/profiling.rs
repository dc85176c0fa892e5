//! Continuous CPU profiling: pprof-rs samples the process at 99 Hz for a window (15 s by
//! default), the window's profile is pushed to the collector's Pyroscope-compatible `/ingest`
//! as gzip-compressed pprof, labelled with the service and the instance, and the next window
//! starts. Sampling runs in a signal handler; the windows are taken on a thread of their own
//! and pushed through the telemetry runtime, each push bounded by the export timeout. A push that
//! fails is counted as lost (`fertivision.telemetry.lost{signal="profiles"}`).

use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::TelemetryConfig;

/// Samples per second.
const FREQUENCY: i32 = 99;

/// The profiler of a running process; dropping it ends the current window without a push.
#[derive(Debug)]
pub struct Profiler {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Profiler {
    /// Starts profiling `service`, pushing every `profile_interval_secs` to
    /// `profile_endpoint` through `runtime`.
    pub fn start(
        settings: &TelemetryConfig,
        service: &str,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        let (stop, stopped) = mpsc::channel();
        let window = Duration::from_secs(settings.profile_interval_secs);
        let push = Push {
            url: format!(
                "{}?name={service}{{instance={}}}&format=pprof",
                settings.profile_endpoint,
                super::instance_id()
            ),
            timeout: Duration::from_millis(settings.export_timeout_ms),
            runtime,
            client: reqwest::Client::new(),
        };
        let thread = std::thread::Builder::new()
            .name("profiler".to_owned())
            .spawn(move || {
                loop {
                    let from = unix_now();
                    let guard = match pprof::ProfilerGuardBuilder::default()
                        .frequency(FREQUENCY)
                        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
                        .build()
                    {
                        Ok(guard) => guard,
                        Err(error) => {
                            tracing::warn!(target: "fertivision::otel", %error, "CPU profiling is off");
                            return;
                        }
                    };
                    let last = match stopped.recv_timeout(window) {
                        Err(RecvTimeoutError::Timeout) => false,
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                    };
                    let profile = guard.report().build().and_then(|report| report.pprof());
                    drop(guard);
                    match profile {
                        Ok(profile) => push.send(&profile, from, unix_now()),
                        Err(error) => {
                            tracing::warn!(target: "fertivision::otel", %error, "a CPU profile could not be built");
                        }
                    }
                    if last {
                        return;
                    }
                }
            })
            .ok();
        Self { stop, thread }
    }

    /// Ends the current window, pushes it, and waits for the thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Push {
    url: String,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
    client: reqwest::Client,
}

impl Push {
    fn send(&self, profile: &pprof::protos::Profile, from: u64, until: u64) {
        let mut encoded = Vec::new();
        if pprof::protos::Message::encode(profile, &mut encoded).is_err() {
            return;
        }
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let body = match gzip.write_all(&encoded).and_then(|()| gzip.finish()) {
            Ok(body) => body,
            Err(_) => return,
        };
        let url = format!("{}&from={from}&until={until}", self.url);
        // Built inside the runtime: the request's timer belongs to it.
        let sent = self.runtime.block_on(async {
            self.client
                .post(url)
                .body(body)
                .timeout(self.timeout)
                .send()
                .await
        });
        if !matches!(&sent, Ok(response) if response.status().is_success()) {
            super::export::lost("profiles", "export_failed", 1);
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
