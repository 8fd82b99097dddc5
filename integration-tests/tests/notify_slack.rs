//! Slack (chat.postMessage and incoming webhooks) against an HTTP double.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::notify::receiver;
use klaxon::alerts::Kind;
use klaxon::metrics::Metrics;
use klaxon::notify::testdata::notification;
use klaxon::notify::time::ManualTimer;
use klaxon::notify::{build, Deliverer, Message, NotifyErrorKind};
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn slack_yaml(server: &MockServer) -> String {
    format!(
        "slack: {{ type: slack, token: {{ env: SLACK_TOKEN }}, api_url: \"{}/api\", default_channel: \"#alerts\", target_rate_limit: {{ per_second: 100, burst: 100 }}, retry: {{ initial: 10ms, max: 100ms }} }}\n",
        server.uri()
    )
}

fn ok(ts: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ok": true, "channel": "C0ALERTS", "ts": ts,
        "message": { "text": "x", "ts": ts, "type": "message" }
    }))
}

fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn blocks_of_type<'a>(b: &'a Value, ty: &str) -> Vec<&'a Value> {
    b["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["type"] == ty)
        .collect()
}

#[tokio::test]
async fn posts_block_kit_with_an_ack_button_and_returns_the_ts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("authorization", "Bearer xoxb-test"))
        .respond_with(ok("1700000000.000100"))
        .expect(1)
        .mount(&server)
        .await;
    let r = receiver(&slack_yaml(&server), &[("SLACK_TOKEN", "xoxb-test")]);
    let slack = build(&r).unwrap();
    let n = notification(Kind::Firing);
    let receipt = slack.send(&Message::new(&n)).await.unwrap();
    assert_eq!(receipt.thread.as_deref(), Some("1700000000.000100"));

    let req = &server.received_requests().await.unwrap()[0];
    let b = body(req);
    assert_eq!(b["channel"], "#alerts");
    assert!(
        b.get("thread_ts").is_none(),
        "a first message is not in a thread"
    );
    assert_eq!(b["text"], "[ALARM] CloudMart-EC2-HighCPU i-0abc (platform)");
    let header = blocks_of_type(&b, "header");
    assert_eq!(
        header[0]["text"]["text"],
        "[ALARM] CloudMart-EC2-HighCPU i-0abc (platform)"
    );
    let text = serde_json::to_string(&b["blocks"]).unwrap();
    for want in [
        "CPU 97.5% on i-0abc",
        "*cpu*\\n97.5",
        "*threshold*\\n90",
        "`InstanceId=i-0abc`",
        "<https://runbooks.example/ec2-high-cpu|Runbook>",
        "To silence",
        "alertname=\\\"CloudMart-EC2-HighCPU\\\"",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    let actions = blocks_of_type(&b, "actions");
    let button = &actions[0]["elements"][0];
    assert_eq!(button["type"], "button");
    assert_eq!(button["action_id"], "klaxon_ack");
    assert_eq!(button["value"], "inc-42");
}

#[tokio::test]
async fn follow_ups_go_in_the_thread_and_resolved_has_no_ack() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(body_partial_json(
            json!({ "thread_ts": "1700000000.000100" }),
        ))
        .respond_with(ok("1700000099.000200"))
        .expect(1)
        .mount(&server)
        .await;
    let r = receiver(&slack_yaml(&server), &[("SLACK_TOKEN", "xoxb-test")]);
    let slack = build(&r).unwrap();
    let n = notification(Kind::Resolved);
    let msg = Message {
        thread: Some("1700000000.000100"),
        ..Message::new(&n)
    };
    let receipt = slack.send(&msg).await.unwrap();
    assert_eq!(
        receipt.thread.as_deref(),
        Some("1700000000.000100"),
        "the thread stays the incident's first message"
    );
    let b = body(&server.received_requests().await.unwrap()[0]);
    assert_eq!(b["text"], "[OK] CloudMart-EC2-HighCPU i-0abc (platform)");
    assert!(
        blocks_of_type(&b, "actions").is_empty(),
        "nothing to ack once resolved"
    );
}

/// An on-call person's member ID: the page goes to the app's DM with them,
/// opened once; the follow-up goes in the same DM's thread.
#[tokio::test]
async fn a_member_id_is_paged_in_the_apps_dm() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/conversations.open"))
        .and(body_partial_json(json!({ "users": ["U0KIM0001"] })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "channel": { "id": "D0KIMDM01" }
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(body_partial_json(json!({ "channel": "D0KIMDM01" })))
        .respond_with(ok("1700000000.000100"))
        .expect(2)
        .mount(&server)
        .await;
    let r = receiver(&slack_yaml(&server), &[("SLACK_TOKEN", "xoxb-test")]);
    let slack = build(&r).unwrap();
    let n = notification(Kind::Firing);
    let first = Message {
        target: Some("U0KIM0001"),
        ..Message::new(&n)
    };
    let receipt = slack.send(&first).await.unwrap();
    let ts = receipt.thread.unwrap();
    let follow_up = Message {
        target: Some("U0KIM0001"),
        thread: Some(&ts),
        ..Message::new(&n)
    };
    slack.send(&follow_up).await.unwrap();
    let posts: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/chat.postMessage")
        .map(body)
        .collect();
    assert_eq!(posts[1]["thread_ts"], "1700000000.000100", "{posts:?}");

    // A member Slack does not know: permanent, with Slack's reason.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/conversations.open"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": false, "error": "user_not_found" })),
        )
        .mount(&server)
        .await;
    let r = receiver(&slack_yaml(&server), &[("SLACK_TOKEN", "xoxb-test")]);
    let slack = build(&r).unwrap();
    let e = slack
        .send(&Message {
            target: Some("U0NOBODY1"),
            ..Message::new(&n)
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::Permanent);
    assert!(e.reason.contains("user_not_found"), "{e}");
}

#[tokio::test]
async fn ok_false_is_a_failure_even_with_http_200() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": false, "error": "channel_not_found" })),
        )
        .mount(&server)
        .await;
    let r = receiver(&slack_yaml(&server), &[("SLACK_TOKEN", "xoxb-test")]);
    let slack = build(&r).unwrap();
    let n = notification(Kind::Firing);
    let e = slack.send(&Message::new(&n)).await.unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::Permanent);
    assert!(e.reason.contains("channel_not_found"), "{e}");

    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": false, "error": "invalid_auth" })),
        )
        .mount(&server)
        .await;
    let e = slack.send(&Message::new(&n)).await.unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::Permanent);
    assert!(e.reason.contains("invalid_auth"), "{e}");

    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": false, "error": "internal_error" })),
        )
        .mount(&server)
        .await;
    let e = slack.send(&Message::new(&n)).await.unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::Transient);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(json!({ "ok": false, "error": "ratelimited" })),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream down"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let r = receiver(&slack_yaml(&server), &[("SLACK_TOKEN", "xoxb-test")]);
    let slack = build(&r).unwrap();
    let n = notification(Kind::Firing);
    let e = slack.send(&Message::new(&n)).await.unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::RateLimited);
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    let e = slack.send(&Message::new(&n)).await.unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::Transient);
    assert!(e.reason.contains("503"), "{e}");
}

/// Through the Deliverer: a 429 (Retry-After: 30) and a 503 are retried
/// in virtual time, the first message's ts threads the follow-up even
/// though the follow-up was submitted before the first was accepted.
#[tokio::test]
async fn deliverer_retries_then_threads_the_follow_up() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(json!({ "ok": false, "error": "ratelimited" })),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(
            json!({ "thread_ts": "1700000000.000100" }),
        ))
        .respond_with(ok("1700000050.000300"))
        .with_priority(3)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok("1700000000.000100"))
        .with_priority(4)
        .mount(&server)
        .await;

    let r = receiver(&slack_yaml(&server), &[("SLACK_TOKEN", "xoxb-test")]);
    let timer = ManualTimer::new();
    let mut d = Deliverer::with_notifiers(
        vec![(
            r.name.clone(),
            r.delivery.clone(),
            Arc::from(build(&r).unwrap()),
        )],
        Metrics::default(),
        Arc::new(timer.clone()),
    );
    let mut out = d.outcomes().unwrap();
    d.submit(notification(Kind::Firing), None);
    d.submit(notification(Kind::Resolved), None);

    let started = std::time::Instant::now();
    let first = tokio::time::timeout(Duration::from_secs(10), out.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), out.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no real waiting"
    );
    assert_eq!(first.id, "n-firing");
    assert_eq!(first.attempts, 3, "429, 502, then accepted");
    assert_eq!(
        first.result.as_ref().unwrap().thread.as_deref(),
        Some("1700000000.000100")
    );
    assert_eq!(second.id, "n-resolved");
    assert_eq!(
        second.result.as_ref().unwrap().thread.as_deref(),
        Some("1700000000.000100")
    );

    let sleeps = timer.sleeps();
    assert!(
        sleeps.iter().any(|s| *s >= Duration::from_secs(30)),
        "waited the Retry-After: {sleeps:?}"
    );
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 4);
    assert_eq!(body(&reqs[3])["thread_ts"], "1700000000.000100");
}

#[tokio::test]
async fn incoming_webhooks() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/sekrit"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/T000/B000/revoked"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no_service"))
        .mount(&server)
        .await;
    let yaml = "hook: { type: slack_webhook, url: { env: HOOK } }\n";
    let good = receiver(
        yaml,
        &[(
            "HOOK",
            &format!("{}/services/T000/B000/sekrit", server.uri()),
        )],
    );
    let n = notification(Kind::Firing);
    let receipt = build(&good).unwrap().send(&Message::new(&n)).await.unwrap();
    assert_eq!(receipt.thread, None, "webhooks return no ts");
    let b = body(&server.received_requests().await.unwrap()[0]);
    assert_eq!(b["text"], "[ALARM] CloudMart-EC2-HighCPU i-0abc (platform)");
    assert_eq!(
        blocks_of_type(&b, "actions")[0]["elements"][0]["action_id"],
        "klaxon_ack"
    );

    let bad = receiver(
        yaml,
        &[(
            "HOOK",
            &format!("{}/services/T000/B000/revoked", server.uri()),
        )],
    );
    let e = build(&bad)
        .unwrap()
        .send(&Message::new(&n))
        .await
        .unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::Permanent);
    assert!(e.reason.contains("no_service"), "{e}");
    assert!(!e.reason.contains("revoked"), "the URL is a secret: {e}");
}
