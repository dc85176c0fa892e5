//! The platform as the chaos scenarios run it: a collector on its default pipeline, and
//! `fertivision serve` (one or more instances) and `fertivision worker` on a fresh PostgreSQL
//! database and a Redis key prefix of their own, reached through [`FaultProxy`]s (one to
//! PostgreSQL for the API, one for the worker, one to Redis), exporting their telemetry to the
//! collector through a fourth. Debian's Prometheus scrapes the collector with compose's
//! configuration and evaluates the generated alert rules, their `for:` durations read as
//! seconds instead of minutes. On request, the collector's log lives on a small tmpfs of its
//! own (a disk that can fill up), and compose's nginx balances the API instances. Everything is
//! stopped, the tmpfs unmounted and the database dropped when the [`Platform`] is dropped.
//!
//! PostgreSQL and Redis are the machine's (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; `REDIS_URL`, default `redis://127.0.0.1:6379`):
//! a scenario that cannot reach them fails.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::proxy::FaultProxy;

/// The `fertivision` binary beside the test binary (`target/<profile>/fertivision`).
pub fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary has no target directory")?;
    let binary = dir.join("fertivision");
    if !binary.is_file() {
        bail!(
            "{} is missing: build it first (cargo build -p fertivision; cargo test --workspace does)",
            binary.display()
        );
    }
    Ok(binary)
}

/// `N` distinct free loopback ports.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let ports = free_port_list(N);
    std::array::from_fn(|i| ports[i])
}

/// `n` distinct free loopback ports (all held while they are chosen, so none repeats).
pub fn free_port_list(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("address").port())
        .collect()
}

/// Host and port of a `scheme://[user@]host:port/...` URL.
fn address_of(url: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("not a URL: {url}"))?;
    let host = parsed.host_str().context("no host")?.to_owned();
    let port = parsed.port().unwrap_or(default_port);
    (host.as_str(), port)
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{host}:{port} does not resolve"))
}

/// How to run the platform; `Options::default()` is one API instance, nothing extra.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// `FERTIVISION_*` pairs added to every `serve` and `worker`.
    pub settings: &'a [(&'a str, &'a str)],
    /// How many `serve` processes (`serve`, `serve-2`, ...), each on its own port.
    pub api_instances: usize,
    /// Puts the collector's log (`<data>/wal/wal`) on a tmpfs of this many bytes.
    pub wal_disk_bytes: Option<u64>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            settings: &[],
            api_instances: 1,
            wal_disk_bytes: None,
        }
    }
}

/// The platform's processes, proxies and data.
pub struct Platform {
    /// The first API instance's base URL.
    pub api: String,
    /// Every API instance's base URL, in process order (`serve`, `serve-2`, ...).
    pub apis: Vec<String>,
    /// The collector's query API.
    pub query: String,
    /// The collector's OTLP/HTTP endpoint, direct (not through [`Platform::collector`]).
    pub otlp_http: String,
    /// Prometheus's base URL.
    pub prometheus: String,
    /// An admin token.
    pub token: String,
    /// Between the API and PostgreSQL.
    pub postgres: FaultProxy,
    /// Between the worker and PostgreSQL (so a scenario can slow the worker alone).
    pub worker_postgres: FaultProxy,
    /// Between the platform and Redis.
    pub redis: FaultProxy,
    /// Between the platform's OTLP exporters and the collector's OTLP/gRPC receiver.
    pub collector: FaultProxy,
    /// An HTTP client for the scenarios.
    pub http: reqwest::Client,
    /// The running processes by name; behind a lock so that scenarios sharing the platform
    /// can kill and start them.
    children: Mutex<Vec<(String, Child)>>,
    ports: Ports,
    /// The tmpfs holding the collector's log, when there is one.
    wal_mount: Option<PathBuf>,
    /// How `serve` and `worker` are started, to start them again.
    binary: PathBuf,
    app_env: Vec<(String, String)>,
    worker_database_url: String,
    admin_url: String,
    database: String,
    dir: tempfile::TempDir,
}

/// The loopback ports the platform listens on.
#[derive(Debug, Clone)]
struct Ports {
    query: u16,
    prometheus: u16,
    apis: Vec<u16>,
}

impl Platform {
    /// Starts everything, with `settings` (`FERTIVISION_*` pairs) added to `serve` and
    /// `worker`, and waits until the API is ready.
    pub async fn start(settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with(Options {
            settings,
            ..Options::default()
        })
        .await
    }

    /// Starts everything as `options` say, and waits until every API instance is ready and
    /// Prometheus has loaded the rules.
    pub async fn start_with(options: Options<'_>) -> anyhow::Result<Self> {
        let settings = options.settings;
        let binary = binary()?;
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let redis_url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let postgres = FaultProxy::start(address_of(&admin_url, 5432)?).await?;
        let worker_postgres = FaultProxy::start(address_of(&admin_url, 5432)?).await?;
        let redis = FaultProxy::start(address_of(&redis_url, 6379)?).await?;
        let suffix: String = (0..12)
            .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
            .collect();
        let database = format!("chaos_{suffix}");
        psql(&admin_url, &format!("CREATE DATABASE {database}"))?;
        let direct_url = with_database(&admin_url, &database, None)?;
        let proxied_url = with_database(&admin_url, &database, Some(postgres.address()))?;
        let worker_database_url =
            with_database(&admin_url, &database, Some(worker_postgres.address()))?;
        let dir = tempfile::tempdir()?;
        let mut ports = free_port_list(4 + options.api_instances.max(1));
        let api_ports = ports.split_off(4);
        let [grpc, otlp_http, query, prometheus] = [ports[0], ports[1], ports[2], ports[3]];
        let collector = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], grpc))).await?;
        let apis: Vec<String> = api_ports
            .iter()
            .map(|port| format!("http://127.0.0.1:{port}"))
            .collect();

        let mut platform = Platform {
            api: apis[0].clone(),
            apis,
            query: format!("http://127.0.0.1:{query}"),
            otlp_http: format!("http://127.0.0.1:{otlp_http}"),
            prometheus: format!("http://127.0.0.1:{prometheus}"),
            token: String::new(),
            postgres,
            worker_postgres,
            redis,
            collector,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            children: Mutex::default(),
            ports: Ports {
                query,
                prometheus,
                apis: api_ports,
            },
            wal_mount: None,
            binary: binary.clone(),
            app_env: Vec::new(),
            worker_database_url,
            admin_url,
            database,
            dir,
        };
        let root = platform.dir.path().to_path_buf();
        std::fs::write(
            root.join("pipeline.toml"),
            telemetry::config::DEFAULT_PIPELINE
                .replace("127.0.0.1:4317", &format!("127.0.0.1:{grpc}"))
                .replace("127.0.0.1:4318", &format!("127.0.0.1:{otlp_http}")),
        )?;
        if let Some(bytes) = options.wal_disk_bytes {
            let mount = root.join("collector").join("wal").join("wal");
            std::fs::create_dir_all(&mount)?;
            mount_tmpfs(&mount, bytes)?;
            platform.wal_mount = Some(mount);
        }
        platform.spawn("collector")?;
        platform.write_prometheus_config()?;
        platform.spawn("prometheus")?;

        let redis_proxy = platform.redis.address();
        let collector_proxy = platform.collector.address();
        let app_env: Vec<(String, String)> = [
            ("FERTIVISION_DATABASE__URL", proxied_url),
            ("FERTIVISION_REDIS__URL", format!("redis://{redis_proxy}")),
            ("FERTIVISION_REDIS__KEY_PREFIX", format!("chaos-{suffix}")),
            (
                "FERTIVISION_TELEMETRY__OTLP_ENDPOINT",
                format!("http://{collector_proxy}"),
            ),
            (
                "FERTIVISION_TELEMETRY__PROFILE_ENDPOINT",
                format!("http://127.0.0.1:{query}/ingest"),
            ),
            ("FERTIVISION_TELEMETRY__PROFILING", "false".to_owned()),
            (
                "FERTIVISION_TELEMETRY__METRICS_INTERVAL_MS",
                "500".to_owned(),
            ),
            ("FERTIVISION_TELEMETRY__BATCH_DELAY_MS", "200".to_owned()),
            ("FERTIVISION_LIMITS__ENABLED", "false".to_owned()),
            ("FERTIVISION_JOBS__POLL_INTERVAL_MS", "100".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(
            settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .collect();
        let command = |args: &[&str]| {
            let mut command = Command::new(&binary);
            command
                .args(args)
                .arg("--data-dir")
                .arg(root.join("app"))
                .envs(app_env.iter().map(|(k, v)| (k, v)));
            command
        };
        // Migrations and the token go straight to PostgreSQL, not through the proxy.
        let migrated = command(&["migrate"])
            .env("FERTIVISION_DATABASE__URL", &direct_url)
            .env("FERTIVISION_TELEMETRY__ENABLED", "false")
            .output()?;
        if !migrated.status.success() {
            bail!(
                "migrate failed: {}",
                String::from_utf8_lossy(&migrated.stderr)
            );
        }
        let token = command(&["token", "create", "--role", "admin"])
            .env("FERTIVISION_DATABASE__URL", &direct_url)
            .env("FERTIVISION_TELEMETRY__ENABLED", "false")
            .output()?;
        if !token.status.success() {
            bail!(
                "token create failed: {}",
                String::from_utf8_lossy(&token.stderr)
            );
        }
        platform.token = String::from_utf8(token.stdout)?.trim().to_owned();
        platform.app_env = app_env;
        for name in platform.api_names() {
            platform.spawn(&name)?;
        }
        platform.spawn("worker")?;
        for api in &platform.apis {
            platform
                .wait_for("the API to be ready", Duration::from_secs(60), || async {
                    platform
                        .http
                        .get(format!("{api}/readyz"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                })
                .await?;
        }
        platform
            .wait_for(
                "Prometheus to load the rules",
                Duration::from_secs(60),
                || async {
                    platform
                        .get_json(&format!("{}/api/v1/rules", platform.prometheus))
                        .await
                        .is_some_and(|v| {
                            v["data"]["groups"]
                                .as_array()
                                .is_some_and(|g| !g.is_empty())
                        })
                },
            )
            .await?;
        Ok(platform)
    }

    /// The process names of the API instances: `serve`, `serve-2`, ...
    pub fn api_names(&self) -> Vec<String> {
        (1..=self.apis.len())
            .map(|i| {
                if i == 1 {
                    "serve".to_owned()
                } else {
                    format!("serve-{i}")
                }
            })
            .collect()
    }

    /// Compose's Prometheus configuration on loopback, scraping and evaluating every second,
    /// and the generated rules with every `for: Nm` read as `for: Ns`.
    fn write_prometheus_config(&self) -> anyhow::Result<()> {
        let root = self.dir.path();
        let rules = root.join("rules");
        std::fs::create_dir_all(&rules)?;
        std::fs::write(
            rules.join("fertivision.rules.yml"),
            minutes_as_seconds(GENERATED_RULES),
        )?;
        let config = adapted(
            COMPOSE_PROMETHEUS,
            &[
                ("scrape_interval: 15s", "scrape_interval: 1s".to_owned()),
                (
                    "evaluation_interval: 15s",
                    "evaluation_interval: 1s".to_owned(),
                ),
                (
                    "/etc/prometheus/rules/*.yml",
                    format!("{}/*.yml", rules.display()),
                ),
                ("collector:7070", format!("127.0.0.1:{}", self.ports.query)),
                // No Alertmanager here: the scenarios read alerts from Prometheus.
                ("alertmanager:9093", "127.0.0.1:9".to_owned()),
                (
                    "localhost:9090",
                    format!("127.0.0.1:{}", self.ports.prometheus),
                ),
            ],
        )?;
        std::fs::write(root.join("prometheus.yml"), config)?;
        Ok(())
    }

    /// Starts `collector`, `prometheus`, `serve` (or `serve-N`), `worker` (or `worker-N`, one
    /// more worker) or `nginx` (again), its stderr appended to `<name>.log`.
    pub fn spawn(&self, name: &str) -> anyhow::Result<()> {
        let root = self.dir.path().to_path_buf();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))?;
        let mut command = match name {
            "collector" => {
                let mut command = Command::new(&self.binary);
                command
                    .args(["collector", "--data-dir"])
                    .arg(root.join("collector"))
                    .env(
                        "FERTIVISION_COLLECTOR__PIPELINE",
                        root.join("pipeline.toml"),
                    )
                    .env(
                        "FERTIVISION_COLLECTOR__QUERY_LISTEN",
                        format!("127.0.0.1:{}", self.ports.query),
                    )
                    .env("RUST_LOG", "warn");
                command
            }
            "prometheus" => {
                let mut command = Command::new("prometheus");
                command
                    .arg(format!(
                        "--config.file={}",
                        root.join("prometheus.yml").display()
                    ))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        root.join("prometheus").display()
                    ))
                    .arg(format!(
                        "--web.listen-address=127.0.0.1:{}",
                        self.ports.prometheus
                    ));
                command
            }
            "nginx" => {
                let mut command = Command::new("nginx");
                command
                    .arg("-c")
                    .arg(root.join("nginx.conf"))
                    .args(["-g", "daemon off;"]);
                command
            }
            worker if worker.starts_with("worker") => {
                let mut command = self.app_command(&["worker", "--concurrency", "2"]);
                command.env("FERTIVISION_DATABASE__URL", &self.worker_database_url);
                command
            }
            api => {
                let index = self
                    .api_names()
                    .iter()
                    .position(|n| n == api)
                    .with_context(|| format!("no process {api}"))?;
                let mut command = self.app_command(&["serve"]);
                command.env(
                    "FERTIVISION_API__LISTEN",
                    format!("127.0.0.1:{}", self.ports.apis[index]),
                );
                command
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("{name} starts (.ci/run installs Debian's tools)"))?;
        self.processes().push((name.to_owned(), child));
        Ok(())
    }

    fn app_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path().join("app"))
            .envs(self.app_env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// SIGKILLs every process called `name` and forgets it.
    pub fn kill(&self, name: &str) {
        let mut children = self.processes();
        for (_, child) in children.iter_mut().filter(|(n, _)| n == name) {
            let _ = child.kill();
            let _ = child.wait();
        }
        children.retain(|(n, _)| n != name);
    }

    fn processes(&self) -> MutexGuard<'_, Vec<(String, Child)>> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`, ...) to every process called `name`.
    pub fn signal(&self, name: &str, signal: &str) -> anyhow::Result<()> {
        let mut sent = 0;
        for (_, child) in self.processes().iter().filter(|(n, _)| n == name) {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()?;
            if !status.success() {
                bail!("kill -{signal} {name} failed");
            }
            sent += 1;
        }
        if sent == 0 {
            bail!("no process {name}");
        }
        Ok(())
    }

    /// Whether the process called `name` is still running.
    pub fn running(&self, name: &str) -> bool {
        self.processes()
            .iter_mut()
            .any(|(n, child)| n == name && matches!(child.try_wait(), Ok(None)))
    }

    /// Polls `probe` every 100 ms until it holds; how long that took, or an error after
    /// `limit`.
    pub async fn wait_for<F, Fut>(
        &self,
        what: &str,
        limit: Duration,
        mut probe: F,
    ) -> anyhow::Result<Duration>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            if probe().await {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                bail!("{what}: not within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A request with the admin token: status (0 when it got no answer) and how long it took.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, Duration, String) {
        let started = Instant::now();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                (status, started.elapsed(), text)
            }
            Err(_) => (0, started.elapsed(), String::new()),
        }
    }

    /// Uploads `bytes` as a plain-text lab report of `patient`: status and body.
    pub async fn upload(&self, patient: &str, filename: &str, bytes: &[u8]) -> (u16, String) {
        let boundary = "chaos-upload-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"document_type\"\r\n\r\nlab_report\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: text/plain\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let sent = self
            .http
            .post(format!("{}/api/v1/patients/{patient}/documents", self.api))
            .bearer_auth(&self.token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// The largest value of the series of `name` whose labels include every `labels` pair,
    /// as the collector's `/metrics` serves it now.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.query))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter(|line| {
                labels
                    .iter()
                    .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|line| {
                let after = line.rsplit_once('}').map_or(line, |(_, rest)| rest);
                after.split_whitespace().next()?.parse::<f64>().ok()
            })
            .reduce(f64::max)
    }

    /// Waits until the largest series of `name` with `labels` is above `floor`.
    pub async fn metric_above(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        floor: f64,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        self.wait_for(&format!("{name} above {floor}"), limit, || async {
            self.metric(name, labels).await.is_some_and(|v| v > floor)
        })
        .await
    }

    /// The API's breaker for `dependency` as its metric shows it now: 0 closed, 1 half-open,
    /// 2 open (`None` before its first transition).
    pub async fn api_breaker(&self, dependency: &str) -> Option<f64> {
        self.metric(
            "fertivision_breaker_state_ratio",
            &[("job", "fertivision-api"), ("dependency", dependency)],
        )
        .await
    }

    /// How many log records of the last 15 minutes match `query` in the collector's index
    /// (the search's `total`, not limited to a page); `None` when the search does not answer.
    pub async fn log_total(&self, query: &str) -> Option<u64> {
        let body: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/logs/search", self.query))
            .query(&[("q", query), ("start", "15m"), ("limit", "1")])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["total"].as_u64()
    }

    /// The object storage directory of `serve` and `worker` (local storage).
    pub fn objects_dir(&self) -> PathBuf {
        self.dir.path().join("app").join("objects")
    }

    /// Where the processes' stderr goes (`serve.log`, `worker.log`, `collector.log`, ...).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// A GET answered with JSON, or `None`.
    pub async fn get_json(&self, url: &str) -> Option<serde_json::Value> {
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    /// The state (`pending`, `firing`) of the alert `name` whose labels include every `labels`
    /// pair, as Prometheus evaluates it now; `None` when it is not active.
    pub async fn alert(&self, name: &str, labels: &[(&str, &str)]) -> Option<String> {
        let alerts = self
            .get_json(&format!("{}/api/v1/alerts", self.prometheus))
            .await?;
        alerts["data"]["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .filter(|a| labels.iter().all(|(k, v)| a["labels"][*k] == *v))
            .filter_map(|a| a["state"].as_str())
            .max_by_key(|state| *state == "firing")
            .map(str::to_owned)
    }

    /// Waits until the alert `name` (with `labels`) fires in Prometheus.
    pub async fn alert_fires(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        self.wait_for(&format!("{name} to fire"), limit, || async {
            self.alert(name, labels).await.as_deref() == Some("firing")
        })
        .await
    }

    /// Starts compose's nginx (`compose/nginx/nginx.conf`) on loopback in front of the API
    /// instances, and returns its base URL. Adapted: the three `appN:8080` upstreams become the
    /// instances running here (those beyond them are left out); Debian's nginx has no `resolve`
    /// and no Docker DNS; files go to the scenario's directory.
    pub async fn start_nginx(&self) -> anyhow::Result<String> {
        let [port] = free_ports::<1>();
        let dir = self.dir.path().display().to_string();
        let mut replacements: Vec<(String, String)> = [
            (" resolve;", ";".to_owned()),
            (
                "    resolver 127.0.0.11 valid=10s ipv6=off;\n",
                String::new(),
            ),
            (
                "listen 80 default_server;",
                format!("listen 127.0.0.1:{port} default_server;"),
            ),
            ("/var/log/nginx/", format!("{dir}/nginx-")),
            ("/var/run/nginx.pid", format!("{dir}/nginx.pid")),
        ]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), to))
        .collect();
        for i in 1..=3 {
            let from = format!("        server app{i}:8080 max_fails=3 fail_timeout=10s;\n");
            let to = match self.ports.apis.get(i - 1) {
                Some(api) => from.replace(&format!("app{i}:8080"), &format!("127.0.0.1:{api}")),
                None => String::new(),
            };
            replacements.push((from, to));
        }
        // ` resolve;` goes first, so the server lines match without it.
        let replacements: Vec<(&str, String)> = replacements
            .iter()
            .map(|(from, to)| (from.as_str(), to.clone()))
            .collect();
        let text = adapted(COMPOSE_NGINX, &replacements)?;
        std::fs::write(self.dir.path().join("nginx.conf"), text)?;
        self.spawn("nginx")?;
        let url = format!("http://127.0.0.1:{port}");
        self.wait_for("nginx", Duration::from_secs(10), || async {
            self.http
                .get(format!("{url}/nginx-health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await?;
        Ok(url)
    }

    /// nginx's access log, one JSON object per request (compose's `fertivision` format).
    pub fn nginx_access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("nginx-access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Fills the collector's log disk (see [`Options::wal_disk_bytes`]) with a file of zeros
    /// until a write fails for want of space; returns how many bytes it took.
    pub fn fill_wal_disk(&self) -> anyhow::Result<u64> {
        use std::io::Write;
        let mount = self.wal_mount.as_ref().context("no tmpfs for the log")?;
        let mut filler = File::create(mount.join("filler"))?;
        let chunk = vec![0u8; 64 << 10];
        let mut written = 0;
        loop {
            match filler.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(written)
    }

    /// Removes what [`Platform::fill_wal_disk`] wrote.
    pub fn free_wal_disk(&self) -> anyhow::Result<()> {
        let mount = self.wal_mount.as_ref().context("no tmpfs for the log")?;
        std::fs::remove_file(mount.join("filler"))?;
        Ok(())
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for (name, child) in self.processes().iter_mut() {
            if name == "nginx" {
                // Its workers outlive a SIGKILLed master: a graceful stop takes them along.
                let _ = Command::new("kill").arg(child.id().to_string()).status();
            } else {
                // A stopped process gets the SIGKILL all the same.
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if let Some(mount) = &self.wal_mount {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
        );
    }
}

/// Compose's Prometheus configuration.
const COMPOSE_PROMETHEUS: &str = include_str!("../../compose/prometheus/prometheus.yml");
/// Compose's nginx configuration.
const COMPOSE_NGINX: &str = include_str!("../../compose/nginx/nginx.conf");
/// The rules the `alerts` crate generates.
const GENERATED_RULES: &str = include_str!("../../alerts/generated/rules/fertivision.rules.yml");

/// `text` with each `(from, to)` replaced; every `from` must be there.
fn adapted(text: &str, replacements: &[(&str, String)]) -> anyhow::Result<String> {
    let mut text = text.to_owned();
    for (from, to) in replacements {
        if !text.contains(from) {
            bail!("the compose file no longer has {from:?}");
        }
        text = text.replace(from, to);
    }
    Ok(text)
}

/// Rules with every `for: Nm` as `for: Ns`: a minute of production is a second here.
fn minutes_as_seconds(rules: &str) -> String {
    rules
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match trimmed
                .strip_prefix("for: ")
                .and_then(|d| d.strip_suffix('m'))
            {
                Some(minutes) if minutes.chars().all(|c| c.is_ascii_digit()) => {
                    format!("{}for: {minutes}s", &line[..line.len() - trimmed.len()])
                }
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Mounts a tmpfs of `bytes` at `dir` (root, as on the CI machines).
fn mount_tmpfs(dir: &Path, bytes: u64) -> anyhow::Result<()> {
    let output = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
        .arg(dir)
        .output()
        .context("mount runs")?;
    if !output.status.success() {
        bail!(
            "mounting a {bytes}-byte tmpfs for the collector's log failed (the scenario needs root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Runs one statement with psql against the database of `url`.
fn psql(url: &str, statement: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", statement])
        .output()
        .context("psql runs (PostgreSQL's client)")?;
    if !output.status.success() {
        bail!(
            "psql {statement}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// `url` with its database replaced by `database`, and its address by `through` when given.
fn with_database(url: &str, database: &str, through: Option<SocketAddr>) -> anyhow::Result<String> {
    let mut parsed = reqwest::Url::parse(url)?;
    parsed.set_path(&format!("/{database}"));
    if let Some(address) = through {
        parsed
            .set_host(Some(&address.ip().to_string()))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        parsed
            .set_port(Some(address.port()))
            .map_err(|()| anyhow::anyhow!("cannot set the port of {url}"))?;
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_durations_are_read_as_seconds() {
        let rules =
            "  - alert: A\n    for: 5m\n    expr: rate(x[5m]) > 0\n  - alert: B\n    for: 30s\n";
        assert_eq!(
            minutes_as_seconds(rules),
            "  - alert: A\n    for: 5s\n    expr: rate(x[5m]) > 0\n  - alert: B\n    for: 30s"
        );
        assert!(minutes_as_seconds(GENERATED_RULES).contains("for: 1s"));
        assert!(!minutes_as_seconds(GENERATED_RULES).contains("for: 1m"));
    }

    #[test]
    fn a_compose_file_that_changed_is_reported() {
        let error = adapted("a: 1", &[("b: 2", "b: 3".to_owned())]).unwrap_err();
        assert!(error.to_string().contains("b: 2"), "{error}");
        assert_eq!(
            adapted("a: 1", &[("a: 1", "a: 2".to_owned())]).unwrap(),
            "a: 2"
        );
    }
}
