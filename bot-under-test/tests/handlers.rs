//! The bot over HTTP, as Teams and an operator use it, against a wiremock stand-in for the
//! emulator (login, OpenID metadata and keys, Bot Connector, Graph).

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use proactive_bot::cards::OPT_OUT_LINE;
use proactive_bot::{Bot, BotHandle, Config};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const APP_ID: &str = "b0f1e2d3-c4b5-4a69-8788-99aabbccddee";
const TENANT: &str = "e5c3a7d2-4b1f-4e8a-9c6d-2f1b0a9e8d7c";
const MEGAN_AAD: &str = "7faf8ab2-0000-4000-8000-000000000001";

/// A stand-in emulator: tokens, channel keys and a Connector that accepts every send.
async fn emulator() -> MockServer {
    let server = MockServer::start().await;
    let jwks: Value = serde_json::from_str(include_str!("../testdata/channel-jwks.json")).unwrap();
    Mock::given(method("GET"))
        .and(path("/v1/.well-known/openidconfiguration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": "https://api.botframework.com",
            "jwks_uri": format!("{}/v1/.well-known/keys", server.uri()),
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/.well-known/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/[^/]+/oauth2/v2\.0/token$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "expires_in": 3599, "access_token": "emulator-token"
        })))
        .mount(&server)
        .await;
    server
}

/// Every send that reaches the Connector succeeds (mounted last, so tests can override).
async fn connector_accepts_everything(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/amer/v3/conversations/[^/]+/activities(/[^/]+)?$",
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1700000000000"})))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/amer/v3/conversations"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": "a:created", "activityId": "1700000000001"})),
        )
        .mount(server)
        .await;
}

fn service_url(server: &MockServer) -> String {
    format!("{}/amer/", server.uri())
}

async fn start_bot(server: &MockServer, authenticated: bool) -> BotHandle {
    let mut config = Config::for_emulator(&server.uri());
    config.database_path = ":memory:".into();
    config.retry_base_delay = std::time::Duration::from_millis(10);
    if !authenticated {
        config.app_id = String::new();
    }
    Bot::start(config).await.expect("bot starts")
}

fn channel_token(server: &MockServer, key_pem: &[u8]) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-channel-key".to_owned());
    let claims = json!({
        "iss": "https://api.botframework.com", "aud": APP_ID,
        "exp": now + 3600, "nbf": now - 10, "serviceurl": service_url(server)
    });
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(key_pem).unwrap(),
    )
    .unwrap()
}

const GOOD_KEY: &[u8] = include_bytes!("../testdata/channel-signing-key.pem");
const OTHER_KEY: &[u8] = include_bytes!("../testdata/other-signing-key.pem");

async fn post_activity(bot: &BotHandle, token: Option<&str>, activity: &Value) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/api/messages", bot.url()))
        .json(activity);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

fn envelope(server: &MockServer, kind: &str, conversation: Value) -> Value {
    json!({
        "type": kind,
        "id": "f:1",
        "serviceUrl": service_url(server),
        "channelId": "msteams",
        "from": {"id": "29:megan", "name": "Megan Bowen", "aadObjectId": MEGAN_AAD},
        "recipient": {"id": format!("28:{APP_ID}"), "name": "Proactive Bot"},
        "conversation": conversation,
        "channelData": {"tenant": {"id": TENANT}}
    })
}

fn personal_install(server: &MockServer) -> Value {
    let mut activity = envelope(
        server,
        "conversationUpdate",
        json!({"id": "a:megan", "conversationType": "personal", "tenantId": TENANT}),
    );
    activity["membersAdded"] = json!([
        {"id": format!("28:{APP_ID}")},
        {"id": "29:megan", "aadObjectId": MEGAN_AAD}
    ]);
    activity
}

fn personal_message(server: &MockServer, id: &str, text: &str) -> Value {
    let mut activity = envelope(
        server,
        "message",
        json!({"id": "a:megan", "conversationType": "personal", "tenantId": TENANT}),
    );
    activity["id"] = json!(id);
    activity["text"] = json!(text);
    activity
}

/// Bodies of requests the Connector received whose path starts with `prefix`.
async fn connector_posts(server: &MockServer, prefix: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r: &Request| r.method.as_str() == "POST" && r.url.path().starts_with(prefix))
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

async fn notify(bot: &BotHandle, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/api/notify", bot.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_personal_install_stores_the_reference_and_welcomes_once() {
    let server = emulator().await;
    connector_accepts_everything(&server).await;
    let bot = start_bot(&server, true).await;
    let token = channel_token(&server, GOOD_KEY);

    assert_eq!(
        post_activity(&bot, Some(&token), &personal_install(&server)).await,
        200
    );
    // Teams also sends installationUpdate(add) for the same install: no second welcome.
    let mut install = envelope(
        &server,
        "installationUpdate",
        json!({"id": "a:megan", "conversationType": "personal", "tenantId": TENANT}),
    );
    install["action"] = json!("add");
    assert_eq!(post_activity(&bot, Some(&token), &install).await, 200);

    let welcomes = connector_posts(&server, "/amer/v3/conversations/a:megan/activities").await;
    assert_eq!(welcomes.len(), 1, "{welcomes:?}");
    assert!(
        welcomes[0].to_string().contains(OPT_OUT_LINE),
        "{}",
        welcomes[0]
    );

    let store = &bot.state().store;
    let user = store.find_user(MEGAN_AAD).unwrap().expect("user stored");
    let reference = store
        .personal_reference(user.user_key)
        .unwrap()
        .expect("reference stored");
    assert_eq!(reference.conversation_id, "a:megan");
    assert_eq!(reference.service_url, service_url(&server));

    // The Connector was called with the bot's token.
    let requests = server.received_requests().await.unwrap();
    let send = requests
        .iter()
        .find(|r| r.url.path() == "/amer/v3/conversations/a:megan/activities")
        .unwrap();
    assert_eq!(
        send.headers.get("authorization").unwrap(),
        "Bearer emulator-token"
    );
    bot.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_installation_update_alone_welcomes_the_user() {
    let server = emulator().await;
    connector_accepts_everything(&server).await;
    let bot = start_bot(&server, false).await;
    let mut install = envelope(
        &server,
        "installationUpdate",
        json!({"id": "a:megan", "conversationType": "personal", "tenantId": TENANT}),
    );
    install["action"] = json!("add");
    assert_eq!(post_activity(&bot, None, &install).await, 200);
    let welcomes = connector_posts(&server, "/amer/v3/conversations/a:megan/activities").await;
    assert_eq!(welcomes.len(), 1);
    assert!(welcomes[0]["text"].as_str().unwrap().contains(OPT_OUT_LINE));
    // Without an app id the bot sends no token.
    let requests = server.received_requests().await.unwrap();
    assert!(
        requests
            .iter()
            .all(|r| r.headers.get("authorization").is_none())
    );

    // Uninstall removes the reference; a notification then reports not installed.
    install["action"] = json!("remove");
    assert_eq!(post_activity(&bot, None, &install).await, 200);
    let report = notify(&bot, json!({"users": [MEGAN_AAD], "text": "hi"})).await;
    assert_eq!(report["not_installed"], 1, "{report}");
    assert_eq!(
        connector_posts(&server, "/amer/v3/conversations/a:megan/activities")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn stop_opts_out_and_notify_skips_the_user_until_start() {
    let server = emulator().await;
    connector_accepts_everything(&server).await;
    let bot = start_bot(&server, false).await;
    assert_eq!(
        post_activity(&bot, None, &personal_install(&server)).await,
        200
    );

    assert_eq!(
        post_activity(
            &bot,
            None,
            &personal_message(&server, "1001", "<at>Proactive Bot</at> STOP ")
        )
        .await,
        200
    );
    let replies = connector_posts(&server, "/amer/v3/conversations/a:megan/activities/1001").await;
    assert_eq!(replies.len(), 1, "the stop is confirmed with a reply");
    assert!(
        replies[0]["text"].as_str().unwrap().contains("opted out"),
        "{}",
        replies[0]
    );

    let report = notify(
        &bot,
        json!({"users": [MEGAN_AAD], "title": "Build failed", "what": "main is red"}),
    )
    .await;
    assert_eq!(report["opted_out"], 1, "{report}");
    assert_eq!(report["sent"], 0);
    assert_eq!(report["results"][0]["outcome"], "opted_out");
    assert_eq!(report["results"][0]["aadObjectId"], MEGAN_AAD);

    assert_eq!(
        post_activity(&bot, None, &personal_message(&server, "1002", "start")).await,
        200
    );
    let report = notify(&bot, json!({"what": "main is green again", "who": "CI"})).await;
    assert_eq!(report["sent"], 1, "{report}");
    let sends = connector_posts(&server, "/amer/v3/conversations/a:megan/activities").await;
    let notification = sends.last().unwrap().to_string();
    assert!(notification.contains("main is green again") && notification.contains(OPT_OUT_LINE));
}

#[tokio::test]
async fn help_and_unknown_text_get_the_help_reply() {
    let server = emulator().await;
    connector_accepts_everything(&server).await;
    let bot = start_bot(&server, false).await;
    assert_eq!(
        post_activity(&bot, None, &personal_message(&server, "7", " Help ")).await,
        200
    );
    let replies = connector_posts(&server, "/amer/v3/conversations/a:megan/activities/7").await;
    assert_eq!(replies.len(), 1);
    assert!(replies[0]["text"].as_str().unwrap().contains("**stop**"));
}

#[tokio::test]
async fn an_unknown_activity_type_is_acknowledged_and_nothing_is_sent() {
    let server = emulator().await;
    connector_accepts_everything(&server).await;
    let bot = start_bot(&server, true).await;
    let token = channel_token(&server, GOOD_KEY);
    let activity = envelope(&server, "messageReaction", json!({"id": "a:megan"}));
    assert_eq!(post_activity(&bot, Some(&token), &activity).await, 200);
    assert!(connector_posts(&server, "/amer/").await.is_empty());
}

#[tokio::test]
async fn a_missing_or_invalid_token_is_refused_when_the_bot_has_an_app_id() {
    let server = emulator().await;
    connector_accepts_everything(&server).await;
    let bot = start_bot(&server, true).await;
    let activity = personal_install(&server);
    assert_eq!(post_activity(&bot, None, &activity).await, 401);
    assert_eq!(post_activity(&bot, Some("not-a-jwt"), &activity).await, 401);
    let forged = channel_token(&server, OTHER_KEY);
    assert_eq!(post_activity(&bot, Some(&forged), &activity).await, 401);
    // A good token for another service URL.
    let mut elsewhere = activity.clone();
    elsewhere["serviceUrl"] = json!("https://smba.trafficmanager.net/amer/");
    let token = channel_token(&server, GOOD_KEY);
    assert_eq!(post_activity(&bot, Some(&token), &elsewhere).await, 401);
    assert!(connector_posts(&server, "/amer/").await.is_empty());
    assert!(bot.state().store.users().unwrap().is_empty());
}

#[tokio::test]
async fn malformed_activities_are_bad_requests() {
    let server = emulator().await;
    let bot = start_bot(&server, false).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/messages", bot.url());
    for body in [
        "",
        "not json",
        "[]",
        "{\"type\": 5}",
        "{\"text\":\"no type\"}",
    ] {
        let status = client.post(&url).body(body).send().await.unwrap().status();
        assert_eq!(status.as_u16(), 400, "{body:?}");
    }
    let no_service_url = json!({"type": "message", "conversation": {"id": "a:1"}, "text": "hi"});
    assert_eq!(post_activity(&bot, None, &no_service_url).await, 400);
    let bad_members = json!({"type": "conversationUpdate", "membersAdded": "everyone"});
    assert_eq!(post_activity(&bot, None, &bad_members).await, 400);
    let bad_notify = client
        .post(format!("{}/api/notify", bot.url()))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_notify.status().as_u16(), 400);
}

#[tokio::test]
async fn a_user_who_blocked_the_bot_is_marked_and_not_tried_again() {
    let server = emulator().await;
    // The welcome goes through; then the user blocks the bot.
    Mock::given(method("POST"))
        .and(path("/amer/v3/conversations/a:megan/activities"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/amer/v3/conversations/a:megan/activities"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": {"code": "ConversationBlockedByUser", "message": "User blocked the conversation with the bot."}
        })))
        .mount(&server)
        .await;
    connector_accepts_everything(&server).await;
    let bot = start_bot(&server, false).await;
    assert_eq!(
        post_activity(&bot, None, &personal_install(&server)).await,
        200
    );
    let sends_before = connector_posts(&server, "/amer/v3/conversations/a:megan/activities")
        .await
        .len();

    let report = notify(&bot, json!({"users": ["29:megan"], "text": "hello"})).await;
    assert_eq!(report["blocked"], 1, "{report}");
    let report = notify(&bot, json!({"users": ["29:megan"], "text": "hello again"})).await;
    assert_eq!(report["blocked"], 1, "{report}");
    let sends_after = connector_posts(&server, "/amer/v3/conversations/a:megan/activities")
        .await
        .len();
    // The first notification was tried once (403 is final); the second was not tried at all.
    assert_eq!(sends_before, 1);
    assert_eq!(sends_after, sends_before + 1);
    let user = bot.state().store.find_user("29:megan").unwrap().unwrap();
    assert_eq!(user.status, proactive_bot::store::UserStatus::Blocked);
}

/// Graph for one user who never opened the app; the app gets installed on the first POST.
async fn graph_with_one_user(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v1.0/appCatalogs/teamsApps"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [{"id": "catalog-1", "externalId": "d6a1c2b3-e4f5-4a6b-8c7d-0e1f2a3b4c5d"}]
        })))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [{"id": "aad-adele", "userPrincipalName": "AdeleV@contoso.example", "displayName": "Adele Vance"}]
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/aad-adele/teamwork/installedApps"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .up_to_n_times(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/users/aad-adele/teamwork/installedApps"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"value": [{"id": "inst-adele"}]})),
        )
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.0/users/aad-adele/teamwork/installedApps"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/v1.0/users/aad-adele/teamwork/installedApps/inst-adele/chat",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "19:bot_adele@unq.gbl.spaces"})),
        )
        .mount(server)
        .await;
}

#[tokio::test]
async fn install_reaches_a_user_through_the_chat_id_exactly_once() {
    let server = emulator().await;
    graph_with_one_user(&server).await;
    connector_accepts_everything(&server).await;
    let bot = start_bot(&server, true).await;
    let client = reqwest::Client::new();
    let install = || async {
        let response = client
            .post(format!("{}/api/install", bot.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.json::<Value>().await.unwrap()
    };
    let first = install().await;
    assert_eq!(first["sent"], 1, "{first}");
    assert_eq!(first["installed"], 1, "{first}");
    assert_eq!(first["results"][0]["aadObjectId"], "aad-adele");
    let second = install().await;
    assert_eq!(second["sent"], 0, "{second}");
    assert_eq!(second["already_welcomed"], 1, "{second}");

    let welcomes = connector_posts(
        &server,
        "/amer/v3/conversations/19:bot_adele@unq.gbl.spaces/activities",
    )
    .await;
    assert_eq!(welcomes.len(), 1);
    assert!(welcomes[0].to_string().contains(OPT_OUT_LINE));
}

#[tokio::test]
async fn a_team_install_introduces_the_bot_and_caches_the_roster() {
    let server = emulator().await;
    Mock::given(method("GET"))
        .and(path("/amer/v3/conversations/19:team@thread.tacv2/pagedmembers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "members": [
                {"id": "29:megan", "name": "Megan Bowen", "aadObjectId": MEGAN_AAD, "userPrincipalName": "MeganB@contoso.example"},
                {"id": "29:adele", "name": "Adele Vance", "objectId": "aad-adele"}
            ]
        })))
        .expect(1)
        .mount(&server)
        .await;
    connector_accepts_everything(&server).await;
    let bot = start_bot(&server, false).await;
    let mut added = envelope(
        &server,
        "conversationUpdate",
        json!({"id": "19:team@thread.tacv2", "isGroup": true, "conversationType": "channel", "tenantId": TENANT}),
    );
    added["membersAdded"] = json!([{"id": format!("28:{APP_ID}")}]);
    added["channelData"] = json!({
        "team": {"id": "19:team@thread.tacv2", "name": "Contoso"},
        "eventType": "teamMemberAdded",
        "tenant": {"id": TENANT}
    });
    assert_eq!(post_activity(&bot, None, &added).await, 200);
    let intro = connector_posts(
        &server,
        "/amer/v3/conversations/19:team@thread.tacv2/activities",
    )
    .await;
    assert_eq!(intro.len(), 1);
    assert_eq!(
        intro[0]["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.hero"
    );
    assert!(intro[0].to_string().contains(OPT_OUT_LINE));

    // Every roster member can now be reached 1:1, by UPN too.
    let report = notify(
        &bot,
        json!({"users": ["meganb@contoso.example", "aad-adele"], "text": "hi"}),
    )
    .await;
    assert_eq!(report["sent"], 2, "{report}");
    let created = connector_posts(&server, "/amer/v3/conversations").await;
    let members: Vec<_> = created
        .iter()
        .filter_map(|c| c.pointer("/members/0/id").and_then(Value::as_str))
        .collect();
    assert!(
        members.contains(&"29:megan") && members.contains(&"29:adele"),
        "{created:?}"
    );

    // A new member: welcomed by name in the channel and 1:1 with the guide.
    let mut joined = added.clone();
    joined["membersAdded"] =
        json!([{"id": "29:lynne", "name": "Lynne Robbins", "aadObjectId": "aad-lynne"}]);
    assert_eq!(post_activity(&bot, None, &joined).await, 200);
    let channel = connector_posts(
        &server,
        "/amer/v3/conversations/19:team@thread.tacv2/activities",
    )
    .await;
    assert_eq!(channel.len(), 2);
    assert!(channel[1].to_string().contains("Lynne Robbins"));
    let personal = connector_posts(&server, "/amer/v3/conversations/a:created/activities").await;
    let guide = personal.last().unwrap().to_string();
    assert!(
        guide.contains("new-member guide") && guide.contains(OPT_OUT_LINE),
        "{guide}"
    );

    // A channel notification opens a new thread in General.
    let report = notify(
        &bot,
        json!({"channel": true, "title": "Release", "what": "v2 shipped"}),
    )
    .await;
    assert_eq!(report["sent"], 1, "{report}");
    let thread = connector_posts(&server, "/amer/v3/conversations").await;
    let post = thread
        .iter()
        .find(|c| c["isGroup"] == true)
        .expect("a channel thread");
    assert_eq!(post["channelData"]["channel"]["id"], "19:team@thread.tacv2");
    assert!(post["activity"].to_string().contains(OPT_OUT_LINE));
}

#[tokio::test]
async fn references_survive_a_restart() {
    let server = emulator().await;
    connector_accepts_everything(&server).await;
    let dir = std::env::temp_dir().join(format!("proactive-bot-restart-{}", uuid::Uuid::new_v4()));
    let mut config = Config::for_emulator(&server.uri());
    config.app_id = String::new();
    config.database_path = dir.join("bot.sqlite3");
    let bot = Bot::start(config.clone()).await.unwrap();
    assert_eq!(
        post_activity(&bot, None, &personal_install(&server)).await,
        200
    );
    bot.shutdown().await.unwrap();

    let bot = Bot::start(config).await.unwrap();
    let report = notify(&bot, json!({"users": [MEGAN_AAD], "text": "after restart"})).await;
    assert_eq!(report["sent"], 1, "{report}");
    bot.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
