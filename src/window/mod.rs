//! Event-time tumbling windows.
//!
//! Periods are aligned to the Unix epoch (`[k·p, (k+1)·p)`), so every series
//! of a rule shares period boundaries. Each series keeps its open periods as
//! [`Bins`], keyed by start; a [`Cursor`] per rule remembers the first period
//! not yet closed and says which periods the watermark has passed. The
//! watermark is the latest event time seen; a period `[s, e)` closes once an
//! event later than `e + lateness` has been seen, from any series.

pub mod aggregate;

use crate::model::{AggKind, Millis};

pub use aggregate::AggState;

/// The start of the period that contains `t`.
#[inline]
pub fn period_start(t: Millis, period: Millis) -> Millis {
    t.div_euclid(period) * period
}

/// The open periods of one series, oldest first. Usually one or two.
#[derive(Clone, Debug, Default)]
pub struct Bins {
    bins: Vec<(Millis, Box<[AggState]>)>,
}

impl Bins {
    /// The aggregate states of the period starting at `start`, created empty
    /// on first use.
    #[inline]
    pub fn get_mut(&mut self, start: Millis, kinds: &[AggKind]) -> &mut [AggState] {
        let i = match self.bins.iter().position(|(s, _)| *s >= start) {
            Some(i) if self.bins[i].0 == start => i,
            Some(i) => {
                self.bins.insert(
                    i,
                    (start, kinds.iter().map(|k| AggState::new(*k)).collect()),
                );
                i
            }
            None => {
                self.bins
                    .push((start, kinds.iter().map(|k| AggState::new(*k)).collect()));
                self.bins.len() - 1
            }
        };
        &mut self.bins[i].1
    }

    /// Removes and returns the period starting at `start`, if it saw events.
    /// Periods before it (none, when closing goes in order) are dropped.
    pub fn take(&mut self, start: Millis) -> Option<Box<[AggState]>> {
        while let Some((s, _)) = self.bins.first() {
            if *s < start {
                self.bins.remove(0);
            } else if *s == start {
                return Some(self.bins.remove(0).1);
            } else {
                break;
            }
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.bins.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bins.len()
    }
}

/// Which periods of one rule are closed.
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    period: Millis,
    lateness: Millis,
    /// Start of the first period not yet closed; `None` before any event.
    next: Option<Millis>,
}

impl Cursor {
    pub fn new(period: Millis, lateness: Millis) -> Self {
        Cursor {
            period,
            lateness,
            next: None,
        }
    }

    pub fn period(&self) -> Millis {
        self.period
    }

    /// Called with the first event time the stream shows (from any series):
    /// periods that ended more than `lateness` before it count as closed.
    pub fn start_at(&mut self, first_event: Millis) {
        if self.next.is_none() {
            self.next = Some(period_start(first_event - self.lateness, self.period));
        }
    }

    /// The start of the oldest period not yet closed.
    pub fn next_start(&self) -> Option<Millis> {
        self.next
    }

    /// Whether a watermark at `watermark` had closed the period at `start`.
    pub fn was_due(&self, start: Millis, watermark: Millis) -> bool {
        watermark > start + self.period + self.lateness
    }

    /// Whether the period containing `t` is already closed (so `t` is late).
    #[inline]
    pub fn is_closed(&self, t: Millis) -> bool {
        matches!(self.next, Some(n) if t < n)
    }

    /// The start of the next period to close, given the watermark, and marks
    /// it closed. Call until `None`.
    pub fn pop_due(&mut self, watermark: Millis) -> Option<Millis> {
        let start = self.next?;
        if self.was_due(start, watermark) {
            self.next = Some(start + self.period);
            Some(start)
        } else {
            None
        }
    }

    /// Like [`pop_due`](Self::pop_due) but closes every period that has
    /// begun by `last_event`: end of input.
    pub fn pop_all(&mut self, last_event: Millis) -> Option<Millis> {
        let start = self.next?;
        if start <= last_event {
            self.next = Some(start + self.period);
            Some(start)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    #[test]
    fn periods_align_to_the_epoch_even_before_it() {
        assert_eq!(period_start(0, MIN), 0);
        assert_eq!(period_start(59_999, MIN), 0);
        assert_eq!(period_start(60_000, MIN), 60_000);
        assert_eq!(period_start(-1, MIN), -60_000);
    }

    #[test]
    fn cursor_closes_a_period_only_after_an_event_past_end_plus_lateness() {
        // (lateness, first event, watermark, periods expected to close)
        let cases: &[(Millis, Millis, Millis, &[Millis])] = &[
            (0, 10_000, 60_000, &[]),  // exactly at the end: not yet
            (0, 10_000, 60_001, &[0]), // later than the end
            // With 30 s lateness an event at 0:10 may still belong to the
            // period before 0:00, so the cursor starts there.
            (30_000, 10_000, 90_000, &[-MIN]), // 0:00 end + lateness: not yet
            (30_000, 10_000, 90_001, &[-MIN, 0]),
            (0, 10_000, 3 * MIN + 1, &[0, MIN, 2 * MIN]), // a jump closes each period in order
            (30_000, 100_000, 100_000, &[]), // first event 1:40 with 30 s lateness: 1:00 still open
        ];
        for (lateness, first, wm, want) in cases {
            let mut c = Cursor::new(MIN, *lateness);
            c.start_at(*first);
            let mut got = Vec::new();
            while let Some(s) = c.pop_due(*wm) {
                got.push(s);
            }
            assert_eq!(
                &got, want,
                "lateness {lateness}, first {first}, watermark {wm}"
            );
        }
    }

    #[test]
    fn cursor_knows_late_events() {
        let mut c = Cursor::new(MIN, 0);
        assert!(!c.is_closed(0), "nothing is closed before the first event");
        c.start_at(90_000);
        assert!(c.is_closed(59_999));
        assert!(!c.is_closed(60_000));
        c.pop_due(120_001);
        assert!(c.is_closed(119_999));
    }

    #[test]
    fn bins_stay_ordered_and_take_drops_older() {
        let kinds = [AggKind::Count];
        let mut b = Bins::default();
        b.get_mut(2 * MIN, &kinds)[0].update(crate::model::AggInput::Hit);
        b.get_mut(0, &kinds)[0].update(crate::model::AggInput::Hit);
        b.get_mut(MIN, &kinds);
        assert_eq!(b.len(), 3);
        assert!(b.take(MIN).is_some());
        assert_eq!(b.len(), 1, "the period before MIN is dropped with it");
        assert!(b.take(MIN).is_none());
        let last = b.take(2 * MIN).unwrap();
        assert_eq!(last[0].finish(AggKind::Count, 60.0), Some(1.0));
        assert!(b.is_empty());
    }
}
