//! Watermark checkpoints on a topic, for brokers that drop commit metadata.
//!
//! A member commits each partition's offset with the watermark it had
//! published up to in the commit's metadata (see [`super::partition`]), so
//! the next owner publishes only what that watermark had not closed. Some
//! Kafka-compatible brokers store the offset but drop the metadata (tansu
//! 0.6 does). With `kafka.checkpoints_topic` set, every commit is preceded
//! by a record on that topic: key `klaxon/1/<group>/<topic>/<partition>`,
//! value `{"offset":O,"watermark":W}`, written and acknowledged after the
//! state changes up to W were delivered and before offset O is committed.
//! On assignment, a partition whose commit has no metadata takes W from
//! the checkpoint of exactly its committed offset.
//!
//! The topic should be compacted (one record per key is enough on a
//! broker that compacts; klaxon keeps the last few per key when reading).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::store::{reader_config, Record, StoreError, SyncProducer};
use crate::config::run::KafkaConfig;
use crate::model::Millis;

/// How many checkpoints per partition a read keeps: the committed offset
/// is one of the last few written (a crash between a checkpoint and its
/// commit leaves the commit one behind).
const KEEP: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub offset: i64,
    pub watermark: Millis,
}

/// The checkpoints read back: (topic, partition) → the last few, oldest
/// first.
#[derive(Debug, Default)]
pub struct Book(BTreeMap<(String, i32), VecDeque<Checkpoint>>);

impl Book {
    fn add(&mut self, topic: &str, partition: i32, c: Checkpoint) {
        let v = self.0.entry((topic.to_string(), partition)).or_default();
        v.push_back(c);
        if v.len() > KEEP {
            v.pop_front();
        }
    }

    /// The watermark checkpointed with exactly `offset` (the latest such).
    pub fn watermark(&self, topic: &str, partition: i32, offset: i64) -> Option<Millis> {
        self.0
            .get(&(topic.to_string(), partition))?
            .iter()
            .rev()
            .find(|c| c.offset == offset)
            .map(|c| c.watermark)
    }

    /// The offsets checkpointed for a partition, oldest first (to say why
    /// a committed offset was not found).
    pub fn offsets(&self, topic: &str, partition: i32) -> Vec<i64> {
        self.0
            .get(&(topic.to_string(), partition))
            .map(|v| v.iter().map(|c| c.offset).collect())
            .unwrap_or_default()
    }

    /// Parses one record of the topic, keeping it if it is `group`'s.
    pub fn read_record(&mut self, group: &str, key: &[u8], value: Option<&[u8]>) {
        let Some((topic, partition)) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| parse_key(group, k))
        else {
            return;
        };
        match value.map(serde_json::from_slice::<Checkpoint>) {
            Some(Ok(c)) => self.add(&topic, partition, c),
            Some(Err(e)) => {
                tracing::warn!(topic, partition, error = %e, "skipping an unreadable checkpoint")
            }
            // A tombstone: forget the partition.
            None => {
                self.0.remove(&(topic, partition));
            }
        }
    }
}

fn key(group: &str, topic: &str, partition: i32) -> String {
    format!("klaxon/1/{group}/{topic}/{partition}")
}

/// The topic and partition of `group`'s key (topic names cannot hold `/`).
fn parse_key(group: &str, key: &str) -> Option<(String, i32)> {
    let rest = key.strip_prefix("klaxon/1/")?.strip_prefix(group)?;
    let (topic, partition) = rest.strip_prefix('/')?.rsplit_once('/')?;
    if topic.contains('/') {
        return None;
    }
    Some((topic.to_string(), partition.parse().ok()?))
}

/// Writes and reads one group's checkpoints.
pub struct Checkpoints {
    producer: SyncProducer,
    reader: BaseConsumer,
    topic: String,
    group: String,
}

impl Checkpoints {
    pub fn new(kafka: &KafkaConfig, topic: &str) -> Result<Self, StoreError> {
        let reader = reader_config(
            super::consumer_config(kafka),
            &format!("{}-checkpoints", kafka.group_id),
        )
        .create()?;
        Ok(Checkpoints {
            producer: SyncProducer::new(super::state_producer_config(kafka))?,
            reader,
            topic: topic.to_string(),
            group: kafka.group_id.clone(),
        })
    }

    /// Fails unless the topic exists.
    pub fn check(&self) -> anyhow::Result<()> {
        let meta = self
            .reader
            .fetch_metadata(Some(&self.topic), Duration::from_secs(30))?;
        let exists = meta
            .topics()
            .iter()
            .any(|t| t.name() == self.topic && t.error().is_none() && !t.partitions().is_empty());
        if !exists {
            anyhow::bail!(
                "the checkpoints topic {} (kafka.checkpoints_topic) does not exist. Create it compacted: kafka-topics --create --topic {} --partitions 1 --config cleanup.policy=compact",
                self.topic,
                self.topic
            );
        }
        Ok(())
    }

    /// Writes `points` ((topic, partition, checkpoint)) and waits until the
    /// broker has them all.
    pub fn write(
        &self,
        points: &[(&str, i32, Checkpoint)],
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let bodies: Vec<(String, Vec<u8>)> = points
            .iter()
            .map(|(t, p, c)| {
                (
                    key(&self.group, t, *p),
                    serde_json::to_vec(c).expect("a checkpoint serializes"),
                )
            })
            .collect();
        let records: Vec<Record<'_>> = bodies
            .iter()
            .map(|(k, v)| (None, k.as_str(), Some(v.as_slice())))
            .collect();
        self.producer.write_all(&self.topic, &records, timeout)
    }

    /// Reads the whole topic to its end.
    pub fn read(&self, timeout: Duration) -> Result<Book, StoreError> {
        let meta = self.reader.fetch_metadata(Some(&self.topic), timeout)?;
        let partitions: Vec<i32> = meta
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut book = Book::default();
        // partition → the offset to read up to.
        let mut ends = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let (low, high) = self.reader.fetch_watermarks(&self.topic, p, timeout)?;
            if high > low {
                ends.insert(p, high);
                tpl.add_partition_offset(&self.topic, p, Offset::Offset(low))?;
            }
        }
        if ends.is_empty() {
            return Ok(book);
        }
        self.reader.assign(&tpl)?;
        let deadline = Instant::now() + timeout;
        let result = loop {
            if ends.is_empty() {
                break Ok(book);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let (&partition, _) = ends.iter().next().expect("not empty");
                break Err(StoreError::Timeout {
                    topic: self.topic.clone(),
                    partition,
                    timeout,
                });
            }
            match self.reader.poll(left.min(Duration::from_millis(200))) {
                Some(Ok(m)) => {
                    if let Some(k) = m.key() {
                        book.read_record(&self.group, k, m.payload());
                    }
                    if ends
                        .get(&m.partition())
                        .is_some_and(|e| m.offset() + 1 >= *e)
                    {
                        ends.remove(&m.partition());
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.topic, error = %e, "reading checkpoints")
                }
                None => {}
            }
        };
        let _ = self.reader.unassign();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(offset: i64, watermark: Millis) -> Vec<u8> {
        serde_json::to_vec(&Checkpoint { offset, watermark }).unwrap()
    }

    #[test]
    fn keys_round_trip_and_other_groups_are_ignored() {
        let k = key("g-1", "cloudmart.metrics", 11);
        assert_eq!(parse_key("g-1", &k), Some(("cloudmart.metrics".into(), 11)));
        assert_eq!(parse_key("g", &k), None, "g is a prefix of g-1, not g-1");
        assert_eq!(parse_key("g-1", "klaxon/1/g-1/a/b/3"), None);
        assert_eq!(parse_key("g-1", "someone else's"), None);
    }

    #[test]
    fn the_watermark_of_exactly_the_committed_offset_is_found() {
        let mut b = Book::default();
        let k = key("g", "m", 0);
        b.read_record("g", k.as_bytes(), Some(&body(10, 1_000)));
        b.read_record("g", k.as_bytes(), Some(&body(25, 2_000)));
        b.read_record("g", k.as_bytes(), Some(&body(40, 3_000)));
        b.read_record("g", key("other", "m", 0).as_bytes(), Some(&body(25, 9)));
        b.read_record("g", k.as_bytes(), Some(b"not json"));
        // The commit of 40 landed.
        assert_eq!(b.watermark("m", 0, 40), Some(3_000));
        // A crash after the checkpoint of 40 and before its commit.
        assert_eq!(b.watermark("m", 0, 25), Some(2_000));
        // An offset never checkpointed (e.g. reset by hand): unknown.
        assert_eq!(b.watermark("m", 0, 30), None);
        assert_eq!(b.watermark("m", 1, 40), None);
        assert_eq!(b.offsets("m", 0), [10, 25, 40]);
        assert!(b.offsets("m", 1).is_empty());
        // A tombstone forgets the partition.
        b.read_record("g", k.as_bytes(), None);
        assert_eq!(b.watermark("m", 0, 40), None);
    }

    #[test]
    fn only_the_last_few_are_kept() {
        let mut b = Book::default();
        let k = key("g", "m", 0);
        for i in 0..(KEEP as i64 + 5) {
            b.read_record("g", k.as_bytes(), Some(&body(i, i * 10)));
        }
        assert_eq!(b.watermark("m", 0, 0), None);
        let last = KEEP as i64 + 4;
        assert_eq!(b.watermark("m", 0, last), Some(last * 10));
        assert_eq!(
            b.watermark("m", 0, last - KEEP as i64 + 1),
            Some((last - KEEP as i64 + 1) * 10)
        );
    }
}
