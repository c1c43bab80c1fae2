//! `GET /appCatalogs/teamsApps` (with `$filter` and `$expand=appDefinitions`) and one app.

use super::odata::EntitySet;
use super::{GraphError, authenticate, collection, entity};
use crate::state::AppState;
use crate::tenant::{CatalogApp, permissions};
use axum::Router;
use axum::extract::{OriginalUri, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/appCatalogs/teamsApps", get(list_teams_apps))
        .route("/appCatalogs/teamsApps/{app}", get(get_teams_app))
}

pub const TEAMS_APPS: EntitySet = EntitySet {
    type_name: "microsoft.graph.teamsApp",
    filters: &[
        "id",
        "externalId",
        "distributionMethod",
        "displayName",
        "appDefinitions/any(teamsAppId)",
        "appDefinitions/any(azureADAppId)",
        "appDefinitions/any(bot/id)",
    ],
    navigation: &["appDefinitions"],
    page_size: 100,
};

/// The app's current definition, as `appDefinitions` and `teamsAppDefinition` show it.
pub fn definition_json(app: &CatalogApp) -> Value {
    json!({
        "id": app.definition_id(),
        "teamsAppId": app.id.to_string(),
        "azureADAppId": app.web_application_id.map(|id| id.to_string()),
        "displayName": app.display_name,
        "version": app.version,
        "requiredResourceSpecificApplicationPermissions": [],
        "publishingState": "published",
        "shortDescription": app.short_description,
        "description": app.description,
        "lastModifiedDateTime": null,
        "createdBy": null,
        "authorization": { "requiredPermissionSet": { "resourceSpecificPermissions": [] } },
        "bot": app.bot_id.map(|id| json!({ "id": id.to_string() })),
    })
}

pub fn teams_app_json(app: &CatalogApp) -> Value {
    json!({
        "id": app.id.to_string(),
        "externalId": app.external_id.to_string(),
        "displayName": app.display_name,
        "distributionMethod": app.distribution_method.as_str(),
        "appDefinitions": [definition_json(app)],
    })
}

async fn list_teams_apps(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    super::admit(&state, &caller, crate::limits::Operation::GraphRead, None)?;
    caller.authorize(&permissions::READ_APP_CATALOG)?;
    let items = state.read(|world| -> Result<_, GraphError> {
        Ok(world
            .tenant_of(&caller)?
            .catalog()
            .iter()
            .map(teams_app_json)
            .collect())
    })?;
    collection(&state, &uri, &TEAMS_APPS, "appCatalogs/teamsApps", items)
}

async fn get_teams_app(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let caller = authenticate(&state, &headers)?;
    super::admit(&state, &caller, crate::limits::Operation::GraphRead, None)?;
    caller.authorize(&permissions::READ_APP_CATALOG)?;
    let item = state.read(|world| -> Result<_, GraphError> {
        Ok(teams_app_json(world.tenant_of(&caller)?.catalog_app(&app)?))
    })?;
    entity(&uri, &TEAMS_APPS, "appCatalogs/teamsApps/$entity", item)
}
