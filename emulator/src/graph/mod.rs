//! Microsoft Graph, under `/v1.0` and `/beta`: users, the Teams app catalog, user- and
//! team-scope app installations, chats and their messages, with Graph's OData subset, headers
//! and error envelope.
//!
//! One file a resource family; each handler authenticates the caller, parses the request, calls
//! `tenant`, and shapes the answer.

pub mod error;
pub mod odata;

mod catalog;
mod chats;
mod installed_apps;
pub mod messages;
mod users;

pub use error::GraphError;

use crate::identity::tokens::{GRAPH_APP_ID, GRAPH_RESOURCE, validate_bearer};
use crate::state::AppState;
use crate::tenant::Caller;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use odata::{EntitySet, QueryOptions};
use serde_json::{Map, Value, json};

/// Both API versions serve the same routes; beta adds a few properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    Beta,
}

impl ApiVersion {
    pub fn segment(self) -> &'static str {
        match self {
            Self::V1 => "v1.0",
            Self::Beta => "beta",
        }
    }

    fn of(uri: &axum::http::Uri) -> Self {
        if uri.path().starts_with("/beta") {
            Self::Beta
        } else {
            Self::V1
        }
    }
}

/// The routes of one version, mounted under `/v1.0` and `/beta`.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(users::router())
        .merge(catalog::router())
        .merge(installed_apps::router())
        .merge(chats::router())
        .merge(messages::router())
        .fallback(not_emulated)
        // A method Graph has on a path the emulator serves, but not emulated: say so, as for routes.
        .method_not_allowed_fallback(not_emulated)
        .layer(middleware::from_fn(graph_envelope))
}

async fn not_emulated(method: Method, OriginalUri(uri): OriginalUri) -> GraphError {
    GraphError::not_supported(method.as_str(), uri.path())
}

/// Largest error body the envelope middleware reads back to add `innerError`.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Adds `request-id`/`client-request-id` to every answer and `innerError` to every error, and
/// turns framework rejections (wrong method, unreadable body) into Graph's envelope.
async fn graph_envelope(request: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = request
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    let mut response = next.run(request).await;
    if response.status().is_client_error() || response.status().is_server_error() {
        let status = response.status();
        let (mut parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let mut envelope = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(|v| v.get("error").is_some_and(Value::is_object))
            .unwrap_or_else(|| {
                let e = GraphError::for_status(status, &String::from_utf8_lossy(&bytes));
                json!({"error": {"code": e.code, "message": e.message}})
            });
        envelope["error"]["innerError"] = json!({
            "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
            "request-id": request_id,
            "client-request-id": client_request_id,
        });
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        parts.headers.remove(header::CONTENT_LENGTH);
        response = Response::from_parts(parts, Body::from(envelope.to_string()));
    }
    let headers = response.headers_mut();
    for (name, value) in [
        ("request-id", &request_id),
        ("client-request-id", &client_request_id),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    response
}

/// The caller of a Graph request, from its bearer token.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, GraphError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    validate_bearer(
        &state.key,
        state.now(),
        authorization,
        &[GRAPH_RESOURCE, GRAPH_APP_ID],
    )
    .map(|t| t.caller)
    .map_err(|p| GraphError::unauthenticated(&p))
}

/// Graph's limits per app per tenant, and injected faults; `about` names the user (or chat).
pub fn admit(
    state: &AppState,
    caller: &Caller,
    operation: crate::limits::Operation,
    about: Option<&str>,
) -> Result<(), GraphError> {
    state
        .limits
        .admit_graph(
            state.now(),
            operation,
            (caller.app_id, caller.tenant, caller.user),
            about,
        )
        .map_err(GraphError::from)
}

/// `https://graph.microsoft.com/{version}/$metadata#{fragment}`.
pub fn context_url(version: ApiVersion, fragment: &str) -> String {
    format!(
        "https://graph.microsoft.com/{}/$metadata#{fragment}",
        version.segment()
    )
}

/// A collection answer: filtered, paged and shaped, with `@odata.nextLink` when more remain.
pub fn collection(
    state: &AppState,
    uri: &axum::http::Uri,
    set: &EntitySet,
    fragment: &str,
    items: Vec<Value>,
) -> Result<Response, GraphError> {
    collection_of(state, uri, set, fragment, &items, Value::clone)
}

/// [`collection`] rendering only what the page needs (see [`QueryOptions::page_of`]).
pub fn collection_of<T>(
    state: &AppState,
    uri: &axum::http::Uri,
    set: &EntitySet,
    fragment: &str,
    items: &[T],
    to_json: impl Fn(&T) -> Value,
) -> Result<Response, GraphError> {
    let query = QueryOptions::parse(uri.query())?;
    let (page, next) = query.page_of(set, items, to_json)?;
    let version = ApiVersion::of(uri);
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(context_url(version, fragment)),
    );
    if let Some(token) = next {
        let kept: Vec<(String, String)> =
            url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &kept {
            query.append_pair(k, v);
        }
        query.append_pair("$skiptoken", &token);
        body.insert(
            "@odata.nextLink".into(),
            json!(format!(
                "{}{}?{}",
                state.base_url(),
                uri.path(),
                query.finish()
            )),
        );
    }
    body.insert("value".into(), Value::Array(page));
    Ok(axum::Json(Value::Object(body)).into_response())
}

/// A single-entity answer, shaped by `$select`/`$expand`.
pub fn entity(
    uri: &axum::http::Uri,
    set: &EntitySet,
    fragment: &str,
    item: Value,
) -> Result<Response, GraphError> {
    let query = QueryOptions::parse(uri.query())?;
    if query.filter.is_some() || query.top.is_some() {
        return Err(GraphError::bad_request(
            "$filter and $top apply to collections, not to a single entity.",
        ));
    }
    query.check(set)?;
    let mut shaped = query.shape(set, item)?;
    if let Value::Object(map) = &mut shaped {
        map.insert(
            "@odata.context".into(),
            json!(context_url(ApiVersion::of(uri), fragment)),
        );
    }
    Ok(axum::Json(shaped).into_response())
}

/// A JSON request body, or Graph's 400 for anything else.
pub fn json_body(body: &Bytes) -> Result<Value, GraphError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GraphError::bad_request(
            "Empty Payload. JSON content expected.",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GraphError::bad_request(format!("Unable to read JSON request payload: {e}."))
    })?;
    if !value.is_object() {
        return Err(GraphError::bad_request(
            "Unable to read JSON request payload: an object is expected.",
        ));
    }
    Ok(value)
}
