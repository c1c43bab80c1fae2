//! The activities Teams sends a bot for each [`TeamsEvent`]: installation and conversation
//! updates in personal and team scope, and users' messages, in the envelope Teams gives them.

use crate::tenant::{InstallScope, TeamsEvent, Tenant, World};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

pub type Outgoing = (Uuid, Option<String>, Value);

/// The activities Teams sends for `event`, each with its bot and endpoint.
pub fn activities_for(world: &World, service_url: &str, event: &TeamsEvent) -> Vec<Outgoing> {
    let now = world.now();
    match *event {
        TeamsEvent::AppInstalledForUser { tenant, user, catalog_app, conversation_update } => {
            personal(world, service_url, tenant, user, catalog_app, |base, bot| {
                let mut out = vec![with(base.clone(), json!({"type": "installationUpdate", "action": "add"}))];
                if conversation_update {
                    let members = json!([{"id": crate::ids::bot_mri(bot)}, base["from"].clone()]);
                    out.push(with(base, json!({"type": "conversationUpdate", "membersAdded": members})));
                }
                out
            })
        }
        TeamsEvent::AppUninstalledForUser { tenant, user, catalog_app } => {
            personal(world, service_url, tenant, user, catalog_app, |base, _| {
                vec![with(base, json!({"type": "installationUpdate", "action": "remove"}))]
            })
        }
        TeamsEvent::AppUpgradedForUser { tenant, user, catalog_app } => {
            personal(world, service_url, tenant, user, catalog_app, |base, _| {
                vec![with(base, json!({"type": "installationUpdate", "action": "add-upgrade"}))]
            })
        }
        TeamsEvent::AppInstalledForTeam { tenant, team, catalog_app } => {
            team_scope(world, service_url, tenant, team, catalog_app, None, |base, bot| {
                vec![
                    with(base.clone(), json!({"type": "installationUpdate", "action": "add", "channelData": {"source": {"name": "message"}}})),
                    with(base, json!({"type": "conversationUpdate", "membersAdded": [{"id": crate::ids::bot_mri(bot)}], "channelData": {"eventType": "teamMemberAdded"}})),
                ]
            })
        }
        TeamsEvent::AppUninstalledForTeam { tenant, team, catalog_app } => {
            team_scope(world, service_url, tenant, team, catalog_app, None, |base, bot| {
                vec![
                    with(base.clone(), json!({"type": "installationUpdate", "action": "remove"})),
                    with(base, json!({"type": "conversationUpdate", "membersRemoved": [{"id": crate::ids::bot_mri(bot)}], "channelData": {"eventType": "teamMemberRemoved"}})),
                ]
            })
        }
        TeamsEvent::MemberAddedToTeam { tenant, team, user } | TeamsEvent::MemberRemovedFromTeam { tenant, team, user } => {
            let added = matches!(event, TeamsEvent::MemberAddedToTeam { .. });
            let Some(t) = world.tenant(tenant) else { return vec![] };
            let Some(member) = t.user_by_id(user).map(user_account) else { return vec![] };
            let (key, kind) = if added { ("membersAdded", "teamMemberAdded") } else { ("membersRemoved", "teamMemberRemoved") };
            team_apps(t, team)
                .into_iter()
                .flat_map(|app| {
                    team_scope(world, service_url, tenant, team, app, None, |base, _| {
                        vec![with(base, json!({"type": "conversationUpdate", key: [member.clone()], "channelData": {"eventType": kind}}))]
                    })
                })
                .collect()
        }
        TeamsEvent::UserMessage { tenant, ref conversation, ref message, bot } => {
            user_message(world, service_url, tenant, conversation, message, bot).into_iter().collect()
        }
    }
    .into_iter()
    .map(|(bot, endpoint, mut activity)| {
        stamp(&mut activity, now);
        (bot, endpoint, activity)
    })
    .collect()
}

/// Merges `extra` into `base`, one level deep for objects (so `channelData` keeps the tenant).
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        for (k, v) in e {
            match (b.get_mut(&k), v) {
                (Some(Value::Object(inner)), Value::Object(add)) => inner.extend(add),
                (_, v) => {
                    b.insert(k, v);
                }
            }
        }
    }
    base
}

/// Gives an activity its timestamps, as Teams stamps them (its id comes with its place in the
/// bot's queue, see [`super::Delivery::enqueue`]).
pub fn stamp(activity: &mut Value, now: DateTime<Utc>) {
    activity["timestamp"] = json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let local = now.with_timezone(
        &chrono::FixedOffset::west_opt(7 * 3600)
            .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).expect("zero offset")),
    );
    activity["localTimestamp"] = json!(local.to_rfc3339_opts(chrono::SecondsFormat::Millis, false));
    activity["localTimezone"] = json!("America/Los_Angeles");
}

fn bot_of(tenant: &Tenant, catalog_app: Uuid) -> Option<(Uuid, Option<String>, String)> {
    let app = tenant.catalog().iter().find(|a| a.id == catalog_app)?;
    let bot = app.bot_id?;
    let endpoint = tenant
        .registration(bot)
        .and_then(|r| r.messaging_endpoint.clone());
    Some((bot, endpoint, app.display_name.clone()))
}

/// The envelope every activity shares.
pub fn envelope(
    service_url: &str,
    tenant: Uuid,
    from: Value,
    bot: Uuid,
    bot_name: &str,
    conversation: Value,
) -> Value {
    json!({
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": from,
        "recipient": {"id": crate::ids::bot_mri(bot), "name": bot_name},
        "conversation": conversation,
        "entities": [{"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Web", "timezone": "America/Los_Angeles"}],
        "channelData": {"tenant": {"id": tenant.to_string()}},
        "locale": "en-US",
    })
}

pub fn user_account(user: &crate::tenant::User) -> Value {
    json!({"id": user.mri, "name": user.display_name, "aadObjectId": user.id.to_string()})
}

fn personal(
    world: &World,
    service_url: &str,
    tenant_id: Uuid,
    user: Uuid,
    catalog_app: Uuid,
    build: impl FnOnce(Value, Uuid) -> Vec<Value>,
) -> Vec<Outgoing> {
    let Some(tenant) = world.tenant(tenant_id) else {
        return vec![];
    };
    let (Some((bot, endpoint, bot_name)), Some(user)) =
        (bot_of(tenant, catalog_app), tenant.user_by_id(user))
    else {
        return vec![];
    };
    let Some(chat) = tenant.personal_chat(user.id, bot) else {
        return vec![];
    };
    let conversation = json!({"conversationType": "personal", "tenantId": tenant_id.to_string(), "id": chat.conversation_id});
    let base = envelope(
        service_url,
        tenant_id,
        user_account(user),
        bot,
        &bot_name,
        conversation,
    );
    build(base, bot)
        .into_iter()
        .map(|a| (bot, endpoint.clone(), a))
        .collect()
}

/// A user's message as the bot receives it: in its 1:1 chat, or a channel thread with mentions.
fn user_message(
    world: &World,
    service_url: &str,
    tenant_id: Uuid,
    conversation_id: &str,
    message_id: &str,
    bot: Uuid,
) -> Option<Outgoing> {
    let tenant = world.tenant(tenant_id)?;
    let app = tenant.app_of_bot(bot)?;
    let endpoint = tenant
        .registration(bot)
        .and_then(|r| r.messaging_endpoint.clone());
    let conversation = tenant.conversation(conversation_id)?;
    let message = tenant
        .messages(&conversation)
        .iter()
        .find(|m| m.id == message_id)?;
    let crate::tenant::Participant::User(sender) = message.from else {
        return None;
    };
    let from = user_account(tenant.user_by_id(sender)?);
    let base = match &conversation {
        crate::tenant::Conversation::Personal { chat } => {
            let chat = tenant.chat(chat)?;
            let conv = json!({"conversationType": "personal", "tenantId": tenant_id.to_string(), "id": chat.conversation_id});
            envelope(service_url, tenant_id, from, bot, &app.display_name, conv)
        }
        crate::tenant::Conversation::Channel { team, channel, .. } => {
            let team = tenant.teams().iter().find(|t| t.id == *team)?;
            let conv = json!({"isGroup": true, "conversationType": "channel", "tenantId": tenant_id.to_string(), "id": conversation_id});
            with(
                envelope(service_url, tenant_id, from, bot, &app.display_name, conv),
                json!({"channelData": {
                    "teamsChannelId": channel,
                    "teamsTeamId": team.thread_id,
                    "channel": {"id": channel},
                    "team": {"id": team.thread_id, "name": team.display_name, "aadGroupId": team.id.to_string()},
                }}),
            )
        }
    };
    let mut activity = with(
        base,
        json!({"type": "message", "id": message.id, "textFormat": "plain"}),
    );
    let written = message.activity.value();
    for key in ["text", "textFormat", "attachments"] {
        if let Some(v) = written.get(key) {
            activity[key] = v.clone();
        }
    }
    if let Some(Value::Array(extra)) = written.get("entities")
        && let Some(Value::Array(entities)) = activity.get_mut("entities")
    {
        entities.extend(extra.iter().cloned());
    }
    Some((bot, endpoint, activity))
}

/// Team-scope activities: the conversation is the team's General channel.
pub fn team_scope(
    world: &World,
    service_url: &str,
    tenant_id: Uuid,
    team_id: Uuid,
    catalog_app: Uuid,
    from_user: Option<Uuid>,
    build: impl FnOnce(Value, Uuid) -> Vec<Value>,
) -> Vec<Outgoing> {
    let Some(tenant) = world.tenant(tenant_id) else {
        return vec![];
    };
    let (Some((bot, endpoint, bot_name)), Some(team)) = (
        bot_of(tenant, catalog_app),
        tenant.teams().iter().find(|t| t.id == team_id),
    ) else {
        return vec![];
    };
    let from = from_user
        .or_else(|| {
            team.members
                .iter()
                .find(|m| m.owner)
                .or(team.members.first())
                .map(|m| m.user)
        })
        .and_then(|u| tenant.user_by_id(u))
        .map(user_account)
        .unwrap_or_else(|| json!({"id": "29:teams-admin", "name": "Teams administrator"}));
    let conversation = json!({"isGroup": true, "conversationType": "channel", "tenantId": tenant_id.to_string(), "id": team.thread_id, "name": team.display_name});
    let base = with(
        envelope(service_url, tenant_id, from, bot, &bot_name, conversation),
        json!({"channelData": {
            "settings": {"selectedChannel": {"id": team.thread_id}},
            "channel": {"id": team.thread_id},
            "team": {"aadGroupId": team.id.to_string(), "name": team.display_name, "id": team.thread_id},
        }}),
    );
    build(base, bot)
        .into_iter()
        .map(|a| (bot, endpoint.clone(), a))
        .collect()
}

/// The bots installed in a team, for team events (a member joined, a message mentions a bot).
pub fn team_apps(tenant: &Tenant, team: Uuid) -> Vec<Uuid> {
    tenant
        .installations_in_scope(InstallScope::Team(team))
        .map(|i| i.catalog_app)
        .collect()
}
