//! Scenarios: readable YAML files that drive the emulator and a bot end to end and say what
//! must happen. This module finds and checks files (`validate`); [`run`] executes them;
//! [`report`] writes what a person and a CI system read.
//!
//! - [`model`]: the file format (documented in `docs/scenarios.md`).
//! - [`matching`]: partial JSON matches, message text, durations, `${…}` references.
//! - [`run`]: one fresh emulator and bot per scenario, the steps, the outcome.
//! - `bot`: the bot under test (reference bot or command), its environment, start and stop.
//! - `act`, `expect`: the two kinds of steps: acts change the world, expectations wait and check.
//! - `queries`: every question the runner and the checks ask of the emulated tenant.
//! - [`report`]: terminal summary, JUnit XML, `.transcript` files.

mod act;
mod bot;
mod expect;
pub mod matching;
pub mod model;
mod queries;
pub mod report;
pub mod run;

use crate::clock::Clock;
use crate::config::EmulatorConfig;
use crate::limits::Target;
use model::{ScenarioFile, Step};
use std::fmt;
use std::path::{Path, PathBuf};

/// A checked scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub file: PathBuf,
    pub spec: ScenarioFile,
    pub tenant: EmulatorConfig,
}

/// Why a scenario file cannot be used: `file:line:column: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, ":{l}:{c}")?,
            (Some(l), None) => write!(f, ":{l}")?,
            _ => {}
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for LoadError {}

/// The scenario files named by `paths`: files as given, folders searched for `*.yaml`/`*.yml`
/// (recursively, in name order).
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| LoadError {
            file: path.display().to_string(),
            line: None,
            column: None,
            reason: format!("cannot read: {e}"),
        })?;
        if meta.is_dir() {
            collect_yaml(path, &mut files).map_err(|e| LoadError {
                file: path.display().to_string(),
                line: None,
                column: None,
                reason: format!("cannot list: {e}"),
            })?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_yaml(&p, out)?;
        } else if is_scenario_file(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// `*.yaml` and `*.yml`, except tenant files (`*.tenant.yaml`) that scenarios refer to.
fn is_scenario_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    (name.ends_with(".yaml") || name.ends_with(".yml"))
        && !name.ends_with(".tenant.yaml")
        && !name.ends_with(".tenant.yml")
}

/// Reads and checks one scenario file.
pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError {
        file: file.clone(),
        line: None,
        column: None,
        reason: format!("cannot read: {e}"),
    })?;
    parse(&text, path)
}

/// Parses and checks scenario text; `path` places relative files and names errors.
pub fn parse(text: &str, path: &Path) -> Result<Scenario, LoadError> {
    let file = path.display().to_string();
    let spec: ScenarioFile = serde_saphyr::from_str(text).map_err(|e| {
        let location = e.location();
        LoadError {
            file: file.clone(),
            line: location.map(|l| l.line()),
            column: location.map(|l| l.column()),
            reason: e
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid YAML")
                .to_string(),
        }
    })?;
    let err = |line: Option<u64>, column: Option<u64>, reason: String| LoadError {
        file: file.clone(),
        line,
        column,
        reason,
    };
    if spec.name.trim().is_empty() {
        return Err(err(None, None, "'name' must not be empty".into()));
    }
    if spec.steps.is_empty() {
        return Err(err(
            None,
            None,
            "'steps' is empty: a scenario needs at least one step".into(),
        ));
    }
    let tenant = match &spec.tenant {
        None => EmulatorConfig::default_tenant(),
        Some(rel) => {
            let base = path.parent().unwrap_or(Path::new("."));
            EmulatorConfig::from_file(&base.join(rel))
                .map_err(|e| err(None, None, format!("tenant: {e}")))?
        }
    };
    if let Some(t) = &spec.bot.ready_timeout {
        matching::parse_duration(t)
            .map_err(|e| err(None, None, format!("bot.ready_timeout: {e}")))?;
    }
    let world = tenant.build_world(Clock::system());
    let checker = Checker { world: &world };
    for step in &spec.steps {
        let (line, column) = (Some(step.referenced.line()), Some(step.referenced.column()));
        checker
            .step(&step.value)
            .map_err(|reason| err(line, column, format!("{}: {reason}", step.value.name())))?;
    }
    Ok(Scenario {
        file: path.to_path_buf(),
        spec,
        tenant,
    })
}

/// Checks what can be known before running: names, durations, regexes, references.
struct Checker<'a> {
    world: &'a crate::tenant::World,
}

impl Checker<'_> {
    fn tenant(&self) -> &crate::tenant::Tenant {
        queries::scenario_tenant(self.world)
    }

    fn user(&self, handle: &str) -> Result<(), String> {
        if handle.contains("${") {
            return matching::check_references(handle, self.tenant());
        }
        queries::user(self.tenant(), handle)
            .map(|_| ())
            .map_err(|_| {
                format!(
                    "no user '{handle}' in tenant '{}' (users: {})",
                    self.tenant().display_name,
                    self.user_keys()
                )
            })
    }

    fn user_keys(&self) -> String {
        queries::user_keys(self.tenant()).join(", ")
    }

    fn team(&self, handle: &str) -> Result<&crate::tenant::Team, String> {
        queries::team(self.tenant(), handle).map_err(|_| {
            format!(
                "no team '{handle}' in tenant '{}' (teams: {})",
                self.tenant().display_name,
                queries::team_keys(self.tenant()).join(", ")
            )
        })
    }

    fn channel(&self, team: &str, channel: Option<&str>) -> Result<(), String> {
        let t = self.team(team)?;
        match channel {
            Some(c) if queries::channel(t, Some(c)).is_none() => {
                Err(format!("no channel '{c}' in team '{}'", t.display_name))
            }
            _ => Ok(()),
        }
    }

    fn one_place(
        &self,
        user: &Option<String>,
        team: &Option<String>,
        channel: &Option<String>,
    ) -> Result<(), String> {
        match (user, team) {
            (Some(u), None) if channel.is_none() => self.user(u),
            (Some(_), None) => Err("'channel' goes with 'team', not 'user'".into()),
            (None, Some(t)) => self.channel(t, channel.as_deref()),
            (Some(_), Some(_)) => Err("give either 'user' or 'team', not both".into()),
            (None, None) => Err("say where: 'user' (their 1:1 chat) or 'team' (a channel)".into()),
        }
    }

    fn duration(&self, field: &str, d: &Option<String>) -> Result<(), String> {
        match d {
            Some(d) => matching::parse_duration(d)
                .map(|_| ())
                .map_err(|e| format!("{field}: {e}")),
            None => Ok(()),
        }
    }

    fn query(&self, q: &model::MessageQuery, step: &Step) -> Result<(), String> {
        self.one_place(&q.user, &q.team, &q.channel)?;
        if let Some(re) = &q.text_matches {
            regex::Regex::new(re).map_err(|e| format!("text_matches is not a valid regex: {e}"))?;
        }
        self.duration("within", &q.within)?;
        self.duration("for", &q.watch)?;
        match step {
            Step::ExpectMessage(_) if q.watch.is_some() || q.messages.is_some() => {
                Err("expect_message takes 'within', not 'for' or 'messages'".into())
            }
            Step::ExpectNoMessage(_) if q.within.is_some() || q.messages.is_some() => Err(
                "expect_no_message takes 'for' (how long to watch), not 'within' or 'messages'"
                    .into(),
            ),
            Step::ExpectCount(_) if q.messages.is_none() => {
                Err("expect_count needs 'messages': the number expected".into())
            }
            _ => Ok(()),
        }
    }

    fn step(&self, step: &Step) -> Result<(), String> {
        match step {
            Step::Install(s) | Step::Uninstall(s) => match (&s.user, &s.team) {
                (Some(u), None) => self.user(u),
                (None, Some(t)) => self.team(t).map(|_| ()),
                (Some(_), Some(_)) => Err("give either 'user' or 'team', not both".into()),
                (None, None) => Err("say for whom: 'user' or 'team'".into()),
            },
            Step::AddMember(m) | Step::RemoveMember(m) => {
                self.team(&m.team)?;
                self.user(&m.user)
            }
            Step::Say(s) => self.user(&s.user),
            Step::Block(s) | Step::Unblock(s) => self.user(&s.user),
            Step::Post(p) => {
                self.user(&p.user)?;
                self.channel(&p.team, p.channel.as_deref())?;
                p.mentions.iter().try_for_each(|m| self.user(m))
            }
            Step::CallBot(h) | Step::Graph(h) => {
                if !matches!(
                    h.method.to_ascii_uppercase().as_str(),
                    "GET" | "POST" | "PUT" | "PATCH" | "DELETE"
                ) {
                    return Err(format!(
                        "method '{}' is not one of GET, POST, PUT, PATCH, DELETE",
                        h.method
                    ));
                }
                if !h.path.starts_with('/') {
                    return Err(format!("path '{}' must start with '/'", h.path));
                }
                matching::check_references(&h.path, self.tenant())?;
                if let Some(body) = &h.body {
                    matching::check_value_references(body, self.tenant())?;
                }
                self.duration("timeout", &h.timeout)
            }
            Step::Wait(d) => matching::parse_duration(d).map(|_| ()),
            Step::ExpectMessage(q) | Step::ExpectNoMessage(q) | Step::ExpectCount(q) => {
                self.query(q, step)
            }
            Step::ExpectActivity(a) => self.duration("within", &a.within),
            Step::Fault(f) => {
                f.check()?;
                match &f.target {
                    Target::Any => Ok(()),
                    Target::User(u) => self.user(u),
                    Target::Team { team, channel } => self.channel(team, channel.as_deref()),
                    // a conversation may only exist once the scenario has run a while
                    Target::About(h) | Target::Conversation(h) => {
                        matching::check_references(h, self.tenant())
                    }
                }
            }
            Step::ExpectFault(e) => self.duration("within", &e.within),
            Step::ExpectRetriesHonoured(_) => Ok(()),
            Step::ExpectDelivery(d) => self.duration("within", &d.within),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<Scenario, LoadError> {
        parse(yaml, Path::new("t.yaml"))
    }

    #[test]
    fn a_good_scenario_parses() {
        let s = check(
            "name: welcome\nsteps:\n  - install: {user: megan}\n  - expect_message: {user: megan, text_contains: stop, within: 5s}\n  - call_bot: {method: POST, path: /api/notify, body: {text: hi}}\n",
        )
        .unwrap();
        assert_eq!(s.spec.steps.len(), 3);
    }

    #[test]
    fn errors_name_file_line_column_and_reason() {
        let e = check(
            "name: x\nsteps:\n  - install: {user: megan}\n  - expect_mesage: {user: megan}\n",
        )
        .unwrap_err();
        assert_eq!(e.file, "t.yaml");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.column.is_some());
        let e =
            check("name: x\nsteps:\n  - install: {user: megan}\n  - say: {user: bob, text: hi}\n")
                .unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.reason.contains("no user 'bob'"), "{e}");
        let e = check("name: x\nsteps:\n  - expect_message: {user: megan, text_matches: '('}\n")
            .unwrap_err();
        assert!(e.reason.contains("regex"), "{e}");
        let e = check("name: x\nsteps:\n  - wait: soon\n").unwrap_err();
        assert!(e.reason.contains("duration"), "{e}");
        let e = check("name: x\nsteps:\n  - expect_count: {user: megan}\n").unwrap_err();
        assert!(e.reason.contains("messages"), "{e}");
        let e = check("name: x\nsteps:\n  - call_bot: {path: '/x/${users.bob.id}'}\n").unwrap_err();
        assert!(e.reason.contains("bob"), "{e}");
        assert!(check("name: x\nsteps: []\n").is_err());
    }

    #[test]
    fn fault_steps_name_one_target_that_exists() {
        let ok = "name: x\nsteps:\n  - install: {user: megan}\n  - fault: ";
        for good in [
            "{operation: send, status: 429, retry_after: 2, user: megan}",
            "{operation: send, status: 502, team: mark8, channel: Research and Development}",
            "{operation: graph_install, status: 503, probability: 0.3}",
            "{operation: send, status: 503, about: '${users.megan.id}'}",
        ] {
            check(&format!("{ok}{good}\n")).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, reason) in [
            ("{operation: send, status: 500, user: bob}", "no user 'bob'"),
            (
                "{operation: send, status: 500, user: megan, team: mark8}",
                "not both 'user' and 'team'",
            ),
            (
                "{operation: send, status: 500, team: mark8, channel: Random}",
                "no channel 'Random'",
            ),
            (
                "{operation: graph_read, status: 500, conversation: 'a:1'}",
                "narrows Connector faults",
            ),
            ("{operation: send, status: 200}", "not an error status"),
        ] {
            let e = check(&format!("{ok}{bad}\n")).unwrap_err();
            assert_eq!(e.line, Some(4), "{bad}: {e}");
            assert!(e.reason.contains(reason), "{bad}: {e}");
        }
    }
}
