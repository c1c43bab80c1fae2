//! The reference proactive bot.
pub mod auth;
pub mod config;
pub mod retry;
pub mod store;
pub mod token;
