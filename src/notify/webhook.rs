//! Webhooks: a JSON POST with a versioned payload, for automation (scale
//! out, restart, open a ticket).
//!
//! Payload, version `"1"` (fields are only ever added within a version):
//!
//! ```json
//! {
//!   "version": "1",
//!   "id": "5f0c…",                      // the notification id (also Idempotency-Key)
//!   "receiver": "autoscale",
//!   "kind": "firing",                   // firing | resolved | repeat
//!   "status": "ALARM",                  // ALARM | OK
//!   "title": "[ALARM] CloudMart-EC2-HighCPU i-0abc (platform)",
//!   "team": "platform",
//!   "incident": "3a9e…",
//!   "group": { "alertname": "CloudMart-EC2-HighCPU", "InstanceId": "i-0abc" },
//!   "at": "2026-01-01T00:00:30Z",
//!   "digest": 1,                        // notifications combined in this call
//!   "alerts": { "firing": [ <alert> ], "resolved": [ <alert> ] }
//! }
//! ```
//!
//! An `<alert>` is the API's alert object: `fingerprint`, `rule`, `team`,
//! `labels`, `status`, `state`, `starts_at`, `ends_at`, `summary`,
//! `values`, `runbook`, ….
//!
//! Headers: `Idempotency-Key: <id>` (a retry sends the same key), and with
//! `hmac_secret`, `X-Klaxon-Timestamp: <unix seconds>` and
//! `X-Klaxon-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
//! A receiver recomputes the HMAC over the raw body and rejects old
//! timestamps.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::template::{status, Templates};
use super::{retry_after_header, BoxFuture, Message, Notifier, NotifyError, Receipt};
use crate::alerts::{Kind, NotifiedAlerts};
use crate::config::receivers::WebhookConfig;
use crate::config::run::{PropValue, Secret};
use crate::model::{format_rfc3339, Ordered};

pub const PAYLOAD_VERSION: &str = "1";
pub const SIGNATURE_HEADER: &str = "X-Klaxon-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Klaxon-Timestamp";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The JSON body.
#[derive(Serialize)]
pub struct Payload<'a> {
    pub version: &'static str,
    pub id: &'a str,
    pub receiver: &'a str,
    pub kind: Kind,
    pub status: &'static str,
    pub title: String,
    pub team: &'a str,
    pub incident: &'a str,
    pub group: &'a Ordered<String>,
    pub at: String,
    pub digest: usize,
    pub alerts: &'a NotifiedAlerts,
}

pub struct WebhookNotifier {
    name: String,
    http: reqwest::Client,
    url: PropValue,
    hmac_secret: Option<Secret>,
    templates: Templates,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("hmac_secret", &self.hmac_secret)
            .finish_non_exhaustive()
    }
}

/// `sha256=<hex>` of `"<timestamp>.<body>"`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl WebhookNotifier {
    pub fn new(
        name: &str,
        c: WebhookConfig,
        templates: Templates,
        timeout: Duration,
    ) -> Result<Self, String> {
        Ok(WebhookNotifier {
            name: name.to_string(),
            http: super::http_client(timeout)?,
            url: c.url,
            hmac_secret: c.hmac_secret,
            templates,
        })
    }

    async fn deliver(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        let n = msg.notification;
        let r = self
            .templates
            .for_team(&n.team)
            .render(n, &self.name, msg.digest);
        let payload = Payload {
            version: PAYLOAD_VERSION,
            id: &n.id,
            receiver: &self.name,
            kind: n.kind,
            status: status(n.kind),
            title: r.title,
            team: &n.team,
            incident: &n.incident,
            group: &n.group,
            at: format_rfc3339(n.at),
            digest: msg.digest,
            alerts: &n.alerts,
        };
        let body = serde_json::to_vec(&payload)
            .map_err(|e| NotifyError::permanent(format!("webhook: cannot encode: {e}")))?;
        let mut req = self
            .http
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, &n.id);
        if let Some(s) = &self.hmac_secret {
            let ts = chrono::Utc::now().timestamp().to_string();
            req = req
                .header(
                    SIGNATURE_HEADER,
                    signature(s.expose().as_bytes(), &ts, &body),
                )
                .header(TIMESTAMP_HEADER, ts);
        }
        let res = req
            .body(body)
            .send()
            .await
            .map_err(NotifyError::from_reqwest)?;
        let status = res.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(Receipt { thread: None });
        }
        let retry_after = retry_after_header(res.headers());
        let text = res.text().await.unwrap_or_default();
        Err(NotifyError::from_status(
            status,
            retry_after,
            &format!("webhook: {text}"),
        ))
    }
}

impl Notifier for WebhookNotifier {
    fn send<'a>(&'a self, msg: &'a Message<'a>) -> BoxFuture<'a, Result<Receipt, NotifyError>> {
        Box::pin(self.deliver(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac() {
        // Computed independently: Python's
        // hmac.new(b"whsec", b'1767225630.{"version":"1"}', hashlib.sha256).
        let s = signature(b"whsec", "1767225630", br#"{"version":"1"}"#);
        assert_eq!(
            s,
            "sha256=2c5ed1ba421fb0d7595441d7333cab164c344f94a2db6e9b085c122dd9477704"
        );
    }
}
