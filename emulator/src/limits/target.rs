//! What a fault is about: a [`Target`] as people name it (a user, a team or channel, a
//! conversation, or any handle), and how it resolves to the name calls give the limits: for the
//! Connector a chat's Graph id or a channel's id, for Graph a user's or team's object id.

use super::Operation;
use crate::tenant::{Tenant, World};

/// What a fault is about, as people name it. Only one can be given.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Target {
    /// Every call of the operation.
    #[default]
    Any,
    /// `about`: any of the others, by whatever the handle turns out to name (a conversation id
    /// for Connector operations, else a user, else a team), as the control API has always taken it.
    About(String),
    /// `user`: their 1:1 chat with the tenant's bot (Connector), or Graph calls about them.
    User(String),
    /// `team` (and `channel`): the team's General channel, or the named one (Connector), or Graph
    /// calls about the team.
    Team {
        team: String,
        channel: Option<String>,
    },
    /// `conversation`: a chat or channel by any id the Connector or Graph gives it (Connector
    /// operations only).
    Conversation(String),
}

impl Target {
    /// A target `operation` can have: channels and conversations are the Connector's.
    pub(super) fn check(&self, operation: Operation) -> Result<(), String> {
        let field = match self {
            Target::Team {
                channel: Some(_), ..
            } => "'channel'",
            Target::Conversation(_) => "'conversation'",
            _ => return Ok(()),
        };
        if operation.is_connector() {
            Ok(())
        } else {
            Err(format!(
                "{field} narrows Connector faults (send, roster); Graph calls are about a 'user' or 'team'"
            ))
        }
    }

    /// The name calls about this target give the limits (`None`: every call).
    pub(super) fn resolve(
        &self,
        world: &World,
        operation: Operation,
    ) -> Result<Option<String>, String> {
        let connector = operation.is_connector();
        Ok(Some(match self {
            Target::Any => return Ok(None),
            Target::About(handle) => about(world, connector, handle)?,
            Target::User(user) => for_user(world, connector, user)?,
            Target::Team { team, channel } => for_team(world, connector, team, channel.as_deref())?,
            Target::Conversation(id) => conversation(world, id)?,
        }))
    }
}

fn about(world: &World, connector: bool, handle: &str) -> Result<String, String> {
    if connector && let Ok(key) = conversation(world, handle) {
        return Ok(key);
    }
    if world
        .tenants()
        .iter()
        .any(|t| t.user_by_handle(handle).is_ok())
    {
        return for_user(world, connector, handle);
    }
    if world
        .tenants()
        .iter()
        .any(|t| t.team_by_handle(handle).is_ok())
    {
        return for_team(world, connector, handle, None);
    }
    Err(format!(
        "'{handle}' names no conversation, user or team of the emulated tenants"
    ))
}

fn for_user(world: &World, connector: bool, handle: &str) -> Result<String, String> {
    let (tenant, user) = world
        .tenants()
        .iter()
        .find_map(|t| t.user_by_handle(handle).ok().map(|u| (t, u)))
        .ok_or_else(|| {
            no_such(world, "user", handle, |t| {
                t.users().iter().map(|u| u.key.as_str()).collect()
            })
        })?;
    if !connector {
        return Ok(user.id.to_string());
    }
    let bot = tenant
        .catalog()
        .iter()
        .find_map(|a| a.bot_id)
        .ok_or_else(|| {
            format!(
                "tenant '{}' has no bot for {} to chat with",
                tenant.display_name, user.display_name
            )
        })?;
    Ok(crate::ids::one_on_one_chat_id(bot, user.id))
}

fn for_team(
    world: &World,
    connector: bool,
    handle: &str,
    channel: Option<&str>,
) -> Result<String, String> {
    let team = world
        .tenants()
        .iter()
        .find_map(|t| t.team_by_handle(handle).ok())
        .ok_or_else(|| {
            no_such(world, "team", handle, |t| {
                t.teams().iter().map(|t| t.key.as_str()).collect()
            })
        })?;
    match (connector, channel) {
        (false, _) => Ok(team.id.to_string()),
        (true, None) => Ok(team.thread_id.clone()),
        (true, Some(name)) => team
            .channels
            .iter()
            .find(|c| c.id == name || c.display_name.eq_ignore_ascii_case(name))
            .map(|c| c.id.clone())
            .ok_or_else(|| format!("no channel '{name}' in team '{}'", team.display_name)),
    }
}

fn conversation(world: &World, id: &str) -> Result<String, String> {
    world
        .find_conversation(id)
        .map(|(_, c)| crate::connector::limits_key(&c))
        .ok_or_else(|| format!("no conversation '{id}' in the emulated tenants"))
}

/// "no user 'bob' in tenant 'Contoso' (users: megan, adele, …)": what could have been meant.
fn no_such(world: &World, kind: &str, handle: &str, keys: fn(&Tenant) -> Vec<&str>) -> String {
    const SHOWN: usize = 12;
    let listed: Vec<String> = world
        .tenants()
        .iter()
        .map(|t| {
            let all = keys(t);
            let mut shown = all
                .iter()
                .take(SHOWN)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if all.len() > SHOWN {
                shown.push_str(", …");
            }
            format!("tenant '{}' ({kind}s: {shown})", t.display_name)
        })
        .collect();
    format!("no {kind} '{handle}' in {}", listed.join(" or "))
}

#[cfg(test)]
mod tests {
    use crate::clock::Clock;
    use crate::config::EmulatorConfig;
    use crate::limits::{Fault, Operation};
    use crate::tenant::World;

    fn world() -> World {
        EmulatorConfig::default_tenant().build_world(Clock::system())
    }

    #[test]
    fn targets_resolve_to_the_names_calls_give_the_limits() {
        let w = world();
        let t = &w.tenants()[0];
        let megan = t.user_by_handle("megan").unwrap();
        let team = t.team_by_handle("mark8").unwrap();
        let bot = t.catalog().iter().find_map(|a| a.bot_id).unwrap();
        let about = |f: Fault| f.resolve(&w).unwrap().about;
        let chat = crate::ids::one_on_one_chat_id(bot, megan.id);
        assert_eq!(about(Fault::on(Operation::Send)), None);
        assert_eq!(
            about(Fault::on(Operation::Send).for_user("megan")),
            Some(chat.clone())
        );
        assert_eq!(
            about(Fault::on(Operation::Send).for_user(&megan.user_principal_name)),
            Some(chat.clone())
        );
        assert_eq!(about(Fault::on(Operation::Send).about("megan")), Some(chat));
        assert_eq!(
            about(Fault::on(Operation::GraphInstall).for_user("megan")),
            Some(megan.id.to_string())
        );
        assert_eq!(
            about(Fault::on(Operation::Send).for_team("Mark 8 Project Team")),
            Some(team.thread_id.clone())
        );
        assert_eq!(
            about(Fault::on(Operation::GraphInstall).about("mark8")),
            Some(team.id.to_string())
        );
        let research = team.channels.iter().find(|c| !c.general).unwrap();
        assert_eq!(
            about(Fault::on(Operation::Send).for_channel("mark8", "research and development")),
            Some(research.id.clone())
        );
        assert_eq!(
            about(Fault::on(Operation::Roster).for_conversation(&research.id)),
            Some(research.id.clone())
        );
        let spec = Fault::on(Operation::Send)
            .status(429)
            .retry_after(2)
            .times(3)
            .resolve(&w)
            .unwrap();
        assert_eq!(
            (spec.operation, spec.status, spec.retry_after, spec.times),
            (Operation::Send, 429, Some(2), Some(3))
        );
    }

    #[test]
    fn an_unknown_target_names_what_there_is() {
        let w = world();
        let e = Fault::on(Operation::Send)
            .for_user("bob")
            .resolve(&w)
            .unwrap_err();
        assert!(
            e.starts_with("no user 'bob' in tenant 'Contoso' (users: megan, adele"),
            "{e}"
        );
        let e = Fault::on(Operation::Send)
            .for_team("mark9")
            .resolve(&w)
            .unwrap_err();
        assert_eq!(e, "no team 'mark9' in tenant 'Contoso' (teams: mark8)");
        let e = Fault::on(Operation::Send)
            .for_channel("mark8", "Random")
            .resolve(&w)
            .unwrap_err();
        assert_eq!(e, "no channel 'Random' in team 'Mark 8 Project Team'");
        let e = Fault::on(Operation::Send)
            .for_conversation("a:nope")
            .resolve(&w)
            .unwrap_err();
        assert_eq!(e, "no conversation 'a:nope' in the emulated tenants");
        let e = Fault::on(Operation::Send)
            .about("nobody-at-all")
            .resolve(&w)
            .unwrap_err();
        assert_eq!(
            e,
            "'nobody-at-all' names no conversation, user or team of the emulated tenants"
        );
    }
}
