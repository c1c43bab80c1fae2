use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use teams_emulator::cli::{self, Cli, Command};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => cli::serve(args).await,
        Command::Run(args) => cli::run(args).await,
        Command::Validate(args) => cli::validate(args),
    };
    let _ = std::io::stdout().flush();
    code
}
