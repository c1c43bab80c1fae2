//! Faults injected on purpose: [`Fault`] is one as a person asks for it (a scenario's `fault:`
//! step, `POST /_emulator/faults`, or the builder in Rust), naming its target the way people
//! do; [`Fault::resolve`] turns it into the [`FaultSpec`] the limits match calls against.

use super::{Operation, Target};
use crate::tenant::World;
use serde::{Deserialize, Serialize};

/// A fault to inject, its target named by handle; the same fields as the scenario step and the
/// control API take (`docs/scenarios.md`).
///
/// ```
/// use teams_emulator::limits::{Fault, Operation};
/// let fault = Fault::on(Operation::Send).status(429).retry_after(2).times(3).for_user("megan");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FaultFields", into = "FaultFields")]
pub struct Fault {
    pub operation: Operation,
    /// The HTTP status to answer (400–599).
    pub status: u16,
    /// The error code, or `None` for the surface's usual code for the status.
    pub code: Option<String>,
    pub message: Option<String>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
    /// Fire on the next N matching calls (default 1, unless `probability` is given).
    pub times: Option<u32>,
    /// Fire on each matching call with this probability (0–1), drawn from the seeded generator.
    pub probability: Option<f64>,
    /// Which calls: every one of the operation, or those about one user, team or conversation.
    pub target: Target,
}

impl Fault {
    /// What a fault written as JSON or YAML may say (the fields of `FaultFields`, below), for
    /// the message that refuses one that cannot be read.
    pub const FIELDS: &'static str = "Give operation (send, roster, graph_read, graph_install, \
        graph_uninstall) and status (400–599), and optionally code, message, retry_after (or \
        retryAfter), times, probability, and at most one of user, team (with channel), \
        conversation or about.";

    /// A fault on every call of `operation`, answering 503 once until told otherwise.
    pub fn on(operation: Operation) -> Self {
        Self {
            operation,
            status: 503,
            code: None,
            message: None,
            retry_after: None,
            times: None,
            probability: None,
            target: Target::Any,
        }
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    pub fn probability(mut self, probability: f64) -> Self {
        self.probability = Some(probability);
        self
    }

    /// Only calls about this user (key, UPN, id or `29:` id).
    pub fn for_user(mut self, user: impl Into<String>) -> Self {
        self.target = Target::User(user.into());
        self
    }

    /// Only calls about this team (key, name or id); for the Connector, its General channel.
    pub fn for_team(mut self, team: impl Into<String>) -> Self {
        self.target = Target::Team {
            team: team.into(),
            channel: None,
        };
        self
    }

    /// Only Connector calls in this channel (id or name) of the team.
    pub fn for_channel(mut self, team: impl Into<String>, channel: impl Into<String>) -> Self {
        self.target = Target::Team {
            team: team.into(),
            channel: Some(channel.into()),
        };
        self
    }

    /// Only Connector calls in this conversation (`a:…`, `19:…`, a channel's id).
    pub fn for_conversation(mut self, id: impl Into<String>) -> Self {
        self.target = Target::Conversation(id.into());
        self
    }

    /// Only calls about whatever `handle` names: a conversation, a user or a team.
    pub fn about(mut self, handle: impl Into<String>) -> Self {
        self.target = Target::About(handle.into());
        self
    }

    /// What can be checked without the world: the answer, and a target the operation can have.
    pub fn check(&self) -> Result<(), String> {
        check_answer(self.status, self.probability, self.times)?;
        self.target.check(self.operation)
    }

    /// The fault as the limits match it, its target named as calls name it to them: for the
    /// Connector a chat's Graph id or a channel's id, for Graph a user's or team's object id.
    pub fn resolve(&self, world: &World) -> Result<FaultSpec, String> {
        self.check()?;
        let about = self.target.resolve(world, self.operation)?;
        Ok(FaultSpec {
            operation: self.operation,
            status: self.status,
            code: self.code.clone(),
            message: self.message.clone(),
            retry_after: self.retry_after,
            times: self.times,
            probability: self.probability,
            about,
        })
    }
}

fn check_answer(status: u16, probability: Option<f64>, times: Option<u32>) -> Result<(), String> {
    if !(400..=599).contains(&status) {
        return Err(format!("status {status} is not an error status (400–599)"));
    }
    if let Some(p) = probability
        && !(0.0..=1.0).contains(&p)
    {
        return Err(format!("probability {p} is not between 0 and 1"));
    }
    if times == Some(0) {
        return Err("times must be at least 1".into());
    }
    Ok(())
}

/// Every field either surface has taken, flat; [`Fault`] is made from it once it names at most
/// one target.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultFields {
    operation: Operation,
    status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, alias = "retryAfter", skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    times: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    probability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    about: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation: Option<String>,
}

impl TryFrom<FaultFields> for Fault {
    type Error = String;

    fn try_from(f: FaultFields) -> Result<Self, String> {
        let named: Vec<&str> = [
            ("about", f.about.is_some()),
            ("user", f.user.is_some()),
            ("team", f.team.is_some()),
            ("conversation", f.conversation.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        if let [first, second, ..] = named.as_slice() {
            return Err(format!(
                "give one of 'about', 'user', 'team' or 'conversation', not both '{first}' and '{second}'"
            ));
        }
        let target = match (f.about, f.user, f.team, f.conversation, f.channel) {
            (_, _, None, _, Some(_)) => return Err("'channel' goes with 'team'".into()),
            (Some(about), ..) => Target::About(about),
            (_, Some(user), ..) => Target::User(user),
            (_, _, Some(team), _, channel) => Target::Team { team, channel },
            (_, _, _, Some(id), _) => Target::Conversation(id),
            _ => Target::Any,
        };
        Ok(Self {
            operation: f.operation,
            status: f.status,
            code: f.code,
            message: f.message,
            retry_after: f.retry_after,
            times: f.times,
            probability: f.probability,
            target,
        })
    }
}

impl From<Fault> for FaultFields {
    fn from(f: Fault) -> Self {
        let mut fields = Self {
            operation: f.operation,
            status: f.status,
            code: f.code,
            message: f.message,
            retry_after: f.retry_after,
            times: f.times,
            probability: f.probability,
            about: None,
            user: None,
            team: None,
            channel: None,
            conversation: None,
        };
        match f.target {
            Target::Any => {}
            Target::About(h) => fields.about = Some(h),
            Target::User(u) => fields.user = Some(u),
            Target::Team { team, channel } => (fields.team, fields.channel) = (Some(team), channel),
            Target::Conversation(id) => fields.conversation = Some(id),
        }
        fields
    }
}

/// A fault as the limits match it: `about` is the name calls give the limits (see
/// [`Fault::resolve`]), not a handle. [`super::Limits::add_fault`] takes this; nobody writes
/// one by hand, so it is only ever serialized (`GET /_emulator/faults`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FaultSpec {
    pub operation: Operation,
    /// The HTTP status to answer (400–599).
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
    /// Fire on the next N matching calls (default 1, unless `probability` is given).
    pub times: Option<u32>,
    /// Fire on each matching call with this probability (0–1), drawn from the seeded generator.
    pub probability: Option<f64>,
    /// Only calls about this: a conversation for Connector operations (its Graph chat id or
    /// channel id, as [`crate::tenant::Conversation`] resolves it), a user id for Graph ones.
    pub about: Option<String>,
}

impl FaultSpec {
    pub fn check(&self) -> Result<(), String> {
        check_answer(self.status, self.probability, self.times)
    }
}

/// A queued fault and how often it has fired.
#[derive(Clone, Debug, Serialize)]
pub struct FaultState {
    pub spec: FaultSpec,
    pub fired: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::EmulatorConfig;
    use serde_json::json;

    fn world() -> World {
        EmulatorConfig::default_tenant().build_world(Clock::system())
    }

    fn yaml(text: &str) -> Result<Fault, String> {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }

    fn from_json(value: serde_json::Value) -> Result<Fault, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn the_builder_reads_as_the_fault_it_makes() {
        let f = Fault::on(Operation::Send)
            .status(429)
            .retry_after(2)
            .times(3)
            .code("Throttled")
            .message("slow down")
            .for_user("megan");
        assert_eq!(
            f,
            Fault {
                operation: Operation::Send,
                status: 429,
                code: Some("Throttled".into()),
                message: Some("slow down".into()),
                retry_after: Some(2),
                times: Some(3),
                probability: None,
                target: Target::User("megan".into()),
            }
        );
        let f = Fault::on(Operation::GraphInstall).probability(0.5);
        assert_eq!(
            (f.status, f.probability, f.target),
            (503, Some(0.5), Target::Any)
        );
        assert_eq!(
            Fault::on(Operation::Send)
                .for_team("Mark 8 Project Team")
                .target,
            Target::Team {
                team: "Mark 8 Project Team".into(),
                channel: None
            }
        );
        assert_eq!(
            Fault::on(Operation::Send).for_conversation("a:1").target,
            Target::Conversation("a:1".into())
        );
    }

    #[test]
    fn the_scenario_step_and_the_control_api_shapes_both_deserialize() {
        // as docs/scenarios.md writes the step
        let step = yaml("{ operation: send, status: 429, retry_after: 2, user: megan }").unwrap();
        assert_eq!(
            step,
            Fault::on(Operation::Send)
                .status(429)
                .retry_after(2)
                .for_user("megan")
        );
        let step =
            yaml("{ operation: send, status: 503, times: 2, team: mark8, channel: General }")
                .unwrap();
        assert_eq!(
            step,
            Fault::on(Operation::Send)
                .times(2)
                .for_channel("mark8", "General")
        );
        // as README.md and the tests post to /_emulator/faults
        let api = from_json(
            json!({"operation": "send", "status": 503, "times": 2, "about": "a:1",
            "code": "X", "message": "m", "probability": 0.25}),
        )
        .unwrap();
        assert_eq!(
            api,
            Fault::on(Operation::Send)
                .times(2)
                .about("a:1")
                .code("X")
                .message("m")
                .probability(0.25)
        );
        let camel = from_json(json!({"operation": "graph_read", "status": 429, "retryAfter": 30}));
        assert_eq!(camel.unwrap().retry_after, Some(30));
        let conversation =
            from_json(json!({"operation": "roster", "status": 500, "conversation": "a:1"}));
        assert_eq!(
            conversation.unwrap().target,
            Target::Conversation("a:1".into())
        );
        // and a fault written out reads back the same
        let f = Fault::on(Operation::Send).for_channel("mark8", "General");
        assert_eq!(from_json(serde_json::to_value(&f).unwrap()).unwrap(), f);
    }

    #[test]
    fn a_fault_that_cannot_be_meant_is_refused_with_a_reason() {
        for (bad, reason) in [
            (
                json!({"operation": "send", "status": 500, "user": "megan", "team": "mark8"}),
                "not both 'user' and 'team'",
            ),
            (
                json!({"operation": "send", "status": 500, "about": "megan", "conversation": "a:1"}),
                "not both 'about' and 'conversation'",
            ),
            (
                json!({"operation": "send", "status": 500, "channel": "General"}),
                "'channel' goes with 'team'",
            ),
            (
                json!({"operation": "send", "status": 500, "user": "megan", "channel": "General"}),
                "'channel' goes with 'team'",
            ),
            (
                json!({"operation": "send", "status": 500, "chanel": "General"}),
                "unknown field",
            ),
            (json!({"operation": "fly", "status": 500}), "fly"),
            (json!({"status": 500}), "operation"),
            (json!({"operation": "send"}), "status"),
        ] {
            let e = from_json(bad.clone()).unwrap_err();
            assert!(e.contains(reason), "{bad}: {e}");
        }
        let w = world();
        for (fault, reason) in [
            (
                Fault::on(Operation::Send).status(200),
                "not an error status",
            ),
            (Fault::on(Operation::Send).times(0), "at least 1"),
            (
                Fault::on(Operation::Send).probability(1.5),
                "between 0 and 1",
            ),
            (
                Fault::on(Operation::GraphRead).for_conversation("a:1"),
                "'conversation' narrows Connector faults",
            ),
            (
                Fault::on(Operation::GraphInstall).for_channel("mark8", "General"),
                "'channel' narrows Connector faults",
            ),
        ] {
            let e = fault.resolve(&w).unwrap_err();
            assert!(e.contains(reason), "{fault:?}: {e}");
        }
    }
}
