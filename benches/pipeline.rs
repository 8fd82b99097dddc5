//! Decode + window aggregate over ~200-byte metric events with 10k live
//! series, against serde_json parse-only baselines, in one run:
//!
//!     cargo bench --bench pipeline
//!
//! `parse_only/ignored_any` validates the JSON and builds nothing;
//! `parse_only/struct` deserializes into a plain borrowed struct (what a
//! minimal consumer would write); `decode` is klaxon's validating decoder;
//! `decode_aggregate` is decode + routing + `where` + group_by + avg.
//!
//! `cloudmart_mixed/decode` decodes the lines of `examples/cloudmart.jsonl`
//! (metrics, logs and spans, as `klaxon produce` writes them; two of the
//! 5765 lines are deliberate mistakes).

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::Deserialize;

use klaxon::config::rules::compile_file;
use klaxon::config::{yaml, RuleSet};
use klaxon::decode::{Decoder, JsonDecoder};
use klaxon::engine::{Engine, Options};

const EVENTS: usize = 200_000;
/// Events fed to warm the engine before the measured ones.
const WARM: usize = 200_000;
const SERIES: usize = 10_000;

fn events(n: usize, from: usize) -> Vec<Vec<u8>> {
    let base = 1_795_770_000_000i64; // 2026-11-27T09:00:00Z
    (from..from + n)
        .map(|i| {
            // 1 ms apart: each series reports every 10 s of event time, and
            // 200k events span 200 s, so three 1-minute periods close.
            let t = klaxon::model::format_rfc3339(base + i as i64 + 1);
            // Each series has its own steady level (5% of them above 80),
            // with a little noise, so states rarely flip: the steady state
            // of a running service.
            let series = i % SERIES;
            let level = if series % 20 == 0 { 90.0 } else { 20.0 + (series % 50) as f64 };
            let cpu = level + ((i * 7919) % 50) as f64 / 10.0;
            format!(
                r#"{{"kind":"metric","time":"{t}","name":"CPUUtilization","namespace":"AWS/EC2","value":{cpu},"unit":"Percent","labels":{{"InstanceId":"i-0a1b2c3d{:05}","AutoScalingGroupName":"cloudmart-web"}}}}"#,
                i % SERIES
            )
            .into_bytes()
        })
        .collect()
}

fn rules() -> RuleSet {
    let text = r#"team: platform
rules:
  - name: CloudMart-EC2-HighCPU
    signal: metric
    where: name == "CPUUtilization" && namespace == "AWS/EC2"
    group_by: [InstanceId]
    period: 1m
    compute: { cpu: avg(value) }
    condition: cpu > 80
    evaluation_periods: 2
"#;
    let doc = yaml::parse(text).unwrap();
    RuleSet {
        rules: compile_file(std::path::Path::new("bench.yaml"), &doc).unwrap(),
    }
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct Plain<'a> {
    kind: &'a str,
    time: &'a str,
    name: &'a str,
    namespace: &'a str,
    value: f64,
    unit: &'a str,
    #[serde(borrow)]
    labels: HashMap<&'a str, &'a str>,
}

fn bench(c: &mut Criterion) {
    let evs = events(EVENTS, WARM);
    let warm = events(WARM, 0);
    let bytes: usize = evs.iter().map(Vec::len).sum();
    eprintln!(
        "{} events, {:.0} bytes each on average",
        evs.len(),
        bytes as f64 / evs.len() as f64
    );
    let set = rules();

    let mut g = c.benchmark_group("metric_200b_10k_series");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(10);
    g.bench_function("parse_only/ignored_any", |b| {
        b.iter(|| {
            for e in &evs {
                let _: serde::de::IgnoredAny = serde_json::from_slice(e).unwrap();
            }
        })
    });
    g.bench_function("parse_only/struct", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for e in &evs {
                let p: Plain = serde_json::from_slice(e).unwrap();
                sum += p.value;
            }
            sum
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut n = 0;
            for e in &evs {
                n += JsonDecoder.decode(e).is_ok() as usize;
            }
            n
        })
    });
    g.bench_function("decode_aggregate", |b| {
        b.iter_batched(
            || {
                // A warm engine: every series exists and has been evaluated
                // (its first ok/alarm change is behind it), as in a running service.
                let mut engine = Engine::new(set.clone(), Options::with_lateness(0));
                let mut out = Vec::new();
                for e in &warm {
                    engine.ingest(&JsonDecoder.decode(e).unwrap(), &mut out);
                }
                engine
            },
            |mut engine| {
                let mut out = Vec::new();
                for e in &evs {
                    let ev = JsonDecoder.decode(e).unwrap();
                    engine.ingest(&ev, &mut out);
                }
                (engine, out)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let lines: Vec<&[u8]> = include_str!("../examples/cloudmart.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::as_bytes)
        .collect();
    let mut g = c.benchmark_group("cloudmart_mixed");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut n = 0;
            for e in &lines {
                n += JsonDecoder.decode(e).is_ok() as usize;
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
