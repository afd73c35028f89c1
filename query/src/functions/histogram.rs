//! Classic (`le`-bucket) histograms: `histogram_quantile` and `histogram_fraction` over the
//! cumulative buckets of one series group, with Prometheus's rules.
//!
//! The engine groups the input series by their labels without `le` (parsing each `le` with
//! [`parse_le`]; a series whose `le` does not parse raises
//! [`Annotation::BadBucketLabel`](crate::functions::Annotation::BadBucketLabel) and is
//! skipped), then calls [`bucket_quantile`] or [`bucket_fraction`] once per group. Both sort
//! the buckets by upper bound, merge buckets with equal bounds (`"0.2"`, `"2e-1"`), require a
//! `+Inf` bucket, and `bucket_quantile` also smooths out floating-point noise between
//! neighbouring counts (relative difference below 1e-12) and forces the counts to be
//! monotonic, reporting both (the engine turns `forced_monotonic` into
//! [`Annotation::forced_monotonicity`](crate::functions::Annotation::forced_monotonicity)).

use std::cmp::Ordering;

/// Relative difference under which two neighbouring cumulative counts are taken as equal
/// (floating-point artefacts, e.g. from sharded sums).
pub const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// One cumulative bucket of a classic histogram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// The bucket's upper bound (its `le` label).
    pub upper: f64,
    /// Number of observations less than or equal to `upper`.
    pub count: f64,
}

/// The result of [`bucket_quantile`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantileResult {
    /// The estimated quantile.
    pub value: f64,
    /// Whether a decreasing count had to be raised to keep counts monotonic.
    pub forced_monotonic: bool,
    /// Whether counts differing only by floating-point noise were equalised.
    pub fixed_precision: bool,
    /// Lowest upper bound whose count was raised (+Inf when none).
    pub min_bucket: f64,
    /// Highest upper bound whose count was raised (-Inf when none).
    pub max_bucket: f64,
    /// Largest decrease that was removed (0 when none).
    pub max_diff: f64,
}

impl QuantileResult {
    fn plain(value: f64) -> Self {
        QuantileResult {
            value,
            forced_monotonic: false,
            fixed_precision: false,
            min_bucket: f64::INFINITY,
            max_bucket: f64::NEG_INFINITY,
            max_diff: 0.0,
        }
    }
}

/// Parses an `le` label value the way Go's `strconv.ParseFloat` does: decimal and exponent
/// forms, `+Inf`/`-Inf`/`Inf`/`Infinity`/`NaN` in any case. Values out of the f64 range and
/// anything else are errors (`None`).
pub fn parse_le(s: &str) -> Option<f64> {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = t.to_ascii_lowercase();
    let special = lower == "inf" || lower == "infinity" || lower == "nan";
    if !special
        && !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return parse_hex_float(s);
    }
    if lower == "nan" && t.len() != s.len() {
        return None; // Go accepts no sign on NaN
    }
    let v: f64 = s.parse().ok()?;
    if v.is_infinite() && !special {
        return None; // out of range: Go's ErrRange
    }
    Some(v)
}

/// Go's hexadecimal float syntax `0x1.8p3` (mantissa in hex, mandatory binary exponent),
/// with optional sign and `_` digit separators.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let body = body
        .strip_prefix("0x")
        .or_else(|| body.strip_prefix("0X"))?;
    let (mant, exp) = body.split_once(['p', 'P'])?;
    let exp: i32 = exp.replace('_', "").parse().ok()?;
    let mut value = 0f64;
    let mut frac_digits = 0i32;
    let mut seen_point = false;
    let mut any = false;
    for c in mant.chars() {
        match c {
            '_' => continue,
            '.' if !seen_point => seen_point = true,
            _ => {
                let d = c.to_digit(16)?;
                value = value * 16.0 + d as f64;
                any = true;
                if seen_point {
                    frac_digits += 1;
                }
            }
        }
    }
    if !any {
        return None;
    }
    let v = value * 2f64.powi(exp - 4 * frac_digits);
    if v.is_infinite() {
        return None;
    }
    Some(if neg { -v } else { v })
}

fn sort_and_coalesce(buckets: &mut Vec<Bucket>) {
    buckets.sort_by(|a, b| a.upper.partial_cmp(&b.upper).unwrap_or(Ordering::Equal));
    let mut out = 0;
    for i in 1..buckets.len() {
        if buckets[i].upper == buckets[out].upper {
            buckets[out].count += buckets[i].count;
        } else {
            out += 1;
            buckets[out] = buckets[i];
        }
    }
    buckets.truncate(out + 1);
}

/// Relative closeness test of Prometheus's `almost.Equal` (NaNs equal each other).
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Equalises counts that differ only by floating-point noise and raises decreasing counts to
/// their predecessor; fills the bookkeeping fields of `res`.
fn ensure_monotonic(buckets: &mut [Bucket], res: &mut QuantileResult) {
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            b.count = prev;
            res.fixed_precision = true;
            continue;
        }
        if curr < prev {
            b.count = prev;
            res.forced_monotonic = true;
            res.min_bucket = res.min_bucket.min(b.upper);
            res.max_bucket = res.max_bucket.max(b.upper);
            if prev - curr > res.max_diff {
                res.max_diff = prev - curr;
            }
            continue;
        }
        prev = curr;
    }
}

/// The `q`-quantile of a classic histogram (`histogram_quantile`). `buckets` is sorted,
/// merged and fixed in place. Observations are assumed uniform within a bucket; the lowest
/// bucket starts at 0 when its bound is positive (else its bound is returned); a quantile in
/// the `+Inf` bucket returns the second-highest bound. NaN when `q` is NaN, when there is no
/// `+Inf` bucket, fewer than two buckets or no observations; −Inf for `q < 0`, +Inf for
/// `q > 1`.
pub fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> QuantileResult {
    if q.is_nan() {
        return QuantileResult::plain(f64::NAN);
    }
    if q < 0.0 {
        return QuantileResult::plain(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return QuantileResult::plain(f64::INFINITY);
    }
    if buckets.is_empty() {
        return QuantileResult::plain(f64::NAN);
    }
    sort_and_coalesce(buckets);
    if buckets[buckets.len() - 1].upper != f64::INFINITY {
        return QuantileResult::plain(f64::NAN);
    }
    let mut res = QuantileResult::plain(f64::NAN);
    ensure_monotonic(buckets, &mut res);
    let n = buckets.len();
    if n < 2 {
        return res;
    }
    let observations = buckets[n - 1].count;
    if observations == 0.0 {
        return res;
    }
    let mut rank = q * observations;
    // First bucket among all but the last whose count reaches the rank.
    let b = buckets[..n - 1].partition_point(|bk| bk.count < rank);
    res.value = if b == n - 1 {
        buckets[n - 2].upper
    } else if b == 0 && buckets[0].upper <= 0.0 {
        buckets[0].upper
    } else {
        let mut start = 0.0;
        let end = buckets[b].upper;
        let mut count = buckets[b].count;
        if b > 0 {
            start = buckets[b - 1].upper;
            count -= buckets[b - 1].count;
            rank -= buckets[b - 1].count;
        }
        start + (end - start) * (rank / count)
    };
    res
}

/// The fraction of observations between `lower` and `upper` in a classic histogram
/// (`histogram_fraction`), interpolating linearly inside buckets; the lowest bucket starts
/// at 0 when its bound is positive, else at −Inf (no interpolation inside infinite buckets).
/// NaN without a `+Inf` bucket, without observations, or for NaN bounds; 0 when
/// `lower >= upper`.
pub fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if buckets.is_empty() {
        return f64::NAN;
    }
    sort_and_coalesce(buckets);
    if buckets[buckets.len() - 1].upper != f64::INFINITY {
        return f64::NAN;
    }
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let mut rank = 0.0;
    let (mut lower_rank, mut upper_rank) = (0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].upper <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].upper;
        }
        let upper_bound = b.upper;
        let interpolate = |v: f64, rank: f64| -> f64 {
            if lower_bound == f64::NEG_INFINITY {
                b.count
            } else {
                rank + (b.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower, rank);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper, rank);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bk(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|&(upper, count)| Bucket { upper, count })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        a == b || (a - b).abs() / (a.abs() + b.abs()) < 1e-12
    }

    /// testhistogram3 at 50m (histograms.test), given in shuffled order.
    fn positive() -> Vec<Bucket> {
        bk(&[
            (1.0, 110.0),
            (0.0, 0.0),
            (f64::INFINITY, 110.0),
            (0.1, 50.0),
            (0.2, 70.0),
        ])
    }
    fn negative() -> Vec<Bucket> {
        bk(&[
            (-0.25, 0.0),
            (-0.2, 10.0),
            (-0.1, 20.0),
            (0.3, 20.0),
            (f64::INFINITY, 20.0),
        ])
    }

    #[test]
    fn quantiles_of_testhistogram3() {
        for (q, p, n) in [
            (0.0, 0.0, -0.25),
            (0.25, 0.055, -0.225),
            (0.5, 0.125, -0.2),
            (0.75, 0.45, -0.15),
            (1.0, 1.0, -0.1),
        ] {
            let r = bucket_quantile(q, &mut positive());
            assert!(close(r.value, p), "q={q}: {} != {p}", r.value);
            assert!(!r.forced_monotonic && !r.fixed_precision);
            assert!(close(bucket_quantile(q, &mut negative()).value, n), "q={q}");
        }
        assert_eq!(
            bucket_quantile(-0.1, &mut positive()).value,
            f64::NEG_INFINITY
        );
        assert_eq!(bucket_quantile(1.01, &mut positive()).value, f64::INFINITY);
        assert!(bucket_quantile(f64::NAN, &mut positive()).value.is_nan());
    }

    #[test]
    fn quantile_special_cases() {
        // No +Inf bucket.
        assert!(bucket_quantile(0.5, &mut bk(&[(1.0, 1.0), (2.0, 2.0)]))
            .value
            .is_nan());
        // Only the +Inf bucket.
        assert!(bucket_quantile(0.5, &mut bk(&[(f64::INFINITY, 2.0)]))
            .value
            .is_nan());
        // No observations.
        assert!(
            bucket_quantile(0.5, &mut bk(&[(1.0, 0.0), (f64::INFINITY, 0.0)]))
                .value
                .is_nan()
        );
        // Quantile in the +Inf bucket: the second-highest bound.
        let r = bucket_quantile(
            0.99,
            &mut bk(&[(1.0, 1.0), (2.0, 2.0), (f64::INFINITY, 10.0)]),
        );
        assert_eq!(r.value, 2.0);
        // Merged equal bounds ("0.2", "2e-1", "2.0e-1" in mixed_bucket): 0.1→1, 0.2→3, +Inf→4.
        let mut m = bk(&[
            (0.1, 1.0),
            (0.2, 1.0),
            (0.2, 1.0),
            (0.2, 1.0),
            (f64::INFINITY, 4.0),
        ]);
        let r = bucket_quantile(0.5, &mut m);
        assert_eq!(m.len(), 3);
        assert!(close(r.value, 0.15));
    }

    #[test]
    fn monotonicity_is_forced_and_reported() {
        // histograms.test "nonmonotonic_bucket" at 50m: 20, 10, 50, 40, 90, 80.
        let nm = || {
            bk(&[
                (0.1, 20.0),
                (1.0, 10.0),
                (10.0, 50.0),
                (100.0, 40.0),
                (1000.0, 90.0),
                (f64::INFINITY, 80.0),
            ])
        };
        for (q, want) in [(0.01, 0.0045), (0.5, 8.5), (0.99, 979.75)] {
            let r = bucket_quantile(q, &mut nm());
            assert!(close(r.value, want), "q={q}: {}", r.value);
            assert!(r.forced_monotonic);
            assert_eq!(
                (r.min_bucket, r.max_bucket, r.max_diff),
                (1.0, f64::INFINITY, 10.0)
            );
        }
        // Floating-point noise is equalised silently.
        let mut n = bk(&[
            (1.0, 10.0),
            (2.0, 10.0 * (1.0 - 1e-15)),
            (f64::INFINITY, 10.0),
        ]);
        let r = bucket_quantile(0.5, &mut n);
        assert!(r.fixed_precision && !r.forced_monotonic);
        assert_eq!(r.value, 0.5);
    }

    #[test]
    fn fractions_from_histograms_test() {
        let h2 = || {
            bk(&[
                (0.0, 0.0),
                (2.0, 10.0),
                (4.0, 20.0),
                (6.0, 30.0),
                (f64::INFINITY, 30.0),
            ])
        };
        assert!(close(
            bucket_fraction(0.0, 4.0, &mut h2()),
            0.6666666666666666
        ));
        assert_eq!(bucket_fraction(0.0, 6.0, &mut h2()), 1.0);
        assert!(close(
            bucket_fraction(0.0, 3.5, &mut h2()),
            0.5833333333333334
        ));
        assert!(close(
            bucket_fraction(0.0, 0.2, &mut positive()),
            0.6363636363636364
        ));
        assert_eq!(bucket_fraction(0.0, 0.2, &mut negative()), 0.0);
        let p = || bk(&[(1.0, 1.0), (2.0, 3.0), (3.0, 6.0), (f64::INFINITY, 100.0)]);
        assert!(close(bucket_fraction(0.0, 1.5, &mut p()), 0.02));
        let n = || {
            bk(&[
                (-3.0, 10.0),
                (-2.0, 12.0),
                (-1.0, 15.0),
                (f64::INFINITY, 100.0),
            ])
        };
        assert!(close(bucket_fraction(-4.0, -2.0, &mut n()), 0.02));
        assert_eq!(bucket_fraction(3.0, 2.0, &mut p()), 0.0);
        assert_eq!(bucket_fraction(2.0, 2.0, &mut p()), 0.0);
        assert!(bucket_fraction(f64::NAN, 1.0, &mut p()).is_nan());
        assert!(bucket_fraction(0.0, f64::NAN, &mut p()).is_nan());
        assert_eq!(
            bucket_fraction(f64::NEG_INFINITY, f64::INFINITY, &mut p()),
            1.0
        );
        assert!(bucket_fraction(0.0, 1.0, &mut bk(&[(1.0, 1.0)])).is_nan());
    }

    #[test]
    fn le_parsing_like_go() {
        assert_eq!(parse_le("0.1"), Some(0.1));
        assert_eq!(parse_le(".2"), Some(0.2));
        assert_eq!(parse_le("1e0"), Some(1.0));
        assert_eq!(parse_le("2.0e-1"), Some(0.2));
        assert_eq!(parse_le("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_le("+inf"), Some(f64::INFINITY));
        assert_eq!(parse_le("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(parse_le("NaN").unwrap().is_nan());
        assert_eq!(parse_le("0x1p-2"), Some(0.25));
        assert_eq!(parse_le("-0x1.8p1"), Some(-3.0));
        assert_eq!(parse_le(""), None);
        assert_eq!(parse_le("Hello World"), None);
        assert_eq!(parse_le("1e400"), None);
        assert_eq!(parse_le(" 1"), None);
    }
}
