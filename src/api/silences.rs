//! A silence as posted to `POST /api/v1/silences` → a checked [`Silence`].
//!
//! The checks follow Alertmanager's:
//! - at least one matcher, each in the written form
//!   (`InstanceId=~"i-0.*"`);
//! - not every matcher may match the empty string: a silence made only of
//!   `x=~".*"` or `x!="y"` would also match alerts without those labels,
//!   that is every alert;
//! - an end: `ends_at` (RFC 3339) or `duration` (`2h`), not both; after the
//!   start and not in the past;
//! - a start in the past becomes now (a silence does not act backwards);
//! - who (`created_by`) and why (`comment`).
//!
//! Field names are snake_case like every klaxon JSON; Alertmanager's
//! camelCase (`startsAt`, `endsAt`, `createdBy`) is accepted too.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use super::ApiError;
use crate::alerts::matcher::Matcher;
use crate::alerts::silence::Silence;
use crate::config::duration::parse_duration;
use crate::decode::time::parse_rfc3339;
use crate::model::{format_rfc3339, Fnv, Millis};

/// The body of `POST /api/v1/silences`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Written matchers: `InstanceId=~"i-0.*"`, `severity="warning"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// RFC 3339; default now.
    #[serde(default, alias = "startsAt")]
    pub starts_at: Option<String>,
    /// RFC 3339; or give `duration`.
    #[serde(default, alias = "endsAt")]
    pub ends_at: Option<String>,
    /// `2h`, `90m`, `1d`: from the start.
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default, alias = "createdBy")]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

fn time(field: &str, s: &str) -> Result<Millis, ApiError> {
    parse_rfc3339(s.trim()).map_err(|e| {
        ApiError::bad_request(format!(
            "`{field}` {s:?}: {e} (write e.g. 2026-01-01T02:00:00Z)"
        ))
    })
}

impl NewSilence {
    /// Checks the request at `now`; the result has an empty `id`.
    pub fn validate(&self, now: Millis) -> Result<Silence, ApiError> {
        if self.matchers.is_empty() {
            return Err(ApiError::bad_request(
                "a silence needs at least one matcher, e.g. `InstanceId=\"i-0a1\"`",
            ));
        }
        let mut matchers = Vec::with_capacity(self.matchers.len());
        for text in &self.matchers {
            let m = Matcher::parse(text).map_err(|e| {
                ApiError::bad_request(format!(
                    "matcher {text:?}: {} (at character {})",
                    e.message,
                    e.at + 1
                ))
            })?;
            matchers.push(m);
        }
        if matchers.iter().all(|m| m.matches_value(None)) {
            return Err(ApiError::bad_request(format!(
                "every matcher also matches alerts that lack the label ({}), so this silence \
                 would mute every alert; add a matcher that needs a value, e.g. `InstanceId=\"i-0a1\"`",
                self.matchers.join(", ")
            )));
        }
        let mut starts_at = match &self.starts_at {
            Some(s) => time("starts_at", s)?,
            None => now,
        };
        if starts_at < now {
            starts_at = now;
        }
        let ends_at = match (&self.ends_at, &self.duration) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "give `ends_at` or `duration`, not both",
                ))
            }
            (None, None) => {
                return Err(ApiError::bad_request(
                    "a silence needs an end: `ends_at` (RFC 3339) or `duration` (e.g. 2h)",
                ))
            }
            (Some(e), None) => time("ends_at", e)?,
            (None, Some(d)) => {
                let d = parse_duration(d)
                    .map_err(|e| ApiError::bad_request(format!("`duration`: {e}")))?;
                if d <= 0 {
                    return Err(ApiError::bad_request("`duration` must be positive"));
                }
                starts_at.saturating_add(d)
            }
        };
        if ends_at <= now {
            return Err(ApiError::bad_request(format!(
                "`ends_at` {} is in the past",
                format_rfc3339(ends_at)
            )));
        }
        if ends_at <= starts_at {
            return Err(ApiError::bad_request(format!(
                "`ends_at` {} must be after `starts_at` {}",
                format_rfc3339(ends_at),
                format_rfc3339(starts_at)
            )));
        }
        let created_by = self.created_by.trim();
        if created_by.is_empty() {
            return Err(ApiError::bad_request(
                "`created_by` is required: who is silencing",
            ));
        }
        let comment = self.comment.trim();
        if comment.is_empty() {
            return Err(ApiError::bad_request(
                "`comment` is required: why (a ticket, the maintenance)",
            ));
        }
        Ok(Silence {
            id: String::new(),
            matchers,
            starts_at,
            ends_at,
            created_by: created_by.to_string(),
            comment: comment.to_string(),
        })
    }
}

/// Silence ids: 16 hex digits, a hash of the silence, the time, a counter
/// and a per-process random seed (two members creating the same silence in
/// the same millisecond still get different ids).
pub struct SilenceIds {
    seed: u64,
    counter: AtomicU64,
}

impl Default for SilenceIds {
    fn default() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        SilenceIds {
            seed: h.finish(),
            counter: AtomicU64::new(0),
        }
    }
}

impl SilenceIds {
    /// A seed of choice (tests).
    pub fn with_seed(seed: u64) -> Self {
        SilenceIds {
            seed,
            counter: AtomicU64::new(0),
        }
    }

    pub fn next(&self, s: &Silence, now: Millis) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = Fnv::default();
        h.write(&self.seed.to_le_bytes());
        h.write(&n.to_le_bytes());
        h.write(&now.to_le_bytes());
        for m in &s.matchers {
            h.write_str(&m.to_string());
        }
        h.write(&s.starts_at.to_le_bytes());
        h.write(&s.ends_at.to_le_bytes());
        h.write_str(&s.created_by);
        h.write_str(&s.comment);
        format!("{:016x}", h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const H: Millis = 3_600_000;

    fn base() -> NewSilence {
        NewSilence {
            matchers: vec![r#"InstanceId=~"i-0.*""#.into(), "severity=warning".into()],
            duration: Some("2h".into()),
            created_by: "kim".into(),
            comment: "patching".into(),
            ..NewSilence::default()
        }
    }

    #[test]
    fn a_duration_counts_from_now_by_default() {
        let s = base().validate(NOW).unwrap();
        assert_eq!((s.starts_at, s.ends_at), (NOW, NOW + 2 * H));
        assert_eq!(s.matchers[0].to_string(), r#"InstanceId=~"i-0.*""#);
        assert_eq!(s.matchers[1].to_string(), r#"severity="warning""#);
        assert_eq!(
            (s.created_by.as_str(), s.comment.as_str()),
            ("kim", "patching")
        );
    }

    #[test]
    fn a_start_in_the_future_and_an_end() {
        let s = NewSilence {
            starts_at: Some("2026-01-01T02:00:00Z".into()),
            ends_at: Some("2026-01-01T04:00:00+01:00".into()),
            duration: None,
            ..base()
        }
        .validate(NOW)
        .unwrap();
        assert_eq!((s.starts_at, s.ends_at), (NOW + 2 * H, NOW + 3 * H));
        // A start in the past is now.
        let s = NewSilence {
            starts_at: Some("2025-12-31T23:00:00Z".into()),
            ..base()
        }
        .validate(NOW)
        .unwrap();
        assert_eq!((s.starts_at, s.ends_at), (NOW, NOW + 2 * H));
    }

    /// (what is wrong, the request, words the message must contain)
    #[test]
    fn bad_silences_are_refused_with_a_reason() {
        let cases: Vec<(&str, NewSilence, &str)> = vec![
            (
                "no matcher",
                NewSilence {
                    matchers: vec![],
                    ..base()
                },
                "at least one matcher",
            ),
            (
                "a bad matcher",
                NewSilence {
                    matchers: vec!["InstanceId~\"x\"".into()],
                    ..base()
                },
                "matcher \"InstanceId~\\\"x\\\"\": expected one of =, !=, =~, !~ after `InstanceId` (at character 11)",
            ),
            (
                "a regex that does not compile",
                NewSilence {
                    matchers: vec!["a=~\"(\"".into()],
                    ..base()
                },
                "bad regular expression",
            ),
            (
                "matches everything",
                NewSilence {
                    matchers: vec![r#"InstanceId=~".*""#.into()],
                    ..base()
                },
                "would mute every alert",
            ),
            (
                "matches everything, with !=",
                NewSilence {
                    matchers: vec![r#"severity!="info""#.into(), "team=~\".*\"".into()],
                    ..base()
                },
                "would mute every alert",
            ),
            (
                "both an end and a duration",
                NewSilence {
                    ends_at: Some("2026-01-01T04:00:00Z".into()),
                    ..base()
                },
                "not both",
            ),
            (
                "no end",
                NewSilence {
                    duration: None,
                    ..base()
                },
                "needs an end",
            ),
            (
                "a bad duration",
                NewSilence {
                    duration: Some("2 hours".into()),
                    ..base()
                },
                "`duration`: bad duration",
            ),
            (
                "a zero duration",
                NewSilence {
                    duration: Some("0s".into()),
                    ..base()
                },
                "must be positive",
            ),
            (
                "a bad time",
                NewSilence {
                    duration: None,
                    ends_at: Some("tomorrow".into()),
                    ..base()
                },
                "`ends_at` \"tomorrow\"",
            ),
            (
                "an end in the past",
                NewSilence {
                    duration: None,
                    ends_at: Some("2025-12-31T00:00:00Z".into()),
                    ..base()
                },
                "`ends_at` 2025-12-31T00:00:00Z is in the past",
            ),
            (
                "an end before the start",
                NewSilence {
                    starts_at: Some("2026-01-01T05:00:00Z".into()),
                    duration: None,
                    ends_at: Some("2026-01-01T04:00:00Z".into()),
                    ..base()
                },
                "must be after `starts_at`",
            ),
            (
                "no author",
                NewSilence {
                    created_by: " ".into(),
                    ..base()
                },
                "`created_by` is required",
            ),
            (
                "no comment",
                NewSilence {
                    comment: String::new(),
                    ..base()
                },
                "`comment` is required",
            ),
        ];
        for (what, req, words) in cases {
            let e = req.validate(NOW).unwrap_err();
            assert_eq!(e.kind, super::super::ApiErrorKind::BadRequest, "{what}");
            assert!(e.message.contains(words), "{what}: {}", e.message);
        }
    }

    #[test]
    fn camel_case_fields_and_unknown_fields() {
        let req: NewSilence = serde_json::from_str(
            r#"{"matchers":["a=\"b\""],"startsAt":"2026-01-01T01:00:00Z","endsAt":"2026-01-01T02:00:00Z","createdBy":"kim","comment":"c"}"#,
        )
        .unwrap();
        let s = req.validate(NOW).unwrap();
        assert_eq!((s.starts_at, s.ends_at), (NOW + H, NOW + 2 * H));
        let e = serde_json::from_str::<NewSilence>(r#"{"matchers":[],"ends":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `ends`"), "{e}");
    }

    #[test]
    fn ids_differ_for_the_same_silence_at_the_same_time() {
        let s = base().validate(NOW).unwrap();
        let ids = SilenceIds::with_seed(7);
        let (a, b) = (ids.next(&s, NOW), ids.next(&s, NOW));
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        // Another process (seed) gives another id for the same inputs.
        assert_ne!(SilenceIds::with_seed(8).next(&s, NOW), a);
    }
}
