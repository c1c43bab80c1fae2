//! `GET /users`, `GET /users/{id | userPrincipalName}`.

use super::odata::EntitySet;
use super::{GraphError, authenticate, collection_of, entity};
use crate::state::AppState;
use crate::tenant::{TenantError, User, permissions};
use axum::extract::{OriginalUri, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Router, http::StatusCode};
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users))
        .route("/users/{user}", get(get_user))
}

pub const USERS: EntitySet = EntitySet {
    type_name: "microsoft.graph.user",
    filters: &[
        "id",
        "userPrincipalName",
        "displayName",
        "mail",
        "givenName",
        "surname",
        "jobTitle",
    ],
    navigation: &[],
    page_size: 100,
};

pub fn user_json(u: &User) -> Value {
    json!({
        "businessPhones": [],
        "displayName": u.display_name,
        "givenName": u.given_name,
        "jobTitle": u.job_title,
        "mail": u.mail,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": "en-US",
        "surname": u.surname,
        "userPrincipalName": u.user_principal_name,
        "id": u.id.to_string(),
    })
}

async fn list_users(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    super::admit(&state, &caller, crate::limits::Operation::GraphRead, None)?;
    caller.authorize(&permissions::READ_USERS)?;
    state.read(|world| {
        let users = &world.tenant_of(&caller)?.users();
        collection_of(&state, &uri, &USERS, "users", users, user_json)
    })
}

async fn get_user(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    super::admit(&state, &caller, crate::limits::Operation::GraphRead, None)?;
    caller.authorize(&permissions::READ_USERS)?;
    let item = state.read(|world| -> Result<_, GraphError> {
        let tenant = world.tenant_of(&caller)?;
        tenant.user(&user).map(user_json).map_err(|e| match e {
            TenantError::UserNotFound(id) => GraphError::new(
                StatusCode::NOT_FOUND,
                "Request_ResourceNotFound",
                format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
            ),
            other => other.into(),
        })
    })?;
    entity(&uri, &USERS, "users/$entity", item)
}
