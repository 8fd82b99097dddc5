//! Bytes → typed [`Event`]s.
//!
//! One [`Decoder`] per wire format; today that is JSON ([`json::JsonDecoder`]),
//! one object per Kafka message or per line of a file, as described by the
//! schemas in `schemas/`, tried first by a hand-written scanner
//! ([`fast`]) for the shape klaxon's producers write and then, for anything
//! else, by serde_json. A decoder never panics and never stops a run: bad
//! input becomes a [`DecodeError`] that says where and why, and [`Rejects`]
//! keeps the tally.

pub(crate) mod fast;
pub mod json;
pub mod time;

use std::collections::BTreeMap;
use std::fmt;

use crate::model::Event;

pub use json::JsonDecoder;

/// Turns one message (or line) into an event.
pub trait Decoder {
    fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Event<'a>, DecodeError>;
}

/// Why an event was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Where in the message it went wrong (1-based), when the parser knows.
    pub column: Option<usize>,
    /// The event field at fault, when one is.
    pub field: Option<String>,
    /// What is wrong, without the position: also the key `Rejects` groups by.
    pub reason: String,
}

impl DecodeError {
    pub fn field(field: &str, reason: impl Into<String>) -> Self {
        DecodeError {
            column: None,
            field: Some(field.to_string()),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.reason)?;
        if let Some(c) = self.column {
            write!(f, " (column {c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DecodeError {}

/// A tally of rejected events by reason, with the first few positions of each
/// so that a user can find them.
#[derive(Debug, Default)]
pub struct Rejects {
    by_reason: BTreeMap<String, Reason>,
    total: u64,
}

#[derive(Debug, Default)]
struct Reason {
    count: u64,
    examples: Vec<String>,
}

impl Rejects {
    const EXAMPLES: usize = 3;

    /// Counts one rejected event; `position` says where it was (`line 12`, `partition 3 offset 99`).
    pub fn record(&mut self, position: &str, err: &DecodeError) {
        self.total += 1;
        let key = match &err.field {
            Some(f) => format!("field `{f}`: {}", err.reason),
            None => err.reason.clone(),
        };
        let r = self.by_reason.entry(key).or_default();
        r.count += 1;
        if r.examples.len() < Self::EXAMPLES {
            match err.column {
                Some(c) => r.examples.push(format!("{position} column {c}")),
                None => r.examples.push(position.to_string()),
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// `(reason, count, first positions)`, most frequent first.
    pub fn summary(&self) -> Vec<(&str, u64, &[String])> {
        let mut v: Vec<_> = self
            .by_reason
            .iter()
            .map(|(k, r)| (k.as_str(), r.count, r.examples.as_slice()))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }
}
