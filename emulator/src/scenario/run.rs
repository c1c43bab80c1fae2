//! Running one scenario: a fresh emulator (in-process, free port) and a fresh bot, the steps in
//! order (acts in `act`, expectations in `expect`), everything started stopped again, and the
//! result a report is written from.

use super::Scenario;
use super::bot::BotUnderTest;
use super::matching::interpolate;
use super::model::{Actor, AuthMode, ConversationUpdateMode, Step};
use super::queries::{catalog_app, directory, message_counts, read_tenant};
use crate::emulator::{Emulator, EmulatorHandle};
use crate::state::BotAuth;
use crate::tenant::Conversation;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use super::bot::bot_environment;
pub use super::expect::summarize_activity;

/// What the command line passes to every scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides every scenario's bot command.
    pub bot_cmd: Option<String>,
    /// The seed of faults that fire by chance.
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepStatus {
    Passed,
    Failed(Failure),
    Skipped,
}

/// A failed step: what was expected and what was seen instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub expected: String,
    pub seen: Vec<String>,
}

impl Failure {
    pub(super) fn new(expected: impl Into<String>, seen: Vec<String>) -> Self {
        Self {
            expected: expected.into(),
            seen,
        }
    }
    pub(super) fn plain(message: impl Into<String>) -> Self {
        Self::new(message, vec![])
    }
}

#[derive(Debug, Clone)]
pub struct StepResult {
    pub index: usize,
    pub name: &'static str,
    pub line: u64,
    pub column: u64,
    pub status: StepStatus,
    pub duration: Duration,
}

#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub name: String,
    pub file: String,
    pub duration: Duration,
    /// Set when the scenario could not run at all (the bot did not start, …).
    pub error: Option<String>,
    pub steps: Vec<StepResult>,
    /// Every activity to and from the bot, in order.
    pub transcript: Vec<Value>,
    /// The tail of the bot command's output.
    pub bot_output: String,
}

impl ScenarioResult {
    /// A scenario that could not run at all.
    pub fn broken(name: String, file: String, error: String) -> Self {
        Self {
            name,
            file,
            duration: Duration::ZERO,
            error: Some(error),
            steps: vec![],
            transcript: vec![],
            bot_output: String::new(),
        }
    }

    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self
                .steps
                .iter()
                .all(|s| !matches!(s.status, StepStatus::Failed(_)))
    }
}

/// Runs one scenario from start to end.
pub async fn run_scenario(scenario: &Scenario, options: &RunOptions) -> ScenarioResult {
    let started = Instant::now();
    let mut result = ScenarioResult {
        name: scenario.spec.name.clone(),
        file: scenario.file.display().to_string(),
        duration: Duration::ZERO,
        error: None,
        steps: vec![],
        transcript: vec![],
        bot_output: String::new(),
    };
    let mut config = scenario.tenant.clone();
    match scenario.spec.behaviour.conversation_update {
        Some(ConversationUpdateMode::FirstInstallOnly) => {
            config.behaviour.conversation_update_first_install_only = true
        }
        Some(ConversationUpdateMode::Never) => config.behaviour.conversation_update_never = true,
        _ => {}
    }
    config.behaviour.send_accepted_without_id |= scenario.spec.behaviour.send_accepted_without_id;
    let auth = match scenario.spec.bot.auth {
        Some(AuthMode::None) => BotAuth::None,
        _ => BotAuth::Signed,
    };
    let emulator = match Emulator::builder()
        .config(config)
        .bot_auth(auth)
        .throttling(scenario.spec.behaviour.throttling.unwrap_or(true))
        .seed(options.seed.unwrap_or(0))
        .start()
        .await
    {
        Ok(e) => e,
        Err(e) => {
            result.error = Some(format!("the emulator could not start: {e}"));
            return result;
        }
    };
    let mut bot = match BotUnderTest::start(scenario, options, &emulator, auth).await {
        Ok(b) => b,
        Err(e) => {
            result.error = Some(e);
            emulator.shutdown().await;
            result.duration = started.elapsed();
            return result;
        }
    };
    let mut run = Run::new(&emulator, &bot, auth);
    let mut failed = false;
    for (index, step) in scenario.spec.steps.iter().enumerate() {
        let (line, column) = (step.referenced.line(), step.referenced.column());
        let step_started = Instant::now();
        let status = if failed {
            StepStatus::Skipped
        } else {
            if step.value.is_act() {
                run.mark();
            }
            match run.step(&step.value).await {
                Ok(()) => StepStatus::Passed,
                Err(f) => {
                    failed = true;
                    StepStatus::Failed(f)
                }
            }
        };
        result.steps.push(StepResult {
            index: index + 1,
            name: step.value.name(),
            line,
            column,
            status,
            duration: step_started.elapsed(),
        });
    }
    emulator
        .state()
        .delivery
        .settle(Duration::from_secs(2))
        .await;
    result.transcript = emulator.state().delivery.transcript();
    result.bot_output = bot.stop().await;
    emulator.shutdown().await;
    result.duration = started.elapsed();
    result
}

/// Where the run stands: values for `${…}`, cached tokens, and where the current window begins.
pub(super) struct Run<'a> {
    pub(super) emulator: &'a EmulatorHandle,
    pub(super) bot: &'a BotUnderTest,
    pub(super) http: reqwest::Client,
    pub(super) context: Value,
    pub(super) tokens: HashMap<Actor, String>,
    /// Bot messages per conversation when the latest act began.
    pub(super) message_marks: HashMap<String, usize>,
    pub(super) delivery_mark: usize,
}

pub(super) fn key(c: &Conversation) -> String {
    match c {
        Conversation::Personal { chat } => chat.clone(),
        Conversation::Channel { channel, .. } => channel.clone(),
    }
}

impl<'a> Run<'a> {
    fn new(emulator: &'a EmulatorHandle, bot: &'a BotUnderTest, auth: BotAuth) -> Self {
        let mut context = read_tenant(emulator.state(), |t| {
            let catalog = catalog_app(t, bot.app_id);
            let mut context = directory(t);
            context["bot"] = json!({"url": bot.url, "endpoint": bot.endpoint, "app_id": bot.app_id.to_string(), "port": bot.port, "auth": if auth == BotAuth::Signed { "signed" } else { "none" },
                    "catalog_id": catalog.map(|a| a.id.to_string()), "manifest_id": catalog.map(|a| a.external_id.to_string())});
            context
        });
        context["emulator"] = json!({"url": emulator.url(), "graph": emulator.graph_url(), "service_url": emulator.service_url()});
        context["last"] = json!({});
        context["saved"] = json!({});
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            emulator,
            bot,
            http,
            context,
            tokens: HashMap::new(),
            message_marks: HashMap::new(),
            delivery_mark: 0,
        }
    }

    /// Starts a new window: expectations with `since: last_action` look only after this point.
    fn mark(&mut self) {
        self.message_marks = read_tenant(self.emulator.state(), message_counts);
        self.delivery_mark = self.emulator.state().delivery.last_seq();
    }

    pub(super) fn text(&self, s: &str) -> Result<String, Failure> {
        interpolate(s, &self.context).map_err(Failure::plain)
    }

    pub(super) fn set_last(&mut self, last: Value) {
        self.context["last"] = last;
    }

    async fn step(&mut self, step: &Step) -> Result<(), Failure> {
        match step {
            Step::Install(s) => self.install(s, true).await,
            Step::Uninstall(s) => self.install(s, false).await,
            Step::AddMember(m) => self.add_member(m).await,
            Step::RemoveMember(m) => self.remove_member(m).await,
            Step::Say(s) => self.say(s).await,
            Step::Post(p) => self.post(p).await,
            Step::Block(u) => self.block(u).await,
            Step::Unblock(u) => self.unblock(u).await,
            Step::CallBot(h) => self.call_bot(h).await,
            Step::Graph(h) => self.graph(h).await,
            Step::Wait(d) => self.wait(d).await,
            Step::ExpectMessage(q) => self.expect_message(q).await,
            Step::ExpectNoMessage(q) => self.expect_no_message(q).await,
            Step::ExpectCount(q) => self.expect_count(q).await,
            Step::ExpectActivity(a) => self.expect_activity(a).await,
            Step::Fault(f) => self.fault(f),
            Step::ExpectFault(e) => self.expect_fault(e).await,
            Step::ExpectRetriesHonoured(_) => self.expect_retries_honoured().await,
            Step::ExpectDelivery(d) => self.expect_delivery(d).await,
        }
    }
}
