//! Numeric helpers shared by the aggregation operators and the `*_over_time` functions:
//! Kahan–Neumaier summation ([`KahanSum`]), the mean with overflow fallback ([`Mean`]), the
//! running variance ([`Variance`]) and the `quantile` interpolation ([`quantile`]).
//!
//! They follow Prometheus's arithmetic step for step so that results agree to the last bit
//! wherever the upstream tests compare values exactly.

use std::cmp::Ordering;

/// One Kahan–Neumaier step: adds `inc` to `sum` with compensation `c`, returning the new
/// `(sum, c)`. When the sum becomes infinite the compensation is reset to 0.
#[inline]
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// A compensated (Kahan–Neumaier) running sum, as Prometheus's `sum` and `sum_over_time`
/// compute it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KahanSum {
    /// The running sum without the compensation.
    pub sum: f64,
    /// The accumulated compensation term.
    pub c: f64,
}

impl KahanSum {
    /// A sum of nothing (0).
    pub fn new() -> Self {
        KahanSum { sum: 0.0, c: 0.0 }
    }

    /// A sum starting at `v` (Prometheus seeds its sums with the first value).
    pub fn starting_at(v: f64) -> Self {
        KahanSum { sum: v, c: 0.0 }
    }

    /// Adds `v`.
    #[inline]
    pub fn add(&mut self, v: f64) {
        let (s, c) = kahan_inc(v, self.sum, self.c);
        self.sum = s;
        self.c = c;
    }

    /// The compensated sum. An infinite sum is returned as is.
    #[inline]
    pub fn value(&self) -> f64 {
        if self.sum.is_infinite() {
            self.sum
        } else {
            self.sum + self.c
        }
    }
}

/// The arithmetic mean of a stream of values, as Prometheus's `avg` and `avg_over_time`
/// compute it: a Kahan sum divided by the count while the sum stays finite, switching to an
/// incremental mean (also compensated) once the sum would overflow.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mean {
    count: f64,
    sum: f64,
    mean: f64,
    c: f64,
    incremental: bool,
}

impl Mean {
    /// An empty mean (its value is NaN until a value is added).
    pub fn new() -> Self {
        Mean::default()
    }

    /// Adds `v`.
    #[inline]
    pub fn add(&mut self, v: f64) {
        if self.count == 0.0 {
            self.count = 1.0;
            self.sum = v;
            self.mean = v;
            self.c = 0.0;
            return;
        }
        self.count += 1.0;
        if !self.incremental {
            let (s, c) = kahan_inc(v, self.sum, self.c);
            if !s.is_infinite() {
                self.sum = s;
                self.c = c;
                return;
            }
            self.incremental = true;
            self.mean = self.sum / (self.count - 1.0);
            self.c /= self.count - 1.0;
        }
        let q = (self.count - 1.0) / self.count;
        let (m, c) = kahan_inc(v / self.count, q * self.mean, q * self.c);
        self.mean = m;
        self.c = c;
    }

    /// A mean of `count` values (at least one) whose compensated sum is `sum` + `c`, before
    /// any overflow: the state [`Mean::add`] leaves while the sum stays finite.
    pub fn summed(count: f64, sum: f64, c: f64) -> Self {
        Mean {
            count,
            sum,
            mean: 0.0,
            c,
            incremental: false,
        }
    }

    /// `(count, sum, compensation)` while the mean is kept as a sum (see [`Mean::summed`]);
    /// `None` once it has switched to the incremental form.
    pub fn as_summed(&self) -> Option<(f64, f64, f64)> {
        (!self.incremental).then_some((self.count, self.sum, self.c))
    }

    /// Number of values added.
    pub fn count(&self) -> f64 {
        self.count
    }

    /// The mean (NaN when empty).
    pub fn value(&self) -> f64 {
        if self.count == 0.0 {
            f64::NAN
        } else if self.incremental {
            self.mean + self.c
        } else {
            self.sum / self.count + self.c / self.count
        }
    }
}

/// Running population variance (Welford), as Prometheus's `stddev`/`stdvar` aggregations
/// compute it: a first value that is NaN or ±Inf makes the result NaN.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Variance {
    count: f64,
    mean: f64,
    m2: f64,
}

impl Variance {
    /// An empty accumulator.
    pub fn new() -> Self {
        Variance::default()
    }

    /// Adds `v`.
    #[inline]
    pub fn add(&mut self, v: f64) {
        if self.count == 0.0 {
            self.count = 1.0;
            self.mean = v;
            self.m2 = if v.is_finite() { 0.0 } else { f64::NAN };
            return;
        }
        self.count += 1.0;
        let delta = v - self.mean;
        self.mean += delta / self.count;
        self.m2 += delta * (v - self.mean);
    }

    /// Number of values added.
    pub fn count(&self) -> f64 {
        self.count
    }

    /// Population variance (NaN when empty).
    pub fn stdvar(&self) -> f64 {
        if self.count == 0.0 {
            f64::NAN
        } else {
            self.m2 / self.count
        }
    }

    /// Population standard deviation (NaN when empty).
    pub fn stddev(&self) -> f64 {
        self.stdvar().sqrt()
    }
}

/// Ordering Prometheus uses to sort values for quantiles: NaN sorts before everything.
#[inline]
pub fn nan_first_cmp(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// The `q`-quantile of `values` (sorted in place), linearly interpolated between the two
/// closest ranks: `rank = q × (n − 1)`. Empty input or NaN `q` gives NaN, `q < 0` gives −Inf
/// and `q > 1` gives +Inf (the engine raises [`crate::functions::Annotation::InvalidQuantile`]
/// for those).
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_unstable_by(nan_first_cmp);
    quantile_sorted(q, values)
}

/// [`quantile`] of values already sorted with [`nan_first_cmp`] (q must be in [0, 1]).
pub fn quantile_sorted(q: f64, sorted: &[f64]) -> f64 {
    if sorted.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    let n = sorted.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (n - 1.0).min(lower + 1.0);
    let weight = rank - rank.floor();
    sorted[lower as usize] * (1.0 - weight) + sorted[upper as usize] * weight
}

/// The deterministic sampling offset `limit_ratio` gives a series: its label-set hash
/// ([`tsdb::Labels::hash`]) as a fraction of `u64::MAX`, in `[0, 1]`.
pub fn ratio_sample_offset(labels_hash: u64) -> f64 {
    labels_hash as f64 / u64::MAX as f64
}

/// Whether `limit_ratio(ratio, …)` keeps a series with sampling `offset`: for `ratio >= 0`
/// when `offset < ratio`, for a negative ratio when `offset >= 1 + ratio` (the complement,
/// so `limit_ratio(r, v) or limit_ratio(r - 1, v)` returns every series).
pub fn ratio_keep(ratio: f64, offset: f64) -> bool {
    if ratio >= 0.0 {
        offset < ratio
    } else {
        offset >= 1.0 + ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kahan_recovers_lost_low_bits() {
        // aggregators.test: sum of 1, 1e100, 1, -1e100 is 2 with Kahan summation.
        let mut k = KahanSum::starting_at(1.0);
        for v in [1e100, 1.0, -1e100] {
            k.add(v);
        }
        assert_eq!(k.value(), 2.0);
        let naive: f64 = [1.0, 1e100, 1.0, -1e100].iter().sum();
        assert_eq!(naive, 0.0);
        let mut inf = KahanSum::new();
        inf.add(f64::INFINITY);
        inf.add(1.0);
        assert_eq!(inf.value(), f64::INFINITY);
    }

    #[test]
    fn mean_switches_to_incremental_on_overflow() {
        let mut m = Mean::new();
        assert!(m.value().is_nan());
        for v in [1.0, 1e100, 1.0, -1e100] {
            m.add(v);
        }
        assert_eq!(m.value(), 0.5);
        let mut big = Mean::new();
        big.add(f64::MAX);
        big.add(f64::MAX);
        assert_eq!(big.value(), f64::MAX);
        let mut m = Mean::new();
        for v in [0.0, 10.0, 20.0, 30.0] {
            m.add(v);
        }
        assert_eq!(m.value(), 15.0);
        assert_eq!(m.count(), 4.0);
    }

    #[test]
    fn variance_welford() {
        let mut v = Variance::new();
        for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            v.add(x);
        }
        assert_eq!(v.stdvar(), 4.0);
        assert_eq!(v.stddev(), 2.0);
        let mut n = Variance::new();
        n.add(f64::INFINITY);
        n.add(1.0);
        assert!(n.stdvar().is_nan());
    }

    #[test]
    fn ratio_sampling_is_complementary() {
        for h in [0u64, 1, u64::MAX / 3, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            let off = ratio_sample_offset(h);
            assert!((0.0..=1.0).contains(&off));
            for r in [0.0, 0.1, 0.5, 0.9] {
                // A series lands in exactly one of limit_ratio(r) and limit_ratio(r - 1),
                // except offset 1.0 which only the negative side (>= 1 + (r - 1)) can take.
                let both = ratio_keep(r, off) as u8 + ratio_keep(r - 1.0, off) as u8;
                assert_eq!(both, 1, "h={h} r={r}");
            }
        }
        assert!(ratio_keep(1.0, 0.99));
        assert!(!ratio_keep(0.0, 0.0));
        assert!(ratio_keep(-1.0, 0.0));
    }

    #[test]
    fn quantile_interpolates() {
        // aggregators.test: quantile(0.8, ...) over 0..=100 step 10 etc.
        let mut v = vec![10.0, 0.0, 20.0, 30.0];
        assert_eq!(quantile(0.5, &mut v), 15.0);
        assert_eq!(quantile(0.0, &mut v), 0.0);
        assert_eq!(quantile(1.0, &mut v), 30.0);
        assert_eq!(quantile(-1.0, &mut v), f64::NEG_INFINITY);
        assert_eq!(quantile(2.0, &mut v), f64::INFINITY);
        assert!(quantile(f64::NAN, &mut v).is_nan());
        assert!(quantile(0.5, &mut []).is_nan());
        let mut w = vec![3.0, f64::NAN, 1.0];
        assert!(quantile(0.0, &mut w).is_nan());
        assert_eq!(quantile(1.0, &mut w), 3.0);
    }
}
