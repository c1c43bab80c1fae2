//! The seed flow a proactive bot runs against Graph (find its app in the catalog, install it for
//! a user, find the 1:1 chat), team installs, the `…Self…` rule and delegated installs.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use teams_emulator::defaults;

fn installs_url(emu: &teams_emulator::EmulatorHandle, user: &str) -> String {
    format!("{}/users/{user}/teamwork/installedApps", emu.graph_url())
}

#[tokio::test]
async fn the_seed_flow_installs_the_bot_and_finds_its_chat() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let graph = emu.graph_url();
    let megan = user_id(&emu, &token, "megan").await;
    let installs = installs_url(&emu, &megan);

    // The org-published app's catalog id is not its manifest id.
    let catalog = get(
        &format!(
            "{graph}/appCatalogs/teamsApps?$filter=externalId eq '{}'",
            defaults::MANIFEST_ID
        ),
        &token,
    )
    .await;
    let body = catalog.expect(200);
    assert_eq!(
        body["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#appCatalogs/teamsApps"
    );
    let apps = body["value"].as_array().unwrap();
    assert_eq!(apps.len(), 1, "{}", catalog.text);
    assert_eq!(apps[0]["externalId"], defaults::MANIFEST_ID.to_string());
    assert_eq!(apps[0]["distributionMethod"], "organization");
    let app_id = apps[0]["id"].as_str().unwrap().to_string();
    assert_ne!(app_id, defaults::MANIFEST_ID.to_string());
    assert!(apps[0].get("appDefinitions").is_none(), "{}", catalog.text);
    let expanded = get(
        &format!(
            "{graph}/appCatalogs/teamsApps?$filter=externalId eq '{}'&$expand=appDefinitions",
            defaults::MANIFEST_ID
        ),
        &token,
    )
    .await;
    let definition = &expanded.expect(200)["value"][0]["appDefinitions"][0];
    assert_eq!(definition["teamsAppId"], app_id.as_str());
    assert_eq!(definition["azureADAppId"], defaults::BOT_APP_ID.to_string());

    // Not installed yet: an empty list, not a 404.
    let list = get(&installs, &token).await;
    let body = list.expect(200);
    assert_eq!(body["value"], json!([]));
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .contains("installedApps")
    );

    let install = post(&installs, &token, &bind(&app_id)).await;
    install.expect(201);
    assert!(install.text.is_empty(), "{}", install.text);
    let again = post(&installs, &token, &bind(&app_id)).await;
    again.expect_graph_error(409, "Conflict");

    // Without $expand an installation is only its id.
    let list = get(&installs, &token).await;
    let value = list.expect(200)["value"].as_array().unwrap().clone();
    assert_eq!(value.len(), 1, "{}", list.text);
    let installation = value[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        value[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["id"]
    );

    let expanded = get(
        &format!("{installs}?$expand=teamsApp,teamsAppDefinition"),
        &token,
    )
    .await;
    let item = &expanded.expect(200)["value"][0];
    assert_eq!(item["id"], installation.as_str());
    assert_eq!(item["teamsApp"]["id"], app_id.as_str());
    assert_eq!(
        item["teamsApp"]["externalId"],
        defaults::MANIFEST_ID.to_string()
    );
    assert_eq!(item["teamsAppDefinition"]["teamsAppId"], app_id.as_str());

    for filter in [
        format!("teamsApp/id eq '{app_id}'"),
        format!("teamsApp/externalId eq '{}'", defaults::MANIFEST_ID),
        format!("teamsAppDefinition/teamsAppId eq '{app_id}'"),
    ] {
        let found = get(
            &format!("{installs}?$expand=teamsApp&$filter={filter}"),
            &token,
        )
        .await;
        let value = found.expect(200)["value"].as_array().unwrap().clone();
        assert_eq!(value.len(), 1, "{filter}: {}", found.text);
        assert_eq!(value[0]["teamsApp"]["id"], app_id.as_str());
    }
    let none = get(
        &format!(
            "{installs}?$filter=teamsApp/id eq '{}'",
            uuid::Uuid::new_v4()
        ),
        &token,
    )
    .await;
    assert_eq!(none.expect(200)["value"], json!([]));

    let one = get(
        &format!("{installs}/{installation}?$expand=teamsApp"),
        &token,
    )
    .await;
    assert_eq!(one.expect(200)["teamsApp"]["id"], app_id.as_str());

    // The installation's chat is the Graph 1:1 chat of the user and the bot.
    let chat = get(&format!("{installs}/{installation}/chat"), &token).await;
    let body = chat.expect(200);
    assert_eq!(
        body["@odata.context"],
        "https://graph.microsoft.com/v1.0/$metadata#chats/$entity"
    );
    let chat_id = body["id"].as_str().unwrap().to_string();
    assert!(
        chat_id.starts_with("19:") && chat_id.ends_with("@unq.gbl.spaces"),
        "{chat_id}"
    );
    assert!(chat_id.contains(&megan), "{chat_id}");
    assert_eq!(body["chatType"], "oneOnOne");

    let chats = get(
        &format!(
            "{graph}/users/{megan}/chats?$filter=installedApps/any(a:a/teamsApp/id eq '{app_id}')"
        ),
        &token,
    )
    .await;
    let value = chats.expect(200)["value"].as_array().unwrap().clone();
    assert_eq!(value.len(), 1, "{}", chats.text);
    assert_eq!(value[0]["id"], chat_id.as_str());
    let other = get(
        &format!(
            "{graph}/users/{megan}/chats?$filter=installedApps/any(a:a/teamsApp/id eq '{}')",
            uuid::Uuid::new_v4()
        ),
        &token,
    )
    .await;
    assert_eq!(other.expect(200)["value"], json!([]));

    let chat = get(&format!("{graph}/chats/{chat_id}"), &token).await;
    let body = chat.expect(200);
    assert_eq!(body["id"], chat_id.as_str());
    assert_eq!(body["tenantId"], defaults::TENANT_ID.to_string());
    let messages = get(&format!("{graph}/chats/{chat_id}/messages"), &token).await;
    assert_eq!(messages.expect(200)["value"], json!([]));

    let upgrade = call(
        Method::POST,
        &format!("{installs}/{installation}/upgrade"),
        Some(&token),
        None,
    )
    .await;
    upgrade.expect(204);
    let upgrade = post(
        &format!("{installs}/{installation}/upgrade"),
        &token,
        &json!({"consentedPermissionSet": {"resourceSpecificPermissions": []}}),
    )
    .await;
    upgrade.expect(204);

    delete(&format!("{installs}/{installation}"), &token)
        .await
        .expect(204);
    get(&format!("{installs}/{installation}"), &token)
        .await
        .expect_graph_error(404, "NotFound");
    delete(&format!("{installs}/{installation}"), &token)
        .await
        .expect_graph_error(404, "NotFound");
    post(
        &format!("{installs}/{installation}/upgrade"),
        &token,
        &json!({}),
    )
    .await
    .expect_graph_error(404, "NotFound");
    assert_eq!(get(&installs, &token).await.expect(200)["value"], json!([]));
    // The chat outlives the installation, but the app is no longer installed in it.
    let chats = get(
        &format!(
            "{graph}/users/{megan}/chats?$filter=installedApps/any(a:a/teamsApp/id eq '{app_id}')"
        ),
        &token,
    )
    .await;
    assert_eq!(chats.expect(200)["value"], json!([]));

    // Installing again works, and the chat is the same one.
    post(&installs, &token, &bind(&app_id)).await.expect(201);
    let chat = get(&format!("{installs}/{installation}/chat"), &token).await;
    assert_eq!(chat.expect(200)["id"], chat_id.as_str());
}

#[tokio::test]
async fn users_can_be_named_by_their_principal_name() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let app_id = catalog_id(&emu, &token, defaults::MANIFEST_ID).await;
    let by_upn = installs_url(&emu, &upn("adele"));
    post(&by_upn, &token, &bind(&app_id)).await.expect(201);
    let adele = user_id(&emu, &token, "adele").await;
    let list = get(&installs_url(&emu, &adele), &token).await;
    assert_eq!(list.expect(200)["value"].as_array().unwrap().len(), 1);
    // Graph matches principal names case-insensitively.
    let list = get(&installs_url(&emu, &upn("adele").to_uppercase()), &token).await;
    assert_eq!(list.status, 200, "{}", list.text);
}

#[tokio::test]
async fn install_errors_follow_graph() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let app_id = catalog_id(&emu, &token, defaults::MANIFEST_ID).await;
    let installs = installs_url(&emu, &upn("alex"));

    let missing_app = post(&installs, &token, &bind(&uuid::Uuid::new_v4().to_string())).await;
    missing_app.expect_graph_error(404, "NotFound");
    // The manifest id is not a catalog id for an org-published app.
    let by_manifest = post(&installs, &token, &bind(&defaults::MANIFEST_ID.to_string())).await;
    by_manifest.expect_graph_error(404, "NotFound");

    let nobody = uuid::Uuid::new_v4();
    let unknown_user = post(
        &installs_url(&emu, &nobody.to_string()),
        &token,
        &bind(&app_id),
    )
    .await;
    let message = unknown_user.expect_graph_error(404, "NotFound");
    assert!(message.contains(&nobody.to_string()), "{message}");
    get(&installs_url(&emu, &upn("nobody")), &token)
        .await
        .expect_graph_error(404, "NotFound");

    let malformed = read(
        client()
            .post(&installs)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{\"teamsApp@odata.bind\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    malformed.expect_graph_error(400, "BadRequest");
    let empty = read(
        client()
            .post(&installs)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    empty.expect_graph_error(400, "BadRequest");

    for body in [
        json!({}),
        json!([]),
        json!({"teamsApp@odata.bind": 42}),
        json!({"teamsApp@odata.bind": ""}),
        json!({"teamsApp@odata.bind": "https://graph.microsoft.com/v1.0/users/x"}),
        json!({"teamsApp@odata.bind": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/"}),
        json!({"teamsApp@odata.bind": format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app_id}/x")}),
        json!({"teamsApp@odata.bind": format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app_id}"), "consentedPermissionSet": "all"}),
    ] {
        let answer = post(&installs, &token, &body).await;
        answer.expect_graph_error(400, "BadRequest");
    }
    let message = post(&installs, &token, &json!({})).await.json["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("teamsApp@odata.bind"), "{message}");

    // A bind in the key form and a consent set are accepted.
    let keyed = json!({
        "teamsApp@odata.bind": format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps('{app_id}')"),
        "consentedPermissionSet": {"resourceSpecificPermissions": [{"permissionValue": "TeamsActivity.Send.User", "permissionType": "Application"}]},
    });
    post(&installs, &token, &keyed).await.expect(201);

    let chat = get(&format!("{installs}/not-an-installation/chat"), &token).await;
    chat.expect_graph_error(404, "NotFound");
    let chat = get(
        &format!("{}/chats/19:nothing@unq.gbl.spaces", emu.graph_url()),
        &token,
    )
    .await;
    chat.expect_graph_error(404, "NotFound");
}

#[tokio::test]
async fn unsupported_filters_are_400s_that_name_what_is_supported() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let installs = installs_url(&emu, &upn("lee"));

    let answer = get(
        &format!("{installs}?$filter=teamsApp/version eq '1.0.0'"),
        &token,
    )
    .await;
    let message = answer.expect_graph_error(400, "BadRequest");
    assert!(message.contains("teamsApp/version"), "{message}");
    assert!(message.contains("'teamsApp/id'"), "{message}");
    assert!(message.contains("'teamsApp/externalId'"), "{message}");

    let answer = get(
        &format!("{installs}?$filter=startswith(teamsApp/displayName,'P')"),
        &token,
    )
    .await;
    let message = answer.expect_graph_error(400, "BadRequest");
    assert!(message.contains("Supported"), "{message}");

    let answer = get(&format!("{installs}?$filter=teamsApp/id gt 'a'"), &token).await;
    let message = answer.expect_graph_error(400, "BadRequest");
    assert!(message.contains("eq"), "{message}");

    let answer = get(&format!("{installs}?$expand=owner"), &token).await;
    let message = answer.expect_graph_error(400, "BadRequest");
    assert!(message.contains("teamsApp"), "{message}");

    let answer = get(&format!("{installs}?$orderby=id"), &token).await;
    answer.expect_graph_error(400, "BadRequest");
}

#[tokio::test]
async fn team_installs_answer_200_then_409() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let app_id = catalog_id(&emu, &token, defaults::MANIFEST_ID).await;
    let team = team_id(&emu);
    let url = format!("{}/teams/{team}/installedApps", emu.graph_url());

    let before = get(&url, &token).await;
    assert_eq!(before.expect(200)["value"], json!([]));
    let install = post(&url, &token, &bind(&app_id)).await;
    install.expect(200);
    post(&url, &token, &bind(&app_id))
        .await
        .expect_graph_error(409, "Conflict");

    let list = get(&format!("{url}?$expand=teamsApp"), &token).await;
    let value = list.expect(200)["value"].as_array().unwrap().clone();
    assert_eq!(value.len(), 1, "{}", list.text);
    assert_eq!(value[0]["teamsApp"]["id"], app_id.as_str());
    let installation = value[0]["id"].as_str().unwrap().to_string();
    let filtered = get(&format!("{url}?$filter=teamsApp/id eq '{app_id}'"), &token).await;
    assert_eq!(filtered.expect(200)["value"].as_array().unwrap().len(), 1);

    get(&format!("{url}/{installation}"), &token)
        .await
        .expect(200);
    delete(&format!("{url}/{installation}"), &token)
        .await
        .expect(204);
    get(&format!("{url}/{installation}"), &token)
        .await
        .expect_graph_error(404, "NotFound");
    assert_eq!(get(&url, &token).await.expect(200)["value"], json!([]));

    let unknown = format!(
        "{}/teams/{}/installedApps",
        emu.graph_url(),
        uuid::Uuid::new_v4()
    );
    get(&unknown, &token)
        .await
        .expect_graph_error(404, "NotFound");
    post(&unknown, &token, &bind(&app_id))
        .await
        .expect_graph_error(404, "NotFound");
}

#[tokio::test]
async fn a_self_permission_manages_only_the_apps_own_teams_app() {
    let emu = start().await;
    let bot = bot_graph_token(&emu).await;
    let helper = app_token(&emu, SELF_APP_ID, SELF_APP_SECRET, GRAPH_SCOPE).await;
    let bot_app = catalog_id(&emu, &bot, defaults::MANIFEST_ID).await;
    let helper_app = catalog_id(&emu, &bot, HELPER_MANIFEST_ID).await;
    let installs = installs_url(&emu, &upn("nestor"));

    // The helper may not install the reference bot's app.
    let answer = post(&installs, &helper, &bind(&bot_app)).await;
    let message = answer.expect_graph_error(403, "Forbidden");
    assert!(
        message.contains(&format!(
            "AAD App Id '{SELF_APP_ID}' is not allowed to manage the Teams App '{bot_app}'"
        )),
        "{message}"
    );

    // It may install itself, and its list hides the bot's installation.
    post(&installs, &bot, &bind(&bot_app)).await.expect(201);
    post(&installs, &helper, &bind(&helper_app))
        .await
        .expect(201);
    let seen = get(&format!("{installs}?$expand=teamsApp"), &helper).await;
    let value = seen.expect(200)["value"].as_array().unwrap().clone();
    assert_eq!(value.len(), 1, "{}", seen.text);
    assert_eq!(value[0]["teamsApp"]["id"], helper_app.as_str());
    let seen = get(&format!("{installs}?$expand=teamsApp"), &bot).await;
    let value = seen.expect(200)["value"].as_array().unwrap().clone();
    assert_eq!(value.len(), 1, "{}", seen.text);
    assert_eq!(value[0]["teamsApp"]["id"], bot_app.as_str());

    // Nor may it remove the bot's installation.
    let bot_installation = value[0]["id"].as_str().unwrap().to_string();
    delete(&format!("{installs}/{bot_installation}"), &helper)
        .await
        .expect_graph_error(403, "Forbidden");
}

#[tokio::test]
async fn a_user_installs_for_themself_and_an_admin_for_anyone() {
    let emu = start().await;
    let bot = bot_graph_token(&emu).await;
    let app_id = catalog_id(&emu, &bot, defaults::MANIFEST_ID).await;
    let megan = user_token(&emu, "megan").await;
    let patti = user_token(&emu, "patti").await;

    post(&installs_url(&emu, &upn("megan")), &megan, &bind(&app_id))
        .await
        .expect(201);
    let list = get(&installs_url(&emu, &upn("megan")), &megan).await;
    assert_eq!(list.expect(200)["value"].as_array().unwrap().len(), 1);

    let other = post(&installs_url(&emu, &upn("adele")), &megan, &bind(&app_id)).await;
    other.expect_graph_error(403, "Forbidden");

    post(&installs_url(&emu, &upn("adele")), &patti, &bind(&app_id))
        .await
        .expect(201);
    let list = get(&installs_url(&emu, &upn("adele")), &bot).await;
    assert_eq!(list.expect(200)["value"].as_array().unwrap().len(), 1);

    // A user reads their own chat and not someone else's.
    let megan_id = user_id(&emu, &bot, "megan").await;
    let chats = get(
        &format!("{}/users/{megan_id}/chats", emu.graph_url()),
        &megan,
    )
    .await;
    let value = chats.expect(200)["value"].as_array().unwrap().clone();
    assert_eq!(value.len(), 1, "{}", chats.text);
    let adele_chats = get(
        &format!("{}/users/{}/chats", emu.graph_url(), upn("adele")),
        &megan,
    )
    .await;
    adele_chats.expect_graph_error(403, "Forbidden");
    // Not even an administrator lists someone else's chats with a delegated token.
    let adele_chats = get(
        &format!("{}/users/{}/chats", emu.graph_url(), upn("adele")),
        &patti,
    )
    .await;
    adele_chats.expect_graph_error(403, "Forbidden");

    // In team scope a member (here the owner) may install; someone outside the team may not.
    let teams = format!("{}/teams/{}/installedApps", emu.graph_url(), team_id(&emu));
    let nestor = user_token(&emu, "nestor").await;
    post(&teams, &nestor, &bind(&app_id))
        .await
        .expect_graph_error(403, "Forbidden");
    post(&teams, &megan, &bind(&app_id)).await.expect(200);

    // Reading a team's apps needs membership too.
    let list = get(&teams, &megan).await;
    let installation = list.expect(200)["value"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    get(&teams, &nestor)
        .await
        .expect_graph_error(403, "Forbidden");
    get(&format!("{teams}/{installation}"), &nestor)
        .await
        .expect_graph_error(403, "Forbidden");
    get(&format!("{teams}/{installation}"), &patti)
        .await
        .expect(200);
    delete(&format!("{teams}/{installation}"), &nestor)
        .await
        .expect_graph_error(403, "Forbidden");
}
