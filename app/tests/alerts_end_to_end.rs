//! An alert from the generated rules, end to end, with the real tools: `fertivision up` exports
//! its metrics to its collector; Debian's Prometheus scrapes the collector and evaluates
//! `alerts/generated/rules/fertivision.rules.yml`; Debian's Alertmanager sends what fires to
//! the platform's webhook receiver. Their configurations are compose's
//! (`compose/prometheus/prometheus.yml`, `compose/alertmanager/alertmanager.yml`), adapted to
//! loopback and to a one-second pace. The failure is induced: object storage is taken away, so
//! uploads answer 5xx and the API burns its availability budget. The alert is read back from
//! `GET /api/v1/alerts` and from `fertivision alerts list`.

mod process;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use process::{BIN, free_ports, http, request, text_upload, wait_for};

const WEBHOOK_TOKEN: &str = "alert-webhook-secret";

/// Kills its processes when dropped (a failed assertion leaves nothing running).
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compose's file with each `(from, to)` replaced; every `from` must be there.
fn adapted(file: &str, replacements: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(repo().join(file)).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{file} no longer has {from:?}");
        text = text.replace(from, to);
    }
    text
}

fn spawn(program: &str, args: &[String], log: &Path) -> Child {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} runs ({e}); .ci/run installs it from Debian's packages")
        })
}

#[test]
fn a_failing_dependency_fires_an_slo_alert_that_reaches_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("data");
    let [api, grpc, otlp_http, query, prometheus, alertmanager] = free_ports::<6>();
    let pipeline = root.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        telemetry::config::DEFAULT_PIPELINE
            .replace("127.0.0.1:4317", &format!("127.0.0.1:{grpc}"))
            .replace("127.0.0.1:4318", &format!("127.0.0.1:{otlp_http}")),
    )
    .unwrap();
    let env: Vec<(String, String)> = [
        ("FERTIVISION_API__LISTEN", format!("127.0.0.1:{api}")),
        (
            "FERTIVISION_COLLECTOR__PIPELINE",
            pipeline.display().to_string(),
        ),
        (
            "FERTIVISION_COLLECTOR__QUERY_LISTEN",
            format!("127.0.0.1:{query}"),
        ),
        (
            "FERTIVISION_TELEMETRY__OTLP_ENDPOINT",
            format!("http://127.0.0.1:{grpc}"),
        ),
        (
            "FERTIVISION_TELEMETRY__PROFILE_ENDPOINT",
            format!("http://127.0.0.1:{query}/ingest"),
        ),
        ("FERTIVISION_TELEMETRY__PROFILING", "false".into()),
        ("FERTIVISION_TELEMETRY__METRICS_INTERVAL_MS", "1000".into()),
        ("FERTIVISION_ALERTS__WEBHOOK_TOKEN", WEBHOOK_TOKEN.into()),
        (
            "FERTIVISION_ALERTS__QUERY_URL",
            format!("http://127.0.0.1:{query}"),
        ),
        ("FERTIVISION_LIMITS__ENABLED", "false".into()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let fertivision = |args: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .envs(env.clone());
        command
    };
    let token = fertivision(&["token", "create", "--role", "admin"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();

    let up_log = root.join("up.log");
    let up = fertivision(&["up"])
        .stdout(Stdio::null())
        .stderr(File::create(&up_log).unwrap())
        .spawn()
        .unwrap();
    let mut running = Processes(vec![up]);
    wait_for("the API", Duration::from_secs(60), || {
        http(api, "GET", "/healthz", None, None)
            .ok()
            .filter(|(status, _)| *status == 200)
    });

    // Prometheus scrapes the collector and evaluates the generated rules every second.
    let prometheus_yml = root.join("prometheus.yml");
    let rules = repo().join("alerts/generated/rules");
    std::fs::write(
        &prometheus_yml,
        adapted(
            "compose/prometheus/prometheus.yml",
            &[
                ("scrape_interval: 15s", "scrape_interval: 1s".into()),
                ("evaluation_interval: 15s", "evaluation_interval: 1s".into()),
                (
                    "/etc/prometheus/rules/*.yml",
                    format!("{}/*.yml", rules.display()),
                ),
                ("collector:7070", format!("127.0.0.1:{query}")),
                ("alertmanager:9093", format!("127.0.0.1:{alertmanager}")),
                ("localhost:9090", format!("127.0.0.1:{prometheus}")),
            ],
        ),
    )
    .unwrap();
    running.0.push(spawn(
        "prometheus",
        &[
            format!("--config.file={}", prometheus_yml.display()),
            format!("--storage.tsdb.path={}", root.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{prometheus}"),
        ],
        &root.join("prometheus.log"),
    ));
    // Alertmanager sends every alert at once to the platform's webhook, with its token.
    let token_file = root.join("webhook_token");
    std::fs::write(&token_file, WEBHOOK_TOKEN).unwrap();
    let alertmanager_yml = root.join("alertmanager.yml");
    std::fs::write(
        &alertmanager_yml,
        adapted(
            "compose/alertmanager/alertmanager.yml",
            &[
                ("group_wait: 30s", "group_wait: 1s".into()),
                ("group_interval: 5m", "group_interval: 1s".into()),
                (
                    "http://nginx/api/v1/alerts/webhook",
                    format!("http://127.0.0.1:{api}/api/v1/alerts/webhook"),
                ),
                (
                    "/alertmanager/webhook_token",
                    token_file.display().to_string(),
                ),
            ],
        ),
    )
    .unwrap();
    running.0.push(spawn(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", alertmanager_yml.display()),
            format!("--storage.path={}", root.join("alertmanager").display()),
            format!("--web.listen-address=127.0.0.1:{alertmanager}"),
            "--cluster.listen-address=".to_owned(),
        ],
        &root.join("alertmanager.log"),
    ));
    wait_for(
        "Prometheus to load the rules",
        Duration::from_secs(60),
        || {
            http(prometheus, "GET", "/api/v1/rules", None, None)
                .ok()
                .filter(|(status, body)| {
                    *status == 200 && body.contains("ApiAvailabilityBudgetBurn")
                })
        },
    );

    // A patient and some healthy traffic.
    let (status, body) = http(
        api,
        "POST",
        "/api/v1/patients",
        Some(&token),
        Some(r#"{"name":"Alert Test","date_of_birth":"1990-01-01","sex":"female"}"#),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let patient: serde_json::Value = serde_json::from_str(&body).unwrap();
    let patient = patient["id"].as_str().unwrap().to_owned();

    // The webhook refuses a notification without its token.
    let (status, _) = http(
        api,
        "POST",
        "/api/v1/alerts/webhook",
        Some("wrong"),
        Some(r#"{"version":"4","alerts":[]}"#),
    )
    .unwrap();
    assert_eq!(status, 401);

    // The induced failure: object storage is gone (its directory replaced by a file).
    let objects = data.join("objects");
    let _ = std::fs::remove_dir_all(&objects);
    std::fs::write(&objects, b"not a directory").unwrap();

    let (content_type, upload) = text_upload("report.txt", b"Estradiol 180 pg/mL\n");
    let upload_path = format!("/api/v1/patients/{patient}/documents");
    let mut failed_uploads = 0;
    let alerts = wait_for("the alert at the webhook", Duration::from_secs(150), || {
        let bearer = format!("Bearer {token}");
        let answer = request(
            api,
            "POST",
            &upload_path,
            &[("Authorization", &bearer), ("Content-Type", &content_type)],
            &upload,
        )
        .unwrap();
        assert!(
            answer.status >= 500,
            "an upload without object storage answered {}: {}",
            answer.status,
            answer.body
        );
        failed_uploads += 1;
        let (status, _) = http(
            api,
            "GET",
            &format!("/api/v1/patients/{patient}"),
            Some(&token),
            None,
        )
        .unwrap();
        assert_eq!(status, 200);
        let (status, body) = http(
            api,
            "GET",
            "/api/v1/alerts?status=firing",
            Some(&token),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let alerts: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        alerts
            .iter()
            .any(|a| a["alertname"] == "ApiAvailabilityBudgetBurn" && a["severity"] == "page")
            .then_some(alerts)
    });
    assert!(failed_uploads > 1);
    let alert = alerts
        .iter()
        .find(|a| a["alertname"] == "ApiAvailabilityBudgetBurn" && a["severity"] == "page")
        .unwrap();
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["job"], "fertivision");
    assert_eq!(alert["labels"]["slo"], "api-availability");
    let annotations = &alert["annotations"];
    assert!(
        annotations["summary"]
            .as_str()
            .unwrap()
            .starts_with("fertivision is burning the api-availability error budget"),
        "{annotations}"
    );
    assert_eq!(
        annotations["runbook_url"],
        "alerts/runbooks/ApiAvailabilityBudgetBurn.md"
    );
    assert_eq!(
        annotations["dashboard"],
        "http://localhost:3000/d/fertivision-overview"
    );
    assert!(
        annotations["logs"]
            .as_str()
            .unwrap()
            .contains("/api/v1/logs/search?start=1h&q=service%3Afertivision%20AND"),
        "{annotations}"
    );
    let logs_url = alert["logs_url"].as_str().unwrap();
    assert!(
        logs_url.starts_with(&format!(
            "http://127.0.0.1:{query}/api/v1/logs/search?q=service%3Afertivision&start="
        )),
        "{logs_url}"
    );
    let traces_url = alert["traces_url"].as_str().unwrap();
    assert!(
        traces_url.starts_with(&format!(
            "http://127.0.0.1:{query}/api/traces?service=fertivision&start="
        )),
        "{traces_url}"
    );
    // The links answer: the log search of the alert's window has the failed uploads' errors.
    let logs_path = logs_url.split_once(&format!(":{query}")).unwrap().1;
    let (status, body) = http(query, "GET", logs_path, None, None).unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        query,
        "GET",
        traces_url.split_once(&format!(":{query}")).unwrap().1,
        None,
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"traceID\""), "{body}");

    // The same from the command line.
    let listed = fertivision(&["alerts", "list", "--status", "firing"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(
        text.contains("ApiAvailabilityBudgetBurn [page] fertivision"),
        "{text}"
    );
    assert!(
        text.contains("runbook: alerts/runbooks/ApiAvailabilityBudgetBurn.md"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "logs:    http://127.0.0.1:{query}/api/v1/logs/search?q=service%3Afertivision"
        )),
        "{text}"
    );
    let json = fertivision(&["alerts", "list", "--json", "--limit", "1"])
        .output()
        .unwrap();
    let line = String::from_utf8(json.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert!(first["alertname"].is_string());
    drop(running);
}
