//! An HTTP client for the emulator, acting as a bot and its users would: tokens from the token
//! endpoint, Microsoft Graph, the Bot Connector, and the control API under `/_emulator`.
//!
//! [`crate::EmulatorHandle::client`] gives one for an in-process emulator (it knows the first
//! tenant's bot and domain); [`EmulatorClient::connect`] one for an emulator run with
//! `teams-emulator serve` and the default tenant. Graph calls carry the bot's app-only token
//! unless the client was made for a user ([`EmulatorClient::as_user`]) or with a token of its own
//! ([`EmulatorClient::with_token`]).
//!
//! Users are named by key (`megan`, which means `megan@{tenant domain}`), UPN or object id.

use crate::config::defaults;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

mod connector;
mod control;
mod graph;

/// The scope of an app-only Graph token.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The scope of a Bot Framework token, for Connector calls.
pub const BOT_FRAMEWORK_SCOPE: &str = "https://api.botframework.com/.default";

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The bot a client acts as: its app registration and its app in the catalog.
#[derive(Clone, Debug)]
pub struct ClientBot {
    pub app_id: Uuid,
    pub secret: String,
    pub manifest_id: Uuid,
}

impl Default for ClientBot {
    /// The reference bot of the embedded default tenant.
    fn default() -> Self {
        Self {
            app_id: defaults::BOT_APP_ID,
            secret: defaults::BOT_APP_SECRET.to_string(),
            manifest_id: defaults::MANIFEST_ID,
        }
    }
}

/// A call that failed: it got no answer, or an answer that was not a success.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{method} {url}: {source}")]
    Transport {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    /// A success that did not say what it should have (no token, no such app, …).
    #[error("{0}")]
    Unexpected(String),
}

impl ClientError {
    /// The status of an answer that was not a success.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An answer, whatever its status: the status, the headers, and the body as text and as JSON
/// (`Null` when empty or not JSON).
#[derive(Clone, Debug)]
pub struct Reply {
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// Reads a whole response.
    pub async fn read(response: reqwest::Response) -> Result<Self, reqwest::Error> {
        let url = response.url().to_string();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Self {
            url,
            status,
            headers,
            text,
            json,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body of a 2xx answer, or an error naming the call, the status and the body.
    pub fn success(self) -> Result<Value, ClientError> {
        if self.status.is_success() {
            Ok(self.json)
        } else {
            Err(ClientError::Status {
                url: self.url,
                status: self.status,
                body: self.text,
            })
        }
    }
}

/// A user's personal installation of the bot's app, as [`EmulatorClient::install_for_user`]
/// made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installation {
    /// The installation's id (`users/{user}/teamwork/installedApps/{id}`).
    pub id: String,
    /// The Graph id of the user's 1:1 chat with the bot (`19:…@unq.gbl.spaces`).
    pub chat_id: String,
}

/// What every copy of a client shares: tokens and ids already looked up.
#[derive(Default)]
struct Cache {
    graph_token: Mutex<Option<String>>,
    bot_token: Mutex<Option<String>>,
    catalog_id: Mutex<Option<String>>,
    user_ids: Mutex<HashMap<String, String>>,
}

/// See the [module documentation](self).
#[derive(Clone)]
pub struct EmulatorClient {
    http: reqwest::Client,
    base: String,
    tenant: Uuid,
    domain: String,
    bot: ClientBot,
    /// Connector calls carry the bot's token (the emulator runs with `--bot-auth signed`).
    signed: bool,
    /// Graph calls carry this token instead of the bot's app-only one.
    token: Option<String>,
    cache: Arc<Cache>,
}

impl std::fmt::Debug for EmulatorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorClient")
            .field("base", &self.base)
            .field("tenant", &self.tenant)
            .field("bot", &self.bot.app_id)
            .finish_non_exhaustive()
    }
}

impl EmulatorClient {
    pub(crate) fn new(
        base: &str,
        tenant: Uuid,
        domain: &str,
        bot: ClientBot,
        signed: bool,
        ca_pem: Option<&str>,
    ) -> Self {
        let mut http = reqwest::Client::builder().timeout(CALL_TIMEOUT);
        if let Some(certificate) = ca_pem.and_then(|pem| {
            reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| tracing::warn!(error = %e, "the authority's certificate is unusable"))
                .ok()
        }) {
            http = http.add_root_certificate(certificate);
        }
        Self {
            http: http.build().unwrap_or_default(),
            base: base.trim_end_matches('/').to_string(),
            tenant,
            domain: domain.to_string(),
            bot,
            signed,
            token: None,
            cache: Arc::default(),
        }
    }

    /// A client for an emulator at `base_url` (`http://127.0.0.1:3979`) serving the embedded
    /// default tenant with signed delivery.
    pub fn connect(base_url: &str) -> Self {
        Self::new(
            base_url,
            defaults::TENANT_ID,
            "contoso.onmicrosoft.com",
            ClientBot::default(),
            true,
            None,
        )
    }

    /// The same emulator, with Graph calls carrying `token`.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The same emulator, with Graph calls as `user` (a delegated token, password grant).
    pub async fn as_user(&self, user: &str) -> Result<Self, ClientError> {
        Ok(self.with_token(self.user_token(user).await?))
    }

    /// `http://HOST:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The tenant whose token endpoint the client uses.
    pub fn tenant_id(&self) -> Uuid {
        self.tenant
    }

    /// The bot the client acts as.
    pub fn bot(&self) -> &ClientBot {
        &self.bot
    }

    /// The underlying HTTP client, for calls this one does not make.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `megan` → `megan@contoso.onmicrosoft.com`; a UPN or an id as it is.
    pub fn upn(&self, user: &str) -> String {
        if user.contains('@') || Uuid::parse_str(user).is_ok() {
            user.to_string()
        } else {
            format!("{user}@{}", self.domain)
        }
    }

    /// `path` under the emulator: a whole URL as it is, `/…` from the root.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        }
    }

    /// A Graph URL: `path` under `/v1.0/` unless it starts with `/v1.0/` or `/beta/` or is a
    /// whole URL (an `@odata.nextLink`).
    pub fn graph_url(&self, path: &str) -> String {
        if path.starts_with("http://")
            || path.starts_with("https://")
            || path.starts_with("/v1.0/")
            || path.starts_with("/beta/")
        {
            self.url(path)
        } else {
            format!("{}/v1.0/{}", self.base, path.trim_start_matches('/'))
        }
    }

    /// A Connector URL: `{serviceUrl}v3/{path}`.
    pub fn connector_url(&self, path: &str) -> String {
        format!("{}/amer/v3/{}", self.base, path.trim_start_matches('/'))
    }

    /// Sends a request with an optional bearer token and JSON body; any status is an answer.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, ClientError> {
        let mut request = self.http.request(method.clone(), url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let failed = |source| ClientError::Transport {
            method: method.clone(),
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(failed)?;
        Reply::read(response).await.map_err(failed)
    }

    // ---- tokens ----------------------------------------------------------------------------

    /// POSTs a form to the tenant's token endpoint, as MSAL does; any status is an answer.
    pub async fn request_token(&self, form: &[(&str, &str)]) -> Result<Reply, ClientError> {
        let url = format!("{}/{}/oauth2/v2.0/token", self.base, self.tenant);
        self.post_form(&url, form).await
    }

    async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Result<Reply, ClientError> {
        let failed = |source| ClientError::Transport {
            method: Method::POST,
            url: url.to_string(),
            source,
        };
        let response = self
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .map_err(failed)?;
        Reply::read(response).await.map_err(failed)
    }

    fn access_token(reply: Reply) -> Result<String, ClientError> {
        let body = reply.success()?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Unexpected(format!("no access_token in {body}")))
    }

    /// A client-credentials token for any app registration of the tenant.
    pub async fn app_token(
        &self,
        client_id: Uuid,
        secret: &str,
        scope: &str,
    ) -> Result<String, ClientError> {
        let client_id = client_id.to_string();
        Self::access_token(
            self.request_token(&[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", secret),
                ("scope", scope),
            ])
            .await?,
        )
    }

    /// The bot's app-only Graph token (its consented application permissions).
    pub async fn graph_token(&self) -> Result<String, ClientError> {
        self.app_token(self.bot.app_id, &self.bot.secret, GRAPH_SCOPE)
            .await
    }

    /// The bot's Bot Framework token, for Connector calls, from
    /// `/botframework.com/oauth2/v2.0/token` as the SDKs get it.
    pub async fn bot_token(&self) -> Result<String, ClientError> {
        let client_id = self.bot.app_id.to_string();
        Self::access_token(
            self.post_form(
                &self.url("/botframework.com/oauth2/v2.0/token"),
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &client_id),
                    ("client_secret", &self.bot.secret),
                    ("scope", BOT_FRAMEWORK_SCOPE),
                ],
            )
            .await?,
        )
    }

    /// A user's delegated Graph token (password grant, with the tenant's password `emulator`).
    pub async fn user_token(&self, user: &str) -> Result<String, ClientError> {
        self.password_token(self.bot.app_id, &self.upn(user), defaults::USER_PASSWORD)
            .await
    }

    /// A delegated Graph token for the user `upn` with `password`, signed in through the app
    /// registration `client_id` (the password grant).
    pub async fn password_token(
        &self,
        client_id: Uuid,
        upn: &str,
        password: &str,
    ) -> Result<String, ClientError> {
        let client_id = client_id.to_string();
        Self::access_token(
            self.request_token(&[
                ("grant_type", "password"),
                ("client_id", &client_id),
                ("scope", GRAPH_SCOPE),
                ("username", upn),
                ("password", password),
            ])
            .await?,
        )
    }

    async fn cached(
        slot: &Mutex<Option<String>>,
        fetch: impl Future<Output = Result<String, ClientError>>,
    ) -> Result<String, ClientError> {
        if let Some(token) = slot.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(token);
        }
        let token = fetch.await?;
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        Ok(token)
    }

    async fn graph_bearer(&self) -> Result<String, ClientError> {
        match &self.token {
            Some(token) => Ok(token.clone()),
            None => Self::cached(&self.cache.graph_token, self.graph_token()).await,
        }
    }
}

/// Percent-encodes one path segment (chat and channel ids carry `:`, `@` and `;`).
pub fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

/// Everything but the unreserved characters of RFC 3986.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
