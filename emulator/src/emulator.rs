//! The in-process emulator, used the way `wiremock::MockServer` is: [`Emulator::start`] binds a
//! free loopback port and serves in the background; the [`EmulatorHandle`] gives its URLs and a
//! [`EmulatorClient`], tells what the bots were sent, waits for what they should be sent, and is
//! shut down (or dropped) at the end of the test.
//!
//! ```
//! use std::time::Duration;
//! use serde_json::json;
//! use teams_emulator::{Emulator, defaults};
//! use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Your bot, or a stand-in that accepts every activity.
//! let bot = MockServer::start().await;
//! Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&bot).await;
//!
//! let emulator = Emulator::start().await?; // the default tenant on 127.0.0.1:<free port>
//! emulator.set_bot_endpoint(defaults::BOT_APP_ID, &format!("{}/api/messages", bot.uri()));
//! let client = emulator.client(); // tokens, Graph, the Connector and /_emulator, as the bot
//!
//! // The Graph flow a proactive bot runs: catalog lookup by manifest id, POST installedApps.
//! let installation = client.install_for_user("megan").await?;
//! let update = emulator
//!     .expect_activity("conversationUpdate")
//!     .for_user("megan")
//!     .within(Duration::from_secs(5))
//!     .await; // panics, listing every activity that did arrive, if none does
//! let conversation = update["conversation"]["id"].as_str().unwrap();
//!
//! client.connector_send(conversation, &json!({"type": "message", "text": "Welcome!"})).await?;
//! client.user_says("megan", "thanks").await?;
//! let reply = emulator
//!     .expect_activity("message")
//!     .in_conversation(&installation.chat_id)
//!     .await_ok() // or a Result whose error lists them
//!     .await?;
//! assert_eq!(reply["text"], "thanks");
//! emulator.expect_no_activity("message").for_user("adele").await;
//!
//! assert!(emulator.settle(Duration::from_secs(5)).await);
//! assert!(emulator.deliveries().iter().all(|d| d.ok));
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

use crate::client::{ClientBot, EmulatorClient};
use crate::clock::Clock;
use crate::config::{EmulatorConfig, defaults};
use crate::delivery::DeliveryRecord;
pub use crate::expectation::{ActivityExpectation, ExpectationFailed, NoActivityExpectation};
use crate::identity::SigningKey;
use crate::limits::{EarlyRetry, Fault, FaultState};
use crate::server::{self, AppState, BotAuth};
use crate::shutdown::Shutdown;
use crate::state::Settings;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How long [`EmulatorHandle::shutdown`] lets queued deliveries finish.
const SETTLE_ON_SHUTDOWN: Duration = Duration::from_secs(5);

/// Builds and starts an emulator: `Emulator::builder().bot_auth(BotAuth::None).start().await`.
pub struct EmulatorBuilder {
    config: EmulatorConfig,
    listen: SocketAddr,
    bot_auth: BotAuth,
    clock: Clock,
    key: Option<SigningKey>,
    throttling: bool,
    seed: u64,
    tls: Option<crate::tls::TlsIdentity>,
    retain: usize,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        Self {
            config: EmulatorConfig::default_tenant(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bot_auth: BotAuth::Signed,
            clock: Clock::system(),
            key: None,
            throttling: true,
            seed: 0,
            tls: None,
            retain: crate::delivery::DEFAULT_RETAIN,
        }
    }
}

impl EmulatorBuilder {
    pub fn config(mut self, config: EmulatorConfig) -> Self {
        self.config = config;
        self
    }
    /// Defaults to `127.0.0.1:0`: a free loopback port.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    pub fn bot_auth(mut self, auth: BotAuth) -> Self {
        self.bot_auth = auth;
        self
    }
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }
    /// Teams' and Graph's throttling limits (on by default).
    pub fn throttling(mut self, on: bool) -> Self {
        self.throttling = on;
        self
    }
    /// Serve HTTPS with certificates from this authority (see [`crate::tls`]).
    pub fn tls(mut self, identity: crate::tls::TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }
    /// The seed of injected faults that fire by chance.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Transcript entries and delivery records kept (the oldest go first, and are counted).
    pub fn retain(mut self, entries: usize) -> Self {
        self.retain = entries;
        self
    }

    /// Binds, and serves in the background until the handle is shut down or dropped.
    pub async fn start(self) -> std::io::Result<EmulatorHandle> {
        let listener = TcpListener::bind(self.listen).await?;
        let addr = listener.local_addr()?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let ca_pem = self.tls.as_ref().map(|t| t.ca_pem.clone());
        let shutdown = Shutdown::new();
        let state = AppState::new(Settings {
            config: self.config,
            clock: self.clock.clone(),
            key: self.key.unwrap_or_else(SigningKey::embedded),
            bot_auth: self.bot_auth,
            limits: crate::limits::Limits::new(self.throttling, self.seed),
            retain: self.retain,
            base_url: format!("{scheme}://{addr}"),
            shutdown: shutdown.clone(),
        });
        let app = server::router(state.clone());
        let stopped = shutdown.clone();
        let task = match self.tls {
            None => tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stopped.triggered().await });
                if let Err(e) = served.await {
                    tracing::error!(error = %e, "the emulator's listener failed");
                }
            }),
            Some(identity) => tokio::spawn(server::serve_tls(listener, app, identity, stopped)),
        };
        Ok(EmulatorHandle {
            addr,
            state,
            clock: self.clock,
            ca_pem,
            shutdown,
            task: Some(task),
        })
    }
}

/// The in-process emulator, the way `wiremock::MockServer` is used: start, point clients at
/// [`EmulatorHandle::url`], shut down (or drop).
pub struct Emulator;

impl Emulator {
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// The embedded default tenant, signed delivery, on a free loopback port.
    pub async fn start() -> std::io::Result<EmulatorHandle> {
        Self::builder().start().await
    }
}

pub struct EmulatorHandle {
    addr: SocketAddr,
    state: AppState,
    clock: Clock,
    /// The authority's certificate when serving TLS, for [`EmulatorHandle::client`] to trust.
    ca_pem: Option<String>,
    shutdown: Shutdown,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT` (`https://` when serving TLS), no trailing slash.
    pub fn url(&self) -> String {
        self.state.base_url().to_string()
    }
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.url())
    }
    /// The `serviceUrl` of activities (ends in `/`).
    pub fn service_url(&self) -> String {
        self.state.service_url().to_string()
    }
    pub fn token_url(&self, tenant: Uuid) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.url())
    }
    pub fn channel_openid_url(&self) -> String {
        format!("{}/v1/.well-known/openidconfiguration", self.url())
    }
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
    /// The shared state, for the scenario runner and the command line; tests and other crates
    /// use the methods below.
    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }

    /// An HTTP client for this emulator's token endpoint, Graph, Bot Connector and control API,
    /// acting as the first tenant's bot (see [`EmulatorClient`]).
    pub fn client(&self) -> EmulatorClient {
        let (tenant, domain, bot) = self.state.read(|world| {
            let tenant = world.tenants().first();
            let bot = tenant.and_then(|t| {
                let app = t.catalog().iter().find(|a| a.bot_id.is_some())?;
                let bot = app.bot_id?;
                let registration = t.registrations().iter().find(|r| r.client_id == bot)?;
                Some(ClientBot {
                    app_id: bot,
                    secret: registration.client_secret.clone(),
                    manifest_id: app.external_id,
                })
            });
            (
                tenant.map_or(defaults::TENANT_ID, |t| t.id),
                tenant
                    .map_or("contoso.onmicrosoft.com", |t| t.domain.as_str())
                    .to_string(),
                bot.unwrap_or_default(),
            )
        });
        EmulatorClient::new(
            &self.url(),
            tenant,
            &domain,
            bot,
            self.state.bot_auth == BotAuth::Signed,
            self.ca_pem.as_deref(),
        )
    }

    /// Every attempt so far to deliver an activity to a bot, in order, with its outcome.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.state.delivery.records()
    }

    /// The activities the emulator delivered to bots (the activities of [`Self::deliveries`],
    /// whether the bot accepted them or not), in order.
    pub fn received_activities(&self) -> Vec<Value> {
        self.deliveries().into_iter().map(|r| r.activity).collect()
    }

    /// Every activity to and from bots, in order: a Bot Framework `.transcript`.
    pub fn transcript(&self) -> Vec<Value> {
        self.state.delivery.transcript()
    }

    /// Waits until every queued activity has been delivered (or failed), up to `timeout`.
    /// Returns whether the queues are empty.
    pub async fn settle(&self, timeout: Duration) -> bool {
        self.state.delivery.settle(timeout).await
    }

    /// Injects a fault: the next matching calls (or each, with a probability) answer its status.
    /// Its target is named as people name it (a user by key, UPN or id, a team, a channel, a
    /// conversation), as the scenario step and `POST /_emulator/faults` take it:
    ///
    /// ```no_run
    /// # async fn f(emulator: teams_emulator::EmulatorHandle) {
    /// use teams_emulator::{Fault, Operation};
    /// emulator
    ///     .fault(Fault::on(Operation::Send).status(429).retry_after(2).for_user("megan"))
    ///     .expect("megan is a user of the tenant");
    /// # }
    /// ```
    pub fn fault(&self, fault: Fault) -> Result<(), FaultRejected> {
        self.state.inject_fault(&fault).map_err(FaultRejected)
    }

    /// The injected faults and how often each fired.
    pub fn faults(&self) -> Vec<FaultState> {
        self.state.limits.faults()
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.state.limits.clear_faults();
    }

    /// Calls that came back before the `Retry-After` they were given had passed.
    pub fn early_retries(&self) -> Vec<EarlyRetry> {
        self.state.limits.early_retries()
    }

    /// Back to the state the emulator started in: its tenants as configured (bots keep the
    /// endpoints they were pointed at), no installations, chats, deliveries, transcript or faults.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// A user of the emulated tenants, by key (`megan`), UPN, object id or `29:` id.
    pub fn user(&self, handle: &str) -> Option<TenantUser> {
        self.state.read(|world| {
            world.tenants().iter().find_map(|t| {
                let u = t.user_by_handle(handle).ok()?;
                Some(TenantUser {
                    id: u.id,
                    tenant_id: t.id,
                    key: u.key.clone(),
                    user_principal_name: u.user_principal_name.clone(),
                    display_name: u.display_name.clone(),
                    mri: u.mri.clone(),
                })
            })
        })
    }

    /// A team of the emulated tenants, by key (`mark8`), display name, group id or thread id.
    /// Graph lists no teams, so this is how a test learns the ids a bot would be told.
    pub fn team(&self, handle: &str) -> Option<TenantTeam> {
        self.state.read(|world| {
            world.tenants().iter().find_map(|t| {
                let team = t.team_by_handle(handle).ok()?;
                Some(TenantTeam {
                    id: team.id,
                    tenant_id: t.id,
                    key: team.key.clone(),
                    display_name: team.display_name.clone(),
                    general_channel_id: team.thread_id.clone(),
                    channels: team
                        .channels
                        .iter()
                        .map(|c| TeamChannel {
                            id: c.id.clone(),
                            display_name: c.display_name.clone(),
                            general: c.general,
                        })
                        .collect(),
                    members: team.members.iter().map(|m| m.user).collect(),
                })
            })
        })
    }

    /// Waits for an activity of `activity_type` (`"message"`, `"conversationUpdate"`, …) to be
    /// delivered to a bot. Narrow it with [`ActivityExpectation::for_user`],
    /// [`ActivityExpectation::in_conversation`] or [`ActivityExpectation::matching`], bound it
    /// with [`ActivityExpectation::within`], then `.await` it (panics with every activity that
    /// did arrive) or [`ActivityExpectation::await_ok`] it.
    pub fn expect_activity(&self, activity_type: &str) -> ActivityExpectation {
        ActivityExpectation::new(self.state.clone(), activity_type)
    }

    /// The opposite of [`Self::expect_activity`]: no such activity is delivered within the window
    /// ([`NoActivityExpectation::within`], 1 s unless told), checked until the window ends.
    pub fn expect_no_activity(&self, activity_type: &str) -> NoActivityExpectation {
        NoActivityExpectation::new(self.state.clone(), activity_type)
    }

    /// Sets where the bot of app registration `app_id` receives activities, for a bot that can
    /// only be started once the emulator's URL is known (or restarts on another port). Returns
    /// whether the emulator has that registration.
    pub fn set_bot_endpoint(&self, app_id: Uuid, endpoint: &str) -> bool {
        self.state
            .mutate(|world| world.set_messaging_endpoint(app_id, endpoint))
    }

    /// Lets queued deliveries finish (a bot answering one may still call the Connector), then
    /// stops accepting, lets requests in flight finish, stops the delivery workers and waits
    /// for the listener and the workers to end.
    pub async fn shutdown(mut self) {
        self.state.delivery.settle(SETTLE_ON_SHUTDOWN).await;
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.state.delivery.join(SETTLE_ON_SHUTDOWN).await;
    }
}

impl Drop for EmulatorHandle {
    /// Stops everything without waiting: the listener and the workers end on their own.
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A user of an emulated tenant, as [`EmulatorHandle::user`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantUser {
    /// The Entra object id (`aadObjectId` in activities).
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub key: String,
    pub user_principal_name: String,
    pub display_name: String,
    /// The Bot Framework id (`29:…`) activities carry in `from.id`.
    pub mri: String,
}

/// A team of an emulated tenant, as [`EmulatorHandle::team`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantTeam {
    /// The group id, which Graph uses as the team id (`aadGroupId` in activities).
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub key: String,
    pub display_name: String,
    /// The team's thread id, which is also its General channel's id.
    pub general_channel_id: String,
    /// General first, then the others in the order configured.
    pub channels: Vec<TeamChannel>,
    /// The members' object ids, owners included.
    pub members: Vec<Uuid>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeamChannel {
    pub id: String,
    pub display_name: String,
    pub general: bool,
}

/// A fault the emulator would not inject, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRejected(pub String);

impl std::fmt::Display for FaultRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fault rejected: {}", self.0)
    }
}

impl std::error::Error for FaultRejected {}
