//! Bot Connector errors: Teams' codes and statuses in `{"error":{"code","message"}}`.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use teams_emulator::{BotAuth, defaults};

async fn raw(env: &Env, url: &str, token: Option<&str>, body: &'static str) -> (StatusCode, Value) {
    let mut request = env
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn bad_arguments() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let activities = env.connector_url(&format!("conversations/{conversation}/activities"));
    for body in [
        "{not json",
        "",
        "[]",
        "\"text\"",
        "{\"text\": \"no type\"}",
        "{\"type\": 7}",
    ] {
        let got = raw(&env, &activities, Some(&token), body).await;
        assert_error(&got, 400, "BadArgument");
    }
    for body in [
        json!({"type": "message", "text": 5}),
        json!({"type": "message", "attachments": {}}),
        json!({"type": "message", "attachments": [{"content": {}}]}),
        json!({"type": "message", "entities": "x"}),
    ] {
        let got = env
            .call(Method::POST, &activities, Some(&token), Some(body))
            .await;
        assert_error(&got, 400, "BadArgument");
    }
    let got = raw(
        &env,
        &env.connector_url("conversations"),
        Some(&token),
        "{oops",
    )
    .await;
    assert_error(&got, 400, "BadArgument");
    let got = env
        .call(
            Method::POST,
            &env.connector_url("conversations"),
            Some(&token),
            Some(json!({"bot": {"id": format!("28:{}", defaults::BOT_APP_ID)}, "members": [], "tenantId": defaults::TENANT_ID.to_string()})),
        )
        .await;
    assert_error(&got, 400, "BadArgument");
}

#[tokio::test]
async fn signed_mode_needs_a_bot_framework_token() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let activities = env.connector_url(&format!("conversations/{conversation}/activities"));
    let graph = env.app_token().await;
    for bad in [None, Some(graph.as_str()), Some("null"), Some("not.a.jwt")] {
        let got = env
            .call(Method::POST, &activities, bad, Some(message("hi")))
            .await;
        assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{bad:?}: {}", got.1);
        assert!(got.1["error"]["code"].is_string(), "{}", got.1);
    }
    let got = env
        .call(
            Method::GET,
            &env.connector_url(&format!("conversations/{conversation}/members")),
            None,
            None,
        )
        .await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED);
    let got = env
        .call(
            Method::POST,
            &env.connector_url("conversations"),
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forbidden_after_uninstall_and_when_blocked() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let activities = env.connector_url(&format!("conversations/{conversation}/activities"));

    let (status, _) = env
        .call(
            Method::POST,
            &env.url("/_emulator/users/megan/block"),
            None,
            Some(json!({})),
        )
        .await;
    assert!(status.is_success());
    let got = env
        .call(Method::POST, &activities, Some(&token), Some(message("hi")))
        .await;
    assert_error(&got, 403, "ConversationBlockedByUser");
    let (status, _) = env
        .call(
            Method::DELETE,
            &env.url("/_emulator/users/megan/block"),
            None,
            None,
        )
        .await;
    assert!(status.is_success());
    let got = env
        .call(Method::POST, &activities, Some(&token), Some(message("hi")))
        .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);

    env.uninstall_for(MEGAN).await;
    let got = env
        .call(Method::POST, &activities, Some(&token), Some(message("hi")))
        .await;
    assert_error(&got, 403, "ForbiddenOperationException");
    let got = env
        .call(
            Method::POST,
            &env.connector_url("conversations"),
            Some(&token),
            Some(json!({"members": [{"id": env.user_mri(MEGAN)}], "tenantId": defaults::TENANT_ID.to_string()})),
        )
        .await;
    assert_error(&got, 403, "ForbiddenOperationException");
}

#[tokio::test]
async fn a_team_without_the_bot_is_not_its_roster() {
    let env = Env::start(BotAuth::Signed).await;
    let token = env.bot_token().await;
    let (_, general, other) = env.team();
    for channel in [&general, &other] {
        let got = env
            .call(
                Method::POST,
                &env.connector_url(&format!("conversations/{}/activities", encode(channel))),
                Some(&token),
                Some(message("hi")),
            )
            .await;
        assert_error(&got, 403, "BotNotInConversationRoster");
    }
    let got = env
        .call(
            Method::GET,
            &env.connector_url(&format!("conversations/{general}/pagedmembers")),
            Some(&token),
            None,
        )
        .await;
    assert_error(&got, 403, "BotNotInConversationRoster");
    let got = env
        .call(
            Method::POST,
            &env.connector_url("conversations"),
            Some(&token),
            Some(json!({"isGroup": true, "channelData": {"channel": {"id": general}, "tenant": {"id": defaults::TENANT_ID.to_string()}}, "activity": message("x")})),
        )
        .await;
    assert_error(&got, 403, "BotNotInConversationRoster");
    let got = env
        .call(
            Method::GET,
            &env.connector_url(&format!("teams/{general}")),
            Some(&token),
            None,
        )
        .await;
    assert_error(&got, 403, "BotNotInConversationRoster");
}

#[tokio::test]
async fn not_found_codes() {
    let env = Env::start(BotAuth::None).await;
    env.install_for(MEGAN).await;
    let conversation = env.open_conversation(None, MEGAN).await;
    for cid in ["a:nope", "19:nope@thread.tacv2", "19:nope@unq.gbl.spaces"] {
        let got = env
            .call(
                Method::POST,
                &env.connector_url(&format!("conversations/{}/activities", encode(cid))),
                None,
                Some(message("hi")),
            )
            .await;
        assert_error(&got, 404, "ConversationNotFound");
        let got = env
            .call(
                Method::GET,
                &env.connector_url(&format!("conversations/{}/members", encode(cid))),
                None,
                None,
            )
            .await;
        assert_error(&got, 404, "ConversationNotFound");
    }
    let got = env
        .call(
            Method::GET,
            &env.connector_url("teams/19:nope@thread.tacv2"),
            None,
            None,
        )
        .await;
    assert_error(&got, 404, "ConversationNotFound");

    let unknown = env.connector_url(&format!(
        "conversations/{conversation}/activities/1234567890"
    ));
    let got = env
        .call(Method::PUT, &unknown, None, Some(message("edit")))
        .await;
    assert_error(&got, 404, "ActivityNotFoundInConversation");
    let got = env.call(Method::DELETE, &unknown, None, None).await;
    assert_error(&got, 404, "ActivityNotFoundInConversation");

    // a deleted activity is gone for update and delete too
    let (_, sent) = env
        .call(
            Method::POST,
            &env.connector_url(&format!("conversations/{conversation}/activities")),
            None,
            Some(message("soon gone")),
        )
        .await;
    let url = env.connector_url(&format!(
        "conversations/{conversation}/activities/{}",
        sent["id"].as_str().unwrap()
    ));
    assert_eq!(
        env.call(Method::DELETE, &url, None, None).await.0,
        StatusCode::OK
    );
    let got = env.call(Method::DELETE, &url, None, None).await;
    assert_error(&got, 404, "ActivityNotFoundInConversation");
}

#[tokio::test]
async fn oversized_activities_are_refused() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let big = "x".repeat(101 * 1024);
    let activities = env.connector_url(&format!("conversations/{conversation}/activities"));
    let got = env
        .call(Method::POST, &activities, Some(&token), Some(message(&big)))
        .await;
    assert_error(&got, 413, "MessageSizeTooBig");
    // bigger than the listener's own limit too, still the Connector's envelope
    let huge = "x".repeat(5 * 1024 * 1024);
    let got = env
        .call(
            Method::POST,
            &activities,
            Some(&token),
            Some(message(&huge)),
        )
        .await;
    assert_error(&got, 413, "MessageSizeTooBig");
    // an update that grows past the limit
    let (_, sent) = env
        .call(
            Method::POST,
            &activities,
            Some(&token),
            Some(message("small")),
        )
        .await;
    let got = env
        .call(
            Method::PUT,
            &format!("{activities}/{}", sent["id"].as_str().unwrap()),
            Some(&token),
            Some(message(&big)),
        )
        .await;
    assert_error(&got, 413, "MessageSizeTooBig");
    // just under the limit is fine
    let fits = "x".repeat(90 * 1024);
    let got = env
        .call(
            Method::POST,
            &activities,
            Some(&token),
            Some(message(&fits)),
        )
        .await;
    assert_eq!(got.0, StatusCode::CREATED);
}

#[tokio::test]
async fn unemulated_routes_answer_501() {
    let env = Env::start(BotAuth::None).await;
    for (method, rest) in [
        (Method::GET, "conversations"),
        (Method::POST, "conversations/a:x/attachments"),
        (Method::GET, "attachments/abc"),
        (Method::POST, "conversations/a:x/activities/history"),
        (Method::GET, "conversations/a:x/activities/123/members"),
        (Method::GET, "nothing/here"),
    ] {
        let got = env
            .call(
                method.clone(),
                &env.connector_url(rest),
                None,
                Some(json!({})),
            )
            .await;
        assert_error(&got, 501, "NotSupportedByEmulator");
        assert!(
            got.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("/amer/v3/"),
            "{method} {rest}: {}",
            got.1
        );
    }
}
