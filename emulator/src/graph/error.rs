//! Graph's error envelope: `{"error":{"code","message","innerError":{…}}}`.
//!
//! Handlers return a [`GraphError`] without `innerError`; the envelope middleware in
//! [`super`] adds the request's ids and date, so every error (ours, or a framework rejection)
//! leaves in the same shape.

use crate::identity::TokenProblem;
use crate::tenant::TenantError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Seconds for a `Retry-After` header (throttling, injected faults).
    pub retry_after: Option<u64>,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn unauthenticated(problem: &TokenProblem) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            problem.to_string(),
        )
    }

    pub fn not_supported(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotSupportedByEmulator",
            format!(
                "{method} {path} is not emulated by teams-emulator. See the README for the routes it serves."
            ),
        )
    }

    /// The code Graph uses for a bare status, for rejections that carry no code of their own.
    pub fn for_status(status: StatusCode, detail: &str) -> Self {
        let code = match status.as_u16() {
            400 => "BadRequest",
            401 => "InvalidAuthenticationToken",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            429 => "TooManyRequests",
            501 => "NotImplemented",
            s if s >= 500 => "InternalServerError",
            _ => "BadRequest",
        };
        let message = if detail.trim().is_empty() {
            status.canonical_reason().unwrap_or("Error").to_string()
        } else {
            detail.trim().to_string()
        };
        Self::new(status, code, message)
    }
}

impl From<TenantError> for GraphError {
    fn from(e: TenantError) -> Self {
        let status = match &e {
            TenantError::UserNotFound(_)
            | TenantError::TeamNotFound(_)
            | TenantError::ChannelNotFound(_)
            | TenantError::AppNotInCatalog(_)
            | TenantError::InstallationNotFound(_)
            | TenantError::ChatNotFound(_) => StatusCode::NOT_FOUND,
            TenantError::AlreadyInstalled => StatusCode::CONFLICT,
            TenantError::MissingRole { .. }
            | TenantError::NotAllowedToManageApp { .. }
            | TenantError::Forbidden(_) => StatusCode::FORBIDDEN,
            TenantError::BadRequest(_) => StatusCode::BAD_REQUEST,
        };
        let code = match status {
            StatusCode::NOT_FOUND => "NotFound",
            StatusCode::CONFLICT => "Conflict",
            StatusCode::FORBIDDEN => "Forbidden",
            _ => "BadRequest",
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<crate::limits::Refusal> for GraphError {
    fn from(r: crate::limits::Refusal) -> Self {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let code = r.code.unwrap_or_else(|| match r.status {
            429 => "TooManyRequests".into(),
            503 => "serviceNotAvailable".into(),
            504 => "gatewayTimeout".into(),
            s if s >= 500 => "generalException".into(),
            _ => Self::for_status(status, "").code,
        });
        Self {
            status,
            code,
            message: r.message,
            retry_after: r.retry_after,
        }
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
