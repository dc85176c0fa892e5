//! The compose deployment (`compose/`) is checked by the tools that will run it: docker-compose
//! validates the file (with the defaults and with `.env.example`), promtool the Prometheus
//! configuration, amtool the Alertmanager configuration, `nginx -t` the nginx configuration
//! (adapted to loopback: Debian's nginx lacks `resolve`, and the app hosts exist only in
//! compose's network); and it wires in what the generators
//! produce: Prometheus loads `alerts/generated/rules`, Grafana `dashboards/generated`, the
//! scrape job is the one the alerts name.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Runs a tool from Debian's packages (`.ci/run` installs them); its output when it succeeds.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs ({e}); .ci/run installs it"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{program} {args:?}:\n{text}");
    text
}

#[test]
fn docker_compose_accepts_the_deployment_and_mounts_the_generated_files() {
    let file = "compose/docker-compose.yml";
    run("docker-compose", &["-f", file, "config", "-q"]);
    run(
        "docker-compose",
        &[
            "-f",
            file,
            "--env-file",
            "compose/.env.example",
            "config",
            "-q",
        ],
    );
    let resolved = run("docker-compose", &["-f", file, "config"]);
    let root = repo().canonicalize().expect("repo");
    for mounted in ["alerts/generated/rules", "dashboards/generated"] {
        let path = root.join(mounted);
        assert!(
            resolved.contains(&path.display().to_string()),
            "{mounted} is not mounted:\n{resolved}"
        );
        assert!(path.is_dir(), "{mounted} exists");
    }
    for service in [
        "nginx",
        "app1",
        "app2",
        "app3",
        "worker1",
        "worker2",
        "postgres",
        "redis",
        "minio",
        "collector",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(
            resolved.contains(&format!("\n  {service}:\n")),
            "service {service} missing"
        );
    }
}

#[test]
fn promtool_and_amtool_accept_the_configurations() {
    let out = run(
        "promtool",
        &["check", "config", "compose/prometheus/prometheus.yml"],
    );
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run(
        "amtool",
        &["check-config", "compose/alertmanager/alertmanager.yml"],
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn nginx_accepts_its_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text =
        std::fs::read_to_string(repo().join("compose/nginx/nginx.conf")).expect("nginx.conf");
    let adapted = text
        .replace(" resolve;", ";")
        .replace("app1:8080", "127.0.0.1:18081")
        .replace("app2:8080", "127.0.0.1:18082")
        .replace("app3:8080", "127.0.0.1:18083")
        .replace("/var/log/nginx/", &format!("{}/", dir.path().display()))
        .replace(
            "/var/run/nginx.pid",
            &format!("{}/nginx.pid", dir.path().display()),
        );
    assert!(text.contains("limit_req zone=fv_api"), "rate limits");
    assert!(text.contains("gzip on;"), "gzip");
    assert!(
        text.contains("least_conn;") && text.contains("max_fails=3"),
        "balancing, health"
    );
    assert!(
        text.contains("listen 443 ssl;"),
        "the TLS server, ready to enable"
    );
    let config = dir.path().join("nginx.conf");
    std::fs::write(&config, adapted).expect("write");
    let out = run("nginx", &["-t", "-c", &config.display().to_string()]);
    assert!(out.contains("test is successful"), "{out}");
}

#[test]
fn the_deployment_matches_what_the_alerts_and_dashboards_expect() {
    let prometheus =
        std::fs::read_to_string(repo().join("compose/prometheus/prometheus.yml")).unwrap();
    assert!(prometheus.contains(&format!("job_name: {}", alerts::COLLECTOR_JOB)));
    assert!(prometheus.contains("/etc/prometheus/rules/*.yml"));
    let datasources = std::fs::read_to_string(
        repo().join("compose/grafana/provisioning/datasources/datasources.yml"),
    )
    .unwrap();
    assert!(
        datasources.contains("uid: prometheus"),
        "the dashboards' datasource uid"
    );
    assert!(
        datasources.contains("datasourceUid: traces"),
        "exemplars open traces"
    );
    let alertmanager =
        std::fs::read_to_string(repo().join("compose/alertmanager/alertmanager.yml")).unwrap();
    assert!(alertmanager.contains("/api/v1/alerts/webhook"));
    let dockerfile = std::fs::read_to_string(repo().join("compose/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("\nUSER 10001:10001\n"),
        "the image runs as non-root"
    );
}
