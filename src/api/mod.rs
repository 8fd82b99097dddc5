//! The dispatch API of `klaxon run`: alerts, incidents, silences, the
//! notification history and acknowledgement, as JSON over HTTP.
//!
//! The handlers only see a [`Backend`]: in `klaxon run` it is the dispatch
//! state of the partitions this member owns (and the silences topic); in
//! tests it is an in-memory double. Reads are synchronous snapshots; writes
//! are futures because they go through Kafka (a silence is durable once the
//! silences topic has it).
//!
//! ```text
//!  GET  /api/v1/alerts?filter=…&state=…   ─┐
//!  GET  /api/v1/incidents                  │ reads: open
//!  GET  /api/v1/silences                   │
//!  GET  /api/v1/notifications?limit=N      │
//!  GET  /api/v1/openapi.json              ─┘
//!  POST   /api/v1/silences                ─┐
//!  DELETE /api/v1/silences/{id}            │ writes: `Authorization: Bearer <http.token>`
//!  POST   /api/v1/incidents/{id}/ack      ─┘
//! ```
//!
//! - [`router`]: the routes (built from one table, [`routes::ROUTES`], that
//!   a test keeps equal to `schemas/openapi.json`).
//! - [`auth`]: the bearer token check for writes.
//! - [`silences`]: a new silence as posted → a validated [`Silence`].
//! - [`query`]: the alert filters (`filter=` matchers, `state=`).
//! - [`memory`]: an in-memory [`Backend`] for tests and demos.
//!
//! Every error is `{"error": {"kind": "...", "message": "..."}}` with the
//! status of its [`ApiErrorKind`].

pub mod auth;
pub mod memory;
pub mod query;
pub mod routes;
pub mod silences;
// Slack interactivity (buttons that ack or silence) lives in `slack.rs`,
// written separately; declare it here and merge its routes in
// `routes::router_with_clock` where marked.

#[cfg(test)]
pub(crate) mod tests;

pub mod slack;

use std::future::Future;
use std::pin::Pin;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub use routes::{router, router_with_clock, Clock};

use crate::alerts::group::Incident;
use crate::alerts::silence::Silence;
use crate::alerts::{Alert, Notification};

/// A boxed, sendable future (the backend's writes).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What went wrong with an API call; the kind picks the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorKind {
    /// 400: the request is malformed or invalid.
    BadRequest,
    /// 401: a write without the bearer token, or with a wrong one.
    Unauthorized,
    /// 403: writes are turned off (no `http.token` is configured).
    Forbidden,
    /// 404: no such silence or incident (on this member), or no such
    /// endpoint.
    NotFound,
    /// 405: the endpoint exists, the method does not (`Allow` lists them).
    MethodNotAllowed,
    /// 409: e.g. expiring a silence that already ended.
    Conflict,
    /// 503: the backend cannot write now (broker down, not assigned).
    Unavailable,
    /// 500.
    Internal,
}

/// An API error: a kind and a message for humans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
}

impl ApiErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ApiErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ApiErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ApiErrorKind::NotFound => StatusCode::NOT_FOUND,
            ApiErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiErrorKind::Conflict => StatusCode::CONFLICT,
            ApiErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(ApiErrorKind::BadRequest, message)
    }
}

/// The body of every error response.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a ApiError,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.kind.status(), axum::Json(ErrorBody { error: &self })).into_response();
        if self.kind == ApiErrorKind::Unauthorized {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"klaxon\""),
            );
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Where the API reads and writes dispatch state.
pub trait Backend: Send + Sync + 'static {
    /// Every alert of every live incident (firing, and resolved ones not
    /// yet flushed out).
    fn alerts(&self) -> Vec<Alert>;
    /// The live incidents.
    fn incidents(&self) -> Vec<Incident>;
    /// Silences from the API and from files (not recurring windows).
    fn silences(&self) -> Vec<Silence>;
    /// The most recent notifications accepted by their channel, newest
    /// first, at most `limit`.
    fn notifications(&self, limit: usize) -> Vec<Notification>;
    /// Stores a new silence (its `id` is set by the caller) and returns it
    /// once durable.
    fn create_silence(&self, silence: Silence) -> BoxFuture<'_, Result<Silence, ApiError>>;
    /// Ends a silence now; returns it as stored.
    fn expire_silence(&self, id: String) -> BoxFuture<'_, Result<Silence, ApiError>>;
    /// Acknowledges an incident: its escalation stops. `by` is who acked.
    fn ack(&self, incident: String, by: String) -> BoxFuture<'_, Result<Incident, ApiError>>;
}
