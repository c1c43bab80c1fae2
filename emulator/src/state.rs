//! The state every route shares, with one owner: the [`World`] (tenants and Teams' rules) behind
//! one lock, and beside it what needs no lock (the clock, the signing key, the service URL) or
//! has its own (delivery, limits).
//!
//! A request takes the world lock once: [`AppState::read`] for a query, [`AppState::change`] to
//! apply a rule, build the activities the change causes and hand them to delivery under that
//! same lock (so bots hear events in the order they happened), [`AppState::mutate`] for a change
//! no bot hears of. Each takes a closure and no guard is ever handed out, so the lock can never
//! be held across an `.await`.

use crate::clock::Clock;
use crate::config::EmulatorConfig;
use crate::delivery::{self, Delivery};
pub use crate::identity::BotAuth;
use crate::identity::SigningKey;
use crate::limits::{Fault, Limits};
use crate::shutdown::Shutdown;
use crate::tenant::{TeamsEvent, World};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

/// What an emulator is made of, before it serves.
pub struct Settings {
    pub config: EmulatorConfig,
    pub clock: Clock,
    pub key: SigningKey,
    pub bot_auth: BotAuth,
    pub limits: Limits,
    /// Transcript entries and delivery records kept (see [`delivery::DEFAULT_RETAIN`]).
    pub retain: usize,
    /// `http://HOST:PORT`, without a trailing slash.
    pub base_url: String,
    pub shutdown: Shutdown,
}

/// State shared by every route (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    world: Mutex<World>,
    clock: Clock,
    pub key: SigningKey,
    pub bot_auth: BotAuth,
    base_url: String,
    service_url: String,
    pub delivery: Delivery,
    /// Throttling and injected faults.
    pub limits: Limits,
    /// What the emulator started from, for `/_emulator/reset`.
    initial: EmulatorConfig,
    pub shutdown: Shutdown,
    /// App registrations never change after start (reset rebuilds the same ones), so a token's
    /// app is checked without the world lock.
    registered: HashSet<Uuid>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(settings: Settings) -> Self {
        let world = settings.config.build_world(settings.clock.clone());
        let registered = world.registered_apps();
        let delivery = Delivery::new(
            settings.key.clone(),
            settings.bot_auth,
            settings.clock.clone(),
            settings.retain,
            settings.shutdown.clone(),
        );
        Self(Arc::new(Shared {
            world: Mutex::new(world),
            clock: settings.clock,
            key: settings.key,
            bot_auth: settings.bot_auth,
            service_url: format!("{}/amer/", settings.base_url),
            base_url: settings.base_url,
            delivery,
            limits: settings.limits,
            initial: settings.config,
            shutdown: settings.shutdown,
            registered,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock leaves consistent data (every change is one step), so
        // keep serving rather than poisoning every later request.
        self.0.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether some tenant has the app registration `app_id`.
    pub fn is_registered(&self, app_id: Uuid) -> bool {
        self.0.registered.contains(&app_id)
    }

    /// The emulator's time, without the world lock.
    pub fn now(&self) -> DateTime<Utc> {
        self.0.clock.now()
    }

    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }

    /// Answers a query about the world under its lock.
    pub fn read<R>(&self, query: impl FnOnce(&World) -> R) -> R {
        query(&self.lock())
    }

    /// Applies a rule under the world lock; the events it returns become activities, built and
    /// queued for their bots under that same lock. A refused change causes nothing.
    pub fn change<R, E>(
        &self,
        rule: impl FnOnce(&mut World) -> Result<(R, Vec<TeamsEvent>), E>,
    ) -> Result<R, E> {
        let mut world = self.lock();
        let (answer, events) = rule(&mut world)?;
        for event in &events {
            for (bot, endpoint, activity) in
                delivery::activities_for(&world, &self.service_url, event)
            {
                self.delivery.enqueue(bot, endpoint, activity);
            }
        }
        Ok(answer)
    }

    /// Applies a rule that tells no bot anything.
    pub fn mutate<R>(&self, rule: impl FnOnce(&mut World) -> R) -> R {
        rule(&mut self.lock())
    }

    /// Queues `fault` with the limits, its target resolved under the world lock to the name
    /// calls give the limits: the one way the control API, the handle and scenarios inject one.
    pub fn inject_fault(&self, fault: &Fault) -> Result<(), String> {
        let spec = self.read(|world| fault.resolve(world))?;
        self.limits.add_fault(spec)
    }

    /// Back to the state the emulator started in: its tenants as configured (bots keep the
    /// endpoints they were pointed at), no installations, chats, deliveries, transcript or faults.
    pub fn reset(&self) {
        {
            let mut world = self.lock();
            let endpoints = world.messaging_endpoints();
            *world = self.0.initial.build_world(self.0.clock.clone());
            for (client_id, endpoint) in endpoints {
                world.set_messaging_endpoint(client_id, &endpoint);
            }
        }
        self.delivery.clear();
        self.limits.reset();
    }

    /// `http://HOST:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.0.base_url
    }

    /// The Connector `serviceUrl` that activities carry.
    pub fn service_url(&self) -> &str {
        &self.0.service_url
    }
}
