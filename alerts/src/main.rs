//! `cargo run -p alerts`: writes the generated Prometheus rules and their promtool tests under
//! `alerts/generated/`, or with `--check` fails when the committed files differ from what the
//! catalogue generates now.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Generate FertiVision's Prometheus alert rules and promtool tests from the metric catalogue.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Folder to write `rules/fertivision.rules.yml` and `tests/fertivision.test.yml` into.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/generated"))]
    out: PathBuf,
    /// Only compare: exit 1 when the files in --out are not what would be generated.
    #[arg(long)]
    check: bool,
    /// Grafana's base URL, for the dashboard links of the annotations.
    #[arg(long, default_value_t = alerts::Links::default().grafana)]
    grafana_url: String,
    /// The collector's query API, for the log-search links.
    #[arg(long, default_value_t = alerts::Links::default().query)]
    query_url: String,
    /// Base of the runbook links (the alert's name and `.md` are appended).
    #[arg(long, default_value_t = alerts::Links::default().runbooks)]
    runbooks: String,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let links = alerts::Links {
        grafana: args.grafana_url,
        query: args.query_url,
        runbooks: args.runbooks,
    };
    let groups = alerts::groups();
    let problems = alerts::problems(
        &groups,
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("runbooks"),
    );
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("alerts: {problem}");
        }
        return Ok(ExitCode::FAILURE);
    }
    let generated = alerts::render(&groups, &links)?;
    let files = [
        (alerts::RULES_FILE, &generated.rules),
        (alerts::TESTS_FILE, &generated.tests),
    ];
    let mut stale = 0;
    for (name, text) in files {
        let path = args.out.join(name);
        if args.check {
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if &committed != text {
                eprintln!(
                    "alerts: {} is not what the catalogue generates; run `cargo run -p alerts`",
                    path.display()
                );
                stale += 1;
            }
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
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
