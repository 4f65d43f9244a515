//! The admin HTTP server: `/metrics`, `/healthz`, `/readyz`.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;

use super::{Health, Metrics, Role};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Parses a listen address such as `0.0.0.0:8080`, `[::]:8080` or
/// `localhost:8080` (resolved; the first address wins). Usable as a clap
/// `value_parser`.
pub fn parse_listen_addr(raw: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = raw.parse() {
        return Ok(addr);
    }
    raw.to_socket_addrs()
        .with_context(|| format!("listen address {raw:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("listen address {raw:?} resolves to no address"))
}

#[derive(Clone)]
struct AdminState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// Binds `addr` (port 0 picks a free port) and serves until `shutdown`
/// resolves. Returns the bound address and the server task.
pub async fn serve_admin(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics address {addr}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz_handler))
        .with_state(AdminState { health, metrics });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    Ok((bound, task))
}

async fn metrics_handler(State(state): State<AdminState>) -> Response {
    state
        .metrics
        .set_leader(state.health.role() == Role::Leader);
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn readyz_handler(State(state): State<AdminState>) -> Response {
    match state.health.readiness() {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_addr("0.0.0.0:8080").ok(),
            Some(SocketAddr::from(([0, 0, 0, 0], 8080)))
        );
        assert_eq!(
            parse_listen_addr("[::]:9").ok(),
            Some("[::]:9".parse().expect("v6"))
        );
        let local = parse_listen_addr("localhost:8080").expect("localhost resolves");
        assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
        assert!(parse_listen_addr("8080").is_err());
        assert!(parse_listen_addr("localhost").is_err());
    }
}
