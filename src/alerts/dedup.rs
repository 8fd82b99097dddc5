//! Dedup of state changes by id: delivery upstream is at-least-once (a
//! crash or a rebalance may publish a change again, with the same id), so
//! the dispatcher drops an id it has already seen.
//!
//! **Memory bound.** Ids are remembered by their period end, for `window`
//! of dispatch time (default 24 h): at `now`, the ids of periods that ended
//! before `now - window` are forgotten, and a change that old is refused as
//! [`Verdict::TooOld`] instead of being dispatched (a redelivery is never
//! that late: `klaxon run` re-reads at most the periods that rules still
//! need, minutes to hours). So memory holds the state changes of one
//! window: for CloudMart's 8 rules, a few hundred ids a day.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::Millis;

pub const DEFAULT_WINDOW: Millis = 24 * 3_600_000;

/// What to do with a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First time seen: dispatch it.
    New,
    /// Seen before: drop it.
    Duplicate,
    /// Its period ended more than the window ago: drop it (it may or may
    /// not have been seen; its id is no longer remembered).
    TooOld,
}

/// The ids seen in the last `window`, by period end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dedup {
    window: Millis,
    seen: BTreeMap<Millis, BTreeSet<String>>,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup::new(DEFAULT_WINDOW)
    }
}

impl Dedup {
    pub fn new(window: Millis) -> Self {
        Dedup {
            window,
            seen: BTreeMap::new(),
        }
    }

    /// Records `id` (of a change whose period ended at `period_end`) and
    /// says whether it is new.
    pub fn admit(&mut self, id: &str, period_end: Millis, now: Millis) -> Verdict {
        self.gc(now);
        if period_end < self.horizon(now) {
            return Verdict::TooOld;
        }
        if self
            .seen
            .entry(period_end)
            .or_default()
            .insert(id.to_string())
        {
            Verdict::New
        } else {
            Verdict::Duplicate
        }
    }

    fn horizon(&self, now: Millis) -> Millis {
        now.saturating_sub(self.window)
    }

    /// Forgets the ids of periods that ended before `now - window`.
    pub fn gc(&mut self, now: Millis) {
        let keep = self.seen.split_off(&self.horizon(now));
        self.seen = keep;
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    #[test]
    fn a_redelivered_id_is_dropped() {
        let mut d = Dedup::new(60 * MIN);
        assert_eq!(d.admit("a-5-alarm", 5 * MIN, 6 * MIN), Verdict::New);
        assert_eq!(d.admit("b-5-alarm", 5 * MIN, 6 * MIN), Verdict::New);
        assert_eq!(d.admit("a-5-alarm", 5 * MIN, 7 * MIN), Verdict::Duplicate);
        assert_eq!(d.admit("a-10-ok", 10 * MIN, 11 * MIN), Verdict::New);
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn memory_is_bounded_by_the_window() {
        let mut d = Dedup::new(60 * MIN);
        for i in 0..1_000 {
            let t = i * 5 * MIN;
            assert_eq!(d.admit(&format!("x-{t}"), t, t + MIN), Verdict::New);
            // At most one window of 5-minute periods is remembered.
            assert!(d.len() <= 13, "{} ids at step {i}", d.len());
        }
        // A change from before the window is refused, not dispatched again.
        let now = 1_000 * 5 * MIN;
        assert_eq!(d.admit("x-0", 0, now), Verdict::TooOld);
        // One just inside the window is still recognised.
        let recent = now - 55 * MIN;
        let recent = recent - recent % (5 * MIN);
        assert_eq!(
            d.admit(&format!("x-{recent}"), recent, now),
            Verdict::Duplicate
        );
    }

    #[test]
    fn round_trips_through_json() {
        let mut d = Dedup::new(60 * MIN);
        d.admit("a", MIN, MIN);
        let back: Dedup = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }
}
