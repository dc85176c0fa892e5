//! The log index benchmark of BENCHMARKS.md, all in one run on one generated corpus:
//!
//! 1. end to end: OTLP/HTTP (protobuf) into a running `fertivision collector` whose pipeline is
//!    `otlp_http -> log_index`, until every record is searchable; MB/s per CPU-second of the
//!    collector process;
//! 2. raw tantivy: the same records through `log_index::LogIndex` in this process (the
//!    engine's limit with our schema), one commit at the end;
//! 3. PostgreSQL full text: `COPY` into a table with a generated `tsvector` column, then a GIN
//!    index on it and B-tree indexes on the time and the trace id;
//! 4. query latency, p50 and p99 over 200 runs: a term, a phrase, a trace id, a histogram of the
//!    whole range per minute, on ours (over HTTP) and on PostgreSQL;
//! 5. size on disk per GB ingested.
//!
//! ```text
//! cargo build --release -p fertivision --bin fertivision --example index_bench
//! target/release/examples/index_bench --bin target/release/fertivision --mb 1024
//! ```
//!
//! "MB" are of the records as JSON lines (timestamp, severity, service, trace and span ids,
//! body, attributes), the size a log shipper would read from files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/cpu.rs"]
mod cpu;

use cpu::cpu_seconds;
use futures_util::StreamExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Row};

/// Records per OTLP request.
const BATCH: usize = 1000;
/// Requests in flight while sending.
const CONCURRENCY: usize = 4;
/// Runs per query kind.
const RUNS: usize = 200;

struct Args {
    bin: PathBuf,
    mb: u64,
    database_url: String,
    /// Skips PostgreSQL (for quick runs while tuning; the recorded figures need it).
    no_pg: bool,
}

fn args() -> Args {
    let mut args = Args {
        bin: PathBuf::from("target/release/fertivision"),
        mb: 1024,
        database_url: std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned()),
        no_pg: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-pg" {
            args.no_pg = true;
            continue;
        }
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--bin" => args.bin = PathBuf::from(value),
            "--mb" => args.mb = value.parse().expect("--mb takes a number"),
            "--database-url" => args.database_url = value,
            _ => panic!("usage: index_bench [--bin PATH] [--mb N] [--database-url URL] [--no-pg]"),
        }
    }
    args
}

/// One generated record.
struct Rec {
    ts: i64,
    severity: (&'static str, i32),
    service: &'static str,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    body: String,
    attributes: Vec<(&'static str, Value)>,
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const ROUTES: [&str; 8] = [
    "/api/v1/patients",
    "/api/v1/patients/{id}",
    "/api/v1/patients/{id}/analyses/semen",
    "/api/v1/patients/{id}/analyses/oocyte",
    "/api/v1/patients/{id}/documents",
    "/api/v1/patients/{id}/fertility-score",
    "/api/v1/patients/{id}/reports",
    "/api/v1/tasks/{id}",
];
const WORDS: [&str; 16] = [
    "patient",
    "analysis",
    "document",
    "report",
    "score",
    "queue",
    "lease",
    "cache",
    "summary",
    "embryo",
    "oocyte",
    "follicle",
    "upload",
    "worker",
    "classification",
    "token",
];

/// Records shaped like the platform's own logs: access logs, database and cache messages,
/// job events, warnings and errors with ids, a trace id shared by a few records each.
fn corpus(target_bytes: u64, start_ns: i64) -> (Vec<Rec>, u64, Vec<String>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut records = Vec::new();
    let mut bytes = 0u64;
    let mut trace = [0u8; 16];
    let mut traces = Vec::new();
    let mut i = 0u64;
    while bytes < target_bytes {
        if i.is_multiple_of(4) {
            trace = (u128::from(rng.next()) << 64 | u128::from(rng.next())).to_be_bytes();
            if traces.len() < 10_000 && rng.next().is_multiple_of(50) {
                traces.push(hex::encode(trace));
            }
        }
        let route = rng.pick(&ROUTES);
        let kind = rng.next() % 100;
        let (severity, body, attributes): ((&str, i32), String, Vec<(&str, Value)>) = match kind {
            0..=54 => {
                let status = rng.pick(&[200, 200, 200, 201, 202, 204, 400, 404, 429]);
                let ms = rng.next() % 900 + 1;
                (
                    ("INFO", 9),
                    format!(
                        "{} {route} {status} {ms} ms",
                        rng.pick(&["GET", "POST", "PATCH"])
                    ),
                    vec![
                        ("http.route", json!(route)),
                        ("http.status_code", json!(status)),
                        ("http.duration_ms", json!(ms)),
                        (
                            "user_agent.original",
                            json!("Mozilla/5.0 (X11; Linux x86_64) clinic-frontend/2.3"),
                        ),
                    ],
                )
            }
            55..=69 => (
                ("DEBUG", 5),
                format!(
                    "cache {} for {} {} in {} us",
                    rng.pick(&["hit", "miss"]),
                    rng.pick(&WORDS),
                    rng.next() % 100_000,
                    rng.next() % 900
                ),
                vec![("cache.backend", json!(rng.pick(&["redis", "moka"])))],
            ),
            70..=84 => (
                ("INFO", 9),
                format!(
                    "job {} {} for {} {} after {} attempts",
                    rng.pick(&["analyse_document", "render_report", "reconcile"]),
                    rng.pick(&["completed", "claimed", "released", "scheduled"]),
                    rng.pick(&WORDS),
                    rng.next() % 1_000_000,
                    rng.next() % 4 + 1
                ),
                vec![
                    (
                        "job.kind",
                        json!(rng.pick(&["analyse_document", "render_report"])),
                    ),
                    ("job.queue", json!("default")),
                ],
            ),
            85..=94 => (
                ("WARN", 13),
                format!(
                    "slow query on {} table took {} ms: SELECT * FROM {} WHERE patient_id = $1 ORDER BY created_at DESC LIMIT 50",
                    rng.pick(&["analyses", "documents", "patients", "jobs"]),
                    rng.next() % 5000 + 500,
                    rng.pick(&["analyses", "documents", "patients", "jobs"])
                ),
                vec![
                    ("db.system", json!("postgresql")),
                    ("db.operation", json!("SELECT")),
                ],
            ),
            _ => (
                ("ERROR", 17),
                format!(
                    "{} while handling {route}: {}",
                    rng.pick(&[
                        "database timeout after 5000 ms",
                        "connection reset by peer",
                        "object storage unavailable",
                        "circuit breaker open"
                    ]),
                    rng.pick(&[
                        "retrying in 200 ms",
                        "giving up after 3 attempts",
                        "request failed with 503"
                    ])
                ),
                vec![
                    ("http.route", json!(route)),
                    (
                        "error.type",
                        json!(rng.pick(&["timeout", "io", "unavailable"])),
                    ),
                ],
            ),
        };
        let service = if (70..85).contains(&kind) {
            "fertivision-worker"
        } else {
            "fertivision-api"
        };
        let record = Rec {
            ts: start_ns + (i as i64) * 1_000_000 + (rng.next() % 1000) as i64,
            severity,
            service,
            trace_id: trace,
            span_id: rng.next().to_be_bytes(),
            body,
            attributes,
        };
        bytes += json_line(&record).len() as u64 + 1;
        records.push(record);
        i += 1;
    }
    (records, bytes, traces)
}

fn json_line(r: &Rec) -> String {
    let attributes: serde_json::Map<String, Value> = r
        .attributes
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    json!({
        "ts": r.ts, "severity": r.severity.0, "service": r.service,
        "trace_id": hex::encode(r.trace_id), "span_id": hex::encode(r.span_id),
        "body": r.body, "attributes": attributes,
    })
    .to_string()
}

fn otlp(records: &[Rec]) -> ExportLogsServiceRequest {
    let value = |v: &Value| AnyValue {
        value: Some(match v {
            Value::Number(n) if n.is_i64() => any_value::Value::IntValue(n.as_i64().unwrap()),
            Value::Number(n) => any_value::Value::DoubleValue(n.as_f64().unwrap_or_default()),
            other => any_value::Value::StringValue(other.as_str().unwrap_or_default().to_owned()),
        }),
    };
    let mut by_service: Vec<ResourceLogs> = Vec::new();
    for service in ["fertivision-api", "fertivision-worker"] {
        let log_records: Vec<LogRecord> = records
            .iter()
            .filter(|r| r.service == service)
            .map(|r| LogRecord {
                time_unix_nano: r.ts as u64,
                observed_time_unix_nano: r.ts as u64,
                severity_number: r.severity.1,
                severity_text: r.severity.0.to_owned(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(r.body.clone())),
                }),
                trace_id: r.trace_id.to_vec(),
                span_id: r.span_id.to_vec(),
                attributes: r
                    .attributes
                    .iter()
                    .map(|(k, v)| KeyValue {
                        key: (*k).to_owned(),
                        value: Some(value(v)),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        by_service.push(ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    KeyValue {
                        key: "service.name".into(),
                        value: Some(value(&json!(service))),
                        ..Default::default()
                    },
                    KeyValue {
                        key: "service.instance.id".into(),
                        value: Some(value(&json!("bench-1"))),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    ExportLogsServiceRequest {
        resource_logs: by_service,
    }
}

/// Waits until process `pid` uses under 2% of a core over a second (at most two minutes);
/// returns how long that took, in seconds.
fn wait_quiet(pid: u32) -> f64 {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let before = cpu_seconds(pid);
        std::thread::sleep(Duration::from_secs(1));
        if cpu_seconds(pid) - before < 0.02 {
            break;
        }
    }
    started.elapsed().as_secs_f64()
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

struct Collector {
    child: Child,
    query: String,
    http: String,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_collector(bin: &Path, dir: &Path) -> Collector {
    let (http, query) = (free_port(), free_port());
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!("[sources.otlp]\ntype = \"otlp_http\"\naddress = \"127.0.0.1:{http}\"\n\n[sinks.logs]\ntype = \"log_index\"\ninputs = [\"otlp\"]\n"),
    )
    .unwrap();
    let child = Command::new(bin)
        .args(["collector", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env("FERTIVISION_COLLECTOR__PIPELINE", &pipeline)
        .env(
            "FERTIVISION_COLLECTOR__QUERY_LISTEN",
            format!("127.0.0.1:{query}"),
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("the collector binary runs");
    let collector = Collector {
        child,
        query: format!("http://127.0.0.1:{query}"),
        http: format!("http://127.0.0.1:{http}"),
    };
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", http)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", query)).is_ok()
        {
            return collector;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the collector did not start");
}

async fn total(client: &reqwest::Client, base: &str) -> u64 {
    let page: Value = match client
        .get(format!("{base}/api/v1/logs/search?limit=1"))
        .send()
        .await
    {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    page["total"].as_u64().unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args();
    let work = tempfile::tempdir()?;
    let start_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 3_600_000_000_000;
    let generated = Instant::now();
    let (records, bytes, traces) = corpus(args.mb << 20, start_ns);
    let end_ns = records.last().map_or(start_ns, |r| r.ts);
    let mb = bytes as f64 / (1 << 20) as f64;
    let requests: Vec<Vec<u8>> = records
        .chunks(BATCH)
        .map(|chunk| otlp(chunk).encode_to_vec())
        .collect();
    let otlp_mb = requests.iter().map(Vec::len).sum::<usize>() as f64 / (1 << 20) as f64;
    println!(
        "corpus: {} records, {mb:.0} MB as JSON lines ({otlp_mb:.0} MB as OTLP protobuf), {} traces sampled, generated in {:.1} s",
        records.len(),
        traces.len(),
        generated.elapsed().as_secs_f64()
    );
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1. End to end.
    let collector_dir = work.path().join("collector");
    std::fs::create_dir_all(&collector_dir)?;
    let collector = start_collector(&args.bin, &collector_dir);
    let client = reqwest::Client::new();
    let cpu_before = cpu_seconds(collector.child.id());
    let started = Instant::now();
    let url = format!("{}/v1/logs", collector.http);
    let mut pending = futures_util::stream::iter(requests.iter().cloned().map(|body| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            loop {
                let answer = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(body.clone())
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status().is_success() => return,
                    Ok(response) if response.status() == 429 => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    Ok(response) => panic!("refused: {}", response.status()),
                    Err(error) => panic!("send failed: {error}"),
                }
            }
        }
    }))
    .buffer_unordered(CONCURRENCY);
    while pending.next().await.is_some() {}
    let acknowledged = started.elapsed();
    // Polling costs the collector CPU, which counts as ingest here: a match-all count sorts
    // every record. So first wait, cheaply, for the trace of the last record sent, then
    // confirm that all records are searchable with the count.
    let last_trace = hex::encode(records.last().expect("a corpus").trace_id);
    let probe = format!(
        "{}/api/v1/logs/search?q=trace_id:{last_trace}&limit=1",
        collector.query
    );
    loop {
        let page: Value = client.get(&probe).send().await?.json().await?;
        if page["total"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while total(&client, &collector.query).await < records.len() as u64 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let searchable = started.elapsed();
    let e2e_cpu = cpu_seconds(collector.child.id()) - cpu_before;
    println!(
        "end to end: acknowledged in {:.1} s, all searchable after {:.1} s; collector CPU {e2e_cpu:.1} s; {:.1} MB/s wall, {:.1} MB/s per CPU-second",
        acknowledged.as_secs_f64(),
        searchable.as_secs_f64(),
        mb / searchable.as_secs_f64(),
        mb / e2e_cpu,
    );

    // Background merges still run after the last commit; PostgreSQL's queries run after its
    // index is built, so ours run after the collector has gone quiet.
    let quiet = wait_quiet(collector.child.id());
    let index_bytes = dir_size(&collector_dir.join("index"));
    println!(
        "collector quiet {quiet:.1} s later (merges finishing); index {:.0} MB ({:.2} GB per GB ingested)",
        index_bytes as f64 / (1 << 20) as f64,
        index_bytes as f64 / bytes as f64
    );

    // Queries on ours, over HTTP.
    let trace_ids: Vec<&String> = traces.iter().take(RUNS).collect();
    let minute = format!("start={start_ns}&end={end_ns}&interval=1m");
    let ours: Vec<(&str, Vec<String>)> = vec![
        (
            "term",
            vec!["/api/v1/logs/search?q=timeout&limit=100".to_owned()],
        ),
        (
            "phrase",
            vec!["/api/v1/logs/search?q=%22connection%20reset%20by%20peer%22&limit=100".to_owned()],
        ),
        (
            "trace id",
            trace_ids
                .iter()
                .map(|t| format!("/api/v1/logs/search?q=trace_id:{t}&limit=100"))
                .collect(),
        ),
        (
            "histogram per minute",
            vec![format!("/api/v1/logs/histogram?{minute}")],
        ),
    ];
    let mut ours_latency = Vec::new();
    for (name, paths) in &ours {
        let mut samples = Vec::new();
        for run in 0..RUNS {
            let path = &paths[run % paths.len()];
            let t = Instant::now();
            let response = client
                .get(format!("{}{path}", collector.query))
                .send()
                .await?;
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            let _ = response.bytes().await?;
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ours_latency.push((*name, percentiles(samples)));
    }
    drop(collector);

    // 2. Raw tantivy, in this process.
    let raw_dir = work.path().join("raw");
    let index = log_index::LogIndex::open(&raw_dir, log_index::StoreConfig::default())?;
    let decoded: Vec<ExportLogsServiceRequest> = requests
        .iter()
        .map(|b| ExportLogsServiceRequest::decode(b.as_slice()).unwrap())
        .collect();
    let me = std::process::id();
    let cpu_before = cpu_seconds(me);
    let started = Instant::now();
    for request in &decoded {
        index.add(request)?;
    }
    index.commit(None)?;
    let raw_wall = started.elapsed().as_secs_f64();
    let raw_cpu = cpu_seconds(me) - cpu_before;
    println!(
        "raw tantivy (log_index::LogIndex, one commit): {raw_wall:.1} s, CPU {raw_cpu:.1} s; {:.1} MB/s wall, {:.1} MB/s per CPU-second",
        mb / raw_wall,
        mb / raw_cpu
    );
    drop(index);
    drop(decoded);

    // 3. PostgreSQL.
    if args.no_pg {
        for (name, (o50, o99)) in &ours_latency {
            println!("{name}: ours p50 {o50:.2} ms, p99 {o99:.2} ms");
        }
        return Ok(());
    }
    let mut pg = sqlx::PgConnection::connect(&args.database_url).await?;
    let pid: i32 = sqlx::query("SELECT pg_backend_pid()")
        .fetch_one(&mut pg)
        .await?
        .get(0);
    sqlx::query("DROP TABLE IF EXISTS bench_logs")
        .execute(&mut pg)
        .await?;
    sqlx::query(
        "CREATE TABLE bench_logs (ts timestamptz NOT NULL, severity text NOT NULL, service text NOT NULL, \
         trace_id text NOT NULL, span_id text NOT NULL, body text NOT NULL, attributes jsonb NOT NULL, \
         tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED)",
    )
    .execute(&mut pg)
    .await?;
    let cpu_before = cpu_seconds(pid as u32);
    let started = Instant::now();
    {
        let mut copy = pg
            .copy_in_raw("COPY bench_logs (ts, severity, service, trace_id, span_id, body, attributes) FROM STDIN (FORMAT text)")
            .await?;
        let mut buffer = Vec::with_capacity(4 << 20);
        for r in &records {
            let escape = |s: &str| {
                s.replace('\\', "\\\\")
                    .replace('\t', "\\t")
                    .replace('\n', "\\n")
            };
            let attributes: serde_json::Map<String, Value> = r
                .attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            let ts = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(r.ts).to_rfc3339();
            buffer.extend_from_slice(
                format!(
                    "{ts}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    r.severity.0,
                    r.service,
                    hex::encode(r.trace_id),
                    hex::encode(r.span_id),
                    escape(&r.body),
                    escape(&Value::Object(attributes).to_string())
                )
                .as_bytes(),
            );
            if buffer.len() > 4 << 20 {
                copy.send(std::mem::take(&mut buffer)).await?;
            }
        }
        copy.send(buffer).await?;
        copy.finish().await?;
    }
    let copied = started.elapsed().as_secs_f64();
    sqlx::query("SET maintenance_work_mem = '1GB'")
        .execute(&mut pg)
        .await?;
    sqlx::query("SET max_parallel_maintenance_workers = 0")
        .execute(&mut pg)
        .await?;
    sqlx::query("CREATE INDEX bench_logs_tsv ON bench_logs USING gin (tsv)")
        .execute(&mut pg)
        .await?;
    sqlx::query("CREATE INDEX bench_logs_ts ON bench_logs (ts)")
        .execute(&mut pg)
        .await?;
    sqlx::query("CREATE INDEX bench_logs_trace ON bench_logs (trace_id)")
        .execute(&mut pg)
        .await?;
    sqlx::query("ANALYZE bench_logs").execute(&mut pg).await?;
    let pg_wall = started.elapsed().as_secs_f64();
    let pg_cpu = cpu_seconds(pid as u32) - cpu_before;
    let pg_bytes: i64 = sqlx::query("SELECT pg_total_relation_size('bench_logs')")
        .fetch_one(&mut pg)
        .await?
        .get(0);
    println!(
        "PostgreSQL (COPY {copied:.1} s, then GIN + 2 B-tree indexes): {pg_wall:.1} s, backend CPU {pg_cpu:.1} s; {:.1} MB/s wall, {:.1} MB/s per CPU-second; {:.0} MB on disk ({:.2} GB per GB ingested)",
        mb / pg_wall,
        mb / pg_cpu,
        pg_bytes as f64 / (1 << 20) as f64,
        pg_bytes as f64 / bytes as f64
    );

    // Queries on PostgreSQL: the same answers as ours (a page of 100 newest and the count).
    let start_ts = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(start_ns).to_rfc3339();
    let end_ts = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(end_ns).to_rfc3339();
    let page = |condition: &str| {
        vec![
            format!(
                "SELECT ts, severity, service, trace_id, span_id, body, attributes FROM bench_logs WHERE {condition} ORDER BY ts DESC LIMIT 100"
            ),
            format!("SELECT count(*) FROM bench_logs WHERE {condition}"),
        ]
    };
    let postgres: Vec<(&str, Vec<Vec<String>>)> = vec![
        ("term", vec![page("tsv @@ to_tsquery('simple', 'timeout')")]),
        (
            "phrase",
            vec![page(
                "tsv @@ phraseto_tsquery('simple', 'connection reset by peer')",
            )],
        ),
        (
            "trace id",
            trace_ids
                .iter()
                .map(|t| page(&format!("trace_id = '{t}'")))
                .collect(),
        ),
        (
            "histogram per minute",
            vec![vec![format!(
                "SELECT date_trunc('minute', ts) AS m, count(*) FROM bench_logs WHERE ts BETWEEN '{start_ts}' AND '{end_ts}' GROUP BY m ORDER BY m"
            )]],
        ),
    ];
    let mut pg_latency = Vec::new();
    for (name, statements) in &postgres {
        let mut samples = Vec::new();
        for run in 0..RUNS {
            let t = Instant::now();
            for statement in &statements[run % statements.len()] {
                let _ = sqlx::query(AssertSqlSafe(statement.clone()))
                    .fetch_all(&mut pg)
                    .await?;
            }
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        pg_latency.push((*name, percentiles(samples)));
    }
    sqlx::query("DROP TABLE bench_logs")
        .execute(&mut pg)
        .await?;

    println!();
    println!("| query | ours p50 ms | ours p99 ms | PostgreSQL p50 ms | PostgreSQL p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for ((name, (o50, o99)), (_, (p50, p99))) in ours_latency.iter().zip(&pg_latency) {
        println!("| {name} | {o50:.2} | {o99:.2} | {p50:.2} | {p99:.2} |");
    }
    Ok(())
}
