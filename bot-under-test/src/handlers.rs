//! Activity routing: what the bot does with each activity Teams sends to `/api/messages`.
//!
//! - `installationUpdate` (`add`/`remove`) and `conversationUpdate` (bot in `membersAdded` /
//!   `membersRemoved`) install or uninstall, personal or team scope (told apart by
//!   `channelData.team`), storing or removing conversation references and welcoming once.
//! - `conversationUpdate` with `teamMemberAdded` and users in `membersAdded` welcomes new
//!   members in the channel and 1:1.
//! - `message` refreshes the reference, caches mentioned users, and runs `help`/`stop`/`start`.
//! - Any other type is acknowledged and ignored.

use serde_json::Value;

use crate::activity::{Activity, ActivityScope, ChannelAccount, channel_root};
use crate::cards;
use crate::state::BotState;
use crate::store::{
    ConversationReference, Scope, StoreError, Team, User, UserSighting, UserStatus,
};

/// A failure that is ours, not the sender's (answered with 500).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an activity cannot be handled (answered with 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct BadActivity(pub String);

/// Handles one inbound activity. Errors from Teams while replying are logged, not returned:
/// the activity itself was fine.
pub async fn handle_activity(state: &BotState, activity: &Activity) -> Result<(), HandlerError> {
    match activity.kind.as_str() {
        "message" => on_message(state, activity).await,
        "conversationUpdate" => on_conversation_update(state, activity).await,
        "installationUpdate" => on_installation_update(state, activity).await,
        other => {
            tracing::debug!(
                kind = other,
                "ignoring an activity type the bot does not handle"
            );
            Ok(())
        }
    }
}

/// Checks what the handled activity types need before anything is stored.
pub fn check_activity(activity: &Activity) -> Result<(), BadActivity> {
    if activity.kind.is_empty() {
        return Err(BadActivity("activity has no type".to_owned()));
    }
    if matches!(
        activity.kind.as_str(),
        "message" | "conversationUpdate" | "installationUpdate"
    ) {
        let service_url = activity.service_url.as_deref().unwrap_or_default();
        if url::Url::parse(service_url).is_err() {
            return Err(BadActivity("activity has no valid serviceUrl".to_owned()));
        }
        if activity.conversation_id().is_none() {
            return Err(BadActivity("activity has no conversation.id".to_owned()));
        }
    }
    Ok(())
}

fn service_url(activity: &Activity) -> String {
    activity.service_url.clone().unwrap_or_default()
}

fn is_bot(state: &BotState, activity: &Activity, account: &ChannelAccount) -> bool {
    let recipient = activity.recipient.as_ref().map(|r| r.id.as_str());
    account.id == state.bot_id() || Some(account.id.as_str()) == recipient
}

fn sighting(activity: &Activity, account: &ChannelAccount) -> UserSighting {
    UserSighting {
        aad_object_id: account.aad_object_id.clone().filter(|s| !s.is_empty()),
        teams_user_id: Some(account.id.clone()).filter(|s| !s.is_empty()),
        upn: None,
        name: account.name.clone().filter(|s| !s.is_empty()),
        tenant_id: activity.tenant_id(),
        service_url: activity.service_url.clone(),
    }
}

fn reference(
    state: &BotState,
    activity: &Activity,
    conversation_id: &str,
    scope: Scope,
    user_key: Option<i64>,
) -> ConversationReference {
    ConversationReference {
        conversation_id: conversation_id.to_owned(),
        scope,
        user_key,
        team_id: activity.team().map(|t| t.id.clone()),
        tenant_id: activity.tenant_id(),
        service_url: service_url(activity),
        channel_id: activity
            .channel_id
            .clone()
            .unwrap_or_else(|| "msteams".to_owned()),
        bot_id: activity
            .recipient
            .as_ref()
            .map(|r| r.id.clone())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| state.bot_id()),
        bot_name: activity.recipient.as_ref().and_then(|r| r.name.clone()),
    }
}

/// The user in a personal conversation: the sender, or the non-bot member added or removed.
fn personal_user<'a>(state: &BotState, activity: &'a Activity) -> Option<&'a ChannelAccount> {
    activity
        .from
        .as_ref()
        .filter(|f| f.id.starts_with("29:") || (!f.id.is_empty() && !is_bot(state, activity, f)))
        .or_else(|| {
            activity
                .members_added()
                .iter()
                .chain(activity.members_removed())
                .find(|m| !m.id.is_empty() && !is_bot(state, activity, m))
        })
}

async fn on_conversation_update(state: &BotState, activity: &Activity) -> Result<(), HandlerError> {
    let bot_added = activity
        .members_added()
        .iter()
        .any(|m| is_bot(state, activity, m));
    let bot_removed = activity
        .members_removed()
        .iter()
        .any(|m| is_bot(state, activity, m));
    match activity.scope() {
        ActivityScope::Personal => {
            if bot_added {
                on_personal_install(state, activity).await?;
            } else if bot_removed {
                on_personal_uninstall(state, activity)?;
            }
        }
        ActivityScope::Team | ActivityScope::GroupChat => {
            if bot_added {
                on_team_install(state, activity).await?;
            }
            if bot_removed {
                on_team_uninstall(state, activity)?;
                return Ok(());
            }
            if let Some(team) = activity.team() {
                for member in activity.members_added() {
                    if !is_bot(state, activity, member) && !member.id.is_empty() {
                        on_team_member_added(state, activity, member).await?;
                    }
                }
                for member in activity.members_removed() {
                    if !is_bot(state, activity, member)
                        && let Some(user) = state.store.find_user(&member.id)?
                    {
                        state.store.remove_team_member(&team.id, user.user_key)?;
                    }
                }
            }
        }
    }
    Ok(())
}

async fn on_installation_update(state: &BotState, activity: &Activity) -> Result<(), HandlerError> {
    let action = activity.action.as_deref().unwrap_or_default();
    let team_scope = activity.scope() != ActivityScope::Personal;
    match (action, team_scope) {
        ("add" | "add-upgrade", false) => on_personal_install(state, activity).await,
        ("add" | "add-upgrade", true) => on_team_install(state, activity).await,
        ("remove", false) => on_personal_uninstall(state, activity),
        ("remove", true) => on_team_uninstall(state, activity),
        _ => Ok(()),
    }
}

/// Stores the personal conversation reference and welcomes the user once.
async fn on_personal_install(state: &BotState, activity: &Activity) -> Result<(), HandlerError> {
    let Some(account) = personal_user(state, activity) else {
        tracing::debug!("personal install without a user; nothing to store");
        return Ok(());
    };
    let user = state.store.upsert_user(&sighting(activity, account))?;
    state.store.set_status(user.user_key, UserStatus::Active)?;
    let conversation_id = activity.conversation_id().unwrap_or_default();
    let reference = reference(
        state,
        activity,
        conversation_id,
        Scope::Personal,
        Some(user.user_key),
    );
    state.store.save_reference(&reference)?;
    send_personal_welcome(state, &user, &reference).await?;
    Ok(())
}

/// Sends the install welcome through `reference` unless the user was already welcomed.
pub(crate) async fn send_personal_welcome(
    state: &BotState,
    user: &User,
    reference: &ConversationReference,
) -> Result<Option<String>, HandlerError> {
    if !state.store.claim_welcome(user.user_key)? {
        return Ok(None);
    }
    let welcome = cards::personal_welcome(&state.config.bot_name);
    match state.send_to_reference(reference, welcome).await {
        Ok(id) => Ok(Some(id)),
        Err(error) => {
            state.store.release_welcome(user.user_key)?;
            state.delivery_failed(user, Some(reference.conversation_id.clone()), error);
            Ok(None)
        }
    }
}

fn on_personal_uninstall(state: &BotState, activity: &Activity) -> Result<(), HandlerError> {
    if let Some(conversation_id) = activity.conversation_id() {
        state.store.remove_reference(conversation_id)?;
    }
    let Some(account) = personal_user(state, activity) else {
        return Ok(());
    };
    let user = state
        .store
        .find_user(&account.id)?
        .or(match account.aad_object_id.as_deref() {
            Some(aad) => state.store.find_user(aad)?,
            None => None,
        });
    if let Some(user) = user {
        state.store.record_uninstall(user.user_key)?;
    }
    Ok(())
}

/// The bot was added to a team (or group chat): store the channel, introduce the bot once, and
/// cache the roster so every member can be reached later.
async fn on_team_install(state: &BotState, activity: &Activity) -> Result<(), HandlerError> {
    let conversation_id = channel_root(activity.conversation_id().unwrap_or_default()).to_owned();
    let scope = if activity.team().is_some() {
        Scope::Channel
    } else {
        Scope::GroupChat
    };
    let reference = reference(state, activity, &conversation_id, scope, None);
    state.store.save_reference(&reference)?;
    let Some(team_info) = activity.team() else {
        return Ok(());
    };
    let team = Team {
        team_id: team_info.id.clone(),
        name: team_info.name.clone(),
        aad_group_id: team_info.aad_group_id.clone(),
        tenant_id: activity.tenant_id(),
        service_url: service_url(activity),
    };
    state.store.upsert_team(&team)?;
    if state.store.claim_team_welcome(&team.team_id)? {
        let card = cards::team_welcome(&state.config.bot_name, team.name.as_deref());
        if let Err(error) = state.send_to_reference(&reference, card).await {
            tracing::warn!(%error, team = %team.team_id, "team welcome not delivered");
            state.store.release_team_welcome(&team.team_id)?;
        }
    }
    cache_roster(state, activity, &team).await?;
    Ok(())
}

/// Fetches the team's members page by page and caches them.
async fn cache_roster(
    state: &BotState,
    activity: &Activity,
    team: &Team,
) -> Result<(), HandlerError> {
    let members = match state
        .connector
        .all_members(
            &team.service_url,
            &team.team_id,
            state.config.roster_page_size,
        )
        .await
    {
        Ok(members) => members,
        Err(error) => {
            tracing::warn!(%error, team = %team.team_id, "could not fetch the team roster");
            return Ok(());
        }
    };
    for member in members {
        if member.id.is_empty() || member.id.starts_with("28:") {
            continue;
        }
        let user = state.store.upsert_user(&UserSighting {
            aad_object_id: member.aad_id(),
            teams_user_id: Some(member.id.clone()),
            upn: member.user_principal_name.clone(),
            name: member.name.clone(),
            tenant_id: member.tenant_id.clone().or_else(|| activity.tenant_id()),
            service_url: Some(team.service_url.clone()),
        })?;
        state.store.add_team_member(&team.team_id, user.user_key)?;
    }
    Ok(())
}

fn on_team_uninstall(state: &BotState, activity: &Activity) -> Result<(), HandlerError> {
    if let Some(team) = activity.team() {
        state.store.remove_team(&team.id)?;
    }
    if let Some(conversation_id) = activity.conversation_id() {
        state
            .store
            .remove_reference(channel_root(conversation_id))?;
    }
    Ok(())
}

/// A new member joined a team the bot is in: welcome them by name in the channel, and 1:1 with
/// the new-member guide.
async fn on_team_member_added(
    state: &BotState,
    activity: &Activity,
    member: &ChannelAccount,
) -> Result<(), HandlerError> {
    let Some(team) = activity.team() else {
        return Ok(());
    };
    let mut seen = sighting(activity, member);
    if seen.name.is_none() || seen.aad_object_id.is_none() {
        // membersAdded often carries only the id: ask the roster for the rest.
        match state
            .connector
            .get_member(&service_url(activity), &team.id, &member.id)
            .await
        {
            Ok(account) => {
                seen.name = seen.name.or(account.name.clone());
                seen.aad_object_id = seen.aad_object_id.or(account.aad_id());
                seen.upn = account.user_principal_name.clone();
            }
            Err(error) => tracing::debug!(%error, "new member's details unavailable"),
        }
    }
    let user = state.store.upsert_user(&seen)?;
    if !state.store.claim_member_welcome(&team.id, user.user_key)? {
        return Ok(());
    }
    let name = user.name.clone().unwrap_or_else(|| "new member".to_owned());
    let channel_id = channel_root(activity.conversation_id().unwrap_or(&team.id)).to_owned();
    let channel = reference(state, activity, &channel_id, Scope::Channel, None);
    let card =
        cards::new_member_channel_welcome(&state.config.bot_name, &name, team.name.as_deref());
    if let Err(error) = state.send_to_reference(&channel, card).await {
        tracing::warn!(%error, "channel welcome for a new member not delivered");
    }
    let personal = cards::new_member_personal_welcome(
        &state.config.bot_name,
        &name,
        team.name.as_deref(),
        &state.config.new_member_guide_url,
    );
    let delivery = state.deliver_to_user(&user, personal, true).await;
    tracing::debug!(user = %user.display_id(), outcome = ?delivery.outcome, "new member welcomed 1:1");
    Ok(())
}

async fn on_message(state: &BotState, activity: &Activity) -> Result<(), HandlerError> {
    let conversation_id = activity.conversation_id().unwrap_or_default().to_owned();
    let sender = activity
        .from
        .as_ref()
        .filter(|f| !f.id.is_empty() && !is_bot(state, activity, f));
    let user = match sender {
        Some(from) => Some(state.store.upsert_user(&sighting(activity, from))?),
        None => None,
    };
    match activity.scope() {
        ActivityScope::Personal => {
            if let Some(user) = &user {
                let reference = reference(
                    state,
                    activity,
                    &conversation_id,
                    Scope::Personal,
                    Some(user.user_key),
                );
                state.store.save_reference(&reference)?;
                // Someone writing to the bot has it installed and has not blocked it.
                state.store.set_status(user.user_key, UserStatus::Active)?;
            }
        }
        scope => {
            let root = channel_root(&conversation_id).to_owned();
            let store_scope = if scope == ActivityScope::Team {
                Scope::Channel
            } else {
                Scope::GroupChat
            };
            state
                .store
                .save_reference(&reference(state, activity, &root, store_scope, None))?;
            cache_mentions(state, activity, user.as_ref())?;
        }
    }
    let Some(command) = activity.command() else {
        return Ok(());
    };
    let reply = match command.as_str() {
        "help" => cards::help(&state.config.bot_name, None),
        "stop" => match &user {
            Some(user) => {
                state.store.set_opted_out(user.user_key, true)?;
                cards::text_message(cards::OPTED_OUT_REPLY)
            }
            None => return Ok(()),
        },
        "start" => match &user {
            Some(user) => {
                state.store.set_opted_out(user.user_key, false)?;
                cards::text_message(cards::OPTED_IN_REPLY)
            }
            None => return Ok(()),
        },
        other if activity.scope() == ActivityScope::Personal => {
            cards::help(&state.config.bot_name, Some(other))
        }
        // In channels, the bot only answers its commands.
        _ => return Ok(()),
    };
    reply_to(state, activity, reply).await;
    Ok(())
}

/// Caches users mentioned in a channel message (and the sender) as team members.
fn cache_mentions(
    state: &BotState,
    activity: &Activity,
    sender: Option<&User>,
) -> Result<(), HandlerError> {
    let team = activity.team();
    if let (Some(team), Some(sender)) = (team, sender) {
        state.store.add_team_member(&team.id, sender.user_key)?;
    }
    for mention in activity.mentions() {
        let user = state.store.upsert_user(&UserSighting {
            teams_user_id: Some(mention.id.clone()),
            name: mention.name.clone(),
            tenant_id: activity.tenant_id(),
            service_url: activity.service_url.clone(),
            ..Default::default()
        })?;
        if let Some(team) = team {
            state.store.add_team_member(&team.id, user.user_key)?;
        }
    }
    Ok(())
}

/// Replies in the activity's conversation, threaded to the activity when it has an id.
async fn reply_to(state: &BotState, activity: &Activity, reply: Value) {
    let service_url = service_url(activity);
    let conversation_id = activity.conversation_id().unwrap_or_default();
    let mut reply = state.addressed(reply, conversation_id);
    if let Some(from) = &activity.from {
        reply["recipient"] = serde_json::json!({ "id": from.id, "name": from.name });
    }
    let result = match activity.id.as_deref().filter(|id| !id.is_empty()) {
        Some(activity_id) => {
            reply["replyToId"] = Value::String(activity_id.to_owned());
            state
                .connector
                .reply_to_activity(&service_url, conversation_id, activity_id, &reply)
                .await
        }
        None => {
            state
                .connector
                .send_to_conversation(&service_url, conversation_id, &reply)
                .await
        }
    };
    if let Err(error) = result {
        tracing::warn!(%error, "reply not delivered");
    }
}
