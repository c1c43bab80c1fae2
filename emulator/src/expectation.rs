//! Expectations on what bots are sent, as wiremock's are on requests: an activity that should
//! arrive ([`ActivityExpectation`]) or should not ([`NoActivityExpectation`]), polled with a
//! deadline, and a failure ([`ExpectationFailed`]) that lists every activity that did arrive.

use crate::delivery::DeliveryRecord;
use crate::state::AppState;
use serde_json::Value;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

/// How long [`crate::EmulatorHandle::expect_activity`] waits unless told.
const DEFAULT_WITHIN: Duration = Duration::from_secs(10);
/// How long [`crate::EmulatorHandle::expect_no_activity`] watches unless told.
const DEFAULT_QUIET: Duration = Duration::from_secs(1);
/// The longest pause between two looks at the delivery records.
const MAX_POLL: Duration = Duration::from_millis(50);

type Predicate = Box<dyn Fn(&Value) -> bool + Send + Sync>;

/// What an expectation looks for among the activities delivered to bots.
struct Filter {
    state: AppState,
    activity_type: String,
    user: Option<String>,
    conversation: Option<String>,
    predicates: Vec<Predicate>,
}

/// A [`Filter`] with its user and conversation turned into the ids activities carry.
struct Resolved<'a> {
    filter: &'a Filter,
    /// The user's object id, `29:` id, and personal conversation ids with each bot.
    user: Option<(String, String, Vec<String>)>,
    conversations: Vec<String>,
}

impl Filter {
    fn new(state: AppState, activity_type: &str) -> Self {
        Self {
            state,
            activity_type: activity_type.to_string(),
            user: None,
            conversation: None,
            predicates: Vec::new(),
        }
    }

    fn describe(&self, within: Duration) -> String {
        let mut what = format!("a `{}` activity", self.activity_type);
        if let Some(user) = &self.user {
            what.push_str(&format!(" for {user}"));
        }
        if let Some(conversation) = &self.conversation {
            what.push_str(&format!(" in conversation {conversation}"));
        }
        match self.predicates.len() {
            0 => {}
            1 => what.push_str(" matching the predicate"),
            n => what.push_str(&format!(" matching all {n} predicates")),
        }
        what.push_str(&format!(" within {within:?}"));
        what
    }

    fn resolve(&self, within: Duration) -> Result<Resolved<'_>, ExpectationFailed> {
        let user = match &self.user {
            None => None,
            Some(handle) => {
                let found = self.state.read(|world| {
                    world.tenants().iter().find_map(|t| {
                        let u = t.user_by_handle(handle).ok()?;
                        let conversations = t
                            .catalog()
                            .iter()
                            .filter_map(|a| a.bot_id)
                            .map(|bot| {
                                crate::ids::personal_conversation_id(
                                    &crate::ids::one_on_one_chat_id(bot, u.id),
                                )
                            })
                            .collect();
                        Some((u.id.to_string(), u.mri.clone(), conversations))
                    })
                });
                match found {
                    Some(found) => Some(found),
                    None => {
                        return Err(ExpectationFailed {
                            expected: self.describe(within),
                            problem: format!("no user '{handle}' in the emulated tenants"),
                            records: self.state.delivery.records(),
                        });
                    }
                }
            }
        };
        let conversations = match &self.conversation {
            None => vec![],
            Some(id) if id.starts_with("19:") && id.ends_with("@unq.gbl.spaces") => {
                vec![id.clone(), crate::ids::personal_conversation_id(id)]
            }
            Some(id) => vec![id.clone()],
        };
        Ok(Resolved {
            filter: self,
            user,
            conversations,
        })
    }
}

impl Resolved<'_> {
    fn matches(&self, activity: &Value) -> bool {
        if activity["type"] != self.filter.activity_type.as_str() {
            return false;
        }
        let conversation = activity["conversation"]["id"].as_str().unwrap_or_default();
        if let Some((id, mri, personal)) = &self.user {
            let named = |m: &Value| m["id"] == mri.as_str() || m["aadObjectId"] == id.as_str();
            let about_user = named(&activity["from"])
                || personal.iter().any(|c| c == conversation)
                || ["membersAdded", "membersRemoved"].iter().any(|k| {
                    activity[*k]
                        .as_array()
                        .is_some_and(|members| members.iter().any(named))
                });
            if !about_user {
                return false;
            }
        }
        if !self.conversations.is_empty()
            && !self.conversations.iter().any(|c| {
                conversation == c
                    || conversation
                        .strip_prefix(c.as_str())
                        .is_some_and(|rest| rest.starts_with(";messageid="))
            })
        {
            return false;
        }
        self.filter.predicates.iter().all(|p| p(activity))
    }

    fn first_match(&self, records: &[DeliveryRecord]) -> Option<Value> {
        records
            .iter()
            .find(|r| self.matches(&r.activity))
            .map(|r| r.activity.clone())
    }

    /// Looks at the delivery records, less often as time goes by, until one matches (`Ok`, with
    /// the records there were then) or `within` has passed (`Err`, with every record there was):
    /// what both kinds of expectation wait for, each reading the outcome its own way.
    async fn first_within(
        &self,
        within: Duration,
    ) -> Result<(Value, Vec<DeliveryRecord>), Vec<DeliveryRecord>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut wait = Duration::from_millis(5);
        loop {
            let records = self.filter.state.delivery.records();
            if let Some(found) = self.first_match(&records) {
                return Ok((found, records));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(records);
            }
            pause(&mut wait, deadline).await;
        }
    }
}

/// The pause before the next look at the records: short at first, never past the deadline.
async fn pause(wait: &mut Duration, deadline: tokio::time::Instant) {
    let until = (tokio::time::Instant::now() + *wait).min(deadline);
    tokio::time::sleep_until(until).await;
    *wait = (*wait * 2).min(MAX_POLL);
}

/// An activity a bot should be sent: see [`crate::EmulatorHandle::expect_activity`].
#[must_use = "an expectation does nothing until it is awaited"]
pub struct ActivityExpectation {
    filter: Filter,
    within: Duration,
}

impl ActivityExpectation {
    pub(crate) fn new(state: AppState, activity_type: &str) -> Self {
        Self {
            filter: Filter::new(state, activity_type),
            within: DEFAULT_WITHIN,
        }
    }

    /// How long to wait (10 s unless told).
    pub fn within(mut self, timeout: Duration) -> Self {
        self.within = timeout;
        self
    }

    /// Only activities about this user (key, UPN, object id or `29:` id): from them, in their
    /// 1:1 chat with a bot, or adding or removing them.
    pub fn for_user(mut self, user: &str) -> Self {
        self.filter.user = Some(user.to_string());
        self
    }

    /// Only activities in this conversation (its Connector id, a 1:1 chat's Graph id, or a
    /// channel, whose threads count too).
    pub fn in_conversation(mut self, conversation: &str) -> Self {
        self.filter.conversation = Some(conversation.to_string());
        self
    }

    /// Only activities for which `predicate` holds (all of them, when given more than once).
    pub fn matching(mut self, predicate: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Self {
        self.filter.predicates.push(Box::new(predicate));
        self
    }

    /// The first matching activity, or, once the time is up, what did arrive instead.
    pub async fn await_ok(self) -> Result<Value, ExpectationFailed> {
        let resolved = self.filter.resolve(self.within)?;
        match resolved.first_within(self.within).await {
            Ok((found, _)) => Ok(found),
            Err(records) => Err(ExpectationFailed {
                expected: self.filter.describe(self.within),
                problem: "none arrived".into(),
                records,
            }),
        }
    }
}

impl IntoFuture for ActivityExpectation {
    type Output = Value;
    type IntoFuture = Pin<Box<dyn Future<Output = Value> + Send>>;

    /// The first matching activity; panics with every activity that did arrive when none does.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match self.await_ok().await {
                Ok(activity) => activity,
                Err(failed) => panic!("{failed}"),
            }
        })
    }
}

/// An activity no bot may be sent: see [`crate::EmulatorHandle::expect_no_activity`].
#[must_use = "an expectation does nothing until it is awaited"]
pub struct NoActivityExpectation {
    filter: Filter,
    within: Duration,
}

impl NoActivityExpectation {
    pub(crate) fn new(state: AppState, activity_type: &str) -> Self {
        Self {
            filter: Filter::new(state, activity_type),
            within: DEFAULT_QUIET,
        }
    }

    /// How long to watch (1 s unless told).
    pub fn within(mut self, window: Duration) -> Self {
        self.within = window;
        self
    }

    /// See [`ActivityExpectation::for_user`].
    pub fn for_user(mut self, user: &str) -> Self {
        self.filter.user = Some(user.to_string());
        self
    }

    /// See [`ActivityExpectation::in_conversation`].
    pub fn in_conversation(mut self, conversation: &str) -> Self {
        self.filter.conversation = Some(conversation.to_string());
        self
    }

    /// See [`ActivityExpectation::matching`].
    pub fn matching(mut self, predicate: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Self {
        self.filter.predicates.push(Box::new(predicate));
        self
    }

    /// `Ok` once the window has passed without a matching activity; fails as soon as one arrives.
    pub async fn await_ok(self) -> Result<(), ExpectationFailed> {
        let resolved = self.filter.resolve(self.within)?;
        match resolved.first_within(self.within).await {
            Ok((found, records)) => Err(ExpectationFailed {
                expected: format!("no{}", &self.filter.describe(self.within)[1..]),
                problem: format!("one arrived: {}", summarize(&found)),
                records,
            }),
            Err(_) => Ok(()),
        }
    }
}

impl IntoFuture for NoActivityExpectation {
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    /// Panics, listing every activity delivered, when a matching one arrives in the window.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            if let Err(failed) = self.await_ok().await {
                panic!("{failed}");
            }
        })
    }
}

/// An expectation that did not hold. Its `Display` says what was expected and lists every
/// activity the bots were sent, with each delivery's outcome.
#[derive(Clone, Debug)]
pub struct ExpectationFailed {
    expected: String,
    problem: String,
    records: Vec<DeliveryRecord>,
}

impl ExpectationFailed {
    /// What was expected, in words.
    pub fn expected(&self) -> &str {
        &self.expected
    }

    /// Every delivery there was when the expectation gave up.
    pub fn deliveries(&self) -> &[DeliveryRecord] {
        &self.records
    }
}

impl std::fmt::Display for ExpectationFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "expected {}, but {}.", self.expected, self.problem)?;
        if self.records.is_empty() {
            return write!(f, "The bots were sent no activity.");
        }
        write!(f, "The bots were sent {} activities:", self.records.len())?;
        for r in &self.records {
            let outcome = match (r.ok, r.status, &r.error) {
                (true, Some(status), _) => status.to_string(),
                (true, None, _) => "ok".to_string(),
                (false, _, Some(error)) => format!("failed: {error}"),
                (false, Some(status), None) => format!("failed: {status}"),
                (false, None, None) => "failed".to_string(),
            };
            write!(
                f,
                "\n  {}. {} in {} → {outcome}",
                r.seq,
                summarize(&r.activity),
                r.conversation_id
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ExpectationFailed {}

/// One line for an activity, as scenario reports show it.
fn summarize(activity: &Value) -> String {
    crate::summary::summarize_activity(activity)
}
