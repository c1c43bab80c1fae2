//! The rules' own errors. Each surface (Graph, Connector) renders them in its own envelope.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TenantError {
    #[error("User Id '{0}' not found.")]
    UserNotFound(String),
    #[error("Team '{0}' not found.")]
    TeamNotFound(String),
    #[error("Channel '{0}' not found.")]
    ChannelNotFound(String),
    #[error("Teams app '{0}' was not found in the app catalog.")]
    AppNotInCatalog(String),
    #[error("The app is already installed.")]
    AlreadyInstalled,
    #[error("Installation '{0}' not found.")]
    InstallationNotFound(String),
    #[error("Chat '{0}' not found.")]
    ChatNotFound(String),
    /// Graph says "role" for application permissions and "scope" for delegated ones.
    #[error(
        "Missing {} permissions on the request. API requires one of '{required}'. {} on the request '{held}'.",
        if *.delegated { "scope" } else { "role" },
        if *.delegated { "Scopes" } else { "Roles" }
    )]
    MissingRole {
        required: String,
        held: String,
        delegated: bool,
    },
    #[error("AAD App Id '{app_id}' is not allowed to manage the Teams App '{teams_app}'.")]
    NotAllowedToManageApp { app_id: String, teams_app: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
}
