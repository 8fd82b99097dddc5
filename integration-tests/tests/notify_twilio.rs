//! Twilio SMS against an HTTP double.

use integration_tests::notify::receiver;
use klaxon::alerts::Kind;
use klaxon::notify::sms::{units, Encoding};
use klaxon::notify::testdata::notification;
use klaxon::notify::{build, Message, NotifyErrorKind};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const MESSAGES: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

fn yaml(server: &MockServer, from: &str) -> String {
    format!(
        "sms: {{ type: twilio, account_sid: {SID}, auth_token: {{ env: TW }}, from: \"{from}\", api_url: \"{}\", default_to: [\"+15551234567\"] }}\n",
        server.uri()
    )
}

fn form(r: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&r.body).into_owned().collect()
}

fn get<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
    f.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn sends_a_form_with_basic_auth_in_one_segment() {
    let server = MockServer::start().await;
    // base64("AC0123456789abcdef0123456789abcdef:tw-token")
    let auth = "Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZjp0dy10b2tlbg==";
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(header("authorization", auth))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({ "sid": "SM1", "status": "queued" })),
        )
        .expect(2)
        .mount(&server)
        .await;
    let r = receiver(&yaml(&server, "+15005550006"), &[("TW", "tw-token")]);
    let tw = build(&r).unwrap();
    let n = notification(Kind::Firing);
    tw.send(&Message::new(&n)).await.unwrap();
    let reqs = server.received_requests().await.unwrap();
    let f = form(&reqs[0]);
    assert_eq!(get(&f, "To"), Some("+15551234567"));
    assert_eq!(get(&f, "From"), Some("+15005550006"));
    assert_eq!(
        get(&f, "Body"),
        Some("[ALARM] CloudMart-EC2-HighCPU i-0abc: CPU 97.5% on i-0abc")
    );

    // A long, non-GSM summary is cut to one UCS-2 segment (70 units).
    let mut long = notification(Kind::Firing);
    long.target = Some("+447700900123".into());
    long.alerts.firing[0].summary = format!("Łódź DC: {}", "błąd dysku ".repeat(20));
    tw.send(&Message::new(&long)).await.unwrap();
    let reqs = server.received_requests().await.unwrap();
    let f = form(&reqs[1]);
    assert_eq!(
        get(&f, "To"),
        Some("+447700900123"),
        "the team's target wins"
    );
    let body = get(&f, "Body").unwrap();
    let (enc, n) = units(body);
    assert_eq!(enc, Encoding::Ucs2);
    assert!(n <= 70, "{n} units: {body}");
    assert!(
        body.starts_with("[ALARM] CloudMart-EC2-HighCPU i-0abc: Łódź DC"),
        "{body}"
    );
    assert!(body.ends_with('…'));
}

#[tokio::test]
async fn messaging_service_sid() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "sid": "SM1" })))
        .mount(&server)
        .await;
    let r = receiver(
        &yaml(&server, "MG0123456789abcdef0123456789abcdef"),
        &[("TW", "t")],
    );
    let n = notification(Kind::Resolved);
    build(&r).unwrap().send(&Message::new(&n)).await.unwrap();
    let f = form(&server.received_requests().await.unwrap()[0]);
    assert_eq!(
        get(&f, "MessagingServiceSid"),
        Some("MG0123456789abcdef0123456789abcdef")
    );
    assert_eq!(get(&f, "From"), None);
    assert!(get(&f, "Body").unwrap().starts_with("[OK] "));
}

#[tokio::test]
async fn errors_classify_by_twilio_code_and_status() {
    let server = MockServer::start().await;
    let r = receiver(&yaml(&server, "+15005550006"), &[("TW", "t")]);
    let tw = build(&r).unwrap();
    let n = notification(Kind::Firing);
    let cases = [
        (
            ResponseTemplate::new(400).set_body_json(json!({
                "code": 21211, "message": "The 'To' number +15551234567 is not a valid phone number.",
                "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400
            })),
            NotifyErrorKind::Permanent,
            "21211",
        ),
        (
            ResponseTemplate::new(401).set_body_json(json!({ "code": 20003, "message": "Authenticate", "status": 401 })),
            NotifyErrorKind::Permanent,
            "20003",
        ),
        (
            ResponseTemplate::new(429)
                .insert_header("retry-after", "12")
                .set_body_json(json!({ "code": 20429, "message": "Too Many Requests", "status": 429 })),
            NotifyErrorKind::RateLimited,
            "20429",
        ),
        (
            ResponseTemplate::new(500).set_body_string("oops"),
            NotifyErrorKind::Transient,
            "500",
        ),
    ];
    for (resp, kind, needle) in cases {
        server.reset().await;
        Mock::given(method("POST"))
            .respond_with(resp)
            .mount(&server)
            .await;
        let e = tw.send(&Message::new(&n)).await.unwrap_err();
        assert_eq!(e.kind, kind, "{e}");
        assert!(e.reason.contains(needle), "{e}");
        if kind == NotifyErrorKind::RateLimited {
            assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(12)));
        }
    }
}
