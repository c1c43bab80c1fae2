//! What every Graph route shares: authentication, the error envelope and ids, `@odata.context`,
//! paging, `$select`, `/beta`, and the answers for routes and methods that are not emulated.

mod common;

use chrono::{Duration, Utc};
use common::*;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;
use teams_emulator::clock::Clock;
use teams_emulator::{BotAuth, Emulator, defaults};

#[tokio::test]
async fn graph_refuses_missing_and_malformed_tokens() {
    let emu = start().await;
    let url = format!("{}/users", emu.graph_url());
    let missing = call(Method::GET, &url, None, None).await;
    missing.expect_graph_error(401, "InvalidAuthenticationToken");
    for header in [
        "Bearer",
        "Bearer ",
        "Basic abc",
        "Bearer not.a.jwt",
        "Bearer a.b.c",
    ] {
        let answer = read(
            client()
                .get(&url)
                .header("authorization", header)
                .send()
                .await
                .unwrap(),
        )
        .await;
        answer.expect_graph_error(401, "InvalidAuthenticationToken");
    }
}

#[tokio::test]
async fn graph_refuses_an_expired_token() {
    let emu = Emulator::builder()
        .config(test_config())
        .bot_auth(BotAuth::None)
        .clock(Clock::manual(Utc::now()))
        .start()
        .await
        .unwrap();
    let token = bot_graph_token(&emu).await;
    let url = format!("{}/users", emu.graph_url());
    get(&url, &token).await.expect(200);
    emu.clock().advance(Duration::hours(2));
    let message = get(&url, &token)
        .await
        .expect_graph_error(401, "InvalidAuthenticationToken")
        .to_string();
    assert!(message.contains("expired"), "{message}");
    // A fresh token works again.
    get(&url, &bot_graph_token(&emu).await).await.expect(200);
}

#[tokio::test]
async fn graph_refuses_a_tampered_token() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let url = format!("{}/users", emu.graph_url());

    // Claims changed after signing: an extra role.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut claims = jwt_claims(&token);
    claims["roles"]
        .as_array_mut()
        .unwrap()
        .push("TeamsAppInstallation.ReadWriteForUser.All".into());
    use base64::Engine;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let message = get(&url, &parts.join("."))
        .await
        .expect_graph_error(401, "InvalidAuthenticationToken")
        .to_string();
    assert!(message.contains("signature"), "{message}");

    // Another token's signature.
    let other = user_token(&emu, "megan").await;
    let (signed, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", other.rsplit_once('.').unwrap().1);
    get(&url, &forged)
        .await
        .expect_graph_error(401, "InvalidAuthenticationToken");
}

#[tokio::test]
async fn graph_refuses_a_connector_token() {
    let emu = start().await;
    let id = defaults::BOT_APP_ID.to_string();
    let answer = token_request(
        &format!("{}/botframework.com/oauth2/v2.0/token", emu.url()),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", defaults::BOT_APP_SECRET),
            ("scope", BOT_FRAMEWORK_SCOPE),
        ],
    )
    .await;
    let token = access_token(&answer);
    let message = get(&format!("{}/users", emu.graph_url()), &token)
        .await
        .expect_graph_error(401, "InvalidAuthenticationToken")
        .to_string();
    assert!(message.contains("audience"), "{message}");
}

#[tokio::test]
async fn a_missing_role_is_a_403_naming_the_roles() {
    let emu = start().await;
    let token = app_token(&emu, ROLELESS_APP_ID, ROLELESS_APP_SECRET, GRAPH_SCOPE).await;
    let graph = emu.graph_url();

    let answer = get(&format!("{graph}/users"), &token).await;
    let message = answer.expect_graph_error(403, "Forbidden");
    assert!(
        message.starts_with("Missing role permissions on the request."),
        "{message}"
    );
    assert!(message.contains("User.Read.All"), "{message}");
    assert!(message.contains("Roles on the request ''"), "{message}");

    let answer = post(
        &format!("{graph}/users/{}/teamwork/installedApps", upn("megan")),
        &token,
        &bind(&uuid::Uuid::new_v4().to_string()),
    )
    .await;
    let message = answer.expect_graph_error(403, "Forbidden");
    assert!(
        message.contains("TeamsAppInstallation.ReadWriteSelfForUser.All"),
        "{message}"
    );
    assert!(
        message.contains("TeamsAppInstallation.ReadWriteForUser.All"),
        "{message}"
    );

    let answer = get(&format!("{graph}/appCatalogs/teamsApps"), &token).await;
    let message = answer.expect_graph_error(403, "Forbidden");
    assert!(message.contains("AppCatalog.Read.All"), "{message}");

    // A delegated token is told about scopes.
    let id = defaults::BOT_APP_ID.to_string();
    let megan = upn("megan");
    let answer = token_request(
        &emu.token_url(defaults::TENANT_ID),
        &[
            ("grant_type", "password"),
            ("client_id", &id),
            ("scope", "User.Read"),
            ("username", &megan),
            ("password", defaults::USER_PASSWORD),
        ],
    )
    .await;
    let user_read = access_token(&answer);
    let answer = post(
        &format!("{graph}/users/{megan}/teamwork/installedApps"),
        &user_read,
        &bind(&uuid::Uuid::new_v4().to_string()),
    )
    .await;
    let message = answer.expect_graph_error(403, "Forbidden");
    assert!(
        message.starts_with("Missing scope permissions on the request."),
        "{message}"
    );
    assert!(
        message.contains("TeamsAppInstallation.ReadWriteForUser"),
        "{message}"
    );
    assert!(
        message.contains("Scopes on the request 'User.Read'"),
        "{message}"
    );
    get(&format!("{graph}/users/{megan}"), &user_read)
        .await
        .expect(200);

    // The Self-only app may not read chats.
    let helper = app_token(&emu, SELF_APP_ID, SELF_APP_SECRET, GRAPH_SCOPE).await;
    let answer = get(&format!("{graph}/users/{}/chats", upn("megan")), &helper).await;
    let message = answer.expect_graph_error(403, "Forbidden");
    assert!(message.contains("Chat.Read.All"), "{message}");
}

#[tokio::test]
async fn every_answer_carries_request_ids_and_errors_carry_inner_error() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let client_request_id = uuid::Uuid::new_v4().to_string();
    let request = |url: String| {
        client()
            .get(url)
            .bearer_auth(&token)
            .header("client-request-id", &client_request_id)
    };

    let ok = read(
        request(format!("{}/users", emu.graph_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    ok.expect(200);
    assert!(
        ok.header("request-id")
            .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
    );
    assert_eq!(
        ok.header("client-request-id"),
        Some(client_request_id.as_str())
    );
    assert_eq!(
        ok.json["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users"
    );

    let error = read(
        request(format!("{}/users/{}", emu.graph_url(), upn("nobody")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(error.status, 404, "{}", error.text);
    assert_graph_envelope(&error.json);
    let inner = &error.json["error"]["innerError"];
    assert_eq!(inner["client-request-id"], client_request_id.as_str());
    assert_eq!(inner["request-id"].as_str(), error.header("request-id"));
    let date = inner["date"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%S").is_ok(),
        "{date}"
    );
    assert!(
        error
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );

    // Without a client-request-id, the answer still has one.
    let answer = get(&format!("{}/users", emu.graph_url()), &token).await;
    assert!(answer.header("client-request-id").is_some());
    assert!(answer.header("request-id").is_some());
}

#[tokio::test]
async fn unemulated_routes_and_methods_are_501() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let graph = emu.graph_url();

    for (method, path) in [
        (Method::GET, "/me/drive"),
        (Method::GET, "/groups"),
        (Method::POST, "/chats/19:x@unq.gbl.spaces/members"),
        (Method::GET, "/users/x/teamwork/installedApps/y/z"),
    ] {
        let answer = call(
            method.clone(),
            &format!("{graph}{path}"),
            Some(&token),
            None,
        )
        .await;
        let message = answer.expect_graph_error(501, "NotSupportedByEmulator");
        assert!(message.contains(path), "{method} {path}: {message}");
        assert!(answer.header("request-id").is_some());
    }
    // Unauthenticated callers learn the same.
    let answer = call(Method::GET, &format!("{graph}/me/drive"), None, None).await;
    answer.expect_graph_error(501, "NotSupportedByEmulator");

    for (method, path) in [
        (
            Method::PUT,
            format!("/users/{}/teamwork/installedApps", upn("megan")),
        ),
        (Method::DELETE, "/users".to_string()),
        (Method::PATCH, "/appCatalogs/teamsApps".to_string()),
    ] {
        let answer = call(
            method.clone(),
            &format!("{graph}{path}"),
            Some(&token),
            None,
        )
        .await;
        answer.expect_graph_error(501, "NotSupportedByEmulator");
    }
}

#[tokio::test]
async fn users_page_with_next_links_that_visit_everyone_once() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let mut url = format!("{}/users?$top=2", emu.graph_url());
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let answer = get(&url, &token).await;
        let body = answer.expect(200).clone();
        pages += 1;
        let value = body["value"].as_array().unwrap();
        assert!(value.len() <= 2, "{}", answer.text);
        seen.extend(value.iter().map(|u| u["id"].as_str().unwrap().to_string()));
        match body.get("@odata.nextLink").and_then(Value::as_str) {
            Some(next) => {
                assert!(next.starts_with(&emu.graph_url()), "{next}");
                assert!(
                    next.contains("$skiptoken=") || next.contains("%24skiptoken="),
                    "{next}"
                );
                url = next.to_string();
            }
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 6, "{seen:?}");
    assert_eq!(pages, 3);

    // The whole list fits in one default page: no nextLink.
    let all = get(&format!("{}/users", emu.graph_url()), &token).await;
    let body = all.expect(200);
    assert_eq!(body["value"].as_array().unwrap().len(), 6);
    assert!(body.get("@odata.nextLink").is_none());

    // Next links keep the other options.
    let mut url = format!(
        "{}/users?$top=1&$filter=jobTitle ne 'Director'&$select=id,jobTitle",
        emu.graph_url()
    );
    let mut titles = Vec::new();
    loop {
        let answer = get(&url, &token).await;
        let body = answer.expect(200).clone();
        for user in body["value"].as_array().unwrap() {
            assert_eq!(user.as_object().unwrap().len(), 2, "{user}");
            titles.push(user["jobTitle"].as_str().unwrap().to_string());
        }
        match body["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
        assert!(titles.len() < 10, "paging does not end");
    }
    assert_eq!(titles.len(), 5, "{titles:?}");
    assert!(!titles.iter().any(|t| t == "Director"), "{titles:?}");

    get(
        &format!("{}/users?$skiptoken=bogus", emu.graph_url()),
        &token,
    )
    .await
    .expect_graph_error(400, "BadRequest");
    for top in ["0", "-1", "x", "1000"] {
        get(&format!("{}/users?$top={top}", emu.graph_url()), &token)
            .await
            .expect_graph_error(400, "BadRequest");
    }
}

#[tokio::test]
async fn select_keeps_only_the_named_properties() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let answer = get(
        &format!("{}/users?$select=id,displayName", emu.graph_url()),
        &token,
    )
    .await;
    for user in answer.expect(200)["value"].as_array().unwrap() {
        let keys: Vec<&String> = user.as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["id", "displayName"], "{user}");
    }
    let one = get(
        &format!(
            "{}/users/{}?$select=displayName",
            emu.graph_url(),
            upn("lee")
        ),
        &token,
    )
    .await;
    let body = one.expect(200);
    assert_eq!(body["displayName"], "Lee Gu");
    assert!(body.get("mail").is_none(), "{body}");
    get(
        &format!("{}/users?$select=shoeSize", emu.graph_url()),
        &token,
    )
    .await
    .expect_graph_error(400, "BadRequest");
}

#[tokio::test]
async fn users_are_found_by_id_or_principal_name_and_filtered() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let graph = emu.graph_url();
    let by_upn = get(&format!("{graph}/users/{}", upn("patti")), &token).await;
    let body = by_upn.expect(200).clone();
    assert_eq!(body["userPrincipalName"], upn("patti"));
    assert_eq!(body["displayName"], "Patti Fernandez");
    assert_eq!(
        body["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#users/$entity"
    );
    let id = body["id"].as_str().unwrap();
    let by_id = get(&format!("{graph}/users/{id}"), &token).await;
    assert_eq!(by_id.expect(200)["userPrincipalName"], upn("patti"));

    let filtered = get(
        &format!(
            "{graph}/users?$filter=userPrincipalName eq '{}'",
            upn("alex")
        ),
        &token,
    )
    .await;
    let value = filtered.expect(200)["value"].as_array().unwrap().clone();
    assert_eq!(value.len(), 1);
    assert_eq!(value[0]["displayName"], "Alex Wilber");

    let nobody = get(&format!("{graph}/users/{}", uuid::Uuid::new_v4()), &token).await;
    assert_eq!(nobody.status, 404, "{}", nobody.text);
    assert_graph_envelope(&nobody.json);
}

#[tokio::test]
async fn beta_serves_the_same_routes() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let beta = format!("{}/beta", emu.url());
    let user = get(&format!("{beta}/users/{}", upn("megan")), &token).await;
    let body = user.expect(200);
    assert_eq!(body["userPrincipalName"], upn("megan"));
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .starts_with("https://graph.microsoft.com/beta/$metadata#"),
        "{body}"
    );

    let apps = get(
        &format!(
            "{beta}/appCatalogs/teamsApps?$filter=externalId eq '{}'",
            defaults::MANIFEST_ID
        ),
        &token,
    )
    .await;
    let app_id = apps.expect(200)["value"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let installs = format!("{beta}/users/{}/teamwork/installedApps", upn("megan"));
    post(&installs, &token, &bind(&app_id)).await.expect(201);
    let list = get(&format!("{installs}?$expand=teamsApp"), &token).await;
    let body = list.expect(200);
    assert_eq!(body["value"][0]["teamsApp"]["id"], app_id.as_str());
    let next = get(&format!("{beta}/users?$top=5"), &token).await;
    let link = next.expect(200)["@odata.nextLink"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(link.starts_with(&beta), "{link}");
    call(Method::GET, &format!("{beta}/me/drive"), Some(&token), None)
        .await
        .expect_graph_error(501, "NotSupportedByEmulator");
}
