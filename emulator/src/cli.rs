//! The command line: `teams-emulator serve` (and, with the scenario runner, `run` and `validate`).

use crate::config::{BotOverrides, EmulatorConfig};
use crate::emulator::Emulator;
use crate::state::BotAuth;
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
    /// Run scenario files against a fresh emulator and the bot under test; exit 0 all passed, 1 a scenario failed, 2 unusable input.
    Run(RunArgs),
    /// Parse and check scenario files without running them; exit 2 with file, line, column and reason on the first broken one.
    Validate(ValidateArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Scenario files or folders (searched for *.yaml / *.yml).
    #[arg(default_value = "scenarios")]
    pub paths: Vec<PathBuf>,
    /// The command that starts the bot under test, for every scenario (default: each scenario's `bot.command`, else the built-in reference bot).
    #[arg(long)]
    pub bot_cmd: Option<String>,
    /// Write a JUnit XML report here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write one Bot Framework .transcript per scenario into this folder.
    #[arg(long)]
    pub transcripts: Option<PathBuf>,
    /// Write a self-contained HTML report here (failures open, with the conversation both ways).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Run only scenarios whose name or file contains this text (case-insensitive).
    #[arg(long)]
    pub filter: Option<String>,
    /// The seed for injected faults and throttling; recorded in the report so a run can be replayed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How many scenarios run at once (each has its own emulator and bot).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
}

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Scenario files or folders.
    #[arg(default_value = "scenarios")]
    pub paths: Vec<PathBuf>,
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
    /// Turn off Teams' and Graph's throttling limits (429 with Retry-After past them).
    #[arg(long)]
    pub no_throttling: bool,
    /// The seed of injected faults that fire by chance (`/_emulator/faults` with a probability).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Transcript entries and delivery records kept; older ones go (and are counted). Chats
    /// keep every message: that is tenant state, not a log.
    #[arg(long, value_name = "N", default_value_t = crate::delivery::DEFAULT_RETAIN)]
    pub retain: usize,
    /// Serve HTTPS, with certificates from a local authority kept in --tls-dir (its ca.pem is
    /// what clients trust: NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, SSL_CERT_FILE).
    #[arg(long)]
    pub tls: bool,
    /// Where the local certificate authority is kept (created on first use).
    #[arg(long, default_value = ".data/tls")]
    pub tls_dir: PathBuf,
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
pub const EXIT_FAILED: u8 = 1;

/// Finds and checks every scenario, printing each problem; `None` when any is broken.
fn load_all(paths: &[PathBuf]) -> Option<Vec<crate::scenario::Scenario>> {
    let files = match crate::scenario::discover(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return None;
        }
    };
    if files.is_empty() {
        eprintln!(
            "error: no scenario files (*.yaml, *.yml) in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return None;
    }
    let mut scenarios = Vec::new();
    let mut broken = false;
    for f in files {
        match crate::scenario::load(&f) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                eprintln!("error: {e}");
                broken = true;
            }
        }
    }
    (!broken).then_some(scenarios)
}

pub fn validate(args: ValidateArgs) -> ExitCode {
    match load_all(&args.paths) {
        Some(s) => {
            println!("{} scenario file(s) are valid", s.len());
            ExitCode::SUCCESS
        }
        None => ExitCode::from(EXIT_USAGE),
    }
}

pub async fn run(args: RunArgs) -> ExitCode {
    use crate::scenario::{report, run};
    use std::io::IsTerminal;
    let Some(mut scenarios) = load_all(&args.paths) else {
        return ExitCode::from(EXIT_USAGE);
    };
    if let Some(filter) = &args.filter {
        let f = filter.to_lowercase();
        scenarios.retain(|s| {
            s.spec.name.to_lowercase().contains(&f)
                || s.file.display().to_string().to_lowercase().contains(&f)
        });
        if scenarios.is_empty() {
            eprintln!("error: no scenario matches --filter '{filter}'");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    if args.jobs == 0 {
        eprintln!("error: --jobs must be at least 1");
        return ExitCode::from(EXIT_USAGE);
    }
    let style = report::Style {
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let seed = args.seed.map(|s| format!(", seed {s}")).unwrap_or_default();
    println!(
        "teams-emulator run: {} scenario(s), {} at a time{seed}",
        scenarios.len(),
        args.jobs
    );
    let options = run::RunOptions {
        bot_cmd: args.bot_cmd.clone(),
        seed: args.seed,
    };
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(args.jobs));
    let mut tasks = tokio::task::JoinSet::new();
    // A task that panics still has a result: which scenario it was.
    let mut names = std::collections::HashMap::new();
    for (i, scenario) in scenarios.into_iter().enumerate() {
        let options = options.clone();
        let semaphore = semaphore.clone();
        let name = (
            scenario.spec.name.clone(),
            scenario.file.display().to_string(),
        );
        let handle = tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            (i, run::run_scenario(&scenario, &options).await)
        });
        names.insert(handle.id(), (i, name));
    }
    let mut results = Vec::new();
    let all = async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((i, r)) => {
                    print!("{}", report::scenario_text(&r, style));
                    results.push((i, r));
                }
                Err(e) if e.is_panic() => {
                    let Some((i, (name, file))) = names.get(&e.id()).cloned() else {
                        continue;
                    };
                    let r = run::ScenarioResult::broken(
                        name,
                        file,
                        format!("the runner failed on this scenario: {e}"),
                    );
                    print!("{}", report::scenario_text(&r, style));
                    results.push((i, r));
                }
                Err(_) => {}
            }
        }
    };
    let interrupted = tokio::select! {
        _ = all => false,
        _ = shutdown_signal() => true,
    };
    // Dropping unfinished scenarios stops their bots and emulators.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // Scenarios the interrupt stopped (or never started) are in the reports too, as not passed.
    for (i, (name, file)) in names.values() {
        if !results.iter().any(|(done, _)| done == i) {
            results.push((
                *i,
                run::ScenarioResult::broken(
                    name.clone(),
                    file.clone(),
                    "interrupted before it finished".into(),
                ),
            ));
        }
    }
    results.sort_by_key(|(i, _)| *i);
    let results: Vec<_> = results.into_iter().map(|(_, r)| r).collect();
    if let Some(path) = &args.junit
        && let Err(e) = report::write_junit(path, &results)
    {
        eprintln!("error: cannot write {}: {e}", path.display());
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(path) = &args.html
        && let Err(e) = report::write_html(path, &results, args.seed)
    {
        eprintln!("error: cannot write {}: {e}", path.display());
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(dir) = &args.transcripts
        && let Err(e) = report::write_transcripts(dir, &results)
    {
        eprintln!("error: cannot write transcripts to {}: {e}", dir.display());
        return ExitCode::from(EXIT_USAGE);
    }
    println!();
    println!("{}", report::summary_line(&results));
    if interrupted {
        eprintln!("interrupted: stopped the bots and emulators that were running");
        return ExitCode::from(EXIT_FAILED);
    }
    if results.iter().all(|r| r.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

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
    let mut builder = Emulator::builder();
    if args.tls {
        match crate::tls::TlsIdentity::load_or_create(&args.tls_dir) {
            Ok(identity) => {
                if let Some(ca) = &identity.ca_file {
                    eprintln!(
                        "serving HTTPS; clients trust the authority in {}",
                        ca.display()
                    );
                }
                builder = builder.tls(identity);
            }
            Err(e) => {
                eprintln!("error: --tls: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let emulator = match builder
        .config(config)
        .listen(args.listen)
        .bot_auth(args.bot_auth.into())
        .throttling(!args.no_throttling)
        .seed(args.seed)
        .retain(args.retain)
        .start()
        .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let stop = shutdown_signal();
    println!("teams-emulator listening on {}", emulator.url());
    stop.await;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    ExitCode::SUCCESS
}

/// Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // Register the handlers now, not when first polled: a SIGTERM that arrives right after the
    // ready line must already find them, or it kills the process without a graceful shutdown.
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (mut interrupt, mut terminate) = handlers;
            let interrupted = async {
                match interrupt.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            let terminated = async {
                match terminate.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = interrupted => {},
                _ = terminated => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
