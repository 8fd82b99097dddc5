//! The checkpoints topic (`kafka.checkpoints_topic`) on the configured
//! broker (`KLAXON_TEST_BROKERS`; tansu in CI, `mock` for a MockCluster).
//!
//! A member writes the checkpoints of one commit in one call, which the
//! producer sends as one multi-record batch. The next owner must find every
//! one of them, the last batch's included: tansu 0.6 reports the end of a
//! topic as the last batch's first offset + 1, so a reader that stops at
//! the reported end misses the rest of that batch (the restart test lost
//! six partitions' watermarks that way).

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::*;
use klaxon::config::run::KafkaConfig;
use klaxon::kafka::checkpoint::{Checkpoint, Checkpoints};

#[test]
fn every_checkpoint_of_a_batch_is_read_back() {
    let broker = TestBroker::from_env();
    let topic = unique("checkpoints");
    broker.create_topics(&[(&topic, 1)]);
    let kafka = KafkaConfig {
        brokers: broker.bootstrap.clone(),
        group_id: unique("g"),
        instance_id: None,
        topics: vec![],
        alerts_topic: "unused".into(),
        dlq_topic: "unused".into(),
        checkpoints_topic: Some(topic.clone()),
        properties: BTreeMap::new(),
    };
    let c = Checkpoints::new(&kafka, &topic).unwrap();
    c.check().unwrap();
    let timeout = Duration::from_secs(30);
    assert!(c.read(timeout).unwrap().offsets("m", 0).is_empty());

    // Two commits of seven partitions each: two batches of seven records.
    let names: Vec<String> = (0..7).map(|p| format!("telemetry-{}", p % 3)).collect();
    for (round, watermark) in [(1i64, 1_000), (2, 2_000)] {
        let points: Vec<(&str, i32, Checkpoint)> = names
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let offset = round * 100 + i as i64;
                (t.as_str(), i as i32, Checkpoint { offset, watermark })
            })
            .collect();
        c.write(&points, timeout).unwrap();

        let book = c.read(timeout).unwrap();
        for (t, p, point) in &points {
            assert_eq!(
                book.watermark(t, *p, point.offset),
                Some(watermark),
                "round {round}: the checkpoint of {t}/{p}@{} was not read back; \
                 the book holds offsets {:?}",
                point.offset,
                book.offsets(t, *p)
            );
        }
    }
    // A second reader of the same group (the next owner) sees both rounds.
    let next = Checkpoints::new(&kafka, &topic).unwrap();
    let book = next.read(timeout).unwrap();
    assert_eq!(book.offsets("telemetry-0", 3), [103, 203]);
    assert_eq!(book.watermark("telemetry-0", 3, 103), Some(1_000));
}
