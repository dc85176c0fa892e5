use clap::Parser;

/// mimalloc: per-thread free lists and no arena trimming on the hot paths (every request and
/// every exported span allocates); see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // No transparent huge pages for this process. mimalloc asks for them on its arenas and
    // gives freed memory back to the system after 10 ms; every page used again was then a
    // fresh 2 MiB page the kernel had to zero. In the collector, whose index writers take new
    // memory every second, that zeroing was over half of its CPU time (BENCHMARKS.md). The
    // kernel refuses only where prctl is missing, and then nothing changes.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fertivision: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let cli = fertivision::cli::Cli::parse();
        match cli.run().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("fertivision: {error:#}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
