//! `cargo run -p dashboards`: writes the generated Grafana dashboards to
//! `dashboards/generated/`, or with `--check` fails when the committed ones differ from what
//! the catalogue generates now.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Generate FertiVision's Grafana dashboards from the metric catalogue.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Folder to write the dashboards (`<uid>.json`) into.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/generated"))]
    out: PathBuf,
    /// Only compare: exit 1 when the files in --out are not what would be generated.
    #[arg(long)]
    check: bool,
    /// The collector's query API as the operator's browser reaches it (the data links).
    #[arg(long, default_value_t = dashboards::Links::default().query)]
    query_url: String,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let links = dashboards::Links {
        query: args.query_url,
    };
    let mut stale = 0;
    for (name, text) in dashboards::generate(&links)? {
        let path = args.out.join(&name);
        if args.check {
            if std::fs::read_to_string(&path).unwrap_or_default() != text {
                eprintln!(
                    "dashboards: {} is not what the catalogue generates; run `cargo run -p dashboards`",
                    path.display()
                );
                stale += 1;
            }
        } else {
            std::fs::create_dir_all(&args.out)?;
            std::fs::write(&path, text)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(if stale == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
