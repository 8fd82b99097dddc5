//! `receivers:` in `klaxon.yaml`: the channels team files name.
//!
//! ```yaml
//! receivers:
//!   platform-slack:
//!     type: slack
//!     token: { env: SLACK_BOT_TOKEN }
//!     default_channel: "#alerts"
//!     target_rate_limit: { per_minute: 20, burst: 5 }
//!   oncall-sms:
//!     type: twilio
//!     account_sid: AC0123456789abcdef0123456789abcdef
//!     auth_token: { file: /run/secrets/twilio }
//!     from: "+15005550006"
//! ```
//!
//! Secrets (tokens, passwords, HMAC keys) must be `{ env: NAME }` or
//! `{ file: PATH }`: a literal in the file is refused. Phone numbers are
//! checked as E.164 and addresses as mailboxes here, so a typo fails at
//! load with `file:line:col`, not at 3 a.m.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::duration::parse_duration;
use super::run::{Env, PropValue, Secret};
use super::yaml::{Node, Pos, Value};
use super::{read_yaml, ConfigError, ErrorKind, Fields};
use crate::alerts::escalation::To;
use crate::alerts::Team;
use crate::model::Millis;
use crate::notify::template::{TemplateSet, Templates, Tpl, TEMPLATE_NAMES};

/// Every configured receiver, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReceiversConfig {
    pub receivers: BTreeMap<String, ReceiverConfig>,
}

/// One receiver: a channel, how it is delivered, its templates.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceiverConfig {
    pub name: String,
    pub channel: Channel,
    pub delivery: Delivery,
    pub templates: Templates,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Channel {
    Slack(SlackConfig),
    SlackWebhook(SlackWebhookConfig),
    Email(EmailConfig),
    Twilio(TwilioConfig),
    Sns(SnsConfig),
    Webhook(WebhookConfig),
}

impl Channel {
    pub fn type_name(&self) -> &'static str {
        match self {
            Channel::Slack(_) => "slack",
            Channel::SlackWebhook(_) => "slack_webhook",
            Channel::Email(_) => "email",
            Channel::Twilio(_) => "twilio",
            Channel::Sns(_) => "sns",
            Channel::Webhook(_) => "webhook",
        }
    }
}

/// A sustained rate with a burst (a governor quota).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// The time one more message is allowed after.
    pub period: std::time::Duration,
    pub burst: u32,
}

/// How a receiver's notifications are queued, limited and retried.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// For the whole receiver (e.g. a Slack workspace, a Twilio account).
    pub rate_limit: Option<Rate>,
    /// For each target (a channel, an address, a phone number).
    pub target_rate_limit: Option<Rate>,
    /// Notifications waiting, over all targets; past it the oldest is shed.
    pub max_queue: usize,
    /// At most this many notifications in one digest.
    pub max_digest: usize,
    /// The first retry's backoff; it doubles up to `retry_max` (full jitter).
    pub retry_initial: Millis,
    pub retry_max: Millis,
    /// One attempt's limit.
    pub timeout: Millis,
}

pub const DEFAULT_MAX_QUEUE: usize = 1000;
pub const DEFAULT_MAX_DIGEST: usize = 50;
pub const DEFAULT_RETRY_INITIAL: Millis = 1_000;
pub const DEFAULT_RETRY_MAX: Millis = 300_000;
pub const DEFAULT_TIMEOUT: Millis = 10_000;

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            rate_limit: None,
            target_rate_limit: None,
            max_queue: DEFAULT_MAX_QUEUE,
            max_digest: DEFAULT_MAX_DIGEST,
            retry_initial: DEFAULT_RETRY_INITIAL,
            retry_max: DEFAULT_RETRY_MAX,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

pub const SLACK_API_URL: &str = "https://slack.com/api";
pub const TWILIO_API_URL: &str = "https://api.twilio.com";

#[derive(Clone, Debug, PartialEq)]
pub struct SlackConfig {
    /// A bot token (`xoxb-…`) with `chat:write`.
    pub token: Secret,
    pub api_url: String,
    /// Where a team without a `target` posts.
    pub default_channel: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SlackWebhookConfig {
    /// The incoming webhook URL (a secret: anyone with it can post).
    pub url: Secret,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (a local relay).
    None,
    /// Plain, then STARTTLS (required).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `klaxon <klaxon@example.com>`.
    pub from: String,
    /// Recipients when a team names no target (a target may list several,
    /// comma-separated).
    pub default_to: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: Secret,
    /// An E.164 number, or a Messaging Service SID (`MG…`).
    pub from: String,
    pub api_url: String,
    pub default_to: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SnsConfig {
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// Default `https://sns.<region>.amazonaws.com`.
    pub endpoint: String,
    pub default_to: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    /// Plain, or a secret when the URL carries a token.
    pub url: PropValue,
    /// Signs the body: `X-Klaxon-Signature: sha256=<hex>`.
    pub hmac_secret: Option<Secret>,
}

const COMMON: &[&str] = &[
    "type",
    "rate_limit",
    "target_rate_limit",
    "max_queue",
    "max_digest",
    "retry",
    "timeout",
    "templates",
];
const TYPES: &[&str] = &[
    "slack",
    "slack_webhook",
    "email",
    "twilio",
    "sns",
    "webhook",
];

fn schema(file: &Path, pos: Pos, msg: impl Into<String>) -> ConfigError {
    ConfigError::new(ErrorKind::Schema, file, pos, msg)
}

fn invalid(file: &Path, pos: Pos, msg: impl Into<String>) -> ConfigError {
    ConfigError::new(ErrorKind::Invalid, file, pos, msg)
}

/// `+` and 2 to 15 digits, not starting with 0.
pub fn is_e164(s: &str) -> bool {
    let Some(d) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

/// Checks a Slack `channel` for `chat.postMessage`: a channel name
/// (`#alerts`) or a conversation or member ID (`C0123ABCD`, `U0123ABCD`:
/// the app then writes in its DM with that person). Slack stopped taking
/// `@name` there in 2018 (a post to it fails with `channel_not_found`), so
/// it is refused here rather than at 3 a.m.
pub fn check_slack_channel(t: &str) -> Result<(), String> {
    if let Some(name) = t.strip_prefix('@') {
        return Err(format!(
            "Slack no longer takes {t:?} as a channel: give {name}'s member ID \
             (like U0123ABCD, from their Slack profile: ⋮ → Copy member ID)"
        ));
    }
    let name = t.strip_prefix('#').unwrap_or(t);
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "{t:?} is not a Slack channel (#name) or ID (C…, U…)"
        ));
    }
    Ok(())
}

/// A mailbox lettre accepts (`a@b.c` or `Name <a@b.c>`).
pub fn is_mailbox(s: &str) -> bool {
    s.parse::<lettre::message::Mailbox>().is_ok()
}

impl ReceiversConfig {
    /// Checks a team file's `target` for `receiver`: a known receiver, and
    /// a target its channel can use (E.164 numbers for SMS, addresses for
    /// email). The message is for `file:line:col` of the team file.
    pub fn check_target(&self, receiver: &str, target: Option<&str>) -> Result<(), String> {
        let Some(r) = self.receivers.get(receiver) else {
            let mut msg = format!("no receiver `{receiver}` in klaxon.yaml");
            if let Some(s) =
                crate::rules::expr::suggest(receiver, self.receivers.keys().map(String::as_str))
            {
                msg.push_str(&format!("; did you mean `{s}`?"));
            }
            return Err(msg);
        };
        match (&r.channel, target) {
            (Channel::Twilio(_) | Channel::Sns(_), Some(t)) => {
                for n in t.split(',').map(str::trim) {
                    if !is_e164(n) {
                        return Err(format!(
                            "target {n:?} of receiver `{receiver}` is not an E.164 number like +15551234567"
                        ));
                    }
                }
                Ok(())
            }
            (Channel::Email(_), Some(t)) => {
                for a in t.split(',').map(str::trim) {
                    if !is_mailbox(a) {
                        return Err(format!(
                            "target {a:?} of receiver `{receiver}` is not an email address"
                        ));
                    }
                }
                Ok(())
            }
            (Channel::Slack(_), Some(t)) => {
                check_slack_channel(t).map_err(|e| format!("target of receiver `{receiver}`: {e}"))
            }
            (Channel::Twilio(TwilioConfig { default_to: d, .. }), None)
            | (Channel::Sns(SnsConfig { default_to: d, .. }), None)
            | (Channel::Email(EmailConfig { default_to: d, .. }), None)
                if d.is_empty() =>
            {
                Err(format!(
                    "receiver `{receiver}` has no `default_to`, so the team must give a `target`"
                ))
            }
            (
                Channel::Slack(SlackConfig {
                    default_channel: None,
                    ..
                }),
                None,
            ) => Err(format!(
                "receiver `{receiver}` has no `default_channel`, so the team must give a `target`"
            )),
            _ => Ok(()),
        }
    }
}

impl ReceiversConfig {
    /// Checks every receiver and target the team files page: their
    /// receivers, each escalation tier's targets, and the contact points of
    /// everyone in a rotation a tier pages. One message per problem, naming
    /// the team and where in it.
    pub fn check_teams(&self, teams: &BTreeMap<String, Team>) -> Vec<String> {
        let mut errors = Vec::new();
        for (name, team) in teams {
            let mut check = |place: String, receiver: &str, target: Option<&str>| {
                if let Err(e) = self.check_target(receiver, target) {
                    errors.push(format!("team `{name}`: {place}: {e}"));
                }
            };
            for r in &team.receivers {
                check(
                    format!("receiver `{}`", r.name),
                    &r.name,
                    r.target.as_deref(),
                );
            }
            let Some(policy) = &team.escalation else {
                continue;
            };
            for (i, tier) in policy.tiers.iter().enumerate() {
                for t in &tier.targets {
                    let place = format!("escalation tier {i}");
                    match &t.to {
                        To::Receiver => check(place, &t.receiver, None),
                        To::Target(target) => check(place, &t.receiver, Some(target)),
                        To::OnCall(rotation) => {
                            let Some(rot) = team.oncall.get(rotation) else {
                                continue; // reported by the team file's loader
                            };
                            let mut who: Vec<&str> =
                                rot.people.iter().map(String::as_str).collect();
                            who.extend(rot.overrides.iter().map(|o| o.person.as_str()));
                            who.sort();
                            who.dedup();
                            for person in who {
                                let contact = team
                                    .people
                                    .get(person)
                                    .and_then(|p| p.contacts.get(&t.receiver));
                                if let Some(c) = contact {
                                    check(
                                        format!("{place} (`{person}` on call in `{rotation}`)"),
                                        &t.receiver,
                                        Some(c),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        errors
    }
}

/// Parses the `receivers:` mapping of `file`. Relative template folders
/// resolve against the file's folder.
pub fn parse_receivers(
    file: &Path,
    node: &Node,
    env: &dyn Env,
) -> Result<ReceiversConfig, ConfigError> {
    let map = node.as_map().ok_or_else(|| {
        schema(
            file,
            node.pos,
            "`receivers` must be a mapping of names to receivers",
        )
    })?;
    let mut out = ReceiversConfig::default();
    for (k, v) in map {
        let name = k
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| schema(file, k.pos, "receiver names must be strings"))?;
        if out.receivers.contains_key(name) {
            return Err(invalid(
                file,
                k.pos,
                format!("receiver `{name}` is defined twice"),
            ));
        }
        let r = receiver(file, name, v, env)?;
        out.receivers.insert(name.to_string(), r);
    }
    Ok(out)
}

fn receiver(
    file: &Path,
    name: &str,
    v: &Node,
    env: &dyn Env,
) -> Result<ReceiverConfig, ConfigError> {
    let what = format!("receiver `{name}`");
    let Some(ty_node) = v.get("type") else {
        return Err(schema(
            file,
            v.pos,
            format!("{what} needs a `type`: one of {}", TYPES.join(", ")),
        ));
    };
    let ty = ty_node.as_str().unwrap_or("");
    let own: &[&str] = match ty {
        "slack" => &["token", "api_url", "default_channel"],
        "slack_webhook" => &["url"],
        "email" => &["smtp", "from", "default_to"],
        "twilio" => &["account_sid", "auth_token", "from", "api_url", "default_to"],
        "sns" => &[
            "region",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "endpoint",
            "default_to",
        ],
        "webhook" => &["url", "hmac_secret"],
        _ => {
            let mut msg = format!("unknown receiver type `{ty}`");
            match crate::rules::expr::suggest(ty, TYPES.iter().copied()) {
                Some(s) => msg.push_str(&format!("; did you mean `{s}`?")),
                None => msg.push_str(&format!("; expected one of: {}", TYPES.join(", "))),
            }
            return Err(schema(file, ty_node.pos, msg));
        }
    };
    let allowed: Vec<&str> = COMMON.iter().chain(own).copied().collect();
    let f = Fields::new(file, v, &what, &allowed)?;
    let req = |key: &str| -> Result<(String, Pos), ConfigError> {
        f.required_str(key, &what)
            .map(|(s, n)| (s.to_string(), n.pos))
    };
    let secret_req = |key: &str| -> Result<Secret, ConfigError> {
        let n = f.required(key, &what)?;
        secret(file, &what, key, n, env)
    };
    let secret_opt = |key: &str| -> Result<Option<Secret>, ConfigError> {
        f.get(key)
            .map(|n| secret(file, &what, key, n, env))
            .transpose()
    };
    let url = |key: &str, default: &str| -> Result<String, ConfigError> {
        match f.str(key, &what)? {
            None => Ok(default.to_string()),
            Some((u, n)) => {
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    return Err(schema(
                        file,
                        n.pos,
                        format!("`{key}` must be an http(s) URL"),
                    ));
                }
                Ok(u.trim_end_matches('/').to_string())
            }
        }
    };
    let numbers = |key: &str| -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        for (s, pos) in list(&f, key, &what)? {
            if !is_e164(&s) {
                return Err(invalid(
                    file,
                    pos,
                    format!("{s:?} is not an E.164 phone number (like +15551234567)"),
                ));
            }
            out.push(s);
        }
        Ok(out)
    };

    let channel = match ty {
        "slack" => Channel::Slack(SlackConfig {
            token: secret_req("token")?,
            api_url: url("api_url", SLACK_API_URL)?,
            default_channel: match f.str("default_channel", &what)? {
                None => None,
                Some((c, n)) => {
                    check_slack_channel(c).map_err(|e| invalid(file, n.pos, e))?;
                    Some(c.to_string())
                }
            },
        }),
        "slack_webhook" => Channel::SlackWebhook(SlackWebhookConfig {
            url: secret_req("url")?,
        }),
        "email" => {
            let smtp = f.required("smtp", &what)?;
            let sw = format!("`smtp` of {what}");
            let g = Fields::new(
                file,
                smtp,
                &sw,
                &["host", "port", "tls", "username", "password"],
            )?;
            let host = g.required_str("host", &sw)?.0.to_string();
            let tls = match g.str("tls", &sw)? {
                None => SmtpTls::Starttls,
                Some(("none", _)) => SmtpTls::None,
                Some(("starttls", _)) => SmtpTls::Starttls,
                Some(("tls", _)) => SmtpTls::Tls,
                Some((t, n)) => {
                    return Err(schema(
                        file,
                        n.pos,
                        format!("`tls` must be none, starttls or tls, not {t:?}"),
                    ))
                }
            };
            let port = match g.str("port", &sw)? {
                None => match tls {
                    SmtpTls::Tls => 465,
                    _ => 587,
                },
                Some((p, n)) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    schema(
                        file,
                        n.pos,
                        format!("`port` must be a port number, not {p:?}"),
                    )
                })?,
            };
            let username = g.str("username", &sw)?.map(|(s, _)| s.to_string());
            let password = g
                .get("password")
                .map(|n| secret(file, &sw, "password", n, env))
                .transpose()?;
            if username.is_some() != password.is_some() {
                return Err(invalid(
                    file,
                    smtp.pos,
                    "`username` and `password` go together (or neither, for a relay without auth)",
                ));
            }
            let (from, from_pos) = req("from")?;
            if !is_mailbox(&from) {
                return Err(invalid(
                    file,
                    from_pos,
                    format!(
                        "`from` is not a mailbox like \"klaxon <klaxon@example.com>\": {from:?}"
                    ),
                ));
            }
            let mut default_to = Vec::new();
            for (a, pos) in list(&f, "default_to", &what)? {
                if !is_mailbox(&a) {
                    return Err(invalid(file, pos, format!("{a:?} is not an email address")));
                }
                default_to.push(a);
            }
            Channel::Email(EmailConfig {
                host,
                port,
                tls,
                username,
                password,
                from,
                default_to,
            })
        }
        "twilio" => {
            let (sid, sid_pos) = req("account_sid")?;
            if !sid.starts_with("AC") || sid.len() != 34 {
                return Err(invalid(
                    file,
                    sid_pos,
                    "`account_sid` must be a Twilio account SID (AC and 32 hex digits)",
                ));
            }
            let (from, from_pos) = req("from")?;
            if !is_e164(&from) && !from.starts_with("MG") {
                return Err(invalid(
                    file,
                    from_pos,
                    format!("`from` must be an E.164 number (like +15005550006) or a Messaging Service SID (MG…), not {from:?}"),
                ));
            }
            Channel::Twilio(TwilioConfig {
                account_sid: sid,
                auth_token: secret_req("auth_token")?,
                from,
                api_url: url("api_url", TWILIO_API_URL)?,
                default_to: numbers("default_to")?,
            })
        }
        "sns" => {
            let (region, _) = req("region")?;
            let default_endpoint = format!("https://sns.{region}.amazonaws.com");
            Channel::Sns(SnsConfig {
                endpoint: url("endpoint", &default_endpoint)?,
                region,
                access_key_id: secret_req("access_key_id")?,
                secret_access_key: secret_req("secret_access_key")?,
                session_token: secret_opt("session_token")?,
                default_to: numbers("default_to")?,
            })
        }
        "webhook" => {
            let n = f.required("url", &what)?;
            let url = match &n.value {
                Value::Scalar { text, .. } => {
                    if !(text.starts_with("https://") || text.starts_with("http://")) {
                        return Err(schema(file, n.pos, "`url` must be an http(s) URL"));
                    }
                    PropValue::Plain(text.clone())
                }
                _ => PropValue::Secret(secret(file, &what, "url", n, env)?),
            };
            Channel::Webhook(WebhookConfig {
                url,
                hmac_secret: secret_opt("hmac_secret")?,
            })
        }
        _ => unreachable!("checked above"),
    };

    let mut delivery = Delivery::default();
    if let Channel::Slack(_) = channel {
        // Slack allows about one message per second per channel.
        delivery.target_rate_limit = Some(Rate {
            period: std::time::Duration::from_secs(1),
            burst: 5,
        });
    }
    if let Some(n) = f.get("rate_limit") {
        delivery.rate_limit = Some(rate(file, n, "rate_limit")?);
    }
    if let Some(n) = f.get("target_rate_limit") {
        delivery.target_rate_limit = Some(rate(file, n, "target_rate_limit")?);
    }
    for (key, slot) in [
        ("max_queue", &mut delivery.max_queue),
        ("max_digest", &mut delivery.max_digest),
    ] {
        if let Some((t, n)) = f.str(key, &what)? {
            *slot =
                t.parse::<usize>().ok().filter(|v| *v > 0).ok_or_else(|| {
                    schema(file, n.pos, format!("`{key}` must be a positive number"))
                })?;
        }
    }
    if let Some(n) = f.get("retry") {
        let g = Fields::new(file, n, "`retry`", &["initial", "max"])?;
        for (key, slot) in [
            ("initial", &mut delivery.retry_initial),
            ("max", &mut delivery.retry_max),
        ] {
            if let Some((t, n)) = g.str(key, "`retry`")? {
                *slot =
                    parse_duration(t).map_err(|e| schema(file, n.pos, format!("`{key}`: {e}")))?;
            }
        }
        if delivery.retry_max < delivery.retry_initial {
            return Err(invalid(
                file,
                n.pos,
                "`retry.max` is shorter than `retry.initial`",
            ));
        }
    }
    if let Some((t, n)) = f.str("timeout", &what)? {
        delivery.timeout = parse_duration(t)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| schema(file, n.pos, "`timeout` must be a duration like 10s"))?;
    }

    let templates = match f.str("templates", &what)? {
        None => Templates::default(),
        Some((dir, _)) => {
            let base = file.parent().unwrap_or(Path::new("."));
            let dir = PathBuf::from(dir);
            load_templates(&if dir.is_relative() {
                base.join(dir)
            } else {
                dir
            })?
        }
    };

    Ok(ReceiverConfig {
        name: name.to_string(),
        channel,
        delivery,
        templates,
    })
}

fn list(f: &Fields, key: &str, what: &str) -> Result<Vec<(String, Pos)>, ConfigError> {
    let Some(n) = f.get(key) else {
        return Ok(Vec::new());
    };
    match &n.value {
        Value::Scalar { text, .. } => Ok(vec![(text.clone(), n.pos)]),
        Value::Seq(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(|s| (s.to_string(), i.pos))
                    .ok_or_else(|| f.wrong(i, key, what, "a list of strings"))
            })
            .collect(),
        Value::Map(_) => Err(f.wrong(n, key, what, "a list of strings")),
    }
}

fn rate(file: &Path, n: &Node, key: &str) -> Result<Rate, ConfigError> {
    let what = format!("`{key}`");
    let f = Fields::new(
        file,
        n,
        &what,
        &["per_second", "per_minute", "per_hour", "burst"],
    )?;
    let mut found = None;
    for (k, unit) in [
        ("per_second", 1.0),
        ("per_minute", 60.0),
        ("per_hour", 3600.0),
    ] {
        if let Some((t, v)) = f.str(k, &what)? {
            if found.is_some() {
                return Err(invalid(
                    file,
                    v.pos,
                    format!("{what} takes one of per_second, per_minute, per_hour"),
                ));
            }
            let count: f64 = t
                .parse()
                .ok()
                .filter(|c: &f64| c.is_finite() && *c > 0.0)
                .ok_or_else(|| schema(file, v.pos, format!("`{k}` must be a positive number")))?;
            found = Some(std::time::Duration::from_secs_f64(unit / count));
        }
    }
    let period = found.ok_or_else(|| {
        schema(
            file,
            n.pos,
            format!("{what} needs per_second, per_minute or per_hour"),
        )
    })?;
    let burst = match f.str("burst", &what)? {
        None => 1,
        Some((t, v)) => t
            .parse::<u32>()
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| schema(file, v.pos, "`burst` must be a positive whole number"))?,
    };
    Ok(Rate { period, burst })
}

/// `{ env: NAME }` or `{ file: PATH }`; a literal is refused.
fn secret(
    file: &Path,
    what: &str,
    key: &str,
    v: &Node,
    env: &dyn Env,
) -> Result<Secret, ConfigError> {
    if let Value::Map(_) = v.value {
        let f = Fields::new(file, v, &format!("`{key}` of {what}"), &["env", "file"])?;
        if env.offline() && (f.str("env", key)?.is_some() || f.str("file", key)?.is_some()) {
            return Ok(Secret::new(super::run::UNREAD_SECRET));
        }
        if let Some((var, n)) = f.str("env", key)? {
            let value = env.var(var).ok_or_else(|| {
                schema(
                    file,
                    n.pos,
                    format!("`{key}` of {what}: environment variable {var} is not set"),
                )
            })?;
            return Ok(Secret::new(value));
        }
        if let Some((path, n)) = f.str("file", key)? {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    ErrorKind::Io,
                    file,
                    n.pos,
                    format!("`{key}` of {what}: cannot read {path}: {e}"),
                )
            })?;
            return Ok(Secret::new(text.trim_end_matches(['\n', '\r'])));
        }
    }
    Err(schema(
        file,
        v.pos,
        format!("`{key}` of {what} is a secret: write {{ env: NAME }} or {{ file: PATH }}, never the value itself"),
    ))
}

/// A template folder: `default.yaml` for every team, `<team>.yaml` for
/// one team (over the defaults). Each file maps template names (`title`,
/// `digest_title`, `line`, `sms`) to text.
pub fn load_templates(dir: &Path) -> Result<Templates, ConfigError> {
    let io = |e: std::io::Error| {
        ConfigError::new(
            ErrorKind::Io,
            dir,
            Pos::default(),
            format!("template folder: {e}"),
        )
    };
    let mut out = Templates::default();
    let default = dir.join("default.yaml");
    if default.exists() {
        apply(&default, &mut out.default)?;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter(|p| p.file_stem().and_then(|s| s.to_str()) != Some("default"))
        .collect();
    files.sort();
    for p in files {
        let team = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let mut set = out.default.clone();
        apply(&p, &mut set)?;
        out.teams.insert(team, set);
    }
    Ok(out)
}

fn apply(path: &Path, set: &mut TemplateSet) -> Result<(), ConfigError> {
    let doc = read_yaml(path)?;
    let f = Fields::new(path, &doc, "a template file", TEMPLATE_NAMES)?;
    for name in TEMPLATE_NAMES {
        if let Some((text, n)) = f.str(name, "a template file")? {
            let t = Tpl::parse(text).map_err(|(at, msg)| schema(path, n.pos_at(at), msg))?;
            set.set(name, t);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<ReceiversConfig, ConfigError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let doc = yaml::parse(text).unwrap();
        parse_receivers(Path::new("/etc/klaxon/klaxon.yaml"), &doc, &env)
    }

    const BUNDLED_RECEIVERS: &str = "slack: { type: slack, token: { env: T }, default_channel: \"#alerts\" }\n\
        email: { type: email, smtp: { host: localhost, port: 25, tls: none }, from: k@cloudmart.example }\n\
        sms: { type: twilio, account_sid: AC00000000000000000000000000000000, auth_token: { env: T }, from: \"+15005550006\" }\n\
        pagerduty: { type: webhook, url: \"https://hooks.cloudmart.example/pd\" }\n";

    fn bundled_teams() -> BTreeMap<String, Team> {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        crate::config::dispatch::load_dispatch(&[rules])
            .expect("bundled team files")
            .teams
    }

    #[test]
    fn team_files_are_checked_against_the_receivers() {
        let r = load(BUNDLED_RECEIVERS, &[("T", "x")]).unwrap();
        let mut teams = bundled_teams();
        assert_eq!(r.check_teams(&teams), Vec::<String>::new());

        // A tier's receiver that klaxon.yaml does not define.
        let mut less = r.clone();
        less.receivers.remove("sms");
        let errors = less.check_teams(&teams);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("team `platform`: escalation tier 2")
                    && e.contains("no receiver `sms` in klaxon.yaml")),
            "{errors:?}"
        );

        // An on-call person's contact point the channel cannot use.
        teams
            .get_mut("platform")
            .unwrap()
            .people
            .get_mut("lee")
            .unwrap()
            .contacts
            .insert("sms".into(), "010-1234-5678".into());
        let errors = r.check_teams(&teams);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("`lee` on call in `primary`") && errors[0].contains("E.164"),
            "{errors:?}"
        );
    }

    #[test]
    fn every_channel_parses() {
        let c = load(
            r##"
slack: { type: slack, token: { env: T }, api_url: "http://127.0.0.1:1/api/", default_channel: "#a", rate_limit: { per_second: 2, burst: 5 } }
hook: { type: slack_webhook, url: { env: U } }
mail: { type: email, smtp: { host: 127.0.0.1, port: 2525, tls: none }, from: "klaxon <k@example.com>", default_to: [ops@example.com] }
sms: { type: twilio, account_sid: AC0123456789abcdef0123456789abcdef, auth_token: { env: T }, from: "+15005550006", default_to: "+15551234567" }
sns: { type: sns, region: eu-west-1, access_key_id: { env: T }, secret_access_key: { env: U } }
wh: { type: webhook, url: "https://example.com/x", hmac_secret: { env: U }, target_rate_limit: { per_minute: 30 }, retry: { initial: 10ms, max: 1s }, max_queue: 5 }
"##,
            &[("T", "tok"), ("U", "https://hooks.example/secret")],
        )
        .unwrap();
        assert_eq!(c.receivers.len(), 6);
        let Channel::Slack(s) = &c.receivers["slack"].channel else {
            panic!()
        };
        assert_eq!(s.api_url, "http://127.0.0.1:1/api");
        assert_eq!(s.token.expose(), "tok");
        let d = &c.receivers["slack"].delivery;
        assert_eq!(
            d.rate_limit.unwrap().period,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(
            d.target_rate_limit.unwrap().burst,
            5,
            "Slack's default per channel"
        );
        let Channel::Sns(s) = &c.receivers["sns"].channel else {
            panic!()
        };
        assert_eq!(s.endpoint, "https://sns.eu-west-1.amazonaws.com");
        let d = &c.receivers["wh"].delivery;
        assert_eq!((d.retry_initial, d.retry_max, d.max_queue), (10, 1000, 5));
        assert_eq!(
            d.target_rate_limit.unwrap().period,
            std::time::Duration::from_secs(2)
        );
        assert!(c.check_target("sms", Some("+442071838750")).is_ok());
        assert!(c.check_target("sms", Some("07700 900123")).is_err());
        assert!(c
            .check_target("mail", Some("a@b.example, c@d.example"))
            .is_ok());
        assert!(c.check_target("mail", Some("not an address")).is_err());
        assert!(c
            .check_target("slak", None)
            .unwrap_err()
            .contains("did you mean `slack`"));
        for ok in ["#cloudmart-platform", "C0123ABCD", "U0123ABCD", "alerts"] {
            assert_eq!(c.check_target("slack", Some(ok)), Ok(()), "{ok}");
        }
        let e = c.check_target("slack", Some("@kim")).unwrap_err();
        assert!(e.contains("member ID") && e.contains("kim"), "{e}");
        assert!(c.check_target("slack", Some("#")).is_err());
    }

    #[test]
    fn mistakes_are_positioned() {
        let cases: &[(&str, &str)] = &[
            (
                "sms: { type: twilio, account_sid: AC0123456789abcdef0123456789abcdef, auth_token: { env: T }, from: \"+15005550006\", default_to: [\"+15551234567\", \"555-1234\"] }\n",
                "/etc/klaxon/klaxon.yaml:1:146: \"555-1234\" is not an E.164 phone number (like +15551234567)",
            ),
            (
                "s:\n  type: slack\n  token: xoxb-literal\n",
                "/etc/klaxon/klaxon.yaml:3:10: `token` of receiver `s` is a secret: write { env: NAME } or { file: PATH }, never the value itself",
            ),
            (
                "s:\n  type: slakc\n",
                "/etc/klaxon/klaxon.yaml:2:9: unknown receiver type `slakc`; did you mean `slack`?",
            ),
            (
                "s:\n  type: slack\n  token: { env: T }\n  default_chanel: x\n",
                "/etc/klaxon/klaxon.yaml:4:3: unknown field `default_chanel` in receiver `s`; did you mean `default_channel`?",
            ),
            (
                "s:\n  type: slack\n  token: { env: T }\n  default_channel: \"@ops\"\n",
                "/etc/klaxon/klaxon.yaml:4:20: Slack no longer takes \"@ops\" as a channel: give ops's member ID (like U0123ABCD, from their Slack profile: ⋮ → Copy member ID)",
            ),
            (
                "m:\n  type: email\n  smtp: { host: h, tls: ssl }\n  from: k@example.com\n",
                "/etc/klaxon/klaxon.yaml:3:25: `tls` must be none, starttls or tls, not \"ssl\"",
            ),
            (
                "s:\n  type: slack\n  token: { env: MISSING }\n",
                "/etc/klaxon/klaxon.yaml:3:17: `token` of receiver `s`: environment variable MISSING is not set",
            ),
        ];
        for (text, want) in cases {
            let e = load(text, &[("T", "x")]).unwrap_err();
            assert_eq!(&e.to_string(), want, "for {text}");
        }
    }

    #[test]
    fn secrets_never_debug_print() {
        let c = load(
            "s: { type: slack, token: { env: T } }\nw: { type: webhook, url: { env: U }, hmac_secret: { env: H } }\nm: { type: email, smtp: { host: h, username: u, password: { env: P } }, from: k@example.com }\n",
            &[("T", "xoxb-sekrit-1"), ("U", "https://h.example/sekrit-2"), ("H", "sekrit-3"), ("P", "sekrit-4")],
        )
        .unwrap();
        let dbg = format!("{c:?}");
        for s in ["sekrit-1", "sekrit-2", "sekrit-3", "sekrit-4"] {
            assert!(!dbg.contains(s), "{s} in {dbg}");
        }
    }

    #[test]
    fn template_overrides_per_team() {
        let dir = std::env::temp_dir().join(format!("klaxon-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("default.yaml"),
            "line: \"{{summary}} [{{severity}}]\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("payments.yaml"), "title: \"PAY {{alertname}}\"\n").unwrap();
        let t = load_templates(&dir).unwrap();
        assert_eq!(
            t.default.line,
            Tpl::parse("{{summary}} [{{severity}}]").unwrap()
        );
        let p = t.for_team("payments");
        assert_eq!(p.title, Tpl::parse("PAY {{alertname}}").unwrap());
        assert_eq!(p.line, t.default.line, "inherits default.yaml");
        assert_eq!(t.for_team("other"), &t.default);
        std::fs::write(dir.join("bad.yaml"), "sms: \"x {{oops\"\n").unwrap();
        let e = load_templates(&dir).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("bad.yaml:1:9: `{{` without a closing `}}`"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
