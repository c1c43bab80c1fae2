//! Chats: `GET /users/{id}/chats` (with `installedApps/any(...)`), `GET /chats/{id}` and
//! `GET /chats/{id}/messages`, plus the `chatMessage` shape shared with channel messages.

use super::odata::EntitySet;
use super::{GraphError, authenticate, collection, collection_of, entity};
use crate::state::AppState;
use crate::tenant::{Chat, Message, Participant, Tenant, permissions};
use axum::Router;
use axum::extract::{OriginalUri, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/{user}/chats", get(list_user_chats))
        .route("/chats/{chat}", get(get_chat))
        .route("/chats/{chat}/messages", get(list_chat_messages))
}

pub const CHATS: EntitySet = EntitySet {
    type_name: "microsoft.graph.chat",
    filters: &[
        "id",
        "chatType",
        "topic",
        "installedApps/any(teamsApp/id)",
        "installedApps/any(teamsApp/externalId)",
        "installedApps/any(teamsAppDefinition/teamsAppId)",
        "members/any(userId)",
    ],
    navigation: &["installedApps", "members"],
    page_size: 50,
};

pub const CHAT_MESSAGES: EntitySet = EntitySet {
    type_name: "microsoft.graph.chatMessage",
    filters: &[
        "id",
        "messageType",
        "from/user/id",
        "from/application/id",
        "replyToId",
    ],
    navigation: &[],
    page_size: 50,
};

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn chat_json(tenant: &Tenant, chat: &Chat) -> Value {
    let installed: Vec<Value> = tenant
        .apps_installed_in_chat(chat)
        .into_iter()
        .map(|app| {
            json!({
                "id": crate::ids::installation_id(&chat.id, app.id),
                "teamsApp": {"id": app.id.to_string(), "externalId": app.external_id.to_string(), "displayName": app.display_name, "distributionMethod": app.distribution_method.as_str()},
                "teamsAppDefinition": {"teamsAppId": app.id.to_string(), "version": app.version},
            })
        })
        .collect();
    let members: Vec<Value> = tenant
        .user_by_id(chat.user)
        .map(|u| {
            json!({
                "@odata.type": "#microsoft.graph.aadUserConversationMember",
                "id": crate::ids::derived_guid("chat-member", &format!("{}/{}", chat.id, u.id)).to_string(),
                "roles": ["owner"],
                "displayName": u.display_name,
                "userId": u.id.to_string(),
                "email": u.mail,
                "tenantId": tenant.id.to_string(),
            })
        })
        .into_iter()
        .collect();
    json!({
        "id": chat.id,
        "topic": null,
        "createdDateTime": timestamp(chat.created),
        "lastUpdatedDateTime": timestamp(chat.last_updated),
        "chatType": "oneOnOne",
        "webUrl": format!("https://teams.microsoft.com/l/chat/{}/0?tenantId={}", chat.id, tenant.id),
        "tenantId": tenant.id.to_string(),
        "onlineMeetingInfo": null,
        "viewpoint": {"isHidden": false, "lastMessageReadDateTime": timestamp(chat.last_updated)},
        "installedApps": installed,
        "members": members,
    })
}

/// A message as Graph's `chatMessage`: the activity's text as the body, its cards as attachments.
pub fn message_json(
    tenant: &Tenant,
    message: &Message,
    chat_id: Option<&str>,
    channel: Option<(&str, &str)>,
) -> Value {
    let from = match message.from {
        Participant::Bot(bot) => {
            let name = tenant
                .app_of_bot(bot)
                .map(|a| a.display_name.clone())
                .unwrap_or_else(|| "Bot".into());
            json!({"application": {"@odata.type": "#microsoft.graph.teamworkApplicationIdentity", "id": bot.to_string(), "displayName": name, "applicationIdentityType": "bot"}, "device": null, "user": null})
        }
        Participant::User(user) => {
            let name = tenant.user_by_id(user).map(|u| u.display_name.clone());
            json!({"application": null, "device": null, "user": {"@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": user.to_string(), "displayName": name, "userIdentityType": "aadUser", "tenantId": tenant.id.to_string()}})
        }
    };
    let activity = &message.activity.value();
    let attachments: Vec<Value> = activity
        .get("attachments")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .enumerate()
                .map(|(i, a)| {
                    let content = a.get("content").map(|c| {
                        if c.is_string() {
                            c.clone()
                        } else {
                            json!(c.to_string())
                        }
                    });
                    json!({
                        "id": format!("{}-{i}", message.id),
                        "contentType": a.get("contentType").cloned().unwrap_or(Value::Null),
                        "contentUrl": a.get("contentUrl").cloned().unwrap_or(Value::Null),
                        "content": content.unwrap_or(Value::Null),
                        "name": a.get("name").cloned().unwrap_or(Value::Null),
                        "thumbnailUrl": a.get("thumbnailUrl").cloned().unwrap_or(Value::Null),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let text = activity
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let html =
        text.contains('<') || activity.get("textFormat").and_then(Value::as_str) == Some("xml");
    let mut content = text.to_string();
    for a in &attachments {
        content.push_str(&format!(
            "<attachment id=\"{}\"></attachment>",
            a["id"].as_str().unwrap_or_default()
        ));
    }
    let content_type = if html || !attachments.is_empty() {
        "html"
    } else {
        "text"
    };
    let deleted = message.deleted.is_some();
    let mentions: Vec<Value> = activity
        .get("entities")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .filter(|e| e.get("type").and_then(Value::as_str) == Some("mention"))
                .enumerate()
                .map(|(i, m)| json!({"id": i, "mentionText": m.get("text").cloned().unwrap_or(Value::Null), "mentioned": m.get("mentioned").cloned().unwrap_or(Value::Null)}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": message.id,
        "replyToId": message.reply_to,
        "etag": message.last_modified.timestamp_millis().to_string(),
        "messageType": "message",
        "createdDateTime": timestamp(message.created),
        "lastModifiedDateTime": timestamp(message.last_modified),
        "lastEditedDateTime": (message.last_modified != message.created && !deleted).then(|| timestamp(message.last_modified)),
        "deletedDateTime": message.deleted.map(timestamp),
        "subject": activity.get("subject").cloned().unwrap_or(Value::Null),
        "summary": activity.get("summary").cloned().unwrap_or(Value::Null),
        "chatId": chat_id,
        "importance": activity.get("importance").cloned().unwrap_or(json!("normal")),
        "locale": "en-us",
        "webUrl": null,
        "channelIdentity": channel.map(|(team, channel)| json!({"teamId": team, "channelId": channel})),
        "policyViolation": null,
        "eventDetail": null,
        "from": from,
        "body": {"contentType": content_type, "content": if deleted { String::new() } else { content }},
        "attachments": if deleted { vec![] } else { attachments },
        "mentions": mentions,
        "reactions": [],
    })
}

async fn list_user_chats(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    super::admit(&state, &caller, crate::limits::Operation::GraphRead, None)?;
    let (items, user_id) = state.read(|world| -> Result<_, GraphError> {
        let tenant = world.tenant_of(&caller)?;
        let items = tenant
            .chats_of_user(&caller, &user)?
            .into_iter()
            .map(|c| chat_json(tenant, c))
            .collect();
        Ok((items, tenant.user(&user)?.id))
    })?;
    collection(
        &state,
        &uri,
        &CHATS,
        &format!("users('{user_id}')/chats"),
        items,
    )
}

async fn get_chat(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(chat): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    super::admit(&state, &caller, crate::limits::Operation::GraphRead, None)?;
    let item = state.read(|world| -> Result<_, GraphError> {
        let tenant = world.tenant_of(&caller)?;
        Ok(chat_json(
            tenant,
            tenant.readable_chat(&caller, &chat, &permissions::READ_CHATS)?,
        ))
    })?;
    entity(&uri, &CHATS, "chats/$entity", item)
}

async fn list_chat_messages(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(chat): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    super::admit(&state, &caller, crate::limits::Operation::GraphRead, None)?;
    state.read(|world| {
        let tenant = world.tenant_of(&caller)?;
        let chat = tenant.readable_chat(&caller, &chat, &permissions::READ_CHAT_MESSAGES)?;
        // Graph lists the newest message first.
        let newest_first: Vec<&crate::tenant::Message> = chat.messages.iter().rev().collect();
        collection_of(
            &state,
            &uri,
            &CHAT_MESSAGES,
            &format!("chats('{}')/messages", chat.id),
            &newest_first,
            |m| message_json(tenant, m, Some(&chat.id), None),
        )
    })
}
