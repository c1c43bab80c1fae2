//! The Bot Connector v3 API under `/amer/v3` (the activities' `serviceUrl` is `/amer/`):
//! conversations, activities, rosters and team details, with the Connector's error envelope.
//!
//! Conversation ids arrive percent-encoded and are decoded by the router; `;messageid=` is part
//! of an id. The Graph chat id (`19:…@unq.gbl.spaces`) and the `a:…` id name the same chat.

mod activities;
mod conversations;
pub mod error;
mod members;

pub use error::ConnectorError;

use crate::identity::tokens::{BOT_FRAMEWORK_RESOURCE, validate_bearer};
use crate::state::{AppState, BotAuth};
use crate::tenant::{Conversation, Tenant};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};
use uuid::Uuid;

/// Teams refuses messages past about 100 KB.
pub const MAX_ACTIVITY_BYTES: usize = 100 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations", post(conversations::create_conversation))
        .route(
            "/conversations/{conversation}/activities",
            post(activities::send_to_conversation),
        )
        // Send Conversation History shares its path with a reply to activity "history"
        .route(
            "/conversations/{conversation}/activities/history",
            post(not_emulated),
        )
        .route(
            "/conversations/{conversation}/activities/{activity}",
            post(activities::reply_to_activity)
                .put(activities::update_activity)
                .delete(activities::delete_activity),
        )
        .route(
            "/conversations/{conversation}/members",
            get(members::get_conversation_members),
        )
        .route(
            "/conversations/{conversation}/pagedmembers",
            get(members::get_paged_members),
        )
        .route(
            "/conversations/{conversation}/pagedMembers",
            get(members::get_paged_members),
        )
        .route(
            "/conversations/{conversation}/PagedMembers",
            get(members::get_paged_members),
        )
        .route(
            "/conversations/{conversation}/members/{member}",
            get(members::get_conversation_member),
        )
        .route("/teams/{team}", get(members::get_team_details))
        .route(
            "/teams/{team}/conversations",
            get(members::get_team_channels),
        )
        .fallback(not_emulated)
        .method_not_allowed_fallback(not_emulated)
        .layer(middleware::from_fn(connector_envelope))
        .layer(DefaultBodyLimit::max(4 * 1024 * 1024))
}

async fn not_emulated(method: Method, OriginalUri(uri): OriginalUri) -> ConnectorError {
    ConnectorError::new(
        axum::http::StatusCode::NOT_IMPLEMENTED,
        "NotSupportedByEmulator",
        format!("{method} {} is not emulated by teams-emulator.", uri.path()),
    )
}

/// Framework rejections (wrong method, body too large for the listener) in the Connector's envelope.
async fn connector_envelope(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (mut parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .unwrap_or_default();
        let e = ConnectorError::for_status(status, &String::from_utf8_lossy(&bytes));
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        parts.headers.remove(header::CONTENT_LENGTH);
        let body = json!({"error": {"code": e.code, "message": e.message}});
        return Response::from_parts(parts, Body::from(body.to_string()));
    }
    response
}

/// The calling bot's app id, from its token. With `--bot-auth none` a token is optional and the
/// conversation tells the bot.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Option<Uuid>, ConnectorError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let checked = validate_bearer(
        &state.key,
        state.now(),
        authorization,
        &[BOT_FRAMEWORK_RESOURCE],
    );
    match (state.bot_auth, checked) {
        (_, Ok(token)) => {
            let app = token.caller.app_id;
            if !state.is_registered(app) {
                return Err(ConnectorError::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "BotNotRegistered",
                    "No registration found for this bot.",
                ));
            }
            Ok(Some(app))
        }
        (BotAuth::None, Err(_)) => Ok(None),
        (BotAuth::Signed, Err(problem)) => Err(ConnectorError::unauthorized(&problem.to_string())),
    }
}

/// A Connector call's tenant, conversation and bot, once the bot may act there and Teams'
/// limits (and any injected fault) let the call through.
pub fn resolve_for_bot(
    state: &AppState,
    world: &crate::tenant::World,
    caller: Option<Uuid>,
    conversation_id: &str,
    operation: crate::limits::Operation,
) -> Result<(Uuid, Conversation, Uuid), ConnectorError> {
    let not_found =
        || crate::tenant::ConversationError::ConversationNotFound(conversation_id.into());
    let (tenant_id, conversation) = world
        .find_conversation(conversation_id)
        .ok_or_else(not_found)?;
    let tenant = world.tenant(tenant_id).ok_or_else(not_found)?;
    let bot = acting_bot(tenant, caller, &conversation)?;
    tenant.check_bot_may_post(bot, &conversation)?;
    state
        .limits
        .admit_connector(state.now(), operation, bot, &limits_key(&conversation))?;
    Ok((tenant_id, conversation, bot))
}

/// The name limits and faults know a conversation by: a chat's Graph id, or a channel's id.
pub fn limits_key(conversation: &Conversation) -> String {
    match conversation {
        Conversation::Personal { chat } => chat.clone(),
        Conversation::Channel { channel, .. } => channel.clone(),
    }
}

/// The bot acting on a conversation: the token's, or the conversation's own when there is none.
pub fn acting_bot(
    tenant: &Tenant,
    caller: Option<Uuid>,
    conversation: &Conversation,
) -> Result<Uuid, ConnectorError> {
    caller
        .or_else(|| tenant.conversation_bot(conversation))
        .ok_or_else(|| crate::tenant::ConversationError::BotNotInRoster.into())
}

/// A JSON object body, or 400 `BadArgument`.
pub fn object_body(body: &[u8]) -> Result<Value, ConnectorError> {
    if body.len() > MAX_ACTIVITY_BYTES {
        return Err(ConnectorError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "MessageSizeTooBig",
            format!(
                "Message size too large. The activity is {} bytes; the limit is about {MAX_ACTIVITY_BYTES}.",
                body.len()
            ),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ConnectorError::bad_argument(format!("The request body is not valid JSON: {e}."))
    })?;
    if !value.is_object() {
        return Err(ConnectorError::bad_argument(
            "The request body must be a JSON object.",
        ));
    }
    Ok(value)
}

/// A Teams channel account for a tenant user, as rosters return it.
pub fn channel_account(tenant: &Tenant, user: &crate::tenant::User) -> Value {
    json!({
        "id": user.mri,
        "name": user.display_name,
        "objectId": user.id.to_string(),
        "aadObjectId": user.id.to_string(),
        "givenName": user.given_name,
        "surname": user.surname,
        "email": user.mail,
        "userPrincipalName": user.user_principal_name,
        "tenantId": tenant.id.to_string(),
        "userRole": "user",
    })
}
