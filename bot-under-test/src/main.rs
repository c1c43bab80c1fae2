//! `proactive-bot`: the reference proactive Teams bot. See `proactive-bot --help`.

use std::io::Write;

use clap::Parser;
use proactive_bot::{Bot, Cli};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Cli::parse().into_config();
    // Quiet by default (warnings only); RUST_LOG turns it up. Logs go to stderr so stdout
    // carries only the ready line.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if !config.authenticates() {
        tracing::warn!(
            "no app id: inbound activities are not validated and outbound calls carry no token"
        );
    }
    let bot = Bot::start(config).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "proactive-bot listening on {}", bot.url())?;
        stdout.flush()?;
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    bot.shutdown().await
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
