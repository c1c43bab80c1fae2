//! The reference proactive bot.
pub mod auth;
pub mod config;
pub mod connector;
pub mod graph;
pub mod retry;
pub mod store;
pub mod token;
