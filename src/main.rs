use clap::Parser;

/// glibc's allocator spent a third of W2's CPU time in `malloc` and `free`
/// (perf, `benches/load.rs`): a GraphQL response is many small values built
/// on one worker thread and freed on another. mimalloc's per-thread heaps
/// suit that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = commerce_graph::cli::Cli::parse();
    match commerce_graph::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("commerce-graph: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
