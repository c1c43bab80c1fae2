//! Helpers shared by the HTTP tests: a test tenant, tokens, requests and Graph's error envelope.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use teams_emulator::config::{AppRegistrationSpec, CatalogAppSpec};
use teams_emulator::{BotAuth, Emulator, EmulatorConfig, EmulatorHandle, defaults};
use uuid::{Uuid, uuid};

pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
pub const BOT_FRAMEWORK_SCOPE: &str = "https://api.botframework.com/.default";
pub const DOMAIN: &str = "contoso.onmicrosoft.com";

/// An app registration that holds no application permission at all.
pub const ROLELESS_APP_ID: Uuid = uuid!("0a0a0a0a-1111-4222-8333-444444444444");
pub const ROLELESS_APP_SECRET: &str = "roleless-secret";
/// An app registration with only `TeamsAppInstallation.ReadWriteSelfForUser.All`, whose own
/// Teams app is [`HELPER_MANIFEST_ID`].
pub const SELF_APP_ID: Uuid = uuid!("5e1f5e1f-2222-4333-8444-555555555555");
pub const SELF_APP_SECRET: &str = "self-app-secret";
pub const HELPER_MANIFEST_ID: Uuid = uuid!("4e1e4e1e-3333-4444-8555-666666666666");

/// The embedded default tenant, plus two app registrations (one without roles, one with only a
/// `…Self…` role and its own catalog app), and no messaging endpoints, so nothing is delivered
/// outside the test.
pub fn test_config() -> EmulatorConfig {
    let mut config = EmulatorConfig::default_tenant();
    let tenant = &mut config.tenants[0];
    for app in &mut tenant.apps {
        app.messaging_endpoint = None;
    }
    tenant.apps.push(AppRegistrationSpec {
        name: "Roleless".into(),
        client_id: ROLELESS_APP_ID,
        client_secret: ROLELESS_APP_SECRET.into(),
        permissions: vec![],
        messaging_endpoint: None,
    });
    tenant.apps.push(AppRegistrationSpec {
        name: "Helper".into(),
        client_id: SELF_APP_ID,
        client_secret: SELF_APP_SECRET.into(),
        permissions: vec!["TeamsAppInstallation.ReadWriteSelfForUser.All".into()],
        messaging_endpoint: None,
    });
    tenant.catalog.push(CatalogAppSpec {
        name: "Helper".into(),
        manifest_id: HELPER_MANIFEST_ID,
        id: None,
        distribution: "organization".into(),
        version: "1.0.0".into(),
        bot_id: Some(SELF_APP_ID),
        web_application_id: Some(SELF_APP_ID),
        description: None,
    });
    config
        .check("<test config>")
        .expect("the test config is valid");
    config
}

/// An emulator on a free loopback port with [`test_config`].
pub async fn start() -> EmulatorHandle {
    Emulator::builder()
        .config(test_config())
        .bot_auth(BotAuth::None)
        .start()
        .await
        .expect("the emulator starts")
}

pub fn upn(key: &str) -> String {
    format!("{key}@{DOMAIN}")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// An HTTP answer, with the body read as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        &self.json
    }

    /// Asserts a Graph error: the status, the code, and the whole envelope.
    #[track_caller]
    pub fn expect_graph_error(&self, status: u16, code: &str) -> &str {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_graph_envelope(&self.json);
        assert_eq!(self.json["error"]["code"], code, "body: {}", self.text);
        self.json["error"]["message"].as_str().unwrap_or_default()
    }

    /// Asserts an OAuth error as Entra renders it.
    #[track_caller]
    pub fn expect_oauth_error(&self, status: u16, error: &str) -> &str {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.json["error"], error, "body: {}", self.text);
        let description = self.json["error_description"]
            .as_str()
            .expect("an error_description");
        assert!(description.starts_with("AADSTS"), "{description}");
        description
    }
}

/// `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.
#[track_caller]
pub fn assert_graph_envelope(body: &Value) {
    let error = &body["error"];
    assert!(
        error["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let inner = &error["innerError"];
    for field in ["date", "request-id", "client-request-id"] {
        assert!(
            inner[field].as_str().is_some_and(|v| !v.is_empty()),
            "innerError.{field} missing: {body}"
        );
    }
}

/// Sends a request with an optional bearer token and an optional JSON body.
pub async fn call(method: Method, url: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
    let mut request = client().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    Answer::read(request.send().await.expect("the request is answered")).await
}

pub async fn get(url: &str, token: &str) -> Answer {
    call(Method::GET, url, Some(token), None).await
}

pub async fn post(url: &str, token: &str, body: &Value) -> Answer {
    call(Method::POST, url, Some(token), Some(body)).await
}

pub async fn delete(url: &str, token: &str) -> Answer {
    call(Method::DELETE, url, Some(token), None).await
}

/// POSTs a form to a token endpoint.
pub async fn token_request(url: &str, form: &[(&str, &str)]) -> Answer {
    Answer::read(
        client()
            .post(url)
            .form(form)
            .send()
            .await
            .expect("the token endpoint answers"),
    )
    .await
}

/// A client-credentials token from the default tenant.
pub async fn app_token(emu: &EmulatorHandle, client_id: Uuid, secret: &str, scope: &str) -> String {
    let id = client_id.to_string();
    let answer = token_request(
        &emu.token_url(defaults::TENANT_ID),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", secret),
            ("scope", scope),
        ],
    )
    .await;
    access_token(&answer)
}

/// The reference bot's Graph token (its consented `…Self…` roles).
pub async fn bot_graph_token(emu: &EmulatorHandle) -> String {
    app_token(
        emu,
        defaults::BOT_APP_ID,
        defaults::BOT_APP_SECRET,
        GRAPH_SCOPE,
    )
    .await
}

/// A delegated Graph token for a tenant user (password grant).
pub async fn user_token(emu: &EmulatorHandle, key: &str) -> String {
    let id = defaults::BOT_APP_ID.to_string();
    let username = upn(key);
    let answer = token_request(
        &emu.token_url(defaults::TENANT_ID),
        &[
            ("grant_type", "password"),
            ("client_id", &id),
            ("scope", GRAPH_SCOPE),
            ("username", &username),
            ("password", defaults::USER_PASSWORD),
        ],
    )
    .await;
    access_token(&answer)
}

#[track_caller]
pub fn access_token(answer: &Answer) -> String {
    let body = answer.expect(200);
    body["access_token"]
        .as_str()
        .expect("an access_token")
        .to_string()
}

/// The claims of a JWT, without checking its signature.
pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

/// A user's object id, read through Graph.
pub async fn user_id(emu: &EmulatorHandle, token: &str, key: &str) -> String {
    let answer = get(&format!("{}/users/{}", emu.graph_url(), upn(key)), token).await;
    answer.expect(200)["id"]
        .as_str()
        .expect("a user id")
        .to_string()
}

/// The catalog id of the app with manifest id `manifest`, read through Graph.
pub async fn catalog_id(emu: &EmulatorHandle, token: &str, manifest: Uuid) -> String {
    let url = format!(
        "{}/appCatalogs/teamsApps?$filter=externalId eq '{manifest}'",
        emu.graph_url()
    );
    let answer = get(&url, token).await;
    let apps = answer.expect(200)["value"]
        .as_array()
        .expect("a value array");
    assert_eq!(apps.len(), 1, "{}", answer.text);
    apps[0]["id"].as_str().expect("a catalog id").to_string()
}

/// `{"teamsApp@odata.bind": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{id}"}`.
pub fn bind(catalog_id: &str) -> Value {
    serde_json::json!({
        "teamsApp@odata.bind": format!("https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{catalog_id}")
    })
}

/// The default team's id (the team is not listed through any emulated Graph route).
pub fn team_id(emu: &EmulatorHandle) -> Uuid {
    emu.state().world().tenants[0].teams[0].id
}
