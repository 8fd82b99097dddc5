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
//! - [`route`]: which team an alert goes to (its rule's, or a matching
//!   route's), before grouping.
//! - [`escalation`], [`oncall`]: a team's policy pages tier by tier (the
//!   on-call person of a rotation, resolved when the tier fires) from the
//!   incident's first notice until [`Dispatcher::ack`] or resolution. Its
//!   state lives on the [`Incident`], so in [`Dispatcher::snapshot`].
//!
//! The [`Dispatcher`] chains them. It never reads a clock: `ingest`,
//! `tick` and `ack` take `now`, and [`Dispatcher::next_deadline`] tells a
//! driver when the next flush or escalation tier is due, so `klaxon replay --dispatch` runs it in event
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
pub mod escalation;
pub mod group;
pub mod inhibit;
pub mod matcher;
pub mod nflog;
pub mod oncall;
pub mod route;
pub mod silence;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{fnv_str, AlarmState, Fnv, Millis, Ordered, StateChange};
use dedup::{Dedup, Verdict};
use group::{Grouper, Incident};
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
    /// Told of every incident (grouped, repeated, resolved): the team's
    /// channel.
    pub receivers: Vec<Receiver>,
    /// Paged tier by tier until someone acknowledges (see [`escalation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<escalation::Policy>,
    /// People who can be on call, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub people: BTreeMap<String, oncall::Person>,
    /// On-call rotations, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub oncall: BTreeMap<String, oncall::Rotation>,
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
            escalation: None,
            people: BTreeMap::new(),
            oncall: BTreeMap::new(),
        }
    }

    /// Where a tier target pages at `now`: (receiver, target, person).
    /// `None` for an on-call target whose rotation or contact is missing
    /// (the team file loader rejects those).
    pub fn resolve(
        &self,
        t: &escalation::TierTarget,
        now: Millis,
    ) -> Option<(String, Option<String>, Option<String>)> {
        match &t.to {
            escalation::To::Receiver => Some((t.receiver.clone(), None, None)),
            escalation::To::Target(x) => Some((t.receiver.clone(), Some(x.clone()), None)),
            escalation::To::OnCall(rotation) => {
                let who = self.oncall.get(rotation)?.on_call(now).person;
                let contact = self.people.get(who)?.contacts.get(&t.receiver)?;
                Some((
                    t.receiver.clone(),
                    Some(contact.clone()),
                    Some(who.to_string()),
                ))
            }
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
    /// Label-matching routes to another team than the rule's (first match
    /// wins; see [`route`]).
    #[serde(default)]
    pub routes: Vec<route::Route>,
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
///
/// Escalation pages (see [`escalation`]) reuse the kinds: `firing` for a
/// tier's page, `resolved` for the end of an incident a tier paged; they
/// are told apart by `tier` (and `cycle`) being set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Deterministic: a hash of receiver, incident, kind, time and alerts;
    /// for escalation, of receiver, target, incident, tier, cycle and round.
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
    /// The escalation tier (0-based) that sent it; `None` for the team's
    /// grouped notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<usize>,
    /// The pass through the policy (0-based, see `repeat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<u32>,
    /// Who was paged, when the target came from an on-call rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
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
    /// Escalation pages sent (one per target).
    pub pages: u64,
    /// Escalation steps skipped because every firing alert was muted.
    pub steps_muted: u64,
    pub acks: u64,
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
    routes: Vec<route::Route>,
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
            routes: config.routes,
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
            (AlarmState::Alarm, false) => route::alert_for(&self.routes, change),
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
        let team = self.team(&alert.team);
        let (key, _) = group::group_of(&alert, &team.grouping);
        let fired = alert.is_firing();
        if self.groups.insert(alert, &team.grouping, now) {
            self.stats.incidents += 1;
        }
        // A new firing alert in an acknowledged incident: escalate again
        // only where the team asks for it.
        if fired
            && team
                .escalation
                .as_ref()
                .is_some_and(|p| p.reescalate_on_new_alert)
        {
            if let Some(inc) = self.groups.get_mut(&key) {
                if inc.acked_at.is_some() {
                    inc.acked_at = None;
                    inc.acked_by = None;
                    inc.escalation.restart();
                }
            }
        }
        Ingested::Changed
    }

    /// Acknowledges incident `incident_id` at `now`: its escalation stops
    /// (its grouped notifications go on). Records who and when.
    pub fn ack(&mut self, incident_id: &str, by: &str, now: Millis) -> Result<&Incident, AckError> {
        let err = |kind, acked_by: Option<&String>| AckError {
            kind,
            incident: incident_id.to_string(),
            acked_by: acked_by.cloned(),
        };
        let Some(key) = self.groups.key_of(incident_id) else {
            return Err(err(AckErrorKind::NotFound, None));
        };
        let inc = self.groups.get_mut(&key).expect("found by id");
        if let Some(by) = &inc.acked_by {
            return Err(err(AckErrorKind::AlreadyAcked, Some(by)));
        }
        if !inc.alerts.values().any(Alert::is_firing) {
            return Err(err(AckErrorKind::AlreadyResolved, None));
        }
        inc.acked_by = Some(by.to_string());
        inc.acked_at = Some(now);
        self.stats.acks += 1;
        Ok(inc)
    }

    /// The live incident with this id.
    pub fn incident(&self, incident_id: &str) -> Option<&Incident> {
        self.groups.get(&self.groups.key_of(incident_id)?)
    }

    /// The earliest escalation step due, with its incident key.
    fn next_step(&self) -> Option<(Millis, &str)> {
        self.groups
            .incidents()
            .filter(|i| i.acked_at.is_none())
            .filter_map(|i| {
                let policy = self.teams.get(&i.team)?.escalation.as_ref()?;
                Some((i.escalation.next_due(policy)?, i.key.as_str()))
            })
            .min()
    }

    /// Takes every escalation step due at or before `now`, in order.
    fn escalate(&mut self, now: Millis, out: &mut Vec<Notification>) {
        while let Some((_, key)) = self.next_step().filter(|(t, _)| *t <= now) {
            let key = key.to_string();
            self.step(&key, now, out);
        }
    }

    /// Takes incident `key`'s next escalation step at `now`.
    fn step(&mut self, key: &str, now: Millis, out: &mut Vec<Notification>) {
        let Some(team_name) = self.groups.get(key).map(|i| i.team.clone()) else {
            return;
        };
        let team = self.team(&team_name);
        let Some(policy) = &team.escalation else {
            return;
        };
        let inc = self.groups.get_mut(key).expect("found above");
        let Some((tier, cycle, _)) = policy.step(inc.escalation.steps) else {
            return;
        };
        inc.escalation.steps += 1;
        let mut firing: Vec<Alert> = inc
            .alerts
            .values()
            .filter(|a| {
                a.is_firing()
                    && self.silences.mutes(a, now).is_none()
                    && self.inhibitor.mutes(a, now).is_none()
            })
            .cloned()
            .collect();
        if firing.is_empty() {
            self.stats.steps_muted += 1;
            return;
        }
        sort_alerts(&mut firing);
        let t = &policy.tiers[tier];
        let round = inc.escalation.round;
        for target in &t.targets {
            let Some((receiver, to, person)) = team.resolve(target, now) else {
                tracing::warn!(
                    team = %team.name,
                    receiver = %target.receiver,
                    "escalation target has no rotation or contact; skipped"
                );
                continue;
            };
            inc.escalation.paged.push(escalation::Paged {
                receiver: receiver.clone(),
                target: to.clone(),
                tier,
                cycle,
                person: person.clone(),
                at: now,
                send_resolved: t.send_resolved,
            });
            out.push(Notification {
                id: escalation::notification_id(
                    Kind::Firing.as_str(),
                    &receiver,
                    to.as_deref(),
                    &inc.id,
                    tier,
                    cycle,
                    round,
                ),
                receiver,
                target: to,
                team: inc.team.clone(),
                incident: inc.id.clone(),
                group: inc.group.clone(),
                kind: Kind::Firing,
                at: now,
                alerts: NotifiedAlerts {
                    firing: firing.clone(),
                    resolved: Vec::new(),
                },
                tier: Some(tier),
                cycle: Some(cycle),
                person,
            });
            self.stats.pages += 1;
        }
    }

    /// Flushes every incident due at or before `now`, as of `now`, pushing
    /// the notifications to `out`. A driver that wants each flush at its
    /// exact time calls this at every [`Dispatcher::next_deadline`].
    pub fn tick(&mut self, now: Millis, out: &mut Vec<Notification>) {
        while let Some(key) = self.groups.pop_due(now) {
            self.flush(&key, now, out);
        }
        self.escalate(now, out);
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
            sort_alerts(&mut v);
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
                tier: None,
                cycle: None,
                person: None,
            });
            self.stats.notifications += 1;
        }
        let resolved_alerts = if inc.escalation.paged.is_empty() {
            Vec::new()
        } else {
            pick(&resolved.iter().copied().collect::<Vec<_>>())
        };

        // Escalation starts at the first flush with an unmuted firing alert.
        if team.escalation.is_some()
            && inc.acked_at.is_none()
            && inc.escalation.started_at.is_none()
            && !firing.is_empty()
        {
            inc.escalation.started_at = Some(now);
        }

        if let Some(ended) = self.groups.flushed(key, now, team.grouping.group_interval) {
            for r in &team.receivers {
                self.nflog.close(&r.name, &ended.id);
            }
            // Tell the targets escalation paged that it is over.
            for p in ended.escalation.to_resolve() {
                out.push(Notification {
                    id: escalation::notification_id(
                        Kind::Resolved.as_str(),
                        &p.receiver,
                        p.target.as_deref(),
                        &ended.id,
                        p.tier,
                        p.cycle,
                        ended.escalation.round,
                    ),
                    receiver: p.receiver.clone(),
                    target: p.target.clone(),
                    team: ended.team.clone(),
                    incident: ended.id.clone(),
                    group: ended.group.clone(),
                    kind: Kind::Resolved,
                    at: now,
                    alerts: NotifiedAlerts {
                        firing: Vec::new(),
                        resolved: resolved_alerts.clone(),
                    },
                    tier: Some(p.tier),
                    cycle: Some(p.cycle),
                    person: p.person.clone(),
                });
                self.stats.notifications += 1;
            }
        }
    }

    /// When the next flush or escalation step is due, if any incident is
    /// live. A driver calls [`Dispatcher::tick`] then.
    pub fn next_deadline(&self) -> Option<Millis> {
        let step = self.next_step().map(|(t, _)| t);
        match (self.groups.next_deadline(), step) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

fn sort_alerts(v: &mut [Alert]) {
    v.sort_by(|a, b| {
        (a.starts_at, &a.rule, &a.fingerprint).cmp(&(b.starts_at, &b.rule, &b.fingerprint))
    });
}

/// Why an acknowledgement was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckErrorKind {
    /// No live incident has this id (here: on this member).
    NotFound,
    /// Every alert of the incident has resolved.
    AlreadyResolved,
    /// Someone acknowledged it already (`acked_by`).
    AlreadyAcked,
}

/// A refused acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckError {
    pub kind: AckErrorKind,
    pub incident: String,
    /// Who acknowledged it, for [`AckErrorKind::AlreadyAcked`].
    pub acked_by: Option<String>,
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = &self.incident;
        match self.kind {
            AckErrorKind::NotFound => write!(f, "no live incident {id}"),
            AckErrorKind::AlreadyResolved => write!(f, "incident {id} has already resolved"),
            AckErrorKind::AlreadyAcked => write!(
                f,
                "incident {id} was already acknowledged by {}",
                self.acked_by.as_deref().unwrap_or("someone")
            ),
        }
    }
}

impl std::error::Error for AckError {}

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
