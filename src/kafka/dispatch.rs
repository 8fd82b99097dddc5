//! The dispatch stage of `klaxon run`: the alerts topic in, notifications
//! out, with the state durable in Kafka.
//!
//! A second consumer group (`dispatch.group_id`) reads the alerts topic.
//! Alerts are keyed by incident, so the owner of alerts partition p owns
//! every incident on it, and is its only writer:
//!
//! 1. **Assigned p**: read p's last [`Snapshot`] from the notification-log
//!    topic (partition p), restore the [`Dispatcher`] from it, and resume
//!    from the group's committed offset, which is never past the
//!    snapshot's. Changes read again are dropped by dedup (state-change ids).
//! 2. **A change**: ingested at wall-clock `now`.
//! 3. **A flush** ([`Dispatcher::tick`] at its deadline) decides the
//!    notifications. They are written to the snapshot's outbox *first*
//!    (durably), then handed to the channels.
//! 4. **A channel accepts**: the notification leaves the outbox, joins the
//!    history, and the snapshot is written again at once. Then the alerts
//!    offset is committed.
//! 5. **Revoked p**: in-flight deliveries get a few seconds, the snapshot is
//!    written, the offset committed, and p is dropped.
//!
//! So after a crash, a new owner sends what was decided but not accepted
//! (none lost), and nothing accepted (none twice), except a notification
//! whose channel accepted it in the milliseconds before the crash and
//! whose snapshot had not landed: it is sent again, with the same id
//! (notification ids are deterministic; the webhook sends it as an
//! idempotency key).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

use super::store::{
    self, ClusterView, SilenceBook, Snapshot, StoreError, SyncProducer, SNAPSHOT_VERSION,
};
use crate::alerts::{DispatchConfig, Dispatcher, Ingested, Notification};
use crate::config::run::RunConfig;
use crate::model::{Millis, StateChange};

/// The wall clock, in epoch milliseconds.
pub fn wall_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// What a channel did with a notification.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    pub id: String,
    /// Accepted (with the channel's thread of the message, if it has
    /// threads), or failed for good (the reason).
    pub result: Result<Option<String>, String>,
}

/// The channels, as dispatch sees them: submit, then collect outcomes.
pub trait Deliver: Send {
    /// Hands a notification over; never blocks. `thread` is the channel's
    /// thread for the incident, from an earlier [`Delivered`].
    fn submit(&mut self, n: &Notification, thread: Option<&str>);
    /// The outcomes ready now.
    fn poll(&mut self, out: &mut Vec<Delivered>);
    /// Notifications submitted and not yet reported.
    fn in_flight(&self) -> usize;
    /// Withdraws submitted notifications whose partition another member
    /// now owns (it sends them); none of them is reported afterwards.
    fn cancel(&mut self, _ids: &BTreeSet<String>) {}
}

/// Accepts every notification at once, appending it to a JSON-lines file
/// when one is configured (`dispatch.outbox`) and logging it.
pub struct FileDeliver {
    file: Option<std::fs::File>,
    done: Vec<Delivered>,
}

impl FileDeliver {
    pub fn new(path: Option<&PathBuf>) -> std::io::Result<FileDeliver> {
        let file = match path {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => None,
        };
        Ok(FileDeliver {
            file,
            done: Vec::new(),
        })
    }
}

impl Deliver for FileDeliver {
    fn submit(&mut self, n: &Notification, _thread: Option<&str>) {
        let result = match &mut self.file {
            Some(f) => {
                let mut line = serde_json::to_vec(n).expect("notifications serialize");
                line.push(b'\n');
                // One write per line: appends from several processes do
                // not interleave.
                f.write_all(&line).map(|_| None).map_err(|e| e.to_string())
            }
            None => Ok(None),
        };
        tracing::info!(id = %n.id, receiver = %n.receiver, incident = %n.incident, kind = n.kind.as_str(), firing = n.alerts.firing.len(), resolved = n.alerts.resolved.len(), "notification");
        self.done.push(Delivered {
            id: n.id.clone(),
            result,
        });
    }

    fn poll(&mut self, out: &mut Vec<Delivered>) {
        out.append(&mut self.done);
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }
}

/// Dispatch metrics.
#[derive(Clone, Default)]
pub struct DispatchMetrics {
    pub changes: Counter,
    pub duplicates: Counter,
    pub too_old: Counter,
    pub notifications: Family<KindLabel, Counter>,
    pub failed: Counter,
    pub snapshots: Counter,
    pub snapshot_failures: Counter,
    pub partitions: Gauge,
    pub incidents: Gauge,
    pub outbox: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

impl DispatchMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "dispatch_changes",
            "State changes read from the alerts topic and applied",
            self.changes.clone(),
        );
        r.register(
            "dispatch_duplicates",
            "State changes dropped as already applied",
            self.duplicates.clone(),
        );
        r.register(
            "dispatch_too_old",
            "State changes dropped as older than the dedup window",
            self.too_old.clone(),
        );
        r.register(
            "dispatch_notifications",
            "Notifications accepted by their channel, by kind (per receiver: klaxon_notifications_sent_total)",
            self.notifications.clone(),
        );
        r.register(
            "dispatch_notifications_failed",
            "Notifications their channel refused for good (or shed)",
            self.failed.clone(),
        );
        r.register(
            "dispatch_snapshots",
            "Dispatch state snapshots written to the notification log",
            self.snapshots.clone(),
        );
        r.register(
            "dispatch_snapshot_failures",
            "Snapshot writes the broker did not acknowledge",
            self.snapshot_failures.clone(),
        );
        r.register(
            "dispatch_partitions",
            "Alerts partitions this member dispatches",
            self.partitions.clone(),
        );
        r.register(
            "incidents",
            "Live incidents on this member",
            self.incidents.clone(),
        );
        r.register(
            "notification_outbox",
            "Notifications decided and not yet accepted by their channel",
            self.outbox.clone(),
        );
    }
}

/// One owned alerts partition.
pub struct Part {
    pub dispatcher: Dispatcher,
    /// The next alerts offset to apply.
    next_offset: Option<i64>,
    /// What the last durable snapshot says.
    saved_offset: Option<i64>,
    outbox: BTreeMap<String, Notification>,
    /// In the outbox, not yet in a durable snapshot: held back.
    unsaved: BTreeSet<String>,
    submitted: BTreeSet<String>,
    threads: BTreeMap<String, String>,
    history: VecDeque<Notification>,
    /// State changed since the last snapshot.
    dirty: bool,
    config_version: u64,
    silences_version: u64,
}

impl Part {
    fn snapshot(&self, partition: i32, now: Millis) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            partition,
            next_offset: self.next_offset,
            written_at: now,
            state: self.dispatcher.snapshot(),
            outbox: self.outbox.values().cloned().collect(),
            threads: self.threads.clone(),
            history: self.history.iter().cloned().collect(),
        }
    }

    pub fn history(&self) -> impl Iterator<Item = &Notification> {
        self.history.iter()
    }
}

/// Threads are per receiver, target and incident (a channel and a
/// person's direct messages are different threads).
fn thread_key(n: &Notification) -> String {
    format!(
        "{}\u{0}{}\u{0}{}",
        n.receiver,
        n.incident,
        n.target.as_deref().unwrap_or("")
    )
}

/// Shared by the dispatch loop, its rebalance callbacks and the API.
pub struct DispatchShared {
    pub parts: Mutex<BTreeMap<i32, Part>>,
    pub deliver: Mutex<Box<dyn Deliver>>,
    config: RwLock<(u64, DispatchConfig)>,
    pub silences: Arc<SilenceBook>,
    /// The other members' partitions, as their last snapshots say.
    pub view: Arc<ClusterView>,
    pub producer: SyncProducer,
    /// Reads snapshots on assignment.
    reader: Mutex<BaseConsumer>,
    pub alerts_topic: String,
    pub nflog_topic: String,
    pub silences_topic: String,
    history: usize,
    pub metrics: DispatchMetrics,
    /// Outcomes not matched to an owned partition (revoked meanwhile).
    stray: AtomicU64,
}

const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DispatchShared {
    pub fn new(
        cfg: &RunConfig,
        dispatch: DispatchConfig,
        deliver: Box<dyn Deliver>,
    ) -> Result<Arc<DispatchShared>, StoreError> {
        let producer = SyncProducer::new(super::state_producer_config(&cfg.kafka))?;
        let reader: BaseConsumer = store::reader_config(
            super::consumer_config(&cfg.kafka),
            &format!("{}-reader", cfg.dispatch.group_id),
        )
        .create()?;
        Ok(Arc::new(DispatchShared {
            parts: Mutex::new(BTreeMap::new()),
            deliver: Mutex::new(deliver),
            config: RwLock::new((1, dispatch)),
            silences: Arc::new(SilenceBook::default()),
            view: Arc::new(ClusterView::default()),
            producer,
            reader: Mutex::new(reader),
            alerts_topic: cfg.kafka.alerts_topic.clone(),
            nflog_topic: cfg.dispatch.nflog_topic.clone(),
            silences_topic: cfg.dispatch.silences_topic.clone(),
            history: cfg.dispatch.history,
            metrics: DispatchMetrics::default(),
            stray: AtomicU64::new(0),
        }))
    }

    /// New teams, silences from files and inhibit rules (a reload).
    pub fn set_config(&self, config: DispatchConfig) {
        let mut c = self.config.write().expect("dispatch config");
        c.0 += 1;
        c.1 = config;
    }

    pub fn config(&self) -> DispatchConfig {
        self.config.read().expect("dispatch config").1.clone()
    }

    fn new_dispatcher(&self, state: Option<crate::alerts::State>) -> (Dispatcher, u64) {
        let (v, config) = {
            let c = self.config.read().expect("dispatch config");
            (c.0, c.1.clone())
        };
        let d = match state {
            Some(s) => Dispatcher::restore(config, s),
            None => Dispatcher::new(config),
        };
        (d, v)
    }

    /// Applies a reload and silences from the topic to every partition.
    fn refresh(&self, parts: &mut BTreeMap<i32, Part>) {
        let cv = self.config.read().expect("dispatch config").0;
        let sv = self.silences.version();
        for part in parts.values_mut() {
            if part.config_version != cv {
                let (d, v) = self.new_dispatcher(Some(part.dispatcher.snapshot()));
                part.dispatcher = d;
                part.config_version = v;
                part.silences_version = 0;
            }
            if part.silences_version != sv {
                for s in self.silences.all() {
                    part.dispatcher.silences_mut().upsert(s);
                }
                part.silences_version = sv;
            }
        }
    }

    /// Restores partition `p` from its last snapshot.
    fn restore(&self, p: i32) -> Result<Part, StoreError> {
        let snap = {
            let reader = lock(&self.reader);
            store::load(&reader, &self.nflog_topic, p, WRITE_TIMEOUT)?
        };
        let (state, next_offset, outbox, threads, history) = match snap {
            Some(s) => (
                Some(s.state),
                s.next_offset,
                s.outbox.into_iter().map(|n| (n.id.clone(), n)).collect(),
                s.threads,
                s.history.into(),
            ),
            None => (
                None,
                None,
                BTreeMap::new(),
                BTreeMap::new(),
                VecDeque::new(),
            ),
        };
        let (dispatcher, config_version) = self.new_dispatcher(state);
        Ok(Part {
            dispatcher,
            next_offset,
            saved_offset: next_offset,
            outbox,
            unsaved: BTreeSet::new(),
            submitted: BTreeSet::new(),
            threads,
            history,
            dirty: false,
            config_version,
            silences_version: 0,
        })
    }

    /// Withdraws from the channels what `revoked` partitions submitted and
    /// did not see accepted: it is in their snapshots' outbox, and the next
    /// owner sends it.
    fn withdraw(&self, parts: &BTreeMap<i32, Part>, revoked: &BTreeSet<i32>) {
        let ids: BTreeSet<String> = parts
            .iter()
            .filter(|(p, _)| revoked.contains(p))
            .flat_map(|(_, part)| part.submitted.iter().cloned())
            .collect();
        if !ids.is_empty() {
            tracing::info!(
                count = ids.len(),
                "withdrawing notifications still in flight; their new owner sends them"
            );
            lock(&self.deliver).cancel(&ids);
        }
    }

    /// Writes the snapshots of `which` (all dirty ones when `None`).
    fn save(
        &self,
        parts: &mut BTreeMap<i32, Part>,
        which: Option<&BTreeSet<i32>>,
        now: Millis,
    ) -> Result<Vec<i32>, StoreError> {
        let chosen: Vec<i32> = parts
            .iter()
            .filter(|(p, part)| match which {
                Some(w) => w.contains(p),
                None => part.dirty,
            })
            .map(|(p, _)| *p)
            .collect();
        if chosen.is_empty() {
            return Ok(chosen);
        }
        let snaps: Vec<Snapshot> = chosen.iter().map(|p| parts[p].snapshot(*p, now)).collect();
        match store::save(&self.producer, &self.nflog_topic, &snaps, WRITE_TIMEOUT) {
            Ok(()) => {
                self.metrics.snapshots.inc_by(snaps.len() as u64);
                for p in &chosen {
                    let part = parts.get_mut(p).expect("chosen above");
                    part.dirty = false;
                    part.unsaved.clear();
                    part.saved_offset = part.next_offset;
                }
                Ok(chosen)
            }
            Err(e) => {
                self.metrics.snapshot_failures.inc();
                Err(e)
            }
        }
    }

    /// Applies one alerts-topic record.
    fn ingest(&self, partition: i32, offset: i64, payload: Option<&[u8]>, now: Millis) {
        let mut parts = lock(&self.parts);
        let Some(part) = parts.get_mut(&partition) else {
            tracing::warn!(
                partition,
                offset,
                "a change from a partition not owned; skipped"
            );
            return;
        };
        part.next_offset = Some(offset + 1);
        part.dirty = true;
        let change: StateChange = match payload.map(serde_json::from_slice) {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                tracing::error!(partition, offset, error = %e, "unreadable state change on the alerts topic; skipped");
                return;
            }
            None => return,
        };
        match part.dispatcher.ingest(&change, now) {
            Ingested::Duplicate => {
                self.metrics.duplicates.inc();
            }
            Ingested::TooOld => {
                self.metrics.too_old.inc();
                tracing::warn!(partition, offset, id = %change.id, "state change older than the dedup window; dropped");
            }
            _ => {
                self.metrics.changes.inc();
            }
        }
    }

    /// Flushes due incidents, hands new notifications over once they are
    /// durable, and records what the channels accepted.
    pub fn step(&self, now: Millis) {
        let mut parts = lock(&self.parts);
        self.refresh(&mut parts);
        self.apply_acks(&mut parts, now);
        let mut fresh = BTreeSet::new();
        for (p, part) in parts.iter_mut() {
            if part.dispatcher.next_deadline().is_some_and(|t| t <= now) {
                let mut out = Vec::new();
                part.dispatcher.tick(now, &mut out);
                part.dirty = true;
                if !out.is_empty() {
                    fresh.insert(*p);
                }
                for n in out {
                    part.unsaved.insert(n.id.clone());
                    part.outbox.insert(n.id.clone(), n);
                }
            }
        }
        // Decided notifications are durable before any channel sees them.
        if !fresh.is_empty() {
            if let Err(e) = self.save(&mut parts, Some(&fresh), now) {
                tracing::error!(error = %e, "cannot write the notification log; holding notifications back");
            }
        }
        let mut deliver = lock(&self.deliver);
        for part in parts.values_mut() {
            for (id, n) in &part.outbox {
                if !part.unsaved.contains(id) && part.submitted.insert(id.clone()) {
                    deliver.submit(n, part.threads.get(&thread_key(n)).map(String::as_str));
                }
            }
        }
        let mut done = Vec::new();
        deliver.poll(&mut done);
        drop(deliver);
        let mut accepted = BTreeSet::new();
        for d in done {
            let Some((p, part)) = parts
                .iter_mut()
                .find(|(_, part)| part.outbox.contains_key(&d.id))
            else {
                self.stray.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let n = part.outbox.remove(&d.id).expect("found above");
            part.submitted.remove(&d.id);
            part.dirty = true;
            accepted.insert(*p);
            match d.result {
                Ok(thread) => {
                    if let Some(t) = thread {
                        part.threads.entry(thread_key(&n)).or_insert(t);
                    }
                    self.metrics
                        .notifications
                        .get_or_create(&KindLabel {
                            kind: n.kind.as_str().into(),
                        })
                        .inc();
                    part.history.push_back(n);
                    while part.history.len() > self.history {
                        part.history.pop_front();
                    }
                }
                Err(reason) => {
                    self.metrics.failed.inc();
                    tracing::error!(id = %n.id, receiver = %n.receiver, incident = %n.incident, %reason, "notification refused for good");
                }
            }
        }
        // Accepted is recorded at once: the window for a resend is this write.
        if !accepted.is_empty() {
            if let Err(e) = self.save(&mut parts, Some(&accepted), now) {
                tracing::error!(error = %e, "cannot write the notification log");
            }
        }
        // Forget the threads of incidents that ended.
        for part in parts.values_mut() {
            if part.threads.is_empty() {
                continue;
            }
            let live: BTreeSet<&str> = part.dispatcher.incidents().map(|i| i.id.as_str()).collect();
            let pending: BTreeSet<&str> =
                part.outbox.values().map(|n| n.incident.as_str()).collect();
            part.threads.retain(|k, _| {
                let inc = k.split('\u{0}').nth(1).unwrap_or("");
                live.contains(inc) || pending.contains(inc)
            });
        }
        self.metrics.incidents.set(
            parts
                .values()
                .map(|p| p.dispatcher.incidents().count() as i64)
                .sum(),
        );
        self.metrics
            .outbox
            .set(parts.values().map(|p| p.outbox.len() as i64).sum());
    }

    /// Applies acknowledgements other members took for incidents owned
    /// here; once the snapshot has them, their records are deleted.
    fn apply_acks(&self, parts: &mut BTreeMap<i32, Part>, now: Millis) {
        let mut applied = Vec::new();
        let mut touched = BTreeSet::new();
        for a in self.silences.pending_acks() {
            let owner = parts
                .iter_mut()
                .find(|(_, part)| part.dispatcher.incident(&a.incident).is_some());
            match owner {
                Some((p, part)) => {
                    match part.dispatcher.ack(&a.incident, &a.by, a.at) {
                        Ok(_) => {
                            tracing::info!(incident = %a.incident, by = %a.by, "incident acknowledged (through another member)")
                        }
                        Err(e) => {
                            tracing::info!(incident = %a.incident, error = %e, "acknowledgement not applied")
                        }
                    }
                    part.dirty = true;
                    touched.insert(*p);
                    applied.push(a.incident);
                }
                // Nobody here owns it: its owner applies it, or it ended.
                None if now - a.at > 24 * 3_600_000 => self.silences.apply_ack(&a.incident, None),
                None => {}
            }
        }
        if applied.is_empty() {
            return;
        }
        if let Err(e) = self.save(parts, Some(&touched), now) {
            tracing::error!(error = %e, "cannot write the notification log; acknowledgements applied again later");
            return;
        }
        for incident in applied {
            self.silences.apply_ack(&incident, None);
            if let Err(e) = store::put_ack(&self.producer, &self.silences_topic, &incident, None) {
                tracing::warn!(incident, error = %e, "cannot delete an applied acknowledgement record");
            }
        }
    }

    /// When the loop should next wake up for a flush.
    fn next_deadline(&self) -> Option<Millis> {
        lock(&self.parts)
            .values()
            .filter_map(|p| p.dispatcher.next_deadline())
            .min()
    }

    /// Writes dirty snapshots; returns the offsets now safe to commit.
    fn checkpoint(&self, now: Millis) -> Option<TopicPartitionList> {
        let mut parts = lock(&self.parts);
        if let Err(e) = self.save(&mut parts, None, now) {
            tracing::error!(error = %e, "cannot write the notification log; offsets not committed");
            return None;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, part) in parts.iter() {
            if let Some(o) = part.saved_offset {
                let _ = tpl.add_partition_offset(&self.alerts_topic, *p, Offset::Offset(o));
            }
        }
        (tpl.count() > 0).then_some(tpl)
    }

    /// Runs `f` on a partition's dispatcher (the API's acknowledgements),
    /// then writes its snapshot before returning.
    pub fn with_incident<T>(
        &self,
        incident: &str,
        now: Millis,
        f: impl FnOnce(&mut Dispatcher) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        let mut parts = lock(&self.parts);
        let Some(p) = parts
            .iter()
            .find(|(_, part)| part.dispatcher.incidents().any(|i| i.id == incident))
            .map(|(p, _)| *p)
        else {
            return Ok(None);
        };
        let part = parts.get_mut(&p).expect("found above");
        let r = f(&mut part.dispatcher);
        part.dirty = true;
        self.save(&mut parts, Some(&BTreeSet::from([p])), now)?;
        Ok(r)
    }

    pub fn lock_parts(&self) -> MutexGuard<'_, BTreeMap<i32, Part>> {
        lock(&self.parts)
    }
}

/// The dispatch consumer's context: restore on assignment, save and
/// commit on revocation.
pub struct DispatchCtx {
    shared: Arc<DispatchShared>,
}

impl ClientContext for DispatchCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error => {
                tracing::error!(target: "librdkafka", fac, "{message}")
            }
            Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            _ => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }
}

impl ConsumerContext for DispatchCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let s = &self.shared;
        let revoked: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        if consumer.assignment_lost() {
            let mut parts = lock(&s.parts);
            s.withdraw(&parts, &revoked);
            parts.retain(|p, _| !revoked.contains(p));
            s.metrics.partitions.set(parts.len() as i64);
            tracing::warn!(partitions = ?revoked, "dispatch partitions lost; another member owns them now");
            return;
        }
        // Let what is in flight finish (a few seconds at most), so the next
        // owner does not send it again.
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            s.step(wall_ms());
            let pending = lock(&s.parts)
                .iter()
                .filter(|(p, _)| revoked.contains(p))
                .any(|(_, part)| !part.submitted.is_empty());
            if !pending || Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut parts = lock(&s.parts);
        let now = wall_ms();
        for p in &revoked {
            if let Some(part) = parts.get_mut(p) {
                part.dirty = true;
            }
        }
        let saved = s.save(&mut parts, Some(&revoked), now);
        let mut commit = TopicPartitionList::new();
        for p in &revoked {
            if let Some(o) = parts.get(p).and_then(|x| x.saved_offset) {
                let _ = commit.add_partition_offset(&s.alerts_topic, *p, Offset::Offset(o));
            }
        }
        match saved {
            Ok(_) => {
                if commit.count() > 0 {
                    if let Err(e) = consumer.commit(&commit, CommitMode::Sync) {
                        tracing::warn!(error = %e, "dispatch commit on revoke failed; the next owner re-reads more (dedup drops it)");
                    }
                }
                tracing::info!(partitions = ?revoked, "dispatch partitions revoked; state saved");
            }
            Err(e) => {
                tracing::error!(partitions = ?revoked, error = %e, "dispatch partitions revoked; the state could not be saved")
            }
        }
        s.withdraw(&parts, &revoked);
        parts.retain(|p, _| !revoked.contains(p));
        s.metrics.partitions.set(parts.len() as i64);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        let s = &self.shared;
        let mut restored = Vec::new();
        for e in tpl.elements() {
            let p = e.partition();
            let part = loop {
                match s.restore(p) {
                    Ok(part) => break part,
                    Err(e) => {
                        tracing::error!(partition = p, error = %e, "cannot read the notification log; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            };
            restored.push(format!(
                "{p} ({} incidents, {} pending)",
                part.dispatcher.incidents().count(),
                part.outbox.len()
            ));
            lock(&s.parts).insert(p, part);
        }
        s.metrics.partitions.set(lock(&s.parts).len() as i64);
        tracing::info!(partitions = %restored.join(", "), "dispatch partitions assigned; state restored");
    }
}

/// Checks that the notification-log topic can hold one partition per
/// alerts partition.
pub fn check_topics(shared: &DispatchShared) -> anyhow::Result<()> {
    let reader = lock(&shared.reader);
    let count = |topic: &str| -> anyhow::Result<usize> {
        let meta = reader.fetch_metadata(Some(topic), Duration::from_secs(30))?;
        Ok(meta
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len()))
    };
    let alerts = count(&shared.alerts_topic)?;
    let nflog = count(&shared.nflog_topic)?;
    let silences = count(&shared.silences_topic)?;
    if nflog < alerts || nflog == 0 {
        anyhow::bail!(
            "the notification-log topic {} has {nflog} partitions; it needs one per alerts partition ({} has {alerts}). Create it compacted: kafka-topics --create --topic {} --partitions {alerts} --config cleanup.policy=compact",
            shared.nflog_topic,
            shared.alerts_topic,
            shared.nflog_topic
        );
    }
    if silences == 0 {
        anyhow::bail!(
            "the silences topic {} does not exist. Create it compacted: kafka-topics --create --topic {} --partitions 1 --config cleanup.policy=compact",
            shared.silences_topic,
            shared.silences_topic
        );
    }
    Ok(())
}

/// The dispatch consumer's client config.
pub fn consumer_config(cfg: &RunConfig) -> ClientConfig {
    let mut c = super::consumer_config(&cfg.kafka);
    c.set("group.id", &cfg.dispatch.group_id);
    if let Some(id) = &cfg.kafka.instance_id {
        c.set("group.instance.id", format!("{id}-dispatch"));
    }
    c
}

/// Runs dispatch until `stop`.
pub fn run(
    cfg: &RunConfig,
    shared: Arc<DispatchShared>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer<DispatchCtx> =
        consumer_config(cfg).create_with_context(DispatchCtx {
            shared: Arc::clone(&shared),
        })?;
    consumer.subscribe(&[&shared.alerts_topic])?;
    let mut last_checkpoint = Instant::now();
    let mut commits: HashMap<i32, i64> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        let now = wall_ms();
        let mut wait = shared
            .next_deadline()
            .map_or(100, |t| (t - now).clamp(0, 100)) as u64;
        // A channel's answer is recorded soon after it comes: the shorter
        // that gap, the fewer resends after a crash.
        if lock(&shared.deliver).in_flight() > 0 {
            wait = wait.min(5);
        }
        if let Some(m) = consumer.poll(Duration::from_millis(wait)) {
            match m {
                Ok(m) => shared.ingest(m.partition(), m.offset(), m.payload(), wall_ms()),
                Err(e) => tracing::warn!(error = %e, "dispatch consumer"),
            }
            // Drain what is already fetched before flushing.
            while let Some(Ok(m)) = consumer.poll(Duration::ZERO) {
                shared.ingest(m.partition(), m.offset(), m.payload(), wall_ms());
            }
        }
        shared.step(wall_ms());
        if last_checkpoint.elapsed() >= Duration::from_secs(1) {
            last_checkpoint = Instant::now();
            if let Some(tpl) = shared.checkpoint(wall_ms()) {
                let changed = tpl.elements().iter().any(|e| {
                    let o = e.offset().to_raw().unwrap_or(-1);
                    commits.insert(e.partition(), o) != Some(o)
                });
                if changed {
                    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                        tracing::warn!(error = %e, "dispatch commit failed");
                    }
                }
            }
        }
    }
    // Leaving: the revoke callback saves and commits.
    consumer.unsubscribe();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && !lock(&shared.parts).is_empty() {
        let _ = consumer.poll(Duration::from_millis(50));
    }
    if let Some(tpl) = shared.checkpoint(wall_ms()) {
        let _ = consumer.commit(&tpl, CommitMode::Sync);
    }
    shared.producer.flush(Duration::from_secs(5));
    Ok(())
}
