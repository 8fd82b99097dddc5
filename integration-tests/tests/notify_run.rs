//! Notifications for real, through `klaxon run` on the broker: receivers
//! in klaxon.yaml, Slack on an HTTP double (wiremock; the real Slack is not
//! reachable from the tests), email through a real SMTP server
//! (scripts/smtp-sink.py, which `.ci/run` starts).
//!
//! 1. The whole path: telemetry on the broker → rules → alerts topic →
//!    dispatch → a Slack message and an email; the resolved notice goes
//!    into the Slack thread of the first message.
//! 2. Escalation: Slack at once, email later; a SIGKILL and restart (static
//!    membership) in between neither repeats the Slack page nor skips the
//!    email that came due while the member was down; an acknowledgement
//!    through the API stops the last tier.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration_tests::notify::{smtp_sink, SmtpSink};
use integration_tests::*;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "notify-run-token-51c2";
const TS: &str = "1767225600.000100";

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The DM the Slack double opens with kim (member ID `U0KIM0001`).
const KIM_DM: &str = "D0KIMDM01";

/// A Slack Web API double that accepts every `chat.postMessage`, and opens
/// kim's DM.
fn slack(rt: &tokio::runtime::Runtime) -> MockServer {
    rt.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/conversations.open"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "ok": true, "channel": { "id": KIM_DM }
            })))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/chat.postMessage"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "ok": true, "channel": "C0OPS", "ts": TS,
                "message": { "text": "x", "ts": TS, "type": "message" }
            })))
            .mount(&server)
            .await;
        server
    })
}

/// The JSON bodies of the `chat.postMessage` calls so far.
fn posts(rt: &tokio::runtime::Runtime, server: &MockServer) -> Vec<Value> {
    rt.block_on(server.received_requests())
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/api/chat.postMessage")
        .map(|r| serde_json::from_slice(&r.body).expect("Slack gets JSON"))
        .collect()
}

fn to_channel<'a>(posts: &'a [Value], channel: &str) -> Vec<&'a Value> {
    posts.iter().filter(|p| p["channel"] == channel).collect()
}

/// Appends `receivers:` (Slack on `slack`, email on `sink`) to a config
/// written by [`write_config`].
fn add_receivers(config: &Path, slack: &MockServer, sink: &SmtpSink) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(&format!(
        "receivers:\n  slack:\n    type: slack\n    token: {{ env: TEST_SLACK_TOKEN }}\n    api_url: \"{}/api\"\n    \
         retry: {{ initial: 100ms, max: 1s }}\n  email:\n    type: email\n    smtp: {{ host: {}, port: {}, tls: none }}\n    \
         from: \"klaxon <klaxon@cloudmart.example>\"\n    retry: {{ initial: 100ms, max: 1s }}\n",
        slack.uri(),
        sink.host,
        sink.port
    ));
    std::fs::write(config, text).unwrap();
}

fn http_port_of(config: &Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text.lines().find(|l| l.contains("listen:")).unwrap();
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

fn rules_dir(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("klaxon-rules"));
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn metric(at: i64, host: &str, value: f64) -> String {
    json!({"kind": "metric", "time": at, "name": "cpu", "value": value, "labels": {"host": host}})
        .to_string()
}

#[test]
fn telemetry_on_the_broker_reaches_slack_and_a_real_mailbox() {
    let Some(sink) = smtp_sink() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = slack(&rt);
    let broker = TestBroker::from_env();
    let brokers = broker.bootstrap.clone();
    let topics = broker.topics();
    let mailbox = format!("{}@cloudmart.example", unique("ops"));
    let rules = rules_dir(&[
        (
            "ops.yaml",
            "team: ops\nrules:\n  - name: HostHot\n    signal: metric\n    where: name == \"cpu\"\n    \
             group_by: [host]\n    period: 1m\n    compute: { cpu: avg(value) }\n    condition: cpu > 80\n    \
             evaluation_periods: 1\n    severity: critical\n    summary: \"CPU {{cpu}}% on {{host}}\"\n    \
             runbook: https://runbooks.cloudmart.example/host-hot\n",
        ),
        (
            "teams/ops.yaml",
            &format!(
                "team: ops\ngrouping:\n  group_by: [alertname, host]\n  group_wait: 1s\n  group_interval: 1s\n  \
                 repeat_interval: 1h\n  send_resolved: true\nreceivers:\n  - name: slack\n    target: \"#ops\"\n  \
                 - name: email\n    target: {mailbox}\n"
            ),
        ),
    ]);
    let config = write_config(&RunSpec {
        brokers: &brokers,
        topics: &topics,
        group: &unique("g"),
        rules: &rules,
        http_port: free_port(),
        idle_timeout: "2s",
        max_event_bytes: 1 << 20,
        properties: &[],
    });
    add_receivers(&config, &server, &sink);
    let port = http_port_of(&config);
    let env = [("TEST_SLACK_TOKEN", "xoxb-notify-run-secret")];
    let m = spawn_run(&config, &env, &[]);

    // Three minutes ago, to the minute: each period closes once a later
    // event (30 s lateness) is on the broker, all in the past.
    let t0 = wall_ms() - wall_ms() % 60_000 - 180_000;
    produce(
        &brokers,
        &topics,
        &[
            metric(t0 + 10_000, "web-1", 97.0),
            metric(t0 + 20_000, "web-1", 93.0),
            metric(t0 + 30_000, "web-2", 20.0),
            // Closes the first minute for every series.
            metric(t0 + 95_000, "web-2", 20.0),
        ],
    );
    let fired = wait_for(
        Duration::from_secs(90),
        || to_channel(&posts(&rt, &server), "#ops").len(),
        |n| *n >= 1,
    );
    assert_eq!(
        fired,
        1,
        "one Slack message for the incident\n{}",
        m.log_text()
    );
    let mails = sink.wait_for(&mailbox, 1, Duration::from_secs(30));
    assert_eq!(mails.len(), 1, "one email\n{}", m.log_text());

    let all = posts(&rt, &server);
    let first = to_channel(&all, "#ops")[0];
    let text = first.to_string();
    assert!(text.contains("HostHot"), "{text}");
    assert!(text.contains("web-1"), "the series' labels: {text}");
    assert!(text.contains("95"), "the computed value (avg 95): {text}");
    assert!(
        text.contains("https://runbooks.cloudmart.example/host-hot"),
        "{text}"
    );
    assert!(!text.contains("web-2"), "web-2 never fired: {text}");
    assert!(
        first.get("thread_ts").is_none(),
        "the first message starts the thread"
    );
    let mail = &mails[0];
    assert_eq!(mail.subject, "[ALARM] HostHot web-1 (ops)");
    assert_eq!(mail.rcpt_tos, vec![mailbox.clone()]);
    assert!(mail.mail_from.contains("klaxon@cloudmart.example"));
    let body = mail.part("text/plain").expect("a text part");
    assert!(body.contains("CPU 95% on web-1"), "{body}");
    assert!(mail.part("text/html").is_some(), "and an HTML part");

    // The second minute is cool: the alert resolves. Slack's resolved
    // notice goes into the first message's thread.
    produce(
        &brokers,
        &topics,
        &[
            metric(t0 + 70_000, "web-1", 12.0),
            metric(t0 + 160_000, "web-2", 20.0),
        ],
    );
    let ops = wait_for(
        Duration::from_secs(60),
        || to_channel(&posts(&rt, &server), "#ops").len(),
        |n| *n >= 2,
    );
    assert_eq!(ops, 2, "{}", m.log_text());
    let all = posts(&rt, &server);
    let resolved = to_channel(&all, "#ops")[1];
    assert_eq!(
        resolved["thread_ts"], TS,
        "follow-ups go in the thread: {resolved}"
    );
    let mails = sink.wait_for(&mailbox, 2, Duration::from_secs(30));
    assert_eq!(mails.len(), 2, "{}", m.log_text());
    assert_eq!(mails[1].subject, "[OK] HostHot web-1 (ops)");

    // Marked sent only once the channels accepted: the metrics agree, and
    // the bot token is nowhere in the log.
    let sent = |receiver: &str| {
        let (_, text) = http(port, "GET", "/metrics").unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with("klaxon_notifications_sent_total")
                    && l.contains(&format!("\"{receiver}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(sent("slack"), 2.0);
    assert_eq!(sent("email"), 2.0);
    let log = m.terminate();
    assert!(!log.contains("xoxb-notify-run-secret"), "the token leaked");
}

/// The escalating team: `#ops` hears of the incident; tier 1 pages
/// whoever is on call on Slack at once, tier 2 emails them after 8 s,
/// tier 3 emails the manager after 40 s.
fn escalating_rules(oncall_mail: &str, boss_mail: &str) -> PathBuf {
    rules_dir(&[(
        "teams/ops.yaml",
        &format!(
            "team: ops\ngrouping:\n  group_by: [\"...\"]\n  group_wait: 1s\n  group_interval: 1s\n  \
             repeat_interval: 1h\n  send_resolved: true\nreceivers:\n  - name: slack\n    target: \"#ops\"\n\
             people:\n  kim: {{ slack: \"U0KIM0001\", email: \"{oncall_mail}\" }}\n\
             oncall:\n  - name: primary\n    people: [kim]\n    handoff: \"09:00\"\n    timezone: Europe/Berlin\n    \
             length: 1w\n    start: 2026-01-05\n\
             escalation:\n  tiers:\n    - after: 0s\n      notify:\n        - {{ receiver: slack, oncall: primary }}\n    \
             - after: 8s\n      notify:\n        - {{ receiver: email, oncall: primary }}\n    \
             - after: 40s\n      notify:\n        - {{ receiver: email, target: \"{boss_mail}\" }}\n"
        ),
    )])
}

#[test]
fn escalation_survives_a_sigkill_and_stops_at_the_ack() {
    let Some(sink) = smtp_sink() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = slack(&rt);
    let broker = TestBroker::from_env();
    let brokers = broker.bootstrap.clone();
    let topics = broker.topics();
    let kim = format!("{}@cloudmart.example", unique("kim"));
    let boss = format!("{}@cloudmart.example", unique("boss"));
    let rules = escalating_rules(&kim, &boss);
    let config = write_config(&RunSpec {
        brokers: &brokers,
        topics: &topics,
        group: &unique("g"),
        rules: &rules,
        http_port: free_port(),
        idle_timeout: "2s",
        max_event_bytes: 1 << 20,
        properties: &[("session.timeout.ms", "30000")],
    });
    add_receivers(&config, &server, &sink);
    let port = http_port_of(&config);
    // Static membership: the restarted member gets its partitions back.
    let env = [
        ("TEST_SLACK_TOKEN", "xoxb-escalation-secret"),
        ("KLAXON_INSTANCE_ID", "escalation-1"),
        ("KLAXON_API_TOKEN", TOKEN),
    ];
    let m = spawn_run(&config, &env, &[]);
    wait_for(
        Duration::from_secs(60),
        || integration_tests::metric(port, "klaxon_dispatch_partitions"),
        |n| *n == 4.0,
    );

    let t0 = wall_ms() - wall_ms() % 60_000 - 60_000;
    let change = integration_tests::dispatch::change(1, klaxon::model::AlarmState::Alarm, t0);
    integration_tests::dispatch::publish(&brokers, &topics.alerts, &[change], &rules);

    // Tier 1: kim on Slack, at the first notice.
    let paged = wait_for(
        Duration::from_secs(60),
        || to_channel(&posts(&rt, &server), KIM_DM).len(),
        |n| *n >= 1,
    );
    let first_page = Instant::now();
    assert_eq!(paged, 1, "{}", m.log_text());
    assert_eq!(to_channel(&posts(&rt, &server), "#ops").len(), 1);
    assert!(sink.mails_to(&kim).is_empty(), "tier 2 is not due yet");

    // Killed once the notification log has tier 1 as sent (a kill between
    // Slack's answer and that write sends it again: at least once), before
    // tier 2 is due; down until after it is.
    let recorded = wait_for(
        Duration::from_secs(10),
        || {
            read_all(&brokers, &topics.nflog, Duration::from_millis(300))
                .iter()
                .filter_map(|r| serde_json::from_str::<Value>(&r.payload).ok())
                .any(|s| {
                    s["history"]
                        .as_array()
                        .is_some_and(|h| h.iter().any(|n| n["target"] == "U0KIM0001"))
                })
        },
        |r| *r,
    );
    assert!(recorded, "tier 1 recorded as sent\n{}", m.log_text());
    assert!(
        first_page.elapsed() < Duration::from_secs(7),
        "recorded before tier 2 is due"
    );
    let killed = m.kill();
    std::thread::sleep(Duration::from_secs(9).saturating_sub(first_page.elapsed()));
    let m = spawn_run(&config, &env, &[]);
    let logs_now = || {
        format!(
            "--- restarted ---\n{}\n--- killed ---\n{killed}",
            m.log_text()
        )
    };

    // Tier 2 fires once after the restart: not never, not twice.
    let mails = sink.wait_for(&kim, 1, Duration::from_secs(60));
    assert_eq!(mails.len(), 1, "tier 2 came due while down\n{}", logs_now());
    assert!(mails[0].subject.contains("[ALARM]"), "{}", mails[0].subject);

    // Acknowledged through the API, before tier 3 (40 s).
    let incidents = wait_for(
        Duration::from_secs(20),
        || {
            http_json(port, "GET", "/api/v1/incidents", None, None)
                .map(|(_, b)| serde_json::from_str::<Value>(&b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null)
        },
        |v| v.as_array().is_some_and(|a| a.len() == 1),
    );
    let id = incidents[0]["id"]
        .as_str()
        .expect("an incident id")
        .to_string();
    assert!(
        first_page.elapsed() < Duration::from_secs(35),
        "the restart took too long to test the ack before tier 3 ({:?})\n{}",
        first_page.elapsed(),
        logs_now()
    );
    let (status, body) = http_json(
        port,
        "POST",
        &format!("/api/v1/incidents/{id}/ack"),
        Some(TOKEN),
        Some(&json!({"by": "kim"})),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    // Past tier 3's time (and a margin): nobody else is paged, and no tier
    // was repeated.
    let wait = Duration::from_secs(46).saturating_sub(first_page.elapsed());
    std::thread::sleep(wait);
    assert!(
        sink.mails_to(&boss).is_empty(),
        "acknowledged: tier 3 never pages\n{}",
        logs_now()
    );
    assert_eq!(sink.mails_to(&kim).len(), 1, "tier 2 once\n{}", logs_now());
    let all = posts(&rt, &server);
    assert_eq!(
        to_channel(&all, KIM_DM).len(),
        1,
        "tier 1 once\n{}",
        logs_now()
    );
    let (_, body) = http_json(port, "GET", "/api/v1/incidents", None, None).unwrap();
    let incidents: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(incidents[0]["acked_by"], "kim", "{incidents}");
    m.terminate();
}
