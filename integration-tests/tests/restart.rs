//! Crash and restart of a statically-identified member (tansu, or
//! `KLAXON_TEST_BROKERS=mock` for librdkafka's MockCluster). On tansu 0.6
//! the test uses the workarounds of [`handover_broker`]: single-record
//! batches and a checkpoints topic.
//!
//! One member with `KLAXON_INSTANCE_ID` (`group.instance.id`) reads the
//! first half of the CloudMart events and commits mid-stream (the test
//! waits until every partition with data has a commit past its start).
//! Then it is SIGKILLed: no final commit, no leave. The second half is
//! produced while it is down, and a new process with the same config and
//! the same instance id takes its place. It must resume from the committed
//! offsets, not from the beginning (it reads fewer events than were
//! produced in all), rebuild the windows, and publish every state change
//! `klaxon replay` prints for all the events, with the same ids: nothing
//! missing, nothing unexpected. Duplicates are allowed and counted.

use std::time::{Duration, Instant};

use integration_tests::*;

#[test]
fn a_killed_member_restarts_from_its_commits_without_losing_alerts() {
    let started = Instant::now();
    let broker = handover_broker();
    let brokers = broker.bootstrap.clone();
    let topics = broker.topics();
    let lines = cloudmart_lines();
    let (first, second) = halves(&lines);
    let want = expected_ids(&replay_expected(&lines));
    assert!(want.len() > 20, "the example fires and clears alarms");

    let group = unique("g");
    let instance = unique("pod");
    let env = [("KLAXON_INSTANCE_ID", instance.as_str())];
    let port = free_port();
    let config = write_config(&RunSpec {
        brokers: &brokers,
        topics: &topics,
        group: &group,
        rules: &workspace().join("rules/cloudmart"),
        http_port: port,
        idle_timeout: HANDOVER_IDLE,
        max_event_bytes: 65536,
        properties: &[],
    });
    let consumed = || metric(port, "klaxon_events_consumed_total");

    let m = broker.spawn_run(&config, &env);
    let n = wait_for(
        Duration::from_secs(90),
        || metric(port, "klaxon_partitions_assigned"),
        |n| *n == 12.0,
    );
    assert_eq!(n, 12.0, "one member owns every partition\n{}", m.log_text());
    broker.produce(&topics, &first);
    let c = wait_for(Duration::from_secs(90), consumed, |c| {
        *c == first.len() as f64
    });
    assert_eq!(
        c,
        first.len() as f64,
        "read the first half\n{}",
        m.log_text()
    );
    let parts = partitions_with_data(&brokers, &topics);
    let left =
        wait_committed_past_start(&brokers, &group, &topics, &parts, Duration::from_secs(90));
    assert!(
        left.is_empty(),
        "no commit past the start of {left:?}\n{}",
        m.log_text()
    );
    let before_kill: Vec<String> = committed(&brokers, &group, &topics.telemetry())
        .iter()
        .filter_map(|c| Some(format!("{}/{}@{}", c.topic, c.partition, c.offset?)))
        .collect();
    eprintln!(
        "first half read and committed mid-stream: {before_kill:?} ({:.1?})",
        started.elapsed()
    );

    let log1 = m.kill();
    broker.produce(&topics, &second);
    let m = broker.spawn_run(&config, &env);
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
    let reread = consumed();
    let late = metric(port, "klaxon_events_late_total");
    eprintln!("the restarted member counted {late} events late");
    let log2 = m.terminate();
    let logs = || format!("--- before SIGKILL ---\n{log1}\n--- restarted ---\n{log2}");

    assert!(
        reread < lines.len() as f64,
        "the restarted member read {reread} events, as many as were produced ({}): it started over\n{}",
        lines.len(),
        logs()
    );
    let alerts = read_all(&brokers, &topics.alerts, Duration::from_secs(3));
    assert_same_ids(&alerts, &want, || {
        format!(
            "broker problems found: {:#?}\n{}{}",
            broker_quirks(&broker),
            broker.checkpoints_text(),
            logs()
        )
    });
    // The commits held back the events the open windows and the rules'
    // N+2 ranges needed, so the restarted member re-read some of the
    // first half before the second.
    assert!(
        reread > second.len() as f64,
        "the restarted member read {reread} events, no more than the second half ({}): \
         it did not re-read from the committed offsets\nbroker problems found: {:#?}\n{}",
        second.len(),
        broker_quirks(&broker),
        logs()
    );
    eprintln!(
        "ok: the restarted member read {reread} of {} events; {} records, {} ids, {} duplicates ({:.1?})",
        lines.len(),
        alerts.len(),
        want.len(),
        duplicates(&alerts),
        started.elapsed()
    );
}
