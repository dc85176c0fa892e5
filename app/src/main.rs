use clap::Parser;

/// mimalloc: per-thread free lists and no arena trimming on the hot paths (every request and
/// every exported span allocates); see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = fertivision::cli::Cli::parse();
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fertivision: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
