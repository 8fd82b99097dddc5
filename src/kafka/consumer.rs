//! The consumer loop of `klaxon run`.
//!
//! One thread polls a librdkafka consumer. Each message is decoded and fed
//! to its partition's engine; every few milliseconds a tick computes the
//! watermark over all assigned partitions ([`global_watermark`]), closes the
//! periods it passed, and publishes their state changes. About once a second
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use rustc_hash::FxHashMap;

use super::partition::{decode_metadata, encode_metadata, global_watermark, Partition};
use super::sink::{DeadLetter, Sink, SinkError};
use crate::config::run::RunConfig;
use crate::config::RuleSet;
use crate::decode::{Decoder, JsonDecoder};
use crate::metrics::{ChangeLabels, Metrics, PartitionLabels, RejectLabels, RuleLabel, TopicLabel};
use crate::model::{Millis, StateChange};

type Key = (String, i32);

/// How often the watermark is recomputed and closable periods are closed.
const TICK: Duration = Duration::from_millis(10);
/// How often offsets are committed and gauges refreshed.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// How long a flush before a commit may take.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters of one topic, resolved once (a family lookup per message costs).
struct TopicCounters {
    consumed: Counter,
    decoded: Counter,
    late: Counter,
}

/// Everything the loop and the rebalance callbacks share.
pub struct State {
    rules: RuleSet,
    lateness: Millis,
    idle: Duration,
    max_event_bytes: usize,
    parts: BTreeMap<Key, Partition>,
    /// Which partition each series (fingerprint hash) was first seen in.
    owners: FxHashMap<u64, Key>,
    topics: Vec<(String, TopicCounters)>,
    /// The last offset committed per partition (to skip no-op commits).
    committed: BTreeMap<Key, i64>,
    /// Evaluations already counted, per (partition, rule).
    evaluations_seen: BTreeMap<(Key, String), u64>,
    changes: Vec<StateChange>,
    consumed: u64,
    split_warnings: u32,
}

pub struct Shared {
    state: Mutex<State>,
    sink: Arc<Sink>,
    metrics: Metrics,
    /// Set once partitions are assigned and read up to their end.
    pub ready: AtomicBool,
    /// A delivery failed: stop without committing past it.
    fatal: AtomicBool,
}

impl Shared {
    pub fn new(cfg: &RunConfig, rules: RuleSet, sink: Arc<Sink>, metrics: Metrics) -> Arc<Self> {
        metrics.rules_loaded.set(rules.rules.len() as i64);
        Arc::new(Shared {
            state: Mutex::new(State {
                rules,
                lateness: cfg.lateness,
                idle: Duration::from_millis(cfg.idle_timeout.max(0) as u64),
                max_event_bytes: cfg.max_event_bytes,
                parts: BTreeMap::new(),
                owners: FxHashMap::default(),
                topics: Vec::new(),
                committed: BTreeMap::new(),
                evaluations_seen: BTreeMap::new(),
                changes: Vec::new(),
                consumed: 0,
                split_warnings: 0,
            }),
            sink,
            metrics,
            ready: AtomicBool::new(false),
            fatal: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        self.shared.metrics.rebalances.inc();
        let lost = consumer.assignment_lost();
        let mut st = self.shared.lock();
        let revoked: Vec<Key> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        if lost {
            tracing::warn!(partitions = %names(tpl), "partitions lost; another member owns them now, nothing committed");
        } else {
            // Publish what is closable now, then commit and hand over.
            tick(&self.shared, &mut st, Instant::now());
            match commit(
                &self.shared,
                &mut st,
                consumer,
                CommitMode::Sync,
                Some(&revoked),
            ) {
                Ok(n) => {
                    tracing::info!(partitions = %names(tpl), committed = n, "partitions revoked; offsets committed, state dropped")
                }
                Err(e) => {
                    tracing::error!(partitions = %names(tpl), error = %e, "partitions revoked; commit failed, the next owner re-reads more")
                }
            }
        }
        for k in &revoked {
            st.parts.remove(k);
            st.committed.remove(k);
            st.evaluations_seen.retain(|(p, _), _| p != k);
            self.shared.metrics.lag.remove(&PartitionLabels {
                topic: k.0.clone(),
                partition: k.1,
            });
        }
        st.owners.retain(|_, owner| !revoked.contains(owner));
        self.shared.metrics.partitions.set(st.parts.len() as i64);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        self.shared.metrics.rebalances.inc();
        // The committed offsets carry the watermark they were committed at.
        let committed = match consumer.committed_offsets((*tpl).clone(), Duration::from_secs(30)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read committed offsets; rebuilding without them");
                (*tpl).clone()
            }
        };
        let now = Instant::now();
        let mut st = self.shared.lock();
        let mut resumed = Vec::new();
        for e in committed.elements() {
            let key = (e.topic().to_string(), e.partition());
            let published = decode_metadata(e.metadata());
            let mut p = Partition::new(st.rules.clone(), st.lateness, published, now);
            p.start_offset = e.offset().to_raw().filter(|o| *o >= 0);
            resumed.push(format!(
                "{}/{}@{}",
                key.0,
                key.1,
                p.start_offset
                    .map_or("start".to_string(), |o| o.to_string())
            ));
            st.parts.insert(key, p);
        }
        self.shared.ready.store(false, Ordering::SeqCst);
        self.shared.metrics.partitions.set(st.parts.len() as i64);
        tracing::info!(partitions = %resumed.join(", "), "partitions assigned; rebuilding their windows from the committed offsets");
    }
}

/// Why `run` stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// Asked to (a signal, or the end of input with `exit_at_end`).
    Requested,
}

/// What a run did, for the end-of-run summary.
pub struct Summary {
    pub consumed: u64,
    /// From the first message read to the last.
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
    let consumer: BaseConsumer<Ctx> =
        super::consumer_config(&cfg.kafka).create_with_context(Ctx {
            shared: Arc::clone(&shared),
        })?;
    let topics: Vec<&str> = cfg.kafka.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(topics = %topics.join(", "), group = %cfg.kafka.group_id, "subscribed");

    let started = Instant::now();
    let mut first_message: Option<Instant> = None;
    let mut last_message = started;
    let (mut last_tick, mut last_commit) = (Instant::now(), Instant::now());
    let mut result = Ok(());
    while !stop.load(Ordering::SeqCst) {
        while let Ok(set) = reloads.try_recv() {
            let mut st = shared.lock();
            shared.metrics.rules_loaded.set(set.rules.len() as i64);
            for p in st.parts.values_mut() {
                p.engine.replace_rules(set.clone());
            }
            st.rules = set;
        }
        match consumer.poll(Duration::from_millis(5)) {
            Some(Ok(m)) => {
                last_message = Instant::now();
                first_message.get_or_insert(last_message);
                let mut st = shared.lock();
                if let Err(e) = handle(&shared, &mut st, &m) {
                    result = Err(e);
                    break;
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => {}
        }
        let now = Instant::now();
        if now.duration_since(last_tick) >= TICK {
            let mut st = shared.lock();
            tick(&shared, &mut st, last_tick);
            last_tick = now;
        }
        if now.duration_since(last_commit) >= COMMIT_EVERY {
            last_commit = now;
            let mut st = shared.lock();
            refresh(&shared, &mut st, &consumer);
            if let Err(e) = commit(&shared, &mut st, &consumer, CommitMode::Async, None) {
                result = Err(e);
                break;
            }
            if exit_at_end && shared.ready.load(Ordering::SeqCst) && at_end(&st, now) {
                tick(&shared, &mut st, now);
                break;
            }
        }
        if shared.fatal.load(Ordering::SeqCst) {
            result = Err(anyhow::anyhow!("a state change could not be delivered"));
            break;
        }
    }
    // Shut down: publish what is closable, commit, leave the group.
    if result.is_ok() {
        let mut st = shared.lock();
        tick(&shared, &mut st, Instant::now());
        result = commit(&shared, &mut st, &consumer, CommitMode::Sync, None).map(|_| ());
    }
    let consumed = shared.lock().consumed;
    drop(consumer);
    tracing::info!(consumed, "consumer closed");
    result?;
    Ok(Summary {
        consumed,
        elapsed: first_message.map_or(Duration::ZERO, |t| last_message.duration_since(t)),
        latencies: shared.sink.latencies(),
    })
}

fn counters<'s>(st: &'s mut State, metrics: &Metrics, topic: &str) -> &'s TopicCounters {
    let i = match st.topics.iter().position(|(t, _)| t == topic) {
        Some(i) => i,
        None => {
            let l = TopicLabel {
                topic: topic.to_string(),
            };
            st.topics.push((
                topic.to_string(),
                TopicCounters {
                    consumed: metrics.consumed.get_or_create(&l).clone(),
                    decoded: metrics.decoded.get_or_create(&l).clone(),
                    late: metrics.late.get_or_create(&l).clone(),
                },
            ));
            st.topics.len() - 1
        }
    };
    &st.topics[i].1
}

/// One message: decode, ingest, or dead-letter.
fn handle(shared: &Shared, st: &mut State, m: &BorrowedMessage<'_>) -> anyhow::Result<()> {
    let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
    st.consumed += 1;
    let c = counters(st, &shared.metrics, topic);
    c.consumed.inc();
    let payload = m.payload().unwrap_or_default();
    let rejection = if payload.len() > st.max_event_bytes {
        Some((
            "oversized",
            format!(
                "event of {} bytes is over the {}-byte cap",
                payload.len(),
                st.max_event_bytes
            ),
        ))
    } else {
        match JsonDecoder.decode(payload) {
            Ok(ev) => {
                counters(st, &shared.metrics, topic).decoded.inc();
                let key = (topic.to_string(), partition);
                let now = Instant::now();
                let (lateness, rules) = (st.lateness, &st.rules);
                let part = st
                    .parts
                    .entry(key.clone())
                    .or_insert_with(|| Partition::new(rules.clone(), lateness, None, now));
                let late = part.engine.ingest(&ev, &mut st.changes);
                part.record(offset, Some(ev.time()), now);
                let fresh = part.engine.take_new_series();
                if late {
                    counters(st, &shared.metrics, topic).late.inc();
                }
                for fp in fresh {
                    let owner = st.owners.entry(fp).or_insert_with(|| key.clone());
                    if *owner != key {
                        shared.metrics.series_split.inc();
                        if st.split_warnings < 10 {
                            st.split_warnings += 1;
                            tracing::warn!(
                                first = %format!("{}/{}", owner.0, owner.1),
                                now = %format!("{}/{}", key.0, key.1),
                                "a series arrives in more than one partition; its windows will be wrong. Key telemetry by the labels rules group by"
                            );
                        }
                    }
                }
                None
            }
            Err(e) => Some(("malformed", e.to_string())),
        }
    };
    if let Some((kind, reason)) = rejection {
        shared
            .metrics
            .rejected
            .get_or_create(&RejectLabels {
                topic: topic.to_string(),
                reason: kind.to_string(),
            })
            .inc();
        shared.sink.dead_letter(&DeadLetter {
            topic,
            partition,
            offset,
            key: m.key(),
            payload,
            reason: &reason,
        })?;
        let now = Instant::now();
        let (lateness, rules) = (st.lateness, &st.rules);
        st.parts
            .entry((topic.to_string(), partition))
            .or_insert_with(|| Partition::new(rules.clone(), lateness, None, now))
            .record(offset, None, now);
    }
    Ok(())
}

/// Advances every partition to the common watermark and publishes the
/// state changes of the periods that closed. `closable` is when those
/// periods became closable at the latest (the previous tick).
fn tick(shared: &Shared, st: &mut State, closable: Instant) {
    let now = Instant::now();
    let State {
        parts,
        idle,
        changes,
        ..
    } = st;
    if let Some(wm) = global_watermark(parts.values(), now, *idle) {
        for p in parts.values_mut() {
            p.advance(wm, changes);
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
    st: &mut State,
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
    for (key, p) in st.parts.iter_mut() {
        if only.is_some_and(|o| !o.contains(key)) {
            continue;
        }
        let Some((offset, wm)) = p.commit_point() else {
            continue;
        };
        if st.committed.get(key) == Some(&offset) && matches!(mode, CommitMode::Async) {
            continue;
        }
        tpl.add_partition(&key.0, key.1)
            .set_offset(Offset::Offset(offset))?;
        if let Some(mut e) = tpl.find_partition(&key.0, key.1) {
            e.set_metadata(encode_metadata(wm));
        }
        points.push((key.clone(), offset));
    }
    if tpl.count() == 0 {
        return Ok(0);
    }
    consumer.commit(&tpl, mode)?;
    for (k, o) in points {
        st.committed.insert(k, o);
    }
    Ok(tpl.count())
}

/// Refreshes lag, readiness and the gauges.
fn refresh(shared: &Shared, st: &mut State, consumer: &BaseConsumer<Ctx>) {
    let (mut windows, mut series) = (0u64, 0u64);
    let mut all_caught_up = !st.parts.is_empty();
    let mut evals: Vec<(Key, String, u64)> = Vec::new();
    for (key, p) in st.parts.iter_mut() {
        if let Some((low, high)) = cached_watermarks(consumer, &key.0, key.1) {
            if high >= 0 {
                p.high_watermark = Some(high);
                // An empty partition is caught up from the start.
                if p.next_offset.is_none() && p.start_offset.is_none() && low >= high {
                    p.start_offset = Some(high);
                }
            }
        }
        match p.lag() {
            Some(lag) => {
                shared
                    .metrics
                    .lag
                    .get_or_create(&PartitionLabels {
                        topic: key.0.clone(),
                        partition: key.1,
                    })
                    .set(lag);
                all_caught_up &= lag == 0;
            }
            None => all_caught_up = false,
        }
        for s in p.engine.stats() {
            windows += s.open_windows;
            series += s.live_series;
            evals.push((key.clone(), s.rule, s.evaluations));
        }
    }
    for (key, rule, n) in evals {
        let seen = st.evaluations_seen.entry((key, rule.clone())).or_insert(0);
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
    if all_caught_up && !shared.ready.swap(true, Ordering::SeqCst) {
        tracing::info!(partitions = st.parts.len(), "caught up: ready");
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
fn at_end(st: &State, now: Instant) -> bool {
    st.parts
        .values()
        .all(|p| p.lag() == Some(0) && p.is_idle(now, st.idle))
}
