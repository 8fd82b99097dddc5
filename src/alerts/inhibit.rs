//! Inhibition: a firing alert that matches an inhibit rule's source
//! matchers holds back the alerts that match its target matchers and have
//! the same values for its `equal` labels. E.g. a critical
//! `CloudMart-API-ErrorRate` for `service=api` mutes the warning
//! `CloudMart-ErrorLogs` of the same service.
//!
//! As in Alertmanager:
//! - a source counts while it is **firing**, whether or not it is itself
//!   silenced or inhibited (a silenced outage still explains its symptoms);
//! - a label missing on both sides counts as equal (both empty);
//! - an alert never inhibits itself, and when an alert matches both sides
//!   of a rule, the sources that also match both sides are ignored, so two
//!   such alerts cannot mute each other.
//!
//! The inhibitor keeps its own cache of firing sources: the dispatcher
//! [`observe`](Inhibitor::observe)s every alert as it changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::matcher::{all_match, Labels, Matcher};
use super::{Alert, Muter};
use crate::model::Millis;

/// One inhibit rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InhibitRule {
    /// Names the rule where it mutes an alert (`inhibited_by`).
    pub name: String,
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    /// Labels that must have the same value on source and target.
    pub equal: Vec<String>,
}

impl InhibitRule {
    fn equal_values(&self, alert: &Alert) -> Vec<String> {
        self.equal
            .iter()
            .map(|l| alert.label(l).unwrap_or("").to_string())
            .collect()
    }
}

/// A firing source alert, as one rule sees it.
#[derive(Clone, Debug, PartialEq)]
struct Source {
    equal: Vec<String>,
    /// It matches the target matchers too.
    two_sided: bool,
}

/// The rules and, per rule, the firing alerts that match its sources.
#[derive(Clone, Debug, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
    sources: Vec<BTreeMap<String, Source>>,
}

impl Inhibitor {
    pub fn new(rules: Vec<InhibitRule>) -> Self {
        let sources = vec![BTreeMap::new(); rules.len()];
        Inhibitor { rules, sources }
    }

    pub fn rules(&self) -> &[InhibitRule] {
        &self.rules
    }

    /// Takes note of an alert's current status: a firing alert that
    /// matches a rule's sources becomes a source of it; anything else
    /// stops being one.
    pub fn observe(&mut self, alert: &Alert) {
        for (rule, sources) in self.rules.iter().zip(&mut self.sources) {
            if alert.is_firing() && all_match(&rule.source_matchers, alert) {
                sources.insert(
                    alert.fingerprint.clone(),
                    Source {
                        equal: rule.equal_values(alert),
                        two_sided: all_match(&rule.target_matchers, alert),
                    },
                );
            } else {
                sources.remove(&alert.fingerprint);
            }
        }
    }

    /// The alert is gone.
    pub fn forget(&mut self, fingerprint: &str) {
        for sources in &mut self.sources {
            sources.remove(fingerprint);
        }
    }
}

impl Muter for Inhibitor {
    /// The name of the first rule that inhibits `alert`.
    fn mutes(&self, alert: &Alert, _now: Millis) -> Option<&str> {
        for (rule, sources) in self.rules.iter().zip(&self.sources) {
            if sources.is_empty() || !all_match(&rule.target_matchers, alert) {
                continue;
            }
            let want = rule.equal_values(alert);
            let also_source = all_match(&rule.source_matchers, alert);
            let inhibited = sources.iter().any(|(fp, s)| {
                *fp != alert.fingerprint && !(also_source && s.two_sided) && s.equal == want
            });
            if inhibited {
                return Some(&rule.name);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::tests::alert;
    use crate::alerts::Status;

    fn rule(source: &[&str], target: &[&str], equal: &[&str]) -> InhibitRule {
        let m = |v: &[&str]| v.iter().map(|s| Matcher::parse(s).unwrap()).collect();
        InhibitRule {
            name: "r".into(),
            source_matchers: m(source),
            target_matchers: m(target),
            equal: equal.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn with_severity(mut a: Alert, severity: &str) -> Alert {
        for (k, v) in &mut a.labels.0 {
            if k == "severity" {
                *v = severity.into();
            }
        }
        a
    }

    /// The classic: a critical InstanceDown mutes warnings of its instance.
    #[test]
    fn a_firing_source_mutes_targets_with_equal_labels() {
        let mut inh = Inhibitor::new(vec![rule(
            &[r#"alertname="InstanceDown""#, r#"severity="critical""#],
            &[r#"severity="warning""#],
            &["InstanceId"],
        )]);
        let down = with_severity(alert("InstanceDown", &[("InstanceId", "i-1")]), "critical");
        let cpu1 = alert("HighCPU", &[("InstanceId", "i-1")]);
        let cpu2 = alert("HighCPU", &[("InstanceId", "i-2")]);
        let critical_cpu1 = with_severity(cpu1.clone(), "critical");
        assert_eq!(inh.mutes(&cpu1, 0), None, "no source yet");
        inh.observe(&down);
        assert_eq!(inh.mutes(&cpu1, 0), Some("r"));
        assert_eq!(inh.mutes(&cpu2, 0), None, "another instance");
        assert_eq!(inh.mutes(&critical_cpu1, 0), None, "not a target");
        assert_eq!(inh.mutes(&down, 0), None, "not a target either");
        // The source resolves: the targets are free again.
        let mut resolved = down.clone();
        resolved.status = Status::Resolved;
        inh.observe(&resolved);
        assert_eq!(inh.mutes(&cpu1, 0), None);
        inh.observe(&down);
        inh.forget(&down.fingerprint);
        assert_eq!(inh.mutes(&cpu1, 0), None);
    }

    #[test]
    fn missing_equal_labels_count_as_equal_and_alerts_never_mute_themselves() {
        let mut inh = Inhibitor::new(vec![rule(
            &[r#"severity="warning""#],
            &[r#"severity="warning""#],
            &["zone"],
        )]);
        let a = alert("A", &[]);
        let b = alert("B", &[]);
        inh.observe(&a);
        assert_eq!(inh.mutes(&a, 0), None, "itself");
        // b matches both sides, and so does a: they cannot mute each other.
        inh.observe(&b);
        assert_eq!(inh.mutes(&b, 0), None);
        assert_eq!(inh.mutes(&a, 0), None);
        // A target that is not also a source is muted; neither has `zone`.
        let mut inh = Inhibitor::new(vec![rule(
            &[r#"alertname="A""#],
            &[r#"alertname="B""#],
            &["zone"],
        )]);
        inh.observe(&a);
        assert_eq!(inh.mutes(&b, 0), Some("r"));
        let b_in_zone = alert("B", &[("zone", "z1")]);
        assert_eq!(inh.mutes(&b_in_zone, 0), None);
    }
}
