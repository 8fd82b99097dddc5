//! Hot reload of a broken rule file while consuming (tansu, or
//! `KLAXON_TEST_BROKERS=mock` for librdkafka's MockCluster).
//!
//! A member runs the CloudMart rules from a folder of its own. Mid-stream
//! (after the first half of the events) a file with an error is added to
//! the folder. The watcher must reject the new rule set: the failure is
//! counted (`klaxon_rule_reloads_total{result="failure"}`), `POST /-/reload`
//! answers 400 with the `bad.yaml:line:col: …` error, the log names it too,
//! and the rules loaded before keep running: `klaxon_rules_loaded` does not
//! change, and with the second half every state change `klaxon replay`
//! prints for all the events reaches the alerts topic (nothing missing,
//! nothing unexpected). Once the file is removed, `POST /-/reload` answers
//! 200 "reloaded N rules".

use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::*;

/// A rule with a typo in its condition: `maxx` is no function.
const BAD: &str = "team: x
rules:
  - name: BrokenRule
    signal: metric
    where: name == \"CPUUtilization\"
    period: 1m
    compute: { v: max(value) }
    condition: v > maxx(1, 2)
    evaluation_periods: 1
";

/// The `line:col` after the first `bad.yaml:` in `text`, if any.
fn bad_yaml_position(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("bad.yaml:")? + "bad.yaml:".len()..];
    let mut it = rest.splitn(3, ':');
    let line = it.next()?.parse().ok()?;
    let col = it.next()?.parse().ok()?;
    Some((line, col))
}

/// How many rules the YAML files of `dir` define (`- name:` entries).
fn rules_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| l.trim_start().starts_with("- name:"))
                .count()
        })
        .sum()
}

#[test]
fn a_broken_rule_file_is_rejected_and_the_running_rules_keep_firing() {
    let started = Instant::now();
    let broker = TestBroker::from_env();
    let brokers = broker.bootstrap.clone();
    let topics = broker.topics();
    let lines = cloudmart_lines();
    let (first, second) = halves(&lines);
    let want = expected_ids(&replay_expected(&lines));
    assert!(want.len() > 20, "the example fires and clears alarms");

    // The CloudMart rule files (not their tests/ folder), in a folder of
    // this test's own.
    let base = std::env::temp_dir().join(unique("klaxon-reload"));
    let rules = base.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for e in std::fs::read_dir(workspace().join("rules/cloudmart")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && p.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&p, rules.join(p.file_name().unwrap())).unwrap();
        }
    }
    let n_rules = rules_in(&rules);

    let port = free_port();
    let config = write_config(&RunSpec {
        brokers: &brokers,
        topics: &topics,
        group: &unique("g"),
        rules: &rules,
        http_port: port,
        idle_timeout: "2s",
        max_event_bytes: 65536,
        properties: &[],
    });
    let m = spawn_run(&config, &[], &[]);
    let n = wait_for(
        Duration::from_secs(90),
        || metric(port, "klaxon_partitions_assigned"),
        |n| *n == 12.0,
    );
    assert_eq!(n, 12.0, "one member owns every partition\n{}", m.log_text());
    let loaded = metric(port, "klaxon_rules_loaded");
    assert_eq!(loaded, n_rules as f64, "rules loaded at start");
    assert_eq!(n_rules, 8, "the CloudMart example has 8 rules");

    produce(&brokers, &topics, &first);
    let c = wait_for(
        Duration::from_secs(90),
        || metric(port, "klaxon_events_consumed_total"),
        |c| *c == first.len() as f64,
    );
    assert_eq!(
        c,
        first.len() as f64,
        "read the first half\n{}",
        m.log_text()
    );
    eprintln!("first half read ({:.1?})", started.elapsed());

    // A broken file appears, whole (written beside the folder, then moved in).
    let staged = base.join("bad.yaml");
    std::fs::write(&staged, BAD).unwrap();
    std::fs::rename(&staged, rules.join("bad.yaml")).unwrap();
    let failures = wait_for(
        Duration::from_secs(30),
        || metric_with(port, "klaxon_rule_reloads_total", r#"result="failure""#),
        |f| *f >= 1.0,
    );
    assert!(
        failures >= 1.0,
        "the watcher rejected the broken file\n{}",
        m.log_text()
    );
    eprintln!("watcher rejected bad.yaml ({:.1?})", started.elapsed());

    let (status, body) = http(port, "POST", "/-/reload").expect("POST /-/reload");
    assert_eq!(status, 400, "a broken rule set is refused: {body}");
    let pos = bad_yaml_position(&body);
    assert!(pos.is_some(), "the error names bad.yaml:line:col: {body}");
    assert!(
        body.contains("maxx"),
        "the error says what is wrong: {body}"
    );
    assert_eq!(
        metric(port, "klaxon_rules_loaded"),
        loaded,
        "the previous rules keep running"
    );
    assert!(
        metric_with(port, "klaxon_rule_reloads_total", r#"result="failure""#) >= failures + 1.0,
        "the refused POST is counted too"
    );

    produce(&brokers, &topics, &second);
    let got = wait_for(
        Duration::from_secs(90),
        || alert_ids(&brokers, &topics),
        |got| want.iter().all(|i| got.binary_search(i).is_ok()),
    );
    eprintln!(
        "alerts: {} of {} expected ids ({:.1?})",
        got.iter().filter(|i| want.binary_search(i).is_ok()).count(),
        want.len(),
        started.elapsed()
    );

    std::fs::remove_file(rules.join("bad.yaml")).unwrap();
    let (status, body) = http(port, "POST", "/-/reload").expect("POST /-/reload");
    assert_eq!(
        (status, body.trim()),
        (200, format!("reloaded {n_rules} rules").as_str()),
        "the good rules reload once the broken file is gone"
    );
    assert_eq!(metric(port, "klaxon_rules_loaded"), n_rules as f64);
    let late = metric(port, "klaxon_events_late_total");
    let log = m.terminate();

    let (line, col) = pos.unwrap();
    let at = format!("bad.yaml:{line}:{col}");
    assert!(
        log.lines()
            .any(|l| l.contains("rejected reload") && l.contains(&at)),
        "the log shows the rejection at {at}\n{log}"
    );
    let alerts = read_all(&brokers, &topics.alerts, Duration::from_secs(3));
    assert_same_ids(&alerts, &want, || {
        format!("{late} events counted late\n{log}")
    });
    eprintln!(
        "ok: rejected at {at}; {} records, {} ids, {} duplicates, {late} late ({:.1?})",
        alerts.len(),
        want.len(),
        duplicates(&alerts),
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&base);
}
