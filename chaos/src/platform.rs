//! The platform as the chaos scenarios run it: a collector on its default pipeline, and
//! `fertivision serve` and `fertivision worker` on a fresh PostgreSQL database and a Redis key
//! prefix of their own, reached through [`FaultProxy`]s (one to PostgreSQL for the API, one
//! for the worker, one to Redis), exporting their telemetry to the
//! collector. Everything is stopped, and the database dropped, when the [`Platform`] is
//! dropped.
//!
//! PostgreSQL and Redis are the machine's (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`; `REDIS_URL`, default `redis://127.0.0.1:6379`):
//! a scenario that cannot reach them fails.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("address").port())
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

/// The platform's processes, proxies and data.
pub struct Platform {
    /// The API's base URL.
    pub api: String,
    /// The collector's query API.
    pub query: String,
    /// An admin token.
    pub token: String,
    /// Between the API and PostgreSQL.
    pub postgres: FaultProxy,
    /// Between the worker and PostgreSQL (so a scenario can slow the worker alone).
    pub worker_postgres: FaultProxy,
    /// Between the platform and Redis.
    pub redis: FaultProxy,
    /// An HTTP client for the scenarios.
    pub http: reqwest::Client,
    children: Vec<(&'static str, Child)>,
    /// How `serve` and `worker` are started, to start them again.
    binary: PathBuf,
    app_env: Vec<(String, String)>,
    worker_database_url: String,
    admin_url: String,
    database: String,
    dir: tempfile::TempDir,
}

impl Platform {
    /// Starts everything, with `settings` (`FERTIVISION_*` pairs) added to `serve` and
    /// `worker`, and waits until the API is ready.
    pub async fn start(settings: &[(&str, &str)]) -> anyhow::Result<Self> {
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
        let [grpc, otlp_http, query, api] = free_ports::<4>();

        let mut platform = Platform {
            api: format!("http://127.0.0.1:{api}"),
            query: format!("http://127.0.0.1:{query}"),
            token: String::new(),
            postgres,
            worker_postgres,
            redis,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            children: Vec::new(),
            binary: binary.clone(),
            app_env: Vec::new(),
            worker_database_url,
            admin_url,
            database,
            dir,
        };
        let root = platform.dir.path().to_path_buf();
        let pipeline = root.join("pipeline.toml");
        std::fs::write(
            &pipeline,
            telemetry::config::DEFAULT_PIPELINE
                .replace("127.0.0.1:4317", &format!("127.0.0.1:{grpc}"))
                .replace("127.0.0.1:4318", &format!("127.0.0.1:{otlp_http}")),
        )?;
        let collector = Command::new(&binary)
            .args(["collector", "--data-dir"])
            .arg(root.join("collector"))
            .env("FERTIVISION_COLLECTOR__PIPELINE", &pipeline)
            .env(
                "FERTIVISION_COLLECTOR__QUERY_LISTEN",
                format!("127.0.0.1:{query}"),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(File::create(root.join("collector.log"))?)
            .spawn()?;
        platform.children.push(("collector", collector));

        let redis_proxy = platform.redis.address();
        let app_env: Vec<(String, String)> = [
            ("FERTIVISION_DATABASE__URL", proxied_url),
            ("FERTIVISION_REDIS__URL", format!("redis://{redis_proxy}")),
            ("FERTIVISION_REDIS__KEY_PREFIX", format!("chaos-{suffix}")),
            ("FERTIVISION_API__LISTEN", format!("127.0.0.1:{api}")),
            (
                "FERTIVISION_TELEMETRY__OTLP_ENDPOINT",
                format!("http://127.0.0.1:{grpc}"),
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
        platform.spawn("serve")?;
        platform.spawn("worker")?;
        platform
            .wait_for("the API to be ready", Duration::from_secs(60), || async {
                platform
                    .http
                    .get(format!("{}/readyz", platform.api))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await?;
        Ok(platform)
    }

    /// Starts `serve` or `worker` (again), its stderr appended to `<name>.log`.
    pub fn spawn(&mut self, name: &'static str) -> anyhow::Result<()> {
        let args: &[&str] = match name {
            "serve" => &["serve"],
            "worker" => &["worker", "--concurrency", "2"],
            other => bail!("no process {other}"),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))?;
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path().join("app"))
            .envs(self.app_env.iter().map(|(k, v)| (k, v)));
        if name == "worker" {
            command.env("FERTIVISION_DATABASE__URL", &self.worker_database_url);
        }
        let child = command.stdout(Stdio::null()).stderr(log).spawn()?;
        self.children.push((name, child));
        Ok(())
    }

    /// SIGKILLs every process called `name` and forgets it.
    pub fn kill(&mut self, name: &str) {
        for (_, child) in self.children.iter_mut().filter(|(n, _)| *n == name) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.retain(|(n, _)| *n != name);
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

    /// The API's breaker for `dependency` as its metric shows it now: 0 closed, 1 half-open,
    /// 2 open (`None` before its first transition).
    pub async fn api_breaker(&self, dependency: &str) -> Option<f64> {
        self.metric(
            "fertivision_breaker_state_ratio",
            &[("job", "fertivision-api"), ("dependency", dependency)],
        )
        .await
    }

    /// How many log records of the last 15 minutes match `query` in the collector's index.
    pub async fn log_hits(&self, query: &str) -> usize {
        let Ok(response) = self
            .http
            .get(format!("{}/api/v1/logs/search", self.query))
            .query(&[("q", query), ("start", "15m"), ("limit", "100")])
            .send()
            .await
        else {
            return 0;
        };
        let Ok(body) = response.json::<serde_json::Value>().await else {
            return 0;
        };
        body["hits"].as_array().map_or(0, Vec::len)
    }

    /// The object storage directory of `serve` and `worker` (local storage).
    pub fn objects_dir(&self) -> PathBuf {
        self.dir.path().join("app").join("objects")
    }

    /// Where the processes' stderr goes (`serve.log`, `worker.log`, `collector.log`).
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
        );
    }
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
