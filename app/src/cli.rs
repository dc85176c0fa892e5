//! The command line. With no command, `fertivision` runs `up`.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Apply the database migrations and exit.
    Migrate,
    /// Manage API tokens.
    Token {
        /// What to do with tokens.
        #[command(subcommand)]
        command: TokenCommand,
    },
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
        server::init_logging(&config);
        let sqlite = config.database.url.is_empty() || config.database.url.starts_with("sqlite:");
        match self.command.unwrap_or(Command::Up(ListenArgs::default())) {
            Command::Up(_) => {
                let store = server::open_store(&config, true).await?;
                server::ensure_first_token(&store).await?;
                let concurrency = config.jobs.concurrency;
                let runtime = server::Runtime::open(config, store).await?;
                server::run_api(runtime, Some(concurrency)).await
            }
            Command::Serve(_) => {
                // The embedded database migrates itself; PostgreSQL is migrated by `migrate`.
                let store = server::open_store(&config, sqlite).await?;
                let runtime = server::Runtime::open(config, store).await?;
                server::run_api(runtime, None).await
            }
            Command::Worker { concurrency } => {
                let store = server::open_store(&config, sqlite).await?;
                let concurrency = concurrency.unwrap_or(config.jobs.concurrency).max(1);
                let runtime = server::Runtime::open(config, store).await?;
                runtime.run_workers(concurrency).await
            }
            Command::Migrate => {
                let store = server::open_store(&config, true).await?;
                store.close().await;
                eprintln!("migrations applied ({})", store.backend_name());
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
