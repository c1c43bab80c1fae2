//! `POST v3/conversations`: a 1:1 conversation with a user (by `29:` id and tenant), or a new
//! thread in a channel.

use super::{ConnectorError, authenticate, object_body};
use crate::state::AppState;
use crate::tenant::{BotPost, Conversation, ConversationError, World};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// The tenant, from `tenantId`, `tenantID` (Python) or `channelData.tenant.id`.
fn tenant_of(body: &Value) -> Option<&str> {
    body.get("tenantId")
        .or_else(|| body.get("tenantID"))
        .and_then(Value::as_str)
        .or_else(|| {
            body.pointer("/channelData/tenant/id")
                .and_then(Value::as_str)
        })
}

fn bot_of(body: &Value) -> Result<Option<Uuid>, ConnectorError> {
    match body.pointer("/bot/id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => Uuid::parse_str(id.strip_prefix("28:").unwrap_or(id))
            .map(Some)
            .map_err(|_| {
                ConnectorError::bad_argument(format!(
                    "'bot.id' '{id}' is not a bot id (28:{{appId}})."
                ))
            }),
        Some(_) => Err(ConnectorError::bad_argument("'bot.id' must be a string.")),
    }
}

fn resolve_tenant(world: &World, body: &Value, bot: Option<Uuid>) -> Result<Uuid, ConnectorError> {
    if let Some(t) = tenant_of(body) {
        let id = Uuid::parse_str(t).map_err(|_| {
            ConnectorError::bad_argument(format!("The tenant id '{t}' is not a GUID."))
        })?;
        return world.tenant(id).map(|t| t.id).ok_or_else(|| {
            ConnectorError::new(
                StatusCode::FORBIDDEN,
                "TenantNotFound",
                format!("Tenant '{id}' is not emulated."),
            )
        });
    }
    // Without a tenant, Teams cannot route; accept it only where the bot belongs to one tenant.
    let homes: Vec<Uuid> = world
        .tenants()
        .iter()
        .filter(|t| bot.is_none_or(|b| t.registration(b).is_some()))
        .map(|t| t.id)
        .collect();
    match homes.as_slice() {
        [one] => Ok(*one),
        _ => Err(ConnectorError::bad_argument(
            "A tenant is required: set 'tenantId' or 'channelData.tenant.id'.",
        )),
    }
}

pub async fn create_conversation(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ConnectorError> {
    let caller = authenticate(&state, &headers)?;
    let body = object_body(&body)?;
    let claimed = bot_of(&body)?;
    if let (Some(token_bot), Some(claimed)) = (caller, claimed)
        && token_bot != claimed
    {
        return Err(ConnectorError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "'bot.id' is not the bot the token was issued to.",
        ));
    }
    let bot = caller.or(claimed);
    let initial = match body.get("activity") {
        None | Some(Value::Null) => None,
        Some(a) if a.is_object() => {
            // the initial activity is a send like any other
            super::activities::activity_type(a)?;
            super::activities::check_fields(a)?;
            Some(a.clone())
        }
        Some(_) => {
            return Err(ConnectorError::bad_argument(
                "'activity' must be an object.",
            ));
        }
    };
    let is_group = body
        .get("isGroup")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let service_url = state.service_url();
    let answer = state.mutate(|world| -> Result<Value, ConnectorError> {
        let tenant_id = resolve_tenant(world, &body, bot)?;
        let now = world.now();
        let message_id = world.next_message_id();
        let tenant = world
            .tenant_mut(tenant_id)
            .ok_or_else(|| ConnectorError::bad_argument("Unknown tenant."))?;
        if is_group {
            let channel = body
                .pointer("/channelData/channel/id")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ConnectorError::bad_argument(
                        "A channel conversation needs 'channelData.channel.id'.",
                    )
                })?;
            let Some(Conversation::Channel { team, channel, .. }) = tenant.conversation(channel)
            else {
                return Err(ConversationError::ConversationNotFound(channel.to_string()).into());
            };
            let conversation = Conversation::Channel {
                team,
                channel: channel.clone(),
                thread: None,
            };
            let bot = bot
                .or_else(|| tenant.conversation_bot(&conversation))
                .ok_or(ConversationError::BotNotInRoster)?;
            tenant.check_bot_may_post(bot, &conversation)?;
            let activity = initial.ok_or_else(|| {
                ConnectorError::bad_argument("A new channel thread needs an initial 'activity'.")
            })?;
            state.limits.admit_connector(
                now,
                crate::limits::Operation::Send,
                bot,
                &super::limits_key(&conversation),
            )?;
            let thread_id = format!("{channel};messageid={message_id}");
            let stored = tenant.post_bot_activity(BotPost {
                bot,
                conversation: &conversation,
                addressed_as: &thread_id,
                id: &message_id,
                activity,
                reply_to: None,
                service_url,
                now,
            })?;
            state.delivery.record_from_bot(stored);
            Ok(json!({"id": thread_id, "activityId": message_id, "serviceUrl": service_url}))
        } else {
            let members = body
                .get("members")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let [member] = members.as_slice() else {
                return Err(if members.is_empty() {
                    ConnectorError::bad_argument(
                        "A 1:1 conversation needs exactly one member: 'members': [{\"id\": \"29:…\"}].",
                    )
                } else {
                    ConnectorError::new(
                        StatusCode::NOT_IMPLEMENTED,
                        "NotSupportedByEmulator",
                        "Group chats with several members are not emulated.",
                    )
                });
            };
            let member_id = member.get("id").and_then(Value::as_str).unwrap_or_default();
            let aad = member
                .get("aadObjectId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let user = tenant
                .user_by_mri(member_id)
                .or_else(|| {
                    Uuid::parse_str(member_id)
                        .ok()
                        .or(Uuid::parse_str(aad).ok())
                        .and_then(|id| tenant.user_by_id(id))
                })
                .map(|u| u.id)
                .ok_or_else(|| {
                    ConnectorError::new(
                        StatusCode::NOT_FOUND,
                        "MemberNotFoundInConversation",
                        format!("No user '{member_id}' in the tenant."),
                    )
                })?;
            let bot = bot.ok_or_else(|| {
                ConnectorError::bad_argument(
                    "Say which bot is creating the conversation: 'bot': {\"id\": \"28:{appId}\"}.",
                )
            })?;
            // Admitted before the chat exists: a refused create leaves nothing behind.
            let chat_id = crate::ids::one_on_one_chat_id(bot, user);
            state
                .limits
                .admit_connector(now, crate::limits::Operation::Send, bot, &chat_id)?;
            let chat = tenant.open_personal_conversation(bot, user, now)?;
            let (chat_id, conversation_id) = (chat.id.clone(), chat.conversation_id.clone());
            let mut answer = json!({"id": conversation_id, "serviceUrl": service_url});
            if let Some(activity) = initial {
                let conversation = Conversation::Personal { chat: chat_id };
                tenant.check_bot_may_post(bot, &conversation)?;
                let stored = tenant.post_bot_activity(BotPost {
                    bot,
                    conversation: &conversation,
                    addressed_as: &conversation_id,
                    id: &message_id,
                    activity,
                    reply_to: None,
                    service_url,
                    now,
                })?;
                state.delivery.record_from_bot(stored);
                answer["activityId"] = json!(message_id);
            }
            Ok(answer)
        }
    })?;
    Ok((StatusCode::CREATED, Json(answer)))
}
