//! One assigned partition: its engine, its event-time watermark, and the
//! oldest offset it still needs.
//!
//! Each partition has an engine of its own, so a rebalance can drop or
//! rebuild exactly the state of the partitions that moved. Producers key
//! telemetry by the labels the rules group by, so every series lives in one
//! partition (a series seen in two is counted, see `series_split`).
//!
//! **Offsets.** An event is still needed while its period is open, or while
//! the next evaluation of a rule reads that period (the last N+2). The
//! partition keeps, per time bucket, the smallest offset of an event in it;
//! the offset it may commit is the smallest offset of any bucket still
//! needed (or the next offset to read, when nothing is). A member that takes
//! the partition over reads again from there, rebuilds the same windows and
//! alarm states, and publishes only the periods that the committed
//! watermark (kept in the commit's metadata) had not closed: the same
//! changes, with the same ids.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::RuleSet;
use crate::engine::{Engine, Options};
use crate::model::{Millis, StateChange};

/// The commit metadata: a version tag and the watermark.
const META_PREFIX: &str = "klaxon/1 wm=";

pub fn encode_metadata(watermark: Option<Millis>) -> String {
    match watermark {
        Some(w) => format!("{META_PREFIX}{w}"),
        None => String::new(),
    }
}

/// The watermark a commit was made at (`None` for a commit of another tool).
pub fn decode_metadata(meta: &str) -> Option<Millis> {
    meta.strip_prefix(META_PREFIX)?.parse().ok()
}

pub struct Partition {
    pub engine: Engine,
    /// The next offset to read (last read + 1).
    pub next_offset: Option<i64>,
    /// Where reading started (the committed offset), if known.
    pub start_offset: Option<i64>,
    /// The latest event time read: this partition's watermark.
    pub max_time: Option<Millis>,
    /// Wall-clock time of the last message, or of the assignment.
    pub last_activity: Instant,
    /// Bucket start → smallest offset of an event in that bucket.
    buckets: BTreeMap<Millis, i64>,
    /// The bucket last recorded and the smallest offset it held then: a
    /// later offset in the same bucket changes nothing (most messages).
    last_bucket: Option<(Millis, i64)>,
    bucket_width: Millis,
    /// The high watermark of the partition (from the client's cache).
    pub high_watermark: Option<i64>,
    /// Wall-clock time the high watermark last grew past what was read:
    /// messages are waiting for this partition (see [`Partition::is_idle`]).
    pending_since: Option<Instant>,
}

impl Partition {
    /// A partition whose last commit was made at watermark `published`:
    /// periods closed by then are rebuilt but not published again.
    pub fn new(rules: RuleSet, lateness: Millis, published: Option<Millis>, now: Instant) -> Self {
        let bucket_width = rules
            .rules
            .iter()
            .map(|r| r.period)
            .min()
            .unwrap_or(60_000)
            .max(1);
        let mut engine = Engine::new(
            rules,
            Options {
                lateness,
                follow_events: false,
            },
        );
        engine.set_published_through(published);
        Partition {
            engine,
            next_offset: None,
            start_offset: None,
            max_time: None,
            last_activity: now,
            buckets: BTreeMap::new(),
            last_bucket: None,
            bucket_width,
            high_watermark: None,
            pending_since: None,
        }
    }

    /// Records the partition's high watermark as the client last saw it.
    /// Growth past what was read means messages are on their way: the
    /// partition is active again even before the first of them is read.
    pub fn saw_high_watermark(&mut self, high: i64, now: Instant) {
        let read = self.next_offset.or(self.start_offset);
        let grew = self.high_watermark.is_none_or(|h| high > h);
        if grew && read.is_some_and(|r| high > r) {
            self.pending_since = Some(now);
        }
        self.high_watermark = Some(high);
    }

    /// Records a message read at `offset` that carried an event at `time`
    /// (`None` for a message that went to the dead-letter topic).
    pub fn record(&mut self, offset: i64, time: Option<Millis>, now: Instant) {
        self.next_offset = Some(self.next_offset.map_or(offset + 1, |n| n.max(offset + 1)));
        self.last_activity = now;
        if let Some(t) = time {
            self.max_time = Some(self.max_time.map_or(t, |m| m.max(t)));
            let b = t.div_euclid(self.bucket_width) * self.bucket_width;
            if matches!(self.last_bucket, Some((lb, min)) if lb == b && offset >= min) {
                return;
            }
            let slot = self.buckets.entry(b).or_insert(offset);
            *slot = (*slot).min(offset);
            self.last_bucket = Some((b, *slot));
        }
    }

    /// Whether this partition no longer holds event time back: for `idle`
    /// (wall clock), nothing read and no new messages seen waiting (the
    /// high watermark growing past what was read). The second half matters
    /// after a lull: when traffic resumes, the first partition whose
    /// messages are processed must not carry time past the messages other
    /// partitions have fetched but not yet processed, or those would all be
    /// late.
    pub fn is_idle(&self, now: Instant, idle: Duration) -> bool {
        let last = self
            .pending_since
            .map_or(self.last_activity, |p| p.max(self.last_activity));
        now.saturating_duration_since(last) >= idle
    }

    /// Advances the engine to `watermark`; changes go to `out`.
    pub fn advance(&mut self, watermark: Millis, out: &mut Vec<StateChange>) {
        self.engine.advance_to(watermark, out);
    }

    /// The offset to commit, with the watermark for its metadata: the
    /// oldest offset still needed. Prunes the buckets no longer needed.
    /// `None` when nothing has been read since the assignment.
    pub fn commit_point(&mut self) -> Option<(i64, Option<Millis>)> {
        let next = self.next_offset?;
        let offset = match self.engine.needed_since() {
            None => next,
            Some(since) => {
                let w = self.bucket_width;
                // A bucket is needed while any of it is at or after `since`.
                while let Some((&b, _)) = self.buckets.first_key_value() {
                    if b + w <= since {
                        self.buckets.pop_first();
                        if self.last_bucket.is_some_and(|(lb, _)| lb == b) {
                            self.last_bucket = None;
                        }
                    } else {
                        break;
                    }
                }
                self.buckets
                    .values()
                    .copied()
                    .min()
                    .map_or(next, |o| o.min(next))
            }
        };
        Some((offset, self.engine.watermark()))
    }

    /// How far behind the end of the partition reading is.
    pub fn lag(&self) -> Option<i64> {
        let high = self.high_watermark?;
        let pos = self.next_offset.or(self.start_offset)?;
        Some((high - pos).max(0))
    }
}

/// The watermark over a set of partitions: the smallest partition watermark
/// among those that are not idle. A partition that has read nothing yet
/// holds time back (at minus infinity) until it goes idle. When every
/// partition is idle, the largest watermark stands, so time still reaches
/// the end of what was read. `None`: no time can pass yet.
pub fn global_watermark<'a>(
    parts: impl IntoIterator<Item = &'a Partition>,
    now: Instant,
    idle: Duration,
) -> Option<Millis> {
    let (mut min_active, mut max_all, mut any_active, mut blocked) = (i64::MAX, None, false, false);
    for p in parts {
        let idle_now = p.is_idle(now, idle);
        if let Some(t) = p.max_time {
            max_all = Some(max_all.map_or(t, |m: Millis| m.max(t)));
        }
        if idle_now {
            continue;
        }
        match p.max_time {
            Some(t) => {
                any_active = true;
                min_active = min_active.min(t);
            }
            None => blocked = true,
        }
    }
    if blocked {
        None
    } else if any_active {
        Some(min_active)
    } else {
        max_all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rules::compile_file;
    use crate::config::yaml;
    use crate::decode::Decoder;
    use std::path::Path;

    fn rules() -> RuleSet {
        let text = r#"team: t
rules:
  - name: High
    signal: metric
    where: name == "cpu"
    period: 1m
    compute: { v: max(value) }
    condition: v > 10
    evaluation_periods: 1
"#;
        let doc = yaml::parse(text).unwrap();
        RuleSet {
            rules: compile_file(Path::new("r.yaml"), &doc).unwrap(),
        }
    }

    #[test]
    fn metadata_round_trips() {
        assert_eq!(decode_metadata(&encode_metadata(Some(123))), Some(123));
        assert_eq!(decode_metadata(""), None);
        assert_eq!(decode_metadata("someone else's"), None);
    }

    #[test]
    fn watermark_is_the_slowest_active_partition() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(30);
        let mut a = Partition::new(rules(), 0, None, t0);
        let mut b = Partition::new(rules(), 0, None, t0);
        a.record(0, Some(100_000), t0);
        // b has read nothing: time waits for it…
        assert_eq!(global_watermark([&a, &b], t0, idle), None);
        // …until it has been idle for the timeout.
        assert_eq!(global_watermark([&a, &b], t0 + idle, idle), Some(100_000));
        b.record(0, Some(50_000), t0 + idle);
        assert_eq!(global_watermark([&a, &b], t0 + idle, idle), Some(50_000));
        // a idle, b active: b's time.
        let later = t0 + idle + Duration::from_secs(10);
        assert_eq!(global_watermark([&a, &b], later, idle), Some(50_000));
        // both idle: the furthest time read.
        let much_later = t0 + idle * 3;
        assert_eq!(global_watermark([&a, &b], much_later, idle), Some(100_000));
    }

    #[test]
    fn after_a_lull_a_partition_with_messages_waiting_holds_time_back() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(2);
        let mut a = Partition::new(rules(), 0, None, t0);
        let mut b = Partition::new(rules(), 0, None, t0);
        a.record(0, Some(100_000), t0);
        b.record(0, Some(100_000), t0);
        a.saw_high_watermark(1, t0);
        b.saw_high_watermark(1, t0);
        // A lull: both idle, nothing waiting.
        let t1 = t0 + Duration::from_secs(10);
        b.saw_high_watermark(1, t1);
        assert!(a.is_idle(t1, idle) && b.is_idle(t1, idle));
        // Traffic resumes in both; a's messages are processed first, b's
        // are fetched (its high watermark grew) but not processed yet.
        a.saw_high_watermark(2, t1);
        a.record(1, Some(900_000), t1);
        b.saw_high_watermark(2, t1);
        assert!(!b.is_idle(t1, idle), "b has messages waiting");
        assert_eq!(
            global_watermark([&a, &b], t1, idle),
            Some(100_000),
            "b's waiting messages are not made late by a's"
        );
        // If they never come (say, a transaction marker), b goes idle again.
        let t2 = t1 + idle;
        assert!(b.is_idle(t2, idle));
        // Growth that was already read is no sign of waiting messages.
        let mut c = Partition::new(rules(), 0, None, t0);
        c.record(0, Some(100_000), t0);
        c.record(1, Some(100_000), t0);
        c.saw_high_watermark(2, t1);
        assert!(c.is_idle(t1, idle));
    }

    fn event(t: Millis, v: f64) -> String {
        format!(r#"{{"kind":"metric","time":{t},"name":"cpu","value":{v}}}"#)
    }

    /// Reads one message as the consumer does: ingest, then record.
    fn read(p: &mut Partition, offset: i64, json: &str, out: &mut Vec<StateChange>, now: Instant) {
        let e = crate::decode::JsonDecoder.decode(json.as_bytes()).unwrap();
        p.engine.ingest(&e, out);
        p.record(offset, Some(e.time()), now);
    }

    #[test]
    fn commits_only_past_what_open_windows_and_the_range_need() {
        let t0 = Instant::now();
        let mut p = Partition::new(rules(), 0, None, t0);
        assert_eq!(p.commit_point(), None);
        let min = 60_000;
        let mut out = Vec::new();
        // offsets 0..10, one event per minute from minute 0
        for i in 0..10 {
            read(&mut p, i, &event(i * min + 1, 1.0), &mut out, t0);
        }
        // Nothing closed yet: the first event is still needed.
        assert_eq!(p.commit_point(), Some((0, None)));
        p.advance(9 * min + 1, &mut out);
        // Periods 0..8 closed; next open is minute 9; N+2 = 3 periods back
        // → minute 6 onwards is still needed.
        let (offset, wm) = p.commit_point().unwrap();
        assert_eq!(wm, Some(9 * min + 1));
        assert_eq!(offset, 6, "events from minute 6 are still in the range");
        // A late, out-of-order event for minute 7 at offset 10 changes nothing:
        read(&mut p, 10, &event(7 * min + 5, 1.0), &mut out, t0);
        assert_eq!(p.commit_point().unwrap().0, 6);
        // An event for a period still open, at a new offset, does not hold
        // the commit before offsets already needed.
        read(&mut p, 11, &event(9 * min + 5, 1.0), &mut out, t0);
        assert_eq!(p.commit_point().unwrap().0, 6);
    }

    #[test]
    fn a_rebuilt_partition_publishes_only_what_was_not_published() {
        let t0 = Instant::now();
        let min = 60_000;
        let values = [1.0, 50.0, 1.0, 50.0, 50.0, 1.0, 1.0, 50.0, 1.0, 1.0];
        // Reads offsets from..to (one event per minute at offset = minute).
        let feed = |p: &mut Partition, from: usize, to: usize, out: &mut Vec<StateChange>| {
            for (i, v) in values.iter().enumerate().take(to).skip(from) {
                let t = i as i64 * min + 1;
                read(p, i as i64, &event(t, *v), out, t0);
                p.advance(t, out);
            }
        };
        let mut all = Vec::new();
        feed(
            &mut Partition::new(rules(), 0, None, t0),
            0,
            values.len(),
            &mut all,
        );
        assert!(all.len() >= 4, "{all:?}");

        // A first owner reads minutes 0..5 and commits.
        let mut first = Partition::new(rules(), 0, None, t0);
        let mut published = Vec::new();
        feed(&mut first, 0, 5, &mut published);
        let (offset, wm) = first.commit_point().unwrap();
        assert!(offset > 0, "the commit moved past the oldest events");

        // The next owner resumes at the committed offset.
        let mut second = Partition::new(rules(), 0, wm, t0);
        let mut resumed = Vec::new();
        feed(&mut second, offset as usize, values.len(), &mut resumed);

        let ids = |v: &[StateChange]| v.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert!(!published.is_empty() && !resumed.is_empty());
        let mut union = ids(&published);
        union.extend(ids(&resumed));
        assert_eq!(union, ids(&all), "together: every change once, same ids");
    }
}
