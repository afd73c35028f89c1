//! Go's float formatting (`%g`, `%.Ng`, `strconv.FormatFloat(f, 'g', -1, 64)`), needed to
//! render annotation texts and label values byte for byte as Prometheus does.

/// Formats `f` like Go's `fmt.Sprintf("%g", f)`: the shortest decimal that round-trips, in
/// exponent form (`1e+06`, `1.5e-05`) when the decimal exponent is < -4 or >= 6. `NaN`,
/// `+Inf` and `-Inf` are spelled as Go spells them.
pub fn format_g(f: f64) -> String {
    format_go(f, None)
}

/// Formats `f` like Go's `fmt.Sprintf("%.{prec}g", f)`: rounded to `prec` significant digits
/// (at least 1), trailing zeros dropped, exponent form when the exponent is < -4 or >= `prec`.
pub fn format_g_prec(f: f64, prec: usize) -> String {
    format_go(f, Some(prec.max(1)))
}

/// Formats `f` like Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits,
/// never in exponent form.
pub fn format_f(f: f64) -> String {
    if let Some(s) = special(f) {
        return s;
    }
    // Rust's Display for f64 is the shortest round-trip form without exponent.
    let s = format!("{f}");
    if s == "-0" {
        return "-0".to_string();
    }
    s
}

/// Prometheus's `FormatOpenMetricsFloat`: like [`format_g`] but with `.0` appended when the
/// text has neither `.` nor `e` (`1` → `"1.0"`, `0.25` → `"0.25"`), as used for the quantile
/// label of `histogram_quantiles`.
pub fn format_openmetrics_float(f: f64) -> String {
    if f == 0.0 {
        return "0.0".to_string(); // also for -0, as Prometheus does
    }
    let s = format_g(f);
    if f.is_nan() || f.is_infinite() || s.contains(['.', 'e']) {
        s
    } else {
        s + ".0"
    }
}

fn special(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("NaN".into())
    } else if f == f64::INFINITY {
        Some("+Inf".into())
    } else if f == f64::NEG_INFINITY {
        Some("-Inf".into())
    } else {
        None
    }
}

/// Decimal digits (no trailing zeros, at least one digit) and the decimal point position:
/// the value is `0.d1d2d3… × 10^dp`.
fn digits(f: f64, prec: Option<usize>) -> (String, i32) {
    let s = match prec {
        None => format!("{:e}", f.abs()),
        Some(p) => format!("{:.*e}", p - 1, f.abs()),
    };
    // s looks like "1.2345e-7" or "5e3".
    let (mant, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: String = mant.chars().filter(|c| *c != '.').collect();
    while d.len() > 1 && d.ends_with('0') {
        d.pop();
    }
    if d == "0" {
        // zero: Go uses nd = 0, dp = 0; we keep "0" with dp = 1 for formatting.
        return (d, 1);
    }
    (d, exp + 1)
}

fn format_go(f: f64, prec: Option<usize>) -> String {
    if let Some(s) = special(f) {
        return s;
    }
    let neg = f.is_sign_negative();
    let (d, dp) = digits(f, prec);
    let is_zero = d == "0";
    let nd = if is_zero { 0 } else { d.len() as i32 };
    let shortest = prec.is_none();
    let mut p: i32 = match prec {
        None => nd.max(1),
        Some(p) => p as i32,
    };
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = if is_zero { 0 } else { dp - 1 };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        // %e with p-1 digits after the point
        let frac = (p - 1).max(0) as usize;
        out.push_str(&d[..1]);
        if frac > 0 {
            out.push('.');
            let rest = &d[1..];
            out.push_str(&rest[..frac.min(rest.len())]);
            for _ in rest.len()..frac {
                out.push('0');
            }
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&e.to_string());
        return out;
    }
    if p > dp {
        p = nd;
    }
    let frac = (p - dp).max(0) as usize;
    // integer part
    let digit = |i: i32| -> char {
        if i >= 0 && (i as usize) < d.len() && !is_zero {
            d.as_bytes()[i as usize] as char
        } else {
            '0'
        }
    };
    if dp > 0 {
        for i in 0..dp {
            out.push(digit(i));
        }
    } else {
        out.push('0');
    }
    if frac > 0 {
        out.push('.');
        for i in 0..frac as i32 {
            out.push(digit(dp + i));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_g_matches_go() {
        assert_eq!(format_g(0.0), "0");
        assert_eq!(format_g(-0.0), "-0");
        assert_eq!(format_g(1.0), "1");
        assert_eq!(format_g(-1.5), "-1.5");
        assert_eq!(format_g(100000.0), "100000");
        assert_eq!(format_g(1e6), "1e+06");
        assert_eq!(format_g(1234567.0), "1.234567e+06");
        assert_eq!(format_g(0.0001), "0.0001");
        assert_eq!(format_g(0.00001), "1e-05");
        assert_eq!(format_g(1.5e-7), "1.5e-07");
        assert_eq!(format_g(1e100), "1e+100");
        assert_eq!(format_g(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_g(f64::NAN), "NaN");
        assert_eq!(format_g(f64::INFINITY), "+Inf");
        assert_eq!(format_g(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_g(123.456), "123.456");
    }

    #[test]
    fn precision_g_matches_go() {
        assert_eq!(format_g_prec(0.5, 2), "0.5");
        assert_eq!(format_g_prec(10.0, 2), "10");
        assert_eq!(format_g_prec(100.0, 2), "1e+02");
        assert_eq!(format_g_prec(0.123, 2), "0.12");
        assert_eq!(format_g_prec(0.0, 2), "0");
        assert_eq!(format_g_prec(1.0, 2), "1");
        assert_eq!(format_g_prec(12.5, 2), "12");
        assert_eq!(format_g_prec(13.5, 2), "14");
        assert_eq!(format_g_prec(0.00001234, 2), "1.2e-05");
    }

    #[test]
    fn openmetrics_float() {
        assert_eq!(format_openmetrics_float(0.0), "0.0");
        assert_eq!(format_openmetrics_float(-0.0), "0.0");
        assert_eq!(format_openmetrics_float(1.0), "1.0");
        assert_eq!(format_openmetrics_float(-1.0), "-1.0");
        assert_eq!(format_openmetrics_float(0.25), "0.25");
        assert_eq!(format_openmetrics_float(1e6), "1e+06");
        assert_eq!(format_openmetrics_float(100.0), "100.0");
        assert_eq!(format_openmetrics_float(f64::INFINITY), "+Inf");
        assert_eq!(format_openmetrics_float(f64::NAN), "NaN");
    }

    #[test]
    fn f_format() {
        assert_eq!(format_f(1e21), "1000000000000000000000");
        assert_eq!(format_f(0.5), "0.5");
        assert_eq!(format_f(f64::NAN), "NaN");
    }
}
