//! Running scenarios: a fresh emulator (in-process, free port) and a fresh bot for each, the
//! steps in order, every wait with a deadline, and everything started stopped again.

use super::Scenario;
use super::matching::{
    interpolate, interpolate_value, parse_duration, partial_match, visible_text,
};
use super::model::{
    Actor, AuthMode, ConversationUpdateMode, HttpStep, InstallStep, MessageQuery, Since, Step,
};
use crate::server::{BotAuth, Emulator, EmulatorHandle};
use crate::tenant::{Conversation, Participant};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

/// What the command line passes to every scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides every scenario's bot command.
    pub bot_cmd: Option<String>,
    /// The seed of faults that fire by chance.
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepStatus {
    Passed,
    Failed(Failure),
    Skipped,
}

/// A failed step: what was expected and what was seen instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub expected: String,
    pub seen: Vec<String>,
}

impl Failure {
    fn new(expected: impl Into<String>, seen: Vec<String>) -> Self {
        Self {
            expected: expected.into(),
            seen,
        }
    }
    fn plain(message: impl Into<String>) -> Self {
        Self::new(message, vec![])
    }
}

#[derive(Debug, Clone)]
pub struct StepResult {
    pub index: usize,
    pub name: &'static str,
    pub line: u64,
    pub column: u64,
    pub status: StepStatus,
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub name: String,
    pub file: String,
    pub duration: Duration,
    /// Set when the scenario could not run at all (the bot did not start, …).
    pub error: Option<String>,
    pub steps: Vec<StepResult>,
    /// Every activity to and from the bot, in order.
    pub transcript: Vec<Value>,
    /// The tail of the bot command's output.
    pub bot_output: String,
}

impl ScenarioResult {
    /// A scenario that could not run at all.
    pub fn broken(name: String, file: String, error: String) -> Self {
        Self {
            name,
            file,
            duration: Duration::ZERO,
            error: Some(error),
            steps: vec![],
            transcript: vec![],
            bot_output: String::new(),
        }
    }

    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self
                .steps
                .iter()
                .all(|s| !matches!(s.status, StepStatus::Failed(_)))
    }
}

/// Runs one scenario from start to end.
pub async fn run_scenario(scenario: &Scenario, options: &RunOptions) -> ScenarioResult {
    let started = Instant::now();
    let mut result = ScenarioResult {
        name: scenario.spec.name.clone(),
        file: scenario.file.display().to_string(),
        duration: Duration::ZERO,
        error: None,
        steps: vec![],
        transcript: vec![],
        bot_output: String::new(),
    };
    let mut config = scenario.tenant.clone();
    match scenario.spec.behaviour.conversation_update {
        Some(ConversationUpdateMode::FirstInstallOnly) => {
            config.behaviour.conversation_update_first_install_only = true
        }
        Some(ConversationUpdateMode::Never) => config.behaviour.conversation_update_never = true,
        _ => {}
    }
    config.behaviour.send_accepted_without_id |= scenario.spec.behaviour.send_accepted_without_id;
    let auth = match scenario.spec.bot.auth {
        Some(AuthMode::None) => BotAuth::None,
        _ => BotAuth::Signed,
    };
    let emulator = match Emulator::builder()
        .config(config)
        .bot_auth(auth)
        .throttling(scenario.spec.behaviour.throttling.unwrap_or(true))
        .seed(options.seed.unwrap_or(0))
        .start()
        .await
    {
        Ok(e) => e,
        Err(e) => {
            result.error = Some(format!("the emulator could not start: {e}"));
            return result;
        }
    };
    let mut bot = match BotUnderTest::start(scenario, options, &emulator, auth).await {
        Ok(b) => b,
        Err(e) => {
            result.error = Some(e);
            emulator.shutdown().await;
            result.duration = started.elapsed();
            return result;
        }
    };
    let mut run = Run::new(&emulator, &bot, auth);
    let mut failed = false;
    for (index, step) in scenario.spec.steps.iter().enumerate() {
        let (line, column) = (step.referenced.line(), step.referenced.column());
        let step_started = Instant::now();
        let status = if failed {
            StepStatus::Skipped
        } else {
            if step.value.is_act() {
                run.mark();
            }
            match run.step(&step.value).await {
                Ok(()) => StepStatus::Passed,
                Err(f) => {
                    failed = true;
                    StepStatus::Failed(f)
                }
            }
        };
        result.steps.push(StepResult {
            index: index + 1,
            name: step.value.name(),
            line,
            column,
            status,
            duration: step_started.elapsed(),
        });
    }
    emulator
        .state()
        .delivery
        .settle(Duration::from_secs(2))
        .await;
    result.transcript = emulator.state().delivery.transcript();
    result.bot_output = bot.stop().await;
    emulator.shutdown().await;
    result.duration = started.elapsed();
    result
}

/// The bot a scenario drives: the built-in reference bot, or a command's process.
struct BotUnderTest {
    url: String,
    endpoint: String,
    app_id: Uuid,
    port: u16,
    kind: BotKind,
    _data_dir: Option<tempfile::TempDir>,
}

enum BotKind {
    #[cfg(feature = "reference-bot")]
    Reference(proactive_bot::BotHandle),
    Command {
        child: tokio::process::Child,
        /// The command's process group, which outlives `sh` when it started children.
        group: Option<i32>,
        output: Arc<Mutex<Vec<u8>>>,
    },
    Stopped,
}

impl Drop for BotUnderTest {
    /// A run cut short (Ctrl-C) still stops the bot command and everything it started.
    fn drop(&mut self) {
        if let BotKind::Command { group, .. } = &self.kind {
            signal_group(*group, Signal::Kill);
        }
    }
}

const OUTPUT_TAIL: usize = 16 * 1024;
/// How often expectations look again.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// How long a count must hold before `expect_count` believes it.
const QUIET_PERIOD: Duration = Duration::from_millis(500);

impl BotUnderTest {
    async fn start(
        scenario: &Scenario,
        options: &RunOptions,
        emulator: &EmulatorHandle,
        auth: BotAuth,
    ) -> Result<Self, String> {
        let app_id = {
            let world = emulator.state().world();
            world.tenants[0]
                .catalog
                .iter()
                .find_map(|a| a.bot_id)
                .ok_or("the tenant's catalog has no app with a bot")?
        };
        let command = options
            .bot_cmd
            .clone()
            .or_else(|| scenario.spec.bot.command.clone());
        let ready_timeout = scenario
            .spec
            .bot
            .ready_timeout
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .unwrap_or(Duration::from_secs(30));
        let bot = match command {
            Some(cmd) => {
                Self::start_command(scenario, &cmd, emulator, auth, app_id, ready_timeout).await?
            }
            None => Self::start_reference(emulator, auth, app_id).await?,
        };
        let mut world = emulator.state().world();
        world.set_messaging_endpoint(app_id, &bot.endpoint);
        drop(world);
        Ok(bot)
    }

    #[cfg(feature = "reference-bot")]
    async fn start_reference(
        emulator: &EmulatorHandle,
        auth: BotAuth,
        app_id: Uuid,
    ) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("teams-emulator-bot-")
            .tempdir()
            .map_err(|e| format!("cannot make a data folder for the reference bot: {e}"))?;
        let mut config = proactive_bot::Config::for_emulator(&emulator.url());
        config.database_path = dir.path().join("proactive-bot.sqlite3");
        // The scenario's tenant and app, which need not be the default ones.
        {
            let world = emulator.state().world();
            let tenant = &world.tenants[0];
            config.tenant_id = tenant.id.to_string();
            if let Some(app) = tenant.catalog.iter().find(|a| a.bot_id == Some(app_id)) {
                config.manifest_id = app.external_id.to_string();
            }
            if let Some(r) = tenant.registration(app_id) {
                config.app_password = r.client_secret.clone();
            }
        }
        config.app_id = if auth == BotAuth::None {
            String::new()
        } else {
            app_id.to_string()
        };
        config.retry_base_delay = Duration::from_millis(100);
        let handle = proactive_bot::Bot::start(config)
            .await
            .map_err(|e| format!("the reference bot could not start: {e}"))?;
        let url = handle.url();
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_default();
        Ok(Self {
            endpoint: format!("{url}/api/messages"),
            url,
            app_id,
            port,
            kind: BotKind::Reference(handle),
            _data_dir: Some(dir),
        })
    }

    #[cfg(not(feature = "reference-bot"))]
    async fn start_reference(_: &EmulatorHandle, _: BotAuth, _: Uuid) -> Result<Self, String> {
        Err("this build has no built-in reference bot: give the scenario a bot command, or --bot-cmd".into())
    }

    async fn start_command(
        scenario: &Scenario,
        cmd: &str,
        emulator: &EmulatorHandle,
        auth: BotAuth,
        app_id: Uuid,
        ready_timeout: Duration,
    ) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port for the bot: {e}"))?;
        let url = format!("http://127.0.0.1:{port}");
        let endpoint = match scenario.spec.bot.endpoint.as_deref() {
            None => format!("{url}/api/messages"),
            Some(e) if e.starts_with('/') => format!("{url}{e}"),
            Some(e) => e.replace("${bot.port}", &port.to_string()),
        };
        let secret = {
            let world = emulator.state().world();
            world.tenants[0]
                .registration(app_id)
                .map(|r| r.client_secret.clone())
                .unwrap_or_default()
        };
        let tenant = emulator.state().world().tenants[0].id;
        let base = scenario.file.parent().unwrap_or(Path::new("."));
        let cwd = scenario
            .spec
            .bot
            .cwd
            .as_deref()
            .map(|c| base.join(c))
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(cmd)
            .current_dir(&cwd)
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        command.process_group(0);
        for (k, v) in bot_environment(emulator, auth, app_id, &secret, tenant, port) {
            command.env(k, v);
        }
        for (k, v) in &scenario.spec.bot.env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("the bot command '{cmd}' could not start: {e}"))?;
        // process_group(0) made the child the leader of a group with its own pid.
        let group = child.id().and_then(|p| i32::try_from(p).ok());
        // Until the bot is up and owned by a BotUnderTest, a run cut short must still stop it.
        let guard = GroupGuard(group);
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
                    out.extend_from_slice(&buf[..n]);
                    if out.len() > OUTPUT_TAIL * 2 {
                        let cut = out.len() - OUTPUT_TAIL;
                        out.drain(..cut);
                    }
                }
            });
        }
        // Ready when the messaging endpoint accepts connections (it may not be on PORT).
        let ready_at = url::Url::parse(&endpoint)
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .unwrap_or_else(|| format!("127.0.0.1:{port}"));
        let deadline = Instant::now() + ready_timeout;
        loop {
            if tokio::net::TcpStream::connect(&ready_at).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                signal_group(group, Signal::Kill);
                let out =
                    String::from_utf8_lossy(&output.lock().unwrap_or_else(|e| e.into_inner()))
                        .into_owned();
                return Err(format!(
                    "the bot command '{cmd}' exited ({status}) before accepting connections on port {port}:\n{out}"
                ));
            }
            if Instant::now() > deadline {
                let out =
                    String::from_utf8_lossy(&output.lock().unwrap_or_else(|e| e.into_inner()))
                        .into_owned();
                terminate(&mut child, group).await;
                return Err(format!(
                    "the bot command '{cmd}' did not accept connections on {ready_at} within {ready_timeout:?}:\n{out}"
                ));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        guard.disarm();
        Ok(Self {
            url,
            endpoint,
            app_id,
            port,
            kind: BotKind::Command {
                child,
                group,
                output,
            },
            _data_dir: None,
        })
    }

    /// Stops the bot and returns the tail of its output.
    async fn stop(&mut self) -> String {
        match std::mem::replace(&mut self.kind, BotKind::Stopped) {
            #[cfg(feature = "reference-bot")]
            BotKind::Reference(handle) => {
                let _ = handle.shutdown().await;
                String::new()
            }
            BotKind::Command {
                mut child,
                group,
                output,
            } => {
                terminate(&mut child, group).await;
                let out = output.lock().unwrap_or_else(|e| e.into_inner());
                let start = out.len().saturating_sub(OUTPUT_TAIL);
                String::from_utf8_lossy(&out[start..]).into_owned()
            }
            BotKind::Stopped => String::new(),
        }
    }
}

#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

/// Kills a bot command's process group when dropped, unless disarmed.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, Signal::Kill);
    }
}

/// Signals the bot command's process group (it runs in its own), so what it started stops too.
fn signal_group(group: Option<i32>, signal: Signal) {
    #[cfg(unix)]
    if let Some(pgid) = group.filter(|p| *p > 1) {
        let sig = match signal {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        // SAFETY: killpg only sends a signal; the group is the command's own (process_group(0)).
        unsafe {
            libc::killpg(pgid, sig);
        }
    }
    #[cfg(not(unix))]
    let _ = (group, signal);
}

/// Asks the bot command to stop, gives it a moment, then stops whatever is left of its group.
async fn terminate(child: &mut tokio::process::Child, group: Option<i32>) {
    signal_group(group, Signal::Term);
    let _ = tokio::time::timeout(Duration::from_secs(3), child.wait()).await;
    signal_group(group, Signal::Kill);
    let _ = child.kill().await;
}

/// What a bot command is told: the emulator's URLs under the reference bot's names and the
/// standard botbuilder names, so an unmodified SDK bot needs no setup.
pub fn bot_environment(
    emulator: &EmulatorHandle,
    auth: BotAuth,
    app_id: Uuid,
    secret: &str,
    tenant: Uuid,
    port: u16,
) -> Vec<(String, String)> {
    let base = emulator.url();
    let openid = emulator.channel_openid_url();
    let signed = auth == BotAuth::Signed;
    let manifest = {
        let world = emulator.state().world();
        world
            .tenants
            .iter()
            .flat_map(|t| t.catalog.iter())
            .find(|a| a.bot_id == Some(app_id))
            .map(|a| a.external_id.to_string())
            .unwrap_or_default()
    };
    let app = if signed {
        app_id.to_string()
    } else {
        String::new()
    };
    let mut env: Vec<(String, String)> = [
        ("PORT", port.to_string()),
        ("HOST", "127.0.0.1".to_string()),
        ("TEAMS_EMULATOR_URL", base.clone()),
        ("PROACTIVE_BOT_LISTEN", format!("127.0.0.1:{port}")),
        ("PROACTIVE_BOT_EMULATOR_URL", base.clone()),
        ("PROACTIVE_BOT_APP_ID", app.clone()),
        ("PROACTIVE_BOT_APP_PASSWORD", secret.to_string()),
        ("PROACTIVE_BOT_TENANT_ID", tenant.to_string()),
        ("PROACTIVE_BOT_MANIFEST_ID", manifest.to_string()),
        ("GRAPH_URL", emulator.graph_url()),
        ("MicrosoftAppId", app.clone()),
        (
            "MicrosoftAppPassword",
            if signed {
                secret.to_string()
            } else {
                String::new()
            },
        ),
        ("MicrosoftAppTenantId", tenant.to_string()),
        ("MicrosoftAppType", "MultiTenant".to_string()),
        ("APP_ID", app),
        (
            "APP_PASSWORD",
            if signed {
                secret.to_string()
            } else {
                String::new()
            },
        ),
        ("APP_TENANTID", tenant.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if signed {
        // Setting one of these switches botbuilder to fully parameterised mode, so set them all;
        // Python reads the same names in upper snake case.
        let redirect = [
            (
                "ToChannelFromBotLoginUrl",
                "TO_CHANNEL_FROM_BOT_LOGIN_URL",
                format!("{base}/botframework.com"),
            ),
            (
                "ToChannelFromBotOAuthScope",
                "TO_CHANNEL_FROM_BOT_OAUTH_SCOPE",
                "https://api.botframework.com".to_string(),
            ),
            (
                "ToBotFromChannelTokenIssuer",
                "TO_BOT_FROM_CHANNEL_TOKEN_ISSUER",
                "https://api.botframework.com".to_string(),
            ),
            (
                "ToBotFromChannelOpenIdMetadataUrl",
                "TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL",
                openid.clone(),
            ),
            (
                "ToBotFromEmulatorOpenIdMetadataUrl",
                "TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL",
                // as docs/sdk-bots.md gives it: only tokens from the Bot Framework Emulator use it
                format!("{base}/common/v2.0/.well-known/openid-configuration"),
            ),
            ("OAuthUrl", "OAUTH_URL", base.clone()),
            (
                "CallerId",
                "CALLER_ID",
                "urn:botframework:azure".to_string(),
            ),
            ("BotOpenIdMetadata", "BOT_OPENID_METADATA", openid.clone()),
        ];
        for (js, python, v) in redirect {
            env.push((js.to_string(), v.clone()));
            env.push((python.to_string(), v));
        }
    }
    env
}

/// Where the run stands: values for `${…}`, cached tokens, and where the current window begins.
struct Run<'a> {
    emulator: &'a EmulatorHandle,
    bot: &'a BotUnderTest,
    http: reqwest::Client,
    context: Value,
    tokens: HashMap<Actor, String>,
    /// Bot messages per conversation when the latest act began.
    message_marks: HashMap<String, usize>,
    delivery_mark: usize,
}

fn key(c: &Conversation) -> String {
    match c {
        Conversation::Personal { chat } => chat.clone(),
        Conversation::Channel { channel, .. } => channel.clone(),
    }
}

impl<'a> Run<'a> {
    fn new(emulator: &'a EmulatorHandle, bot: &'a BotUnderTest, auth: BotAuth) -> Self {
        let context = {
            let world = emulator.state().world();
            let t = &world.tenants[0];
            let users: serde_json::Map<String, Value> = t
                .users
                .iter()
                .map(|u| (u.key.clone(), json!({"id": u.id.to_string(), "upn": u.user_principal_name, "name": u.display_name, "mri": u.mri})))
                .collect();
            let teams: serde_json::Map<String, Value> = t
                .teams
                .iter()
                .map(|team| (team.key.clone(), json!({"id": team.id.to_string(), "name": team.display_name, "thread_id": team.thread_id, "general": team.thread_id})))
                .collect();
            let catalog = t.catalog.iter().find(|a| a.bot_id == Some(bot.app_id));
            json!({
                "users": users,
                "teams": teams,
                "tenant": {"id": t.id.to_string(), "name": t.display_name},
                "bot": {"url": bot.url, "endpoint": bot.endpoint, "app_id": bot.app_id.to_string(), "port": bot.port, "auth": if auth == BotAuth::Signed { "signed" } else { "none" },
                        "catalog_id": catalog.map(|a| a.id.to_string()), "manifest_id": catalog.map(|a| a.external_id.to_string())},
                "emulator": {"url": emulator.url(), "graph": emulator.graph_url(), "service_url": emulator.service_url()},
                "last": {},
                "saved": {},
            })
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            emulator,
            bot,
            http,
            context,
            tokens: HashMap::new(),
            message_marks: HashMap::new(),
            delivery_mark: 0,
        }
    }

    /// Starts a new window: expectations with `since: last_action` look only after this point.
    fn mark(&mut self) {
        let world = self.emulator.state().world();
        let t = &world.tenants[0];
        self.message_marks = t
            .chats
            .iter()
            .map(|c| (c.id.clone(), c.messages.len()))
            .chain(t.teams.iter().flat_map(|team| {
                team.channels
                    .iter()
                    .map(|c| (c.id.clone(), c.messages.len()))
            }))
            .collect();
        self.delivery_mark = self.emulator.state().delivery.last_seq();
    }

    fn text(&self, s: &str) -> Result<String, Failure> {
        interpolate(s, &self.context).map_err(Failure::plain)
    }

    fn set_last(&mut self, last: Value) {
        self.context["last"] = last;
    }

    async fn token(&mut self, actor: Actor) -> Result<String, Failure> {
        if let Some(t) = self.tokens.get(&actor) {
            return Ok(t.clone());
        }
        let (tenant, secret, admin) = {
            let world = self.emulator.state().world();
            let t = &world.tenants[0];
            let secret = t
                .registration(self.bot.app_id)
                .map(|r| r.client_secret.clone())
                .unwrap_or_default();
            let admin = t
                .users
                .iter()
                .find(|u| u.admin)
                .map(|u| (u.user_principal_name.clone(), u.password.clone()));
            (t.id, secret, admin)
        };
        let app_id = self.bot.app_id.to_string();
        let mut form = vec![
            ("client_id", app_id),
            ("scope", "https://graph.microsoft.com/.default".to_string()),
        ];
        match actor {
            Actor::App => {
                form.push(("grant_type", "client_credentials".into()));
                form.push(("client_secret", secret));
            }
            Actor::Admin => {
                let (upn, password) = admin.ok_or_else(|| {
                    Failure::plain("the tenant has no administrator (a user with admin: true)")
                })?;
                form.push(("grant_type", "password".into()));
                form.push(("username", upn));
                form.push(("password", password));
            }
        }
        let answer = self
            .http
            .post(self.emulator.token_url(tenant))
            .form(&form)
            .send()
            .await
            .map_err(|e| Failure::plain(format!("token request failed: {e}")))?;
        let body: Value = answer.json().await.unwrap_or_default();
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| Failure::new("a token from the emulator", vec![body.to_string()]))?
            .to_string();
        self.tokens.insert(actor, token.clone());
        Ok(token)
    }

    async fn call(
        &mut self,
        method: &str,
        url: &str,
        token: Option<String>,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), Failure> {
        let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| Failure::plain(format!("bad method {method}")))?;
        let mut request = self.http.request(method.clone(), url).timeout(timeout);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::plain(format!("{method} {url} failed: {e}")))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        });
        Ok((status, body))
    }

    fn catalog_id(&self) -> Result<String, Failure> {
        self.context["bot"]["catalog_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Failure::plain("the bot's app is not in the catalog"))
    }

    async fn step(&mut self, step: &Step) -> Result<(), Failure> {
        match step {
            Step::Install(s) => self.install(s, true).await,
            Step::Uninstall(s) => self.install(s, false).await,
            Step::AddMember(m) => {
                let path = format!("/_emulator/teams/{}/members", self.text(&m.team)?);
                let user = self.text(&m.user)?;
                self.control("POST", &path, Some(json!({"user": user})))
                    .await
            }
            Step::RemoveMember(m) => {
                let path = format!(
                    "/_emulator/teams/{}/members/{}",
                    self.text(&m.team)?,
                    self.text(&m.user)?
                );
                self.control("DELETE", &path, None).await
            }
            Step::Say(s) => {
                let path = format!("/_emulator/users/{}/messages", self.text(&s.user)?);
                let text = self.text(&s.text)?;
                self.control("POST", &path, Some(json!({"text": text})))
                    .await
            }
            Step::Post(p) => {
                let channel = p.channel.clone().unwrap_or_else(|| "General".into());
                let path = format!(
                    "/_emulator/teams/{}/channels/{}/messages",
                    self.text(&p.team)?,
                    percent(&channel)
                );
                let body = json!({"from": self.text(&p.user)?, "text": self.text(&p.text)?, "mentionBot": p.mention_bot, "mentions": p.mentions});
                self.control("POST", &path, Some(body)).await
            }
            Step::Block(u) => {
                self.control(
                    "POST",
                    &format!("/_emulator/users/{}/block", self.text(&u.user)?),
                    None,
                )
                .await
            }
            Step::Unblock(u) => {
                self.control(
                    "DELETE",
                    &format!("/_emulator/users/{}/block", self.text(&u.user)?),
                    None,
                )
                .await
            }
            Step::CallBot(h) => {
                let url = format!("{}{}", self.bot.url, self.text(&h.path)?);
                self.http_step(h, url, None).await
            }
            Step::Graph(h) => {
                let path = self.text(&h.path)?;
                let url = if path.starts_with("/v1.0") || path.starts_with("/beta") {
                    format!("{}{path}", self.emulator.url())
                } else {
                    format!("{}{path}", self.emulator.graph_url())
                };
                let token = self.token(h.actor).await?;
                self.http_step(h, url, Some(token)).await
            }
            Step::Wait(d) => {
                tokio::time::sleep(parse_duration(d).map_err(Failure::plain)?).await;
                Ok(())
            }
            Step::ExpectMessage(q) => self.expect_message(q).await,
            Step::ExpectNoMessage(q) => self.expect_no_message(q).await,
            Step::ExpectCount(q) => self.expect_count(q).await,
            Step::ExpectActivity(a) => {
                let within = self.within(&a.within)?;
                let expected = match &a.matching {
                    Some(m) => Some(interpolate_value(m, &self.context).map_err(Failure::plain)?),
                    None => None,
                };
                let describe = format!(
                    "an activity delivered to the bot{}{}",
                    a.kind
                        .as_ref()
                        .map(|k| format!(" of type '{k}'"))
                        .unwrap_or_default(),
                    expected
                        .as_ref()
                        .map(|m| format!(" matching {m}"))
                        .unwrap_or_default()
                );
                let since = a.since;
                self.poll(within, &describe, |run| {
                    let window = run.deliveries(since);
                    // Delivered means the bot took it (2xx): one it refused did not arrive.
                    let found = window.iter().any(|r| {
                        r.ok && a.kind.as_ref().is_none_or(|k| &r.activity_type == k)
                            && expected
                                .as_ref()
                                .is_none_or(|m| partial_match(m, &r.activity))
                    });
                    let seen = window
                        .iter()
                        .map(|r| match (r.ok, r.status) {
                            (true, _) => summarize_activity(&r.activity),
                            (false, Some(status)) => format!(
                                "{} (the bot answered {status})",
                                summarize_activity(&r.activity)
                            ),
                            (false, None) => format!(
                                "{} (not delivered: {})",
                                summarize_activity(&r.activity),
                                r.error.clone().unwrap_or_default()
                            ),
                        })
                        .collect();
                    (found, seen)
                })
                .await
            }
            Step::Fault(f) => self.fault(f),
            Step::ExpectFault(e) => {
                // The count must be reached and then hold: a fault may still be firing.
                let within = self.within(&e.within)?;
                let describe =
                    format!("the latest fault to have fired exactly {} time(s)", e.fired);
                let deadline = Instant::now() + within;
                let mut reached: Option<Instant> = None;
                loop {
                    let fired = self
                        .emulator
                        .state()
                        .limits
                        .faults()
                        .last()
                        .map(|f| f.fired)
                        .unwrap_or(0);
                    let seen = vec![format!("fired {fired} time(s)")];
                    if fired > e.fired {
                        return Err(Failure::new(describe, seen));
                    }
                    if fired == e.fired {
                        if reached.get_or_insert_with(Instant::now).elapsed() >= QUIET_PERIOD {
                            return Ok(());
                        }
                    } else if Instant::now() >= deadline {
                        return Err(Failure::new(describe, seen));
                    }
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
            Step::ExpectRetriesHonoured(_) => {
                // Retries made by work still under way count too: watch for a moment.
                let deadline = Instant::now() + QUIET_PERIOD * 2;
                loop {
                    let early = self.emulator.state().limits.early_retries();
                    if !early.is_empty() {
                        let seen = early
                            .iter()
                            .map(|e| {
                                format!(
                                    "{:?} about {} retried {} ms before its Retry-After had passed",
                                    e.operation, e.about, e.early_by_ms
                                )
                            })
                            .collect();
                        return Err(Failure::new(
                            "every retry to wait for the Retry-After it was given",
                            seen,
                        ));
                    }
                    if Instant::now() >= deadline {
                        return Ok(());
                    }
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
            Step::ExpectDelivery(d) => {
                let within = self.within(&d.within)?;
                let describe = format!(
                    "a delivery{}{}{}",
                    d.kind
                        .as_ref()
                        .map(|k| format!(" of '{k}'"))
                        .unwrap_or_default(),
                    d.ok.map(|ok| if ok {
                        " that the bot accepted (2xx)"
                    } else {
                        " that failed"
                    })
                    .unwrap_or_default(),
                    d.status
                        .map(|s| format!(" answered {s}"))
                        .unwrap_or_default()
                );
                let since = d.since;
                self.poll(within, &describe, |run| {
                    let window = run.deliveries(since);
                    let found = window.iter().any(|r| {
                        d.kind.as_ref().is_none_or(|k| &r.activity_type == k)
                            && d.ok.is_none_or(|ok| r.ok == ok)
                            && d.status.is_none_or(|s| r.status == Some(s))
                    });
                    let seen = window
                        .iter()
                        .map(|r| {
                            format!(
                                "{} → {}",
                                r.activity_type,
                                r.status
                                    .map(|s| s.to_string())
                                    .or(r.error.clone())
                                    .unwrap_or_default()
                            )
                        })
                        .collect();
                    (found, seen)
                })
                .await
            }
        }
    }

    /// Deliveries in the window an expectation looks at.
    fn deliveries(&self, since: Since) -> Vec<crate::delivery::DeliveryRecord> {
        let mark = if since == Since::Start {
            0
        } else {
            self.delivery_mark
        };
        let mut records = self.emulator.state().delivery.records();
        records.retain(|r| r.seq > mark);
        records
    }

    fn within(&self, within: &Option<String>) -> Result<Duration, Failure> {
        Ok(within
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(Failure::plain)?
            .unwrap_or(Duration::from_secs(5)))
    }

    /// Queues a fault, naming what it is about as the limits know it.
    fn fault(&mut self, f: &super::model::FaultStep) -> Result<(), Failure> {
        use crate::limits::Operation;
        let connector = matches!(f.operation, Operation::Send | Operation::Roster);
        let about = {
            let world = self.emulator.state().world();
            let t = &world.tenants[0];
            match (&f.user, &f.team) {
                (Some(u), _) => {
                    let user = t
                        .user_by_handle(&self.text(u)?)
                        .map_err(|e| Failure::plain(e.to_string()))?;
                    Some(if connector {
                        crate::ids::one_on_one_chat_id(self.bot.app_id, user.id)
                    } else {
                        user.id.to_string()
                    })
                }
                (None, Some(team)) => {
                    let team = t
                        .team_by_handle(&self.text(team)?)
                        .map_err(|e| Failure::plain(e.to_string()))?;
                    Some(if connector {
                        team.thread_id.clone()
                    } else {
                        team.id.to_string()
                    })
                }
                (None, None) => None,
            }
        };
        let spec = crate::limits::FaultSpec {
            operation: f.operation,
            status: f.status,
            code: f.code.clone(),
            message: f.message.clone(),
            retry_after: f.retry_after,
            times: f.times,
            probability: f.probability,
            about,
        };
        self.emulator
            .state()
            .limits
            .add_fault(spec)
            .map_err(Failure::plain)
    }

    async fn control(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(), Failure> {
        let url = format!("{}{path}", self.emulator.url());
        let (status, answer) = self
            .call(method, &url, None, body, Duration::from_secs(30))
            .await?;
        self.set_last(json!({"status": status, "body": answer}));
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(Failure::new(
                format!("the emulator to accept {method} {path}"),
                vec![format!("{status} {answer}")],
            ))
        }
    }

    async fn install(&mut self, s: &InstallStep, install: bool) -> Result<(), Failure> {
        let token = self.token(s.actor).await?;
        let catalog = self.catalog_id()?;
        let bind = json!({"teamsApp@odata.bind": format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{catalog}")});
        let graph = self.emulator.graph_url();
        let timeout = Duration::from_secs(30);
        let (what, collection, default_status) = match (&s.user, &s.team) {
            (Some(u), _) => {
                let u = self.text(u)?;
                let id = self.emulator.state().world().tenants[0]
                    .user_by_handle(&u)
                    .map(|x| x.id.to_string())
                    .map_err(|e| Failure::plain(e.to_string()))?;
                (
                    format!("user {u}"),
                    format!("{graph}/users/{id}/teamwork/installedApps"),
                    if install { 201 } else { 204 },
                )
            }
            (None, Some(t)) => {
                let t = self.text(t)?;
                let id = self.emulator.state().world().tenants[0]
                    .team_by_handle(&t)
                    .map(|x| x.id.to_string())
                    .map_err(|e| Failure::plain(e.to_string()))?;
                (
                    format!("team {t}"),
                    format!("{graph}/teams/{id}/installedApps"),
                    if install { 200 } else { 204 },
                )
            }
            (None, None) => return Err(Failure::plain("install needs a user or a team")),
        };
        let expected = s.expect_status.unwrap_or(default_status);
        let (status, body) = if install {
            self.call("POST", &collection, Some(token), Some(bind), timeout)
                .await?
        } else {
            let filter = format!("{collection}?$filter=teamsApp/id%20eq%20'{catalog}'");
            let (listed, list) = self
                .call("GET", &filter, Some(token.clone()), None, timeout)
                .await?;
            if listed != 200 {
                // the lookup itself failed (401, 403, …): say so, not "not installed"
                self.set_last(json!({"status": listed, "body": list}));
                return Err(Failure::new(
                    format!("Graph to list the installations of {what} before uninstalling"),
                    vec![format!("{listed} {list}")],
                ));
            }
            match list["value"][0]["id"].as_str() {
                Some(installation) => {
                    self.call(
                        "DELETE",
                        &format!("{collection}/{installation}"),
                        Some(token),
                        None,
                        timeout,
                    )
                    .await?
                }
                None => (
                    404,
                    json!({"error": {"code": "NotFound", "message": format!("the app is not installed for {what}")}}),
                ),
            }
        };
        let mut last = json!({"status": status, "body": body});
        if let Some(u) = &s.user {
            let world = self.emulator.state().world();
            let t = &world.tenants[0];
            if let Ok(user) = t.user_by_handle(&self.text(u)?)
                && let Some(chat) = t
                    .chats
                    .iter()
                    .find(|c| c.user == user.id && c.bot == self.bot.app_id)
            {
                last["chat_id"] = json!(chat.id);
                last["conversation_id"] = json!(chat.conversation_id);
                last["installation_id"] = json!(crate::ids::installation_id(
                    &user.id.to_string(),
                    catalog.parse().unwrap_or_default()
                ));
            }
        }
        self.set_last(last);
        if status == expected {
            Ok(())
        } else {
            let verb = if install { "install" } else { "uninstall" };
            Err(Failure::new(
                format!("Graph to answer {expected} to the {verb} for {what}"),
                vec![format!("{status} {body}")],
            ))
        }
    }

    async fn http_step(
        &mut self,
        h: &HttpStep,
        url: String,
        token: Option<String>,
    ) -> Result<(), Failure> {
        let body = match &h.body {
            Some(b) => Some(interpolate_value(b, &self.context).map_err(Failure::plain)?),
            None => None,
        };
        let timeout = h
            .timeout
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(Failure::plain)?
            .unwrap_or(Duration::from_secs(60));
        let (status, answer) = self.call(&h.method, &url, token, body, timeout).await?;
        let last = json!({"status": status, "body": answer});
        if let Some(name) = &h.save {
            self.context["saved"][name] = last.clone();
        }
        self.set_last(last);
        let status_ok = match h.expect_status {
            Some(s) => status == s,
            None => (200..300).contains(&status),
        };
        let expected_json = match &h.expect_json {
            Some(j) => Some(interpolate_value(j, &self.context).map_err(Failure::plain)?),
            None => None,
        };
        let json_ok = expected_json
            .as_ref()
            .is_none_or(|j| partial_match(j, &answer));
        if status_ok && json_ok {
            return Ok(());
        }
        let mut expected = format!(
            "{} {} to answer {}",
            h.method.to_ascii_uppercase(),
            h.path,
            h.expect_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "2xx".into())
        );
        if let Some(j) = expected_json {
            expected.push_str(&format!(" with JSON containing {j}"));
        }
        Err(Failure::new(
            expected,
            vec![format!("{status} {}", truncate(&answer.to_string(), 2000))],
        ))
    }

    /// The conversation an expectation names.
    fn conversation(&self, q: &MessageQuery) -> Result<(Option<Conversation>, String), Failure> {
        let world = self.emulator.state().world();
        let t = &world.tenants[0];
        if let Some(u) = &q.user {
            let user = t
                .user_by_handle(&self.text(u)?)
                .map_err(|e| Failure::plain(e.to_string()))?;
            let chat = t
                .chats
                .iter()
                .find(|c| c.user == user.id && c.bot == self.bot.app_id);
            let label = format!("{}'s chat with the bot", user.display_name);
            return Ok((
                chat.map(|c| Conversation::Personal { chat: c.id.clone() }),
                label,
            ));
        }
        let team = t
            .team_by_handle(&self.text(q.team.as_deref().unwrap_or_default())?)
            .map_err(|e| Failure::plain(e.to_string()))?;
        let channel = match &q.channel {
            None => team.channels.iter().find(|c| c.general),
            Some(c) => team
                .channels
                .iter()
                .find(|x| x.id == *c || x.display_name.eq_ignore_ascii_case(c)),
        }
        .ok_or_else(|| Failure::plain("no such channel"))?;
        let label = format!("{} › {}", team.display_name, channel.display_name);
        Ok((
            Some(Conversation::Channel {
                team: team.id,
                channel: channel.id.clone(),
                thread: None,
            }),
            label,
        ))
    }

    /// Bot messages in the window: (matching, all seen as text).
    fn bot_messages(
        &self,
        q: &MessageQuery,
        conversation: &Option<Conversation>,
    ) -> Result<(usize, Vec<String>), Failure> {
        let Some(conversation) = conversation else {
            return Ok((0, vec![]));
        };
        let since = if q.since == Since::Start {
            0
        } else {
            self.message_marks
                .get(&key(conversation))
                .copied()
                .unwrap_or(0)
        };
        let world = self.emulator.state().world();
        let t = &world.tenants[0];
        let regex = q
            .text_matches
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| Failure::plain(e.to_string()))?;
        let card = match &q.card {
            Some(c) => Some(interpolate_value(c, &self.context).map_err(Failure::plain)?),
            None => None,
        };
        let text_eq = q.text.as_deref().map(|t| self.text(t)).transpose()?;
        let contains = q
            .text_contains
            .as_deref()
            .map(|t| self.text(t))
            .transpose()?;
        let mut matching = 0;
        let mut seen = Vec::new();
        for m in t.messages(conversation).iter().skip(since) {
            if m.deleted.is_some() || !matches!(m.from, Participant::Bot(b) if b == self.bot.app_id)
            {
                continue;
            }
            let activity = m.activity.value();
            let text = visible_text(&activity);
            let attachments: Vec<&Value> = activity
                .get("attachments")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let ok = text_eq.as_ref().is_none_or(|e| text.trim() == e.trim())
                && contains.as_ref().is_none_or(|c| text.contains(c.as_str()))
                && regex.as_ref().is_none_or(|r| r.is_match(&text))
                && q.attachment_type.as_ref().is_none_or(|ty| {
                    attachments
                        .iter()
                        .any(|a| a["contentType"].as_str() == Some(ty))
                })
                && card
                    .as_ref()
                    .is_none_or(|c| attachments.iter().any(|a| partial_match(c, &a["content"])));
            if ok {
                matching += 1;
            }
            let types: Vec<&str> = attachments
                .iter()
                .filter_map(|a| a["contentType"].as_str())
                .collect();
            let mut line = format!("\"{}\"", truncate(&text.replace('\n', " ⏎ "), 300));
            if !types.is_empty() {
                line.push_str(&format!(" [{}]", types.join(", ")));
            }
            seen.push(line);
        }
        Ok((matching, seen))
    }

    fn describe(q: &MessageQuery) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &q.text {
            parts.push(format!("text \"{t}\""));
        }
        if let Some(t) = &q.text_contains {
            parts.push(format!("text containing \"{t}\""));
        }
        if let Some(t) = &q.text_matches {
            parts.push(format!("text matching /{t}/"));
        }
        if let Some(t) = &q.attachment_type {
            parts.push(format!("an attachment of type {t}"));
        }
        if let Some(c) = &q.card {
            parts.push(format!("a card containing {c}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" with {}", parts.join(" and "))
        }
    }

    async fn expect_message(&mut self, q: &MessageQuery) -> Result<(), Failure> {
        let within = self.within(&q.within)?;
        let (_, label) = self.conversation(q)?;
        let describe = format!(
            "a bot message in {label}{} within {within:?}",
            Self::describe(q)
        );
        self.poll(within, &describe, |run| {
            match run
                .conversation(q)
                .and_then(|(c, _)| run.bot_messages(q, &c))
            {
                Ok((n, seen)) => (n > 0, seen),
                Err(f) => (false, vec![f.expected]),
            }
        })
        .await
    }

    async fn expect_no_message(&mut self, q: &MessageQuery) -> Result<(), Failure> {
        let watch = q
            .watch
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(Failure::plain)?
            .unwrap_or(Duration::from_secs(1));
        let (_, label) = self.conversation(q)?;
        let deadline = Instant::now() + watch;
        loop {
            let (conversation, _) = self.conversation(q)?;
            let (n, seen) = self.bot_messages(q, &conversation)?;
            if n > 0 {
                return Err(Failure::new(
                    format!(
                        "no bot message in {label}{} for {watch:?}",
                        Self::describe(q)
                    ),
                    seen,
                ));
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Waits for the count, then for it to stay put a moment: a duplicate often comes right after.
    async fn expect_count(&mut self, q: &MessageQuery) -> Result<(), Failure> {
        let within = self.within(&q.within)?;
        let quiet = match &q.watch {
            Some(w) => parse_duration(w).map_err(Failure::plain)?,
            None => within.min(QUIET_PERIOD),
        };
        let wanted = q.messages.unwrap_or(0);
        let (_, label) = self.conversation(q)?;
        let describe = format!(
            "exactly {wanted} bot message(s) in {label}{}",
            Self::describe(q)
        );
        let deadline = Instant::now() + within;
        let mut reached: Option<Instant> = None;
        loop {
            let (conversation, _) = self.conversation(q)?;
            let (n, seen) = self.bot_messages(q, &conversation)?;
            if n > wanted {
                return Err(Failure::new(format!("{describe}, but there are {n}"), seen));
            }
            if n == wanted && self.emulator.state().delivery.pending() == 0 {
                let since = *reached.get_or_insert_with(Instant::now);
                if since.elapsed() >= quiet {
                    return Ok(());
                }
            } else {
                reached = None;
            }
            if Instant::now() >= deadline + quiet {
                return Err(Failure::new(
                    format!("{describe} within {within:?}, but there are {n}"),
                    seen,
                ));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Polls `check` until it holds or `within` passes; then reports what was seen.
    async fn poll(
        &self,
        within: Duration,
        describe: &str,
        check: impl Fn(&Self) -> (bool, Vec<String>),
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + within;
        loop {
            let (ok, seen) = check(self);
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Failure::new(describe, seen));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

fn percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// One line for an activity in a report.
pub fn summarize_activity(a: &Value) -> String {
    let kind = a["type"].as_str().unwrap_or("?");
    let mut line = kind.to_string();
    if let Some(action) = a["action"].as_str() {
        line.push_str(&format!(" ({action})"));
    }
    if let Some(event) = a.pointer("/channelData/eventType").and_then(Value::as_str) {
        line.push_str(&format!(" [{event}]"));
    }
    let text = visible_text(a);
    if !text.is_empty() {
        line.push_str(&format!(
            ": \"{}\"",
            truncate(&text.replace('\n', " ⏎ "), 160)
        ));
    }
    line
}
