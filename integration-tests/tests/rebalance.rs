//! Graceful handover between two members of one consumer group (tansu, or
//! `KLAXON_TEST_BROKERS=mock` for librdkafka's MockCluster). On tansu 0.6
//! the test uses the workarounds of [`handover_broker`]: single-record
//! batches and a checkpoints topic.
//!
//! Members A and B split the 12 telemetry partitions (3 topics × 4). Both
//! read the first half of the CloudMart events and commit mid-stream (the
//! test waits until every partition with data has a commit past its start,
//! so the handover really resumes in the middle). Then B leaves cleanly
//! (SIGTERM: publish what is closable, commit with the watermark in the
//! metadata, leave). A must take over all 12 partitions, rebuild B's windows
//! by re-reading from B's committed offsets and, with the second half,
//! publish every state change `klaxon replay` prints for all the events:
//! no id missing (the handover lost nothing) and no id replay does not
//! print (the rebuilt windows and alarm states are the same ones).
//! Duplicates are allowed (at-least-once) and counted.

use std::time::{Duration, Instant};

use integration_tests::*;

#[test]
fn a_member_that_leaves_hands_its_partitions_over_without_losing_alerts() {
    let started = Instant::now();
    let broker = handover_broker();
    let brokers = broker.bootstrap.clone();
    let topics = broker.topics();
    let lines = cloudmart_lines();
    let (first, second) = halves(&lines);
    let want = expected_ids(&replay_expected(&lines));
    assert!(want.len() > 20, "the example fires and clears alarms");

    let group = unique("g");
    let Pair { a, b, pa, ca, .. } =
        two_members_mid_stream(&broker, &topics, &group, &[], &first, started);

    // B leaves cleanly; A owns everything.
    let log_b = b.terminate();
    let na = wait_for(Duration::from_secs(90), || assigned(pa), |x| *x == 12.0);
    assert_eq!(
        na,
        12.0,
        "A took over all partitions\n--- A ---\n{}\n--- B ---\n{log_b}",
        a.log_text()
    );
    eprintln!(
        "B left; A owns all 12 partitions ({:.1?})",
        started.elapsed()
    );

    broker.produce(&topics, &second);
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
    let consumed_a = consumed(pa);
    let late_a = metric(pa, "klaxon_events_late_total");
    eprintln!("A: {late_a} events counted late");
    let log_a = a.terminate();

    let alerts = read_all(&brokers, &topics.alerts, Duration::from_secs(3));
    assert_same_ids(&alerts, &want, || {
        format!(
            "A counted {late_a} events late; broker problems found: {:#?}\n{}--- A ---\n{log_a}\n--- B ---\n{log_b}",
            broker_quirks(&broker),
            broker.checkpoints_text()
        )
    });
    // B's commits held back what its open windows and the rules' N+2
    // ranges needed, so A re-read some of B's first half.
    assert!(
        consumed_a > ca + second.len() as f64,
        "A read {consumed_a} events: its own {ca} of the first half and the {} of the second, \
         none of B's again: it did not resume at B's committed offsets\nbroker problems found: {:#?}",
        second.len(),
        broker_quirks(&broker)
    );
    eprintln!(
        "ok: {} records, {} ids, {} duplicates; A consumed {consumed_a} events in all ({:.1?})",
        alerts.len(),
        want.len(),
        duplicates(&alerts),
        started.elapsed()
    );
}
