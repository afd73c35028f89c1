//! Hand-written JSON output for API responses, in Prometheus's shapes: sample values as strings
//! formatted like Go's `strconv.FormatFloat(v, 'f', -1, 64)` (`"NaN"`, `"+Inf"`, `"-Inf"`),
//! timestamps as numbers of seconds with up to three decimals, label sets as objects. Writing
//! into one `String` keeps large matrices free of per-sample allocation.

use std::fmt::Write as _;

use tsdb::labels::Labels;

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '<' => Some("\\u003c"),
            '>' => Some("\\u003e"),
            '&' => Some("\\u0026"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = i + c.len_utf8();
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
    let neg = ms < 0;
    let a = ms.unsigned_abs();
    if neg {
        out.push('-');
    }
    let _ = write!(out, "{}", a / 1000);
    let frac = a % 1000;
    if frac != 0 {
        let mut s = format!("{frac:03}");
        while s.ends_with('0') {
            s.pop();
        }
        out.push('.');
        out.push_str(&s);
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` with Prometheus's spellings of the specials.
pub fn format_float(v: f64) -> String {
    let mut s = String::new();
    push_float(&mut s, v);
    s
}

/// Appends `v` formatted as [`format_float`] does (without quotes).
pub fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Rust's Display prints the shortest round-trip digits without an exponent, as Go's
        // 'f' with precision -1 does.
        let _ = write!(out, "{v}");
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

/// Wraps already-encoded `data` JSON in the success envelope, with `warnings`/`infos` when any.
pub fn success(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str("{\"status\":\"success\",\"data\":");
    out.push_str(data);
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if list.is_empty() {
            continue;
        }
        let _ = write!(out, ",\"{key}\":[");
        for (i, w) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(&mut out, w);
        }
        out.push(']');
    }
    out.push('}');
    out
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
    fn timestamps_are_seconds() {
        let mut s = String::new();
        write_ts(&mut s, 1_704_081_607_000);
        s.push(' ');
        write_ts(&mut s, 1_704_081_607_500);
        s.push(' ');
        write_ts(&mut s, 1_704_081_607_010);
        s.push(' ');
        write_ts(&mut s, -1);
        assert_eq!(s, "1704081607 1704081607.5 1704081607.01 -0.001");
    }

    #[test]
    fn strings_are_escaped_and_roundtrip() {
        for v in [
            "say \"hello\"",
            "C:\\Windows",
            "line\nbreak\ttab",
            "<&>",
            "\u{1}",
            "日本語 🚀",
        ] {
            let mut s = String::new();
            write_str(&mut s, v);
            let back: String = serde_json::from_str(&s).unwrap();
            assert_eq!(back, v);
        }
        let mut s = String::new();
        write_labels(&mut s, &Labels::from_pairs(&[("b", "2"), ("a", "1")]));
        assert_eq!(s, r#"{"a":"1","b":"2"}"#);
        assert_eq!(
            success("[]", &["w".into()], &[]),
            r#"{"status":"success","data":[],"warnings":["w"]}"#
        );
    }
}
