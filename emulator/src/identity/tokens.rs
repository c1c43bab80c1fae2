//! Issuing and checking access tokens, and the channel tokens that sign activities to bots.

use super::SigningKey;
use crate::tenant::Caller;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::{Uuid, uuid};

pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// Graph's app id, which Entra also accepts (and puts in `aud`) for Graph tokens.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
pub const BOT_FRAMEWORK_RESOURCE: &str = "https://api.botframework.com";
/// The `botframework.com` tenant, which issues multi-tenant bots' Connector tokens.
pub const BOT_FRAMEWORK_TENANT: Uuid = uuid!("d6d49420-f39b-4df7-a1dc-d59a935871db");
/// The issuer of channel→bot tokens.
pub const CHANNEL_ISSUER: &str = "https://api.botframework.com";
pub const TOKEN_LIFETIME_SECS: i64 = 3599;
/// Clock skew allowed on `exp`/`nbf`, as the Bot Framework allows.
const SKEW_SECS: i64 = 300;

pub fn entra_issuer(tenant: Uuid) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

fn base_claims(now: DateTime<Utc>, tenant: Uuid, app_id: Uuid, audience: &str) -> Value {
    let iat = now.timestamp();
    json!({
        "aud": audience,
        "iss": entra_issuer(tenant),
        "iat": iat,
        "nbf": iat,
        "exp": iat + TOKEN_LIFETIME_SECS,
        "tid": tenant.to_string(),
        "appid": app_id.to_string(),
        "azp": app_id.to_string(),
        "appidacr": "1",
        "ver": "1.0",
        "uti": Uuid::new_v4().simple().to_string(),
    })
}

/// An app-only token (client credentials) carrying the app's consented roles.
pub fn app_token(
    key: &SigningKey,
    now: DateTime<Utc>,
    tenant: Uuid,
    app_id: Uuid,
    audience: &str,
    roles: &[String],
) -> String {
    let mut claims = base_claims(now, tenant, app_id, audience);
    claims["idtyp"] = json!("app");
    claims["sub"] = json!(app_id.to_string());
    claims["oid"] = json!(
        crate::ids::derived_guid("service-principal", &format!("{tenant}/{app_id}")).to_string()
    );
    if !roles.is_empty() {
        claims["roles"] = json!(roles);
    }
    key.sign(&claims)
}

/// A delegated token for a tenant user, with the granted scopes in `scp`.
pub struct UserClaims<'a> {
    pub user: Uuid,
    pub upn: &'a str,
    pub name: &'a str,
    pub scopes: &'a [String],
}

pub fn user_token(
    key: &SigningKey,
    now: DateTime<Utc>,
    tenant: Uuid,
    app_id: Uuid,
    audience: &str,
    user: UserClaims<'_>,
) -> String {
    let mut claims = base_claims(now, tenant, app_id, audience);
    claims["idtyp"] = json!("user");
    claims["sub"] = json!(user.user.to_string());
    claims["oid"] = json!(user.user.to_string());
    claims["upn"] = json!(user.upn);
    claims["unique_name"] = json!(user.upn);
    claims["name"] = json!(user.name);
    claims["scp"] = json!(user.scopes.join(" "));
    key.sign(&claims)
}

/// The token Teams' channel signs an activity with: the bot validates it against our JWKS.
pub fn channel_token(
    key: &SigningKey,
    now: DateTime<Utc>,
    bot_app_id: Uuid,
    service_url: &str,
) -> String {
    let iat = now.timestamp();
    key.sign(&json!({
        "iss": CHANNEL_ISSUER,
        "aud": bot_app_id.to_string(),
        "serviceurl": service_url,
        "iat": iat,
        "nbf": iat,
        "exp": iat + TOKEN_LIFETIME_SECS,
    }))
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenProblem {
    Missing,
    Malformed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience(String),
    WrongIssuer(String),
}

impl std::fmt::Display for TokenProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => write!(f, "Access token is empty."),
            Self::Malformed => write!(f, "IDX14100: JWT is not well formed."),
            Self::BadSignature => write!(
                f,
                "Access token validation failure: the signature is invalid."
            ),
            Self::Expired => write!(f, "Lifetime validation failed, the token is expired."),
            Self::NotYetValid => {
                write!(f, "Lifetime validation failed, the token is not yet valid.")
            }
            Self::WrongAudience(aud) => write!(
                f,
                "Access token validation failure. Invalid audience '{aud}'."
            ),
            Self::WrongIssuer(iss) => write!(
                f,
                "Access token validation failure. Invalid issuer '{iss}'."
            ),
        }
    }
}

/// What a valid access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub audience: String,
    pub caller: Caller,
}

#[derive(Deserialize)]
struct Claims {
    aud: String,
    iss: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    tid: Uuid,
    appid: Uuid,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scp: Option<String>,
    #[serde(default)]
    oid: Option<Uuid>,
    #[serde(default)]
    idtyp: Option<String>,
}

/// Reads `Authorization: Bearer …`, checks signature, lifetime (on the emulator's clock), issuer
/// and audience.
pub fn validate_bearer(
    key: &SigningKey,
    now: DateTime<Utc>,
    authorization: Option<&str>,
    audiences: &[&str],
) -> Result<AccessToken, TokenProblem> {
    let header = authorization
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(TokenProblem::Missing)?;
    // The scheme is case-insensitive (RFC 7235).
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(TokenProblem::Malformed)?;
    if token.is_empty() || token == "null" || token == "undefined" {
        return Err(TokenProblem::Missing);
    }
    let claims = key.verified_claims::<Claims>(token).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => TokenProblem::BadSignature,
            _ => TokenProblem::Malformed,
        }
    })?;
    let t = now.timestamp();
    if claims.exp + SKEW_SECS < t {
        return Err(TokenProblem::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf - SKEW_SECS > t) {
        return Err(TokenProblem::NotYetValid);
    }
    if !audiences.contains(&claims.aud.as_str()) {
        return Err(TokenProblem::WrongAudience(claims.aud.clone()));
    }
    if claims.iss != entra_issuer(claims.tid) {
        return Err(TokenProblem::WrongIssuer(claims.iss.clone()));
    }
    let delegated = claims.idtyp.as_deref() == Some("user") || claims.scp.is_some();
    Ok(AccessToken {
        audience: claims.aud.clone(),
        caller: Caller {
            tenant: claims.tid,
            app_id: claims.appid,
            roles: claims.roles.clone(),
            scopes: claims
                .scp
                .as_deref()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            user: if delegated { claims.oid } else { None },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_token_is_accepted_only_for_its_audience_and_lifetime() {
        let key = SigningKey::embedded();
        let now = Utc::now();
        let (tid, app) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let token = app_token(
            &key,
            now,
            tid,
            app,
            GRAPH_RESOURCE,
            &["User.Read.All".into()],
        );
        let bearer = format!("Bearer {token}");
        let ok = validate_bearer(&key, now, Some(&bearer), &[GRAPH_RESOURCE]).unwrap();
        assert_eq!(ok.caller.app_id, app);
        assert_eq!(ok.caller.roles, vec!["User.Read.All".to_string()]);
        assert!(ok.caller.user.is_none());
        assert!(matches!(
            validate_bearer(&key, now, Some(&bearer), &[BOT_FRAMEWORK_RESOURCE]),
            Err(TokenProblem::WrongAudience(_))
        ));
        assert_eq!(
            validate_bearer(
                &key,
                now + Duration::hours(2),
                Some(&bearer),
                &[GRAPH_RESOURCE]
            ),
            Err(TokenProblem::Expired)
        );
        assert_eq!(
            validate_bearer(&key, now, None, &[GRAPH_RESOURCE]),
            Err(TokenProblem::Missing)
        );
        assert_eq!(
            validate_bearer(&key, now, Some("Bearer abc.def"), &[GRAPH_RESOURCE]),
            Err(TokenProblem::Malformed)
        );
        // Another token's signature on this token's header and claims.
        let other = app_token(&key, now, tid, app, GRAPH_RESOURCE, &[]);
        let (signed_part, _) = token.rsplit_once('.').unwrap();
        let tampered = format!("{signed_part}.{}", other.rsplit_once('.').unwrap().1);
        assert_eq!(
            validate_bearer(
                &key,
                now,
                Some(&format!("Bearer {tampered}")),
                &[GRAPH_RESOURCE]
            ),
            Err(TokenProblem::BadSignature)
        );
    }

    #[test]
    fn delegated_tokens_carry_the_user_and_scopes() {
        let key = SigningKey::embedded();
        let now = Utc::now();
        let user = Uuid::from_u128(9);
        let scopes = vec!["Chat.ReadWrite".to_string(), "ChatMessage.Send".to_string()];
        let token = user_token(
            &key,
            now,
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            GRAPH_RESOURCE,
            UserClaims {
                user,
                upn: "megan@contoso.onmicrosoft.com",
                name: "Megan Bowen",
                scopes: &scopes,
            },
        );
        let ok = validate_bearer(
            &key,
            now,
            Some(&format!("Bearer {token}")),
            &[GRAPH_RESOURCE],
        )
        .unwrap();
        assert_eq!(ok.caller.user, Some(user));
        assert_eq!(ok.caller.scopes, scopes);
    }
}
