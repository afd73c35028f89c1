//! Go-compatible float formatting, byte for byte what Prometheus prints.
//!
//! promtool's `tsdb dump`, the federation/text format and annotation texts use `%g`
//! (`strconv.FormatFloat(v, 'g', -1, 64)`); the HTTP API uses `'f', -1`; templates and some
//! annotations use `%.Ng`; the quantile label of `histogram_quantiles` uses
//! `FormatOpenMetricsFloat`. The shortest forms take the shortest round-trip digits from Rust's
//! `{:e}` and only re-lay them out:
//!
//! * `'g'` (shortest): scientific notation when the decimal exponent is `< -4` or `>= 6`
//!   (`1e+06`, `1.5e-05`, at least two exponent digits, explicit sign), plain decimal otherwise.
//! * `'f'` (shortest): always plain decimal (`1000000`, `0.000015`).
//!
//! Special values print as `NaN`, `+Inf`, `-Inf`; negative zero prints as `-0`.

use std::fmt;
use std::io::Write as _;

/// The shortest round-trip decimal digits of a finite, non-negative `v`, written into `buf`,
/// and the decimal exponent `e` such that `v = d.ddd × 10^e`. Returns `(ndigits, e)`; the
/// digits are in `buf[..ndigits]` without a decimal point.
fn shortest_digits(v: f64, buf: &mut [u8; 40]) -> (usize, i32) {
    let mut tmp = [0u8; 40];
    let mut cur = std::io::Cursor::new(&mut tmp[..]);
    // `{:e}` on f64 yields the shortest round-trip digits: "1.2345e3", "5e-324", "0e0".
    // The buffer is large enough for any f64 (at most 17 digits plus "e-324").
    let _ = write!(cur, "{v:e}");
    let len = cur.position() as usize;
    let s = &tmp[..len];
    let epos = s.iter().position(|&b| b == b'e').unwrap_or(len);
    let mut n = 0;
    for &b in &s[..epos] {
        if b.is_ascii_digit() {
            buf[n] = b;
            n += 1;
        }
    }
    let mut exp: i32 = 0;
    let mut neg = false;
    for &b in s.get(epos + 1..).unwrap_or(&[]) {
        match b {
            b'-' => neg = true,
            b'0'..=b'9' => exp = exp * 10 + i32::from(b - b'0'),
            _ => {}
        }
    }
    if neg {
        exp = -exp;
    }
    (n, exp)
}

/// Appends the special-value form of `v` (NaN, ±Inf) and returns true, or returns false.
fn push_special(out: &mut Vec<u8>, v: f64) -> bool {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v == f64::INFINITY {
        out.extend_from_slice(b"+Inf");
    } else if v == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Inf");
    } else {
        return false;
    }
    true
}

/// Appends digits laid out as a plain decimal: `digits × 10^(dp - n)` with the point after
/// `dp` digits.
fn push_plain(out: &mut Vec<u8>, digits: &[u8], dp: i32) {
    let n = digits.len() as i32;
    if dp <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-dp) as usize));
        out.extend_from_slice(digits);
    } else if dp >= n {
        out.extend_from_slice(digits);
        out.extend(std::iter::repeat_n(b'0', (dp - n) as usize));
    } else {
        out.extend_from_slice(&digits[..dp as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[dp as usize..]);
    }
}

/// Appends `v` formatted as Go's `strconv.FormatFloat(v, 'g', -1, 64)` / `fmt` `%g`.
pub fn append_g(out: &mut Vec<u8>, v: f64) {
    if push_special(out, v) {
        return;
    }
    if v.is_sign_negative() {
        out.push(b'-');
    }
    let mut buf = [0u8; 40];
    let (n, exp) = shortest_digits(v.abs(), &mut buf);
    let digits = &buf[..n];
    if !(-4..6).contains(&exp) {
        out.push(digits[0]);
        if n > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push(b'0');
        }
        let _ = write!(out, "{a}");
    } else {
        push_plain(out, digits, exp + 1);
    }
}

/// Appends `v` formatted as Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub fn append_f(out: &mut Vec<u8>, v: f64) {
    if push_special(out, v) {
        return;
    }
    if v.is_sign_negative() {
        out.push(b'-');
    }
    let mut buf = [0u8; 40];
    let (n, exp) = shortest_digits(v.abs(), &mut buf);
    let digits = &buf[..n];
    if digits == b"0" {
        out.push(b'0');
        return;
    }
    push_plain(out, digits, exp + 1);
}

/// `v` as Go's `%g` (see [`append_g`]).
pub fn format_g(v: f64) -> String {
    let mut out = Vec::with_capacity(24);
    append_g(&mut out, v);
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// `v` as Go's `strconv.FormatFloat(v, 'f', -1, 64)` (see [`append_f`]).
pub fn format_f(v: f64) -> String {
    let mut out = Vec::with_capacity(24);
    append_f(&mut out, v);
    String::from_utf8(out).unwrap_or_default()
}

/// Display adapter printing a float as Go's `%g`.
#[derive(Clone, Copy, Debug)]
pub struct G(pub f64);

impl fmt::Display for G {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(24);
        append_g(&mut out, self.0);
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// Formats `f` like Go's `fmt.Sprintf("%.{prec}g", f)`: rounded to `prec` significant digits
/// (at least 1), trailing zeros dropped, exponent form when the exponent is < -4 or >= `prec`.
pub fn format_g_prec(f: f64, prec: usize) -> String {
    format_go(f, Some(prec.max(1)))
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

#[cfg(test)]
mod shortest_tests {
    use super::*;

    #[test]
    fn g_matches_go() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (123456.0, "123456"),
            (999999.0, "999999"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1.7040672e9, "1.7040672e+09"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (0.00001, "1e-05"),
            (3.318e-05, "3.318e-05"),
            (0.1, "0.1"),
            (0.3, "0.3"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.0 / 3.0, "0.3333333333333333"),
            (100.0, "100"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (868.954, "868.954"),
            (-2.5e-7, "-2.5e-07"),
            (12345.678, "12345.678"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for &(v, want) in cases {
            assert_eq!(format_g(v), want, "format_g({v:?})");
            assert_eq!(G(v).to_string(), want);
        }
    }

    #[test]
    fn f_matches_go() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1e6, "1000000"),
            (1e21, "1000000000000000000000"),
            (1.5e-5, "0.000015"),
            (1e-7, "0.0000001"),
            (123.456, "123.456"),
            (-0.5, "-0.5"),
            (1.7040672e9, "1704067200"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for &(v, want) in cases {
            assert_eq!(format_f(v), want, "format_f({v:?})");
        }
    }

    #[test]
    fn g_round_trips() {
        // Shortest digits must parse back to the same bits, for a spread of magnitudes.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            let s = format_g(v);
            let back: f64 = s.parse().expect("parses");
            assert_eq!(back.to_bits(), v.to_bits(), "{s}");
            let s = format_f(v);
            let back: f64 = s.parse().expect("parses");
            assert_eq!(back.to_bits(), v.to_bits(), "{s}");
        }
    }

    #[test]
    fn appends_without_clearing() {
        let mut out = b"x=".to_vec();
        append_g(&mut out, 2.5);
        out.push(b' ');
        append_f(&mut out, 2e-3);
        assert_eq!(out, b"x=2.5 0.002");
    }
}
