//! Arithmetic on [`FloatHistogram`]s: scaling, addition and subtraction (with zero-bucket,
//! schema and custom-bound reconciliation), compaction, resolution reduction, counter-reset
//! detection and exact equality — the operations `rate`, `sum`, `avg`, binary operators and
//! `changes`/`resets` need on native histograms.
//!
//! Buckets are handled as sorted `(index, count)` lists per side and written back as spans,
//! so results have the same buckets (by index and count) as Prometheus's, though span
//! boundaries around empty buckets may be laid out differently until [`FloatHistogram::compact`].

use crate::functions::native::{bucket_bound, CounterResetHint, FloatHistogram, Span};

/// Why two histograms cannot be combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithError {
    /// One uses exponential buckets and the other custom buckets (Prometheus annotates this
    /// as a "mix of histograms with exponential and custom buckets schemas").
    IncompatibleSchema,
}

/// Side effects of [`FloatHistogram::add`] and [`FloatHistogram::sub`] that Prometheus
/// reports as annotations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArithOutcome {
    /// One operand said "counter reset" and the other "not reset" (a warning).
    pub counter_reset_collision: bool,
    /// Custom bucket bounds differed and were reduced to the common ones (an info).
    pub nhcb_bounds_reconciled: bool,
}

type Side = Vec<(i32, f64)>;

/// Spans for sorted bucket indexes.
fn spans_of(side: &Side) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut next = 0i32; // index after the end of the last span
    for (k, &(idx, _)) in side.iter().enumerate() {
        match spans.last_mut() {
            Some(sp) if idx == next => sp.length += 1,
            _ => spans.push(Span {
                offset: if k == 0 { idx } else { idx - next },
                length: 1,
            }),
        }
        next = idx + 1;
    }
    spans
}

/// Maps an index of `origin` schema to the bucket containing it in the coarser `target`.
fn target_idx(idx: i32, origin: i32, target: i32) -> i32 {
    ((idx - 1) >> (origin - target).clamp(0, 31)) + 1
}

fn reduce(side: &Side, origin: i32, target: i32) -> Side {
    let mut out: Side = Vec::with_capacity(side.len());
    for &(idx, c) in side {
        let t = target_idx(idx, origin, target);
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 += c,
            _ => out.push((t, c)),
        }
    }
    out
}

/// Merges `b` (negated when `negate`) into `a`; both sorted by index.
fn merge(a: &Side, b: &Side, negate: bool) -> Side {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let take_a = j >= b.len() || (i < a.len() && a[i].0 < b[j].0);
        let take_b = i >= a.len() || (j < b.len() && b[j].0 < a[i].0);
        let bv = |k: usize| if negate { -b[k].1 } else { b[k].1 };
        if take_a {
            out.push(a[i]);
            i += 1;
        } else if take_b {
            out.push((b[j].0, bv(j)));
            j += 1;
        } else {
            out.push((a[i].0, a[i].1 + bv(j)));
            i += 1;
            j += 1;
        }
    }
    out
}

/// The bounds present in both sorted lists.
fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Re-buckets custom buckets with `bounds` onto the coarser `target` bounds (each bucket
/// goes to the first target bound at or above its own upper bound, else to +Inf).
fn map_custom(side: &Side, bounds: &[f64], target: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; target.len() + 1];
    for &(idx, c) in side {
        let t = if idx >= 0 && (idx as usize) < bounds.len() {
            let ub = bounds[idx as usize];
            target
                .iter()
                .position(|&tb| tb >= ub)
                .unwrap_or(target.len())
        } else {
            target.len()
        };
        out[t] += c;
    }
    out
}

fn dense_to_side(v: &[f64]) -> Side {
    v.iter()
        .enumerate()
        .filter(|(_, c)| **c != 0.0)
        .map(|(i, &c)| (i as i32, c))
        .collect()
}

impl FloatHistogram {
    fn side_list(&self, positive: bool) -> Side {
        let (spans, counts) = if positive {
            (&self.positive_spans, &self.positive_buckets)
        } else {
            (&self.negative_spans, &self.negative_buckets)
        };
        let mut out = Vec::with_capacity(counts.len());
        let mut idx = 0i32;
        let mut k = 0usize;
        for (n, sp) in spans.iter().enumerate() {
            idx = if n == 0 { sp.offset } else { idx + sp.offset };
            for j in 0..sp.length {
                if let Some(&c) = counts.get(k) {
                    out.push((idx + j as i32, c));
                }
                k += 1;
            }
            idx += sp.length as i32;
        }
        out
    }

    fn set_side(&mut self, positive: bool, side: Side) {
        let spans = spans_of(&side);
        let counts = side.into_iter().map(|p| p.1).collect();
        if positive {
            self.positive_spans = spans;
            self.positive_buckets = counts;
        } else {
            self.negative_spans = spans;
            self.negative_buckets = counts;
        }
    }

    /// Multiplies every count and the sum by `factor` (a negative factor makes it a gauge).
    pub fn mul(&mut self, factor: f64) {
        self.zero_count *= factor;
        self.count *= factor;
        self.sum *= factor;
        self.positive_buckets.iter_mut().for_each(|c| *c *= factor);
        self.negative_buckets.iter_mut().for_each(|c| *c *= factor);
        if factor < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// Divides every count and the sum by `scalar`; division by zero also drops all buckets.
    pub fn div(&mut self, scalar: f64) {
        self.zero_count /= scalar;
        self.count /= scalar;
        self.sum /= scalar;
        if scalar == 0.0 {
            self.positive_buckets.clear();
            self.negative_buckets.clear();
            self.positive_spans.clear();
            self.negative_spans.clear();
            return;
        }
        self.positive_buckets.iter_mut().for_each(|c| *c /= scalar);
        self.negative_buckets.iter_mut().for_each(|c| *c /= scalar);
        if scalar < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// Removes empty buckets and merges adjacent spans.
    pub fn compact(&mut self) {
        for positive in [true, false] {
            let side: Side = self
                .side_list(positive)
                .into_iter()
                .filter(|p| p.1 != 0.0)
                .collect();
            self.set_side(positive, side);
        }
    }

    /// Merges buckets to the coarser exponential `target` schema (no-op otherwise).
    pub fn reduce_resolution(&mut self, target: i32) {
        if self.uses_custom_buckets() || target >= self.schema {
            return;
        }
        for positive in [true, false] {
            let side = reduce(&self.side_list(positive), self.schema, target);
            self.set_side(positive, side);
        }
        self.schema = target;
    }

    /// The zero count this histogram would have with the zero threshold raised to `larger`,
    /// and the threshold actually needed: a threshold inside a populated bucket is raised to
    /// that bucket's upper bound (in absolute value).
    pub fn zero_count_for_larger_threshold(&self, larger: f64) -> (f64, f64) {
        let mut larger = larger;
        if larger == self.zero_threshold {
            return (self.zero_count, larger);
        }
        'outer: loop {
            let mut zc = self.zero_count;
            let mut kc = 0.0;
            for (idx, c) in self.side_list(true) {
                let lower = bucket_bound(idx - 1, self.schema, &self.custom_values);
                let upper = bucket_bound(idx, self.schema, &self.custom_values);
                if lower >= larger {
                    break;
                }
                (zc, kc) = crate::functions::aggregate::kahan_inc(c, zc, kc);
                if upper > larger {
                    if c != 0.0 {
                        larger = upper;
                    }
                    break;
                }
            }
            for (idx, c) in self.side_list(false) {
                let upper = -bucket_bound(idx - 1, self.schema, &self.custom_values);
                let lower = -bucket_bound(idx, self.schema, &self.custom_values);
                if upper <= -larger {
                    break;
                }
                (zc, kc) = crate::functions::aggregate::kahan_inc(c, zc, kc);
                if lower < -larger {
                    if c != 0.0 {
                        larger = -lower;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (zc + kc, larger);
        }
    }

    /// Widens this histogram's zero bucket to `threshold` (which must be at a bucket
    /// boundary), moving the buckets inside it into the zero count.
    fn widen_zero_bucket(&mut self, zero_count: f64, threshold: f64) {
        self.zero_count = zero_count;
        self.zero_threshold = threshold;
        let schema = self.schema;
        let custom = self.custom_values.clone();
        let pos: Side = self
            .side_list(true)
            .into_iter()
            .filter(|&(idx, c)| bucket_bound(idx - 1, schema, &custom) >= threshold && c != 0.0)
            .collect();
        let neg: Side = self
            .side_list(false)
            .into_iter()
            .filter(|&(idx, c)| -bucket_bound(idx - 1, schema, &custom) <= -threshold && c != 0.0)
            .collect();
        self.set_side(true, pos);
        self.set_side(false, neg);
    }

    /// Makes both zero buckets equal (widening this one as needed); returns the zero count
    /// `other` has with the common threshold.
    fn reconcile_zero_buckets(&mut self, other: &FloatHistogram) -> f64 {
        let mut other_zc = other.zero_count;
        let mut other_zt = other.zero_threshold;
        while other_zt != self.zero_threshold {
            if self.zero_threshold > other_zt {
                (other_zc, other_zt) = other.zero_count_for_larger_threshold(self.zero_threshold);
            }
            if other_zt > self.zero_threshold {
                let (zc, zt) = self.zero_count_for_larger_threshold(other_zt);
                self.widen_zero_bucket(zc, zt);
            }
        }
        other_zc
    }

    fn adjust_counter_reset(&mut self, other: &FloatHistogram) -> bool {
        use CounterResetHint::*;
        match (self.counter_reset_hint, other.counter_reset_hint) {
            (a, b) if a == b => false,
            (Gauge, _) => false,
            (_, Gauge) => {
                self.counter_reset_hint = Gauge;
                false
            }
            (Unknown, _) => false,
            (_, Unknown) => {
                self.counter_reset_hint = Unknown;
                false
            }
            _ => {
                self.counter_reset_hint = Unknown;
                true
            }
        }
    }

    /// Adds `other` into `self` (see [`sub`](Self::sub) for the rules).
    pub fn add(&mut self, other: &FloatHistogram) -> Result<ArithOutcome, ArithError> {
        self.combine(other, false)
    }

    /// Subtracts `other` from `self`. Both must use exponential buckets or both custom
    /// buckets. Exponential histograms are brought to the coarser schema and the wider zero
    /// bucket; buckets of `other` inside the zero bucket are dropped. Custom histograms with
    /// different bounds are both re-bucketed onto the bounds they share.
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<ArithOutcome, ArithError> {
        self.combine(other, true)
    }

    fn combine(
        &mut self,
        other: &FloatHistogram,
        negate: bool,
    ) -> Result<ArithOutcome, ArithError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(ArithError::IncompatibleSchema);
        }
        let sign = if negate { -1.0 } else { 1.0 };
        let mut outcome = ArithOutcome {
            counter_reset_collision: self.adjust_counter_reset(other),
            ..Default::default()
        };
        if !self.uses_custom_buckets() {
            let other_zc = self.reconcile_zero_buckets(other);
            self.zero_count += sign * other_zc;
        }
        self.count += sign * other.count;
        self.sum += sign * other.sum;
        if self.uses_custom_buckets() {
            if self.custom_values == other.custom_values {
                let side = merge(&self.side_list(true), &other.side_list(true), negate);
                self.set_side(true, side);
            } else {
                outcome.nhcb_bounds_reconciled = true;
                let target = intersect_bounds(&self.custom_values, &other.custom_values);
                let a = map_custom(&self.side_list(true), &self.custom_values, &target);
                let b = map_custom(&other.side_list(true), &other.custom_values, &target);
                let dense: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + sign * y).collect();
                self.set_side(true, dense_to_side(&dense));
                self.custom_values = target;
            }
            return Ok(outcome);
        }
        let target = self.schema.min(other.schema);
        self.reduce_resolution(target);
        let zt = self.zero_threshold;
        for positive in [true, false] {
            let mut theirs = other.side_list(positive);
            if other.schema > target {
                theirs = reduce(&theirs, other.schema, target);
            }
            // Buckets of `other` entirely inside the zero bucket are already counted there.
            theirs.retain(|&(idx, _)| bucket_bound(idx, target, &[]) > zt);
            let side = merge(&self.side_list(positive), &theirs, negate);
            self.set_side(positive, side);
        }
        Ok(outcome)
    }

    /// Whether going from `previous` to `self` means the counter was reset: the hint says so,
    /// or the count, the zero bucket or any bucket decreased, or the layout changed in a way
    /// that only a restart explains (finer schema, narrower zero bucket, custom bounds).
    pub fn detect_reset(&self, previous: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::CounterReset => return true,
            CounterResetHint::NotCounterReset => return false,
            _ => {}
        }
        if self.count < previous.count {
            return true;
        }
        if self.uses_custom_buckets() {
            if !previous.uses_custom_buckets() {
                return true;
            }
            if self.custom_values != previous.custom_values {
                let target = intersect_bounds(&self.custom_values, &previous.custom_values);
                let cur = map_custom(&self.side_list(true), &self.custom_values, &target);
                let prev = map_custom(&previous.side_list(true), &previous.custom_values, &target);
                return cur.iter().zip(&prev).any(|(c, p)| c < p);
            }
        }
        if self.schema > previous.schema {
            return true;
        }
        if self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let (prev_zc, new_zt) = previous.zero_count_for_larger_threshold(self.zero_threshold);
        if new_zt != self.zero_threshold {
            return true;
        }
        if self.zero_count < prev_zc {
            return true;
        }
        let custom = self.uses_custom_buckets();
        for positive in [true, false] {
            let keep = |side: Side, schema: i32| -> Side {
                let side = if !custom && schema > self.schema {
                    reduce(&side, schema, self.schema)
                } else {
                    side
                };
                if custom {
                    side
                } else {
                    side.into_iter()
                        .filter(|&(idx, _)| {
                            bucket_bound(idx, self.schema, &[]) > self.zero_threshold
                        })
                        .collect()
                }
            };
            let cur = keep(self.side_list(positive), self.schema);
            let prev = keep(previous.side_list(positive), previous.schema);
            let mut j = 0;
            for &(pidx, pc) in &prev {
                while j < cur.len() && cur[j].0 < pidx {
                    j += 1;
                }
                let cc = if j < cur.len() && cur[j].0 == pidx {
                    cur[j].1
                } else {
                    0.0
                };
                if cc < pc {
                    return true;
                }
            }
        }
        false
    }

    /// Exact equality as Prometheus's `Equals`: same schema, bounds, zero bucket, and the same
    /// buckets (index and bit-identical count) on both sides.
    pub fn equals(&self, other: &FloatHistogram) -> bool {
        self.schema == other.schema
            && self.count.to_bits() == other.count.to_bits()
            && self.sum.to_bits() == other.sum.to_bits()
            && (!self.uses_custom_buckets() || self.custom_values == other.custom_values)
            && self.zero_threshold == other.zero_threshold
            && self.zero_count.to_bits() == other.zero_count.to_bits()
            && [true, false].iter().all(|&p| {
                let (a, b) = (self.side_list(p), other.side_list(p));
                a.len() == b.len()
                    && a.iter()
                        .zip(&b)
                        .all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(
        schema: i32,
        pos: &[(i32, f64)],
        neg: &[(i32, f64)],
        zc: f64,
        zt: f64,
    ) -> FloatHistogram {
        let mut h = FloatHistogram {
            schema,
            zero_count: zc,
            zero_threshold: zt,
            ..Default::default()
        };
        h.set_side(true, pos.to_vec());
        h.set_side(false, neg.to_vec());
        h.count = zc + pos.iter().chain(neg).map(|p| p.1).sum::<f64>();
        h
    }

    #[test]
    fn spans_round_trip() {
        let side = vec![(-2, 1.0), (-1, 2.0), (3, 3.0), (4, 0.0), (10, 5.0)];
        let spans = spans_of(&side);
        assert_eq!(
            spans,
            vec![
                Span {
                    offset: -2,
                    length: 2
                },
                Span {
                    offset: 3,
                    length: 2
                },
                Span {
                    offset: 5,
                    length: 1
                }
            ]
        );
        let mut h = FloatHistogram::default();
        h.set_side(true, side.clone());
        assert_eq!(h.side_list(true), side);
        h.compact();
        assert_eq!(h.side_list(true).len(), 4);
    }

    #[test]
    fn add_and_sub_same_schema() {
        // {{schema:0 sum:4 count:4 buckets:[1 2 1]}} + {{schema:0 sum:-4 count:4 n_buckets:[1 2 1]}}
        let mut a = hist(0, &[(0, 1.0), (1, 2.0), (2, 1.0)], &[], 0.0, 0.0);
        a.sum = 4.0;
        let mut b = hist(0, &[], &[(0, 1.0), (1, 2.0), (2, 1.0)], 0.0, 0.0);
        b.sum = -4.0;
        let out = a.add(&b).unwrap();
        assert_eq!(out, ArithOutcome::default());
        assert_eq!((a.count, a.sum), (8.0, 0.0));
        assert_eq!(a.side_list(false), vec![(0, 1.0), (1, 2.0), (2, 1.0)]);
        let mut c = a.clone();
        c.sub(&b).unwrap();
        assert_eq!(c.count, 4.0);
        c.compact();
        assert!(c.side_list(false).is_empty());
        assert_eq!(c.side_list(true), vec![(0, 1.0), (1, 2.0), (2, 1.0)]);
    }

    #[test]
    fn add_reduces_to_the_coarser_schema() {
        // schema 1 indexes 1..=4 → schema 0 indexes 1, 1, 2, 2.
        let mut fine = hist(1, &[(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0)], &[], 0.0, 0.0);
        let coarse = hist(0, &[(1, 10.0)], &[], 0.0, 0.0);
        fine.add(&coarse).unwrap();
        assert_eq!(fine.schema, 0);
        assert_eq!(fine.side_list(true), vec![(1, 12.0), (2, 2.0)]);
    }

    #[test]
    fn zero_buckets_are_reconciled() {
        // Other has a zero threshold of 1 (bucket 0's upper bound at schema 0).
        let mut a = hist(0, &[(0, 3.0), (1, 4.0)], &[], 1.0, 0.5);
        let b = hist(0, &[(1, 1.0)], &[], 2.0, 1.0);
        a.add(&b).unwrap();
        assert_eq!(a.zero_threshold, 1.0);
        assert_eq!(a.zero_count, 1.0 + 3.0 + 2.0);
        assert_eq!(a.side_list(true), vec![(1, 5.0)]);
        // A threshold inside a populated bucket moves up to its upper bound.
        let h = hist(0, &[(1, 1.0)], &[], 0.0, 0.5);
        assert_eq!(h.zero_count_for_larger_threshold(1.5), (1.0, 2.0));
    }

    #[test]
    fn custom_bounds_are_intersected() {
        let mut a = FloatHistogram {
            schema: -53,
            custom_values: vec![1.0, 5.0, 10.0],
            ..Default::default()
        };
        a.set_side(true, vec![(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)]);
        let mut b = FloatHistogram {
            schema: -53,
            custom_values: vec![5.0, 20.0],
            ..Default::default()
        };
        b.set_side(true, vec![(0, 1.0), (1, 1.0), (2, 1.0)]);
        let out = a.add(&b).unwrap();
        assert!(out.nhcb_bounds_reconciled);
        assert_eq!(a.custom_values, vec![5.0]);
        assert_eq!(a.side_list(true), vec![(0, 4.0), (1, 9.0)]);
        let e = FloatHistogram::default();
        assert_eq!(a.add(&e), Err(ArithError::IncompatibleSchema));
    }

    #[test]
    fn counter_reset_hints() {
        let mut a = FloatHistogram {
            counter_reset_hint: CounterResetHint::CounterReset,
            ..Default::default()
        };
        let b = FloatHistogram {
            counter_reset_hint: CounterResetHint::NotCounterReset,
            ..Default::default()
        };
        assert!(a.add(&b).unwrap().counter_reset_collision);
        assert_eq!(a.counter_reset_hint, CounterResetHint::Unknown);
        let mut g = FloatHistogram {
            counter_reset_hint: CounterResetHint::NotCounterReset,
            ..Default::default()
        };
        let gauge = FloatHistogram {
            counter_reset_hint: CounterResetHint::Gauge,
            ..Default::default()
        };
        assert!(!g.add(&gauge).unwrap().counter_reset_collision);
        assert_eq!(g.counter_reset_hint, CounterResetHint::Gauge);
    }

    #[test]
    fn reset_detection() {
        let prev = hist(0, &[(0, 1.0), (1, 2.0)], &[], 0.0, 0.0);
        let grown = hist(0, &[(0, 1.0), (1, 3.0), (2, 1.0)], &[], 0.0, 0.0);
        assert!(!grown.detect_reset(&prev));
        let dropped = hist(0, &[(0, 2.0), (1, 1.0), (5, 2.0)], &[], 0.0, 0.0);
        assert!(dropped.detect_reset(&prev));
        let missing = hist(0, &[(0, 5.0)], &[], 0.0, 0.0);
        assert!(missing.detect_reset(&prev));
        let finer = hist(1, &[(0, 5.0), (2, 5.0)], &[], 0.0, 0.0);
        assert!(finer.detect_reset(&prev));
        // A coarser schema compares merged buckets: (0,1,2 at schema 0) → schema -1 idx 0,1,1.
        let coarser = hist(-1, &[(0, 1.0), (1, 2.0)], &[], 0.0, 0.0);
        assert!(!coarser.detect_reset(&prev));
        let mut hinted = grown.clone();
        hinted.counter_reset_hint = CounterResetHint::CounterReset;
        assert!(hinted.detect_reset(&prev));
    }

    #[test]
    fn scaling_and_equality() {
        let mut a = hist(0, &[(0, 2.0)], &[(0, 4.0)], 2.0, 0.1);
        a.sum = 8.0;
        let b = a.clone();
        assert!(a.equals(&b));
        a.div(2.0);
        assert_eq!((a.count, a.sum, a.zero_count), (4.0, 4.0, 1.0));
        assert_eq!(a.positive_buckets, vec![1.0]);
        assert!(!a.equals(&b));
        a.mul(-1.0);
        assert_eq!(a.counter_reset_hint, CounterResetHint::Gauge);
        a.div(0.0);
        assert!(a.positive_buckets.is_empty() && a.positive_spans.is_empty());
    }
}
