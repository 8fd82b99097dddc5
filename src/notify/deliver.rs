//! The delivery manager: queues, rate limits, digests and retries in front
//! of the [`Notifier`]s.
//!
//! One task per receiver. Each receiver keeps a FIFO queue per target
//! (channel, address, number) and sends one request at a time:
//!
//! 1. **Rate limits** (governor): the receiver's `rate_limit` and each
//!    target's `target_rate_limit`. A target over its limit waits; when it
//!    may send again, everything that queued up for it in the meantime
//!    (up to `max_digest`) goes out as **one digest** message. Nothing is
//!    dropped silently.
//! 2. **Retries**: transient errors (timeouts, 5xx, refused connections)
//!    back off exponentially from `retry.initial` to `retry.max`, with
//!    jitter (a random wait between half and all of the step). A 429 waits
//!    its `Retry-After`, and the whole receiver pauses with it. Transient
//!    failures are retried for as long as the receiver stays down; the
//!    backlog stays bounded by `max_queue`.
//! 3. **Permanent** errors (Slack `channel_not_found`, Twilio 21211, SMTP
//!    5xx) are not retried: the [`Outcome`] carries the reason, and a
//!    metric counts them.
//! 4. **Shedding**: a receiver with `max_queue` notifications waiting sheds
//!    the oldest one for each new one, reported as [`Failure::Shed`],
//!    counted and logged.
//!
//! Every submitted notification ends in exactly one [`Outcome`] (unless the
//! deliverer is dropped first): accepted (with the channel's [`Receipt`]),
//! failed permanently, or shed. The caller marks a notification sent only
//! on acceptance.
//!
//! Follow-ups thread: the deliverer remembers the last thread (Slack `ts`,
//! email `Message-ID`) it got per incident, and uses it when a follow-up
//! is submitted without one (e.g. submitted before the first message was
//! accepted).
//!
//! Time comes from a [`Timer`]: tests use a [`ManualTimer`] so that backoffs
//! and rate limits run in virtual time.
//!
//! [`ManualTimer`]: super::time::ManualTimer

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::time::{GovClock, RealTimer, Timer};
use super::{build, BuildError, Message, Notifier, NotifyError, NotifyErrorKind, Receipt};
use crate::alerts::{Alert, Kind, Notification, NotifiedAlerts, Status};
use crate::config::receivers::{Delivery, Rate, ReceiversConfig};
use crate::metrics::{Metrics, NotifyFailureLabels, ReceiverLabel};
use crate::model::{Fnv, Ordered};

/// What became of one submitted notification.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// `Notification.id`.
    pub id: String,
    pub receiver: String,
    pub incident: String,
    pub target: Option<String>,
    /// Accepted by the channel (mark it sent), or not.
    pub result: Result<Receipt, Failure>,
    /// Attempts made (0 when shed before any).
    pub attempts: u32,
    /// How many notifications went out together with this one (1: alone).
    pub digest: usize,
}

/// Why a notification was not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The channel refused it for good (bad channel, number, credentials…).
    Permanent { reason: String },
    /// Dropped to keep the receiver's backlog within `max_queue`.
    Shed { reason: String },
    /// No receiver of that name in `receivers:`.
    UnknownReceiver,
}

impl Failure {
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Permanent { .. } => "permanent",
            Failure::Shed { .. } => "shed",
            Failure::UnknownReceiver => "unknown_receiver",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Permanent { reason } => write!(f, "permanent: {reason}"),
            Failure::Shed { reason } => write!(f, "shed: {reason}"),
            Failure::UnknownReceiver => f.write_str("unknown receiver"),
        }
    }
}

struct Pending {
    n: Notification,
    thread: Option<String>,
    seq: u64,
}

#[derive(Default)]
struct Queue {
    targets: BTreeMap<String, VecDeque<Pending>>,
    len: usize,
    seq: u64,
}

struct Shared {
    name: String,
    delivery: Delivery,
    queue: Mutex<Queue>,
    wake: Notify,
    closed: AtomicBool,
    /// Ids withdrawn while their batch was in flight (see
    /// [`Deliverer::cancel`]); the worker drops them before its next try.
    cancelled: Mutex<HashSet<String>>,
    outcomes: UnboundedSender<Outcome>,
    metrics: Metrics,
}

impl Shared {
    fn label(&self) -> ReceiverLabel {
        ReceiverLabel {
            receiver: self.name.clone(),
        }
    }

    fn emit(
        &self,
        n: &Notification,
        result: Result<Receipt, Failure>,
        attempts: u32,
        digest: usize,
    ) {
        let _ = self.outcomes.send(Outcome {
            id: n.id.clone(),
            receiver: self.name.clone(),
            incident: n.incident.clone(),
            target: n.target.clone(),
            result,
            attempts,
            digest,
        });
    }
}

/// The delivery manager. Built on a tokio runtime, whose tasks it uses.
pub struct Deliverer {
    receivers: BTreeMap<String, Arc<Shared>>,
    tasks: Vec<JoinHandle<()>>,
    outcomes_tx: UnboundedSender<Outcome>,
    outcomes_rx: Option<UnboundedReceiver<Outcome>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("receivers", &self.receivers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Deliverer {
    /// Builds every receiver's notifier and starts its task on the current
    /// tokio runtime (panics outside one).
    pub fn new(receivers: &ReceiversConfig, metrics: Metrics) -> Result<Deliverer, BuildError> {
        let mut list = Vec::new();
        for r in receivers.receivers.values() {
            list.push((r.name.clone(), r.delivery.clone(), Arc::from(build(r)?)));
        }
        Ok(Deliverer::with_notifiers(
            list,
            metrics,
            Arc::new(RealTimer::default()),
        ))
    }

    /// A deliverer over given notifiers and a given timer (tests, and
    /// callers with their own channels).
    pub fn with_notifiers(
        notifiers: Vec<(String, Delivery, Arc<dyn Notifier>)>,
        metrics: Metrics,
        timer: Arc<dyn Timer>,
    ) -> Deliverer {
        let (tx, rx) = unbounded_channel();
        let mut receivers = BTreeMap::new();
        let mut tasks = Vec::new();
        for (name, delivery, notifier) in notifiers {
            let shared = Arc::new(Shared {
                name: name.clone(),
                delivery,
                queue: Mutex::new(Queue::default()),
                wake: Notify::new(),
                closed: AtomicBool::new(false),
                cancelled: Mutex::new(HashSet::new()),
                outcomes: tx.clone(),
                metrics: metrics.clone(),
            });
            let worker = Worker::new(shared.clone(), notifier, timer.clone());
            tasks.push(tokio::spawn(worker.run()));
            receivers.insert(name, shared);
        }
        Deliverer {
            receivers,
            tasks,
            outcomes_tx: tx,
            outcomes_rx: Some(rx),
            metrics,
        }
    }

    /// Queues `n` for its receiver; never blocks. `thread` is the stored
    /// thread of `(n.receiver, n.incident)` from an earlier [`Receipt`].
    pub fn submit(&self, n: Notification, thread: Option<String>) {
        let Some(shared) = self.receivers.get(&n.receiver) else {
            tracing::warn!(receiver = %n.receiver, id = %n.id, "notification for an unknown receiver");
            self.metrics
                .notify_failures
                .get_or_create(&NotifyFailureLabels {
                    receiver: n.receiver.clone(),
                    kind: "unknown_receiver".into(),
                })
                .inc();
            let _ = self.outcomes_tx.send(Outcome {
                id: n.id.clone(),
                receiver: n.receiver.clone(),
                incident: n.incident.clone(),
                target: n.target.clone(),
                result: Err(Failure::UnknownReceiver),
                attempts: 0,
                digest: 1,
            });
            return;
        };
        // Submitted again (its partition came back): an earlier withdrawal
        // no longer applies.
        shared.cancelled.lock().expect("not poisoned").remove(&n.id);
        let shed = {
            let mut q = shared.queue.lock().expect("not poisoned");
            let shed = if q.len >= shared.delivery.max_queue {
                // The oldest waiting notification, over all targets.
                let oldest = q
                    .targets
                    .iter()
                    .filter_map(|(t, v)| v.front().map(|p| (p.seq, t.clone())))
                    .min();
                oldest.and_then(|(_, t)| {
                    let v = q.targets.get_mut(&t)?;
                    let p = v.pop_front();
                    if v.is_empty() {
                        q.targets.remove(&t);
                    }
                    q.len -= 1;
                    p
                })
            } else {
                None
            };
            q.seq += 1;
            let seq = q.seq;
            let key = n.target.clone().unwrap_or_default();
            q.targets
                .entry(key)
                .or_default()
                .push_back(Pending { n, thread, seq });
            q.len += 1;
            shared
                .metrics
                .notify_queued
                .get_or_create(&shared.label())
                .set(q.len as i64);
            shed
        };
        if let Some(p) = shed {
            let reason = format!(
                "receiver `{}` has {} notifications waiting (max_queue)",
                shared.name, shared.delivery.max_queue
            );
            tracing::warn!(receiver = %shared.name, id = %p.n.id, incident = %p.n.incident, "{reason}; shedding the oldest");
            shared
                .metrics
                .notify_shed
                .get_or_create(&shared.label())
                .inc();
            shared.emit(&p.n, Err(Failure::Shed { reason }), 0, 1);
        }
        shared.wake.notify_one();
    }

    /// Withdraws notifications that another process now owns (their
    /// partition moved): queued ones are dropped at once, one being retried
    /// before its next attempt. An attempt already under way finishes.
    /// No outcome is reported for a withdrawn notification. Returns how
    /// many were still queued.
    pub fn cancel(&self, ids: &BTreeSet<String>) -> usize {
        let mut queued = BTreeSet::new();
        for shared in self.receivers.values() {
            let mut q = shared.queue.lock().expect("not poisoned");
            let mut removed = 0;
            q.targets.retain(|_, v| {
                v.retain(|p| {
                    let keep = !ids.contains(&p.n.id);
                    if !keep {
                        queued.insert(p.n.id.clone());
                        removed += 1;
                    }
                    keep
                });
                !v.is_empty()
            });
            q.len -= removed;
            shared
                .metrics
                .notify_queued
                .get_or_create(&shared.label())
                .set(q.len as i64);
        }
        // The others may be in a batch being retried: its worker drops them
        // before the next attempt.
        for shared in self.receivers.values() {
            let mut c = shared.cancelled.lock().expect("not poisoned");
            if c.len() > MAX_CANCELLED {
                // Ids of batches long finished; the newest set still works.
                c.clear();
            }
            c.extend(ids.difference(&queued).cloned());
        }
        queued.len()
    }

    /// The outcomes, once (later calls return `None`).
    pub fn outcomes(&mut self) -> Option<UnboundedReceiver<Outcome>> {
        self.outcomes_rx.take()
    }

    /// Notifications waiting for `receiver` (not counting one in flight).
    pub fn queued(&self, receiver: &str) -> usize {
        self.receivers
            .get(receiver)
            .map_or(0, |s| s.queue.lock().expect("not poisoned").len)
    }

    pub fn has_receiver(&self, name: &str) -> bool {
        self.receivers.contains_key(name)
    }

    /// Stops taking work: each receiver finishes its queue if it can, and
    /// after `grace` the rest is abandoned (never marked sent, so the
    /// caller's log sends it again after a restart).
    pub async fn shutdown(mut self, grace: Duration) {
        for s in self.receivers.values() {
            s.closed.store(true, Ordering::SeqCst);
            s.wake.notify_one();
        }
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            for a in aborts {
                a.abort();
            }
        }
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, GovClock, NoOpMiddleware<Nanos>>;
type Keyed = RateLimiter<String, HashMapStateStore<String>, GovClock, NoOpMiddleware<Nanos>>;

fn quota(r: Rate) -> Quota {
    Quota::with_period(r.period.max(Duration::from_nanos(1)))
        .expect("non-zero period")
        .allow_burst(NonZeroU32::new(r.burst.max(1)).expect("non-zero"))
}

struct Limits {
    clock: GovClock,
    receiver: Option<Direct>,
    target: Option<Keyed>,
}

impl Limits {
    /// Takes a token for `target` and the receiver, or says how long to wait.
    fn check(&self, target: &str) -> Result<(), Duration> {
        if let Some(k) = &self.target {
            if let Err(nu) = k.check_key(&target.to_string()) {
                return Err(nu.wait_time_from(self.clock.now()));
            }
        }
        if let Some(d) = &self.receiver {
            if let Err(nu) = d.check() {
                return Err(nu.wait_time_from(self.clock.now()));
            }
        }
        Ok(())
    }
}

struct Batch {
    items: Vec<Pending>,
    merged: Notification,
    thread: Option<String>,
    attempts: u32,
}

#[derive(Default)]
struct TargetState {
    /// Not before this time (backoff, rate limit).
    next_try: Duration,
    /// Held back by a rate limit: the next send is a digest.
    limited: bool,
    inflight: Option<Batch>,
}

struct Worker {
    shared: Arc<Shared>,
    notifier: Arc<dyn Notifier>,
    timer: Arc<dyn Timer>,
    limits: Limits,
    targets: HashMap<String, TargetState>,
    /// The receiver is paused (a 429 with Retry-After) until then.
    paused_until: Duration,
    /// The last thread per incident (bounded).
    threads: HashMap<String, String>,
    thread_order: VecDeque<String>,
}

const MAX_THREADS: usize = 10_000;
const MAX_CANCELLED: usize = 100_000;

impl Worker {
    fn new(shared: Arc<Shared>, notifier: Arc<dyn Notifier>, timer: Arc<dyn Timer>) -> Worker {
        let clock = GovClock(timer.clone());
        let limits = Limits {
            receiver: shared
                .delivery
                .rate_limit
                .map(|r| RateLimiter::direct_with_clock(quota(r), clock.clone())),
            target: shared
                .delivery
                .target_rate_limit
                .map(|r| RateLimiter::hashmap_with_clock(quota(r), clock.clone())),
            clock,
        };
        Worker {
            shared,
            notifier,
            timer,
            limits,
            targets: HashMap::new(),
            paused_until: Duration::ZERO,
            threads: HashMap::new(),
            thread_order: VecDeque::new(),
        }
    }

    /// Targets with work, and the seq of their oldest item.
    fn with_work(&self) -> Vec<(u64, String)> {
        let q = self.shared.queue.lock().expect("not poisoned");
        let mut out: Vec<(u64, String)> = q
            .targets
            .iter()
            .filter_map(|(t, v)| v.front().map(|p| (p.seq, t.clone())))
            .collect();
        for (t, st) in &self.targets {
            if let Some(b) = &st.inflight {
                if let Some(e) = out.iter_mut().find(|(_, k)| k == t) {
                    e.0 = e.0.min(b.items[0].seq);
                } else {
                    out.push((b.items[0].seq, t.clone()));
                }
            }
        }
        out.sort();
        out
    }

    async fn run(mut self) {
        loop {
            let work = self.with_work();
            if work.is_empty() {
                if self.shared.closed.load(Ordering::SeqCst) {
                    return;
                }
                self.shared.wake.notified().await;
                continue;
            }
            let now = self.timer.now();
            let not_before = |t: &String, targets: &HashMap<String, TargetState>| {
                targets
                    .get(t)
                    .map_or(Duration::ZERO, |s| s.next_try)
                    .max(self.paused_until)
            };
            let ready = work
                .iter()
                .find(|(_, t)| not_before(t, &self.targets) <= now)
                .map(|(_, t)| t.clone());
            let Some(target) = ready else {
                let earliest = work
                    .iter()
                    .map(|(_, t)| not_before(t, &self.targets))
                    .min()
                    .expect("work is not empty");
                let wait = earliest.saturating_sub(now);
                tokio::select! {
                    _ = self.timer.sleep(wait) => {}
                    _ = self.shared.wake.notified() => {}
                }
                continue;
            };
            self.step(&target, now).await;
        }
    }

    /// One attempt (or one rate-limit check) for `target`.
    async fn step(&mut self, target: &str, now: Duration) {
        if let Err(wait) = self.limits.check(target) {
            let st = self.targets.entry(target.to_string()).or_default();
            st.next_try = now + wait;
            st.limited = true;
            return;
        }
        let st = self.targets.entry(target.to_string()).or_default();
        if st.inflight.is_none() {
            let take = if st.limited {
                self.shared.delivery.max_digest
            } else {
                1
            };
            st.limited = false;
            let items: Vec<Pending> = {
                let mut q = self.shared.queue.lock().expect("not poisoned");
                let mut items = Vec::new();
                if let Some(v) = q.targets.get_mut(target) {
                    while items.len() < take {
                        match v.pop_front() {
                            Some(p) => items.push(p),
                            None => break,
                        }
                    }
                    if v.is_empty() {
                        q.targets.remove(target);
                    }
                }
                q.len -= items.len();
                self.shared
                    .metrics
                    .notify_queued
                    .get_or_create(&self.shared.label())
                    .set(q.len as i64);
                items
            };
            if items.is_empty() {
                return;
            }
            let (merged, mut thread) = merge(&items);
            if thread.is_none() && !merged.incident.is_empty() {
                thread = self.threads.get(&thread_key(&merged)).cloned();
            }
            if items.len() > 1 {
                self.shared
                    .metrics
                    .notify_digests
                    .get_or_create(&self.shared.label())
                    .inc();
                tracing::info!(receiver = %self.shared.name, target, count = items.len(), "rate limited: sending a digest");
            }
            st.inflight = Some(Batch {
                items,
                merged,
                thread,
                attempts: 0,
            });
        }
        let batch = st.inflight.as_mut().expect("set above");
        {
            let mut c = self.shared.cancelled.lock().expect("not poisoned");
            if !c.is_empty() {
                let before = batch.items.len();
                batch.items.retain(|p| !c.remove(&p.n.id));
                if batch.items.is_empty() {
                    st.inflight = None;
                    return;
                }
                if batch.items.len() != before {
                    batch.merged = merge(&batch.items).0;
                }
            }
        }
        batch.attempts += 1;
        let msg = Message {
            notification: &batch.merged,
            target: batch.merged.target.as_deref(),
            thread: batch.thread.as_deref(),
            digest: batch.items.len(),
        };
        let timeout = Duration::from_millis(self.shared.delivery.timeout.max(1) as u64);
        let result = match tokio::time::timeout(timeout, self.notifier.send(&msg)).await {
            Ok(r) => r,
            Err(_) => Err(NotifyError::transient(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
        };
        let label = self.shared.label();
        match result {
            Ok(receipt) => {
                let batch = self
                    .targets
                    .get_mut(target)
                    .and_then(|s| s.inflight.take())
                    .expect("in flight");
                if let Some(t) = &receipt.thread {
                    if !batch.merged.incident.is_empty() {
                        self.remember(thread_key(&batch.merged), t);
                    }
                }
                let digest = batch.items.len();
                self.shared
                    .metrics
                    .notify_sent
                    .get_or_create(&label)
                    .inc_by(digest as u64);
                for p in &batch.items {
                    self.shared
                        .emit(&p.n, Ok(receipt.clone()), batch.attempts, digest);
                }
            }
            Err(e) => {
                self.shared
                    .metrics
                    .notify_failures
                    .get_or_create(&NotifyFailureLabels {
                        receiver: self.shared.name.clone(),
                        kind: e.kind.as_str().into(),
                    })
                    .inc();
                let st = self.targets.get_mut(target).expect("exists");
                let attempts = st.inflight.as_ref().map_or(0, |b| b.attempts);
                match e.kind {
                    NotifyErrorKind::Permanent => {
                        let batch = st.inflight.take().expect("in flight");
                        tracing::warn!(receiver = %self.shared.name, target, incident = %batch.merged.incident, reason = %e.reason, "notification refused for good");
                        let digest = batch.items.len();
                        for p in &batch.items {
                            self.shared.emit(
                                &p.n,
                                Err(Failure::Permanent {
                                    reason: e.reason.clone(),
                                }),
                                batch.attempts,
                                digest,
                            );
                        }
                    }
                    NotifyErrorKind::RateLimited | NotifyErrorKind::Transient => {
                        self.shared
                            .metrics
                            .notify_retries
                            .get_or_create(&label)
                            .inc();
                        let wait = match (e.kind, e.retry_after) {
                            (NotifyErrorKind::RateLimited, Some(d)) => {
                                self.paused_until = self.paused_until.max(now + d);
                                d
                            }
                            (_, Some(d)) => d.max(backoff(&self.shared.delivery, attempts)),
                            _ => backoff(&self.shared.delivery, attempts),
                        };
                        st.next_try = now + wait;
                        tracing::debug!(receiver = %self.shared.name, target, attempts, wait_ms = wait.as_millis() as u64, reason = %e.reason, "will retry");
                    }
                }
            }
        }
    }

    fn remember(&mut self, key: String, thread: &str) {
        if self
            .threads
            .insert(key.clone(), thread.to_string())
            .is_none()
        {
            self.thread_order.push_back(key);
            if self.thread_order.len() > MAX_THREADS {
                if let Some(old) = self.thread_order.pop_front() {
                    self.threads.remove(&old);
                }
            }
        }
    }
}

/// A thread is one incident's messages to one target (a channel and a
/// person's direct messages are different threads).
fn thread_key(n: &Notification) -> String {
    format!("{}\u{0}{}", n.incident, n.target.as_deref().unwrap_or(""))
}

/// The wait after the `attempts`th failure: `initial · 2^(attempts-1)`,
/// capped at `max`, with jitter (between half and all of it).
pub fn backoff(d: &Delivery, attempts: u32) -> Duration {
    let step = (d.retry_initial.max(1) as u64)
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(32))
        .min(d.retry_max.max(1) as u64);
    let half = step / 2;
    Duration::from_millis(half + fastrand::u64(0..=step - half))
}

/// Several notifications for one target as one: alerts by fingerprint,
/// the latest status of each wins. The thread is kept when they all
/// belong to one incident.
fn merge(items: &[Pending]) -> (Notification, Option<String>) {
    if items.len() == 1 {
        return (items[0].n.clone(), items[0].thread.clone());
    }
    let first = &items[0].n;
    let same = |f: &dyn Fn(&Notification) -> &str| items.iter().all(|p| f(&p.n) == f(first));
    let one_incident = same(&|n| &n.incident);
    let one_team = same(&|n| &n.team);
    let mut latest: Vec<(String, Alert)> = Vec::new();
    for p in items {
        for a in p.n.alerts.firing.iter().chain(&p.n.alerts.resolved) {
            match latest.iter_mut().find(|(fp, _)| *fp == a.fingerprint) {
                Some(slot) => slot.1 = a.clone(),
                None => latest.push((a.fingerprint.clone(), a.clone())),
            }
        }
    }
    let (firing, resolved): (Vec<Alert>, Vec<Alert>) = latest
        .into_iter()
        .map(|(_, a)| a)
        .partition(|a| a.status == Status::Firing);
    let kind = if firing.is_empty() {
        Kind::Resolved
    } else if items.iter().all(|p| p.n.kind == Kind::Repeat) {
        Kind::Repeat
    } else {
        Kind::Firing
    };
    let mut h = Fnv::default();
    for p in items {
        h.write_str(&p.n.id);
    }
    let thread = if one_incident {
        items.iter().rev().find_map(|p| p.thread.clone())
    } else {
        None
    };
    let n = Notification {
        id: format!("digest-{:016x}", h.finish()),
        receiver: first.receiver.clone(),
        target: first.target.clone(),
        team: if one_team {
            first.team.clone()
        } else {
            let mut teams: Vec<&str> = items.iter().map(|p| p.n.team.as_str()).collect();
            teams.sort();
            teams.dedup();
            teams.join(", ")
        },
        incident: if one_incident {
            first.incident.clone()
        } else {
            String::new()
        },
        group: if one_incident {
            first.group.clone()
        } else {
            Ordered(Vec::new())
        },
        kind,
        at: items.iter().map(|p| p.n.at).max().unwrap_or(first.at),
        alerts: NotifiedAlerts { firing, resolved },
        // A digest's items may come from several tiers or people; one
        // incident's digest keeps the first item's.
        tier: if one_incident { first.tier } else { None },
        cycle: if one_incident { first.cycle } else { None },
        person: if one_incident {
            first.person.clone()
        } else {
            None
        },
    };
    (n, thread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testdata::notification;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let d = Delivery {
            retry_initial: 100,
            retry_max: 1_000,
            ..Delivery::default()
        };
        for _ in 0..50 {
            let b1 = backoff(&d, 1).as_millis();
            assert!((50..=100).contains(&b1), "{b1}");
            let b3 = backoff(&d, 3).as_millis();
            assert!((200..=400).contains(&b3), "{b3}");
            let b9 = backoff(&d, 9).as_millis();
            assert!((500..=1000).contains(&b9), "{b9}");
        }
    }

    #[test]
    fn merge_keeps_the_latest_status_per_alert() {
        let f = notification(Kind::Firing);
        let r = notification(Kind::Resolved);
        let items = vec![
            Pending {
                n: f,
                thread: Some("t1".into()),
                seq: 1,
            },
            Pending {
                n: r,
                thread: None,
                seq: 2,
            },
        ];
        let (m, thread) = merge(&items);
        assert_eq!(m.kind, Kind::Resolved);
        assert!(m.alerts.firing.is_empty());
        assert_eq!(m.alerts.resolved.len(), 1);
        assert_eq!(
            thread.as_deref(),
            Some("t1"),
            "one incident keeps its thread"
        );
        assert_eq!(m.incident, "inc-42");
        assert!(m.id.starts_with("digest-"));
    }
}
