//! The dispatcher on a manual clock: Alertmanager's timing cases, the
//! CloudWatch state mapping, silences, inhibition, receivers.

use super::silence::{Silence, TimeOfDay, Window};
use super::*;
use crate::alerts::matcher::Matcher;
use crate::model::{change_id, fingerprint};

const S: Millis = 1_000;
const MIN: Millis = 60 * S;
const H: Millis = 60 * MIN;

/// `2026-11-28T13:00:00Z` → epoch ms.
pub(crate) fn at(s: &str) -> Millis {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

/// A state change of team `platform`, severity `warning`.
pub(crate) fn change(
    rule: &str,
    labels: &[(&str, &str)],
    state: AlarmState,
    period_end: Millis,
) -> StateChange {
    let labels = Ordered(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let fp = fingerprint(rule, &labels);
    StateChange {
        id: change_id(&fp, period_end, state),
        fingerprint: fp,
        rule: rule.into(),
        team: "platform".into(),
        labels,
        state,
        previous: AlarmState::Ok,
        period_end,
        values: Ordered(vec![("v".into(), 1.0)]),
        severity: "warning".into(),
        summary: format!("{rule} is {state}"),
        runbook: None,
    }
}

/// A firing alert of team `platform`, severity `warning`.
pub(crate) fn alert(rule: &str, labels: &[(&str, &str)]) -> Alert {
    Alert::firing(&change(rule, labels, AlarmState::Alarm, 0))
}

fn matchers(ms: &[&str]) -> Vec<Matcher> {
    ms.iter().map(|m| Matcher::parse(m).unwrap()).collect()
}

fn team(grouping: Grouping, receivers: &[(&str, Option<&str>)]) -> DispatchConfig {
    let mut config = DispatchConfig::default();
    config.teams.insert(
        "platform".into(),
        Team {
            name: "platform".into(),
            grouping,
            receivers: receivers
                .iter()
                .map(|(n, t)| Receiver {
                    name: n.to_string(),
                    target: t.map(str::to_string),
                })
                .collect(),
            escalation: None,
            people: BTreeMap::new(),
            oncall: BTreeMap::new(),
        },
    );
    config
}

/// A dispatcher driven by hand: changes at the current time, and a clock
/// that is advanced through every deadline on the way.
struct Clock {
    d: Dispatcher,
    now: Millis,
    sent: Vec<Notification>,
}

impl Clock {
    fn new(config: DispatchConfig) -> Clock {
        Clock {
            d: Dispatcher::new(config),
            now: 0,
            sent: Vec::new(),
        }
    }

    fn platform() -> Clock {
        Clock::new(team(Grouping::default(), &[("slack", Some("#platform"))]))
    }

    fn advance(&mut self, to: Millis) {
        while let Some(d) = self.d.next_deadline().filter(|d| *d <= to) {
            self.d.tick(d, &mut self.sent);
        }
        self.now = to;
    }

    /// Advances to `t` and applies a change whose period ended then.
    fn set(
        &mut self,
        t: Millis,
        rule: &str,
        labels: &[(&str, &str)],
        state: AlarmState,
    ) -> Ingested {
        self.advance(t);
        self.d.ingest(&change(rule, labels, state, t), t)
    }

    /// (time, kind, firing instances, resolved instances) of what was sent.
    fn log(&self) -> Vec<(Millis, Kind, Vec<String>, Vec<String>)> {
        let names = |v: &[Alert]| -> Vec<String> {
            v.iter()
                .map(|a| a.labels.get("i").cloned().unwrap_or_else(|| a.rule.clone()))
                .collect()
        };
        self.sent
            .iter()
            .map(|n| {
                (
                    n.at,
                    n.kind,
                    names(&n.alerts.firing),
                    names(&n.alerts.resolved),
                )
            })
            .collect()
    }
}

fn row(
    t: Millis,
    kind: Kind,
    firing: &[&str],
    resolved: &[&str],
) -> (Millis, Kind, Vec<String>, Vec<String>) {
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
    (t, kind, v(firing), v(resolved))
}

use AlarmState::{Alarm, InsufficientData, Ok as Fine};

#[test]
fn first_notice_waits_group_wait_and_takes_every_alert_that_joined() {
    let mut c = Clock::platform();
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.set(10 * S, "CPU", &[("i", "b")], Alarm);
    c.advance(29 * S);
    assert!(c.sent.is_empty(), "nothing before group_wait");
    c.advance(30 * S);
    assert_eq!(c.log(), vec![row(30 * S, Kind::Firing, &["a", "b"], &[])]);
    let n = &c.sent[0];
    assert_eq!(
        (n.receiver.as_str(), n.target.as_deref()),
        ("slack", Some("#platform"))
    );
    assert_eq!(n.group.get("alertname").map(String::as_str), Some("CPU"));
}

#[test]
fn an_alert_that_resolves_within_group_wait_sends_nothing() {
    let mut c = Clock::platform();
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.set(20 * S, "CPU", &[("i", "a")], Fine);
    c.advance(H);
    assert!(c.sent.is_empty(), "{:?}", c.log());
    assert_eq!(c.d.incidents().count(), 0, "the incident ended");
    assert_eq!(c.d.next_deadline(), None);
}

#[test]
fn a_late_joiner_goes_out_at_the_next_group_interval_tick() {
    let mut c = Clock::platform();
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.advance(30 * S);
    c.set(MIN, "CPU", &[("i", "b")], Alarm);
    c.advance(5 * MIN + 29 * S);
    assert_eq!(c.sent.len(), 1, "b waits for the tick");
    c.advance(5 * MIN + 30 * S);
    assert_eq!(
        c.log(),
        vec![
            row(30 * S, Kind::Firing, &["a"], &[]),
            row(5 * MIN + 30 * S, Kind::Firing, &["a", "b"], &[]),
        ]
    );
}

#[test]
fn repeat_happens_only_when_nothing_changed_for_repeat_interval() {
    let first = 30 * S;
    // Unchanged: repeats at 4 h and 8 h after the first notice.
    let mut c = Clock::platform();
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.advance(8 * H + MIN);
    assert_eq!(
        c.log(),
        vec![
            row(first, Kind::Firing, &["a"], &[]),
            row(first + 4 * H, Kind::Repeat, &["a"], &[]),
            row(first + 8 * H, Kind::Repeat, &["a"], &[]),
        ]
    );
    // A change at 2 h restarts the repeat clock: next repeat 4 h after it.
    let mut c = Clock::platform();
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.set(2 * H - MIN, "CPU", &[("i", "b")], Alarm);
    c.advance(6 * H + MIN);
    assert_eq!(
        c.log(),
        vec![
            row(first, Kind::Firing, &["a"], &[]),
            row(first + 2 * H, Kind::Firing, &["a", "b"], &[]),
            row(first + 6 * H, Kind::Repeat, &["a", "b"], &[]),
        ]
    );
}

#[test]
fn resolved_notice_then_the_incident_ends() {
    let mut c = Clock::platform();
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.set(MIN, "CPU", &[("i", "b")], Alarm);
    c.set(7 * MIN, "CPU", &[("i", "a")], Fine);
    c.set(12 * MIN, "CPU", &[("i", "b")], Fine);
    assert_eq!(c.d.incidents().count(), 1);
    c.advance(H);
    assert_eq!(
        c.log(),
        vec![
            row(30 * S, Kind::Firing, &["a"], &[]),
            row(5 * MIN + 30 * S, Kind::Firing, &["a", "b"], &[]),
            row(10 * MIN + 30 * S, Kind::Firing, &["b"], &["a"]),
            row(15 * MIN + 30 * S, Kind::Resolved, &[], &["b"]),
        ]
    );
    let resolved = &c.sent[3].alerts.resolved[0];
    assert_eq!(resolved.ends_at, Some(12 * MIN));
    assert_eq!(resolved.status, Status::Resolved);
    assert_eq!(
        c.d.incidents().count(),
        0,
        "ended after its resolved notice"
    );
    assert_eq!(c.d.next_deadline(), None);
    // Firing again: a new incident, group_wait again.
    c.set(2 * H, "CPU", &[("i", "a")], Alarm);
    c.advance(2 * H + 30 * S);
    assert_eq!(c.sent.len(), 5);
    assert_eq!(c.sent[4].kind, Kind::Firing);
    assert_ne!(c.sent[4].incident, c.sent[0].incident);
}

#[test]
fn without_send_resolved_the_incident_ends_quietly() {
    let grouping = Grouping {
        send_resolved: false,
        ..Grouping::default()
    };
    let mut c = Clock::new(team(grouping, &[("slack", None)]));
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.set(MIN, "CPU", &[("i", "a")], Fine);
    c.advance(H);
    assert_eq!(c.log(), vec![row(30 * S, Kind::Firing, &["a"], &[])]);
    assert_eq!(c.d.incidents().count(), 0);
}

#[test]
fn timers_follow_the_team_settings() {
    let grouping = Grouping {
        group_by: vec![],
        group_wait: 10 * S,
        group_interval: MIN,
        repeat_interval: 10 * MIN,
        send_resolved: true,
    };
    let mut c = Clock::new(team(grouping, &[("slack", None)]));
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.set(15 * S, "Mem", &[("i", "m")], Alarm); // group_by [] → same incident
    c.advance(10 * MIN + 10 * S);
    assert_eq!(
        c.log(),
        vec![
            row(10 * S, Kind::Firing, &["a"], &[]),
            row(70 * S, Kind::Firing, &["a", "m"], &[]),
        ]
    );
    c.advance(11 * MIN + 10 * S);
    assert_eq!(
        c.log()[2..],
        [row(70 * S + 10 * MIN, Kind::Repeat, &["a", "m"], &[])]
    );
}

/// CloudWatch's INSUFFICIENT_DATA is not a resolution: a firing alert keeps
/// firing (and repeating) until `ok`; a never-firing series makes no alert.
#[test]
fn insufficient_data_keeps_a_firing_alert_firing() {
    let mut c = Clock::platform();
    assert_eq!(
        c.set(0, "CPU", &[("i", "quiet")], InsufficientData),
        Ingested::Ignored
    );
    assert_eq!(c.set(0, "CPU", &[("i", "quiet")], Fine), Ingested::Ignored);
    assert_eq!(c.set(MIN, "CPU", &[("i", "a")], Alarm), Ingested::Changed);
    assert_eq!(
        c.set(20 * MIN, "CPU", &[("i", "a")], InsufficientData),
        Ingested::Updated
    );
    c.advance(4 * H + 2 * MIN);
    assert_eq!(c.set(5 * H, "CPU", &[("i", "a")], Alarm), Ingested::Updated);
    assert_eq!(c.set(6 * H, "CPU", &[("i", "a")], Fine), Ingested::Changed);
    c.advance(7 * H);
    let first = MIN + 30 * S;
    assert_eq!(
        c.log(),
        vec![
            row(first, Kind::Firing, &["a"], &[]),
            row(first + 4 * H, Kind::Repeat, &["a"], &[]),
            row(6 * H + first, Kind::Resolved, &[], &["a"]),
        ]
    );
    assert_eq!(c.sent[1].alerts.firing[0].state, InsufficientData);
    assert_eq!(
        c.sent[1].alerts.firing[0].starts_at, MIN,
        "still the same firing"
    );
}

#[test]
fn a_redelivered_change_is_dropped() {
    let mut c = Clock::platform();
    let ch = change("CPU", &[("i", "a")], Alarm, 0);
    assert_eq!(c.d.ingest(&ch, 0), Ingested::Changed);
    c.advance(MIN);
    assert_eq!(c.d.ingest(&ch, MIN), Ingested::Duplicate);
    let ok = change("CPU", &[("i", "a")], Fine, 5 * MIN);
    c.advance(5 * MIN);
    assert_eq!(c.d.ingest(&ok, 5 * MIN), Ingested::Changed);
    assert_eq!(c.d.ingest(&ok, 5 * MIN), Ingested::Duplicate);
    // A replay of the alarm after the resolution must not re-fire it.
    assert_eq!(c.d.ingest(&ch, 6 * MIN), Ingested::Duplicate);
    c.advance(H);
    assert_eq!(c.sent.len(), 2);
    assert_eq!(c.d.stats().duplicates, 3);
}

fn silence(id: &str, ms: &[&str], from: Millis, to: Millis) -> Silence {
    Silence {
        id: id.into(),
        matchers: matchers(ms),
        starts_at: from,
        ends_at: to,
        created_by: "kim".into(),
        comment: "patching".into(),
    }
}

/// Silence from 10 min to 40 min on instance b.
fn silenced() -> Clock {
    let mut config = team(Grouping::default(), &[("slack", None)]);
    config
        .silences
        .push(silence("s1", &[r#"i="b""#], 10 * MIN, 40 * MIN));
    Clock::new(config)
}

#[test]
fn a_silenced_alert_still_firing_when_the_silence_ends_is_notified_then() {
    let mut c = silenced();
    c.set(12 * MIN, "CPU", &[("i", "b")], Alarm);
    c.advance(39 * MIN);
    assert!(c.sent.is_empty(), "{:?}", c.log());
    let inc = c.d.incidents().next().unwrap();
    let b = inc.alerts.values().next().unwrap();
    assert_eq!(
        b.silenced_by.as_deref(),
        Some("s1"),
        "tracked, and why it is quiet"
    );
    c.advance(H);
    // Ticks at 12:30, 17:30, …, 37:30, 42:30: the first after 40:00.
    assert_eq!(
        c.log(),
        vec![row(42 * MIN + 30 * S, Kind::Firing, &["b"], &[])]
    );
    assert_eq!(c.sent[0].alerts.firing[0].silenced_by, None);
    assert_eq!(c.d.stats().silenced, 1);
}

#[test]
fn a_silence_holds_back_only_what_it_matches() {
    let mut c = silenced();
    c.set(12 * MIN, "CPU", &[("i", "a")], Alarm);
    c.set(12 * MIN, "CPU", &[("i", "b")], Alarm);
    c.advance(13 * MIN);
    assert_eq!(
        c.log(),
        vec![row(12 * MIN + 30 * S, Kind::Firing, &["a"], &[])]
    );
}

#[test]
fn a_resolution_during_a_silence_is_sent_to_whoever_saw_it_fire() {
    let mut c = silenced();
    c.set(0, "CPU", &[("i", "b")], Alarm); // notified at 0:30, before the silence
    c.set(20 * MIN, "CPU", &[("i", "b")], Fine); // resolves inside it
    c.advance(H);
    assert_eq!(
        c.log(),
        vec![
            row(30 * S, Kind::Firing, &["b"], &[]),
            row(20 * MIN + 30 * S, Kind::Resolved, &[], &["b"]),
        ]
    );
    let r = &c.sent[1].alerts.resolved[0];
    assert_eq!(
        r.silenced_by.as_deref(),
        Some("s1"),
        "resolved while silenced"
    );
    assert_eq!(r.ends_at, Some(20 * MIN));
}

#[test]
fn an_alert_that_fires_and_resolves_inside_a_silence_is_never_sent() {
    let mut c = silenced();
    c.set(15 * MIN, "CPU", &[("i", "b")], Alarm);
    c.set(30 * MIN, "CPU", &[("i", "b")], Fine);
    c.advance(2 * H);
    assert!(c.sent.is_empty(), "{:?}", c.log());
    assert_eq!(c.d.incidents().count(), 0);
}

#[test]
fn a_maintenance_window_mutes_while_open() {
    let mut config = team(Grouping::default(), &[("slack", None)]);
    config.windows.push(Window {
        id: "redis-maintenance".into(),
        matchers: matchers(&[r#"alertname="Redis""#]),
        every: vec![chrono::Weekday::Sun],
        from: TimeOfDay::parse("02:00").unwrap(),
        to: TimeOfDay::parse("04:00").unwrap(),
        timezone: chrono_tz::Asia::Seoul,
        created_by: "ops".into(),
        comment: "weekly patching".into(),
    });
    let mut c = Clock::new(config);
    let open = at("2026-11-28T17:00:00Z"); // Sunday 02:00 in Seoul
    c.set(open + 10 * MIN, "Redis", &[], Alarm);
    c.advance(open + 2 * H - S);
    assert!(c.sent.is_empty());
    c.advance(open + 3 * H);
    // Ticks at :10:30 + 5 min·k; the first after 19:00 is 19:00:30.
    assert_eq!(
        c.log(),
        vec![row(open + 2 * H + 30 * S, Kind::Firing, &["Redis"], &[])]
    );
}

fn inhibiting() -> Clock {
    let mut config = team(
        Grouping {
            group_by: vec!["alertname".into(), "service".into()],
            ..Grouping::default()
        },
        &[("slack", None)],
    );
    config.inhibit_rules.push(InhibitRule {
        name: "errors-explain-error-logs".into(),
        source_matchers: matchers(&[r#"alertname="ErrorRate""#]),
        target_matchers: matchers(&[r#"alertname="ErrorLogs""#]),
        equal: vec!["service".into()],
    });
    Clock::new(config)
}

#[test]
fn an_inhibited_alert_goes_out_once_its_source_resolves() {
    let mut c = inhibiting();
    c.set(0, "ErrorRate", &[("service", "api")], Alarm);
    c.set(0, "ErrorLogs", &[("service", "api")], Alarm);
    c.set(0, "ErrorLogs", &[("service", "web")], Alarm);
    c.advance(MIN);
    let mut first: Vec<_> = c.sent.iter().map(|n| n.group.0.clone()).collect();
    first.sort();
    assert_eq!(first.len(), 2, "ErrorRate/api and ErrorLogs/web: {first:?}");
    assert!(c
        .sent
        .iter()
        .all(|n| !(n.group.get("alertname").unwrap() == "ErrorLogs"
            && n.group.get("service").unwrap() == "api")));
    c.set(10 * MIN, "ErrorRate", &[("service", "api")], Fine);
    c.advance(H);
    let api_logs: Vec<(Millis, Kind)> = c
        .sent
        .iter()
        .filter(|n| n.group.get("alertname").unwrap() == "ErrorLogs")
        .filter(|n| n.group.get("service").unwrap() == "api")
        .map(|n| (n.at, n.kind))
        .collect();
    assert_eq!(api_logs, vec![(10 * MIN + 30 * S, Kind::Firing)]);
    assert_eq!(c.d.stats().inhibited, 1);
}

#[test]
fn a_silenced_source_still_inhibits() {
    let mut c = inhibiting();
    let mut config_silence = silence("s", &[r#"alertname="ErrorRate""#], 0, H);
    config_silence.comment = "known outage".into();
    c.d.silences_mut().upsert(config_silence);
    c.set(0, "ErrorRate", &[("service", "api")], Alarm);
    c.set(0, "ErrorLogs", &[("service", "api")], Alarm);
    c.advance(30 * MIN);
    assert!(c.sent.is_empty(), "{:?}", c.log());
}

#[test]
fn every_receiver_gets_its_own_notification_and_log() {
    let mut c = Clock::new(team(
        Grouping::default(),
        &[
            ("slack", Some("#platform")),
            ("email", Some("ops@x.example")),
        ],
    ));
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.advance(MIN);
    let to: Vec<(&str, Option<&str>)> = c
        .sent
        .iter()
        .map(|n| (n.receiver.as_str(), n.target.as_deref()))
        .collect();
    assert_eq!(
        to,
        vec![
            ("slack", Some("#platform")),
            ("email", Some("ops@x.example"))
        ]
    );
    assert_ne!(c.sent[0].id, c.sent[1].id);
    assert_eq!(c.sent[0].incident, c.sent[1].incident);
    assert_eq!(c.d.nflog().len(), 2);
}

#[test]
fn a_team_without_a_file_gets_defaults_and_a_receiver_named_after_it() {
    let mut c = Clock::new(DispatchConfig::default());
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.advance(30 * S);
    assert_eq!(c.sent.len(), 1);
    assert_eq!(c.sent[0].receiver, "platform");
    assert_eq!(c.sent[0].target, None);
}

#[test]
fn next_changed_deadline_ends_once_only_repeats_remain() {
    let mut c = Clock::platform();
    assert_eq!(c.d.next_changed_deadline(), None);
    c.set(0, "CPU", &[("i", "a")], Alarm);
    assert_eq!(c.d.next_changed_deadline(), Some(30 * S));
    c.advance(30 * S);
    assert_eq!(c.d.next_changed_deadline(), None);
    assert_eq!(c.d.next_deadline(), Some(5 * MIN + 30 * S), "ticks go on");
    c.set(MIN, "CPU", &[("i", "a")], InsufficientData);
    assert_eq!(c.d.next_changed_deadline(), None, "not news");
    c.set(2 * MIN, "CPU", &[("i", "a")], Fine);
    assert_eq!(c.d.next_changed_deadline(), Some(5 * MIN + 30 * S));
}

#[test]
fn notifications_serialize_with_times_and_both_lists() {
    let mut c = Clock::platform();
    c.set(at("2026-11-28T12:50:00Z"), "CPU", &[("i", "a")], Alarm);
    c.advance(at("2026-11-28T13:00:00Z"));
    let json = serde_json::to_value(&c.sent[0]).unwrap();
    assert_eq!(json["receiver"], "slack");
    assert_eq!(json["target"], "#platform");
    assert_eq!(json["kind"], "firing");
    assert_eq!(json["at"], "2026-11-28T12:50:30Z");
    assert_eq!(json["group"]["alertname"], "CPU");
    let a = &json["alerts"]["firing"][0];
    assert_eq!(a["status"], "firing");
    assert_eq!(a["starts_at"], "2026-11-28T12:50:00Z");
    assert_eq!(a["labels"]["alertname"], "CPU");
    assert_eq!(a["labels"]["i"], "a");
    assert_eq!(a["labels"]["severity"], "warning");
    assert!(a.get("ends_at").is_none());
    assert_eq!(json["alerts"]["resolved"], serde_json::json!([]));
    // Read back from the text (a serde_json::Value would sort the labels).
    let text = serde_json::to_string(&c.sent[0]).unwrap();
    let back: Notification = serde_json::from_str(&text).unwrap();
    assert_eq!(back, c.sent[0]);
    // Deterministic: the same input gives the same ids.
    let mut again = Clock::platform();
    again.set(at("2026-11-28T12:50:00Z"), "CPU", &[("i", "a")], Alarm);
    again.advance(at("2026-11-28T13:00:00Z"));
    assert_eq!(again.sent[0].id, c.sent[0].id);
    assert_eq!(again.sent[0].incident, c.sent[0].incident);
}

#[test]
fn builtin_labels_win_and_rule_reads_as_alertname() {
    let mut ch = change("CPU", &[("i", "a"), ("severity", "fake")], Alarm, 0);
    ch.severity = "critical".into();
    let a = Alert::firing(&ch);
    assert_eq!(a.label("severity"), Some("critical"));
    assert_eq!(a.label("rule"), Some("CPU"));
    assert_eq!(a.label("alertname"), Some("CPU"));
    assert_eq!(a.label("team"), Some("platform"));
    let names: Vec<&str> = a.labels.0.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, vec!["alertname", "i", "team", "severity"]);
}

/// Snapshot, JSON, restore in the middle of a day: the rest of the
/// notifications are exactly those of an uninterrupted run.
#[test]
fn a_restored_dispatcher_continues_exactly() {
    let config = || {
        let mut c = team(Grouping::default(), &[("slack", None), ("email", None)]);
        c.silences
            .push(silence("s1", &[r#"i="b""#], 10 * MIN, 40 * MIN));
        c.inhibit_rules.push(InhibitRule {
            name: "down-mutes-cpu".into(),
            source_matchers: matchers(&[r#"alertname="Down""#]),
            target_matchers: matchers(&[r#"alertname="CPU""#]),
            equal: vec!["i".into()],
        });
        c
    };
    let script: Vec<(Millis, &str, &str, AlarmState)> = vec![
        (0, "CPU", "a", Alarm),
        (MIN, "Down", "c", Alarm),
        (2 * MIN, "CPU", "c", Alarm),
        (12 * MIN, "CPU", "b", Alarm),
        (20 * MIN, "CPU", "a", Fine),
        (30 * MIN, "Down", "c", Fine),
        (50 * MIN, "CPU", "b", InsufficientData),
        (5 * H, "CPU", "b", Fine),
        (5 * H, "CPU", "c", Fine),
    ];
    let play = |c: &mut Clock, steps: &[(Millis, &str, &str, AlarmState)]| {
        for (t, rule, i, state) in steps {
            c.set(*t, rule, &[("i", i)], *state);
        }
    };
    let mut whole = Clock::new(config());
    play(&mut whole, &script);
    whole.advance(6 * H);
    assert!(whole.sent.len() >= 8, "{:?}", whole.log());

    let mut first = Clock::new(config());
    play(&mut first, &script[..4]);
    first.advance(15 * MIN);
    let json = serde_json::to_string(&first.d.snapshot()).unwrap();
    let state: State = serde_json::from_str(&json).unwrap();
    assert_eq!(state, first.d.snapshot());
    let mut second = Clock {
        d: Dispatcher::restore(config(), state),
        now: first.now,
        sent: Vec::new(),
    };
    play(&mut second, &script[4..]);
    second.advance(6 * H);
    let mut joined = first.sent.clone();
    joined.extend(second.sent);
    assert_eq!(joined, whole.sent);
    // And the redelivery of a change seen before the restart is dropped.
    let again = change("CPU", &[("i", "a")], Alarm, 0);
    assert_eq!(second.d.ingest(&again, 6 * H), Ingested::Duplicate);
}

// ---- Escalation, on-call and acknowledgement ----

use super::escalation::{Policy, Tier, TierTarget, To};
use super::oncall::{Override, Person, Rotation};

/// Platform with a Slack channel for grouped notices and a policy: Slack
/// at once, the on-call person by email after 10 min, by SMS after 30 min,
/// repeated `repeat` times every hour. Rotation: kim, then lee, daily at
/// 09:00 Asia/Seoul (00:00 UTC) from 1970-01-01.
fn escalating(repeat: u32, reescalate: bool) -> DispatchConfig {
    let mut c = team(Grouping::default(), &[("slack", Some("#platform"))]);
    let t = c.teams.get_mut("platform").unwrap();
    let tier = |after, targets: Vec<TierTarget>| Tier {
        after,
        targets,
        send_resolved: true,
    };
    let target = |r: &str, to: To| TierTarget {
        receiver: r.into(),
        to,
    };
    t.escalation = Some(Policy {
        tiers: vec![
            tier(
                0,
                vec![target("slack", To::Target("#platform-pages".into()))],
            ),
            tier(
                10 * MIN,
                vec![target("email", To::OnCall("primary".into()))],
            ),
            Tier {
                send_resolved: false,
                ..tier(30 * MIN, vec![target("sms", To::OnCall("primary".into()))])
            },
        ],
        repeat,
        repeat_every: H,
        reescalate_on_new_alert: reescalate,
    });
    for (name, email, sms) in [
        ("kim", "kim@x", "+1"),
        ("lee", "lee@x", "+2"),
        ("park", "park@x", "+3"),
    ] {
        t.people.insert(
            name.into(),
            Person {
                name: name.into(),
                contacts: [("email", email), ("sms", sms)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        );
    }
    t.oncall.insert(
        "primary".into(),
        Rotation {
            name: "primary".into(),
            people: vec!["kim".into(), "lee".into()],
            handoff: TimeOfDay::parse("09:00").unwrap(),
            timezone: chrono_tz::Asia::Seoul,
            length_days: 1,
            start: "1970-01-01".parse().unwrap(),
            overrides: Vec::new(),
        },
    );
    c
}

impl Clock {
    /// (time, tier, cycle, kind, receiver, target) of the escalation pages.
    fn pages(&self) -> Vec<(Millis, usize, u32, Kind, String, String)> {
        self.sent
            .iter()
            .filter_map(|n| {
                Some((
                    n.at,
                    n.tier?,
                    n.cycle?,
                    n.kind,
                    n.receiver.clone(),
                    n.target.clone().unwrap_or_default(),
                ))
            })
            .collect()
    }

    fn grouped(&self) -> Vec<(Millis, Kind, Vec<String>, Vec<String>)> {
        let mut c = Clock {
            d: Dispatcher::new(DispatchConfig::default()),
            now: 0,
            sent: self
                .sent
                .iter()
                .filter(|n| n.tier.is_none())
                .cloned()
                .collect(),
        };
        c.now = self.now;
        c.log()
    }
}

fn page(
    t: Millis,
    tier: usize,
    cycle: u32,
    kind: Kind,
    receiver: &str,
    target: &str,
) -> (Millis, usize, u32, Kind, String, String) {
    (t, tier, cycle, kind, receiver.into(), target.into())
}

/// Tiers count from the incident's first notice (group_wait after the
/// first alert); each tier pages once; the grouped notices go on as usual.
#[test]
fn tiers_fire_at_their_delay_from_the_first_notice() {
    let start = 30 * S;
    let mut c = Clock::new(escalating(0, false));
    c.set(0, "CPU", &[("i", "a")], Alarm);
    assert_eq!(c.d.next_deadline(), Some(start));
    c.advance(start);
    assert_eq!(
        c.pages(),
        vec![page(start, 0, 0, Kind::Firing, "slack", "#platform-pages")],
        "tier 0 (after 0) goes out with the first notice"
    );
    assert_eq!(c.d.next_deadline(), Some(start + 5 * MIN), "the next flush");
    c.advance(start + 10 * MIN - 1);
    assert_eq!(c.pages().len(), 1);
    c.advance(start + 10 * MIN);
    assert_eq!(
        c.pages()[1],
        page(start + 10 * MIN, 1, 0, Kind::Firing, "email", "kim@x")
    );
    assert_eq!(c.sent.last().unwrap().person.as_deref(), Some("kim"));
    c.advance(3 * H);
    assert_eq!(
        c.pages(),
        vec![
            page(start, 0, 0, Kind::Firing, "slack", "#platform-pages"),
            page(start + 10 * MIN, 1, 0, Kind::Firing, "email", "kim@x"),
            page(start + 30 * MIN, 2, 0, Kind::Firing, "sms", "+1"),
        ],
        "repeat: 0 is one pass"
    );
    // The grouped notice is not affected by the policy.
    assert_eq!(c.grouped(), vec![row(start, Kind::Firing, &["a"], &[])]);
    let n = c.sent.iter().find(|n| n.tier == Some(2)).unwrap();
    assert_eq!(n.alerts.firing.len(), 1);
    assert_eq!(c.d.stats().pages, 3);
}

#[test]
fn repeat_runs_the_policy_again_every_repeat_every_then_stops() {
    let s0 = 30 * S;
    let mut c = Clock::new(escalating(2, false));
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.advance(10 * H);
    let got: Vec<(Millis, usize, u32)> = c.pages().iter().map(|p| (p.0, p.1, p.2)).collect();
    let mut want = Vec::new();
    for cycle in 0..3u32 {
        for (tier, after) in [(0, 0), (1, 10 * MIN), (2, 30 * MIN)] {
            want.push((s0 + Millis::from(cycle) * H + after, tier, cycle));
        }
    }
    assert_eq!(got, want);
    // Every page has its own id; a re-run gives the same ids.
    let ids: BTreeSet<&str> = c.sent.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids.len(), c.sent.len());
    let mut again = Clock::new(escalating(2, false));
    again.set(0, "CPU", &[("i", "a")], Alarm);
    again.advance(10 * H);
    assert_eq!(again.sent, c.sent);
    let inc = c.d.incidents().next().unwrap();
    assert_eq!(inc.escalation.steps, 9, "all three passes taken");
    assert_eq!(
        c.d.next_deadline(),
        Some(10 * H + s0),
        "only the incident's flush ticks are left"
    );
}

#[test]
fn ack_in_the_middle_stops_escalation_and_records_who_and_when() {
    let s0 = 30 * S;
    let mut c = Clock::new(escalating(2, false));
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.advance(s0 + 15 * MIN);
    assert_eq!(c.pages().len(), 2, "slack and email so far");
    let id = c.sent[0].incident.clone();
    let inc = c.d.ack(&id, "kim", s0 + 15 * MIN).unwrap();
    assert_eq!(inc.acked_by.as_deref(), Some("kim"));
    assert_eq!(inc.acked_at, Some(s0 + 15 * MIN));
    let err = c.d.ack(&id, "lee", s0 + 16 * MIN).unwrap_err();
    assert_eq!(err.kind, AckErrorKind::AlreadyAcked);
    assert!(err.to_string().contains("by kim"), "{err}");
    assert_eq!(
        c.d.ack("nope", "lee", 0).unwrap_err().kind,
        AckErrorKind::NotFound
    );
    c.advance(5 * H);
    assert_eq!(c.pages().len(), 2, "no SMS, no second pass");
    // A new alert joining the acked incident does not restart it.
    c.set(5 * H, "CPU", &[("i", "b")], Alarm);
    c.advance(10 * H);
    assert_eq!(c.pages().len(), 2);
    assert!(
        c.grouped().iter().any(|r| r.2 == ["a", "b"]),
        "the channel still hears of b"
    );
    // It resolves: the targets paged (with send_resolved) are told once.
    c.set(10 * H, "CPU", &[("i", "a")], Fine);
    c.set(10 * H, "CPU", &[("i", "b")], Fine);
    c.advance(11 * H);
    let resolved: Vec<_> = c
        .pages()
        .into_iter()
        .filter(|p| p.3 == Kind::Resolved)
        .collect();
    assert_eq!(
        resolved
            .iter()
            .map(|p| (p.1, p.4.as_str(), p.5.as_str()))
            .collect::<Vec<_>>(),
        vec![(0, "slack", "#platform-pages"), (1, "email", "kim@x")]
    );
    let n = c
        .sent
        .iter()
        .rev()
        .find(|n| n.kind == Kind::Resolved && n.tier.is_some())
        .unwrap();
    assert_eq!(n.alerts.resolved.len(), 2);
    assert_eq!(c.d.next_deadline(), None);
    assert_eq!(
        c.d.ack(&id, "kim", 11 * H).unwrap_err().kind,
        AckErrorKind::NotFound
    );
}

#[test]
fn reescalate_on_new_alert_clears_the_ack_and_starts_a_new_round() {
    let s0 = 30 * S;
    let mut c = Clock::new(escalating(0, true));
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.advance(s0 + MIN);
    let id = c.sent[0].incident.clone();
    c.d.ack(&id, "kim", s0 + MIN).unwrap();
    c.advance(H);
    assert_eq!(c.pages().len(), 1);
    c.set(H, "CPU", &[("i", "b")], Alarm);
    let inc = c.d.incident(&id).unwrap();
    assert_eq!(inc.acked_by, None, "cleared");
    // The new round starts at the incident's next flush (its grid).
    let flush = s0 + 60 * MIN;
    c.advance(flush + 40 * MIN);
    let again: Vec<(Millis, usize)> = c.pages()[1..].iter().map(|p| (p.0, p.1)).collect();
    assert_eq!(
        again,
        vec![(flush, 0), (flush + 10 * MIN, 1), (flush + 30 * MIN, 2)]
    );
    assert_ne!(c.sent[0].id, c.pages_ids()[1], "a new round, new ids");
}

impl Clock {
    fn pages_ids(&self) -> Vec<String> {
        self.sent
            .iter()
            .filter(|n| n.tier.is_some())
            .map(|n| n.id.clone())
            .collect()
    }
}

#[test]
fn a_resolve_before_the_first_tier_pages_nobody() {
    let mut config = escalating(1, false);
    let p = config.teams.get_mut("platform").unwrap();
    p.escalation.as_mut().unwrap().tiers.remove(0); // first tier after 10 min
    let mut c = Clock::new(config);
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.set(5 * MIN, "CPU", &[("i", "a")], Fine);
    c.advance(3 * H);
    assert!(c.pages().is_empty(), "{:?}", c.pages());
    assert_eq!(
        c.log(),
        vec![
            row(30 * S, Kind::Firing, &["a"], &[]),
            row(5 * MIN + 30 * S, Kind::Resolved, &[], &["a"]),
        ]
    );
    assert_eq!(c.d.next_deadline(), None);
    // Resolved within group_wait: escalation never even starts.
    let mut c = Clock::new(escalating(0, false));
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.set(10 * S, "CPU", &[("i", "a")], Fine);
    c.advance(H);
    assert!(c.sent.is_empty());
}

#[test]
fn an_ack_of_a_resolved_incident_is_refused() {
    let mut c = Clock::new(escalating(0, false));
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.advance(MIN);
    let id = c.sent[0].incident.clone();
    c.set(2 * MIN, "CPU", &[("i", "a")], Fine);
    let e = c.d.ack(&id, "kim", 2 * MIN).unwrap_err();
    assert_eq!(e.kind, AckErrorKind::AlreadyResolved);
    c.advance(H);
    assert_eq!(
        c.pages().len(),
        2,
        "slack page, then its resolved notice; no tier 1"
    );
    assert_eq!(c.pages()[1].3, Kind::Resolved);
}

/// The on-call person is resolved when the tier fires: an override and a
/// handoff in between change who is paged.
#[test]
fn on_call_targets_follow_the_rotation_and_its_overrides() {
    let mut config = escalating(1, false);
    // The incident starts at 23:00:30 UTC; the handoff is at 00:00 UTC
    // (09:00 KST); park overrides 23:20–23:40 UTC.
    let day = 24 * H;
    let r = config
        .teams
        .get_mut("platform")
        .unwrap()
        .oncall
        .get_mut("primary")
        .unwrap();
    r.overrides.push(Override {
        person: "park".into(),
        from: day - 40 * MIN,
        to: day - 20 * MIN,
    });
    let mut c = Clock::new(config);
    c.set(day - H, "CPU", &[("i", "a")], Alarm);
    c.advance(day + 2 * H);
    let oncall: Vec<(Millis, &str, &str)> = c
        .sent
        .iter()
        .filter(|n| n.tier.is_some_and(|t| t > 0))
        .map(|n| {
            (
                n.at - (day - H + 30 * S),
                n.person.as_deref().unwrap(),
                n.target.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        oncall,
        vec![
            (10 * MIN, "kim", "kim@x"),     // 23:10
            (30 * MIN, "park", "+3"),       // 23:30, the override
            (H + 10 * MIN, "lee", "lee@x"), // 00:10, after the handoff
            (H + 30 * MIN, "lee", "+2"),
        ]
    );
}

/// A tier that came due while the dispatcher was down fires once after a
/// restore at a later `now`: not never, not twice.
#[test]
fn a_tier_due_while_down_fires_once_after_restore() {
    let s0 = 30 * S;
    let mut first = Clock::new(escalating(0, false));
    first.set(0, "CPU", &[("i", "a")], Alarm);
    first.advance(s0 + 5 * MIN);
    assert_eq!(first.pages().len(), 1);
    let json = serde_json::to_string(&first.d.snapshot()).unwrap();

    // Down from 5:30 to 20:00: the email tier (10:30) came due meanwhile.
    let state: State = serde_json::from_str(&json).unwrap();
    assert_eq!(state, first.d.snapshot(), "escalation state round-trips");
    let mut second = Dispatcher::restore(escalating(0, false), state);
    let mut out = Vec::new();
    let now = 20 * MIN;
    assert!(second.next_deadline().unwrap() <= now, "it is overdue");
    second.tick(now, &mut out);
    let tiers: Vec<(Option<usize>, Millis)> = out.iter().map(|n| (n.tier, n.at)).collect();
    assert_eq!(tiers, vec![(Some(1), now)], "once, at the restore");
    out.clear();
    second.tick(now, &mut out);
    second.tick(now + 1, &mut out);
    assert!(out.iter().all(|n| n.tier.is_none()), "not twice: {out:?}");
    // The same page as an uninterrupted run would have sent (same id), so a
    // notifier that remembers ids would not send it again either.
    first.advance(s0 + 10 * MIN);
    let direct = first.sent.iter().find(|n| n.tier == Some(1)).unwrap();
    let restored = {
        let mut s = Dispatcher::restore(escalating(0, false), serde_json::from_str(&json).unwrap());
        let mut o = Vec::new();
        s.tick(now, &mut o);
        o.remove(0)
    };
    assert_eq!(restored.id, direct.id);
    // The rest goes on at its time.
    let mut out = Vec::new();
    second.tick(s0 + 30 * MIN, &mut out);
    assert_eq!(
        out.iter().filter_map(|n| n.tier).collect::<Vec<_>>(),
        vec![2]
    );

    // Acks survive a restore too.
    let id = first.sent[0].incident.clone();
    first.d.ack(&id, "kim", s0 + 11 * MIN).unwrap();
    let snap = serde_json::to_string(&first.d.snapshot()).unwrap();
    let mut third = Dispatcher::restore(escalating(0, false), serde_json::from_str(&snap).unwrap());
    assert_eq!(
        third.incident(&id).unwrap().acked_by.as_deref(),
        Some("kim")
    );
    let mut out = Vec::new();
    third.tick(3 * H, &mut out);
    assert!(out.iter().all(|n| n.tier.is_none()), "acked: no more pages");
}

/// A snapshot written before escalation existed still loads.
#[test]
fn old_snapshots_without_escalation_fields_still_load() {
    let mut c = Clock::platform();
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.advance(MIN);
    let json = serde_json::to_string(&c.d.snapshot()).unwrap();
    assert!(
        !json.contains("escalation") && !json.contains("acked"),
        "{json}"
    );
    let n = serde_json::to_string(&c.sent[0]).unwrap();
    assert!(!n.contains("tier"), "{n}");
    let state: State = serde_json::from_str(&json).unwrap();
    assert_eq!(state.incidents[0].escalation, Default::default());
}

/// Steps due while every firing alert is silenced are skipped.
#[test]
fn a_step_due_while_muted_is_skipped() {
    let mut config = escalating(0, false);
    config
        .silences
        .push(silence("s1", &[r#"i="a""#], 5 * MIN, 20 * MIN));
    let mut c = Clock::new(config);
    c.set(0, "CPU", &[("i", "a")], Alarm);
    c.advance(H);
    let tiers: Vec<usize> = c.pages().iter().map(|p| p.1).collect();
    assert_eq!(tiers, vec![0, 2], "tier 1 (10:30) fell inside the silence");
    assert_eq!(c.d.stats().steps_muted, 1);
}
