//! The JSON wire format, version 1 (`schemas/*.schema.json`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{time::parse_rfc3339, DecodeError, Decoder};
use crate::model::{Attributes, Event, FieldValue, Log, Metric, Millis, Span, SpanStatus};

/// Decodes one JSON object into an [`Event`], validating it against the
/// v1 contract: required fields per kind, no unknown fields (a typo such as
/// `lables` would otherwise silently drop every label), string labels.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonDecoder;

impl Decoder for JsonDecoder {
    /// The fast path ([`super::fast`]) for what it is sure of, else serde.
    fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Event<'a>, DecodeError> {
        match super::fast::decode(bytes) {
            Some(result) => result,
            None => decode_serde(bytes),
        }
    }
}

/// The serde_json path: the reference for what is accepted, and the only
/// source of syntax and type errors.
pub(super) fn decode_serde(bytes: &[u8]) -> Result<Event<'_>, DecodeError> {
    let raw: Raw<'_> = serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        let reason = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        DecodeError {
            column: Some(e.column()),
            field: None,
            reason,
        }
    })?;
    raw.validate()
}

/// Every field any kind may have; `validate` checks which belong to which.
/// The fast path fills the same struct, so that both validate alike.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw<'a> {
    #[serde(borrow)]
    pub(super) kind: Option<CowStr<'a>>,
    pub(super) time: Option<Time>,
    #[serde(borrow)]
    pub(super) name: Option<CowStr<'a>>,
    pub(super) value: Option<f64>,
    #[serde(borrow)]
    pub(super) namespace: Option<CowStr<'a>>,
    #[serde(borrow)]
    pub(super) unit: Option<CowStr<'a>>,
    #[serde(borrow)]
    pub(super) labels: Option<Pairs<'a>>,
    #[serde(borrow)]
    pub(super) service: Option<CowStr<'a>>,
    #[serde(borrow)]
    pub(super) level: Option<CowStr<'a>>,
    #[serde(borrow)]
    pub(super) message: Option<CowStr<'a>>,
    #[serde(borrow)]
    pub(super) fields: Option<Pairs<'a>>,
    #[serde(borrow)]
    pub(super) trace_id: Option<CowStr<'a>>,
    #[serde(borrow)]
    pub(super) span_id: Option<CowStr<'a>>,
    #[serde(borrow)]
    pub(super) parent_span_id: Option<CowStr<'a>>,
    pub(super) duration_ms: Option<f64>,
    #[serde(borrow)]
    pub(super) status: Option<CowStr<'a>>,
    #[serde(borrow)]
    pub(super) attributes: Option<Pairs<'a>>,
}

fn required<T>(v: Option<T>, kind: &str, field: &str) -> Result<T, DecodeError> {
    v.ok_or_else(|| DecodeError::field(field, format!("missing, and a {kind} event requires it")))
}

#[inline]
fn absent<T>(v: &Option<T>, kind: &str, field: &str) -> Result<(), DecodeError> {
    match v {
        Some(_) => Err(not_part_of(kind, field)),
        None => Ok(()),
    }
}

#[cold]
fn not_part_of(kind: &str, field: &str) -> DecodeError {
    DecodeError::field(field, format!("is not part of a {kind} event"))
}

impl<'a> Raw<'a> {
    pub(super) fn validate(self) -> Result<Event<'a>, DecodeError> {
        let kind = self.kind.map(|c| c.0).ok_or_else(|| {
            DecodeError::field("kind", "missing; expected \"metric\", \"log\" or \"span\"")
        })?;
        let time = self
            .time
            .ok_or_else(|| DecodeError::field("time", "missing"))?
            .0;
        match kind.as_ref() {
            "metric" => {
                let k = "metric";
                for (v, f) in [
                    (&self.service, "service"),
                    (&self.level, "level"),
                    (&self.message, "message"),
                    (&self.trace_id, "trace_id"),
                    (&self.span_id, "span_id"),
                    (&self.parent_span_id, "parent_span_id"),
                    (&self.status, "status"),
                ] {
                    absent(v, k, f)?;
                }
                absent(&self.fields, k, "fields")?;
                absent(&self.attributes, k, "attributes")?;
                absent(&self.duration_ms, k, "duration_ms")?;
                let labels = self.labels.map(|p| p.0).unwrap_or_default();
                if let Some((key, _)) = labels
                    .iter()
                    .find(|(_, v)| !matches!(v, FieldValue::Str(_)))
                {
                    return Err(DecodeError::field(
                        &format!("labels.{key}"),
                        "label values must be strings",
                    ));
                }
                Ok(Event::Metric(Metric {
                    time,
                    name: non_empty(required(self.name.map(|c| c.0), k, "name")?, "name")?,
                    value: required(self.value, k, "value")?,
                    namespace: self.namespace.map(|c| c.0),
                    unit: self.unit.map(|c| c.0),
                    labels,
                }))
            }
            "log" => {
                let k = "log";
                for (v, f) in [
                    (&self.name, "name"),
                    (&self.namespace, "namespace"),
                    (&self.unit, "unit"),
                    (&self.trace_id, "trace_id"),
                    (&self.span_id, "span_id"),
                    (&self.parent_span_id, "parent_span_id"),
                    (&self.status, "status"),
                ] {
                    absent(v, k, f)?;
                }
                absent(&self.labels, k, "labels")?;
                absent(&self.attributes, k, "attributes")?;
                absent(&self.value, k, "value")?;
                absent(&self.duration_ms, k, "duration_ms")?;
                Ok(Event::Log(Log {
                    time,
                    service: required(self.service.map(|c| c.0), k, "service")?,
                    level: required(self.level.map(|c| c.0), k, "level")?,
                    message: required(self.message.map(|c| c.0), k, "message")?,
                    fields: self.fields.map(|p| p.0).unwrap_or_default(),
                }))
            }
            "span" => {
                let k = "span";
                for (v, f) in [
                    (&self.namespace, "namespace"),
                    (&self.unit, "unit"),
                    (&self.level, "level"),
                    (&self.message, "message"),
                ] {
                    absent(v, k, f)?;
                }
                absent(&self.labels, k, "labels")?;
                absent(&self.fields, k, "fields")?;
                absent(&self.value, k, "value")?;
                let duration_ms = required(self.duration_ms, k, "duration_ms")?;
                if duration_ms < 0.0 {
                    return Err(DecodeError::field("duration_ms", "must not be negative"));
                }
                let status = match required(self.status.map(|c| c.0), k, "status")?.as_ref() {
                    "ok" => SpanStatus::Ok,
                    "error" => SpanStatus::Error,
                    other => {
                        return Err(DecodeError::field(
                            "status",
                            format!("must be \"ok\" or \"error\", not {other:?}"),
                        ))
                    }
                };
                Ok(Event::Span(Span {
                    time,
                    trace_id: non_empty(
                        required(self.trace_id.map(|c| c.0), k, "trace_id")?,
                        "trace_id",
                    )?,
                    span_id: non_empty(
                        required(self.span_id.map(|c| c.0), k, "span_id")?,
                        "span_id",
                    )?,
                    parent_span_id: self.parent_span_id.map(|c| c.0),
                    service: required(self.service.map(|c| c.0), k, "service")?,
                    name: required(self.name.map(|c| c.0), k, "name")?,
                    duration_ms,
                    status,
                    attributes: self.attributes.map(|p| p.0).unwrap_or_default(),
                }))
            }
            other => Err(DecodeError::field(
                "kind",
                format!("must be \"metric\", \"log\" or \"span\", not {other:?}"),
            )),
        }
    }
}

fn non_empty<'a>(s: Cow<'a, str>, field: &str) -> Result<Cow<'a, str>, DecodeError> {
    if s.is_empty() {
        Err(DecodeError::field(field, "must not be empty"))
    } else {
        Ok(s)
    }
}

/// `time`: an RFC 3339 string or integer epoch milliseconds.
pub(super) struct Time(pub(super) Millis);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 string or epoch milliseconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Time, E> {
                i64::try_from(v)
                    .map(Time)
                    .map_err(|_| E::custom("time is out of range"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Time, E> {
                Ok(Time(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Time, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(Time(v as i64))
                } else {
                    Err(E::custom(
                        "time in epoch milliseconds must be a whole number",
                    ))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Time, E> {
                parse_rfc3339(v).map(Time).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object of string keys to scalar values, kept as a vector: events
/// carry a handful of labels, where a linear scan beats hashing.
pub(super) struct Pairs<'a>(pub(super) Attributes<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of names to strings, numbers or booleans")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs<'a>, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(k) = map.next_key::<CowStr<'a>>()? {
                    let val = map.next_value::<Scalar<'a>>()?;
                    v.push((k.0, val.0));
                }
                Ok(Pairs(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A string that borrows from the input unless it had escapes.
pub(super) struct CowStr<'a>(pub(super) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(ScalarVisitor(std::marker::PhantomData))
            .and_then(|s| match s.0 {
                FieldValue::Str(s) => Ok(CowStr(s)),
                _ => Err(de::Error::custom("expected a string")),
            })
    }
}

struct Scalar<'a>(FieldValue<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(std::marker::PhantomData))
    }
}

struct ScalarVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'a>, E> {
        Ok(Scalar(FieldValue::Str(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'a>, E> {
        Ok(Scalar(FieldValue::Str(Cow::Owned(v.to_string()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar<'a>, E> {
        Ok(Scalar(FieldValue::Str(Cow::Owned(v))))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'a>, E> {
        Ok(Scalar(FieldValue::Num(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'a>, E> {
        Ok(Scalar(FieldValue::Num(v as f64)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'a>, E> {
        Ok(Scalar(FieldValue::Num(v as f64)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'a>, E> {
        Ok(Scalar(FieldValue::Bool(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Val;

    fn decode(s: &str) -> Result<Event<'_>, DecodeError> {
        JsonDecoder.decode(s.as_bytes())
    }

    #[test]
    fn decodes_each_kind_with_borrowed_strings() {
        let m = decode(r#"{"kind":"metric","time":"2026-01-01T00:00:00Z","name":"CPUUtilization","namespace":"AWS/EC2","value":85,"labels":{"InstanceId":"i-1"}}"#).unwrap();
        assert_eq!(m.time(), 1_767_225_600_000);
        assert_eq!(m.attribute("InstanceId"), Some(Val::Str("i-1")));
        match &m {
            Event::Metric(m) => {
                assert!(matches!(m.name, Cow::Borrowed(_)));
                assert_eq!(m.value, 85.0);
            }
            _ => panic!("not a metric"),
        }
        let l = decode(r#"{"kind":"log","time":1767225600000,"service":"api","level":"ERROR","message":"boom \"x\"","fields":{"status_code":503,"slow":true,"user_id":"u1"}}"#).unwrap();
        assert_eq!(l.attribute("status_code"), Some(Val::Num(503.0)));
        assert_eq!(l.attribute("slow"), Some(Val::Bool(true)));
        let s = decode(r#"{"kind":"span","time":1767225600000,"trace_id":"t","span_id":"s","service":"api","name":"GET /","duration_ms":12.5,"status":"error","attributes":{}}"#).unwrap();
        assert_eq!(s.attribute("missing"), None);
    }

    #[test]
    fn rejects_with_a_reason_and_a_field() {
        // (input, field at fault, words the reason must contain)
        let cases: &[(&str, Option<&str>, &str)] = &[
            (
                r#"{"kind":"metric","time":1,"name":"x"}"#,
                Some("value"),
                "missing",
            ),
            (
                r#"{"kind":"metric","time":1,"name":"x","value":"high"}"#,
                None,
                "invalid type",
            ),
            (
                r#"{"kind":"metric","time":1,"name":"x","value":1,"lables":{}}"#,
                None,
                "unknown field `lables`",
            ),
            (
                r#"{"kind":"metric","time":1,"name":"x","value":1,"labels":{"a":1}}"#,
                Some("labels.a"),
                "strings",
            ),
            (
                r#"{"kind":"metric","time":"yesterday","name":"x","value":1}"#,
                None,
                "RFC 3339",
            ),
            (
                r#"{"kind":"trace","time":1}"#,
                Some("kind"),
                "not \"trace\"",
            ),
            (
                r#"{"kind":"log","time":1,"service":"a","level":"E","message":"m","value":3}"#,
                Some("value"),
                "not part of a log",
            ),
            (
                r#"{"kind":"span","time":1,"trace_id":"t","span_id":"s","service":"a","name":"n","duration_ms":1,"status":"fine"}"#,
                Some("status"),
                "\"ok\" or \"error\"",
            ),
            (
                r#"{"kind":"metric","time":1,"name":"x","value":1"#,
                None,
                "EOF",
            ),
            (r#"not json"#, None, "expected"),
        ];
        for (input, field, words) in cases {
            let err = decode(input).expect_err(input);
            assert_eq!(err.field.as_deref(), *field, "{input}: {err}");
            assert!(err.to_string().contains(words), "{input}: {err}");
        }
    }

    #[test]
    fn syntax_errors_carry_a_column() {
        let err = decode(r#"{"kind":"metric","time":1,"value":nope}"#).unwrap_err();
        assert_eq!(err.column, Some(36));
    }
}
