//! `klaxon tail`: prints the messages of a topic, one per line (alerts are
//! JSON already; a dead letter is printed as JSON with its headers).

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub fn run(brokers: &str, topic: &str, follow: bool, idle: Duration) -> anyhow::Result<i32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "klaxon-tail")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()?;
    // Assign every partition from the beginning: no group membership.
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let parts = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if parts == 0 {
        anyhow::bail!("topic {topic} has no partitions (does it exist?)");
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut last = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                let payload = m.payload().unwrap_or_default();
                match m.headers() {
                    Some(h) if h.iter().any(|h| h.key == "klaxon.reason") => {
                        let mut obj = serde_json::Map::new();
                        for h in h.iter() {
                            let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                            obj.insert(h.key.to_string(), v.into_owned().into());
                        }
                        obj.insert(
                            "payload".into(),
                            String::from_utf8_lossy(payload).into_owned().into(),
                        );
                        writeln!(out, "{}", serde_json::Value::Object(obj))?;
                    }
                    _ => {
                        out.write_all(payload)?;
                        out.write_all(b"\n")?;
                    }
                }
                out.flush()?;
            }
            Some(Err(e)) => eprintln!("klaxon tail: {e}"),
            None if !follow && last.elapsed() >= idle => return Ok(0),
            None => {}
        }
    }
}
