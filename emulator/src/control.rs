//! The emulator's own API under `/_emulator`: health, the transcript and delivery outcomes,
//! faults injected on purpose, and acting as Teams' users without a token (write in a chat or
//! channel, join or leave a team, block a bot). Users and teams are named by key (`megan`,
//! `mark8`), id or UPN; `?tenant=` picks a tenant other than the first.

use crate::graph::GraphError;
use crate::graph::messages::{user_sends_in_channel, user_sends_in_chat};
use crate::limits::Fault;
use crate::state::AppState;
use crate::tenant::Tenant;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/transcript", get(transcript))
        .route("/deliveries", get(deliveries))
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/reset", post(reset))
        .route("/inspector", get(inspector))
        .route("/users/{user}/messages", post(user_writes_to_bot))
        .route("/users/{user}/block", post(block_bot).delete(unblock_bot))
        .route(
            "/teams/{team}/channels/{channel}/messages",
            post(user_writes_in_channel),
        )
        .route("/teams/{team}/members", post(add_member))
        .route("/teams/{team}/members/{user}", delete(remove_member))
}

#[derive(Deserialize, Default)]
pub struct TenantQuery {
    tenant: Option<String>,
    /// For `/deliveries`: wait up to this many milliseconds for queued deliveries to finish.
    wait_ms: Option<u64>,
}

fn pick_tenant<'a>(tenants: &'a [Tenant], q: &TenantQuery) -> Result<&'a Tenant, GraphError> {
    match &q.tenant {
        None => tenants
            .first()
            .ok_or_else(|| GraphError::not_found("No tenant is emulated.")),
        Some(t) => tenants
            .iter()
            .find(|x| {
                x.id.to_string().eq_ignore_ascii_case(t)
                    || x.display_name.eq_ignore_ascii_case(t)
                    || x.domain.eq_ignore_ascii_case(t)
            })
            .ok_or_else(|| GraphError::not_found(format!("No tenant '{t}'."))),
    }
}

fn object(body: &Bytes) -> Result<Value, GraphError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| GraphError::bad_request("The body must be a JSON object."))
}

/// The bot a request names (`"bot": "<app id>"` or `28:<app id>`), else the tenant's first bot.
fn named_bot(tenant: &Tenant, body: &Value) -> Result<Uuid, GraphError> {
    match body.get("bot").and_then(Value::as_str) {
        Some(b) => Uuid::parse_str(b.strip_prefix("28:").unwrap_or(b))
            .map_err(|_| GraphError::bad_request(format!("'bot' '{b}' is not an app id."))),
        None => tenant
            .bot_app()
            .and_then(|a| a.bot_id)
            .ok_or_else(|| GraphError::not_found("The tenant has no bot.")),
    }
}

async fn health(State(state): State<AppState>) -> axum::Json<Value> {
    let tenants = state.read(|world| {
        world
            .tenants()
            .iter()
            .map(|t| json!({"id": t.id, "displayName": t.display_name}))
            .collect::<Vec<_>>()
    });
    axum::Json(json!({
        "status": "ok",
        "tenants": tenants,
        "pendingDeliveries": state.delivery.pending(),
        "retain": state.delivery.retain(),
        "dropped": state.delivery.dropped(),
    }))
}

/// `{"operation": "send", "status": 429, "retry_after": 2, "user": "megan"}`: a [`Fault`], with
/// the fields of the scenario step (`docs/scenarios.md`).
async fn add_fault(State(state): State<AppState>, body: Bytes) -> Result<Response, GraphError> {
    let fault: Fault = serde_json::from_slice(&body)
        .map_err(|e| GraphError::bad_request(format!("Not a fault: {e}. {}", Fault::FIELDS)))?;
    state
        .inject_fault(&fault)
        .map_err(GraphError::bad_request)?;
    Ok(StatusCode::CREATED.into_response())
}

/// A live page of the conversations, deliveries and faults, for a person watching a bot.
async fn inspector() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("inspector.html"))
}

/// Back to the configured tenants, with nothing installed, sent or recorded.
async fn reset(State(state): State<AppState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(
        json!({"seed": state.limits.seed, "faults": state.limits.faults(), "earlyRetries": state.limits.early_retries()}),
    )
}

async fn clear_faults(State(state): State<AppState>) -> StatusCode {
    state.limits.clear_faults();
    StatusCode::NO_CONTENT
}

/// A Bot Framework `.transcript` (a JSON array); `X-Emulator-Dropped` says how many older
/// entries the retention let go.
async fn transcript(State(state): State<AppState>) -> Response {
    let dropped = state.delivery.dropped().transcript;
    (
        [("x-emulator-dropped", dropped.to_string())],
        axum::Json(Value::Array(state.delivery.transcript())),
    )
        .into_response()
}

async fn deliveries(
    State(state): State<AppState>,
    Query(q): Query<TenantQuery>,
) -> axum::Json<Value> {
    if let Some(ms) = q.wait_ms {
        state
            .delivery
            .settle(Duration::from_millis(ms.min(60_000)))
            .await;
    }
    axum::Json(json!({
        "pending": state.delivery.pending(),
        "dropped": state.delivery.dropped().deliveries,
        "value": state.delivery.records(),
    }))
}

/// The text (or a Graph `chatMessage` body) of a message a user writes.
fn chat_message_body(body: &Value) -> Result<Value, GraphError> {
    if body.pointer("/body/content").is_some() {
        return Ok(body.clone());
    }
    let text = body
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::bad_request("Give 'text' (or a Graph chatMessage 'body')."))?;
    Ok(json!({"body": {"contentType": "text", "content": text}}))
}

/// `{"text": "stop", "bot": "<app id>"?}`: the user writes in their 1:1 chat with the bot
/// (the tenant's first bot when not named).
async fn user_writes_to_bot(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Query(q): Query<TenantQuery>,
    body: Bytes,
) -> Result<Response, GraphError> {
    let body = object(&body)?;
    let (tenant, user, chat) = state.read(|world| -> Result<_, GraphError> {
        let t = pick_tenant(world.tenants(), &q)?;
        let u = t.user_by_handle(&user)?;
        let bot = named_bot(t, &body)?;
        let chat = t.personal_chat(u.id, bot).ok_or_else(|| {
            GraphError::not_found(format!(
                "{} has no chat with the bot yet: install the app for them first.",
                u.display_name
            ))
        })?;
        Ok((t.id, u.id, chat.id.clone()))
    })?;
    let message = user_sends_in_chat(&state, tenant, user, &chat, &chat_message_body(&body)?)?;
    Ok((StatusCode::CREATED, axum::Json(message)).into_response())
}

/// `{"from": "megan", "text": "…", "mentionBot": true, "mentions": ["adele"], "replyTo": "…"}`
async fn user_writes_in_channel(
    State(state): State<AppState>,
    Path((team, channel)): Path<(String, String)>,
    Query(q): Query<TenantQuery>,
    body: Bytes,
) -> Result<Response, GraphError> {
    let body = object(&body)?;
    let (tenant, user, team_id, channel_id, graph_body) = state.read(|world| -> Result<_, GraphError> {
        let t = pick_tenant(world.tenants(), &q)?;
        let from = body
            .get("from")
            .and_then(Value::as_str)
            .ok_or_else(|| GraphError::bad_request("Say who writes: 'from'."))?;
        let u = t.user_by_handle(from)?;
        let team = t.team_by_handle(&team)?;
        let c = team
            .channels
            .iter()
            .find(|c| c.id == channel || c.display_name.eq_ignore_ascii_case(&channel))
            .ok_or_else(|| {
                GraphError::not_found(format!("No channel '{channel}' in {}.", team.display_name))
            })?;
        let text = body.get("text").and_then(Value::as_str).unwrap_or_default();
        let mut content = String::new();
        let mut mentions = Vec::new();
        if body
            .get("mentionBot")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            let app = t
                .bot_app()
                .ok_or_else(|| GraphError::not_found("The tenant has no bot."))?;
            content.push_str(&format!("<at id=\"0\">{}</at> ", app.display_name));
            mentions.push(json!({"id": 0, "mentionText": app.display_name, "mentioned": {"application": {"id": app.bot_id.map(|b| b.to_string()), "displayName": app.display_name}}}));
        }
        for handle in body
            .get("mentions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let m = t.user_by_handle(handle.as_str().unwrap_or_default())?;
            let i = mentions.len();
            content.push_str(&format!("<at id=\"{i}\">{}</at> ", m.display_name));
            mentions.push(json!({"id": i, "mentionText": m.display_name, "mentioned": {"user": {"id": m.id.to_string(), "displayName": m.display_name}}}));
        }
        content.push_str(text);
        Ok((
            t.id,
            u.id,
            team.id.to_string(),
            c.id.clone(),
            json!({"body": {"contentType": "html", "content": content}, "mentions": mentions}),
        ))
    })?;
    let reply_to = body.get("replyTo").and_then(Value::as_str);
    let message = user_sends_in_channel(
        &state,
        tenant,
        user,
        &team_id,
        &channel_id,
        reply_to,
        &graph_body,
    )?;
    Ok((StatusCode::CREATED, axum::Json(message)).into_response())
}

/// `{"user": "nestor"}`: the user joins the team; bots installed there hear `teamMemberAdded`.
async fn add_member(
    State(state): State<AppState>,
    Path(team): Path<String>,
    Query(q): Query<TenantQuery>,
    body: Bytes,
) -> Result<Response, GraphError> {
    let body = object(&body)?;
    let user = body
        .get("user")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::bad_request("Say who joins: 'user'."))?;
    state.change(|world| -> Result<_, GraphError> {
        let t = pick_tenant(world.tenants(), &q)?;
        let (tid, uid, team_id) = (
            t.id,
            t.user_by_handle(user)?.id.to_string(),
            t.team_by_handle(&team)?.id.to_string(),
        );
        Ok(((), world.add_team_member(tid, &team_id, &uid)?))
    })?;
    Ok(StatusCode::CREATED.into_response())
}

async fn remove_member(
    State(state): State<AppState>,
    Path((team, user)): Path<(String, String)>,
    Query(q): Query<TenantQuery>,
) -> Result<Response, GraphError> {
    state.change(|world| -> Result<_, GraphError> {
        let t = pick_tenant(world.tenants(), &q)?;
        let (tid, uid, team_id) = (
            t.id,
            t.user_by_handle(&user)?.id.to_string(),
            t.team_by_handle(&team)?.id.to_string(),
        );
        Ok(((), world.remove_team_member(tid, &team_id, &uid)?))
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn set_blocked(
    state: &AppState,
    user: &str,
    q: &TenantQuery,
    body: &Bytes,
    blocked: bool,
) -> Result<Response, GraphError> {
    let body = object(body)?;
    state.mutate(|world| -> Result<(), GraphError> {
        let t = pick_tenant(world.tenants(), q)?;
        let bot = named_bot(t, &body)?;
        let (tid, uid) = (t.id, t.user_by_handle(user)?.id.to_string());
        Ok(world.set_blocked(tid, &uid, bot, blocked)?)
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{"bot": "<app id>"?}`: the user blocks the bot; its sends answer 403 `ConversationBlockedByUser`.
async fn block_bot(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Query(q): Query<TenantQuery>,
    body: Bytes,
) -> Result<Response, GraphError> {
    set_blocked(&state, &user, &q, &body, true)
}

async fn unblock_bot(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Query(q): Query<TenantQuery>,
    body: Bytes,
) -> Result<Response, GraphError> {
    set_blocked(&state, &user, &q, &body, false)
}
