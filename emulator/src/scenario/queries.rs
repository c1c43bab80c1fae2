//! What the scenario module asks of the emulated world, as named queries. It is the one place
//! that reads `World` and `Tenant` themselves, so a change to `tenant` is followed here alone;
//! callers only read the fields of what a query hands back (a user's id, a chat's id, …).
//!
//! The queries take the tenant (or world) they read and run inside [`read_tenant`] (or
//! [`AppState::read`]), so the runner holds the world lock only while it reads, never across an
//! `.await`.

use crate::state::AppState;
use crate::tenant::{
    CatalogApp, Channel, Chat, Conversation, Participant, Team, Tenant, User, World,
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use uuid::Uuid;

/// The tenant a scenario runs in: the first of its tenant file.
pub(super) fn scenario_tenant(world: &World) -> &Tenant {
    &world.tenants()[0]
}

/// Answers `query` about the scenario's tenant under the world lock.
pub(super) fn read_tenant<R>(state: &AppState, query: impl FnOnce(&Tenant) -> R) -> R {
    state.read(|world| query(scenario_tenant(world)))
}

/// The app of the bot under test: the first catalog app that has a bot.
pub(super) fn bot_app_id(tenant: &Tenant) -> Option<Uuid> {
    tenant.catalog().iter().find_map(|a| a.bot_id)
}

/// The catalog entry of a bot's app.
pub(super) fn catalog_app(tenant: &Tenant, bot: Uuid) -> Option<&CatalogApp> {
    tenant.app_of_bot(bot)
}

/// The manifest id of a bot's app, in whichever emulated tenant publishes it ("" if none does).
pub(super) fn manifest_id(world: &World, bot: Uuid) -> String {
    world
        .tenants()
        .iter()
        .find_map(|t| t.app_of_bot(bot))
        .map(|a| a.external_id.to_string())
        .unwrap_or_default()
}

/// The client secret of an app's registration.
pub(super) fn app_secret(tenant: &Tenant, app: Uuid) -> Option<&str> {
    tenant.registration(app).map(|r| r.client_secret.as_str())
}

/// A Teams administrator's sign-in (UPN, password), for delegated Graph calls.
pub(super) fn administrator(tenant: &Tenant) -> Option<(String, String)> {
    tenant
        .users()
        .iter()
        .find(|u| u.admin)
        .map(|u| (u.user_principal_name.clone(), u.password.clone()))
}

/// Points the bot's registration at where the bot under test listens: the one change the
/// runner makes to the world other than through the emulator's routes.
pub(super) fn set_messaging_endpoint(state: &AppState, app: Uuid, endpoint: &str) {
    state.mutate(|world| world.set_messaging_endpoint(app, endpoint));
}

/// A user by key, id or UPN.
pub(super) fn user<'a>(tenant: &'a Tenant, handle: &str) -> Result<&'a User, String> {
    tenant.user_by_handle(handle).map_err(|e| e.to_string())
}

/// A team by key, id or name.
pub(super) fn team<'a>(tenant: &'a Tenant, handle: &str) -> Result<&'a Team, String> {
    tenant.team_by_handle(handle).map_err(|e| e.to_string())
}

/// The users' keys, for messages that name what a scenario could have meant.
pub(super) fn user_keys(tenant: &Tenant) -> Vec<&str> {
    tenant.users().iter().map(|u| u.key.as_str()).collect()
}

/// The teams' keys, likewise.
pub(super) fn team_keys(tenant: &Tenant) -> Vec<&str> {
    tenant.teams().iter().map(|t| t.key.as_str()).collect()
}

/// A user's 1:1 chat with a bot, once an install has made it.
pub(super) fn chat_with_bot(tenant: &Tenant, user: Uuid, bot: Uuid) -> Option<&Chat> {
    tenant
        .chats()
        .iter()
        .find(|c| c.user == user && c.bot == bot)
}

/// A team's channel by id or name (any case); General when none is named.
pub(super) fn channel<'a>(team: &'a Team, name: Option<&str>) -> Option<&'a Channel> {
    match name {
        None => team.channels.iter().find(|c| c.general),
        Some(c) => team
            .channels
            .iter()
            .find(|x| x.id == c || x.display_name.eq_ignore_ascii_case(c)),
    }
}

/// How many messages each chat and channel holds, by its id: where a window of expectations begins.
pub(super) fn message_counts(tenant: &Tenant) -> HashMap<String, usize> {
    tenant
        .chats()
        .iter()
        .map(|c| (c.id.clone(), c.messages.len()))
        .chain(tenant.teams().iter().flat_map(|team| {
            team.channels
                .iter()
                .map(|c| (c.id.clone(), c.messages.len()))
        }))
        .collect()
}

/// What `bot` posted in a conversation and has not deleted, oldest first, after the
/// conversation's first `since` messages (a mark of [`message_counts`]).
pub(super) fn bot_activities(
    tenant: &Tenant,
    conversation: &Conversation,
    bot: Uuid,
    since: usize,
) -> Vec<Value> {
    tenant
        .messages(conversation)
        .iter()
        .skip(since)
        .filter(|m| m.deleted.is_none() && matches!(m.from, Participant::Bot(b) if b == bot))
        .map(|m| m.activity.value())
        .collect()
}

/// The values `${users.KEY.…}`, `${teams.KEY.…}` and `${tenant.…}` read.
pub(super) fn directory(tenant: &Tenant) -> Value {
    let users: Map<String, Value> = tenant
        .users()
        .iter()
        .map(|u| (u.key.clone(), json!({"id": u.id.to_string(), "upn": u.user_principal_name, "name": u.display_name, "mri": u.mri})))
        .collect();
    let teams: Map<String, Value> = tenant
        .teams()
        .iter()
        .map(|team| (team.key.clone(), json!({"id": team.id.to_string(), "name": team.display_name, "thread_id": team.thread_id, "general": team.thread_id})))
        .collect();
    json!({
        "users": users,
        "teams": teams,
        "tenant": {"id": tenant.id.to_string(), "name": tenant.display_name},
    })
}
