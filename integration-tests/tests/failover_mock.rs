//! Crash failover to the surviving member, on librdkafka's MockCluster.
//!
//! tansu 0.6.0 keeps a SIGKILLed member's assignment, so the survivor never
//! gets its partitions (see /work/shared/KAFKA.md); librdkafka's MockCluster
//! runs the group protocol fully, in this test process, listening on
//! loopback so that two `klaxon run` processes can join it. Both members
//! (session timeout 6 s) split the partitions and read the first half of
//! the CloudMart events, committing mid-stream (the test waits until every
//! partition with data has a commit past its start). Then one is SIGKILLed:
//! no final commit, no leave. The second half is produced. The survivor
//! must get the dead member's partitions once its session times out,
//! re-read them from the committed offsets, and publish every state change
//! `klaxon replay` prints for all the events: nothing missing, nothing
//! unexpected. Duplicates are allowed and counted.

use std::time::{Duration, Instant};

use integration_tests::*;

#[test]
fn the_survivor_takes_over_a_killed_members_partitions_without_losing_alerts() {
    let started = Instant::now();
    let broker = TestBroker::mock();
    let brokers = broker.bootstrap.clone();
    let topics = broker.topics();
    let lines = cloudmart_lines();
    let (first, second) = halves(&lines);
    let want = expected_ids(&replay_expected(&lines));
    assert!(want.len() > 20, "the example fires and clears alarms");

    let group = unique("g");
    let Pair { a, b, pa, ca, .. } = two_members_mid_stream(
        &broker,
        &topics,
        &group,
        &[
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ],
        &first,
        started,
    );

    let log_b = b.kill();
    let killed = Instant::now();
    produce(&brokers, &topics, &second);
    let na = wait_for(Duration::from_secs(120), || assigned(pa), |x| *x == 12.0);
    assert_eq!(
        na,
        12.0,
        "the survivor got the killed member's partitions\n--- A ---\n{}\n--- B ---\n{log_b}",
        a.log_text()
    );
    eprintln!(
        "B killed; A owns all 12 partitions {:.1?} later ({:.1?})",
        killed.elapsed(),
        started.elapsed()
    );
    let got = wait_for(
        Duration::from_secs(120),
        || alert_ids(&brokers, &topics),
        |got| want.iter().all(|i| got.binary_search(i).is_ok()),
    );
    eprintln!(
        "alerts: {} of {} expected ids ({:.1?})",
        got.iter().filter(|i| want.binary_search(i).is_ok()).count(),
        want.len(),
        started.elapsed()
    );
    let consumed_a = consumed(pa);
    let late_a = metric(pa, "klaxon_events_late_total");
    eprintln!("A: {late_a} events counted late");
    let log_a = a.terminate();

    let alerts = read_all(&brokers, &topics.alerts, Duration::from_secs(3));
    assert_same_ids(&alerts, &want, || {
        format!("A counted {late_a} events late\n--- A ---\n{log_a}\n--- B (killed) ---\n{log_b}")
    });
    assert!(
        consumed_a > ca + second.len() as f64,
        "A read {consumed_a} events: its own {ca} of the first half and the {} of the second, \
         none of B's again: it did not resume at B's committed offsets",
        second.len()
    );
    eprintln!(
        "ok: {} records, {} ids, {} duplicates; A consumed {consumed_a} events in all ({:.1?})",
        alerts.len(),
        want.len(),
        duplicates(&alerts),
        started.elapsed()
    );
    drop(broker);
}
