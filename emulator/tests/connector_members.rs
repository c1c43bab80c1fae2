//! Bot Connector rosters (`members`, `pagedmembers`, one member) and team details and channels.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;
use teams_emulator::{BotAuth, EmulatorConfig};

fn account_fields(m: &Value) {
    for key in [
        "id",
        "name",
        "objectId",
        "aadObjectId",
        "givenName",
        "surname",
        "email",
        "userPrincipalName",
        "tenantId",
        "userRole",
    ] {
        assert!(m.get(key).is_some(), "{key} missing in {m}");
    }
    assert!(m["id"].as_str().unwrap().starts_with("29:"));
    assert_eq!(m["objectId"], m["aadObjectId"]);
}

#[tokio::test]
async fn personal_roster_and_one_member() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_for(MEGAN).await;
    let token = env.bot_token().await;
    let conversation = env.open_conversation(Some(&token), MEGAN).await;
    let (status, members) = env
        .call(
            Method::GET,
            &env.connector_url(&format!("conversations/{conversation}/members")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{members}");
    let members = members.as_array().expect("an array");
    assert_eq!(members.len(), 1);
    account_fields(&members[0]);
    assert_eq!(members[0]["userPrincipalName"], MEGAN);

    let mri = env.user_mri(MEGAN);
    let aad = env.user_id(MEGAN).to_string();
    for member in [encode(&mri), mri.clone(), aad.clone()] {
        let (status, one) = env
            .call(
                Method::GET,
                &env.connector_url(&format!("conversations/{conversation}/members/{member}")),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{member}: {one}");
        assert_eq!(one["id"], mri.as_str());
        assert_eq!(one["aadObjectId"], aad.as_str());
    }
    let got = env
        .call(
            Method::GET,
            &env.connector_url(&format!(
                "conversations/{conversation}/members/{}",
                env.user_mri(ADELE)
            )),
            Some(&token),
            None,
        )
        .await;
    assert_error(&got, 404, "MemberNotFoundInConversation");
}

#[tokio::test]
async fn team_roster_paged_members_and_team_details() {
    let env = Env::start(BotAuth::Signed).await;
    env.install_in_team().await;
    let token = env.bot_token().await;
    let (team, general, other) = env.team();
    let team_size = env.emu.team("mark8").expect("the team").members.len();

    for route in ["pagedmembers", "pagedMembers"] {
        let (status, page) = env
            .call(
                Method::GET,
                &env.connector_url(&format!("conversations/{}/{route}", encode(&general))),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{route}: {page}");
        let members = page["members"].as_array().expect("members");
        assert_eq!(members.len(), team_size);
        members.iter().for_each(account_fields);
        assert!(page.get("continuationToken").is_none(), "{page}");
    }
    let (status, members) = env
        .call(
            Method::GET,
            &env.connector_url(&format!("conversations/{other}/members")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert_eq!(members.as_array().unwrap().len(), team_size);

    let (status, details) = env
        .call(
            Method::GET,
            &env.connector_url(&format!("teams/{}", encode(&general))),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{details}");
    assert_eq!(details["id"], general.as_str());
    assert_eq!(details["aadGroupId"], team.to_string().as_str());
    assert!(details["name"].is_string());
    assert_eq!(details["channelCount"], 2);
    assert_eq!(details["memberCount"], team_size);

    let (status, channels) = env
        .call(
            Method::GET,
            &env.connector_url(&format!("teams/{general}/conversations")),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{channels}");
    let list = channels["conversations"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let general_entry = list.iter().find(|c| c["id"] == general.as_str()).unwrap();
    assert!(general_entry["name"].is_null(), "General's name is null");
    let other_entry = list.iter().find(|c| c["id"] == other.as_str()).unwrap();
    assert!(other_entry["name"].is_string());
}

/// A tenant with 120 users, all in one team, so that page sizes can be told apart.
fn big_tenant() -> EmulatorConfig {
    let mut yaml = String::from("tenants:\n  - name: Bigcorp\n    users:\n");
    for i in 0..120 {
        yaml.push_str(&format!(
            "      - name: User {i:03}\n        key: u{i:03}\n"
        ));
    }
    yaml.push_str("    teams:\n      - name: Everyone\n        key: everyone\n        members: [");
    yaml.push_str(
        &(0..120)
            .map(|i| format!("u{i:03}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    yaml.push_str("]\n");
    yaml.push_str(
        "    apps:\n      - name: Bot\n        client_id: b0f1e2d3-c4b5-4a69-8788-99aabbccddee\n        client_secret: emulator-bot-secret\n        permissions: [TeamsAppInstallation.ReadWriteSelfForTeam.All, Chat.Read.All, User.Read.All, AppCatalog.Read.All]\n",
    );
    yaml.push_str(
        "    catalog:\n      - name: Bot\n        manifest_id: d6a1c2b3-e4f5-4a6b-8c7d-0e1f2a3b4c5d\n        bot_id: b0f1e2d3-c4b5-4a69-8788-99aabbccddee\n",
    );
    EmulatorConfig::from_yaml(&yaml, "big.yaml").expect("a valid config")
}

#[tokio::test]
async fn page_size_is_clamped_and_continuation_walks_every_member() {
    let env = Env::start_with(BotAuth::None, big_tenant(), 200).await;
    // install in the team through the tenant's own token endpoint
    let tenant = env.emu.team("everyone").expect("the team").tenant_id;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "b0f1e2d3-c4b5-4a69-8788-99aabbccddee"),
        ("client_secret", "emulator-bot-secret"),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let token: Value = env
        .http
        .post(env.emu.token_url(tenant))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().expect("token");
    let everyone = env.emu.team("everyone").expect("the team");
    let (team, general) = (everyone.id, everyone.general_channel_id);
    let catalog = env
        .client
        .with_token(token)
        .catalog_app_id()
        .await
        .expect("the bot's catalog app");
    let (status, body) = env
        .call(
            Method::POST,
            &env.url(&format!("/v1.0/teams/{team}/installedApps")),
            Some(token),
            Some(serde_json::json!({"teamsApp@odata.bind": format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{catalog}")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let page = |query: String| {
        let url = env.connector_url(&format!(
            "conversations/{}/pagedmembers{query}",
            encode(&general)
        ));
        let env = &env;
        async move {
            let (status, body) = env.call(Method::GET, &url, None, None).await;
            assert_eq!(status, StatusCode::OK, "{url}: {body}");
            body
        }
    };
    // below the minimum: 50
    let first = page("?pageSize=1".into()).await;
    assert_eq!(first["members"].as_array().unwrap().len(), 50);
    // default fits everyone (no token on the last page)
    let all = page(String::new()).await;
    assert_eq!(all["members"].as_array().unwrap().len(), 120);
    assert!(all.get("continuationToken").is_none());
    // above the maximum: 500, so everyone
    let big = page("?pageSize=100000".into()).await;
    assert_eq!(big["members"].as_array().unwrap().len(), 120);
    // an exact size within the range
    let seventy = page("?pageSize=70".into()).await;
    assert_eq!(seventy["members"].as_array().unwrap().len(), 70);

    // walk with the smallest page: 50 + 50 + 20, no duplicates
    let mut seen = BTreeSet::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let query = match &token {
            None => "?pageSize=50".to_string(),
            Some(t) => format!("?pageSize=50&continuationToken={}", encode(t)),
        };
        let body = page(query).await;
        pages += 1;
        for m in body["members"].as_array().unwrap() {
            assert!(
                seen.insert(m["id"].as_str().unwrap().to_string()),
                "duplicate {m}"
            );
        }
        match body["continuationToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
        assert!(pages < 10, "the walk does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 120);

    // a garbage token is a 400, not a 500
    let url = env.connector_url(&format!(
        "conversations/{}/pagedmembers?continuationToken=%%%garbage",
        encode(&general)
    ));
    let got = env.call(Method::GET, &url, None, None).await;
    assert_error(&got, 400, "BadArgument");
}
