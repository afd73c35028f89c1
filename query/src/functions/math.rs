//! Element-wise math functions of instant vectors: `abs`, `ceil`, `floor`, `exp`, `ln`,
//! `log2`, `log10`, `sqrt`, `sgn`, `round`, `clamp`, `clamp_min`, `clamp_max`, the
//! trigonometric and hyperbolic functions, `deg`, `rad`, and the scalar functions `pi`,
//! `max_of`, `min_of`.
//!
//! The engine applies [`eval`] to each float sample (histogram samples are skipped by these
//! functions in Prometheus) and drops the metric name of the result.

/// Whether `name` is a function this module computes.
pub fn is_math_function(name: &str) -> bool {
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
            | "pi"
            | "max_of"
            | "min_of"
    )
}

/// Whether the function produces any output with these scalar parameters: `clamp(v, min,
/// max)` with `max < min` returns an empty vector in Prometheus. Every other function
/// always produces one output per float input.
pub fn has_output(name: &str, params: &[f64]) -> bool {
    match (name, params) {
        ("clamp", [min, max, ..]) => max.partial_cmp(min) != Some(std::cmp::Ordering::Less),
        _ => true,
    }
}

/// Computes function `name` of sample value `v`. `params` are the scalar arguments after the
/// vector, in call order: `round(v, to_nearest)` (default 1), `clamp(v, min, max)`,
/// `clamp_min(v, min)`, `clamp_max(v, max)`. `pi` ignores `v`; `max_of(a, b)` and
/// `min_of(a, b)` take `a` as `v` and `b` as `params[0]`.
///
/// Unknown names return NaN. For `clamp` with `max < min`, where Prometheus outputs nothing,
/// this returns NaN; check [`has_output`] first.
pub fn eval(name: &str, v: f64, params: &[f64]) -> f64 {
    let p = |i: usize, default: f64| params.get(i).copied().unwrap_or(default);
    match name {
        "abs" => v.abs(),
        "ceil" => v.ceil(),
        "floor" => v.floor(),
        "exp" => v.exp(),
        "ln" => v.ln(),
        "log2" => v.log2(),
        "log10" => v.log10(),
        "sqrt" => v.sqrt(),
        "sgn" => {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v // keeps 0, -0 and NaN
            }
        }
        "round" => round(v, p(0, 1.0)),
        "clamp" => {
            let (min, max) = (p(0, f64::NEG_INFINITY), p(1, f64::INFINITY));
            if max < min {
                f64::NAN
            } else {
                go_max(min, go_min(max, v))
            }
        }
        "clamp_min" => go_max(p(0, f64::NEG_INFINITY), go_min(f64::INFINITY, v)),
        "clamp_max" => go_max(f64::NEG_INFINITY, go_min(p(0, f64::INFINITY), v)),
        "sin" => v.sin(),
        "cos" => v.cos(),
        "tan" => v.tan(),
        "asin" => v.asin(),
        "acos" => v.acos(),
        "atan" => v.atan(),
        "sinh" => v.sinh(),
        "cosh" => v.cosh(),
        "tanh" => v.tanh(),
        "asinh" => v.asinh(),
        "acosh" => v.acosh(),
        "atanh" => v.atanh(),
        "deg" => v * 180.0 / std::f64::consts::PI,
        "rad" => v * std::f64::consts::PI / 180.0,
        "pi" => std::f64::consts::PI,
        "max_of" => go_max(v, p(0, f64::NAN)),
        "min_of" => go_min(v, p(0, f64::NAN)),
        _ => f64::NAN,
    }
}

/// `round(v, to_nearest)`: rounds to the nearest multiple of `to_nearest`, ties up, computed
/// through the inverse of `to_nearest` as Prometheus does (fewer precision surprises).
pub fn round(v: f64, to_nearest: f64) -> f64 {
    let inv = 1.0 / to_nearest;
    (v * inv + 0.5).floor() / inv
}

/// Go's `math.Max`: NaN if either is NaN, `+0` beats `-0`.
pub fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() {
            b
        } else {
            a
        }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`: NaN if either is NaN, `-0` beats `+0`.
pub fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() {
            a
        } else {
            b
        }
    } else if a < b {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_functions() {
        assert_eq!(eval("abs", -2.5, &[]), 2.5);
        assert_eq!(eval("ceil", 1.2, &[]), 2.0);
        assert_eq!(eval("floor", -1.2, &[]), -2.0);
        assert_eq!(eval("sqrt", 16.0, &[]), 4.0);
        assert_eq!(eval("log2", 8.0, &[]), 3.0);
        assert_eq!(eval("log10", 1000.0, &[]), 3.0);
        assert_eq!(eval("ln", 1.0, &[]), 0.0);
        assert!(eval("ln", -1.0, &[]).is_nan());
        assert_eq!(eval("exp", 0.0, &[]), 1.0);
        assert_eq!(eval("sgn", -3.0, &[]), -1.0);
        assert_eq!(eval("sgn", 3.0, &[]), 1.0);
        assert_eq!(eval("sgn", 0.0, &[]), 0.0);
        assert!(eval("sgn", f64::NAN, &[]).is_nan());
        assert_eq!(eval("deg", std::f64::consts::PI, &[]), 180.0);
        assert_eq!(eval("rad", 180.0, &[]), std::f64::consts::PI);
        assert_eq!(eval("pi", 0.0, &[]), std::f64::consts::PI);
        assert!(eval("acosh", 0.5, &[]).is_nan());
        assert_eq!(eval("atanh", 1.0, &[]), f64::INFINITY);
        assert!(eval("nope", 1.0, &[]).is_nan());
    }

    #[test]
    fn round_matches_functions_test() {
        // functions.test: round(0.004, 0.01) etc.
        assert_eq!(eval("round", 0.5, &[]), 1.0);
        assert_eq!(eval("round", -0.5, &[]), 0.0);
        assert_eq!(eval("round", 2.5, &[]), 3.0);
        assert_eq!(eval("round", 1.23456, &[0.01]), 1.23);
        assert_eq!(eval("round", 12345.0, &[100.0]), 12300.0);
        assert_eq!(eval("round", 5.0, &[10.0]), 10.0);
        assert!(eval("round", f64::NAN, &[]).is_nan());
    }

    #[test]
    fn clamp_family() {
        // functions.test: clamp(test_clamp, -25, 75) over -50, 0, 100.
        assert_eq!(eval("clamp", -50.0, &[-25.0, 75.0]), -25.0);
        assert_eq!(eval("clamp", 0.0, &[-25.0, 75.0]), 0.0);
        assert_eq!(eval("clamp", 100.0, &[-25.0, 75.0]), 75.0);
        assert!(!has_output("clamp", &[5.0, -5.0]));
        assert!(has_output("clamp", &[5.0, 5.0]));
        assert_eq!(eval("clamp", 100.0, &[5.0, 5.0]), 5.0);
        assert!(eval("clamp", 100.0, &[f64::NAN, 5.0]).is_nan());
        assert!(has_output("clamp", &[f64::NAN, 5.0]));
        assert_eq!(eval("clamp_max", 100.0, &[75.0]), 75.0);
        assert_eq!(eval("clamp_min", -50.0, &[-25.0]), -25.0);
        assert!(eval("clamp_min", 1.0, &[f64::NAN]).is_nan());
        assert_eq!(eval("max_of", 1.0, &[2.0]), 2.0);
        assert_eq!(eval("min_of", 1.0, &[2.0]), 1.0);
    }
}
