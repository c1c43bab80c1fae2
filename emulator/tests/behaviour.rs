//! Switches for where real Teams behaves in more than one way.

mod common;

use common::*;
use teams_emulator::{BotAuth, EmulatorConfig};

#[tokio::test]
async fn sends_can_be_accepted_with_202_and_no_body_and_still_land() {
    let mut config = EmulatorConfig::default_tenant();
    config.behaviour.send_accepted_without_id = true;
    let env = Env::start_with(BotAuth::Signed, config, 200).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let answer = reqwest::Client::new()
        .post(env.connector_url(&format!(
            "conversations/{}/activities",
            encode(&conversation)
        )))
        .bearer_auth(&token)
        .json(&message("accepted, not yet numbered"))
        .send()
        .await
        .expect("send");
    assert_eq!(answer.status(), 202);
    assert_eq!(
        answer.text().await.expect("body"),
        "",
        "an empty body, as Teams sends it"
    );
    let chat = env.chat_id(MEGAN).await;
    let messages = env
        .client
        .chat_messages(&chat)
        .await
        .expect("the chat's messages");
    assert!(
        messages
            .iter()
            .any(|m| m["body"]["content"] == "accepted, not yet numbered"),
        "{messages:#?}"
    );
}
