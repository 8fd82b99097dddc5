//! An in-memory [`Backend`]: the dispatch API's test double (and a way to
//! serve a fixed state). Writes are applied at once; the clock is passed in.

use std::sync::{Mutex, MutexGuard};

use super::{ApiError, ApiErrorKind, Backend, BoxFuture, Clock};
use crate::alerts::group::Incident;
use crate::alerts::silence::{Silence, SilenceState};
use crate::alerts::{Alert, Notification};

/// Incidents (their alerts are the API's alerts), silences and the
/// notification history, behind mutexes.
pub struct MemoryBackend {
    clock: Clock,
    incidents: Mutex<Vec<Incident>>,
    silences: Mutex<Vec<Silence>>,
    /// Oldest first.
    notifications: Mutex<Vec<Notification>>,
    /// (incident id, who) in the order they came.
    acks: Mutex<Vec<(String, String)>>,
    /// When set, every write fails with this (a broker that is down).
    fail_writes: Mutex<Option<ApiError>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryBackend {
    pub fn new(clock: Clock) -> MemoryBackend {
        MemoryBackend {
            clock,
            incidents: Mutex::default(),
            silences: Mutex::default(),
            notifications: Mutex::default(),
            acks: Mutex::default(),
            fail_writes: Mutex::default(),
        }
    }

    pub fn add_incident(&self, incident: Incident) {
        lock(&self.incidents).push(incident);
    }

    pub fn add_silence(&self, silence: Silence) {
        lock(&self.silences).push(silence);
    }

    /// Records a sent notification (the newest last).
    pub fn add_notification(&self, n: Notification) {
        lock(&self.notifications).push(n);
    }

    /// The acknowledgements received, in order.
    pub fn acks(&self) -> Vec<(String, String)> {
        lock(&self.acks).clone()
    }

    /// Makes every write fail with `error` (`None`: writes work again).
    pub fn fail_writes(&self, error: Option<ApiError>) {
        *lock(&self.fail_writes) = error;
    }

    fn check_writable(&self) -> Result<(), ApiError> {
        match &*lock(&self.fail_writes) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn do_expire(&self, id: &str) -> Result<Silence, ApiError> {
        self.check_writable()?;
        let now = (self.clock)();
        let mut silences = lock(&self.silences);
        let s = silences
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| ApiError::new(ApiErrorKind::NotFound, format!("no silence {id:?}")))?;
        if s.state(now) == SilenceState::Expired {
            return Err(ApiError::new(
                ApiErrorKind::Conflict,
                format!("silence {id:?} has already ended"),
            ));
        }
        s.expire(now);
        Ok(s.clone())
    }

    fn do_ack(&self, incident: &str, by: String) -> Result<Incident, ApiError> {
        self.check_writable()?;
        let found = lock(&self.incidents)
            .iter()
            .find(|i| i.id == incident)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    ApiErrorKind::NotFound,
                    format!("no live incident {incident:?}"),
                )
            })?;
        lock(&self.acks).push((incident.to_string(), by));
        Ok(found)
    }
}

impl Backend for MemoryBackend {
    fn alerts(&self) -> Vec<Alert> {
        lock(&self.incidents)
            .iter()
            .flat_map(|i| i.alerts.values().cloned())
            .collect()
    }

    fn incidents(&self) -> Vec<Incident> {
        lock(&self.incidents).clone()
    }

    fn silences(&self) -> Vec<Silence> {
        lock(&self.silences).clone()
    }

    fn notifications(&self, limit: usize) -> Vec<Notification> {
        lock(&self.notifications)
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    fn create_silence(&self, silence: Silence) -> BoxFuture<'_, Result<Silence, ApiError>> {
        let r = self.check_writable().map(|()| {
            lock(&self.silences).push(silence.clone());
            silence
        });
        Box::pin(async move { r })
    }

    fn expire_silence(&self, id: String) -> BoxFuture<'_, Result<Silence, ApiError>> {
        let r = self.do_expire(&id);
        Box::pin(async move { r })
    }

    fn ack(&self, incident: String, by: String) -> BoxFuture<'_, Result<Incident, ApiError>> {
        let r = self.do_ack(&incident, by);
        Box::pin(async move { r })
    }
}
