//! App-only access tokens (OAuth client credentials) for Graph and the Bot Connector, cached
//! until shortly before they expire. One HTTP client talks to the login service.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::retry::{RetryPolicy, send_with_retry};

/// Scope of tokens for Microsoft Graph.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Scope of tokens for the Bot Connector.
pub const CONNECTOR_SCOPE: &str = "https://api.botframework.com/.default";

/// A token is refreshed this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// A failed fetch is the answer to every caller of its key for this long, so callers that were
/// waiting for it (or come right after) do not each run the retry policy again.
const FAILURE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token request failed: {0}")]
    Transport(#[from] crate::retry::SendError),
    #[error("token endpoint answered {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("token response unreadable: {0}")]
    Body(String),
    /// A fetch for the same key failed moments ago; this is its error.
    #[error("{0}")]
    Recent(Arc<TokenError>),
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Debug, Clone)]
struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// What one (tenant, scope) slot knows: the token, or the failure of the last fetch.
#[derive(Debug, Default)]
struct SlotState {
    token: Option<CachedToken>,
    failed: Option<(Arc<TokenError>, Instant)>,
}

/// One (tenant, scope) slot of the cache. Its lock is held while that token is fetched, so
/// concurrent callers for the same key share one request (and its failure) and other keys are
/// not held up.
type Slot = Arc<Mutex<SlotState>>;

/// Fetches and caches client-credential tokens, one per (tenant, scope).
#[derive(Debug)]
pub struct TokenProvider {
    http: reqwest::Client,
    login_url: String,
    client_id: String,
    client_secret: String,
    retry: RetryPolicy,
    cache: std::sync::Mutex<HashMap<(String, String), Slot>>,
}

impl TokenProvider {
    pub fn new(
        http: reqwest::Client,
        login_url: &str,
        client_id: &str,
        client_secret: &str,
        retry: RetryPolicy,
    ) -> Self {
        TokenProvider {
            http,
            login_url: login_url.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            retry,
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A valid token for `scope` from `{login}/{tenant}/oauth2/v2.0/token`, from the cache when
    /// it has more than a few minutes left. When a fetch fails, its error is the answer for the
    /// key for a few seconds ([`TokenError::Recent`]): callers waiting for that fetch get it at
    /// once instead of each running the retry policy again.
    pub async fn token(&self, tenant: &str, scope: &str) -> Result<String, TokenError> {
        let slot = self.slot(tenant, scope);
        let mut state = slot.lock().await;
        if let Some(token) = state.token.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        if let Some((error, at)) = &state.failed
            && at.elapsed() < FAILURE_TTL
        {
            return Err(TokenError::Recent(error.clone()));
        }
        match self.fetch(tenant, scope).await {
            Ok(token) => {
                let value = token.value.clone();
                state.token = Some(token);
                state.failed = None;
                Ok(value)
            }
            Err(error) => {
                let error = Arc::new(error);
                state.failed = Some((error.clone(), Instant::now()));
                Err(TokenError::Recent(error))
            }
        }
    }

    /// One token request, with the retry policy.
    async fn fetch(&self, tenant: &str, scope: &str) -> Result<CachedToken, TokenError> {
        let url = format!("{}/{}/oauth2/v2.0/token", self.login_url, tenant);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("scope", scope),
        ];
        let reply = send_with_retry(&self.retry, || self.http.post(&url).form(&form)).await?;
        let status = reply.status;
        let body = String::from_utf8_lossy(&reply.body).into_owned();
        if !status.is_success() {
            return Err(TokenError::Rejected {
                status: status.as_u16(),
                body,
            });
        }
        let parsed: TokenResponse =
            serde_json::from_str(&body).map_err(|e| TokenError::Body(e.to_string()))?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3599));
        // Short-lived tokens are refreshed at half-life rather than never being cached.
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Ok(CachedToken {
            value: parsed.access_token,
            refresh_at: Instant::now() + lifetime - margin,
        })
    }

    /// The cache slot of one (tenant, scope); the map's lock is held only to find it.
    fn slot(&self, tenant: &str, scope: &str) -> Slot {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry((tenant.to_owned(), scope.to_owned()))
            .or_default()
            .clone()
    }

    /// Forgets `rejected`, a token a service answered 401 to, unless another caller has
    /// already replaced it with a new one.
    pub async fn invalidate(&self, tenant: &str, scope: &str, rejected: &str) {
        let slot = self.slot(tenant, scope);
        let mut state = slot.lock().await;
        if state.token.as_ref().is_some_and(|t| t.value == rejected) {
            state.token = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::testing::Signal;
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn token_body(token: &str) -> serde_json::Value {
        serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token})
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
        }
    }

    #[tokio::test]
    async fn tokens_are_cached_per_scope() {
        let login = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/botframework.com/oauth2/v2.0/token"))
            .and(body_string_contains("grant_type=client_credentials"))
            .and(body_string_contains(
                "scope=https%3A%2F%2Fapi.botframework.com%2F.default",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "token_type": "Bearer", "expires_in": 3599, "access_token": "connector-token"
            })))
            .expect(1)
            .mount(&login)
            .await;
        Mock::given(method("POST"))
            .and(path("/tenant-1/oauth2/v2.0/token"))
            .and(body_string_contains("graph.microsoft.com"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "token_type": "Bearer", "expires_in": 3599, "access_token": "graph-token"
            })))
            .expect(1)
            .mount(&login)
            .await;
        let tokens = TokenProvider::new(
            reqwest::Client::new(),
            &login.uri(),
            "app",
            "secret",
            policy(),
        );
        for _ in 0..3 {
            assert_eq!(
                tokens
                    .token("botframework.com", CONNECTOR_SCOPE)
                    .await
                    .unwrap(),
                "connector-token"
            );
            assert_eq!(
                tokens.token("tenant-1", GRAPH_SCOPE).await.unwrap(),
                "graph-token"
            );
        }
    }

    #[tokio::test]
    async fn a_rejected_client_is_an_error_not_a_token() {
        let login = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
                "error": "invalid_client", "error_description": "AADSTS7000215"
            })))
            .mount(&login)
            .await;
        let tokens =
            TokenProvider::new(reqwest::Client::new(), &login.uri(), "app", "bad", policy());
        let error = tokens.token("t", GRAPH_SCOPE).await.unwrap_err();
        assert!(
            matches!(&error, TokenError::Recent(e) if matches!(**e, TokenError::Rejected { status: 401, .. })),
            "{error}"
        );
    }

    #[tokio::test]
    async fn callers_waiting_for_a_failed_fetch_share_its_failure() {
        let login = MockServer::start().await;
        let (unavailable, mut arrivals) = Signal::new(ResponseTemplate::new(503));
        Mock::given(method("POST"))
            .respond_with(unavailable)
            .mount(&login)
            .await;
        let tokens = Arc::new(TokenProvider::new(
            reqwest::Client::new(),
            &login.uri(),
            "app",
            "secret",
            policy(),
        ));
        let first = {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token("t", GRAPH_SCOPE).await })
        };
        arrivals
            .recv()
            .await
            .expect("the first fetch reached the login service");
        // Four more callers queue up behind the fetch under way.
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let tokens = tokens.clone();
                tokio::spawn(async move { tokens.token("t", GRAPH_SCOPE).await })
            })
            .collect();
        let error = first.await.unwrap().unwrap_err();
        assert!(error.to_string().contains("503"), "{error}");
        for waiter in waiters {
            let shared = waiter.await.unwrap().unwrap_err();
            assert_eq!(shared.to_string(), error.to_string());
        }
        // One run of the retry policy, not one per caller.
        let asked = login.received_requests().await.unwrap_or_default().len();
        assert_eq!(asked, policy().max_attempts as usize);
    }

    #[tokio::test]
    async fn a_slow_token_fetch_holds_up_only_callers_of_the_same_key() {
        let login = MockServer::start().await;
        let (slow_answer, mut arrivals) = Signal::new(
            ResponseTemplate::new(200)
                .set_body_json(token_body("slow-token"))
                .set_delay(Duration::from_secs(2)),
        );
        Mock::given(method("POST"))
            .and(path("/slow-tenant/oauth2/v2.0/token"))
            .respond_with(slow_answer)
            .expect(1)
            .mount(&login)
            .await;
        Mock::given(method("POST"))
            .and(path("/fast-tenant/oauth2/v2.0/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(token_body("fast-token")))
            .mount(&login)
            .await;
        let tokens = Arc::new(TokenProvider::new(
            reqwest::Client::new(),
            &login.uri(),
            "app",
            "secret",
            policy(),
        ));
        let slow = {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token("slow-tenant", GRAPH_SCOPE).await })
        };
        arrivals
            .recv()
            .await
            .expect("the slow fetch reached the login service");
        // A second caller of the same key waits for the fetch under way instead of starting one.
        let same = {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token("slow-tenant", GRAPH_SCOPE).await })
        };
        assert_eq!(
            tokens.token("fast-tenant", GRAPH_SCOPE).await.unwrap(),
            "fast-token"
        );
        assert!(
            !slow.is_finished() && !same.is_finished(),
            "another key waited for the slow fetch"
        );
        for waiter in [slow, same] {
            assert_eq!(waiter.await.unwrap().unwrap(), "slow-token");
        }
    }
}
