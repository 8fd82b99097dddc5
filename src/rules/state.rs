//! The consecutive-period state machine, with CloudWatch's documented
//! semantics for M out of N datapoints and missing data.
//!
//! CloudWatch's rules ("How alarm state is evaluated when data is missing"):
//! - the **evaluation range** is the most recent N+2 periods;
//! - if all of them are missing, the treatment decides: `missing` gives
//!   INSUFFICIENT_DATA, `ignore` keeps the state, `breaching` gives ALARM,
//!   `not_breaching` gives OK;
//! - if at least N real datapoints exist in the range, the most recent N real
//!   ones are evaluated and the treatment is not used;
//! - otherwise missing datapoints are filled in as few times as possible:
//!   all real datapoints count, plus N − real fills of the treatment
//!   (`breaching`/`not_breaching`), while `missing` and `ignore` evaluate
//!   the real ones alone;
//! - **premature alarm**: with `missing` or `ignore`, the alarm goes to ALARM
//!   when the oldest breaching datapoint among the last N is at least M
//!   periods old and every more recent datapoint is breaching or missing,
//!   even though fewer than M datapoints exist.

use std::collections::VecDeque;

use crate::model::{AlarmState, Datapoint};

/// `treat_missing_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreatMissing {
    Missing,
    Ignore,
    Breaching,
    NotBreaching,
}

impl TreatMissing {
    pub const NAMES: &'static [&'static str] = &["missing", "ignore", "breaching", "not_breaching"];

    pub fn parse(s: &str) -> Option<TreatMissing> {
        Some(match s {
            "missing" => TreatMissing::Missing,
            "ignore" => TreatMissing::Ignore,
            "breaching" => TreatMissing::Breaching,
            "not_breaching" => TreatMissing::NotBreaching,
            _ => return None,
        })
    }
}

/// N, M and the missing-data treatment of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub treat_missing: TreatMissing,
}

impl Policy {
    /// How many datapoints the evaluation range holds: N + 2.
    pub fn range(&self) -> usize {
        self.evaluation_periods + 2
    }

    /// The state after evaluating `range` (oldest first, at most N+2 long;
    /// periods before a series was first seen are simply absent).
    pub fn evaluate(&self, range: &[Datapoint], current: AlarmState) -> AlarmState {
        let (n, m) = (self.evaluation_periods, self.datapoints_to_alarm);
        let range = &range[range.len().saturating_sub(self.range())..];
        let real: Vec<bool> = range
            .iter()
            .filter_map(|d| match d {
                Datapoint::Breaching => Some(true),
                Datapoint::NotBreaching => Some(false),
                Datapoint::Missing => None,
            })
            .collect();
        if real.is_empty() {
            return match self.treat_missing {
                TreatMissing::Missing => AlarmState::InsufficientData,
                TreatMissing::Ignore => current,
                TreatMissing::Breaching => AlarmState::Alarm,
                TreatMissing::NotBreaching => AlarmState::Ok,
            };
        }
        let verdict = |breaching: usize| {
            if breaching >= m {
                AlarmState::Alarm
            } else {
                AlarmState::Ok
            }
        };
        if real.len() >= n {
            return verdict(real[real.len() - n..].iter().filter(|b| **b).count());
        }
        let breaching = real.iter().filter(|b| **b).count();
        match self.treat_missing {
            TreatMissing::Breaching => verdict(breaching + (n - real.len())),
            TreatMissing::NotBreaching => verdict(breaching),
            TreatMissing::Missing | TreatMissing::Ignore => {
                if premature_alarm(range, n, m) {
                    AlarmState::Alarm
                } else {
                    verdict(breaching)
                }
            }
        }
    }
}

/// CloudWatch's premature-alarm rule over the last N slots of the range.
fn premature_alarm(range: &[Datapoint], n: usize, m: usize) -> bool {
    let last_n = &range[range.len().saturating_sub(n)..];
    let Some(oldest) = last_n.iter().position(|d| *d == Datapoint::Breaching) else {
        return false;
    };
    let age = last_n.len() - oldest;
    age >= m
        && last_n[oldest..]
            .iter()
            .all(|d| *d != Datapoint::NotBreaching)
}

/// One series' datapoint history and state.
#[derive(Clone, Debug)]
pub struct Tracker {
    history: VecDeque<Datapoint>,
    state: AlarmState,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            history: VecDeque::new(),
            state: AlarmState::InsufficientData,
        }
    }
}

impl Tracker {
    pub fn state(&self) -> AlarmState {
        self.state
    }

    /// Records the datapoint of the period that just closed and evaluates.
    /// Returns `(previous, new)` when the state changed.
    pub fn push(&mut self, policy: &Policy, dp: Datapoint) -> Option<(AlarmState, AlarmState)> {
        if self.history.len() == policy.range() {
            self.history.pop_front();
        }
        self.history.push_back(dp);
        let range = self.history.make_contiguous();
        let next = policy.evaluate(range, self.state);
        let prev = std::mem::replace(&mut self.state, next);
        (prev != next).then_some((prev, next))
    }

    /// Whether every datapoint in the range is missing: the series has gone
    /// quiet and, in `insufficient_data`, holds nothing worth keeping.
    pub fn is_idle(&self, policy: &Policy) -> bool {
        self.history.len() == policy.range()
            && self.history.iter().all(|d| *d == Datapoint::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlarmState::*;

    /// `X` breaching, `0` not breaching, `-` missing; oldest first.
    fn dps(s: &str) -> Vec<Datapoint> {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| match c {
                'X' => Datapoint::Breaching,
                '0' => Datapoint::NotBreaching,
                '-' => Datapoint::Missing,
                _ => panic!("bad datapoint {c}"),
            })
            .collect()
    }

    fn policy(n: usize, m: usize, t: TreatMissing) -> Policy {
        Policy {
            evaluation_periods: n,
            datapoints_to_alarm: m,
            treat_missing: t,
        }
    }

    /// The table from CloudWatch's user guide for 3 of 3, with the current
    /// state taken as OK so that `ignore` shows when it keeps the state.
    /// Columns: missing, ignore, breaching, not_breaching.
    #[test]
    fn cloudwatch_table_three_of_three() {
        let cases = [
            ("0 - X - X", [Ok, Ok, Ok, Ok]),
            ("- - - - 0", [Ok, Ok, Ok, Ok]),
            ("- - - - -", [InsufficientData, Ok, Alarm, Ok]),
            ("0 X X - X", [Alarm, Alarm, Alarm, Alarm]),
            ("- - X - -", [Alarm, Alarm, Alarm, Ok]),
        ];
        let treats = [
            TreatMissing::Missing,
            TreatMissing::Ignore,
            TreatMissing::Breaching,
            TreatMissing::NotBreaching,
        ];
        for (range, want) in cases {
            for (t, w) in treats.iter().zip(want) {
                assert_eq!(
                    policy(3, 3, *t).evaluate(&dps(range), Ok),
                    w,
                    "{range} with {t:?}"
                );
            }
        }
    }

    /// The same table for 2 of 3.
    #[test]
    fn cloudwatch_table_two_of_three() {
        let cases = [
            ("0 - X - X", [Alarm, Alarm, Alarm, Alarm]),
            ("0 0 X 0 X", [Alarm, Alarm, Alarm, Alarm]),
            ("0 - X - -", [Alarm, Alarm, Alarm, Ok]), // premature: X is 3 old, then only gaps
            ("- - - - 0", [Ok, Ok, Alarm, Ok]),
            ("- - - X -", [Alarm, Alarm, Alarm, Ok]), // premature: X is 2 old
            ("- - X 0 -", [Ok, Ok, Alarm, Ok]),       // a newer OK blocks it
        ];
        let treats = [
            TreatMissing::Missing,
            TreatMissing::Ignore,
            TreatMissing::Breaching,
            TreatMissing::NotBreaching,
        ];
        for (range, want) in cases {
            for (t, w) in treats.iter().zip(want) {
                assert_eq!(
                    policy(3, 2, *t).evaluate(&dps(range), Ok),
                    w,
                    "{range} with {t:?}"
                );
            }
        }
    }

    #[test]
    fn ignore_keeps_the_state_only_when_everything_is_missing() {
        let p = policy(2, 2, TreatMissing::Ignore);
        assert_eq!(p.evaluate(&dps("- - - -"), Alarm), Alarm);
        assert_eq!(
            p.evaluate(&dps("- - - -"), InsufficientData),
            InsufficientData
        );
        assert_eq!(p.evaluate(&dps("- - - 0"), Alarm), Ok);
    }

    #[test]
    fn only_the_most_recent_n_real_datapoints_count() {
        let p = policy(2, 2, TreatMissing::Missing);
        assert_eq!(p.evaluate(&dps("X X 0 0"), Ok), Ok);
        assert_eq!(
            p.evaluate(&dps("0 X - X"), Ok),
            Alarm,
            "real ones reach back past the gap"
        );
        // Older than N+2 is out of range.
        assert_eq!(p.evaluate(&dps("X X - - - -"), Alarm), InsufficientData);
    }

    #[test]
    fn tracker_reports_changes_once() {
        let p = policy(2, 2, TreatMissing::Missing);
        let mut t = Tracker::default();
        let steps = [
            (Datapoint::NotBreaching, Some((InsufficientData, Ok))),
            (Datapoint::Breaching, None),
            (Datapoint::Breaching, Some((Ok, Alarm))),
            (Datapoint::Breaching, None),
            (Datapoint::NotBreaching, Some((Alarm, Ok))),
            (Datapoint::Missing, None),
            (Datapoint::Missing, None),
            (Datapoint::Missing, None),
            (Datapoint::Missing, Some((Ok, InsufficientData))),
        ];
        for (i, (dp, want)) in steps.into_iter().enumerate() {
            assert_eq!(t.push(&p, dp), want, "step {i}");
        }
        assert!(t.is_idle(&p));
    }
}
