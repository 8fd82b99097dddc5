//! The dispatch API of `klaxon run` with two members: each answers for
//! every incident (its own live, the other's from the notification log),
//! an acknowledgement taken by either stops the escalation wherever the
//! incident lives, and a silence created on one member holds back alerts
//! on both.

use std::time::Duration;

use integration_tests::dispatch::*;
use integration_tests::*;
use klaxon::model::AlarmState;
use serde_json::{json, Value};

const TOKEN: &str = "test-token-7f3a";

fn now_minute() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - now % 60_000
}

fn get(port: u16, path: &str) -> Value {
    match http_json(port, "GET", path, None, None) {
        Some((200, body)) => serde_json::from_str(&body).expect("JSON"),
        other => panic!("GET {path}: {other:?}"),
    }
}

fn http_port_of(config: &std::path::Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("listen: 127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .expect("listen port in the config")
}

#[test]
fn acks_and_silences_reach_the_owner_from_any_member() {
    let broker = TestBroker::from_env();
    let brokers = broker.bootstrap.clone();
    let topics = broker.topics();
    let rules = escalating_team_rules();
    let group = unique("g");
    let out = outbox_path();
    let env = [("KLAXON_API_TOKEN", TOKEN)];
    let member = || {
        let config = write_config(&RunSpec {
            brokers: &brokers,
            topics: &topics,
            group: &group,
            rules: &rules,
            http_port: free_port(),
            idle_timeout: "2s",
            max_event_bytes: 1 << 20,
            properties: &[],
        });
        set_outbox(&config, &out);
        let port = http_port_of(&config);
        (spawn_run(&config, &env, &[]), port)
    };
    let (a, pa) = member();
    let (b, pb) = member();
    let logs = || format!("--- A ---\n{}\n--- B ---\n{}", a.log_text(), b.log_text());
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
        "both members dispatch: {split:?}\n{}",
        logs()
    );

    // Six incidents fire; each is paged at tier 0 at its first notice.
    let t = now_minute();
    let fired: Vec<_> = (1..=6).map(|n| change(n, AlarmState::Alarm, t)).collect();
    publish(&brokers, &topics.alerts, &fired, &rules);
    let tier0 = |sent: &[Sent]| sent.iter().filter(|s| s.tier == Some(0)).count();
    let sent = wait_for(Duration::from_secs(60), || outbox(&out), |s| tier0(s) == 6);
    assert_eq!(tier0(&sent), 6, "{}", logs());

    // Both members list all six, whichever owns them.
    for port in [pa, pb] {
        let n = wait_for(
            Duration::from_secs(20),
            || {
                get(port, "/api/v1/incidents")
                    .as_array()
                    .map_or(0, Vec::len)
            },
            |n| *n == 6,
        );
        assert_eq!(n, 6, "member on {port} lists every incident\n{}", logs());
    }

    // A acknowledges all six, before tier 1 (6 s): some are B's.
    let incidents = get(pa, "/api/v1/incidents");
    for inc in incidents.as_array().unwrap() {
        let id = inc["id"].as_str().unwrap();
        let path = format!("/api/v1/incidents/{id}/ack");
        let (status, body) =
            http_json(pa, "POST", &path, Some(TOKEN), Some(&json!({"by": "kim"}))).unwrap();
        assert_eq!(status, 200, "ack {id}: {body}");
        // Without the token: refused.
        let (status, _) = http_json(pb, "POST", &path, None, Some(&json!({"by": "x"}))).unwrap();
        assert_eq!(status, 401);
    }
    // B sees every incident acknowledged by kim.
    let acked = |port| {
        get(port, "/api/v1/incidents")
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["acked_by"] == "kim")
            .count()
    };
    let n = wait_for(Duration::from_secs(20), || acked(pb), |n| *n == 6);
    assert_eq!(n, 6, "acks reached the owners\n{}", logs());
    // B owns some of them (it paged some), so some acks were forwarded.
    assert!(metric(pb, "klaxon_dispatch_notifications_total") > 0.0);
    assert!(
        b.log_text()
            .contains("incident acknowledged (through another member)"),
        "B applied the acks A took for its incidents\n{}",
        logs()
    );

    // A seventh incident, not acknowledged, is paged at tier 1: the
    // policy would have paged the others too.
    publish(
        &brokers,
        &topics.alerts,
        &[change(7, AlarmState::Alarm, t)],
        &rules,
    );
    let sent = wait_for(
        Duration::from_secs(60),
        || outbox(&out),
        |s| s.iter().any(|x| x.tier == Some(1)),
    );
    let tier1: Vec<&Sent> = sent.iter().filter(|s| s.tier == Some(1)).collect();
    assert_eq!(
        tier1.len(),
        1,
        "only the unacknowledged incident reaches tier 1: {tier1:?}\n{}",
        logs()
    );
    assert_eq!(tier1[0].firing, vec!["alert-7".to_string()]);

    // A silence created on B holds back an alert wherever it lands.
    let (status, body) = http_json(
        pb,
        "POST",
        "/api/v1/silences",
        Some(TOKEN),
        Some(&json!({
            "matchers": ["host=\"h8\""],
            "duration": "1h",
            "created_by": "kim",
            "comment": "maintenance of h8",
        })),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let listed = wait_for(
        Duration::from_secs(20),
        || get(pa, "/api/v1/silences").as_array().map_or(0, Vec::len),
        |n| *n == 1,
    );
    assert_eq!(listed, 1, "A reads B's silence from the topic");
    publish(
        &brokers,
        &topics.alerts,
        &[change(8, AlarmState::Alarm, t)],
        &rules,
    );
    let silenced = |port| {
        get(port, "/api/v1/alerts?state=silenced")
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["fingerprint"] == "alert-8")
            .count()
    };
    let n = wait_for(Duration::from_secs(30), || silenced(pa), |n| *n == 1);
    assert_eq!(n, 1, "alert-8 is tracked, silenced\n{}", logs());
    let sent = outbox(&out);
    assert!(
        !sent
            .iter()
            .any(|s| s.firing.contains(&"alert-8".to_string())),
        "a silenced alert was notified\n{}",
        logs()
    );
    a.terminate();
    b.terminate();
}
