//! Functions over a range window of one float series: `rate`, `increase`, `delta`, `irate`,
//! `idelta`, `deriv`, `predict_linear`, `changes`, `resets`, the `*_over_time` family,
//! `double_exponential_smoothing` and `ts_of_*_over_time`.
//!
//! The engine hands each call a [`RangeCtx`]: the float samples of one series inside the
//! left-open window `(range_start, range_end]` (stale markers removed, ascending timestamps),
//! the window bounds and the scalar arguments of this step. [`eval`] returns the value of the
//! output sample, or `None` when Prometheus emits no sample for the series at this step.
//!
//! What stays with the engine: `absent_over_time` (it depends on whether any series has
//! samples), histogram samples (and the "ignored histograms in a range containing both floats
//! and histograms" info for ranges mixing both), the "metric might not be a counter" info of
//! `rate`/`increase` (see [`possible_non_counter`], it needs the metric name), and failing the
//! query on invalid `double_exponential_smoothing` factors (see [`check_params`]).

use crate::functions::aggregate::{
    kahan_inc, nan_first_cmp, quantile, quantile_sorted, KahanSum, Mean,
};
use crate::functions::annotation::Annotation;

/// Inputs of one range-function call for one series at one evaluation step.
pub struct RangeCtx<'a> {
    /// The float samples `(timestamp ms, value)` inside `(range_start, range_end]`, ascending,
    /// staleness markers removed.
    pub samples: &'a [(i64, f64)],
    /// Start of the window in ms (exclusive).
    pub range_start: i64,
    /// End of the window in ms (inclusive): the evaluation time minus any offset (the `@`
    /// time when there is one). `predict_linear` needs the evaluation time itself when the two
    /// differ: use [`eval_at`].
    pub range_end: i64,
    /// Scalar arguments evaluated at this step, in call order, without the range vector
    /// (`quantile_over_time(q, m)` → `[q]`, `predict_linear(m, t)` → `[t]`,
    /// `double_exponential_smoothing(m, sf, tf)` → `[sf, tf]`).
    pub params: &'a [f64],
    /// Where the function records warnings and infos.
    pub annotations: &'a mut Vec<Annotation>,
}

/// Names of every range function [`eval`] computes.
pub const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "deriv",
    "predict_linear",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "first_over_time",
    "present_over_time",
    "quantile_over_time",
    "mad_over_time",
    "double_exponential_smoothing",
    "holt_winters",
    "ts_of_min_over_time",
    "ts_of_max_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
];

/// Whether `name` is a range function computed by [`eval`].
pub fn is_range_function(name: &str) -> bool {
    RangeFn::from_name(name).is_some()
}

/// Checks scalar arguments that make Prometheus fail the whole query, returning its error
/// text: `double_exponential_smoothing` needs `0 < sf < 1` and `0 < tf < 1` ("invalid
/// smoothing factor. Expected: 0 < sf < 1, got: 0.000000").
pub fn check_params(name: &str, params: &[f64]) -> Result<(), String> {
    if name == "double_exponential_smoothing" || name == "holt_winters" {
        let sf = params.first().copied().unwrap_or(f64::NAN);
        let tf = params.get(1).copied().unwrap_or(f64::NAN);
        if !(sf > 0.0 && sf < 1.0) {
            return Err(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                go_fixed6(sf)
            ));
        }
        if !(tf > 0.0 && tf < 1.0) {
            return Err(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                go_fixed6(tf)
            ));
        }
    }
    Ok(())
}

/// Go's `%f`: six decimals, `NaN`, `+Inf`, `-Inf`.
fn go_fixed6(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v:.6}")
    }
}

/// The info `rate` and `increase` raise for a float series whose metric name lacks a counter
/// suffix (`_total`, `_sum`, `_count`, `_bucket`); `None` for unnamed series or good names.
pub fn possible_non_counter(metric_name: &str) -> Option<Annotation> {
    if metric_name.is_empty()
        || ["_total", "_sum", "_count", "_bucket"]
            .iter()
            .any(|s| metric_name.ends_with(s))
    {
        None
    } else {
        Some(Annotation::PossibleNonCounter {
            metric_name: metric_name.to_string(),
        })
    }
}

/// A range function resolved from its name once, so that per-step evaluation does not
/// compare strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeFn {
    /// `rate`
    Rate,
    /// `increase`
    Increase,
    /// `delta`
    Delta,
    /// `irate`
    Irate,
    /// `idelta`
    Idelta,
    /// `deriv`
    Deriv,
    /// `predict_linear(m, t)`
    PredictLinear,
    /// `changes`
    Changes,
    /// `resets`
    Resets,
    /// `avg_over_time`
    AvgOverTime,
    /// `sum_over_time`
    SumOverTime,
    /// `count_over_time`
    CountOverTime,
    /// `min_over_time`
    MinOverTime,
    /// `max_over_time`
    MaxOverTime,
    /// `ts_of_min_over_time`
    TsOfMinOverTime,
    /// `ts_of_max_over_time`
    TsOfMaxOverTime,
    /// `ts_of_first_over_time`
    TsOfFirstOverTime,
    /// `ts_of_last_over_time`
    TsOfLastOverTime,
    /// `first_over_time`
    FirstOverTime,
    /// `last_over_time`
    LastOverTime,
    /// `present_over_time`
    PresentOverTime,
    /// `stddev_over_time`
    StddevOverTime,
    /// `stdvar_over_time`
    StdvarOverTime,
    /// `quantile_over_time(q, m)`
    QuantileOverTime,
    /// `mad_over_time`
    MadOverTime,
    /// `double_exponential_smoothing(m, sf, tf)` (also its old name `holt_winters`)
    DoubleExponentialSmoothing,
}

impl RangeFn {
    /// The function called `name`, if it is a range function of this module.
    pub fn from_name(name: &str) -> Option<RangeFn> {
        use RangeFn::*;
        Some(match name {
            "rate" => Rate,
            "increase" => Increase,
            "delta" => Delta,
            "irate" => Irate,
            "idelta" => Idelta,
            "deriv" => Deriv,
            "predict_linear" => PredictLinear,
            "changes" => Changes,
            "resets" => Resets,
            "avg_over_time" => AvgOverTime,
            "sum_over_time" => SumOverTime,
            "count_over_time" => CountOverTime,
            "min_over_time" => MinOverTime,
            "max_over_time" => MaxOverTime,
            "ts_of_min_over_time" => TsOfMinOverTime,
            "ts_of_max_over_time" => TsOfMaxOverTime,
            "ts_of_first_over_time" => TsOfFirstOverTime,
            "ts_of_last_over_time" => TsOfLastOverTime,
            "first_over_time" => FirstOverTime,
            "last_over_time" => LastOverTime,
            "present_over_time" => PresentOverTime,
            "stddev_over_time" => StddevOverTime,
            "stdvar_over_time" => StdvarOverTime,
            "quantile_over_time" => QuantileOverTime,
            "mad_over_time" => MadOverTime,
            "double_exponential_smoothing" | "holt_winters" => DoubleExponentialSmoothing,
            _ => return None,
        })
    }

    /// Computes the function over `ctx` (see [`eval`]).
    pub fn eval(self, ctx: &mut RangeCtx) -> Option<f64> {
        self.eval_at(ctx, ctx.range_end)
    }

    /// Computes the function over `ctx` for evaluation time `eval_time` (ms), which differs
    /// from `ctx.range_end` when the selector has an `offset` or `@`. Only `predict_linear`
    /// depends on it: it predicts `t` seconds after the evaluation time, not after the end of
    /// the window.
    pub fn eval_at(self, ctx: &mut RangeCtx, eval_time: i64) -> Option<f64> {
        use RangeFn::*;
        let s = ctx.samples;
        if s.is_empty() {
            return None;
        }
        let param = |i: usize| ctx.params.get(i).copied();
        match self {
            Rate => extrapolated_rate(ctx, true, true),
            Increase => extrapolated_rate(ctx, true, false),
            Delta => extrapolated_rate(ctx, false, false),
            Irate => instant_value(s, &[], true),
            Idelta => instant_value(s, &[], false),
            Deriv => {
                if s.len() < 2 {
                    return None;
                }
                Some(linear_regression(s, s[0].0).0)
            }
            PredictLinear => {
                if s.len() < 2 {
                    return None;
                }
                let duration = param(0)?;
                let (slope, intercept) = linear_regression(s, eval_time);
                Some(slope * duration + intercept)
            }
            Changes => {
                let n = s
                    .windows(2)
                    .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                    .count();
                Some(n as f64)
            }
            Resets => Some(s.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
            AvgOverTime => {
                let mut m = Mean::new();
                for &(_, v) in s {
                    m.add(v);
                }
                Some(m.value())
            }
            SumOverTime => {
                let mut k = KahanSum::new();
                for &(_, v) in s {
                    k.add(v);
                }
                Some(k.value())
            }
            CountOverTime => Some(s.len() as f64),
            MinOverTime => Some(compare_over_time(s, |cur, best| cur < best || best.is_nan()).1),
            MaxOverTime => Some(compare_over_time(s, |cur, best| cur > best || best.is_nan()).1),
            TsOfMinOverTime => Some(ms_to_s(
                compare_over_time(s, |cur, best| cur <= best || best.is_nan()).0,
            )),
            TsOfMaxOverTime => Some(ms_to_s(
                compare_over_time(s, |cur, best| cur >= best || best.is_nan()).0,
            )),
            TsOfFirstOverTime => Some(ms_to_s(s[0].0)),
            TsOfLastOverTime => Some(ms_to_s(s[s.len() - 1].0)),
            FirstOverTime => Some(s[0].1),
            LastOverTime => Some(s[s.len() - 1].1),
            PresentOverTime => Some(1.0),
            StddevOverTime => Some(variance_over_time(s).sqrt()),
            StdvarOverTime => Some(variance_over_time(s)),
            QuantileOverTime => {
                let q = param(0)?;
                if q.is_nan() || !(0.0..=1.0).contains(&q) {
                    ctx.annotations.push(Annotation::InvalidQuantile { q });
                }
                Some(with_scratch(s, |values| quantile(q, values)))
            }
            MadOverTime => {
                if s.iter().any(|p| p.1.is_nan()) {
                    return Some(f64::NAN);
                }
                Some(with_scratch(s, |values| {
                    values.sort_unstable_by(nan_first_cmp);
                    let median = quantile_sorted(0.5, values);
                    for v in values.iter_mut() {
                        *v = (*v - median).abs();
                    }
                    quantile(0.5, values)
                }))
            }
            DoubleExponentialSmoothing => {
                let (sf, tf) = (param(0)?, param(1)?);
                if check_params("double_exponential_smoothing", ctx.params).is_err() {
                    return None;
                }
                double_exponential_smoothing(s, sf, tf)
            }
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` over a copy of the sample values in a per-thread buffer (no allocation per call
/// once the buffer has grown).
fn with_scratch(s: &[(i64, f64)], f: impl FnOnce(&mut [f64]) -> f64) -> f64 {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            buf.extend(s.iter().map(|p| p.1));
            f(&mut buf)
        }
        Err(_) => {
            let mut values: Vec<f64> = s.iter().map(|p| p.1).collect();
            f(&mut values)
        }
    })
}

/// Computes range function `name` over `ctx`. `None` means no output sample for this series
/// at this step (too few samples, unknown name, invalid factors, …). Engines evaluating many
/// steps can resolve the name once with [`RangeFn::from_name`].
pub fn eval(name: &str, ctx: &mut RangeCtx) -> Option<f64> {
    RangeFn::from_name(name)?.eval(ctx)
}

/// [`eval`] at evaluation time `eval_time` (ms) when it differs from `ctx.range_end` (an
/// `offset` or `@` on the selector); see [`RangeFn::eval_at`].
pub fn eval_at(name: &str, ctx: &mut RangeCtx, eval_time: i64) -> Option<f64> {
    RangeFn::from_name(name)?.eval_at(ctx, eval_time)
}

/// [`eval`] for a series whose samples carry start timestamps (created timestamps): `sts`
/// is parallel to `ctx.samples`, 0 where unknown. `rate`, `increase`, `irate` and `resets`
/// then also treat start-timestamp resets as counter resets, and `rate`/`increase` use a
/// start time inside the window as the counter's zero point; `rate`/`increase` raise
/// [`Annotation::StartTimeOverlap`] (naming `metric_name`) once when start times overlap
/// earlier samples. Every other function ignores `sts`.
pub fn eval_with_start_timestamps(
    name: &str,
    ctx: &mut RangeCtx,
    sts: &[i64],
    metric_name: &str,
) -> Option<f64> {
    if ctx.samples.is_empty() {
        return None;
    }
    match name {
        "rate" => extrapolated_rate_st(ctx, sts, metric_name, true, true),
        "increase" => extrapolated_rate_st(ctx, sts, metric_name, true, false),
        "irate" => instant_value(ctx.samples, sts, true),
        "resets" => {
            let s = ctx.samples;
            let st = |i: usize| sts.get(i).copied().unwrap_or(0);
            let n = (1..s.len())
                .filter(|&i| {
                    s[i].1 < s[i - 1].1
                        || is_start_timestamp_reset(st(i - 1), s[i - 1].0, st(i), s[i].0)
                })
                .count();
            Some(n as f64)
        }
        _ => eval(name, ctx),
    }
}

#[inline]
fn ms_to_s(t: i64) -> f64 {
    t as f64 / 1000.0
}

/// `rate`, `increase` and `delta` with Prometheus's extrapolation: the change between the
/// first and last sample (counter resets added back for counters) is extrapolated towards
/// the window bounds, all the way when the gap is under 1.1× the average sample interval,
/// else by half an interval; counters are not extrapolated below zero.
///
/// With start timestamps (`sts`, parallel to the samples, 0 = unknown) a counter also
/// resets where a start timestamp says so, and when the first sample's start timestamp lies
/// inside the window a zero value is assumed there instead of extrapolating to the left
/// (which also lets a single sample give a result).
fn extrapolated_rate(ctx: &mut RangeCtx, is_counter: bool, is_rate: bool) -> Option<f64> {
    extrapolated_rate_st(ctx, &[], "", is_counter, is_rate)
}

fn extrapolated_rate_st(
    ctx: &mut RangeCtx,
    sts: &[i64],
    metric_name: &str,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let s = ctx.samples;
    if s.is_empty() {
        return None;
    }
    let first_v = s[0].1;
    let last_v = s[s.len() - 1].1;
    let mut result = last_v - first_v;
    let sts = if is_counter { sts } else { &[] };
    if is_counter && sts.is_empty() {
        // Fast path without start timestamps: only value drops are resets.
        for w in s.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    } else if is_counter {
        let mut overlap_reported = false;
        for i in 0..s.len() - 1 {
            let (prev_t, prev_v) = s[i];
            let cur_v = s[i + 1].1;
            let cur_t = s[i + 1].0;
            if !overlap_reported
                && i + 1 < sts.len()
                && start_time_overlaps(sts[i], prev_t, sts[i + 1])
            {
                ctx.annotations.push(Annotation::StartTimeOverlap {
                    metric_name: metric_name.to_string(),
                });
                overlap_reported = true;
            }
            if cur_v < prev_v
                || (i + 1 < sts.len()
                    && is_start_timestamp_reset(sts[i], prev_t, sts[i + 1], cur_t))
            {
                result += prev_v;
            }
        }
    }
    extrapolate_rate(ctx, sts, result, is_counter, is_rate)
}

/// `rate`/`increase` of a counter over `ctx.samples` without start timestamps, given the
/// values just before each counter reset inside the window (in time order), so that a caller
/// sliding the window over many steps need not rescan it for resets. Same result, bit for bit,
/// as [`RangeFn::eval`].
pub fn counter_rate_with_resets(
    ctx: &RangeCtx,
    reset_values: impl Iterator<Item = f64>,
    is_rate: bool,
) -> Option<f64> {
    let s = ctx.samples;
    let (&(_, first_v), &(_, last_v)) = (s.first()?, s.last()?);
    let mut result = last_v - first_v;
    for v in reset_values {
        result += v;
    }
    extrapolate_rate(ctx, &[], result, true, is_rate)
}

/// Many `rate`/`increase` windows of one series, evaluated together: [`CounterWindows::push`]
/// records each window (of at least two samples), [`CounterWindows::compute`] then runs the
/// extrapolation of all of them in one loop without branches, which the compiler turns into
/// packed (SIMD) arithmetic. The divisions dominate the cost of a window, and packed
/// division is correctly rounded like scalar division, so every result is bit for bit the
/// one of [`counter_rate_with_resets`].
///
/// The per-window vectors are kept at their largest length and written by index (the
/// number of windows is `n`), which costs less than six `Vec::push`es per window.
#[derive(Default)]
pub struct CounterWindows {
    /// Number of windows pushed since the last [`CounterWindows::clear`].
    n: usize,
    to_start: Vec<f64>,
    to_end: Vec<f64>,
    sampled: Vec<f64>,
    gaps: Vec<f64>,
    first_v: Vec<f64>,
    result: Vec<f64>,
    /// The step timestamp of each window written through [`WindowSlots`].
    step_ts: Vec<i64>,
    /// Index of each window's first and last sample, written by
    /// [`CounterWindows::record_even`] for its counter-reset corrections.
    first_at: Vec<f64>,
    last_at: Vec<f64>,
    /// The value of each window in push order, after [`CounterWindows::compute`].
    pub out: Vec<f64>,
}

/// Writes up to a fixed number of windows into a [`CounterWindows`] (from
/// [`CounterWindows::slots`]). Held in a local in the caller's step loop, its slices stay in
/// registers: no vector header is reloaded after each store, as it is for `Vec` fields
/// behind a reference. The count of windows is stored back when it is dropped.
pub struct WindowSlots<'a> {
    len: usize,
    n: &'a mut usize,
    to_start: &'a mut [f64],
    to_end: &'a mut [f64],
    sampled: &'a mut [f64],
    gaps: &'a mut [f64],
    first_v: &'a mut [f64],
    result: &'a mut [f64],
    step_ts: &'a mut [i64],
}

impl WindowSlots<'_> {
    /// Records the window `samples` (at least two) in `(range_start, range_end]` of the step
    /// at `ts`, with the values just before each counter reset inside it. Panics past the
    /// number of windows the slots were made for.
    #[inline]
    pub fn push(
        &mut self,
        ts: i64,
        samples: &[(i64, f64)],
        range_start: i64,
        range_end: i64,
        reset_values: impl Iterator<Item = f64>,
    ) {
        let n = samples.len();
        debug_assert!(n >= 2);
        let (first_t, first_v) = samples[0];
        let (last_t, last_v) = samples[n - 1];
        let mut result = last_v - first_v;
        for v in reset_values {
            result += v;
        }
        let i = self.len;
        // One bounds check for all seven slices: they all have the same length (see
        // `CounterWindows::slots`), which the compiler cannot see through `&mut` fields.
        assert!(i < self.step_ts.len(), "more windows than slots");
        // SAFETY: every slice has length `self.step_ts.len()` (made so in
        // `CounterWindows::slots` and never changed), and `i` is below it.
        unsafe {
            *self.to_start.get_unchecked_mut(i) = (first_t - range_start) as f64;
            *self.to_end.get_unchecked_mut(i) = (range_end - last_t) as f64;
            *self.sampled.get_unchecked_mut(i) = (last_t - first_t) as f64;
            *self.gaps.get_unchecked_mut(i) = (n - 1) as f64;
            *self.first_v.get_unchecked_mut(i) = first_v;
            *self.result.get_unchecked_mut(i) = result;
            *self.step_ts.get_unchecked_mut(i) = ts;
        }
        self.len = i + 1;
    }
}

impl Drop for WindowSlots<'_> {
    fn drop(&mut self) {
        *self.n = self.len;
    }
}

impl CounterWindows {
    /// Forgets all windows.
    pub fn clear(&mut self) {
        self.n = 0;
        self.out.clear();
    }

    /// Forgets all windows and returns slots for writing up to `max` new ones.
    pub fn slots(&mut self, max: usize) -> WindowSlots<'_> {
        self.clear();
        while self.result.len() < max {
            self.grow();
        }
        if self.step_ts.len() < max {
            self.step_ts.resize(self.result.len(), 0);
        }
        WindowSlots {
            len: 0,
            n: &mut self.n,
            to_start: &mut self.to_start[..max],
            to_end: &mut self.to_end[..max],
            sampled: &mut self.sampled[..max],
            gaps: &mut self.gaps[..max],
            first_v: &mut self.first_v[..max],
            result: &mut self.result[..max],
            step_ts: &mut self.step_ts[..max],
        }
    }

    /// The step timestamps of the windows written through [`CounterWindows::slots`].
    pub fn step_ts(&self) -> &[i64] {
        &self.step_ts[..self.n]
    }

    /// The per-window vectors the extrapolation reads.
    fn columns(&mut self) -> [&mut Vec<f64>; 6] {
        [
            &mut self.to_start,
            &mut self.to_end,
            &mut self.sampled,
            &mut self.gaps,
            &mut self.first_v,
            &mut self.result,
        ]
    }

    /// Makes room for more windows in every per-window vector.
    #[cold]
    fn grow(&mut self) {
        let len = (self.result.len() * 2).max(64);
        for v in self.columns() {
            v.resize(len, 0.0);
        }
    }

    /// Records the window `(rt - range, rt]` of every step `ts` (`rt = ts - offset`) over
    /// `data` at once, as [`WindowSlots::push`] records them one by one, for samples evenly
    /// spaced at `interval` (at least two, as the evaluator's `find_resets` reports) with
    /// counter resets after the samples `resets` (in order); returns the number of samples in
    /// all windows, or `None` (nothing recorded) when the times are too large to be exact in
    /// f64 or the CPU lacks AVX2.
    ///
    /// With samples at `t0 + i * interval`, the samples at or before a time `t0 + a` are the
    /// first `floor(a / interval) + 1`, and a window's first and last sample times follow from
    /// its edges: four steps are computed together in vectors, only the first and last values
    /// being read from `data`. The steps must be evenly spaced (the evaluator's are).
    pub fn record_even(
        &mut self,
        data: &[(i64, f64)],
        interval: i64,
        steps: &[i64],
        offset: i64,
        range: i64,
        resets: &[usize],
    ) -> Option<u64> {
        debug_assert!(interval > 0 && data.len() >= 2);
        exact_in_f64(data, interval, steps, offset, range)?;
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                let (samples, all_long) =
                    unsafe { self.record_even_avx2(data, steps, offset, range, interval) };
                self.add_resets(data, resets);
                if !all_long {
                    self.drop_short_windows();
                }
                return Some(samples);
            }
        }
        None
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn record_even_avx2(
        &mut self,
        data: &[(i64, f64)],
        steps: &[i64],
        offset: i64,
        range: i64,
        interval: i64,
    ) -> (u64, bool) {
        use std::arch::x86_64::*;
        let m = steps.len();
        // Whole vectors of four windows are written, the last one partly past `m`.
        self.clear();
        while self.result.len() < m + 3 {
            self.grow();
        }
        let len = self.result.len();
        self.step_ts.resize(len.max(self.step_ts.len()), 0);
        self.first_at.resize(len, 0.0);
        self.last_at.resize(len, 0.0);
        let n = data.len();
        let step = if m >= 2 { steps[1] - steps[0] } else { 0 };
        let (t0, d) = (data[0].0, interval as f64);
        let splat = _mm256_set1_pd;
        let (dv, inv, one, zero, nv) = (
            splat(d),
            splat(1.0 / d),
            splat(1.0),
            splat(0.0),
            splat(n as f64),
        );
        // floor(a / interval), exactly: the product with the reciprocal is off by at most one.
        let floor_div = |a: __m256d| {
            let q = _mm256_floor_pd(_mm256_mul_pd(a, inv));
            let up = _mm256_cmp_pd::<_CMP_LE_OQ>(_mm256_mul_pd(_mm256_add_pd(q, one), dv), a);
            let q = _mm256_add_pd(q, _mm256_and_pd(up, one));
            let down = _mm256_cmp_pd::<_CMP_GT_OQ>(_mm256_mul_pd(q, dv), a);
            _mm256_sub_pd(q, _mm256_and_pd(down, one))
        };
        // Samples at or before a time, as a count clamped to 0..=n.
        let count_to =
            |a: __m256d| _mm256_min_pd(_mm256_max_pd(_mm256_add_pd(floor_div(a), one), zero), nv);
        let values: *const f64 = &data[0].1;
        let first_end = (steps[0] - offset - t0) as f64;
        let lane = _mm256_set_pd(3.0, 2.0, 1.0, 0.0);
        let (range_f, step_f, last) = (
            splat(range as f64),
            splat(step as f64),
            splat((m - 1) as f64),
        );
        let mut samples = zero;
        // Whether every window holds two samples or more (lanes past the last step count as
        // such).
        let mut long = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
        let two = splat(2.0);
        let mut k = 0;
        while k < m {
            let ks = _mm256_add_pd(lane, splat(k as f64));
            // Lanes past the last step are computed but neither counted nor kept.
            let live = _mm256_cmp_pd::<_CMP_LE_OQ>(ks, last);
            let a_hi = _mm256_add_pd(splat(first_end), _mm256_mul_pd(ks, step_f));
            let a_lo = _mm256_sub_pd(a_hi, range_f);
            let (lo, hi) = (count_to(a_lo), count_to(a_hi));
            let count = _mm256_and_pd(_mm256_sub_pd(hi, lo), live);
            samples = _mm256_add_pd(samples, count);
            let past = _mm256_cmp_pd::<_CMP_GT_OQ>(ks, last);
            long = _mm256_and_pd(
                long,
                _mm256_or_pd(_mm256_cmp_pd::<_CMP_GE_OQ>(count, two), past),
            );
            let last_i = _mm256_max_pd(_mm256_sub_pd(hi, one), zero);
            let first_i = _mm256_min_pd(lo, _mm256_sub_pd(nv, one));
            // Value `i` is the f64 at 2 * i + 1 of the (t, v) pairs; the indices are clamped
            // into the data, windows of fewer than two samples being dropped below.
            let idx = |x: __m256d| _mm_slli_epi32::<1>(_mm256_cvttpd_epi32(x));
            // SAFETY: both indices are within `0..n`, and `values` points at sample 0's value.
            let (first_v, last_v) = unsafe {
                (
                    _mm256_i32gather_pd::<8>(values, idx(first_i)),
                    _mm256_i32gather_pd::<8>(values, idx(last_i)),
                )
            };
            let to_start = _mm256_sub_pd(_mm256_mul_pd(lo, dv), a_lo);
            let to_end = _mm256_sub_pd(a_hi, _mm256_mul_pd(last_i, dv));
            let sampled = _mm256_mul_pd(_mm256_sub_pd(last_i, lo), dv);
            let gaps = _mm256_sub_pd(count, one);
            // SAFETY: every vector has at least `m + 3` slots (grown above), so the four
            // from `k < m` on are inside it.
            unsafe {
                _mm256_storeu_pd(self.to_start.as_mut_ptr().add(k), to_start);
                _mm256_storeu_pd(self.to_end.as_mut_ptr().add(k), to_end);
                _mm256_storeu_pd(self.sampled.as_mut_ptr().add(k), sampled);
                _mm256_storeu_pd(self.gaps.as_mut_ptr().add(k), gaps);
                _mm256_storeu_pd(self.first_v.as_mut_ptr().add(k), first_v);
                _mm256_storeu_pd(
                    self.result.as_mut_ptr().add(k),
                    _mm256_sub_pd(last_v, first_v),
                );
                _mm256_storeu_pd(self.first_at.as_mut_ptr().add(k), lo);
                _mm256_storeu_pd(self.last_at.as_mut_ptr().add(k), last_i);
            }
            k += 4;
        }
        self.step_ts[..m].copy_from_slice(steps);
        self.n = m;
        let mut sum = [0.0f64; 4];
        // SAFETY: `sum` holds four f64s.
        unsafe { _mm256_storeu_pd(sum.as_mut_ptr(), samples) };
        (
            sum.iter().sum::<f64>() as u64,
            _mm256_movemask_pd(long) == 0b1111,
        )
    }

    /// Computes every window `(rt - range, rt]` (`rt = ts - offset`) of the steps into
    /// [`CounterWindows::out`] and [`CounterWindows::step_ts`] in one pass, giving what
    /// [`CounterWindows::record_even`] and [`CounterWindows::compute`] give, for samples
    /// evenly spaced at `interval` when the step is a multiple of it: the window of step `k`
    /// then starts and ends `k × step / interval` samples after the first one's, and every
    /// window inside the data has the same geometry, so its extrapolation factor is worked
    /// out once. Returns the number of samples in all windows, or `None` (nothing computed)
    /// when the step is not a multiple of the interval or the times are too large.
    #[allow(clippy::too_many_arguments)]
    pub fn compute_regular(
        &mut self,
        data: &[(i64, f64)],
        interval: i64,
        steps: &[i64],
        offset: i64,
        range: i64,
        resets: &[usize],
        is_rate: bool,
    ) -> Option<u64> {
        let (first_ts, t0) = exact_in_f64(data, interval, steps, offset, range)?;
        let step = match steps {
            [a, b, ..] => b - a,
            _ => interval,
        };
        if interval <= 0 || step <= 0 || step % interval != 0 {
            return None;
        }
        let (n, d, q) = (data.len() as i64, interval, step / interval);
        let range_s = range as f64 / 1000.0;
        // Window k holds the samples from index l0 + k q up to (not including) h0 + k q,
        // clamped to the data.
        let a_hi0 = first_ts - offset - t0;
        let a_lo0 = a_hi0 - range;
        let (l0, h0) = (a_lo0.div_euclid(d) + 1, a_hi0.div_euclid(d) + 1);
        // The windows wholly inside the data share one geometry and, unless a counter's zero
        // point limits the start, one factor.
        let inner = Geometry::new(
            (l0 * d - a_lo0) as f64,
            (a_hi0 - (h0 - 1) * d) as f64,
            ((h0 - 1 - l0) * d) as f64,
            (h0 - l0 - 1) as f64,
        );
        self.clear();
        let m = steps.len();
        self.out.reserve(m);
        if self.step_ts.len() < m {
            self.step_ts.resize(m, 0);
        }
        // The steps whose windows lie wholly inside the data: `l0 + k q >= 0` and
        // `h0 + k q <= n`.
        let k_in = if l0 >= 0 { 0 } else { (-l0 + q - 1) / q };
        let k_out = if h0 > n { 0 } else { (n - h0) / q + 1 };
        let (k_in, k_out) = (k_in.min(m as i64) as usize, k_out.min(m as i64) as usize);
        let k_out = k_out.max(k_in);
        let mut samples = 0u64;
        // A window at the data's edges: its samples and its value, if it has two samples.
        let edge = |k: usize| -> (u64, Option<f64>) {
            let a_lo = a_lo0 + k as i64 * step;
            let (lo, hi) = (
                (l0 + k as i64 * q).clamp(0, n),
                (h0 + k as i64 * q).clamp(0, n),
            );
            if hi - lo < 2 {
                return ((hi - lo) as u64, None);
            }
            let (lo, last) = (lo as usize, hi as usize - 1);
            let first = data[lo].1;
            let res = with_resets(data, resets, lo, last, data[last].1 - first);
            let geo = Geometry::new(
                (lo as i64 * d - a_lo) as f64,
                (a_lo + range - last as i64 * d) as f64,
                ((last - lo) as i64 * d) as f64,
                (last - lo) as f64,
            );
            let v = res * geo.factor(first, res, range_s, is_rate);
            ((last + 1 - lo) as u64, Some(v))
        };
        let (out, step_ts) = (&mut self.out, &mut self.step_ts);
        let mut kept = 0usize;
        let mut k = 0;
        while k < m {
            if k == k_in && k_out > k_in && h0 - l0 >= 2 {
                // Inside: the first and the last sample move by `q` each step.
                samples += (k_out - k_in) as u64 * (h0 - l0) as u64;
                let (lo, last) = (
                    (l0 + k_in as i64 * q) as usize,
                    (h0 - 1 + k_in as i64 * q) as usize,
                );
                let len = k_out - k_in;
                InnerRun::new(
                    data,
                    resets,
                    (lo, last, q as usize),
                    inner,
                    range_s,
                    is_rate,
                )
                .extend(out, len);
                step_ts[kept..kept + len].copy_from_slice(&steps[k_in..k_out]);
                kept += len;
                k = k_out;
                continue;
            }
            let (count, v) = edge(k);
            samples += count;
            if let Some(v) = v {
                out.push(v);
                step_ts[kept] = steps[k];
                kept += 1;
            }
            k += 1;
        }
        self.n = kept;
        Some(samples)
    }

    /// Adds to each window recorded by [`CounterWindows::record_even`] the value before every
    /// counter reset inside it (a reset after sample `i` is inside when samples `i` and
    /// `i + 1` both are), in order, as the sliding path adds them.
    fn add_resets(&mut self, data: &[(i64, f64)], resets: &[usize]) {
        if resets.is_empty() {
            return;
        }
        for k in 0..self.n {
            let (first, last) = (self.first_at[k] as usize, self.last_at[k] as usize);
            self.result[k] = with_resets(data, resets, first, last, self.result[k]);
        }
    }

    /// Removes the windows of fewer than two samples (`gaps < 1`), keeping the others in
    /// order.
    fn drop_short_windows(&mut self) {
        let mut kept = 0;
        for k in 0..self.n {
            if self.gaps[k] >= 1.0 {
                for v in self.columns() {
                    v[kept] = v[k];
                }
                self.step_ts[kept] = self.step_ts[k];
                kept += 1;
            }
        }
        self.n = kept;
    }

    /// Computes every recorded window into [`CounterWindows::out`]; `range_s` is the window
    /// length in seconds.
    pub fn compute(&mut self, range_s: f64, is_rate: bool) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { self.compute_avx2(range_s, is_rate) };
                return;
            }
        }
        self.compute_generic(range_s, is_rate);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn compute_avx2(&mut self, range_s: f64, is_rate: bool) {
        self.compute_generic(range_s, is_rate);
    }

    #[inline(always)]
    fn compute_generic(&mut self, range_s: f64, is_rate: bool) {
        let n = self.n;
        self.out.clear();
        self.out.reserve(n);
        // Written in place of the spare capacity, not zeroed first.
        let out = &mut self.out.spare_capacity_mut()[..n];
        let (a, b, c) = (&self.to_start[..n], &self.to_end[..n], &self.sampled[..n]);
        let (g, fv, res) = (&self.gaps[..n], &self.first_v[..n], &self.result[..n]);
        for i in 0..n {
            let geo = Geometry::new(a[i], b[i], c[i], g[i]);
            out[i].write(res[i] * geo.factor(fv[i], res[i], range_s, is_rate));
        }
        // SAFETY: the loop wrote each of the first `n` slots.
        unsafe { self.out.set_len(n) };
    }
}

/// The extrapolation geometry of one counter window (times in ms as recorded): what
/// `extrapolatedRate` derives from the window's edges and samples before it looks at the
/// values.
#[derive(Clone, Copy)]
struct Geometry {
    /// Time between the first and the last sample, in seconds.
    sampled_interval: f64,
    /// Extrapolation before the first sample (seconds), before the zero-point limit.
    dts: f64,
    /// Extrapolation after the last sample (seconds).
    dte: f64,
}

impl Geometry {
    /// From the gaps between the window's start and its first sample (`to_start`), its last
    /// sample and its end (`to_end`), its first and last sample (`sampled`), all in ms, and
    /// the number of gaps between its samples.
    #[inline(always)]
    fn new(to_start: f64, to_end: f64, sampled: f64, gaps: f64) -> Geometry {
        let sampled_interval = sampled / 1000.0;
        let avg_between = sampled_interval / gaps;
        let threshold = avg_between * 1.1;
        // Half the average gap between samples: the extrapolation past an edge sample
        // when the window's edge is further away than 1.1 average gaps.
        let half_gap = avg_between / 2.0;
        let dts = to_start / 1000.0;
        let dte = to_end / 1000.0;
        Geometry {
            sampled_interval,
            dts: if dts >= threshold { half_gap } else { dts },
            dte: if dte >= threshold { half_gap } else { dte },
        }
    }

    /// The extrapolation start for a window whose first value is `first` and whose increase
    /// is `res`: a counter is not extrapolated below zero.
    #[inline(always)]
    fn start(&self, first: f64, res: f64) -> f64 {
        let to_zero = self.sampled_interval * (first / res);
        if res > 0.0 && first >= 0.0 && to_zero < self.dts {
            to_zero
        } else {
            self.dts
        }
    }

    /// What the increase `res` is multiplied by (divided by the range for a rate), the
    /// window's first value being `first`.
    #[inline(always)]
    fn factor(&self, first: f64, res: f64, range_s: f64, is_rate: bool) -> f64 {
        self.factor_from(self.start(first, res), range_s, is_rate)
    }

    /// [`Geometry::factor`] for the extrapolation start `dts`.
    #[inline(always)]
    fn factor_from(&self, dts: f64, range_s: f64, is_rate: bool) -> f64 {
        let si = self.sampled_interval;
        let factor = if si != 0.0 {
            (si + dts + self.dte) / si
        } else {
            1.0
        };
        if is_rate {
            factor / range_s
        } else {
            factor
        }
    }
}

/// The first step and the first sample's time when every time and count the even-spacing
/// paths ([`CounterWindows::record_even`], [`CounterWindows::compute_regular`]) derive from
/// these arguments is an integer well inside f64's exact range; `None` otherwise, or when
/// there are no steps or no samples.
fn exact_in_f64(
    data: &[(i64, f64)],
    interval: i64,
    steps: &[i64],
    offset: i64,
    range: i64,
) -> Option<(i64, i64)> {
    const LIMIT: i64 = 1 << 50;
    let (&first_ts, &last_ts) = (steps.first()?, steps.last()?);
    let t0 = data.first()?.0;
    let (lo, hi) = (first_ts - offset - range - t0, last_ts - offset - t0);
    let exact = [lo, hi, interval, range].iter().all(|x| x.abs() < LIMIT);
    (exact && data.len() < 1 << 30).then_some((first_ts, t0))
}

/// The windows of [`CounterWindows::compute_regular`] inside the data: window `j` runs from
/// sample `lo + j q` to sample `last + j q`, and all have the geometry `geo`, so they share
/// the extrapolation `factor` unless the counter's zero point may limit their start.
struct InnerRun<'a> {
    data: &'a [(i64, f64)],
    resets: &'a [usize],
    lo: usize,
    last: usize,
    q: usize,
    geo: Geometry,
    /// A first value above `res × zero_bound` is surely too far from zero to limit the
    /// start: the margin dwarfs the rounding of [`Geometry::start`]'s test.
    zero_bound: f64,
    factor: f64,
    range_s: f64,
    is_rate: bool,
}

impl<'a> InnerRun<'a> {
    /// The run whose window `j` spans samples `lo + j q ..= last + j q` (`(lo, last, q)`),
    /// every window having the geometry `geo`.
    fn new(
        data: &'a [(i64, f64)],
        resets: &'a [usize],
        (lo, last, q): (usize, usize, usize),
        geo: Geometry,
        range_s: f64,
        is_rate: bool,
    ) -> Self {
        InnerRun {
            data,
            resets,
            lo,
            last,
            q,
            geo,
            zero_bound: geo.dts / geo.sampled_interval * 1.000_001,
            factor: geo.factor_from(geo.dts, range_s, is_rate),
            range_s,
            is_rate,
        }
    }

    /// Appends the values of the first `len` windows to `out`.
    fn extend(&self, out: &mut Vec<f64>, len: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            if self.resets.is_empty() && std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { self.extend_avx2(out, len) };
                return;
            }
        }
        out.extend((0..len).map(|j| self.value(j)));
    }

    /// Whether a window with first value `first` and increase `res` takes the shared factor.
    #[inline(always)]
    fn plain(&self, first: f64, res: f64) -> bool {
        !(res > 0.0 && first >= 0.0) || first > res * self.zero_bound
    }

    /// The value of window `j`.
    #[inline(always)]
    fn value(&self, j: usize) -> f64 {
        let (lo, last) = (self.lo + j * self.q, self.last + j * self.q);
        let first = self.data[lo].1;
        let res = self.data[last].1 - first;
        let res = with_resets(self.data, self.resets, lo, last, res);
        if self.plain(first, res) {
            res * self.factor
        } else {
            res * self.geo.factor(first, res, self.range_s, self.is_rate)
        }
    }

    /// [`InnerRun::extend`] four windows at a time, for windows without counter resets.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn extend_avx2(&self, out: &mut Vec<f64>, len: usize) {
        use std::arch::x86_64::*;
        let (data, q) = (self.data, self.q);
        assert!(len == 0 || self.last + (len - 1) * q < data.len());
        out.reserve(len);
        let base = out.len();
        let dst = out.spare_capacity_mut().as_mut_ptr().cast::<f64>();
        // SAFETY: every index passed is at most `last + (len - 1) q` (asserted above).
        let value = |i: usize| unsafe { data.get_unchecked(i).1 };
        let (zero, bound, factor) = (
            _mm256_setzero_pd(),
            _mm256_set1_pd(self.zero_bound),
            _mm256_set1_pd(self.factor),
        );
        let mut j = 0;
        while j + 4 <= len {
            let at = |start: usize| {
                let i = start + j * q;
                _mm256_set_pd(value(i + 3 * q), value(i + 2 * q), value(i + q), value(i))
            };
            let (first, last) = (at(self.lo), at(self.last));
            let res = _mm256_sub_pd(last, first);
            // SAFETY: `out` has room for `len` more values, and `j + 4 <= len`.
            unsafe { _mm256_storeu_pd(dst.add(j), _mm256_mul_pd(res, factor)) };
            // The windows where `plain` does not hold (increase > 0, first >= 0, first not
            // above `res × zero_bound`) are done again one by one.
            let limited = _mm256_andnot_pd(
                _mm256_cmp_pd::<_CMP_GT_OQ>(first, _mm256_mul_pd(res, bound)),
                _mm256_and_pd(
                    _mm256_cmp_pd::<_CMP_GT_OQ>(res, zero),
                    _mm256_cmp_pd::<_CMP_GE_OQ>(first, zero),
                ),
            );
            let mut lanes = _mm256_movemask_pd(limited);
            while lanes != 0 {
                let lane = lanes.trailing_zeros() as usize;
                // SAFETY: as for the store above.
                unsafe { dst.add(j + lane).write(self.value(j + lane)) };
                lanes &= lanes - 1;
            }
            j += 4;
        }
        for j in j..len {
            // SAFETY: `out` has room for `len` more values.
            unsafe { dst.add(j).write(self.value(j)) };
        }
        // SAFETY: the loops wrote every one of the `len` slots.
        unsafe { out.set_len(base + len) };
    }
}

/// `res` plus the value before every counter reset inside the window of samples
/// `first..=last` (a reset after sample `i` with `first <= i < last`), in order.
#[inline(always)]
fn with_resets(data: &[(i64, f64)], resets: &[usize], first: usize, last: usize, res: f64) -> f64 {
    let from = resets.partition_point(|&i| i < first);
    resets[from..]
        .iter()
        .take_while(|&&i| i < last)
        .fold(res, |acc, &i| acc + data[i].1)
}

/// The extrapolation of `extrapolated_rate_st` once the raw difference `result` (counter
/// resets corrected) is known.
fn extrapolate_rate(
    ctx: &RangeCtx,
    sts: &[i64],
    mut result: f64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let s = ctx.samples;
    let (first_t, first_v) = s[0];
    let last_t = s[s.len() - 1].0;
    let num_minus_one = (s.len() - 1) as f64;
    let mut duration_to_start = (first_t - ctx.range_start) as f64 / 1000.0;
    let mut duration_to_end = (ctx.range_end - last_t) as f64 / 1000.0;
    let mut sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let avg_between = if s.len() > 1 {
        sampled_interval / num_minus_one
    } else {
        0.0
    };
    let threshold = avg_between * 1.1;

    match sts.first() {
        Some(&st0) if st0 != 0 && st0 > ctx.range_start && st0 < first_t => {
            // A zero-valued sample is assumed at the first sample's start time.
            duration_to_start = 0.0;
            sampled_interval = (last_t - st0) as f64 / 1000.0;
            result += first_v;
        }
        _ if s.len() < 2 => return None,
        _ => {
            if duration_to_start >= threshold {
                duration_to_start = avg_between / 2.0;
            }
            if is_counter {
                let mut duration_to_zero = duration_to_start;
                if result > 0.0 && first_v >= 0.0 {
                    duration_to_zero = sampled_interval * (first_v / result);
                }
                if duration_to_zero < duration_to_start {
                    duration_to_start = duration_to_zero;
                }
            }
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = avg_between / 2.0;
    }
    let mut factor = 1.0;
    if sampled_interval != 0.0 {
        factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    }
    if is_rate {
        factor /= (ctx.range_end - ctx.range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Whether the start timestamps say the counter restarted between the previous sample
/// (`prev_st`, `prev_t`) and the current one (`cur_st`, `cur_t`); 0 means unknown. A start
/// time after the previous sample is a reset; one equal to the previous sample's time is a
/// reset only when the previous start time was known and different (a delta series), not for
/// a cumulative series with unknown start.
pub fn is_start_timestamp_reset(prev_st: i64, prev_t: i64, cur_st: i64, cur_t: i64) -> bool {
    if cur_st == 0 || cur_st >= cur_t || cur_st < prev_t {
        return false;
    }
    if cur_st > prev_t {
        return true;
    }
    if prev_st > prev_t {
        return false;
    }
    prev_st != 0 && prev_st != prev_t
}

/// Whether a sample's start time reaches back before the previous sample (and is not simply
/// the same start time as the previous sample's): overlapping data.
pub fn start_time_overlaps(prev_st: i64, prev_t: i64, cur_st: i64) -> bool {
    cur_st != 0 && cur_st < prev_t && cur_st != prev_st
}

/// `irate` / `idelta` from the last two samples. For `irate` a decrease (or a start
/// timestamp reset, when `sts` are given) counts as a counter reset: the result is the last
/// value over the interval.
fn instant_value(s: &[(i64, f64)], sts: &[i64], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let n = s.len();
    let (t0, v0) = s[n - 2];
    let (t1, v1) = s[n - 1];
    let st = |i: usize| sts.get(i).copied().unwrap_or(0);
    let interval = t1 - t0;
    if interval == 0 {
        return None;
    }
    let mut result = v1;
    if !is_rate || !(v1 < v0 || is_start_timestamp_reset(st(n - 2), t0, st(n - 1), t1)) {
        result = v1 - v0;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares fit of the samples with x in seconds relative to `intercept_time` (ms):
/// returns `(slope, intercept)`. Constant values give slope 0 (NaN for infinite constants).
pub fn linear_regression(s: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    let init_y = s[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in s.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Scans for the sample that `better(cur, best)` prefers; returns its (timestamp, value).
#[inline]
fn compare_over_time(s: &[(i64, f64)], better: impl Fn(f64, f64) -> bool) -> (i64, f64) {
    let (mut best_t, mut best) = s[0];
    for &(t, v) in s {
        if better(v, best) {
            best = v;
            best_t = t;
        }
    }
    (best_t, best)
}

/// Population variance with Kahan-compensated running mean and sum of squares.
fn variance_over_time(s: &[(i64, f64)]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut c_mean) = (0.0, 0.0);
    let (mut aux, mut c_aux) = (0.0, 0.0);
    for &(_, v) in s {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Holt's linear (double exponential) smoothing with smoothing factor `sf` and trend factor
/// `tf`; needs at least two samples.
fn double_exponential_smoothing(s: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = s[0].1;
    let mut b = s[1].1 - s[0].1;
    for (i, &(_, v)) in s.iter().enumerate().skip(1) {
        let x = sf * v;
        // The trend at the previous point (the initial trend for the first step).
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sliding form (resets found once per series) gives the same bits as the
    /// per-window scan, counter resets inside and at the edges of the window included.
    #[test]
    fn counter_windows_match_rate_with_negative_zero_and_odd_values() {
        let vals = [
            -3.0,
            0.0,
            5.5,
            -0.0,
            2.0,
            2.0,
            1e300,
            f64::INFINITY,
            7.0,
            f64::NAN,
            1.0,
            4.0,
            -1e-9,
            0.25,
            9.0,
            9.0,
            9.0,
            3.0,
        ];
        let s: Vec<(i64, f64)> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 10_000 + (i as i64 % 3) * 7, v))
            .collect();
        let mut cw = CounterWindows::default();
        let mut want = Vec::new();
        let mut windows = Vec::new();
        for lo in 0..s.len() {
            for hi in lo + 2..=s.len() {
                let w = &s[lo..hi];
                // one window length for all, so that one batch computes them together
                for rs in [w[0].0 - 1, w[0].0 - 9_000, w[0].0 - 61_000] {
                    let re = rs + 200_000;
                    let mut annos = Vec::new();
                    let r = RangeFn::Rate.eval(&mut RangeCtx {
                        samples: w,
                        range_start: rs,
                        range_end: re,
                        params: &[],
                        annotations: &mut annos,
                    });
                    windows.push((lo, hi, rs, re));
                    want.push(r.map(f64::to_bits));
                }
            }
        }
        // Twice, the second time reusing the vectors the first one grew.
        for _ in 0..2 {
            {
                let mut slots = cw.slots(windows.len() + 3);
                for (k, &(lo, hi, rs, re)) in windows.iter().enumerate() {
                    let resets = (lo..hi - 1)
                        .filter(|&i| s[i + 1].1 < s[i].1)
                        .map(|i| s[i].1);
                    slots.push(k as i64 * 7, &s[lo..hi], rs, re, resets);
                }
            }
            cw.compute(200.0, true);
            let got: Vec<Option<u64>> = cw.out.iter().map(|v| Some(v.to_bits())).collect();
            assert_eq!(got, want);
            cw.compute_generic(200.0, true);
            let got: Vec<Option<u64>> = cw.out.iter().map(|v| Some(v.to_bits())).collect();
            assert_eq!(got, want);
            let ts: Vec<i64> = (0..windows.len() as i64).map(|k| k * 7).collect();
            assert_eq!(cw.step_ts(), &ts[..]);
        }
    }

    #[test]
    fn counter_rate_with_resets_matches_rate_bit_for_bit() {
        let s: Vec<(i64, f64)> = (0..40)
            .map(|i| {
                (
                    i * 15_000 + 7,
                    ((i * 37) % 11) as f64 * 1.1 + (i % 5) as f64 * 0.3,
                )
            })
            .collect();
        for lo in 0..s.len() {
            for hi in lo + 1..=s.len() {
                let w = &s[lo..hi];
                let resets = (lo..hi.saturating_sub(1))
                    .filter(|&i| s[i + 1].1 < s[i].1)
                    .map(|i| s[i].1);
                let (rs, re) = (w[0].0 - 9_000, w[w.len() - 1].0 + 4_000);
                for (f, is_rate) in [(RangeFn::Rate, true), (RangeFn::Increase, false)] {
                    let mut annos = Vec::new();
                    let want = f.eval(&mut RangeCtx {
                        samples: w,
                        range_start: rs,
                        range_end: re,
                        params: &[],
                        annotations: &mut annos,
                    });
                    let ctx = RangeCtx {
                        samples: w,
                        range_start: rs,
                        range_end: re,
                        params: &[],
                        annotations: &mut annos,
                    };
                    let got = counter_rate_with_resets(&ctx, resets.clone(), is_rate);
                    if w.len() >= 2 {
                        let mut cw = CounterWindows::default();
                        // several times, so that the packed loop runs
                        let mut slots = cw.slots(5);
                        for k in 0..5 {
                            slots.push(k, w, rs, re, resets.clone());
                        }
                        drop(slots);
                        cw.compute((re - rs) as f64 / 1000.0, is_rate);
                        for v in &cw.out {
                            assert_eq!(
                                Some(v.to_bits()),
                                want.map(f64::to_bits),
                                "batch [{lo}, {hi})"
                            );
                        }
                        cw.compute_generic((re - rs) as f64 / 1000.0, is_rate);
                        assert_eq!(
                            Some(cw.out[4].to_bits()),
                            want.map(f64::to_bits),
                            "generic batch [{lo}, {hi})"
                        );
                    }
                    assert_eq!(
                        got.map(f64::to_bits),
                        want.map(f64::to_bits),
                        "[{lo}, {hi})"
                    );
                }
            }
        }
    }

    /// Samples `start, start+step, …` every `interval_s` seconds from time 0.
    fn series(interval_s: i64, values: &[f64]) -> Vec<(i64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * interval_s * 1000, v))
            .collect()
    }

    fn run(name: &str, s: &[(i64, f64)], end_s: i64, range_s: i64, params: &[f64]) -> Option<f64> {
        let end = end_s * 1000;
        let start = end - range_s * 1000;
        let inside: Vec<(i64, f64)> = s
            .iter()
            .copied()
            .filter(|&(t, _)| t > start && t <= end)
            .collect();
        let mut annotations = Vec::new();
        let mut ctx = RangeCtx {
            samples: &inside,
            range_start: start,
            range_end: end,
            params,
            annotations: &mut annotations,
        };
        eval(name, &mut ctx)
    }

    fn close(a: f64, b: f64) -> bool {
        a == b || (a - b).abs() / (a.abs() + b.abs()) < 1e-9
    }

    #[test]
    fn rate_increase_delta_like_functions_test() {
        // load 5m: http_requests_total 0+10x10 (t = 0..=50m), one reset series 0+10x5 0+10x5.
        let vals: Vec<f64> = (0..=10).map(|i| i as f64 * 10.0).collect();
        let s = series(300, &vals);
        // eval instant at 50m rate(http_requests_total[50m]) → 0.03333…
        assert!(close(
            run("rate", &s, 3000, 3000, &[]).unwrap(),
            100.0 / 3000.0
        ));
        // eval instant at 50m increase(http_requests_total[50m]) → 100
        assert!(close(run("increase", &s, 3000, 3000, &[]).unwrap(), 100.0));
        // eval instant at 50m delta(http_requests_total[50m]) → 100? Window excludes t=0,
        // first sample 5m (10), last 50m (100): delta extrapolated by 5m on the left.
        assert!(close(run("delta", &s, 3000, 3000, &[]).unwrap(), 100.0));
        // functions.test "Tests for increase()": 0+10x10, 0+18x5 0+18x5, 10+10x10, 1+10x10.
        let expand = |parts: &[(f64, f64, usize)]| -> Vec<f64> {
            parts
                .iter()
                .flat_map(|&(a, b, n)| (0..=n).map(move |i| a + b * i as f64))
                .collect()
        };
        let foo = series(300, &expand(&[(0.0, 10.0, 10)]));
        let bar = series(300, &expand(&[(0.0, 18.0, 5), (0.0, 18.0, 5)]));
        let dings = series(300, &expand(&[(10.0, 10.0, 10)]));
        let bumms = series(300, &expand(&[(1.0, 10.0, 10)]));
        for (s, at50, at100) in [
            (&foo, 100.0, 100.0),
            (&bar, 160.0, 162.0),
            (&dings, 100.0, 105.0),
            (&bumms, 100.0, 101.0),
        ] {
            assert!(close(run("increase", s, 3000, 3000, &[]).unwrap(), at50));
            assert!(close(run("increase", s, 3000, 6000, &[]).unwrap(), at100));
        }
        // Fewer than two samples: nothing.
        assert_eq!(run("rate", &s, 300, 300, &[]), None);
    }

    #[test]
    fn extrapolation_stops_at_half_interval() {
        // Samples at 10s,20s,30s inside (0, 60s]: the end gap 30s > 1.1*10s → extrapolate 5s.
        let s = vec![(10_000, 1.0), (20_000, 2.0), (30_000, 3.0)];
        let d = run("delta", &s, 60, 60, &[]).unwrap();
        // left gap 10s < 11s → full 10s; right 5s; factor (20+10+5)/20.
        assert!(close(d, 2.0 * 35.0 / 20.0));
        // increase: zero point at 20s*(1/2)=10s, not shorter than 10s.
        let i = run("increase", &s, 60, 60, &[]).unwrap();
        assert!(close(i, 2.0 * 35.0 / 20.0));
        let r = run("rate", &s, 60, 60, &[]).unwrap();
        assert!(close(r, 2.0 * 35.0 / 20.0 / 60.0));
    }

    #[test]
    fn irate_idelta() {
        let s = vec![(0, 10.0), (10_000, 20.0), (20_000, 5.0)];
        // reset: irate = 5 / 10s
        assert_eq!(run("irate", &s, 20, 60, &[]), Some(0.5));
        assert_eq!(run("idelta", &s, 20, 60, &[]), Some(-15.0));
        let s = vec![(0, 10.0), (10_000, 20.0)];
        assert_eq!(run("irate", &s, 20, 60, &[]), Some(1.0));
        assert_eq!(run("idelta", &s, 20, 60, &[]), Some(10.0));
    }

    #[test]
    fn deriv_and_predict_linear() {
        // functions.test: testcounter_reset_middle_total 0+10x4 0+10x5 at 5m steps? Use a
        // clean line: value = 2 * t_seconds.
        let s: Vec<(i64, f64)> = (0..10).map(|i| (i * 60_000, i as f64 * 120.0)).collect();
        assert!(close(run("deriv", &s, 540, 600, &[]).unwrap(), 2.0));
        // predict 60s after the evaluation time 540s: 2 * 600.
        assert!(close(
            run("predict_linear", &s, 540, 600, &[60.0]).unwrap(),
            1200.0
        ));
        let flat = vec![(0, f64::INFINITY), (1000, f64::INFINITY)];
        assert!(run("deriv", &flat, 1, 10, &[]).unwrap().is_nan());
        let flat = vec![(0, 3.0), (1000, 3.0)];
        assert_eq!(run("deriv", &flat, 1, 10, &[]), Some(0.0));
        assert_eq!(run("predict_linear", &flat, 1, 10, &[100.0]), Some(3.0));
    }

    #[test]
    fn changes_resets() {
        let s = series(10, &[1.0, 1.0, 2.0, f64::NAN, f64::NAN, 1.0, 0.5]);
        assert_eq!(run("changes", &s, 60, 100, &[]), Some(4.0));
        assert_eq!(run("resets", &s, 60, 100, &[]), Some(1.0));
        assert_eq!(run("changes", &s[..1], 0, 100, &[]), Some(0.0));
    }

    #[test]
    fn over_time_aggregations() {
        let s = series(10, &[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(run("avg_over_time", &s, 30, 100, &[]), Some(2.5));
        assert_eq!(run("sum_over_time", &s, 30, 100, &[]), Some(10.0));
        assert_eq!(run("count_over_time", &s, 30, 100, &[]), Some(4.0));
        assert_eq!(run("min_over_time", &s, 30, 100, &[]), Some(1.0));
        assert_eq!(run("max_over_time", &s, 30, 100, &[]), Some(4.0));
        assert_eq!(run("ts_of_min_over_time", &s, 30, 100, &[]), Some(10.0));
        assert_eq!(run("ts_of_max_over_time", &s, 30, 100, &[]), Some(0.0));
        assert_eq!(run("first_over_time", &s, 30, 100, &[]), Some(4.0));
        assert_eq!(run("last_over_time", &s, 30, 100, &[]), Some(2.0));
        assert_eq!(run("ts_of_first_over_time", &s, 30, 100, &[]), Some(0.0));
        assert_eq!(run("ts_of_last_over_time", &s, 30, 100, &[]), Some(30.0));
        assert_eq!(run("present_over_time", &s, 30, 100, &[]), Some(1.0));
        assert_eq!(run("stdvar_over_time", &s, 30, 100, &[]), Some(1.25));
        assert_eq!(
            run("stddev_over_time", &s, 30, 100, &[]),
            Some(1.25f64.sqrt())
        );
        assert_eq!(run("quantile_over_time", &s, 30, 100, &[0.5]), Some(2.5));
        assert_eq!(run("mad_over_time", &s, 30, 100, &[]), Some(1.0));
        assert_eq!(run("avg_over_time", &s, 100, 10, &[]), None);
        // NaN first: max/min take the next non-NaN.
        let n = series(10, &[f64::NAN, 1.0, 3.0]);
        assert_eq!(run("max_over_time", &n, 20, 100, &[]), Some(3.0));
        assert_eq!(run("min_over_time", &n, 20, 100, &[]), Some(1.0));
        assert!(run("mad_over_time", &n, 20, 100, &[]).unwrap().is_nan());
        // Ties: ts_of_max picks the latest maximum, ts_of_min the latest minimum.
        let t = series(10, &[1.0, 5.0, 5.0, 1.0]);
        assert_eq!(run("ts_of_max_over_time", &t, 30, 100, &[]), Some(20.0));
        assert_eq!(run("ts_of_min_over_time", &t, 30, 100, &[]), Some(30.0));
    }

    #[test]
    fn kahan_sum_and_avg_over_time() {
        // functions.test: sum_over_time / avg_over_time of 1, 1e100, 1, -1e100 → 2 and 0.5.
        let s = series(10, &[1.0, 1e100, 1.0, -1e100]);
        assert_eq!(run("sum_over_time", &s, 30, 100, &[]), Some(2.0));
        assert_eq!(run("avg_over_time", &s, 30, 100, &[]), Some(0.5));
        let inf = series(10, &[f64::INFINITY, 1.0]);
        assert_eq!(
            run("sum_over_time", &inf, 10, 100, &[]),
            Some(f64::INFINITY)
        );
    }

    /// Evaluates `name` at `at_ms` over `[range_ms]` for samples `values` every `step_ms`
    /// from time 0, like a conformance `load` + `eval instant`.
    fn conf(name: &str, step_ms: i64, values: &[f64], at_ms: i64, range_ms: i64) -> Option<f64> {
        let s: Vec<(i64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * step_ms, v))
            .collect();
        let inside: Vec<(i64, f64)> = s
            .into_iter()
            .filter(|&(t, _)| t > at_ms - range_ms && t <= at_ms)
            .collect();
        let mut annotations = Vec::new();
        let mut ctx = RangeCtx {
            samples: &inside,
            range_start: at_ms - range_ms,
            range_end: at_ms,
            params: &[],
            annotations: &mut annotations,
        };
        eval(name, &mut ctx)
    }

    fn same(a: Option<f64>, b: f64) -> bool {
        match a {
            Some(a) if a.is_nan() => b.is_nan(),
            Some(a) => a == b || (a - b).abs() / (a.abs() + b.abs()) < 1e-6,
            None => false,
        }
    }

    #[test]
    #[allow(clippy::excessive_precision)] // literals exactly as the conformance script has them
    fn avg_over_time_edge_cases_from_functions_test() {
        let inf = f64::INFINITY;
        let big = 9.988465674311579e307;
        let cases: &[(&[f64], f64, f64)] = &[
            // (values every 10s, avg_over_time at 55s over 1m, sum/count)
            (&[1.0, 2.0, 3.0, 4.0, 5.0], 3.0, 3.0),
            (&[1.0, 2.0, 3.0, 4.0, inf], inf, inf),
            (&[1.0, 2.0, 3.0, 4.0, -inf], -inf, -inf),
            (&[1.0, 2.0, 3.0, inf, -inf], f64::NAN, f64::NAN),
            (&[inf, 0.0, inf], inf, inf),
            (&[inf, inf, inf, -inf], f64::NAN, f64::NAN),
            (&[1.0, 2.0, 3.0, -inf, -inf], -inf, -inf),
            (&[-inf, 0.0, -inf], -inf, -inf),
            (&[-inf, -inf, -inf, inf], f64::NAN, f64::NAN),
            (&[1.0, 2.0, -inf, -inf, inf], f64::NAN, f64::NAN),
            (&[big, big], big, inf),
            (&[-big, -big, -big], -big, -inf),
            (&[-big, big], 0.0, 0.0),
            (&[1.0, 2.0, 3.0, f64::NAN, f64::NAN], f64::NAN, f64::NAN),
        ];
        for (vals, avg, sum_over_count) in cases {
            let a = conf("avg_over_time", 10_000, vals, 55_000, 60_000);
            assert!(same(a, *avg), "avg {vals:?}: {a:?}");
            let s = conf("sum_over_time", 10_000, vals, 55_000, 60_000).unwrap();
            let c = conf("count_over_time", 10_000, vals, 55_000, 60_000).unwrap();
            assert!(same(Some(s / c), *sum_over_count), "sum/count {vals:?}");
        }
        assert_eq!(
            conf(
                "avg_over_time",
                10_000,
                &[1.0, 2.0, 3.0, 4.0, 5.0],
                55_000,
                10_000
            ),
            None
        );
        assert_eq!(
            conf(
                "avg_over_time",
                10_000,
                &[1.0, 2.0, 3.0, 4.0, 5.0],
                55_000,
                20_000
            ),
            Some(5.0)
        );
        assert_eq!(
            conf(
                "avg_over_time",
                10_000,
                &[1.0, 2.0, 3.0, f64::NAN],
                20_000,
                60_000
            ),
            Some(2.0)
        );
    }

    #[test]
    fn avg_over_time_extreme_magnitudes() {
        let cases: &[(&[f64], f64)] = &[
            (&[1e10, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6], 1.6666666666666675e9),
            (
                &[
                    5.30921651659898,
                    0.961118537914768,
                    1.62091361305318,
                    0.865089463758091,
                    0.323055185914577,
                    0.951811357687154,
                ],
                1.67186744582113,
            ),
            (
                &[1.78264e50, 0.76342771, 1.9592258, 7.69805412, 458.90154],
                3.56528e49,
            ),
            (
                &[0.76342771, 1.9592258, 7.69805412, 1.78264e50, 458.90154],
                3.56528e49,
            ),
            (
                &[
                    1.78264e50, 0.76342771, 1.9592258, 2.258e220, 7.69805412, 458.90154,
                ],
                3.76333333333333e219,
            ),
            (
                &[
                    -1.78264e50,
                    0.76342771,
                    1.9592258,
                    2.258e220,
                    7.69805412,
                    -458.90154,
                ],
                3.76333333333333e219,
            ),
            (
                &[
                    -1.78264e50,
                    0.76342771,
                    1.9592258,
                    -2.258e220,
                    7.69805412,
                    -458.90154,
                ],
                -3.76333333333333e219,
            ),
            (
                &[
                    -1.78264e215,
                    0.76342771,
                    1.9592258,
                    2.258e220,
                    7.69805412,
                    -458.90154,
                ],
                3.76330362266667e219,
            ),
            (
                &[
                    -1.78264e215,
                    0.76342771,
                    1.9592258,
                    2.258e220,
                    7.69805412,
                    1.78264e215,
                    -458.90154,
                ],
                3.225714285714286e219,
            ),
            (
                &[
                    -1.78264e219,
                    0.76342771,
                    1.9592258,
                    2.3757689e217,
                    -2.3757689e217,
                    2.258e220,
                    7.69805412,
                    1.78264e219,
                    -458.90154,
                ],
                2.5088888888888888e219,
            ),
            (
                &[
                    -2.258e220,
                    -1.78264e219,
                    0.76342771,
                    1.9592258,
                    2.3757689e217,
                    -2.3757689e217,
                    2.258e220,
                    7.69805412,
                    1.78264e219,
                    -458.90154,
                ],
                0.0,
            ),
        ];
        for (vals, want) in cases {
            let got = conf("avg_over_time", 5_000, vals, 55_000, 60_000);
            assert!(same(got, *want), "{vals:?}: {got:?} != {want}");
        }
        // 52+0x100 every 10s: exact equality at every window length.
        let foo = vec![52.0; 101];
        for r in [100_000, 110_000, 120_000, 130_000] {
            assert_eq!(conf("avg_over_time", 10_000, &foo, 600_000, r), Some(52.0));
        }
        // Dense samples: 1+0x4000 every 1ms.
        let dense = vec![1.0; 4001];
        for r in [1000, 1001, 1002, 1003, 2000, 2001, 3003] {
            assert_eq!(conf("sum_over_time", 1, &dense, 4000, r), Some(r as f64));
        }
    }

    #[test]
    fn variance_mad_ts_of_from_functions_test() {
        let m = [0.0, 8.0, 8.0, 2.0, 3.0];
        assert!(same(
            conf("stdvar_over_time", 10_000, &m, 60_000, 120_000),
            10.56
        ));
        assert!(same(
            conf("stddev_over_time", 10_000, &m, 60_000, 120_000),
            3.249615
        ));
        let c = [1.5990505637277868; 3];
        assert_eq!(
            conf("stdvar_over_time", 10_000, &c, 55_000, 60_000),
            Some(0.0)
        );
        assert_eq!(
            conf("stddev_over_time", 10_000, &c, 55_000, 60_000),
            Some(0.0)
        );
        let m = [4.0, 6.0, 2.0, 1.0, 999.0, 1.0, 2.0];
        assert_eq!(conf("mad_over_time", 10_000, &m, 70_000, 70_000), Some(1.0));
        assert_eq!(
            conf(
                "mad_over_time",
                10_000,
                &[1.0, 2.0, 3.0, 4.0, 5.0],
                40_000,
                50_000
            ),
            Some(1.0)
        );
        assert_eq!(
            conf("mad_over_time", 10_000, &[7.0; 5], 40_000, 50_000),
            Some(0.0)
        );
        assert_eq!(conf("mad_over_time", 10_000, &[5.0], 0, 10_000), Some(0.0));
        assert!(same(
            conf(
                "mad_over_time",
                10_000,
                &[1.0, 2.0, f64::NAN, 4.0],
                30_000,
                40_000
            ),
            f64::NAN
        ));
        let m = [1.0, 2.0, 3.0, 0.0, 5.0, 6.0, 2.0, 1.0, 4.0];
        assert_eq!(
            conf("ts_of_min_over_time", 10_053, &m, 90_000, 90_000),
            Some(30.159)
        );
        assert_eq!(
            conf("ts_of_max_over_time", 10_053, &m, 90_000, 90_000),
            Some(50.265)
        );
    }

    #[test]
    fn rate_family_from_functions_test() {
        let v = |parts: &[(f64, f64, usize)]| -> Vec<f64> {
            parts
                .iter()
                .flat_map(|&(a, b, n)| (0..=n).map(move |i| a + b * i as f64))
                .collect()
        };
        // increase with a reset: 0 1 2 3 2 3 4 → 7.
        assert!(same(
            conf(
                "increase",
                300_000,
                &[0.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0],
                1_800_000,
                1_800_000
            ),
            7.0
        ));
        // rate(testcounter_reset_middle_total[50m]) with 0+27x4 0+27x5 → 0.08.
        let mid = v(&[(0.0, 27.0, 4), (0.0, 27.0, 5)]);
        assert!(same(
            conf("rate", 300_000, &mid, 3_000_000, 3_000_000),
            0.08
        ));
        // Reset at the end of the range: [5m] has one sample, [6m] gives 0.
        let end = {
            let mut e = v(&[(0.0, 10.0, 9)]);
            e.extend([0.0, 10.0]);
            e
        };
        assert_eq!(conf("rate", 300_000, &end, 3_000_000, 300_000), None);
        assert_eq!(conf("rate", 300_000, &end, 3_000_000, 360_000), Some(0.0));
        assert!(same(
            conf(
                "rate",
                300_000,
                &v(&[(0.0, 80.0, 10)]),
                3_000_000,
                3_000_000
            ),
            0.26666666666666666
        ));
        // Zero cutoff: load 4m, n+240x10 for n = 0, 60, …, 300.
        for (start, at10, at50) in [
            (0.0, 0.5, 0.6),
            (60.0, 0.55, 0.6),
            (120.0, 0.6, 0.6),
            (180.0, 0.6, 0.6),
            (240.0, 0.6, 0.6),
            (300.0, 0.6, 0.6),
        ] {
            let s = v(&[(start, 240.0, 10)]);
            assert!(
                same(conf("rate", 240_000, &s, 600_000, 1_200_000), at10),
                "start {start}"
            );
            assert!(
                same(conf("rate", 240_000, &s, 3_000_000, 1_200_000), at50),
                "start {start}"
            );
        }
        // irate / idelta with NaN (range 15m1s, step 5m).
        let nan = [1.0, f64::NAN, f64::NAN, 5.0, 11.0];
        assert!(same(
            conf("irate", 300_000, &nan, 900_000, 901_000),
            f64::NAN
        ));
        assert!(same(conf("irate", 300_000, &nan, 1_200_000, 901_000), 0.02));
        assert!(same(conf("idelta", 300_000, &nan, 1_200_000, 901_000), 6.0));
        let bar = v(&[(0.0, 10.0, 5), (0.0, 10.0, 5)]);
        assert_eq!(
            conf("irate", 300_000, &bar, 1_800_000, 3_000_000),
            Some(0.0)
        );
        // delta over 0 50 100 150 200 and reverse.
        let up = [0.0, 50.0, 100.0, 150.0, 200.0];
        let down = [200.0, 150.0, 100.0, 50.0, 0.0];
        assert!(same(
            conf("delta", 300_000, &up, 1_200_000, 1_200_000),
            200.0
        ));
        assert!(same(
            conf("delta", 300_000, &down, 1_200_000, 1_200_000),
            -200.0
        ));
        // deriv of the reset-middle counter over 100m, predict_linear over 50m.
        let mid10 = v(&[(0.0, 10.0, 4), (0.0, 10.0, 5)]);
        assert!(same(
            conf("deriv", 300_000, &mid10, 3_000_000, 6_000_000),
            0.010606060606060607
        ));
        assert!(same(
            conf(
                "deriv",
                300_000,
                &v(&[(0.0, 80.0, 10)]),
                3_000_000,
                3_000_000
            ),
            0.26666666666666666
        ));
        let inside: Vec<(i64, f64)> = mid10
            .iter()
            .enumerate()
            .map(|(i, &x)| (i as i64 * 300_000, x))
            .filter(|&(t, _)| t > 0)
            .collect();
        let mut annotations = Vec::new();
        let mut ctx = RangeCtx {
            samples: &inside,
            range_start: 0,
            range_end: 3_000_000,
            params: &[3600.0],
            annotations: &mut annotations,
        };
        assert!(same(eval("predict_linear", &mut ctx), 70.0));
        // predict_linear(testcounter_reset_middle_total[55m] @ 3000, 3600) at 10m and 70m:
        // the window ends at 3000s, the intercept is at the evaluation time.
        let inside: Vec<(i64, f64)> = mid10
            .iter()
            .enumerate()
            .map(|(i, &x)| (i as i64 * 300_000, x))
            .filter(|&(t, _)| t > 3_000_000 - 3_300_000 && t <= 3_000_000)
            .collect();
        for (eval_time, want) in [
            (3_000_000, 76.81818181818181),
            (600_000, 51.36363636363637),
            (4_200_000, 89.54545454545455),
        ] {
            let mut ctx = RangeCtx {
                samples: &inside,
                range_start: 3_000_000 - 3_300_000,
                range_end: 3_000_000,
                params: &[3600.0],
                annotations: &mut annotations,
            };
            assert!(
                same(eval_at("predict_linear", &mut ctx, eval_time), want),
                "{eval_time}"
            );
        }
        // deriv with ±Inf: NaN.
        let mut inf = vec![f64::NEG_INFINITY];
        inf.extend(v(&[(0.0, 80.0, 10)]));
        inf.push(f64::INFINITY);
        assert!(same(
            conf("deriv", 300_000, &inf, 6_000_000, 6_000_000),
            f64::NAN
        ));
    }

    #[test]
    fn double_exponential_smoothing_from_functions_test() {
        let v = |parts: &[(f64, f64, usize)]| -> Vec<f64> {
            parts
                .iter()
                .flat_map(|&(a, b, n)| (0..=n).map(move |i| a + b * i as f64))
                .collect()
        };
        let cases = [
            (v(&[(0.0, 10.0, 1000), (100.0, 30.0, 1000)]), 8000.0),
            (v(&[(0.0, 20.0, 1000), (200.0, 30.0, 1000)]), 16000.0),
            (v(&[(0.0, 30.0, 1000), (300.0, 80.0, 1000)]), 24000.0),
            (v(&[(0.0, 40.0, 2000)]), 32000.0),
            (v(&[(8000.0, -10.0, 1000)]), 0.0),
            (v(&[(0.0, -20.0, 1000)]), -16000.0),
            (v(&[(0.0, -40.0, 1000), (0.0, 40.0, 1000)]), -32000.0),
        ];
        for (vals, want) in cases {
            let s: Vec<(i64, f64)> = vals
                .iter()
                .enumerate()
                .map(|(i, &x)| (i as i64 * 10_000, x))
                .collect();
            let inside: Vec<(i64, f64)> = s
                .into_iter()
                .filter(|&(t, _)| t > 8_000_000 - 60_000 && t <= 8_000_000)
                .collect();
            let mut annotations = Vec::new();
            let mut ctx = RangeCtx {
                samples: &inside,
                range_start: 8_000_000 - 60_000,
                range_end: 8_000_000,
                params: &[0.01, 0.1],
                annotations: &mut annotations,
            };
            assert!(
                same(eval("double_exponential_smoothing", &mut ctx), want),
                "{want}"
            );
        }
    }

    /// Samples from slots every minute (`None` = no sample) with start-time offsets in ms
    /// (`None` = no start timestamp), evaluated like start_timestamps.test.
    fn st_eval(
        name: &str,
        vals: &[Option<f64>],
        offsets: &[Option<i64>],
        at_ms: i64,
        range_ms: i64,
    ) -> (Option<f64>, Vec<Annotation>) {
        let mut samples = Vec::new();
        let mut sts = Vec::new();
        for (i, v) in vals.iter().enumerate() {
            let t = i as i64 * 60_000;
            if let Some(v) = v {
                if t > at_ms - range_ms && t <= at_ms {
                    samples.push((t, *v));
                    sts.push(offsets.get(i).copied().flatten().map_or(0, |o| t + o));
                }
            }
        }
        let mut annotations = Vec::new();
        let mut ctx = RangeCtx {
            samples: &samples,
            range_start: at_ms - range_ms,
            range_end: at_ms,
            params: &[],
            annotations: &mut annotations,
        };
        let r = eval_with_start_timestamps(name, &mut ctx, &sts, "m");
        (r, annotations)
    }

    #[test]
    fn start_timestamps_cumulative_resets() {
        // cumulative{type="st_resets"}: _ _ 0+60x14 with offsets
        // -30s-1mx2 -1m-1mx2 -59999ms-1mx2 -1s-1mx2 -1ms-1mx2.
        let mut vals = vec![None, None];
        vals.extend((0..15).map(|i| Some(60.0 * i as f64)));
        let mut offs = vec![None, None];
        for base in [-30_000, -60_000, -59_999, -1_000, -1] {
            for k in 0..3 {
                offs.push(Some(base - 60_000 * k));
            }
        }
        let increase = [
            420.0, 780.0, 675.0, 675.0, 1275.0, 1080.0, 900.0, 1725.0, 1440.0,
        ];
        let rate = [1.40, 2.60, 2.25, 2.25, 4.25, 3.60, 3.00, 5.75, 4.8];
        let irate = [1.0, 6.0, 1.0, 1.0, 9.0, 1.0, 1.0, 12.0, 1.0];
        let resets = [1.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 1.0];
        for (k, at_min) in (7..=15).enumerate() {
            let at = at_min * 60_000;
            let got = st_eval("increase", &vals, &offs, at, 300_000).0;
            assert!(same(got, increase[k]), "increase at {at_min}m: {got:?}");
            assert!(
                same(st_eval("rate", &vals, &offs, at, 300_000).0, rate[k]),
                "rate {at_min}m"
            );
            assert!(
                same(st_eval("irate", &vals, &offs, at, 300_000).0, irate[k]),
                "irate {at_min}m"
            );
            assert_eq!(
                st_eval("resets", &vals, &offs, at, 300_000).0,
                Some(resets[k])
            );
            // Without start timestamps it is a plain counter.
            let none = vec![None; offs.len()];
            assert!(same(
                st_eval("increase", &vals, &none, at, 300_000).0,
                300.0
            ));
            assert_eq!(st_eval("resets", &vals, &none, at, 300_000).0, Some(0.0));
        }
    }

    #[test]
    fn start_timestamps_deltas() {
        // delta series: _ _ 60x15 with offsets per type; increase over [5m] at 10m..15m.
        let mut vals = vec![None, None];
        vals.extend(std::iter::repeat_n(Some(60.0), 16));
        for (off, want_inc, want_rate, want_irate) in [
            (None, 0.0, 0.0, 0.0),
            (Some(-60_000), 300.0, 1.0, 1.0),
            (Some(-59_999), 300.0, 1.0, 1.0),
            (Some(-1), 300.0, 1.0, 1.0),
            (Some(0), 0.0, 0.0, 0.0),
        ] {
            let mut offs = vec![None, None];
            offs.extend(std::iter::repeat_n(off, 16));
            for at_min in 10..=15 {
                let at = at_min * 60_000;
                assert!(
                    same(st_eval("increase", &vals, &offs, at, 300_000).0, want_inc),
                    "{off:?}"
                );
                assert!(
                    same(st_eval("rate", &vals, &offs, at, 300_000).0, want_rate),
                    "{off:?}"
                );
                assert!(
                    same(st_eval("irate", &vals, &offs, at, 300_000).0, want_irate),
                    "{off:?}"
                );
            }
        }
    }

    #[test]
    fn start_timestamps_left_zero_point() {
        let v5 = |xs: &[Option<f64>]| -> Vec<Option<f64>> { xs.to_vec() };
        let s = |x: f64| Some(x);
        let full = v5(&[None, None, s(1.0), s(2.0), s(3.0), s(4.0), s(5.0)]);
        let short = v5(&[None, None, s(1.0), s(2.0), s(3.0), s(4.0), None]);
        let lim = v5(&[None, None, None, s(2.0), s(3.0), None, None]);
        let single = v5(&[None, None, None, None, s(3.0), None, None]);
        let offs = |base: Option<i64>, from: usize, n: usize| -> Vec<Option<i64>> {
            let mut o = vec![None; 7];
            for k in 0..n {
                o[from + k] = base.map(|b| b - 60_000 * k as i64);
            }
            o
        };
        type Case<'a> = (&'a Vec<Option<f64>>, Vec<Option<i64>>, Option<f64>);
        let cases: Vec<Case> = vec![
            (&full, offs(None, 2, 5), Some(5.0)),
            (&full, offs(Some(-60_000), 2, 5), Some(5.0)),
            (&full, offs(Some(-30_000), 2, 5), Some(5.0)),
            (&full, offs(Some(0), 2, 5), Some(5.0)),
            (&full, offs(Some(1), 2, 5), Some(6.0)),
            (&short, offs(None, 2, 4), Some(5.0)),
            (&short, offs(Some(-60_000), 2, 4), Some(5.0)),
            (&short, offs(Some(-30_000), 2, 4), Some(5.142857142857143)),
            (&short, offs(Some(0), 2, 4), Some(5.0)),
            (&short, offs(Some(1), 2, 4), Some(6.333333333333333)),
            (&lim, offs(None, 3, 2), Some(2.0)),
            (&lim, offs(Some(-120_000), 3, 2), Some(2.0)),
            (&lim, offs(Some(-90_000), 3, 2), Some(3.6)),
            (&lim, offs(Some(0), 3, 2), Some(2.0)),
            (&lim, offs(Some(1), 3, 2), Some(6.0)),
            (&single, offs(None, 4, 1), None),
            (&single, offs(Some(-180_000), 4, 1), None),
            (&single, offs(Some(-150_000), 4, 1), Some(3.0)),
            (&single, offs(Some(0), 4, 1), None),
            (&single, offs(Some(1), 4, 1), None),
        ];
        for (vals, o, want) in cases {
            let got = st_eval("increase", vals, &o, 360_000, 300_000).0;
            match want {
                None => assert_eq!(got, None, "{o:?}"),
                Some(w) => assert!(same(got, w), "{o:?}: {got:?} != {w}"),
            }
        }
        // Resets before and between samples: @st _ _ -1m -1s; values _ _ 5 5 2 → 16.
        let vals = vec![None, None, s(5.0), s(5.0), s(2.0), None];
        let o = vec![None, None, Some(-60_000), Some(-1_000), None, None];
        assert!(same(
            st_eval("increase", &vals, &o, 300_000, 300_000).0,
            16.0
        ));
    }

    #[test]
    fn start_timestamps_unknown_start_and_overlap() {
        let s = |x: f64| Some(x);
        let vals = vec![None, None, s(1.0), s(1.0)];
        for (o, want) in [
            (vec![None, None, None, Some(-60_000)], 0.0),
            (vec![None, None, Some(0), Some(-60_000)], 0.0),
            (vec![None, None, Some(-60_000), Some(-60_000)], 1.0),
            (vec![None, None, Some(60_000), Some(-60_000)], 0.0),
        ] {
            let got = st_eval("increase", &vals, &o, 180_000, 60_001)
                .0
                .map(f64::round);
            assert_eq!(got, Some(want), "{o:?}");
        }
        // A start time reaching back before the previous sample warns once.
        let vals = vec![s(1.0), s(2.0), s(3.0), s(4.0)];
        let o = vec![Some(-1_000), Some(-90_000), Some(-90_000), Some(-1_000)];
        let (_, annos) = st_eval("rate", &vals, &o, 180_000, 240_000);
        assert_eq!(
            annos,
            vec![Annotation::StartTimeOverlap {
                metric_name: "m".into()
            }]
        );
    }

    #[test]
    fn quantile_over_time_warns_on_bad_q() {
        let s = series(10, &[1.0, 2.0]);
        let mut annotations = Vec::new();
        let mut ctx = RangeCtx {
            samples: &s,
            range_start: -1,
            range_end: 10_000,
            params: &[1.5],
            annotations: &mut annotations,
        };
        assert_eq!(eval("quantile_over_time", &mut ctx), Some(f64::INFINITY));
        assert_eq!(annotations, vec![Annotation::InvalidQuantile { q: 1.5 }]);
    }

    #[test]
    fn double_exponential_smoothing_values() {
        // Hand-computed: values 1, 2, 4 with sf = 0.5, tf = 0.5.
        // s1=1, b=1; i=1: s1 = 0.5*2 + 0.5*(1+1) = 2; i=2: b = 0.5*(2-1)+0.5*1 = 1,
        // s1 = 0.5*4 + 0.5*(2+1) = 3.5.
        let s = series(10, &[1.0, 2.0, 4.0]);
        assert_eq!(
            run("double_exponential_smoothing", &s, 20, 100, &[0.5, 0.5]),
            Some(3.5)
        );
        assert_eq!(
            run("double_exponential_smoothing", &s[..1], 0, 100, &[0.5, 0.5]),
            None
        );
        assert_eq!(
            run("double_exponential_smoothing", &s, 20, 100, &[1.0, 0.5]),
            None
        );
        assert_eq!(
            check_params("double_exponential_smoothing", &[1.0, 0.5]).unwrap_err(),
            "invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000"
        );
        assert_eq!(
            check_params("double_exponential_smoothing", &[0.5, 0.0]).unwrap_err(),
            "invalid trend factor. Expected: 0 < tf < 1, got: 0.000000"
        );
        assert!(check_params("rate", &[]).is_ok());
    }

    #[test]
    fn every_listed_name_resolves() {
        for name in RANGE_FUNCTIONS {
            assert!(is_range_function(name), "{name}");
        }
        assert!(!is_range_function("absent_over_time"));
        assert!(!is_range_function("abs"));
    }

    #[test]
    fn non_counter_info() {
        assert_eq!(possible_non_counter("http_requests_total"), None);
        assert_eq!(possible_non_counter(""), None);
        assert_eq!(
            possible_non_counter("foo").map(|a| a.to_string()),
            Some("PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"foo\"".to_string())
        );
    }
}
