//! The listener: shared state, the router that merges every surface, start-up on a port (or a
//! free one), and graceful shutdown.

pub use crate::emulator::{Emulator, EmulatorBuilder, EmulatorHandle};

use crate::config::EmulatorConfig;
use crate::identity::SigningKey;
use crate::tenant::{TeamsEvent, World};
use crate::{control, delivery, graph, identity};
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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
    pub(crate) base_url: OnceLock<String>,
    pub delivery: delivery::Deliveries,
    /// Throttling and injected faults.
    pub limits: crate::limits::Limits,
    /// What the emulator started from, for `/_emulator/reset`.
    pub(crate) initial: OnceLock<EmulatorConfig>,
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

/// Accepts TLS connections until told to stop; connections already open finish on their own.
pub(crate) async fn serve_tls(
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
