//! Dispatch inside `klaxon run`: the notification log and the incidents
//! survive a SIGKILL, on a restart (tansu, static membership) and on
//! failover to the other member (MockCluster, which runs the group
//! protocol fully; tansu 0.6 keeps a killed member's assignment).
//!
//! Both tests write state changes straight to the alerts topic and read
//! what the members accepted from their shared outbox file. Each alert
//! must be notified firing exactly once, and resolved exactly once when it
//! resolves: a lost notification log would send a firing twice, or lose
//! the resolved notice (a receiver is only told an alert resolved if the
//! log says it was told it fired). Alerts that fire just before the kill
//! are still inside `group_wait` (2 s): the next owner must send them.

use std::time::{Duration, Instant};

use integration_tests::dispatch::*;
use integration_tests::*;
use klaxon::model::AlarmState;

/// A minute ago: dispatch drops changes older than its dedup window.
fn t0() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - now % 60_000 - 60_000
}

fn fire(range: std::ops::RangeInclusive<usize>) -> Vec<klaxon::model::StateChange> {
    range.map(|n| change(n, AlarmState::Alarm, t0())).collect()
}

fn resolve(range: std::ops::RangeInclusive<usize>) -> Vec<klaxon::model::StateChange> {
    range
        .map(|n| change(n, AlarmState::Ok, t0() + 60_000))
        .collect()
}

fn nums(range: std::ops::RangeInclusive<usize>) -> Vec<usize> {
    range.collect()
}

/// Waits for the outbox to show `want`, then a little longer for anything
/// sent twice, and checks it.
fn assert_outbox(
    outbox: &std::path::Path,
    want: &std::collections::BTreeMap<(String, String), usize>,
    logs: impl Fn() -> String,
) {
    let got = wait_for(
        Duration::from_secs(90),
        || tally(&outbox_lines(outbox)),
        |t| t == want,
    );
    assert_eq!(
        &got,
        want,
        "notifications (kind, alert) → times sent\n{}",
        logs()
    );
    // Group intervals are 1 s: a duplicate would show within a few.
    std::thread::sleep(Duration::from_secs(4));
    let sent = outbox_lines(outbox);
    assert_eq!(
        &tally(&sent),
        want,
        "after waiting for duplicates\n{}",
        logs()
    );
    let mut ids: Vec<&str> = sent.iter().map(|s| s.id.as_str()).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "a notification id was sent twice");
}

fn outbox_lines(p: &std::path::Path) -> Vec<Sent> {
    outbox(p)
}

#[test]
fn a_restarted_member_neither_repeats_nor_loses_notifications() {
    let broker = TestBroker::from_env();
    let brokers = broker.bootstrap.clone();
    let topics = broker.topics();
    let rules = fast_team_rules();
    let group = unique("g");
    let config = write_config(&RunSpec {
        brokers: &brokers,
        topics: &topics,
        group: &group,
        rules: &rules,
        http_port: free_port(),
        idle_timeout: "2s",
        max_event_bytes: 1 << 20,
        properties: &[("session.timeout.ms", "30000")],
    });
    let port = http_port_of(&config);
    let out = outbox_path();
    set_outbox(&config, &out);
    let env = [("KLAXON_INSTANCE_ID", "member-1")];

    let m = spawn_run(&config, &env, &[]);
    wait_for(
        Duration::from_secs(60),
        || metric(port, "klaxon_dispatch_partitions"),
        |n| *n == 4.0,
    );
    publish(&brokers, &topics.alerts, &fire(1..=6), &rules);
    let first = wait_for(
        Duration::from_secs(60),
        || tally(&outbox(&out)),
        |t| t.len() == 6,
    );
    assert_eq!(first, exactly_once(&nums(1..=6), &[]), "{}", m.log_text());

    // Two more fire; killed before their group_wait ends.
    publish(&brokers, &topics.alerts, &fire(7..=8), &rules);
    wait_for(
        Duration::from_secs(30),
        || metric(port, "klaxon_dispatch_changes_total"),
        |n| *n >= 8.0,
    );
    let killed_log = m.kill();

    let m = spawn_run(&config, &env, &[]);
    publish(&brokers, &topics.alerts, &resolve(1..=6), &rules);
    publish(&brokers, &topics.alerts, &fire(9..=10), &rules);
    assert_outbox(&out, &exactly_once(&nums(1..=10), &nums(1..=6)), || {
        format!(
            "--- restarted ---\n{}\n--- killed ---\n{killed_log}",
            m.log_text()
        )
    });
    m.terminate();
}

#[test]
fn after_a_sigkill_the_survivor_sends_each_notification_exactly_once() {
    let started = Instant::now();
    let broker = TestBroker::mock();
    let brokers = broker.bootstrap.clone();
    let topics = broker.topics();
    let rules = fast_team_rules();
    let group = unique("g");
    let out = outbox_path();
    let props = [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ];
    let member = |_: &str| {
        let config = write_config(&RunSpec {
            brokers: &brokers,
            topics: &topics,
            group: &group,
            rules: &rules,
            http_port: free_port(),
            idle_timeout: "2s",
            max_event_bytes: 1 << 20,
            properties: &props,
        });
        set_outbox(&config, &out);
        let port = http_port_of(&config);
        (spawn_run(&config, &[], &[]), port)
    };
    let (a, pa) = member("a");
    let (b, pb) = member("b");
    let split = wait_for(
        Duration::from_secs(90),
        || {
            (
                metric(pa, "klaxon_dispatch_partitions"),
                metric(pb, "klaxon_dispatch_partitions"),
            )
        },
        |(x, y)| *x > 0.0 && *y > 0.0 && x + y == 4.0,
    );
    assert!(
        split.0 > 0.0 && split.1 > 0.0,
        "both members dispatch: {split:?}\n{}\n{}",
        a.log_text(),
        b.log_text()
    );

    publish(&brokers, &topics.alerts, &fire(1..=12), &rules);
    let first = wait_for(
        Duration::from_secs(60),
        || tally(&outbox(&out)),
        |t| t.len() == 12,
    );
    assert_eq!(first, exactly_once(&nums(1..=12), &[]));
    let sent_by_b = metric(pb, "klaxon_dispatch_notifications_total");
    assert!(sent_by_b > 0.0, "B owns some incidents");

    // Four more fire; B is killed before their group_wait ends.
    publish(&brokers, &topics.alerts, &fire(13..=16), &rules);
    wait_for(
        Duration::from_secs(30),
        || {
            metric(pa, "klaxon_dispatch_changes_total")
                + metric(pb, "klaxon_dispatch_changes_total")
        },
        |n| *n >= 16.0,
    );
    let log_b = b.kill();
    let killed = Instant::now();

    publish(&brokers, &topics.alerts, &resolve(1..=12), &rules);
    publish(&brokers, &topics.alerts, &fire(17..=20), &rules);
    let n = wait_for(
        Duration::from_secs(60),
        || metric(pa, "klaxon_dispatch_partitions"),
        |n| *n == 4.0,
    );
    assert_eq!(n, 4.0, "the survivor took B's partitions\n{}", a.log_text());
    eprintln!(
        "A owns all 4 alerts partitions {:.1?} after the kill ({:.1?} in)",
        killed.elapsed(),
        started.elapsed()
    );
    assert_outbox(&out, &exactly_once(&nums(1..=20), &nums(1..=12)), || {
        format!("--- A ---\n{}\n--- B (killed) ---\n{log_b}", a.log_text())
    });
    a.terminate();
}

/// The HTTP port a config listens on.
fn http_port_of(config: &std::path::Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("listen: 127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .expect("listen port in the config")
}
