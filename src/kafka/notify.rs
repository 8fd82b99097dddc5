//! Dispatch's [`Deliver`] over the real channels: the notifiers of
//! `receivers:` in klaxon.yaml, through the [`Deliverer`] (rate limits,
//! digests, retries), on a tokio runtime of their own.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

use super::dispatch::{Deliver, Delivered};
use crate::alerts::Notification;
use crate::config::receivers::ReceiversConfig;
use crate::metrics::Metrics;
use crate::notify::deliver::{Deliverer, Outcome};

/// The notifiers' runtime: one thread drives every receiver's task, apart
/// from the consumer and dispatch threads, until [`Channels::stop`].
pub struct Channels {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Channels {
    pub fn start() -> std::io::Result<Channels> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                let _ = rt.block_on(rx);
            })?;
        Ok(Channels {
            handle,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Builds the receivers' notifiers and starts their tasks here.
    pub fn deliver(
        &self,
        receivers: &ReceiversConfig,
        metrics: Metrics,
        audit: Option<&PathBuf>,
    ) -> anyhow::Result<NotifyDeliver> {
        let _in = self.handle.enter();
        let mut deliverer = Deliverer::new(receivers, metrics)?;
        let outcomes = deliverer
            .outcomes()
            .expect("a new deliverer has its outcomes");
        let audit = match audit {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => None,
        };
        Ok(NotifyDeliver {
            deliverer,
            outcomes,
            pending: HashMap::new(),
            audit,
        })
    }

    /// Stops the runtime; call after dispatch has stopped (what is still
    /// queued was saved in the notification log and is sent after a
    /// restart).
    pub fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Hands notifications to the [`Deliverer`] and reports its outcomes to
/// dispatch, which marks a notification sent only when its channel
/// accepted it.
pub struct NotifyDeliver {
    deliverer: Deliverer,
    outcomes: UnboundedReceiver<Outcome>,
    /// Submitted and not yet reported, by id.
    pending: HashMap<String, Notification>,
    /// `dispatch.outbox`: every accepted notification, as a JSON line.
    audit: Option<std::fs::File>,
}

impl Deliver for NotifyDeliver {
    fn submit(&mut self, n: &Notification, thread: Option<&str>) {
        if self.pending.insert(n.id.clone(), n.clone()).is_some() {
            return; // already with the deliverer
        }
        self.deliverer.submit(n.clone(), thread.map(str::to_string));
    }

    fn poll(&mut self, out: &mut Vec<Delivered>) {
        while let Ok(o) = self.outcomes.try_recv() {
            // Withdrawn (cancelled) ids are no longer pending: their
            // late outcomes are dropped.
            let Some(n) = self.pending.remove(&o.id) else {
                continue;
            };
            let result = match o.result {
                Ok(receipt) => {
                    tracing::info!(id = %n.id, receiver = %n.receiver, target = n.target.as_deref().unwrap_or(""), incident = %n.incident, kind = n.kind.as_str(), attempts = o.attempts, digest = o.digest, "notification sent");
                    if let Some(f) = &mut self.audit {
                        let mut line = serde_json::to_vec(&n).expect("notifications serialize");
                        line.push(b'\n');
                        if let Err(e) = f.write_all(&line) {
                            tracing::warn!(error = %e, "cannot append to dispatch.outbox");
                        }
                    }
                    Ok(receipt.thread)
                }
                Err(f) => Err(f.to_string()),
            };
            out.push(Delivered { id: o.id, result });
        }
    }

    fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn cancel(&mut self, ids: &BTreeSet<String>) {
        let mut mine = BTreeSet::new();
        for id in ids {
            if self.pending.remove(id).is_some() {
                mine.insert(id.clone());
            }
        }
        if !mine.is_empty() {
            let queued = self.deliverer.cancel(&mine);
            tracing::info!(
                withdrawn = mine.len(),
                queued,
                "notifications withdrawn from the channels"
            );
        }
    }
}
