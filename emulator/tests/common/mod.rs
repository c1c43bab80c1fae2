//! What the emulator's tests share, on top of the public API ([`EmulatorHandle`] and its
//! [`EmulatorClient`]):
//!
//! - the Graph tests' tenant ([`test_config`], [`start`]) and free helpers for requests with a
//!   chosen token, asserting Graph's, the Connector's and Entra's error envelopes ([`AnswerExt`]);
//! - [`Env`]: an emulator whose bot endpoint is a `wiremock` fake bot, for the Connector and
//!   delivery tests, which look at what the bot received and how.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use teams_emulator::config::{AppRegistrationSpec, BotOverrides, CatalogAppSpec};
use teams_emulator::{BotAuth, Emulator, EmulatorConfig, EmulatorHandle, defaults};
use uuid::{Uuid, uuid};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

#[allow(unused_imports)]
pub use teams_emulator::client::{
    BOT_FRAMEWORK_SCOPE, EmulatorClient, GRAPH_SCOPE, Reply as Answer,
};

pub const DOMAIN: &str = "contoso.onmicrosoft.com";
pub const MEGAN: &str = "megan@contoso.onmicrosoft.com";
pub const ADELE: &str = "adele@contoso.onmicrosoft.com";
pub const NESTOR: &str = "nestor@contoso.onmicrosoft.com";
pub const DEADLINE: Duration = Duration::from_secs(10);

/// An app registration that holds no application permission at all.
pub const ROLELESS_APP_ID: Uuid = uuid!("0a0a0a0a-1111-4222-8333-444444444444");
pub const ROLELESS_APP_SECRET: &str = "roleless-secret";
/// An app registration with only `TeamsAppInstallation.ReadWriteSelfForUser.All`, whose own
/// Teams app is [`HELPER_MANIFEST_ID`].
pub const SELF_APP_ID: Uuid = uuid!("5e1f5e1f-2222-4333-8444-555555555555");
pub const SELF_APP_SECRET: &str = "self-app-secret";
pub const HELPER_MANIFEST_ID: Uuid = uuid!("4e1e4e1e-3333-4444-8555-666666666666");

// ---- the Graph tests' tenant and requests -----------------------------------------------------

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
        .timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client")
}

/// Reads a whole answer.
pub async fn read(response: reqwest::Response) -> Answer {
    Answer::read(response).await.expect("a readable body")
}

/// Assertions on an [`Answer`].
pub trait AnswerExt {
    /// Asserts the status and returns the body.
    fn expect(&self, status: u16) -> &Value;
    /// Asserts a Graph error: the status, the code, and the whole envelope.
    fn expect_graph_error(&self, status: u16, code: &str) -> &str;
    /// Asserts an OAuth error as Entra renders it.
    fn expect_oauth_error(&self, status: u16, error: &str) -> &str;
}

impl AnswerExt for Answer {
    #[track_caller]
    fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        &self.json
    }

    #[track_caller]
    fn expect_graph_error(&self, status: u16, code: &str) -> &str {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_graph_envelope(&self.json);
        assert_eq!(self.json["error"]["code"], code, "body: {}", self.text);
        self.json["error"]["message"].as_str().unwrap_or_default()
    }

    #[track_caller]
    fn expect_oauth_error(&self, status: u16, error: &str) -> &str {
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
    read(request.send().await.expect("the request is answered")).await
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
    read(
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
    emu.client()
        .app_token(client_id, secret, scope)
        .await
        .expect("a client-credentials token")
}

/// The reference bot's Graph token (its consented `…Self…` roles).
pub async fn bot_graph_token(emu: &EmulatorHandle) -> String {
    emu.client()
        .graph_token()
        .await
        .expect("the bot's Graph token")
}

/// A delegated Graph token for a tenant user (password grant).
pub async fn user_token(emu: &EmulatorHandle, key: &str) -> String {
    emu.client()
        .user_token(key)
        .await
        .expect("a delegated token")
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

/// A user's object id, read through Graph with `token`.
pub async fn user_id(emu: &EmulatorHandle, token: &str, key: &str) -> String {
    emu.client()
        .with_token(token)
        .user_id(key)
        .await
        .expect("a user id")
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
    EmulatorClient::bind(catalog_id)
}

/// The default team's id (the team is not listed through any emulated Graph route).
pub fn team_id(emu: &EmulatorHandle) -> Uuid {
    emu.team("mark8").expect("the default team").id
}

// ---- an emulator that delivers to a fake bot --------------------------------------------------

/// An emulator and the fake bot it delivers to.
pub struct Env {
    pub emu: EmulatorHandle,
    pub bot: MockServer,
    pub http: reqwest::Client,
    /// The emulator's client, acting as its bot.
    pub client: EmulatorClient,
}

/// A fake bot on loopback that answers `status` to `POST /api/messages`.
pub async fn fake_bot(status: u16) -> MockServer {
    let bot = MockServer::builder()
        .listener(std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake bot"))
        .start()
        .await;
    Mock::given(method("POST"))
        .and(path("/api/messages"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&bot)
        .await;
    bot
}

/// The default tenant, with its bot's messaging endpoint at `endpoint`.
pub fn config_with_endpoint(endpoint: &str) -> EmulatorConfig {
    let mut config = EmulatorConfig::default_tenant();
    config.apply(&BotOverrides {
        bot_endpoint: Some(endpoint.to_string()),
        ..Default::default()
    });
    config
}

impl Env {
    /// The default tenant, its bot pointed at a fake bot that answers 200.
    pub async fn start(auth: BotAuth) -> Env {
        Self::start_with(auth, EmulatorConfig::default_tenant(), 200).await
    }

    /// For tests that send far more than Teams' per-conversation limits allow.
    pub async fn start_without_throttling(auth: BotAuth) -> Env {
        let clock = teams_emulator::clock::Clock::system();
        Self::start_full(auth, EmulatorConfig::default_tenant(), 200, false, clock).await
    }

    /// Starts an emulator from `config` with its first bot pointed at a fresh fake bot.
    pub async fn start_with(auth: BotAuth, config: EmulatorConfig, bot_status: u16) -> Env {
        let clock = teams_emulator::clock::Clock::system();
        Self::start_full(auth, config, bot_status, true, clock).await
    }

    /// With a clock that stands still until the test moves it, for limits that count per second.
    pub async fn start_on_manual_clock(auth: BotAuth) -> Env {
        let clock = teams_emulator::clock::Clock::manual(chrono::Utc::now());
        Self::start_full(auth, EmulatorConfig::default_tenant(), 200, true, clock).await
    }

    async fn start_full(
        auth: BotAuth,
        mut config: EmulatorConfig,
        bot_status: u16,
        throttling: bool,
        clock: teams_emulator::clock::Clock,
    ) -> Env {
        let bot = fake_bot(bot_status).await;
        config.apply(&BotOverrides {
            bot_endpoint: Some(format!("{}/api/messages", bot.uri())),
            ..Default::default()
        });
        let emu = Emulator::builder()
            .config(config)
            .bot_auth(auth)
            .throttling(throttling)
            .clock(clock)
            .start()
            .await
            .expect("start the emulator");
        Self::new(emu, bot)
    }

    /// An emulator already started, and a fake bot it may or may not deliver to.
    pub fn new(emu: EmulatorHandle, bot: MockServer) -> Env {
        Env {
            client: emu.client(),
            emu,
            bot,
            http: client(),
        }
    }

    pub fn url(&self, rest: &str) -> String {
        format!("{}{rest}", self.emu.url())
    }

    /// A Connector URL: `{serviceUrl}v3/{rest}`.
    pub fn connector_url(&self, rest: &str) -> String {
        format!("{}v3/{rest}", self.emu.service_url())
    }

    /// An app-only Graph token for the default bot (it has Chat.Read.All and the install roles).
    pub async fn app_token(&self) -> String {
        self.client
            .graph_token()
            .await
            .expect("the bot's Graph token")
    }

    /// A Bot Framework token for the default bot, for Connector calls.
    pub async fn bot_token(&self) -> String {
        self.client.bot_token().await.expect("the bot's token")
    }

    /// A user's delegated Graph token (password grant).
    pub async fn user_token(&self, upn: &str) -> String {
        self.client
            .user_token(upn)
            .await
            .expect("a delegated token")
    }

    /// The default bot's catalog id, looked up through Graph.
    pub async fn catalog_id(&self) -> String {
        self.client
            .catalog_app_id()
            .await
            .expect("the bot's catalog app")
    }

    pub fn user_id(&self, upn: &str) -> Uuid {
        self.emu.user(upn).expect("user").id
    }

    pub fn user_mri(&self, upn: &str) -> String {
        self.emu.user(upn).expect("user").mri
    }

    /// The `mark8` team: (group id, General channel thread id, the other channel's id).
    pub fn team(&self) -> (Uuid, String, String) {
        let team = self.emu.team("mark8").expect("the default team");
        (
            team.id,
            team.general_channel_id.clone(),
            team.channels[1].id.clone(),
        )
    }

    /// A request with an optional bearer token and JSON body; answers status and JSON (the text
    /// as a string when it is not JSON, `Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let answer = self
            .client
            .call(method, url, token, body.as_ref())
            .await
            .expect("request");
        let value = match answer.json {
            Value::Null if !answer.text.trim().is_empty() => Value::String(answer.text),
            json => json,
        };
        (answer.status, value)
    }

    /// Installs the default bot for `upn` through Graph with an app token.
    pub async fn install_for(&self, upn: &str) {
        let token = self.app_token().await;
        let (status, body) = self.install_for_with(upn, &token).await;
        assert_eq!(status, StatusCode::CREATED, "install said {body}");
    }

    pub async fn install_for_with(&self, upn: &str, token: &str) -> (StatusCode, Value) {
        let bind = EmulatorClient::bind(&self.catalog_id().await);
        self.call(
            Method::POST,
            &self.url(&format!("/v1.0/users/{upn}/teamwork/installedApps")),
            Some(token),
            Some(bind),
        )
        .await
    }

    /// Uninstalls the default bot for `upn`.
    pub async fn uninstall_for(&self, upn: &str) {
        let token = self.app_token().await;
        let (status, list) = self
            .call(
                Method::GET,
                &self.url(&format!(
                    "/v1.0/users/{upn}/teamwork/installedApps?$expand=teamsApp"
                )),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let catalog = self.catalog_id().await;
        let id = list["value"]
            .as_array()
            .expect("installations")
            .iter()
            .find(|i| i["teamsApp"]["id"] == catalog.as_str())
            .and_then(|i| i["id"].as_str())
            .expect("the bot's installation")
            .to_string();
        let (status, body) = self
            .call(
                Method::DELETE,
                &self.url(&format!("/v1.0/users/{upn}/teamwork/installedApps/{id}")),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "uninstall said {body}");
    }

    /// Installs the default bot in the `mark8` team.
    pub async fn install_in_team(&self) {
        let token = self.app_token().await;
        let (team, _, _) = self.team();
        let bind = EmulatorClient::bind(&self.catalog_id().await);
        let (status, body) = self
            .call(
                Method::POST,
                &self.url(&format!("/v1.0/teams/{team}/installedApps")),
                Some(&token),
                Some(bind),
            )
            .await;
        // Graph answers 200 to a team install (201 to a personal one)
        assert_eq!(status, StatusCode::OK, "team install said {body}");
    }

    /// The delivery records, once queued deliveries settle (the control API waits).
    pub async fn deliveries(&self) -> Vec<Value> {
        let body = self
            .client
            .deliveries(Duration::from_secs(5))
            .await
            .expect("GET /_emulator/deliveries");
        assert_eq!(body["pending"], 0, "deliveries did not settle: {body}");
        body["value"].as_array().cloned().unwrap_or_default()
    }

    /// Every request the fake bot has received, once deliveries settle.
    pub async fn bot_requests(&self) -> Vec<Request> {
        self.deliveries().await;
        self.bot.received_requests().await.unwrap_or_default()
    }

    /// The activities the fake bot has received, in order.
    pub async fn bot_activities(&self) -> Vec<Value> {
        self.bot_requests()
            .await
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("activity json"))
            .collect()
    }

    /// Waits (with a deadline) until the bot has received at least `n` activities.
    pub async fn wait_for_activities(&self, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let got = self.bot_activities().await;
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the bot received {} activities, expected {n}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens the 1:1 conversation with `upn` (by `29:` id), answers its `a:` id.
    pub async fn open_conversation(&self, token: Option<&str>, upn: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                &self.connector_url("conversations"),
                token,
                Some(json!({
                    "bot": {"id": format!("28:{}", defaults::BOT_APP_ID), "name": "Bot"},
                    "isGroup": false,
                    "members": [{"id": self.user_mri(upn)}],
                    "tenantId": defaults::TENANT_ID.to_string(),
                })),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "create conversation said {body}"
        );
        body["id"].as_str().expect("conversation id").to_string()
    }

    /// The Graph chat id of the default bot's 1:1 chat with `upn`, read through Graph.
    pub async fn chat_id(&self, upn: &str) -> String {
        self.client
            .chat_with_bot(upn)
            .await
            .expect("the user's chats")
            .expect("the 1:1 chat")
    }
}

/// Asserts a Connector error envelope with `status` and `code`.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "body: {}", got.1);
    assert_eq!(got.1["error"]["code"], code, "body: {}", got.1);
    assert!(
        got.1["error"]["message"].is_string(),
        "message missing: {}",
        got.1
    );
}

/// A plain message activity.
pub fn message(text: &str) -> Value {
    json!({"type": "message", "text": text})
}

/// Percent-encodes every byte that is not unreserved, as botbuilder encodes path segments.
pub fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// ---- fixtures ---------------------------------------------------------------------------------

/// A JSON fixture under `emulator/testdata/`, its `{name}` placeholders filled in from `vars`.
/// `{*}` stays: [`assert_json_matches`] takes it for any value that is there.
pub fn fixture(name: &str, vars: &[(&str, String)]) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut value: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    fill(&mut value, vars);
    value
}

fn fill(value: &mut Value, vars: &[(&str, String)]) {
    match value {
        Value::String(s) => {
            for (name, with) in vars {
                *s = s.replace(&format!("{{{name}}}"), with);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| fill(v, vars)),
        Value::Object(fields) => fields.values_mut().for_each(|v| fill(v, vars)),
        _ => {}
    }
}

/// Asserts that `actual` is `expected`, compared as JSON values: the same keys, the same array
/// lengths, equal leaves, where the string `{*}` in `expected` stands for any value but `null`.
#[track_caller]
pub fn assert_json_matches(expected: &Value, actual: &Value) {
    if let Err(at) = json_matches(expected, actual, "$") {
        panic!("{at}\nexpected: {expected:#}\nactual: {actual:#}");
    }
}

fn json_matches(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(any), actual) if any == "{*}" => match actual {
            Value::Null => Err(format!("{at}: missing")),
            _ => Ok(()),
        },
        (Value::Object(e), Value::Object(a)) => {
            if let Some(extra) = a.keys().find(|k| !e.contains_key(*k)) {
                return Err(format!("{at}.{extra}: not expected, got {}", a[extra]));
            }
            for (key, value) in e {
                let got = a.get(key).unwrap_or(&Value::Null);
                json_matches(value, got, &format!("{at}.{key}"))?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!("{at}: {} items expected, got {}", e.len(), a.len()));
            }
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                json_matches(e, a, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{at}: expected {e}, got {a}")),
    }
}
