//! Dispatch: who hears about a state change, when, and how often.
//!
//! ```text
//!  StateChange ─▶ dedup ─▶ Alert (firing/resolved) ─▶ incident (group)
//!                                                        │ flush at group_wait,
//!                                                        │ then every group_interval
//!                                                        ▼
//!              Notification ◀─ nflog ◀─ silences ◀─ inhibition
//!              (per receiver)
//! ```
//!
//! - [`dedup`]: drops a state change whose id was seen (at-least-once
//!   delivery upstream).
//! - [`group`]: alerts grouped into incidents per team and `group_by`
//!   labels, with Alertmanager's timers.
//! - [`inhibit`], [`silence`]: [`Muter`]s that hold back firing alerts.
//!   They are asked **at each flush**, not when a change arrives, so a
//!   silence that ends or an inhibiting alert that resolves takes effect at
//!   the incident's next tick (Alertmanager does the same).
//! - [`nflog`]: what each receiver was last told; decides whether a flush
//!   is news (firing, resolved or repeat) and never sends a receiver the
//!   same set twice within `repeat_interval`.
//!
//! The [`Dispatcher`] chains them. It never reads a clock: `ingest` and
//! `tick` take `now`, and [`Dispatcher::next_deadline`] tells a driver when
//! the next flush is due, so `klaxon replay --dispatch` runs it in event
//! time and `klaxon run` in wall time.
//!
//! # From CloudWatch states to alerts
//!
//! | change | alert not firing | alert firing |
//! |---|---|---|
//! | → `alarm` | fires (`starts_at` = the period end) | stays firing (values updated) |
//! | → `ok` | ignored | resolves (`ends_at` = the period end) |
//! | → `insufficient_data` | ignored | **stays firing**, `state: insufficient_data` |
//!
//! CloudWatch's `INSUFFICIENT_DATA` means "cannot tell", not "fixed": an
//! instance that stopped reporting while it was at 95% CPU is not healthy,
//! and telling on-call it resolved would be a lie. So a firing alert keeps
//! firing (its repeat notices go on) until the rule sees `ok`; a series
//! that never fired produces no alert when it goes `insufficient_data`.
//!
//! # Silences and resolution
//!
//! A silenced (or inhibited) alert is still tracked in its incident.
//! - Firing while muted: left out of notifications. If it still fires when
//!   the silence ends, it goes out at the incident's next tick, unless the
//!   receiver was sent exactly that firing set within `repeat_interval`.
//! - Resolved while muted: resolutions are never muted. If the receiver had
//!   been told the alert was firing (it fired before the silence), the
//!   resolved notice goes out at the next tick, during the silence, where
//!   the team's `send_resolved` is on. If the receiver never heard of it
//!   (it fired and resolved inside the silence), nothing is sent; the
//!   resolution is still recorded on the alert (`ends_at`, `silenced_by`).

pub mod dedup;
pub mod group;
pub mod inhibit;
pub mod matcher;
pub mod nflog;
pub mod silence;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{fnv_str, AlarmState, Fnv, Millis, Ordered, StateChange};
use dedup::{Dedup, Verdict};
use group::Grouper;
use inhibit::{InhibitRule, Inhibitor};
use matcher::Labels;
use nflog::{NotificationLog, Policy};
use silence::{Silence, Silences, Window};

pub const DEFAULT_GROUP_WAIT: Millis = 30_000;
pub const DEFAULT_GROUP_INTERVAL: Millis = 5 * 60_000;
pub const DEFAULT_REPEAT_INTERVAL: Millis = 4 * 3_600_000;

/// How a team's alerts group into incidents and how often they are sent.
/// Durations are in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grouping {
    /// Label names; `[]` = one incident per team, `["..."]` = one per alert.
    pub group_by: Vec<String>,
    /// Before the first notice of a new incident (default 30 s).
    pub group_wait: Millis,
    /// Between later flushes of an incident (default 5 min).
    pub group_interval: Millis,
    /// Before an unchanged firing incident is sent again (default 4 h).
    pub repeat_interval: Millis,
    /// Whether resolved notices are sent (default true).
    pub send_resolved: bool,
}

impl Default for Grouping {
    fn default() -> Self {
        Grouping {
            group_by: vec!["alertname".into()],
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            send_resolved: true,
        }
    }
}

/// Where a team's notifications go: a receiver (defined in `klaxon.yaml`
/// once notifiers exist) and an optional target in it (a channel, an
/// address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receiver {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A team's dispatch settings (a file under `rules/teams/`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub name: String,
    pub grouping: Grouping,
    pub receivers: Vec<Receiver>,
}

impl Team {
    /// A team without a team file: default grouping, and one receiver
    /// named after the team.
    pub fn default_for(name: &str) -> Team {
        Team {
            name: name.to_string(),
            grouping: Grouping::default(),
            receivers: vec![Receiver {
                name: name.to_string(),
                target: None,
            }],
        }
    }
}

/// Everything the dispatcher is configured with.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct DispatchConfig {
    pub teams: BTreeMap<String, Team>,
    pub silences: Vec<Silence>,
    pub windows: Vec<Window>,
    pub inhibit_rules: Vec<InhibitRule>,
}

/// An alert is firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

/// One alert: a rule's series while it fires, and briefly once resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    pub rule: String,
    pub team: String,
    /// `alertname` (the rule), the rule's `group_by` labels, `team` and
    /// `severity`: what matchers and `group_by` see. `rule` also reads as
    /// `alertname`.
    pub labels: Ordered<String>,
    pub status: Status,
    /// The rule's state behind the status: `alarm`, `insufficient_data`
    /// (still firing: see the module doc) or `ok`.
    pub state: AlarmState,
    #[serde(with = "rfc3339")]
    pub starts_at: Millis,
    #[serde(
        default,
        with = "rfc3339::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ends_at: Option<Millis>,
    pub summary: String,
    pub values: Ordered<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// The id of the last state change applied.
    pub change: String,
    /// The period end of that change.
    #[serde(with = "rfc3339")]
    pub updated_at: Millis,
    /// The silence or window that held it back at the last flush.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
    /// The inhibit rule that held it back at the last flush.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inhibited_by: Option<String>,
}

/// Label names klaxon sets on every alert (they win over a rule's
/// `group_by` label of the same name).
pub const BUILTIN_LABELS: [&str; 3] = ["alertname", "team", "severity"];

impl Alert {
    /// A firing alert from an `alarm` change.
    pub fn firing(c: &StateChange) -> Alert {
        let mut labels = vec![("alertname".to_string(), c.rule.clone())];
        labels.extend(
            c.labels
                .0
                .iter()
                .filter(|(k, _)| !BUILTIN_LABELS.contains(&k.as_str()))
                .cloned(),
        );
        labels.push(("team".into(), c.team.clone()));
        labels.push(("severity".into(), c.severity.clone()));
        Alert {
            fingerprint: c.fingerprint.clone(),
            rule: c.rule.clone(),
            team: c.team.clone(),
            labels: Ordered(labels),
            status: Status::Firing,
            state: c.state,
            starts_at: c.period_end,
            ends_at: None,
            summary: c.summary.clone(),
            values: c.values.clone(),
            runbook: c.runbook.clone(),
            change: c.id.clone(),
            updated_at: c.period_end,
            silenced_by: None,
            inhibited_by: None,
        }
    }

    /// Applies a change's state, values and summary.
    fn update(&mut self, c: &StateChange) {
        self.state = c.state;
        self.summary.clone_from(&c.summary);
        self.values = c.values.clone();
        self.change.clone_from(&c.id);
        self.updated_at = c.period_end;
    }

    pub fn is_firing(&self) -> bool {
        self.status == Status::Firing
    }

    /// The alert's id in the notification log.
    pub fn id(&self) -> u64 {
        fnv_str(&self.fingerprint)
    }

    fn muted(&self) -> bool {
        self.silenced_by.is_some() || self.inhibited_by.is_some()
    }
}

impl Labels for Alert {
    fn label(&self, name: &str) -> Option<&str> {
        match self.labels.get(name) {
            Some(v) => Some(v),
            None if name == "rule" => self.labels.get("alertname").map(String::as_str),
            None => None,
        }
    }
}

/// A stage that can hold back a firing alert.
pub trait Muter {
    /// The id of what mutes `alert` at `now` (a silence, a window, an
    /// inhibit rule), or `None`.
    fn mutes(&self, alert: &Alert, now: Millis) -> Option<&str>;
}

/// Why a notification is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// New firing alerts (possibly with resolved ones).
    Firing,
    /// Every alert the receiver knew of has resolved.
    Resolved,
    /// Nothing changed for `repeat_interval`; still firing.
    Repeat,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Firing => "firing",
            Kind::Resolved => "resolved",
            Kind::Repeat => "repeat",
        }
    }
}

/// The alerts of a notification.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct NotifiedAlerts {
    pub firing: Vec<Alert>,
    pub resolved: Vec<Alert>,
}

/// One message to one receiver about one incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Deterministic: a hash of receiver, incident, kind, time and alerts.
    pub id: String,
    pub receiver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub team: String,
    pub incident: String,
    /// The incident's group labels.
    pub group: Ordered<String>,
    pub kind: Kind,
    #[serde(with = "rfc3339")]
    pub at: Millis,
    pub alerts: NotifiedAlerts,
}

/// What [`Dispatcher::ingest`] did with a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// An alert fired or resolved: news for its incident.
    Changed,
    /// A firing alert's values or state were updated (not news).
    Updated,
    /// Nothing to do: `ok` or `insufficient_data` for an alert not firing.
    Ignored,
    /// Its id was seen before.
    Duplicate,
    /// Older than the dedup window.
    TooOld,
}

/// Counters for summaries and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub changes: u64,
    pub duplicates: u64,
    pub too_old: u64,
    pub ignored: u64,
    pub incidents: u64,
    /// Times a firing alert was found newly silenced at a flush.
    pub silenced: u64,
    /// Times a firing alert was found newly inhibited at a flush.
    pub inhibited: u64,
    pub notifications: u64,
}

/// What a dispatcher remembers between runs: its incidents (with their
/// alerts and timers), the notification log and the dedup window. The
/// configuration (teams, silences from files, inhibit rules) is not part of
/// it; the inhibitor's sources are rebuilt from the incidents' alerts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub incidents: Vec<group::Incident>,
    pub nflog: NotificationLog,
    pub dedup: Dedup,
}

/// The dispatch stage: state changes in, notifications out.
pub struct Dispatcher {
    teams: BTreeMap<String, Team>,
    dedup: Dedup,
    inhibitor: Inhibitor,
    silences: Silences,
    groups: Grouper,
    nflog: NotificationLog,
    stats: Stats,
}

impl Dispatcher {
    pub fn new(config: DispatchConfig) -> Dispatcher {
        Dispatcher {
            teams: config.teams,
            dedup: Dedup::default(),
            inhibitor: Inhibitor::new(config.inhibit_rules),
            silences: Silences::new(config.silences, config.windows),
            groups: Grouper::default(),
            nflog: NotificationLog::default(),
            stats: Stats::default(),
        }
    }

    /// A dispatcher that continues from `state` (see [`Dispatcher::snapshot`]).
    pub fn restore(config: DispatchConfig, state: State) -> Dispatcher {
        let mut d = Dispatcher::new(config);
        d.groups = Grouper::restore(state.incidents);
        d.nflog = state.nflog;
        d.dedup = state.dedup;
        for inc in d.groups.incidents() {
            for a in inc.alerts.values() {
                d.inhibitor.observe(a);
            }
        }
        d
    }

    /// Everything needed to continue elsewhere or after a restart.
    pub fn snapshot(&self) -> State {
        State {
            incidents: self.groups.incidents().cloned().collect(),
            nflog: self.nflog.clone(),
            dedup: self.dedup.clone(),
        }
    }

    /// The team's settings, or the defaults for a team without a file.
    pub fn team(&self, name: &str) -> Team {
        self.teams
            .get(name)
            .cloned()
            .unwrap_or_else(|| Team::default_for(name))
    }

    /// Takes in one state change, seen at `now`. Nothing is sent here: the
    /// change waits for its incident's next flush ([`Dispatcher::tick`]).
    pub fn ingest(&mut self, change: &StateChange, now: Millis) -> Ingested {
        match self.dedup.admit(&change.id, change.period_end, now) {
            Verdict::New => {}
            Verdict::Duplicate => {
                self.stats.duplicates += 1;
                return Ingested::Duplicate;
            }
            Verdict::TooOld => {
                self.stats.too_old += 1;
                return Ingested::TooOld;
            }
        }
        self.stats.changes += 1;
        let current = self.groups.alert(&change.fingerprint).map(|a| a.status);
        let firing = current == Some(Status::Firing);
        let alert = match (change.state, firing) {
            (AlarmState::Alarm | AlarmState::InsufficientData, true) => {
                let a = self
                    .groups
                    .alert_mut(&change.fingerprint)
                    .expect("found above");
                a.update(change);
                self.inhibitor.observe(a);
                return Ingested::Updated;
            }
            (AlarmState::Alarm, false) => Alert::firing(change),
            (AlarmState::Ok, true) => {
                let mut a = self
                    .groups
                    .alert(&change.fingerprint)
                    .expect("found above")
                    .clone();
                a.update(change);
                a.status = Status::Resolved;
                a.ends_at = Some(change.period_end);
                a
            }
            (AlarmState::Ok | AlarmState::InsufficientData, false) => {
                self.stats.ignored += 1;
                return Ingested::Ignored;
            }
        };
        self.inhibitor.observe(&alert);
        let grouping = self.team(&alert.team).grouping;
        if self.groups.insert(alert, &grouping, now) {
            self.stats.incidents += 1;
        }
        Ingested::Changed
    }

    /// Flushes every incident due at or before `now`, as of `now`, pushing
    /// the notifications to `out`. A driver that wants each flush at its
    /// exact time calls this at every [`Dispatcher::next_deadline`].
    pub fn tick(&mut self, now: Millis, out: &mut Vec<Notification>) {
        while let Some(key) = self.groups.pop_due(now) {
            self.flush(&key, now, out);
        }
        self.nflog.gc(now);
    }

    fn flush(&mut self, key: &str, now: Millis, out: &mut Vec<Notification>) {
        let Some(team_name) = self.groups.get(key).map(|i| i.team.clone()) else {
            return;
        };
        let team = self.team(&team_name);
        let inc = self.groups.get_mut(key).expect("popped from the schedule");

        // Inhibition and silences, as of now.
        let mut firing = BTreeSet::new();
        let mut resolved = BTreeSet::new();
        let mut by_id: BTreeMap<u64, &Alert> = BTreeMap::new();
        for a in inc.alerts.values_mut() {
            let inhibited = self.inhibitor.mutes(a, now).map(str::to_string);
            let silenced = self.silences.mutes(a, now).map(str::to_string);
            if a.is_firing() {
                if silenced.is_some() && a.silenced_by.is_none() {
                    self.stats.silenced += 1;
                }
                if inhibited.is_some() && a.inhibited_by.is_none() {
                    self.stats.inhibited += 1;
                }
            }
            a.silenced_by = silenced;
            a.inhibited_by = inhibited;
        }
        for a in inc.alerts.values() {
            match a.status {
                Status::Firing if !a.muted() => firing.insert(a.id()),
                Status::Firing => false,
                Status::Resolved => resolved.insert(a.id()),
            };
            by_id.insert(a.id(), a);
        }

        let policy = Policy {
            send_resolved: team.grouping.send_resolved,
            repeat_interval: team.grouping.repeat_interval,
        };
        let pick = |ids: &[u64]| {
            let mut v: Vec<Alert> = ids.iter().map(|id| by_id[id].clone()).collect();
            v.sort_by(|a, b| {
                (a.starts_at, &a.rule, &a.fingerprint).cmp(&(b.starts_at, &b.rule, &b.fingerprint))
            });
            v
        };
        for r in &team.receivers {
            let Some(sent) = self
                .nflog
                .step(&r.name, &inc.id, &firing, &resolved, policy, now)
            else {
                continue;
            };
            let mut h = Fnv::default();
            for part in [&r.name, &inc.id, sent.kind.as_str(), &now.to_string()] {
                h.write_str(part);
            }
            for id in sent.firing.iter().chain([&0]).chain(&sent.resolved) {
                h.write(&id.to_le_bytes());
            }
            out.push(Notification {
                id: format!("{:016x}", h.finish()),
                receiver: r.name.clone(),
                target: r.target.clone(),
                team: inc.team.clone(),
                incident: inc.id.clone(),
                group: inc.group.clone(),
                kind: sent.kind,
                at: now,
                alerts: NotifiedAlerts {
                    firing: pick(&sent.firing),
                    resolved: pick(&sent.resolved),
                },
            });
            self.stats.notifications += 1;
        }

        if let Some(ended) = self.groups.flushed(key, now, team.grouping.group_interval) {
            for r in &team.receivers {
                self.nflog.close(&r.name, &ended.id);
            }
        }
    }

    /// When the next flush is due, if any incident is live.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.groups.next_deadline()
    }

    /// The next flush of an incident with changes not yet flushed: once
    /// there is none, only repeats and silence ends remain. `replay` stops
    /// there at the end of its input.
    pub fn next_changed_deadline(&self) -> Option<Millis> {
        self.groups.next_changed_deadline()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn incidents(&self) -> impl Iterator<Item = &group::Incident> {
        self.groups.incidents()
    }

    pub fn nflog(&self) -> &NotificationLog {
        &self.nflog
    }

    pub fn silences(&self) -> &Silences {
        &self.silences
    }

    pub fn silences_mut(&mut self) -> &mut Silences {
        &mut self.silences
    }
}

/// Times as RFC 3339 strings; read back from RFC 3339 or epoch ms.
pub(crate) mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::model::{format_rfc3339, Millis};

    pub fn serialize<S: Serializer>(t: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*t))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Ms(i64),
        Text(String),
    }

    fn parse<E: serde::de::Error>(raw: Raw) -> Result<Millis, E> {
        match raw {
            Raw::Ms(ms) => Ok(ms),
            Raw::Text(s) => chrono::DateTime::parse_from_rfc3339(&s)
                .map(|t| t.timestamp_millis())
                .map_err(|e| E::custom(format!("bad time {s:?}: {e}"))),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        parse(Raw::deserialize(d)?)
    }

    pub mod opt {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
            Option::<Raw>::deserialize(d)?.map(parse).transpose()
        }
    }
}
