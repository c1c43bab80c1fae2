//! Sending, replying to, updating and deleting activities.

use super::{ConnectorError, authenticate, object_body, resolve_for_bot};
use crate::limits::Operation;
use crate::server::AppState;
use crate::tenant::{Conversation, ConversationError, Participant};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

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

/// Posts a bot's activity into a conversation and records it as a message.
pub fn post_activity(
    state: &AppState,
    headers: &HeaderMap,
    conversation_id: &str,
    reply_to: Option<&str>,
    body: &[u8],
) -> Result<Response, ConnectorError> {
    let caller = authenticate(state, headers)?;
    let activity = object_body(body)?;
    let kind = activity_type(&activity)?;
    check_fields(&activity)?;
    let service_url = state.service_url();
    let stored = {
        let mut world = state.world();
        let (tenant_id, conversation, bot) =
            resolve_for_bot(state, &world, caller, conversation_id, Operation::Send)?;
        let now = world.now();
        let id = world.next_message_id();
        let tenant = world
            .tenant_mut(tenant_id)
            .ok_or(ConversationError::ConversationNotFound(
                conversation_id.into(),
            ))?;
        let stored = bot_activity(
            tenant,
            bot,
            &conversation,
            conversation_id,
            &id,
            activity,
            reply_to,
            &service_url,
            now,
        );
        if kind == "message" {
            let message = tenant.post_message(
                &conversation,
                id.clone(),
                Participant::Bot(bot),
                reply_to,
                stored.clone(),
                now,
            )?;
            // a reply in a channel belongs to its thread
            if let (Conversation::Channel { channel, .. }, Some(root)) =
                (&conversation, &message.reply_to)
            {
                let mut s = stored;
                s["conversation"]["id"] = json!(format!("{channel};messageid={root}"));
                s
            } else {
                stored
            }
        } else {
            stored
        }
    };
    let id = stored["id"].clone();
    state.delivery.record_from_bot(stored);
    if state.world().behaviour.send_accepted_without_id {
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

/// The activity as Teams keeps it: stamped with id, time, the bot as sender, and the conversation.
#[allow(clippy::too_many_arguments)]
pub fn bot_activity(
    tenant: &crate::tenant::Tenant,
    bot: Uuid,
    conversation: &Conversation,
    conversation_id: &str,
    id: &str,
    mut activity: Value,
    reply_to: Option<&str>,
    service_url: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let bot_name = tenant
        .app_of_bot(bot)
        .map(|a| a.display_name.clone())
        .unwrap_or_else(|| "Bot".into());
    let conversation_type = match conversation {
        Conversation::Personal { .. } => "personal",
        Conversation::Channel { .. } => "channel",
    };
    activity["id"] = json!(id);
    activity["timestamp"] = json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    activity["channelId"] = json!("msteams");
    activity["serviceUrl"] = json!(service_url);
    activity["from"] = json!({"id": crate::ids::bot_mri(bot), "name": bot_name});
    // a 1:1 chat keeps its Connector id however it was addressed
    let conversation_id = match conversation {
        Conversation::Personal { chat } => tenant
            .chat(chat)
            .map(|c| c.conversation_id.as_str())
            .unwrap_or(conversation_id),
        Conversation::Channel { .. } => conversation_id,
    };
    let mut conv = json!({"id": conversation_id, "conversationType": conversation_type, "tenantId": tenant.id.to_string()});
    if matches!(conversation, Conversation::Channel { .. }) {
        conv["isGroup"] = json!(true);
    }
    activity["conversation"] = conv;
    if let Some(r) = reply_to {
        activity["replyToId"] = json!(r);
    }
    activity
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
    let updated = {
        let mut world = state.world();
        let now = world.now();
        let (tenant_id, conversation, bot) =
            resolve_for_bot(&state, &world, caller, &conversation_id, Operation::Send)?;
        let tenant = world
            .tenant_mut(tenant_id)
            .ok_or(ConversationError::ConversationNotFound(
                conversation_id.clone(),
            ))?;
        tenant.update_message(&conversation, bot, &activity_id, activity, now)?;
        tenant
            .messages(&conversation)
            .iter()
            .find(|m| m.id == activity_id)
            .map(|m| m.activity.clone())
    };
    if let Some(mut a) = updated {
        a["type"] = json!("messageUpdate");
        state.delivery.record_from_bot(a);
    }
    Ok(Json(json!({ "id": activity_id })))
}

/// Deletes a bot's message; answers 200, as SDKs treat 204 as an error.
pub async fn delete_activity(
    State(state): State<AppState>,
    Path((conversation_id, activity_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ConnectorError> {
    let caller = authenticate(&state, &headers)?;
    let mut world = state.world();
    let now = world.now();
    let (tenant_id, conversation, bot) =
        resolve_for_bot(&state, &world, caller, &conversation_id, Operation::Send)?;
    let tenant = world
        .tenant_mut(tenant_id)
        .ok_or(ConversationError::ConversationNotFound(
            conversation_id.clone(),
        ))?;
    tenant.delete_message(&conversation, bot, &activity_id, now)?;
    // a 1:1 chat keeps its Connector id however it was addressed, as in bot_activity
    let recorded_id = match &conversation {
        Conversation::Personal { chat } => tenant
            .chat(chat)
            .map(|c| c.conversation_id.clone())
            .unwrap_or_else(|| conversation_id.clone()),
        Conversation::Channel { .. } => conversation_id.clone(),
    };
    drop(world);
    state.delivery.record_from_bot(json!({"type": "messageDelete", "id": activity_id, "from": {"id": crate::ids::bot_mri(bot)}, "conversation": {"id": recorded_id}, "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}));
    Ok(StatusCode::OK)
}
