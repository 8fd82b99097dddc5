//! Notifiers: a [`Notification`] from dispatch → a Slack message, an email,
//! an SMS or a webhook call.
//!
//! ```text
//!  Notification ─submit─▶ Deliverer ─▶ per receiver: bounded queue per target
//!                                          │ governor limits (receiver, target);
//!                                          │ limited → the queue goes out as one digest
//!                                          ▼
//!                              Notifier::send (one file per channel)
//!                                          │ Transient / RateLimited: backoff + jitter,
//!                                          │ Retry-After honoured; Permanent: reported
//!                                          ▼
//!                              Outcome (accepted, failed, shed) ─▶ the caller's log
//! ```
//!
//! - [`Notifier`]: one small trait, one implementation per channel:
//!   [`slack`] (Web API and incoming webhooks), [`email`] (SMTP), [`twilio`],
//!   `sns` (cargo feature `sns`), [`webhook`].
//! - [`template`]: the embedded default texts and their per-team overrides.
//! - [`sms`]: GSM-7 / UCS-2 segment counting and shortening.
//! - [`deliver`]: the [`Deliverer`] that drives the notifiers: rate limits,
//!   queues, digests, retries, outcomes.
//!
//! The caller (`klaxon run`) marks a notification as sent in its log only
//! when an [`Outcome`] says the channel accepted it; a crash before that
//! sends it again.

pub mod deliver;
pub mod email;
pub mod slack;
pub mod sms;
#[cfg(feature = "sns")]
pub mod sns;
pub mod template;
#[doc(hidden)]
pub mod testdata;
pub mod time;
pub mod twilio;
pub mod webhook;

use std::fmt;
use std::time::Duration;

pub use crate::alerts::Notification;
pub use crate::api::BoxFuture;
pub use deliver::{Deliverer, Failure, Outcome};

use crate::config::receivers::{Channel, ReceiverConfig};

/// One channel. `send` makes one attempt; retrying, rate limiting and
/// digests are the [`Deliverer`]'s job.
pub trait Notifier: Send + Sync {
    fn send<'a>(&'a self, msg: &'a Message<'a>) -> BoxFuture<'a, Result<Receipt, NotifyError>>;
}

/// What to send, where.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub notification: &'a Notification,
    /// The team's target in the receiver (a channel, an address, a phone
    /// number); `None`: the receiver's default.
    pub target: Option<&'a str>,
    /// The thread of the incident's first message (a Slack `ts`), for
    /// follow-ups.
    pub thread: Option<&'a str>,
    /// How many notifications `notification` combines (1: a single one).
    pub digest: usize,
}

impl<'a> Message<'a> {
    pub fn new(notification: &'a Notification) -> Self {
        Message {
            notification,
            target: notification.target.as_deref(),
            thread: None,
            digest: 1,
        }
    }
}

/// What the channel gave back on acceptance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    /// Slack: the message `ts`. Store it per (receiver, incident) and pass
    /// it back as [`Message::thread`] for follow-ups.
    pub thread: Option<String>,
}

/// Whether trying again can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyErrorKind {
    /// Bad credentials, unknown channel or number, SMTP 5xx: not retried.
    Permanent,
    /// Timeouts, connection errors, 5xx: retried with backoff.
    Transient,
    /// 429 or the channel's equivalent: retried after `retry_after`.
    RateLimited,
}

impl NotifyErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyErrorKind::Permanent => "permanent",
            NotifyErrorKind::Transient => "transient",
            NotifyErrorKind::RateLimited => "rate_limited",
        }
    }
}

/// A failed attempt. `reason` never holds a secret (tokens, webhook URLs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyError {
    pub kind: NotifyErrorKind,
    pub reason: String,
    pub retry_after: Option<Duration>,
}

impl NotifyError {
    pub fn permanent(reason: impl Into<String>) -> Self {
        NotifyError {
            kind: NotifyErrorKind::Permanent,
            reason: reason.into(),
            retry_after: None,
        }
    }
    pub fn transient(reason: impl Into<String>) -> Self {
        NotifyError {
            kind: NotifyErrorKind::Transient,
            reason: reason.into(),
            retry_after: None,
        }
    }
    pub fn rate_limited(reason: impl Into<String>, retry_after: Option<Duration>) -> Self {
        NotifyError {
            kind: NotifyErrorKind::RateLimited,
            reason: reason.into(),
            retry_after,
        }
    }

    /// The usual reading of an HTTP status that is not a success.
    pub fn from_status(status: u16, retry_after: Option<Duration>, detail: &str) -> Self {
        let reason = if detail.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", clip(detail, 300))
        };
        match status {
            429 => NotifyError::rate_limited(reason, retry_after),
            408 | 425 | 500..=599 => NotifyError {
                retry_after,
                ..NotifyError::transient(reason)
            },
            _ => NotifyError::permanent(reason),
        }
    }

    /// A reqwest error, without the URL (it may carry a secret).
    pub fn from_reqwest(e: reqwest::Error) -> Self {
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            src = s.source();
        }
        if e.is_builder() {
            NotifyError::permanent(reason)
        } else {
            NotifyError::transient(reason)
        }
    }
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.reason)?;
        if let Some(d) = self.retry_after {
            write!(f, " (retry after {} ms)", d.as_millis())?;
        }
        Ok(())
    }
}

impl std::error::Error for NotifyError {}

/// `Retry-After`: delay-seconds or an HTTP date (read against the wall
/// clock, the only place notifiers look at it).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(ms.max(0) as u64))
}

pub(crate) fn retry_after_header(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// At most `max` characters of `s`.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A notifier could not be built from its config.
#[derive(Debug)]
pub struct BuildError {
    pub receiver: String,
    pub reason: String,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "receiver `{}`: {}", self.receiver, self.reason)
    }
}

impl std::error::Error for BuildError {}

/// The notifier for one configured receiver.
pub fn build(r: &ReceiverConfig) -> Result<Box<dyn Notifier>, BuildError> {
    let err = |reason: String| BuildError {
        receiver: r.name.clone(),
        reason,
    };
    let timeout = Duration::from_millis(r.delivery.timeout as u64);
    Ok(match &r.channel {
        Channel::Slack(c) => Box::new(
            slack::SlackNotifier::new(&r.name, c.clone(), r.templates.clone()).map_err(err)?,
        ),
        Channel::SlackWebhook(c) => Box::new(
            slack::SlackWebhookNotifier::new(&r.name, c.clone(), r.templates.clone())
                .map_err(err)?,
        ),
        Channel::Email(c) => Box::new(
            email::EmailNotifier::new(&r.name, c.clone(), r.templates.clone(), timeout)
                .map_err(err)?,
        ),
        Channel::Twilio(c) => Box::new(
            twilio::TwilioNotifier::new(&r.name, c.clone(), r.templates.clone(), timeout)
                .map_err(err)?,
        ),
        #[cfg(feature = "sns")]
        Channel::Sns(c) => Box::new(
            sns::SnsNotifier::new(&r.name, c.clone(), r.templates.clone(), timeout).map_err(err)?,
        ),
        #[cfg(not(feature = "sns"))]
        Channel::Sns(_) => {
            return Err(err(
                "type `sns` needs klaxon built with `--features sns`".into()
            ))
        }
        Channel::Webhook(c) => Box::new(
            webhook::WebhookNotifier::new(&r.name, c.clone(), r.templates.clone(), timeout)
                .map_err(err)?,
        ),
    })
}

/// An HTTP client for the HTTP channels (rustls, the system's roots).
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("klaxon/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.without_url().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify() {
        assert_eq!(
            NotifyError::from_status(429, Some(Duration::from_secs(3)), "").kind,
            NotifyErrorKind::RateLimited
        );
        assert_eq!(
            NotifyError::from_status(503, None, "down").kind,
            NotifyErrorKind::Transient
        );
        assert_eq!(
            NotifyError::from_status(404, None, "no").kind,
            NotifyErrorKind::Permanent
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
