//! The Deliverer: retries, Retry-After, permanent errors, digests under a
//! rate limit, a receiver that stays down, shedding. Time is virtual
//! (ManualTimer): a 30 s Retry-After or a one-per-minute limit costs
//! nothing. HTTP goes to a double (webhooks are the simplest channel).

use std::sync::Arc;
use std::time::Duration;

use integration_tests::notify::receiver;
use klaxon::alerts::{Kind, Notification};
use klaxon::metrics::{Metrics, NotifyFailureLabels, ReceiverLabel};
use klaxon::notify::testdata::notification;
use klaxon::notify::time::ManualTimer;
use klaxon::notify::{build, Deliverer, Failure, Outcome};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Setup {
    d: Deliverer,
    out: UnboundedReceiver<Outcome>,
    timer: ManualTimer,
    metrics: Metrics,
}

fn setup(server: &MockServer, extra: &str) -> Setup {
    let yaml = format!(
        "hook: {{ type: webhook, url: \"{}/x\", retry: {{ initial: 2s, max: 60s }}{extra} }}\n",
        server.uri()
    );
    let r = receiver(&yaml, &[]);
    let timer = ManualTimer::new();
    let metrics = Metrics::default();
    let mut d = Deliverer::with_notifiers(
        vec![(
            r.name.clone(),
            r.delivery.clone(),
            Arc::from(build(&r).unwrap()),
        )],
        metrics.clone(),
        Arc::new(timer.clone()),
    );
    let out = d.outcomes().unwrap();
    Setup {
        d,
        out,
        timer,
        metrics,
    }
}

fn note(i: usize, kind: Kind) -> Notification {
    let mut n = notification(kind);
    n.receiver = "hook".into();
    n.id = format!("n{i}");
    n.incident = format!("inc-{i}");
    n.alerts
        .firing
        .iter_mut()
        .chain(n.alerts.resolved.iter_mut())
        .for_each(|a| {
            a.fingerprint = format!("fp-{i}");
            a.summary = format!("alert {i}");
        });
    n
}

async fn next(out: &mut UnboundedReceiver<Outcome>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(10), out.recv())
        .await
        .expect("an outcome within 10 s")
        .expect("channel open")
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn retry_after_is_honoured_and_5xx_backs_off() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(3)
        .mount(&server)
        .await;
    let mut s = setup(&server, "");
    let real = std::time::Instant::now();
    s.d.submit(note(1, Kind::Firing), None);
    let o = next(&mut s.out).await;
    assert!(real.elapsed() < Duration::from_secs(5));
    assert_eq!(o.id, "n1");
    assert!(o.result.is_ok(), "{o:?}");
    assert_eq!(o.attempts, 4, "429, 500, 500, 200");
    let sleeps = s.timer.sleeps();
    // 30 s for the 429; then backoff for attempts 2 and 3: 2–4 s and 4–8 s
    // (initial 2 s doubling, jitter between half and all of the step).
    assert!(sleeps.contains(&Duration::from_secs(30)), "{sleeps:?}");
    let after: Vec<_> = sleeps
        .iter()
        .filter(|d| **d < Duration::from_secs(30))
        .collect();
    assert_eq!(after.len(), 2, "{sleeps:?}");
    assert!(
        (Duration::from_secs(2)..=Duration::from_secs(4)).contains(after[0]),
        "{sleeps:?}"
    );
    assert!(
        (Duration::from_secs(4)..=Duration::from_secs(8)).contains(after[1]),
        "{sleeps:?}"
    );
    assert!(s.timer.now_elapsed() >= Duration::from_secs(36));
    let label = ReceiverLabel {
        receiver: "hook".into(),
    };
    assert_eq!(s.metrics.notify_retries.get_or_create(&label).get(), 3);
    assert_eq!(s.metrics.notify_sent.get_or_create(&label).get(), 1);
    // Every attempt carried the same idempotency key.
    let reqs = server.received_requests().await.unwrap();
    assert!(reqs
        .iter()
        .all(|r| r.headers.get("idempotency-key").unwrap() == "n1"));
}

#[tokio::test]
async fn permanent_errors_are_reported_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("unknown target"))
        .expect(1)
        .mount(&server)
        .await;
    let mut s = setup(&server, "");
    s.d.submit(note(1, Kind::Firing), None);
    let o = next(&mut s.out).await;
    match &o.result {
        Err(Failure::Permanent { reason }) => {
            assert!(
                reason.contains("HTTP 400") && reason.contains("unknown target"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(o.attempts, 1);
    let l = NotifyFailureLabels {
        receiver: "hook".into(),
        kind: "permanent".into(),
    };
    assert_eq!(s.metrics.notify_failures.get_or_create(&l).get(), 1);
    assert!(s.timer.sleeps().is_empty(), "no retry was scheduled");
}

#[tokio::test]
async fn a_rate_limited_target_gets_one_digest_not_a_flood() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let mut s = setup(&server, ", target_rate_limit: { per_minute: 1, burst: 1 }");
    for i in 1..=5 {
        s.d.submit(note(i, Kind::Firing), None);
    }
    let mut outs = Vec::new();
    for _ in 0..5 {
        outs.push(next(&mut s.out).await);
    }
    assert!(outs.iter().all(|o| o.result.is_ok()), "{outs:?}");
    assert_eq!(outs[0].id, "n1");
    assert_eq!(outs[0].digest, 1);
    assert!(outs[1..].iter().all(|o| o.digest == 4));
    let b = bodies(&server).await;
    assert_eq!(b.len(), 2, "one alone, then one digest");
    assert_eq!(b[1]["digest"], 4);
    assert_eq!(b[1]["alerts"]["firing"].as_array().unwrap().len(), 4);
    assert_eq!(
        b[1]["title"],
        "[ALARM] 4 alerts for platform (digest of 4 notifications)"
    );
    // The digest waited for the limit (a minute), in virtual time.
    assert!(
        s.timer.sleeps().iter().sum::<Duration>() >= Duration::from_secs(59),
        "{:?}",
        s.timer.sleeps()
    );
    let label = ReceiverLabel {
        receiver: "hook".into(),
    };
    assert_eq!(s.metrics.notify_digests.get_or_create(&label).get(), 1);
    assert_eq!(s.metrics.notify_sent.get_or_create(&label).get(), 5);
}

#[tokio::test]
async fn a_receiver_that_stays_down_keeps_a_bounded_backlog_and_delivers_it_later() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(6)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&server)
        .await;
    let mut s = setup(&server, ", max_queue: 3");
    for i in 1..=6 {
        s.d.submit(note(i, Kind::Firing), None);
    }
    assert_eq!(s.d.queued("hook"), 3, "bounded");
    let mut outs = Vec::new();
    for _ in 0..6 {
        outs.push(next(&mut s.out).await);
    }
    let shed: Vec<&str> = outs
        .iter()
        .filter(|o| matches!(o.result, Err(Failure::Shed { .. })))
        .map(|o| o.id.as_str())
        .collect();
    assert_eq!(shed, ["n1", "n2", "n3"], "the oldest are shed");
    let sent: Vec<&str> = outs
        .iter()
        .filter(|o| o.result.is_ok())
        .map(|o| o.id.as_str())
        .collect();
    assert_eq!(sent, ["n4", "n5", "n6"], "in order, once it came back");
    let first = outs.iter().find(|o| o.id == "n4").unwrap();
    assert_eq!(first.attempts, 7, "six 503s, then accepted");
    let label = ReceiverLabel {
        receiver: "hook".into(),
    };
    assert_eq!(s.metrics.notify_shed.get_or_create(&label).get(), 3);
    // Backoff grew and was capped at retry.max (60 s).
    let sleeps = s.timer.sleeps();
    assert!(
        sleeps.iter().all(|d| *d <= Duration::from_secs(60)),
        "{sleeps:?}"
    );
    assert!(
        sleeps.iter().any(|d| *d >= Duration::from_secs(30)),
        "{sleeps:?}"
    );
}

#[tokio::test]
async fn unknown_receivers_are_reported() {
    let server = MockServer::start().await;
    let mut s = setup(&server, "");
    let mut n = note(1, Kind::Firing);
    n.receiver = "nope".into();
    s.d.submit(n, None);
    let o = next(&mut s.out).await;
    assert_eq!(o.result, Err(Failure::UnknownReceiver));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn withdrawn_notifications_are_neither_sent_nor_reported() {
    let server = MockServer::start().await;
    // The first one is refused until it is withdrawn; the rest go through.
    Mock::given(method("POST"))
        .and(body_string_contains("alert 1"))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&server)
        .await;
    let mut s = setup(&server, "");
    s.d.submit(note(1, Kind::Firing), None);
    s.d.submit(note(2, Kind::Firing), None);
    // n1 is being retried; n2 waits behind it (the same target).
    tokio::time::timeout(Duration::from_secs(10), async {
        while bodies(&server).await.len() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("n1 tried twice");
    let ids: std::collections::BTreeSet<String> = ["n1".into(), "n2".into()].into();
    assert_eq!(s.d.cancel(&ids), 1, "n2 was still queued");
    s.d.submit(note(3, Kind::Firing), None);
    let o = next(&mut s.out).await;
    assert_eq!(o.id, "n3");
    assert!(o.result.is_ok(), "{o:?}");
    // The target is served in order: n1 was dropped before n3 went out.
    assert!(s.out.try_recv().is_err(), "no outcome for withdrawn ones");
    let sent = bodies(&server).await;
    assert!(
        !sent.iter().any(|b| b.to_string().contains("alert 2")),
        "n2 never sent"
    );
    assert_eq!(s.d.queued("hook"), 0);

    // Its partition comes back: submitted again, it is sent after all.
    s.d.submit(note(2, Kind::Firing), None);
    let o = next(&mut s.out).await;
    assert_eq!(o.id, "n2");
    assert!(o.result.is_ok(), "{o:?}");
}
