//! teams-emulator: a local Microsoft Teams for testing proactive bots offline.
//!
//! One listener serves Microsoft Graph (`/v1.0`, `/beta`), the Bot Connector (`/amer/v3`), the
//! token, OpenID and key endpoints, and the emulator's own control API (`/_emulator`), and
//! delivers Teams-shaped, signed activities to the bot. The map:
//!
//! - [`tenant`]: the one owner of state (users, teams, catalog, registrations, installations,
//!   chats, messages) and Teams' rules; every change returns the events it causes. Its
//!   collections are private: everything else reads them through named queries.
//! - [`identity`]: tokens (client credentials, password grant), OpenID documents, JWKS, validation.
//! - [`graph`]: Graph routes, the OData subset, Graph's error envelope.
//! - [`connector`]: Bot Connector v3 routes and the Connector's error envelope.
//! - [`delivery`]: activities to bots: building, signing, sending, recording outcomes; the
//!   transcript and delivery records, bounded by a retention.
//! - [`limits`]: Teams' and Graph's throttling, and faults injected on purpose (seeded).
//! - [`control`]: `/_emulator/…`: health, transcript, deliveries, acting as a user.
//! - [`scenario`]: scenario files, the runner, reports (terminal, JUnit, transcripts).
//! - [`config`]: tenants from YAML or the embedded default, and the `serve` flags.
//! - [`state`]: the state every route shares, one lock per request ([`state::AppState::change`]).
//! - [`server`]: the router that merges every surface, served over plain http or TLS.
//! - [`shutdown`]: the one signal that stops the listeners and the delivery workers.
//! - [`emulator`]: the in-process emulator for tests ([`Emulator::start`]); [`expectation`]:
//!   what bots should (not) be sent, failing with a list of what arrived; [`client`]: tokens,
//!   Graph, the Connector and the control API as a bot or a user calls them.
//! - [`tls`]: a local certificate authority and HTTPS, for clients that insist on it.
//! - [`clock`], [`ids`]: time that tests can control, deterministic ids in Teams' formats;
//!   [`summary`]: how an activity reads to a person, for reports and failed expectations.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! let emulator = teams_emulator::Emulator::start().await?;
//! println!("Graph at {}", emulator.graph_url());
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod connector;
pub mod control;
pub mod delivery;
pub mod emulator;
pub mod expectation;
pub mod graph;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod scenario;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod summary;
pub mod tenant;
pub mod tls;

pub use client::EmulatorClient;
pub use config::{EmulatorConfig, defaults};
pub use emulator::{Emulator, EmulatorBuilder, EmulatorHandle};
pub use expectation::ExpectationFailed;
pub use limits::{Fault, Operation};
pub use state::BotAuth;
