//! The command line. With no command, `fertivision` runs `up`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::auth::Role;
use crate::config::Config;
use crate::server;

/// FertiVision: patients, lab classifications, documents and fertility scores for IVF and
/// andrology clinics.
///
/// Settings come from a TOML file (`--config`) and `FERTIVISION_*` environment variables
/// (`FERTIVISION_DATABASE__URL=postgres://...`); see fertivision.example.toml.
#[derive(Debug, Parser)]
#[command(name = "fertivision", version, propagate_version = true)]
pub struct Cli {
    /// Settings file (TOML). Without it, built-in defaults plus the environment.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded SQLite database and local objects (overrides `data_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Serve the tokio-console API (127.0.0.1:6669, or TOKIO_CONSOLE_BIND) for the
    /// `tokio-console` client: the runtime's tasks, their polls and wakers, live.
    #[arg(long, global = true)]
    pub tokio_console: bool,
    /// What to run (default: up).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process on embedded defaults: the API on :8080 over SQLite and
    /// local object storage under ./data, created and migrated on first start, with the
    /// background workers. Prints an admin token the first time.
    Up(ListenArgs),
    /// Run the API only (production: PostgreSQL and S3 from the config; run `migrate` first).
    Serve(ListenArgs),
    /// Run background workers (document analysis, reports) and the queue reconciler. SIGTERM:
    /// stop taking jobs, finish or release the running ones, exit.
    Worker {
        /// Jobs run at once (overrides `jobs.concurrency`).
        #[arg(long, value_name = "N")]
        concurrency: Option<usize>,
    },
    /// Run the telemetry collector: OTLP on :4317 (gRPC) and :4318 (HTTP), Pyroscope
    /// `/ingest`, a write-ahead log under <data_dir>/wal, the pipeline of `collector.pipeline`
    /// (or the built-in one), and /metrics, /api/v1/profiles on :7070. SIGTERM: stop
    /// accepting, let each sink commit, close the log.
    Collector,
    /// Send OTLP load to a collector (spans shaped like the OpenTelemetry SDK benchmark, log
    /// records, or metric points) at a target rate or as fast as it accepts, with a progress
    /// line and a final summary: sent, acknowledged, refused, rate.
    Loadgen(LoadgenArgs),
    /// Search log records in the collector's index, or follow them live.
    Logs {
        /// What to do.
        #[command(subcommand)]
        command: LogsCommand,
    },
    /// Look at one trace: its spans as a waterfall, with their log records.
    Trace {
        /// What to do.
        #[command(subcommand)]
        command: TraceCommand,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Manage API tokens.
    Token {
        /// What to do with tokens.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Alert notifications Alertmanager sent to POST /api/v1/alerts/webhook.
    Alerts {
        /// What to do.
        #[command(subcommand)]
        command: AlertsCommand,
    },
}

/// What `alerts` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AlertsCommand {
    /// List the notifications received, newest first, each with links to the logs and traces
    /// of its service in its window (read from the database of the configuration).
    List {
        /// Only `firing` or only `resolved` ones.
        #[arg(long, value_parser = ["firing", "resolved"])]
        status: Option<String>,
        /// How many, 1 to 200.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
        limit: u32,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The load generator's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// Collector base URL; default http://127.0.0.1:4317 (grpc) or :4318 (http).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// `grpc` or `http` (protobuf).
    #[arg(long, value_enum, default_value = "grpc")]
    pub protocol: LoadProtocol,
    /// `traces`, `logs` or `metrics`.
    #[arg(long, value_enum, default_value = "traces")]
    pub signal: LoadSignal,
    /// Items per second; without it, as fast as the collector accepts.
    #[arg(long)]
    pub rate: Option<u64>,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Stop after this many items.
    #[arg(long)]
    pub total: Option<u64>,
    /// Items per request.
    #[arg(long, default_value_t = 512)]
    pub batch_size: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

/// Log commands.
#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Records matching a query, newest first, e.g.
    /// `fertivision logs search 'severity:ERROR service:fertivision-worker' --since 1h`.
    Search(crate::observe::LogsSearchArgs),
    /// Records matching a query as they arrive (Ctrl-C stops).
    Tail(crate::observe::LogsTailArgs),
}

/// Trace commands.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// The spans of a trace as a waterfall in the terminal (services, operations, offsets and
    /// durations, errors marked), its log records under their spans.
    Show(crate::observe::TraceShowArgs),
}

/// Load protocol.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LoadProtocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP, protobuf.
    Http,
}

/// Load signal.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LoadSignal {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
    /// Metric data points.
    Metrics,
}

/// Runs the load generator, printing a progress line a second and a summary.
async fn run_loadgen(args: LoadgenArgs) -> anyhow::Result<()> {
    use telemetry::loadgen::{self, LoadgenConfig, Protocol, SignalKind};
    let protocol = match args.protocol {
        LoadProtocol::Grpc => Protocol::Grpc,
        LoadProtocol::Http => Protocol::Http,
    };
    let signal = match args.signal {
        LoadSignal::Traces => SignalKind::Traces,
        LoadSignal::Logs => SignalKind::Logs,
        LoadSignal::Metrics => SignalKind::Metrics,
    };
    let endpoint = args.endpoint.unwrap_or_else(|| match protocol {
        Protocol::Grpc => "http://127.0.0.1:4317".to_owned(),
        Protocol::Http => "http://127.0.0.1:4318".to_owned(),
    });
    let config = LoadgenConfig {
        rate: args.rate,
        duration: std::time::Duration::from_secs(args.duration),
        total: args.total,
        batch_size: args.batch_size,
        concurrency: args.concurrency,
        ..LoadgenConfig::new(endpoint, protocol, signal)
    };
    let report = loadgen::run(config, |r| {
        eprint!(
            "\r{:>6.1}s  sent {:>10}  acknowledged {:>10}  refused {:>8}  failed {:>6}  {:>10.0}/s   ",
            r.elapsed.as_secs_f64(),
            r.sent_items,
            r.acknowledged_items,
            r.refused_items,
            r.failed_items,
            r.acknowledged_per_sec
        );
    })
    .await?;
    eprintln!();
    println!(
        "sent {}  acknowledged {}  refused {}  failed {}  requests {}  in {:.2}s  = {:.0} acknowledged items/s",
        report.sent_items,
        report.acknowledged_items,
        report.refused_items,
        report.failed_items,
        report.requests,
        report.elapsed.as_secs_f64(),
        report.acknowledged_per_sec
    );
    if report.refusals_without_retry_info > 0 {
        println!(
            "{} refusals named no retry delay; waited 1 s each",
            report.refusals_without_retry_info
        );
    }
    Ok(())
}

/// Where the API listens.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListenArgs {
    /// Address to listen on (overrides `api.listen`, default 0.0.0.0:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once on stdout (only its hash is stored).
    Create {
        /// What the token may do: clinician (all but deleting patients), lab (read, record
        /// analyses, upload documents) or admin (everything).
        #[arg(long, value_enum)]
        role: Role,
        /// A note to tell tokens apart (not secret).
        #[arg(long, default_value = "")]
        label: String,
    },
}

impl Cli {
    /// Loads the configuration with the command-line overrides applied.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(Command::Up(args) | Command::Serve(args)) = &self.command
            && let Some(listen) = args.listen
        {
            config.api.listen = listen;
        }
        Ok(config)
    }

    /// Runs the chosen command.
    pub async fn run(self) -> anyhow::Result<()> {
        let config = self.load_config()?;
        let service = match &self.command {
            None | Some(Command::Up(_)) => Some("fertivision"),
            Some(Command::Serve(_)) => Some("fertivision-api"),
            Some(Command::Worker { .. }) => Some("fertivision-worker"),
            Some(_) => None,
        };
        if self.tokio_console && !cfg!(tokio_unstable) {
            anyhow::bail!(
                "--tokio-console needs a build with `--cfg tokio_unstable`: the repository's \
                 .cargo/config.toml sets it, unless RUSTFLAGS overrides it; rebuild without \
                 RUSTFLAGS, or with RUSTFLAGS=\"--cfg tokio_unstable\""
            );
        }
        let telemetry = crate::otel::init(&config, service, self.tokio_console);
        let outcome = self.run_command(config).await;
        telemetry.shutdown().await;
        outcome
    }

    async fn run_command(self, config: Config) -> anyhow::Result<()> {
        // Listen for SIGTERM before anything starts, so that no part misses it.
        let shutdown = server::listen_for_shutdown();
        let sqlite = config.database.url.is_empty() || config.database.url.starts_with("sqlite:");
        match self.command.unwrap_or(Command::Up(ListenArgs::default())) {
            Command::Up(_) => {
                let store = server::open_store(&config, true).await?;
                server::ensure_first_token(&store).await?;
                let concurrency = config.jobs.concurrency;
                // The collector first, listening before the API starts: a pipeline or a port
                // problem stops `up` before the API starts, and the API's first telemetry
                // finds it.
                let collector_settings = server::collector_settings(&config)?;
                let (listening, collector_listens) = tokio::sync::oneshot::channel();
                let mut collector = tokio::spawn(telemetry::collector::run_and_tell(
                    collector_settings,
                    server::stopped(shutdown.clone()),
                    listening,
                ));
                if collector_listens.await.is_err() {
                    // It stopped first: an error says why; Ok is a shutdown during start-up.
                    return collector
                        .await
                        .context("collector task")?
                        .context("collector failed");
                }
                let runtime = server::Runtime::open(config, store).await?;
                let api = server::run_api(runtime, Some(concurrency), shutdown);
                tokio::pin!(api);
                tokio::select! {
                    outcome = &mut api => {
                        outcome?;
                        collector.await.context("collector task")?.context("collector failed")
                    }
                    outcome = &mut collector => {
                        // Ok only after the shutdown signal, which the API got too: wait for
                        // it. An error (a port in use, say) stops `up`.
                        outcome.context("collector task")?.context("collector failed")?;
                        api.await
                    }
                }
            }
            Command::Collector => server::run_collector(&config, shutdown).await,
            Command::Loadgen(args) => run_loadgen(args).await,
            Command::Logs { command } => {
                let listen = config.collector.query_listen;
                match command {
                    LogsCommand::Search(args) => {
                        let base = crate::observe::collector_url(args.collector.as_deref(), listen);
                        crate::observe::logs_search(&base, &args).await
                    }
                    LogsCommand::Tail(args) => {
                        let base = crate::observe::collector_url(args.collector.as_deref(), listen);
                        tokio::select! {
                            outcome = crate::observe::logs_tail(&base, &args) => outcome,
                            () = server::stopped(shutdown) => Ok(()),
                        }
                    }
                }
            }
            Command::Trace {
                command: TraceCommand::Show(args),
            } => {
                let base = crate::observe::collector_url(
                    args.collector.as_deref(),
                    config.collector.query_listen,
                );
                crate::observe::trace_show(&base, &args).await
            }
            Command::Serve(_) => {
                // The embedded database migrates itself; PostgreSQL is migrated by `migrate`.
                let store = server::open_store(&config, sqlite).await?;
                let runtime = server::Runtime::open(config, store).await?;
                server::run_api(runtime, None, shutdown).await
            }
            Command::Worker { concurrency } => {
                let store = server::open_store(&config, sqlite).await?;
                let concurrency = concurrency.unwrap_or(config.jobs.concurrency).max(1);
                let runtime = server::Runtime::open(config, store).await?;
                runtime.run_workers(concurrency, shutdown).await
            }
            Command::Migrate => {
                let store = server::open_store(&config, true).await?;
                store.close().await;
                eprintln!("migrations applied ({})", store.backend_name());
                Ok(())
            }
            Command::Alerts {
                command:
                    AlertsCommand::List {
                        status,
                        limit,
                        json,
                    },
            } => {
                let store = server::open_store(&config, sqlite).await?;
                let rows = store
                    .list_alert_notifications(i64::from(limit), status.as_deref())
                    .await;
                store.close().await;
                let now = chrono::Utc::now();
                let views = rows?.into_iter().map(|row| {
                    crate::api::alerts::AlertView::new(row, &config.alerts.query_url, now)
                });
                let mut out = std::io::stdout().lock();
                let mut any = false;
                for view in views {
                    any = true;
                    if json {
                        writeln!(out, "{}", serde_json::to_string(&view)?)?;
                    } else {
                        write_alert(&mut out, &view)?;
                    }
                }
                if !any && !json {
                    eprintln!("no alert notifications received yet");
                }
                Ok(())
            }
            Command::Token {
                command: TokenCommand::Create { role, label },
            } => {
                let store = server::open_store(&config, sqlite).await?;
                let token = server::create_token(&store, role, &label).await?;
                store.close().await;
                println!("{token}");
                eprintln!("created a {role} token; it is shown only this once");
                Ok(())
            }
        }
    }
}

/// One alert notification as `alerts list` prints it.
fn write_alert(
    out: &mut impl std::io::Write,
    alert: &crate::api::alerts::AlertView,
) -> std::io::Result<()> {
    let mark = if alert.status == "firing" {
        "✗"
    } else {
        "✓"
    };
    let service = alert.labels.get("job").map_or("", String::as_str);
    writeln!(
        out,
        "{mark} {} {} [{}] {} since {}{}",
        alert.received_at.format("%Y-%m-%d %H:%M:%S"),
        alert.alertname,
        alert.severity,
        service,
        alert.starts_at.format("%H:%M:%S"),
        alert
            .ends_at
            .map(|end| format!(", resolved {}", end.format("%H:%M:%S")))
            .unwrap_or_default(),
    )?;
    if let Some(summary) = alert.annotations.get("summary") {
        writeln!(out, "    {summary}")?;
    }
    if let Some(runbook) = alert.annotations.get("runbook_url") {
        writeln!(out, "    runbook: {runbook}")?;
    }
    writeln!(out, "    logs:    {}", alert.logs_url)?;
    writeln!(out, "    traces:  {}", alert.traces_url)
}
