//! The engine: events in, alert state changes out, in event time.
//!
//! For each event the engine advances the watermark (closing every period
//! of every rule that it has passed, in period order), then routes the event
//! to the rules of its signal: `where` → series by `group_by` → the open
//! period's aggregates. Closing a period turns each series' aggregates into
//! named values, the condition into a datapoint (breaching, not breaching or
//! missing), and the datapoint into a state through the rule's
//! [`Policy`](crate::rules::state::Policy). Time is only ever the events'
//! own: the engine never reads a clock, so a replay is deterministic.

use std::hash::{Hash, Hasher};

use evalexpr::{ContextWithMutableVariables, HashMapContext, Value};
use rustc_hash::{FxHashMap, FxHasher};

use crate::config::rules::{DEFAULT_LATENESS, MAX_GROUP_BY};
use crate::config::{Rule, RuleSet};
use crate::model::{
    change_id, fingerprint, AggInput, AggKind, AlarmState, Datapoint, Event, Millis, Ordered,
    Signal, StateChange, Val,
};
use crate::rules::expr::{agg_var, Expr, FastVal, Guard, MAX_AGGS};
use crate::rules::state::Tracker;
use crate::window::{period_start, AggState, Bins, Cursor};

/// Knobs of a run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How long after a period's end to wait for late events (default 30 s).
    pub lateness: Millis,
    /// Whether each event's time advances the watermark (a single ordered
    /// input: `replay`). `klaxon run` turns this off and drives time with
    /// [`Engine::advance_to`] from the watermark of all its partitions.
    pub follow_events: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lateness: DEFAULT_LATENESS,
            follow_events: true,
        }
    }
}

impl Options {
    pub fn with_lateness(lateness: Millis) -> Self {
        Options {
            lateness,
            ..Options::default()
        }
    }
}

/// Counters per rule, for `replay`'s summary and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleStats {
    pub rule: String,
    /// Events that passed `where`.
    pub matched: u64,
    /// Events that arrived for a period already closed. Not aggregated.
    pub late: u64,
    pub live_series: u64,
    pub open_windows: u64,
    pub evaluations: u64,
    pub state_changes: u64,
}

/// A group_by value as stored with its series.
#[derive(Clone, Debug, PartialEq)]
enum GroupVal {
    Absent,
    Str(Box<str>),
    Num(f64),
    Bool(bool),
}

impl GroupVal {
    fn matches(&self, v: Option<Val>) -> bool {
        match (self, v) {
            (GroupVal::Absent, None) => true,
            (GroupVal::Str(a), Some(Val::Str(b))) => &**a == b,
            (GroupVal::Num(a), Some(Val::Num(b))) => a.to_bits() == b.to_bits(),
            (GroupVal::Bool(a), Some(Val::Bool(b))) => *a == b,
            _ => false,
        }
    }

    fn from_val(v: Option<Val>) -> GroupVal {
        match v {
            None => GroupVal::Absent,
            Some(Val::Str(s)) => GroupVal::Str(s.into()),
            Some(Val::Num(n)) => GroupVal::Num(n),
            Some(Val::Bool(b)) => GroupVal::Bool(b),
        }
    }

    fn label(&self) -> Option<String> {
        match self {
            GroupVal::Absent => None,
            GroupVal::Str(s) => Some(s.to_string()),
            GroupVal::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => {
                Some(format!("{}", *n as i64))
            }
            GroupVal::Num(n) => Some(n.to_string()),
            GroupVal::Bool(b) => Some(b.to_string()),
        }
    }
}

/// How long (event time) a series in `ok` without events is kept.
pub const QUIET_SERIES_TTL: Millis = 24 * 3_600_000;

struct Series {
    key: Box<[GroupVal]>,
    labels: Ordered<String>,
    fingerprint: String,
    /// The first period this series had events in; it has no datapoints before.
    first_period: Millis,
    /// The end of the last period that had events.
    last_data: Millis,
    bins: Bins,
    tracker: Tracker,
    /// The computed values (by `compute` index) of the most recent period
    /// that had data; a name its inputs left undefined is `None`.
    last_values: Vec<Option<f64>>,
}

struct RuleRuntime {
    rule: Rule,
    /// `rule.filter` as a cheap first test and the rest of it.
    filter: Filter,
    kinds: Vec<AggKind>,
    cursor: Cursor,
    series: FxHashMap<u64, Vec<Series>>,
    stats: RuleStats,
}

/// A rule's `where`, split for speed: `guard && rest` (see
/// [`Expr::split_guard`](crate::rules::expr::Expr::split_guard)).
enum Filter {
    All,
    Guarded(Guard, Option<Expr>),
    Expr(Expr),
}

impl Filter {
    fn new(filter: Option<&Expr>) -> Filter {
        match filter {
            None => Filter::All,
            Some(e) => match e.split_guard() {
                Some((g, rest)) => Filter::Guarded(g, rest),
                None => Filter::Expr(e.clone()),
            },
        }
    }

    #[inline]
    fn test(&self, ev: &Event) -> bool {
        match self {
            Filter::All => true,
            Filter::Guarded(g, rest) => g.test(ev) && rest.as_ref().is_none_or(|r| r.test(ev)),
            Filter::Expr(e) => e.test(ev),
        }
    }
}

/// The windowing and rule-evaluation engine.
pub struct Engine {
    opts: Options,
    rules: Vec<RuleRuntime>,
    by_signal: [Vec<usize>; 3],
    /// Event time up to which periods have been closed.
    watermark: Option<Millis>,
    /// The first event time seen: the cursors start there.
    first_event: Option<Millis>,
    /// The latest event time seen.
    last_event: Option<Millis>,
    /// Periods that a watermark this far along had already closed produce
    /// no state changes: another run published them (a rebuild after a
    /// rebalance or restart re-reads them only to rebuild state).
    published_through: Option<Millis>,
    /// Fingerprint hashes of series created since the last
    /// [`take_new_series`](Self::take_new_series).
    new_series: Vec<u64>,
}

impl Engine {
    pub fn new(set: RuleSet, opts: Options) -> Engine {
        let mut engine = Engine {
            opts,
            rules: Vec::new(),
            by_signal: Default::default(),
            watermark: None,
            first_event: None,
            last_event: None,
            published_through: None,
            new_series: Vec::new(),
        };
        engine.replace_rules(set);
        engine
    }

    fn runtime(&self, rule: Rule) -> RuleRuntime {
        let mut cursor = Cursor::new(rule.period, rule.lateness.unwrap_or(self.opts.lateness));
        if let Some(t) = self.first_event {
            cursor.start_at(self.watermark.unwrap_or(t).max(t));
        }
        RuleRuntime {
            filter: Filter::new(rule.filter.as_ref()),
            kinds: rule.aggs.iter().map(|a| a.kind).collect(),
            cursor,
            series: FxHashMap::default(),
            stats: RuleStats {
                rule: rule.name.clone(),
                ..Default::default()
            },
            rule,
        }
    }

    /// Swaps in a new rule set (a reload). A rule whose name and definition
    /// are unchanged keeps its open windows and alarm states; a changed or
    /// new rule starts fresh from the current event time; a removed rule's
    /// state is dropped.
    pub fn replace_rules(&mut self, set: RuleSet) {
        let mut old: Vec<Option<RuleRuntime>> = std::mem::take(&mut self.rules)
            .into_iter()
            .map(Some)
            .collect();
        let mut rules = Vec::with_capacity(set.rules.len());
        for rule in set.rules {
            let kept = old.iter_mut().find(|o| {
                o.as_ref()
                    .is_some_and(|o| o.rule.name == rule.name && o.rule.digest == rule.digest)
            });
            match kept.and_then(Option::take) {
                Some(mut rt) => {
                    rt.filter = Filter::new(rule.filter.as_ref());
                    rt.rule = rule; // same definition; file path may have moved
                    rules.push(rt);
                }
                None => rules.push(self.runtime(rule)),
            }
        }
        self.by_signal = Default::default();
        for (i, r) in rules.iter().enumerate() {
            self.by_signal[r.rule.signal.index()].push(i);
        }
        self.rules = rules;
    }

    /// Event time up to which periods have been closed (with
    /// `follow_events`, the latest event time seen).
    pub fn watermark(&self) -> Option<Millis> {
        self.watermark
    }

    /// The latest event time seen.
    pub fn last_event(&self) -> Option<Millis> {
        self.last_event
    }

    /// Suppresses the state changes of periods that a watermark at `t` had
    /// closed: they were published before (see `klaxon run`'s offsets).
    pub fn set_published_through(&mut self, t: Option<Millis>) {
        self.published_through = t;
    }

    /// The oldest event time the engine still needs: the start of the
    /// oldest period that is open, or that the next evaluation of a rule
    /// reads (its last N+2 periods). Events before it can be forgotten, so
    /// a consumer may commit past them. `None` before the first event.
    pub fn needed_since(&self) -> Option<Millis> {
        self.rules
            .iter()
            .filter_map(|r| {
                let next = r.cursor.next_start()?;
                Some(next - r.rule.period * r.rule.policy.range() as Millis)
            })
            .min()
    }

    /// Whether series were created since the last
    /// [`take_new_series`](Self::take_new_series).
    #[inline]
    pub fn has_new_series(&self) -> bool {
        !self.new_series.is_empty()
    }

    /// Fingerprint hashes of the series created since the last call.
    pub fn take_new_series(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.new_series)
    }

    /// Feeds one event; with `follow_events`, state changes of the periods
    /// its time closes go to `out`. Returns whether the event came too late
    /// for some rule that matched it (it was counted and dropped there).
    pub fn ingest(&mut self, ev: &Event, out: &mut Vec<StateChange>) -> bool {
        let t = ev.time();
        if self.first_event.is_none() {
            self.first_event = Some(t);
            for r in &mut self.rules {
                r.cursor.start_at(t);
            }
        }
        if self.last_event.is_none_or(|l| t > l) {
            self.last_event = Some(t);
            if self.opts.follow_events {
                self.watermark = Some(t);
                self.close(out, |c, w| c.pop_due(w), t);
            }
        }
        let mut late = false;
        // Only `klaxon run` (which drains it) tracks new series.
        let track = !self.opts.follow_events;
        for &ri in &self.by_signal[ev.signal().index()] {
            late |= self.rules[ri].ingest(ev, t, track.then_some(&mut self.new_series));
        }
        late
    }

    /// Advances event time without an event: closes every period that a
    /// watermark at `t` has passed.
    pub fn advance_to(&mut self, t: Millis, out: &mut Vec<StateChange>) {
        if self.first_event.is_some() && self.watermark.is_none_or(|w| t > w) {
            self.watermark = Some(t);
            self.close(out, |c, w| c.pop_due(w), t);
        }
    }

    /// End of input: closes every period that has begun.
    pub fn flush(&mut self, out: &mut Vec<StateChange>) {
        if let Some(last) = self.last_event {
            self.close(out, |c, l| c.pop_all(l), last);
        }
    }

    /// Closes due periods of all rules, in order of period end, then rule.
    fn close(
        &mut self,
        out: &mut Vec<StateChange>,
        mut pop: impl FnMut(&mut Cursor, Millis) -> Option<Millis>,
        t: Millis,
    ) {
        let mut due: Vec<(Millis, usize, Millis)> = Vec::new();
        for (i, r) in self.rules.iter_mut().enumerate() {
            while let Some(start) = pop(&mut r.cursor, t) {
                due.push((start + r.rule.period, i, start));
            }
        }
        due.sort_unstable();
        for (_, i, start) in due {
            let before = out.len();
            let r = &mut self.rules[i];
            r.close_period(start, out);
            let published = self
                .published_through
                .is_some_and(|p| r.cursor.was_due(start, p));
            if published {
                r.stats.state_changes -= (out.len() - before) as u64;
                out.truncate(before);
            }
        }
    }

    pub fn stats(&self) -> Vec<RuleStats> {
        self.rules
            .iter()
            .map(|r| {
                let mut s = r.stats.clone();
                s.live_series = r.series.values().map(|v| v.len() as u64).sum();
                s.open_windows = r
                    .series
                    .values()
                    .flatten()
                    .map(|s| s.bins.len() as u64)
                    .sum();
                s
            })
            .collect()
    }

    /// The current state of every series of `rule`: `(labels, state)`.
    pub fn states(&self, rule: &str) -> Vec<(Ordered<String>, AlarmState)> {
        let mut v: Vec<_> = self
            .rules
            .iter()
            .filter(|r| r.rule.name == rule)
            .flat_map(|r| r.series.values().flatten())
            .map(|s| (s.labels.clone(), s.tracker.state()))
            .collect();
        v.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
        v
    }

    pub fn rule_signal(&self, rule: &str) -> Option<Signal> {
        self.rules
            .iter()
            .find(|r| r.rule.name == rule)
            .map(|r| r.rule.signal)
    }
}

impl RuleRuntime {
    #[inline]
    /// Returns whether the event was late for this rule.
    fn ingest(&mut self, ev: &Event, t: Millis, new_series: Option<&mut Vec<u64>>) -> bool {
        if !self.filter.test(ev) {
            return false;
        }
        let rule = &self.rule;
        self.stats.matched += 1;
        if self.cursor.is_closed(t) {
            self.stats.late += 1;
            return true;
        }
        // Evaluate each group_by value once: it feeds the hash and the key match.
        let mut vals: [Option<Val>; MAX_GROUP_BY] = [None; MAX_GROUP_BY];
        let mut h = FxHasher::default();
        for (slot, (_, e)) in vals.iter_mut().zip(&rule.group_by) {
            *slot = e.eval(ev);
            match *slot {
                None => 0u8.hash(&mut h),
                Some(Val::Str(s)) => s.hash(&mut h),
                Some(Val::Num(n)) => n.to_bits().hash(&mut h),
                Some(Val::Bool(b)) => b.hash(&mut h),
            }
        }
        let vals = &vals[..rule.group_by.len()];
        let start = period_start(t, rule.period);
        let bucket = self.series.entry(h.finish()).or_default();
        let pos = bucket
            .iter()
            .position(|s| s.key.iter().zip(vals).all(|(k, v)| k.matches(*v)));
        let series = match pos {
            Some(i) => &mut bucket[i],
            None => {
                let key: Box<[GroupVal]> = rule
                    .group_by
                    .iter()
                    .map(|(_, e)| GroupVal::from_val(e.eval(ev)))
                    .collect();
                let labels = Ordered(
                    rule.group_by
                        .iter()
                        .zip(key.iter())
                        .filter_map(|((name, _), v)| Some((name.clone(), v.label()?)))
                        .collect(),
                );
                let fingerprint = fingerprint(&rule.name, &labels);
                if let Some(n) = new_series {
                    n.push(crate::model::fnv_str(&fingerprint));
                }
                bucket.push(Series {
                    fingerprint,
                    key,
                    labels,
                    first_period: start,
                    last_data: start,
                    bins: Bins::default(),
                    tracker: Tracker::default(),
                    last_values: Vec::new(),
                });
                bucket.last_mut().expect("just pushed")
            }
        };
        let states = series.bins.get_mut(start, &self.kinds);
        for (state, agg) in states.iter_mut().zip(&rule.aggs) {
            let input = match (agg.kind, &agg.arg) {
                (AggKind::Count | AggKind::Ratio, Some(p)) => {
                    if p.test(ev) {
                        AggInput::Hit
                    } else {
                        AggInput::Miss
                    }
                }
                (_, None) => AggInput::Hit,
                (_, Some(x)) => x.number(ev).map_or(AggInput::Skip, AggInput::Num),
            };
            state.update(input);
        }
        false
    }

    fn close_period(&mut self, start: Millis, out: &mut Vec<StateChange>) {
        let rule = &self.rule;
        let end = start + rule.period;
        let secs = rule.period as f64 / 1000.0;
        let mut changes = Vec::new();
        let mut scratch = Vec::new();
        for bucket in self.series.values_mut() {
            for s in bucket.iter_mut() {
                if s.first_period > start {
                    continue;
                }
                let dp = match s.bins.take(start) {
                    None => Datapoint::Missing,
                    Some(states) => {
                        s.last_data = end;
                        evaluate(
                            rule,
                            &states,
                            &s.labels,
                            secs,
                            &mut scratch,
                            &mut s.last_values,
                        )
                    }
                };
                self.stats.evaluations += 1;
                if let Some((previous, state)) = s.tracker.push(&rule.policy, dp) {
                    let values = Ordered(
                        rule.compute
                            .iter()
                            .zip(&s.last_values)
                            .filter_map(|((name, _), v)| Some((name.clone(), (*v)?)))
                            .collect(),
                    );
                    let summary = rule.summary.render(
                        &values,
                        &s.labels,
                        &[
                            ("rule", &rule.name),
                            ("team", &rule.team),
                            ("severity", &rule.severity),
                            ("state", state.as_str()),
                        ],
                    );
                    changes.push(StateChange {
                        id: change_id(&s.fingerprint, end, state),
                        fingerprint: s.fingerprint.clone(),
                        rule: rule.name.clone(),
                        team: rule.team.clone(),
                        labels: s.labels.clone(),
                        state,
                        previous,
                        period_end: end,
                        values,
                        severity: rule.severity.clone(),
                        summary,
                        runbook: rule.runbook.clone(),
                    });
                }
            }
            // A series that has gone quiet for the whole range in
            // insufficient_data holds nothing: forget it until it returns.
            // One quiet for a day in `ok` (a terminated instance, under
            // `not_breaching` or `ignore`, stays `ok` for ever) is
            // forgotten too; if it returns, it starts over in
            // insufficient_data, as a new CloudWatch alarm would. An
            // alarming series is kept: its alarm still means something.
            bucket.retain(|s| {
                let quiet = s.bins.is_empty() && s.tracker.is_idle(&rule.policy);
                let forget = match s.tracker.state() {
                    AlarmState::InsufficientData => true,
                    AlarmState::Ok => end - s.last_data >= QUIET_SERIES_TTL,
                    AlarmState::Alarm => false,
                };
                !(quiet && forget)
            });
        }
        self.series.retain(|_, b| !b.is_empty());
        changes.sort_by(|a, b| a.labels.0.cmp(&b.labels.0));
        self.stats.state_changes += changes.len() as u64;
        out.extend(changes);
    }
}

/// One period's aggregates → named values (into `values`, by `compute`
/// index) → a datapoint. `scratch` is reused between calls.
fn evaluate(
    rule: &Rule,
    states: &[AggState],
    labels: &Ordered<String>,
    secs: f64,
    scratch: &mut Vec<Option<f64>>,
    values: &mut Vec<Option<f64>>,
) -> Datapoint {
    if rule.aggs.len() <= MAX_AGGS
        && rule.condition.fast().is_some()
        && rule.compute.iter().all(|(_, f)| f.fast().is_some())
    {
        return evaluate_fast(rule, states, secs, scratch, values);
    }
    evaluate_evalexpr(rule, states, labels, secs, values)
}

/// The compiled path: slots instead of an evalexpr context.
fn evaluate_fast(
    rule: &Rule,
    states: &[AggState],
    secs: f64,
    slots: &mut Vec<Option<f64>>,
    values: &mut Vec<Option<f64>>,
) -> Datapoint {
    slots.clear();
    slots.resize(MAX_AGGS + rule.compute.len(), None);
    for (i, (state, agg)) in states.iter().zip(&rule.aggs).enumerate() {
        slots[i] = state.finish(agg.kind, secs);
    }
    values.clear();
    for (i, (_, f)) in rule.compute.iter().enumerate() {
        let v = match f.fast().and_then(|f| f.eval(slots)) {
            Some(FastVal::Num(v)) => Some(v),
            _ => None,
        };
        slots[MAX_AGGS + i] = v;
        values.push(v);
    }
    datapoint(match rule.condition.fast().and_then(|f| f.eval(slots)) {
        Some(FastVal::Bool(b)) => Some(b),
        _ => None,
    })
}

fn evaluate_evalexpr(
    rule: &Rule,
    states: &[AggState],
    labels: &Ordered<String>,
    secs: f64,
    values: &mut Vec<Option<f64>>,
) -> Datapoint {
    let mut ctx = HashMapContext::new();
    for (i, (state, agg)) in states.iter().zip(&rule.aggs).enumerate() {
        if let Some(v) = state.finish(agg.kind, secs) {
            let _ = ctx.set_value(agg_var(i), Value::Float(v));
        }
    }
    values.clear();
    for (name, f) in &rule.compute {
        let v = match f.eval(&ctx) {
            Some(Value::Float(v)) => Some(v),
            Some(Value::Int(v)) => Some(v as f64),
            _ => None, // an input it needs saw nothing this period
        };
        if let Some(v) = v {
            let _ = ctx.set_value(name.clone(), Value::Float(v));
        }
        values.push(v);
    }
    for (k, v) in &labels.0 {
        let _ = ctx.set_value(k.clone(), Value::String(v.clone()));
    }
    datapoint(match rule.condition.eval(&ctx) {
        Some(Value::Boolean(b)) => Some(b),
        _ => None,
    })
}

/// A condition's verdict; `None` (a value it needs is missing) is a missing datapoint.
fn datapoint(breaching: Option<bool>) -> Datapoint {
    match breaching {
        Some(true) => Datapoint::Breaching,
        Some(false) => Datapoint::NotBreaching,
        None => Datapoint::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rules::compile_file;
    use crate::config::yaml;
    use crate::decode::{Decoder, JsonDecoder};

    /// One rule over `cpu` per host, 1-minute periods, 1 of 1, with the
    /// given missing-data treatment.
    fn engine(treat: &str) -> Engine {
        let text = format!(
            "team: t\nrules:\n  - name: Hot\n    signal: metric\n    where: name == \"cpu\"\n    \
             group_by: [host]\n    period: 1m\n    compute: {{ cpu: avg(value) }}\n    condition: cpu > 80\n    \
             evaluation_periods: 1\n    treat_missing_data: {treat}\n"
        );
        let doc = yaml::parse(&text).unwrap();
        let rules = compile_file(std::path::Path::new("t.yaml"), &doc).unwrap();
        Engine::new(RuleSet { rules }, Options::with_lateness(0))
    }

    fn feed(e: &mut Engine, at: Millis, host: &str, value: f64) -> Vec<StateChange> {
        let line = format!(
            r#"{{"kind":"metric","time":{at},"name":"cpu","value":{value},"labels":{{"host":"{host}"}}}}"#
        );
        let ev = JsonDecoder.decode(line.as_bytes()).unwrap();
        let mut out = Vec::new();
        e.ingest(&ev, &mut out);
        out
    }

    fn hosts(e: &Engine) -> Vec<String> {
        e.states("Hot")
            .into_iter()
            .map(|(labels, _)| labels.0[0].1.clone())
            .collect()
    }

    const MIN: Millis = 60_000;

    #[test]
    fn quiet_series_are_forgotten_after_a_day_unless_alarming() {
        // `ignore`: a quiet series keeps its state for ever.
        let mut e = engine("ignore");
        feed(&mut e, 0, "gone", 10.0); // ok, then never again
        feed(&mut e, 0, "hot", 95.0); // alarm, then never again
                                      // `live` reports every minute for a day and more, moving time on.
        let mut t = 0;
        while t <= QUIET_SERIES_TTL - 2 * MIN {
            feed(&mut e, t, "live", 10.0);
            t += MIN;
        }
        assert_eq!(hosts(&e), ["gone", "hot", "live"], "not yet a day");
        while t <= QUIET_SERIES_TTL + 2 * MIN {
            feed(&mut e, t, "live", 10.0);
            t += MIN;
        }
        assert_eq!(
            hosts(&e),
            ["hot", "live"],
            "`gone` (ok) is forgotten; `hot` keeps its alarm"
        );
        let states: Vec<AlarmState> = e.states("Hot").into_iter().map(|(_, s)| s).collect();
        assert_eq!(states, [AlarmState::Alarm, AlarmState::Ok]);

        // Back after all: it starts over, like a new alarm.
        let mut out = feed(&mut e, t, "gone", 10.0);
        out.extend(feed(&mut e, t + 2 * MIN, "live", 10.0));
        let back: Vec<(AlarmState, AlarmState)> = out
            .iter()
            .filter(|c| c.labels.0[0].1 == "gone")
            .map(|c| (c.previous, c.state))
            .collect();
        assert_eq!(back, [(AlarmState::InsufficientData, AlarmState::Ok)]);
    }
}
