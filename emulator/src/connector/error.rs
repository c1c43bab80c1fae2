//! The Connector's error envelope: `{"error":{"code","message"}}`.

use crate::tenant::{ConversationError, TenantError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorError {
    pub status: StatusCode,
    pub code: std::borrow::Cow<'static, str>,
    pub message: String,
    /// Seconds for a `Retry-After` header (throttling, injected faults).
    pub retry_after: Option<u64>,
}

impl ConnectorError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadArgument", message)
    }

    pub fn unauthorized(detail: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            format!("Authorization has been denied for this request. {detail}"),
        )
    }

    pub fn for_status(status: StatusCode, detail: &str) -> Self {
        let code = match status.as_u16() {
            400 | 415 | 422 => "BadArgument",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            413 => "MessageSizeTooBig",
            429 => "Throttled",
            _ => "ServiceError",
        };
        let message = if detail.trim().is_empty() {
            status.canonical_reason().unwrap_or("Error").to_string()
        } else {
            detail.trim().to_string()
        };
        Self::new(status, code, message)
    }
}

impl From<ConversationError> for ConnectorError {
    fn from(e: ConversationError) -> Self {
        use StatusCode as S;
        match e {
            ConversationError::ConversationNotFound(_) => Self::new(
                S::NOT_FOUND,
                "ConversationNotFound",
                "Conversation not found.",
            ),
            ConversationError::ActivityNotFound(id) => Self::new(
                S::NOT_FOUND,
                "ActivityNotFoundInConversation",
                format!("Activity '{id}' not found in the conversation."),
            ),
            ConversationError::MemberNotFound(id) => Self::new(
                S::NOT_FOUND,
                "MemberNotFoundInConversation",
                format!("Member '{id}' not found in the conversation."),
            ),
            ConversationError::BotNotInRoster => Self::new(
                S::FORBIDDEN,
                "BotNotInConversationRoster",
                "The bot is not part of the conversation roster.",
            ),
            ConversationError::NotInstalledForUser => Self::new(
                S::FORBIDDEN,
                "ForbiddenOperationException",
                "Bot is not installed in user's personal scope",
            ),
            ConversationError::BlockedByUser => Self::new(
                S::FORBIDDEN,
                "ConversationBlockedByUser",
                "User blocked the conversation with the bot.",
            ),
            ConversationError::BadArgument(m) => Self::bad_argument(m),
        }
    }
}

impl From<TenantError> for ConnectorError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::UserNotFound(_)
            | TenantError::TeamNotFound(_)
            | TenantError::ChannelNotFound(_)
            | TenantError::ChatNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "ConversationNotFound", e.to_string())
            }
            other => Self::bad_argument(other.to_string()),
        }
    }
}

impl From<crate::limits::Refusal> for ConnectorError {
    fn from(r: crate::limits::Refusal) -> Self {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let code = match (r.code, r.status) {
            (Some(code), _) => code.into(),
            (None, 412) => "PreconditionFailed".into(),
            (None, 429) => "Throttled".into(),
            (None, 503) => "ServiceUnavailable".into(),
            (None, 504) => "GatewayTimeout".into(),
            (None, s) if s >= 500 => "ServiceError".into(),
            (None, _) => Self::for_status(status, "").code,
        };
        Self {
            status,
            code,
            message: r.message,
            retry_after: r.retry_after,
        }
    }
}

impl IntoResponse for ConnectorError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
