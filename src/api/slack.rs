//! Slack interactivity: the **Acknowledge** button of a Slack message.
//!
//! Slack posts a click as `application/x-www-form-urlencoded` with one
//! field, `payload`, a JSON `block_actions` document. klaxon's messages
//! carry a button with `action_id: klaxon_ack` and the incident id as its
//! `value`; a click acknowledges that incident through the API's
//! [`Backend::ack`], as the clicking user.
//!
//! Every request is checked first, as Slack documents ("Verifying requests
//! from Slack"):
//! - `X-Slack-Request-Timestamp` must be within 5 minutes of now (replays
//!   of an old request are refused);
//! - `X-Slack-Signature` must be `v0=` + hex HMAC-SHA256 of
//!   `v0:{timestamp}:{raw body}` keyed with the app's signing secret,
//!   compared in constant time.
//!
//! A request that fails either check gets `401` and nothing happens. The
//! clock is passed in (`now`), so tests control the window.
//!
//! Slack ignores the body of the answer to a button click, so the outcome
//! goes to the click's `response_url`: on success the message is replaced
//! by itself without the button and with "Acknowledged by …" (everyone in
//! the channel sees it); a refused ack (already acknowledged, resolved,
//! unknown) is shown to the clicking user only.
//!
//! Mount it with [`interactions`] at [`PATH`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::Json;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::Backend;
use crate::config::run::Secret;
use crate::model::Millis;

/// Where the API router mounts [`interactions`].
pub const PATH: &str = "/api/v1/slack/interactions";
/// The button's `action_id` (the Slack notifier sets it).
pub const ACK_ACTION: &str = crate::notify::slack::ACK_ACTION_ID;
/// How far a request's timestamp may be from now.
pub const MAX_SKEW_MS: Millis = 5 * 60_000;

/// Why a Slack request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlackErrorKind {
    /// A signature or timestamp header is missing or malformed.
    MissingHeader,
    /// The timestamp is more than 5 minutes from now.
    StaleTimestamp,
    /// The signature does not match the body and the signing secret.
    BadSignature,
    /// The body is not a `payload` form with a block_actions JSON.
    BadPayload,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlackError {
    pub kind: SlackErrorKind,
    pub message: String,
}

impl SlackError {
    fn new(kind: SlackErrorKind, message: impl Into<String>) -> Self {
        SlackError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for SlackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SlackError {}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, SlackError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SlackError::new(SlackErrorKind::MissingHeader, format!("no {name} header")))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The `v0=…` signature Slack would send for `body` at `timestamp`.
pub fn sign(secret: &Secret, timestamp: &str, body: &[u8]) -> String {
    let bytes = mac(secret, timestamp, body).finalize().into_bytes();
    let mut out = String::from("v0=");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn mac(secret: &Secret, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// Checks a request's timestamp window and signature.
pub fn verify(
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    now: Millis,
) -> Result<(), SlackError> {
    let ts = header(headers, "x-slack-request-timestamp")?;
    let sig = header(headers, "x-slack-signature")?;
    let secs: i64 = ts.trim().parse().map_err(|_| {
        SlackError::new(
            SlackErrorKind::MissingHeader,
            "X-Slack-Request-Timestamp is not a number",
        )
    })?;
    if (now - secs.saturating_mul(1000)).abs() > MAX_SKEW_MS {
        return Err(SlackError::new(
            SlackErrorKind::StaleTimestamp,
            "X-Slack-Request-Timestamp is more than 5 minutes from now",
        ));
    }
    let given = sig.strip_prefix("v0=").and_then(unhex).ok_or_else(|| {
        SlackError::new(
            SlackErrorKind::BadSignature,
            "X-Slack-Signature is not v0=<hex>",
        )
    })?;
    // `verify_slice` compares in constant time.
    mac(secret, ts, body).verify_slice(&given).map_err(|_| {
        SlackError::new(
            SlackErrorKind::BadSignature,
            "X-Slack-Signature does not match",
        )
    })
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    user: User,
    #[serde(default)]
    response_url: Option<String>,
    /// The message the button is in (its blocks, to re-post without it).
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    actions: Vec<Action>,
}

#[derive(Default, Deserialize)]
struct User {
    #[serde(default)]
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Action {
    #[serde(default)]
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

/// An Acknowledge click: which incident, by whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckClick {
    pub incident: String,
    /// `@username (Slack U123)`.
    pub by: String,
}

/// A verified `block_actions` request: its ack clicks, and where and what
/// to answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interaction {
    pub clicks: Vec<AckClick>,
    pub response_url: Option<String>,
    pub message: Option<serde_json::Value>,
}

/// The ack clicks of a verified body (`payload=…`); empty when the
/// request is another interaction.
pub fn parse(body: &[u8]) -> Result<Vec<AckClick>, SlackError> {
    parse_interaction(body).map(|i| i.clicks)
}

/// [`parse`], with the click's `response_url` and message.
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, SlackError> {
    let payload = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| {
            SlackError::new(SlackErrorKind::BadPayload, "no `payload` field in the form")
        })?;
    let p: Payload = serde_json::from_str(&payload).map_err(|e| {
        SlackError::new(SlackErrorKind::BadPayload, format!("bad payload JSON: {e}"))
    })?;
    if p.kind != "block_actions" {
        return Ok(Interaction::default());
    }
    let who = p
        .user
        .username
        .as_deref()
        .or(p.user.name.as_deref())
        .filter(|s| !s.is_empty());
    let by = match who {
        Some(name) => format!("@{name} (Slack {})", p.user.id),
        None => format!("Slack {}", p.user.id),
    };
    let clicks = p
        .actions
        .into_iter()
        .filter(|a| a.action_id == ACK_ACTION)
        .filter_map(|a| a.value.filter(|v| !v.is_empty()))
        .map(|incident| AckClick {
            incident,
            by: by.clone(),
        })
        .collect();
    Ok(Interaction {
        clicks,
        response_url: p.response_url.filter(|u| !u.is_empty()),
        message: p.message,
    })
}

/// What to post to the `response_url` after the acks: for each success,
/// the original message without its Acknowledge button and with who
/// acknowledged (or, without the message, a line in the channel); for
/// each refusal, a line for the clicking user only.
pub fn follow_ups(
    message: Option<&serde_json::Value>,
    results: &[(AckClick, Result<String, String>)],
) -> Vec<serde_json::Value> {
    use serde_json::json;
    let mut out = Vec::new();
    for (click, result) in results {
        match result {
            Ok(by) => {
                let line = format!(":white_check_mark: Acknowledged by {by}; escalation stopped.");
                let blocks = message
                    .and_then(|m| m.get("blocks"))
                    .and_then(|b| b.as_array());
                match blocks {
                    Some(blocks) => {
                        let mut kept: Vec<serde_json::Value> = blocks
                            .iter()
                            .filter(|b| !has_ack_button(b))
                            .cloned()
                            .collect();
                        kept.push(json!({
                            "type": "context",
                            "elements": [{"type": "mrkdwn", "text": line}],
                        }));
                        let text = message
                            .and_then(|m| m.get("text"))
                            .cloned()
                            .unwrap_or_else(|| json!(line));
                        out.push(json!({
                            "replace_original": true,
                            "text": text,
                            "blocks": kept,
                        }));
                    }
                    None => out.push(json!({
                        "response_type": "in_channel",
                        "replace_original": false,
                        "text": format!("Incident {}: {line}", click.incident),
                    })),
                }
            }
            Err(reason) => out.push(json!({
                "response_type": "ephemeral",
                "replace_original": false,
                "text": format!("Could not acknowledge {}: {reason}", click.incident),
            })),
        }
    }
    out
}

fn has_ack_button(block: &serde_json::Value) -> bool {
    block["type"] == "actions"
        && block["elements"]
            .as_array()
            .is_some_and(|els| els.iter().any(|e| e["action_id"] == ACK_ACTION))
}

/// A `response_url` klaxon will post to: https, or http on loopback (a
/// test double).
fn allowed_response_url(u: &str) -> bool {
    let Ok(url) = url::Url::parse(u) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => matches!(
            url.host_str(),
            Some("127.0.0.1") | Some("localhost") | Some("[::1]")
        ),
        _ => false,
    }
}

/// A clock for the handler (wall time in `klaxon run`, fixed in tests).
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

#[derive(Clone)]
struct SlackState {
    backend: Arc<dyn Backend>,
    secret: Secret,
    clock: Clock,
    /// For the `response_url` follow-ups (`None`: the client could not be
    /// built; acks still work, without the follow-up).
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for SlackState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackState")
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

fn reply(status: StatusCode, text: String) -> Response {
    let body = serde_json::json!({
        "response_type": "ephemeral",
        "replace_original": false,
        "text": text,
    });
    (status, Json(body)).into_response()
}

async fn handle(State(st): State<SlackState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = verify(&st.secret, &headers, &body, (st.clock)()) {
        tracing::warn!(kind = ?e.kind, "refused a Slack request: {e}");
        let body = serde_json::json!({"kind": "unauthorized", "message": e.message});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    let interaction = match parse_interaction(&body) {
        Ok(c) => c,
        Err(e) => {
            let body = serde_json::json!({"kind": "bad_request", "message": e.message});
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let mut lines = Vec::new();
    let mut results = Vec::new();
    for c in interaction.clicks {
        // Slack shows a warning to the user for anything but 200, so a
        // refused ack (already acked, resolved, unknown) is a 200 with the
        // reason, shown only to them.
        match st.backend.ack(c.incident.clone(), c.by.clone()).await {
            Ok(inc) => {
                let by = inc.acked_by.clone().unwrap_or_else(|| c.by.clone());
                lines.push(format!(
                    "Incident {} acknowledged by {by}; escalation stopped.",
                    inc.id
                ));
                results.push((c, Ok(by)));
            }
            Err(e) => {
                lines.push(format!(
                    "Could not acknowledge {}: {}",
                    c.incident, e.message
                ));
                results.push((c, Err(e.message)));
            }
        }
    }
    if lines.is_empty() {
        return StatusCode::OK.into_response();
    }
    match (interaction.response_url, st.http.clone()) {
        (Some(url), Some(http)) if allowed_response_url(&url) => {
            let bodies = follow_ups(interaction.message.as_ref(), &results);
            // Slack wants the 200 within 3 s; the follow-up goes after it.
            tokio::spawn(async move {
                for body in bodies {
                    match http.post(&url).json(&body).send().await {
                        Ok(r) if r.status().is_success() => {}
                        // The URL is a capability: never logged.
                        Ok(r) => {
                            tracing::warn!(status = %r.status(), "Slack refused the acknowledgement follow-up")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e.without_url(), "cannot post the acknowledgement follow-up to Slack")
                        }
                    }
                }
            });
        }
        (Some(url), Some(_)) if !allowed_response_url(&url) => tracing::warn!(
            "a Slack click with a response_url that is neither https nor loopback; no follow-up"
        ),
        _ => {}
    }
    reply(StatusCode::OK, lines.join("\n"))
}

/// The `POST` handler for [`PATH`]: verifies, then acknowledges through
/// `backend`. `clock` gives now (epoch ms) for the timestamp window.
pub fn interactions<S>(backend: Arc<dyn Backend>, secret: Secret, clock: Clock) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let http = crate::notify::http_client(std::time::Duration::from_secs(10))
        .map_err(|e| tracing::warn!(error = %e, "no HTTP client for Slack follow-ups; acks work without them"))
        .ok();
    post(handle).with_state(SlackState {
        backend,
        secret,
        clock,
        http,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::Request;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;
    use crate::alerts::group::Incident;
    use crate::alerts::silence::Silence;
    use crate::alerts::{Alert, Notification};
    use crate::api::{ApiError, ApiErrorKind, BoxFuture};

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const NOW: Millis = 1_795_870_800_000;

    /// Records acks; knows one incident.
    #[derive(Default)]
    struct Acks(Mutex<Vec<(String, String)>>);

    impl Backend for Acks {
        fn alerts(&self) -> Vec<Alert> {
            Vec::new()
        }
        fn incidents(&self) -> Vec<Incident> {
            Vec::new()
        }
        fn silences(&self) -> Vec<Silence> {
            Vec::new()
        }
        fn notifications(&self, _: usize) -> Vec<Notification> {
            Vec::new()
        }
        fn create_silence(&self, s: Silence) -> BoxFuture<'_, Result<Silence, ApiError>> {
            Box::pin(async move { Ok(s) })
        }
        fn expire_silence(&self, _: String) -> BoxFuture<'_, Result<Silence, ApiError>> {
            Box::pin(async { Err(ApiError::new(ApiErrorKind::NotFound, "no")) })
        }
        fn ack(&self, incident: String, by: String) -> BoxFuture<'_, Result<Incident, ApiError>> {
            Box::pin(async move {
                if incident != "inc-1" {
                    return Err(ApiError::new(
                        ApiErrorKind::NotFound,
                        format!("no live incident {incident}"),
                    ));
                }
                self.0.lock().unwrap().push((incident.clone(), by.clone()));
                let mut d = crate::alerts::Dispatcher::new(Default::default());
                let c =
                    crate::alerts::tests::change("CPU", &[], crate::model::AlarmState::Alarm, 0);
                d.ingest(&c, 0);
                let mut inc = d.incidents().next().unwrap().clone();
                inc.id = incident;
                inc.acked_by = Some(by);
                Ok(inc)
            })
        }
    }

    fn body(incident: &str) -> String {
        let payload = serde_json::json!({
            "type": "block_actions",
            "user": {"id": "U123", "username": "kim", "name": "kim"},
            "actions": [{"action_id": "klaxon_ack", "block_id": "b", "value": incident, "type": "button"}],
        });
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
    }

    fn request(body: &str, ts: Millis, secret: &str) -> Request<Body> {
        let ts = (ts / 1000).to_string();
        let sig = sign(&Secret::new(secret), &ts, body.as_bytes());
        Request::post(PATH)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", sig)
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    async fn send(req: Request<Body>) -> (StatusCode, String, Vec<(String, String)>) {
        let acks = Arc::new(Acks::default());
        let app: Router = Router::new().route(
            PATH,
            interactions(acks.clone(), Secret::new(SECRET), Arc::new(|| NOW)),
        );
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let got = acks.0.lock().unwrap().clone();
        (status, String::from_utf8(bytes.to_vec()).unwrap(), got)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// Slack's documented example: this secret, timestamp and body give
    /// this signature.
    #[test]
    fn signature_matches_slacks_documented_example() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign(&Secret::new(SECRET), "1531420618", body.as_bytes()),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    /// A klaxon Slack message: header, an alert, the Acknowledge button.
    fn klaxon_message() -> serde_json::Value {
        serde_json::json!({
            "type": "message", "ts": "1767225600.000100",
            "text": "[ALARM] HostHot web-1 (ops)",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "[ALARM] HostHot web-1 (ops)"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "CPU 95% on web-1"}},
                {"type": "actions", "elements": [
                    {"type": "button", "action_id": "klaxon_ack", "value": "inc-1",
                     "text": {"type": "plain_text", "text": "Acknowledge"}}
                ]}
            ]
        })
    }

    fn click(incident: &str, response_url: &str) -> String {
        let payload = serde_json::json!({
            "type": "block_actions",
            "user": {"id": "U123", "username": "kim", "name": "kim"},
            "response_url": response_url,
            "message": klaxon_message(),
            "actions": [{"action_id": "klaxon_ack", "block_id": "b", "value": incident, "type": "button"}],
        });
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
    }

    #[test]
    fn follow_ups_replace_the_button_or_tell_the_clicker_why_not() {
        let c = |inc: &str| AckClick {
            incident: inc.into(),
            by: "@kim (Slack U123)".into(),
        };
        let msg = klaxon_message();
        let out = follow_ups(
            Some(&msg),
            &[
                (c("inc-1"), Ok("@kim (Slack U123)".into())),
                (
                    c("inc-2"),
                    Err("incident inc-2 is already acknowledged by lee".into()),
                ),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["replace_original"], true);
        assert_eq!(out[0]["text"], "[ALARM] HostHot web-1 (ops)");
        let blocks = out[0]["blocks"].as_array().unwrap();
        let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["header", "section", "context"],
            "the button is gone"
        );
        assert!(blocks[2]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Acknowledged by @kim (Slack U123)"));
        assert_eq!(out[1]["response_type"], "ephemeral");
        assert_eq!(out[1]["replace_original"], false);
        assert!(out[1]["text"]
            .as_str()
            .unwrap()
            .contains("already acknowledged by lee"));
        // Without the message: a line in the channel.
        let out = follow_ups(None, &[(c("inc-1"), Ok("@kim (Slack U123)".into()))]);
        assert_eq!(out[0]["response_type"], "in_channel");
        assert!(out[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Incident inc-1: "));
    }

    #[test]
    fn only_https_or_loopback_response_urls_are_used() {
        assert!(allowed_response_url(
            "https://hooks.slack.com/actions/T1/2/x"
        ));
        assert!(allowed_response_url("http://127.0.0.1:8080/actions"));
        assert!(!allowed_response_url(
            "http://hooks.slack.com/actions/T1/2/x"
        ));
        assert!(!allowed_response_url("file:///etc/passwd"));
        assert!(!allowed_response_url("not a url"));
    }

    #[test]
    fn a_click_gets_its_follow_up_on_the_response_url() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .and(path("/actions/T1/42/abc"))
                .respond_with(ResponseTemplate::new(200))
                .mount(&server)
                .await;
            let url = format!("{}/actions/T1/42/abc", server.uri());
            let (status, _, acks) = send(request(&click("inc-1", &url), NOW, SECRET)).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(acks.len(), 1);
            let (_, _, acks) = send(request(&click("inc-9", &url), NOW, SECRET)).await;
            assert!(acks.is_empty());
            // The follow-ups are posted after the answer: wait for both.
            let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                loop {
                    let r = server.received_requests().await.unwrap();
                    if r.len() >= 2 {
                        return r;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("two follow-ups");
            let bodies: Vec<serde_json::Value> = got
                .iter()
                .map(|r| serde_json::from_slice(&r.body).unwrap())
                .collect();
            let replaced = bodies
                .iter()
                .find(|b| b["replace_original"] == true)
                .unwrap();
            assert!(replaced
                .to_string()
                .contains("Acknowledged by @kim (Slack U123)"));
            assert!(
                !replaced.to_string().contains("klaxon_ack"),
                "no button left"
            );
            let refused = bodies
                .iter()
                .find(|b| b["response_type"] == "ephemeral")
                .unwrap();
            assert!(refused["text"]
                .as_str()
                .unwrap()
                .contains("Could not acknowledge inc-9"));
        });
    }

    #[test]
    fn a_valid_request_acknowledges_as_the_user() {
        let (status, text, acks) =
            rt().block_on(send(request(&body("inc-1"), NOW - 60_000, SECRET)));
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(
            acks,
            vec![("inc-1".to_string(), "@kim (Slack U123)".to_string())]
        );
        assert!(text.contains("acknowledged by @kim (Slack U123)"), "{text}");
        // An unknown incident: 200 (Slack shows the reason), nothing acked.
        let (status, text, acks) = rt().block_on(send(request(&body("inc-9"), NOW, SECRET)));
        assert_eq!(status, StatusCode::OK);
        assert!(acks.is_empty());
        assert!(text.contains("Could not acknowledge inc-9"), "{text}");
    }

    #[test]
    fn a_bad_signature_is_refused() {
        // Signed with another secret.
        let (status, text, acks) =
            rt().block_on(send(request(&body("inc-1"), NOW, "not-the-secret")));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
        assert!(acks.is_empty());
        assert!(text.contains("does not match"), "{text}");
        assert!(!text.contains(SECRET));
        // A body changed after signing.
        let mut req = request(&body("inc-1"), NOW, SECRET);
        *req.body_mut() = Body::from(body("inc-2"));
        let (status, _, acks) = rt().block_on(send(req));
        assert_eq!((status, acks.len()), (StatusCode::UNAUTHORIZED, 0));
        // No signature at all, or not hex.
        let mut req = request(&body("inc-1"), NOW, SECRET);
        req.headers_mut().remove("x-slack-signature");
        assert_eq!(rt().block_on(send(req)).0, StatusCode::UNAUTHORIZED);
        let mut req = request(&body("inc-1"), NOW, SECRET);
        req.headers_mut()
            .insert("x-slack-signature", "v0=zz".parse().unwrap());
        assert_eq!(rt().block_on(send(req)).0, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_stale_timestamp_is_refused_even_when_correctly_signed() {
        for ts in [NOW - 5 * 60_000 - 1_000, NOW + 6 * 60_000] {
            let (status, text, acks) = rt().block_on(send(request(&body("inc-1"), ts, SECRET)));
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
            assert!(text.contains("5 minutes"), "{text}");
            assert!(acks.is_empty());
        }
        // At the edge of the window: accepted.
        let (status, _, acks) =
            rt().block_on(send(request(&body("inc-1"), NOW - 5 * 60_000, SECRET)));
        assert_eq!((status, acks.len()), (StatusCode::OK, 1));
        // The functions alone, with kinds.
        let headers = request(&body("inc-1"), NOW - H, SECRET).headers().clone();
        let e = verify(
            &Secret::new(SECRET),
            &headers,
            body("inc-1").as_bytes(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.kind, SlackErrorKind::StaleTimestamp);
    }

    const H: Millis = 3_600_000;

    #[test]
    fn other_interactions_and_bad_payloads() {
        let other = form_urlencoded::Serializer::new(String::new())
            .append_pair(
                "payload",
                r#"{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"other","value":"inc-1"}]}"#,
            )
            .finish();
        let (status, text, acks) = rt().block_on(send(request(&other, NOW, SECRET)));
        assert_eq!((status, text.as_str(), acks.len()), (StatusCode::OK, "", 0));
        let (status, text, _) = rt().block_on(send(request("payload=%7Bnot-json", NOW, SECRET)));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert_eq!(parse(b"x=1").unwrap_err().kind, SlackErrorKind::BadPayload);
    }

    #[test]
    fn the_secret_never_shows() {
        let st = SlackState {
            backend: Arc::new(Acks::default()),
            secret: Secret::new(SECRET),
            clock: Arc::new(|| NOW),
            http: None,
        };
        let dbg = format!("{st:?}");
        assert!(!dbg.contains(SECRET), "{dbg}");
        assert!(dbg.contains("***"), "{dbg}");
    }
}
