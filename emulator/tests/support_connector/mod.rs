//! Shared helpers for the Connector and delivery tests: an emulator whose bot endpoint is a
//! `wiremock` server, tokens from the emulator's token endpoint, and small HTTP wrappers.
#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use teams_emulator::config::BotOverrides;
use teams_emulator::{BotAuth, Emulator, EmulatorConfig, EmulatorHandle, defaults};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const MEGAN: &str = "megan@contoso.onmicrosoft.com";
pub const ADELE: &str = "adele@contoso.onmicrosoft.com";
pub const NESTOR: &str = "nestor@contoso.onmicrosoft.com";
pub const DEADLINE: Duration = Duration::from_secs(10);

/// An emulator and the fake bot it delivers to.
pub struct Env {
    pub emu: EmulatorHandle,
    pub bot: MockServer,
    pub http: reqwest::Client,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
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

pub async fn start(auth: BotAuth) -> Env {
    start_with(auth, EmulatorConfig::default_tenant(), 200).await
}

/// For tests that send far more than Teams' per-conversation limits allow.
#[allow(dead_code)]
pub async fn start_without_throttling(auth: BotAuth) -> Env {
    start_configured(auth, EmulatorConfig::default_tenant(), 200, false).await
}

/// Starts an emulator from `config` with its first bot pointed at a fresh fake bot.
pub async fn start_with(auth: BotAuth, config: EmulatorConfig, bot_status: u16) -> Env {
    start_configured(auth, config, bot_status, true).await
}

/// With a clock that stands still until the test moves it, for limits that count per second.
#[allow(dead_code)]
pub async fn start_on_manual_clock(auth: BotAuth) -> Env {
    let clock = teams_emulator::clock::Clock::manual(chrono::Utc::now());
    start_full(auth, EmulatorConfig::default_tenant(), 200, true, clock).await
}

async fn start_configured(
    auth: BotAuth,
    config: EmulatorConfig,
    bot_status: u16,
    throttling: bool,
) -> Env {
    let clock = teams_emulator::clock::Clock::system();
    start_full(auth, config, bot_status, throttling, clock).await
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
    Env {
        emu,
        bot,
        http: client(),
    }
}

async fn token(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> String {
    let response = http.post(url).form(form).send().await.expect("token call");
    let status = response.status();
    let body: Value = response.json().await.expect("token json");
    assert_eq!(status, StatusCode::OK, "token endpoint said {body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

impl Env {
    pub fn url(&self, rest: &str) -> String {
        format!("{}{rest}", self.emu.url())
    }

    /// A Connector URL: `{serviceUrl}v3/{rest}`.
    pub fn connector_url(&self, rest: &str) -> String {
        format!("{}v3/{rest}", self.emu.service_url())
    }

    /// An app-only Graph token for the default bot (it has Chat.Read.All and the install roles).
    pub async fn app_token(&self) -> String {
        let bot = defaults::BOT_APP_ID.to_string();
        token(
            &self.http,
            &self.emu.token_url(defaults::TENANT_ID),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &bot),
                ("client_secret", defaults::BOT_APP_SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await
    }

    /// A Bot Framework token for the default bot, for Connector calls.
    pub async fn bot_token(&self) -> String {
        let bot = defaults::BOT_APP_ID.to_string();
        token(
            &self.http,
            &self.url("/botframework.com/oauth2/v2.0/token"),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &bot),
                ("client_secret", defaults::BOT_APP_SECRET),
                ("scope", "https://api.botframework.com/.default"),
            ],
        )
        .await
    }

    /// A user's delegated Graph token (password grant).
    pub async fn user_token(&self, upn: &str) -> String {
        let bot = defaults::BOT_APP_ID.to_string();
        token(
            &self.http,
            &self.emu.token_url(defaults::TENANT_ID),
            &[
                ("grant_type", "password"),
                ("client_id", &bot),
                ("username", upn),
                ("password", defaults::USER_PASSWORD),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await
    }

    /// The default bot's catalog id.
    pub fn catalog_id(&self) -> Uuid {
        self.emu.state().world().tenants[0]
            .catalog
            .iter()
            .find(|a| a.bot_id == Some(defaults::BOT_APP_ID))
            .expect("the bot's catalog app")
            .id
    }

    pub fn user_id(&self, upn: &str) -> Uuid {
        self.emu.state().world().tenants[0]
            .user(upn)
            .expect("user")
            .id
    }

    pub fn user_mri(&self, upn: &str) -> String {
        self.emu.state().world().tenants[0]
            .user(upn)
            .expect("user")
            .mri
            .clone()
    }

    /// The `mark8` team: (group id, General channel thread id, the other channel's id).
    pub fn team(&self) -> (Uuid, String, String) {
        let world = self.emu.state().world();
        let t = &world.tenants[0].teams[0];
        (t.id, t.thread_id.clone(), t.channels[1].id.clone())
    }

    /// A request with an optional bearer token and JSON body; answers status and JSON (or Null).
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Installs the default bot for `upn` through Graph with an app token.
    pub async fn install_for(&self, upn: &str) {
        let token = self.app_token().await;
        let (status, body) = self.install_for_with(upn, &token).await;
        assert_eq!(status, StatusCode::CREATED, "install said {body}");
    }

    pub async fn install_for_with(&self, upn: &str, token: &str) -> (StatusCode, Value) {
        let bind = format!(
            "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{}",
            self.catalog_id()
        );
        self.call(
            Method::POST,
            &self.url(&format!("/v1.0/users/{upn}/teamwork/installedApps")),
            Some(token),
            Some(json!({ "teamsApp@odata.bind": bind })),
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
        let catalog = self.catalog_id().to_string();
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
        let bind = format!(
            "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{}",
            self.catalog_id()
        );
        let (status, body) = self
            .call(
                Method::POST,
                &self.url(&format!("/v1.0/teams/{team}/installedApps")),
                Some(&token),
                Some(json!({ "teamsApp@odata.bind": bind })),
            )
            .await;
        // Graph answers 200 to a team install (201 to a personal one)
        assert_eq!(status, StatusCode::OK, "team install said {body}");
    }

    /// The delivery records, once queued deliveries settle (the control API waits).
    pub async fn deliveries(&self) -> Vec<Value> {
        let (status, body) = self
            .call(
                Method::GET,
                &self.url("/_emulator/deliveries?wait_ms=5000"),
                None,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
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

    /// The Graph chat id of the default bot's 1:1 chat with `upn`.
    pub fn chat_id(&self, upn: &str) -> String {
        let world = self.emu.state().world();
        let t = &world.tenants[0];
        let user = t.user(upn).expect("user").id;
        t.chats
            .iter()
            .find(|c| c.user == user && c.bot == defaults::BOT_APP_ID)
            .expect("the 1:1 chat")
            .id
            .clone()
    }
}

/// Asserts a Connector error envelope with `status` and `code`.
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
