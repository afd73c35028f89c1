//! The seam between the evaluator and the function library in [`crate::functions`]: every
//! numeric function the engine needs goes through here, so the library's API can change in
//! one place.

use crate::annotations::Annotations;

/// A range function (`rate`, `*_over_time`, …) over the samples in `(range_start, range_end]`;
/// `None` means "no output for this step".
pub(crate) fn range_eval(
    name: &str,
    samples: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    params: &[f64],
    annos: &mut Annotations,
) -> Option<f64> {
    let _ = (name, samples, range_start, range_end, params, annos);
    None
}

/// Whether `name` is a range function the library knows.
pub(crate) fn is_range_function(name: &str) -> bool {
    name.ends_with("_over_time")
        || matches!(
            name,
            "rate"
                | "increase"
                | "delta"
                | "irate"
                | "idelta"
                | "deriv"
                | "predict_linear"
                | "changes"
                | "resets"
                | "double_exponential_smoothing"
                | "holt_winters"
        )
}

/// Element-wise math; `None` when the function yields no output for these parameters.
pub(crate) fn math_eval(name: &str, v: f64, params: &[f64]) -> Option<f64> {
    let _ = (name, v, params);
    None
}

/// Whether `name` is an element-wise math function.
pub(crate) fn is_math_function(name: &str) -> bool {
    matches!(
        name,
        "abs"
            | "ceil"
            | "floor"
            | "exp"
            | "ln"
            | "log2"
            | "log10"
            | "sqrt"
            | "sgn"
            | "round"
            | "clamp"
            | "clamp_min"
            | "clamp_max"
            | "sin"
            | "cos"
            | "tan"
            | "asin"
            | "acos"
            | "atan"
            | "sinh"
            | "cosh"
            | "tanh"
            | "asinh"
            | "acosh"
            | "atanh"
            | "deg"
            | "rad"
    )
}

/// Calendar function of Unix seconds.
pub(crate) fn time_eval(name: &str, secs: f64) -> f64 {
    let _ = (name, secs);
    f64::NAN
}

/// Whether `name` is a calendar function.
pub(crate) fn is_time_function(name: &str) -> bool {
    matches!(
        name,
        "day_of_month"
            | "day_of_week"
            | "day_of_year"
            | "days_in_month"
            | "hour"
            | "minute"
            | "month"
            | "year"
    )
}

/// Quantile over classic buckets `(upper bound, cumulative count)`; also says whether the
/// counts had to be fixed for monotonicity.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> (f64, bool) {
    let _ = (q, buckets);
    (f64::NAN, false)
}

/// Fraction of observations between `lower` and `upper` over classic buckets.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut [(f64, f64)]) -> f64 {
    let _ = (lower, upper, buckets);
    f64::NAN
}
