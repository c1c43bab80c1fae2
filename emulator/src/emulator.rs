//! The in-process emulator, used the way `wiremock::MockServer` is: [`Emulator::start`] binds a
//! free loopback port and serves in the background; the [`EmulatorHandle`] gives its URLs, and is
//! shut down (or dropped) at the end of the test.

use crate::clock::Clock;
use crate::config::EmulatorConfig;
use crate::identity::SigningKey;
use crate::server::{self, AppState, BotAuth};
use crate::shutdown::Shutdown;
use crate::state::Settings;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

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
    pub fn token_url(&self, tenant: uuid::Uuid) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.url())
    }
    pub fn channel_openid_url(&self) -> String {
        format!("{}/v1/.well-known/openidconfiguration", self.url())
    }
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Sets where the bot of app registration `app_id` receives activities, for a bot that can
    /// only be started once the emulator's URL is known (or restarts on another port). Returns
    /// whether the emulator has that registration.
    pub fn set_bot_endpoint(&self, app_id: uuid::Uuid, endpoint: &str) -> bool {
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
