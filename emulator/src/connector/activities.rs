//! Sending, replying to, updating and deleting activities.

use super::{ConnectorError, authenticate, object_body, resolve_for_bot};
use crate::limits::Operation;
use crate::state::AppState;
use crate::tenant::{BotPost, ConversationError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub async fn send_to_conversation(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConnectorError> {
    post_activity(&state, &headers, &conversation, None, &body)
}

/// A reply; an unknown `replyToId` (CloudAdapter sends a random one proactively) is a new message.
pub async fn reply_to_activity(
    State(state): State<AppState>,
    Path((conversation, activity)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ConnectorError> {
    post_activity(&state, &headers, &conversation, Some(&activity), &body)
}

pub(super) fn activity_type(activity: &Value) -> Result<String, ConnectorError> {
    match activity.get("type") {
        Some(Value::String(t)) if !t.trim().is_empty() => Ok(t.clone()),
        Some(_) => Err(ConnectorError::bad_argument(
            "The activity's 'type' must be a non-empty string.",
        )),
        None => Err(ConnectorError::bad_argument("The activity has no 'type'.")),
    }
}

pub(super) fn check_fields(activity: &Value) -> Result<(), ConnectorError> {
    if let Some(text) = activity.get("text")
        && !(text.is_string() || text.is_null())
    {
        return Err(ConnectorError::bad_argument(
            "The activity's 'text' must be a string.",
        ));
    }
    // absent and null both mean "no attachments", as on the real service
    if let Some(attachments) = activity.get("attachments").filter(|a| !a.is_null()) {
        let list = attachments
            .as_array()
            .ok_or_else(|| ConnectorError::bad_argument("'attachments' must be an array."))?;
        if list
            .iter()
            .any(|a| !a.get("contentType").is_some_and(Value::is_string))
        {
            return Err(ConnectorError::bad_argument(
                "Each attachment needs a 'contentType' string.",
            ));
        }
    }
    if let Some(entities) = activity.get("entities")
        && !(entities.is_array() || entities.is_null())
    {
        return Err(ConnectorError::bad_argument("'entities' must be an array."));
    }
    Ok(())
}

/// Posts a bot's activity into a conversation and records it as a message: one world lock,
/// in which the call is admitted, the message kept and the transcript told.
pub fn post_activity(
    state: &AppState,
    headers: &HeaderMap,
    conversation_id: &str,
    reply_to: Option<&str>,
    body: &[u8],
) -> Result<Response, ConnectorError> {
    let caller = authenticate(state, headers)?;
    let activity = object_body(body)?;
    activity_type(&activity)?;
    check_fields(&activity)?;
    let (id, without_id) = state.mutate(|world| -> Result<_, ConnectorError> {
        let (tenant_id, conversation, bot) =
            resolve_for_bot(state, world, caller, conversation_id, Operation::Send)?;
        let now = world.now();
        let id = world.next_message_id();
        let without_id = world.behaviour.send_accepted_without_id;
        let tenant = world
            .tenant_mut(tenant_id)
            .ok_or(ConversationError::ConversationNotFound(
                conversation_id.into(),
            ))?;
        let stored = tenant.post_bot_activity(BotPost {
            bot,
            conversation: &conversation,
            addressed_as: conversation_id,
            id: &id,
            activity,
            reply_to,
            service_url: state.service_url(),
            now,
        })?;
        state.delivery.record_from_bot(stored);
        Ok((id, without_id))
    })?;
    if without_id {
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

/// Runs `act` on a conversation the calling bot may act in, once the call was admitted, under
/// one world lock; `act` gets the tenant, the conversation, the bot and the time.
fn in_bot_conversation<R>(
    state: &AppState,
    caller: Option<uuid::Uuid>,
    conversation_id: &str,
    act: impl FnOnce(
        &mut crate::tenant::Tenant,
        &crate::tenant::Conversation,
        uuid::Uuid,
        chrono::DateTime<chrono::Utc>,
    ) -> Result<R, ConnectorError>,
) -> Result<R, ConnectorError> {
    state.mutate(|world| {
        let now = world.now();
        let (tenant_id, conversation, bot) =
            resolve_for_bot(state, world, caller, conversation_id, Operation::Send)?;
        let tenant = world
            .tenant_mut(tenant_id)
            .ok_or(ConversationError::ConversationNotFound(
                conversation_id.into(),
            ))?;
        act(tenant, &conversation, bot, now)
    })
}

pub async fn update_activity(
    State(state): State<AppState>,
    Path((conversation_id, activity_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ConnectorError> {
    let caller = authenticate(&state, &headers)?;
    let activity = object_body(&body)?;
    check_fields(&activity)?;
    in_bot_conversation(
        &state,
        caller,
        &conversation_id,
        |tenant, conversation, bot, now| {
            let updated = tenant.update_message(conversation, bot, &activity_id, activity, now)?;
            let mut update = updated.value();
            update["type"] = json!("messageUpdate");
            state.delivery.record_from_bot(update.into());
            Ok(())
        },
    )?;
    Ok(Json(json!({ "id": activity_id })))
}

/// Deletes a bot's message; answers 200, as SDKs treat 204 as an error.
pub async fn delete_activity(
    State(state): State<AppState>,
    Path((conversation_id, activity_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ConnectorError> {
    let caller = authenticate(&state, &headers)?;
    in_bot_conversation(
        &state,
        caller,
        &conversation_id,
        |tenant, conversation, bot, now| {
            tenant.delete_message(conversation, bot, &activity_id, now)?;
            let recorded_id = tenant.connector_id(conversation, &conversation_id);
            state.delivery.record_from_bot(json!({"type": "messageDelete", "id": activity_id, "from": {"id": crate::ids::bot_mri(bot)}, "conversation": {"id": recorded_id}, "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}).into());
            Ok(())
        },
    )?;
    Ok(StatusCode::OK)
}
