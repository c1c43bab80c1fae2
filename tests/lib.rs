//! The harness of the end-to-end tests, reusable by anything that drives the emulator and a bot
//! over HTTP (a scenario runner, say):
//!
//! - [`start_emulator`], [`start_reference_bot`] and [`Stack`]: the emulator and the reference
//!   bot wired together (the bot needs the emulator's URL, so the emulator starts first and is
//!   then told the bot's endpoint with [`EmulatorHandle::set_bot_endpoint`]).
//! - [`Graph`]: Microsoft Graph calls with tokens from the emulator's token endpoint (the bot's
//!   app-only token, or a user's delegated one), and the lookups the tests need.
//! - [`Control`]: the emulator's `/_emulator` API (a user writes, joins a team, deliveries).
//! - [`poll_until`]: wait for an observable condition with a deadline, never a fixed sleep.
//! - [`NodeBot`]: the botbuilder-js example as a child process, killed on drop.
//!
//! Run them with `cargo test -p end-to-end` (one file: `--test graph_flow`, `notify_flow`,
//! `team_flow`, `botbuilder_js`). `botbuilder_js` needs Node 18+ and npm, and runs `npm ci`
//! in `examples/botbuilder-js` the first time.

use anyhow::{Context, Result, anyhow, ensure};
use proactive_bot::{Bot, BotHandle, Config};
use serde_json::{Value, json};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use teams_emulator::config::EmulatorConfig;
use teams_emulator::defaults;
use teams_emulator::{BotAuth, Emulator, EmulatorHandle};
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
    pub graph: Graph,
    pub control: Control,
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
        let graph = Graph::app(&emulator).await?;
        Ok(Stack {
            control: Control::new(&emulator),
            bot_api: BotApi::new(&bot.url()),
            graph,
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
            self.emulator.state().delivery.settle(DEADLINE).await,
            "deliveries still pending after {DEADLINE:?}"
        );
        Ok(())
    }

    /// Every delivery so far answered 2xx; returns how many there were.
    pub async fn assert_deliveries_ok(&self) -> Result<usize> {
        self.settle().await?;
        let records = self.emulator.state().delivery.records();
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

/// Gets a token from the emulator's token endpoint (form-encoded, as MSAL does).
pub async fn token(emulator: &EmulatorHandle, form: &[(&str, &str)]) -> Result<String> {
    let response = reqwest::Client::new()
        .post(emulator.token_url(defaults::TENANT_ID))
        .form(form)
        .send()
        .await?;
    let body = json_of(response, "token request").await?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no access_token in {body}"))
}

/// Microsoft Graph of the emulator, with one bearer token.
#[derive(Clone)]
pub struct Graph {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Graph {
    /// As the bot's app (client credentials with the bot's id and secret).
    pub async fn app(emulator: &EmulatorHandle) -> Result<Graph> {
        let app_id = defaults::BOT_APP_ID.to_string();
        let token = token(
            emulator,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &app_id),
                ("client_secret", defaults::BOT_APP_SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await?;
        Ok(Self::with_token(emulator, token))
    }

    /// As a signed-in user (password grant with the tenant's test password).
    pub async fn user(emulator: &EmulatorHandle, key: &str) -> Result<Graph> {
        let app_id = defaults::BOT_APP_ID.to_string();
        let username = upn(key);
        let token = token(
            emulator,
            &[
                ("grant_type", "password"),
                ("client_id", &app_id),
                ("username", &username),
                ("password", defaults::USER_PASSWORD),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await?;
        Ok(Self::with_token(emulator, token))
    }

    fn with_token(emulator: &EmulatorHandle, token: String) -> Graph {
        Graph {
            http: reqwest::Client::new(),
            base: emulator.graph_url(),
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        }
    }

    /// `GET`, answering the raw response.
    pub async fn get_raw(&self, path: &str) -> Result<reqwest::Response> {
        Ok(self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await?)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        json_of(self.get_raw(path).await?, &format!("GET {path}")).await
    }

    /// Every item of a collection, following `@odata.nextLink`.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(path) = next.take() {
            let page = self.get(&path).await?;
            items.extend(page["value"].as_array().cloned().unwrap_or_default());
            next = page["@odata.nextLink"].as_str().map(str::to_owned);
        }
        Ok(items)
    }

    pub async fn post_raw(&self, path: &str, body: &Value) -> Result<reqwest::Response> {
        Ok(self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        json_of(self.post_raw(path, body).await?, &format!("POST {path}")).await
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        let response = self
            .http
            .delete(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await?;
        json_of(response, &format!("DELETE {path}"))
            .await
            .map(|_| ())
    }

    /// A user's object id by UPN.
    pub async fn user_id(&self, key: &str) -> Result<String> {
        let user = self.get(&format!("users/{}", upn(key))).await?;
        user["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no id in {user}"))
    }

    /// The catalog id of the reference bot's app, looked up by manifest id.
    pub async fn catalog_app_id(&self) -> Result<String> {
        let apps = self
            .list(&format!(
                "appCatalogs/teamsApps?$filter=externalId eq '{}'",
                defaults::MANIFEST_ID
            ))
            .await?;
        apps.first()
            .and_then(|a| a["id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the bot's app is not in the catalog"))
    }

    fn bind(catalog_id: &str) -> Value {
        json!({
            "teamsApp@odata.bind":
                format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{catalog_id}")
        })
    }

    /// Installs the bot's app for a user (personal scope).
    pub async fn install_for_user(&self, key: &str) -> Result<()> {
        let catalog = self.catalog_app_id().await?;
        let user = self.user_id(key).await?;
        self.post(
            &format!("users/{user}/teamwork/installedApps"),
            &Self::bind(&catalog),
        )
        .await?;
        Ok(())
    }

    /// The user's installation of the bot's app, if any.
    pub async fn user_installation(&self, key: &str) -> Result<Option<String>> {
        let user = self.user_id(key).await?;
        let found = self
            .list(&format!(
                "users/{user}/teamwork/installedApps?$expand=teamsApp&$filter=teamsApp/externalId eq '{}'",
                defaults::MANIFEST_ID
            ))
            .await?;
        Ok(found
            .first()
            .and_then(|i| i["id"].as_str())
            .map(str::to_owned))
    }

    pub async fn uninstall_for_user(&self, key: &str) -> Result<()> {
        let user = self.user_id(key).await?;
        let installation = self
            .user_installation(key)
            .await?
            .ok_or_else(|| anyhow!("the app is not installed for {key}"))?;
        self.delete(&format!(
            "users/{user}/teamwork/installedApps/{installation}"
        ))
        .await
    }

    /// Installs the bot's app in a team.
    pub async fn install_for_team(&self, team_id: &str) -> Result<()> {
        let catalog = self.catalog_app_id().await?;
        self.post(
            &format!("teams/{team_id}/installedApps"),
            &Self::bind(&catalog),
        )
        .await?;
        Ok(())
    }

    /// The user's 1:1 chat with the bot (Graph's `19:…` id), if it exists.
    pub async fn bot_chat(&self, key: &str) -> Result<Option<String>> {
        let user = self.user_id(key).await?;
        let chats = self.list(&format!("users/{user}/chats")).await?;
        Ok(chats
            .iter()
            .find(|c| c["chatType"] == "oneOnOne")
            .and_then(|c| c["id"].as_str())
            .map(str::to_owned))
    }

    /// The messages of a chat, newest first.
    pub async fn chat_messages(&self, chat_id: &str) -> Result<Vec<Value>> {
        self.list(&format!("chats/{}/messages", encode(chat_id)))
            .await
    }

    /// The messages the bot sent in a user's 1:1 chat, newest first (none without a chat).
    pub async fn bot_messages_to(&self, key: &str) -> Result<Vec<Value>> {
        let Some(chat) = self.bot_chat(key).await? else {
            return Ok(vec![]);
        };
        Ok(self
            .chat_messages(&chat)
            .await?
            .into_iter()
            .filter(from_bot)
            .collect())
    }

    /// The top-level messages of a team's channel, newest first.
    pub async fn channel_messages(&self, team_id: &str, channel_id: &str) -> Result<Vec<Value>> {
        self.list(&format!(
            "teams/{team_id}/channels/{}/messages",
            encode(channel_id)
        ))
        .await
    }
}

/// Percent-encodes one path segment (chat and channel ids carry `:` and `@`).
pub fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
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

/// The emulator's control API.
#[derive(Clone)]
pub struct Control {
    http: reqwest::Client,
    base: String,
}

impl Control {
    pub fn new(emulator: &EmulatorHandle) -> Control {
        Control {
            http: reqwest::Client::new(),
            base: format!("{}/_emulator", emulator.url()),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .post(format!("{}/{}", self.base, path.trim_start_matches('/')))
            .json(body)
            .send()
            .await?;
        json_of(response, &format!("POST /_emulator/{path}")).await
    }

    /// The user writes `text` in their 1:1 chat with the bot.
    pub async fn user_writes(&self, user: &str, text: &str) -> Result<Value> {
        self.post(&format!("users/{user}/messages"), &json!({ "text": text }))
            .await
    }

    /// The user joins the team.
    pub async fn add_member(&self, team: &str, user: &str) -> Result<()> {
        self.post(&format!("teams/{team}/members"), &json!({ "user": user }))
            .await
            .map(|_| ())
    }

    /// Delivery outcomes, once queued deliveries settled (up to `wait`).
    pub async fn deliveries(&self, wait: Duration) -> Result<Value> {
        let response = self
            .http
            .get(format!(
                "{}/deliveries?wait_ms={}",
                self.base,
                wait.as_millis()
            ))
            .send()
            .await?;
        json_of(response, "GET /_emulator/deliveries").await
    }
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
