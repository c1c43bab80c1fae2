//! Validation of the channel's JWT on inbound activities, as the Bot Framework SDKs do it.
//!
//! The token must be RS256/384/512, signed by a key named (`kid`) in the JWKS that the OpenID
//! metadata document points to, issued by `https://api.botframework.com`, for our app id, within
//! `exp`/`nbf` (5 minutes of skew), with a `serviceurl` claim equal to the activity's
//! `serviceUrl`, and the key's `endorsements` must contain the activity's `channelId`.
//! Keys are cached; an unknown `kid` refetches the metadata and keys once.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

/// The issuer of channel-to-bot tokens.
pub const CHANNEL_ISSUER: &str = "https://api.botframework.com";
/// Clock skew allowed on `exp` and `nbf`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Keys are refetched at least this often even when every `kid` is known.
const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// An unknown `kid` triggers a refetch at most this often (a bad token cannot flood the issuer).
const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// Why an inbound request was not authenticated. Every variant answers 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing or malformed Authorization header")]
    MissingToken,
    #[error("token header unreadable: {0}")]
    BadHeader(String),
    #[error("token algorithm {0:?} not accepted")]
    Algorithm(Algorithm),
    #[error("signing key {0:?} not found in the channel's keys")]
    UnknownKey(String),
    #[error("signing key is not endorsed for channel {0:?}")]
    NotEndorsed(String),
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("serviceurl claim {claim:?} does not match the activity's serviceUrl {activity:?}")]
    ServiceUrlMismatch { claim: String, activity: String },
    #[error("could not fetch the channel's signing keys: {0}")]
    Metadata(String),
}

#[derive(Debug, Deserialize)]
struct OpenIdMetadata {
    jwks_uri: String,
}

#[derive(Debug, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    #[serde(default)]
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    endorsements: Vec<String>,
}

struct SigningKey {
    key: DecodingKey,
    endorsements: Vec<String>,
}

struct KeySet {
    keys: HashMap<String, SigningKey>,
    fetched_at: Option<Instant>,
    /// The last refetch that failed: the stale keys serve until a refetch succeeds, and the
    /// endpoint is not asked again on every request meanwhile.
    failed_at: Option<Instant>,
}

#[derive(Debug, Deserialize)]
struct ChannelClaims {
    #[serde(default)]
    serviceurl: Option<String>,
}

/// Validates channel tokens for one app id against one OpenID metadata URL.
pub struct ChannelValidator {
    http: reqwest::Client,
    metadata_url: String,
    app_id: String,
    keys: RwLock<KeySet>,
    /// Held through a refetch, so concurrent requests that need one share it.
    refetch: Mutex<()>,
    /// Keys older than this are refetched even when the `kid` is known.
    max_age: Duration,
}

impl std::fmt::Debug for ChannelValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelValidator")
            .field("metadata_url", &self.metadata_url)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

impl ChannelValidator {
    pub fn new(http: reqwest::Client, metadata_url: &str, app_id: &str) -> Self {
        ChannelValidator {
            http,
            metadata_url: metadata_url.to_owned(),
            app_id: app_id.to_owned(),
            keys: RwLock::new(KeySet {
                keys: HashMap::new(),
                fetched_at: None,
                failed_at: None,
            }),
            refetch: Mutex::new(()),
            max_age: KEYS_MAX_AGE,
        }
    }

    /// The same validator with another cache age (tests use a short one).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Checks the `Authorization` header value against the activity's `serviceUrl` and
    /// `channelId`.
    pub async fn validate(
        &self,
        authorization: Option<&str>,
        service_url: &str,
        channel_id: &str,
    ) -> Result<(), AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        let header = decode_header(token).map_err(|e| AuthError::BadHeader(e.to_string()))?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512
        ) {
            return Err(AuthError::Algorithm(header.alg));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::BadHeader("no kid".to_owned()))?;

        self.ensure_key(&kid).await?;
        let keys = self.keys.read().await;
        let signing = keys
            .keys
            .get(&kid)
            .ok_or_else(|| AuthError::UnknownKey(kid.clone()))?;
        if !channel_id.is_empty()
            && !signing.endorsements.is_empty()
            && !signing.endorsements.iter().any(|e| e == channel_id)
        {
            return Err(AuthError::NotEndorsed(channel_id.to_owned()));
        }

        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[CHANNEL_ISSUER]);
        validation.set_audience(&[self.app_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = CLOCK_SKEW.as_secs();
        validation.validate_nbf = true;
        let data = decode::<ChannelClaims>(token, &signing.key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claim = data.claims.serviceurl.unwrap_or_default();
        if claim != service_url {
            return Err(AuthError::ServiceUrlMismatch {
                claim,
                activity: service_url.to_owned(),
            });
        }
        Ok(())
    }

    /// Makes sure `kid` is in the cache, refetching the keys when it is not (rate limited) or
    /// when the cache is old. When a refetch fails, the keys already cached stay in use: the
    /// channel's keys rotate slowly, and an unreachable metadata endpoint must not turn every
    /// inbound activity away while the cached keys still verify its token.
    ///
    /// One refetch at a time: requests that need one while it is under way wait for it and
    /// then answer from what it cached instead of fetching again.
    async fn ensure_key(&self, kid: &str) -> Result<(), AuthError> {
        if let Some(answer) = self.cached_answer(kid).await {
            return answer;
        }
        let _refetch = self.refetch.lock().await;
        if let Some(answer) = self.cached_answer(kid).await {
            return answer;
        }
        match self.fetch_keys().await {
            Ok(fetched) => {
                let mut keys = self.keys.write().await;
                keys.keys = fetched;
                keys.fetched_at = Some(Instant::now());
                keys.failed_at = None;
                Ok(())
            }
            Err(error) => {
                let mut keys = self.keys.write().await;
                keys.failed_at = Some(Instant::now());
                if keys.keys.is_empty() {
                    return Err(error);
                }
                tracing::warn!(%error, "could not refetch the channel's signing keys; keeping the cached ones");
                Ok(())
            }
        }
    }

    /// What the cache says about `kid` without a refetch, or `None` when one is due.
    async fn cached_answer(&self, kid: &str) -> Option<Result<(), AuthError>> {
        let keys = self.keys.read().await;
        let fresh = keys.fetched_at.is_some_and(|t| t.elapsed() < self.max_age);
        let known = keys.keys.contains_key(kid);
        if fresh && known {
            return Some(Ok(()));
        }
        let recently =
            |at: Option<Instant>| at.is_some_and(|t| t.elapsed() < UNKNOWN_KID_REFETCH_INTERVAL);
        if recently(keys.failed_at) {
            return Some(if known {
                Ok(())
            } else {
                Err(AuthError::UnknownKey(kid.to_owned()))
            });
        }
        if fresh && recently(keys.fetched_at) {
            return Some(Err(AuthError::UnknownKey(kid.to_owned())));
        }
        None
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, SigningKey>, AuthError> {
        let metadata: OpenIdMetadata = self.get_json(&self.metadata_url).await?;
        let jwks: Jwks = self.get_json(&metadata.jwks_uri).await?;
        let mut keys = HashMap::new();
        for jwk in jwks.keys {
            let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
                continue;
            };
            if jwk.kty != "RSA" {
                continue;
            }
            match DecodingKey::from_rsa_components(&n, &e) {
                Ok(key) => {
                    keys.insert(
                        kid,
                        SigningKey {
                            key,
                            endorsements: jwk.endorsements,
                        },
                    );
                }
                Err(error) => tracing::warn!(%kid, %error, "skipping an unreadable signing key"),
            }
        }
        Ok(keys)
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, AuthError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| AuthError::Metadata(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(AuthError::Metadata(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| AuthError::Metadata(format!("{url}: {e}")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::{Value, json};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    pub(crate) const TEST_KID: &str = "test-channel-key";
    pub(crate) const APP_ID: &str = "b0f1e2d3-c4b5-4a69-8788-99aabbccddee";
    const SERVICE_URL: &str = "http://127.0.0.1:3979/amer/";

    pub(crate) fn signing_key() -> EncodingKey {
        EncodingKey::from_rsa_pem(include_bytes!("../testdata/channel-signing-key.pem"))
            .expect("test key parses")
    }

    /// Serves the OpenID metadata and the test JWKS.
    pub(crate) async fn mount_channel_keys(server: &MockServer) -> String {
        let jwks: Value =
            serde_json::from_str(include_str!("../testdata/channel-jwks.json")).unwrap();
        Mock::given(method("GET"))
            .and(path("/v1/.well-known/openidconfiguration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": CHANNEL_ISSUER,
                "jwks_uri": format!("{}/v1/.well-known/keys", server.uri()),
                "id_token_signing_alg_values_supported": ["RS256"]
            })))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/.well-known/keys"))
            .respond_with(ResponseTemplate::new(200).set_body_json(jwks))
            .mount(server)
            .await;
        format!("{}/v1/.well-known/openidconfiguration", server.uri())
    }

    pub(crate) fn claims(service_url: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": CHANNEL_ISSUER,
            "aud": APP_ID,
            "exp": now + 3600,
            "nbf": now - 60,
            "serviceurl": service_url,
        })
    }

    pub(crate) fn sign(claims: &Value, key: &EncodingKey) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(TEST_KID.to_owned());
        encode(&header, claims, key).expect("token signs")
    }

    async fn validator() -> (MockServer, ChannelValidator) {
        let server = MockServer::start().await;
        let url = mount_channel_keys(&server).await;
        (
            server,
            ChannelValidator::new(reqwest::Client::new(), &url, APP_ID),
        )
    }

    async fn check(validator: &ChannelValidator, token: &str) -> Result<(), AuthError> {
        validator
            .validate(Some(&format!("Bearer {token}")), SERVICE_URL, "msteams")
            .await
    }

    #[tokio::test]
    async fn accepts_a_good_token() {
        let (_server, validator) = validator().await;
        let token = sign(&claims(SERVICE_URL), &signing_key());
        assert_eq!(check(&validator, &token).await, Ok(()));
    }

    #[tokio::test]
    async fn rejects_a_wrong_audience() {
        let (_server, validator) = validator().await;
        let mut c = claims(SERVICE_URL);
        c["aud"] = json!("someone-else");
        let result = check(&validator, &sign(&c, &signing_key())).await;
        assert!(matches!(result, Err(AuthError::Invalid(_))), "{result:?}");
    }

    #[tokio::test]
    async fn rejects_a_wrong_issuer() {
        let (_server, validator) = validator().await;
        let mut c = claims(SERVICE_URL);
        c["iss"] = json!("https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/");
        let result = check(&validator, &sign(&c, &signing_key())).await;
        assert!(matches!(result, Err(AuthError::Invalid(_))), "{result:?}");
    }

    #[tokio::test]
    async fn rejects_a_bad_signature() {
        let (_server, validator) = validator().await;
        let other =
            EncodingKey::from_rsa_pem(include_bytes!("../testdata/other-signing-key.pem")).unwrap();
        let result = check(&validator, &sign(&claims(SERVICE_URL), &other)).await;
        assert!(matches!(result, Err(AuthError::Invalid(_))), "{result:?}");
    }

    #[tokio::test]
    async fn rejects_an_expired_token_beyond_the_skew() {
        let (_server, validator) = validator().await;
        let mut c = claims(SERVICE_URL);
        let now = chrono::Utc::now().timestamp();
        c["exp"] = json!(now - 301 - 60);
        c["nbf"] = json!(now - 7200);
        let result = check(&validator, &sign(&c, &signing_key())).await;
        assert!(matches!(result, Err(AuthError::Invalid(_))), "{result:?}");

        // Within the 5-minute skew it is still accepted.
        c["exp"] = json!(now - 120);
        assert_eq!(check(&validator, &sign(&c, &signing_key())).await, Ok(()));
    }

    #[tokio::test]
    async fn rejects_a_service_url_mismatch() {
        let (_server, validator) = validator().await;
        // A missing trailing slash is a mismatch, as in the SDKs.
        let token = sign(&claims("http://127.0.0.1:3979/amer"), &signing_key());
        let result = check(&validator, &token).await;
        assert!(
            matches!(result, Err(AuthError::ServiceUrlMismatch { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn rejects_a_missing_token_and_an_unendorsed_channel() {
        let (_server, validator) = validator().await;
        assert_eq!(
            validator.validate(None, SERVICE_URL, "msteams").await,
            Err(AuthError::MissingToken)
        );
        let token = sign(&claims(SERVICE_URL), &signing_key());
        let result = validator
            .validate(Some(&format!("Bearer {token}")), SERVICE_URL, "slack")
            .await;
        assert_eq!(result, Err(AuthError::NotEndorsed("slack".to_owned())));
    }

    #[tokio::test]
    async fn keys_are_cached_between_requests() {
        let server = MockServer::start().await;
        let jwks: Value =
            serde_json::from_str(include_str!("../testdata/channel-jwks.json")).unwrap();
        Mock::given(method("GET"))
            .and(path("/v1/.well-known/openidconfiguration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": CHANNEL_ISSUER,
                "jwks_uri": format!("{}/v1/.well-known/keys", server.uri()),
            })))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/.well-known/keys"))
            .respond_with(ResponseTemplate::new(200).set_body_json(jwks))
            .expect(1)
            .mount(&server)
            .await;
        let validator = ChannelValidator::new(
            reqwest::Client::new(),
            &format!("{}/v1/.well-known/openidconfiguration", server.uri()),
            APP_ID,
        );
        let token = sign(&claims(SERVICE_URL), &signing_key());
        for _ in 0..3 {
            assert_eq!(check(&validator, &token).await, Ok(()));
        }
    }

    #[tokio::test]
    async fn concurrent_requests_with_an_unknown_kid_share_one_refetch() {
        let server = MockServer::start().await;
        let jwks: Value =
            serde_json::from_str(include_str!("../testdata/channel-jwks.json")).unwrap();
        Mock::given(method("GET"))
            .and(path("/v1/.well-known/openidconfiguration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": CHANNEL_ISSUER,
                "jwks_uri": format!("{}/v1/.well-known/keys", server.uri()),
            })))
            .expect(1)
            .mount(&server)
            .await;
        // A slow key endpoint: every request arrives while the refetch is under way.
        Mock::given(method("GET"))
            .and(path("/v1/.well-known/keys"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(jwks)
                    .set_delay(Duration::from_millis(300)),
            )
            .expect(1)
            .mount(&server)
            .await;
        let validator = ChannelValidator::new(
            reqwest::Client::new(),
            &format!("{}/v1/.well-known/openidconfiguration", server.uri()),
            APP_ID,
        );
        // The cache is empty, so the token's kid is unknown to every request.
        let token = sign(&claims(SERVICE_URL), &signing_key());
        let results = futures::future::join_all((0..8).map(|_| check(&validator, &token))).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        server.verify().await;
    }

    #[tokio::test]
    async fn cached_keys_outlive_a_failed_refetch() {
        let (server, validator) = validator().await;
        let validator = validator.with_max_age(Duration::ZERO);
        let token = sign(&claims(SERVICE_URL), &signing_key());
        assert_eq!(check(&validator, &token).await, Ok(()));

        // The cache is now always old, and the metadata endpoint is down.
        server.reset().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        assert_eq!(check(&validator, &token).await, Ok(()));
        assert_eq!(check(&validator, &token).await, Ok(()));
        // Failed refetches are not repeated on every request.
        let asked = server.received_requests().await.unwrap_or_default().len();
        assert_eq!(asked, 1, "one refetch attempt while the endpoint is down");

        // A kid the cache never had is still rejected.
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("another-key".to_owned());
        let unknown = encode(&header, &claims(SERVICE_URL), &signing_key()).unwrap();
        assert!(check(&validator, &unknown).await.is_err());
    }
}
