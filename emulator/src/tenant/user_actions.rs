//! What Teams' users do that bots hear about: joining and leaving a team, writing in their 1:1
//! chat with a bot or in a channel (@mentioning bots), and blocking a bot.

use super::conversations::Conversation;
use super::{Message, Participant, TeamsEvent, World};
use serde_json::Value;
use uuid::Uuid;

impl World {
    /// A team to change, with its id and the id of the user it is about.
    fn team_and_user_mut(
        &mut self,
        tenant: Uuid,
        team: &str,
        user: &str,
    ) -> Result<(&mut super::Team, Uuid, Uuid), super::TenantError> {
        let t = self.emulated_tenant_mut(tenant)?;
        let user = t.user(user)?.id;
        let team_id = t.team(team)?.id;
        let team = t
            .teams
            .iter_mut()
            .find(|x| x.id == team_id)
            .ok_or_else(|| super::TenantError::TeamNotFound(team_id.to_string()))?;
        Ok((team, team_id, user))
    }

    /// Adds `user` to a team; every bot installed in the team hears `teamMemberAdded`.
    pub fn add_team_member(
        &mut self,
        tenant: Uuid,
        team: &str,
        user: &str,
    ) -> Result<Vec<TeamsEvent>, super::TenantError> {
        let (team, team_id, user) = self.team_and_user_mut(tenant, team, user)?;
        if team.members.iter().any(|m| m.user == user) {
            return Err(super::TenantError::BadRequest(
                "The user is already a member of the team.".into(),
            ));
        }
        team.members.push(super::TeamMember { user, owner: false });
        Ok(vec![TeamsEvent::MemberAddedToTeam {
            tenant,
            team: team_id,
            user,
        }])
    }

    pub fn remove_team_member(
        &mut self,
        tenant: Uuid,
        team: &str,
        user: &str,
    ) -> Result<Vec<TeamsEvent>, super::TenantError> {
        let (team, team_id, user) = self.team_and_user_mut(tenant, team, user)?;
        let before = team.members.len();
        team.members.retain(|m| m.user != user);
        if team.members.len() == before {
            return Err(super::TenantError::BadRequest(
                "The user is not a member of the team.".into(),
            ));
        }
        Ok(vec![TeamsEvent::MemberRemovedFromTeam {
            tenant,
            team: team_id,
            user,
        }])
    }

    /// A user writes in their 1:1 chat with a bot; the bot hears it if it is installed.
    pub fn post_user_chat_message(
        &mut self,
        tenant: Uuid,
        user: Uuid,
        chat: &str,
        activity: Value,
    ) -> Result<(Message, Vec<TeamsEvent>), super::TenantError> {
        let now = self.now();
        let id = self.next_message_id();
        let t = self.emulated_tenant_mut(tenant)?;
        let c = t
            .chat(chat)
            .filter(|c| c.user == user)
            .ok_or_else(|| super::TenantError::ChatNotFound(chat.to_string()))?;
        let (chat_id, bot) = (c.id.clone(), c.bot);
        let conversation = Conversation::Personal {
            chat: chat_id.clone(),
        };
        let message = t
            .post_message(
                &conversation,
                id,
                Participant::User(user),
                None,
                activity,
                now,
            )
            .map_err(|e| super::TenantError::BadRequest(format!("{e:?}")))?;
        let events = if t.bot_reaches_user(bot, user) {
            vec![TeamsEvent::UserMessage {
                tenant,
                conversation: chat_id,
                message: message.id.clone(),
                bot,
            }]
        } else {
            vec![]
        };
        Ok((message, events))
    }

    /// A user posts in a channel (a new thread, or a reply to `thread`); each bot installed in the
    /// team that is @mentioned hears it, as in Teams.
    #[allow(clippy::too_many_arguments)]
    pub fn post_user_channel_message(
        &mut self,
        tenant: Uuid,
        user: Uuid,
        team: &str,
        channel: &str,
        thread: Option<&str>,
        mentioned_bots: &[Uuid],
        activity: Value,
    ) -> Result<(Message, Vec<TeamsEvent>), super::TenantError> {
        let now = self.now();
        let id = self.next_message_id();
        let t = self.emulated_tenant_mut(tenant)?;
        let team_ref = t.team(team)?;
        let team_id = team_ref.id;
        if !team_ref.members.iter().any(|m| m.user == user) {
            return Err(super::TenantError::Forbidden(
                "The user is not a member of the team.".into(),
            ));
        }
        let channel_id = team_ref
            .channels
            .iter()
            .find(|c| c.id == channel)
            .map(|c| c.id.clone())
            .ok_or_else(|| super::TenantError::ChannelNotFound(channel.to_string()))?;
        let conversation = Conversation::Channel {
            team: team_id,
            channel: channel_id.clone(),
            thread: thread.map(str::to_string),
        };
        let message = t
            .post_message(
                &conversation,
                id,
                Participant::User(user),
                None,
                activity,
                now,
            )
            .map_err(|_| {
                super::TenantError::BadRequest("The thread to reply to does not exist.".into())
            })?;
        let root = message
            .reply_to
            .clone()
            .unwrap_or_else(|| message.id.clone());
        let events = mentioned_bots
            .iter()
            .filter(|bot| t.team_has_bot(team_id, **bot))
            .map(|bot| TeamsEvent::UserMessage {
                tenant,
                conversation: format!("{channel_id};messageid={root}"),
                message: message.id.clone(),
                bot: *bot,
            })
            .collect();
        Ok((message, events))
    }

    /// The user blocks (or unblocks) a bot: its sends then answer 403 `ConversationBlockedByUser`.
    pub fn set_blocked(
        &mut self,
        tenant: Uuid,
        user: &str,
        bot: Uuid,
        blocked: bool,
    ) -> Result<(), super::TenantError> {
        let t = self.emulated_tenant_mut(tenant)?;
        let id = t.user(user)?.id;
        let Some(u) = t.users.iter_mut().find(|u| u.id == id) else {
            return Err(super::TenantError::UserNotFound(id.to_string()));
        };
        if blocked {
            u.blocked_bots.insert(bot);
        } else {
            u.blocked_bots.remove(&bot);
        }
        Ok(())
    }
}
