//! Notification templates: text with `{{name}}` holes.
//!
//! Every channel renders the same four templates (defaults embedded here;
//! a receiver's `templates:` folder overrides them, see
//! [`crate::config::receivers`]):
//!
//! | template | used for | default |
//! |---|---|---|
//! | `title` | Slack header, email subject, webhook `title` | `[{{status}}] {{alertname}} {{group}} ({{team}})` |
//! | `digest_title` | the same, when several notifications were combined | `[{{status}}] {{count}} alerts for {{team}} (digest of {{digest}} notifications)` |
//! | `line` | one line per alert (Slack, email body) | `{{summary}}` |
//! | `sms` | Twilio and SNS text (then shortened to one segment) | `[{{status}}] {{alertname}} {{group}}: {{summary}}{{more}}` |
//!
//! Names a template can use:
//! - about the notification (`title`, `digest_title`, `sms`): `status`
//!   (`ALARM`, or `OK` when resolved), `kind` (`firing`, `resolved`,
//!   `repeat`), `team`, `incident`, `receiver`, `group` (the incident's
//!   group label values, without `alertname`/`team`/`severity`), `count`,
//!   `firing`, `resolved` (numbers of alerts), `more` (` (+N more)` or
//!   empty), `digest`, and everything of the **first** alert below;
//! - about one alert (`line`, and the first alert above): `alertname`
//!   (also `rule`), `severity`, `summary`, `state`, `runbook`,
//!   `starts_at`, `ends_at` (RFC 3339), every label and every computed
//!   value by name (numbers print with at most two decimals).
//!
//! A name that has no value renders as nothing; repeated spaces are
//! squeezed, so `{{group}}` may be empty without leaving a gap.

use crate::alerts::{Alert, Kind, Notification};
use crate::model::format_rfc3339;
use crate::rules::template::format_number;

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Var(String),
}

/// One parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Tpl {
    parts: Vec<Part>,
}

impl Tpl {
    /// Parses `src`. On error: the byte offset of the fault and a message.
    pub fn parse(src: &str) -> Result<Tpl, (usize, String)> {
        let mut parts = Vec::new();
        let mut rest = src;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find("}}") else {
                return Err((offset + open, "`{{` without a closing `}}`".into()));
            };
            let name = rest[open + 2..open + close].trim();
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'));
            if !ok {
                return Err((
                    offset + open,
                    format!("`{{{{{name}}}}}` is not a name (letters, digits, `_-.:/`)"),
                ));
            }
            parts.push(Part::Var(name.to_string()));
            offset += open + close + 2;
            rest = &rest[open + close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Tpl { parts })
    }

    fn builtin(src: &str) -> Tpl {
        Tpl::parse(src).expect("embedded templates parse")
    }

    /// Fills the holes from `vars`, then squeezes runs of spaces.
    pub fn render(&self, vars: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(name) => {
                    if let Some(v) = vars(name) {
                        out.push_str(&v);
                    }
                }
            }
        }
        squeeze(&out)
    }
}

fn squeeze(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_space = false;
    for c in s.chars() {
        if c == ' ' {
            if !prev_space {
                out.push(c);
            }
            prev_space = true;
        } else {
            // no space before a closing bracket or colon left by an empty hole
            if prev_space && matches!(c, ')' | ':' | ']') && out.ends_with(' ') {
                out.pop();
            }
            out.push(c);
            prev_space = false;
        }
    }
    out.trim().to_string()
}

pub const DEFAULT_TITLE: &str = "[{{status}}] {{alertname}} {{group}} ({{team}})";
pub const DEFAULT_DIGEST_TITLE: &str =
    "[{{status}}] {{count}} alerts for {{team}} (digest of {{digest}} notifications)";
pub const DEFAULT_LINE: &str = "{{summary}}";
pub const DEFAULT_SMS: &str = "[{{status}}] {{alertname}} {{group}}: {{summary}}{{more}}";

/// The template names a file may set.
pub const TEMPLATE_NAMES: &[&str] = &["title", "digest_title", "line", "sms"];

/// The four templates of one receiver (for one team).
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateSet {
    pub title: Tpl,
    pub digest_title: Tpl,
    pub line: Tpl,
    pub sms: Tpl,
}

impl Default for TemplateSet {
    fn default() -> Self {
        TemplateSet {
            title: Tpl::builtin(DEFAULT_TITLE),
            digest_title: Tpl::builtin(DEFAULT_DIGEST_TITLE),
            line: Tpl::builtin(DEFAULT_LINE),
            sms: Tpl::builtin(DEFAULT_SMS),
        }
    }
}

impl TemplateSet {
    pub fn set(&mut self, name: &str, t: Tpl) {
        match name {
            "title" => self.title = t,
            "digest_title" => self.digest_title = t,
            "line" => self.line = t,
            "sms" => self.sms = t,
            _ => unreachable!("checked against TEMPLATE_NAMES"),
        }
    }

    /// Renders `n`; `digest` is how many notifications it combines (1: none).
    pub fn render<'n>(&self, n: &'n Notification, receiver: &str, digest: usize) -> Rendered<'n> {
        let head = n.alerts.firing.first().or(n.alerts.resolved.first());
        let count = n.alerts.firing.len() + n.alerts.resolved.len();
        let status = status(n.kind);
        let group = n
            .group
            .0
            .iter()
            .filter(|(k, _)| !crate::alerts::BUILTIN_LABELS.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let more = if count > 1 {
            format!(" (+{} more)", count - 1)
        } else {
            String::new()
        };
        let vars = |name: &str| -> Option<String> {
            Some(match name {
                "status" => status.into(),
                "kind" => n.kind.as_str().into(),
                "team" => n.team.clone(),
                "incident" => n.incident.clone(),
                "receiver" => receiver.into(),
                "group" => group.clone(),
                "count" => count.to_string(),
                "firing" => n.alerts.firing.len().to_string(),
                "resolved" => n.alerts.resolved.len().to_string(),
                "more" => more.clone(),
                "digest" => digest.to_string(),
                _ => return head.and_then(|a| alert_var(a, name)),
            })
        };
        let title = if digest > 1 {
            self.digest_title.render(&vars)
        } else {
            self.title.render(&vars)
        };
        let line = |a: &'n Alert| RenderedAlert {
            line: self.line.render(&|name| alert_var(a, name)),
            alert: a,
        };
        Rendered {
            title,
            status,
            firing: n.alerts.firing.iter().map(line).collect(),
            resolved: n.alerts.resolved.iter().map(line).collect(),
            sms: self.sms.render(&vars),
        }
    }
}

/// `ALARM` or `OK`.
pub fn status(kind: Kind) -> &'static str {
    match kind {
        Kind::Firing | Kind::Repeat => "ALARM",
        Kind::Resolved => "OK",
    }
}

/// One alert's value for `name`.
pub fn alert_var(a: &Alert, name: &str) -> Option<String> {
    Some(match name {
        "alertname" | "rule" => a.rule.clone(),
        "summary" => a.summary.clone(),
        "state" => a.state.as_str().to_string(),
        "runbook" => a.runbook.clone()?,
        "starts_at" => format_rfc3339(a.starts_at),
        "ends_at" => format_rfc3339(a.ends_at?),
        "status" => match a.status {
            crate::alerts::Status::Firing => "FIRING".into(),
            crate::alerts::Status::Resolved => "RESOLVED".into(),
        },
        _ => {
            if let Some(v) = a.values.get(name) {
                format_number(*v)
            } else {
                a.labels.get(name)?.clone()
            }
        }
    })
}

/// A notification as text, ready for a channel to lay out.
#[derive(Clone, Debug)]
pub struct Rendered<'n> {
    pub title: String,
    /// `ALARM` or `OK`.
    pub status: &'static str,
    pub firing: Vec<RenderedAlert<'n>>,
    pub resolved: Vec<RenderedAlert<'n>>,
    /// The SMS text before shortening.
    pub sms: String,
}

#[derive(Clone, Debug)]
pub struct RenderedAlert<'n> {
    pub line: String,
    pub alert: &'n Alert,
}

/// A receiver's templates: its defaults and per-team overrides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Templates {
    pub default: TemplateSet,
    pub teams: std::collections::BTreeMap<String, TemplateSet>,
}

impl Templates {
    pub fn for_team(&self, team: &str) -> &TemplateSet {
        self.teams.get(team).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testdata::notification;

    #[test]
    fn default_title_reads_like_an_inbox_subject() {
        let n = notification(Kind::Firing);
        let r = TemplateSet::default().render(&n, "email", 1);
        assert_eq!(r.title, "[ALARM] CloudMart-EC2-HighCPU i-0abc (platform)");
        assert_eq!(r.firing[0].line, "CPU 97.5% on i-0abc");
        let n = notification(Kind::Resolved);
        let r = TemplateSet::default().render(&n, "email", 1);
        assert_eq!(r.title, "[OK] CloudMart-EC2-HighCPU i-0abc (platform)");
        assert_eq!(
            r.sms,
            "[OK] CloudMart-EC2-HighCPU i-0abc: CPU 97.5% on i-0abc"
        );
    }

    #[test]
    fn empty_holes_leave_no_gaps_and_values_format() {
        let mut n = notification(Kind::Firing);
        n.group.0.retain(|(k, _)| k == "alertname");
        let set = TemplateSet {
            line: Tpl::parse("{{InstanceId}} at {{cpu}}% ({{nope}})").unwrap(),
            ..TemplateSet::default()
        };
        let r = set.render(&n, "x", 1);
        assert_eq!(r.title, "[ALARM] CloudMart-EC2-HighCPU (platform)");
        assert_eq!(r.firing[0].line, "i-0abc at 97.5% ()");
        let r = set.render(&n, "x", 3);
        assert_eq!(
            r.title,
            "[ALARM] 1 alerts for platform (digest of 3 notifications)"
        );
    }

    #[test]
    fn parse_errors_have_offsets() {
        assert_eq!(Tpl::parse("ab {{x").unwrap_err().0, 3);
        assert_eq!(Tpl::parse("ab {{ x y }}").unwrap_err().0, 3);
        assert!(Tpl::parse("{{a.b}} {{c}}").is_ok());
    }
}
