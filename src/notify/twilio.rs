//! SMS through Twilio's Messages API: a form POST with basic auth
//! (account SID : auth token), one request per number.
//!
//! The body is the `sms` template, shortened to one segment (see [`super::sms`]).
//! Twilio's error codes decide whether a retry can help: 21211 (invalid
//! `To`), 21614 (not a mobile), 21610 (opted out), 21408 (region not
//! enabled), 20003 (bad credentials) are permanent; 429/20429 is a rate
//! limit; 5xx are transient.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::template::Templates;
use super::{retry_after_header, sms, BoxFuture, Message, Notifier, NotifyError, Receipt};
use crate::config::receivers::TwilioConfig;
use crate::config::run::Secret;

const PERMANENT_CODES: &[u64] = &[
    20003, 20404, 21211, 21408, 21610, 21612, 21614, 21606, 21659,
];

pub struct TwilioNotifier {
    name: String,
    http: reqwest::Client,
    url: String,
    account_sid: String,
    auth_token: Secret,
    from: String,
    default_to: Vec<String>,
    templates: Templates,
}

impl fmt::Debug for TwilioNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioNotifier")
            .field("name", &self.name)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<u64>,
    message: Option<String>,
}

impl TwilioNotifier {
    pub fn new(
        name: &str,
        c: TwilioConfig,
        templates: Templates,
        timeout: Duration,
    ) -> Result<Self, String> {
        Ok(TwilioNotifier {
            name: name.to_string(),
            http: super::http_client(timeout)?,
            url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                c.api_url, c.account_sid
            ),
            account_sid: c.account_sid,
            auth_token: c.auth_token,
            from: c.from,
            default_to: c.default_to,
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
                "twilio: no number (no target, no default_to)",
            ));
        }
        let r = self
            .templates
            .for_team(&n.team)
            .render(n, &self.name, msg.digest);
        let body = sms::one_segment(&r.sms);
        for number in &to {
            let from_key = if self.from.starts_with("MG") {
                "MessagingServiceSid"
            } else {
                "From"
            };
            let form = [
                ("To", number.as_str()),
                (from_key, self.from.as_str()),
                ("Body", &body),
            ];
            let res = self
                .http
                .post(&self.url)
                .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
                .form(&form)
                .send()
                .await
                .map_err(NotifyError::from_reqwest)?;
            let status = res.status().as_u16();
            if (200..300).contains(&status) {
                continue;
            }
            let retry_after = retry_after_header(res.headers());
            let text = res.text().await.unwrap_or_default();
            let e: Option<TwilioError> = serde_json::from_str(&text).ok();
            let (code, message) = match &e {
                Some(e) => (e.code, e.message.clone().unwrap_or_default()),
                None => (None, text.clone()),
            };
            let detail = match code {
                Some(c) => format!("twilio {c}: {message}"),
                None => format!("twilio: {message}"),
            };
            let mut err = NotifyError::from_status(status, retry_after, &detail);
            if code.is_some_and(|c| PERMANENT_CODES.contains(&c)) {
                err.kind = super::NotifyErrorKind::Permanent;
            }
            if code == Some(20429) {
                err.kind = super::NotifyErrorKind::RateLimited;
            }
            return Err(err);
        }
        Ok(Receipt { thread: None })
    }
}

impl Notifier for TwilioNotifier {
    fn send<'a>(&'a self, msg: &'a Message<'a>) -> BoxFuture<'a, Result<Receipt, NotifyError>> {
        Box::pin(self.deliver(msg))
    }
}
