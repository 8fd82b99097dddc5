//! Query strings: `?filter=InstanceId=~"i-0.*"&filter=severity="warning"`,
//! `?state=firing&state=silenced`, `?limit=50`.
//!
//! An alert's API state follows Alertmanager's active/suppressed split:
//!
//! | state | the alert |
//! |---|---|
//! | `firing` | firing, neither silenced nor inhibited (active) |
//! | `silenced` | firing, held back by a silence or window (`silenced_by`) |
//! | `inhibited` | firing, held back by an inhibit rule (`inhibited_by`) |
//! | `resolved` | resolved, not yet flushed out of its incident |
//!
//! An alert both silenced and inhibited answers to both states; its
//! `api_state` names the silence first. Repeated `state=` or `filter=`
//! parameters: any listed state, and every matcher.

use serde::Serialize;

use super::ApiError;
use crate::alerts::matcher::{all_match, Matcher};
use crate::alerts::silence::{Silence, SilenceState};
use crate::alerts::{Alert, Status};
use crate::model::Millis;

/// The decoded `name=value` pairs of a query string; a name not in
/// `allowed` is an error (a typo must not silently widen a filter).
pub fn pairs(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{k}`; this endpoint takes {}",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// What the API calls an alert's state (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Silenced,
    Inhibited,
    Resolved,
}

impl AlertState {
    pub const ALL: [(&'static str, AlertState); 4] = [
        ("firing", AlertState::Firing),
        ("silenced", AlertState::Silenced),
        ("inhibited", AlertState::Inhibited),
        ("resolved", AlertState::Resolved),
    ];

    /// The one state shown for an alert.
    pub fn of(a: &Alert) -> AlertState {
        match (a.status, &a.silenced_by, &a.inhibited_by) {
            (Status::Resolved, _, _) => AlertState::Resolved,
            (Status::Firing, Some(_), _) => AlertState::Silenced,
            (Status::Firing, None, Some(_)) => AlertState::Inhibited,
            (Status::Firing, None, None) => AlertState::Firing,
        }
    }

    /// Whether `a` answers to `state=self`.
    pub fn selects(self, a: &Alert) -> bool {
        let firing = a.status == Status::Firing;
        match self {
            AlertState::Firing => firing && a.silenced_by.is_none() && a.inhibited_by.is_none(),
            AlertState::Silenced => firing && a.silenced_by.is_some(),
            AlertState::Inhibited => firing && a.inhibited_by.is_some(),
            AlertState::Resolved => !firing,
        }
    }
}

/// The filters of `GET /api/v1/alerts`.
#[derive(Debug, Default)]
pub struct AlertFilter {
    pub matchers: Vec<Matcher>,
    /// Empty: every state.
    pub states: Vec<AlertState>,
}

impl AlertFilter {
    pub fn parse(raw: Option<&str>) -> Result<AlertFilter, ApiError> {
        let mut f = AlertFilter::default();
        for (k, v) in pairs(raw, &["filter", "state"])? {
            if k == "filter" {
                let m = Matcher::parse(&v).map_err(|e| {
                    ApiError::bad_request(format!(
                        "filter {v:?}: {} (at character {})",
                        e.message,
                        e.at + 1
                    ))
                })?;
                f.matchers.push(m);
            } else {
                let s = AlertState::ALL
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(v.trim()))
                    .map(|(_, s)| *s)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "unknown state {v:?}; use firing, silenced, inhibited or resolved"
                        ))
                    })?;
                f.states.push(s);
            }
        }
        Ok(f)
    }

    pub fn selects(&self, a: &Alert) -> bool {
        all_match(&self.matchers, a)
            && (self.states.is_empty() || self.states.iter().any(|s| s.selects(a)))
    }
}

/// The filter of `GET /api/v1/silences`: `state=active|pending|expired`.
pub fn silence_states(raw: Option<&str>) -> Result<Vec<SilenceState>, ApiError> {
    pairs(raw, &["state"])?
        .into_iter()
        .map(|(_, v)| match v.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(SilenceState::Active),
            "pending" => Ok(SilenceState::Pending),
            "expired" => Ok(SilenceState::Expired),
            _ => Err(ApiError::bad_request(format!(
                "unknown silence state {v:?}; use active, pending or expired"
            ))),
        })
        .collect()
}

pub fn silence_selected(states: &[SilenceState], s: &Silence, now: Millis) -> bool {
    states.is_empty() || states.contains(&s.state(now))
}

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

/// `?limit=N` of `GET /api/v1/notifications` (default 100, at most 10000).
pub fn limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    for (_, v) in pairs(raw, &["limit"])? {
        limit = v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`limit` must be a number from 1 to {MAX_LIMIT}, not {v:?}"
                ))
            })?;
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_decode_percent_escapes_and_repeat() {
        let f = AlertFilter::parse(Some(
            "filter=InstanceId%3D~%22i-0.*%22&filter=severity%3D%22warning%22&state=firing&state=Silenced",
        ))
        .unwrap();
        let m: Vec<String> = f.matchers.iter().map(|m| m.to_string()).collect();
        assert_eq!(m, [r#"InstanceId=~"i-0.*""#, r#"severity="warning""#]);
        assert_eq!(f.states, [AlertState::Firing, AlertState::Silenced]);
    }

    #[test]
    fn bad_queries_are_refused() {
        for (q, words) in [
            ("filters=a%3Db", "unknown query parameter `filters`"),
            ("filter=a~b", "filter \"a~b\": expected one of"),
            ("state=active", "unknown state \"active\""),
        ] {
            let e = AlertFilter::parse(Some(q)).unwrap_err();
            assert!(e.message.contains(words), "{q}: {e}");
        }
        for (q, want) in [(None, Ok(100)), (Some("limit=5"), Ok(5))] {
            assert_eq!(limit(q).map_err(|e| e.kind), want, "{q:?}");
        }
        for q in ["limit=0", "limit=-1", "limit=x", "limit=10001"] {
            assert!(
                limit(Some(q)).unwrap_err().message.contains("`limit`"),
                "{q}"
            );
        }
    }
}
