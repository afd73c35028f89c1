//! Hand-written JSON output for API responses, in Prometheus's shapes: sample values as strings
//! formatted like Go's `strconv.FormatFloat(v, 'f', -1, 64)` (`"NaN"`, `"+Inf"`, `"-Inf"`),
//! timestamps as numbers of seconds with up to three decimals, label sets as objects. Writing
//! into one `String` keeps large matrices free of per-sample allocation.

use std::fmt::Write as _;

use tsdb::labels::Labels;

/// Appends `s` as a JSON string literal, escaped as Go's `encoding/json` does (`<`, `>`, `&`,
/// U+2028 and U+2029 as `\uXXXX`). Runs of bytes that need no escaping are copied at once.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let esc: &str = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b'<' => "\\u003c",
            b'>' => "\\u003e",
            b'&' => "\\u0026",
            // U+2028 and U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
            0xE2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(&(0xA8 | 0xA9))) => {
                if b[i + 2] == 0xA8 {
                    "\\u2028"
                } else {
                    "\\u2029"
                }
            }
            c if c < 0x20 => "",
            _ => {
                i += 1;
                continue;
            }
        };
        // `start..i` ends before an ASCII byte or the start of a 3-byte sequence: a char
        // boundary.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(c >> 4) as usize] as char);
            out.push(HEX[(c & 15) as usize] as char);
            i += 1;
        } else {
            out.push_str(esc);
            i += if c == 0xE2 { 3 } else { 1 };
        }
        start = i;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends a label set as a JSON object `{"name":"value",…}` in label order.
pub fn write_labels(out: &mut String, ls: &Labels) {
    out.push('{');
    for (i, l) in ls.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &l.name);
        out.push(':');
        write_str(out, &l.value);
    }
    out.push('}');
}

/// Appends a millisecond timestamp as seconds: `1704081607`, `1704081607.5`, `-0.001`.
pub fn write_ts(out: &mut String, ms: i64) {
    let a = ms.unsigned_abs();
    if ms < 0 {
        out.push('-');
    }
    out.push_str(itoa::Buffer::new().format(a / 1000));
    let frac = (a % 1000) as u32;
    if frac != 0 {
        let digits = [
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let len = if frac.is_multiple_of(100) {
            2
        } else if frac.is_multiple_of(10) {
            3
        } else {
            4
        };
        // ASCII digits only.
        out.push_str(std::str::from_utf8(&digits[..len]).unwrap_or(""));
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` with Prometheus's spellings of the specials.
pub fn format_float(v: f64) -> String {
    let mut s = String::new();
    push_float(&mut s, v);
    s
}

/// Integers below this magnitude are exact in an `f64` and printed through `itoa`.
const EXACT_INT: f64 = 1e15;

/// Appends `v` formatted as [`format_float`] does (without quotes): the shortest digits that
/// read back as `v`, never with an exponent. Integral values take an integer fast path; the
/// rest are formatted by `zmij` (shortest round-trip digits, possibly in exponent form) and
/// rewritten as a plain decimal.
pub fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.abs() < EXACT_INT && v == v.trunc() {
        if v == 0.0 && v.is_sign_negative() {
            out.push_str("-0");
        } else {
            out.push_str(itoa::Buffer::new().format(v as i64));
        }
    } else {
        let mut b = zmij::Buffer::new();
        let s = b.format_finite(v);
        // Without an exponent zmij's output is already plain and minimal, but for a `.0`
        // after integral values.
        if !s.bytes().any(|c| c == b'e') {
            out.push_str(s.strip_suffix(".0").unwrap_or(s));
        } else {
            push_plain_decimal(out, s);
        }
    }
}

/// Rewrites a decimal number in Rust/zmij syntax (`-1.25e-7`, `3.0`, `1e21`, `1e+21`) as a
/// plain decimal without exponent and without redundant zeros (`-0.000000125`, `3`,
/// `1000000000000000000000`).
fn push_plain_decimal(out: &mut String, s: &str) {
    const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    // Digits without the point, at most 17 significant plus a few zeros from zmij.
    let mut digits = [0u8; 40];
    let mut n = 0;
    let mut point = None;
    for &c in mant.as_bytes() {
        if c == b'.' {
            point = Some(n);
        } else if n < digits.len() {
            digits[n] = c;
            n += 1;
        }
    }
    // Position of the decimal point counted in digits from the left.
    let mut dp = point.unwrap_or(n) as i32 + exp;
    let mut lo = 0;
    while lo < n && digits[lo] == b'0' {
        lo += 1;
        dp -= 1;
    }
    let mut hi = n;
    while hi > lo && digits[hi - 1] == b'0' {
        hi -= 1;
    }
    if lo == hi {
        out.push_str(if neg { "-0" } else { "0" });
        return;
    }
    if neg {
        out.push('-');
    }
    let d = std::str::from_utf8(&digits[lo..hi]).unwrap_or("");
    let len = d.len() as i32;
    let zeros = |out: &mut String, mut k: i32| {
        while k > 0 {
            let c = k.min(ZEROS.len() as i32);
            out.push_str(&ZEROS[..c as usize]);
            k -= c;
        }
    };
    if dp <= 0 {
        out.push_str("0.");
        zeros(out, -dp);
        out.push_str(d);
    } else if dp >= len {
        out.push_str(d);
        zeros(out, dp - len);
    } else {
        out.push_str(&d[..dp as usize]);
        out.push('.');
        out.push_str(&d[dp as usize..]);
    }
}

/// Appends a `[<ts>,"<value>"]` sample pair.
pub fn write_sample(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_ts(out, t);
    out.push_str(",\"");
    push_float(out, v);
    out.push_str("\"]");
}

/// Writes the `values` of range results, the bulk of them: `[<ts>,"<value>"]` pairs as
/// [`write_sample`] writes each. The text is put together in a buffer with fixed-size copies
/// and handed to the output a few kilobytes at a time, and the timestamps of a range result's
/// steps (shared by its series) are formatted once and reused. One writer serves a whole
/// result.
pub struct SampleWriter {
    buf: Box<[u8; SampleWriter::CAP]>,
    n: usize,
    /// The step grid, `(first, step)` in ms, taken from the first series of two or more
    /// samples: a timestamp on it has index `(t - first) / step` in `steps`.
    grid: Option<(i64, i64)>,
    /// The formatted timestamps of the grid's steps, `(length, text)`, length 0 until
    /// formatted.
    steps: Vec<(u8, [u8; 24])>,
    /// Scratch for formatting a timestamp.
    scratch: String,
}

impl Default for SampleWriter {
    fn default() -> Self {
        SampleWriter {
            buf: Box::new([0; SampleWriter::CAP]),
            n: 0,
            grid: None,
            steps: Vec::new(),
            scratch: String::with_capacity(24),
        }
    }
}

impl SampleWriter {
    const CAP: usize = 4096;
    /// The longest sample the buffer takes: a 21-character timestamp, a 24-character value,
    /// punctuation, and room for the fixed-size copies' overshoot.
    const MAX_SAMPLE: usize = 96;
    /// Most grid steps kept formatted (Prometheus answers at most 11,000 points per series).
    const MAX_STEPS: usize = 11_000;

    /// Appends the samples, comma-separated, to `out`.
    pub fn write_samples(&mut self, out: &mut String, samples: &[(i64, f64)]) {
        if let (None, [a, b, ..]) = (self.grid, samples) {
            self.grid = b.0.checked_sub(a.0).filter(|&d| d > 0).map(|d| (a.0, d));
        }
        for (j, &(t, v)) in samples.iter().enumerate() {
            if self.n + SampleWriter::MAX_SAMPLE > SampleWriter::CAP {
                self.flush(out);
            }
            if j > 0 {
                self.put(b",");
            }
            self.put(b"[");
            self.ts(t);
            self.put(b",\"");
            if !self.float(v) {
                // A value whose plain decimal form is long (beyond 1e21 or below 1e-7).
                self.flush(out);
                push_float(out, v);
            }
            self.put(b"\"]");
        }
        self.flush(out);
    }

    fn flush(&mut self, out: &mut String) {
        // Only ASCII is written to the buffer.
        out.push_str(std::str::from_utf8(&self.buf[..self.n]).unwrap_or(""));
        self.n = 0;
    }

    /// Appends punctuation (a constant of at most 2 bytes).
    #[inline(always)]
    fn put(&mut self, b: &[u8]) {
        self.buf[self.n..self.n + b.len()].copy_from_slice(b);
        self.n += b.len();
    }

    /// Appends `src` (at most 32 bytes): see [`copy_small`].
    #[inline(always)]
    fn put_small(&mut self, src: &[u8]) {
        copy_small(&mut self.buf[self.n..], src);
        self.n += src.len();
    }

    /// Appends a millisecond timestamp as [`write_ts`] does: a step of the grid from its
    /// formatted copy (made on first use), any other directly.
    #[inline(always)]
    fn ts(&mut self, ms: i64) {
        let step = self.grid.and_then(|(first, step)| {
            let d = ms.checked_sub(first)?;
            let k = (d >= 0 && d % step == 0).then_some((d / step) as usize)?;
            (k < Self::MAX_STEPS).then_some(k)
        });
        let Some(k) = step else {
            self.scratch.clear();
            write_ts(&mut self.scratch, ms);
            copy_small(&mut self.buf[self.n..], self.scratch.as_bytes());
            self.n += self.scratch.len();
            return;
        };
        if k >= self.steps.len() {
            self.steps.resize(k + 1, (0, [0; 24]));
        }
        if self.steps[k].0 == 0 {
            let s = &mut self.scratch;
            s.clear();
            write_ts(s, ms);
            self.steps[k].0 = s.len() as u8;
            self.steps[k].1[..s.len()].copy_from_slice(s.as_bytes());
        }
        let (len, text) = self.steps[k];
        self.buf[self.n..self.n + 24].copy_from_slice(&text);
        self.n += len as usize;
    }

    /// Appends `v` as [`push_float`] does, unless its plain decimal form needs
    /// [`push_plain_decimal`] (then false, with nothing written).
    #[inline(always)]
    fn float(&mut self, v: f64) -> bool {
        if v.is_nan() {
            self.put_small(b"NaN");
        } else if v.is_infinite() {
            self.put_small(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        } else if v.abs() < EXACT_INT && v == v.trunc() {
            if v == 0.0 && v.is_sign_negative() {
                self.put_small(b"-0");
            } else {
                self.put_small(itoa::Buffer::new().format(v as i64).as_bytes());
            }
        } else {
            let mut b = zmij::Buffer::new();
            let s = b.format_finite(v).as_bytes();
            // Checked without an early exit: a short loop, not a call of `memchr`.
            if s.iter().fold(false, |e, &c| e | (c == b'e')) {
                return false;
            }
            self.put_small(s.strip_suffix(b".0").unwrap_or(s));
        }
        true
    }
}

/// Copies `src` (at most 32 bytes) to the start of `dst` with at most two fixed-size copies,
/// which compile to moves rather than a call of `memcpy`.
#[inline(always)]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    let len = src.len();
    if len >= 16 {
        dst[..16].copy_from_slice(&src[..16]);
        dst[len - 16..len].copy_from_slice(&src[len - 16..]);
    } else if len >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[len - 8..len].copy_from_slice(&src[len - 8..]);
    } else {
        for (d, &c) in dst.iter_mut().zip(src) {
            *d = c;
        }
    }
}

/// The start of the success envelope; the `data` value follows, then [`end_success`].
pub const SUCCESS_PREFIX: &str = "{\"status\":\"success\",\"data\":";

/// Wraps already-encoded `data` JSON in the success envelope, with `warnings`/`infos` when any.
pub fn success(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str(SUCCESS_PREFIX);
    out.push_str(data);
    end_success(&mut out, warnings, infos);
    out
}

/// Closes a success envelope begun with [`SUCCESS_PREFIX`] and a `data` value: appends
/// `warnings`/`infos` when any and the final `}`.
pub fn end_success(out: &mut String, warnings: &[String], infos: &[String]) {
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if list.is_empty() {
            continue;
        }
        let _ = write!(out, ",\"{key}\":");
        write_str_array(out, list);
    }
    out.push('}');
}

/// Appends a JSON array of strings.
pub fn write_str_array(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, s);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go() {
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(-0.5808), "-0.5808");
        assert_eq!(format_float(14.666666666666664), "14.666666666666664");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(1.5e-7), "0.00000015");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn float_edge_cases_format_like_go() {
        for (v, want) in [
            (-0.0, "-0"),
            (0.0, "0"),
            (-3.0, "-3"),
            (999_999_999_999_999.0, "999999999999999"),
            (1e15, "1000000000000000"),
            (1.2345e16, "12345000000000000"),
            (-1.25e-7, "-0.000000125"),
            (0.001, "0.001"),
            (123456.789, "123456.789"),
            (1e-5, "0.00001"),
            (4.5e15, "4500000000000000"),
            (0.5, "0.5"),
            // An exact tie between two 17-digit candidates: Go (like zmij) rounds half to
            // even, Rust's `Display` rounds up (…536.3).
            (f64::from_bits(0x4313_d27d_a8ac_08c1), "1394865425023536.2"),
        ] {
            assert_eq!(format_float(v), want, "{v:e}");
        }
        assert_eq!(format_float(f64::MAX), format!("{}", f64::MAX));
        assert_eq!(format_float(5e-324), format!("0.{}5", "0".repeat(323)));
        assert_eq!(
            format_float(f64::MIN_POSITIVE),
            format!("{}", f64::MIN_POSITIVE)
        );
    }

    /// Rust's `Display` also prints the shortest round-trip digits without exponent; the
    /// output must read back as the same value with as many digits as `Display`'s, and equal
    /// it except where the two candidates tie (Go and zmij round half to even there).
    #[test]
    fn floats_roundtrip_with_shortest_digits() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let sig = |s: &str| {
            s.bytes()
                .filter(u8::is_ascii_digit)
                .skip_while(|&c| c == b'0')
                .count()
        };
        let check = |v: f64| {
            if !v.is_finite() {
                return;
            }
            let got = format_float(v);
            let want = format!("{v}");
            if got != want {
                assert_eq!(got.parse::<f64>().ok(), Some(v), "bits {:#x}", v.to_bits());
                assert_eq!(sig(&got), sig(&want), "{got} vs {want}");
                assert!(!got.contains('e'), "{got}");
            }
        };
        for i in 0..200_000u64 {
            // xorshift64*: random bit patterns cover every exponent.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            check(f64::from_bits(r));
            // Values like those in query results: rates, ratios, counts, byte sizes.
            check((r % 1_000_000) as f64 / 1000.0);
            check((r >> 11) as f64 / (1u64 << 53) as f64);
            check(i as f64 * 0.1);
            check((r % 100_000_000_000) as f64);
        }
    }

    /// The batched writer gives what `write_sample` gives, point by point, on every kind of
    /// value and timestamp, across buffer flushes, on and off the step grid.
    #[test]
    fn sample_writer_matches_write_sample() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let specials = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            1e15,
            -1e15 + 1.0,
            999_999_999_999_999.0,
            1e21,
            1.5e300,
            5e-324,
            1.25e-7,
            0.1 + 0.2,
            -123.456,
            f64::MAX,
            f64::MIN_POSITIVE,
        ];
        let mut w = SampleWriter::default();
        for round in 0..40 {
            let samples: Vec<(i64, f64)> = (0..(rnd() % 600) as usize)
                .map(|i| {
                    let t = match rnd() % 4 {
                        0 => 1_795_845_660_000 + 60_000 * (i as i64 % 360),
                        1 => (rnd() % 4_000_000_000_000) as i64 - 1_000_000_000_000,
                        2 => -((rnd() % 5000) as i64),
                        _ => 1_795_845_660_000 + (rnd() % 1000) as i64,
                    };
                    let v = match rnd() % 4 {
                        0 => specials[(rnd() % specials.len() as u64) as usize],
                        1 => f64::from_bits(rnd()),
                        2 => (rnd() % 100_000) as f64 / 7.0,
                        _ => (rnd() % 1_000_000) as f64,
                    };
                    (t, v)
                })
                .collect();
            let mut want = String::new();
            for (j, &(t, v)) in samples.iter().enumerate() {
                if j > 0 {
                    want.push(',');
                }
                write_sample(&mut want, t, v);
            }
            let mut got = String::from("x");
            w.write_samples(&mut got, &samples);
            assert_eq!(got[1..], want, "round {round}");
        }
    }

    #[test]
    fn timestamps_are_seconds() {
        let mut s = String::new();
        write_ts(&mut s, 1_704_081_607_000);
        s.push(' ');
        write_ts(&mut s, 1_704_081_607_500);
        s.push(' ');
        write_ts(&mut s, 1_704_081_607_010);
        s.push(' ');
        write_ts(&mut s, -1);
        s.push(' ');
        write_ts(&mut s, 0);
        s.push(' ');
        write_ts(&mut s, -1_500);
        s.push(' ');
        write_ts(&mut s, 1_704_081_607_123);
        s.push(' ');
        write_ts(&mut s, i64::MIN);
        assert_eq!(
            s,
            "1704081607 1704081607.5 1704081607.01 -0.001 0 -1.5 1704081607.123 -9223372036854775.808"
        );
    }

    #[test]
    fn strings_are_escaped_and_roundtrip() {
        for v in [
            "say \"hello\"",
            "C:\\Windows",
            "line\nbreak\ttab",
            "<&>",
            "\u{1}",
            "\u{1f}x\u{7f}",
            "a\u{2028}b\u{2029}c\u{2027}",
            "\u{e2}\u{80}",
            "日本語 🚀",
        ] {
            let mut s = String::new();
            write_str(&mut s, v);
            let back: String = serde_json::from_str(&s).unwrap();
            assert_eq!(back, v);
        }
        let mut s = String::new();
        write_str(&mut s, "x\u{2028}<\u{1}\"é\u{2029}");
        assert_eq!(s, r#""x\u2028\u003c\u0001\"é\u2029""#);
        let mut s = String::new();
        write_labels(&mut s, &Labels::from_pairs(&[("b", "2"), ("a", "1")]));
        assert_eq!(s, r#"{"a":"1","b":"2"}"#);
        assert_eq!(
            success("[]", &["w".into()], &[]),
            r#"{"status":"success","data":[],"warnings":["w"]}"#
        );
    }
}
