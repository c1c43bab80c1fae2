//! The Bot Connector v3 API under `/amer/v3`.

use crate::server::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
}
