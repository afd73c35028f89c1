//! The seam between the evaluator and the function library in [`crate::functions`]: every
//! numeric function the engine needs goes through here, so the library's API can change in
//! one place.

use crate::annotations::Annotations;
use crate::functions::{self, Annotation};

/// Adds library annotations to the query's annotations (texts without position).
pub(crate) fn add_annotations(annos: &mut Annotations, list: Vec<Annotation>) {
    for a in list {
        annos.add_full(a.to_string());
    }
}

/// A range function (`rate`, `*_over_time`, …) over the samples in `(range_start, range_end]`
/// of a series with start timestamps `sts` (parallel to `samples`, 0 where
/// unknown).
#[allow(clippy::too_many_arguments)]
pub(crate) fn range_eval_st(
    name: &str,
    samples: &[(i64, f64)],
    sts: &[i64],
    range_start: i64,
    range_end: i64,
    params: &[f64],
    annos: &mut Vec<Annotation>,
    metric_name: &str,
) -> Option<f64> {
    let mut ctx = functions::range::RangeCtx {
        samples,
        range_start,
        range_end,
        params,
        annotations: annos,
    };
    functions::range::eval_with_start_timestamps(name, &mut ctx, sts, metric_name)
}

/// Checks the parameters of a range function (e.g. smoothing factors), with Prometheus's
/// error text.
pub(crate) fn range_check_params(name: &str, params: &[f64]) -> Result<(), String> {
    functions::range::check_params(name, params)
}

/// Element-wise math; `None` when the function yields no output for these parameters.
pub(crate) fn math_eval(name: &str, v: f64, params: &[f64]) -> Option<f64> {
    if !functions::math::has_output(name, params) {
        return None;
    }
    Some(functions::math::eval(name, v, params))
}

/// Whether `name` is an element-wise math function.
pub(crate) fn is_math_function(name: &str) -> bool {
    functions::math::is_math_function(name) && name != "pi"
}

/// Calendar function of Unix seconds.
pub(crate) fn time_eval(name: &str, secs: f64) -> f64 {
    functions::time::eval(name, secs)
}

/// Whether `name` is a calendar function.
pub(crate) fn is_time_function(name: &str) -> bool {
    functions::time::is_time_function(name)
}

/// Parses an `le` label value.
pub(crate) fn parse_le(s: &str) -> Option<f64> {
    functions::histogram::parse_le(s)
}

/// Quantile over classic buckets `(upper bound, cumulative count)`.
pub(crate) fn bucket_quantile(
    q: f64,
    buckets: &mut Vec<functions::histogram::Bucket>,
) -> functions::histogram::QuantileResult {
    functions::histogram::bucket_quantile(q, buckets)
}

/// Fraction of observations between `lower` and `upper` over classic buckets.
pub(crate) fn bucket_fraction(
    lower: f64,
    upper: f64,
    buckets: &mut Vec<functions::histogram::Bucket>,
) -> f64 {
    functions::histogram::bucket_fraction(lower, upper, buckets)
}
