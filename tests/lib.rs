//! The harness of the end-to-end tests, reusable by anything that drives the emulator and a bot
//! over HTTP (a scenario runner, say):
//!
//! - [`start_emulator`], [`start_reference_bot`] and [`Stack`]: the emulator and the reference
//!   bot wired together (the bot needs the emulator's URL, so the emulator starts first and is
//!   then told the bot's endpoint with [`EmulatorHandle::set_bot_endpoint`]).
//! - [`EmulatorClient`] (from the emulator's public API, as [`Stack::client`]): tokens, Graph
//!   calls as the bot or a user and the lookups the tests need, the Connector, and the
//!   `/_emulator` control API (a user writes, joins a team, deliveries).
//! - [`poll_until`]: wait for an observable condition with a deadline, never a fixed sleep.
//! - [`NodeBot`]: the botbuilder-js example as a child process, killed on drop.
//!
//! Run them with `cargo test -p end-to-end` (one file: `--test graph_flow`, `notify_flow`,
//! `team_flow`, `botbuilder_js`). `botbuilder_js` needs Node 18+ and npm, and runs `npm ci`
//! in `examples/botbuilder-js` the first time.

use anyhow::{Context, Result, anyhow, ensure};
use proactive_bot::{Bot, BotHandle, Config};
use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use teams_emulator::config::EmulatorConfig;
use teams_emulator::defaults;
use teams_emulator::{BotAuth, Emulator, EmulatorClient, EmulatorHandle};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::{Instant, sleep_until, timeout};

pub use teams_emulator;

/// How long a test waits for something that should happen promptly.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The opt-out line every message of the reference bot carries.
pub const OPT_OUT: &str = "Reply **stop** to opt out of notifications.";

/// A user of the default tenant by key: `megan` → `megan@contoso.onmicrosoft.com`.
pub fn upn(key: &str) -> String {
    format!("{key}@contoso.onmicrosoft.com")
}

/// Polls `check` until it returns `Some`, or fails after `deadline` naming `what`.
pub async fn poll_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let end = Instant::now() + deadline;
    let mut wait = Duration::from_millis(10);
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= end {
            return Err(match last_error {
                Some(e) => e.context(format!("timed out after {deadline:?} waiting for {what}")),
                None => anyhow!("timed out after {deadline:?} waiting for {what}"),
            });
        }
        sleep_until((Instant::now() + wait).min(end)).await;
        wait = (wait * 2).min(Duration::from_millis(200));
    }
}

/// A loopback URL where nothing listens (a port that was free a moment ago).
pub fn unreachable_endpoint() -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(format!("http://{addr}/api/messages"))
}

/// Starts an emulator on a free loopback port.
pub async fn start_emulator(config: EmulatorConfig, auth: BotAuth) -> Result<EmulatorHandle> {
    Emulator::builder()
        .config(config)
        .bot_auth(auth)
        .start()
        .await
        .context("starting the emulator")
}

/// Starts the reference bot against `emulator` with its SQLite file at `database`, waits until it
/// answers, and points the emulator's delivery at its messaging endpoint.
pub async fn start_reference_bot(emulator: &EmulatorHandle, database: &Path) -> Result<BotHandle> {
    let mut config = Config::for_emulator(&emulator.url());
    config.database_path = database.to_path_buf();
    // Keep the bot's own retries short: a test should see a failure, not wait it out.
    config.retry_base_delay = Duration::from_millis(50);
    config.retry_max_delay = Duration::from_secs(2);
    let bot = Bot::start(config).await.context("starting the bot")?;
    let health = format!("{}/healthz", bot.url());
    let http = reqwest::Client::new();
    poll_until("the bot to answer /healthz", DEADLINE, || async {
        Ok(http
            .get(&health)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ()))
    })
    .await?;
    let endpoint = format!("{}/api/messages", bot.url());
    ensure!(
        emulator.set_bot_endpoint(defaults::BOT_APP_ID, &endpoint),
        "the emulator has no registration for the bot"
    );
    Ok(bot)
}

/// The emulator and the reference bot, wired together, with a temporary folder for the bot's
/// SQLite database.
pub struct Stack {
    pub emulator: EmulatorHandle,
    pub bot: Option<BotHandle>,
    /// The emulator's client, acting as the bot's app (Graph with its app-only token).
    pub client: EmulatorClient,
    pub bot_api: BotApi,
    dir: tempfile::TempDir,
}

impl Stack {
    /// The default tenant, signed delivery.
    pub async fn start() -> Result<Stack> {
        Self::with_config(EmulatorConfig::default_tenant()).await
    }

    pub async fn with_config(config: EmulatorConfig) -> Result<Stack> {
        let dir = tempfile::tempdir().context("creating a temporary folder")?;
        let emulator = start_emulator(config, BotAuth::Signed).await?;
        let bot = start_reference_bot(&emulator, &dir.path().join("bot.sqlite3")).await?;
        Ok(Stack {
            client: emulator.client(),
            bot_api: BotApi::new(&bot.url()),
            bot: Some(bot),
            emulator,
            dir,
        })
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("bot.sqlite3")
    }

    pub fn bot(&self) -> &BotHandle {
        self.bot.as_ref().expect("the bot is running")
    }

    /// Shuts the bot down and starts a new one on the same database.
    pub async fn restart_bot(&mut self) -> Result<()> {
        if let Some(bot) = self.bot.take() {
            bot.shutdown().await.context("shutting the bot down")?;
        }
        let bot = start_reference_bot(&self.emulator, &self.database()).await?;
        self.bot_api = BotApi::new(&bot.url());
        self.bot = Some(bot);
        Ok(())
    }

    /// The running bot's messaging endpoint.
    pub fn bot_endpoint(&self) -> String {
        format!("{}/api/messages", self.bot().url())
    }

    /// Points the emulator's delivery at `endpoint` (e.g. [`unreachable_endpoint`], so that the
    /// bot misses events as when Teams drops them), or back at the bot with `None`.
    pub fn deliver_to(&self, endpoint: Option<&str>) -> Result<()> {
        let endpoint = endpoint.map_or_else(|| self.bot_endpoint(), str::to_owned);
        ensure!(
            self.emulator
                .set_bot_endpoint(defaults::BOT_APP_ID, &endpoint),
            "the emulator has no registration for the bot"
        );
        Ok(())
    }

    /// Waits until every activity the emulator queued has reached the bot (or failed).
    pub async fn settle(&self) -> Result<()> {
        ensure!(
            self.emulator.settle(DEADLINE).await,
            "deliveries still pending after {DEADLINE:?}"
        );
        Ok(())
    }

    /// Every delivery so far answered 2xx; returns how many there were.
    pub async fn assert_deliveries_ok(&self) -> Result<usize> {
        self.settle().await?;
        let records = self.emulator.deliveries();
        let failed: Vec<String> = records
            .iter()
            .filter(|r| !r.ok)
            .map(|r| {
                format!(
                    "{} {} → {:?} {:?}",
                    r.activity_type, r.conversation_id, r.status, r.error
                )
            })
            .collect();
        ensure!(failed.is_empty(), "deliveries failed: {failed:#?}");
        Ok(records.len())
    }

    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(bot) = self.bot.take() {
            bot.shutdown().await?;
        }
        self.emulator.shutdown().await;
        Ok(())
    }
}

async fn json_of(response: reqwest::Response, what: &str) -> Result<Value> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    ensure!(status.is_success(), "{what}: {status}: {text}");
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text}"))
}

/// Whether a Graph `chatMessage` comes from the reference bot's app.
pub fn from_bot(message: &Value) -> bool {
    message["from"]["application"]["id"] == defaults::BOT_APP_ID.to_string()
}

/// Everything a reader sees of a `chatMessage`: its body and its cards' content.
pub fn message_text(message: &Value) -> String {
    let mut text = message["body"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for attachment in message["attachments"].as_array().into_iter().flatten() {
        text.push('\n');
        text.push_str(attachment["content"].as_str().unwrap_or_default());
    }
    text
}

/// Whether a message of the reference bot is its personal welcome after an install.
pub fn is_welcome(message: &Value) -> bool {
    message_text(message).contains("was installed for you")
}

/// The bot's own API (`/api/notify`, `/api/install`).
#[derive(Clone)]
pub struct BotApi {
    http: reqwest::Client,
    base: String,
}

impl BotApi {
    pub fn new(bot_url: &str) -> BotApi {
        BotApi {
            http: reqwest::Client::new(),
            base: bot_url.trim_end_matches('/').to_owned(),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .post(format!("{}/{}", self.base, path.trim_start_matches('/')))
            .json(body)
            .send()
            .await?;
        json_of(response, &format!("POST {path}")).await
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let response = self
            .http
            .get(format!("{}/{}", self.base, path.trim_start_matches('/')))
            .send()
            .await?;
        json_of(response, &format!("GET {path}")).await
    }

    pub async fn notify(&self, body: &Value) -> Result<Report> {
        self.post("api/notify", body).await.map(Report)
    }

    pub async fn install(&self, body: &Value) -> Result<Report> {
        self.post("api/install", body).await.map(Report)
    }
}

/// A `/api/notify` or `/api/install` answer.
#[derive(Clone, Debug)]
pub struct Report(pub Value);

impl Report {
    pub fn count(&self, outcome: &str) -> u64 {
        self.0[outcome].as_u64().unwrap_or(0)
    }

    /// The outcome for a user, matched by UPN, object id or `29:` id as the bot reported it.
    pub fn outcome_of(&self, user: &str, aad_object_id: &str) -> Option<String> {
        self.0["results"]
            .as_array()?
            .iter()
            .find(|r| {
                r["aadObjectId"] == aad_object_id
                    || r["user"]
                        .as_str()
                        .is_some_and(|u| u.eq_ignore_ascii_case(user))
            })
            .and_then(|r| r["outcome"].as_str())
            .map(str::to_owned)
    }
}

/// The botbuilder-js example (`examples/botbuilder-js`) as a child process; killed on drop.
pub struct NodeBot {
    child: tokio::process::Child,
    url: String,
}

impl NodeBot {
    /// The example's folder in the workspace.
    pub fn folder() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/botbuilder-js")
    }

    /// Checks Node.js and npm are there, and runs `npm ci` if `node_modules` is missing.
    pub async fn ensure_installed() -> Result<()> {
        let folder = Self::folder();
        for tool in ["node", "npm"] {
            let found = std::process::Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            ensure!(
                found.is_ok_and(|s| s.success()),
                "`{tool}` is not installed (or not on PATH): the botbuilder-js test needs Node 18+ and npm"
            );
        }
        if !folder.join("node_modules").is_dir() {
            let out = tokio::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&folder)
                .output()
                .await
                .context("running npm ci")?;
            ensure!(
                out.status.success(),
                "npm ci in {} failed: {}\n{}",
                folder.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Installs the example's dependencies if needed, starts `node index.js` on a free port
    /// without credentials, and waits for its ready line.
    pub async fn start() -> Result<NodeBot> {
        let folder = Self::folder();
        Self::ensure_installed().await?;
        let mut child = tokio::process::Command::new("node")
            .arg("index.js")
            .current_dir(&folder)
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("MicrosoftAppId", "")
            .env("MicrosoftAppPassword", "")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning node index.js")?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        // The guard exists before the wait, so a timeout still kills the process.
        let mut bot = NodeBot {
            child,
            url: String::new(),
        };
        let mut lines = BufReader::new(stdout).lines();
        let ready = timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("timed out waiting for the botbuilder-js ready line")??
            .ok_or_else(|| anyhow!("node index.js exited before it was ready"))?;
        let url = ready
            .strip_prefix("botbuilder-js listening on ")
            .ok_or_else(|| anyhow!("unexpected first line from node index.js: {ready:?}"))?;
        bot.url = url.trim().to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(bot)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

impl Drop for NodeBot {
    fn drop(&mut self) {
        if let Err(e) = self.child.start_kill()
            && e.kind() != std::io::ErrorKind::InvalidInput
        {
            eprintln!("could not kill node index.js: {e}");
        }
    }
}
