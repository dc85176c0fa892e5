//! `--tokio-console`: the API process serves the console's gRPC API, and a client attaches and
//! receives the runtime's tasks, as the `tokio-console` client does.

mod process;

use std::process::{Command, Stdio};
use std::time::Duration;

use console_api::instrument::InstrumentRequest;
use console_api::instrument::instrument_client::InstrumentClient;
use process::{BIN, free_ports, http, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_client_attaches_and_sees_the_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let [api, console] = free_ports::<2>();
    let mut serve = Command::new(BIN)
        .args(["serve", "--tokio-console", "--data-dir"])
        .arg(dir.path())
        .env("FERTIVISION_API__LISTEN", format!("127.0.0.1:{api}"))
        .env("FERTIVISION_TELEMETRY__ENABLED", "false")
        .env("TOKIO_CONSOLE_BIND", format!("127.0.0.1:{console}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the API", Duration::from_secs(30), || {
        http(api, "GET", "/healthz", None, None)
            .ok()
            .filter(|(status, _)| *status == 200)
    });
    let mut client = InstrumentClient::connect(format!("http://127.0.0.1:{console}"))
        .await
        .expect("the console's gRPC API answers");
    let mut updates = client
        .watch_updates(InstrumentRequest {})
        .await
        .unwrap()
        .into_inner();
    let update = tokio::time::timeout(Duration::from_secs(10), updates.message())
        .await
        .expect("an update within 10 s")
        .unwrap()
        .expect("a first update");
    let tasks = update.task_update.expect("task state").new_tasks;
    assert!(!tasks.is_empty(), "the runtime's tasks are visible");
    let _ = serve.kill();
    let _ = serve.wait();
}
