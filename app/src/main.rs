use clap::Parser;

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
