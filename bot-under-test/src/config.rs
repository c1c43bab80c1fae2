//! The bot's configuration: one [`Config`] value, built from the command line and environment
//! variables by [`Cli`], or in code (for tests) by [`Config::for_emulator`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Where the emulator listens by default.
pub const DEFAULT_EMULATOR_URL: &str = "http://127.0.0.1:3979";
/// The emulator's default tenant.
pub const DEFAULT_TENANT_ID: &str = "e5c3a7d2-4b1f-4e8a-9c6d-2f1b0a9e8d7c";
/// The reference bot's app registration in the emulator's default tenant.
pub const DEFAULT_APP_ID: &str = "b0f1e2d3-c4b5-4a69-8788-99aabbccddee";
/// The reference bot's client secret in the emulator's default tenant.
pub const DEFAULT_APP_PASSWORD: &str = "emulator-bot-secret";
/// The manifest id (`externalId` in the org catalog) of the reference bot's Teams app.
pub const DEFAULT_MANIFEST_ID: &str = "d6a1c2b3-e4f5-4a6b-8c7d-0e1f2a3b4c5d";
/// Where the SQLite database lives unless told otherwise.
pub const DEFAULT_DATABASE_PATH: &str = ".data/proactive-bot.sqlite3";
/// The messaging endpoint's default address (the Bot Framework samples' port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3978";

/// Everything the bot needs to run. All fields are public so tests can adjust any of them.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the messaging endpoint and the notify/install API; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The bot's Microsoft App ID. Empty: no inbound validation and no outbound tokens.
    pub app_id: String,
    /// The bot's client secret.
    pub app_password: String,
    /// The tenant the bot serves (Graph tokens and proactive conversations).
    pub tenant_id: String,
    /// Tenant segment of the Bot Connector token URL: `botframework.com` (multi-tenant bots) or the
    /// tenant id (single-tenant bots).
    pub connector_token_tenant: String,
    /// The Teams app's manifest id (`externalId` in the app catalog).
    pub manifest_id: String,
    /// The app's catalog id, if known; otherwise it is looked up by manifest id and cached.
    pub catalog_app_id: Option<String>,
    /// Login (token) authority, without the tenant: `{login_url}/{tenant}/oauth2/v2.0/token`.
    pub login_url: String,
    /// Microsoft Graph base, including the version: `https://graph.microsoft.com/v1.0`.
    pub graph_url: String,
    /// The Bot Framework OpenID metadata document that names the channel's signing keys.
    pub openid_metadata_url: String,
    /// Service URL used to reach a chat found through Graph before any activity told the bot one.
    pub default_service_url: String,
    /// The SQLite database file (`:memory:` for a throw-away database).
    pub database_path: PathBuf,
    /// Link in the personal welcome sent to new team members.
    pub new_member_guide_url: String,
    /// The bot's display name, used in messages.
    pub bot_name: String,
    /// Most outbound Graph/Connector requests in flight at once.
    pub max_concurrency: usize,
    /// Most tries of one request (the first one included) before its outcome is final.
    pub max_attempts: u32,
    /// First backoff delay; doubles each try, with full jitter.
    pub retry_base_delay: Duration,
    /// Longest single wait between tries; a longer `Retry-After` ends the tries instead.
    pub retry_max_delay: Duration,
    /// Page size for `pagedmembers` when caching a team roster.
    pub roster_page_size: u32,
}

impl Config {
    /// A configuration that reaches an emulator at `emulator_base_url` with the emulator's default
    /// tenant, bot registration and app; the messaging endpoint binds `127.0.0.1:0`.
    pub fn for_emulator(emulator_base_url: &str) -> Config {
        let base = emulator_base_url.trim_end_matches('/');
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            app_id: DEFAULT_APP_ID.to_owned(),
            app_password: DEFAULT_APP_PASSWORD.to_owned(),
            tenant_id: DEFAULT_TENANT_ID.to_owned(),
            connector_token_tenant: "botframework.com".to_owned(),
            manifest_id: DEFAULT_MANIFEST_ID.to_owned(),
            catalog_app_id: None,
            login_url: base.to_owned(),
            graph_url: format!("{base}/v1.0"),
            openid_metadata_url: format!("{base}/v1/.well-known/openidconfiguration"),
            default_service_url: format!("{base}/amer/"),
            database_path: PathBuf::from(DEFAULT_DATABASE_PATH),
            new_member_guide_url: "https://learn.microsoft.com/microsoftteams/teams-overview"
                .to_owned(),
            bot_name: "Proactive Bot".to_owned(),
            max_concurrency: 8,
            max_attempts: 4,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(60),
            roster_page_size: 100,
        }
    }

    /// True when the bot has an app id, so inbound activities must carry a valid channel JWT and
    /// outbound calls carry a token.
    pub fn authenticates(&self) -> bool {
        !self.app_id.is_empty()
    }
}

/// The command line. Every flag also reads an environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "proactive-bot",
    version,
    about = "The reference proactive Microsoft Teams bot: welcome messages, notifications, Graph-driven \
             installs and opt-out, with conversation references kept in SQLite.",
    long_about = None
)]
pub struct Cli {
    /// Address for the messaging endpoint (/api/messages) and the API (/api/notify, /api/install).
    #[arg(long, env = "PROACTIVE_BOT_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// The emulator (or any Teams stand-in) these defaults point to: login = BASE, Graph =
    /// BASE/v1.0, OpenID metadata = BASE/v1/.well-known/openidconfiguration.
    #[arg(long, env = "PROACTIVE_BOT_EMULATOR_URL", default_value = DEFAULT_EMULATOR_URL)]
    pub emulator_url: String,

    /// Microsoft App ID of the bot; an empty value turns authentication off both ways
    /// [fallback env: MicrosoftAppId] [default: the emulator's bot]
    #[arg(long, env = "PROACTIVE_BOT_APP_ID")]
    pub app_id: Option<String>,

    /// Client secret of the bot [fallback env: MicrosoftAppPassword] [default: the emulator's secret]
    #[arg(long, env = "PROACTIVE_BOT_APP_PASSWORD", hide_env_values = true)]
    pub app_password: Option<String>,

    /// Tenant id [fallback env: MicrosoftAppTenantId] [default: the emulator's tenant]
    #[arg(long, env = "PROACTIVE_BOT_TENANT_ID")]
    pub tenant_id: Option<String>,

    /// Tenant segment of the Connector token URL: botframework.com (multi-tenant) or the tenant id
    #[arg(
        long,
        env = "PROACTIVE_BOT_CONNECTOR_TOKEN_TENANT",
        default_value = "botframework.com"
    )]
    pub connector_token_tenant: String,

    /// Teams app manifest id (the catalog's externalId)
    #[arg(long, env = "PROACTIVE_BOT_MANIFEST_ID", default_value = DEFAULT_MANIFEST_ID)]
    pub manifest_id: String,

    /// Catalog id of the Teams app; looked up by manifest id when absent
    #[arg(long, env = "PROACTIVE_BOT_CATALOG_APP_ID")]
    pub catalog_app_id: Option<String>,

    /// Login authority (token URL = LOGIN_URL/{tenant}/oauth2/v2.0/token) [default: EMULATOR_URL]
    #[arg(long, env = "PROACTIVE_BOT_LOGIN_URL")]
    pub login_url: Option<String>,

    /// Microsoft Graph base with version [default: EMULATOR_URL/v1.0]
    #[arg(long, env = "PROACTIVE_BOT_GRAPH_URL")]
    pub graph_url: Option<String>,

    /// Bot Framework OpenID metadata URL for inbound token validation
    /// [default: EMULATOR_URL/v1/.well-known/openidconfiguration]
    #[arg(long, env = "PROACTIVE_BOT_OPENID_METADATA_URL")]
    pub openid_metadata_url: Option<String>,

    /// Service URL for chats found through Graph before any activity arrived
    /// [default: EMULATOR_URL/amer/]
    #[arg(long, env = "PROACTIVE_BOT_SERVICE_URL")]
    pub service_url: Option<String>,

    /// SQLite database file (created with its folder; `:memory:` keeps nothing)
    #[arg(long, env = "PROACTIVE_BOT_DATABASE", default_value = DEFAULT_DATABASE_PATH)]
    pub database: PathBuf,

    /// Link to the new-member guide sent to people who join a team
    #[arg(
        long,
        env = "PROACTIVE_BOT_NEW_MEMBER_GUIDE_URL",
        default_value = "https://learn.microsoft.com/microsoftteams/teams-overview"
    )]
    pub new_member_guide_url: String,

    /// Display name used in messages
    #[arg(long, env = "PROACTIVE_BOT_NAME", default_value = "Proactive Bot")]
    pub bot_name: String,

    /// Most outbound requests in flight at once
    #[arg(long, env = "PROACTIVE_BOT_MAX_CONCURRENCY", default_value_t = 8)]
    pub max_concurrency: usize,

    /// Most tries per request (first included) on 429/412/502/503/504 and connection errors
    #[arg(long, env = "PROACTIVE_BOT_MAX_ATTEMPTS", default_value_t = 4)]
    pub max_attempts: u32,

    /// First retry delay in milliseconds (doubles each try, with jitter)
    #[arg(long, env = "PROACTIVE_BOT_RETRY_BASE_MS", default_value_t = 500)]
    pub retry_base_ms: u64,

    /// Longest wait between two tries, in seconds (a longer Retry-After ends the tries)
    #[arg(long, env = "PROACTIVE_BOT_RETRY_MAX_SECS", default_value_t = 60)]
    pub retry_max_secs: u64,
}

impl Cli {
    /// Resolves defaults and the botbuilder fallback variables (`MicrosoftAppId`,
    /// `MicrosoftAppPassword`, `MicrosoftAppTenantId`) into a [`Config`].
    pub fn into_config(self) -> Config {
        self.into_config_with(|name| std::env::var(name).ok())
    }

    fn into_config_with(self, env: impl Fn(&str) -> Option<String>) -> Config {
        let mut config = Config::for_emulator(&self.emulator_url);
        let base = self.emulator_url.trim_end_matches('/').to_owned();
        config.listen = self.listen;
        if let Some(v) = self.app_id.or_else(|| env("MicrosoftAppId")) {
            config.app_id = v.trim().to_owned();
        }
        if let Some(v) = self.app_password.or_else(|| env("MicrosoftAppPassword")) {
            config.app_password = v;
        }
        if let Some(v) = self.tenant_id.or_else(|| env("MicrosoftAppTenantId"))
            && !v.trim().is_empty()
        {
            config.tenant_id = v.trim().to_owned();
        }
        config.connector_token_tenant = self.connector_token_tenant;
        config.manifest_id = self.manifest_id;
        config.catalog_app_id = self.catalog_app_id.filter(|v| !v.is_empty());
        config.login_url = self
            .login_url
            .unwrap_or(base)
            .trim_end_matches('/')
            .to_owned();
        if let Some(v) = self.graph_url {
            config.graph_url = v.trim_end_matches('/').to_owned();
        }
        if let Some(v) = self.openid_metadata_url {
            config.openid_metadata_url = v;
        }
        if let Some(v) = self.service_url {
            config.default_service_url = v;
        }
        config.database_path = self.database;
        config.new_member_guide_url = self.new_member_guide_url;
        config.bot_name = self.bot_name;
        config.max_concurrency = self.max_concurrency.max(1);
        config.max_attempts = self.max_attempts.max(1);
        config.retry_base_delay = Duration::from_millis(self.retry_base_ms);
        config.retry_max_delay = Duration::from_secs(self.retry_max_secs);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut all = vec!["proactive-bot"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("arguments parse")
    }

    #[test]
    fn defaults_reach_the_emulator_on_its_default_port() {
        let config = parse(&[]).into_config_with(|_| None);
        assert_eq!(config.listen.to_string(), "127.0.0.1:3978");
        assert_eq!(config.app_id, DEFAULT_APP_ID);
        assert_eq!(config.tenant_id, DEFAULT_TENANT_ID);
        assert_eq!(config.login_url, "http://127.0.0.1:3979");
        assert_eq!(config.graph_url, "http://127.0.0.1:3979/v1.0");
        assert_eq!(
            config.openid_metadata_url,
            "http://127.0.0.1:3979/v1/.well-known/openidconfiguration"
        );
        assert_eq!(config.default_service_url, "http://127.0.0.1:3979/amer/");
        assert_eq!(config.database_path, PathBuf::from(DEFAULT_DATABASE_PATH));
        assert_eq!(config.max_attempts, 4);
    }

    #[test]
    fn botbuilder_variable_names_are_fallbacks() {
        let env = |name: &str| match name {
            "MicrosoftAppId" => Some("11111111-2222-3333-4444-555555555555".to_owned()),
            "MicrosoftAppPassword" => Some("pw".to_owned()),
            "MicrosoftAppTenantId" => Some("tenant-x".to_owned()),
            _ => None,
        };
        let config = parse(&[]).into_config_with(env);
        assert_eq!(config.app_id, "11111111-2222-3333-4444-555555555555");
        assert_eq!(config.app_password, "pw");
        assert_eq!(config.tenant_id, "tenant-x");

        let explicit = parse(&["--app-id", "explicit"]).into_config_with(env);
        assert_eq!(explicit.app_id, "explicit");
    }

    #[test]
    fn an_empty_app_id_turns_authentication_off() {
        let config = parse(&["--app-id", ""]).into_config_with(|_| None);
        assert!(!config.authenticates());
    }

    #[test]
    fn emulator_url_moves_every_derived_url() {
        let config =
            parse(&["--emulator-url", "http://127.0.0.1:4000/"]).into_config_with(|_| None);
        assert_eq!(config.graph_url, "http://127.0.0.1:4000/v1.0");
        assert_eq!(config.login_url, "http://127.0.0.1:4000");
        assert_eq!(config.default_service_url, "http://127.0.0.1:4000/amer/");
    }
}
