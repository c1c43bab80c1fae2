//! Rosters (`members`, `pagedmembers`, one member) and team details and channels.

use super::{ConnectorError, acting_bot, authenticate, channel_account, resolve_for_bot};
use crate::limits::Operation;
use crate::state::AppState;
use crate::tenant::{Conversation, ConversationError, Team};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// The roster of a conversation the bot is in.
fn roster(
    state: &AppState,
    headers: &HeaderMap,
    conversation_id: &str,
) -> Result<Vec<Value>, ConnectorError> {
    let caller = authenticate(state, headers)?;
    state.read(|world| {
        let (tenant_id, conversation, _) =
            resolve_for_bot(state, world, caller, conversation_id, Operation::Roster)?;
        let tenant = world
            .tenant(tenant_id)
            .ok_or(ConversationError::ConversationNotFound(
                conversation_id.into(),
            ))?;
        Ok(tenant
            .roster(&conversation)
            .into_iter()
            .map(|u| channel_account(tenant, u))
            .collect())
    })
}

pub async fn get_conversation_members(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ConnectorError> {
    Ok(Json(Value::Array(roster(&state, &headers, &conversation)?)))
}

pub async fn get_paged_members(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ConnectorError> {
    let mut page_size = 200usize;
    let mut start = 0usize;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k.eq_ignore_ascii_case("pageSize") {
            let n: i64 = v.trim().parse().map_err(|_| {
                ConnectorError::bad_argument(format!("pageSize '{v}' is not a number."))
            })?;
            // Teams clamps the page size to 50–500.
            page_size = n.clamp(50, 500) as usize;
        } else if k.eq_ignore_ascii_case("continuationToken") && !v.is_empty() {
            start = URL_SAFE_NO_PAD
                .decode(v.as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("members:").and_then(|n| n.parse().ok()))
                .ok_or_else(|| {
                    ConnectorError::bad_argument("The continuationToken is not valid.")
                })?;
        }
    }
    let members = roster(&state, &headers, &conversation)?;
    let end = start.saturating_add(page_size).min(members.len());
    let page: Vec<Value> = members[start.min(end)..end].to_vec();
    let mut answer = json!({ "members": page });
    if end < members.len() {
        answer["continuationToken"] = json!(URL_SAFE_NO_PAD.encode(format!("members:{end}")));
    }
    Ok(Json(answer))
}

pub async fn get_conversation_member(
    State(state): State<AppState>,
    Path((conversation, member)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ConnectorError> {
    roster(&state, &headers, &conversation)?
        .into_iter()
        .find(|m| {
            [&m["id"], &m["aadObjectId"], &m["userPrincipalName"]]
                .iter()
                .any(|v| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(&member)))
        })
        .map(Json)
        .ok_or_else(|| ConversationError::MemberNotFound(member).into())
}

/// A team by its thread id (as `channelData.team.id` gives it) or group id, once the bot may
/// read it: `answer` shapes it under the same lock.
fn with_team_for_bot<R>(
    state: &AppState,
    headers: &HeaderMap,
    team: &str,
    answer: impl FnOnce(&Team) -> R,
) -> Result<R, ConnectorError> {
    let caller = authenticate(state, headers)?;
    state.read(|world| {
        for tenant in world.tenants() {
            let Some(t) = tenant
                .teams()
                .iter()
                .find(|t| t.thread_id == team || t.id.to_string().eq_ignore_ascii_case(team))
            else {
                continue;
            };
            let conversation = Conversation::Channel {
                team: t.id,
                channel: t.thread_id.clone(),
                thread: None,
            };
            let bot = acting_bot(tenant, caller, &conversation)?;
            tenant.check_bot_may_post(bot, &conversation)?;
            state.limits.admit_connector(
                state.now(),
                Operation::Roster,
                bot,
                &super::limits_key(&conversation),
            )?;
            return Ok(answer(t));
        }
        Err(ConversationError::ConversationNotFound(team.to_string()).into())
    })
}

pub async fn get_team_details(
    State(state): State<AppState>,
    Path(team): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ConnectorError> {
    with_team_for_bot(&state, &headers, &team, |t| {
        Json(json!({
            "id": t.thread_id,
            "name": t.display_name,
            "aadGroupId": t.id.to_string(),
            "type": "standard",
            "channelCount": t.channels.len(),
            "memberCount": t.members.len(),
        }))
    })
}

pub async fn get_team_channels(
    State(state): State<AppState>,
    Path(team): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ConnectorError> {
    with_team_for_bot(&state, &headers, &team, |t| {
        let conversations: Vec<Value> = t
            .channels
            .iter()
            .map(|c| json!({"id": c.id, "name": if c.general { Value::Null } else { json!(c.display_name) }}))
            .collect();
        Json(json!({ "conversations": conversations }))
    })
}
