//! Users writing: `POST /chats/{id}/messages` and `POST /teams/{id}/channels/{id}/messages`
//! (with @mentions), and reading channel messages. The control API reuses the same steps to act
//! as a user without a token.

use super::chats::{CHAT_MESSAGES, message_json};
use super::{GraphError, authenticate, collection, json_body};
use crate::state::AppState;
use crate::tenant::{Caller, Tenant, permissions};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use regex::Regex;
use serde_json::{Value, json};
use std::sync::LazyLock;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/chats/{chat}/messages",
            axum::routing::post(send_chat_message),
        )
        .route("/teams/{team}", get(get_team))
        .route("/teams/{team}/channels", get(list_channels))
        .route(
            "/teams/{team}/channels/{channel}/messages",
            get(list_channel_messages).post(send_channel_message),
        )
        .route(
            "/teams/{team}/channels/{channel}/messages/{message}/replies",
            get(list_replies).post(reply_in_channel),
        )
}

/// What a user writes, already turned into the activity fields a bot receives.
pub struct UserMessage {
    pub text: String,
    pub entities: Vec<Value>,
    pub mentioned_bots: Vec<Uuid>,
}

impl UserMessage {
    pub fn activity(&self) -> Value {
        json!({"text": self.text, "textFormat": "plain", "entities": self.entities})
    }
}

static AT_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"<at id=["']?(\d+)["']?>(.*?)</at>"#).expect("valid regex"));

/// Reads a Graph `chatMessage` body: `body.content`, and `mentions` naming users or the app.
pub fn parse_user_message(tenant: &Tenant, body: &Value) -> Result<UserMessage, GraphError> {
    let content = body
        .pointer("/body/content")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::bad_request("A chatMessage needs 'body.content' (a string)."))?;
    let mentions = match body.get("mentions") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(m)) => m.clone(),
        Some(_) => return Err(GraphError::bad_request("'mentions' must be an array.")),
    };
    let mut entities = Vec::new();
    let mut mentioned_bots = Vec::new();
    for m in &mentions {
        let text = m
            .get("mentionText")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mentioned = if let Some(app) = m
            .pointer("/mentioned/application/id")
            .and_then(Value::as_str)
        {
            let id = Uuid::parse_str(app).map_err(|_| {
                GraphError::bad_request(format!("Mentioned application id '{app}' is not a GUID."))
            })?;
            // the app by its bot id or its catalog id
            let bot = tenant.app_of_bot(id).and_then(|a| a.bot_id).or_else(|| {
                tenant
                    .catalog()
                    .iter()
                    .find(|a| a.id == id)
                    .and_then(|a| a.bot_id)
            });
            let bot = bot.ok_or_else(|| {
                GraphError::not_found(format!("No app '{app}' with a bot in the tenant."))
            })?;
            mentioned_bots.push(bot);
            json!({"id": crate::ids::bot_mri(bot), "name": text})
        } else if let Some(user) = m.pointer("/mentioned/user/id").and_then(Value::as_str) {
            let u = tenant.user(user)?;
            json!({"id": u.mri, "name": u.display_name, "aadObjectId": u.id.to_string()})
        } else {
            return Err(GraphError::bad_request(
                "Each mention needs 'mentioned.user.id' or 'mentioned.application.id'.",
            ));
        };
        entities.push(
            json!({"type": "mention", "text": format!("<at>{text}</at>"), "mentioned": mentioned}),
        );
    }
    let text = AT_TAG.replace_all(content, "<at>$2</at>").into_owned();
    Ok(UserMessage {
        text,
        entities,
        mentioned_bots,
    })
}

fn delegated_user(caller: &Caller) -> Result<Uuid, GraphError> {
    caller.user.ok_or_else(|| {
        GraphError::new(StatusCode::FORBIDDEN, "Forbidden", "Sending messages needs a user's delegated token; application permissions are not supported for this API.")
    })
}

/// A user's message in their 1:1 chat: stored, answered as a chatMessage, delivered to the bot.
pub fn user_sends_in_chat(
    state: &AppState,
    tenant: Uuid,
    user: Uuid,
    chat: &str,
    body: &Value,
) -> Result<Value, GraphError> {
    state.change(|world| {
        let t = world
            .tenant(tenant)
            .ok_or_else(|| GraphError::not_found("Tenant not found."))?;
        let message = parse_user_message(t, body)?;
        let (stored, events) =
            world.post_user_chat_message(tenant, user, chat, message.activity())?;
        let t = world
            .tenant(tenant)
            .ok_or_else(|| GraphError::not_found("Tenant not found."))?;
        let chat_id = t.chat(chat).map(|c| c.id.clone());
        Ok((message_json(t, &stored, chat_id.as_deref(), None), events))
    })
}

/// A user's message in a channel (a new thread, or a reply in `thread`).
pub fn user_sends_in_channel(
    state: &AppState,
    tenant: Uuid,
    user: Uuid,
    team: &str,
    channel: &str,
    thread: Option<&str>,
    body: &Value,
) -> Result<Value, GraphError> {
    state.change(|world| {
        let t = world
            .tenant(tenant)
            .ok_or_else(|| GraphError::not_found("Tenant not found."))?;
        let message = parse_user_message(t, body)?;
        let (stored, events) = world.post_user_channel_message(
            tenant,
            user,
            team,
            channel,
            thread,
            &message.mentioned_bots,
            message.activity(),
        )?;
        let t = world
            .tenant(tenant)
            .ok_or_else(|| GraphError::not_found("Tenant not found."))?;
        let team_id = t.team(team).map(|x| x.id.to_string()).unwrap_or_default();
        Ok((
            message_json(t, &stored, None, Some((&team_id, channel))),
            events,
        ))
    })
}

async fn send_chat_message(
    State(state): State<AppState>,
    Path(chat): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    caller.authorize(&permissions::SEND_CHAT_MESSAGES)?;
    let user = delegated_user(&caller)?;
    let body = json_body(&body)?;
    let json = user_sends_in_chat(&state, caller.tenant, user, &chat, &body)?;
    Ok((StatusCode::CREATED, axum::Json(json)).into_response())
}

async fn send_channel_message(
    State(state): State<AppState>,
    Path((team, channel)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    caller.authorize(&permissions::SEND_CHANNEL_MESSAGES)?;
    let user = delegated_user(&caller)?;
    let body = json_body(&body)?;
    let json = user_sends_in_channel(&state, caller.tenant, user, &team, &channel, None, &body)?;
    Ok((StatusCode::CREATED, axum::Json(json)).into_response())
}

async fn reply_in_channel(
    State(state): State<AppState>,
    Path((team, channel, message)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    caller.authorize(&permissions::SEND_CHANNEL_MESSAGES)?;
    let user = delegated_user(&caller)?;
    let body = json_body(&body)?;
    let json = user_sends_in_channel(
        &state,
        caller.tenant,
        user,
        &team,
        &channel,
        Some(&message),
        &body,
    )?;
    Ok((StatusCode::CREATED, axum::Json(json)).into_response())
}

fn team_json(t: &crate::tenant::Team) -> Value {
    json!({"id": t.id.to_string(), "displayName": t.display_name, "description": t.description, "internalId": t.thread_id, "isArchived": false, "visibility": "private"})
}

fn channel_json(c: &crate::tenant::Channel) -> Value {
    json!({"id": c.id, "displayName": c.display_name, "description": null, "membershipType": "standard", "createdDateTime": c.created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "email": ""})
}

const TEAMS: super::odata::EntitySet = super::odata::EntitySet {
    type_name: "microsoft.graph.team",
    filters: &[],
    navigation: &[],
    page_size: 100,
};
const CHANNELS: super::odata::EntitySet = super::odata::EntitySet {
    type_name: "microsoft.graph.channel",
    filters: &["id", "displayName", "membershipType"],
    navigation: &[],
    page_size: 100,
};

fn readable_team<'a>(
    tenant: &'a Tenant,
    caller: &Caller,
    team: &str,
) -> Result<&'a crate::tenant::Team, GraphError> {
    let t = tenant.team(team)?;
    if let Some(user) = caller.user
        && !t.members.iter().any(|m| m.user == user)
        && !tenant.user_by_id(user).is_some_and(|u| u.admin)
    {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The signed-in user is not a member of the team.",
        ));
    }
    Ok(t)
}

async fn get_team(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(team): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    caller.authorize(&permissions::READ_TEAMS)?;
    let item = state.read(|world| -> Result<_, GraphError> {
        Ok(team_json(readable_team(
            world.tenant_of(&caller)?,
            &caller,
            &team,
        )?))
    })?;
    super::entity(&uri, &TEAMS, "teams/$entity", item)
}

async fn list_channels(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(team): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    caller.authorize(&permissions::READ_TEAMS)?;
    let items = state.read(|world| -> Result<_, GraphError> {
        Ok(readable_team(world.tenant_of(&caller)?, &caller, &team)?
            .channels
            .iter()
            .map(channel_json)
            .collect())
    })?;
    collection(
        &state,
        &uri,
        &CHANNELS,
        &format!("teams('{team}')/channels"),
        items,
    )
}

fn channel_messages(
    state: &AppState,
    headers: &HeaderMap,
    team: &str,
    channel: &str,
    thread: Option<&str>,
) -> Result<Vec<Value>, GraphError> {
    let caller = authenticate(state, headers)?;
    caller.authorize(&permissions::READ_CHANNEL_MESSAGES)?;
    state.read(|world| channel_messages_in(world, &caller, team, channel, thread))
}

fn channel_messages_in(
    world: &crate::tenant::World,
    caller: &Caller,
    team: &str,
    channel: &str,
    thread: Option<&str>,
) -> Result<Vec<Value>, GraphError> {
    let tenant = world.tenant_of(caller)?;
    let t = readable_team(tenant, caller, team)?;
    let c = t
        .channels
        .iter()
        .find(|c| c.id == channel)
        .ok_or_else(|| GraphError::not_found(format!("Channel '{channel}' not found.")))?;
    if let Some(root) = thread
        && !c
            .messages
            .iter()
            .any(|m| m.id == root && m.reply_to.is_none())
    {
        return Err(GraphError::not_found(format!(
            "Message '{root}' not found in the channel."
        )));
    }
    let team_id = t.id.to_string();
    Ok(c.messages
        .iter()
        .rev()
        .filter(|m| m.reply_to.as_deref() == thread)
        .map(|m| message_json(tenant, m, None, Some((&team_id, &c.id))))
        .collect())
}

async fn list_channel_messages(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path((team, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let items = channel_messages(&state, &headers, &team, &channel, None)?;
    collection(
        &state,
        &uri,
        &CHAT_MESSAGES,
        &format!("teams('{team}')/channels('{channel}')/messages"),
        items,
    )
}

async fn list_replies(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path((team, channel, message)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let items = channel_messages(&state, &headers, &team, &channel, Some(&message))?;
    collection(
        &state,
        &uri,
        &CHAT_MESSAGES,
        &format!("teams('{team}')/channels('{channel}')/messages('{message}')/replies"),
        items,
    )
}
