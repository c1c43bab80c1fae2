//! Inbound activities as Teams sends them, read leniently: every field but `type` may be absent;
//! a field of the wrong type makes the whole activity unreadable (answered with 400).

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub service_url: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub from: Option<ChannelAccount>,
    #[serde(default)]
    pub recipient: Option<ChannelAccount>,
    #[serde(default)]
    pub conversation: Option<ConversationAccount>,
    #[serde(default)]
    pub members_added: Option<Vec<ChannelAccount>>,
    #[serde(default)]
    pub members_removed: Option<Vec<ChannelAccount>>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub entities: Option<Vec<Value>>,
    #[serde(default)]
    pub channel_data: Option<TeamsChannelData>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChannelAccount {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub aad_object_id: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationAccount {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub conversation_type: Option<String>,
    #[serde(default)]
    pub is_group: Option<bool>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamsChannelData {
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub team: Option<TeamInfo>,
    #[serde(default)]
    pub channel: Option<ChannelInfo>,
    #[serde(default)]
    pub tenant: Option<TenantInfo>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamInfo {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub aad_group_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChannelInfo {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TenantInfo {
    #[serde(default)]
    pub id: String,
}

/// Where the activity happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityScope {
    /// A 1:1 chat with the bot (`channelData.team` absent, not a group).
    Personal,
    /// A team channel (`channelData.team` present).
    Team,
    /// A group chat.
    GroupChat,
}

/// A user mentioned in a message (`mention` entity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    pub id: String,
    pub name: Option<String>,
}

impl Activity {
    pub fn scope(&self) -> ActivityScope {
        if self.team().is_some() {
            return ActivityScope::Team;
        }
        let conversation = self.conversation.as_ref();
        match conversation.and_then(|c| c.conversation_type.as_deref()) {
            Some("channel") => ActivityScope::Team,
            Some("groupChat") => ActivityScope::GroupChat,
            Some("personal") => ActivityScope::Personal,
            _ if conversation.and_then(|c| c.is_group) == Some(true) => ActivityScope::GroupChat,
            _ => ActivityScope::Personal,
        }
    }

    pub fn team(&self) -> Option<&TeamInfo> {
        self.channel_data
            .as_ref()?
            .team
            .as_ref()
            .filter(|t| !t.id.is_empty())
    }

    pub fn event_type(&self) -> Option<&str> {
        self.channel_data.as_ref()?.event_type.as_deref()
    }

    pub fn conversation_id(&self) -> Option<&str> {
        self.conversation
            .as_ref()
            .map(|c| c.id.as_str())
            .filter(|id| !id.is_empty())
    }

    /// The tenant, from `channelData.tenant.id` or `conversation.tenantId`.
    pub fn tenant_id(&self) -> Option<String> {
        self.channel_data
            .as_ref()
            .and_then(|d| d.tenant.as_ref())
            .map(|t| t.id.clone())
            .filter(|id| !id.is_empty())
            .or_else(|| self.conversation.as_ref()?.tenant_id.clone())
    }

    pub fn members_added(&self) -> &[ChannelAccount] {
        self.members_added.as_deref().unwrap_or_default()
    }

    pub fn members_removed(&self) -> &[ChannelAccount] {
        self.members_removed.as_deref().unwrap_or_default()
    }

    /// Users (not bots) mentioned in the message.
    pub fn mentions(&self) -> Vec<Mention> {
        let mut mentions = Vec::new();
        for entity in self.entities.as_deref().unwrap_or_default() {
            if entity.get("type").and_then(Value::as_str) != Some("mention") {
                continue;
            }
            let Some(mentioned) = entity.get("mentioned") else {
                continue;
            };
            let Some(id) = mentioned.get("id").and_then(Value::as_str) else {
                continue;
            };
            if id.starts_with("28:") || id.is_empty() {
                continue;
            }
            mentions.push(Mention {
                id: id.to_owned(),
                name: mentioned
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
        mentions
    }

    /// The message text as a command: `<at>…</at>` mentions and whitespace removed, lower-cased.
    pub fn command(&self) -> Option<String> {
        let text = self.text.as_deref()?;
        let command = strip_mentions(text)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        (!command.is_empty()).then_some(command)
    }
}

/// Removes every `<at>…</at>` element; a stray `<at>` without its end loses just the tag.
pub fn strip_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let lower = rest.to_ascii_lowercase();
        match lower.find("<at") {
            Some(start) => {
                out.push_str(&rest[..start]);
                match lower[start..].find("</at>") {
                    Some(end) => rest = &rest[start + end + "</at>".len()..],
                    None => {
                        rest = match lower[start..].find('>') {
                            Some(gt) => &rest[start + gt + 1..],
                            None => "",
                        }
                    }
                }
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// A channel conversation id without the `;messageid=` of a thread: the channel itself.
pub fn channel_root(conversation_id: &str) -> &str {
    conversation_id
        .split_once(";messageid=")
        .map_or(conversation_id, |(root, _)| root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn commands_lose_mentions_whitespace_and_case() {
        let activity = Activity {
            text: Some("<at>Proactive Bot</at>  STOP \n".to_owned()),
            ..Default::default()
        };
        assert_eq!(activity.command().as_deref(), Some("stop"));
        assert_eq!(strip_mentions("<AT>Bot</AT>help"), "help");
        assert_eq!(
            strip_mentions("a <at>x"),
            "a x",
            "a stray opening tag is dropped"
        );
    }

    #[test]
    fn scope_follows_channel_data_team() {
        let personal: Activity = serde_json::from_value(json!({
            "type": "conversationUpdate",
            "conversation": {"id": "a:1", "conversationType": "personal"},
            "channelData": {"tenant": {"id": "t"}}
        }))
        .unwrap();
        assert_eq!(personal.scope(), ActivityScope::Personal);
        assert_eq!(personal.tenant_id().as_deref(), Some("t"));
        let team: Activity = serde_json::from_value(json!({
            "type": "conversationUpdate",
            "conversation": {"id": "19:x@thread.tacv2", "isGroup": true, "conversationType": "channel"},
            "channelData": {"team": {"id": "19:x@thread.tacv2", "name": "Contoso"}, "eventType": "teamMemberAdded"}
        }))
        .unwrap();
        assert_eq!(team.scope(), ActivityScope::Team);
        assert_eq!(team.event_type(), Some("teamMemberAdded"));
    }

    #[test]
    fn mentions_of_users_are_read_and_the_bot_is_skipped() {
        let activity: Activity = serde_json::from_value(json!({
            "type": "message",
            "entities": [
                {"type": "mention", "mentioned": {"id": "28:bot", "name": "Bot"}, "text": "<at>Bot</at>"},
                {"type": "mention", "mentioned": {"id": "29:adele", "name": "Adele"}, "text": "<at>Adele</at>"},
                {"type": "clientInfo", "locale": "en-US"}
            ]
        }))
        .unwrap();
        assert_eq!(
            activity.mentions(),
            vec![Mention {
                id: "29:adele".to_owned(),
                name: Some("Adele".to_owned())
            }]
        );
    }

    #[test]
    fn thread_ids_map_to_their_channel() {
        assert_eq!(
            channel_root("19:abc@thread.tacv2;messageid=17"),
            "19:abc@thread.tacv2"
        );
        assert_eq!(channel_root("a:1"), "a:1");
    }

    proptest! {
        #[test]
        fn stripping_mentions_never_panics_nor_adds_text(text in "(<at>|</at>|<AT|[a-z ]|\\PC){0,40}") {
            let stripped = strip_mentions(&text);
            prop_assert!(stripped.len() <= text.len());
            if !text.to_ascii_lowercase().contains("<at") {
                prop_assert_eq!(stripped, text);
            }
        }
    }
}
