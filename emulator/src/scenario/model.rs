//! The scenario file: what a scenario names (tenant, bot, behaviour) and its steps, each a map
//! with one key naming the step, as `docs/scenarios.md` documents.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A tenant config file (YAML, as `serve --config` reads), relative to the scenario file.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub bot: BotSpec,
    #[serde(default)]
    pub behaviour: BehaviourSpec,
    pub steps: Vec<serde_saphyr::Spanned<Step>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotSpec {
    /// A shell command that starts the bot; without it, the built-in reference bot runs.
    #[serde(default)]
    pub command: Option<String>,
    /// The messaging endpoint: a path on the bot (`/api/messages`) or a full URL; `${bot.port}` is the port given to the bot.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `signed` (default) or `none`.
    #[serde(default)]
    pub auth: Option<AuthMode>,
    /// How long the bot may take to accept connections (default `30s`).
    #[serde(default)]
    pub ready_timeout: Option<String>,
    /// The working directory of the command, relative to the scenario file.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment variables for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Signed,
    None,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourSpec {
    /// `always` (default), `first_install_only` or `never`: when the personal `conversationUpdate` comes.
    #[serde(default)]
    pub conversation_update: Option<ConversationUpdateMode>,
    /// Teams' and Graph's throttling limits (default on).
    #[serde(default)]
    pub throttling: Option<bool>,
    /// Sends answer 202 with an empty body, as Teams sometimes does (default false).
    #[serde(default)]
    pub send_accepted_without_id: bool,
}

/// The latest `fault` fired this many times (waits up to `within`, default 5s).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectFault {
    pub fired: u32,
    #[serde(default)]
    pub within: Option<String>,
}

/// No call came back before the `Retry-After` it was given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectRetriesHonoured {}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConversationUpdateMode {
    Always,
    FirstInstallOnly,
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Install(InstallStep),
    Uninstall(InstallStep),
    AddMember(MemberStep),
    RemoveMember(MemberStep),
    Say(SayStep),
    Post(PostStep),
    Block(UserStep),
    Unblock(UserStep),
    CallBot(HttpStep),
    Graph(HttpStep),
    Wait(String),
    /// Makes the next matching calls fail: the fields of `POST /_emulator/faults`.
    Fault(crate::limits::Fault),
    ExpectActivity(ExpectActivity),
    ExpectMessage(MessageQuery),
    ExpectNoMessage(MessageQuery),
    ExpectCount(MessageQuery),
    ExpectDelivery(ExpectDelivery),
    ExpectFault(ExpectFault),
    ExpectRetriesHonoured(ExpectRetriesHonoured),
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Install(_) => "install",
            Step::Uninstall(_) => "uninstall",
            Step::AddMember(_) => "add_member",
            Step::RemoveMember(_) => "remove_member",
            Step::Say(_) => "say",
            Step::Post(_) => "post",
            Step::Block(_) => "block",
            Step::Unblock(_) => "unblock",
            Step::CallBot(_) => "call_bot",
            Step::Graph(_) => "graph",
            Step::Wait(_) => "wait",
            Step::Fault(_) => "fault",
            Step::ExpectFault(_) => "expect_fault",
            Step::ExpectRetriesHonoured(_) => "expect_retries_honoured",
            Step::ExpectActivity(_) => "expect_activity",
            Step::ExpectMessage(_) => "expect_message",
            Step::ExpectNoMessage(_) => "expect_no_message",
            Step::ExpectCount(_) => "expect_count",
            Step::ExpectDelivery(_) => "expect_delivery",
        }
    }

    /// Acts change the world; each one opens a new window that later expectations look at.
    /// A GET only looks, so it opens none.
    pub fn is_act(&self) -> bool {
        if let Step::CallBot(h) | Step::Graph(h) = self
            && h.method.eq_ignore_ascii_case("GET")
        {
            return false;
        }
        !matches!(
            self,
            Step::Wait(_)
                | Step::ExpectActivity(_)
                | Step::ExpectMessage(_)
                | Step::ExpectNoMessage(_)
                | Step::ExpectCount(_)
                | Step::ExpectDelivery(_)
                | Step::ExpectFault(_)
                | Step::ExpectRetriesHonoured(_)
        )
    }
}

/// Who calls Graph: the bot's app (client credentials) or a Teams administrator (delegated).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    #[default]
    App,
    Admin,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallStep {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default, rename = "as")]
    pub actor: Actor,
    /// The Graph status the step expects (install: 201 for a user, 200 for a team; uninstall: 204).
    #[serde(default)]
    pub expect_status: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberStep {
    pub team: String,
    pub user: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserStep {
    pub user: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SayStep {
    pub user: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostStep {
    pub user: String,
    pub team: String,
    #[serde(default)]
    pub channel: Option<String>,
    pub text: String,
    #[serde(default)]
    pub mention_bot: bool,
    #[serde(default)]
    pub mentions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    #[serde(default = "default_method")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub body: Option<Value>,
    /// For `graph`: who calls (default the app).
    #[serde(default, rename = "as")]
    pub actor: Actor,
    /// The status expected back (any 2xx when absent).
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// A partial JSON match on the answer.
    #[serde(default)]
    pub expect_json: Option<Value>,
    /// Keep the answer as `${saved.NAME.…}`.
    #[serde(default)]
    pub save: Option<String>,
    /// How long the call may take (default `60s`).
    #[serde(default)]
    pub timeout: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}

/// `last_action` (default): only what happened since the latest act step; `start`: everything.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Since {
    #[default]
    LastAction,
    Start,
}

/// A question about bot messages in one conversation, shared by `expect_message`,
/// `expect_no_message` and `expect_count`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageQuery {
    /// A user's 1:1 chat with the bot…
    #[serde(default)]
    pub user: Option<String>,
    /// …or a team's channel (General when `channel` is absent).
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    /// The visible text (message text and card texts) equals this.
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub text_contains: Option<String>,
    #[serde(default)]
    pub text_matches: Option<String>,
    /// A partial JSON match on the content of one of the message's cards.
    #[serde(default)]
    pub card: Option<Value>,
    /// One attachment has this content type (`application/vnd.microsoft.card.hero`, …).
    #[serde(default)]
    pub attachment_type: Option<String>,
    /// `expect_message`, `expect_count`: how long to wait (default `5s`).
    #[serde(default)]
    pub within: Option<String>,
    /// `expect_no_message`: how long to watch (default `1s`); `expect_count`: how long the count
    /// must hold once reached (default `500ms`).
    #[serde(default, rename = "for")]
    pub watch: Option<String>,
    /// `expect_count`: the number of matching bot messages.
    #[serde(default)]
    pub messages: Option<usize>,
    #[serde(default)]
    pub since: Since,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectActivity {
    /// The activity type delivered to the bot (`installationUpdate`, `conversationUpdate`, `message`).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// A partial JSON match on the activity.
    #[serde(default, rename = "match")]
    pub matching: Option<Value>,
    #[serde(default)]
    pub within: Option<String>,
    #[serde(default)]
    pub since: Since,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDelivery {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Whether the bot answered 2xx.
    #[serde(default)]
    pub ok: Option<bool>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub within: Option<String>,
    #[serde(default)]
    pub since: Since,
}
