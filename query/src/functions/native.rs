//! Native (sparse, exponential-bucket) histograms as float values, and the PromQL functions
//! that read one histogram: `histogram_count`, `histogram_sum`, `histogram_avg`,
//! `histogram_stddev`, `histogram_stdvar`, and the native forms of `histogram_quantile` and
//! `histogram_fraction`.
//!
//! A [`FloatHistogram`] has the layout of Prometheus's float histograms: a `schema` (−4…8 for
//! exponential buckets, [`CUSTOM_BUCKETS_SCHEMA`] for custom bounds), a zero bucket
//! (`zero_threshold`, `zero_count`), the total `count` and `sum`, and positive and negative
//! buckets given as spans (runs of consecutive bucket indexes, each starting `offset`
//! indexes after the end of the previous run) with one absolute count per bucket. For
//! exponential schemas, the positive bucket with index `i` covers `(2^((i−1)/2^schema),
//! 2^(i/2^schema)]`, and negative buckets mirror it; for custom buckets, index `i` covers
//! `(custom_values[i−1], custom_values[i]]` with −Inf/+Inf at the ends.

use crate::functions::aggregate::kahan_inc;
use crate::functions::annotation::Annotation;

/// The schema number of histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// What a histogram sample says about counter resets since the previous sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CounterResetHint {
    /// Nothing known.
    #[default]
    Unknown,
    /// The counter was reset before this sample.
    CounterReset,
    /// The counter was not reset.
    NotCounterReset,
    /// A gauge histogram: no counter semantics.
    Gauge,
}

/// A run of `length` consecutive buckets starting `offset` indexes after the previous run
/// (or at index `offset` for the first run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Gap to the previous span (or the first index).
    pub offset: i32,
    /// Number of buckets in the span.
    pub length: u32,
}

/// A native histogram with float counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FloatHistogram {
    /// Counter-reset hint.
    pub counter_reset_hint: CounterResetHint,
    /// Exponential schema (−4…8) or [`CUSTOM_BUCKETS_SCHEMA`].
    pub schema: i32,
    /// Observations with absolute value up to this go into the zero bucket.
    pub zero_threshold: f64,
    /// Count of the zero bucket.
    pub zero_count: f64,
    /// Total number of observations (NaN observations included).
    pub count: f64,
    /// Sum of the observations.
    pub sum: f64,
    /// Spans of the positive buckets.
    pub positive_spans: Vec<Span>,
    /// Spans of the negative buckets.
    pub negative_spans: Vec<Span>,
    /// Absolute counts of the positive buckets, in index order.
    pub positive_buckets: Vec<f64>,
    /// Absolute counts of the negative buckets, in index order (growing magnitude).
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (without the implicit +Inf).
    pub custom_values: Vec<f64>,
}

/// One bucket with its bounds, as the bucket iterators of [`FloatHistogram`] return them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NativeBucket {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Whether `lower` belongs to the bucket.
    pub lower_inclusive: bool,
    /// Whether `upper` belongs to the bucket.
    pub upper_inclusive: bool,
    /// Observations in the bucket.
    pub count: f64,
    /// Bucket index within the schema (irrelevant for the zero bucket).
    pub index: i32,
}

impl NativeBucket {
    /// The fraction of the bucket's width at or below `v` (strictly inside the bucket),
    /// linearly or on a logarithmic scale (mirrored for negative buckets).
    pub fn fraction_below(&self, v: f64, linear: bool) -> f64 {
        if linear {
            return (v - self.lower) / (self.upper - self.lower);
        }
        let log_lower = self.lower.abs().log2();
        let log_upper = self.upper.abs().log2();
        let log_v = v.abs().log2();
        if v > 0.0 {
            (log_v - log_lower) / (log_upper - log_lower)
        } else {
            1.0 - (log_v - log_upper) / (log_lower - log_upper)
        }
    }
}

/// Upper bound of bucket `idx` of `schema` (custom schemas read `custom`): ±Inf past the
/// custom bounds; for exponential schemas `2^(idx/2^schema)`, with the last finite bucket
/// ending at `f64::MAX` so that only ±Inf observations fall into the bucket after it.
pub fn bucket_bound(idx: i32, schema: i32, custom: &[f64]) -> f64 {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        let len = custom.len() as i64;
        let i = idx as i64;
        return if i >= len {
            f64::INFINITY
        } else if i < 0 {
            f64::NEG_INFINITY
        } else {
            custom[i as usize]
        };
    }
    if !(-4..=8).contains(&schema) {
        // Not a valid exponential schema: the plain formula, without table precision.
        return (idx as f64 / (schema as f64).exp2()).exp2();
    }
    if schema < 0 {
        let exp = (idx as i64) << (-schema);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let per = 1i64 << schema;
    let frac_idx = (idx as i64) & (per - 1);
    let exp = ((idx as i64) >> schema) + 1;
    let frac = (frac_idx as f64 / per as f64).exp2() / 2.0;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// `frac × 2^exp` without overflow in the intermediate power.
fn ldexp(frac: f64, exp: i64) -> f64 {
    let exp = exp.clamp(-2200, 2200) as i32;
    if (-1000..=1000).contains(&exp) {
        frac * 2f64.powi(exp)
    } else {
        let half = exp / 2;
        frac * 2f64.powi(half) * 2f64.powi(exp - half)
    }
}

impl FloatHistogram {
    /// Whether the histogram uses custom bucket bounds.
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// `(index, count)` of every bucket of one side, in ascending index order.
    fn side(&self, positive: bool) -> Vec<(i32, f64)> {
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
                if k >= counts.len() {
                    return out;
                }
                out.push((idx + j as i32, counts[k]));
                k += 1;
            }
            idx += sp.length as i32;
        }
        out
    }

    fn bucket_at(&self, idx: i32, count: f64, positive: bool) -> NativeBucket {
        let custom = &self.custom_values;
        let (lower, upper) = if positive {
            (
                bucket_bound(idx - 1, self.schema, custom),
                bucket_bound(idx, self.schema, custom),
            )
        } else {
            (
                -bucket_bound(idx, self.schema, custom),
                -bucket_bound(idx - 1, self.schema, custom),
            )
        };
        let (lower_inclusive, upper_inclusive) = if self.uses_custom_buckets() {
            (idx == 0, true)
        } else {
            (lower < 0.0, upper > 0.0)
        };
        NativeBucket {
            lower,
            upper,
            lower_inclusive,
            upper_inclusive,
            count,
            index: idx,
        }
    }

    fn zero_bucket(&self) -> NativeBucket {
        NativeBucket {
            lower: -self.zero_threshold,
            upper: self.zero_threshold,
            lower_inclusive: true,
            upper_inclusive: true,
            count: self.zero_count,
            index: 0,
        }
    }

    fn clamp_to_zero_threshold(&self, mut b: NativeBucket) -> NativeBucket {
        let zt = self.zero_threshold;
        if b.upper < 0.0 && b.upper > -zt {
            b.upper = -zt;
        } else if b.lower > 0.0 && b.lower < zt {
            b.lower = zt;
        }
        b
    }

    /// Every bucket from the lowest to the highest: negative buckets (most negative first),
    /// the zero bucket when it has observations, then positive buckets; bounds overlapping the
    /// zero bucket are cut at the zero threshold.
    pub fn buckets_ascending(&self) -> Vec<NativeBucket> {
        let mut out = Vec::new();
        for &(idx, c) in self.side(false).iter().rev() {
            out.push(self.clamp_to_zero_threshold(self.bucket_at(idx, c, false)));
        }
        if self.zero_count > 0.0 && !self.uses_custom_buckets() {
            out.push(self.zero_bucket());
        }
        for (idx, c) in self.side(true) {
            out.push(self.clamp_to_zero_threshold(self.bucket_at(idx, c, true)));
        }
        out
    }

    /// Every bucket from the highest to the lowest (the reverse of [`buckets_ascending`](Self::buckets_ascending)).
    pub fn buckets_descending(&self) -> Vec<NativeBucket> {
        let mut v = self.buckets_ascending();
        v.reverse();
        v
    }

    /// `histogram_avg`: sum over count.
    pub fn avg(&self) -> f64 {
        self.sum / self.count
    }

    /// `histogram_stdvar`: the variance estimated from bucket midpoints (geometric mean of
    /// the bounds for exponential buckets, arithmetic mean for custom ones, 0 in the zero
    /// bucket) around `sum / count`.
    pub fn stdvar(&self) -> f64 {
        let mean = self.sum / self.count;
        let (mut var, mut c) = (0.0, 0.0);
        for b in self.buckets_ascending() {
            if b.count == 0.0 {
                continue;
            }
            let val = if self.uses_custom_buckets() {
                (b.upper + b.lower) / 2.0
            } else if b.lower <= 0.0 && b.upper >= 0.0 {
                0.0
            } else {
                let g = (b.upper * b.lower).sqrt();
                if b.upper < 0.0 {
                    -g
                } else {
                    g
                }
            };
            let delta = val - mean;
            (var, c) = kahan_inc(b.count * delta * delta, var, c);
        }
        (var + c) / self.count
    }

    /// `histogram_stddev`: the square root of [`stdvar`](Self::stdvar).
    pub fn stddev(&self) -> f64 {
        self.stdvar().sqrt()
    }

    /// The native `histogram_quantile(q, h)`: walks the buckets to the rank `q × count`
    /// (from the top for `q >= 0.5` unless the sum is NaN) and interpolates inside the bucket
    /// found, linearly for custom buckets and the zero bucket, exponentially otherwise.
    /// NaN observations (a NaN sum) can make the result NaN or skewed; those cases push the
    /// corresponding info onto `annotations` with `metric_name`.
    pub fn quantile(&self, q: f64, metric_name: &str, annotations: &mut Vec<Annotation>) -> f64 {
        if q < 0.0 {
            return f64::NEG_INFINITY;
        }
        if q > 1.0 {
            return f64::INFINITY;
        }
        if self.count == 0.0 || q.is_nan() {
            return f64::NAN;
        }
        let forward = self.sum.is_nan() || q < 0.5;
        let buckets = if forward {
            self.buckets_ascending()
        } else {
            self.buckets_descending()
        };
        let mut rank = if forward {
            q * self.count
        } else {
            (1.0 - q) * self.count
        };
        let mut count = 0.0;
        let mut pos = buckets.len();
        let mut bucket = NativeBucket {
            lower: 0.0,
            upper: 0.0,
            lower_inclusive: false,
            upper_inclusive: false,
            count: 0.0,
            index: 0,
        };
        for (i, b) in buckets.iter().enumerate() {
            bucket = *b;
            if b.count == 0.0 {
                continue;
            }
            count += b.count;
            if count >= rank {
                pos = i;
                break;
            }
        }
        let custom = self.uses_custom_buckets();
        if !custom && bucket.lower < 0.0 && bucket.upper > 0.0 {
            if self.negative_buckets.is_empty() && !self.positive_buckets.is_empty() {
                bucket.lower = 0.0;
            } else if self.positive_buckets.is_empty() && !self.negative_buckets.is_empty() {
                bucket.upper = 0.0;
            }
        } else if custom {
            if bucket.lower == f64::NEG_INFINITY {
                if bucket.upper <= 0.0 {
                    return bucket.upper;
                }
                bucket.lower = 0.0;
            } else if bucket.upper == f64::INFINITY {
                return bucket.lower;
            }
        }
        if count > self.count {
            count = self.count;
        }
        if count < rank {
            if self.sum.is_nan() {
                annotations.push(Annotation::NativeHistogramQuantileNaNResult {
                    metric_name: metric_name.to_string(),
                });
                return f64::NAN;
            }
            return bucket.upper;
        }
        if forward {
            rank -= count - bucket.count;
        } else {
            rank = count - rank;
        }
        if self.sum.is_nan() {
            let rest: f64 = buckets.iter().skip(pos + 1).map(|b| b.count).sum();
            if count + rest < self.count {
                annotations.push(Annotation::NativeHistogramQuantileNaNSkew {
                    metric_name: metric_name.to_string(),
                });
            }
        }
        let fraction = rank / bucket.count;
        if custom || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
            return bucket.lower + (bucket.upper - bucket.lower) * fraction;
        }
        let log_lower = bucket.lower.abs().log2();
        let log_upper = bucket.upper.abs().log2();
        if bucket.lower > 0.0 {
            (log_lower + (log_upper - log_lower) * fraction).exp2()
        } else {
            -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
        }
    }

    /// The native `histogram_fraction(lower, upper, h)`: the share of observations between
    /// the bounds, interpolating inside buckets like [`quantile`](Self::quantile). NaN for an
    /// empty histogram or NaN bounds, 0 when `lower >= upper`. NaN observations are in no
    /// bucket; when there are some, the info naming `metric_name` is pushed.
    pub fn fraction(
        &self,
        lower: f64,
        upper: f64,
        metric_name: &str,
        annotations: &mut Vec<Annotation>,
    ) -> f64 {
        if self.count == 0.0 || lower.is_nan() || upper.is_nan() {
            return f64::NAN;
        }
        if lower >= upper {
            return 0.0;
        }
        let custom = self.uses_custom_buckets();
        let buckets = self.buckets_ascending();
        let (mut count, mut rank) = (0.0, 0.0);
        let (mut lower_rank, mut upper_rank) = (0.0, 0.0);
        let (mut lower_set, mut upper_set) = (false, false);
        let mut pos = buckets.len();
        for (i, b0) in buckets.iter().enumerate() {
            let mut b = *b0;
            count += b.count;
            let mut zero_bucket = false;
            if b.lower <= 0.0 && b.upper >= 0.0 {
                zero_bucket = true;
                if self.negative_buckets.is_empty() && !self.positive_buckets.is_empty() {
                    b.lower = 0.0;
                } else if self.positive_buckets.is_empty() && !self.negative_buckets.is_empty() {
                    b.upper = 0.0;
                }
            }
            let linear = custom || zero_bucket;
            let interpolate = |v: f64| -> f64 {
                if linear && b.lower == f64::NEG_INFINITY {
                    b.count
                } else {
                    rank + b.count * b.fraction_below(v, linear)
                }
            };
            if !lower_set && b.lower >= lower {
                lower_rank = rank;
                lower_set = true;
            }
            if !upper_set && b.lower >= upper {
                upper_rank = rank;
                upper_set = true;
            }
            if lower_set && upper_set {
                pos = i;
                break;
            }
            if !lower_set && b.lower < lower && b.upper > lower {
                lower_rank = interpolate(lower);
                lower_set = true;
            }
            if !upper_set && b.lower < upper && b.upper > upper {
                upper_rank = interpolate(upper);
                upper_set = true;
            }
            if lower_set && upper_set {
                pos = i;
                break;
            }
            rank += b.count;
        }
        if self.sum.is_nan() {
            count += buckets
                .iter()
                .skip(pos.saturating_add(1))
                .map(|b| b.count)
                .sum::<f64>();
            if count < self.count {
                annotations.push(Annotation::NativeHistogramFractionNaNs {
                    metric_name: metric_name.to_string(),
                });
            }
        } else {
            count = self.count;
        }
        if !lower_set || lower_rank > count {
            lower_rank = count;
        }
        if !upper_set || upper_rank > count {
            upper_rank = count;
        }
        (upper_rank - lower_rank) / self.count
    }
}

impl std::fmt::Display for NativeBucket {
    /// `(0.5,1]:3` — interval notation with Go `%g` numbers, as Prometheus prints buckets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::functions::gofmt::format_g;
        write!(
            f,
            "{}{},{}{}:{}",
            if self.lower_inclusive { '[' } else { '(' },
            format_g(self.lower),
            format_g(self.upper),
            if self.upper_inclusive { ']' } else { ')' },
            format_g(self.count)
        )
    }
}

impl std::fmt::Display for FloatHistogram {
    /// Prometheus's text form of a histogram, used e.g. as the label value `count_values`
    /// gives a histogram sample: `{count:20, sum:10, [-2,-1):2, [-0.001,0.001]:2, (0.5,1]:1}`
    /// (populated buckets only, lowest first).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::functions::gofmt::format_g;
        write!(
            f,
            "{{count:{}, sum:{}",
            format_g(self.count),
            format_g(self.sum)
        )?;
        for (idx, c) in self.side(false).into_iter().rev() {
            if c != 0.0 {
                write!(f, ", {}", self.bucket_at(idx, c, false))?;
            }
        }
        if self.zero_count != 0.0 {
            write!(f, ", {}", self.zero_bucket())?;
        }
        for (idx, c) in self.side(true) {
            if c != 0.0 {
                write!(f, ", {}", self.bucket_at(idx, c, true))?;
            }
        }
        f.write_str("}")
    }
}

#[cfg(test)]
#[allow(clippy::approx_constant)] // values exactly as the conformance scripts print them
mod tests {
    use super::*;

    /// Parses the test-script literal `{{schema:0 sum:5 count:4 buckets:[1 2 1]}}`.
    fn h(lit: &str) -> FloatHistogram {
        let body = lit.trim().trim_start_matches("{{").trim_end_matches("}}");
        let mut out = FloatHistogram::default();
        let (mut offset, mut n_offset) = (0, 0);
        let mut rest = body.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once(':').expect("key");
            let after = after.trim_start();
            let (val, next) = if after.starts_with('[') {
                let end = after.find(']').expect("]");
                (&after[1..end], &after[end + 1..])
            } else {
                after.split_at(after.find(' ').unwrap_or(after.len()))
            };
            rest = next.trim();
            let num = |s: &str| -> f64 {
                match s {
                    "Inf" | "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    "NaN" => f64::NAN,
                    _ => s.parse().expect("number"),
                }
            };
            let list = |s: &str| -> Vec<f64> { s.split_whitespace().map(num).collect() };
            match key.trim() {
                "schema" => out.schema = val.parse().expect("schema"),
                "sum" => out.sum = num(val),
                "count" => out.count = num(val),
                "z_bucket" => out.zero_count = num(val),
                "z_bucket_w" => out.zero_threshold = num(val),
                "buckets" => out.positive_buckets = list(val),
                "n_buckets" => out.negative_buckets = list(val),
                "offset" => offset = val.parse().expect("offset"),
                "n_offset" => n_offset = val.parse().expect("n_offset"),
                "custom_values" => out.custom_values = list(val),
                other => panic!("unknown key {other}"),
            }
        }
        if !out.positive_buckets.is_empty() {
            out.positive_spans = vec![Span {
                offset,
                length: out.positive_buckets.len() as u32,
            }];
        }
        if !out.negative_buckets.is_empty() {
            out.negative_spans = vec![Span {
                offset: n_offset,
                length: out.negative_buckets.len() as u32,
            }];
        }
        out
    }

    fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() / (a.abs() + b.abs()) < 1e-9
    }

    #[test]
    fn text_form_like_count_values_labels() {
        let x = h("{{schema:0 sum:10 count:20 z_bucket_w:0.001 z_bucket:2 buckets:[1 2] n_buckets:[1 2]}}");
        assert_eq!(
            x.to_string(),
            "{count:20, sum:10, [-2,-1):2, [-1,-0.5):1, [-0.001,0.001]:2, (0.5,1]:1, (1,2]:2}"
        );
        let c = h("{{schema:-53 sum:1 count:1 custom_values:[5 10] buckets:[0 1]}}");
        assert_eq!(c.to_string(), "{count:1, sum:1, (5,10]:1}");
        assert_eq!(h("{{}}").to_string(), "{count:0, sum:0}");
    }

    #[test]
    fn bounds() {
        assert_eq!(bucket_bound(0, 0, &[]), 1.0);
        assert_eq!(bucket_bound(1, 0, &[]), 2.0);
        assert_eq!(bucket_bound(-1, 0, &[]), 0.5);
        assert!(close(bucket_bound(1, 1, &[]), std::f64::consts::SQRT_2));
        assert_eq!(bucket_bound(2, 1, &[]), 2.0);
        assert_eq!(bucket_bound(1, -1, &[]), 4.0);
        assert_eq!(bucket_bound(1024, 0, &[]), f64::MAX);
        assert_eq!(bucket_bound(1025, 0, &[]), f64::INFINITY);
        assert_eq!(bucket_bound(0, CUSTOM_BUCKETS_SCHEMA, &[5.0, 10.0]), 5.0);
        assert_eq!(
            bucket_bound(2, CUSTOM_BUCKETS_SCHEMA, &[5.0, 10.0]),
            f64::INFINITY
        );
        assert_eq!(
            bucket_bound(-1, CUSTOM_BUCKETS_SCHEMA, &[5.0, 10.0]),
            f64::NEG_INFINITY
        );
    }

    #[test]
    fn single_and_negative_histograms() {
        let mut a = Vec::new();
        let s = h("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}");
        assert_eq!(s.avg(), 1.25);
        assert_eq!(s.fraction(1.0, 2.0, "", &mut a), 0.5);
        assert_eq!(s.fraction(0.0, 8.0, "", &mut a), 1.0);
        assert!(close(s.quantile(0.5, "", &mut a), 1.414213562373095));
        let n = h("{{schema:0 sum:-5 count:4 n_buckets:[1 2 1]}}");
        assert_eq!(n.fraction(-2.0, -1.0, "", &mut a), 0.5);
        assert!(close(n.quantile(0.5, "", &mut a), -1.414213562373095));
        let z = h("{{schema:0 sum:0.25 count:1 z_bucket:1 z_bucket_w:0.5}}");
        assert_eq!(z.fraction(-0.5, 0.5, "", &mut a), 1.0);
        assert_eq!(z.quantile(0.5, "", &mut a), 0.0);
        let e = h("{{}}");
        assert!(e.avg().is_nan());
        assert!(e
            .fraction(f64::NEG_INFINITY, f64::INFINITY, "", &mut a)
            .is_nan());
        assert!(h("{{schema:-53 custom_values:[-2 3]}}")
            .fraction(0.0, 8.0, "", &mut a)
            .is_nan());
        assert!(a.is_empty());
    }

    #[test]
    fn balanced_histogram_quantile_lands_after_empty_span() {
        // {{schema:0 sum:4 count:4 buckets:[1 2 1]}} + {{schema:0 sum:-4 count:4 n_buckets:[1 2 1]}}
        let b = h("{{schema:0 sum:0 count:8 buckets:[1 2 1] n_buckets:[1 2 1]}}");
        let mut a = Vec::new();
        assert_eq!(b.fraction(0.0, 4.0, "", &mut a), 0.5);
        assert_eq!(b.quantile(0.5, "", &mut a), 0.5);
    }

    #[test]
    fn stddev_stdvar_from_native_histograms_test() {
        let cases = [
            ("{{schema:2 count:4 sum:10 buckets:[1 0 0 0 1 0 0 1 1]}}", 1.0787993180043811, 1.163807968526718),
            ("{{schema:8 count:10 sum:10 buckets:[1 2 3 4]}}", 0.0048960313898237465, 2.3971123370139447e-05),
            (
                "{{schema:0 count:10 sum:-112946 z_bucket:0 n_buckets:[0 0 1 1 1 0 1 1 0 0 3 0 0 0 1 0 0 1]}}",
                27556.344499842,
                759352122.1939945,
            ),
            ("{{schema:0 count:10 sum:-100 z_bucket:0 n_buckets:[0 0 0 0 10]}}", 1.3137084989848, 1.725830020304794),
        ];
        for (lit, sd, var) in cases {
            let x = h(lit);
            assert!((x.stddev() - sd).abs() / sd < 1e-9, "{lit}: {}", x.stddev());
            assert!(
                (x.stdvar() - var).abs() / var < 1e-9,
                "{lit}: {}",
                x.stdvar()
            );
        }
        let zeros = |n: usize| vec!["0"; n].join(" ");
        let three = format!(
            "{{{{schema:3 count:7 sum:62 z_bucket:1 buckets:[{} 1 {} 1 0 1 {} 1 ] n_buckets:[{} 1 {} 1 ]}}}}",
            zeros(13),
            zeros(10),
            zeros(27),
            zeros(24),
            zeros(21)
        );
        let x = h(&three);
        assert!(
            (x.stddev() - 42.94723640026).abs() / 42.94723640026 < 1e-9,
            "{}",
            x.stddev()
        );
        assert!((x.stdvar() - 1844.4651144196398).abs() / 1844.4651144196398 < 1e-9);
        let nan = h(&three.replace("sum:62", "sum:NaN"));
        assert!(nan.stddev().is_nan());
    }

    #[test]
    fn nan_observations_raise_infos() {
        // count 3 but the buckets hold 2: one NaN observation.
        let x = h("{{schema:0 sum:NaN count:3 buckets:[1 1]}}");
        let mut a = Vec::new();
        assert!(x.quantile(0.9, "histogram_nan", &mut a).is_nan());
        assert_eq!(
            a,
            vec![Annotation::NativeHistogramQuantileNaNResult {
                metric_name: "histogram_nan".into()
            }]
        );
        a.clear();
        let q = x.quantile(0.5, "histogram_nan", &mut a);
        assert!(q > 1.0 && q <= 2.0);
        assert_eq!(
            a,
            vec![Annotation::NativeHistogramQuantileNaNSkew {
                metric_name: "histogram_nan".into()
            }]
        );
        a.clear();
        assert!(close(
            x.fraction(f64::NEG_INFINITY, f64::INFINITY, "histogram_nan", &mut a),
            2.0 / 3.0
        ));
        assert_eq!(
            a,
            vec![Annotation::NativeHistogramFractionNaNs {
                metric_name: "histogram_nan".into()
            }]
        );
    }

    #[test]
    fn custom_bucket_quantiles() {
        let x = h("{{schema:-53 sum:10 count:4 custom_values:[1 2 5] buckets:[1 1 1 1]}}");
        let mut a = Vec::new();
        // First bucket (-Inf, 1] with a positive bound starts at 0.
        assert_eq!(x.quantile(0.125, "", &mut a), 0.5);
        assert_eq!(x.quantile(0.5, "", &mut a), 2.0);
        assert_eq!(x.quantile(0.625, "", &mut a), 3.5);
        // The +Inf bucket returns its lower bound.
        assert_eq!(x.quantile(0.99, "", &mut a), 5.0);
        assert_eq!(x.fraction(0.0, 1.5, "", &mut a), 0.375);
    }
}
