//! `POST /api/install`: proactive installation for users who never opened the app, the Graph
//! flow of Microsoft's docs: app token → is the app installed for the user? → install it (409
//! counts as installed) → the installation's chat id → a welcome through the Connector to that
//! chat unless the user was already welcomed. The welcome is claimed in the store first, so the
//! install events Teams sends meanwhile and a second run never welcome the same user twice.

use futures::StreamExt;
use serde::Deserialize;

use crate::cards;
use crate::graph::{GraphError, GraphUser, InstallResult};
use crate::notify::{RecipientResult, Report};
use crate::state::{BotState, Delivery, Outcome};
use crate::store::{ConversationReference, Scope, StoreError, User, UserSighting, UserStatus};

/// The body of `POST /api/install`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InstallRequest {
    /// Entra object ids or UPNs; absent means every user in the tenant.
    #[serde(default)]
    pub users: Option<Vec<String>>,
}

/// Why the install run as a whole could not start.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the app (manifest id {0}) is not in the tenant's app catalog")]
    NotInCatalog(String),
    #[error("graph: {0}")]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The catalog id of the bot's app, looked up once by manifest id.
async fn catalog_app_id(state: &BotState) -> Result<String, InstallError> {
    let mut cached = state.catalog_app_id.lock().await;
    if let Some(id) = cached.as_ref() {
        return Ok(id.clone());
    }
    let id = state
        .graph
        .find_catalog_app(&state.config.manifest_id)
        .await?
        .ok_or_else(|| InstallError::NotInCatalog(state.config.manifest_id.clone()))?;
    *cached = Some(id.clone());
    Ok(id)
}

/// Installs the app for the requested users (or the whole tenant) and welcomes each once.
pub async fn install(state: &BotState, request: &InstallRequest) -> Result<Report, InstallError> {
    let catalog_id = catalog_app_id(state).await?;
    let targets: Vec<(String, Result<GraphUser, String>)> = match &request.users {
        None => state
            .graph
            .list_users()
            .await?
            .into_iter()
            .map(|u| {
                (
                    u.user_principal_name
                        .clone()
                        .unwrap_or_else(|| u.id.clone()),
                    Ok(u),
                )
            })
            .collect(),
        Some(ids) => {
            let lookups = futures::stream::iter(ids.iter().cloned())
                .map(|id| async move {
                    let found = match state.graph.get_user(id.trim()).await {
                        Ok(Some(user)) => Ok(user),
                        Ok(None) => Err(format!("user {id:?} not found in the tenant")),
                        // A Graph that cannot look users up still takes the id as given.
                        Err(_) => Ok(GraphUser {
                            id: id.trim().to_owned(),
                            ..Default::default()
                        }),
                    };
                    (id, found)
                })
                .buffered(state.config.max_concurrency.max(1));
            lookups.collect().await
        }
    };
    let newly_installed = std::sync::atomic::AtomicUsize::new(0);
    let results = futures::stream::iter(targets)
        .map(|(requested, user)| {
            let catalog_id = catalog_id.clone();
            let newly_installed = &newly_installed;
            async move {
                match user {
                    Err(reason) => RecipientResult::for_user(
                        &requested,
                        None,
                        Delivery::skipped(Outcome::Failed, &reason),
                    ),
                    Ok(graph_user) => {
                        let (user, delivery, installed) =
                            install_for_user(state, &graph_user, &catalog_id).await;
                        if installed {
                            newly_installed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        let mut result =
                            RecipientResult::for_user(&requested, user.as_ref(), delivery);
                        if result.aad_object_id.is_none() {
                            result.aad_object_id = Some(graph_user.id.clone());
                        }
                        result
                    }
                }
            }
        })
        .buffered(state.config.max_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut report = Report::from_results(results);
    report.already_welcomed.get_or_insert(0);
    report.installed = Some(newly_installed.into_inner());
    Ok(report)
}

/// One user's install and welcome. Returns the stored user, the outcome, and whether the app
/// was newly installed.
async fn install_for_user(
    state: &BotState,
    graph_user: &GraphUser,
    catalog_id: &str,
) -> (Option<User>, Delivery, bool) {
    let user = match state.store.upsert_user(&UserSighting {
        aad_object_id: Some(graph_user.id.clone()),
        upn: graph_user.user_principal_name.clone(),
        name: graph_user.display_name.clone(),
        tenant_id: Some(state.config.tenant_id.clone()),
        ..Default::default()
    }) {
        Ok(user) => user,
        Err(error) => {
            return (
                None,
                Delivery::skipped(Outcome::Failed, &error.to_string()),
                false,
            );
        }
    };
    if user.opted_out {
        return (
            Some(user),
            Delivery::skipped(Outcome::OptedOut, "the user opted out"),
            false,
        );
    }
    if user.status == UserStatus::Blocked {
        return (
            Some(user),
            Delivery::skipped(Outcome::Blocked, "the user blocked the bot"),
            false,
        );
    }
    let has_reference = matches!(state.store.personal_reference(user.user_key), Ok(Some(_)));
    if user.welcomed && has_reference {
        return (
            Some(user),
            Delivery::skipped(Outcome::AlreadyWelcomed, "already installed and welcomed"),
            false,
        );
    }

    let (installation_id, installed) =
        match ensure_installed(state, &graph_user.id, catalog_id).await {
            Ok(found) => found,
            Err(error) => {
                let outcome = match error.status() {
                    Some(404) => Outcome::NotInstalled,
                    _ => Outcome::Failed,
                };
                return (
                    Some(user),
                    Delivery::skipped(outcome, &error.to_string()),
                    false,
                );
            }
        };
    if let Err(error) = state.store.set_status(user.user_key, UserStatus::Active) {
        return (
            Some(user),
            Delivery::skipped(Outcome::Failed, &error.to_string()),
            installed,
        );
    }

    // The install events may have arrived (and welcomed the user) while Graph answered.
    let claimed = match state.store.claim_welcome(user.user_key) {
        Ok(claimed) => claimed,
        Err(error) => {
            return (
                Some(user),
                Delivery::skipped(Outcome::Failed, &error.to_string()),
                installed,
            );
        }
    };
    if !claimed {
        let mut delivery =
            Delivery::skipped(Outcome::Sent, "welcomed through the installation event");
        if let Ok(Some(reference)) = state.store.personal_reference(user.user_key) {
            delivery.conversation_id = Some(reference.conversation_id);
        }
        return (Some(user), delivery, installed);
    }

    let reference = match state.store.personal_reference(user.user_key) {
        Ok(Some(reference)) => reference,
        _ => match state
            .graph
            .installation_chat(&graph_user.id, &installation_id)
            .await
        {
            Ok(chat_id) => {
                // The Connector takes Graph's 19:…@unq.gbl.spaces chat id as a conversation id.
                let reference = ConversationReference {
                    conversation_id: chat_id,
                    scope: Scope::Personal,
                    user_key: Some(user.user_key),
                    team_id: None,
                    tenant_id: Some(state.config.tenant_id.clone()),
                    service_url: user
                        .service_url
                        .clone()
                        .unwrap_or_else(|| state.config.default_service_url.clone()),
                    channel_id: "msteams".to_owned(),
                    bot_id: state.bot_id(),
                    bot_name: Some(state.config.bot_name.clone()),
                };
                if let Err(error) = state.store.save_reference(&reference) {
                    tracing::warn!(%error, "could not store the chat's conversation reference");
                }
                reference
            }
            Err(error) => {
                let _ = state.store.release_welcome(user.user_key);
                return (
                    Some(user),
                    Delivery::skipped(Outcome::Failed, &error.to_string()),
                    installed,
                );
            }
        },
    };
    let welcome = cards::personal_welcome(&state.config.bot_name);
    match state.send_to_reference(&reference, welcome).await {
        Ok(activity_id) => (
            Some(user),
            Delivery {
                outcome: Outcome::Sent,
                conversation_id: Some(reference.conversation_id),
                activity_id: Some(activity_id).filter(|id| !id.is_empty()),
                reason: None,
            },
            installed,
        ),
        Err(error) => {
            let _ = state.store.release_welcome(user.user_key);
            let delivery = state.delivery_failed(&user, Some(reference.conversation_id), error);
            (Some(user), delivery, installed)
        }
    }
}

/// The user's installation id, installing the app first if needed; true if installed now.
async fn ensure_installed(
    state: &BotState,
    user_id: &str,
    catalog_id: &str,
) -> Result<(String, bool), GraphError> {
    let manifest_id = &state.config.manifest_id;
    if let Some(id) = state
        .graph
        .find_installation(user_id, manifest_id, None)
        .await?
    {
        return Ok((id, false));
    }
    let result = state.graph.install_app(user_id, catalog_id).await?;
    let id = match state
        .graph
        .find_installation(user_id, manifest_id, None)
        .await?
    {
        Some(id) => id,
        // Some tenants list installations by catalog id only.
        None => state
            .graph
            .find_installation(user_id, manifest_id, Some(catalog_id))
            .await?
            .ok_or_else(|| {
                GraphError::Body("installed, but the installation is not listed".to_owned())
            })?,
    };
    Ok((id, result == InstallResult::Installed))
}
