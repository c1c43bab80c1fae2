//! `proactive-bot`: the reference proactive Microsoft Teams bot of teams-emulator.
//!
//! It welcomes users and teams when it is installed, keeps conversation references in SQLite,
//! sends notifications on request, installs itself for users through Graph, honours opt-out,
//! and behaves under Teams' limits. Start it in-process with [`Bot::start`] and a [`Config`]
//! (e.g. [`Config::for_emulator`]); the binary does the same from the command line.
//!
//! The map:
//! - [`config`]: [`Config`] and the command line ([`Cli`]), with the emulator's defaults.
//! - [`server`]: routes (`/api/messages`, `/api/notify`, `/api/install`), [`Bot`], [`BotHandle`],
//!   graceful shutdown.
//! - [`auth`]: validation of the channel's JWT on inbound activities (OpenID metadata, JWKS).
//! - [`activity`]: inbound activities as Teams sends them, mentions, commands.
//! - [`handlers`]: activity routing — installs, uninstalls, new members, messages and commands.
//! - [`state`]: the services one bot shares, and delivering to a user proactively.
//! - [`store`]: SQLite (WAL) with ordered migrations — users, conversation references,
//!   opt-out, blocked/uninstalled status, teams and cached rosters. The one owner of state.
//! - [`connector`]: the Bot Connector client (send, reply, create conversation, paged members).
//! - [`graph`]: the Graph client (users, app catalog, installed apps, install, chat).
//! - [`token`]: client-credential tokens for Graph and the Connector, cached.
//! - [`retry`]: backoff with jitter, `Retry-After`, bounded tries, per-conversation pacing.
//! - [`cards`]: what the bot says — welcomes, notifications, replies, each with the opt-out line.
//! - [`notify`]: notifications to users or channels, with per-recipient outcomes.
//! - [`install`]: proactive install for users who never opened the app, welcoming each once.

pub mod activity;
pub mod auth;
pub mod cards;
pub mod config;
pub mod connector;
pub mod graph;
pub mod handlers;
pub mod install;
pub mod notify;
pub mod retry;
pub mod server;
pub mod state;
pub mod store;
pub mod token;

pub use config::{Cli, Config};
pub use server::{Bot, BotHandle};
