//! Decode-and-aggregate workers.
//!
//! The polling thread copies each message into a [`Batch`] for the worker
//! that owns its partition (partitions are spread over the workers by hash)
//! and the worker decodes it, feeds its partition's engine, or sends it to
//! the dead-letter topic. A worker holds its [`Shard`]'s lock only while it
//! processes a batch, so the polling thread can tick (close periods) and
//! commit between batches. [`Job::Sync`] is a barrier: once a worker
//! answers, everything sent to it before has been processed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use rustc_hash::FxHashMap;

use super::partition::Partition;
use super::sink::{DeadLetter, Sink};
use crate::decode::{Decoder, JsonDecoder};
use crate::metrics::{Metrics, RejectLabels, TopicLabel};

/// A partition: topic and number.
pub type Key = (Arc<str>, i32);

/// Messages copied out of the client, for one worker. Consecutive messages
/// of one partition form a run, so the worker looks the partition up once
/// per run rather than once per message. Batches are recycled (see
/// [`Batch::clear`]): their buffers keep their capacity.
#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
    items: Vec<Item>,
    runs: Vec<Run>,
}

/// Consecutive items of one partition: `items[start..end]`.
struct Run {
    topic: Arc<str>,
    partition: i32,
    start: usize,
    end: usize,
}

struct Item {
    offset: i64,
    /// Key and payload as ranges of `bytes`.
    key: Option<(usize, usize)>,
    payload: (usize, usize),
}

impl Batch {
    pub fn push(
        &mut self,
        topic: &Arc<str>,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
    ) {
        let mut range = |b: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(b);
            (start, self.bytes.len())
        };
        let key = key.map(&mut range);
        let payload = range(payload);
        let i = self.items.len();
        self.items.push(Item {
            offset,
            key,
            payload,
        });
        match self.runs.last_mut() {
            Some(r) if r.partition == partition && Arc::ptr_eq(&r.topic, topic) => r.end = i + 1,
            _ => self.runs.push(Run {
                topic: Arc::clone(topic),
                partition,
                start: i,
                end: i + 1,
            }),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Empties the batch, keeping its buffers for the next one.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
        self.runs.clear();
    }
}

pub enum Job {
    Batch(Batch),
    /// Answer once everything before has been processed.
    Sync(SyncSender<()>),
}

/// The partitions one worker owns.
#[derive(Default)]
pub struct Shard {
    pub parts: BTreeMap<Key, Partition>,
}

/// Which worker owns a partition.
pub fn shard_of(topic: &str, partition: i32, workers: usize) -> usize {
    (crate::model::fnv_str(topic) as usize).wrapping_add(partition as usize) % workers.max(1)
}

/// Settings the workers need.
#[derive(Clone, Copy)]
pub struct Limits {
    pub max_event_bytes: usize,
}

/// Which series (fingerprint hash) was first seen in which partition:
/// a series in two partitions gets wrong windows, and is counted.
#[derive(Default)]
pub struct Owners {
    map: FxHashMap<u64, Key>,
    warnings: u32,
}

impl Owners {
    pub fn forget(&mut self, revoked: &[Key]) {
        self.map.retain(|_, owner| !revoked.contains(owner));
    }
}

struct TopicCounters {
    consumed: Counter,
    decoded: Counter,
    late: Counter,
}

/// Shared handles a worker uses.
pub struct WorkerCtx {
    pub shard: Arc<Mutex<Shard>>,
    pub owners: Arc<Mutex<Owners>>,
    pub sink: Arc<Sink>,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Set when a dead letter cannot be queued: the run stops without
    /// committing past it.
    pub fatal: Arc<AtomicBool>,
    /// Processed batches go back to the polling thread for reuse.
    pub spare: Sender<Batch>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The worker thread's loop: until its channel closes.
pub fn work(ctx: WorkerCtx, jobs: Receiver<Job>) {
    let mut counters: Vec<(Arc<str>, TopicCounters)> = Vec::new();
    let mut fresh: Vec<(u64, Key)> = Vec::new();
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Sync(done) => {
                let _ = done.send(());
            }
            Job::Batch(mut batch) => {
                {
                    let mut shard = lock(&ctx.shard);
                    let now = Instant::now();
                    for run in &batch.runs {
                        process_run(
                            &ctx,
                            &mut shard,
                            &mut counters,
                            &mut fresh,
                            &batch,
                            run,
                            now,
                        );
                    }
                    // Two clock readings per batch, not one per message:
                    // a partition's last activity is when its batch was
                    // done (for the idle timeout and the run's summary).
                    let done = Instant::now();
                    for run in &batch.runs {
                        if let Some(p) = shard
                            .parts
                            .get_mut(&(Arc::clone(&run.topic), run.partition))
                        {
                            p.last_activity = p.last_activity.max(done);
                        }
                    }
                }
                if !fresh.is_empty() {
                    check_owners(&ctx, &mut fresh);
                }
                batch.clear();
                // The polling thread may be gone at shutdown.
                let _ = ctx.spare.send(batch);
            }
        }
    }
}

fn counters_for<'c>(
    counters: &'c mut Vec<(Arc<str>, TopicCounters)>,
    metrics: &Metrics,
    topic: &Arc<str>,
) -> &'c TopicCounters {
    let i = match counters
        .iter()
        .position(|(t, _)| Arc::ptr_eq(t, topic) || **t == **topic)
    {
        Some(i) => i,
        None => {
            let l = TopicLabel {
                topic: topic.to_string(),
            };
            counters.push((
                Arc::clone(topic),
                TopicCounters {
                    consumed: metrics.consumed.get_or_create(&l).clone(),
                    decoded: metrics.decoded.get_or_create(&l).clone(),
                    late: metrics.late.get_or_create(&l).clone(),
                },
            ));
            counters.len() - 1
        }
    };
    &counters[i].1
}

/// Decodes and ingests the messages of one run (one partition).
fn process_run(
    ctx: &WorkerCtx,
    shard: &mut Shard,
    counters: &mut Vec<(Arc<str>, TopicCounters)>,
    fresh: &mut Vec<(u64, Key)>,
    batch: &Batch,
    run: &Run,
    now: Instant,
) {
    let c = counters_for(counters, &ctx.metrics, &run.topic);
    let items = &batch.items[run.start..run.end];
    c.consumed.inc_by(items.len() as u64);
    let key = (Arc::clone(&run.topic), run.partition);
    // Messages polled before their partition was revoked: the next owner
    // reads them again from the committed offset.
    let Some(part) = shard.parts.get_mut(&key) else {
        tracing::debug!(topic = %run.topic, partition = run.partition, first_offset = items.first().map(|i| i.offset), messages = items.len(), "messages of a partition no longer owned; skipped");
        return;
    };
    let (mut decoded, mut late) = (0u64, 0u64);
    let mut none = Vec::new();
    for item in items {
        let payload = &batch.bytes[item.payload.0..item.payload.1];
        let rejection = if payload.len() > ctx.limits.max_event_bytes {
            Some((
                "oversized",
                format!(
                    "event of {} bytes is over the {}-byte cap",
                    payload.len(),
                    ctx.limits.max_event_bytes
                ),
            ))
        } else {
            match JsonDecoder.decode(payload) {
                Ok(ev) => {
                    decoded += 1;
                    if part.engine.ingest(&ev, &mut none) {
                        late += 1;
                    }
                    debug_assert!(none.is_empty(), "run's engines close periods only on ticks");
                    part.record(item.offset, Some(ev.time()), now);
                    if part.engine.has_new_series() {
                        for fp in part.engine.take_new_series() {
                            fresh.push((fp, key.clone()));
                        }
                    }
                    None
                }
                Err(e) => Some(("malformed", e.to_string())),
            }
        };
        if let Some((kind, reason)) = rejection {
            part.record(item.offset, None, now);
            ctx.metrics
                .rejected
                .get_or_create(&RejectLabels {
                    topic: run.topic.to_string(),
                    reason: kind.to_string(),
                })
                .inc();
            let dl = DeadLetter {
                topic: &run.topic,
                partition: run.partition,
                offset: item.offset,
                key: item.key.map(|(a, b)| &batch.bytes[a..b]),
                payload,
                reason: &reason,
            };
            if let Err(e) = ctx.sink.dead_letter(&dl) {
                tracing::error!(error = %e, topic = %run.topic, partition = run.partition, offset = item.offset, "cannot queue a dead letter");
                ctx.fatal.store(true, Ordering::SeqCst);
            }
        }
    }
    if decoded > 0 {
        c.decoded.inc_by(decoded);
    }
    if late > 0 {
        c.late.inc_by(late);
    }
}

fn check_owners(ctx: &WorkerCtx, fresh: &mut Vec<(u64, Key)>) {
    let mut owners = lock(&ctx.owners);
    let Owners { map, warnings } = &mut *owners;
    for (fp, key) in fresh.drain(..) {
        let owner = map.entry(fp).or_insert_with(|| key.clone());
        if *owner != key {
            ctx.metrics.series_split.inc();
            if *warnings < 10 {
                *warnings += 1;
                tracing::warn!(
                    first = %format!("{}/{}", owner.0, owner.1),
                    now = %format!("{}/{}", key.0, key.1),
                    "a series arrives in more than one partition; its windows will be wrong. Key telemetry by the labels rules group by"
                );
            }
        }
    }
}
