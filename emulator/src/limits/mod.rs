//! Teams' and Graph's limits, and faults injected on purpose, on the emulator's clock.
//!
//! Throttling follows the published limits: per bot per conversation for sends (7 in 1 s, 8 in
//! 2 s, 60 in 30 s, 1800 in an hour) and roster reads (14/1 s, 16/2 s, 120/30 s, 3600/h), all bots
//! per conversation (14/1 s, 16/2 s for sends), and per app per tenant for Graph's installation
//! routes (GET 60/s, POST 30/s, DELETE 15/s). Over a limit the call answers 429 with
//! `Retry-After`, the seconds until the window has room again.
//!
//! Faults are queued by tests and scenarios (`/_emulator/faults`): the next matching calls answer
//! a chosen status (`times`), or each matching call does with a `probability` drawn from a
//! generator seeded with `--seed`, so a flaky run can be replayed. A fault is asked for as a
//! [`Fault`] and queued resolved, as a [`FaultSpec`].

mod fault;
mod target;

pub use fault::{Fault, FaultSpec, FaultState};
pub use target::Target;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use uuid::Uuid;

/// What is being limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Connector: send, reply, update, delete, create conversation.
    Send,
    /// Connector: members, paged members, one member, team details and channels.
    Roster,
    /// Graph: reading users, the catalog, installations, chats and their messages.
    GraphRead,
    /// Graph: installing or upgrading an app.
    GraphInstall,
    /// Graph: uninstalling an app.
    GraphUninstall,
}

impl Operation {
    /// Connector calls are limited per conversation; Graph calls per app, about a user or team.
    pub fn is_connector(self) -> bool {
        matches!(self, Operation::Send | Operation::Roster)
    }
}

/// A limit was hit or a fault fired: the answer to give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// The error code, or `None` for the surface's usual code for the status.
    pub code: Option<String>,
    pub message: String,
    pub retry_after: Option<u64>,
}

/// One rule: at most `limit` events in `window`.
struct Rule {
    window: Duration,
    limit: usize,
}

const fn rule(secs: i64, limit: usize) -> Rule {
    Rule {
        window: Duration::seconds(secs),
        limit,
    }
}

const SEND_PER_BOT: &[Rule] = &[rule(1, 7), rule(2, 8), rule(30, 60), rule(3600, 1800)];
const SEND_ALL_BOTS: &[Rule] = &[rule(1, 14), rule(2, 16)];
const ROSTER_PER_BOT: &[Rule] = &[rule(1, 14), rule(2, 16), rule(30, 120), rule(3600, 3600)];
const ROSTER_ALL_BOTS: &[Rule] = &[rule(1, 28), rule(2, 32)];
const GRAPH_READ: &[Rule] = &[rule(1, 60)];
const GRAPH_INSTALL: &[Rule] = &[rule(1, 30)];
const GRAPH_UNINSTALL: &[Rule] = &[rule(1, 15)];

/// Until when a caller must wait, and when it was told.
type Wait = (DateTime<Utc>, DateTime<Utc>);

/// A call that arrives this soon after a refusal was in flight when it was given, not a retry.
const IN_FLIGHT_GRACE: Duration = Duration::milliseconds(250);
/// Early retries kept for reports; the count goes on past it.
pub const MAX_EARLY_RECORDS: usize = 1000;
/// The longest window of any rule: older events count for nothing.
const LONGEST_WINDOW: Duration = Duration::seconds(3600);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    BotConversation(Operation, Uuid, String),
    Conversation(Operation, String),
    AppTenant(Operation, Uuid, Uuid, Option<Uuid>),
}

/// A call that came back before the `Retry-After` it was given had passed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EarlyRetry {
    pub operation: Operation,
    /// The conversation (Connector) or the app and tenant (Graph) that was told to wait.
    pub about: String,
    pub at: DateTime<Utc>,
    #[serde(rename = "earlyByMs")]
    pub early_by_ms: i64,
}

pub struct Limits {
    throttling: bool,
    events: Mutex<HashMap<Key, VecDeque<DateTime<Utc>>>>,
    /// Who was told to wait until when (and when they were told), and who did not.
    not_before: Mutex<HashMap<(Operation, String), Wait>>,
    early: Mutex<Vec<EarlyRetry>>,
    early_total: std::sync::atomic::AtomicUsize,
    admitted: std::sync::atomic::AtomicUsize,
    faults: Mutex<Vec<FaultState>>,
    rng: Mutex<StdRng>,
    pub seed: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(true, 0)
    }
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("throttling", &self.throttling)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl Limits {
    pub fn new(throttling: bool, seed: u64) -> Self {
        Self {
            throttling,
            events: Mutex::default(),
            not_before: Mutex::default(),
            early: Mutex::default(),
            early_total: Default::default(),
            admitted: Default::default(),
            faults: Mutex::default(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            seed,
        }
    }

    pub fn add_fault(&self, spec: FaultSpec) -> Result<(), String> {
        spec.check()?;
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(FaultState { spec, fired: 0 });
        Ok(())
    }

    pub fn faults(&self) -> Vec<FaultState> {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many calls retried early in all (the list keeps the latest [`MAX_EARLY_RECORDS`]).
    pub fn early_retry_count(&self) -> usize {
        self.early_total.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Calls that retried before their `Retry-After` had passed.
    pub fn early_retries(&self) -> Vec<EarlyRetry> {
        self.early.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Refuses (again, as Teams does) a call made before the `Retry-After` its caller was given,
    /// and records it; remembers the wait a refusal gives.
    /// Refuses (again, as Teams does) a call made before the `Retry-After` its caller was given,
    /// and records it, before the call can use up a fault or count against a limit; otherwise
    /// makes the `attempt` and remembers the wait a refusal gives.
    fn retry_discipline(
        &self,
        now: DateTime<Utc>,
        operation: Operation,
        about: &str,
        attempt: impl FnOnce() -> Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        let key = (operation, about.to_string());
        let mut not_before = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        not_before.retain(|_, (until, _)| *until > now);
        if let Some((until, refused_at)) = not_before.get(&key).copied() {
            let early_by_ms = (until - now).num_milliseconds();
            // A call sent before the refusal could have reached its caller is not a retry.
            if now - refused_at >= IN_FLIGHT_GRACE {
                let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
                if early.len() >= MAX_EARLY_RECORDS {
                    early.remove(0);
                }
                early.push(EarlyRetry {
                    operation,
                    about: about.to_string(),
                    at: now,
                    early_by_ms,
                });
                self.early_total
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let secs = (early_by_ms.max(1) as u64).div_ceil(1000);
            return Err(Refusal {
                status: 429,
                code: None,
                message: format!(
                    "Retried {early_by_ms} ms before the Retry-After given earlier had passed."
                ),
                retry_after: Some(secs),
            });
        }
        let outcome = attempt();
        if let Err(refusal) = &outcome
            && let Some(secs) = refusal.retry_after
        {
            not_before.insert(key, (now + Duration::seconds(secs as i64), now));
        }
        outcome
    }

    /// Forgets every count, wait, early retry and fault.
    pub fn reset(&self) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.not_before
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.early.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.early_total
            .store(0, std::sync::atomic::Ordering::SeqCst);
        self.clear_faults();
    }

    pub fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// A Connector call by `bot` in `conversation`: a fault, a throttle, or admitted (and counted).
    pub fn admit_connector(
        &self,
        now: DateTime<Utc>,
        operation: Operation,
        bot: Uuid,
        conversation: &str,
    ) -> Result<(), Refusal> {
        let base = conversation
            .split(";messageid=")
            .next()
            .unwrap_or(conversation);
        let attempt = || {
            self.fault(operation, Some(conversation))
                .and_then(|()| self.connector_limits(now, operation, bot, base))
        };
        self.retry_discipline(now, operation, &format!("{bot} {base}"), attempt)
    }

    fn connector_limits(
        &self,
        now: DateTime<Utc>,
        operation: Operation,
        bot: Uuid,
        base: &str,
    ) -> Result<(), Refusal> {
        let (per_bot, all_bots) = match operation {
            Operation::Roster => (ROSTER_PER_BOT, ROSTER_ALL_BOTS),
            _ => (SEND_PER_BOT, SEND_ALL_BOTS),
        };
        // A conversation's threads share its limits.
        self.throttle(
            now,
            &[
                (
                    Key::BotConversation(operation, bot, base.to_string()),
                    per_bot,
                ),
                (Key::Conversation(operation, base.to_string()), all_bots),
            ],
            "Too many requests for this conversation.",
        )
    }

    /// A Graph call by `app` in `tenant`.
    /// A Graph call by `app` in `tenant`, for `user` when the token is delegated (Graph counts a
    /// signed-in user's calls apart from the app's own).
    pub fn admit_graph(
        &self,
        now: DateTime<Utc>,
        operation: Operation,
        caller: (Uuid, Uuid, Option<Uuid>),
        about: Option<&str>,
    ) -> Result<(), Refusal> {
        let rules = match operation {
            Operation::GraphInstall => GRAPH_INSTALL,
            Operation::GraphUninstall => GRAPH_UNINSTALL,
            _ => GRAPH_READ,
        };
        let (app, tenant, user) = caller;
        let attempt = || {
            self.fault(operation, about).and_then(|()| {
                self.throttle(
                    now,
                    &[(Key::AppTenant(operation, app, tenant, user), rules)],
                    "Please retry again later.",
                )
            })
        };
        let who = match user {
            Some(u) => format!("{app} {tenant} {u}"),
            None => format!("{app} {tenant}"),
        };
        self.retry_discipline(now, operation, &who, attempt)
    }

    fn fault(&self, operation: Operation, about: Option<&str>) -> Result<(), Refusal> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        for f in faults.iter_mut() {
            let s = &f.spec;
            if s.operation != operation {
                continue;
            }
            if let Some(c) = &s.about
                && about.is_none_or(|a| a.split(";messageid=").next() != Some(c.as_str()))
            {
                continue;
            }
            let fire = match (s.probability, s.times) {
                (Some(p), times) => {
                    times.is_none_or(|t| f.fired < t)
                        && self
                            .rng
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .gen_bool(p)
                }
                (None, times) => f.fired < times.unwrap_or(1),
            };
            if fire {
                f.fired += 1;
                return Err(Refusal {
                    status: s.status,
                    code: s.code.clone(),
                    message: s
                        .message
                        .clone()
                        .unwrap_or_else(|| "Injected fault.".into()),
                    retry_after: s.retry_after,
                });
            }
        }
        Ok(())
    }

    fn throttle(
        &self,
        now: DateTime<Utc>,
        checks: &[(Key, &[Rule])],
        message: &str,
    ) -> Result<(), Refusal> {
        if !self.throttling {
            return Ok(());
        }
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        // Now and then, forget conversations that have been quiet for longer than any window.
        if self
            .admitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % 1024
            == 1023
        {
            events.retain(|_, list| list.back().is_some_and(|t| *t > now - LONGEST_WINDOW));
        }
        let mut wait: Option<Duration> = None;
        for (key, rules) in checks {
            let Some(list) = events.get_mut(key) else {
                continue;
            };
            let longest = rules
                .iter()
                .map(|r| r.window)
                .max()
                .unwrap_or(Duration::zero());
            while list.front().is_some_and(|t| *t <= now - longest) {
                list.pop_front();
            }
            for r in rules.iter() {
                let in_window: Vec<&DateTime<Utc>> =
                    list.iter().filter(|t| **t > now - r.window).collect();
                if in_window.len() >= r.limit {
                    // room again when the oldest event of the full window leaves it
                    let oldest = in_window[in_window.len() - r.limit];
                    let until = *oldest + r.window - now;
                    wait = Some(wait.map_or(until, |w| w.max(until)));
                }
            }
        }
        if let Some(w) = wait {
            let secs = (w.num_milliseconds().max(1) as u64).div_ceil(1000);
            return Err(Refusal {
                status: 429,
                code: None,
                message: message.into(),
                retry_after: Some(secs),
            });
        }
        for (key, _) in checks {
            events.entry(key.clone()).or_default().push_back(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eighth_send_in_a_second_is_throttled_until_the_window_has_room() {
        let limits = Limits::new(true, 0);
        let t0 = Utc::now();
        let bot = Uuid::from_u128(1);
        for i in 0..7 {
            limits
                .admit_connector(
                    t0 + Duration::milliseconds(i * 10),
                    Operation::Send,
                    bot,
                    "a:1",
                )
                .unwrap();
        }
        let refused = limits
            .admit_connector(
                t0 + Duration::milliseconds(100),
                Operation::Send,
                bot,
                "a:1",
            )
            .unwrap_err();
        assert_eq!(refused.status, 429);
        assert_eq!(refused.retry_after, Some(1));
        // another conversation is not affected
        limits
            .admit_connector(
                t0 + Duration::milliseconds(100),
                Operation::Send,
                bot,
                "a:2",
            )
            .unwrap();
        // after the Retry-After there is room for one more (8 in 2 s), then not
        limits
            .admit_connector(
                t0 + Duration::milliseconds(1100),
                Operation::Send,
                bot,
                "a:1",
            )
            .unwrap();
        let refused = limits
            .admit_connector(
                t0 + Duration::milliseconds(1150),
                Operation::Send,
                bot,
                "a:1",
            )
            .unwrap_err();
        assert_eq!(refused.retry_after, Some(1));
        assert!(
            limits
                .admit_connector(t0 + Duration::seconds(3), Operation::Send, bot, "a:1")
                .is_ok()
        );
    }

    #[test]
    fn a_retry_before_retry_after_is_refused_again_and_recorded() {
        let limits = Limits::new(false, 0);
        limits
            .add_fault(FaultSpec {
                operation: Operation::Send,
                status: 429,
                code: None,
                message: None,
                retry_after: Some(2),
                times: Some(1),
                probability: None,
                about: None,
            })
            .unwrap();
        let (t0, bot) = (Utc::now(), Uuid::nil());
        assert_eq!(
            limits
                .admit_connector(t0, Operation::Send, bot, "a:1")
                .unwrap_err()
                .retry_after,
            Some(2)
        );
        let again = limits
            .admit_connector(
                t0 + Duration::milliseconds(500),
                Operation::Send,
                bot,
                "a:1",
            )
            .unwrap_err();
        assert_eq!((again.status, again.retry_after), (429, Some(2)));
        assert_eq!(limits.early_retries().len(), 1);
        assert_eq!(limits.early_retries()[0].early_by_ms, 1500);
        assert!(
            limits
                .admit_connector(t0 + Duration::seconds(2), Operation::Send, bot, "a:1")
                .is_ok()
        );
        assert_eq!(limits.early_retries().len(), 1);
    }

    #[test]
    fn an_early_retry_uses_up_no_fault_and_counts_for_no_limit() {
        let limits = Limits::new(true, 0);
        let fault = FaultSpec {
            operation: Operation::Send,
            status: 503,
            code: None,
            message: None,
            retry_after: Some(5),
            times: Some(2),
            probability: None,
            about: None,
        };
        limits.add_fault(fault).unwrap();
        let (t0, bot) = (Utc::now(), Uuid::nil());
        assert_eq!(
            limits
                .admit_connector(t0, Operation::Send, bot, "a:1")
                .unwrap_err()
                .status,
            503
        );
        for i in 1..=20 {
            let early = limits
                .admit_connector(
                    t0 + Duration::seconds(1) + Duration::milliseconds(i),
                    Operation::Send,
                    bot,
                    "a:1",
                )
                .unwrap_err();
            assert_eq!(early.status, 429);
        }
        assert_eq!(
            limits.faults()[0].fired,
            1,
            "early calls did not reach the fault"
        );
        // After the wait, the second fault fires, and then the chat takes its seven sends.
        let later = t0 + Duration::seconds(5);
        assert_eq!(
            limits
                .admit_connector(later, Operation::Send, bot, "a:1")
                .unwrap_err()
                .status,
            503
        );
        let after = later + Duration::seconds(5);
        for i in 0..7 {
            limits
                .admit_connector(
                    after + Duration::milliseconds(i),
                    Operation::Send,
                    bot,
                    "a:1",
                )
                .unwrap();
        }
        assert_eq!(limits.early_retry_count(), 20);
    }

    #[test]
    fn a_call_already_in_flight_when_refused_is_not_an_early_retry() {
        let limits = Limits::new(false, 0);
        let fault = FaultSpec {
            operation: Operation::Send,
            status: 429,
            code: None,
            message: None,
            retry_after: Some(2),
            times: Some(1),
            probability: None,
            about: None,
        };
        limits.add_fault(fault).unwrap();
        let (t0, bot) = (Utc::now(), Uuid::nil());
        assert!(
            limits
                .admit_connector(t0, Operation::Send, bot, "a:1")
                .is_err()
        );
        // sent at the same moment: refused as well, but not held against the caller
        assert!(
            limits
                .admit_connector(t0 + Duration::milliseconds(50), Operation::Send, bot, "a:1")
                .is_err()
        );
        assert!(limits.early_retries().is_empty());
    }

    #[test]
    fn throttling_can_be_switched_off() {
        let limits = Limits::new(false, 0);
        for _ in 0..100 {
            limits
                .admit_connector(Utc::now(), Operation::Send, Uuid::nil(), "a:1")
                .unwrap();
        }
    }

    #[test]
    fn faults_fire_the_given_number_of_times_or_by_seeded_chance() {
        let limits = Limits::new(true, 7);
        let spec = |times, probability| FaultSpec {
            operation: Operation::Send,
            status: 503,
            code: None,
            message: None,
            retry_after: Some(2),
            times,
            probability,
            about: Some("a:1".into()),
        };
        limits.add_fault(spec(Some(2), None)).unwrap();
        let now = Utc::now();
        assert!(
            limits
                .admit_connector(now, Operation::Send, Uuid::nil(), "a:2")
                .is_ok()
        );
        assert_eq!(
            limits
                .admit_connector(now, Operation::Send, Uuid::nil(), "a:1")
                .unwrap_err()
                .retry_after,
            Some(2)
        );
        let later = now + Duration::seconds(2);
        let second = limits
            .admit_connector(later, Operation::Send, Uuid::nil(), "a:1;messageid=5")
            .unwrap_err();
        assert_eq!(
            second.status, 503,
            "the second of two faults, on a thread of the conversation"
        );
        let after = later + Duration::seconds(2);
        assert!(
            limits
                .admit_connector(after, Operation::Send, Uuid::nil(), "a:1")
                .is_ok()
        );
        assert!(limits.early_retries().is_empty());
        let draws = |seed| {
            let l = Limits::new(false, seed);
            l.add_fault(FaultSpec {
                retry_after: None,
                ..spec(None, Some(0.5))
            })
            .unwrap();
            (0..32)
                .map(|_| {
                    l.admit_connector(now, Operation::Send, Uuid::nil(), "a:1")
                        .is_err()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            draws(42),
            draws(42),
            "the same seed replays the same faults"
        );
        assert!(draws(42).iter().any(|x| *x) && draws(42).iter().any(|x| !*x));
        assert!(limits.add_fault(spec(Some(0), None)).is_err());
        assert!(
            limits
                .add_fault(FaultSpec {
                    status: 200,
                    ..spec(None, None)
                })
                .is_err()
        );
    }
}
