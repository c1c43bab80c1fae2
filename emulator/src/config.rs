//! What the emulator serves: the tenants (users, teams, app registrations, catalog) read from a
//! YAML file, or the embedded default tenant, with the `serve` flags laid over the bot.
//!
//! A config error names the file, the field and the reason, and where the YAML parser knows it,
//! the line and column.

use crate::clock::Clock;
use crate::ids::{self, derived_guid};
use crate::tenant::{
    AppRegistration, Behaviour, CatalogApp, Channel, DistributionMethod, Team, TeamMember, Tenant,
    User, World,
};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use uuid::Uuid;

/// The default tenant's fixed ids, which the reference bot and the docs use as defaults.
pub mod defaults {
    use uuid::{Uuid, uuid};
    pub const TENANT_ID: Uuid = uuid!("e5c3a7d2-4b1f-4e8a-9c6d-2f1b0a9e8d7c");
    pub const BOT_APP_ID: Uuid = uuid!("b0f1e2d3-c4b5-4a69-8788-99aabbccddee");
    pub const BOT_APP_SECRET: &str = "emulator-bot-secret";
    pub const MANIFEST_ID: Uuid = uuid!("d6a1c2b3-e4f5-4a6b-8c7d-0e1f2a3b4c5d");
    pub const BOT_ENDPOINT: &str = "http://127.0.0.1:3978/api/messages";
    pub const USER_PASSWORD: &str = "emulator";
    /// The admin-consented application permissions of the default bot's registration.
    pub const BOT_ROLES: &[&str] = &[
        "TeamsAppInstallation.ReadWriteSelfForUser.All",
        "TeamsAppInstallation.ReadWriteSelfForTeam.All",
        "TeamsAppInstallation.ReadWriteSelfForChat.All",
        "Chat.Read.All",
        "AppCatalog.Read.All",
        "User.Read.All",
    ];
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct EmulatorConfig {
    #[serde(default)]
    pub behaviour: BehaviourSpec,
    pub tenants: Vec<TenantSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BehaviourSpec {
    /// Send the personal `conversationUpdate` only on a user's first install ever.
    #[serde(default)]
    pub conversation_update_first_install_only: bool,
    /// Never send the personal `conversationUpdate`.
    #[serde(default)]
    pub conversation_update_never: bool,
    /// Answer sends with 202 and an empty body (Teams sometimes does) instead of 201 `{"id"}`.
    #[serde(default)]
    pub send_accepted_without_id: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub name: String,
    pub id: Option<Uuid>,
    pub domain: Option<String>,
    #[serde(default)]
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub teams: Vec<TeamSpec>,
    #[serde(default)]
    pub apps: Vec<AppRegistrationSpec>,
    #[serde(default)]
    pub catalog: Vec<CatalogAppSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Display name, e.g. `Megan Bowen`.
    pub name: String,
    /// Short handle used by scenarios; defaults to the UPN's local part, lowercased.
    pub key: Option<String>,
    pub upn: Option<String>,
    pub id: Option<Uuid>,
    pub password: Option<String>,
    #[serde(default)]
    pub admin: bool,
    pub job_title: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamSpec {
    pub name: String,
    pub key: Option<String>,
    pub id: Option<Uuid>,
    pub description: Option<String>,
    /// Channels besides General, which every team has.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Members by user key or UPN.
    #[serde(default)]
    pub members: Vec<String>,
    /// Owners by user key or UPN (they are members too).
    #[serde(default)]
    pub owners: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRegistrationSpec {
    pub name: String,
    pub client_id: Uuid,
    pub client_secret: String,
    /// Application permissions with admin consent.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Where the bot of this registration receives activities.
    pub messaging_endpoint: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogAppSpec {
    pub name: String,
    pub manifest_id: Uuid,
    /// The catalog id; derived when absent (equal to the manifest id for store apps).
    pub id: Option<Uuid>,
    #[serde(default = "default_distribution")]
    pub distribution: String,
    #[serde(default = "default_version")]
    pub version: String,
    pub bot_id: Option<Uuid>,
    pub web_application_id: Option<Uuid>,
    pub description: Option<String>,
}

fn default_distribution() -> String {
    "organization".into()
}
fn default_version() -> String {
    "1.0.0".into()
}

/// The `serve` flags that describe "my bot in an emulated tenant"; each overrides the first
/// tenant's first bot.
#[derive(Debug, Clone, Default)]
pub struct BotOverrides {
    pub tenant_id: Option<Uuid>,
    pub bot_app_id: Option<Uuid>,
    pub bot_app_secret: Option<String>,
    pub bot_endpoint: Option<String>,
    pub manifest_id: Option<Uuid>,
}

/// A config problem, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl EmulatorConfig {
    /// The embedded default tenant: Contoso with six users, one team and the reference bot.
    pub fn default_tenant() -> Self {
        let user = |name: &str, key: &str, admin: bool, title: &str| UserSpec {
            name: name.into(),
            key: Some(key.into()),
            upn: None,
            id: None,
            password: None,
            admin,
            job_title: Some(title.into()),
        };
        Self {
            behaviour: BehaviourSpec::default(),
            tenants: vec![TenantSpec {
                name: "Contoso".into(),
                id: Some(defaults::TENANT_ID),
                domain: Some("contoso.onmicrosoft.com".into()),
                users: vec![
                    user("Megan Bowen", "megan", false, "Marketing Manager"),
                    user("Adele Vance", "adele", false, "Retail Manager"),
                    user("Alex Wilber", "alex", false, "Marketing Assistant"),
                    user("Lee Gu", "lee", false, "Director"),
                    user("Nestor Wilke", "nestor", false, "Director of Operations"),
                    user("Patti Fernandez", "patti", true, "President"),
                ],
                teams: vec![TeamSpec {
                    name: "Mark 8 Project Team".into(),
                    key: Some("mark8".into()),
                    id: None,
                    description: Some("Everything about the Mark 8 launch.".into()),
                    channels: vec!["Research and Development".into()],
                    members: vec!["adele".into(), "alex".into(), "lee".into()],
                    owners: vec!["megan".into()],
                }],
                apps: vec![AppRegistrationSpec {
                    name: "Proactive Bot".into(),
                    client_id: defaults::BOT_APP_ID,
                    client_secret: defaults::BOT_APP_SECRET.into(),
                    permissions: defaults::BOT_ROLES.iter().map(|s| s.to_string()).collect(),
                    messaging_endpoint: Some(defaults::BOT_ENDPOINT.into()),
                }],
                catalog: vec![CatalogAppSpec {
                    name: "Proactive Bot".into(),
                    manifest_id: defaults::MANIFEST_ID,
                    id: None,
                    distribution: "organization".into(),
                    version: "1.0.0".into(),
                    bot_id: Some(defaults::BOT_APP_ID),
                    web_application_id: Some(defaults::BOT_APP_ID),
                    description: Some(
                        "Welcomes you and tells you what needs your attention.".into(),
                    ),
                }],
            }],
        }
    }

    /// Reads a YAML config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            field: String::new(),
            line: None,
            column: None,
            reason: format!("cannot read: {e}"),
        })?;
        Self::from_yaml(&text, &file)
    }

    pub fn from_yaml(text: &str, file: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_saphyr::from_str(text).map_err(|e| {
            let location = e.location();
            ConfigError {
                file: file.to_string(),
                field: String::new(),
                line: location.map(|l| l.line()),
                column: location.map(|l| l.column()),
                reason: first_line(&e.to_string()),
            }
        })?;
        config.check(file)?;
        Ok(config)
    }

    /// Lays the `serve` flags over the first tenant and its first bot.
    pub fn apply(&mut self, overrides: &BotOverrides) {
        let Some(tenant) = self.tenants.first_mut() else {
            return;
        };
        if let Some(id) = overrides.tenant_id {
            tenant.id = Some(id);
        }
        let old_bot = tenant.apps.first().map(|a| a.client_id);
        if let Some(app) = tenant.apps.first_mut() {
            if let Some(id) = overrides.bot_app_id {
                app.client_id = id;
            }
            if let Some(secret) = &overrides.bot_app_secret {
                app.client_secret = secret.clone();
            }
            if let Some(endpoint) = &overrides.bot_endpoint {
                app.messaging_endpoint = Some(endpoint.clone());
            }
        }
        let new_bot = tenant.apps.first().map(|a| a.client_id);
        if let Some(app) = tenant.catalog.iter_mut().find(|c| c.bot_id == old_bot) {
            if let Some(id) = overrides.manifest_id {
                app.manifest_id = id;
            }
            app.bot_id = new_bot;
            if app.web_application_id == old_bot {
                app.web_application_id = new_bot;
            }
        }
    }

    /// Cross-field checks the YAML parser cannot make.
    pub fn check(&self, file: &str) -> Result<(), ConfigError> {
        let err = |field: String, reason: String| ConfigError {
            file: file.to_string(),
            field,
            line: None,
            column: None,
            reason,
        };
        if self.tenants.is_empty() {
            return Err(err(
                "tenants".into(),
                "at least one tenant is needed".into(),
            ));
        }
        let mut tenant_ids = BTreeSet::new();
        for (ti, t) in self.tenants.iter().enumerate() {
            let at = |rest: &str| format!("tenants[{ti}]{rest}");
            if !tenant_ids.insert(t.tenant_id()) {
                return Err(err(
                    at(".id"),
                    format!("tenant id {} is used twice", t.tenant_id()),
                ));
            }
            let mut keys = BTreeSet::new();
            let mut upns = BTreeSet::new();
            for (ui, u) in t.users.iter().enumerate() {
                if u.name.trim().is_empty() {
                    return Err(err(
                        at(&format!(".users[{ui}].name")),
                        "must not be empty".into(),
                    ));
                }
                if !keys.insert(t.user_key(u)) {
                    return Err(err(
                        at(&format!(".users[{ui}].key")),
                        format!("user key '{}' is used twice", t.user_key(u)),
                    ));
                }
                let upn = t.user_upn(u);
                if !upn.contains('@') {
                    return Err(err(
                        at(&format!(".users[{ui}].upn")),
                        format!("'{upn}' is not a user principal name (name@domain)"),
                    ));
                }
                if !upns.insert(upn.to_ascii_lowercase()) {
                    return Err(err(
                        at(&format!(".users[{ui}].upn")),
                        format!("UPN '{upn}' is used twice"),
                    ));
                }
            }
            for (gi, team) in t.teams.iter().enumerate() {
                for (field, list) in [("members", &team.members), ("owners", &team.owners)] {
                    for (mi, m) in list.iter().enumerate() {
                        if t.find_user_spec(m).is_none() {
                            return Err(err(
                                at(&format!(".teams[{gi}].{field}[{mi}]")),
                                format!("no user '{m}' in tenant '{}'", t.name),
                            ));
                        }
                    }
                }
                if team
                    .channels
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case("General"))
                {
                    return Err(err(
                        at(&format!(".teams[{gi}].channels")),
                        "General is always there; list only the other channels".into(),
                    ));
                }
            }
            for (ai, a) in t.apps.iter().enumerate() {
                if let Some(endpoint) = &a.messaging_endpoint {
                    match url::Url::parse(endpoint) {
                        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                        _ => {
                            return Err(err(
                                at(&format!(".apps[{ai}].messaging_endpoint")),
                                format!("'{endpoint}' is not an http(s) URL"),
                            ));
                        }
                    }
                }
            }
            for (ci, c) in t.catalog.iter().enumerate() {
                if parse_distribution(&c.distribution).is_none() {
                    return Err(err(
                        at(&format!(".catalog[{ci}].distribution")),
                        format!(
                            "'{}' is not one of store, organization, sideloaded",
                            c.distribution
                        ),
                    ));
                }
                if let Some(bot) = c.bot_id
                    && !t.apps.iter().any(|a| a.client_id == bot)
                {
                    return Err(err(
                        at(&format!(".catalog[{ci}].bot_id")),
                        format!("no app registration with client_id {bot}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The tenants as the emulator's state.
    pub fn build_world(&self, clock: Clock) -> World {
        let now = clock.now();
        let tenants = self.tenants.iter().map(|t| t.build(now)).collect();
        let behaviour = Behaviour {
            conversation_update_first_install_only: self
                .behaviour
                .conversation_update_first_install_only,
            conversation_update_never: self.behaviour.conversation_update_never,
            send_accepted_without_id: self.behaviour.send_accepted_without_id,
        };
        World::new(tenants, behaviour, clock)
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

fn parse_distribution(s: &str) -> Option<DistributionMethod> {
    match s {
        "store" => Some(DistributionMethod::Store),
        "organization" => Some(DistributionMethod::Organization),
        "sideloaded" => Some(DistributionMethod::Sideloaded),
        _ => None,
    }
}

impl TenantSpec {
    pub fn tenant_id(&self) -> Uuid {
        self.id
            .unwrap_or_else(|| derived_guid("tenant", &self.name))
    }

    fn domain(&self) -> String {
        self.domain.clone().unwrap_or_else(|| {
            let slug: String = self
                .name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            format!("{}.onmicrosoft.com", slug.to_ascii_lowercase())
        })
    }

    fn user_key(&self, u: &UserSpec) -> String {
        u.key.clone().unwrap_or_else(|| match &u.upn {
            Some(upn) => upn.split('@').next().unwrap_or(upn).to_ascii_lowercase(),
            None => u
                .name
                .split_whitespace()
                .next()
                .unwrap_or(&u.name)
                .to_ascii_lowercase(),
        })
    }

    fn user_upn(&self, u: &UserSpec) -> String {
        u.upn
            .clone()
            .unwrap_or_else(|| format!("{}@{}", self.user_key(u), self.domain()))
    }

    fn find_user_spec(&self, key_or_upn: &str) -> Option<&UserSpec> {
        self.users.iter().find(|u| {
            self.user_key(u) == key_or_upn || self.user_upn(u).eq_ignore_ascii_case(key_or_upn)
        })
    }

    fn user_id(&self, u: &UserSpec) -> Uuid {
        u.id.unwrap_or_else(|| {
            derived_guid(
                "user",
                &format!("{}/{}", self.tenant_id(), self.user_key(u)),
            )
        })
    }

    fn build(&self, now: chrono::DateTime<chrono::Utc>) -> Tenant {
        let tenant_id = self.tenant_id();
        let users = self
            .users
            .iter()
            .map(|u| {
                let id = self.user_id(u);
                let mut parts = u.name.split_whitespace();
                let given = parts.next().unwrap_or_default().to_string();
                let surname = parts.collect::<Vec<_>>().join(" ");
                let upn = self.user_upn(u);
                User {
                    id,
                    key: self.user_key(u),
                    mail: upn.clone(),
                    user_principal_name: upn,
                    display_name: u.name.clone(),
                    given_name: given,
                    surname,
                    job_title: u.job_title.clone(),
                    password: u
                        .password
                        .clone()
                        .unwrap_or_else(|| defaults::USER_PASSWORD.into()),
                    admin: u.admin,
                    mri: ids::user_mri(tenant_id, id),
                    blocked_bots: BTreeSet::new(),
                }
            })
            .collect();
        let teams = self
            .teams
            .iter()
            .map(|team| {
                let key = team.key.clone().unwrap_or_else(|| {
                    team.name
                        .split_whitespace()
                        .collect::<String>()
                        .to_ascii_lowercase()
                });
                let id = team
                    .id
                    .unwrap_or_else(|| derived_guid("team", &format!("{tenant_id}/{key}")));
                let thread_id = ids::team_thread_id(id);
                let mut channels = vec![Channel {
                    id: thread_id.clone(),
                    display_name: "General".into(),
                    general: true,
                    created: now,
                    messages: vec![],
                }];
                channels.extend(team.channels.iter().map(|name| Channel {
                    id: ids::channel_thread_id(id, name),
                    display_name: name.clone(),
                    general: false,
                    created: now,
                    messages: vec![],
                }));
                let mut members: Vec<TeamMember> = Vec::new();
                for (list, owner) in [(&team.owners, true), (&team.members, false)] {
                    for m in list {
                        if let Some(u) = self.find_user_spec(m) {
                            let user = self.user_id(u);
                            if !members.iter().any(|x| x.user == user) {
                                members.push(TeamMember { user, owner });
                            }
                        }
                    }
                }
                Team {
                    id,
                    key,
                    display_name: team.name.clone(),
                    description: team.description.clone().unwrap_or_default(),
                    thread_id,
                    channels,
                    members,
                }
            })
            .collect();
        let registrations = self
            .apps
            .iter()
            .map(|a| AppRegistration {
                client_id: a.client_id,
                display_name: a.name.clone(),
                client_secret: a.client_secret.clone(),
                roles: a.permissions.clone(),
                messaging_endpoint: a.messaging_endpoint.clone(),
            })
            .collect();
        let catalog = self
            .catalog
            .iter()
            .map(|c| {
                let distribution =
                    parse_distribution(&c.distribution).unwrap_or(DistributionMethod::Organization);
                let id = c.id.unwrap_or(match distribution {
                    DistributionMethod::Store => c.manifest_id,
                    _ => derived_guid("teams-app", &format!("{tenant_id}/{}", c.manifest_id)),
                });
                CatalogApp {
                    id,
                    external_id: c.manifest_id,
                    display_name: c.name.clone(),
                    short_description: c.description.clone().unwrap_or_default(),
                    description: c.description.clone().unwrap_or_default(),
                    distribution_method: distribution,
                    version: c.version.clone(),
                    bot_id: c.bot_id,
                    web_application_id: c.web_application_id,
                }
            })
            .collect();
        Tenant::new(
            tenant_id,
            self.name.clone(),
            self.domain(),
            users,
            teams,
            registrations,
            catalog,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tenant_is_valid_and_deterministic() {
        let config = EmulatorConfig::default_tenant();
        config.check("<default>").unwrap();
        let a = config.build_world(Clock::system());
        let b = config.build_world(Clock::system());
        let (ta, tb) = (&a.tenants()[0], &b.tenants()[0]);
        assert_eq!(ta.id, defaults::TENANT_ID);
        assert!(ta.users().len() >= 5);
        assert_eq!(
            ta.users().iter().map(|u| u.id).collect::<Vec<_>>(),
            tb.users().iter().map(|u| u.id).collect::<Vec<_>>()
        );
        assert_ne!(ta.catalog()[0].id, ta.catalog()[0].external_id);
        assert_eq!(ta.teams()[0].channels.len(), 2);
        assert_eq!(
            ta.user("megan@contoso.onmicrosoft.com").unwrap().key,
            "megan"
        );
    }

    #[test]
    fn yaml_errors_name_file_line_and_reason() {
        let err = EmulatorConfig::from_yaml("tenants:\n  - name: X\n    colour: blue\n", "t.yaml")
            .unwrap_err();
        assert_eq!(err.file, "t.yaml");
        assert!(err.line.is_some(), "{err}");
        assert!(err.reason.contains("colour"), "{err}");
    }

    #[test]
    fn unknown_team_member_names_the_field() {
        let yaml = "tenants:\n  - name: Fabrikam\n    users: [{name: Ann Lee}]\n    teams: [{name: Ops, members: [bob]}]\n";
        let err = EmulatorConfig::from_yaml(yaml, "f.yaml").unwrap_err();
        assert_eq!(err.field, "tenants[0].teams[0].members[0]");
        assert!(err.reason.contains("bob"));
        let err = EmulatorConfig::from_yaml("tenants: []\n", "f.yaml").unwrap_err();
        assert_eq!(err.field, "tenants");
    }

    #[test]
    fn overrides_replace_the_default_bot() {
        let mut config = EmulatorConfig::default_tenant();
        let app = Uuid::from_u128(7);
        config.apply(&BotOverrides {
            bot_app_id: Some(app),
            bot_endpoint: Some("http://127.0.0.1:4000/api/messages".into()),
            ..Default::default()
        });
        let world = config.build_world(Clock::system());
        let t = &world.tenants()[0];
        assert_eq!(t.registrations()[0].client_id, app);
        assert_eq!(t.catalog()[0].bot_id, Some(app));
        assert_eq!(t.catalog()[0].web_application_id, Some(app));
    }
}
