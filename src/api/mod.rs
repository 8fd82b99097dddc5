//! The dispatch API of `klaxon run`: alerts, incidents, silences, the
//! notification history and acknowledgement, as JSON over HTTP.
//!
//! The handlers only see a [`Backend`]: in `klaxon run` it is the dispatch
//! state of the partitions this member owns (and the silences topic); in
//! tests it is an in-memory double. Reads are synchronous snapshots; writes
//! are futures because they go through Kafka (a silence is durable once the
//! silences topic has it).

pub mod slack;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

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
    /// 404: no such silence or incident (on this member).
    NotFound,
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
