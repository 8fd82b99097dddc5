//! Webhooks against an HTTP double: payload v1, signature, idempotency.

use integration_tests::notify::receiver;
use klaxon::alerts::Kind;
use klaxon::notify::testdata::notification;
use klaxon::notify::webhook::signature;
use klaxon::notify::{build, Message, NotifyErrorKind};
use serde_json::Value;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn posts_the_versioned_payload_signed_with_an_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/scale"))
        .and(header("content-type", "application/json"))
        .and(header("idempotency-key", "n-firing"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let yaml = format!(
        "autoscale: {{ type: webhook, url: \"{}/hooks/scale\", hmac_secret: {{ env: WHS }} }}\n",
        server.uri()
    );
    let r = receiver(&yaml, &[("WHS", "whsec-test")]);
    let n = notification(Kind::Firing);
    build(&r).unwrap().send(&Message::new(&n)).await.unwrap();

    let req = &server.received_requests().await.unwrap()[0];
    let ts = req
        .headers
        .get("x-klaxon-timestamp")
        .unwrap()
        .to_str()
        .unwrap();
    let sig = req
        .headers
        .get("x-klaxon-signature")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(
        sig,
        signature(b"whsec-test", ts, &req.body),
        "verifies over the raw body"
    );
    assert_ne!(sig, signature(b"other-secret", ts, &req.body));

    let p: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(p["version"], "1");
    assert_eq!(p["id"], "n-firing");
    assert_eq!(p["receiver"], "autoscale");
    assert_eq!(p["kind"], "firing");
    assert_eq!(p["status"], "ALARM");
    assert_eq!(
        p["title"],
        "[ALARM] CloudMart-EC2-HighCPU i-0abc (platform)"
    );
    assert_eq!(p["team"], "platform");
    assert_eq!(p["incident"], "inc-42");
    assert_eq!(p["group"]["InstanceId"], "i-0abc");
    assert_eq!(p["at"], "2026-01-01T00:00:30Z");
    assert_eq!(p["digest"], 1);
    let a = &p["alerts"]["firing"][0];
    assert_eq!(a["rule"], "CloudMart-EC2-HighCPU");
    assert_eq!(a["values"]["cpu"], 97.5);
    assert_eq!(a["labels"]["InstanceId"], "i-0abc");
    assert_eq!(a["runbook"], "https://runbooks.example/ec2-high-cpu");
    assert_eq!(p["alerts"]["resolved"], Value::Array(vec![]));
}

#[tokio::test]
async fn without_a_secret_there_is_no_signature() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let r = receiver(
        &format!("h: {{ type: webhook, url: \"{}/x\" }}\n", server.uri()),
        &[],
    );
    let n = notification(Kind::Resolved);
    build(&r).unwrap().send(&Message::new(&n)).await.unwrap();
    let req = &server.received_requests().await.unwrap()[0];
    assert!(req.headers.get("x-klaxon-signature").is_none());
    let p: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(p["status"], "OK");
    assert_eq!(
        p["alerts"]["resolved"][0]["ends_at"],
        "2026-01-01T00:10:00Z"
    );
}

#[tokio::test]
async fn statuses_classify() {
    let server = MockServer::start().await;
    let r = receiver(
        &format!("h: {{ type: webhook, url: \"{}/x\" }}\n", server.uri()),
        &[],
    );
    let hook = build(&r).unwrap();
    let n = notification(Kind::Firing);
    for (resp, kind) in [
        (
            ResponseTemplate::new(410).set_body_string("gone"),
            NotifyErrorKind::Permanent,
        ),
        (ResponseTemplate::new(503), NotifyErrorKind::Transient),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "3"),
            NotifyErrorKind::RateLimited,
        ),
    ] {
        server.reset().await;
        Mock::given(method("POST"))
            .respond_with(resp)
            .mount(&server)
            .await;
        let e = hook.send(&Message::new(&n)).await.unwrap_err();
        assert_eq!(e.kind, kind, "{e}");
    }
    // Nothing listening: a transient error.
    let port = integration_tests::notify::free_port();
    let r = receiver(
        &format!("h: {{ type: webhook, url: \"http://127.0.0.1:{port}/x\" }}\n"),
        &[],
    );
    let e = build(&r)
        .unwrap()
        .send(&Message::new(&n))
        .await
        .unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::Transient, "{e}");
}
