//! Settings: a TOML file, then `FERTIVISION_*` environment overrides, validated at start.
//!
//! Every key is documented below and in `fertivision.example.toml`. Unknown keys, in the file or
//! in the environment, are errors: a typo must not silently fall back to a default.
//!
//! Environment overrides use `__` between levels: `FERTIVISION_DATABASE__URL=postgres://...`
//! sets `database.url`, `FERTIVISION_API__LISTEN=0.0.0.0:8080` sets `api.listen`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The prefix of environment overrides.
pub const ENV_PREFIX: &str = "FERTIVISION_";

/// Everything the service reads at start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the embedded defaults: the SQLite database and local object storage.
    pub data_dir: PathBuf,
    /// The HTTP API.
    pub api: ApiConfig,
    /// The relational database.
    pub database: DatabaseConfig,
    /// Where uploaded documents are kept.
    pub storage: StorageConfig,
    /// Redis: job stream, cache and shared rate limits. Without it, all three are embedded.
    pub redis: RedisConfig,
    /// Background jobs and workers.
    pub jobs: JobsConfig,
    /// Read-through cache of patients, scores and summary pages.
    pub cache: CacheConfig,
    /// Per-token rate limits (DOMAIN.md).
    pub limits: LimitsConfig,
    /// The telemetry collector (`fertivision collector`, and inside `up`).
    pub collector: CollectorConfig,
    /// Log output of this process (stderr).
    pub log: LogConfig,
    /// What this process exports about itself to the collector.
    pub telemetry: TelemetryConfig,
    /// Alert notifications from Alertmanager.
    pub alerts: AlertsConfig,
}

/// Alert notifications from Alertmanager (`POST /api/v1/alerts/webhook`, `fertivision alerts
/// list`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The bearer token Alertmanager sends (its webhook's `http_config.authorization`); empty:
    /// the webhook refuses every notification.
    pub webhook_token: String,
    /// The collector's query API as the reader of the alerts reaches it: the base of each
    /// alert's links to its logs and traces.
    pub query_url: String,
    /// Alerts one notification may carry; more is refused (413).
    pub max_alerts_per_notification: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_token: String::new(),
            query_url: "http://127.0.0.1:7070".to_owned(),
            max_alerts_per_notification: 1000,
        }
    }
}

/// The HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted upload, in bytes (the clinic limit is 10 MB).
    pub max_upload_bytes: u64,
    /// Largest accepted JSON body, in bytes.
    pub max_json_bytes: usize,
    /// A request still running after this many seconds is answered 503.
    pub request_timeout_secs: u64,
    /// Requests slower than this many milliseconds are logged as slow.
    pub slow_request_ms: u64,
    /// Seconds to let in-flight requests finish after SIGTERM.
    pub shutdown_grace_secs: u64,
}

/// The relational database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://...` for PostgreSQL, `sqlite://...` for SQLite. Empty: SQLite at
    /// `<data_dir>/fertivision.db`.
    pub url: String,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// Seconds to wait for a pooled connection before failing the request.
    pub acquire_timeout_secs: u64,
    /// Milliseconds one store call (all its statements) may take before it fails.
    pub call_timeout_ms: u64,
    /// Whether the circuit breaker may open (off only to compare against a broken platform).
    pub breaker_enabled: bool,
    /// Consecutive unavailable calls (timeouts, connection errors) that open the breaker.
    pub breaker_failure_threshold: u32,
    /// Milliseconds the breaker stays open before one probe call is let through.
    pub breaker_open_ms: u64,
}

/// Object storage for uploaded documents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "backend", rename_all = "lowercase")]
pub enum StorageConfig {
    /// Files under a local directory. Empty `path`: `<data_dir>/objects`.
    Local {
        /// Root directory of the objects.
        // Not written when empty: the defaults are merged key by key under a file or the
        // environment, and an empty `path` left behind would make `backend = "s3"` invalid.
        #[serde(default, skip_serializing_if = "path_is_empty")]
        path: PathBuf,
    },
    /// An S3-compatible bucket (AWS S3, MinIO).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Endpoint URL, e.g. `http://minio:9000`; empty for AWS.
        #[serde(default)]
        endpoint: String,
        /// Region name.
        #[serde(default = "default_region")]
        region: String,
        /// Access key id; empty to use the environment's AWS credentials.
        #[serde(default)]
        access_key_id: String,
        /// Secret access key.
        #[serde(default)]
        secret_access_key: String,
        /// Allow plain HTTP to the endpoint (MinIO in a private network).
        #[serde(default)]
        allow_http: bool,
    },
}

fn path_is_empty(path: &Path) -> bool {
    path.as_os_str().is_empty()
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// Redis, for production. Empty `url`: the embedded defaults (database queue, in-process cache
/// and rate limits).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:6379/0`, or empty for no Redis.
    pub url: String,
    /// Prefix of every key this service writes, so that several deployments (or test runs)
    /// can share a server.
    pub key_prefix: String,
    /// Milliseconds a Redis command may take before it counts as failed.
    pub command_timeout_ms: u64,
}

/// Background jobs: queue semantics and workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs a worker process runs at once.
    pub concurrency: usize,
    /// Attempts before a job is dead (dead-letter).
    pub max_attempts: i32,
    /// First retry delay in milliseconds; doubles per attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Largest retry delay in milliseconds.
    pub backoff_max_ms: u64,
    /// Seconds a worker holds a job; past it another worker may take the job over, and a
    /// running job is abandoned as failed.
    pub lease_secs: u64,
    /// Redis: milliseconds a delivered message may sit unacknowledged with a consumer before
    /// another consumer reclaims it (the consumer died).
    pub reclaim_idle_ms: u64,
    /// Milliseconds between reconciler passes (expired leases, due retries, lost stream).
    pub reconcile_interval_ms: u64,
    /// Milliseconds between polls of the database queue when it is empty.
    pub poll_interval_ms: u64,
    /// Seconds in-flight jobs get to finish after SIGTERM before they are released.
    pub shutdown_grace_secs: u64,
}

/// The read-through cache: in-process by default, Redis when `redis.url` is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Whether reads are cached at all.
    pub enabled: bool,
    /// Seconds an entry lives (writes invalidate it sooner).
    pub ttl_secs: u64,
    /// Largest number of in-process entries.
    pub capacity: u64,
    /// Milliseconds a Redis cache lookup or fill may take before the read goes to the
    /// database instead (a cache slower than the database is no cache).
    pub redis_timeout_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_secs: 60,
            capacity: 10_000,
            redis_timeout_ms: 100,
        }
    }
}

/// Rate limits per token: patient creation 10/min, document upload 5/min, report generation
/// 3/min, 1000 requests/hour (the clinic's limits; shared through Redis when configured).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Whether the limits apply.
    pub enabled: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The telemetry collector: its pipeline, write-ahead log and query port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// The pipeline file (`[sources.*]`, `[transforms.*]`, `[sinks.*]`); empty: the built-in
    /// default (OTLP on 127.0.0.1:4317 and :4318, Pyroscope `/ingest`, redaction, the
    /// Prometheus endpoint, the profile store, and the log and span index).
    pub pipeline: PathBuf,
    /// Address of the query port: `/metrics`, `/ingest`, `/api/v1/profiles/...`, the search
    /// API (`/api/v1/logs/...`, `/api/v1/traces/...`), Jaeger's query API, `/healthz`.
    pub query_listen: SocketAddr,
    /// Bytes the write-ahead log (`<data_dir>/wal`) may hold; past it senders are told to
    /// retry later.
    pub wal_max_bytes: u64,
    /// Sync every accepted batch to disk before acknowledging it (off only for benchmarks).
    pub fsync: bool,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            pipeline: PathBuf::new(),
            query_listen: SocketAddr::from(([0, 0, 0, 0], 7070)),
            wal_max_bytes: 1024 * 1024 * 1024,
            fsync: true,
        }
    }
}

/// What the API and the workers export about themselves: traces, logs and metrics over
/// OTLP/gRPC, CPU profiles to `/ingest`. A collector that is down or refusing costs nothing but the lost telemetry,
/// which is counted (`fertivision_telemetry_lost_total`) and reported on the process log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Export at all; off, the process log on stderr is all there is.
    pub enabled: bool,
    /// The collector's OTLP/gRPC endpoint.
    pub otlp_endpoint: String,
    /// Spans, and separately log records, waiting for export at most; past it new ones are
    /// dropped and counted.
    pub queue_size: usize,
    /// Spans, or log records, sent in one export at most, 1 to `queue_size`. A full batch
    /// leaves at once; exports are serial, and each waits for the collector to sync it, so
    /// at a high rate the batch size bounds what gets through (BENCHMARKS.md).
    pub export_batch_size: usize,
    /// How often queued spans and log records are sent, in milliseconds.
    pub batch_delay_ms: u64,
    /// How often the metrics are pushed, in milliseconds.
    pub metrics_interval_ms: u64,
    /// How long one export may take, in milliseconds.
    pub export_timeout_ms: u64,
    /// The share of traces recorded and exported, 0 to 1. A request whose incoming
    /// `traceparent` is sampled is always recorded; every response still names its trace.
    pub trace_sample_ratio: f64,
    /// Traces this process starts and records a second at most, on average (bursts up to a
    /// second's worth); those past it are not recorded, like those the ratio leaves out. Below
    /// it every trace is kept; at saturation tracing costs a fixed amount instead of growing
    /// with the load. 0: no limit. A caller's sampled `traceparent` is recorded regardless.
    pub max_traces_per_second: u32,
    /// Log records below `WARN` of a trace that sampling left out are not exported, so the
    /// logs cost what the traces do; warnings, errors and records outside any trace always
    /// are. `false` exports every record whatever the sampling.
    pub logs_follow_sampling: bool,
    /// Continuous CPU profiling (pprof at 99 Hz), pushed to `profile_endpoint`.
    pub profiling: bool,
    /// The collector's Pyroscope-compatible `/ingest`.
    pub profile_endpoint: String,
    /// Seconds of each profile window; one push per window.
    pub profile_interval_secs: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            otlp_endpoint: "http://127.0.0.1:4317".to_owned(),
            queue_size: 8192,
            export_batch_size: 2048,
            batch_delay_ms: 1000,
            metrics_interval_ms: 10_000,
            export_timeout_ms: 5000,
            trace_sample_ratio: 1.0,
            max_traces_per_second: 100,
            logs_follow_sampling: true,
            profiling: true,
            profile_endpoint: "http://127.0.0.1:7070/ingest".to_owned(),
            profile_interval_secs: 15,
        }
    }
}

/// Log output of this process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info,fertivision=debug`.
    pub filter: String,
    /// `text` for people, `json` for machines.
    pub format: LogFormat,
}

/// Format of the process log.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            api: ApiConfig::default(),
            database: DatabaseConfig::default(),
            storage: StorageConfig::Local {
                path: PathBuf::new(),
            },
            redis: RedisConfig::default(),
            jobs: JobsConfig::default(),
            cache: CacheConfig::default(),
            limits: LimitsConfig::default(),
            collector: CollectorConfig::default(),
            log: LogConfig::default(),
            telemetry: TelemetryConfig::default(),
            alerts: AlertsConfig::default(),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            key_prefix: "fertivision".to_owned(),
            command_timeout_ms: 1000,
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_attempts: 5,
            backoff_base_ms: 1000,
            backoff_max_ms: 60_000,
            lease_secs: 120,
            reclaim_idle_ms: 150_000,
            reconcile_interval_ms: 1000,
            poll_interval_ms: 250,
            shutdown_grace_secs: 20,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_upload_bytes: 10 * 1024 * 1024,
            max_json_bytes: 256 * 1024,
            request_timeout_secs: 30,
            slow_request_ms: 1000,
            shutdown_grace_secs: 20,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 16,
            acquire_timeout_secs: 5,
            call_timeout_ms: 5000,
            breaker_enabled: true,
            breaker_failure_threshold: 5,
            breaker_open_ms: 10_000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// A configuration that could not be loaded, with the reason a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an override does not parse or names an unknown key.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then `path` (when given; it must exist), then `FERTIVISION_*` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Figment's `Env` reads the process environment; copy the given pairs into a TOML
        // document instead so that tests do not have to mutate global state.
        let mut overrides = String::new();
        for (key, value) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let dotted = rest.to_ascii_lowercase().replace("__", ".");
            if dotted.is_empty() {
                continue;
            }
            overrides.push_str(&format!("{dotted} = {}\n", env_value_as_toml(&value)));
        }
        if !overrides.is_empty() {
            figment = figment.merge(Toml::string(&overrides));
        }
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.api.max_upload_bytes == 0 {
            return invalid("api.max_upload_bytes must be positive");
        }
        if self.api.max_json_bytes == 0 {
            return invalid("api.max_json_bytes must be positive");
        }
        if self.api.request_timeout_secs == 0 {
            return invalid("api.request_timeout_secs must be positive");
        }
        if self.database.call_timeout_ms == 0 || self.database.breaker_failure_threshold == 0 {
            return invalid(
                "database.call_timeout_ms and database.breaker_failure_threshold must be positive",
            );
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be positive");
        }
        let url = &self.database.url;
        if !(url.is_empty()
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            return invalid("database.url must start with postgres://, postgresql:// or sqlite:");
        }
        let telemetry = &self.telemetry;
        if telemetry.enabled
            && !(telemetry.otlp_endpoint.starts_with("http://")
                || telemetry.otlp_endpoint.starts_with("https://"))
        {
            return invalid("telemetry.otlp_endpoint must start with http:// or https://");
        }
        if telemetry.enabled
            && telemetry.profiling
            && !(telemetry.profile_endpoint.starts_with("http://")
                || telemetry.profile_endpoint.starts_with("https://"))
        {
            return invalid("telemetry.profile_endpoint must start with http:// or https://");
        }
        if !(0.0..=1.0).contains(&telemetry.trace_sample_ratio) {
            return invalid("telemetry.trace_sample_ratio must be 0 to 1");
        }
        if !(1..=3600).contains(&telemetry.profile_interval_secs) {
            return invalid("telemetry.profile_interval_secs must be 1 to 3600");
        }
        if telemetry.queue_size == 0
            || telemetry.batch_delay_ms == 0
            || telemetry.metrics_interval_ms == 0
            || telemetry.export_timeout_ms == 0
        {
            return invalid(
                "telemetry.queue_size, batch_delay_ms, metrics_interval_ms and export_timeout_ms must be positive",
            );
        }
        if !(1..=telemetry.queue_size).contains(&telemetry.export_batch_size) {
            return invalid("telemetry.export_batch_size must be 1 to telemetry.queue_size");
        }
        if self.cache.redis_timeout_ms == 0 {
            return invalid("cache.redis_timeout_ms must be positive");
        }
        if self.jobs.concurrency == 0 {
            return invalid("jobs.concurrency must be positive");
        }
        if self.jobs.max_attempts < 1 {
            return invalid("jobs.max_attempts must be at least 1");
        }
        if self.jobs.lease_secs == 0 || self.jobs.reconcile_interval_ms == 0 {
            return invalid("jobs.lease_secs and jobs.reconcile_interval_ms must be positive");
        }
        if self.jobs.backoff_base_ms > self.jobs.backoff_max_ms {
            return invalid("jobs.backoff_base_ms must not exceed jobs.backoff_max_ms");
        }
        if !(self.redis.url.is_empty()
            || self.redis.url.starts_with("redis://")
            || self.redis.url.starts_with("rediss://"))
        {
            return invalid("redis.url must be empty or start with redis:// or rediss://");
        }
        if let StorageConfig::S3 { bucket, .. } = &self.storage
            && bucket.is_empty()
        {
            return invalid("storage.bucket must be set for the s3 backend");
        }
        Ok(())
    }

    /// The database URL in effect: the configured one, or SQLite under the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("fertivision.db").display()
            )
        } else {
            self.database.url.clone()
        }
    }

    /// Request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.api.request_timeout_secs)
    }
}

/// Environment values are TOML values when they parse as one (numbers, booleans, arrays),
/// otherwise strings.
fn env_value_as_toml(value: &str) -> String {
    let probe = format!("v = {value}");
    if toml_parses(&probe) {
        value.to_owned()
    } else {
        let escaped: String = value
            .chars()
            .flat_map(|c| match c {
                '"' => vec!['\\', '"'],
                '\\' => vec!['\\', '\\'],
                '\n' => vec!['\\', 'n'],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}

fn toml_parses(doc: &str) -> bool {
    Figment::from(Toml::string(doc))
        .extract::<std::collections::BTreeMap<String, figment::value::Value>>()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fertivision.example.toml");
        let config = Config::load_with_env(Some(&path), vec![]).expect("example config");
        assert_eq!(config.api.max_upload_bytes, 10 * 1024 * 1024);
        assert!(matches!(config.storage, StorageConfig::Local { .. }));
    }

    #[test]
    fn s3_storage_can_be_chosen_over_the_local_default() {
        let config = Config::load_with_env(
            None,
            env(&[
                ("FERTIVISION_STORAGE__BACKEND", "s3"),
                ("FERTIVISION_STORAGE__BUCKET", "documents"),
                ("FERTIVISION_STORAGE__ENDPOINT", "http://minio:9000"),
                ("FERTIVISION_STORAGE__ALLOW_HTTP", "true"),
            ]),
        )
        .expect("s3 from the environment");
        match config.storage {
            StorageConfig::S3 {
                bucket,
                endpoint,
                allow_http,
                ..
            } => {
                assert_eq!(bucket, "documents");
                assert_eq!(endpoint, "http://minio:9000");
                assert!(allow_http);
            }
            other => panic!("expected s3, got {other:?}"),
        }
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load_with_env(None, vec![]).unwrap();
        assert_eq!(config, Config::default());
        assert!(config.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = Config::load_with_env(
            None,
            env(&[
                ("FERTIVISION_DATABASE__URL", "postgres://u@h/db"),
                ("FERTIVISION_API__LISTEN", "127.0.0.1:9999"),
                ("FERTIVISION_API__MAX_UPLOAD_BYTES", "1000"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config.database.url, "postgres://u@h/db");
        assert_eq!(config.api.listen.port(), 9999);
        assert_eq!(config.api.max_upload_bytes, 1000);
    }

    #[test]
    fn unknown_keys_are_errors_in_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[api]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap();
        let err = Config::load_with_env(Some(&file), vec![]).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");

        let err =
            Config::load_with_env(None, env(&[("FERTIVISION_DATABSE__URL", "x")])).unwrap_err();
        assert!(err.to_string().contains("databse"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::load_with_env(None, env(&[("FERTIVISION_DATABASE__URL", "mysql://x")]))
            .unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");
        let err = Config::load_with_env(Some(Path::new("/nonexistent.toml")), vec![]).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn an_export_batch_fits_in_the_queue() {
        let batch = |size: &str, queue: &str| {
            Config::load_with_env(
                None,
                env(&[
                    ("FERTIVISION_TELEMETRY__EXPORT_BATCH_SIZE", size),
                    ("FERTIVISION_TELEMETRY__QUEUE_SIZE", queue),
                ]),
            )
        };
        assert!(batch("512", "512").is_ok());
        assert!(batch("1", "8192").is_ok());
        for (size, queue) in [("0", "8192"), ("1024", "512")] {
            let err = batch(size, queue).unwrap_err();
            assert!(
                err.to_string().contains("telemetry.export_batch_size"),
                "{size}/{queue}: {err}"
            );
        }
    }
}
