//! The runtime that carries the process's own telemetry: the OTLP exporters' gRPC connections,
//! the metrics push and the profile push run on one thread of their own (`otel-export`), not
//! on the runtime that serves requests.
//!
//! On the request runtime, an export's connection task waited in the same run queues as every
//! open HTTP connection: at 500 busy connections each export took as long as a request waits
//! there, several times over, and the serial batch processors fell so far behind that most
//! spans were dropped at their full queues (BENCHMARKS.md, "telemetry lost"). Here an export
//! waits only for the operating system to schedule this thread.

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A current-thread Tokio runtime on a thread of its own, running until [`stop`](Self::stop).
#[derive(Debug)]
pub(crate) struct ExportRuntime {
    handle: Handle,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl ExportRuntime {
    /// Starts the thread and its runtime.
    pub(crate) fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("otel-export")
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otel-export".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Whatever is still running (a connection's task) is not waited for long.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(Self {
            handle,
            stop,
            thread,
        })
    }

    /// Where telemetry's tasks are spawned, and the context its clients are built in.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Ends the runtime, dropping its tasks, and waits for its thread. Call it after the
    /// exporters have sent what they had.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The point of the runtime: its tasks go on while every worker of the caller's runtime
    /// is blocked (as when requests keep them busy).
    #[tokio::test(flavor = "current_thread")]
    async fn its_tasks_run_while_the_callers_runtime_is_blocked() {
        let export = ExportRuntime::start().expect("runtime");
        let (done, finished) = std::sync::mpsc::channel();
        export.handle().spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = done.send(std::thread::current().name().map(str::to_owned));
        });
        // Blocks the only worker of this test's runtime: a task spawned on it could not run.
        let thread = finished
            .recv_timeout(Duration::from_secs(5))
            .expect("the export runtime's task ran while the caller's runtime was blocked");
        assert_eq!(thread.as_deref(), Some("otel-export"));
        export.stop();
    }

    #[test]
    fn stop_ends_the_thread_with_a_task_still_pending() {
        let export = ExportRuntime::start().expect("runtime");
        export.handle().spawn(std::future::pending::<()>());
        let started = std::time::Instant::now();
        export.stop();
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
