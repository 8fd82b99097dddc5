//! Golden tests: `klaxon replay` over the bundled CloudMart telemetry must
//! print exactly the state changes in `tests/golden/`. Regenerate after an
//! intended change with `UPDATE_GOLDEN=1 cargo test -p integration-tests`,
//! and review the diff.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use klaxon::cli::replay::replay;
use klaxon::config::load_rules;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run_replay(input: &Path, lateness: i64) -> (String, String) {
    let rules = load_rules(&[root().join("rules")]).expect("bundled rules compile");
    let file = std::fs::File::open(input).unwrap();
    let mut out = Vec::new();
    let summary = replay(rules, BufReader::new(file), &mut out, lateness).unwrap();
    (String::from_utf8(out).unwrap(), summary)
}

fn normalize(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(values) = v["values"].as_object_mut() {
                for x in values.values_mut() {
                    if let Some(f) = x.as_f64() {
                        *x = serde_json::json!(format!("{f:.9e}"));
                    }
                }
            }
            v
        })
        .collect()
}

fn golden(name: &str, actual: &str) {
    let path = root().join("integration-tests/tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", path.display()));
    if want != actual {
        let w: Vec<&str> = want.lines().collect();
        let a: Vec<&str> = actual.lines().collect();
        let first = w
            .iter()
            .zip(&a)
            .position(|(x, y)| x != y)
            .unwrap_or(w.len().min(a.len()));
        panic!(
            "{name} differs at line {}:\n  want: {}\n   got: {}\n({} lines wanted, {} got)",
            first + 1,
            w.get(first).unwrap_or(&"<end>"),
            a.get(first).unwrap_or(&"<end>"),
            w.len(),
            a.len()
        );
    }
}

#[test]
fn cloudmart_replay_matches_golden() {
    let (out, summary) = run_replay(&root().join("examples/cloudmart.jsonl"), 30_000);
    golden("cloudmart.replay.jsonl", &out);
    assert!(summary.contains("2 rejected"), "{summary}");
    assert!(summary.contains("unknown field `lables`"), "{summary}");
}

#[test]
fn every_cloudmart_alarm_fires_and_most_recover() {
    let (out, _) = run_replay(&root().join("examples/cloudmart.jsonl"), 30_000);
    let changes: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fired = |rule: &str, state: &str| {
        changes
            .iter()
            .any(|c| c["rule"] == rule && c["state"] == state)
    };
    for rule in [
        "CloudMart-EC2-HighCPU",
        "CloudMart-RDS-HighConnections",
        "CloudMart-ALB-SlowResponse",
        "CloudMart-Redis-LowMemory",
        "CloudMart-ErrorLogs",
        "CloudMart-SlowQueries",
        "CloudMart-API-ErrorRate",
        "CloudMart-Span-P99Latency",
    ] {
        assert!(fired(rule, "alarm"), "{rule} never fired");
    }
    for rule in [
        "CloudMart-EC2-HighCPU",
        "CloudMart-ALB-SlowResponse",
        "CloudMart-Redis-LowMemory",
        "CloudMart-API-ErrorRate",
    ] {
        let alarm = changes
            .iter()
            .position(|c| c["rule"] == rule && c["state"] == "alarm")
            .unwrap();
        assert!(
            changes[alarm..]
                .iter()
                .any(|c| c["rule"] == rule && c["previous"] == "alarm" && c["state"] == "ok"),
            "{rule} never recovered"
        );
    }
    // Ids are deterministic and unique.
    let mut ids: Vec<&str> = changes.iter().map(|c| c["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), changes.len());
}

/// Shuffling events within the allowed lateness must not change a thing.
#[test]
fn out_of_order_within_lateness_gives_the_same_changes() {
    let text = std::fs::read_to_string(root().join("examples/cloudmart.jsonl")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    // Swap neighbours in blocks of 20 lines (a few seconds of event time).
    for chunk in lines.chunks_mut(20) {
        chunk.reverse();
    }
    let shuffled =
        std::env::temp_dir().join(format!("klaxon-shuffled-{}.jsonl", std::process::id()));
    std::fs::write(&shuffled, lines.join("\n")).unwrap();
    let (a, _) = run_replay(&root().join("examples/cloudmart.jsonl"), 30_000);
    let (b, summary) = run_replay(&shuffled, 30_000);
    std::fs::remove_file(&shuffled).ok();
    // Floating-point sums depend on order, so compare values to 1e-9.
    assert_eq!(normalize(&a), normalize(&b));
    assert!(!summary.contains("late:"), "{summary}");
}

/// With no lateness allowed, the same shuffle makes events late, and they
/// are counted per rule rather than silently lost.
#[test]
fn late_events_are_counted_per_rule() {
    let text = std::fs::read_to_string(root().join("examples/cloudmart.jsonl")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    for chunk in lines.chunks_mut(200) {
        chunk.reverse();
    }
    let shuffled = std::env::temp_dir().join(format!("klaxon-late-{}.jsonl", std::process::id()));
    std::fs::write(&shuffled, lines.join("\n")).unwrap();
    let (_, summary) = run_replay(&shuffled, 0);
    std::fs::remove_file(&shuffled).ok();
    assert!(
        summary.contains("late:") && summary.contains("CloudMart-"),
        "{summary}"
    );
}
