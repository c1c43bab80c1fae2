//! Activities the bot receives when it is installed, uninstalled, or a team changes: their order,
//! their Teams shape, their signature, and what happens when the bot is not there to hear them.

mod common;

use common::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
use serde_json::{Value, json};
use teams_emulator::{BotAuth, Emulator, EmulatorConfig, defaults};

fn header<'a>(r: &'a wiremock::Request, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

fn bot_mri() -> String {
    format!("28:{}", defaults::BOT_APP_ID)
}

/// Checks the envelope every personal activity shares.
fn assert_personal_envelope(env: &Env, a: &Value, upn: &str) {
    let tenant = defaults::TENANT_ID.to_string();
    assert_eq!(a["channelId"], "msteams", "{a}");
    assert_eq!(a["serviceUrl"], env.emu.service_url().as_str(), "{a}");
    assert_eq!(a["from"]["id"], env.user_mri(upn).as_str(), "{a}");
    assert_eq!(
        a["from"]["aadObjectId"],
        env.user_id(upn).to_string().as_str(),
        "{a}"
    );
    assert_eq!(a["recipient"]["id"], bot_mri().as_str(), "{a}");
    assert_eq!(a["conversation"]["conversationType"], "personal", "{a}");
    assert_eq!(a["conversation"]["tenantId"], tenant.as_str(), "{a}");
    assert!(
        a["conversation"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("a:")),
        "{a}"
    );
    assert_eq!(a["channelData"]["tenant"]["id"], tenant.as_str(), "{a}");
    assert!(
        a["entities"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["type"] == "clientInfo")),
        "{a}"
    );
    assert_eq!(a["locale"], "en-US", "{a}");
    let ts = a["timestamp"].as_str().expect("timestamp");
    chrono::DateTime::parse_from_rfc3339(ts).expect("an RFC 3339 timestamp");
    assert!(a["id"].as_str().is_some_and(|s| !s.is_empty()), "{a}");
}

#[tokio::test]
async fn personal_install_delivers_installation_update_then_conversation_update_signed() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let requests = env.bot_requests().await;
    assert_eq!(requests.len(), 2, "two activities on install");
    let activities: Vec<Value> = requests
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();

    let (install, update) = (&activities[0], &activities[1]);
    assert_eq!(install["type"], "installationUpdate");
    assert_eq!(install["action"], "add");
    assert_eq!(update["type"], "conversationUpdate");
    let added = update["membersAdded"].as_array().expect("membersAdded");
    assert!(
        added.iter().any(|m| m["id"] == bot_mri().as_str()),
        "{update}"
    );
    for a in &activities {
        assert_personal_envelope(&env, a, MEGAN);
    }
    assert_eq!(install["conversation"]["id"], update["conversation"]["id"]);
    // the whole of both, as Teams shapes them
    let megan = env.emu.user(MEGAN).expect("megan");
    let expected = fixture(
        "activities/personal-install.json",
        &[
            ("serviceUrl", env.emu.service_url()),
            ("tenantId", defaults::TENANT_ID.to_string()),
            ("bot.mri", bot_mri()),
            ("user.mri", megan.mri),
            ("user.id", megan.id.to_string()),
            ("user.name", megan.display_name),
            (
                "conversation",
                install["conversation"]["id"].as_str().unwrap().to_string(),
            ),
        ],
    );
    assert_json_matches(&expected, &Value::Array(activities.clone()));

    // the signature: fetch the metadata, then the key by kid
    let metadata: Value = env
        .http
        .get(env.emu.channel_openid_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], "https://api.botframework.com");
    let jwks: Value = env
        .http
        .get(metadata["jwks_uri"].as_str().expect("jwks_uri"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (r, a) in requests.iter().zip(&activities) {
        assert_eq!(
            header(r, "x-ms-conversation-id"),
            a["conversation"]["id"].as_str()
        );
        assert_eq!(
            header(r, "x-ms-tenant-id"),
            Some(defaults::TENANT_ID.to_string().as_str())
        );
        assert!(
            header(r, "content-type").is_some_and(|c| c.starts_with("application/json")),
            "content-type"
        );
        let auth = header(r, "authorization").expect("Authorization on a signed delivery");
        let token = auth.strip_prefix("Bearer ").expect("a bearer token");
        let kid = jsonwebtoken::decode_header(token)
            .expect("a JWT header")
            .kid
            .expect("a kid");
        let key = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .expect("the kid is in the JWKS");
        assert!(
            key["endorsements"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x == "msteams")),
            "{key}"
        );
        let decoding = DecodingKey::from_rsa_components(
            key["n"].as_str().unwrap(),
            key["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[defaults::BOT_APP_ID.to_string()]);
        validation.set_issuer(&["https://api.botframework.com"]);
        let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
            .expect("the channel token verifies")
            .claims;
        assert_eq!(claims["serviceurl"], a["serviceUrl"]);
        assert!(claims["nbf"].is_i64() && claims["exp"].is_i64());
    }

    let records = env.deliveries().await;
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| r["ok"] == true && r["signed"] == true)
    );
}

#[tokio::test]
async fn unsigned_mode_sends_no_authorization_header() {
    let env = Env::start(BotAuth::None).await;
    env.install_for(MEGAN).await;
    let requests = env.bot_requests().await;
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert!(
            header(r, "authorization").is_none(),
            "no Authorization with BotAuth::None"
        );
        assert!(header(r, "x-ms-conversation-id").is_some());
    }
    let records = env.deliveries().await;
    assert!(
        records
            .iter()
            .all(|r| r["signed"] == false && r["ok"] == true)
    );
}

#[tokio::test]
async fn uninstall_delivers_installation_update_remove() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    env.uninstall_for(MEGAN).await;
    let activities = env.bot_activities().await;
    assert_eq!(activities.len(), 3, "{activities:#?}");
    let last = &activities[2];
    assert_eq!(last["type"], "installationUpdate");
    assert_eq!(last["action"], "remove");
    assert_personal_envelope(&env, last, MEGAN);
    assert_eq!(
        last["conversation"]["id"],
        activities[0]["conversation"]["id"]
    );
}

#[tokio::test]
async fn team_install_delivers_team_member_added_in_general() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_in_team().await;
    let (team, general, _) = env.team();
    let activities = env.bot_activities().await;
    let update = activities
        .iter()
        .find(|a| a["type"] == "conversationUpdate")
        .unwrap_or_else(|| panic!("no conversationUpdate: {activities:#?}"));
    assert_eq!(update["channelData"]["eventType"], "teamMemberAdded");
    assert_eq!(update["channelData"]["team"]["id"], general.as_str());
    assert_eq!(
        update["channelData"]["team"]["aadGroupId"],
        team.to_string().as_str()
    );
    assert!(update["channelData"]["team"]["name"].is_string());
    assert_eq!(
        update["channelData"]["tenant"]["id"],
        defaults::TENANT_ID.to_string().as_str()
    );
    assert_eq!(update["conversation"]["id"], general.as_str());
    assert_eq!(update["conversation"]["isGroup"], true);
    assert_eq!(update["conversation"]["conversationType"], "channel");
    assert_eq!(
        update["membersAdded"],
        json!([{"id": format!("28:{}", defaults::BOT_APP_ID)}])
    );
    assert_eq!(update["serviceUrl"], env.emu.service_url().as_str());
    let install = activities
        .iter()
        .find(|a| a["type"] == "installationUpdate")
        .expect("installationUpdate on team install");
    assert_eq!(install["action"], "add");
    // installationUpdate comes first, as on a personal install
    assert_eq!(activities[0]["type"], "installationUpdate");
    // the whole of both, as Teams shapes them, from the team's owner
    let mark8 = env.emu.team("mark8").expect("the team");
    let owner = env.emu.user(MEGAN).expect("megan owns the team");
    let expected = fixture(
        "activities/team-install.json",
        &[
            ("serviceUrl", env.emu.service_url()),
            ("tenantId", defaults::TENANT_ID.to_string()),
            ("bot.mri", bot_mri()),
            ("owner.mri", owner.mri),
            ("owner.id", owner.id.to_string()),
            ("owner.name", owner.display_name),
            ("team.id", mark8.id.to_string()),
            ("team.thread", mark8.general_channel_id),
            ("team.name", mark8.display_name),
        ],
    );
    assert_json_matches(&expected, &Value::Array(activities.clone()));
}

#[tokio::test]
async fn control_api_member_joins_team_and_the_bot_hears_it() {
    let env = Env::start(BotAuth::None).await;
    env.install_in_team().await;
    let before = env.bot_activities().await.len();
    let (status, body) = env
        .call(
            Method::POST,
            &env.url("/_emulator/teams/mark8/members"),
            None,
            Some(json!({"user": "nestor"})),
        )
        .await;
    assert_eq!(status.as_u16(), 201, "{body}");
    let activities = env.wait_for_activities(before + 1).await;
    let joined = &activities[before];
    assert_eq!(joined["type"], "conversationUpdate");
    assert_eq!(joined["channelData"]["eventType"], "teamMemberAdded");
    let added = joined["membersAdded"].as_array().expect("membersAdded");
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["id"], env.user_mri(NESTOR).as_str());
    assert_eq!(
        added[0]["aadObjectId"],
        env.user_id(NESTOR).to_string().as_str()
    );
    let (_, general, _) = env.team();
    assert_eq!(joined["conversation"]["id"], general.as_str());
}

#[tokio::test]
async fn a_bot_that_is_down_is_a_failed_delivery_record() {
    // a port that was just free and is now closed
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let emu = Emulator::builder()
        .config(config_with_endpoint(&format!(
            "http://{closed}/api/messages"
        )))
        .bot_auth(BotAuth::None)
        .start()
        .await
        .unwrap();
    let env = Env::new(emu, fake_bot(200).await);
    env.install_for(MEGAN).await;
    let records = env.deliveries().await;
    assert_eq!(records.len(), 2, "{records:#?}");
    for r in &records {
        assert_eq!(r["ok"], false, "{r}");
        assert!(r["status"].is_null(), "{r}");
        let error = r["error"].as_str().expect("an error");
        assert!(error.contains(&closed.to_string()), "{error}");
        assert!(r["activity"]["type"].is_string());
    }
    assert_eq!(records[0]["activityType"], "installationUpdate");
    assert_eq!(records[1]["activityType"], "conversationUpdate");
}

#[tokio::test]
async fn a_bot_that_answers_500_is_a_failed_delivery_record() {
    let env = Env::start_with(BotAuth::Signed, EmulatorConfig::default_tenant(), 500).await;
    env.install_for(MEGAN).await;
    let records = env.deliveries().await;
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r["ok"], false);
        assert_eq!(r["status"], 500);
        assert!(
            r["error"].as_str().is_some_and(|e| e.contains("500")),
            "{r}"
        );
    }
    // the records also come from the handle directly
    let records = env.emu.deliveries();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| !r.ok && r.status == Some(500)));
}

#[tokio::test]
async fn first_install_only_skips_conversation_update_on_reinstall() {
    let mut config = EmulatorConfig::default_tenant();
    config.behaviour.conversation_update_first_install_only = true;
    let env = Env::start_with(BotAuth::None, config, 200).await;
    env.install_for(MEGAN).await;
    env.uninstall_for(MEGAN).await;
    env.install_for(MEGAN).await;
    let kinds: Vec<(String, String)> = env
        .bot_activities()
        .await
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap_or_default().to_string(),
                a["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let k = |t: &str, a: &str| (t.to_string(), a.to_string());
    assert_eq!(
        kinds,
        vec![
            k("installationUpdate", "add"),
            k("conversationUpdate", ""),
            k("installationUpdate", "remove"),
            k("installationUpdate", "add"),
        ]
    );
}

#[tokio::test]
async fn by_default_reinstall_brings_conversation_update_again() {
    let env = Env::start(BotAuth::None).await;
    env.install_for(MEGAN).await;
    env.uninstall_for(MEGAN).await;
    env.install_for(MEGAN).await;
    let activities = env.bot_activities().await;
    let updates = activities
        .iter()
        .filter(|a| a["type"] == "conversationUpdate")
        .count();
    assert_eq!(updates, 2, "{activities:#?}");
}

#[tokio::test]
async fn settle_and_records_from_the_handle() {
    let env = Env::start(BotAuth::None).await;
    env.install_for(ADELE).await;
    assert!(env.emu.settle(std::time::Duration::from_secs(5)).await);
    let records = env.emu.deliveries();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.ok));
    assert!(records[0].seq < records[1].seq);
    let transcript = env.emu.transcript();
    assert_eq!(transcript.len(), 2);
    let received = env.emu.received_activities();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0], records[0].activity);
}

#[tokio::test]
async fn team_uninstall_delivers_remove_and_the_channel_refuses_the_bot() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_in_team().await;
    let before = env.bot_activities().await.len();
    let (team, general, _) = env.team();
    let token = env.app_token().await;
    let (status, list) = env
        .call(
            Method::GET,
            &env.url(&format!(
                "/v1.0/teams/{team}/installedApps?$expand=teamsApp"
            )),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{list}");
    let catalog = env.catalog_id().await;
    let id = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["teamsApp"]["id"] == catalog.as_str())
        .and_then(|i| i["id"].as_str())
        .expect("the team installation")
        .to_string();
    let (status, body) = env
        .call(
            Method::DELETE,
            &env.url(&format!("/v1.0/teams/{team}/installedApps/{id}")),
            Some(&token),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}: {body}");
    let activities = env.wait_for_activities(before + 2).await;
    let after = &activities[before..];
    assert_eq!(after[0]["type"], "installationUpdate");
    assert_eq!(after[0]["action"], "remove");
    assert_eq!(after[1]["type"], "conversationUpdate");
    assert_eq!(after[1]["channelData"]["eventType"], "teamMemberRemoved");
    assert_eq!(
        after[1]["membersRemoved"],
        json!([{"id": format!("28:{}", defaults::BOT_APP_ID)}])
    );
    assert_eq!(after[1]["conversation"]["id"], general.as_str());

    let bot = env.bot_token().await;
    let got = env
        .call(
            Method::POST,
            &env.connector_url(&format!("conversations/{}/activities", encode(&general))),
            Some(&bot),
            Some(message("still here?")),
        )
        .await;
    assert_error(&got, 403, "BotNotInConversationRoster");
}
