//! The one owner of state: tenants, their users, teams and channels, the app catalog, app
//! registrations, installations, chats and messages, and the rules that govern them (who may
//! install what, when a chat exists, what an install tells the bot).
//!
//! Nothing else mutates state. Routes parse a request, call a method here with the [`Caller`]
//! from the token, and shape the answer; the [`TeamsEvent`]s a change returns are what
//! `delivery` turns into activities for the bot.

pub mod conversations;
mod error;
mod index;
mod installations;
pub mod permissions;
mod stored;
mod user_actions;

pub use conversations::{BotPost, Conversation, ConversationError};
pub use error::TenantError;
pub use installations::{ScopeRef, check_reach};
pub use permissions::{Caller, Permission, Reach};
pub use stored::StoredActivity;

use crate::clock::Clock;
use crate::ids;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use uuid::Uuid;

/// Every emulated tenant, and the switches that pick among Teams' observed behaviours.
#[derive(Debug)]
pub struct World {
    tenants: Vec<Tenant>,
    pub behaviour: Behaviour,
    pub clock: Clock,
    last_message_id: i64,
}

/// Where real Teams is inconsistent, the emulator lets a test pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Behaviour {
    /// The personal `conversationUpdate` comes only on the first install ever (older Teams).
    pub conversation_update_first_install_only: bool,
    /// The personal `conversationUpdate` never comes (as users report after Graph installs).
    pub conversation_update_never: bool,
    /// Sends answer 202 with an empty body, as Teams sometimes does, instead of 201 `{"id"}`.
    pub send_accepted_without_id: bool,
}

/// A tenant: its directory, teams, catalog and registrations (as configured), and what happened
/// in it (installations, chats). Its collections are changed only by its own rules; everyone
/// else reads them.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: Uuid,
    pub display_name: String,
    pub domain: String,
    users: Vec<User>,
    teams: Vec<Team>,
    registrations: Vec<AppRegistration>,
    catalog: Vec<CatalogApp>,
    installations: Vec<Installation>,
    chats: Vec<Chat>,
    /// (scope id, catalog app) pairs that were ever installed: Teams remembers a first install.
    ever_installed: BTreeSet<(Uuid, Uuid)>,
    index: index::Index,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: Uuid,
    /// The short name scenarios use (`megan`), unique in the tenant.
    pub key: String,
    pub user_principal_name: String,
    pub display_name: String,
    pub given_name: String,
    pub surname: String,
    pub mail: String,
    pub job_title: Option<String>,
    pub password: String,
    /// A Teams administrator: may install apps for other users with a delegated token.
    pub admin: bool,
    /// The user's Bot Framework id (`29:…`).
    pub mri: String,
    /// The user blocked the bot: Connector sends answer 403 `ConversationBlockedByUser`.
    pub blocked_bots: BTreeSet<Uuid>,
}

#[derive(Clone, Debug)]
pub struct Team {
    /// The team's group id (`aadGroupId`), which Graph uses as the team id.
    pub id: Uuid,
    pub key: String,
    pub display_name: String,
    pub description: String,
    /// The team's thread id, which is also its General channel's id.
    pub thread_id: String,
    pub channels: Vec<Channel>,
    pub members: Vec<TeamMember>,
}

#[derive(Clone, Debug)]
pub struct TeamMember {
    pub user: Uuid,
    pub owner: bool,
}

#[derive(Clone, Debug)]
pub struct Channel {
    pub id: String,
    pub display_name: String,
    pub general: bool,
    pub created: DateTime<Utc>,
    pub messages: Vec<Message>,
}

/// An Entra app registration: a client that can get tokens, and, when it has an endpoint, a bot.
#[derive(Clone, Debug)]
pub struct AppRegistration {
    pub client_id: Uuid,
    pub display_name: String,
    pub client_secret: String,
    /// Application permissions the admin consented to (`roles` in its app-only tokens).
    pub roles: Vec<String>,
    /// The bot's messaging endpoint, where activities are delivered.
    pub messaging_endpoint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistributionMethod {
    Store,
    Organization,
    Sideloaded,
}

impl DistributionMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Organization => "organization",
            Self::Sideloaded => "sideloaded",
        }
    }
}

/// A Teams app in the tenant's catalog.
#[derive(Clone, Debug)]
pub struct CatalogApp {
    /// The catalog id (`teamsApp/id`); differs from the manifest id for org-published apps.
    pub id: Uuid,
    /// The manifest id.
    pub external_id: Uuid,
    pub display_name: String,
    pub short_description: String,
    pub description: String,
    pub distribution_method: DistributionMethod,
    pub version: String,
    pub bot_id: Option<Uuid>,
    /// The manifest's `webApplicationInfo.id`: the app registration allowed to manage it with `…Self…`.
    pub web_application_id: Option<Uuid>,
}

impl CatalogApp {
    pub fn definition_id(&self) -> String {
        ids::app_definition_id(self.id, &self.version)
    }

    /// The Entra app (by `…Self…` permissions) that counts as this Teams app itself.
    pub fn is_managed_by(&self, app_id: Uuid) -> bool {
        self.web_application_id.or(self.bot_id) == Some(app_id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstallScope {
    User(Uuid),
    Team(Uuid),
}

impl InstallScope {
    pub fn scope_id(self) -> Uuid {
        match self {
            Self::User(id) | Self::Team(id) => id,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Installation {
    pub id: String,
    pub scope: InstallScope,
    pub catalog_app: Uuid,
    pub version: String,
    pub installed: DateTime<Utc>,
}

/// A 1:1 chat between a user and a bot. It outlives uninstalls, as in Teams.
#[derive(Clone, Debug)]
pub struct Chat {
    /// Graph's id (`19:…@unq.gbl.spaces`).
    pub id: String,
    /// The Connector's id (`a:…`) for the same chat.
    pub conversation_id: String,
    pub user: Uuid,
    pub bot: Uuid,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub messages: Vec<Message>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Participant {
    Bot(Uuid),
    User(Uuid),
}

/// A message in a chat or channel, kept with the activity it came from.
#[derive(Clone, Debug)]
pub struct Message {
    pub id: String,
    pub from: Participant,
    pub created: DateTime<Utc>,
    pub last_modified: DateTime<Utc>,
    pub deleted: Option<DateTime<Utc>>,
    /// The id of the thread's root message, for channel replies.
    pub reply_to: Option<String>,
    pub activity: StoredActivity,
}

/// What a change tells Teams' clients; `delivery` turns these into activities for bots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TeamsEvent {
    AppInstalledForUser {
        tenant: Uuid,
        user: Uuid,
        catalog_app: Uuid,
        /// Whether the personal `conversationUpdate` comes too (see [`Behaviour`]).
        conversation_update: bool,
    },
    AppUninstalledForUser {
        tenant: Uuid,
        user: Uuid,
        catalog_app: Uuid,
    },
    AppUpgradedForUser {
        tenant: Uuid,
        user: Uuid,
        catalog_app: Uuid,
    },
    AppInstalledForTeam {
        tenant: Uuid,
        team: Uuid,
        catalog_app: Uuid,
    },
    AppUninstalledForTeam {
        tenant: Uuid,
        team: Uuid,
        catalog_app: Uuid,
    },
    MemberAddedToTeam {
        tenant: Uuid,
        team: Uuid,
        user: Uuid,
    },
    MemberRemovedFromTeam {
        tenant: Uuid,
        team: Uuid,
        user: Uuid,
    },
    /// A user's message that `bot` hears: in its 1:1 chat, or a channel message mentioning it.
    UserMessage {
        tenant: Uuid,
        /// The Connector conversation id (a chat, or `{channel};messageid={root}`).
        conversation: String,
        message: String,
        bot: Uuid,
    },
}

impl World {
    pub fn new(tenants: Vec<Tenant>, behaviour: Behaviour, clock: Clock) -> Self {
        Self {
            tenants,
            behaviour,
            clock,
            last_message_id: 0,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    pub fn tenant(&self, id: Uuid) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id == id)
    }

    /// A tenant as a login URL or a person names it: its id or a verified domain.
    pub fn tenant_by_name(&self, name: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| {
            t.id.to_string().eq_ignore_ascii_case(name) || t.domain.eq_ignore_ascii_case(name)
        })
    }

    pub fn tenant_mut(&mut self, id: Uuid) -> Option<&mut Tenant> {
        self.tenants.iter_mut().find(|t| t.id == id)
    }

    /// Points the bot of app registration `client_id` at a new messaging endpoint, in every
    /// tenant that has the registration (as when a developer edits the Azure Bot resource).
    /// Activities queued from then on go there. Returns whether any registration was found.
    pub fn set_messaging_endpoint(&mut self, client_id: Uuid, endpoint: &str) -> bool {
        let mut found = false;
        for registration in self
            .tenants
            .iter_mut()
            .flat_map(|t| t.registrations.iter_mut())
            .filter(|r| r.client_id == client_id)
        {
            registration.messaging_endpoint = Some(endpoint.to_string());
            found = true;
        }
        found
    }

    /// Every app registration's client id.
    pub fn registered_apps(&self) -> std::collections::HashSet<Uuid> {
        self.tenants
            .iter()
            .flat_map(|t| &t.registrations)
            .map(|r| r.client_id)
            .collect()
    }

    /// Every bot's messaging endpoint, by app registration.
    pub fn messaging_endpoints(&self) -> Vec<(Uuid, String)> {
        self.tenants
            .iter()
            .flat_map(|t| &t.registrations)
            .filter_map(|r| Some((r.client_id, r.messaging_endpoint.clone()?)))
            .collect()
    }

    /// The tenant a caller's token was issued in; a token for a tenant that is gone is refused.
    pub fn tenant_of(&self, caller: &Caller) -> Result<&Tenant, TenantError> {
        self.tenant(caller.tenant).ok_or_else(|| {
            TenantError::Forbidden(format!("Tenant '{}' is not emulated.", caller.tenant))
        })
    }

    /// Message ids are millisecond timestamps, as in Teams, made unique within the run.
    pub fn next_message_id(&mut self) -> String {
        let now = self.now().timestamp_millis();
        self.last_message_id = now.max(self.last_message_id + 1);
        self.last_message_id.to_string()
    }

    /// The tenant `id`, or the error for a tenant the emulator does not serve.
    pub fn emulated_tenant_mut(&mut self, id: Uuid) -> Result<&mut Tenant, TenantError> {
        self.tenant_mut(id)
            .ok_or_else(|| TenantError::Forbidden(format!("Tenant '{id}' is not emulated.")))
    }
}

impl Tenant {
    /// A tenant as configured: nothing installed, no chats yet.
    pub fn new(
        id: Uuid,
        display_name: String,
        domain: String,
        users: Vec<User>,
        teams: Vec<Team>,
        registrations: Vec<AppRegistration>,
        catalog: Vec<CatalogApp>,
    ) -> Self {
        Self {
            id,
            display_name,
            domain,
            index: index::Index::of_users(&users),
            users,
            teams,
            registrations,
            catalog,
            installations: vec![],
            chats: vec![],
            ever_installed: BTreeSet::new(),
        }
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    pub fn teams(&self) -> &[Team] {
        &self.teams
    }

    pub fn registrations(&self) -> &[AppRegistration] {
        &self.registrations
    }

    pub fn catalog(&self) -> &[CatalogApp] {
        &self.catalog
    }

    pub fn installations(&self) -> &[Installation] {
        &self.installations
    }

    pub fn chats(&self) -> &[Chat] {
        &self.chats
    }

    /// A user by object id or user principal name (case-insensitive, as Graph matches UPNs).
    pub fn user(&self, id_or_upn: &str) -> Result<&User, TenantError> {
        let found = match Uuid::parse_str(id_or_upn) {
            Ok(id) => self.index.user_by_id(id),
            Err(_) => self.index.user_by_upn(id_or_upn),
        };
        found
            .map(|i| &self.users[i])
            .ok_or_else(|| TenantError::UserNotFound(id_or_upn.to_string()))
    }

    /// A user by scenario key (`megan`), object id, UPN or `29:` id: how the control API names users.
    pub fn user_by_handle(&self, handle: &str) -> Result<&User, TenantError> {
        match self
            .index
            .user_by_key(handle)
            .or_else(|| self.index.user_by_mri(handle))
        {
            Some(i) => Ok(&self.users[i]),
            None => self.user(handle),
        }
    }

    /// A team by key, display name, group id or thread id.
    pub fn team_by_handle(&self, handle: &str) -> Result<&Team, TenantError> {
        self.teams
            .iter()
            .find(|t| {
                t.key.eq_ignore_ascii_case(handle)
                    || t.display_name.eq_ignore_ascii_case(handle)
                    || t.thread_id == handle
            })
            .map(Ok)
            .unwrap_or_else(|| self.team(handle))
    }

    pub fn user_by_id(&self, id: Uuid) -> Option<&User> {
        self.index.user_by_id(id).map(|i| &self.users[i])
    }

    pub fn user_by_mri(&self, mri: &str) -> Option<&User> {
        self.index.user_by_mri(mri).map(|i| &self.users[i])
    }

    pub fn team(&self, id: &str) -> Result<&Team, TenantError> {
        Uuid::parse_str(id)
            .ok()
            .and_then(|id| self.teams.iter().find(|t| t.id == id))
            .ok_or_else(|| TenantError::TeamNotFound(id.to_string()))
    }

    pub fn catalog_app(&self, id: &str) -> Result<&CatalogApp, TenantError> {
        Uuid::parse_str(id)
            .ok()
            .and_then(|id| self.catalog.iter().find(|a| a.id == id))
            .ok_or_else(|| TenantError::AppNotInCatalog(id.to_string()))
    }

    pub fn registration(&self, client_id: Uuid) -> Option<&AppRegistration> {
        self.registrations.iter().find(|r| r.client_id == client_id)
    }

    /// The catalog app whose bot is `bot`.
    pub fn app_of_bot(&self, bot: Uuid) -> Option<&CatalogApp> {
        self.catalog.iter().find(|a| a.bot_id == Some(bot))
    }

    pub fn installation_in_scope(
        &self,
        scope: InstallScope,
        catalog_app: Uuid,
    ) -> Option<&Installation> {
        self.index
            .installation(scope, catalog_app)
            .map(|i| &self.installations[i])
    }

    /// Whether the bot is installed where a user can reach it in personal scope.
    pub fn bot_installed_for_user(&self, bot: Uuid, user: Uuid) -> bool {
        self.app_of_bot(bot).is_some_and(|app| {
            self.installation_in_scope(InstallScope::User(user), app.id)
                .is_some()
        })
    }

    /// The 1:1 chat between the user and the installed app's bot.
    pub fn chat_of_installation(
        &self,
        caller: &Caller,
        user: &str,
        installation_id: &str,
    ) -> Result<&Chat, TenantError> {
        let reach = caller.authorize(&permissions::READ_INSTALLATION_CHAT)?;
        let user = self.user(user)?.id;
        self.check_subject(caller, user)?;
        let installation = self.installation(InstallScope::User(user), installation_id)?;
        let app = self.catalog_app(&installation.catalog_app.to_string())?;
        check_reach(reach, caller, app)?;
        app.bot_id
            .and_then(|bot| self.personal_chat(user, bot))
            .ok_or_else(|| TenantError::ChatNotFound(format!("of installation {installation_id}")))
    }

    /// The chats a user is in.
    pub fn chats_of_user(&self, caller: &Caller, user: &str) -> Result<Vec<&Chat>, TenantError> {
        caller.authorize(&permissions::READ_CHATS)?;
        let user = self.user(user)?.id;
        // With a delegated token Graph lists only the signed-in user's chats, even for an admin.
        if caller.user.is_some_and(|me| me != user) {
            return Err(TenantError::Forbidden(
                "With delegated permissions, only the signed-in user's chats can be listed.".into(),
            ));
        }
        // every chat is a 1:1 chat with the bot of a catalog app
        Ok(self
            .catalog
            .iter()
            .filter_map(|a| a.bot_id)
            .filter_map(|bot| self.personal_chat(user, bot))
            .collect())
    }

    /// The 1:1 chat of `user` and `bot`, once either opened it.
    pub fn personal_chat(&self, user: Uuid, bot: Uuid) -> Option<&Chat> {
        self.chat(&ids::one_on_one_chat_id(bot, user))
    }

    /// The bot of the tenant's first app that has one: the bot a person means when they name none.
    pub fn bot_app(&self) -> Option<&CatalogApp> {
        self.catalog.iter().find(|a| a.bot_id.is_some())
    }

    /// A chat by its Graph id or Connector id.
    pub fn chat(&self, id: &str) -> Option<&Chat> {
        self.index.chat(id).map(|i| &self.chats[i])
    }

    pub fn chat_mut(&mut self, id: &str) -> Option<&mut Chat> {
        self.index.chat(id).map(|i| &mut self.chats[i])
    }

    /// A chat a caller may read: app-only tokens with a chat permission read any; a user reads their own.
    pub fn readable_chat(
        &self,
        caller: &Caller,
        id: &str,
        permission: &Permission,
    ) -> Result<&Chat, TenantError> {
        caller.authorize(permission)?;
        let chat = self
            .chat(id)
            .ok_or_else(|| TenantError::ChatNotFound(id.to_string()))?;
        match caller.user {
            Some(me) if me != chat.user => Err(TenantError::ChatNotFound(id.to_string())),
            _ => Ok(chat),
        }
    }

    /// The catalog apps installed in a chat's scope (the personal app of its bot, while installed).
    pub fn apps_installed_in_chat(&self, chat: &Chat) -> Vec<&CatalogApp> {
        self.catalog
            .iter()
            .filter(|a| a.bot_id == Some(chat.bot))
            .filter(|a| {
                self.installation_in_scope(InstallScope::User(chat.user), a.id)
                    .is_some()
            })
            .collect()
    }

    pub(crate) fn ensure_chat(&mut self, user: Uuid, bot: Uuid, now: DateTime<Utc>) -> &Chat {
        let id = ids::one_on_one_chat_id(bot, user);
        if let Some(i) = self.index.chat(&id) {
            return &self.chats[i];
        }
        let chat = Chat {
            conversation_id: ids::personal_conversation_id(&id),
            id,
            user,
            bot,
            created: now,
            last_updated: now,
            messages: vec![],
        };
        self.index.add_chat(&chat, self.chats.len());
        self.chats.push(chat);
        &self.chats[self.chats.len() - 1]
    }
}
