//! Users talking to the bot: in the 1:1 chat and in channels with @mentions, through Graph with a
//! delegated token and through the control API; and the transcript of both directions.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use teams_emulator::{BotAuth, defaults};

fn messages(activities: &[Value]) -> Vec<&Value> {
    activities
        .iter()
        .filter(|a| a["type"] == "message")
        .collect()
}

#[tokio::test]
async fn a_user_writes_in_the_chat_and_the_bot_hears_it() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let chat = env.chat_id(MEGAN).await;
    let token = env.user_token(MEGAN).await;
    let (status, sent) = env
        .call(
            Method::POST,
            &env.url(&format!("/v1.0/chats/{chat}/messages")),
            Some(&token),
            Some(json!({"body": {"content": "what needs my attention?"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!(
        sent["from"]["user"]["id"],
        env.user_id(MEGAN).to_string().as_str()
    );
    let activities = env.wait_for_activities(3).await;
    let got = messages(&activities);
    assert_eq!(got.len(), 1, "{activities:#?}");
    let m = got[0];
    assert_eq!(m["text"], "what needs my attention?");
    assert_eq!(m["id"], sent["id"]);
    assert_eq!(m["from"]["id"], env.user_mri(MEGAN).as_str());
    assert_eq!(
        m["from"]["aadObjectId"],
        env.user_id(MEGAN).to_string().as_str()
    );
    assert_eq!(
        m["recipient"]["id"],
        format!("28:{}", defaults::BOT_APP_ID).as_str()
    );
    assert_eq!(m["conversation"]["conversationType"], "personal");
    assert_eq!(m["conversation"]["id"], activities[0]["conversation"]["id"]);
    assert_eq!(m["serviceUrl"], env.emu.service_url().as_str());
    assert_eq!(m["channelId"], "msteams");
    // the bot can answer in the conversation it was given
    let bot = env.bot_token().await;
    let (status, reply) = env
        .call(
            Method::POST,
            &env.connector_url(&format!(
                "conversations/{}/activities/{}",
                encode(m["conversation"]["id"].as_str().unwrap()),
                m["id"].as_str().unwrap()
            )),
            Some(&bot),
            Some(message("two approvals")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
}

#[tokio::test]
async fn app_only_tokens_cannot_send_as_a_user() {
    let env = Env::start(BotAuth::None).await;
    env.install_for(MEGAN).await;
    let chat = env.chat_id(MEGAN).await;
    let token = env.app_token().await;
    let (status, body) = env
        .call(
            Method::POST,
            &env.url(&format!("/v1.0/chats/{chat}/messages")),
            Some(&token),
            Some(json!({"body": {"content": "hi"}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["code"].is_string());
    assert_eq!(messages(&env.bot_activities().await).len(), 0);
    // another user cannot write in Megan's chat either
    let adele = env.user_token(ADELE).await;
    let (status, body) = env
        .call(
            Method::POST,
            &env.url(&format!("/v1.0/chats/{chat}/messages")),
            Some(&adele),
            Some(json!({"body": {"content": "hi"}})),
        )
        .await;
    assert!(status.is_client_error(), "{status}: {body}");
    assert_eq!(messages(&env.bot_activities().await).len(), 0);
}

#[tokio::test]
async fn a_channel_message_reaches_the_bot_only_when_it_is_mentioned() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_in_team().await;
    let before = env.bot_activities().await.len();
    let (team, general, _) = env.team();
    let token = env.user_token(MEGAN).await;
    let url = env.url(&format!("/v1.0/teams/{team}/channels/{general}/messages"));

    let (status, body) = env
        .call(
            Method::POST,
            &url,
            Some(&token),
            Some(json!({"body": {"contentType": "html", "content": "nobody is mentioned"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let adele = env.user_id(ADELE).to_string();
    let (status, sent) = env
        .call(
            Method::POST,
            &url,
            Some(&token),
            Some(json!({
                "body": {"contentType": "html", "content": "<at id=\"0\">Proactive Bot</at> please ping <at id=\"1\">Adele Vance</at>"},
                "mentions": [
                    {"id": 0, "mentionText": "Proactive Bot", "mentioned": {"application": {"id": defaults::BOT_APP_ID.to_string(), "displayName": "Proactive Bot"}}},
                    {"id": 1, "mentionText": "Adele Vance", "mentioned": {"user": {"id": adele, "displayName": "Adele Vance"}}},
                ],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let activities = env.wait_for_activities(before + 1).await;
    let heard = &activities[before..];
    assert_eq!(heard.len(), 1, "only the mentioning message: {heard:#?}");
    let m = &heard[0];
    assert_eq!(m["type"], "message");
    let text = m["text"].as_str().unwrap();
    assert!(
        text.contains("<at>Proactive Bot</at>") && text.contains("please ping"),
        "{text}"
    );
    assert_eq!(
        m["conversation"]["id"],
        format!("{general};messageid={}", sent["id"].as_str().unwrap()).as_str()
    );
    assert_eq!(m["conversation"]["conversationType"], "channel");
    assert_eq!(m["channelData"]["team"]["id"], general.as_str());
    assert_eq!(m["channelData"]["channel"]["id"], general.as_str());
    let mentions: Vec<&Value> = m["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "mention")
        .collect();
    assert_eq!(mentions.len(), 2, "{m}");
    assert_eq!(
        mentions[0]["mentioned"]["id"],
        format!("28:{}", defaults::BOT_APP_ID).as_str()
    );
    assert_eq!(mentions[0]["text"], "<at>Proactive Bot</at>");
    assert_eq!(mentions[1]["mentioned"]["id"], env.user_mri(ADELE).as_str());
    assert_eq!(mentions[1]["mentioned"]["aadObjectId"], adele.as_str());

    // the bot answers in the thread
    let bot = env.bot_token().await;
    let (status, reply) = env
        .call(
            Method::POST,
            &env.connector_url(&format!(
                "conversations/{}/activities",
                encode(m["conversation"]["id"].as_str().unwrap())
            )),
            Some(&bot),
            Some(message("on it")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let (status, replies) = env
        .call(
            Method::GET,
            &env.url(&format!(
                "/v1.0/teams/{team}/channels/{general}/messages/{}/replies",
                sent["id"].as_str().unwrap()
            )),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replies}");
    assert!(
        replies["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == reply["id"]),
        "{replies}"
    );
}

#[tokio::test]
async fn the_control_api_writes_as_users_without_a_token() {
    let env = Env::start(BotAuth::None).await;
    env.install_for(MEGAN).await;
    env.install_in_team().await;
    let before = env.bot_activities().await.len();

    let (status, body) = env
        .call(
            Method::POST,
            &env.url("/_emulator/users/megan/messages"),
            None,
            Some(json!({"text": "stop"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = env
        .call(
            Method::POST,
            &env.url("/_emulator/teams/mark8/channels/General/messages"),
            None,
            Some(json!({"from": "adele", "text": "not for the bot"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, sent) = env
        .call(
            Method::POST,
            &env.url("/_emulator/teams/mark8/channels/General/messages"),
            None,
            Some(json!({"from": "adele", "text": "status?", "mentionBot": true, "mentions": ["lee"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");

    let activities = env.wait_for_activities(before + 2).await;
    let heard = &activities[before..];
    assert_eq!(heard.len(), 2, "{heard:#?}");
    assert_eq!(heard[0]["text"], "stop");
    assert_eq!(heard[0]["conversation"]["conversationType"], "personal");
    assert_eq!(heard[0]["from"]["id"], env.user_mri(MEGAN).as_str());
    let channel = &heard[1];
    assert!(channel["text"].as_str().unwrap().ends_with("status?"));
    assert_eq!(channel["from"]["id"], env.user_mri(ADELE).as_str());
    assert!(
        channel["conversation"]["id"]
            .as_str()
            .unwrap()
            .ends_with(&format!(";messageid={}", sent["id"].as_str().unwrap()))
    );
    let mentions: Vec<&Value> = channel["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "mention")
        .collect();
    assert_eq!(mentions.len(), 2, "{channel}");
    assert_eq!(
        mentions[1]["mentioned"]["id"],
        env.user_mri("lee@contoso.onmicrosoft.com").as_str()
    );

    // a user without an installation has no chat
    let (status, body) = env
        .call(
            Method::POST,
            &env.url("/_emulator/users/nestor/messages"),
            None,
            Some(json!({"text": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn the_transcript_has_both_directions_in_order() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let activities = env.connector_url(&format!("conversations/{conversation}/activities"));
    let (_, first) = env
        .call(
            Method::POST,
            &activities,
            Some(&token),
            Some(message("welcome")),
        )
        .await;
    let (status, _) = env
        .call(
            Method::POST,
            &env.url("/_emulator/users/megan/messages"),
            None,
            Some(json!({"text": "thanks"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, second) = env
        .call(
            Method::POST,
            &activities,
            Some(&token),
            Some(message("you're welcome")),
        )
        .await;
    let (status, _) = env
        .call(
            Method::PUT,
            &format!("{activities}/{}", second["id"].as_str().unwrap()),
            Some(&token),
            Some(message("you are welcome")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // deleted through the Graph chat id: the transcript still names the Connector id
    let (status, _) = env
        .call(
            Method::DELETE,
            &env.connector_url(&format!(
                "conversations/{}/activities/{}",
                env.chat_id(MEGAN).await,
                first["id"].as_str().unwrap()
            )),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    env.deliveries().await;

    let (status, transcript) = env
        .call(Method::GET, &env.url("/_emulator/transcript"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let transcript = transcript.as_array().expect("a JSON array");
    let bot = format!("28:{}", defaults::BOT_APP_ID);
    let summary: Vec<(String, String, String)> = transcript
        .iter()
        .map(|a| {
            let dir = if a["from"]["id"] == bot.as_str() {
                "bot"
            } else {
                "user"
            };
            (
                dir.to_string(),
                a["type"].as_str().unwrap_or_default().to_string(),
                a["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let s = |d: &str, t: &str, x: &str| (d.to_string(), t.to_string(), x.to_string());
    assert_eq!(
        summary,
        vec![
            s("user", "installationUpdate", ""),
            s("user", "conversationUpdate", ""),
            s("bot", "message", "welcome"),
            s("user", "message", "thanks"),
            s("bot", "message", "you're welcome"),
            s("bot", "messageUpdate", "you are welcome"),
            s("bot", "messageDelete", ""),
        ]
    );
    assert_eq!(transcript[2]["id"], first["id"]);
    assert_eq!(transcript[6]["id"], first["id"]);
    for a in transcript {
        assert_eq!(a["conversation"]["id"], conversation.as_str(), "{a}");
        assert!(a["timestamp"].is_string(), "{a}");
    }
}
