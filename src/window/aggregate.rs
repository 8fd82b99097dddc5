//! Aggregate states: folded per event, merged across partial results,
//! finished once when their period closes.

use sketches_ddsketch::{Config, DDSketch};

use crate::model::{AggInput, AggKind};

/// The running state of one aggregate in one period of one series.
#[derive(Clone)]
pub enum AggState {
    Count(u64),
    Sum { sum: f64, n: u64 },
    Min(Option<f64>),
    Max(Option<f64>),
    Ratio { hits: u64, n: u64 },
    Percentile { q: f64, sketch: Box<DDSketch> },
}

impl std::fmt::Debug for AggState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AggState::Count(n) => write!(f, "Count({n})"),
            AggState::Sum { sum, n } => write!(f, "Sum({sum}, n={n})"),
            AggState::Min(m) => write!(f, "Min({m:?})"),
            AggState::Max(m) => write!(f, "Max({m:?})"),
            AggState::Ratio { hits, n } => write!(f, "Ratio({hits}/{n})"),
            AggState::Percentile { q, sketch } => {
                write!(f, "Percentile(q={q}, n={})", sketch.count())
            }
        }
    }
}

impl AggState {
    pub fn new(kind: AggKind) -> AggState {
        match kind {
            AggKind::Count | AggKind::Rate => AggState::Count(0),
            AggKind::Sum | AggKind::Avg => AggState::Sum { sum: 0.0, n: 0 },
            AggKind::Min => AggState::Min(None),
            AggKind::Max => AggState::Max(None),
            AggKind::Ratio => AggState::Ratio { hits: 0, n: 0 },
            // alpha 0.01: every quantile is within 1% of the true value's.
            AggKind::Percentile(q) => AggState::Percentile {
                q,
                sketch: Box::new(DDSketch::new(Config::defaults())),
            },
        }
    }

    #[inline]
    pub fn update(&mut self, input: AggInput) {
        match (self, input) {
            (_, AggInput::Skip) => {}
            (AggState::Count(n), AggInput::Hit | AggInput::Num(_)) => *n += 1,
            (AggState::Count(_), AggInput::Miss) => {}
            (AggState::Ratio { hits, n }, AggInput::Hit) => {
                *hits += 1;
                *n += 1;
            }
            (AggState::Ratio { n, .. }, _) => *n += 1,
            (AggState::Sum { sum, n }, AggInput::Num(x)) => {
                *sum += x;
                *n += 1;
            }
            (AggState::Min(m), AggInput::Num(x)) => *m = Some(m.map_or(x, |m| m.min(x))),
            (AggState::Max(m), AggInput::Num(x)) => *m = Some(m.map_or(x, |m| m.max(x))),
            (AggState::Percentile { sketch, .. }, AggInput::Num(x)) => sketch.add(x),
            _ => {}
        }
    }

    /// Folds another partial state of the same aggregate into this one.
    pub fn merge(&mut self, other: &AggState) {
        match (self, other) {
            (AggState::Count(a), AggState::Count(b)) => *a += b,
            (AggState::Sum { sum, n }, AggState::Sum { sum: s2, n: n2 }) => {
                *sum += s2;
                *n += n2;
            }
            (AggState::Min(a), AggState::Min(b)) => *a = opt(*a, *b, f64::min),
            (AggState::Max(a), AggState::Max(b)) => *a = opt(*a, *b, f64::max),
            (AggState::Ratio { hits, n }, AggState::Ratio { hits: h2, n: n2 }) => {
                *hits += h2;
                *n += n2;
            }
            (AggState::Percentile { sketch, .. }, AggState::Percentile { sketch: s2, .. }) => {
                // Both come from `Config::defaults()`, so merge cannot fail.
                sketch.merge(s2).expect("sketches share one config");
            }
            (a, b) => panic!("merging different aggregates: {a:?} and {b:?}"),
        }
    }

    /// The aggregate's value for a period of `period_secs`, or `None` when it
    /// saw no input (the average of nothing is not zero).
    pub fn finish(&self, kind: AggKind, period_secs: f64) -> Option<f64> {
        match (kind, self) {
            (AggKind::Count, AggState::Count(n)) => Some(*n as f64),
            (AggKind::Rate, AggState::Count(n)) => Some(*n as f64 / period_secs),
            (AggKind::Sum, AggState::Sum { sum, n }) => (*n > 0).then_some(*sum),
            (AggKind::Avg, AggState::Sum { sum, n }) => (*n > 0).then(|| sum / *n as f64),
            (AggKind::Min, AggState::Min(m)) | (AggKind::Max, AggState::Max(m)) => *m,
            (AggKind::Ratio, AggState::Ratio { hits, n }) => {
                (*n > 0).then(|| *hits as f64 / *n as f64)
            }
            (AggKind::Percentile(_), AggState::Percentile { q, sketch }) => {
                let v = sketch.quantile(q / 100.0).ok().flatten()?;
                // The sketch reports a bucket's midpoint; keep it inside what was seen.
                Some(v.clamp(sketch.min()?, sketch.max()?))
            }
            _ => None,
        }
    }
}

fn opt(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fold(kind: AggKind, inputs: &[AggInput]) -> AggState {
        let mut s = AggState::new(kind);
        for i in inputs {
            s.update(*i);
        }
        s
    }

    #[test]
    fn finishes_each_aggregate() {
        use AggInput::*;
        let nums = [Num(4.0), Num(1.0), Skip, Num(7.0)];
        // (kind, inputs, period seconds, expected)
        let cases: &[(AggKind, &[AggInput], f64, Option<f64>)] = &[
            (AggKind::Count, &[Hit, Hit, Miss, Hit], 60.0, Some(3.0)),
            (AggKind::Count, &[], 60.0, Some(0.0)),
            (AggKind::Rate, &[Hit, Hit, Hit], 60.0, Some(0.05)),
            (AggKind::Sum, &nums, 60.0, Some(12.0)),
            (AggKind::Sum, &[Skip], 60.0, None),
            (AggKind::Avg, &nums, 60.0, Some(4.0)),
            (AggKind::Avg, &[], 60.0, None),
            (AggKind::Min, &nums, 60.0, Some(1.0)),
            (AggKind::Max, &nums, 60.0, Some(7.0)),
            (AggKind::Ratio, &[Hit, Miss, Miss, Hit], 60.0, Some(0.5)),
            (AggKind::Ratio, &[], 60.0, None),
            (AggKind::Percentile(100.0), &nums, 60.0, Some(7.0)),
            (AggKind::Percentile(0.0), &nums, 60.0, Some(1.0)),
            (AggKind::Percentile(50.0), &[], 60.0, None),
        ];
        for (kind, inputs, secs, want) in cases {
            let got = fold(*kind, inputs).finish(*kind, *secs);
            assert_eq!(got, *want, "{kind:?} over {inputs:?}");
        }
    }

    /// Sketch p99 against an exact sort, on a skewed latency-like sample.
    #[test]
    fn sketch_p99_is_within_one_percent_of_exact() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut values = Vec::new();
        let mut s = AggState::new(AggKind::Percentile(99.0));
        for _ in 0..100_000 {
            // xorshift, then a log-normal-ish spread from 1 ms to ~20 s
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let u = (rng >> 11) as f64 / (1u64 << 53) as f64;
            let v = (u * 10.0).exp() + 1.0;
            values.push(v);
            s.update(AggInput::Num(v));
        }
        values.sort_by(f64::total_cmp);
        for q in [50.0, 90.0, 99.0, 99.9] {
            let mut st = s.clone();
            if let AggState::Percentile { q: sq, .. } = &mut st {
                *sq = q;
            }
            let exact = values[((q / 100.0) * (values.len() - 1) as f64) as usize];
            let got = st.finish(AggKind::Percentile(q), 60.0).unwrap();
            let err = (got - exact).abs() / exact;
            assert!(
                err <= 0.01,
                "p{q}: sketch {got} vs exact {exact}: {:.4}% off",
                err * 100.0
            );
        }
    }

    fn kinds() -> impl Strategy<Value = AggKind> {
        prop_oneof![
            Just(AggKind::Count),
            Just(AggKind::Rate),
            Just(AggKind::Sum),
            Just(AggKind::Avg),
            Just(AggKind::Min),
            Just(AggKind::Max),
            Just(AggKind::Ratio),
            (0.0f64..=100.0).prop_map(AggKind::Percentile),
        ]
    }

    fn inputs() -> impl Strategy<Value = Vec<AggInput>> {
        prop::collection::vec(
            prop_oneof![
                Just(AggInput::Hit),
                Just(AggInput::Miss),
                Just(AggInput::Skip),
                (0.001f64..1e6).prop_map(AggInput::Num),
            ],
            0..40,
        )
    }

    fn close(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            (a, b) => a == b,
        }
    }

    proptest! {
        /// (a ⊕ b) ⊕ c == a ⊕ (b ⊕ c), and both equal folding everything at once.
        #[test]
        fn merge_is_associative(kind in kinds(), a in inputs(), b in inputs(), c in inputs()) {
            let (sa, sb, sc) = (fold(kind, &a), fold(kind, &b), fold(kind, &c));
            let mut left = sa.clone();
            left.merge(&sb);
            left.merge(&sc);
            let mut bc = sb.clone();
            bc.merge(&sc);
            let mut right = sa.clone();
            right.merge(&bc);
            let all: Vec<AggInput> = a.iter().chain(&b).chain(&c).copied().collect();
            let whole = fold(kind, &all);
            let (l, r, w) = (left.finish(kind, 60.0), right.finish(kind, 60.0), whole.finish(kind, 60.0));
            prop_assert!(close(l, r), "{:?} vs {:?}", l, r);
            prop_assert!(close(l, w), "{:?} vs {:?}", l, w);
        }

        #[test]
        fn percentile_lies_between_min_and_max(q in 0.0f64..=100.0, xs in prop::collection::vec(-1e6f64..1e6, 1..200)) {
            let mut s = AggState::new(AggKind::Percentile(q));
            for x in &xs { s.update(AggInput::Num(*x)); }
            let p = s.finish(AggKind::Percentile(q), 60.0).unwrap();
            let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(min <= p && p <= max, "{} not in [{}, {}]", p, min, max);
        }
    }
}
