//! The bot under test: the built-in reference bot in-process, or a command run in its own
//! process group with the emulator's URLs in its environment; started, awaited until it accepts
//! connections, and stopped with everything it started.

use super::Scenario;
use super::expect::POLL_EVERY;
use super::matching::parse_duration;
use super::queries::{
    app_secret, bot_app_id, catalog_app, manifest_id, read_tenant, set_messaging_endpoint,
};
use super::run::RunOptions;
use crate::emulator::EmulatorHandle;
use crate::state::BotAuth;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

/// The bot a scenario drives: the built-in reference bot, or a command's process.
pub(super) struct BotUnderTest {
    pub(super) url: String,
    pub(super) endpoint: String,
    pub(super) app_id: Uuid,
    pub(super) port: u16,
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

impl BotUnderTest {
    pub(super) async fn start(
        scenario: &Scenario,
        options: &RunOptions,
        emulator: &EmulatorHandle,
        auth: BotAuth,
    ) -> Result<Self, String> {
        let app_id = read_tenant(emulator.state(), bot_app_id)
            .ok_or("the tenant's catalog has no app with a bot")?;
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
        set_messaging_endpoint(emulator.state(), app_id, &bot.endpoint);
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
        read_tenant(emulator.state(), |tenant| {
            config.tenant_id = tenant.id.to_string();
            if let Some(app) = catalog_app(tenant, app_id) {
                config.manifest_id = app.external_id.to_string();
            }
            if let Some(secret) = app_secret(tenant, app_id) {
                config.app_password = secret.to_string();
            }
        });
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
        let (secret, tenant) = read_tenant(emulator.state(), |tenant| {
            let secret = app_secret(tenant, app_id).unwrap_or_default().to_string();
            (secret, tenant.id)
        });
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
    pub(super) async fn stop(&mut self) -> String {
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
    let manifest = emulator.state().read(|world| manifest_id(world, app_id));
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
