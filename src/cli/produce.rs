//! `klaxon produce`: writes telemetry to Kafka, from a JSONL file or
//! synthesised CloudMart traffic, at a given rate or as fast as possible.
//! Each event goes to its kind's topic, keyed by the labels rules group by
//! (a metric's labels, a log's or span's service), so every series stays in
//! one partition.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use crate::decode::{Decoder, JsonDecoder};
use crate::model::{format_rfc3339, Event, Millis};

pub struct Args {
    pub brokers: String,
    pub input: Option<PathBuf>,
    pub generate: Option<u64>,
    /// Events per second; 0 = as fast as possible.
    pub rate: u64,
    /// One topic for every event instead of one per kind.
    pub topic: Option<String>,
    pub metrics_topic: String,
    pub logs_topic: String,
    pub spans_topic: String,
    /// Series per kind in generated traffic.
    pub series: u64,
    /// Event time of the first generated event (ms); default now.
    pub start: Option<Millis>,
    /// Write the events to standard output instead of Kafka.
    pub stdout: bool,
    /// librdkafka properties (`-X`), applied over the defaults.
    pub properties: Vec<(String, String)>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &a.brokers)
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("acks", "all");
    for (k, v) in &a.properties {
        config.set(k, v);
    }
    let producer: BaseProducer = config.create()?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut skipped = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut send = |line: &[u8]| -> anyhow::Result<()> {
        if a.stdout {
            use std::io::Write;
            out.write_all(line)?;
            out.write_all(b"\n")?;
            sent += 1;
            return Ok(());
        }
        let Ok(ev) = JsonDecoder.decode(line) else {
            // Not an event: still produced (to the metrics topic, unkeyed),
            // so a demo shows the dead-letter path.
            skipped += 1;
            let t = a.topic.as_deref().unwrap_or(&a.metrics_topic);
            return produce(&producer, t, None, line);
        };
        let topic = a.topic.as_deref().unwrap_or(match &ev {
            Event::Metric(_) => &a.metrics_topic,
            Event::Log(_) => &a.logs_topic,
            Event::Span(_) => &a.spans_topic,
        });
        produce(&producer, topic, Some(key(&ev).as_bytes()), line)?;
        sent += 1;
        if a.rate > 0 {
            let due = started + Duration::from_secs_f64(sent as f64 / a.rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                producer.poll(Duration::ZERO);
                std::thread::sleep(wait);
            }
        }
        Ok(())
    };
    match (&a.input, a.generate) {
        (Some(path), None) => {
            let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
                Box::new(BufReader::new(std::io::stdin().lock()))
            } else {
                Box::new(BufReader::new(File::open(path)?))
            };
            for line in reader.split(b'\n') {
                let line = line?;
                if !line.iter().all(u8::is_ascii_whitespace) {
                    send(&line)?;
                }
            }
        }
        (None, Some(n)) => {
            let start = a
                .start
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            let mut g = Generator::new(start, a.series.max(1));
            let mut buf = String::with_capacity(512);
            for i in 0..n {
                buf.clear();
                g.next(i, &mut buf);
                send(buf.as_bytes())?;
            }
        }
        _ => anyhow::bail!("give exactly one of --input FILE and --generate N"),
    }
    drop(out);
    producer.flush(Duration::from_secs(60))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "klaxon produce: {sent} events in {secs:.2}s ({:.0}/s){}",
        sent as f64 / secs.max(1e-9),
        if skipped > 0 {
            format!("; {skipped} lines that are not events sent unkeyed")
        } else {
            String::new()
        }
    );
    Ok(0)
}

fn produce(
    p: &BaseProducer,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
) -> anyhow::Result<()> {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(payload);
    if let Some(k) = key {
        record = record.key(k);
    }
    loop {
        match p.send(record) {
            Ok(()) => {
                p.poll(Duration::ZERO);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                p.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// The partition key of an event: a metric's labels (sorted), or a log's
/// or span's service.
pub fn key(ev: &Event<'_>) -> String {
    match ev {
        Event::Metric(m) => {
            let mut l: Vec<String> = m
                .labels
                .iter()
                .map(|(k, v)| match v.as_val() {
                    crate::model::Val::Str(s) => format!("{k}={s}"),
                    crate::model::Val::Num(n) => format!("{k}={n}"),
                    crate::model::Val::Bool(b) => format!("{k}={b}"),
                })
                .collect();
            l.sort();
            l.join(",")
        }
        Event::Log(l) => l.service.to_string(),
        Event::Span(s) => s.service.to_string(),
    }
}

/// Synthetic CloudMart traffic: EC2 CPU, ALB response times, RDS
/// connections, API logs (some errors) and checkout spans, spread over
/// `series` instances/services, 10 ms of event time apart.
struct Generator {
    start: Millis,
    series: u64,
    state: u64,
}

impl Generator {
    fn new(start: Millis, series: u64) -> Self {
        Generator {
            start,
            series,
            state: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*: deterministic and fast
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn next(&mut self, i: u64, out: &mut String) {
        use std::fmt::Write;
        let t = format_rfc3339(self.start + (i as Millis) * 10);
        let r = self.rand();
        let s = r % self.series;
        let pct = (r >> 20) % 1000;
        match i % 5 {
            0 => write!(
                out,
                r#"{{"kind":"metric","time":"{t}","name":"CPUUtilization","namespace":"AWS/EC2","value":{}.{},"unit":"Percent","labels":{{"InstanceId":"i-{s:05x}"}}}}"#,
                20 + pct % 75,
                pct % 10
            ),
            1 => write!(
                out,
                r#"{{"kind":"metric","time":"{t}","name":"TargetResponseTime","namespace":"AWS/ApplicationELB","value":0.{:03},"unit":"Seconds","labels":{{"LoadBalancer":"app/cloudmart-{s}"}}}}"#,
                100 + pct % 800
            ),
            2 => write!(
                out,
                r#"{{"kind":"metric","time":"{t}","name":"DatabaseConnections","namespace":"AWS/RDS","value":{},"unit":"Count","labels":{{"DBInstanceIdentifier":"cloudmart-db-{s}"}}}}"#,
                20 + pct % 90
            ),
            3 => {
                let (level, status) = if pct < 20 { ("ERROR", 500) } else { ("INFO", 200) };
                write!(
                    out,
                    r#"{{"kind":"log","time":"{t}","service":"api-{s}","level":"{level}","message":"POST /checkout {status}","fields":{{"status_code":{status},"request_time":0.{:03},"user_id":"u-{}"}}}}"#,
                    50 + pct % 900,
                    r % 10_000
                )
            }
            _ => write!(
                out,
                r#"{{"kind":"span","time":"{t}","trace_id":"{r:016x}","span_id":"{:08x}","service":"checkout-{s}","name":"POST /checkout","duration_ms":{}.{},"status":"{}","attributes":{{"http.status_code":{}}}}}"#,
                r as u32,
                50 + pct,
                pct % 10,
                if pct < 10 { "error" } else { "ok" },
                if pct < 10 { 500 } else { 200 }
            ),
        }
        .expect("writing to a String");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_events_decode_and_key_by_series() {
        let mut g = Generator::new(1_700_000_000_000, 50);
        let mut kinds = [0; 3];
        for i in 0..1000 {
            let mut s = String::new();
            g.next(i, &mut s);
            let ev = JsonDecoder
                .decode(s.as_bytes())
                .unwrap_or_else(|e| panic!("{s}: {e}"));
            kinds[ev.signal().index()] += 1;
            assert!(!key(&ev).is_empty());
        }
        assert!(kinds.iter().all(|k| *k > 100), "{kinds:?}");
    }

    /// The differential test of `decode::fast` over generated traffic (it
    /// lives here because `Generator` is private to this module): every
    /// event takes the fast path and decodes exactly as serde_json does.
    #[test]
    fn generated_events_take_the_fast_decoder_identically() {
        let mut g = Generator::new(1_795_770_000_000, 500);
        let mut s = String::new();
        for i in 0..5000 {
            s.clear();
            g.next(i, &mut s);
            crate::decode::fast::assert_fast_and_identical(s.as_bytes());
        }
    }
}
