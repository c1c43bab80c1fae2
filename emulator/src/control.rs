//! The emulator's own API under `/_emulator`: health, the transcript, delivery outcomes.

use crate::server::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/transcript", get(transcript))
        .route("/deliveries", get(deliveries))
}

async fn health(State(state): State<AppState>) -> axum::Json<Value> {
    let world = state.world();
    axum::Json(json!({
        "status": "ok",
        "tenants": world.tenants.iter().map(|t| json!({"id": t.id, "displayName": t.display_name})).collect::<Vec<_>>(),
        "pendingDeliveries": state.delivery.pending(),
    }))
}

async fn transcript(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(Value::Array(state.delivery.transcript()))
}

async fn deliveries(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(json!({ "pending": state.delivery.pending(), "value": state.delivery.records() }))
}
