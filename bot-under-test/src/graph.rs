//! The Microsoft Graph client for proactive installation: users, the org app catalog, a user's
//! installed apps, installing the app and the installation's 1:1 chat. App-only token (client
//! credentials), bounded concurrency, retries on 429 (`Retry-After`) and transient errors.

use std::sync::Arc;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use url::Url;

use crate::retry::{ConversationPacer, Outbound, RetryPolicy, SendError};
use crate::token::{GRAPH_SCOPE, TokenProvider};

/// Characters left as they are in query values; everything else is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'\'')
    .remove(b'$');

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("graph answered {status} {code}: {message}")]
    Http {
        status: u16,
        code: String,
        message: String,
    },
    #[error("graph unreachable: {0}")]
    Transport(String),
    #[error("no graph token: {0}")]
    Token(String),
    #[error("graph response unreadable: {0}")]
    Body(String),
}

impl GraphError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A user as listed by Graph.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct GraphUser {
    pub id: String,
    pub display_name: Option<String>,
    pub user_principal_name: Option<String>,
}

/// What `POST .../teamwork/installedApps` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallResult {
    /// 201: installed now.
    Installed,
    /// 409: it was already installed, which is just as good.
    AlreadyInstalled,
}

#[derive(Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    tokens: Arc<TokenProvider>,
    tenant_id: String,
    base: String,
    retry: RetryPolicy,
    permits: Arc<Semaphore>,
    /// Graph throttles per app per tenant: a 429 pauses every call of this client.
    throttle: ConversationPacer,
}

impl GraphClient {
    pub fn new(
        http: reqwest::Client,
        tokens: Arc<TokenProvider>,
        tenant_id: &str,
        graph_url: &str,
        retry: RetryPolicy,
        permits: Arc<Semaphore>,
    ) -> Self {
        GraphClient {
            http,
            tokens,
            tenant_id: tenant_id.to_owned(),
            base: graph_url.trim_end_matches('/').to_owned(),
            retry,
            permits,
            throttle: ConversationPacer::new(Vec::new()),
        }
    }

    /// The Graph base URL (with version), as used in `@odata.bind`.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, GraphError> {
        let mut url = Url::parse(&self.base)
            .map_err(|e| GraphError::Transport(format!("bad graph URL {}: {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|_| GraphError::Transport(format!("bad graph URL {}", self.base)))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_VALUE)))
                .collect();
            url.set_query(Some(&q.join("&")));
        }
        Ok(url)
    }

    /// Every user in the tenant (`GET /users`, following `@odata.nextLink`).
    pub async fn list_users(&self) -> Result<Vec<GraphUser>, GraphError> {
        let mut url = self.url(
            &["users"],
            &[("$select", "id,displayName,userPrincipalName")],
        )?;
        let mut users = Vec::new();
        for _ in 0..10_000 {
            let page = self.call(Method::GET, url.clone(), None).await?;
            let page = page.unwrap_or(Value::Null);
            if let Some(values) = page.get("value").and_then(Value::as_array) {
                for value in values {
                    if let Ok(user) = serde_json::from_value::<GraphUser>(value.clone())
                        && !user.id.is_empty()
                    {
                        users.push(user);
                    }
                }
            }
            match page.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) => {
                    url = Url::parse(next)
                        .map_err(|e| GraphError::Body(format!("bad @odata.nextLink: {e}")))?
                }
                None => break,
            }
        }
        Ok(users)
    }

    /// `GET /users/{id|upn}`; `None` if Graph does not know the user.
    pub async fn get_user(&self, id_or_upn: &str) -> Result<Option<GraphUser>, GraphError> {
        let url = self.url(
            &["users", id_or_upn],
            &[("$select", "id,displayName,userPrincipalName")],
        )?;
        match self.call(Method::GET, url, None).await {
            Ok(body) => serde_json::from_value(body.unwrap_or(Value::Null))
                .map(Some)
                .map_err(|e| GraphError::Body(e.to_string())),
            Err(GraphError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The app's catalog id, found by manifest id (`externalId`).
    pub async fn find_catalog_app(&self, manifest_id: &str) -> Result<Option<String>, GraphError> {
        let filter = format!("externalId eq '{manifest_id}'");
        let url = self.url(&["appCatalogs", "teamsApps"], &[("$filter", &filter)])?;
        let body = self.call(Method::GET, url, None).await?.unwrap_or_default();
        Ok(first_id(&body, "/id"))
    }

    /// The id of the user's installation of the app, if installed. Filters by manifest id, or by
    /// catalog id when one is given.
    pub async fn find_installation(
        &self,
        user_id: &str,
        manifest_id: &str,
        catalog_app_id: Option<&str>,
    ) -> Result<Option<String>, GraphError> {
        let filter = match catalog_app_id {
            Some(id) => format!("teamsApp/id eq '{id}'"),
            None => format!("teamsApp/externalId eq '{manifest_id}'"),
        };
        let url = self.url(
            &["users", user_id, "teamwork", "installedApps"],
            &[("$expand", "teamsApp"), ("$filter", &filter)],
        )?;
        let body = self.call(Method::GET, url, None).await?.unwrap_or_default();
        Ok(first_id(&body, "/id"))
    }

    /// Installs the app for the user; 409 (already installed) is a success.
    pub async fn install_app(
        &self,
        user_id: &str,
        catalog_app_id: &str,
    ) -> Result<InstallResult, GraphError> {
        let url = self.url(&["users", user_id, "teamwork", "installedApps"], &[])?;
        let body = json!({
            "teamsApp@odata.bind": format!("{}/appCatalogs/teamsApps/{catalog_app_id}", self.base)
        });
        // Installing twice is harmless (the second answers 409), so a lost answer is retried.
        match self.send(Method::POST, url, Some(&body), true).await {
            Ok(_) => Ok(InstallResult::Installed),
            Err(GraphError::Http { status: 409, .. }) => Ok(InstallResult::AlreadyInstalled),
            Err(e) => Err(e),
        }
    }

    /// The 1:1 chat between the user and the bot (`19:…@unq.gbl.spaces`).
    pub async fn installation_chat(
        &self,
        user_id: &str,
        installation_id: &str,
    ) -> Result<String, GraphError> {
        let url = self.url(
            &[
                "users",
                user_id,
                "teamwork",
                "installedApps",
                installation_id,
                "chat",
            ],
            &[],
        )?;
        let body = self.call(Method::GET, url, None).await?.unwrap_or_default();
        body.get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| GraphError::Body("chat without an id".to_owned()))
    }

    /// One call with token, permit and retries; a 401 renews the token once. `Ok(None)` for an
    /// empty success body.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Option<Value>, GraphError> {
        let repeatable = method != Method::POST;
        self.send(method, url, body, repeatable).await
    }

    /// [`GraphClient::call`], saying whether a request left unanswered may be sent again.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        repeatable: bool,
    ) -> Result<Option<Value>, GraphError> {
        let reply = Outbound::new(&self.retry)
            .permits(&self.permits)
            .held(&self.throttle, &self.tenant_id)
            .repeatable(repeatable)
            .bearer(&self.tokens, &self.tenant_id, GRAPH_SCOPE)
            .send(|| {
                let request = self.http.request(method.clone(), url.clone());
                match body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await
            .map_err(|e| match e {
                SendError::Token(reason) => GraphError::Token(reason),
                other => GraphError::Transport(other.to_string()),
            })?;
        let bytes = reply.body;
        if reply.status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| GraphError::Body(e.to_string()));
        }
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(GraphError::Http {
            status: reply.status.as_u16(),
            code: json
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            message: json
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect()),
        })
    }
}

fn first_id(body: &Value, pointer: &str) -> Option<String> {
    body.get("value")?
        .as_array()?
        .first()?
        .pointer(pointer)?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use wiremock::matchers::{body_json, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const TENANT: &str = "e5c3a7d2-4b1f-4e8a-9c6d-2f1b0a9e8d7c";

    async fn graph(server: &MockServer, max_attempts: u32) -> GraphClient {
        Mock::given(method("POST"))
            .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "token_type":"Bearer","expires_in":3599,"access_token":"graph-token"
            })))
            .mount(server)
            .await;
        let policy = RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(5),
        };
        let tokens = Arc::new(TokenProvider::new(
            reqwest::Client::new(),
            &server.uri(),
            "app",
            "secret",
            policy.clone(),
        ));
        GraphClient::new(
            reqwest::Client::new(),
            tokens,
            TENANT,
            &format!("{}/v1.0", server.uri()),
            policy,
            Arc::new(Semaphore::new(4)),
        )
    }

    const INSTALLED: &str = "/v1.0/users/u1/teamwork/installedApps";

    #[tokio::test]
    async fn a_conflict_on_install_counts_as_installed() {
        let server = MockServer::start().await;
        let graph = graph(&server, 4).await;
        Mock::given(method("POST"))
            .and(path(INSTALLED))
            .and(body_json(json!({
                "teamsApp@odata.bind": format!("{}/v1.0/appCatalogs/teamsApps/cat-1", server.uri())
            })))
            .respond_with(ResponseTemplate::new(409).set_body_json(json!({
                "error": {"code": "Conflict", "message": "App is already installed."}
            })))
            .expect(1)
            .mount(&server)
            .await;
        assert_eq!(
            graph.install_app("u1", "cat-1").await,
            Ok(InstallResult::AlreadyInstalled)
        );
    }

    #[tokio::test]
    async fn a_429_is_retried_no_sooner_than_retry_after() {
        let server = MockServer::start().await;
        let graph = graph(&server, 4).await;
        Mock::given(method("POST"))
            .and(path(INSTALLED))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "2")
                    .set_body_json(json!({"error":{"code":"TooManyRequests","message":"Please retry again later."}})),
            )
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(INSTALLED))
            .respond_with(ResponseTemplate::new(201))
            .expect(1)
            .mount(&server)
            .await;
        let start = Instant::now();
        assert_eq!(
            graph.install_app("u1", "cat").await,
            Ok(InstallResult::Installed)
        );
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_throttled_graph_call_does_not_hold_the_shared_slot_while_it_waits() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "token_type":"Bearer","expires_in":3599,"access_token":"graph-token"
            })))
            .mount(&server)
            .await;
        let (throttled, mut answered) = crate::retry::testing::Signal::new(
            ResponseTemplate::new(429).insert_header("Retry-After", "2"),
        );
        Mock::given(method("GET"))
            .and(path(INSTALLED))
            .respond_with(throttled)
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(INSTALLED))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/amer/v3/conversations/a:conv/activities"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
            .expect(1)
            .mount(&server)
            .await;
        let policy = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(5),
        };
        let permits = Arc::new(Semaphore::new(1));
        let tokens = Arc::new(TokenProvider::new(
            reqwest::Client::new(),
            &server.uri(),
            "app",
            "secret",
            policy.clone(),
        ));
        let graph = Arc::new(GraphClient::new(
            reqwest::Client::new(),
            tokens,
            TENANT,
            &format!("{}/v1.0", server.uri()),
            policy.clone(),
            permits.clone(),
        ));
        let connector = crate::connector::ConnectorClient::new(
            reqwest::Client::new(),
            None,
            "botframework.com",
            policy,
            permits,
        );
        let start = Instant::now();
        let lookup = {
            let graph = graph.clone();
            tokio::spawn(async move { graph.find_installation("u1", "manifest", None).await })
        };
        answered.recv().await.expect("Graph answered 429");
        connector
            .send_to_conversation(
                &format!("{}/amer/", server.uri()),
                "a:conv",
                &json!({"type": "message"}),
            )
            .await
            .unwrap();
        assert!(
            !lookup.is_finished(),
            "the Connector send waited for the throttled Graph call"
        );
        assert_eq!(lookup.await.unwrap(), Ok(None));
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_graph_429_pauses_every_graph_call_of_the_app() {
        let server = MockServer::start().await;
        let graph = Arc::new(graph(&server, 4).await);
        let (throttled, mut arrivals) = crate::retry::testing::Signal::new(
            ResponseTemplate::new(429).insert_header("Retry-After", "2"),
        );
        Mock::given(method("GET"))
            .and(path(INSTALLED))
            .respond_with(throttled)
            .up_to_n_times(1)
            .mount(&server)
            .await;
        let (answer, mut later) = crate::retry::testing::Signal::new(
            ResponseTemplate::new(200).set_body_json(json!({"value": []})),
        );
        Mock::given(method("GET"))
            .respond_with(answer)
            .expect(2)
            .mount(&server)
            .await;
        let lookup = {
            let graph = graph.clone();
            tokio::spawn(async move { graph.find_installation("u1", "manifest", None).await })
        };
        let throttled_at = arrivals.recv().await.expect("Graph answered 429");
        // Once the bot has read the 429, another Graph call waits too.
        for _ in 0..100_000 {
            if graph.throttle.held_for(TENANT).is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(graph.find_catalog_app("manifest").await, Ok(None));
        assert_eq!(lookup.await.unwrap(), Ok(None));
        for _ in 0..2 {
            let at = later.recv().await.unwrap();
            assert!(
                at.duration_since(throttled_at) >= Duration::from_secs(2),
                "a Graph call came {:?} after the 429",
                at.duration_since(throttled_at)
            );
        }
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let server = MockServer::start().await;
        let graph = graph(&server, 3).await;
        Mock::given(method("GET"))
            .and(path(INSTALLED))
            .respond_with(ResponseTemplate::new(503))
            .expect(3)
            .mount(&server)
            .await;
        let error = graph
            .find_installation("u1", "manifest", None)
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(503));
        server.verify().await;
    }

    #[tokio::test]
    async fn precondition_failed_and_bad_gateway_are_retried() {
        let server = MockServer::start().await;
        let graph = graph(&server, 4).await;
        Mock::given(method("GET"))
            .and(path(INSTALLED))
            .respond_with(ResponseTemplate::new(412))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(INSTALLED))
            .respond_with(ResponseTemplate::new(502))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(INSTALLED))
            .and(query_param("$filter", "teamsApp/externalId eq 'manifest'"))
            .and(query_param("$expand", "teamsApp"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "value": [{"id": "inst-1", "teamsApp": {"id": "cat", "externalId": "manifest"}}]
            })))
            .expect(1)
            .mount(&server)
            .await;
        assert_eq!(
            graph.find_installation("u1", "manifest", None).await,
            Ok(Some("inst-1".to_owned()))
        );
    }

    #[tokio::test]
    async fn a_401_renews_the_token_once_and_a_second_401_is_the_answer() {
        let server = MockServer::start().await;
        for token in ["stale-token", "new-token"] {
            Mock::given(method("POST"))
                .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                    "token_type":"Bearer","expires_in":3599,"access_token": token
                })))
                .up_to_n_times(1)
                .expect(1)
                .mount(&server)
                .await;
        }
        Mock::given(method("GET"))
            .and(path(INSTALLED))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({
                "error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}
            })))
            .expect(2)
            .mount(&server)
            .await;
        let policy = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
        };
        let tokens = Arc::new(TokenProvider::new(
            reqwest::Client::new(),
            &server.uri(),
            "app",
            "secret",
            policy.clone(),
        ));
        let graph = GraphClient::new(
            reqwest::Client::new(),
            tokens,
            TENANT,
            &format!("{}/v1.0", server.uri()),
            policy,
            Arc::new(Semaphore::new(1)),
        );
        let error = graph
            .find_installation("u1", "manifest", None)
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(401));
        server.verify().await;
    }

    #[tokio::test]
    async fn users_are_listed_across_pages() {
        let server = MockServer::start().await;
        let graph = graph(&server, 2).await;
        Mock::given(method("GET"))
            .and(path("/v1.0/users"))
            .and(query_param("$skiptoken", "p2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "value": [{"id": "u2", "userPrincipalName": "b@contoso.example"}]
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/users"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "value": [{"id": "u1", "displayName": "A"}],
                "@odata.nextLink": format!("{}/v1.0/users?$skiptoken=p2", server.uri())
            })))
            .mount(&server)
            .await;
        let users = graph.list_users().await.unwrap();
        let ids: Vec<_> = users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["u1", "u2"]);
    }

    #[tokio::test]
    async fn the_catalog_id_and_the_chat_are_read() {
        let server = MockServer::start().await;
        let graph = graph(&server, 2).await;
        Mock::given(method("GET"))
            .and(path("/v1.0/appCatalogs/teamsApps"))
            .and(query_param("$filter", "externalId eq 'manifest'"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "value": [{"id": "cat-9", "externalId": "manifest", "distributionMethod": "organization"}]
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1.0/users/u1/teamwork/installedApps/inst-1/chat"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "19:bot_u1@unq.gbl.spaces"
            })))
            .mount(&server)
            .await;
        assert_eq!(
            graph.find_catalog_app("manifest").await,
            Ok(Some("cat-9".to_owned()))
        );
        assert_eq!(
            graph.installation_chat("u1", "inst-1").await,
            Ok("19:bot_u1@unq.gbl.spaces".to_owned())
        );
    }
}
