//! The HTTP surface and the bot's lifecycle: routes, [`Bot::start`], [`BotHandle`] and graceful
//! shutdown.
//!
//! | route | what |
//! |---|---|
//! | `POST /api/messages` | the messaging endpoint Teams posts activities to |
//! | `POST /api/notify`, `GET /api/notify` | send a notification (GET: a default text to everyone) |
//! | `POST /api/install` | proactive install and welcome through Graph |
//! | `GET /healthz` | liveness |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::activity::Activity;
use crate::config::Config;
use crate::handlers::{check_activity, handle_activity};
use crate::install::{InstallError, InstallRequest, install};
use crate::notify::{NotifyRequest, notify};
use crate::state::BotState;

/// An error answer of the bot's own API: `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({ "error": { "code": self.code, "message": self.message } })),
        )
            .into_response()
    }
}

/// The bot's routes over its shared state.
pub fn router(state: Arc<BotState>) -> Router {
    Router::new()
        .route("/api/messages", post(messages))
        .route("/api/notify", post(notify_post).get(notify_get))
        .route("/api/install", post(install_post))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// `POST /api/messages`: authenticate, parse, route. 401 for a bad token, 400 for an
/// unreadable activity, 200 otherwise (unknown types included).
async fn messages(
    State(state): State<Arc<BotState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let authorization = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if state.validator.is_some() && authorization.is_none() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing Authorization header",
        ));
    }
    let activity: Activity = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadArgument",
            format!("unreadable activity: {e}"),
        )
    })?;
    if let Some(validator) = &state.validator {
        validator
            .validate(
                authorization.as_deref(),
                activity.service_url.as_deref().unwrap_or_default(),
                activity.channel_id.as_deref().unwrap_or_default(),
            )
            .await
            .map_err(|e| {
                tracing::info!(error = %e, "rejected an inbound activity");
                ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", e.to_string())
            })?;
    }
    check_activity(&activity)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BadArgument", e.0))?;
    handle_activity(&state, &activity).await.map_err(|e| {
        tracing::error!(error = %e, "activity handling failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceError",
            e.to_string(),
        )
    })?;
    Ok(StatusCode::OK)
}

fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadArgument",
            format!("unreadable request: {e}"),
        )
    })
}

async fn notify_post(
    State(state): State<Arc<BotState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: NotifyRequest = parse_body(&body)?;
    run_notify(&state, &request).await
}

async fn notify_get(State(state): State<Arc<BotState>>) -> Result<Response, ApiError> {
    run_notify(&state, &NotifyRequest::default()).await
}

async fn run_notify(state: &BotState, request: &NotifyRequest) -> Result<Response, ApiError> {
    let report = notify(state, request).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceError",
            e.to_string(),
        )
    })?;
    Ok(axum::Json(report).into_response())
}

async fn install_post(
    State(state): State<Arc<BotState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: InstallRequest = parse_body(&body)?;
    let report = install(&state, &request).await.map_err(|e| match e {
        InstallError::NotInCatalog(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "AppNotInCatalog", e.to_string())
        }
        InstallError::Graph(_) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "GraphError", e.to_string())
        }
        InstallError::Store(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceError",
            e.to_string(),
        ),
    })?;
    Ok(axum::Json(report).into_response())
}

/// The bot, for starting in-process.
pub struct Bot;

impl Bot {
    /// Opens the store, binds `config.listen` and serves until [`BotHandle::shutdown`].
    pub async fn start(config: Config) -> anyhow::Result<BotHandle> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let state = BotState::new(config)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(BotHandle {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A running bot.
pub struct BotHandle {
    addr: SocketAddr,
    state: Arc<BotState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl BotHandle {
    /// `http://HOST:PORT` of the bot (the messaging endpoint is `{url}/api/messages`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bot's state, for tests that look into the store.
    pub fn state(&self) -> &Arc<BotState> {
        &self.state
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for BotHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
