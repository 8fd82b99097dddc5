//! Email against a real SMTP server (scripts/smtp-sink.py, aiosmtpd):
//! subject, parts, recipients, threading headers, refusals, server down.

use std::time::Duration;

use integration_tests::notify::{free_port, receiver, smtp_sink, start_sink, SmtpSink};
use klaxon::alerts::Kind;
use klaxon::config::receivers::ReceiverConfig;
use klaxon::notify::template::Tpl;
use klaxon::notify::testdata::notification;
use klaxon::notify::{build, Message, NotifyErrorKind};

fn mail_receiver(sink: &SmtpSink, default_to: &str) -> ReceiverConfig {
    receiver(
        &format!(
            "email: {{ type: email, smtp: {{ host: {}, port: {}, tls: none }}, from: \"klaxon <klaxon@cloudmart.example>\", default_to: [\"{default_to}\"] }}\n",
            sink.host, sink.port
        ),
        &[],
    )
}

fn unique(local: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{local}-{}-{}@cloudmart.example",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_multipart_mail_that_threads_its_follow_ups() {
    let Some(sink) = smtp_sink() else { return };
    let to = unique("oncall");
    let r = mail_receiver(&sink, &to);
    let email = build(&r).unwrap();
    let n = notification(Kind::Firing);
    let receipt = email.send(&Message::new(&n)).await.unwrap();
    let mails = sink.wait_for(&to, 1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.subject, "[ALARM] CloudMart-EC2-HighCPU i-0abc (platform)");
    assert_eq!(m.mail_from, "klaxon@cloudmart.example");
    assert_eq!(m.rcpt_tos, vec![to.clone()]);
    assert_eq!(m.header("From"), Some("klaxon <klaxon@cloudmart.example>"));
    let text = m.part("text/plain").expect("a text part");
    for want in [
        "Firing:\n- CPU 97.5% on i-0abc",
        "values: cpu: 97.5, threshold: 90",
        "labels: alertname=CloudMart-EC2-HighCPU, InstanceId=i-0abc, team=platform, severity=critical",
        "runbook: https://runbooks.example/ec2-high-cpu",
        "Incident inc-42 · team platform",
        "To silence: POST /api/v1/silences",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    let html = m.part("text/html").expect("an HTML part");
    assert!(
        html.contains("<h2>[ALARM] CloudMart-EC2-HighCPU i-0abc (platform)</h2>"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"https://runbooks.example/ec2-high-cpu\">Runbook</a>"),
        "{html}"
    );
    let message_id = m.header("Message-ID").unwrap().to_string();
    assert_eq!(receipt.thread.as_deref(), Some(message_id.as_str()));

    // The resolved follow-up replies to the first mail.
    let n = notification(Kind::Resolved);
    let msg = Message {
        thread: receipt.thread.as_deref(),
        ..Message::new(&n)
    };
    email.send(&msg).await.unwrap();
    let mails = sink.wait_for(&to, 2, Duration::from_secs(10));
    assert_eq!(mails.len(), 2);
    let m = &mails[1];
    assert_eq!(m.subject, "[OK] CloudMart-EC2-HighCPU i-0abc (platform)");
    assert_eq!(m.header("In-Reply-To"), Some(message_id.as_str()));
    assert_eq!(m.header("References"), Some(message_id.as_str()));
    assert!(m
        .part("text/plain")
        .unwrap()
        .contains("Resolved:\n- CPU 97.5% on i-0abc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_lists_recipients_and_templates_override() {
    let Some(sink) = smtp_sink() else { return };
    let (a, b) = (unique("a"), unique("b"));
    let mut r = mail_receiver(&sink, &unique("unused"));
    r.templates.default.title = Tpl::parse("{{team}}: {{alertname}} at {{cpu}}%").unwrap();
    let mut n = notification(Kind::Firing);
    n.target = Some(format!("{a}, {b}"));
    build(&r).unwrap().send(&Message::new(&n)).await.unwrap();
    let m = sink.wait_for(&a, 1, Duration::from_secs(10));
    assert_eq!(m.len(), 1);
    let mut rcpts = m[0].rcpt_tos.clone();
    rcpts.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(rcpts, want);
    assert_eq!(m[0].subject, "platform: CloudMart-EC2-HighCPU at 97.5%");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_permanent() {
    let Some(sink) = smtp_sink() else { return };
    // 550 at RCPT.
    let r = mail_receiver(&sink, &unique("reject"));
    let n = notification(Kind::Firing);
    let e = build(&r)
        .unwrap()
        .send(&Message::new(&n))
        .await
        .unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::Permanent, "{e}");
    assert!(
        e.reason.contains("550") || e.reason.contains("mailbox unavailable"),
        "{e}"
    );

    // 554 at DATA.
    let to = unique("ops");
    let mut r = mail_receiver(&sink, &to);
    r.templates.default.title = Tpl::parse("[policy-reject] {{alertname}}").unwrap();
    let e = build(&r)
        .unwrap()
        .send(&Message::new(&n))
        .await
        .unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::Permanent, "{e}");
    assert!(e.reason.contains("refused by policy"), "{e}");
    assert!(sink.mails_to(&to).is_empty());
}

#[tokio::test]
async fn a_server_that_is_down_is_transient() {
    let port = free_port();
    let r = receiver(
        &format!("email: {{ type: email, smtp: {{ host: 127.0.0.1, port: {port}, tls: none }}, from: k@cloudmart.example, default_to: [a@cloudmart.example], timeout: 2s }}\n"),
        &[],
    );
    let n = notification(Kind::Firing);
    let e = build(&r)
        .unwrap()
        .send(&Message::new(&n))
        .await
        .unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::Transient, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticates_with_the_password_from_the_environment() {
    let Some(sink) = start_sink(&["--auth", "klaxon:s3cret-pw"]) else {
        return;
    };
    let yaml = |to: &str| {
        format!(
            "email: {{ type: email, smtp: {{ host: {}, port: {}, tls: none, username: klaxon, password: {{ env: PW }} }}, from: k@cloudmart.example, default_to: [\"{to}\"] }}\n",
            sink.host, sink.port
        )
    };
    let n = notification(Kind::Firing);
    let to = unique("auth");
    let r = receiver(&yaml(&to), &[("PW", "s3cret-pw")]);
    build(&r).unwrap().send(&Message::new(&n)).await.unwrap();
    assert_eq!(sink.wait_for(&to, 1, Duration::from_secs(10)).len(), 1);

    let to = unique("auth");
    let r = receiver(&yaml(&to), &[("PW", "wrong")]);
    let e = build(&r)
        .unwrap()
        .send(&Message::new(&n))
        .await
        .unwrap_err();
    assert_eq!(e.kind, NotifyErrorKind::Permanent, "535 is permanent: {e}");
    assert!(!e.reason.contains("wrong"), "{e}");
    assert!(sink.mails_to(&to).is_empty());
}
