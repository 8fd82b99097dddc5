//! `klaxon drain`: the end-to-end bench's baseline. A consumer built from
//! the same config and client settings as `klaxon run` that reads the
//! telemetry topics and does no work, until it has read `expect` messages.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::run::{load, ProcessEnv};

pub fn run(config: &Path, expect: u64) -> anyhow::Result<i32> {
    let cfg = load(config, &ProcessEnv).map_err(|e| anyhow::anyhow!("{e}"))?;
    let consumer: BaseConsumer = crate::kafka::consumer_config(&cfg.kafka).create()?;
    let topics: Vec<&str> = cfg.kafka.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut first = None;
    let mut last = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    while n < expect && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(5)) {
            first.get_or_insert_with(Instant::now);
            n += 1;
            bytes += m.payload_len() as u64;
            last = Instant::now();
        }
    }
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    eprintln!(
        "klaxon drain: {n} events ({bytes} bytes) in {secs:.2}s ({:.0}/s)",
        n as f64 / secs.max(1e-9)
    );
    Ok(if n >= expect { 0 } else { 1 })
}
