//! Secrets (Slack token, webhook URLs, HMAC key, Twilio token, SMTP
//! password) never show in Debug output, logs or outcomes, even when
//! every send fails. All logs at TRACE level are captured, including
//! those of the HTTP and SMTP libraries.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::notify::{capture_logs, free_port, receivers};
use klaxon::alerts::Kind;
use klaxon::metrics::Metrics;
use klaxon::notify::testdata::notification;
use klaxon::notify::time::ManualTimer;
use klaxon::notify::{build, Deliverer, Outcome};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRETS: [&str; 6] = [
    "xoxb-SEKRIT-slack-token",
    "SEKRIT-webhook-path",
    "SEKRIT-hmac-key",
    "SEKRIT-twilio-token",
    "SEKRIT-smtp-password",
    "SEKRIT-hook-url-token",
];

#[tokio::test]
async fn secrets_stay_out_of_debug_logs_and_outcomes() {
    let logs = capture_logs();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("nope"))
        .mount(&server)
        .await;
    let closed = free_port();
    let uri = server.uri();
    let env = [
        ("SLACK_TOKEN", SECRETS[0].to_string()),
        ("SLACK_HOOK", format!("{uri}/services/T/B/{}", SECRETS[1])),
        ("HMAC", SECRETS[2].to_string()),
        ("TW", SECRETS[3].to_string()),
        ("SMTP_PW", SECRETS[4].to_string()),
        (
            "HOOK_URL",
            format!("http://127.0.0.1:{closed}/in?token={}", SECRETS[5]),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let yaml = format!(
        r##"
slack: {{ type: slack, token: {{ env: SLACK_TOKEN }}, api_url: "{uri}/api", default_channel: "#a" }}
slackhook: {{ type: slack_webhook, url: {{ env: SLACK_HOOK }} }}
hook: {{ type: webhook, url: {{ env: HOOK_URL }}, hmac_secret: {{ env: HMAC }}, retry: {{ initial: 1ms, max: 2ms }} }}
signed: {{ type: webhook, url: "{uri}/signed", hmac_secret: {{ env: HMAC }} }}
sms: {{ type: twilio, account_sid: AC0123456789abcdef0123456789abcdef, auth_token: {{ env: TW }}, from: "+15005550006", api_url: "{uri}", default_to: ["+15551234567"] }}
mail: {{ type: email, smtp: {{ host: 127.0.0.1, port: {closed}, tls: none, username: klaxon, password: {{ env: SMTP_PW }} }}, from: k@cloudmart.example, default_to: [a@cloudmart.example], retry: {{ initial: 1ms, max: 2ms }} }}
"##
    );
    let config = receivers(&yaml, &env);
    let mut list = Vec::new();
    for r in config.receivers.values() {
        list.push((
            r.name.clone(),
            r.delivery.clone(),
            Arc::from(build(r).unwrap()),
        ));
    }
    let timer = ManualTimer::new();
    let mut d = Deliverer::with_notifiers(list, Metrics::default(), Arc::new(timer));
    let mut out = d.outcomes().unwrap();
    let permanent = ["slack", "slackhook", "signed", "sms"];
    for name in permanent.iter().chain(&["hook", "mail"]) {
        let mut n = notification(Kind::Firing);
        n.receiver = name.to_string();
        d.submit(n, None);
    }
    let mut outcomes: Vec<Outcome> = Vec::new();
    for _ in 0..permanent.len() {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(10), out.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    // The two that cannot connect retry; give them a few rounds.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(outcomes.iter().all(|o| o.result.is_err()), "{outcomes:?}");
    let log = logs.text();
    assert!(
        log.contains("refused for good"),
        "the failures were logged:\n{log}"
    );
    assert!(log.contains("will retry"), "retries were logged:\n{log}");
    assert!(
        log.contains("Sending HTTP request"),
        "library logs are captured too:\n{log}"
    );

    let debug = format!("{config:?} {d:?} {outcomes:?}");
    for s in SECRETS {
        assert!(!debug.contains(s), "{s} in Debug output");
        assert!(!log.contains(s), "{s} in the logs:\n{log}");
    }
    // The requests that did arrive carried them (the test is not vacuous).
    let reqs = server.received_requests().await.unwrap();
    let seen: String = reqs
        .iter()
        .map(|r| format!("{} {:?}", r.url, r.headers))
        .collect();
    assert!(seen.contains(SECRETS[0]), "the Slack token was sent");
    assert!(seen.contains(SECRETS[1]), "the webhook URL was used");
}
