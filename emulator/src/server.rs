//! The listener: shared state, the router that merges every surface, start-up on a port (or a
//! free one), and graceful shutdown.

use crate::clock::Clock;
use crate::config::EmulatorConfig;
use crate::identity::SigningKey;
use crate::tenant::{TeamsEvent, World};
use crate::{control, delivery, graph, identity};
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How activities to the bot are signed and Connector calls authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BotAuth {
    /// Activities carry a channel JWT; Connector calls need a bearer token from the emulator.
    #[default]
    Signed,
    /// No `Authorization` either way, like a bot run without `MicrosoftAppId`.
    None,
}

/// State shared by every route.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    world: Mutex<World>,
    pub key: SigningKey,
    pub bot_auth: BotAuth,
    base_url: OnceLock<String>,
    pub delivery: delivery::Deliveries,
    /// Throttling and injected faults.
    pub limits: crate::limits::Limits,
    /// What the emulator started from, for `/_emulator/reset`.
    initial: OnceLock<EmulatorConfig>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(world: World, key: SigningKey, bot_auth: BotAuth) -> Self {
        Self::with_limits(world, key, bot_auth, crate::limits::Limits::default())
    }

    pub fn with_limits(
        world: World,
        key: SigningKey,
        bot_auth: BotAuth,
        limits: crate::limits::Limits,
    ) -> Self {
        Self(Arc::new(Shared {
            world: Mutex::new(world),
            key,
            bot_auth,
            base_url: OnceLock::new(),
            delivery: delivery::Deliveries::default(),
            limits,
            initial: OnceLock::new(),
        }))
    }

    /// Back to the state the emulator started in: its tenants as configured (bots keep the
    /// endpoints they were pointed at), no installations, chats, deliveries, transcript or faults.
    pub fn reset(&self) {
        if let Some(config) = self.0.initial.get() {
            let mut world = self.world();
            let endpoints: Vec<(uuid::Uuid, Option<String>)> = world
                .tenants
                .iter()
                .flat_map(|t| {
                    t.registrations
                        .iter()
                        .map(|r| (r.client_id, r.messaging_endpoint.clone()))
                })
                .collect();
            let fresh = config.build_world(world.clock.clone());
            *world = fresh;
            for (client_id, endpoint) in endpoints {
                if let Some(endpoint) = endpoint {
                    world.set_messaging_endpoint(client_id, &endpoint);
                }
            }
        }
        self.delivery.clear();
        self.limits.reset();
    }

    /// A handle that does not keep the state alive (for tasks the state itself owns).
    pub fn downgrade(&self) -> std::sync::Weak<Shared> {
        Arc::downgrade(&self.0)
    }

    pub fn upgrade(weak: &std::sync::Weak<Shared>) -> Option<Self> {
        weak.upgrade().map(Self)
    }

    /// The state, locked. Held only for synchronous work: never across an `.await`.
    pub fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock leaves consistent data (every change is one step), so
        // keep serving rather than poisoning every later request.
        self.0.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://HOST:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.0
            .base_url
            .get()
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1")
    }

    /// The Connector `serviceUrl` that activities carry.
    pub fn service_url(&self) -> String {
        format!("{}/amer/", self.base_url())
    }

    /// Hands what a change told Teams to the bots, in order.
    pub async fn publish(&self, events: Vec<TeamsEvent>) {
        for event in events {
            delivery::deliver_event(self, &event).await;
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/v1.0", graph::router())
        .nest("/beta", graph::router())
        .nest("/amer/v3", crate::connector::router())
        .nest("/_emulator", control::router())
        .merge(identity::routes::router())
        .fallback(|uri: axum::http::Uri| async move {
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": {"code": "NotFound", "message": format!("No emulated service at {}. Graph is under /v1.0 and /beta, the Bot Connector under /amer/v3, tokens under /{{tenant}}/oauth2/v2.0/token.", uri.path())}})),
            )
                .into_response()
        })
        .with_state(state)
}

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

    /// Binds, and serves in the background until the handle is shut down or dropped.
    pub async fn start(self) -> std::io::Result<EmulatorHandle> {
        let listener = TcpListener::bind(self.listen).await?;
        let addr = listener.local_addr()?;
        let world = self.config.build_world(self.clock.clone());
        let initial = self.config.clone();
        let state = AppState::with_limits(
            world,
            self.key.unwrap_or_else(SigningKey::embedded),
            self.bot_auth,
            crate::limits::Limits::new(self.throttling, self.seed),
        );
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let _ = state.0.base_url.set(format!("{scheme}://{addr}"));
        let _ = state.0.initial.set(initial);
        let app = router(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = match self.tls {
            None => tokio::spawn(async move {
                let served = axum::serve(listener, app).with_graceful_shutdown(async {
                    let _ = stopped.await;
                });
                if let Err(e) = served.await {
                    tracing::error!(error = %e, "the emulator's listener failed");
                }
            }),
            Some(identity) => tokio::spawn(serve_tls(listener, app, identity, stopped)),
        };
        Ok(EmulatorHandle {
            addr,
            state,
            clock: self.clock,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// Accepts TLS connections until told to stop; connections already open finish on their own.
async fn serve_tls(
    listener: TcpListener,
    app: Router,
    identity: crate::tls::TlsIdentity,
    mut stopped: oneshot::Receiver<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server.clone());
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, peer)) = accepted else { continue };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client that does not trust the authority, or speaks plain http, fails here.
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let served =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
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
    stop: Option<oneshot::Sender<()>>,
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
        self.state.service_url()
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
        self.state.world().set_messaging_endpoint(app_id, endpoint)
    }

    /// Stops accepting, lets requests in flight finish, and waits for the listener to close.
    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}
