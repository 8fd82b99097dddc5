//! The HTTP endpoints of `klaxon run`: `/healthz`, `/readyz`, `/metrics`
//! (Prometheus text format), `POST /-/reload`, and the dispatch API under
//! `/api/v1/` (see [`crate::api`]) when dispatch runs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::registry::Registry;

use crate::kafka::consumer::Shared;
use crate::rules::reload::Reloader;

#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub registry: Arc<Registry>,
    pub reloader: Arc<Reloader>,
    /// The dispatch API (`None` when dispatch is off).
    pub api: Option<Router>,
}

pub fn router(mut state: AppState) -> Router {
    let api = state.api.take();
    let r = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/-/reload", post(reload))
        .with_state(state);
    match api {
        Some(api) => r.merge(api),
        None => r,
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.shared.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: partitions not assigned or not caught up\n",
        )
            .into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn reload(State(s): State<AppState>) -> Response {
    let r = s.reloader.clone();
    match tokio::task::spawn_blocking(move || r.reload("POST /-/reload")).await {
        Ok(Ok(n)) => (StatusCode::OK, format!("reloaded {n} rules\n")).into_response(),
        Ok(Err(errors)) => (StatusCode::BAD_REQUEST, format!("{errors}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serves until the process ends.
pub async fn serve(addr: SocketAddr, state: AppState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "http listening");
    axum::serve(listener, router(state)).await
}
