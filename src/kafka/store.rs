//! Dispatch state in Kafka: the notification log topic and the silences
//! topic.
//!
//! - **Notification log** (`dispatch.nflog_topic`, compacted, as many
//!   partitions as the alerts topic). Partition p holds [`Snapshot`]s of
//!   the dispatch state of alerts partition p, all under one key, so
//!   compaction keeps the last one and a new owner reads exactly one
//!   record: the one at the partition's end.
//! - **Silences** (`dispatch.silences_topic`, compacted): one record per
//!   silence id, the latest version wins; every member reads all of it.
//!
//! Both are written with [`SyncProducer`], which waits for the broker's
//! acknowledgement (`acks=all`) of each record: a snapshot counts only once
//! it is durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::alerts::silence::Silence;
use crate::alerts::{self, Notification};
use crate::model::Millis;

/// The key of every snapshot record (one per partition).
pub const SNAPSHOT_KEY: &str = "klaxon.dispatch";
/// The snapshot format; a reader refuses a newer one.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything dispatch knows about one alerts partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub partition: i32,
    /// The next alerts-topic offset to apply: every change before it is in
    /// `state` (changes after it are read again; dedup drops repeats).
    pub next_offset: Option<i64>,
    #[serde(with = "crate::alerts::rfc3339")]
    pub written_at: Millis,
    /// Incidents, the notification log, the dedup window.
    pub state: alerts::State,
    /// Notifications decided but not yet accepted by their channel: a new
    /// owner sends them.
    pub outbox: Vec<Notification>,
    /// Per `receiver\u{0}incident\u{0}target`: the channel's thread of the incident's
    /// first message (Slack `ts`), for follow-ups.
    pub threads: BTreeMap<String, String>,
    /// The latest accepted notifications, oldest first.
    pub history: Vec<Notification>,
}

/// Why a control write or read failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{topic}/{partition}: no acknowledgement within {timeout:?}")]
    Timeout {
        topic: String,
        partition: i32,
        timeout: Duration,
    },
    #[error("{topic}/{partition}: {reason}")]
    Rejected {
        topic: String,
        partition: i32,
        reason: String,
    },
    #[error("{topic}/{partition}@{offset}: unreadable snapshot: {reason}")]
    Corrupt {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
}

/// One record to write: partition (or the partitioner's choice), key,
/// value (`None`: a tombstone).
pub type Record<'a> = (Option<i32>, &'a str, Option<&'a [u8]>);

/// Delivery reports by request id.
#[derive(Default)]
pub struct Reports {
    done: Mutex<HashMap<u64, Result<(), String>>>,
    cv: Condvar,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Box<u64>) {
        let r = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.to_string()),
        };
        self.done.lock().expect("reports").insert(*id, r);
        self.cv.notify_all();
    }
}

/// A producer whose writes return once the broker has them.
pub struct SyncProducer {
    producer: ThreadedProducer<Reports>,
    next: AtomicU64,
}

impl SyncProducer {
    pub fn new(mut config: ClientConfig) -> Result<SyncProducer, StoreError> {
        config
            .set("linger.ms", "0")
            .set("acks", "all")
            .set("compression.type", "zstd")
            .set("message.timeout.ms", "15000");
        Ok(SyncProducer {
            producer: config.create_with_context(Reports::default())?,
            next: AtomicU64::new(1),
        })
    }

    /// Writes each record and waits for all of their acknowledgements.
    pub fn write_all(
        &self,
        topic: &str,
        records: &[Record<'_>],
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let mut ids = Vec::with_capacity(records.len());
        for (partition, key, payload) in records {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            let mut r: BaseRecord<'_, str, [u8], Box<u64>> =
                BaseRecord::with_opaque_to(topic, Box::new(id)).key(*key);
            if let Some(p) = payload {
                r = r.payload(*p);
            }
            if let Some(p) = partition {
                r = r.partition(*p);
            }
            self.producer.send(r).map_err(|(e, _)| e)?;
            ids.push((id, partition.unwrap_or(-1)));
        }
        let end = Instant::now() + timeout;
        let ctx = self.producer.context();
        let mut done = ctx.done.lock().expect("reports");
        for (id, partition) in ids {
            loop {
                if let Some(r) = done.remove(&id) {
                    r.map_err(|reason| StoreError::Rejected {
                        topic: topic.into(),
                        partition,
                        reason,
                    })?;
                    break;
                }
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(StoreError::Timeout {
                        topic: topic.into(),
                        partition,
                        timeout,
                    });
                }
                done = ctx.cv.wait_timeout(done, left).expect("reports").0;
            }
        }
        Ok(())
    }

    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}

/// Writes a partition's snapshot (and waits for it).
pub fn save(
    producer: &SyncProducer,
    topic: &str,
    snapshots: &[Snapshot],
    timeout: Duration,
) -> Result<(), StoreError> {
    let bodies: Vec<(i32, Vec<u8>)> = snapshots
        .iter()
        .map(|s| {
            (
                s.partition,
                serde_json::to_vec(s).expect("snapshots serialize"),
            )
        })
        .collect();
    let records: Vec<Record<'_>> = bodies
        .iter()
        .map(|(p, b)| (Some(*p), SNAPSHOT_KEY, Some(b.as_slice())))
        .collect();
    producer.write_all(topic, &records, timeout)
}

/// Reads the last snapshot of `partition`: the record at its end.
pub fn load(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Option<Snapshot>, StoreError> {
    let (low, high) = reader.fetch_watermarks(topic, partition, timeout)?;
    if high <= low {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(high - 1))?;
    reader.assign(&tpl)?;
    let end = Instant::now() + timeout;
    let result = loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(StoreError::Timeout {
                topic: topic.into(),
                partition,
                timeout,
            });
        }
        match reader.poll(left.min(Duration::from_millis(200))) {
            Some(Ok(m)) if m.partition() == partition && m.offset() >= high - 1 => {
                let offset = m.offset();
                break match m.payload() {
                    None => Ok(None),
                    Some(b) => match serde_json::from_slice::<Snapshot>(b) {
                        Ok(s) if s.version <= SNAPSHOT_VERSION => Ok(Some(s)),
                        Ok(s) => Err(StoreError::Corrupt {
                            topic: topic.into(),
                            partition,
                            offset,
                            reason: format!(
                                "format version {} is newer than this klaxon's {SNAPSHOT_VERSION}",
                                s.version
                            ),
                        }),
                        Err(e) => Err(StoreError::Corrupt {
                            topic: topic.into(),
                            partition,
                            offset,
                            reason: e.to_string(),
                        }),
                    },
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(topic, partition, error = %e, "reading the notification log")
            }
            None => {}
        }
    };
    let _ = reader.unassign();
    result
}

/// A reader's client config: assigned partitions only, never commits.
pub fn reader_config(mut base: ClientConfig, group: &str) -> ClientConfig {
    base.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .remove("group.instance.id");
    base
}

/// An acknowledgement taken by a member that does not own the incident,
/// for the owner to apply (key `ack/<incident>` on the silences topic).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    pub incident: String,
    pub by: String,
    #[serde(with = "crate::alerts::rfc3339")]
    pub at: Millis,
}

/// The key prefix of acknowledgement records on the silences topic.
pub const ACK_PREFIX: &str = "ack/";

/// What every member reads from the silences topic: the silences, and
/// acknowledgements waiting for the owner of their incident.
#[derive(Default)]
pub struct SilenceBook {
    silences: RwLock<BTreeMap<String, Silence>>,
    acks: Mutex<BTreeMap<String, AckRequest>>,
    /// Bumped at each change, so dispatchers know to refresh.
    version: AtomicU64,
    /// Whether the topic was read to its end once.
    caught_up: std::sync::atomic::AtomicBool,
}

impl SilenceBook {
    pub fn all(&self) -> Vec<Silence> {
        self.silences
            .read()
            .expect("silences")
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Silence> {
        self.silences.read().expect("silences").get(id).cloned()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }

    /// Applies one record of the silences topic (`None`: a tombstone).
    pub fn apply(&self, id: &str, silence: Option<Silence>) {
        let mut s = self.silences.write().expect("silences");
        match silence {
            Some(v) => {
                s.insert(id.to_string(), v);
            }
            None => {
                s.remove(id);
            }
        }
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// Acknowledgements not yet applied by their incident's owner.
    pub fn pending_acks(&self) -> Vec<AckRequest> {
        self.acks.lock().expect("acks").values().cloned().collect()
    }

    pub fn apply_ack(&self, incident: &str, ack: Option<AckRequest>) {
        let mut a = self.acks.lock().expect("acks");
        match ack {
            Some(v) => {
                a.insert(incident.to_string(), v);
            }
            None => {
                a.remove(incident);
            }
        }
    }

    /// Follows every partition of `topic` from its start until `stop`.
    pub fn follow(
        self: Arc<Self>,
        reader: BaseConsumer,
        topic: String,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<(), StoreError> {
        let meta = reader.fetch_metadata(Some(&topic), Duration::from_secs(30))?;
        let mut tpl = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for t in meta.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
                let (low, high) =
                    reader.fetch_watermarks(&topic, p.id(), Duration::from_secs(30))?;
                if high > low {
                    ends.insert(p.id(), high);
                }
            }
        }
        reader.assign(&tpl)?;
        if ends.is_empty() {
            self.caught_up.store(true, Ordering::SeqCst);
        }
        while !stop.load(Ordering::SeqCst) {
            match reader.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let Some(id) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        continue;
                    };
                    if let Some(incident) = id.strip_prefix(ACK_PREFIX) {
                        match m.payload().map(serde_json::from_slice::<AckRequest>) {
                            None => self.apply_ack(incident, None),
                            Some(Ok(a)) => self.apply_ack(incident, Some(a)),
                            Some(Err(e)) => {
                                tracing::warn!(topic, id, error = %e, "unreadable ack record; skipped")
                            }
                        }
                        continue;
                    }
                    let silence = match m.payload().map(serde_json::from_slice::<Silence>) {
                        None => None,
                        Some(Ok(s)) => Some(s),
                        Some(Err(e)) => {
                            tracing::warn!(topic, id, error = %e, "unreadable silence record; skipped");
                            continue;
                        }
                    };
                    self.apply(id, silence);
                    if ends
                        .get(&m.partition())
                        .is_some_and(|h| m.offset() + 1 >= *h)
                    {
                        ends.remove(&m.partition());
                        if ends.is_empty() {
                            self.caught_up.store(true, Ordering::SeqCst);
                            tracing::info!(topic, silences = self.all().len(), "silences read");
                        }
                    }
                }
                Some(Err(e)) => tracing::warn!(topic, error = %e, "reading silences"),
                None => {}
            }
        }
        Ok(())
    }
}

/// Writes a silence (the latest version wins) and waits for it.
pub fn put_silence(
    producer: &SyncProducer,
    topic: &str,
    silence: &Silence,
) -> Result<(), StoreError> {
    let body = serde_json::to_vec(silence).expect("silences serialize");
    producer.write_all(
        topic,
        &[(None, silence.id.as_str(), Some(body.as_slice()))],
        Duration::from_secs(15),
    )
}

/// Writes an acknowledgement for the incident's owner (or, with `None`,
/// its tombstone once applied).
pub fn put_ack(
    producer: &SyncProducer,
    topic: &str,
    incident: &str,
    ack: Option<&AckRequest>,
) -> Result<(), StoreError> {
    let key = format!("{ACK_PREFIX}{incident}");
    let body = ack.map(|a| serde_json::to_vec(a).expect("acks serialize"));
    producer.write_all(
        topic,
        &[(None, key.as_str(), body.as_deref())],
        Duration::from_secs(15),
    )
}

/// The last snapshot of every notification-log partition, followed live:
/// what the other members know, for the API.
#[derive(Default)]
pub struct ClusterView {
    parts: RwLock<BTreeMap<i32, Snapshot>>,
}

impl ClusterView {
    /// Snapshots of the partitions not in `except`.
    pub fn others(&self, except: &std::collections::BTreeSet<i32>) -> Vec<Snapshot> {
        self.parts
            .read()
            .expect("view")
            .iter()
            .filter(|(p, _)| !except.contains(p))
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Follows the last snapshot of each partition of `topic` until `stop`.
    pub fn follow(
        self: Arc<Self>,
        reader: BaseConsumer,
        topic: String,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<(), StoreError> {
        let meta = reader.fetch_metadata(Some(&topic), Duration::from_secs(30))?;
        let mut tpl = TopicPartitionList::new();
        for t in meta.topics() {
            for p in t.partitions() {
                let (low, high) =
                    reader.fetch_watermarks(&topic, p.id(), Duration::from_secs(30))?;
                let start = if high > low {
                    Offset::Offset(high - 1)
                } else {
                    Offset::End
                };
                tpl.add_partition_offset(&topic, p.id(), start)?;
            }
        }
        reader.assign(&tpl)?;
        while !stop.load(Ordering::SeqCst) {
            match reader.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    if let Some(Ok(snap)) = m.payload().map(serde_json::from_slice::<Snapshot>) {
                        self.parts
                            .write()
                            .expect("view")
                            .insert(m.partition(), snap);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(topic, error = %e, "following the notification log")
                }
                None => {}
            }
        }
        Ok(())
    }
}
