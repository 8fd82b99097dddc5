//! The API's [`Backend`] in `klaxon run`: the dispatch state of the alerts
//! partitions this member owns, and the silences topic.
//!
//! Reads answer for this member only: with several members, each one
//! knows the incidents of its own partitions (silences are the same on
//! all). Writes are durable before they return: a silence is on the
//! silences topic, an acknowledgement is in the partition's snapshot.

use std::sync::Arc;

use super::dispatch::{wall_ms, DispatchShared};
use std::collections::BTreeSet;

use super::store::{put_ack, put_silence, AckRequest};
use crate::alerts::group::Incident;
use crate::alerts::silence::Silence;
use crate::alerts::{AckErrorKind, Alert, Notification};
use crate::api::{ApiError, ApiErrorKind, Backend, BoxFuture};
use crate::model::Millis;

pub struct KafkaBackend {
    shared: Arc<DispatchShared>,
}

impl KafkaBackend {
    pub fn new(shared: Arc<DispatchShared>) -> Self {
        KafkaBackend { shared }
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ApiErrorKind::Unavailable, e.to_string())
}

impl KafkaBackend {
    /// The incidents of the partitions owned here (live) and of the others
    /// (their last snapshot).
    fn all_incidents(&self) -> Vec<Incident> {
        let (mut v, owned): (Vec<Incident>, BTreeSet<i32>) = {
            let parts = self.shared.lock_parts();
            (
                parts
                    .values()
                    .flat_map(|p| p.dispatcher.incidents().cloned())
                    .collect(),
                parts.keys().copied().collect(),
            )
        };
        for snap in self.shared.view.others(&owned) {
            v.extend(snap.state.incidents);
        }
        v
    }
}

impl Backend for KafkaBackend {
    fn alerts(&self) -> Vec<Alert> {
        self.all_incidents()
            .into_iter()
            .flat_map(|i| i.alerts.into_values())
            .collect()
    }

    fn incidents(&self) -> Vec<Incident> {
        let mut v = self.all_incidents();
        v.sort_by(|a, b| (a.opened_at, &a.id).cmp(&(b.opened_at, &b.id)));
        v
    }

    fn silences(&self) -> Vec<Silence> {
        let mut v = self.shared.config().silences;
        v.extend(self.shared.silences.all());
        v
    }

    fn notifications(&self, limit: usize) -> Vec<Notification> {
        let parts = self.shared.lock_parts();
        let mut v: Vec<Notification> = parts.values().flat_map(|p| p.history().cloned()).collect();
        v.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
        v.truncate(limit);
        v
    }

    fn create_silence(&self, silence: Silence) -> BoxFuture<'_, Result<Silence, ApiError>> {
        Box::pin(async move {
            if self
                .shared
                .config()
                .silences
                .iter()
                .any(|s| s.id == silence.id)
            {
                return Err(ApiError::new(
                    ApiErrorKind::Conflict,
                    format!("silence {} is defined in a silence file", silence.id),
                ));
            }
            self.create_silence_unchecked(silence).await
        })
    }

    fn expire_silence(&self, id: String) -> BoxFuture<'_, Result<Silence, ApiError>> {
        Box::pin(async move {
            if self.shared.config().silences.iter().any(|s| s.id == id) {
                return Err(ApiError::new(
                    ApiErrorKind::Conflict,
                    format!("silence {id} is defined in a silence file; remove it there"),
                ));
            }
            let Some(mut s) = self.shared.silences.get(&id) else {
                return Err(ApiError::new(
                    ApiErrorKind::NotFound,
                    format!("no silence {id}"),
                ));
            };
            let now = wall_ms();
            if s.ends_at <= now {
                return Err(ApiError::new(
                    ApiErrorKind::Conflict,
                    format!("silence {id} already ended"),
                ));
            }
            s.expire(now);
            self.create_silence_unchecked(s).await
        })
    }

    fn ack(&self, incident: String, by: String) -> BoxFuture<'_, Result<Incident, ApiError>> {
        Box::pin(async move {
            let shared = Arc::clone(&self.shared);
            tokio::task::spawn_blocking(move || ack(&shared, &incident, &by))
                .await
                .map_err(|e| ApiError::new(ApiErrorKind::Internal, e.to_string()))?
        })
    }
}

impl KafkaBackend {
    async fn create_silence_unchecked(&self, silence: Silence) -> Result<Silence, ApiError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            put_silence(&shared.producer, &shared.silences_topic, &silence).map_err(unavailable)?;
            // Visible here at once; the topic brings it to the other members.
            shared.silences.apply(&silence.id, Some(silence.clone()));
            Ok(silence)
        })
        .await
        .map_err(|e| ApiError::new(ApiErrorKind::Internal, e.to_string()))?
    }
}

fn ack(shared: &DispatchShared, incident: &str, by: &str) -> Result<Incident, ApiError> {
    let now = wall_ms();
    let result = shared
        .with_incident(incident, now, |d| Some(d.ack(incident, by, now).cloned()))
        .map_err(unavailable)?;
    match result {
        Some(Ok(i)) => {
            tracing::info!(incident, by, "incident acknowledged");
            Ok(i)
        }
        Some(Err(e)) => Err(ApiError::new(
            match e.kind {
                AckErrorKind::NotFound => ApiErrorKind::NotFound,
                AckErrorKind::AlreadyAcked | AckErrorKind::AlreadyResolved => {
                    ApiErrorKind::Conflict
                }
            },
            e.to_string(),
        )),
        // Owned by another member: hand it over through the silences topic.
        None => forward(shared, incident, by, now),
    }
}

fn forward(
    shared: &DispatchShared,
    incident: &str,
    by: &str,
    now: Millis,
) -> Result<Incident, ApiError> {
    let owned: BTreeSet<i32> = shared.lock_parts().keys().copied().collect();
    let Some(mut inc) = shared
        .view
        .others(&owned)
        .into_iter()
        .flat_map(|s| s.state.incidents)
        .find(|i| i.id == incident)
    else {
        return Err(ApiError::new(
            ApiErrorKind::NotFound,
            format!("no live incident {incident}"),
        ));
    };
    if let Some(who) = &inc.acked_by {
        return Err(ApiError::new(
            ApiErrorKind::Conflict,
            format!("incident {incident} was already acknowledged by {who}"),
        ));
    }
    if !inc.alerts.values().any(Alert::is_firing) {
        return Err(ApiError::new(
            ApiErrorKind::Conflict,
            format!("incident {incident} has resolved"),
        ));
    }
    let req = AckRequest {
        incident: incident.to_string(),
        by: by.to_string(),
        at: now,
    };
    put_ack(
        &shared.producer,
        &shared.silences_topic,
        incident,
        Some(&req),
    )
    .map_err(unavailable)?;
    tracing::info!(
        incident,
        by,
        "acknowledgement handed to the incident's owner"
    );
    inc.acked_by = Some(by.to_string());
    inc.acked_at = Some(now);
    Ok(inc)
}
