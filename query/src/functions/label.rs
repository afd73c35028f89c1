//! `label_replace` and `label_join`: rewriting one label of a series from others.
//!
//! The regular expression of `label_replace` is fully anchored and compiled with `(?s)` as
//! Prometheus does (`^(?s:<regex>)$`); the replacement expands `$1`, `${1}`, `$name`,
//! `${name}` and `$$` with Go's `regexp.Expand` rules (`$1x` means the group named `1x`;
//! unknown groups expand to nothing). An empty result removes the destination label.
//! Both functions validate label names as Prometheus 3.x does with UTF-8 names: a name must
//! be non-empty. (A name that is invalid UTF-8 cannot reach here: Rust strings are UTF-8.)

use regex::Regex;
use tsdb::Labels;

/// Whether `name` is a valid label name under Prometheus 3.x UTF-8 validation.
pub fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// A compiled `label_replace(v, dst, replacement, src, regex)`, to apply to many series.
#[derive(Clone, Debug)]
pub struct LabelReplace {
    dst: String,
    replacement: String,
    src: String,
    regex: Regex,
}

impl LabelReplace {
    /// Checks the arguments and compiles the regex. Errors carry Prometheus's texts:
    /// `invalid regular expression in label_replace(): <regex>` and `invalid destination label
    /// name in label_replace(): <dst>`.
    pub fn new(dst: &str, replacement: &str, src: &str, regex: &str) -> Result<Self, String> {
        let re = Regex::new(&format!("^(?s:{regex})$"))
            .map_err(|_| format!("invalid regular expression in label_replace(): {regex}"))?;
        if !is_valid_label_name(dst) {
            return Err(format!(
                "invalid destination label name in label_replace(): {dst}"
            ));
        }
        Ok(LabelReplace {
            dst: dst.to_string(),
            replacement: replacement.to_string(),
            src: src.to_string(),
            regex: re,
        })
    }

    /// The destination label name.
    pub fn dst(&self) -> &str {
        &self.dst
    }

    /// The new label set when the regex matches the source label's value (an absent label
    /// is the empty string), or `None` when it does not and the series stays unchanged.
    pub fn apply(&self, labels: &Labels) -> Option<Labels> {
        let src_val = labels.get(&self.src).unwrap_or("");
        let caps = self.regex.captures(src_val)?;
        let mut out = String::new();
        caps.expand(&self.replacement, &mut out);
        Some(labels.with(&self.dst, &out))
    }
}

/// `label_replace` for one series: compiles the arguments (see [`LabelReplace::new`]) and
/// applies them; an unmatched series is returned unchanged. Engines evaluating many series
/// should build one [`LabelReplace`] instead.
pub fn label_replace(
    labels: &Labels,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Labels, String> {
    let lr = LabelReplace::new(dst, replacement, src, regex)?;
    Ok(lr.apply(labels).unwrap_or_else(|| labels.clone()))
}

/// Checks the label names of `label_join(v, dst, sep, srcs…)`. Errors carry Prometheus's
/// texts: `invalid source label name in label_join(): <src>` (checked first) and `invalid
/// destination label name in label_join(): <dst>`.
pub fn check_label_join(dst: &str, srcs: &[impl AsRef<str>]) -> Result<(), String> {
    for s in srcs {
        if !is_valid_label_name(s.as_ref()) {
            return Err(format!(
                "invalid source label name in label_join(): {}",
                s.as_ref()
            ));
        }
    }
    if !is_valid_label_name(dst) {
        return Err(format!(
            "invalid destination label name in label_join(): {dst}"
        ));
    }
    Ok(())
}

/// `label_join` for one series: sets `dst` to the values of `srcs` (absent ones as empty
/// strings) joined with `sep`; an empty result removes `dst`.
pub fn label_join(
    labels: &Labels,
    dst: &str,
    sep: &str,
    srcs: &[impl AsRef<str>],
) -> Result<Labels, String> {
    check_label_join(dst, srcs)?;
    let mut joined = String::new();
    for (i, s) in srcs.iter().enumerate() {
        if i > 0 {
            joined.push_str(sep);
        }
        joined.push_str(labels.get(s.as_ref()).unwrap_or(""));
    }
    Ok(labels.with(dst, &joined))
}

/// Natural-order "less than" used by `sort_by_label`/`sort_by_label_desc` (the algorithm of
/// the `natsort` package Prometheus uses): both strings are split into runs of ASCII digits
/// and non-digits; digit runs that fit an `i64` compare as integers, others as strings. Its
/// quirks are kept: when all chunks of `a` match a prefix of `b`'s, `a` is less (even for
/// `"01"` vs `"1"`), and an empty `a` is never less.
pub fn natsort_less(a: &str, b: &str) -> bool {
    let ca = chunkify(a);
    let cb = chunkify(b);
    for (i, x) in ca.iter().enumerate() {
        let Some(y) = cb.get(i) else {
            return false;
        };
        let equal = match (as_int(x), as_int(y)) {
            (Some(xi), Some(yi)) => {
                if xi != yi {
                    return xi < yi;
                }
                true
            }
            _ => x == y,
        };
        if !equal {
            return x < y;
        }
        if i == ca.len() - 1 {
            return true;
        }
        if i == cb.len() - 1 {
            return false;
        }
    }
    false
}

fn as_int(s: &str) -> Option<i64> {
    if s.bytes().all(|c| c.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn chunkify(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut digit: Option<bool> = None;
    for (i, c) in s.char_indices() {
        let d = c.is_ascii_digit();
        if digit.is_some_and(|p| p != d) {
            out.push(&s[start..i]);
            start = i;
        }
        digit = Some(d);
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs)
    }

    #[test]
    fn replace_from_functions_test() {
        let m = ls(&[
            ("__name__", "testmetric"),
            ("src", "source-value-10"),
            ("dst", "original-destination-value"),
        ]);
        // label_replace(testmetric, "dst", "destination-value-$1", "src", "source-value-(.*)")
        let out = label_replace(
            &m,
            "dst",
            "destination-value-$1",
            "src",
            "source-value-(.*)",
        )
        .unwrap();
        assert_eq!(out.get("dst"), Some("destination-value-10"));
        // Not matching: unchanged (the regex is anchored).
        let out = label_replace(&m, "dst", "destination-value-$1", "src", "value-(.*)").unwrap();
        assert_eq!(out, m);
        // Empty replacement drops the label.
        let out = label_replace(&m, "dst", "", "dst", ".*").unwrap();
        assert_eq!(out.get("dst"), None);
        // Absent source label matches as "".
        let out = label_replace(&m, "dst", "value-$1", "nonexistent-src", "(.*)").unwrap();
        assert_eq!(out.get("dst"), Some("value-"));
        // Named groups and $name semantics: $1x is group "1x", i.e. empty.
        let out = label_replace(&m, "dst", "${1}x-$1x", "src", "source-(?P<x>value)-(.*)").unwrap();
        assert_eq!(out.get("dst"), Some("valuex-"));
        let out = label_replace(&m, "dst", "$x$$", "src", "source-(?P<x>value)-(.*)").unwrap();
        assert_eq!(out.get("dst"), Some("value$"));
        // (?s): dot matches newlines.
        let nl = ls(&[("src", "a\nb")]);
        assert_eq!(
            label_replace(&nl, "dst", "$1", "src", "(.*)")
                .unwrap()
                .get("dst"),
            Some("a\nb")
        );
    }

    #[test]
    fn replace_errors() {
        let m = ls(&[("src", "x")]);
        assert_eq!(
            label_replace(&m, "dst", "value-$1", "src", "(.*").unwrap_err(),
            "invalid regular expression in label_replace(): (.*"
        );
        assert_eq!(
            label_replace(&m, "", "", "src", "(.*)").unwrap_err(),
            "invalid destination label name in label_replace(): "
        );
    }

    #[test]
    fn natural_order() {
        assert!(natsort_less("a2", "a10"));
        assert!(!natsort_less("a10", "a2"));
        assert!(natsort_less("abc", "abd"));
        assert!(natsort_less("1", "2"));
        assert!(natsort_less("9", "10"));
        assert!(natsort_less("x", "x1"));
        assert!(!natsort_less("x1", "x"));
        assert!(natsort_less("01", "1") && natsort_less("1", "01"));
        assert!(!natsort_less("", "a") && !natsort_less("a", ""));
        // Digit runs beyond i64 compare as strings.
        assert!(natsort_less(
            "99999999999999999999",
            "99999999999999999999a"
        ));
        assert!(natsort_less("192.168.0.2", "192.168.0.10"));
    }

    #[test]
    fn join() {
        let m = ls(&[
            ("__name__", "testmetric"),
            ("src", "a"),
            ("src1", "b"),
            ("src2", "c"),
        ]);
        let out = label_join(&m, "dst", "-", &["src", "src1", "src2"]).unwrap();
        assert_eq!(out.get("dst"), Some("a-b-c"));
        let out = label_join(&m, "dst", "-", &["src", "missing", "src2"]).unwrap();
        assert_eq!(out.get("dst"), Some("a--c"));
        let out = label_join(&m, "src", "", &["missing"]).unwrap();
        assert_eq!(out.get("src"), None);
        let none: [&str; 0] = [];
        assert_eq!(label_join(&m, "dst", ",", &none).unwrap(), m);
        assert!(label_join(&m, "", ",", &["src"]).is_err());
        assert_eq!(
            label_join(&m, "dst", ",", &[""]).unwrap_err(),
            "invalid source label name in label_join(): "
        );
    }
}
