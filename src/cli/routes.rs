//! `klaxon routes test LABELS...`: which team an alert with these labels
//! goes to, how it is grouped, who hears of it and the escalation
//! timeline (like `amtool config routes test`).

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::alerts::escalation::To;
use crate::alerts::group::group_of;
use crate::alerts::route::matching;
use crate::alerts::{DispatchConfig, BUILTIN_LABELS};
use crate::config::duration::format_duration;
use crate::config::{load_dispatch, load_rules, RuleSet};
use crate::model::{format_rfc3339, AlarmState, Millis, Ordered, StateChange};

/// Why the labels could not be routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutesErrorKind {
    /// A label is not written `name=value`.
    BadLabel,
    /// No `team=`, no rule named by `alertname=`, and no route matches.
    NoTeam,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutesError {
    pub kind: RoutesErrorKind,
    pub message: String,
}

impl std::fmt::Display for RoutesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// `name=value` or `name="value"`.
pub fn parse_label(s: &str) -> Result<(String, String), RoutesError> {
    let bad = || RoutesError {
        kind: RoutesErrorKind::BadLabel,
        message: format!("labels are written name=value (e.g. service=payments-api), not {s:?}"),
    };
    let (k, v) = s.split_once('=').ok_or_else(bad)?;
    let k = k.trim();
    if k.is_empty()
        || !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
    {
        return Err(bad());
    }
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    Ok((k.to_string(), v.to_string()))
}

/// The report for `labels`, with on-call resolved as if the alert fired
/// at `at`.
pub fn explain(
    config: &DispatchConfig,
    rules: &RuleSet,
    labels: &[(String, String)],
    at: Millis,
) -> Result<String, RoutesError> {
    let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let alertname = get("alertname").unwrap_or_default();
    let rule = rules.rules.iter().find(|r| r.name == alertname);
    let rule_team = get("team").or_else(|| rule.map(|r| r.team.clone()));
    let severity = get("severity")
        .or_else(|| rule.map(|r| r.severity.clone()))
        .unwrap_or_default();
    let change = StateChange {
        id: String::new(),
        fingerprint: String::new(),
        rule: alertname.clone(),
        team: rule_team.clone().unwrap_or_default(),
        labels: Ordered(
            labels
                .iter()
                .filter(|(k, _)| !BUILTIN_LABELS.contains(&k.as_str()))
                .cloned()
                .collect(),
        ),
        state: AlarmState::Alarm,
        previous: AlarmState::Ok,
        period_end: at,
        values: Ordered::default(),
        severity,
        summary: String::new(),
        runbook: None,
    };
    let mut alert = config.alert(&change);
    let route = matching(
        &config.routes,
        &crate::alerts::Alert::firing(&change).labels,
    );
    let mut out = String::new();
    match (route, &rule_team) {
        (Some(r), _) => {
            let ms: Vec<String> = r.matchers.iter().map(|m| m.to_string()).collect();
            writeln!(out, "team: {}", r.team).ok();
            writeln!(out, "  by route {} ({})", r.source, ms.join(", ")).ok();
        }
        (None, Some(t)) => {
            writeln!(out, "team: {t}").ok();
            match rule {
                Some(r) if get("team").is_none() => writeln!(
                    out,
                    "  the team of rule `{}` ({}); no route matches",
                    r.name,
                    r.file.display()
                ),
                _ => writeln!(out, "  from team={t}; no route matches"),
            }
            .ok();
        }
        (None, None) => {
            return Err(RoutesError {
                kind: RoutesErrorKind::NoTeam,
                message: format!(
                    "no route matches and there is no team: give team=NAME, or alertname= a rule's name{}",
                    if alertname.is_empty() {
                        String::new()
                    } else {
                        format!(" (no rule is named `{alertname}`)")
                    }
                ),
            })
        }
    }
    if rule.is_none() && !alertname.is_empty() {
        writeln!(out, "  (note: no rule is named `{alertname}`)").ok();
    }
    alert.fingerprint = "-".into();
    let team = config.team(&alert.team);
    if !config.teams.contains_key(&team.name) {
        writeln!(
            out,
            "  (no team file: the default grouping and a receiver named `{}`)",
            team.name
        )
        .ok();
    }
    let g = &team.grouping;
    let (_, group) = group_of(&alert, g);
    let group: Vec<String> = group.0.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    writeln!(
        out,
        "incident: grouped by [{}] → {{{}}}",
        g.group_by.join(", "),
        group.join(", ")
    )
    .ok();
    writeln!(
        out,
        "  first notice after group_wait {}, changes every {}, repeat every {}{}",
        format_duration(g.group_wait),
        format_duration(g.group_interval),
        format_duration(g.repeat_interval),
        if g.send_resolved {
            ", resolved notices"
        } else {
            ""
        }
    )
    .ok();
    let receivers: Vec<String> = team
        .receivers
        .iter()
        .map(|r| match &r.target {
            Some(t) => format!("{} → {t}", r.name),
            None => r.name.clone(),
        })
        .collect();
    writeln!(out, "receivers: {}", receivers.join(", ")).ok();
    let Some(p) = &team.escalation else {
        writeln!(out, "escalation: none (the team file has no `escalation:`)").ok();
        return Ok(out);
    };
    let start = at + g.group_wait;
    writeln!(
        out,
        "escalation: from the first notice ({}, if it fires at {}) until acknowledged or resolved{}:",
        format_rfc3339(start),
        format_rfc3339(at),
        if p.reescalate_on_new_alert {
            "; a new alert after an ack starts it again"
        } else {
            ""
        }
    )
    .ok();
    let mut step = 0;
    while let Some((tier, cycle, delay)) = p.step(step) {
        step += 1;
        let t = &p.tiers[tier];
        for target in &t.targets {
            let when = start + delay;
            let to = match &target.to {
                To::Receiver => target.receiver.clone(),
                To::Target(x) => format!("{} → {x}", target.receiver),
                To::OnCall(rot) => match team.resolve(target, when) {
                    Some((_, Some(contact), Some(who))) => {
                        format!(
                            "{} → on call in `{rot}`: {who} ({contact})",
                            target.receiver
                        )
                    }
                    _ => format!("{} → on call in `{rot}`: nobody reachable", target.receiver),
                },
            };
            writeln!(
                out,
                "  +{:<8} tier {tier}{}  {to}{}",
                format_duration(delay),
                if p.repeat > 0 {
                    format!(" pass {}", cycle + 1)
                } else {
                    String::new()
                },
                if t.send_resolved {
                    ""
                } else {
                    "  (no resolved notice)"
                }
            )
            .ok();
        }
    }
    Ok(out)
}

/// `klaxon routes test [--rules DIR] [--at TIME] LABELS...`
pub fn test(rules: &[PathBuf], at: Millis, labels: &[String]) -> i32 {
    let set = match load_rules(rules) {
        Ok(s) => s,
        Err(es) => {
            for e in es {
                eprintln!("{e}");
            }
            return 1;
        }
    };
    let config = match load_dispatch(rules) {
        Ok(c) => c,
        Err(es) => {
            for e in es {
                eprintln!("{e}");
            }
            return 1;
        }
    };
    let labels = match labels
        .iter()
        .map(|l| parse_label(l))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("klaxon routes test: {e}");
            return 2;
        }
    };
    match explain(&config, &set, &labels, at) {
        Ok(s) => {
            print!("{s}");
            0
        }
        Err(e) => {
            eprintln!("klaxon routes test: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::tests::at;
    use crate::config::yaml;
    use std::path::Path;

    fn config() -> DispatchConfig {
        let team = r##"team: payments
grouping:
  group_by: [alertname, service]
receivers:
  - name: slack
    target: "#payments"
people:
  kim: { email: kim@x, sms: "+1" }
  lee: { email: lee@x, sms: "+2" }
oncall:
  - name: primary
    people: [kim, lee]
    handoff: "09:00"
    timezone: Asia/Seoul
    length: 1d
    start: 2026-11-01
escalation:
  tiers:
    - after: 0s
      notify: [{ receiver: slack, target: "#payments-pages" }]
    - after: 10m
      notify: [{ receiver: email, oncall: primary }]
    - after: 30m
      send_resolved: false
      notify: [{ receiver: sms, oncall: primary }]
  repeat: 1
  repeat_every: 1h
"##;
        let routes = r#"routes:
  - team: payments
    matchers: ['service=~"payments.*"']
"#;
        let mut c = DispatchConfig::default();
        let t = crate::config::dispatch::compile_team(
            Path::new("teams/payments.yaml"),
            &yaml::parse(team).unwrap(),
        )
        .unwrap();
        c.teams.insert(t.name.clone(), t);
        c.routes = crate::config::dispatch::compile_routes(
            Path::new("routes.yaml"),
            &yaml::parse(routes).unwrap(),
        )
        .unwrap();
        c
    }

    fn labels(ls: &[&str]) -> Vec<(String, String)> {
        ls.iter().map(|l| parse_label(l).unwrap()).collect()
    }

    /// The full report: the route, the group, the receivers and each
    /// tier's time and person (kim until 09:00 KST = 00:00 UTC, then lee).
    #[test]
    fn a_routed_alert_prints_its_team_and_tier_timeline() {
        let out = explain(
            &config(),
            &RuleSet::default(),
            &labels(&[
                "service=payments-api",
                "severity=critical",
                "alertname=\"X\"",
            ]),
            at("2026-11-27T23:29:30Z"),
        )
        .unwrap();
        assert_eq!(
            out,
            r#"team: payments
  by route routes.yaml:2 (service=~"payments.*")
  (note: no rule is named `X`)
incident: grouped by [alertname, service] → {alertname="X", service="payments-api"}
  first notice after group_wait 30s, changes every 5m, repeat every 4h, resolved notices
receivers: slack → #payments
escalation: from the first notice (2026-11-27T23:30:00Z, if it fires at 2026-11-27T23:29:30Z) until acknowledged or resolved:
  +0s       tier 0 pass 1  slack → #payments-pages
  +10m      tier 1 pass 1  email → on call in `primary`: kim (kim@x)
  +30m      tier 2 pass 1  sms → on call in `primary`: lee (+2)  (no resolved notice)
  +1h       tier 0 pass 2  slack → #payments-pages
  +1h10m    tier 1 pass 2  email → on call in `primary`: lee (lee@x)
  +1h30m    tier 2 pass 2  sms → on call in `primary`: lee (+2)  (no resolved notice)
"#
        );
    }

    #[test]
    fn unrouted_alerts_stay_with_their_team_and_errors_have_kinds() {
        let out = explain(
            &config(),
            &RuleSet::default(),
            &labels(&["team=platform", "alertname=CPU", "service=cart"]),
            0,
        )
        .unwrap();
        assert!(
            out.starts_with("team: platform\n  from team=platform; no route matches\n"),
            "{out}"
        );
        assert!(
            out.contains("(no team file: the default grouping and a receiver named `platform`)"),
            "{out}"
        );
        assert!(out.contains("escalation: none"), "{out}");
        let e = explain(
            &config(),
            &RuleSet::default(),
            &labels(&["service=cart"]),
            0,
        )
        .unwrap_err();
        assert_eq!(e.kind, RoutesErrorKind::NoTeam);
        for bad in ["service", "=x", "a b=c"] {
            assert_eq!(
                parse_label(bad).unwrap_err().kind,
                RoutesErrorKind::BadLabel,
                "{bad}"
            );
        }
        assert_eq!(
            parse_label("a=\"b c\"").unwrap(),
            ("a".into(), "b c".into())
        );
    }
}
