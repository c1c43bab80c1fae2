//! What the bot says: welcome messages, notifications and command replies, following
//! Microsoft's guidance for proactive messages — say why the user gets the message, what the bot
//! offers or what happened, what to do next, and how to opt out ([`OPT_OUT_LINE`] is in every
//! welcome and notification, in the text and in the card).

use serde_json::{Value, json};

/// The opt-out line every welcome and notification carries.
pub const OPT_OUT_LINE: &str = "Reply **stop** to opt out of notifications.";
/// The confirmation after `stop`.
pub const OPTED_OUT_REPLY: &str =
    "You're opted out: I won't send you notifications any more. Reply **start** to opt back in.";
/// The confirmation after `start`.
pub const OPTED_IN_REPLY: &str = "You're opted in: I'll send you notifications again. Reply **stop** to opt out of notifications.";
/// What `GET /api/notify` sends.
pub const DEFAULT_NOTIFICATION_TEXT: &str = "Hello! This is a proactive message from your bot.";

/// A plain markdown message.
pub fn text_message(text: &str) -> Value {
    json!({ "type": "message", "text": text, "textFormat": "markdown" })
}

fn hero_card(title: &str, text: &str, buttons: Vec<Value>) -> Value {
    json!({
        "contentType": "application/vnd.microsoft.card.hero",
        "content": { "title": title, "text": text, "buttons": buttons }
    })
}

fn im_back(title: &str, value: &str) -> Value {
    json!({ "type": "imBack", "title": title, "value": value })
}

fn open_url(title: &str, url: &str) -> Value {
    json!({ "type": "openUrl", "title": title, "value": url })
}

fn with_card(text: String, card: Value) -> Value {
    json!({
        "type": "message",
        "text": text,
        "textFormat": "markdown",
        "attachments": [card]
    })
}

/// 1:1 welcome after the app was installed for the user (by them, or for them).
pub fn personal_welcome(bot_name: &str) -> Value {
    let body = format!(
        "You're getting this message because {bot_name} was installed for you in Microsoft Teams. \
         I'll send you notifications about things that need your attention, right here in this chat. \
         Reply **help** to see what I can do.\n\n{OPT_OUT_LINE}"
    );
    with_card(
        body.clone(),
        hero_card(
            &format!("Welcome to {bot_name}"),
            &body,
            vec![im_back("Show help", "help"), im_back("Opt out", "stop")],
        ),
    )
}

/// Channel introduction after the bot was added to a team.
pub fn team_welcome(bot_name: &str, team_name: Option<&str>) -> Value {
    let team = team_name.unwrap_or("this team");
    let body = format!(
        "Hi {team}! {bot_name} was added to this team, so you're seeing this introduction. \
         I post notifications for the team here and can message each of you personally about \
         things that need your attention. Mention me with **help** to see what I can do, or \
         chat with me 1:1.\n\n{OPT_OUT_LINE}"
    );
    with_card(
        body.clone(),
        hero_card(
            &format!("{bot_name} has joined {team}"),
            &body,
            vec![im_back("Show help", "help")],
        ),
    )
}

/// Channel card welcoming a new member by name.
pub fn new_member_channel_welcome(
    bot_name: &str,
    member_name: &str,
    team_name: Option<&str>,
) -> Value {
    let team = team_name.unwrap_or("the team");
    let body = format!(
        "Welcome to {team}, {member_name}! Everyone, please say hello. \
         {member_name}, I've sent you a personal message with a guide for new members.\n\n{OPT_OUT_LINE}"
    );
    with_card(
        body.clone(),
        hero_card(
            &format!("Welcome, {member_name}"),
            &body,
            vec![im_back(&format!("Ask {bot_name} for help"), "help")],
        ),
    )
}

/// Personal welcome for a new team member, with the new-member guide.
pub fn new_member_personal_welcome(
    bot_name: &str,
    member_name: &str,
    team_name: Option<&str>,
    guide_url: &str,
) -> Value {
    let team = team_name.unwrap_or("a team");
    let body = format!(
        "Hi {member_name}, welcome to {team}! You're getting this because you were added to {team}, \
         where {bot_name} is installed. Start with the [new-member guide]({guide_url}), and reply \
         **help** to see what I can do.\n\n{OPT_OUT_LINE}"
    );
    with_card(
        body.clone(),
        hero_card(
            &format!("Welcome to {team}"),
            &body,
            vec![
                open_url("Open the new-member guide", guide_url),
                im_back("Opt out", "stop"),
            ],
        ),
    )
}

/// The reply to `help` (and to anything the bot does not understand).
pub fn help(bot_name: &str, unknown: Option<&str>) -> Value {
    let preface = match unknown {
        Some(text) => format!("I didn't understand \"{text}\". "),
        None => String::new(),
    };
    text_message(&format!(
        "{preface}{bot_name} sends you notifications about things that need your attention.\n\n\
         - **help**: show this message\n\
         - **stop**: opt out of notifications\n\
         - **start**: opt back in\n\n{OPT_OUT_LINE}"
    ))
}

/// What a notification says, from `POST /api/notify`.
#[derive(Debug, Clone, Default)]
pub struct NotificationContent {
    pub title: Option<String>,
    pub text: Option<String>,
    pub what: Option<String>,
    pub who: Option<String>,
    pub action: Option<String>,
    /// An Adaptive Card to attach as is (an opt-out line is added to its body).
    pub card: Option<Value>,
}

/// A notification: what happened, to what, who did it, what to do, how to opt out.
pub fn notification(content: &NotificationContent) -> Value {
    let mut lines = Vec::new();
    if let Some(title) = content.title.as_deref().filter(|t| !t.is_empty()) {
        lines.push(format!("**{title}**"));
    }
    if let Some(text) = content.text.as_deref().filter(|t| !t.is_empty()) {
        lines.push(text.to_owned());
    }
    if let Some(what) = content.what.as_deref().filter(|t| !t.is_empty()) {
        lines.push(format!("**What happened:** {what}"));
    }
    if let Some(who) = content.who.as_deref().filter(|t| !t.is_empty()) {
        lines.push(format!("**Who:** {who}"));
    }
    if let Some(action) = content.action.as_deref().filter(|t| !t.is_empty()) {
        lines.push(format!("**What to do:** {action}"));
    }
    if lines.is_empty() {
        lines.push(DEFAULT_NOTIFICATION_TEXT.to_owned());
    }
    lines.push("You're getting this because you use this app in Microsoft Teams.".to_owned());
    lines.push(OPT_OUT_LINE.to_owned());
    let text = lines.join("\n\n");

    let mut activity = text_message(&text);
    if let Some(card) = &content.card {
        activity["attachments"] = json!([{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": with_opt_out_block(card.clone()),
        }]);
    }
    activity
}

/// Adds the opt-out line to an Adaptive Card's body (creating a minimal card around a
/// non-object).
fn with_opt_out_block(card: Value) -> Value {
    let mut card = match card {
        Value::Object(_) => card,
        other => json!({
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [{ "type": "TextBlock", "text": other.to_string(), "wrap": true }]
        }),
    };
    let block = json!({ "type": "TextBlock", "text": OPT_OUT_LINE, "wrap": true, "isSubtle": true, "size": "Small" });
    match card.get_mut("body") {
        Some(Value::Array(body)) => body.push(block),
        _ => card["body"] = json!([block]),
    }
    if card.get("type").is_none() {
        card["type"] = json!("AdaptiveCard");
    }
    if card.get("version").is_none() {
        card["version"] = json!("1.4");
    }
    card
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_text(activity: &Value) -> String {
        activity.to_string()
    }

    #[test]
    fn every_welcome_and_notification_carries_the_opt_out_line() {
        let messages = [
            personal_welcome("Bot"),
            team_welcome("Bot", Some("Contoso")),
            new_member_channel_welcome("Bot", "Adele", Some("Contoso")),
            new_member_personal_welcome("Bot", "Adele", None, "https://guide.example/new"),
            notification(&NotificationContent::default()),
            notification(&NotificationContent {
                card: Some(json!({"type": "AdaptiveCard", "body": []})),
                ..Default::default()
            }),
        ];
        for message in messages {
            let text = message["text"].as_str().unwrap();
            assert!(text.contains(OPT_OUT_LINE), "{text}");
            if let Some(card) = message.pointer("/attachments/0/content") {
                assert!(card.to_string().contains(OPT_OUT_LINE), "{card}");
            }
        }
    }

    #[test]
    fn a_notification_says_what_who_and_what_to_do() {
        let message = notification(&NotificationContent {
            title: Some("Expense report approved".to_owned()),
            what: Some("Report #42 was approved".to_owned()),
            who: Some("Megan Bowen".to_owned()),
            action: Some("Nothing, it will be paid on Friday".to_owned()),
            ..Default::default()
        });
        let text = all_text(&message);
        for part in [
            "Expense report approved",
            "What happened:** Report #42",
            "Who:** Megan Bowen",
            "What to do:** Nothing",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
    }

    #[test]
    fn the_new_member_welcome_links_the_guide_and_names_the_member() {
        let message = new_member_personal_welcome(
            "Bot",
            "Adele",
            Some("Contoso"),
            "https://guide.example/new",
        );
        let text = all_text(&message);
        assert!(text.contains("https://guide.example/new"));
        assert!(text.contains("Adele"));
        let channel = new_member_channel_welcome("Bot", "Adele", Some("Contoso"));
        assert!(all_text(&channel).contains("Welcome to Contoso, Adele"));
    }
}
