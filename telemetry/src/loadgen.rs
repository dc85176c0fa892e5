//! A load generator for OTLP collectors: sends spans, log records or metric data points over
//! OTLP/gRPC or OTLP/HTTP (protobuf) at a target rate, with a bounded number of requests in
//! flight, and reports what the collector acknowledged, refused and failed.
//!
//! Every item carries a unique `loadgen.seq` integer attribute. The final report lists the
//! sequence numbers of the fully acknowledged requests as ranges, so a test can check that each
//! acknowledged item reached the collector's storage exactly once.
//!
//! A refusal (HTTP 429, gRPC `RESOURCE_EXHAUSTED`) is retried: the generator waits the delay
//! the collector named (`Retry-After`, `RetryInfo`; at most [`MAX_RETRY_DELAY`], one second
//! when none is given) and sends the same batch again, until it is accepted or the run's
//! duration is over. Any other error fails the batch without a retry.
//!
//! ```no_run
//! # async fn example() -> Result<(), telemetry::loadgen::LoadgenError> {
//! use std::time::Duration;
//! use telemetry::loadgen::{self, LoadgenConfig, Protocol, SignalKind};
//!
//! let config = LoadgenConfig {
//!     rate: Some(10_000),
//!     duration: Duration::from_secs(10),
//!     ..LoadgenConfig::new("http://127.0.0.1:4317", Protocol::Grpc, SignalKind::Traces)
//! };
//! let report = loadgen::run(config, |r| println!("{} acknowledged", r.acknowledged_items)).await?;
//! println!("{:.0} items/s", report.acknowledged_per_sec);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// The name of the integer attribute that numbers every generated item.
pub const SEQ_ATTRIBUTE: &str = "loadgen.seq";
/// The longest wait before resending a refused batch, whatever the collector asks for.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// The wait before resending a refused batch when the collector names no delay.
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// How often the `progress` callback is called.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// The longest gap between two rate-limited dispatches; a smaller batch is sent each tick when
/// `batch_size` items would take longer than this at the target rate.
const MAX_RATE_TICK: Duration = Duration::from_millis(100);

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (usually port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (usually port 4318), `POST {endpoint}/v1/{signal}`.
    Http,
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    /// Spans shaped like the OpenTelemetry SDK benchmark: ten 20-character string attributes.
    Traces,
    /// Log records with a ~120-byte body and a few attributes.
    Logs,
    /// Data points of a monotonic counter over a few label sets.
    Metrics,
}

/// What to send, where, how fast and for how long.
#[derive(Debug, Clone)]
pub struct LoadgenConfig {
    /// The collector's base URL: `http://127.0.0.1:4317` for gRPC, `http://127.0.0.1:4318` for
    /// HTTP (the `/v1/...` path is appended).
    pub endpoint: String,
    /// gRPC or HTTP.
    pub protocol: Protocol,
    /// Spans, log records or metric data points.
    pub signal: SignalKind,
    /// Items per second; `None` sends as fast as the collector accepts.
    pub rate: Option<u64>,
    /// How long to send. Requests in flight at the end complete; refused batches are not
    /// retried past it.
    pub duration: Duration,
    /// Items per request (default 512).
    pub batch_size: usize,
    /// Requests in flight at most (default 4).
    pub concurrency: usize,
    /// Stop after sending this many items, if set.
    pub total: Option<u64>,
}

impl LoadgenConfig {
    /// Defaults: as fast as accepted for 10 s, 512 items per request, 4 in flight, no total.
    pub fn new(endpoint: impl Into<String>, protocol: Protocol, signal: SignalKind) -> Self {
        Self {
            endpoint: endpoint.into(),
            protocol,
            signal,
            rate: None,
            duration: Duration::from_secs(10),
            batch_size: 512,
            concurrency: 4,
            total: None,
        }
    }
}

/// Running totals (passed to `progress`) and the final result of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadgenReport {
    /// Distinct items sent at least once (a resent batch counts once).
    pub sent_items: u64,
    /// Items the collector accepted (2xx / OK), minus those its partial success rejected.
    pub acknowledged_items: u64,
    /// Items in refused requests (429 / `RESOURCE_EXHAUSTED`), counted at every refusal.
    pub refused_items: u64,
    /// Items lost to other errors, and items rejected in a partial success.
    pub failed_items: u64,
    /// Requests sent, resends included.
    pub requests: u64,
    /// Refusals that named no retry delay (no `Retry-After`, no `RetryInfo`).
    pub refusals_without_retry_info: u64,
    /// Time since the run started.
    pub elapsed: Duration,
    /// `acknowledged_items / elapsed`.
    pub acknowledged_per_sec: f64,
    /// The `loadgen.seq` numbers of the requests acknowledged without a partial rejection, as
    /// sorted, merged ranges. `None` in progress reports; set in the final report.
    pub acknowledged_ids: Option<SeqRanges>,
}

/// A set of sequence numbers as sorted, disjoint, non-adjacent half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqRanges {
    /// start -> end (exclusive).
    ranges: BTreeMap<u64, u64>,
}

impl SeqRanges {
    /// Adds `range`, merging it with its neighbours.
    pub fn insert(&mut self, range: std::ops::Range<u64>) {
        if range.is_empty() {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back()
            && e >= start
        {
            start = s;
            end = end.max(e);
        }
        let overlapping: Vec<u64> = self.ranges.range(start..=end).map(|(&s, _)| s).collect();
        for s in overlapping {
            if let Some(e) = self.ranges.remove(&s) {
                end = end.max(e);
            }
        }
        self.ranges.insert(start, end);
    }

    /// Whether `seq` is in the set.
    pub fn contains(&self, seq: u64) -> bool {
        self.ranges
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &end)| seq < end)
    }

    /// How many numbers the set holds.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = std::ops::Range<u64>> + '_ {
        self.ranges.iter().map(|(&s, &e)| s..e)
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A config value that cannot work.
    #[error("invalid load generator config: {0}")]
    InvalidConfig(String),
    /// The endpoint is not a usable URL.
    #[error("invalid endpoint '{endpoint}': {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The gRPC connection could not be made.
    #[error("cannot connect to '{endpoint}': {source}")]
    Connect {
        /// The endpoint as given.
        endpoint: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
}

/// Runs the load described by `config`, calling `progress` about once per second with the
/// running totals, and returns the final report once every request has been answered.
pub async fn run(
    config: LoadgenConfig,
    mut progress: impl FnMut(&LoadgenReport) + Send,
) -> Result<LoadgenReport, LoadgenError> {
    validate(&config)?;
    let sender = Arc::new(Sender::connect(&config).await?);
    let start = Instant::now();
    let deadline = start + config.duration;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut dispatcher = Dispatcher::new(&config, start);
    let mut tasks = JoinSet::new();
    let mut progress_tick = tokio::time::interval_at(start + PROGRESS_INTERVAL, PROGRESS_INTERVAL);
    progress_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seed = rand::rng().random::<u64>();

    loop {
        tokio::select! {
            biased;
            _ = progress_tick.tick() => progress(&snapshot(&tally, start, false)),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            batch = dispatcher.next() => {
                let Some(batch) = batch else { break };
                seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                tasks.spawn(send_batch(
                    Arc::clone(&sender),
                    config.signal,
                    batch,
                    seed,
                    deadline,
                    Arc::clone(&tally),
                ));
            }
        }
    }
    while !tasks.is_empty() {
        tokio::select! {
            biased;
            _ = progress_tick.tick() => progress(&snapshot(&tally, start, false)),
            _ = tasks.join_next() => {}
        }
    }
    Ok(snapshot(&tally, start, true))
}

fn validate(config: &LoadgenConfig) -> Result<(), LoadgenError> {
    let invalid = |message: &str| Err(LoadgenError::InvalidConfig(message.to_owned()));
    if config.batch_size == 0 {
        return invalid("batch_size must be at least 1");
    }
    if config.concurrency == 0 {
        return invalid("concurrency must be at least 1");
    }
    if config.rate == Some(0) {
        return invalid("rate must be at least 1 item per second");
    }
    Ok(())
}

/// Counters shared by the request tasks.
#[derive(Debug, Default)]
struct Tally {
    sent_items: u64,
    acknowledged_items: u64,
    refused_items: u64,
    failed_items: u64,
    requests: u64,
    refusals_without_retry_info: u64,
    acknowledged_ids: SeqRanges,
}

fn snapshot(tally: &Mutex<Tally>, start: Instant, last: bool) -> LoadgenReport {
    let elapsed = start.elapsed();
    let tally = tally.lock().expect("tally lock poisoned");
    let seconds = elapsed.as_secs_f64();
    LoadgenReport {
        sent_items: tally.sent_items,
        acknowledged_items: tally.acknowledged_items,
        refused_items: tally.refused_items,
        failed_items: tally.failed_items,
        requests: tally.requests,
        refusals_without_retry_info: tally.refusals_without_retry_info,
        elapsed,
        acknowledged_per_sec: if seconds > 0.0 {
            tally.acknowledged_items as f64 / seconds
        } else {
            0.0
        },
        acknowledged_ids: last.then(|| tally.acknowledged_ids.clone()),
    }
}

/// One batch to send: items `seq..seq + len`, and the in-flight slot it holds.
struct Batch {
    seq: u64,
    len: u64,
    _permit: OwnedSemaphorePermit,
}

/// Hands out batches at the target rate, within the duration and total, each once a request
/// slot is free. [`Dispatcher::next`] is cancel-safe.
struct Dispatcher {
    start: Instant,
    deadline: Instant,
    batch_size: u64,
    total: Option<u64>,
    slots: Arc<Semaphore>,
    /// With a rate: ticks, the items per second and the tick period.
    pace: Option<(tokio::time::Interval, u64, Duration)>,
    /// Items released by the rate and not yet dispatched.
    released: u64,
    issued: u64,
}

impl Dispatcher {
    fn new(config: &LoadgenConfig, start: Instant) -> Self {
        let pace = config.rate.map(|rate| {
            let batch_time = Duration::from_secs_f64(config.batch_size as f64 / rate as f64);
            let period = batch_time.clamp(Duration::from_millis(1), MAX_RATE_TICK);
            let mut ticks = tokio::time::interval_at(start, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            (ticks, rate, period)
        });
        Self {
            start,
            deadline: start + config.duration,
            batch_size: config.batch_size as u64,
            total: config.total,
            slots: Arc::new(Semaphore::new(config.concurrency)),
            pace,
            released: 0,
            issued: 0,
        }
    }

    fn remaining(&self) -> u64 {
        self.total
            .map_or(u64::MAX, |t| t.saturating_sub(self.issued))
    }

    /// The next batch, or `None` when the run is over.
    async fn next(&mut self) -> Option<Batch> {
        loop {
            if self.remaining() == 0 || Instant::now() >= self.deadline {
                return None;
            }
            if let Some((ticks, rate, period)) = &mut self.pace
                && self.released == 0
            {
                let now = ticks.tick().await;
                // Release what the rate allows up to the end of this tick's period, so that
                // the last tick before the deadline completes the duration's share.
                let horizon = (now - self.start + *period).min(self.deadline - self.start);
                let allowed = (*rate as f64 * horizon.as_secs_f64()).round() as u64;
                self.released = allowed.saturating_sub(self.issued);
                continue;
            }
            let permit = Arc::clone(&self.slots).acquire_owned().await.ok()?;
            if self.remaining() == 0 || Instant::now() >= self.deadline {
                return None;
            }
            let mut len = self.batch_size.min(self.remaining());
            if self.pace.is_some() {
                len = len.min(self.released);
                self.released -= len;
            }
            let seq = self.issued;
            self.issued += len;
            return Some(Batch {
                seq,
                len,
                _permit: permit,
            });
        }
    }
}

/// The clients, one per run, shared by every request task.
#[allow(clippy::large_enum_variant)] // one per run, behind an `Arc`
enum Sender {
    Grpc(Channel),
    Http {
        client: Client<HttpConnector, Full<Bytes>>,
        /// `{endpoint}/v1/{signal}`.
        url: axum::http::Uri,
    },
}

impl Sender {
    async fn connect(config: &LoadgenConfig) -> Result<Self, LoadgenError> {
        let invalid = |reason: String| LoadgenError::InvalidEndpoint {
            endpoint: config.endpoint.clone(),
            reason,
        };
        match config.protocol {
            Protocol::Grpc => {
                let endpoint = Channel::from_shared(config.endpoint.clone())
                    .map_err(|e| invalid(e.to_string()))?;
                let channel = endpoint
                    .connect()
                    .await
                    .map_err(|source| LoadgenError::Connect {
                        endpoint: config.endpoint.clone(),
                        source,
                    })?;
                Ok(Sender::Grpc(channel))
            }
            Protocol::Http => {
                let path = match config.signal {
                    SignalKind::Traces => "/v1/traces",
                    SignalKind::Logs => "/v1/logs",
                    SignalKind::Metrics => "/v1/metrics",
                };
                let url = format!("{}{path}", config.endpoint.trim_end_matches('/'));
                let url: axum::http::Uri = url.parse().map_err(|e| invalid(format!("{e}")))?;
                if url.scheme_str() != Some("http") {
                    return Err(invalid("only http:// is supported".to_owned()));
                }
                let client = Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(config.concurrency)
                    .build_http();
                Ok(Sender::Http { client, url })
            }
        }
    }
}

/// The collector's answer to one request.
enum Outcome {
    /// Accepted; `rejected` items were dropped by its partial success.
    Accepted { rejected: u64 },
    /// Refused for now: resend after the delay the collector named, if it named one.
    Refused { retry_after: Option<Duration> },
    /// Any other error.
    Failed,
}

/// Builds the batch, sends it until accepted, failed, or refused past the deadline, and counts.
async fn send_batch(
    sender: Arc<Sender>,
    signal: SignalKind,
    batch: Batch,
    seed: u64,
    deadline: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let request = generate(signal, batch.seq, batch.len, seed);
    let count =
        |update: &dyn Fn(&mut Tally)| update(&mut tally.lock().expect("tally lock poisoned"));
    count(&|t| t.sent_items += batch.len);
    loop {
        count(&|t| t.requests += 1);
        match export(&sender, &request).await {
            Outcome::Accepted { rejected } => {
                let rejected = rejected.min(batch.len);
                count(&|t| {
                    t.acknowledged_items += batch.len - rejected;
                    t.failed_items += rejected;
                    if rejected == 0 {
                        t.acknowledged_ids.insert(batch.seq..batch.seq + batch.len);
                    }
                });
                return;
            }
            Outcome::Refused { retry_after } => {
                count(&|t| {
                    t.refused_items += batch.len;
                    t.refusals_without_retry_info += u64::from(retry_after.is_none());
                });
                let retry_after = retry_after.unwrap_or(DEFAULT_RETRY_DELAY);
                // Hold the request slot while waiting, so that a full collector slows the
                // whole run down instead of being sent new batches.
                let retry_at = Instant::now() + retry_after.min(MAX_RETRY_DELAY);
                tokio::time::sleep_until(retry_at.min(deadline)).await;
                if retry_at >= deadline {
                    return;
                }
            }
            Outcome::Failed => {
                count(&|t| t.failed_items += batch.len);
                return;
            }
        }
    }
}

/// One generated OTLP export request.
enum ExportRequest {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

async fn export(sender: &Sender, request: &ExportRequest) -> Outcome {
    match sender {
        Sender::Grpc(channel) => export_grpc(channel.clone(), request).await,
        Sender::Http { client, url } => {
            let body = match request {
                ExportRequest::Traces(r) => r.encode_to_vec(),
                ExportRequest::Logs(r) => r.encode_to_vec(),
                ExportRequest::Metrics(r) => r.encode_to_vec(),
            };
            export_http(client, url, request, Bytes::from(body)).await
        }
    }
}

async fn export_grpc(channel: Channel, request: &ExportRequest) -> Outcome {
    let answer = match request {
        ExportRequest::Traces(r) => TraceServiceClient::new(channel)
            .export(r.clone())
            .await
            .map(|a| rejected(a.into_inner().partial_success.map(|p| p.rejected_spans))),
        ExportRequest::Logs(r) => {
            LogsServiceClient::new(channel)
                .export(r.clone())
                .await
                .map(|a| {
                    rejected(
                        a.into_inner()
                            .partial_success
                            .map(|p| p.rejected_log_records),
                    )
                })
        }
        ExportRequest::Metrics(r) => MetricsServiceClient::new(channel)
            .export(r.clone())
            .await
            .map(|a| {
                rejected(
                    a.into_inner()
                        .partial_success
                        .map(|p| p.rejected_data_points),
                )
            }),
    };
    match answer {
        Ok(rejected) => Outcome::Accepted { rejected },
        Err(status) if status.code() == tonic::Code::ResourceExhausted => Outcome::Refused {
            retry_after: status
                .get_details_retry_info()
                .and_then(|info| info.retry_delay),
        },
        Err(status) => {
            tracing::debug!(code = ?status.code(), message = status.message(), "export failed");
            Outcome::Failed
        }
    }
}

fn rejected(count: Option<i64>) -> u64 {
    count.map_or(0, |c| u64::try_from(c).unwrap_or(0))
}

async fn export_http(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &axum::http::Uri,
    request: &ExportRequest,
    body: Bytes,
) -> Outcome {
    use axum::http::{Method, Request, StatusCode, header};
    let http_request = Request::builder()
        .method(Method::POST)
        .uri(url.clone())
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(body))
        .expect("a valid request");
    let response = match client.request(http_request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(error = %error, "export request failed");
            return Outcome::Failed;
        }
    };
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Outcome::Refused { retry_after };
    }
    if !status.is_success() {
        tracing::debug!(status = %status, "export refused");
        return Outcome::Failed;
    }
    let body = match response.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            tracing::debug!(error = %error, "export response body failed");
            return Outcome::Failed;
        }
    };
    // An undecodable 2xx body still means accepted; it only hides a partial success.
    let partial = match request {
        ExportRequest::Traces(_) => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success.map(|p| p.rejected_spans)),
        ExportRequest::Logs(_) => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success.map(|p| p.rejected_log_records)),
        ExportRequest::Metrics(_) => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success.map(|p| p.rejected_data_points)),
    };
    Outcome::Accepted {
        rejected: rejected(partial),
    }
}

// ---------------------------------------------------------------------------------------------
// Generated data.

const SPAN_NAMES: &[&str] = &[
    "GET /api/v1/patients/{id}",
    "POST /api/v1/cycles",
    "GET /api/v1/embryos/{id}/images",
    "analysis.score_embryo",
    "SELECT fertivision.cycles",
    "redis GET",
];
const SPAN_ATTRIBUTE_KEYS: [&str; 10] = [
    "http.request.method",
    "http.route",
    "url.path",
    "server.address",
    "user_agent.original",
    "db.system",
    "db.operation.name",
    "peer.service",
    "enduser.id",
    "service.version",
];
const ROUTES: &[&str] = &[
    "/api/v1/patients/{id}",
    "/api/v1/cycles",
    "/api/v1/embryos/{id}/images",
    "/api/v1/reports",
];
const STATUS_CODES: &[i64] = &[200, 201, 404, 500];
const ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// The items `seq..seq + len` of `signal`, in one export request.
fn generate(signal: SignalKind, seq: u64, len: u64, seed: u64) -> ExportRequest {
    let mut rng = SmallRng::seed_from_u64(seed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let resource = Some(Resource {
        attributes: vec![
            string_attribute("service.name", "fertivision-loadgen".to_owned()),
            string_attribute("service.instance.id", random_string(&mut rng, 20)),
            string_attribute("telemetry.sdk.name", "fertivision-loadgen".to_owned()),
        ],
        ..Default::default()
    });
    let scope = Some(InstrumentationScope {
        name: "telemetry::loadgen".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    });
    let seqs = seq..seq + len;
    match signal {
        SignalKind::Traces => {
            let spans = seqs.map(|seq| span(&mut rng, seq, now)).collect();
            ExportRequest::Traces(ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource,
                    scope_spans: vec![ScopeSpans {
                        scope,
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            })
        }
        SignalKind::Logs => {
            let log_records = seqs.map(|seq| log_record(&mut rng, seq, now)).collect();
            ExportRequest::Logs(ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource,
                    scope_logs: vec![ScopeLogs {
                        scope,
                        log_records,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            })
        }
        SignalKind::Metrics => {
            let data_points = seqs.map(|seq| data_point(&mut rng, seq, now)).collect();
            ExportRequest::Metrics(ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource,
                    scope_metrics: vec![ScopeMetrics {
                        scope,
                        metrics: vec![Metric {
                            name: "http.server.request.count".to_owned(),
                            description: "Requests served".to_owned(),
                            unit: "{request}".to_owned(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points,
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            })
        }
    }
}

fn span(rng: &mut SmallRng, seq: u64, now: u64) -> Span {
    let mut attributes: Vec<KeyValue> = SPAN_ATTRIBUTE_KEYS
        .iter()
        .map(|key| string_attribute(key, random_string(rng, 20)))
        .collect();
    attributes.push(seq_attribute(seq));
    let duration = rng.random_range(50_000..50_000_000);
    Span {
        trace_id: rng.random::<[u8; 16]>().to_vec(),
        span_id: rng.random::<[u8; 8]>().to_vec(),
        name: SPAN_NAMES[rng.random_range(0..SPAN_NAMES.len())].to_owned(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: now.saturating_sub(duration),
        end_time_unix_nano: now,
        attributes,
        status: Some(Status {
            code: opentelemetry_proto::tonic::trace::v1::status::StatusCode::Ok as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn log_record(rng: &mut SmallRng, seq: u64, now: u64) -> LogRecord {
    let route = ROUTES[rng.random_range(0..ROUTES.len())];
    let status = STATUS_CODES[rng.random_range(0..STATUS_CODES.len())];
    let body = format!(
        "request completed: method=GET route={route} status={status} duration_ms={} \
         clinic=clinic-{:03} request_id={}",
        rng.random_range(1..2000),
        rng.random_range(0..1000),
        random_string(rng, 16),
    );
    let (severity_number, severity_text) = if status >= 500 {
        (17, "ERROR")
    } else {
        (9, "INFO")
    };
    LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: now,
        severity_number,
        severity_text: severity_text.to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes: vec![
            string_attribute("http.request.method", "GET".to_owned()),
            string_attribute("http.route", route.to_owned()),
            int_attribute("http.response.status_code", status),
            seq_attribute(seq),
        ],
        trace_id: rng.random::<[u8; 16]>().to_vec(),
        span_id: rng.random::<[u8; 8]>().to_vec(),
        ..Default::default()
    }
}

fn data_point(rng: &mut SmallRng, seq: u64, now: u64) -> NumberDataPoint {
    let route = ROUTES[rng.random_range(0..ROUTES.len())];
    let status = STATUS_CODES[rng.random_range(0..STATUS_CODES.len())];
    NumberDataPoint {
        attributes: vec![
            string_attribute("http.route", route.to_owned()),
            int_attribute("http.response.status_code", status),
            seq_attribute(seq),
        ],
        start_time_unix_nano: now.saturating_sub(60_000_000_000),
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsInt(
            rng.random_range(1..1_000_000),
        )),
        ..Default::default()
    }
}

fn random_string(rng: &mut SmallRng, len: usize) -> String {
    (0..len)
        .map(|_| ALPHANUMERIC[rng.random_range(0..ALPHANUMERIC.len())] as char)
        .collect()
}

fn string_attribute(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

fn int_attribute(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn seq_attribute(seq: u64) -> KeyValue {
    int_attribute(SEQ_ATTRIBUTE, seq as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_ranges_merge_out_of_order_inserts() {
        let mut ranges = SeqRanges::default();
        ranges.insert(10..20);
        ranges.insert(30..40);
        ranges.insert(0..5);
        ranges.insert(20..30);
        ranges.insert(5..6);
        ranges.insert(2..3);
        assert_eq!(ranges.iter().collect::<Vec<_>>(), vec![0..6, 10..40]);
        assert_eq!(ranges.len(), 36);
        assert!(ranges.contains(39) && !ranges.contains(40) && !ranges.contains(7));
        ranges.insert(0..100);
        assert_eq!(ranges.iter().collect::<Vec<_>>(), vec![0..100]);
    }

    #[test]
    fn spans_look_like_the_sdk_benchmark() {
        let ExportRequest::Traces(request) = generate(SignalKind::Traces, 7, 3, 1) else {
            panic!("not traces");
        };
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 3);
        for (i, span) in spans.iter().enumerate() {
            assert_eq!(span.trace_id.len(), 16);
            assert_eq!(span.span_id.len(), 8);
            assert!(span.start_time_unix_nano < span.end_time_unix_nano);
            let strings: Vec<_> = span
                .attributes
                .iter()
                .filter_map(|kv| match &kv.value.as_ref()?.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.len()),
                    _ => None,
                })
                .collect();
            assert_eq!(strings, vec![20; 10]);
            let seq = span.attributes.iter().find(|kv| kv.key == SEQ_ATTRIBUTE);
            let seq = seq.and_then(|kv| kv.value.as_ref()?.value.clone());
            assert_eq!(seq, Some(any_value::Value::IntValue(7 + i as i64)));
        }
    }

    #[test]
    fn log_bodies_are_about_120_bytes() {
        let ExportRequest::Logs(request) = generate(SignalKind::Logs, 0, 50, 2) else {
            panic!("not logs");
        };
        for record in &request.resource_logs[0].scope_logs[0].log_records {
            let Some(any_value::Value::StringValue(body)) =
                record.body.as_ref().and_then(|b| b.value.as_ref())
            else {
                panic!("no string body");
            };
            assert!(
                (90..=150).contains(&body.len()),
                "{} bytes: {body}",
                body.len()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_dispatcher_paces_batches_to_the_rate() {
        let config = LoadgenConfig {
            rate: Some(2000),
            duration: Duration::from_secs(1),
            ..LoadgenConfig::new("http://unused", Protocol::Http, SignalKind::Logs)
        };
        let mut dispatcher = Dispatcher::new(&config, Instant::now());
        let mut items = 0;
        let mut next_seq = 0;
        while let Some(batch) = dispatcher.next().await {
            assert_eq!(batch.seq, next_seq);
            assert!(batch.len <= 512);
            next_seq += batch.len;
            items += batch.len;
        }
        assert_eq!(items, 2000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_dispatcher_stops_at_the_total() {
        let config = LoadgenConfig {
            total: Some(1000),
            batch_size: 300,
            ..LoadgenConfig::new("http://unused", Protocol::Http, SignalKind::Logs)
        };
        let mut dispatcher = Dispatcher::new(&config, Instant::now());
        let mut lens = Vec::new();
        while let Some(batch) = dispatcher.next().await {
            lens.push(batch.len);
        }
        assert_eq!(lens, vec![300, 300, 300, 100]);
    }
}
