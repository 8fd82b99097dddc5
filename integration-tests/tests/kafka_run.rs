//! `klaxon run` against a real broker (tansu here; `KLAXON_TEST_BROKERS`).
//!
//! Telemetry produced → `klaxon run` → the alerts topic must hold exactly
//! what `klaxon replay` prints for the same events (same ids, states and
//! fields), and the malformed and oversized events must be in the
//! dead-letter topic with their reason and source.

use std::time::Duration;

use integration_tests::*;

#[test]
fn run_publishes_what_replay_prints_and_dead_letters_bad_input() {
    let brokers = require_brokers();
    let topics = Topics::create(&brokers);
    let mut lines = cloudmart_lines();
    // An event over the size cap (a metric no rule reads, so replay ignores it).
    let big = format!(
        r#"{{"kind":"metric","time":"2026-11-27T09:00:00Z","name":"Padding","value":1,"labels":{{"pad":"{}"}}}}"#,
        "x".repeat(5000)
    );
    lines.insert(100, big);
    let expected = replay_expected(&lines);
    assert!(expected.len() > 20, "the example fires and clears alarms");

    produce(&brokers, &topics, &lines);
    let port = free_port();
    let config = write_config(&RunSpec {
        brokers: &brokers,
        topics: &topics,
        group: &unique("g"),
        rules: &workspace().join("rules"),
        http_port: port,
        idle_timeout: "1s",
        max_event_bytes: 4096,
        properties: &[],
    });
    let (status, log) = spawn_run(&config, &[], &["--exit-at-end"]).wait(Duration::from_secs(120));
    assert!(
        status.is_some_and(|s| s.success()),
        "klaxon run failed:\n{log}"
    );

    let alerts = read_all(&brokers, &topics.alerts, Duration::from_secs(2));
    let got: Vec<serde_json::Value> = alerts
        .iter()
        .map(|r| serde_json::from_str(&r.payload).unwrap())
        .collect();
    let key = |v: &serde_json::Value| v["id"].as_str().unwrap().to_string();
    let mut got_sorted = got.clone();
    got_sorted.sort_by_key(key);
    got_sorted.dedup();
    let mut want = expected.clone();
    want.sort_by_key(key);
    assert_eq!(
        got_sorted.iter().map(key).collect::<Vec<_>>(),
        want.iter().map(key).collect::<Vec<_>>(),
        "same state changes as replay\n{log}"
    );
    assert_eq!(got_sorted, want, "same fields and values as replay");

    // Keyed by incident: the team files' grouping (rules/teams/), the same
    // key dispatch groups by; alerts of one incident share a partition.
    let dispatch = klaxon::config::dispatch::load_dispatch(&[workspace().join("rules")]).unwrap();
    let mut partition_of = std::collections::BTreeMap::new();
    for r in &alerts {
        let change: klaxon::model::StateChange = serde_json::from_str(&r.payload).unwrap();
        let k = r.key.as_deref().unwrap();
        assert_eq!(k, klaxon::kafka::group_key(&change, &dispatch));
        // The routed team (rules/routes.yaml may move an alert to another
        // team than its rule file's) prefixes the key.
        let routed = dispatch.alert(&change).team;
        assert!(k.starts_with(&format!("{routed}/")), "{k}");
        assert_eq!(
            *partition_of.entry(k.to_string()).or_insert(r.partition),
            r.partition
        );
        assert_eq!(r.headers["klaxon.id"], change.id);
    }
    assert!(partition_of.len() > 1, "several incidents");
    assert!(
        alerts.iter().any(|r| {
            let c: klaxon::model::StateChange = serde_json::from_str(&r.payload).unwrap();
            dispatch.alert(&c).team != c.team
        }),
        "routes.yaml moves at least one alert to another team"
    );

    let dead = read_all(&brokers, &topics.dlq, Duration::from_secs(2));
    let mut reasons: Vec<&str> = dead
        .iter()
        .map(|d| d.headers["klaxon.reason"].as_str())
        .collect();
    reasons.sort();
    assert_eq!(dead.len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("unknown field `lables`")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("EOF while parsing")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("over the 4096-byte cap")),
        "{reasons:?}"
    );
    for d in &dead {
        assert!(d.headers["klaxon.source.topic"] == topics.metrics, "{d:?}");
        assert!(d.headers["klaxon.source.offset"].parse::<i64>().is_ok());
        assert!(d.headers.contains_key("klaxon.source.partition"));
        assert!(
            lines.contains(&d.payload),
            "the payload is the original bytes"
        );
    }
}
