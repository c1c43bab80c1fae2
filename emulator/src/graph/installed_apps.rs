//! App installations: `/users/{id}/teamwork/installedApps[...]` (list, install, get, uninstall,
//! upgrade, the installation's chat) and `/teams/{id}/installedApps[...]`.

use super::catalog::{definition_json, teams_app_json};
use super::chats::chat_json;
use super::odata::EntitySet;
use super::{GraphError, admit, authenticate, collection, entity, json_body};
use crate::limits::Operation;
use crate::state::AppState;
use crate::tenant::{Caller, Installation, ScopeRef, TeamsEvent, Tenant, World};
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
            get(list::<USER>).post(install_app::<USER>),
        )
        .route(
            "/users/{user}/teamwork/installedApps/{installation}",
            get(get_one::<USER>).delete(uninstall::<USER>),
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
            get(list::<TEAM>).post(install_app::<TEAM>),
        )
        .route(
            "/teams/{team}/installedApps/{installation}",
            get(get_one::<TEAM>).delete(uninstall::<TEAM>),
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

/// The caller of a call about a scope, once Graph's limits (and any fault) let it through.
/// Faults name users and teams by object id, whichever way the path names them.
fn scope_call(
    state: &AppState,
    world: &World,
    caller: &Caller,
    operation: Operation,
    scope: ScopeRef<'_>,
) -> Result<(), GraphError> {
    let tenant = world.tenant(caller.tenant);
    let about = match scope {
        ScopeRef::User(user) => tenant
            .and_then(|t| t.user(user).ok())
            .map(|u| u.id.to_string())
            .unwrap_or_else(|| user.to_string()),
        ScopeRef::Team(team) => tenant
            .and_then(|t| t.team(team).ok())
            .map(|t| t.id.to_string())
            .unwrap_or_else(|| team.to_string()),
    };
    admit(state, caller, operation, Some(&about))
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
            && let Some(chat) = app.bot_id.and_then(|bot| tenant.personal_chat(user, bot))
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

/// The installations in a scope, each with its app and (personal scope) its chat.
fn list_installations(
    state: &AppState,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    scope: ScopeRef<'_>,
) -> Result<Response, GraphError> {
    let caller = authenticate(state, headers)?;
    let (items, fragment) = state.read(|world| -> Result<_, GraphError> {
        scope_call(state, world, &caller, Operation::GraphRead, scope)?;
        let tenant = world.tenant_of(&caller)?;
        let items = tenant
            .installations_in(&caller, scope)?
            .into_iter()
            .map(|i| installation_json(tenant, i))
            .collect::<Vec<_>>();
        let fragment = match scope {
            ScopeRef::User(user) => {
                format!("users('{}')/teamwork/installedApps", tenant.user(user)?.id)
            }
            ScopeRef::Team(team) => format!("teams('{team}')/installedApps"),
        };
        Ok((items, fragment))
    })?;
    let set = match scope {
        ScopeRef::User(_) => &USER_INSTALLATIONS,
        ScopeRef::Team(_) => &TEAM_INSTALLATIONS,
    };
    collection(state, uri, set, &fragment, items)
}

fn get_installation(
    state: &AppState,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    scope: ScopeRef<'_>,
    installation: &str,
) -> Result<Response, GraphError> {
    let caller = authenticate(state, headers)?;
    let item = state.read(|world| -> Result<_, GraphError> {
        scope_call(state, world, &caller, Operation::GraphRead, scope)?;
        let tenant = world.tenant_of(&caller)?;
        Ok(installation_json(
            tenant,
            tenant.installation_in(&caller, scope, installation)?,
        ))
    })?;
    let (set, fragment) = match scope {
        ScopeRef::User(_) => (&USER_INSTALLATIONS, "users/teamwork/installedApps/$entity"),
        ScopeRef::Team(_) => (&TEAM_INSTALLATIONS, "teams/installedApps/$entity"),
    };
    entity(uri, set, fragment, item)
}

/// Installs, uninstalls or upgrades under one lock: admitted, applied, and the bot told.
fn change_installation(
    state: &AppState,
    headers: &HeaderMap,
    operation: Operation,
    scope: ScopeRef<'_>,
    rule: impl FnOnce(&mut World, &Caller) -> Result<Vec<TeamsEvent>, GraphError>,
) -> Result<(), GraphError> {
    let caller = authenticate(state, headers)?;
    state.change(|world| -> Result<((), Vec<TeamsEvent>), GraphError> {
        scope_call(state, world, &caller, operation, scope)?;
        Ok(((), rule(world, &caller)?))
    })
}

/// The scope kind of a route: its first path segment names a user or a team. One handler
/// serves both (`list::<USER>`, `list::<TEAM>`), as one rule in `tenant` does.
const USER: bool = false;
const TEAM: bool = true;

fn scope_of<const KIND: bool>(id: &str) -> ScopeRef<'_> {
    if KIND == TEAM {
        ScopeRef::Team(id)
    } else {
        ScopeRef::User(id)
    }
}

async fn list<const KIND: bool>(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(scope): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    list_installations(&state, &uri, &headers, scope_of::<KIND>(&scope))
}

/// Graph answers a user install with 201 and a team install with 200, both without a body.
async fn install_app<const KIND: bool>(
    State(state): State<AppState>,
    Path(scope): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    install(&state, &headers, scope_of::<KIND>(&scope), &body)?;
    let status = if KIND == TEAM {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(status.into_response())
}

async fn get_one<const KIND: bool>(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path((scope, installation)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    get_installation(
        &state,
        &uri,
        &headers,
        scope_of::<KIND>(&scope),
        &installation,
    )
}

async fn uninstall<const KIND: bool>(
    State(state): State<AppState>,
    Path((scope, installation)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let scope = scope_of::<KIND>(&scope);
    change_installation(
        &state,
        &headers,
        Operation::GraphUninstall,
        scope,
        |world, caller| Ok(world.uninstall_in_scope(caller, scope, &installation)?),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn install(
    state: &AppState,
    headers: &HeaderMap,
    scope: ScopeRef<'_>,
    body: &Bytes,
) -> Result<(), GraphError> {
    let app = bound_catalog_app(body);
    change_installation(
        state,
        headers,
        Operation::GraphInstall,
        scope,
        |world, caller| {
            // a malformed body is refused once the call was admitted
            Ok(world.install_in_scope(caller, scope, &app?)?.1)
        },
    )
}

async fn upgrade_for_user(
    State(state): State<AppState>,
    Path((user, installation)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    let scope = ScopeRef::User(&user);
    let body_check = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(())
    } else {
        json_body(&body).map(drop)
    };
    change_installation(
        &state,
        &headers,
        Operation::GraphInstall,
        scope,
        |world, caller| {
            body_check?;
            Ok(world.upgrade_in_scope(caller, scope, &installation)?)
        },
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_installation_chat(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path((user, installation)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    let item = state.read(|world| -> Result<_, GraphError> {
        scope_call(
            &state,
            world,
            &caller,
            Operation::GraphRead,
            ScopeRef::User(&user),
        )?;
        let tenant = world.tenant_of(&caller)?;
        Ok(chat_json(
            tenant,
            tenant.chat_of_installation(&caller, &user, &installation)?,
        ))
    })?;
    entity(&uri, &super::chats::CHATS, "chats/$entity", item)
}
