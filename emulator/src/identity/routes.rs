//! Token, OpenID discovery and key routes, shaped like Entra's and the Bot Framework's.

use super::tokens::{
    self, BOT_FRAMEWORK_RESOURCE, BOT_FRAMEWORK_TENANT, GRAPH_APP_ID, GRAPH_RESOURCE, UserClaims,
};
use crate::state::AppState;
use crate::tenant::{Tenant, permissions};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(issue_token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(entra_openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(entra_keys))
        .route("/common/discovery/instance", get(instance_discovery))
        .route(
            "/v1/.well-known/openidconfiguration",
            get(channel_openid_configuration),
        )
        .route("/v1/.well-known/keys", get(channel_keys))
}

/// An OAuth error as Entra renders it.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl OAuthError {
    fn new(
        status: StatusCode,
        error: &'static str,
        code: u32,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            code,
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let trace = Uuid::new_v4().to_string();
        let body = json!({
            "error": self.error,
            "error_description": format!("AADSTS{}: {} Trace ID: {trace}", self.code, self.description),
            "error_codes": [self.code],
            "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": trace,
            "correlation_id": Uuid::new_v4().to_string(),
        });
        (self.status, axum::Json(body)).into_response()
    }
}

/// The tenant named in the path: a GUID, a verified domain, or `botframework.com`.
enum Authority<'a> {
    Tenant(&'a Tenant),
    BotFramework,
}

fn resource_of_scope(scope: &str) -> Option<&'static str> {
    let resource = scope.strip_suffix("/.default")?.trim_end_matches('/');
    match resource {
        GRAPH_RESOURCE | GRAPH_APP_ID => Some(GRAPH_RESOURCE),
        BOT_FRAMEWORK_RESOURCE => Some(BOT_FRAMEWORK_RESOURCE),
        _ => None,
    }
}

/// Every delegated permission the emulator knows: what a user who consented to all of them holds.
fn all_delegated_scopes() -> Vec<String> {
    let all = [
        &permissions::READ_USERS,
        &permissions::READ_APP_CATALOG,
        &permissions::READ_USER_INSTALLATIONS,
        &permissions::WRITE_USER_INSTALLATIONS,
        &permissions::READ_TEAM_INSTALLATIONS,
        &permissions::WRITE_TEAM_INSTALLATIONS,
        &permissions::READ_CHATS,
        &permissions::READ_CHAT_MESSAGES,
        &permissions::SEND_CHAT_MESSAGES,
        &permissions::READ_TEAMS,
        &permissions::READ_CHANNEL_MESSAGES,
        &permissions::SEND_CHANNEL_MESSAGES,
    ];
    let mut scopes: Vec<String> = all
        .iter()
        .flat_map(|p| p.delegated.iter().map(|(s, _)| s.to_string()))
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

async fn issue_token(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    // the grant is decided under the world lock; the RSA signature is made after it
    let grant = state.read(|world| issue_token_inner(world, &tenant, &body));
    match grant.map(|g| g.sign(&state.key)) {
        Ok(token) => axum::Json(json!({
            "token_type": "Bearer",
            "expires_in": tokens::TOKEN_LIFETIME_SECS,
            "ext_expires_in": tokens::TOKEN_LIFETIME_SECS,
            "access_token": token,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// A token the endpoint decided to issue, to be signed once the world lock is released.
enum Grant {
    App {
        now: chrono::DateTime<chrono::Utc>,
        tenant: Uuid,
        client_id: Uuid,
        resource: &'static str,
        roles: Vec<String>,
    },
    User {
        now: chrono::DateTime<chrono::Utc>,
        tenant: Uuid,
        client_id: Uuid,
        resource: &'static str,
        user: Uuid,
        upn: String,
        name: String,
        scopes: Vec<String>,
    },
}

impl Grant {
    fn sign(self, key: &crate::identity::SigningKey) -> String {
        match self {
            Grant::App {
                now,
                tenant,
                client_id,
                resource,
                roles,
            } => tokens::app_token(key, now, tenant, client_id, resource, &roles),
            Grant::User {
                now,
                tenant,
                client_id,
                resource,
                user,
                upn,
                name,
                scopes,
            } => tokens::user_token(
                key,
                now,
                tenant,
                client_id,
                resource,
                UserClaims {
                    user,
                    upn: &upn,
                    name: &name,
                    scopes: &scopes,
                },
            ),
        }
    }
}

fn issue_token_inner(
    world: &crate::tenant::World,
    tenant_segment: &str,
    body: &[u8],
) -> Result<Grant, OAuthError> {
    use StatusCode as S;
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).map_err(|_| {
        OAuthError::new(
            S::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must be application/x-www-form-urlencoded.",
        )
    })?;
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let missing = |name: &str| {
        OAuthError::new(
            S::BAD_REQUEST,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    };
    let grant_type = field("grant_type").ok_or_else(|| missing("grant_type"))?;
    let now = world.now();
    let authority = if tenant_segment.eq_ignore_ascii_case("botframework.com") {
        Authority::BotFramework
    } else {
        let found = world.tenant_by_name(tenant_segment);
        Authority::Tenant(found.ok_or_else(|| {
            OAuthError::new(S::BAD_REQUEST, "invalid_request", 90002, format!("Tenant '{tenant_segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."))
        })?)
    };
    let client_id_text = field("client_id").ok_or_else(|| missing("client_id"))?;
    let not_found = || {
        OAuthError::new(
            S::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id_text}' was not found in the directory '{tenant_segment}'."
            ),
        )
    };
    let client_id = Uuid::parse_str(client_id_text).map_err(|_| not_found())?;
    let (tenant, registration) = match authority {
        Authority::Tenant(t) => (t, t.registration(client_id).ok_or_else(not_found)?),
        Authority::BotFramework => world
            .tenants()
            .iter()
            .find_map(|t| t.registration(client_id).map(|r| (t, r)))
            .ok_or_else(not_found)?,
    };
    let token_tenant = match authority {
        Authority::Tenant(t) => t.id,
        Authority::BotFramework => BOT_FRAMEWORK_TENANT,
    };
    let scope = field("scope").ok_or_else(|| missing("scope"))?;
    match grant_type {
        "client_credentials" => {
            let secret = field("client_secret").ok_or_else(|| {
                OAuthError::new(S::UNAUTHORIZED, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
            })?;
            if secret != registration.client_secret {
                return Err(OAuthError::new(
                    S::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                    ),
                ));
            }
            let resource = resource_of_scope(scope).ok_or_else(|| {
                OAuthError::new(S::BAD_REQUEST, "invalid_scope", 1002012, format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."))
            })?;
            let roles = if resource == GRAPH_RESOURCE {
                registration.roles.clone()
            } else {
                vec![]
            };
            Ok(Grant::App {
                now,
                tenant: token_tenant,
                client_id,
                resource,
                roles,
            })
        }
        "password" => {
            let Authority::Tenant(_) = authority else {
                return Err(OAuthError::new(
                    S::BAD_REQUEST,
                    "invalid_grant",
                    50126,
                    "Users sign in to their own tenant, not botframework.com.",
                ));
            };
            let username = field("username").ok_or_else(|| missing("username"))?;
            let password = field("password").ok_or_else(|| missing("password"))?;
            let user = tenant
                .user(username)
                .ok()
                .filter(|u| u.password == password)
                .ok_or_else(|| {
                    OAuthError::new(
                        S::BAD_REQUEST,
                        "invalid_grant",
                        50126,
                        "Error validating credentials due to invalid username or password.",
                    )
                })?;
            let mut resource = None;
            let mut scopes = Vec::new();
            for s in scope.split_whitespace() {
                if let Some(r) = resource_of_scope(s) {
                    resource = Some(r);
                    scopes.extend(all_delegated_scopes());
                } else if !matches!(s, "openid" | "profile" | "offline_access" | "email") {
                    let bare = s.strip_prefix("https://graph.microsoft.com/").unwrap_or(s);
                    resource = resource.or(Some(GRAPH_RESOURCE));
                    scopes.push(bare.to_string());
                }
            }
            let resource = resource.ok_or_else(|| {
                OAuthError::new(S::BAD_REQUEST, "invalid_scope", 70011, format!("The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."))
            })?;
            scopes.sort();
            scopes.dedup();
            Ok(Grant::User {
                now,
                tenant: tenant.id,
                client_id,
                resource,
                user: user.id,
                upn: user.user_principal_name.clone(),
                name: user.display_name.clone(),
                scopes,
            })
        }
        other => Err(OAuthError::new(
            S::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

fn tenant_for_discovery(state: &AppState, segment: &str) -> Option<Uuid> {
    if matches!(segment, "common" | "organizations")
        || segment.eq_ignore_ascii_case("botframework.com")
    {
        return Some(BOT_FRAMEWORK_TENANT);
    }
    state.read(|world| world.tenant_by_name(segment).map(|t| t.id))
}

async fn entra_openid_configuration(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Response {
    let Some(tid) = tenant_for_discovery(&state, &tenant) else {
        return OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
            format!("Tenant '{tenant}' not found."),
        )
        .into_response();
    };
    let base = state.base_url();
    axum::Json(json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{tid}/v2.0"),
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "roles", "scp"],
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
    }))
    .into_response()
}

async fn entra_keys(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(json!({ "keys": [state.key.jwk(None)] }))
}

async fn instance_discovery(State(state): State<AppState>) -> axum::Json<Value> {
    let base = state.base_url();
    let host = base
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_string();
    axum::Json(json!({
        "tenant_discovery_endpoint": format!("{base}/common/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{ "preferred_network": host, "preferred_cache": host, "aliases": [host] }],
    }))
}

async fn channel_openid_configuration(State(state): State<AppState>) -> axum::Json<Value> {
    let base = state.base_url();
    axum::Json(json!({
        "issuer": tokens::CHANNEL_ISSUER,
        "authorization_endpoint": format!("{base}/v1/authorize"),
        "jwks_uri": format!("{base}/v1/.well-known/keys"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    }))
}

async fn channel_keys(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(json!({ "keys": [state.key.jwk(Some(&["msteams"]))] }))
}
