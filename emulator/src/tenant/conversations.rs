//! Conversations as the Bot Connector sees them: 1:1 chats and channel threads, who may post in
//! them, and the messages bots and users post, update and delete.

use super::{Chat, Message, Participant, StoredActivity, Tenant, World};
use crate::ids;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

/// Why a Connector operation on a conversation was refused; the Connector renders each with
/// Teams' own code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationError {
    ConversationNotFound(String),
    ActivityNotFound(String),
    MemberNotFound(String),
    /// The bot is not a member of the conversation (not installed there, or another bot's chat).
    BotNotInRoster,
    /// The bot is not installed in the user's personal scope.
    NotInstalledForUser,
    BlockedByUser,
    BadArgument(String),
}

/// A bot's activity to keep: see [`Tenant::post_bot_activity`].
pub struct BotPost<'a> {
    pub bot: Uuid,
    pub conversation: &'a Conversation,
    /// The conversation id the bot used.
    pub addressed_as: &'a str,
    pub id: &'a str,
    pub activity: Value,
    pub reply_to: Option<&'a str>,
    pub service_url: &'a str,
    pub now: DateTime<Utc>,
}

/// A conversation id resolved to what it addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// A 1:1 chat, by its Graph id.
    Personal { chat: String },
    /// A team channel, or one thread in it (`…;messageid=…`).
    Channel {
        team: Uuid,
        channel: String,
        thread: Option<String>,
    },
}

impl World {
    /// Finds the tenant and conversation an id addresses. Connector tokens do not name the
    /// customer tenant, so the conversation does.
    pub fn find_conversation(&self, id: &str) -> Option<(Uuid, Conversation)> {
        self.tenants
            .iter()
            .find_map(|t| t.conversation(id).map(|c| (t.id, c)))
    }
}

impl Tenant {
    pub fn conversation(&self, id: &str) -> Option<Conversation> {
        let (base, thread) = match id.split_once(";messageid=") {
            Some((base, thread)) => (base, Some(thread.to_string())),
            None => (id, None),
        };
        if let Some(chat) = self.chat(base) {
            return thread.is_none().then(|| Conversation::Personal {
                chat: chat.id.clone(),
            });
        }
        self.teams.iter().find_map(|team| {
            team.channels
                .iter()
                .find(|c| c.id == base)
                .map(|c| Conversation::Channel {
                    team: team.id,
                    channel: c.id.clone(),
                    thread: thread.clone(),
                })
        })
    }

    pub(super) fn team_has_bot(&self, team: Uuid, bot: Uuid) -> bool {
        self.app_of_bot(bot).is_some_and(|app| {
            self.installation_in_scope(super::InstallScope::Team(team), app.id)
                .is_some()
        })
    }

    /// A bot may talk 1:1 with a user who installed it, or who is in a team where it is installed.
    pub fn bot_reaches_user(&self, bot: Uuid, user: Uuid) -> bool {
        self.bot_installed_for_user(bot, user)
            || self
                .teams
                .iter()
                .any(|t| t.members.iter().any(|m| m.user == user) && self.team_has_bot(t.id, bot))
    }

    /// Checks `bot` may post in `conversation`.
    pub fn check_bot_may_post(
        &self,
        bot: Uuid,
        conversation: &Conversation,
    ) -> Result<(), ConversationError> {
        match conversation {
            Conversation::Personal { chat } => {
                let chat = self
                    .chat(chat)
                    .ok_or_else(|| ConversationError::ConversationNotFound(chat.clone()))?;
                if chat.bot != bot {
                    return Err(ConversationError::BotNotInRoster);
                }
                if !self.bot_reaches_user(bot, chat.user) {
                    return Err(ConversationError::NotInstalledForUser);
                }
                if self
                    .user_by_id(chat.user)
                    .is_some_and(|u| u.blocked_bots.contains(&bot))
                {
                    return Err(ConversationError::BlockedByUser);
                }
                Ok(())
            }
            Conversation::Channel { team, .. } => {
                if self.team_has_bot(*team, bot) {
                    Ok(())
                } else {
                    Err(ConversationError::BotNotInRoster)
                }
            }
        }
    }

    /// The bot of a conversation when the caller did not say (Connector calls without a token).
    pub fn conversation_bot(&self, conversation: &Conversation) -> Option<Uuid> {
        match conversation {
            Conversation::Personal { chat } => self.chat(chat).map(|c| c.bot),
            Conversation::Channel { team, .. } => self
                .installations_in_scope(super::InstallScope::Team(*team))
                .find_map(|i| {
                    self.catalog
                        .iter()
                        .find(|a| a.id == i.catalog_app)
                        .and_then(|a| a.bot_id)
                }),
        }
    }

    /// The users in a conversation's roster.
    pub fn roster(&self, conversation: &Conversation) -> Vec<&super::User> {
        match conversation {
            Conversation::Personal { chat } => self
                .chat(chat)
                .and_then(|c| self.user_by_id(c.user))
                .into_iter()
                .collect(),
            Conversation::Channel { team, .. } => self
                .teams
                .iter()
                .find(|t| t.id == *team)
                .map(|t| {
                    t.members
                        .iter()
                        .filter_map(|m| self.user_by_id(m.user))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Opens (or finds) the 1:1 chat of `bot` and `user`. Teams allows it when the bot is
    /// installed for the user, or in a team the user belongs to.
    pub fn open_personal_conversation(
        &mut self,
        bot: Uuid,
        user: Uuid,
        now: DateTime<Utc>,
    ) -> Result<&Chat, ConversationError> {
        if !self.bot_reaches_user(bot, user) {
            return Err(ConversationError::NotInstalledForUser);
        }
        if self
            .user_by_id(user)
            .is_some_and(|u| u.blocked_bots.contains(&bot))
        {
            return Err(ConversationError::BlockedByUser);
        }
        Ok(self.ensure_chat(user, bot, now))
    }

    fn messages_mut(
        &mut self,
        conversation: &Conversation,
    ) -> Result<&mut Vec<Message>, ConversationError> {
        let missing = || ConversationError::ConversationNotFound(format!("{conversation:?}"));
        match conversation {
            Conversation::Personal { chat } => self
                .chat_mut(chat)
                .map(|c| &mut c.messages)
                .ok_or_else(missing),
            Conversation::Channel { team, channel, .. } => self
                .teams
                .iter_mut()
                .find(|t| t.id == *team)
                .and_then(|t| t.channels.iter_mut().find(|c| c.id == *channel))
                .map(|c| &mut c.messages)
                .ok_or_else(missing),
        }
    }

    pub fn messages(&self, conversation: &Conversation) -> &[Message] {
        match conversation {
            Conversation::Personal { chat } => self
                .chat(chat)
                .map(|c| c.messages.as_slice())
                .unwrap_or_default(),
            Conversation::Channel { team, channel, .. } => self
                .teams
                .iter()
                .find(|t| t.id == *team)
                .and_then(|t| t.channels.iter().find(|c| c.id == *channel))
                .map(|c| c.messages.as_slice())
                .unwrap_or_default(),
        }
    }

    /// The root of the thread a new message in `conversation` belongs to: the conversation's
    /// `;messageid=`, else the `reply_to` root if it exists, else none (it starts a thread).
    fn thread_of_new_message(
        &self,
        conversation: &Conversation,
        reply_to: Option<&str>,
    ) -> Result<Option<String>, ConversationError> {
        let Conversation::Channel { thread, .. } = conversation else {
            return Ok(None);
        };
        let existing = self.messages(conversation);
        let root_of = |id: &str| {
            existing
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.reply_to.clone().unwrap_or_else(|| m.id.clone()))
        };
        match thread {
            Some(t) => root_of(t)
                .map(Some)
                .ok_or_else(|| ConversationError::ConversationNotFound(t.clone())),
            None => Ok(reply_to.and_then(root_of)),
        }
    }

    /// Adds a message; in a channel it joins the conversation's thread, or `reply_to`'s.
    pub fn post_message(
        &mut self,
        conversation: &Conversation,
        id: String,
        from: Participant,
        reply_to: Option<&str>,
        activity: Value,
        now: DateTime<Utc>,
    ) -> Result<Message, ConversationError> {
        let thread = self.thread_of_new_message(conversation, reply_to)?;
        self.keep_message(conversation, id, from, thread, activity.into(), now)
    }

    fn keep_message(
        &mut self,
        conversation: &Conversation,
        id: String,
        from: Participant,
        thread: Option<String>,
        activity: StoredActivity,
        now: DateTime<Utc>,
    ) -> Result<Message, ConversationError> {
        let message = Message {
            id,
            from,
            created: now,
            last_modified: now,
            deleted: None,
            reply_to: thread,
            activity,
        };
        self.messages_mut(conversation)?.push(message.clone());
        if let Conversation::Personal { chat } = conversation
            && let Some(c) = self.chat_mut(chat)
        {
            c.last_updated = now;
        }
        Ok(message)
    }

    /// A bot's activity in a conversation, as Teams keeps it: stamped with its id, time, the bot
    /// as sender and the conversation; a message is stored in the chat or channel (a reply in a
    /// channel belongs to its thread, and says so in its conversation id). Returns the activity,
    /// one copy shared by the conversation and the transcript.
    pub fn post_bot_activity(
        &mut self,
        mut post: BotPost<'_>,
    ) -> Result<StoredActivity, ConversationError> {
        let activity = std::mem::take(&mut post.activity);
        let is_message = activity.get("type").and_then(Value::as_str) == Some("message");
        let thread = if is_message {
            self.thread_of_new_message(post.conversation, post.reply_to)?
        } else {
            None
        };
        let addressed_as = match (post.conversation, &thread) {
            (Conversation::Channel { channel, .. }, Some(root)) => {
                format!("{channel};messageid={root}")
            }
            _ => post.addressed_as.to_string(),
        };
        let activity = self.stamp_bot_activity(&post, activity, &addressed_as);
        let stored = StoredActivity::new(&activity);
        if is_message {
            self.keep_message(
                post.conversation,
                post.id.to_string(),
                Participant::Bot(post.bot),
                thread,
                stored.clone(),
                post.now,
            )?;
        }
        Ok(stored)
    }

    fn stamp_bot_activity(
        &self,
        post: &BotPost<'_>,
        mut activity: Value,
        addressed_as: &str,
    ) -> Value {
        let bot_name = self
            .app_of_bot(post.bot)
            .map(|a| a.display_name.as_str())
            .unwrap_or("Bot");
        activity["id"] = json!(post.id);
        activity["timestamp"] = json!(
            post.now
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        activity["channelId"] = json!("msteams");
        activity["serviceUrl"] = json!(post.service_url);
        activity["from"] = json!({"id": ids::bot_mri(post.bot), "name": bot_name});
        let mut conversation = json!({
            "id": self.connector_id(post.conversation, addressed_as),
            "conversationType": match post.conversation {
                Conversation::Personal { .. } => "personal",
                Conversation::Channel { .. } => "channel",
            },
            "tenantId": self.id.to_string(),
        });
        if matches!(post.conversation, Conversation::Channel { .. }) {
            conversation["isGroup"] = json!(true);
        }
        activity["conversation"] = conversation;
        if let Some(r) = post.reply_to {
            activity["replyToId"] = json!(r);
        }
        activity
    }

    /// The id the Connector gives a conversation: a 1:1 chat keeps its `a:…` id however it was
    /// addressed; a channel (thread) is named as addressed.
    pub fn connector_id(&self, conversation: &Conversation, addressed_as: &str) -> String {
        match conversation {
            Conversation::Personal { chat } => self
                .chat(chat)
                .map(|c| c.conversation_id.clone())
                .unwrap_or_else(|| addressed_as.to_string()),
            Conversation::Channel { .. } => addressed_as.to_string(),
        }
    }

    /// Replaces a bot's message with `activity` (Teams shows it as edited).
    pub fn update_message(
        &mut self,
        conversation: &Conversation,
        bot: Uuid,
        activity_id: &str,
        activity: Value,
        now: DateTime<Utc>,
    ) -> Result<StoredActivity, ConversationError> {
        let message = self.own_message(conversation, bot, activity_id)?;
        let mut merged = message.activity.value();
        if let (Value::Object(m), Value::Object(new)) = (&mut merged, activity) {
            for key in ["text", "attachments", "textFormat", "summary", "entities"] {
                match new.get(key) {
                    Some(v) => m.insert(key.to_string(), v.clone()),
                    None => m.remove(key),
                };
            }
        }
        message.activity = StoredActivity::new(&merged);
        message.last_modified = now;
        Ok(message.activity.clone())
    }

    pub fn delete_message(
        &mut self,
        conversation: &Conversation,
        bot: Uuid,
        activity_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ConversationError> {
        let message = self.own_message(conversation, bot, activity_id)?;
        message.deleted = Some(now);
        message.last_modified = now;
        Ok(())
    }

    fn own_message(
        &mut self,
        conversation: &Conversation,
        bot: Uuid,
        activity_id: &str,
    ) -> Result<&mut Message, ConversationError> {
        let message = self
            .messages_mut(conversation)?
            .iter_mut()
            .find(|m| m.id == activity_id && m.deleted.is_none())
            .ok_or_else(|| ConversationError::ActivityNotFound(activity_id.to_string()))?;
        if message.from != Participant::Bot(bot) {
            return Err(ConversationError::BadArgument(
                "A bot can only update or delete its own messages.".into(),
            ));
        }
        Ok(message)
    }
}

/// A fresh 1:1 conversation id, for tests that need one without a tenant.
pub fn personal_conversation_id_for(bot: Uuid, user: Uuid) -> String {
    ids::personal_conversation_id(&ids::one_on_one_chat_id(bot, user))
}
