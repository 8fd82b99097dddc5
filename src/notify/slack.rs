//! Slack: `chat.postMessage` with a bot token, and incoming webhooks, both
//! through slack-morphism.
//!
//! slack-morphism's own connector is https-only; this one is built here
//! with hyper-rustls and allows `http://` only when the configured
//! `api_url` is `http://` (a local double in tests).
//!
//! A message is Block Kit: a header with the title (`[ALARM] …`), one
//! section per alert with its computed values as fields, its labels, a
//! runbook link, a silence hint, and an **Acknowledge** button
//! (`action_id: klaxon_ack`, `value`: the incident id) while the incident
//! fires. Follow-ups of an incident (repeat, resolved, escalation) go in
//! the thread of its first message: [`Message::thread`] is that message's
//! `ts`, and [`Receipt::thread`] returns it (or the new message's `ts`).
//!
//! A target that is a member ID (`U…`, `W…`: an on-call person) goes to
//! the app's DM with that person: `conversations.open` (scope `im:write`)
//! gives the DM's `D…` ID, which is remembered, and the message and its
//! follow-ups are posted there.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::template::{Rendered, Templates};
use super::{clip, BoxFuture, Message, Notifier, NotifyError, Receipt};
use crate::alerts::Alert;
use crate::config::receivers::{SlackConfig, SlackWebhookConfig};
use crate::rules::template::format_number;

type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// The action id of the Acknowledge button.
pub const ACK_ACTION_ID: &str = "klaxon_ack";

/// Slack error codes that no retry can fix.
const PERMANENT: &[&str] = &[
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "invalid_blocks",
    "invalid_blocks_format",
    "msg_too_long",
    "no_text",
    "invalid_arguments",
    "restricted_action",
    "ekm_access_denied",
    "team_access_not_granted",
    "user_not_found",
    "user_not_visible",
    "user_disabled",
    "cannot_dm_bot",
];

/// Slack error codes worth another try.
const TRANSIENT: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "team_added_to_org",
];

fn connector(api_url: &str) -> Result<HttpsConnector<HttpConnector>, String> {
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no TLS root certificates: {e}"))?;
    let b = if api_url.starts_with("http://") {
        b.https_or_http()
    } else {
        b.https_only()
    };
    Ok(b.enable_http1().build())
}

fn client(api_url: &str) -> Result<Arc<SlackClient<Connector>>, String> {
    let c =
        SlackClientHyperConnector::with_connector(connector(api_url)?).with_slack_api_url(api_url);
    Ok(Arc::new(SlackClient::new(c)))
}

/// A slack-morphism error as a [`NotifyError`].
fn classify(e: SlackClientError) -> NotifyError {
    match e {
        SlackClientError::ApiError(a) => {
            let code = a.code.as_str();
            let reason = format!("slack: {code}");
            if code == "ratelimited" {
                NotifyError::rate_limited(reason, None)
            } else if TRANSIENT.contains(&code) {
                NotifyError::transient(reason)
            } else if PERMANENT.contains(&code) {
                NotifyError::permanent(reason)
            } else {
                // Unknown codes are mostly request problems; retrying
                // them forever would hide the error.
                NotifyError::permanent(reason)
            }
        }
        SlackClientError::RateLimitError(r) => NotifyError::rate_limited(
            format!(
                "slack: rate limited{}",
                r.code.map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            r.retry_after,
        ),
        SlackClientError::HttpError(h) => NotifyError::from_status(
            h.status_code.as_u16(),
            None,
            h.http_response_body.as_deref().unwrap_or(""),
        ),
        SlackClientError::ProtocolError(p) => {
            NotifyError::transient(format!("slack: unreadable response: {}", p.json_error))
        }
        other => NotifyError::transient(format!("slack: {}", clip(&other.to_string(), 300))),
    }
}

/// The message's text (notification fallback) and blocks.
pub fn blocks(r: &Rendered<'_>, incident: &str, firing: bool) -> (String, Vec<SlackBlock>) {
    let mut out: Vec<SlackBlock> = Vec::new();
    out.push(SlackHeaderBlock::new(clip(&r.title, 148).into()).into());
    const MAX_ALERTS: usize = 10;
    for (shown, (ra, resolved)) in r
        .firing
        .iter()
        .map(|a| (a, false))
        .chain(r.resolved.iter().map(|a| (a, true)))
        .enumerate()
    {
        if shown == MAX_ALERTS {
            let left = r.firing.len() + r.resolved.len() - shown;
            out.push(context(format!("…and {left} more alerts")));
            break;
        }
        let a = ra.alert;
        let icon = if resolved {
            ":white_check_mark:"
        } else {
            ":rotating_light:"
        };
        let sev = a.labels.get("severity").map(String::as_str).unwrap_or("");
        let mut text = format!("{icon} *{}*", escape(&ra.line));
        if !sev.is_empty() && !resolved {
            text.push_str(&format!("  `{}`", escape(sev)));
        }
        if resolved {
            text.push_str("  _resolved_");
        }
        let mut section = SlackSectionBlock::new().with_text(md(clip(&text, 2900)));
        let fields: Vec<SlackBlockText> = a
            .values
            .0
            .iter()
            .take(10)
            .map(|(k, v)| md(format!("*{}*\n{}", escape(k), format_number(*v))))
            .collect();
        if !fields.is_empty() {
            section = section.with_fields(fields);
        }
        out.push(section.into());
        out.push(context(labels_line(a)));
        if let Some(rb) = &a.runbook {
            out.push(
                SlackSectionBlock::new()
                    .with_text(md(format!("<{}|Runbook>", rb)))
                    .into(),
            );
        }
    }
    if firing {
        out.push(context(silence_hint(r)));
        let ack = SlackBlockButtonElement::new("Acknowledge".into())
            .with_action_id(SlackActionId(ACK_ACTION_ID.into()))
            .with_value(incident.to_string())
            .with_style(SlackBlockButtonStyle::Primary);
        out.push(SlackActionsBlock::new(vec![ack.into()]).into());
    }
    (r.title.clone(), out)
}

fn md(s: String) -> SlackBlockText {
    SlackBlockMarkDownText::new(s).into()
}

fn context(s: String) -> SlackBlock {
    SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(
        SlackBlockMarkDownText::new(clip(&s, 2900)),
    )])
    .into()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn labels_line(a: &Alert) -> String {
    a.labels
        .0
        .iter()
        .map(|(k, v)| format!("`{}={}`", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How to silence the first firing alert (matchers for the klaxon API).
fn silence_hint(r: &Rendered<'_>) -> String {
    let Some(a) = r.firing.first().map(|ra| ra.alert) else {
        return String::new();
    };
    let matchers: Vec<String> = a
        .labels
        .0
        .iter()
        .filter(|(k, _)| k != "severity")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!(
        ":no_bell: To silence: POST /api/v1/silences with matchers `{}`",
        escape(&matchers.join(", "))
    )
}

/// `chat.postMessage` with a bot token.
pub struct SlackNotifier {
    name: String,
    client: Arc<SlackClient<Connector>>,
    token: SlackApiToken,
    api_url: String,
    default_channel: Option<String>,
    templates: Templates,
    /// Member ID → the ID of the app's DM with them.
    dms: Mutex<HashMap<String, SlackChannelId>>,
}

/// A Slack member ID (`U0123ABCD`, or `W…` on Enterprise Grid), as opposed
/// to a channel name or a conversation ID.
pub fn is_member_id(s: &str) -> bool {
    (s.starts_with('U') || s.starts_with('W'))
        && s.len() >= 9
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackNotifier")
            .field("name", &self.name)
            .field("api_url", &self.api_url)
            .field("token", &"***")
            .finish()
    }
}

impl SlackNotifier {
    pub fn new(name: &str, c: SlackConfig, templates: Templates) -> Result<Self, String> {
        Ok(SlackNotifier {
            name: name.to_string(),
            client: client(&c.api_url)?,
            token: SlackApiToken::new(SlackApiTokenValue(c.token.expose().to_string())),
            api_url: c.api_url,
            default_channel: c.default_channel,
            templates,
            dms: Mutex::new(HashMap::new()),
        })
    }

    /// The ID of the app's DM with member `user` (opened once, then
    /// remembered).
    async fn dm(
        &self,
        session: &SlackClientSession<'_, Connector>,
        user: &str,
    ) -> Result<SlackChannelId, NotifyError> {
        if let Some(c) = self.dms.lock().unwrap_or_else(|e| e.into_inner()).get(user) {
            return Ok(c.clone());
        }
        let req =
            SlackApiConversationsOpenRequest::new().with_users(vec![SlackUserId(user.into())]);
        let res = session.conversations_open(&req).await.map_err(classify)?;
        let id = res.channel.id;
        self.dms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user.to_string(), id.clone());
        Ok(id)
    }

    async fn post(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        let n = msg.notification;
        let channel = msg
            .target
            .map(str::to_string)
            .or_else(|| self.default_channel.clone())
            .ok_or_else(|| {
                NotifyError::permanent("slack: no target channel and no default_channel")
            })?;
        let r = self
            .templates
            .for_team(&n.team)
            .render(n, &self.name, msg.digest);
        let firing = !n.alerts.firing.is_empty();
        let (text, blocks) = blocks(&r, &n.incident, firing);
        let session = self.client.open_session(&self.token);
        let channel = if is_member_id(&channel) {
            self.dm(&session, &channel).await?
        } else {
            SlackChannelId(channel)
        };
        let mut req = SlackApiChatPostMessageRequest::new(
            channel,
            SlackMessageContent::new()
                .with_text(text)
                .with_blocks(blocks),
        );
        if let Some(ts) = msg.thread {
            req = req.with_thread_ts(SlackTs(ts.to_string()));
        }
        let res = session.chat_post_message(&req).await.map_err(classify)?;
        Ok(Receipt {
            thread: Some(msg.thread.map(str::to_string).unwrap_or(res.ts.0)),
        })
    }
}

impl Notifier for SlackNotifier {
    fn send<'a>(&'a self, msg: &'a Message<'a>) -> BoxFuture<'a, Result<Receipt, NotifyError>> {
        Box::pin(self.post(msg))
    }
}

/// An incoming webhook (its URL is the secret; it picks the channel, so
/// `target` is ignored). Webhooks return no `ts`, so no threads.
pub struct SlackWebhookNotifier {
    name: String,
    client: Arc<SlackClient<Connector>>,
    url: url::Url,
    templates: Templates,
}

impl fmt::Debug for SlackWebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackWebhookNotifier")
            .field("name", &self.name)
            .field("url", &"***")
            .finish()
    }
}

impl SlackWebhookNotifier {
    pub fn new(name: &str, c: SlackWebhookConfig, templates: Templates) -> Result<Self, String> {
        let url: url::Url = c
            .url
            .expose()
            .parse()
            .map_err(|_| "the webhook URL does not parse".to_string())?;
        Ok(SlackWebhookNotifier {
            name: name.to_string(),
            client: client(url.as_str())?,
            url,
            templates,
        })
    }

    async fn post(&self, msg: &Message<'_>) -> Result<Receipt, NotifyError> {
        let n = msg.notification;
        let r = self
            .templates
            .for_team(&n.team)
            .render(n, &self.name, msg.digest);
        let (text, blocks) = blocks(&r, &n.incident, !n.alerts.firing.is_empty());
        let req = SlackApiPostWebhookMessageRequest::new(
            SlackMessageContent::new()
                .with_text(text)
                .with_blocks(blocks),
        );
        self.client
            .post_webhook_message(&self.url, &req)
            .await
            .map_err(classify)?;
        Ok(Receipt { thread: None })
    }
}

impl Notifier for SlackWebhookNotifier {
    fn send<'a>(&'a self, msg: &'a Message<'a>) -> BoxFuture<'a, Result<Receipt, NotifyError>> {
        Box::pin(self.post(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::is_member_id;

    #[test]
    fn member_ids_are_told_from_channels() {
        for id in ["U0123ABCD", "W0123ABCD", "U0CMPARK1"] {
            assert!(is_member_id(id), "{id}");
        }
        for not in [
            "#alerts",
            "C0123ABCD",
            "D0123ABCD",
            "updates",
            "U123",
            "Ukim00001",
        ] {
            assert!(!is_member_id(not), "{not}");
        }
    }
}
