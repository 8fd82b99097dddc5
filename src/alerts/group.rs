//! Incidents: a team's alerts grouped by the team's `group_by` labels, each
//! with its flush timer, after Alertmanager's aggregation groups.
//!
//! - The first alert of a new group opens an **incident**, first flushed
//!   `group_wait` later (alerts that join meanwhile go out in the same
//!   first notice).
//! - After each flush, the next one is `group_interval` later, for as long
//!   as the incident lives: a change between flushes (a late joiner, a
//!   resolution) goes out at the next tick, never sooner. A tick may send
//!   nothing; that is the notification log's decision.
//! - After a flush, resolved alerts leave the incident (their resolved
//!   notice, if any, went out in that flush); an incident with no alerts
//!   left **ends**. The same group firing again later opens a new incident
//!   with a new id.
//!
//! `group_by` names labels (`alertname` or its alias `rule`, `team`,
//! `severity` or a rule's `group_by` label). `[]` puts all of a team's
//! alerts in one incident; `[...]` gives each alert its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::escalation::State as EscalationState;
use super::matcher::Labels;
use super::{rfc3339, Alert, Grouping};
use crate::model::{Fnv, Millis, Ordered};

/// One notification group's current life.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `<hash of the group>-<opened at, epoch ms>`: unique per incident.
    pub id: String,
    /// The group's key (team and hash of the group labels).
    pub key: String,
    pub team: String,
    /// The group's label values (team + `group_by`).
    pub group: Ordered<String>,
    #[serde(with = "rfc3339")]
    pub opened_at: Millis,
    /// By fingerprint.
    pub alerts: BTreeMap<String, Alert>,
    #[serde(with = "rfc3339")]
    pub next_flush: Millis,
    pub flushes: u64,
    /// An alert joined, fired again or resolved since the last flush.
    pub changed: bool,
    /// Who acknowledged it (escalation stops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<String>,
    #[serde(
        default,
        with = "rfc3339::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub acked_at: Option<Millis>,
    /// Its escalation so far (empty for a team without a policy).
    #[serde(default, skip_serializing_if = "EscalationState::is_empty")]
    pub escalation: EscalationState,
}

/// The group an alert belongs to: its key and its label values.
pub fn group_of(alert: &Alert, grouping: &Grouping) -> (String, Ordered<String>) {
    let mut labels = Vec::new();
    if grouping.group_by.iter().any(|g| g == "...") {
        labels = alert.labels.0.clone();
    } else {
        for name in &grouping.group_by {
            if let Some(v) = alert.label(name) {
                labels.push((name.clone(), v.to_string()));
            }
        }
    }
    let mut h = Fnv::default();
    h.write_str(&alert.team);
    for (k, v) in &labels {
        h.write_str(k);
        h.write_str(v);
    }
    (
        format!("{}/{:016x}", alert.team, h.finish()),
        Ordered(labels),
    )
}

/// All live incidents, their timers, and which incident holds each alert.
#[derive(Clone, Debug, Default)]
pub struct Grouper {
    incidents: BTreeMap<String, Incident>,
    /// (next flush, group key), for the next deadline.
    schedule: BTreeSet<(Millis, String)>,
    /// fingerprint → group key
    by_fingerprint: HashMap<String, String>,
}

impl Grouper {
    /// Rebuilds the timers and the index from saved incidents.
    pub fn restore(incidents: impl IntoIterator<Item = Incident>) -> Grouper {
        let mut g = Grouper::default();
        for inc in incidents {
            g.schedule.insert((inc.next_flush, inc.key.clone()));
            for fp in inc.alerts.keys() {
                g.by_fingerprint.insert(fp.clone(), inc.key.clone());
            }
            g.incidents.insert(inc.key.clone(), inc);
        }
        g
    }

    pub fn alert(&self, fingerprint: &str) -> Option<&Alert> {
        let key = self.by_fingerprint.get(fingerprint)?;
        self.incidents.get(key)?.alerts.get(fingerprint)
    }

    /// An alert to update in place (a change that is not news: its values,
    /// or `insufficient_data` behind a firing alert).
    pub fn alert_mut(&mut self, fingerprint: &str) -> Option<&mut Alert> {
        let key = self.by_fingerprint.get(fingerprint)?;
        self.incidents.get_mut(key)?.alerts.get_mut(fingerprint)
    }

    /// Puts an alert that fired or resolved into its incident, opening one
    /// (first flush at `now + group_wait`) if the group has none. Returns
    /// whether an incident was opened.
    pub fn insert(&mut self, alert: Alert, grouping: &Grouping, now: Millis) -> bool {
        let (key, group) = group_of(&alert, grouping);
        if let Some(old) = self.by_fingerprint.get(&alert.fingerprint) {
            if *old != key {
                // Its group changed (a rule's team or severity was edited).
                let old = old.clone();
                if let Some(inc) = self.incidents.get_mut(&old) {
                    inc.alerts.remove(&alert.fingerprint);
                }
            }
        }
        self.by_fingerprint
            .insert(alert.fingerprint.clone(), key.clone());
        let mut opened = false;
        let inc = self.incidents.entry(key.clone()).or_insert_with(|| {
            opened = true;
            let mut h = Fnv::default();
            h.write_str(&key);
            Incident {
                id: format!("{:016x}-{now}", h.finish()),
                key: key.clone(),
                team: alert.team.clone(),
                group,
                opened_at: now,
                alerts: BTreeMap::new(),
                next_flush: now + grouping.group_wait,
                flushes: 0,
                changed: false,
                acked_by: None,
                acked_at: None,
                escalation: EscalationState::default(),
            }
        });
        if opened {
            self.schedule.insert((inc.next_flush, key));
        }
        inc.changed = true;
        inc.alerts.insert(alert.fingerprint.clone(), alert);
        opened
    }

    /// The earliest flush due.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.schedule.first().map(|(t, _)| *t)
    }

    /// The earliest flush of an incident with changes not yet flushed.
    pub fn next_changed_deadline(&self) -> Option<Millis> {
        self.incidents
            .values()
            .filter(|i| i.changed)
            .map(|i| i.next_flush)
            .min()
    }

    /// Takes the next incident due at or before `now` off the schedule;
    /// hand it back with [`Grouper::flushed`].
    pub fn pop_due(&mut self, now: Millis) -> Option<String> {
        match self.schedule.first() {
            Some((t, _)) if *t <= now => self.schedule.pop_first().map(|(_, k)| k),
            _ => None,
        }
    }

    /// The key of the incident with this id.
    pub fn key_of(&self, id: &str) -> Option<String> {
        self.incidents
            .values()
            .find(|i| i.id == id)
            .map(|i| i.key.clone())
    }

    pub fn get(&self, key: &str) -> Option<&Incident> {
        self.incidents.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Incident> {
        self.incidents.get_mut(key)
    }

    /// After flushing incident `key` at `now`: resolved alerts leave it,
    /// and it is scheduled `group_interval` later, or ends (returned) when
    /// no alert is left.
    pub fn flushed(&mut self, key: &str, now: Millis, group_interval: Millis) -> Option<Incident> {
        let inc = self.incidents.get_mut(key)?;
        let gone: Vec<String> = inc
            .alerts
            .values()
            .filter(|a| !a.is_firing())
            .map(|a| a.fingerprint.clone())
            .collect();
        for fp in &gone {
            inc.alerts.remove(fp);
            self.by_fingerprint.remove(fp);
        }
        inc.flushes += 1;
        inc.changed = false;
        if inc.alerts.is_empty() {
            return self.incidents.remove(key);
        }
        inc.next_flush = now + group_interval;
        self.schedule.insert((inc.next_flush, key.to_string()));
        None
    }

    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values()
    }

    pub fn len(&self) -> usize {
        self.incidents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::tests::alert;
    use crate::alerts::Status;

    const S: Millis = 1_000;

    fn grouping(by: &[&str]) -> Grouping {
        Grouping {
            group_by: by.iter().map(|s| s.to_string()).collect(),
            ..Grouping::default()
        }
    }

    #[test]
    fn group_by_selects_the_labels_that_make_an_incident() {
        let a1 = alert("CPU", &[("InstanceId", "i-1"), ("zone", "a")]);
        let a2 = alert("CPU", &[("InstanceId", "i-2"), ("zone", "a")]);
        let b1 = alert("Mem", &[("InstanceId", "i-1"), ("zone", "a")]);
        let same = |by: &[&str], x: &Alert, y: &Alert| {
            group_of(x, &grouping(by)).0 == group_of(y, &grouping(by)).0
        };
        assert!(same(&["alertname"], &a1, &a2));
        assert!(!same(&["alertname"], &a1, &b1));
        assert!(same(&["rule"], &a1, &a2), "rule is alertname");
        assert!(same(&["zone"], &a1, &b1));
        assert!(same(&[], &a1, &b1), "[] groups the whole team");
        assert!(!same(&["..."], &a1, &a2), "... gives each alert its own");
        let (_, labels) = group_of(&a1, &grouping(&["alertname", "zone", "nope"]));
        assert_eq!(
            labels.0,
            vec![
                ("alertname".to_string(), "CPU".to_string()),
                ("zone".to_string(), "a".to_string())
            ],
            "a label the alert lacks is left out"
        );
    }

    /// The timer: group_wait after opening, then every group_interval from
    /// the previous flush; resolved alerts leave; an empty incident ends.
    #[test]
    fn flush_schedule_and_end() {
        let g = grouping(&["alertname"]);
        let mut gr = Grouper::default();
        assert_eq!(gr.next_deadline(), None);
        assert!(gr.insert(alert("CPU", &[("i", "1")]), &g, 100 * S));
        assert!(
            !gr.insert(alert("CPU", &[("i", "2")]), &g, 110 * S),
            "joins"
        );
        assert_eq!(
            gr.next_deadline(),
            Some(130 * S),
            "group_wait from the first"
        );
        assert_eq!(gr.next_changed_deadline(), Some(130 * S));
        assert_eq!(gr.pop_due(129 * S), None);
        let key = gr.pop_due(130 * S).unwrap();
        assert_eq!(gr.get(&key).unwrap().alerts.len(), 2);
        assert!(gr.flushed(&key, 130 * S, 300 * S).is_none());
        assert_eq!(gr.next_deadline(), Some(430 * S));
        assert_eq!(gr.next_changed_deadline(), None, "nothing new since");

        let mut r = alert("CPU", &[("i", "1")]);
        r.status = Status::Resolved;
        gr.insert(r, &g, 200 * S);
        assert_eq!(
            gr.next_deadline(),
            Some(430 * S),
            "a change waits for the tick"
        );
        assert_eq!(gr.next_changed_deadline(), Some(430 * S));
        let key = gr.pop_due(430 * S).unwrap();
        assert!(gr.flushed(&key, 430 * S, 300 * S).is_none());
        assert_eq!(
            gr.get(&key).unwrap().alerts.len(),
            1,
            "the resolved one left"
        );
        assert!(gr.alert(&alert("CPU", &[("i", "1")]).fingerprint).is_none());

        let mut r = alert("CPU", &[("i", "2")]);
        r.status = Status::Resolved;
        gr.insert(r, &g, 500 * S);
        let key = gr.pop_due(730 * S).unwrap();
        let ended = gr.flushed(&key, 730 * S, 300 * S).expect("ended");
        assert_eq!(ended.flushes, 3);
        assert!(gr.is_empty());
        assert_eq!(gr.next_deadline(), None);

        // The same group again: a new incident, a new id, group_wait again.
        assert!(gr.insert(alert("CPU", &[("i", "1")]), &g, 800 * S));
        assert_eq!(gr.next_deadline(), Some(830 * S));
        assert_ne!(gr.incidents().next().unwrap().id, ended.id);
    }
}
