//! The command line: `teams-emulator serve` (and, with the scenario runner, `run` and `validate`).

use crate::config::{BotOverrides, EmulatorConfig};
use crate::server::{BotAuth, Emulator};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(
    name = "teams-emulator",
    version,
    about = "A local Microsoft Teams for testing proactive bots: Graph, Bot Connector, tokens and signed activity delivery on one port."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve Graph, the Bot Connector, tokens and OpenID documents, and deliver activities to the bot.
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:3979")]
    pub listen: SocketAddr,
    /// A YAML file describing the tenant(s); without it, the embedded default tenant.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The tenant id of the (first) tenant.
    #[arg(long)]
    pub tenant_id: Option<Uuid>,
    /// Your bot's app (client) id.
    #[arg(long)]
    pub bot_app_id: Option<Uuid>,
    /// Your bot's client secret, checked by the token endpoint.
    #[arg(long)]
    pub bot_app_secret: Option<String>,
    /// Your bot's messaging endpoint, where activities are delivered.
    #[arg(long)]
    pub bot_endpoint: Option<String>,
    /// Your app's manifest id (`externalId` in the catalog).
    #[arg(long)]
    pub manifest_id: Option<Uuid>,
    /// `signed`: activities carry a channel JWT and Connector calls need a token; `none`: neither.
    #[arg(long, value_enum, default_value_t = BotAuthArg::Signed)]
    pub bot_auth: BotAuthArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BotAuthArg {
    Signed,
    None,
}

impl From<BotAuthArg> for BotAuth {
    fn from(a: BotAuthArg) -> Self {
        match a {
            BotAuthArg::Signed => BotAuth::Signed,
            BotAuthArg::None => BotAuth::None,
        }
    }
}

/// Exit codes: 0 success, 1 a run failed, 2 unusable input.
pub const EXIT_USAGE: u8 = 2;

pub async fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match &args.config {
        Some(path) => match EmulatorConfig::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => EmulatorConfig::default_tenant(),
    };
    if let Some(endpoint) = &args.bot_endpoint
        && !matches!(
            url::Url::parse(endpoint)
                .map(|u| u.scheme().to_string())
                .as_deref(),
            Ok("http" | "https")
        )
    {
        eprintln!("error: --bot-endpoint: '{endpoint}' is not an http(s) URL");
        return ExitCode::from(EXIT_USAGE);
    }
    config.apply(&BotOverrides {
        tenant_id: args.tenant_id,
        bot_app_id: args.bot_app_id,
        bot_app_secret: args.bot_app_secret.clone(),
        bot_endpoint: args.bot_endpoint.clone(),
        manifest_id: args.manifest_id,
    });
    if let Err(e) = config.check(
        &args
            .config
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<flags>".into()),
    ) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    if !args.listen.ip().is_loopback() {
        tracing::warn!(
            address = %args.listen,
            "listening on a non-loopback address: anyone who can reach it can get tokens for the emulated tenant"
        );
    }
    let emulator = match Emulator::builder()
        .config(config)
        .listen(args.listen)
        .bot_auth(args.bot_auth.into())
        .start()
        .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    println!("teams-emulator listening on {}", emulator.url());
    shutdown_signal().await;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    ExitCode::SUCCESS
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
