//! App installations: `/users/{id}/teamwork/installedApps[...]` (list, install, get, uninstall,
//! upgrade, the installation's chat) and `/teams/{id}/installedApps[...]`.

use super::catalog::{definition_json, teams_app_json};
use super::chats::chat_json;
use super::odata::EntitySet;
use super::{GraphError, admit, authenticate, collection, entity, json_body};
use crate::limits::Operation;
use crate::server::AppState;
use crate::tenant::{Installation, Tenant};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/users/{user}/teamwork/installedApps",
            get(list_user_installations).post(install_for_user),
        )
        .route(
            "/users/{user}/teamwork/installedApps/{installation}",
            get(get_user_installation).delete(uninstall_for_user),
        )
        .route(
            "/users/{user}/teamwork/installedApps/{installation}/upgrade",
            post(upgrade_for_user),
        )
        .route(
            "/users/{user}/teamwork/installedApps/{installation}/chat",
            get(get_installation_chat),
        )
        .route(
            "/teams/{team}/installedApps",
            get(list_team_installations).post(install_for_team),
        )
        .route(
            "/teams/{team}/installedApps/{installation}",
            get(get_team_installation).delete(uninstall_for_team),
        )
}

pub const USER_INSTALLATIONS: EntitySet = EntitySet {
    type_name: "microsoft.graph.userScopeTeamsAppInstallation",
    filters: &[
        "id",
        "teamsApp/id",
        "teamsApp/externalId",
        "teamsApp/displayName",
        "teamsApp/distributionMethod",
        "teamsAppDefinition/teamsAppId",
        "teamsAppDefinition/azureADAppId",
        "teamsAppDefinition/bot/id",
    ],
    navigation: &["teamsApp", "teamsAppDefinition", "chat"],
    page_size: 100,
};

pub const TEAM_INSTALLATIONS: EntitySet = EntitySet {
    type_name: "microsoft.graph.teamsAppInstallation",
    filters: USER_INSTALLATIONS.filters,
    navigation: &["teamsApp", "teamsAppDefinition"],
    page_size: 100,
};

/// The caller of a call about `user`, once Graph's limits (and any fault) let it through.
fn user_call(
    state: &AppState,
    headers: &HeaderMap,
    operation: Operation,
    user: &str,
) -> Result<crate::tenant::Caller, GraphError> {
    let caller = authenticate(state, headers)?;
    admit(
        state,
        &caller,
        operation,
        Some(&about_user(state, &caller, user)),
    )?;
    Ok(caller)
}

/// The caller of a call about `team`, once Graph's limits let it through.
fn team_call(
    state: &AppState,
    headers: &HeaderMap,
    operation: Operation,
    team: &str,
) -> Result<crate::tenant::Caller, GraphError> {
    let caller = authenticate(state, headers)?;
    let about = {
        let world = state.world();
        world
            .tenant(caller.tenant)
            .and_then(|t| t.team(team).ok())
            .map(|t| t.id.to_string())
    };
    admit(
        state,
        &caller,
        operation,
        Some(about.as_deref().unwrap_or(team)),
    )?;
    Ok(caller)
}

/// The user a call is about, by object id (as faults name users), whichever way the path names them.
fn about_user(state: &AppState, caller: &crate::tenant::Caller, user: &str) -> String {
    let world = state.world();
    world
        .tenant(caller.tenant)
        .and_then(|t| t.user(user).ok())
        .map(|u| u.id.to_string())
        .unwrap_or_else(|| user.to_string())
}

fn installation_json(tenant: &Tenant, installation: &Installation) -> Value {
    let mut value = json!({ "id": installation.id });
    if let Ok(app) = tenant.catalog_app(&installation.catalog_app.to_string()) {
        let mut app_json = teams_app_json(app);
        if let Some(map) = app_json.as_object_mut() {
            map.remove("appDefinitions");
        }
        let mut definition = definition_json(app);
        definition["version"] = json!(installation.version);
        value["teamsApp"] = app_json;
        value["teamsAppDefinition"] = definition;
        if let crate::tenant::InstallScope::User(user) = installation.scope
            && let Some(chat) = app
                .bot_id
                .and_then(|bot| tenant.chats.iter().find(|c| c.user == user && c.bot == bot))
        {
            value["chat"] = chat_json(tenant, chat);
        }
    }
    value
}

/// The catalog id in `{"teamsApp@odata.bind": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{id}"}`.
fn bound_catalog_app(body: &Bytes) -> Result<String, GraphError> {
    let body = json_body(body)?;
    let bind = body
        .get("teamsApp@odata.bind")
        .ok_or_else(|| GraphError::bad_request("The property 'teamsApp@odata.bind' is required: a link to the app in appCatalogs/teamsApps."))?
        .as_str()
        .ok_or_else(|| GraphError::bad_request("'teamsApp@odata.bind' must be a string URL."))?;
    let bad = || {
        GraphError::bad_request(format!(
            "Invalid 'teamsApp@odata.bind' value '{bind}': expected https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{{id}}."
        ))
    };
    let (_, rest) = bind.split_once("appCatalogs/teamsApps").ok_or_else(bad)?;
    let id = rest
        .strip_prefix('/')
        .or_else(|| rest.strip_prefix("('").and_then(|r| r.strip_suffix("')")))
        .ok_or_else(bad)?;
    if id.is_empty() || id.contains('/') {
        return Err(bad());
    }
    if let Some(set) = body.get("consentedPermissionSet")
        && !set.is_object()
        && !set.is_null()
    {
        return Err(GraphError::bad_request(
            "'consentedPermissionSet' must be an object.",
        ));
    }
    Ok(id.to_string())
}

async fn list_user_installations(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = user_call(&state, &headers, Operation::GraphRead, &user)?;
    let (items, user_id) = {
        let world = state.world();
        let tenant = world.tenant_of(&caller)?;
        let items = tenant
            .user_installations(&caller, &user)?
            .into_iter()
            .map(|i| installation_json(tenant, i))
            .collect();
        (items, tenant.user(&user)?.id)
    };
    collection(
        &state,
        &uri,
        &USER_INSTALLATIONS,
        &format!("users('{user_id}')/teamwork/installedApps"),
        items,
    )
}

async fn install_for_user(
    State(state): State<AppState>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    let caller = user_call(&state, &headers, Operation::GraphInstall, &user)?;
    let app = bound_catalog_app(&body)?;
    let events = state.world().install_app_for_user(&caller, &user, &app)?.1;
    state.publish(events).await;
    Ok(StatusCode::CREATED.into_response())
}

async fn get_user_installation(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path((user, installation)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = user_call(&state, &headers, Operation::GraphRead, &user)?;
    let item = {
        let world = state.world();
        let tenant = world.tenant_of(&caller)?;
        installation_json(
            tenant,
            tenant.user_installation(&caller, &user, &installation)?,
        )
    };
    entity(
        &uri,
        &USER_INSTALLATIONS,
        "users/teamwork/installedApps/$entity",
        item,
    )
}

async fn uninstall_for_user(
    State(state): State<AppState>,
    Path((user, installation)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = user_call(&state, &headers, Operation::GraphUninstall, &user)?;
    let events = state
        .world()
        .uninstall_app_for_user(&caller, &user, &installation)?;
    state.publish(events).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn upgrade_for_user(
    State(state): State<AppState>,
    Path((user, installation)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    let caller = user_call(&state, &headers, Operation::GraphInstall, &user)?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        json_body(&body)?;
    }
    let events = state
        .world()
        .upgrade_app_for_user(&caller, &user, &installation)?;
    state.publish(events).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_installation_chat(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path((user, installation)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = user_call(&state, &headers, Operation::GraphRead, &user)?;
    let item = {
        let world = state.world();
        let tenant = world.tenant_of(&caller)?;
        chat_json(
            tenant,
            tenant.chat_of_installation(&caller, &user, &installation)?,
        )
    };
    entity(&uri, &super::chats::CHATS, "chats/$entity", item)
}

async fn list_team_installations(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(team): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = team_call(&state, &headers, Operation::GraphRead, &team)?;
    let items = {
        let world = state.world();
        let tenant = world.tenant_of(&caller)?;
        tenant
            .team_installations(&caller, &team)?
            .into_iter()
            .map(|i| installation_json(tenant, i))
            .collect()
    };
    collection(
        &state,
        &uri,
        &TEAM_INSTALLATIONS,
        &format!("teams('{team}')/installedApps"),
        items,
    )
}

async fn install_for_team(
    State(state): State<AppState>,
    Path(team): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    let caller = team_call(&state, &headers, Operation::GraphInstall, &team)?;
    let app = bound_catalog_app(&body)?;
    let events = state.world().install_app_for_team(&caller, &team, &app)?.1;
    state.publish(events).await;
    Ok(StatusCode::OK.into_response())
}

async fn get_team_installation(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path((team, installation)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = team_call(&state, &headers, Operation::GraphRead, &team)?;
    let item = {
        let world = state.world();
        let tenant = world.tenant_of(&caller)?;
        installation_json(
            tenant,
            tenant.team_installation(&caller, &team, &installation)?,
        )
    };
    entity(
        &uri,
        &TEAM_INSTALLATIONS,
        "teams/installedApps/$entity",
        item,
    )
}

async fn uninstall_for_team(
    State(state): State<AppState>,
    Path((team, installation)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = team_call(&state, &headers, Operation::GraphUninstall, &team)?;
    let events = state
        .world()
        .uninstall_app_for_team(&caller, &team, &installation)?;
    state.publish(events).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
