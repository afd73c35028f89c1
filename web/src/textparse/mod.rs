//! Parsers for the two text exposition formats: OpenMetrics 1.0 ([`OpenMetricsParser`]) and
//! the Prometheus text format 0.0.4 ([`PromTextParser`]).
//!
//! Both parsers iterate over the input without copying it: each call to `next_entry` returns an
//! [`Entry`] borrowing from the input (the series text, metric name, help text), and the labels
//! of the latest series are kept as byte spans in a buffer the parser reuses, read through
//! [`LabelIter`] (values unescaped lazily, allocating only when a value contains a backslash).
//! Timestamps come out in milliseconds: OpenMetrics writes seconds as a float, the text format
//! writes integer milliseconds. Every error names the 1-based line and the reason.
//!
//! The grammar accepted is that of Prometheus 2.42's lexers (`openmetricslex.l`, `promlex.l`):
//! OpenMetrics allows no extra whitespace, requires `# EOF` as the last line and allows
//! exemplars (`… # {labels} value [timestamp]`) on `_total`/`_bucket` series; the text format
//! allows runs of blanks and tabs between tokens, blank lines, free comments and a trailing comma
//! in label sets.

pub mod openmetrics;
pub mod promtext;

use std::borrow::Cow;

pub use openmetrics::OpenMetricsParser;
pub use promtext::PromTextParser;

/// A syntax error in exposition text, with its 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct ParseError {
    /// 1-based line number where the error was found.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl ParseError {
    /// An error at `line`.
    pub fn new(line: usize, msg: impl Into<String>) -> Self {
        ParseError {
            line,
            msg: msg.into(),
        }
    }
}

/// The metric type declared by a `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// `counter`
    Counter,
    /// `gauge`
    Gauge,
    /// `histogram`
    Histogram,
    /// `gaugehistogram` (OpenMetrics only)
    GaugeHistogram,
    /// `summary`
    Summary,
    /// `info` (OpenMetrics only)
    Info,
    /// `stateset` (OpenMetrics only)
    Stateset,
    /// `unknown` (OpenMetrics) or `untyped` (text format)
    Unknown,
}

impl MetricType {
    /// The type's name as Prometheus reports it in metadata (`counter`, `unknown`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::Stateset => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

/// An exemplar attached to a sample (OpenMetrics only).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exemplar {
    /// The exemplar's value.
    pub value: f64,
    /// Its timestamp in milliseconds, if written.
    pub timestamp: Option<i64>,
}

/// One sample line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The metric name and label set exactly as written (`name{a="b"}`).
    pub series: &'a str,
    /// The metric name.
    pub name: &'a str,
    /// The sample value.
    pub value: f64,
    /// The timestamp in milliseconds, if written.
    pub timestamp: Option<i64>,
    /// The exemplar, if any; its labels are read with the parser's `exemplar_labels`.
    pub exemplar: Option<Exemplar>,
    /// 1-based line number of the sample.
    pub line: usize,
}

/// One entry of exposition text.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry<'a> {
    /// `# TYPE name type`
    Type {
        /// Metric family name.
        metric: &'a str,
        /// Declared type.
        kind: MetricType,
    },
    /// `# HELP name text`, with the text unescaped.
    Help {
        /// Metric family name.
        metric: &'a str,
        /// Unescaped help text.
        text: Cow<'a, str>,
    },
    /// `# UNIT name unit` (OpenMetrics only).
    Unit {
        /// Metric family name.
        metric: &'a str,
        /// The unit.
        unit: &'a str,
    },
    /// A free comment line (text format only), without the leading `#`.
    Comment(&'a str),
    /// A sample; its labels are read with the parser's `labels`.
    Series(Sample<'a>),
}

/// Byte spans of one label's name and (still escaped) value in the input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSpan {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

/// The labels of one sample or exemplar, in the order written, values unescaped.
/// The metric name is not included.
#[derive(Clone, Debug)]
pub struct LabelIter<'p, 'a> {
    input: &'a str,
    spans: std::slice::Iter<'p, LabelSpan>,
}

impl<'p, 'a> LabelIter<'p, 'a> {
    pub(crate) fn new(input: &'a str, spans: &'p [LabelSpan]) -> Self {
        LabelIter {
            input,
            spans: spans.iter(),
        }
    }
}

impl<'a> Iterator for LabelIter<'_, 'a> {
    type Item = (&'a str, Cow<'a, str>);
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.spans.next()?;
        let name = self
            .input
            .get(s.name.0 as usize..s.name.1 as usize)
            .unwrap_or("");
        let raw = self
            .input
            .get(s.value.0 as usize..s.value.1 as usize)
            .unwrap_or("");
        Some((name, unescape_label_value(raw)))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for LabelIter<'_, '_> {}

/// Builds a sorted `tsdb` label set from a metric name and its labels (empty values dropped,
/// as Prometheus's head does).
pub fn to_tsdb_labels<'a>(
    name: &str,
    labels: impl Iterator<Item = (&'a str, Cow<'a, str>)>,
) -> tsdb::Labels {
    let mut v = Vec::with_capacity(labels.size_hint().0 + 1);
    v.push(tsdb::Label::new(tsdb::labels::METRIC_NAME, name));
    for (n, val) in labels {
        v.push(tsdb::Label::new(n, val.into_owned()));
    }
    tsdb::Labels::new(v)
}

/// Undoes label-value escaping: `\\` → `\`, `\"` → `"`, `\n` → newline; any other backslash
/// sequence is kept as written (as Prometheus does).
pub fn unescape_label_value(raw: &str) -> Cow<'_, str> {
    unescape(raw, true)
}

/// Undoes escaping in help text of the text format: `\\` and `\n` only.
pub fn unescape_help(raw: &str) -> Cow<'_, str> {
    unescape(raw, false)
}

fn unescape(raw: &str, quotes: bool) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.clone().next() {
            Some('\\') => {
                out.push('\\');
                chars.next();
            }
            Some('n') => {
                out.push('\n');
                chars.next();
            }
            Some('"') if quotes => {
                out.push('"');
                chars.next();
            }
            _ => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Parses a float the way Prometheus's text parsers do (Go's `strconv.ParseFloat`, without hex
/// floats and digit separators): decimal and exponent forms, `NaN`, `Inf`, `+Inf`, `-Inf`
/// (case-insensitive, also `infinity`). Values out of the `f64` range are an error.
pub fn parse_go_float(s: &str) -> Result<f64, String> {
    if s.is_empty() {
        return Err("empty float".into());
    }
    if s.bytes().any(|b| matches!(b, b'p' | b'P' | b'_')) {
        return Err(format!("unsupported character in float {s:?}"));
    }
    let v: f64 = s.parse().map_err(|_| format!("invalid float {s:?}"))?;
    if v.is_infinite() {
        let body = s.trim_start_matches(['+', '-']);
        if !(body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity")) {
            return Err(format!("float {s:?} out of range"));
        }
    }
    if v.is_nan() && s.starts_with(['+', '-']) {
        return Err(format!("invalid float {s:?}"));
    }
    Ok(v)
}

/// Prometheus's canonical NaN bit pattern (`value.NormalNaN`), used for parsed `NaN` values so
/// they are not mistaken for staleness markers.
pub const NORMAL_NAN: u64 = 0x7ff8_0000_0000_0001;

/// Returns `v`, with any NaN replaced by Prometheus's canonical NaN.
pub(crate) fn normalize_nan(v: f64) -> f64 {
    if v.is_nan() {
        f64::from_bits(NORMAL_NAN)
    } else {
        v
    }
}

/// Whether `b` may start a metric name (`[a-zA-Z_:]`).
#[inline]
pub(crate) fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

/// Whether `b` may continue a metric name (`[a-zA-Z0-9_:]`).
#[inline]
pub(crate) fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Whether `b` may start a label name (`[a-zA-Z_]`).
#[inline]
pub(crate) fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// Whether `b` may continue a label name (`[a-zA-Z0-9_]`).
#[inline]
pub(crate) fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Shows a few bytes of input at `pos` for error messages (`"x"`, or `end of input`).
pub(crate) fn describe_at(input: &str, pos: usize) -> String {
    match input.get(pos..) {
        None | Some("") => "end of input".to_string(),
        Some(rest) => {
            let c = rest.chars().next().unwrap_or(' ');
            format!("{:?}", c)
        }
    }
}

/// Checks that `input` is UTF-8, naming the line of the first invalid byte otherwise.
pub fn check_utf8(input: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(input).map_err(|e| {
        let at = e.valid_up_to();
        let line = 1 + memchr::memchr_iter(b'\n', &input[..at]).count();
        ParseError::new(line, format!("invalid UTF-8 at byte offset {at}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescaping() {
        assert_eq!(unescape_label_value(r#"a\"b\\c\nd\te"#), "a\"b\\c\nd\\te");
        assert!(matches!(
            unescape_label_value("plain"),
            Cow::Borrowed("plain")
        ));
        assert_eq!(unescape_label_value(r"trailing \\"), "trailing \\");
        assert_eq!(unescape_label_value(r"lone \"), "lone \\");
        assert_eq!(unescape_help(r#"a \"q\" \\ \n"#), "a \\\"q\\\" \\ \n");
    }

    #[test]
    fn go_floats() {
        assert_eq!(parse_go_float("1.5").unwrap(), 1.5);
        assert_eq!(parse_go_float("-2e-3").unwrap(), -0.002);
        assert_eq!(parse_go_float(".5").unwrap(), 0.5);
        assert_eq!(parse_go_float("+Inf").unwrap(), f64::INFINITY);
        assert_eq!(parse_go_float("-Inf").unwrap(), f64::NEG_INFINITY);
        assert_eq!(parse_go_float("inf").unwrap(), f64::INFINITY);
        assert!(parse_go_float("NaN").unwrap().is_nan());
        assert!(parse_go_float("1e400").is_err());
        assert!(parse_go_float("0x1p3").is_err());
        assert!(parse_go_float("1_000").is_err());
        assert!(parse_go_float("abc").is_err());
        assert!(parse_go_float("").is_err());
    }

    /// Random edits of valid input never panic either parser, and never loop forever.
    #[test]
    fn mutated_input_never_panics() {
        let base = "# TYPE foo_seconds histogram\n# UNIT foo_seconds seconds\n# HELP foo_seconds H \\\" \\n.\n\
foo_seconds_bucket{le=\"0.5\",a=\"x\\\"y\"} 3 1520879607.789 # {id=\"1\"} 0.4 1520879607.1\n\
foo_seconds_count 7 10\nfoo_seconds_sum{} -Inf\nbar{b=\"\\n\"} NaN 5\n# EOF\n";
        let alphabet = b" \t\n#{}=,\"\\abcxyz019.-+_:eE\xc3\xa9";
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut p = OpenMetricsParser::new(base);
        let mut n = 0;
        while p.next_entry().expect("base input is valid").is_some() {
            n += 1;
        }
        assert_eq!(n, 7);
        for _ in 0..20_000 {
            let mut b = base.as_bytes().to_vec();
            for _ in 0..1 + rnd(4) {
                let i = rnd(b.len());
                match rnd(3) {
                    0 => b[i] = alphabet[rnd(alphabet.len())],
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, alphabet[rnd(alphabet.len())]),
                }
            }
            let s = String::from_utf8_lossy(&b);
            let mut p = OpenMetricsParser::new(&s);
            for _ in 0..100 {
                match p.next_entry() {
                    Ok(Some(Entry::Series(_))) => {
                        let _ = p.labels().count();
                        let _ = p.exemplar_labels().count();
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            let mut p = PromTextParser::new(&s);
            let mut steps = 0;
            loop {
                steps += 1;
                assert!(steps < 100, "text parser does not advance on {s:?}");
                match p.next_entry() {
                    Ok(Some(Entry::Series(_))) => {
                        let _ = p.labels().count();
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn utf8_errors_name_the_line() {
        let e = check_utf8(b"a 1\nb 2\nc\xff 3\n").unwrap_err();
        assert_eq!(e.line, 3);
    }
}
