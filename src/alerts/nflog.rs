//! The notification log: what each receiver was last told about each
//! incident, and the decision of whether a flush of the incident tells it
//! something new.
//!
//! An entry is keyed by (receiver, incident) and holds the alerts (by
//! [`Alert::id`](super::Alert::id)) of the last notification, a hash of
//! its firing + resolved sets, when it was sent, and the alerts the
//! receiver was told are firing and has not yet been told are resolved
//! (`open`).
//!
//! At each flush of an incident, with `firing` = its firing alerts that no
//! silence or inhibition holds back and `resolved` = its resolved alerts,
//! [`NotificationLog::step`] decides, after Alertmanager's dedup stage:
//!
//! 1. never notified, or some firing alert was not in the last
//!    notification → **firing**;
//! 2. else some alert the receiver knows as firing has resolved → with
//!    `send_resolved`, **resolved** (or **firing** when others still fire,
//!    with the resolved list); without it nothing is sent, but the log
//!    forgets those alerts, so a re-fire is news again;
//! 3. else the same alerts still fire and `repeat_interval` has passed
//!    since the last notification → **repeat**;
//! 4. else nothing.
//!
//! Whatever the rules say, the same firing/resolved set is never sent to a
//! receiver twice within `repeat_interval` of the last notification (the
//! hash check). Resolved notices only name alerts the receiver was told
//! were firing: an alert that fired and resolved unseen (inside
//! `group_wait`, or while silenced or inhibited) is never mentioned.
//!
//! **Memory bound.** One entry per (receiver, live incident). When an
//! incident ends, its entries are [closed](NotificationLog::close) and
//! [`gc`](NotificationLog::gc) removes an entry with nothing open once
//! `repeat_interval` has passed since its last notification (after that its
//! hash no longer suppresses anything, and a new incident has a new id).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{rfc3339, Kind};
use crate::model::{Fnv, Millis};

/// A flush's settings, from the team's grouping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub send_resolved: bool,
    pub repeat_interval: Millis,
}

/// What to send: the kind and the alerts of each list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub kind: Kind,
    pub firing: Vec<u64>,
    pub resolved: Vec<u64>,
}

/// What one receiver was last told about one incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub receiver: String,
    pub incident: String,
    /// The firing alerts of the last notification.
    pub firing: BTreeSet<u64>,
    /// The resolved alerts of the last notification.
    pub resolved: BTreeSet<u64>,
    /// Alerts the receiver was told are firing and not yet told resolved.
    pub open: BTreeSet<u64>,
    pub kind: Kind,
    /// [`set_hash`] of the last notification's firing and resolved sets.
    pub hash: u64,
    #[serde(with = "rfc3339")]
    pub sent_at: Millis,
    /// The repeat interval in force when it was sent (for [`NotificationLog::gc`]).
    pub repeat_interval: Millis,
}

/// The hash of a notification's firing and resolved sets.
pub fn set_hash(firing: &BTreeSet<u64>, resolved: &BTreeSet<u64>) -> u64 {
    let mut h = Fnv::default();
    for id in firing {
        h.write(&id.to_le_bytes());
    }
    h.write(&[0xff]);
    for id in resolved {
        h.write(&id.to_le_bytes());
    }
    h.finish()
}

/// Entries by (receiver, incident). Serialized as a list of entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Entry>", into = "Vec<Entry>")]
pub struct NotificationLog {
    entries: BTreeMap<(String, String), Entry>,
}

impl From<Vec<Entry>> for NotificationLog {
    fn from(v: Vec<Entry>) -> Self {
        NotificationLog {
            entries: v
                .into_iter()
                .map(|e| ((e.receiver.clone(), e.incident.clone()), e))
                .collect(),
        }
    }
}

impl From<NotificationLog> for Vec<Entry> {
    fn from(log: NotificationLog) -> Self {
        log.entries.into_values().collect()
    }
}

fn key(receiver: &str, incident: &str) -> (String, String) {
    (receiver.to_string(), incident.to_string())
}

impl NotificationLog {
    pub fn get(&self, receiver: &str, incident: &str) -> Option<&Entry> {
        self.entries.get(&key(receiver, incident))
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decides what a flush at `now` sends to `receiver` (see the module
    /// doc) and records it. `firing` must not hold muted alerts.
    pub fn step(
        &mut self,
        receiver: &str,
        incident: &str,
        firing: &BTreeSet<u64>,
        resolved: &BTreeSet<u64>,
        policy: Policy,
        now: Millis,
    ) -> Option<Sent> {
        let k = key(receiver, incident);
        let entry = self.entries.get(&k);
        let newly_resolved: BTreeSet<u64> = match entry {
            Some(e) => resolved.intersection(&e.open).copied().collect(),
            None => BTreeSet::new(),
        };
        let kind = match entry {
            None => (!firing.is_empty()).then_some(Kind::Firing),
            Some(e) if !firing.is_subset(&e.firing) => Some(Kind::Firing),
            Some(_) if !newly_resolved.is_empty() && policy.send_resolved => {
                Some(if firing.is_empty() {
                    Kind::Resolved
                } else {
                    Kind::Firing
                })
            }
            Some(e) if !firing.is_empty() && now - e.sent_at >= policy.repeat_interval => {
                Some(Kind::Repeat)
            }
            Some(_) => None,
        };
        let sent_resolved = if policy.send_resolved {
            newly_resolved.clone()
        } else {
            BTreeSet::new()
        };
        let hash = set_hash(firing, &sent_resolved);
        let kind = kind.filter(|_| {
            entry.is_none_or(|e| e.hash != hash || now - e.sent_at >= policy.repeat_interval)
        });
        let Some(kind) = kind else {
            // Nothing to send; still forget what resolved (send_resolved: false).
            if let Some(e) = self.entries.get_mut(&k) {
                for id in &newly_resolved {
                    e.open.remove(id);
                    e.firing.remove(id);
                }
            }
            return None;
        };
        let mut open = entry.map(|e| e.open.clone()).unwrap_or_default();
        open.extend(firing.iter().copied());
        open.retain(|id| !newly_resolved.contains(id));
        self.entries.insert(
            k,
            Entry {
                receiver: receiver.to_string(),
                incident: incident.to_string(),
                firing: firing.clone(),
                resolved: sent_resolved.clone(),
                open,
                kind,
                hash,
                sent_at: now,
                repeat_interval: policy.repeat_interval,
            },
        );
        Some(Sent {
            kind,
            firing: firing.iter().copied().collect(),
            resolved: sent_resolved.into_iter().collect(),
        })
    }

    /// Whether `receiver` was told `alert` is firing and not yet that it resolved.
    pub fn is_open(&self, receiver: &str, incident: &str, alert: u64) -> bool {
        self.get(receiver, incident)
            .is_some_and(|e| e.open.contains(&alert))
    }

    /// The incident ended: nothing of it is open any more.
    pub fn close(&mut self, receiver: &str, incident: &str) {
        if let Some(e) = self.entries.get_mut(&key(receiver, incident)) {
            e.open.clear();
        }
    }

    /// Removes the entries with nothing open whose repeat interval has
    /// passed since their last notification.
    pub fn gc(&mut self, now: Millis) {
        self.entries
            .retain(|_, e| !e.open.is_empty() || now - e.sent_at < e.repeat_interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;
    const POLICY: Policy = Policy {
        send_resolved: true,
        repeat_interval: 240 * MIN,
    };

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    /// Steps one receiver through (minute, firing, resolved) flushes and
    /// returns what was sent at each.
    fn run(policy: Policy, flushes: &[(Millis, &[u64], &[u64])]) -> Vec<Option<Sent>> {
        let mut log = NotificationLog::default();
        flushes
            .iter()
            .map(|(m, f, r)| log.step("slack", "inc", &set(f), &set(r), policy, m * MIN))
            .collect()
    }

    fn sent(kind: Kind, firing: &[u64], resolved: &[u64]) -> Option<Sent> {
        Some(Sent {
            kind,
            firing: firing.to_vec(),
            resolved: resolved.to_vec(),
        })
    }

    #[test]
    fn first_notice_then_only_news() {
        let got = run(
            POLICY,
            &[
                (0, &[], &[]),      // nothing firing yet: nothing
                (5, &[1], &[]),     // first firing notice
                (10, &[1], &[]),    // unchanged: nothing
                (15, &[1, 2], &[]), // a new alert: firing
                (20, &[2], &[1]),   // 1 resolved: told, with 2 still firing
                (25, &[2], &[]),    // nothing new
                (30, &[], &[2]),    // all resolved
                (35, &[], &[]),
            ],
        );
        assert_eq!(
            got,
            vec![
                None,
                sent(Kind::Firing, &[1], &[]),
                None,
                sent(Kind::Firing, &[1, 2], &[]),
                sent(Kind::Firing, &[2], &[1]),
                None,
                sent(Kind::Resolved, &[], &[2]),
                None,
            ]
        );
    }

    #[test]
    fn repeat_only_when_nothing_changed_for_repeat_interval() {
        let got = run(
            POLICY,
            &[
                (0, &[1], &[]),
                (235, &[1], &[]),
                (240, &[1], &[]), // 4 h since the last notice: repeat
                (245, &[1], &[]),
                (300, &[1, 2], &[]), // a change: firing, and the repeat clock restarts
                (480, &[1, 2], &[]),
                (540, &[1, 2], &[]), // 4 h after the change
            ],
        );
        let kinds: Vec<Option<Kind>> = got.iter().map(|s| s.as_ref().map(|s| s.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                Some(Kind::Firing),
                None,
                Some(Kind::Repeat),
                None,
                Some(Kind::Firing),
                None,
                Some(Kind::Repeat),
            ]
        );
    }

    #[test]
    fn resolved_alerts_the_receiver_never_saw_are_not_mentioned() {
        let got = run(
            POLICY,
            &[
                (0, &[], &[7]),   // fired and resolved before the first flush
                (5, &[1], &[]),   // 1 fires
                (10, &[1], &[8]), // 8 fired and resolved between flushes
                (15, &[], &[1]),  // 1 resolves
            ],
        );
        assert_eq!(
            got,
            vec![
                None,
                sent(Kind::Firing, &[1], &[]),
                None,
                sent(Kind::Resolved, &[], &[1]),
            ]
        );
    }

    /// Without send_resolved a resolution is recorded, not sent; and the
    /// hash check keeps the receiver from getting the same set twice.
    #[test]
    fn without_send_resolved_a_resolution_is_recorded_not_sent() {
        let policy = Policy {
            send_resolved: false,
            ..POLICY
        };
        let mut log = NotificationLog::default();
        let s = log.step("r", "i", &set(&[1, 2]), &set(&[]), policy, 0);
        assert_eq!(s, sent(Kind::Firing, &[1, 2], &[]));
        assert_eq!(
            log.step("r", "i", &set(&[2]), &set(&[1]), policy, 5 * MIN),
            None
        );
        assert!(!log.is_open("r", "i", 1), "1 is no longer open");
        // 1 fires again: new to the log, but {1, 2} is exactly what the
        // receiver got 10 minutes ago.
        assert_eq!(
            log.step("r", "i", &set(&[1, 2]), &set(&[]), policy, 10 * MIN),
            None
        );
        // 2 resolves (recorded) while 1 fires: {1} alone was never sent.
        let s = log.step("r", "i", &set(&[1]), &set(&[2]), policy, 15 * MIN);
        assert_eq!(s, sent(Kind::Firing, &[1], &[]));
    }

    /// A muted alert leaves the firing set but stays open, so its
    /// resolution is still sent.
    #[test]
    fn muted_alerts_stay_open_and_the_same_set_is_not_sent_twice() {
        let mut log = NotificationLog::default();
        let p = POLICY;
        assert!(log.step("r", "i", &set(&[1]), &set(&[]), p, 0).is_some());
        // 1 is silenced; 2 fires: 2 is news.
        let s = log.step("r", "i", &set(&[2]), &set(&[]), p, 5 * MIN);
        assert_eq!(s, sent(Kind::Firing, &[2], &[]));
        assert!(log.is_open("r", "i", 1));
        // The silence ends: {1, 2} was never sent, so it is news.
        let s = log.step("r", "i", &set(&[1, 2]), &set(&[]), p, 10 * MIN);
        assert_eq!(s, sent(Kind::Firing, &[1, 2], &[]));
        // Silenced again, then unsilenced: {2} then {1, 2}, nothing new.
        assert_eq!(log.step("r", "i", &set(&[2]), &set(&[]), p, 15 * MIN), None);
        assert_eq!(
            log.step("r", "i", &set(&[1, 2]), &set(&[]), p, 20 * MIN),
            None
        );
        // While silenced, 1 resolves: the receiver knew it, so it is told.
        let s = log.step("r", "i", &set(&[2]), &set(&[1]), p, 25 * MIN);
        assert_eq!(s, sent(Kind::Firing, &[2], &[1]));
    }

    #[test]
    fn receivers_and_incidents_are_independent() {
        let mut log = NotificationLog::default();
        let p = POLICY;
        assert!(log.step("a", "i", &set(&[1]), &set(&[]), p, 0).is_some());
        assert!(log.step("b", "i", &set(&[1]), &set(&[]), p, 0).is_some());
        assert!(log.step("a", "j", &set(&[1]), &set(&[]), p, 0).is_some());
        assert!(log.step("a", "i", &set(&[1]), &set(&[]), p, MIN).is_none());
        assert_eq!(log.len(), 3);
    }

    #[test]
    fn gc_keeps_open_entries_and_drops_closed_ones_after_repeat_interval() {
        let mut log = NotificationLog::default();
        let p = POLICY;
        log.step("r", "live", &set(&[1]), &set(&[]), p, 0);
        log.step("r", "ended", &set(&[2]), &set(&[]), p, 0);
        log.step("r", "ended", &set(&[]), &set(&[2]), p, 10 * MIN);
        log.close("r", "ended");
        log.gc(249 * MIN);
        assert_eq!(log.len(), 2, "ended 239 min ago: kept for its hash");
        log.gc(250 * MIN);
        assert!(log.get("r", "ended").is_none());
        log.gc(10_000 * MIN);
        assert!(log.get("r", "live").is_some(), "1 is still open");
    }

    #[test]
    fn round_trips_through_json() {
        let mut log = NotificationLog::default();
        log.step("slack", "i", &set(&[1, 2]), &set(&[]), POLICY, 5 * MIN);
        log.step("slack", "i", &set(&[2]), &set(&[1]), POLICY, 10 * MIN);
        let json = serde_json::to_string(&log).unwrap();
        assert!(
            json.contains(r#""sent_at":"1970-01-01T00:10:00Z""#),
            "{json}"
        );
        let back: NotificationLog = serde_json::from_str(&json).unwrap();
        assert_eq!(back, log);
    }
}
