//! The token endpoint, the OpenID documents and the key sets, over HTTP.

mod common;

use common::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use teams_emulator::defaults;

fn bot_form<'a>(scope: &'a str, secret: &'a str, id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
        ("scope", scope),
    ]
}

#[tokio::test]
async fn client_credentials_issue_a_graph_token_with_the_consented_roles() {
    let emu = start().await;
    let id = defaults::BOT_APP_ID.to_string();
    let answer = token_request(
        &emu.token_url(defaults::TENANT_ID),
        &bot_form(GRAPH_SCOPE, defaults::BOT_APP_SECRET, &id),
    )
    .await;
    let body = answer.expect(200);
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!((3000..=3600).contains(&expires_in), "{expires_in}");
    let token = body["access_token"].as_str().expect("access_token");

    let claims = jwt_claims(token);
    let tid = defaults::TENANT_ID.to_string();
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["iss"], format!("https://sts.windows.net/{tid}/"));
    assert_eq!(claims["tid"], tid);
    assert_eq!(claims["appid"], id);
    let roles: Vec<&str> = claims["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(roles, defaults::BOT_ROLES);
    let now = chrono::Utc::now().timestamp();
    let exp = claims["exp"].as_i64().expect("exp");
    assert!(exp > now && exp <= now + 3600 + 5, "exp {exp}, now {now}");
}

#[tokio::test]
async fn the_tenant_may_be_named_by_its_domain() {
    let emu = start().await;
    let id = defaults::BOT_APP_ID.to_string();
    let url = format!("{}/{DOMAIN}/oauth2/v2.0/token", emu.url());
    let answer = token_request(&url, &bot_form(GRAPH_SCOPE, defaults::BOT_APP_SECRET, &id)).await;
    let claims = jwt_claims(&access_token(&answer));
    assert_eq!(claims["tid"], defaults::TENANT_ID.to_string());
}

#[tokio::test]
async fn client_credential_errors_are_entra_errors() {
    let emu = start().await;
    let url = emu.token_url(defaults::TENANT_ID);
    let id = defaults::BOT_APP_ID.to_string();

    let wrong_secret = token_request(&url, &bot_form(GRAPH_SCOPE, "not-the-secret", &id)).await;
    wrong_secret.expect_oauth_error(401, "invalid_client");

    let unknown = uuid::Uuid::new_v4().to_string();
    let answer = token_request(&url, &bot_form(GRAPH_SCOPE, "x", &unknown)).await;
    let description = answer.expect_oauth_error(400, "unauthorized_client");
    assert!(description.contains(&unknown), "{description}");
    let answer = token_request(&url, &bot_form(GRAPH_SCOPE, "x", "not-a-guid")).await;
    answer.expect_oauth_error(400, "unauthorized_client");

    for scope in [
        "https://graph.microsoft.com",
        "User.Read.All",
        "https://example.com/.default",
    ] {
        let answer = token_request(&url, &bot_form(scope, defaults::BOT_APP_SECRET, &id)).await;
        answer.expect_oauth_error(400, "invalid_scope");
    }

    let mut form = bot_form(GRAPH_SCOPE, defaults::BOT_APP_SECRET, &id);
    form[0] = ("grant_type", "authorization_code");
    let answer = token_request(&url, &form).await;
    let description = answer.expect_oauth_error(400, "unsupported_grant_type");
    assert!(description.contains("authorization_code"), "{description}");

    let answer = token_request(&url, &form[1..]).await;
    let description = answer.expect_oauth_error(400, "invalid_request");
    assert!(description.contains("grant_type"), "{description}");

    let answer = token_request(
        &url,
        &[("grant_type", "client_credentials"), ("client_id", &id)],
    )
    .await;
    answer.expect_oauth_error(400, "invalid_request");

    let elsewhere = emu.token_url(uuid::Uuid::new_v4());
    let answer = token_request(
        &elsewhere,
        &bot_form(GRAPH_SCOPE, defaults::BOT_APP_SECRET, &id),
    )
    .await;
    let description = answer.expect_oauth_error(400, "invalid_request");
    assert!(description.starts_with("AADSTS90002"), "{description}");
}

#[tokio::test]
async fn a_user_signs_in_with_the_password_grant_and_gets_delegated_scopes() {
    let emu = start().await;
    let url = emu.token_url(defaults::TENANT_ID);
    let id = defaults::BOT_APP_ID.to_string();
    let megan = upn("megan");
    let form = |password: &'static str| {
        vec![
            ("grant_type", "password".to_string()),
            ("client_id", id.clone()),
            ("scope", GRAPH_SCOPE.to_string()),
            ("username", megan.clone()),
            ("password", password.to_string()),
        ]
    };
    let answer = read(
        client()
            .post(&url)
            .form(&form(defaults::USER_PASSWORD))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let claims = jwt_claims(&access_token(&answer));
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["upn"], megan);
    assert_eq!(claims["idtyp"], "user");
    let scp = claims["scp"].as_str().expect("scp");
    assert!(
        scp.split(' ')
            .any(|s| s == "TeamsAppInstallation.ReadWriteSelfForUser"),
        "{scp}"
    );
    assert!(claims.get("roles").is_none(), "{claims}");

    let answer = read(
        client()
            .post(&url)
            .form(&form("wrong"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    answer.expect_oauth_error(400, "invalid_grant");

    let mut unknown_user = form(defaults::USER_PASSWORD);
    unknown_user[3].1 = upn("nobody");
    let answer = read(
        client()
            .post(&url)
            .form(&unknown_user)
            .send()
            .await
            .unwrap(),
    )
    .await;
    answer.expect_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn the_bot_framework_authority_issues_connector_tokens() {
    let emu = start().await;
    let id = defaults::BOT_APP_ID.to_string();
    let url = format!("{}/botframework.com/oauth2/v2.0/token", emu.url());
    let answer = token_request(
        &url,
        &bot_form(BOT_FRAMEWORK_SCOPE, defaults::BOT_APP_SECRET, &id),
    )
    .await;
    let claims = jwt_claims(&access_token(&answer));
    assert_eq!(claims["aud"], "https://api.botframework.com");
    assert_eq!(claims["appid"], id);
    assert!(claims.get("roles").is_none(), "{claims}");

    let answer = token_request(&url, &bot_form(BOT_FRAMEWORK_SCOPE, "wrong", &id)).await;
    answer.expect_oauth_error(401, "invalid_client");
}

#[tokio::test]
async fn entra_discovery_documents_point_back_at_the_emulator() {
    let emu = start().await;
    let http = client();
    let tid = defaults::TENANT_ID;
    let config = read(
        http.get(format!(
            "{}/{tid}/v2.0/.well-known/openid-configuration",
            emu.url()
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    let config = config.expect(200);
    assert_eq!(config["token_endpoint"], emu.token_url(tid));
    let jwks_uri = config["jwks_uri"].as_str().expect("jwks_uri");
    assert_eq!(jwks_uri, format!("{}/{tid}/discovery/v2.0/keys", emu.url()));
    assert!(
        config["issuer"]
            .as_str()
            .unwrap()
            .contains(&tid.to_string())
    );

    let keys = read(http.get(jwks_uri).send().await.unwrap()).await;
    let keys = keys.expect(200)["keys"].as_array().expect("keys").clone();
    assert!(!keys.is_empty());
    assert!(
        keys.iter()
            .all(|k| k["kty"] == "RSA" && k["kid"].is_string())
    );

    let unknown = read(
        http.get(format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            emu.url(),
            uuid::Uuid::new_v4()
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);

    let instance = read(
        http.get(format!(
            "{}/common/discovery/instance?api-version=1.1&authorization_endpoint=x",
            emu.url()
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    let instance = instance.expect(200);
    assert!(
        instance["tenant_discovery_endpoint"]
            .as_str()
            .unwrap()
            .starts_with(&emu.url())
    );
    assert!(instance["metadata"].is_array());
    // MSAL follows the tenant discovery endpoint it is given.
    let discovery = instance["tenant_discovery_endpoint"].as_str().unwrap();
    let common = read(http.get(discovery).send().await.unwrap()).await;
    assert!(
        common.expect(200)["token_endpoint"].is_string(),
        "{}",
        common.text
    );
}

async fn channel_keys(emu: &teams_emulator::EmulatorHandle) -> Vec<Value> {
    let answer = read(
        client()
            .get(format!("{}/v1/.well-known/keys", emu.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    answer.expect(200)["keys"].as_array().expect("keys").clone()
}

#[tokio::test]
async fn the_channel_key_set_is_endorsed_for_teams_and_stable_across_restarts() {
    let emu = start().await;
    let config = read(client().get(emu.channel_openid_url()).send().await.unwrap()).await;
    let config = config.expect(200);
    assert_eq!(config["issuer"], "https://api.botframework.com");
    assert_eq!(
        config["jwks_uri"],
        format!("{}/v1/.well-known/keys", emu.url())
    );
    assert!(
        config["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&Value::from("RS256"))
    );

    let keys = channel_keys(&emu).await;
    assert!(!keys.is_empty());
    for key in &keys {
        let endorsements = key["endorsements"].as_array().expect("endorsements");
        assert!(endorsements.contains(&Value::from("msteams")), "{key}");
    }
    let kids = |keys: &[Value]| -> Vec<String> {
        keys.iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let first = kids(&keys);
    emu.shutdown().await;
    let again = start().await;
    assert_eq!(kids(&channel_keys(&again).await), first);
}

#[tokio::test]
async fn issued_tokens_verify_with_the_served_keys() {
    let emu = start().await;
    let token = bot_graph_token(&emu).await;
    let header = jsonwebtoken::decode_header(&token).expect("a JWT header");
    assert_eq!(header.alg, Algorithm::RS256);
    let kid = header.kid.expect("a kid");

    let keys = read(
        client()
            .get(format!(
                "{}/{}/discovery/v2.0/keys",
                emu.url(),
                defaults::TENANT_ID
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let keys = keys.expect(200)["keys"].as_array().unwrap().clone();
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the token's kid is served");
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .expect("an RSA key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["https://graph.microsoft.com"]);
    validation.set_issuer(&[format!("https://sts.windows.net/{}/", defaults::TENANT_ID)]);
    let data =
        jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("the token verifies");
    assert_eq!(data.claims["appid"], defaults::BOT_APP_ID.to_string());

    // The channel key set holds the same key.
    assert!(
        channel_keys(&emu)
            .await
            .iter()
            .any(|k| k["kid"] == kid.as_str())
    );
}
