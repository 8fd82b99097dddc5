//! The consumer loop of `klaxon run`.
//!
//! One thread polls a librdkafka consumer and hands each message to the
//! [worker](super::worker) that owns its partition, which decodes it and
//! feeds the partition's engine (one worker per core by default, so decoding
//! and aggregation run beside the client). Every few milliseconds the
//! polling thread ticks: it computes the watermark over all assigned
//! partitions ([`global_watermark`]), closes the periods it passed, and
//! publishes their state changes. About once a second
//! the producer is flushed and offsets are committed, but only up to what
//! the open windows still need ([`Partition::commit_point`]), with the
//! watermark in the commit's metadata.
//!
//! Rebalances run inside `poll`, in the context below: on revoke, the
//! revoked partitions' offsets are committed (after a flush) and their state
//! dropped; on assign, each partition gets a fresh engine that rebuilds its
//! state by re-reading from the committed offset, publishing only what the
//! committed watermark had not yet closed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::checkpoint::{Book, Checkpoint, Checkpoints};
use super::partition::{decode_metadata, encode_metadata, global_watermark, Partition};
use super::sink::{Sink, SinkError};
use super::worker::{self, lock, shard_of, Batch, Job, Key, Limits, Owners, Shard, WorkerCtx};
use crate::config::run::RunConfig;
use crate::config::RuleSet;
use crate::metrics::{ChangeLabels, Metrics, PartitionLabels, RuleLabel};
use crate::model::{Millis, StateChange};

/// How often the watermark is recomputed and closable periods are closed.
const TICK: Duration = Duration::from_millis(10);
/// How often offsets are committed and gauges refreshed.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// How long a flush before a commit may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// While messages stream in, the clock is read every this many messages.
const CLOCK_EVERY: u64 = 32;
/// Messages per batch handed to a worker.
const BATCH: usize = 512;

/// State of the polling thread that the rebalance callbacks also use.
struct Global {
    rules: RuleSet,
    /// The last offset and watermark committed per partition (to skip
    /// no-op commits; a new watermark alone is committed, so the next owner
    /// knows what was published).
    committed: BTreeMap<Key, (i64, Option<Millis>)>,
    /// Evaluations already counted, per (partition, rule).
    evaluations_seen: BTreeMap<(Key, String), u64>,
    changes: Vec<StateChange>,
}

/// The polling side of the hand-off to workers.
struct Dispatch {
    senders: Vec<SyncSender<Job>>,
    pending: Vec<Batch>,
    /// Batches the workers are done with, for reuse.
    spare: Option<Receiver<Batch>>,
    /// Interned topic names.
    topics: Vec<Arc<str>>,
    /// The partition of the last message: (topic index, partition, shard).
    last: Option<(usize, i32, usize)>,
}

impl Dispatch {
    fn topic(&mut self, name: &str) -> Arc<str> {
        let i = self.topic_index(name.as_bytes());
        Arc::clone(&self.topics[i])
    }

    /// The index of an interned topic name, interning it if new.
    fn topic_index(&mut self, name: &[u8]) -> usize {
        match self.topics.iter().position(|t| t.as_bytes() == name) {
            Some(i) => i,
            None => {
                self.topics.push(String::from_utf8_lossy(name).into());
                self.topics.len() - 1
            }
        }
    }

    fn send(&mut self, shard: usize) {
        if self.pending[shard].is_empty() {
            return;
        }
        let fresh = self
            .spare
            .as_ref()
            .and_then(|r| r.try_recv().ok())
            .unwrap_or_default();
        let batch = std::mem::replace(&mut self.pending[shard], fresh);
        // A closed channel means the worker is gone; the run is stopping.
        let _ = self.senders[shard].send(Job::Batch(batch));
    }

    fn send_all(&mut self) {
        for i in 0..self.pending.len() {
            self.send(i);
        }
    }

    /// Sends what is pending and waits until every worker has processed
    /// everything sent to it.
    fn barrier(&mut self) {
        self.send_all();
        let replies: Vec<_> = self
            .senders
            .iter()
            .filter_map(|s| {
                let (tx, rx) = sync_channel(1);
                s.send(Job::Sync(tx)).ok().map(|_| rx)
            })
            .collect();
        for r in replies {
            let _ = r.recv();
        }
    }
}

/// Everything the polling thread, the callbacks, the workers and the HTTP
/// server share.
pub struct Shared {
    shards: Vec<Arc<Mutex<Shard>>>,
    owners: Arc<Mutex<Owners>>,
    global: Mutex<Global>,
    dispatch: Mutex<Dispatch>,
    sink: Arc<Sink>,
    metrics: Metrics,
    lateness: Millis,
    idle: Duration,
    limits: Limits,
    consumed: AtomicU64,
    /// Set once partitions are assigned and read up to their end.
    pub ready: AtomicBool,
    /// A delivery failed: stop without committing past it.
    fatal: Arc<AtomicBool>,
    /// Watermarks on a topic too (`kafka.checkpoints_topic`), for brokers
    /// that drop commit metadata.
    checkpoints: Option<Checkpoints>,
}

impl Shared {
    /// `workers` threads decode and aggregate (0: one per core).
    pub fn new(
        cfg: &RunConfig,
        rules: RuleSet,
        sink: Arc<Sink>,
        metrics: Metrics,
        workers: usize,
        checkpoints: Option<Checkpoints>,
    ) -> Arc<Self> {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            workers
        };
        metrics.rules_loaded.set(rules.rules.len() as i64);
        Arc::new(Shared {
            shards: (0..workers).map(|_| Arc::default()).collect(),
            owners: Arc::default(),
            global: Mutex::new(Global {
                rules,
                committed: BTreeMap::new(),
                evaluations_seen: BTreeMap::new(),
                changes: Vec::new(),
            }),
            dispatch: Mutex::new(Dispatch {
                senders: Vec::new(),
                pending: (0..workers).map(|_| Batch::default()).collect(),
                spare: None,
                topics: Vec::new(),
                last: None,
            }),
            sink,
            metrics,
            lateness: cfg.lateness,
            idle: Duration::from_millis(cfg.idle_timeout.max(0) as u64),
            limits: Limits {
                max_event_bytes: cfg.max_event_bytes,
            },
            consumed: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            fatal: Arc::new(AtomicBool::new(false)),
            checkpoints,
        })
    }

    /// Starts the worker threads.
    fn start_workers(self: &Arc<Self>) -> std::io::Result<Vec<JoinHandle<()>>> {
        let mut d = lock(&self.dispatch);
        let mut handles = Vec::new();
        let (spare_tx, spare_rx) = channel();
        d.spare = Some(spare_rx);
        for (i, shard) in self.shards.iter().enumerate() {
            let (tx, rx): (SyncSender<Job>, Receiver<Job>) = sync_channel(32);
            d.senders.push(tx);
            let ctx = WorkerCtx {
                shard: Arc::clone(shard),
                owners: Arc::clone(&self.owners),
                sink: Arc::clone(&self.sink),
                metrics: self.metrics.clone(),
                limits: self.limits,
                fatal: Arc::clone(&self.fatal),
                spare: spare_tx.clone(),
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || worker::work(ctx, rx))?,
            );
        }
        Ok(handles)
    }

    fn shard(&self, topic: &str, partition: i32) -> &Arc<Mutex<Shard>> {
        &self.shards[shard_of(topic, partition, self.shards.len())]
    }

    /// The checkpoints, when they are configured and some committed offset
    /// of `committed` came without metadata (else `None`, without reading).
    fn read_checkpoints(&self, committed: &TopicPartitionList) -> Option<Book> {
        let c = self.checkpoints.as_ref()?;
        let needed = committed.elements().iter().any(|e| {
            e.offset().to_raw().is_some_and(|o| o >= 0) && decode_metadata(e.metadata()).is_none()
        });
        if !needed {
            return None;
        }
        match c.read(Duration::from_secs(30)) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the checkpoints topic; publishing again from the committed offsets");
                None
            }
        }
    }

    /// Every shard, locked in order.
    fn lock_shards(&self) -> Vec<MutexGuard<'_, Shard>> {
        self.shards.iter().map(|s| lock(s)).collect()
    }
}

/// The consumer's context: rebalance callbacks and librdkafka's log.
pub struct Ctx {
    shared: Arc<Shared>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error => {
                tracing::error!(target: "librdkafka", fac, "{message}")
            }
            Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            Notice | Info => tracing::info!(target: "librdkafka", fac, "{message}"),
            Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }
}

fn names(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let shared = &self.shared;
        shared.metrics.rebalances.inc();
        // Everything polled so far is processed before the hand-over.
        lock(&shared.dispatch).barrier();
        let lost = consumer.assignment_lost();
        let revoked: Vec<Key> = {
            let mut d = lock(&shared.dispatch);
            tpl.elements()
                .iter()
                .map(|e| (d.topic(e.topic()), e.partition()))
                .collect()
        };
        let mut g = lock(&shared.global);
        if lost {
            tracing::warn!(partitions = %names(tpl), "partitions lost; another member owns them now, nothing committed");
        } else {
            // Publish what is closable now, then commit and hand over.
            tick(shared, &mut g, Instant::now());
            match commit(shared, &mut g, consumer, CommitMode::Sync, Some(&revoked)) {
                Ok(n) => {
                    tracing::info!(partitions = %names(tpl), committed = n, "partitions revoked; offsets committed, state dropped")
                }
                Err(e) => {
                    tracing::error!(partitions = %names(tpl), error = %e, "partitions revoked; commit failed, the next owner re-reads more")
                }
            }
        }
        for k in &revoked {
            lock(shared.shard(&k.0, k.1)).parts.remove(k);
            g.committed.remove(k);
            g.evaluations_seen.retain(|(p, _), _| p != k);
            shared.metrics.lag.remove(&PartitionLabels {
                topic: k.0.to_string(),
                partition: k.1,
            });
        }
        lock(&shared.owners).forget(&revoked);
        let n: usize = shared.lock_shards().iter().map(|s| s.parts.len()).sum();
        shared.metrics.partitions.set(n as i64);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        let shared = &self.shared;
        shared.metrics.rebalances.inc();
        lock(&shared.dispatch).barrier();
        // The committed offsets carry the watermark they were committed at.
        let committed = match consumer.committed_offsets((*tpl).clone(), Duration::from_secs(30)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read committed offsets; rebuilding without them");
                (*tpl).clone()
            }
        };
        let book = shared.read_checkpoints(&committed);
        let now = Instant::now();
        let rules = lock(&shared.global).rules.clone();
        let mut resumed = Vec::new();
        for e in committed.elements() {
            let key = (lock(&shared.dispatch).topic(e.topic()), e.partition());
            let offset = e.offset().to_raw().filter(|o| *o >= 0);
            let published = decode_metadata(e.metadata()).or_else(|| {
                let (b, o) = (book.as_ref()?, offset?);
                b.watermark(e.topic(), e.partition(), o)
            });
            if let (Some(o), None) = (offset, published) {
                let hint = match (&shared.checkpoints, &book) {
                    (None, _) => {
                        " (if this broker drops commit metadata, set kafka.checkpoints_topic)"
                            .to_string()
                    }
                    (Some(_), None) => String::new(),
                    (Some(_), Some(b)) => format!(
                        " (no checkpoint of offset {o}; the checkpoints of this partition hold offsets {:?})",
                        b.offsets(e.topic(), e.partition())
                    ),
                };
                tracing::warn!(
                    topic = e.topic(),
                    partition = e.partition(),
                    "the committed offset carries no watermark: every state change from it on is published again{hint}"
                );
            }
            let mut p = Partition::new(rules.clone(), shared.lateness, published, now);
            p.start_offset = offset;
            resumed.push(format!(
                "{}/{}@{}",
                key.0,
                key.1,
                p.start_offset
                    .map_or("start".to_string(), |o| o.to_string())
            ));
            lock(shared.shard(&key.0, key.1)).parts.insert(key, p);
        }
        shared.ready.store(false, Ordering::SeqCst);
        let n: usize = shared.lock_shards().iter().map(|s| s.parts.len()).sum();
        shared.metrics.partitions.set(n as i64);
        tracing::info!(partitions = %resumed.join(", "), "partitions assigned; rebuilding their windows from the committed offsets");
    }
}

/// What a run did, for the end-of-run summary.
pub struct Summary {
    pub consumed: u64,
    /// From the first message read to the last one processed.
    pub elapsed: Duration,
    pub latencies: Vec<f64>,
}

/// Runs the consumer until `stop` is set (or, with `exit_at_end`, until
/// every assigned partition has been read to its end and gone idle).
pub fn run(
    cfg: &RunConfig,
    shared: Arc<Shared>,
    reloads: Receiver<RuleSet>,
    stop: Arc<AtomicBool>,
    exit_at_end: bool,
) -> anyhow::Result<Summary> {
    let workers = shared.start_workers()?;
    let consumer: BaseConsumer<Ctx> =
        super::consumer_config(&cfg.kafka).create_with_context(Ctx {
            shared: Arc::clone(&shared),
        })?;
    let topics: Vec<&str> = cfg.kafka.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(topics = %topics.join(", "), group = %cfg.kafka.group_id, workers = shared.shards.len(), "subscribed");

    let mut first_message: Option<Instant> = None;
    let (mut last_tick, mut last_commit) = (Instant::now(), Instant::now());
    let mut result = Ok(());
    let n_shards = shared.shards.len();
    // Messages polled since the last tick (added to `shared.consumed` then).
    let mut consumed = 0u64;
    while !stop.load(Ordering::SeqCst) {
        while let Ok(set) = reloads.try_recv() {
            shared.metrics.rules_loaded.set(set.rules.len() as i64);
            for mut s in shared.lock_shards() {
                for p in s.parts.values_mut() {
                    p.engine.replace_rules(set.clone());
                }
            }
            lock(&shared.global).rules = set;
        }
        let mut got_message = false;
        match consumer.poll(Duration::from_millis(5)) {
            Some(Ok(m)) => {
                if first_message.is_none() {
                    first_message = Some(Instant::now());
                }
                consumed += 1;
                got_message = true;
                let mut d = lock(&shared.dispatch);
                let partition = m.partition();
                // The topic's name without `Message::topic`'s UTF-8 check
                // per message: compared as bytes with the interned names.
                // SAFETY: a message's topic handle and its name live at
                // least as long as the message.
                let name = unsafe {
                    std::ffi::CStr::from_ptr(rdkafka::bindings::rd_kafka_topic_name((*m.ptr()).rkt))
                };
                let (t, i) = match d.last {
                    Some((t, p, i))
                        if p == partition && d.topics[t].as_bytes() == name.to_bytes() =>
                    {
                        (t, i)
                    }
                    _ => {
                        let t = d.topic_index(name.to_bytes());
                        let i = shard_of(&d.topics[t], partition, n_shards);
                        d.last = Some((t, partition, i));
                        (t, i)
                    }
                };
                let Dispatch {
                    pending, topics, ..
                } = &mut *d;
                pending[i].push(
                    &topics[t],
                    partition,
                    m.offset(),
                    m.key(),
                    m.payload().unwrap_or_default(),
                );
                if pending[i].len() >= BATCH {
                    d.send(i);
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => lock(&shared.dispatch).send_all(),
        }
        // While messages stream in, the clock is read every few messages
        // only (a tick is due every 10 ms; a message is about a microsecond).
        if got_message && consumed % CLOCK_EVERY != 0 {
            continue;
        }
        let now = Instant::now();
        if now.duration_since(last_tick) >= TICK {
            shared.consumed.fetch_add(consumed, Ordering::Relaxed);
            consumed = 0;
            lock(&shared.dispatch).send_all();
            watch_ends(&shared, &consumer, now);
            let mut g = lock(&shared.global);
            tick(&shared, &mut g, last_tick);
            last_tick = now;
        }
        if now.duration_since(last_commit) >= COMMIT_EVERY {
            last_commit = now;
            let mut g = lock(&shared.global);
            refresh(&shared, &mut g, &consumer);
            if let Err(e) = commit(&shared, &mut g, &consumer, CommitMode::Async, None) {
                result = Err(e);
                break;
            }
            if exit_at_end && shared.ready.load(Ordering::SeqCst) && at_end(&shared, now) {
                tick(&shared, &mut g, now);
                break;
            }
        }
        if shared.fatal.load(Ordering::SeqCst) {
            result = Err(anyhow::anyhow!(
                "a state change or dead letter could not be delivered"
            ));
            break;
        }
    }
    // Shut down: process what was polled, publish what is closable,
    // commit, leave the group.
    shared.consumed.fetch_add(consumed, Ordering::Relaxed);
    lock(&shared.dispatch).barrier();
    let last_processed = shared
        .lock_shards()
        .iter()
        .flat_map(|s| s.parts.values().map(|p| p.last_activity))
        .max();
    if result.is_ok() {
        let mut g = lock(&shared.global);
        tick(&shared, &mut g, Instant::now());
        result = commit(&shared, &mut g, &consumer, CommitMode::Sync, None).map(|_| ());
    }
    drop(consumer);
    lock(&shared.dispatch).senders.clear();
    for w in workers {
        let _ = w.join();
    }
    let consumed = shared.consumed.load(Ordering::SeqCst);
    tracing::info!(consumed, "consumer closed");
    result?;
    Ok(Summary {
        consumed,
        elapsed: match (first_message, last_processed) {
            (Some(f), Some(l)) => l.saturating_duration_since(f),
            _ => Duration::ZERO,
        },
        latencies: shared.sink.latencies(),
    })
}

/// Advances every partition to the common watermark and publishes the
/// state changes of the periods that closed. `closable` is when those
/// periods became closable at the latest (the previous tick).
fn tick(shared: &Shared, g: &mut Global, closable: Instant) {
    let now = Instant::now();
    let changes = &mut g.changes;
    let wm = {
        let shards = shared.lock_shards();
        global_watermark(
            shards.iter().flat_map(|s| s.parts.values()),
            now,
            shared.idle,
        )
    };
    if let Some(wm) = wm {
        // One shard locked at a time: the other workers keep ingesting
        // while periods close. (Whether an event is processed just before
        // or just after a tick was never fixed: workers run beside the
        // polling thread. An event a tick makes late is counted as late.)
        for s in &shared.shards {
            for p in lock(s).parts.values_mut() {
                p.advance(wm, changes);
            }
        }
        shared.metrics.watermark.set(wm as f64 / 1000.0);
    }
    if changes.is_empty() {
        return;
    }
    changes.sort_by(|a, b| (a.period_end, &a.rule, &a.id).cmp(&(b.period_end, &b.rule, &b.id)));
    for c in changes.drain(..) {
        shared
            .metrics
            .state_changes
            .get_or_create(&ChangeLabels {
                rule: c.rule.clone(),
                state: c.state.as_str().to_string(),
            })
            .inc();
        if let Err(e) = shared.sink.publish(&c, closable) {
            tracing::error!(id = %c.id, error = %e, "cannot queue a state change");
            shared.fatal.store(true, Ordering::SeqCst);
        }
    }
}

/// Flushes the producer, then commits each partition's commit point (all,
/// or only `only`). Returns how many partitions were committed.
fn commit(
    shared: &Shared,
    g: &mut Global,
    consumer: &BaseConsumer<Ctx>,
    mode: CommitMode,
    only: Option<&[Key]>,
) -> anyhow::Result<usize> {
    match shared.sink.flush(FLUSH_TIMEOUT) {
        Ok(()) => {}
        Err(e @ SinkError::Undelivered(_)) => {
            shared.fatal.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    let mut tpl = TopicPartitionList::new();
    let mut points = Vec::new();
    let mut watermarks = Vec::new();
    for mut s in shared.lock_shards() {
        for (key, p) in s.parts.iter_mut() {
            if only.is_some_and(|o| !o.contains(key)) {
                continue;
            }
            let Some((offset, wm)) = p.commit_point() else {
                continue;
            };
            if g.committed.get(key) == Some(&(offset, wm)) && matches!(mode, CommitMode::Async) {
                continue;
            }
            tpl.add_partition(&key.0, key.1)
                .set_offset(Offset::Offset(offset))?;
            if let Some(mut e) = tpl.find_partition(&key.0, key.1) {
                e.set_metadata(encode_metadata(wm));
            }
            points.push((key.clone(), offset));
            watermarks.push(wm);
        }
    }
    if tpl.count() == 0 {
        return Ok(0);
    }
    if let Some(c) = &shared.checkpoints {
        let points: Vec<(&str, i32, Checkpoint)> = points
            .iter()
            .zip(&watermarks)
            .filter_map(|((k, offset), wm)| {
                Some((
                    &*k.0,
                    k.1,
                    Checkpoint {
                        offset: *offset,
                        watermark: (*wm)?,
                    },
                ))
            })
            .collect();
        if !points.is_empty() {
            c.write(&points, FLUSH_TIMEOUT)?;
        }
    }
    consumer.commit(&tpl, mode)?;
    for ((k, o), wm) in points.into_iter().zip(watermarks) {
        g.committed.insert(k, (o, wm));
    }
    Ok(tpl.count())
}

/// Refreshes lag, readiness and the gauges.
fn refresh(shared: &Shared, g: &mut Global, consumer: &BaseConsumer<Ctx>) {
    let (mut windows, mut series, mut assigned) = (0u64, 0u64, 0usize);
    let mut all_caught_up = true;
    let mut evals: Vec<(Key, String, u64)> = Vec::new();
    for mut s in shared.lock_shards() {
        for (key, p) in s.parts.iter_mut() {
            assigned += 1;
            if let Some((low, high)) = cached_watermarks(consumer, &key.0, key.1) {
                p.saw_high_watermark(high, Instant::now());
                // An empty partition is caught up from the start.
                if p.next_offset.is_none() && p.start_offset.is_none() && low >= high {
                    p.start_offset = Some(high);
                }
            }
            match p.lag() {
                Some(lag) => {
                    shared
                        .metrics
                        .lag
                        .get_or_create(&PartitionLabels {
                            topic: key.0.to_string(),
                            partition: key.1,
                        })
                        .set(lag);
                    all_caught_up &= lag == 0;
                }
                None => all_caught_up = false,
            }
            for st in p.engine.stats() {
                windows += st.open_windows;
                series += st.live_series;
                evals.push((key.clone(), st.rule, st.evaluations));
            }
        }
    }
    for (key, rule, n) in evals {
        let seen = g.evaluations_seen.entry((key, rule.clone())).or_insert(0);
        // A reload that restarted the rule resets its count.
        let delta = if n >= *seen { n - *seen } else { n };
        *seen = n;
        if delta > 0 {
            shared
                .metrics
                .evaluations
                .get_or_create(&RuleLabel { rule })
                .inc_by(delta);
        }
    }
    shared.metrics.open_windows.set(windows as i64);
    shared.metrics.live_series.set(series as i64);
    if assigned > 0 && all_caught_up && !shared.ready.swap(true, Ordering::SeqCst) {
        tracing::info!(partitions = assigned, "caught up: ready");
    }
}

/// Before a tick: the high watermarks of the partitions that look idle, so
/// that one that has messages waiting (fetched, or in a worker's queue)
/// holds time back again before a tick can close periods past them. Only
/// idle-looking partitions need it: the others hold time back anyway.
fn watch_ends(shared: &Shared, consumer: &BaseConsumer<Ctx>, now: Instant) {
    for mut s in shared.lock_shards() {
        for (key, p) in s.parts.iter_mut() {
            if p.is_idle(now, shared.idle) {
                if let Some((_, high)) = cached_watermarks(consumer, &key.0, key.1) {
                    p.saw_high_watermark(high, now);
                }
            }
        }
    }
}

/// The low and high offsets of a partition as last seen in a fetch
/// response (no request is made; `None` if not known yet).
fn cached_watermarks(
    consumer: &BaseConsumer<Ctx>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives, the topic
    // is a NUL-terminated string, and librdkafka only writes the two i64s.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}

/// Every partition read to its end and idle: nothing more will come.
fn at_end(shared: &Shared, now: Instant) -> bool {
    shared.lock_shards().iter().all(|s| {
        s.parts
            .values()
            .all(|p| p.lag() == Some(0) && p.is_idle(now, shared.idle))
    })
}
