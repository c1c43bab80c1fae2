//! Teams' throttling and injected faults, as a bot sees them over HTTP.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use teams_emulator::BotAuth;

const MEGAN: &str = "megan@contoso.onmicrosoft.com";

async fn send(env: &Env, token: &str, conversation: &str, text: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(env.connector_url(&format!(
            "conversations/{}/activities",
            encode(conversation)
        )))
        .bearer_auth(token)
        .json(&message(text))
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn the_eighth_message_in_a_second_to_one_chat_is_throttled_with_retry_after() {
    // The clock stands still, so every call falls in the same second however slow the machine.
    let env = Env::start_on_manual_clock(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let mut statuses = Vec::new();
    let mut throttled = None;
    for i in 0..8 {
        let r = send(&env, &token, &conversation, &format!("burst {i}")).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body: Value = r.json().await.expect("json");
            throttled = Some((retry_after, body));
        }
    }
    // Teams allows 7 sends or creates per second per bot per conversation; the create was one.
    assert_eq!(&statuses[..6], &[201; 6], "{statuses:?}");
    assert_eq!(statuses[6], 429, "{statuses:?}");
    let (retry_after, body) = throttled.expect("a 429");
    assert_eq!(body["error"]["code"], "Throttled", "{body}");
    let secs: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert_eq!(secs, 1);
    // Once the clock has moved past the window, the chat takes messages again.
    env.emu.clock().advance(chrono::Duration::seconds(2));
    assert_eq!(
        send(&env, &token, &conversation, "after the wait")
            .await
            .status(),
        201
    );
    // Another user's chat is not affected.
    env.install_for("adele@contoso.onmicrosoft.com").await;
    let other = env
        .open_conversation(Some(&token), "adele@contoso.onmicrosoft.com")
        .await;
    assert_eq!(send(&env, &token, &other, "hello").await.status(), 201);
}

#[tokio::test]
async fn an_injected_fault_fires_then_an_early_retry_is_refused_and_recorded() {
    let env = Env::start_on_manual_clock(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let (status, _) = env
        .call(
            Method::POST,
            &env.url("/_emulator/faults"),
            None,
            Some(json!({"operation": "send", "status": 429, "retry_after": 30, "times": 1, "about": env.chat_id(MEGAN).await})),
        )
        .await;
    assert_eq!(status, 201);
    let first = send(&env, &token, &conversation, "first").await;
    assert_eq!(first.status(), 429);
    assert_eq!(
        first
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("30")
    );
    // The bot waited a second, not thirty: Teams throttles it again, and the emulator says so.
    env.emu.clock().advance(chrono::Duration::seconds(1));
    let early = send(&env, &token, &conversation, "too soon").await;
    assert_eq!(early.status(), 429);
    let (_, faults) = env
        .call(Method::GET, &env.url("/_emulator/faults"), None, None)
        .await;
    assert_eq!(faults["faults"][0]["fired"], 1, "{faults}");
    assert_eq!(
        faults["earlyRetries"].as_array().map(Vec::len),
        Some(1),
        "{faults}"
    );
    assert!(
        faults["earlyRetries"][0]["earlyByMs"]
            .as_i64()
            .is_some_and(|ms| ms > 25_000),
        "{faults}"
    );
    // Faults of other kinds, or malformed ones, are refused with a reason.
    for bad in [
        json!({"operation": "send", "status": 200}),
        json!({"operation": "fly", "status": 500}),
        json!({"status": 500}),
        json!({"operation": "send", "status": 500, "about": "nobody-at-all"}),
    ] {
        let (status, body) = env
            .call(Method::POST, &env.url("/_emulator/faults"), None, Some(bad))
            .await;
        assert_eq!(status, 400, "{body}");
    }
}

#[tokio::test]
async fn graph_install_faults_answer_in_graphs_envelope() {
    let env = Env::start(BotAuth::Signed).await;
    let user = env.user_id(MEGAN).to_string();
    env.call(
        Method::POST,
        &env.url("/_emulator/faults"),
        None,
        Some(json!({"operation": "graph_install", "status": 503, "retry_after": 1, "about": user})),
    )
    .await;
    let token = env.app_token().await;
    let (status, body) = env.install_for_with(MEGAN, &token).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "serviceNotAvailable", "{body}");
    assert!(
        body["error"]["innerError"]["request-id"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn reset_forgets_installs_messages_deliveries_and_faults() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    env.wait_for_activities(2).await;
    let (added, _) = env
        .call(
            Method::POST,
            &env.url("/_emulator/faults"),
            None,
            Some(json!({"operation": "send", "status": 503})),
        )
        .await;
    assert_eq!(added, 201);
    let (_, before) = env
        .call(Method::GET, &env.url("/_emulator/faults"), None, None)
        .await;
    assert_eq!(
        before["faults"].as_array().map(Vec::len),
        Some(1),
        "{before}"
    );
    let (status, _) = env
        .call(Method::POST, &env.url("/_emulator/reset"), None, None)
        .await;
    assert_eq!(status, 204);
    let (_, deliveries) = env
        .call(Method::GET, &env.url("/_emulator/deliveries"), None, None)
        .await;
    assert_eq!(deliveries["value"], json!([]), "{deliveries}");
    let (_, transcript) = env
        .call(Method::GET, &env.url("/_emulator/transcript"), None, None)
        .await;
    assert_eq!(transcript, json!([]));
    let (_, faults) = env
        .call(Method::GET, &env.url("/_emulator/faults"), None, None)
        .await;
    assert_eq!(faults["faults"], json!([]));
    // Nothing is installed any more, and an install delivers to the same bot again.
    let token = env.app_token().await;
    let path = format!("/v1.0/users/{MEGAN}/teamwork/installedApps");
    let (_, list) = env
        .call(Method::GET, &env.url(&path), Some(&token), None)
        .await;
    assert_eq!(list["value"], json!([]), "{list}");
    env.install_for(MEGAN).await;
    env.wait_for_activities(4).await;
}

#[tokio::test]
async fn the_inspector_page_is_served() {
    let env = Env::start(BotAuth::None).await;
    let page = reqwest::get(env.url("/_emulator/inspector"))
        .await
        .expect("inspector");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let html = page.text().await.expect("html");
    assert!(html.contains("<title>teams-emulator inspector</title>"));
    assert!(
        html.contains("/_emulator/") && html.contains("textContent"),
        "reads the control API and renders text safely"
    );
}

#[tokio::test]
async fn a_fault_names_its_user_or_conversation_any_way_the_bot_does() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    // by UPN: the user's chat with the bot, whether the bot sends to the a: id or the Graph id
    for about in [json!(MEGAN), json!(conversation.clone())] {
        let (status, body) = env
            .call(
                Method::POST,
                &env.url("/_emulator/faults"),
                None,
                Some(json!({"operation": "send", "status": 502, "about": about})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(send(&env, &token, &conversation, "one").await.status(), 502);
    assert_eq!(
        send(&env, &token, &env.chat_id(MEGAN).await, "two")
            .await
            .status(),
        502
    );
    assert_eq!(
        send(&env, &token, &conversation, "three").await.status(),
        201
    );
}

#[tokio::test]
async fn the_control_api_takes_the_fault_steps_fields_and_lists_them_when_refusing() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let faults = env.url("/_emulator/faults");
    let (status, body) = env
        .call(
            Method::POST,
            &faults,
            None,
            Some(json!({"operation": "send", "status": 502, "user": "megan"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, listed) = env.call(Method::GET, &faults, None, None).await;
    assert_eq!(
        listed["faults"][0]["spec"]["about"],
        json!(env.chat_id(MEGAN).await),
        "{listed}"
    );
    assert_eq!(send(&env, &token, &conversation, "one").await.status(), 502);
    assert_eq!(send(&env, &token, &conversation, "two").await.status(), 201);
    for (bad, reason) in [
        (
            json!({"operation": "send", "status": 500, "user": "megan", "team": "mark8"}),
            "not both 'user' and 'team'",
        ),
        (
            json!({"operation": "send", "status": 500, "chanel": "General"}),
            "unknown field",
        ),
    ] {
        let (status, body) = env.call(Method::POST, &faults, None, Some(bad)).await;
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{message}");
        assert!(
            message.ends_with(teams_emulator::Fault::FIELDS),
            "{message}"
        );
    }
}
