//! Bot Connector: creating 1:1 conversations and channel threads, and sending, replying to,
//! updating and deleting activities, checked through Graph.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use teams_emulator::{BotAuth, defaults};

fn bot_mri() -> String {
    format!("28:{}", defaults::BOT_APP_ID)
}

async fn chat_messages(env: &Env, chat: &str) -> Vec<Value> {
    let token = env.app_token().await;
    let (status, body) = env
        .call(
            Method::GET,
            &env.url(&format!("/v1.0/chats/{chat}/messages")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["value"].as_array().cloned().unwrap_or_default()
}

fn find<'a>(messages: &'a [Value], id: &str) -> &'a Value {
    messages
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no message {id} in {messages:#?}"))
}

#[tokio::test]
async fn create_conversation_accepts_the_tenant_in_each_place_and_returns_the_same_id() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let tenant = defaults::TENANT_ID.to_string();
    let member = env.user_mri(MEGAN);
    let base = json!({"bot": {"id": bot_mri(), "name": "Bot"}, "isGroup": false, "members": [{"id": member}]});
    let mut ids = Vec::new();
    for extra in [
        json!({"tenantId": tenant}),
        json!({"tenantID": tenant}),
        json!({"channelData": {"tenant": {"id": tenant}}}),
        json!({"tenantId": tenant, "activity": null}),
    ] {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = env
            .call(
                Method::POST,
                &env.connector_url("conversations"),
                Some(&token),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        let id = answer["id"].as_str().expect("id").to_string();
        assert!(id.starts_with("a:"), "{id}");
        ids.push(id);
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    // the install's activities named the same conversation
    let activities = env.bot_activities().await;
    assert_eq!(activities[0]["conversation"]["id"], ids[0].as_str());
}

#[tokio::test]
async fn create_conversation_with_an_initial_activity_answers_its_id() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let (status, answer) = env
        .call(
            Method::POST,
            &env.connector_url("conversations"),
            Some(&token),
            Some(json!({
                "bot": {"id": bot_mri()},
                "members": [{"id": env.user_mri(MEGAN)}],
                "tenantId": defaults::TENANT_ID.to_string(),
                "activity": message("welcome"),
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let activity = answer["activityId"].as_str().expect("activityId");
    let messages = chat_messages(&env, &env.chat_id(MEGAN).await).await;
    assert_eq!(find(&messages, activity)["body"]["content"], "welcome");
}

#[tokio::test]
async fn send_reply_update_delete_show_in_graph() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let activities =
        |rest: &str| env.connector_url(&format!("conversations/{conversation}/activities{rest}"));

    let (status, sent) = env
        .call(
            Method::POST,
            &activities(""),
            Some(&token),
            Some(message("hello megan")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let sent_id = sent["id"].as_str().expect("id").to_string();
    assert!(sent_id.chars().all(|c| c.is_ascii_digit()), "{sent_id}");

    // a reply to an id nobody knows (CloudAdapter's proactive send) is a new message
    let (status, reply) = env
        .call(
            Method::POST,
            &activities(&format!("/{}", uuid::Uuid::new_v4())),
            Some(&token),
            Some(message("proactive")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let reply_id = reply["id"].as_str().expect("id").to_string();
    assert_ne!(reply_id, sent_id);

    let chat = env.chat_id(MEGAN).await;
    let messages = chat_messages(&env, &chat).await;
    let m = find(&messages, &sent_id);
    assert_eq!(m["body"]["content"], "hello megan");
    assert_eq!(
        m["from"]["application"]["id"],
        defaults::BOT_APP_ID.to_string().as_str()
    );
    assert!(m["deletedDateTime"].is_null());
    assert_eq!(find(&messages, &reply_id)["body"]["content"], "proactive");

    let (status, updated) = env
        .call(
            Method::PUT,
            &activities(&format!("/{sent_id}")),
            Some(&token),
            Some(message("hello again")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["id"], sent_id.as_str());
    let messages = chat_messages(&env, &chat).await;
    assert_eq!(find(&messages, &sent_id)["body"]["content"], "hello again");
    assert!(find(&messages, &sent_id)["lastModifiedDateTime"].is_string());

    let (status, _) = env
        .call(
            Method::DELETE,
            &activities(&format!("/{sent_id}")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let messages = chat_messages(&env, &chat).await;
    assert!(find(&messages, &sent_id)["deletedDateTime"].is_string());
    assert!(find(&messages, &reply_id)["deletedDateTime"].is_null());
}

#[tokio::test]
async fn cards_show_as_attachments_in_graph() {
    let env = Env::start(BotAuth::None).await;
    env.install_for(MEGAN).await;
    let conversation = env.open_conversation(None, MEGAN).await;
    let hero = json!({"contentType": "application/vnd.microsoft.card.hero", "content": {"title": "Hero", "buttons": [{"type": "imBack", "title": "Go", "value": "go"}]}});
    let adaptive = json!({"contentType": "application/vnd.microsoft.card.adaptive", "content": {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Adaptive"}]}});
    let (status, sent) = env
        .call(
            Method::POST,
            &env.connector_url(&format!("conversations/{conversation}/activities")),
            None,
            Some(json!({"type": "message", "attachments": [hero, adaptive]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let messages = chat_messages(&env, &env.chat_id(MEGAN).await).await;
    let m = find(&messages, sent["id"].as_str().unwrap());
    let attachments = m["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 2, "{m}");
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.hero"
    );
    assert_eq!(
        attachments[1]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let content: Value =
        serde_json::from_str(attachments[1]["content"].as_str().expect("content string")).unwrap();
    assert_eq!(content["type"], "AdaptiveCard");
    let body = m["body"]["content"].as_str().unwrap();
    for a in attachments {
        assert!(body.contains(&format!(
            "<attachment id=\"{}\">",
            a["id"].as_str().unwrap()
        )));
    }
}

#[tokio::test]
async fn the_graph_chat_id_and_percent_encoded_ids_address_the_same_chat() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let chat = env.chat_id(MEGAN).await;
    assert!(chat.starts_with("19:") && chat.ends_with("@unq.gbl.spaces"));
    let mut ids = Vec::new();
    for (label, cid) in [
        ("graph id", chat.clone()),
        ("encoded a:", encode(&conversation)),
        ("encoded 19:", encode(&chat)),
    ] {
        let (status, sent) = env
            .call(
                Method::POST,
                &env.connector_url(&format!("conversations/{cid}/activities")),
                Some(&token),
                Some(message(label)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{label}: {sent}");
        ids.push(sent["id"].as_str().unwrap().to_string());
    }
    let messages = chat_messages(&env, &chat).await;
    for id in &ids {
        find(&messages, id);
    }
    // the bot's own activities keep the Connector id however the chat was addressed
    let transcript = env.emu.transcript();
    for id in &ids {
        let a = transcript
            .iter()
            .find(|a| a["id"] == id.as_str())
            .expect("the sent activity in the transcript");
        assert_eq!(a["conversation"]["id"], conversation.as_str());
    }
    // update and delete through the encoded Graph id too
    let (status, _) = env
        .call(
            Method::PUT,
            &env.connector_url(&format!(
                "conversations/{}/activities/{}",
                encode(&chat),
                ids[0]
            )),
            Some(&token),
            Some(message("edited")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env
        .call(
            Method::DELETE,
            &env.connector_url(&format!(
                "conversations/{}/activities/{}",
                encode(&conversation),
                ids[1]
            )),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_new_channel_thread_appears_in_graph_and_takes_replies() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_in_team().await;
    let token = env.bot_token().await;
    let (team, general, other) = env.team();
    for channel in [&general, &other] {
        let (status, answer) = env
            .call(
                Method::POST,
                &env.connector_url("conversations"),
                Some(&token),
                Some(json!({
                    "isGroup": true,
                    "bot": {"id": bot_mri()},
                    "channelData": {"channel": {"id": channel}, "tenant": {"id": defaults::TENANT_ID.to_string()}},
                    "activity": message("new thread"),
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        let thread = answer["id"].as_str().expect("id").to_string();
        let activity = answer["activityId"]
            .as_str()
            .expect("activityId")
            .to_string();
        assert_eq!(thread, format!("{channel};messageid={activity}"));

        // a reply in the thread, with the id encoded as botbuilder sends it
        let (status, reply) = env
            .call(
                Method::POST,
                &env.connector_url(&format!("conversations/{}/activities", encode(&thread))),
                Some(&token),
                Some(message("in the thread")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");

        // channel messages need ChannelMessage.Read.All: read them as Megan, a team owner
        let app = env.user_token(MEGAN).await;
        let (status, listed) = env
            .call(
                Method::GET,
                &env.url(&format!("/v1.0/teams/{team}/channels/{channel}/messages")),
                Some(&app),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let messages = listed["value"].as_array().unwrap();
        let root = find(messages, &activity);
        assert_eq!(root["body"]["content"], "new thread");
        assert_eq!(
            root["from"]["application"]["id"],
            defaults::BOT_APP_ID.to_string().as_str()
        );
        let (status, replies) = env
            .call(
                Method::GET,
                &env.url(&format!(
                    "/v1.0/teams/{team}/channels/{channel}/messages/{activity}/replies"
                )),
                Some(&app),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{replies}");
        find(
            replies["value"].as_array().unwrap(),
            reply["id"].as_str().unwrap(),
        );
    }
}

#[tokio::test]
async fn unsigned_mode_needs_no_token_and_accepts_bearer_null() {
    let env = Env::start(BotAuth::None).await;
    env.install_for(MEGAN).await;
    let conversation = env.open_conversation(None, MEGAN).await;
    let (status, sent) = env
        .call(
            Method::POST,
            &env.connector_url(&format!("conversations/{conversation}/activities")),
            Some("null"),
            Some(message("no token")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let (status, sent) = env
        .call(
            Method::POST,
            &env.connector_url(&format!("conversations/{conversation}/activities")),
            None,
            Some(message("no header")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    // optional fields sent as null, as some serializers do
    let (status, sent) = env
        .call(
            Method::POST,
            &env.connector_url(&format!("conversations/{conversation}/activities")),
            None,
            Some(
                json!({"type": "message", "text": "nulls", "attachments": null, "entities": null}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
}
