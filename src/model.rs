//! The types that cross stage boundaries.
//!
//! An event flows as: bytes → [`Event`] (decode) → aggregate inputs (window) →
//! [`Datapoint`] per closed period (rules) → [`StateChange`] (alerts).
//! Stages share these types and nothing else.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. All event time in klaxon is this.
pub type Millis = i64;

/// Which of the three telemetry shapes an event has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Metric,
    Log,
    Span,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Metric, Signal::Log, Signal::Span];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metric => "metric",
            Signal::Log => "log",
            Signal::Span => "span",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scalar as seen by expressions: every number is an `f64`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val<'a> {
    Num(f64),
    Str(&'a str),
    Bool(bool),
}

/// A value inside `labels`, `fields` or `attributes`.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Bool(bool),
}

impl FieldValue<'_> {
    pub fn as_val(&self) -> Val<'_> {
        match self {
            FieldValue::Str(s) => Val::Str(s),
            FieldValue::Num(n) => Val::Num(*n),
            FieldValue::Bool(b) => Val::Bool(*b),
        }
    }
}

/// Named values attached to an event, in the order they were written.
pub type Attributes<'a> = Vec<(Cow<'a, str>, FieldValue<'a>)>;

/// A metric sample: `{"kind":"metric","time":…,"name":…,"value":…,"labels":{…}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric<'a> {
    pub time: Millis,
    pub name: Cow<'a, str>,
    pub value: f64,
    pub namespace: Option<Cow<'a, str>>,
    pub unit: Option<Cow<'a, str>>,
    pub labels: Attributes<'a>,
}

/// A structured log line.
#[derive(Clone, Debug, PartialEq)]
pub struct Log<'a> {
    pub time: Millis,
    pub service: Cow<'a, str>,
    pub level: Cow<'a, str>,
    pub message: Cow<'a, str>,
    pub fields: Attributes<'a>,
}

/// Whether a span succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanStatus {
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Ok => "ok",
            SpanStatus::Error => "error",
        }
    }
}

/// One span of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Span<'a> {
    pub time: Millis,
    pub trace_id: Cow<'a, str>,
    pub span_id: Cow<'a, str>,
    pub parent_span_id: Option<Cow<'a, str>>,
    pub service: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub duration_ms: f64,
    pub status: SpanStatus,
    pub attributes: Attributes<'a>,
}

/// A decoded, validated telemetry event. Strings borrow from the input where
/// they can, so decoding a line allocates only for escaped strings and the
/// attribute vector.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<'a> {
    Metric(Metric<'a>),
    Log(Log<'a>),
    Span(Span<'a>),
}

/// A built-in field of an event, resolved when a rule is compiled so that the
/// hot path never compares field names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Kind,
    Time,
    Name,
    Value,
    Namespace,
    Unit,
    Service,
    Level,
    Message,
    TraceId,
    SpanId,
    ParentSpanId,
    DurationMs,
    Status,
}

impl Field {
    /// The built-in fields that a signal has, by the names expressions use.
    pub fn lookup(signal: Signal, name: &str) -> Option<Field> {
        let f = match name {
            "kind" => Field::Kind,
            "time" => Field::Time,
            _ => match (signal, name) {
                (Signal::Metric, "name") => Field::Name,
                (Signal::Metric, "value") => Field::Value,
                (Signal::Metric, "namespace") => Field::Namespace,
                (Signal::Metric, "unit") => Field::Unit,
                (Signal::Log, "service") => Field::Service,
                (Signal::Log, "level") => Field::Level,
                (Signal::Log, "message") => Field::Message,
                (Signal::Span, "trace_id") => Field::TraceId,
                (Signal::Span, "span_id") => Field::SpanId,
                (Signal::Span, "parent_span_id") => Field::ParentSpanId,
                (Signal::Span, "service") => Field::Service,
                (Signal::Span, "name") => Field::Name,
                (Signal::Span, "duration_ms") => Field::DurationMs,
                (Signal::Span, "status") => Field::Status,
                _ => return None,
            },
        };
        Some(f)
    }
}

impl<'a> Event<'a> {
    pub fn signal(&self) -> Signal {
        match self {
            Event::Metric(_) => Signal::Metric,
            Event::Log(_) => Signal::Log,
            Event::Span(_) => Signal::Span,
        }
    }

    pub fn time(&self) -> Millis {
        match self {
            Event::Metric(m) => m.time,
            Event::Log(l) => l.time,
            Event::Span(s) => s.time,
        }
    }

    /// The event's `labels`, `fields` or `attributes`.
    pub fn attributes(&self) -> &Attributes<'a> {
        match self {
            Event::Metric(m) => &m.labels,
            Event::Log(l) => &l.fields,
            Event::Span(s) => &s.attributes,
        }
    }

    /// A built-in field, or `None` when this event has no such field.
    pub fn field(&self, field: Field) -> Option<Val<'_>> {
        Some(match (self, field) {
            (_, Field::Kind) => Val::Str(self.signal().as_str()),
            (_, Field::Time) => Val::Num(self.time() as f64),
            (Event::Metric(m), Field::Name) => Val::Str(&m.name),
            (Event::Metric(m), Field::Value) => Val::Num(m.value),
            (Event::Metric(m), Field::Namespace) => Val::Str(m.namespace.as_deref()?),
            (Event::Metric(m), Field::Unit) => Val::Str(m.unit.as_deref()?),
            (Event::Log(l), Field::Service) => Val::Str(&l.service),
            (Event::Log(l), Field::Level) => Val::Str(&l.level),
            (Event::Log(l), Field::Message) => Val::Str(&l.message),
            (Event::Span(sp), Field::TraceId) => Val::Str(&sp.trace_id),
            (Event::Span(sp), Field::SpanId) => Val::Str(&sp.span_id),
            (Event::Span(sp), Field::ParentSpanId) => Val::Str(sp.parent_span_id.as_deref()?),
            (Event::Span(sp), Field::Service) => Val::Str(&sp.service),
            (Event::Span(sp), Field::Name) => Val::Str(&sp.name),
            (Event::Span(sp), Field::DurationMs) => Val::Num(sp.duration_ms),
            (Event::Span(sp), Field::Status) => Val::Str(sp.status.as_str()),
            _ => return None,
        })
    }

    /// A label, field or attribute by name.
    pub fn attribute(&self, name: &str) -> Option<Val<'_>> {
        self.attributes()
            .iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_val())
    }
}

/// An aggregate function of a rule's `compute`, folded over one period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AggKind {
    /// `count()` or `count(pred)`: events (matching `pred`).
    Count,
    /// `sum(x)`.
    Sum,
    /// `avg(x)`.
    Avg,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `rate()`: events per second of the period.
    Rate,
    /// `ratio(pred)`: the share of events matching `pred`, 0 to 1.
    Ratio,
    /// `percentile(x, q)` with `q` in 0..=100, from a DDSketch (≤ 1% relative error).
    Percentile(f64),
}

/// The value an aggregate folds in for one event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AggInput {
    /// The event counts (or, for `ratio`, matches).
    Hit,
    /// The event counts for `ratio`'s denominator only.
    Miss,
    /// A number for `sum`/`avg`/`min`/`max`/`percentile`.
    Num(f64),
    /// The event lacks the value: it is skipped.
    Skip,
}

/// A rule's alarm state, as CloudWatch names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "ok",
            AlarmState::Alarm => "alarm",
            AlarmState::InsufficientData => "insufficient_data",
        }
    }

    pub fn parse(s: &str) -> Option<AlarmState> {
        match s {
            "ok" => Some(AlarmState::Ok),
            "alarm" => Some(AlarmState::Alarm),
            "insufficient_data" => Some(AlarmState::InsufficientData),
            _ => None,
        }
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One period's verdict for one series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datapoint {
    Breaching,
    NotBreaching,
    Missing,
}

/// Named values in the order they were defined; serialized as a JSON object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Ordered<V> {
    pub fn get(&self, name: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

impl Serialize for Ordered<String> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for Ordered<f64> {
    /// Non-finite numbers (0/0 in a derived value) have no JSON form: `null`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            if v.is_finite() {
                map.serialize_entry(k, v)?;
            } else {
                map.serialize_entry(k, &Option::<f64>::None)?;
            }
        }
        map.end()
    }
}

/// Reads a JSON object back in the order it was written (`null` → NaN for
/// numbers, the inverse of the serializer above).
struct OrderedVisitor<V>(std::marker::PhantomData<V>);

impl<'de, V: OrderedValue<'de>> Visitor<'de> for OrderedVisitor<V> {
    type Value = Ordered<V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(k) = map.next_key::<String>()? {
            let v = V::read(&mut map)?;
            out.push((k, v));
        }
        Ok(Ordered(out))
    }
}

/// The value types an [`Ordered`] map can be read back with.
trait OrderedValue<'de>: Sized {
    fn read<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error>;
}

impl<'de> OrderedValue<'de> for String {
    fn read<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
        map.next_value()
    }
}

impl<'de> OrderedValue<'de> for f64 {
    fn read<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
        Ok(map.next_value::<Option<f64>>()?.unwrap_or(f64::NAN))
    }
}

impl<'de> Deserialize<'de> for Ordered<String> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OrderedVisitor(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for Ordered<f64> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OrderedVisitor(std::marker::PhantomData))
    }
}

/// An alert state change: what `klaxon replay` prints and `klaxon run`
/// publishes. `id` is deterministic, so a consumer can dedup redeliveries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    pub id: String,
    pub fingerprint: String,
    pub rule: String,
    pub team: String,
    pub labels: Ordered<String>,
    pub state: AlarmState,
    pub previous: AlarmState,
    #[serde(serialize_with = "ser_rfc3339", deserialize_with = "de_rfc3339")]
    pub period_end: Millis,
    pub values: Ordered<f64>,
    pub severity: String,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
}

fn de_rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    crate::decode::time::parse_rfc3339(&s).map_err(serde::de::Error::custom)
}

fn ser_rfc3339<S: Serializer>(t: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*t))
}

/// `2026-01-01T00:05:00Z`, with milliseconds only when they are not zero.
pub fn format_rfc3339(t: Millis) -> String {
    use chrono::{DateTime, SecondsFormat};
    match DateTime::from_timestamp_millis(t) {
        Some(dt) if t % 1000 == 0 => dt.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => t.to_string(),
    }
}

/// A stable 64-bit FNV-1a hash. Unlike `std`'s hasher it never changes
/// between Rust releases, so fingerprints and ids stay the same across
/// versions and machines.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Writes a string and a separator byte that cannot occur in UTF-8.
    pub fn write_str(&mut self, s: &str) {
        self.write(s.as_bytes());
        self.write(&[0xff]);
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

/// [`Fnv`] of one string.
pub fn fnv_str(s: &str) -> u64 {
    let mut h = Fnv::default();
    h.write(s.as_bytes());
    h.finish()
}

/// The identity of one alert: the rule and its group_by values.
pub fn fingerprint(rule: &str, labels: &Ordered<String>) -> String {
    let mut h = Fnv::default();
    h.write_str(rule);
    let mut sorted: Vec<&(String, String)> = labels.0.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        h.write_str(k);
        h.write_str(v);
    }
    format!("{:016x}", h.finish())
}

/// The id of a state change: fingerprint, period end and new state.
pub fn change_id(fingerprint: &str, period_end: Millis, state: AlarmState) -> String {
    format!("{fingerprint}-{period_end}-{}", state.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_change_round_trips_through_json() {
        let c = StateChange {
            id: "f-1795771800000-alarm".into(),
            fingerprint: "f".into(),
            rule: "R".into(),
            team: "t".into(),
            labels: Ordered(vec![("b".into(), "1".into()), ("a".into(), "2".into())]),
            state: AlarmState::Alarm,
            previous: AlarmState::Ok,
            period_end: 1_795_771_800_123,
            values: Ordered(vec![("cpu".into(), 93.5)]),
            severity: "warning".into(),
            summary: "s".into(),
            runbook: None,
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<StateChange>(&json).unwrap(), c);
    }

    #[test]
    fn rfc3339_formats_whole_seconds_without_fraction() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_767_225_900_000), "2026-01-01T00:05:00Z");
        assert_eq!(
            format_rfc3339(1_767_225_900_250),
            "2026-01-01T00:05:00.250Z"
        );
    }

    #[test]
    fn fingerprint_ignores_label_order_but_not_values() {
        let a = Ordered(vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
        let b = Ordered(vec![("b".into(), "2".into()), ("a".into(), "1".into())]);
        let c = Ordered(vec![("a".into(), "2".into()), ("b".into(), "1".into())]);
        assert_eq!(fingerprint("r", &a), fingerprint("r", &b));
        assert_ne!(fingerprint("r", &a), fingerprint("r", &c));
        assert_ne!(fingerprint("r", &a), fingerprint("s", &a));
        // Pinned: a fingerprint is an id that must not drift between releases.
        assert_eq!(fingerprint("r", &a), fingerprint("r", &a.clone()));
        assert_eq!(fingerprint("r", &a).len(), 16);
    }

    #[test]
    fn ordered_maps_read_back_in_written_order() {
        let labels = Ordered(vec![("z".into(), "1".into()), ("a".into(), "2".into())]);
        let json = serde_json::to_string(&labels).unwrap();
        assert_eq!(json, r#"{"z":"1","a":"2"}"#);
        let back: Ordered<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, labels);
        let values = Ordered(vec![("cpu".into(), 93.5), ("bad".into(), f64::NAN)]);
        let json = serde_json::to_string(&values).unwrap();
        assert_eq!(json, r#"{"cpu":93.5,"bad":null}"#);
        let back: Ordered<f64> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.get("cpu"), Some(&93.5));
        assert!(back.get("bad").unwrap().is_nan());
    }
}
