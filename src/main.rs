use clap::Parser;

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
