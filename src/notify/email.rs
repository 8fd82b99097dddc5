//! Email over SMTP with lettre's async, pooled transport.
//!
//! `tls: none` (a local relay), `starttls` (required) or `tls` (implicit,
//! port 465); authentication when `username`/`password` are set. The mail
//! is multipart text + HTML, the subject is the `title` template
//! (`[ALARM] CloudMart-EC2-HighCPU i-0abc (platform)`, `[OK] …` once
//! resolved). The first mail of an incident returns its `Message-ID` as
//! the receipt's thread; follow-ups set `In-Reply-To`/`References` to it,
//! so mail clients thread them too.
//!
//! SMTP 5xx replies are permanent; 4xx, refused connections and timeouts
//! are transient.

use std::fmt;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::template::{Rendered, Templates};
use super::{BoxFuture, Message, Notifier, NotifyError, Receipt};
use crate::config::receivers::{EmailConfig, SmtpTls};
use crate::model::format_rfc3339;
use crate::rules::template::format_number;

pub struct EmailNotifier {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    default_to: Vec<String>,
    host: String,
    templates: Templates,
}

impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl EmailNotifier {
    pub fn new(
        name: &str,
        c: EmailConfig,
        templates: Templates,
        timeout: Duration,
    ) -> Result<Self, String> {
        type T = AsyncSmtpTransport<Tokio1Executor>;
        let builder = match c.tls {
            SmtpTls::None => T::builder_dangerous(&c.host),
            SmtpTls::Starttls => T::starttls_relay(&c.host).map_err(|e| e.to_string())?,
            SmtpTls::Tls => T::relay(&c.host).map_err(|e| e.to_string())?,
        };
        let mut builder = builder
            .port(c.port)
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(4));
        if let (Some(u), Some(p)) = (&c.username, &c.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.expose().to_string()));
        }
        let from: Mailbox = c.from.parse().map_err(|e| format!("`from`: {e}"))?;
        Ok(EmailNotifier {
            name: name.to_string(),
            transport: builder.build(),
            from,
            default_to: c.default_to,
            host: c.host,
            templates,
        })
    }

    async fn deliver(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        let n = msg.notification;
        let to: Vec<String> = match msg.target {
            Some(t) => t.split(',').map(|s| s.trim().to_string()).collect(),
            None => self.default_to.clone(),
        };
        if to.is_empty() {
            return Err(NotifyError::permanent(
                "email: no recipient (no target, no default_to)",
            ));
        }
        let r = self
            .templates
            .for_team(&n.team)
            .render(n, &self.name, msg.digest);
        let domain = self.from.email.domain().to_string();
        let message_id = format!("<klaxon.{}.{}@{}>", n.incident, n.id, domain);
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(r.title.clone())
            .message_id(Some(message_id.clone()));
        for a in &to {
            let mb: Mailbox = a
                .parse()
                .map_err(|e| NotifyError::permanent(format!("email: bad recipient {a:?}: {e}")))?;
            b = b.to(mb);
        }
        if let Some(t) = msg.thread {
            b = b.in_reply_to(t.to_string()).references(t.to_string());
        }
        let mail = b
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(text_body(&r, n, &self.name)),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html_body(&r, n, &self.name)),
                    ),
            )
            .map_err(|e| NotifyError::permanent(format!("email: cannot build the message: {e}")))?;
        self.transport.send(mail).await.map_err(classify)?;
        Ok(Receipt {
            thread: Some(msg.thread.map(str::to_string).unwrap_or(message_id)),
        })
    }
}

fn classify(e: lettre::transport::smtp::Error) -> NotifyError {
    let reason = format!("smtp: {e}");
    if e.is_permanent() {
        NotifyError::permanent(reason)
    } else {
        NotifyError::transient(reason)
    }
}

fn matchers(a: &crate::alerts::Alert) -> String {
    a.labels
        .0
        .iter()
        .filter(|(k, _)| k != "severity")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plain-text part.
pub fn text_body(r: &Rendered<'_>, n: &crate::alerts::Notification, receiver: &str) -> String {
    let mut s = format!("{}\n\n", r.title);
    for (head, list) in [("Firing", &r.firing), ("Resolved", &r.resolved)] {
        if list.is_empty() {
            continue;
        }
        s.push_str(&format!("{head}:\n"));
        for ra in list {
            let a = ra.alert;
            s.push_str(&format!("- {}\n", ra.line));
            if !a.values.0.is_empty() {
                let v: Vec<String> = a
                    .values
                    .0
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", format_number(*v)))
                    .collect();
                s.push_str(&format!("  values: {}\n", v.join(", ")));
            }
            let l: Vec<String> = a.labels.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("  labels: {}\n", l.join(", ")));
            s.push_str(&format!("  since: {}\n", format_rfc3339(a.starts_at)));
            if let Some(e) = a.ends_at {
                s.push_str(&format!("  ended: {}\n", format_rfc3339(e)));
            }
            if let Some(rb) = &a.runbook {
                s.push_str(&format!("  runbook: {rb}\n"));
            }
        }
        s.push('\n');
    }
    s.push_str(&format!(
        "Incident {} · team {} · receiver {}\n",
        n.incident, n.team, receiver
    ));
    if let Some(a) = r.firing.first() {
        s.push_str(&format!(
            "To silence: POST /api/v1/silences with matchers {}\n",
            matchers(a.alert)
        ));
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML part.
pub fn html_body(r: &Rendered<'_>, n: &crate::alerts::Notification, receiver: &str) -> String {
    let mut s = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2>{}</h2>",
        esc(&r.title)
    );
    for (head, color, list) in [
        ("Firing", "#b00020", &r.firing),
        ("Resolved", "#1b5e20", &r.resolved),
    ] {
        if list.is_empty() {
            continue;
        }
        s.push_str(&format!("<h3 style=\"color:{color}\">{head}</h3>"));
        for ra in list {
            let a = ra.alert;
            s.push_str(&format!("<p><b>{}</b></p><table>", esc(&ra.line)));
            for (k, v) in &a.values.0 {
                s.push_str(&format!(
                    "<tr><td>{}</td><td><b>{}</b></td></tr>",
                    esc(k),
                    format_number(*v)
                ));
            }
            for (k, v) in &a.labels.0 {
                s.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v)));
            }
            s.push_str("</table>");
            if let Some(rb) = &a.runbook {
                s.push_str(&format!("<p><a href=\"{0}\">Runbook</a></p>", esc(rb)));
            }
        }
    }
    s.push_str(&format!(
        "<p style=\"color:#666\">Incident {} · team {} · receiver {}</p>",
        esc(&n.incident),
        esc(&n.team),
        esc(receiver)
    ));
    if let Some(a) = r.firing.first() {
        s.push_str(&format!(
            "<p style=\"color:#666\">To silence: POST /api/v1/silences with matchers <code>{}</code></p>",
            esc(&matchers(a.alert))
        ));
    }
    s.push_str("</body></html>");
    s
}

impl Notifier for EmailNotifier {
    fn send<'a>(&'a self, msg: &'a Message<'a>) -> BoxFuture<'a, Result<Receipt, NotifyError>> {
        Box::pin(self.deliver(msg))
    }
}
