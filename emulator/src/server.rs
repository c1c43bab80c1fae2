//! The listener: the router that merges every surface, and serving it (plain http or TLS) until
//! the emulator's [`Shutdown`].

pub use crate::emulator::{Emulator, EmulatorBuilder, EmulatorHandle};
use crate::shutdown::Shutdown;
pub use crate::state::{AppState, BotAuth};
use crate::{control, graph, identity};
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tokio::net::TcpListener;

pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/v1.0", graph::router())
        .nest("/beta", graph::router())
        .nest("/amer/v3", crate::connector::router())
        .nest("/_emulator", control::router())
        .merge(identity::routes::router())
        .fallback(|uri: axum::http::Uri| async move {
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": {"code": "NotFound", "message": format!("No emulated service at {}. Graph is under /v1.0 and /beta, the Bot Connector under /amer/v3, tokens under /{{tenant}}/oauth2/v2.0/token.", uri.path())}})),
            )
                .into_response()
        })
        .with_state(state)
}

/// Accepts TLS connections until told to stop; connections already open finish on their own.
pub(crate) async fn serve_tls(
    listener: TcpListener,
    app: Router,
    identity: crate::tls::TlsIdentity,
    stopped: Shutdown,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server.clone());
    loop {
        let accepted = tokio::select! {
            () = stopped.triggered() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, peer)) = accepted else { continue };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client that does not trust the authority, or speaks plain http, fails here.
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let served =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
