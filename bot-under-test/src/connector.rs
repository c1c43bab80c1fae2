//! The Bot Connector client: send, reply, create conversation and roster calls against an
//! activity's service URL, with the bot's token, bounded concurrency, per-conversation pacing
//! and retries. Teams' 403s are told apart: a user who blocked the bot versus a bot that is no
//! longer installed.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use url::Url;

use crate::retry::{ConversationPacer, Outbound, RetryPolicy, SendError};
use crate::token::{CONNECTOR_SCOPE, TokenProvider};

/// Why a Connector call did not succeed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConnectorError {
    /// 403 `ConversationBlockedByUser`: stop messaging this user.
    #[error("the user blocked the bot: {0}")]
    Blocked(String),
    /// 403 after an uninstall (`BotNotInConversationRoster`, `ForbiddenOperationException`,
    /// `errorCode` 209 `MessageWritesBlocked`).
    #[error("the bot is not installed for this conversation ({code}): {message}")]
    NotInstalled { code: String, message: String },
    /// Any other error status (after retries, for the retryable ones).
    #[error("connector answered {status} {code}: {message}")]
    Http {
        status: u16,
        code: String,
        message: String,
    },
    /// No usable response.
    #[error("connector unreachable: {0}")]
    Transport(String),
    /// Not sent: the conversation is paused by a `Retry-After`, or its send limits leave no
    /// room, for longer than the retry policy waits.
    #[error("{0}")]
    Throttled(String),
    /// The bot's token could not be had.
    #[error("no connector token: {0}")]
    Token(String),
}

impl ConnectorError {
    /// Short reason for reports.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// A roster member as the Connector returns it (TeamsChannelAccount).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct TeamsChannelAccount {
    pub id: String,
    pub name: Option<String>,
    pub aad_object_id: Option<String>,
    pub object_id: Option<String>,
    pub user_principal_name: Option<String>,
    pub email: Option<String>,
    pub tenant_id: Option<String>,
}

impl TeamsChannelAccount {
    /// The Entra object id, whichever field carries it.
    pub fn aad_id(&self) -> Option<String> {
        self.aad_object_id
            .clone()
            .or_else(|| self.object_id.clone())
    }
}

/// One page of `pagedmembers`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PagedMembers {
    pub members: Vec<TeamsChannelAccount>,
    pub continuation_token: Option<String>,
}

/// The answer to `POST v3/conversations`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConversationResource {
    pub id: String,
    pub activity_id: Option<String>,
    pub service_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ResourceResponse {
    #[serde(default)]
    id: Option<String>,
}

/// How a Connector call is paced, by conversation (or the member or channel one is created for).
#[derive(Debug, Clone, Copy)]
enum Paced<'a> {
    /// A send: counts against the conversation's limits and waits out its 429 pauses.
    Send(&'a str),
    /// A read: waits out the conversation's 429 pauses only.
    Held(&'a str),
}

/// The conversation whose limits a call to `conversation_id` counts against: Teams throttles a
/// channel and every thread in it (`19:…@thread.tacv2;messageid=N`) as one conversation, so the
/// `;messageid=` suffix is dropped.
pub fn throttle_key(conversation_id: &str) -> &str {
    conversation_id
        .split_once(';')
        .map_or(conversation_id, |(conversation, _)| conversation)
}

/// Client for `{serviceUrl}v3/...`. One HTTP client for every service URL.
#[derive(Debug)]
pub struct ConnectorClient {
    http: reqwest::Client,
    /// `None` when the bot has no app id: calls go without `Authorization`.
    tokens: Option<Arc<TokenProvider>>,
    token_tenant: String,
    retry: RetryPolicy,
    pacer: ConversationPacer,
    permits: Arc<Semaphore>,
}

impl ConnectorClient {
    pub fn new(
        http: reqwest::Client,
        tokens: Option<Arc<TokenProvider>>,
        token_tenant: &str,
        retry: RetryPolicy,
        permits: Arc<Semaphore>,
    ) -> Self {
        ConnectorClient {
            http,
            tokens,
            token_tenant: token_tenant.to_owned(),
            retry,
            pacer: ConversationPacer::default(),
            permits,
        }
    }

    /// `POST {serviceUrl}v3/conversations/{conversationId}/activities`: a new message.
    /// Returns the new activity's id (empty when Teams answered 202 without a body).
    pub async fn send_to_conversation(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity: &Value,
    ) -> Result<String, ConnectorError> {
        let url = connector_url(
            service_url,
            &["v3", "conversations", conversation_id, "activities"],
        )?;
        let body = self
            .call(
                Method::POST,
                url,
                Some(activity),
                Paced::Send(conversation_id),
            )
            .await?;
        Ok(parse_id(&body))
    }

    /// `POST {serviceUrl}v3/conversations/{conversationId}/activities/{activityId}`: a reply.
    pub async fn reply_to_activity(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity_id: &str,
        activity: &Value,
    ) -> Result<String, ConnectorError> {
        let url = connector_url(
            service_url,
            &[
                "v3",
                "conversations",
                conversation_id,
                "activities",
                activity_id,
            ],
        )?;
        let body = self
            .call(
                Method::POST,
                url,
                Some(activity),
                Paced::Send(conversation_id),
            )
            .await?;
        Ok(parse_id(&body))
    }

    /// `POST {serviceUrl}v3/conversations`: a 1:1 chat with a user, or a new channel thread.
    ///
    /// A create counts against the limits of the conversation it lands in: `conversation_id`
    /// when the caller knows it (the user's stored 1:1 conversation), else the channel, else the
    /// member it is created for.
    pub async fn create_conversation(
        &self,
        service_url: &str,
        parameters: &Value,
        conversation_id: Option<&str>,
    ) -> Result<ConversationResource, ConnectorError> {
        let url = connector_url(service_url, &["v3", "conversations"])?;
        let pace_key = conversation_id
            .or_else(|| {
                parameters
                    .pointer("/channelData/channel/id")
                    .or_else(|| parameters.pointer("/members/0/id"))
                    .and_then(Value::as_str)
            })
            .unwrap_or("v3/conversations");
        let body = self
            .call(Method::POST, url, Some(parameters), Paced::Send(pace_key))
            .await?;
        serde_json::from_slice(&body).map_err(|e| ConnectorError::Http {
            status: 200,
            code: "UnreadableResponse".to_owned(),
            message: e.to_string(),
        })
    }

    /// `GET {serviceUrl}v3/conversations/{id}/pagedmembers?pageSize=&continuationToken=`.
    pub async fn paged_members(
        &self,
        service_url: &str,
        conversation_id: &str,
        page_size: u32,
        continuation_token: Option<&str>,
    ) -> Result<PagedMembers, ConnectorError> {
        let mut url = connector_url(
            service_url,
            &["v3", "conversations", conversation_id, "pagedmembers"],
        )?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("pageSize", &page_size.to_string());
            if let Some(token) = continuation_token {
                query.append_pair("continuationToken", token);
            }
        }
        let body = self
            .call(Method::GET, url, None, Paced::Held(conversation_id))
            .await?;
        serde_json::from_slice(&body).map_err(|e| ConnectorError::Http {
            status: 200,
            code: "UnreadableResponse".to_owned(),
            message: e.to_string(),
        })
    }

    /// Every member of a conversation (a team), following continuation tokens.
    pub async fn all_members(
        &self,
        service_url: &str,
        conversation_id: &str,
        page_size: u32,
    ) -> Result<Vec<TeamsChannelAccount>, ConnectorError> {
        let mut members = Vec::new();
        let mut token: Option<String> = None;
        // A server that keeps handing out tokens cannot keep us here forever.
        for _ in 0..1000 {
            let page = self
                .paged_members(service_url, conversation_id, page_size, token.as_deref())
                .await?;
            members.extend(page.members);
            match page.continuation_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok(members)
    }

    /// `GET {serviceUrl}v3/conversations/{id}/members/{memberId}`.
    pub async fn get_member(
        &self,
        service_url: &str,
        conversation_id: &str,
        member_id: &str,
    ) -> Result<TeamsChannelAccount, ConnectorError> {
        let url = connector_url(
            service_url,
            &["v3", "conversations", conversation_id, "members", member_id],
        )?;
        let body = self
            .call(Method::GET, url, None, Paced::Held(conversation_id))
            .await?;
        serde_json::from_slice(&body).map_err(|e| ConnectorError::Http {
            status: 200,
            code: "UnreadableResponse".to_owned(),
            message: e.to_string(),
        })
    }

    /// One call with retries; a 401 renews the token once. Every try waits out a 429's pause
    /// on the conversation; a send also counts against its limits.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        paced: Paced<'_>,
    ) -> Result<Vec<u8>, ConnectorError> {
        let outbound = Outbound::new(&self.retry).permits(&self.permits);
        let mut outbound = match paced {
            Paced::Send(key) => outbound.paced(&self.pacer, throttle_key(key)),
            Paced::Held(key) => outbound.held(&self.pacer, throttle_key(key)),
        };
        if let Some(tokens) = &self.tokens {
            outbound = outbound.bearer(tokens, &self.token_tenant, CONNECTOR_SCOPE);
        }
        let reply = outbound
            .send(|| {
                let request = self.http.request(method.clone(), url.clone());
                match body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await
            .map_err(|e| match e {
                SendError::Token(reason) => ConnectorError::Token(reason),
                throttled @ (SendError::Throttled { .. } | SendError::OverLimit { .. }) => {
                    ConnectorError::Throttled(throttled.to_string())
                }
                other => ConnectorError::Transport(other.to_string()),
            })?;
        if reply.status.is_success() {
            return Ok(reply.body);
        }
        Err(classify_error(reply.status, &reply.body))
    }
}

fn parse_id(body: &[u8]) -> String {
    serde_json::from_slice::<ResourceResponse>(body)
        .ok()
        .and_then(|r| r.id)
        .unwrap_or_default()
}

/// `{serviceUrl}` joined with path segments, each percent-encoded as a segment (conversation ids
/// carry `:`, `@` and `;`, which stay; `/`, `?`, `#` and `%` are escaped).
pub fn connector_url(service_url: &str, segments: &[&str]) -> Result<Url, ConnectorError> {
    let mut url = Url::parse(service_url)
        .map_err(|e| ConnectorError::Transport(format!("bad service URL {service_url:?}: {e}")))?;
    url.path_segments_mut()
        .map_err(|_| ConnectorError::Transport(format!("bad service URL {service_url:?}")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Turns an error answer into a [`ConnectorError`], recognising Teams' 403 codes.
pub fn classify_error(status: StatusCode, body: &[u8]) -> ConnectorError {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = json
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let message = json
        .pointer("/error/message")
        .or_else(|| json.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
    if status == StatusCode::FORBIDDEN {
        if code == "ConversationBlockedByUser" {
            return ConnectorError::Blocked(message);
        }
        let error_code = json.get("errorCode").and_then(Value::as_i64);
        if matches!(
            code.as_str(),
            "BotNotInConversationRoster" | "ForbiddenOperationException"
        ) || error_code == Some(209)
            || message.contains("MessageWritesBlocked")
        {
            let code = if code.is_empty() {
                error_code.map(|c| c.to_string()).unwrap_or_default()
            } else {
                code
            };
            return ConnectorError::NotInstalled { code, message };
        }
    }
    ConnectorError::Http {
        status: status.as_u16(),
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, Instant};
    use wiremock::matchers::{header, method, path, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client(max_attempts: u32) -> ConnectorClient {
        ConnectorClient::new(
            reqwest::Client::new(),
            None,
            "botframework.com",
            RetryPolicy {
                max_attempts,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_secs(5),
            },
            Arc::new(Semaphore::new(4)),
        )
    }

    fn service_url(server: &MockServer) -> String {
        format!("{}/amer/", server.uri())
    }

    const ACTIVITIES: &str = "/amer/v3/conversations/a:conv/activities";

    #[tokio::test]
    async fn a_429_is_retried_no_sooner_than_retry_after() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "2")
                    .set_body_json(
                        json!({"error":{"code":"Throttled","message":"Too many requests."}}),
                    ),
            )
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1675173753869"})))
            .expect(1)
            .mount(&server)
            .await;
        let start = Instant::now();
        let id = client(4)
            .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
            .await
            .unwrap();
        assert_eq!(id, "1675173753869");
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_throttled_conversation_does_not_hold_the_only_slot_while_it_waits() {
        let server = MockServer::start().await;
        let (throttled, mut answered) = crate::retry::testing::Signal::new(
            ResponseTemplate::new(429).insert_header("Retry-After", "2"),
        );
        Mock::given(method("POST"))
            .and(path("/amer/v3/conversations/a:slow/activities"))
            .respond_with(throttled)
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(
                "^/amer/v3/conversations/a:(slow|other)/activities$",
            ))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
            .expect(2)
            .mount(&server)
            .await;
        let client = Arc::new(ConnectorClient::new(
            reqwest::Client::new(),
            None,
            "botframework.com",
            RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_secs(5),
            },
            Arc::new(Semaphore::new(1)),
        ));
        let start = Instant::now();
        let slow = {
            let (client, url) = (client.clone(), service_url(&server));
            tokio::spawn(async move {
                client
                    .send_to_conversation(&url, "a:slow", &json!({"type":"message"}))
                    .await
            })
        };
        answered
            .recv()
            .await
            .expect("the first send was answered 429");
        client
            .send_to_conversation(&service_url(&server), "a:other", &json!({"type":"message"}))
            .await
            .unwrap();
        assert!(
            !slow.is_finished(),
            "the other conversation's send waited for the throttled one"
        );
        slow.await.unwrap().unwrap();
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_send_answered_too_late_is_not_sent_again() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(json!({"id": "1"}))
                    .set_delay(Duration::from_secs(3)),
            )
            .expect(1)
            .mount(&server)
            .await;
        let client = ConnectorClient::new(
            reqwest::Client::builder()
                .timeout(Duration::from_millis(300))
                .build()
                .unwrap(),
            None,
            "botframework.com",
            RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_secs(5),
            },
            Arc::new(Semaphore::new(4)),
        );
        let error = client
            .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ConnectorError::Transport(reason) if reason.contains("outcome unknown")),
            "{error:?}"
        );
        server.verify().await;
    }

    #[tokio::test]
    async fn a_send_that_could_not_connect_is_retried() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/amer/", closed.local_addr().unwrap());
        drop(closed);
        let error = client(3)
            .send_to_conversation(&url, "a:conv", &json!({"type":"message"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ConnectorError::Transport(reason) if reason.starts_with("3 tries failed")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn retries_count_against_the_conversation_limits() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
            .up_to_n_times(7)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "9"})))
            .mount(&server)
            .await;
        let client = client(4);
        let start = Instant::now();
        // Seven sends fill the 1 s window; the eighth waits for it and is answered 503; its
        // retry is a ninth send within 2 s, so it must wait for the 8-in-2-s window.
        for _ in 0..8 {
            client
                .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
                .await
                .unwrap();
        }
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        let received = server.received_requests().await.unwrap_or_default();
        assert_eq!(received.len(), 9);
    }

    #[tokio::test]
    async fn after_a_429_nothing_goes_to_the_conversation_before_retry_after() {
        let server = MockServer::start().await;
        let (throttled, mut arrivals) = crate::retry::testing::Signal::new(
            ResponseTemplate::new(429).insert_header("Retry-After", "2"),
        );
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(throttled)
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        let (accepted, mut later) = crate::retry::testing::Signal::new(
            ResponseTemplate::new(201).set_body_json(json!({"id": "1"})),
        );
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(accepted)
            .expect(2)
            .mount(&server)
            .await;
        let client = Arc::new(client(4));
        let first = {
            let (client, url) = (client.clone(), service_url(&server));
            tokio::spawn(async move {
                client
                    .send_to_conversation(&url, "a:conv", &json!({"type":"message"}))
                    .await
            })
        };
        let throttled_at = arrivals
            .recv()
            .await
            .expect("the first send was answered 429");
        // Once the bot has read the 429, another send to the same conversation waits too.
        for _ in 0..100_000 {
            if client.pacer.held_for("a:conv").is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        client
            .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
            .await
            .unwrap();
        first.await.unwrap().unwrap();
        for _ in 0..2 {
            let at = later.recv().await.unwrap();
            assert!(
                at.duration_since(throttled_at) >= Duration::from_secs(2),
                "a request came {:?} after the 429",
                at.duration_since(throttled_at)
            );
        }
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_longest_wait_is_not_cut_short() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
            .expect(1)
            .mount(&server)
            .await;
        let client = ConnectorClient::new(
            reqwest::Client::new(),
            None,
            "botframework.com",
            RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_secs(1),
            },
            Arc::new(Semaphore::new(4)),
        );
        let error = client
            .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ConnectorError::Http { status: 429, .. }),
            "{error:?}"
        );
        // The pause still holds for the conversation: the next send is not even tried.
        let error = client
            .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
            .await
            .unwrap_err();
        assert!(error.reason().contains("throttled"), "{error:?}");
        server.verify().await;
    }

    /// A client that does not wait out a `Retry-After` longer than a second.
    fn impatient_client() -> ConnectorClient {
        ConnectorClient::new(
            reqwest::Client::new(),
            None,
            "botframework.com",
            RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_secs(1),
            },
            Arc::new(Semaphore::new(4)),
        )
    }

    #[test]
    fn a_channel_thread_is_throttled_as_its_channel() {
        assert_eq!(
            throttle_key("19:abc@thread.tacv2;messageid=1675173753869"),
            "19:abc@thread.tacv2"
        );
        assert_eq!(throttle_key("19:abc@thread.tacv2"), "19:abc@thread.tacv2");
        assert_eq!(throttle_key("a:1qhN"), "a:1qhN");
    }

    #[tokio::test]
    async fn a_channel_and_its_threads_share_one_send_budget() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path_regex("^/amer/v3/conversations/19:chan@thread.tacv2"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
            .expect(8)
            .mount(&server)
            .await;
        let client = client(1);
        let start = Instant::now();
        // Eight posts to one channel, spread over the channel and two of its threads: the
        // eighth must wait for the 7-in-1-s window.
        for i in 0..8 {
            let conversation = match i % 3 {
                0 => "19:chan@thread.tacv2".to_owned(),
                n => format!("19:chan@thread.tacv2;messageid={n}"),
            };
            client
                .send_to_conversation(
                    &service_url(&server),
                    &conversation,
                    &json!({"type":"message"}),
                )
                .await
                .unwrap();
        }
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_429_on_a_thread_holds_the_channel_and_its_other_threads() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path_regex("^/amer/v3/conversations/19:chan@thread.tacv2"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
            .expect(1)
            .mount(&server)
            .await;
        let client = impatient_client();
        let url = service_url(&server);
        let error = client
            .reply_to_activity(
                &url,
                "19:chan@thread.tacv2;messageid=1",
                "1",
                &json!({"type":"message"}),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, ConnectorError::Http { status: 429, .. }),
            "{error:?}"
        );
        for conversation in ["19:chan@thread.tacv2;messageid=2", "19:chan@thread.tacv2"] {
            let error = client
                .send_to_conversation(&url, conversation, &json!({"type":"message"}))
                .await
                .unwrap_err();
            assert!(
                error.reason().contains("throttled"),
                "{conversation}: {error:?}"
            );
        }
        let new_thread =
            json!({"isGroup": true, "channelData": {"channel": {"id": "19:chan@thread.tacv2"}}});
        let error = client
            .create_conversation(&url, &new_thread, None)
            .await
            .unwrap_err();
        assert!(error.reason().contains("throttled"), "{error:?}");
        server.verify().await;
    }

    #[tokio::test]
    async fn a_1to1_create_is_paced_as_the_conversation_it_lands_in() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/amer/v3/conversations"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "a:conv"})))
            .expect(1)
            .mount(&server)
            .await;
        let client = impatient_client();
        let url = service_url(&server);
        let error = client
            .send_to_conversation(&url, "a:conv", &json!({"type":"message"}))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ConnectorError::Http { status: 429, .. }),
            "{error:?}"
        );
        let create = json!({"isGroup": false, "members": [{"id": "29:member"}]});
        // The user's conversation is a:conv, held by the 429: the create waits with it.
        let error = client
            .create_conversation(&url, &create, Some("a:conv"))
            .await
            .unwrap_err();
        assert!(error.reason().contains("throttled"), "{error:?}");
        // Without a known conversation the member is the key.
        let created = client
            .create_conversation(&url, &create, None)
            .await
            .unwrap();
        assert_eq!(created.id, "a:conv");
        server.verify().await;
    }

    #[tokio::test]
    async fn retry_after_on_a_503_is_waited_out_and_holds_the_conversation() {
        for status in [503, 502, 504, 412] {
            let server = MockServer::start().await;
            let (unavailable, mut arrivals) = crate::retry::testing::Signal::new(
                ResponseTemplate::new(status).insert_header("Retry-After", "1"),
            );
            Mock::given(method("POST"))
                .and(path(ACTIVITIES))
                .respond_with(unavailable)
                .up_to_n_times(1)
                .expect(1)
                .mount(&server)
                .await;
            let (accepted, mut later) = crate::retry::testing::Signal::new(
                ResponseTemplate::new(201).set_body_json(json!({"id": "1"})),
            );
            Mock::given(method("POST"))
                .and(path(ACTIVITIES))
                .respond_with(accepted)
                .expect(2)
                .mount(&server)
                .await;
            let client = Arc::new(client(4));
            let first = {
                let (client, url) = (client.clone(), service_url(&server));
                tokio::spawn(async move {
                    client
                        .send_to_conversation(&url, "a:conv", &json!({"type":"message"}))
                        .await
                })
            };
            let refused_at = arrivals.recv().await.expect("the first send was answered");
            for _ in 0..100_000 {
                if client.pacer.held_for("a:conv").is_some() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            client
                .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
                .await
                .unwrap();
            first.await.unwrap().unwrap();
            for _ in 0..2 {
                let at = later.recv().await.unwrap();
                assert!(
                    at.duration_since(refused_at) >= Duration::from_secs(1),
                    "{status}: a request came {:?} after the Retry-After",
                    at.duration_since(refused_at)
                );
            }
        }
    }

    #[tokio::test]
    async fn a_long_retry_after_on_a_503_ends_the_tries_and_holds_the_conversation() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "30"))
            .expect(1)
            .mount(&server)
            .await;
        let client = impatient_client();
        let url = service_url(&server);
        let error = client
            .send_to_conversation(&url, "a:conv", &json!({"type":"message"}))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ConnectorError::Http { status: 503, .. }),
            "{error:?}"
        );
        let error = client
            .send_to_conversation(&url, "a:conv", &json!({"type":"message"}))
            .await
            .unwrap_err();
        assert!(error.reason().contains("throttled"), "{error:?}");
        server.verify().await;
    }

    #[tokio::test]
    async fn a_send_that_would_wait_longer_than_the_policy_for_room_is_throttled() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
            .expect(7)
            .mount(&server)
            .await;
        let client = ConnectorClient::new(
            reqwest::Client::new(),
            None,
            "botframework.com",
            RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(200),
            },
            Arc::new(Semaphore::new(4)),
        );
        let url = service_url(&server);
        for _ in 0..7 {
            client
                .send_to_conversation(&url, "a:conv", &json!({"type":"message"}))
                .await
                .unwrap();
        }
        // The 1 s window is full for longer than the policy's longest wait.
        let error = client
            .send_to_conversation(&url, "a:conv", &json!({"type":"message"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ConnectorError::Throttled(reason) if reason.contains("send limits")),
            "{error:?}"
        );
        server.verify().await;
    }

    #[tokio::test]
    async fn blocked_by_user_stops_at_the_first_answer() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(403).set_body_json(json!({
                "error": {"code": "ConversationBlockedByUser", "message": "User blocked the conversation with the bot."}
            })))
            .expect(1)
            .mount(&server)
            .await;
        let error = client(4)
            .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
            .await
            .unwrap_err();
        assert!(matches!(error, ConnectorError::Blocked(_)), "{error:?}");
    }

    #[tokio::test]
    async fn an_always_unavailable_service_gets_exactly_max_attempts() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(503))
            .expect(3)
            .mount(&server)
            .await;
        let error = client(3)
            .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ConnectorError::Http { status: 503, .. }),
            "{error:?}"
        );
        server.verify().await;
    }

    #[tokio::test]
    async fn precondition_failed_and_bad_gateway_are_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(412).set_body_json(json!({
                "error": {"code": "PreconditionFailed", "message": "Precondition failed, please try again."}
            })))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(502))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "42"})))
            .expect(1)
            .mount(&server)
            .await;
        let id = client(4)
            .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
            .await
            .unwrap();
        assert_eq!(id, "42");
    }

    #[tokio::test]
    async fn forbidden_after_uninstall_means_not_installed() {
        let cases = [
            json!({"error":{"code":"BotNotInConversationRoster","message":"The bot is not part of the conversation roster."}}),
            json!({"error":{"code":"ForbiddenOperationException","message":"Bot is not installed in user's personal scope"}}),
            json!({"errorCode":209,"message":"{\"subCode\":\"MessageWritesBlocked\"}"}),
        ];
        for body in cases {
            let error = classify_error(StatusCode::FORBIDDEN, body.to_string().as_bytes());
            assert!(
                matches!(error, ConnectorError::NotInstalled { .. }),
                "{body}: {error:?}"
            );
        }
        let other = classify_error(
            StatusCode::FORBIDDEN,
            br#"{"error":{"code":"NotEnoughPermissions","message":"no"}}"#,
        );
        assert!(matches!(other, ConnectorError::Http { status: 403, .. }));
    }

    #[tokio::test]
    async fn a_bearer_token_is_sent_when_the_bot_has_an_app_id() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/botframework.com/oauth2/v2.0/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "token_type":"Bearer","expires_in":3599,"access_token":"bot-token"
            })))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .and(header("authorization", "Bearer bot-token"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "7"})))
            .expect(2)
            .mount(&server)
            .await;
        let policy = RetryPolicy {
            max_attempts: 2,
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
        let client = ConnectorClient::new(
            reqwest::Client::new(),
            Some(tokens),
            "botframework.com",
            policy,
            Arc::new(Semaphore::new(2)),
        );
        for _ in 0..2 {
            client
                .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_401_renews_the_token_and_tries_once_more() {
        let server = MockServer::start().await;
        for token in ["stale-token", "new-token"] {
            Mock::given(method("POST"))
                .and(path("/botframework.com/oauth2/v2.0/token"))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                    "token_type":"Bearer","expires_in":3599,"access_token": token
                })))
                .up_to_n_times(1)
                .expect(1)
                .mount(&server)
                .await;
        }
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .and(header("authorization", "Bearer stale-token"))
            .respond_with(ResponseTemplate::new(401))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(ACTIVITIES))
            .and(header("authorization", "Bearer new-token"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "8"})))
            .expect(1)
            .mount(&server)
            .await;
        let policy = RetryPolicy {
            max_attempts: 1,
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
        let client = ConnectorClient::new(
            reqwest::Client::new(),
            Some(tokens),
            "botframework.com",
            policy,
            Arc::new(Semaphore::new(1)),
        );
        let id = client
            .send_to_conversation(&service_url(&server), "a:conv", &json!({"type":"message"}))
            .await
            .unwrap();
        assert_eq!(id, "8");
    }

    #[tokio::test]
    async fn paged_members_follow_continuation_tokens() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(
                "/amer/v3/conversations/19:team@thread.tacv2/pagedmembers",
            ))
            .and(wiremock::matchers::query_param(
                "continuationToken",
                "page2",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "members": [{"id": "29:b", "name": "B", "objectId": "aad-b"}]
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(
                "/amer/v3/conversations/19:team@thread.tacv2/pagedmembers",
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "continuationToken": "page2",
                "members": [{"id": "29:a", "name": "A", "aadObjectId": "aad-a"}]
            })))
            .mount(&server)
            .await;
        let members = client(2)
            .all_members(&service_url(&server), "19:team@thread.tacv2", 100)
            .await
            .unwrap();
        let ids: Vec<_> = members
            .iter()
            .map(|m| (m.id.as_str(), m.aad_id()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("29:a", Some("aad-a".to_owned())),
                ("29:b", Some("aad-b".to_owned()))
            ]
        );
    }

    #[test]
    fn conversation_ids_keep_their_punctuation_in_the_path() {
        let url = connector_url(
            "http://127.0.0.1:3979/amer/",
            &[
                "v3",
                "conversations",
                "19:abc@thread.tacv2;messageid=1",
                "activities",
            ],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:3979/amer/v3/conversations/19:abc@thread.tacv2;messageid=1/activities"
        );
        let no_slash =
            connector_url("https://smba.example/amer", &["v3", "conversations"]).unwrap();
        assert_eq!(
            no_slash.as_str(),
            "https://smba.example/amer/v3/conversations"
        );
    }
}
