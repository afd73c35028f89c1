//! The OpenMetrics 1.0 text format parser.
//!
//! Format (one entry per `\n`-terminated line, no other whitespace than the single spaces
//! shown):
//!
//! ```text
//! # TYPE <name> <counter|gauge|histogram|gaugehistogram|summary|info|stateset|unknown>
//! # UNIT <name> <unit>            (unit empty or a `_`-separated suffix of the name)
//! # HELP <name> <text>            (text escapes: \\ \" \n)
//! <name>[{<lname>="<lvalue>"[,<lname>="<lvalue>"]*}] <value>[ <timestamp>][ # {<labels>} <value>[ <timestamp>]]
//! # EOF                           (last line; nothing may follow)
//! ```
//!
//! Metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`; label
//! values are double-quoted with `\\`, `\"`, `\n` escapes and no raw newline. Values are Go
//! floats (`NaN`, `+Inf`, `-Inf`, exponents); timestamps are seconds as a float and come out as
//! milliseconds truncated toward zero. Exemplars (after ` # `) are only allowed on series whose
//! name ends in `_total` or `_bucket`. Blank lines and free comments are errors.

use std::borrow::Cow;

use super::{
    describe_at, is_label_char, is_label_start, is_name_char, is_name_start, normalize_nan,
    parse_go_float, unescape_label_value, Entry, Exemplar, LabelIter, LabelSpan, MetricType,
    ParseError, Sample,
};

/// Parser over an OpenMetrics text exposition, borrowing from the input.
#[derive(Debug)]
pub struct OpenMetricsParser<'a> {
    input: &'a str,
    pos: usize,
    /// Line number of the line starting at `pos`.
    line: usize,
    labels: Vec<LabelSpan>,
    exemplar_labels: Vec<LabelSpan>,
    done: bool,
}

/// The current line being parsed: its bytes are `b[start..end]`, `nl` says whether a newline
/// terminated it.
struct Line<'a> {
    b: &'a [u8],
    end: usize,
    nl: bool,
    no: usize,
}

impl Line<'_> {
    #[inline]
    fn at(&self, p: usize) -> Option<u8> {
        if p < self.end {
            Some(self.b[p])
        } else {
            None
        }
    }
    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.no, msg)
    }
    /// End of the run of bytes that are neither space nor newline starting at `p`.
    fn token_end(&self, mut p: usize) -> usize {
        while p < self.end && self.b[p] != b' ' {
            p += 1;
        }
        p
    }
}

impl<'a> OpenMetricsParser<'a> {
    /// A parser over `input`.
    pub fn new(input: &'a str) -> Self {
        OpenMetricsParser {
            input,
            pos: 0,
            line: 1,
            labels: Vec::new(),
            exemplar_labels: Vec::new(),
            done: false,
        }
    }

    /// The labels of the latest [`Entry::Series`], in the order written (no metric name).
    pub fn labels(&self) -> LabelIter<'_, 'a> {
        LabelIter::new(self.input, &self.labels)
    }

    /// The labels of the latest series' exemplar, if it had one.
    pub fn exemplar_labels(&self) -> LabelIter<'_, 'a> {
        LabelIter::new(self.input, &self.exemplar_labels)
    }

    /// The next entry; `Ok(None)` after `# EOF`.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        if self.done {
            return Ok(None);
        }
        let b = self.input.as_bytes();
        if self.pos >= b.len() {
            return Err(ParseError::new(self.line, "data does not end with # EOF"));
        }
        let start = self.pos;
        let (end, nl) = match memchr::memchr(b'\n', &b[start..]) {
            Some(i) => (start + i, true),
            None => (b.len(), false),
        };
        let line = Line {
            b,
            end,
            nl,
            no: self.line,
        };
        self.pos = if nl { end + 1 } else { end };
        self.line += 1;
        if b[start] == b'#' {
            return self.parse_comment_line(&line, start);
        }
        self.parse_sample(&line, start)
            .map(|s| Some(Entry::Series(s)))
    }

    fn parse_comment_line(
        &mut self,
        line: &Line<'a>,
        start: usize,
    ) -> Result<Option<Entry<'a>>, ParseError> {
        let b = line.b;
        let text = &b[start..line.end];
        if text == b"# EOF" {
            if self.pos < b.len() {
                return Err(ParseError::new(self.line, "unexpected data after # EOF"));
            }
            self.done = true;
            return Ok(None);
        }
        let kw = match text.get(..7) {
            Some(b"# HELP ") => "HELP",
            Some(b"# TYPE ") => "TYPE",
            Some(b"# UNIT ") => "UNIT",
            _ => {
                return Err(line.err(format!(
                    "invalid comment line {:?}: only \"# HELP\", \"# TYPE\", \"# UNIT\" and \"# EOF\" are allowed",
                    truncate(&self.input[start..line.end])
                )))
            }
        };
        let name_start = start + 7;
        let name_end = scan_metric_name(line, name_start);
        if name_end == name_start {
            return Err(line.err(format!(
                "expected metric name after {kw}, got {}",
                describe_at(self.input, name_start)
            )));
        }
        if line.at(name_end) != Some(b' ') || !line.nl {
            return Err(line.err(format!("expected text after metric name in {kw}")));
        }
        let metric = &self.input[name_start..name_end];
        let body = &self.input[name_end + 1..line.end];
        match kw {
            "TYPE" => {
                let kind = match body {
                    "counter" => MetricType::Counter,
                    "gauge" => MetricType::Gauge,
                    "histogram" => MetricType::Histogram,
                    "gaugehistogram" => MetricType::GaugeHistogram,
                    "summary" => MetricType::Summary,
                    "info" => MetricType::Info,
                    "stateset" => MetricType::Stateset,
                    "unknown" => MetricType::Unknown,
                    other => return Err(line.err(format!("invalid metric type {other:?}"))),
                };
                Ok(Some(Entry::Type { metric, kind }))
            }
            "HELP" => Ok(Some(Entry::Help {
                metric,
                text: unescape_label_value(body),
            })),
            _ => {
                if !body.is_empty() {
                    let ok = metric.len() > body.len()
                        && metric.ends_with(body)
                        && metric.as_bytes()[metric.len() - body.len() - 1] == b'_';
                    if !ok {
                        return Err(
                            line.err(format!("unit {body:?} not a suffix of metric {metric:?}"))
                        );
                    }
                }
                Ok(Some(Entry::Unit { metric, unit: body }))
            }
        }
    }

    fn parse_sample(&mut self, line: &Line<'a>, start: usize) -> Result<Sample<'a>, ParseError> {
        let b = line.b;
        self.labels.clear();
        self.exemplar_labels.clear();
        let name_end = scan_metric_name(line, start);
        if name_end == start {
            return Err(line.err(format!(
                "{} is not a valid start of a metric name",
                describe_at(self.input, start)
            )));
        }
        let mut p = name_end;
        if line.at(p) == Some(b'{') {
            p = parse_label_set(line, p + 1, &mut self.labels)?;
        }
        let series = &self.input[start..p];
        let name = &self.input[start..name_end];
        let value = parse_value(line, self.input, p, "metric")?;
        p = line.token_end(p + 1);
        let mut sample = Sample {
            series,
            name,
            value,
            timestamp: None,
            exemplar: None,
            line: line.no,
        };
        if p == line.end {
            return end_of_sample(line, sample);
        }
        // After the value: a timestamp, or an exemplar.
        if b[p..line.end].starts_with(b" # {") {
            sample.exemplar = Some(self.parse_exemplar(line, name, p + 4)?);
            return Ok(sample);
        }
        let ts_end = line.token_end(p + 1);
        if ts_end == p + 1 {
            return Err(line.err(format!(
                "expected timestamp or # symbol after value, got {}",
                describe_at(self.input, p + 1)
            )));
        }
        sample.timestamp = Some(parse_timestamp(
            line,
            &self.input[p + 1..ts_end],
            "timestamp",
        )?);
        p = ts_end;
        if p == line.end {
            return end_of_sample(line, sample);
        }
        if b[p..line.end].starts_with(b" # {") {
            sample.exemplar = Some(self.parse_exemplar(line, name, p + 4)?);
            return Ok(sample);
        }
        Err(line.err(format!(
            "expected end of line or exemplar after timestamp, got {:?}",
            truncate(&self.input[p..line.end])
        )))
    }

    /// Parses `labels} value[ ts]` of an exemplar; `p` is just after the `{`.
    fn parse_exemplar(
        &mut self,
        line: &Line<'a>,
        name: &str,
        p: usize,
    ) -> Result<Exemplar, ParseError> {
        if !(name.ends_with("_total") || name.ends_with("_bucket")) {
            return Err(line.err(format!("metric name {name} does not support exemplars")));
        }
        let mut p = parse_label_set(line, p, &mut self.exemplar_labels)?;
        let value = parse_value(line, self.input, p, "exemplar labels")?;
        p = line.token_end(p + 1);
        let mut ex = Exemplar {
            value,
            timestamp: None,
        };
        if p < line.end {
            let ts_end = line.token_end(p + 1);
            if ts_end == p + 1 {
                return Err(line.err("expected exemplar timestamp or end of line"));
            }
            ex.timestamp = Some(parse_timestamp(
                line,
                &self.input[p + 1..ts_end],
                "exemplar timestamp",
            )?);
            p = ts_end;
            if p < line.end {
                return Err(line.err(format!(
                    "expected end of line after exemplar timestamp, got {:?}",
                    truncate(&self.input[p..line.end])
                )));
            }
        }
        if !line.nl {
            return Err(line.err("data does not end with # EOF"));
        }
        Ok(ex)
    }
}

fn end_of_sample<'a>(line: &Line<'_>, s: Sample<'a>) -> Result<Sample<'a>, ParseError> {
    if line.nl {
        Ok(s)
    } else {
        Err(line.err("data does not end with # EOF"))
    }
}

/// Parses ` <value>` starting at `p` (the space).
fn parse_value(line: &Line<'_>, input: &str, p: usize, after: &str) -> Result<f64, ParseError> {
    if line.at(p) != Some(b' ') {
        return Err(line.err(format!(
            "expected value after {after}, got {}",
            describe_at_line(line, input, p)
        )));
    }
    let end = line.token_end(p + 1);
    if end == p + 1 {
        return Err(line.err(format!(
            "expected value after {after}, got {}",
            describe_at_line(line, input, p + 1)
        )));
    }
    let v =
        parse_go_float(&input[p + 1..end]).map_err(|e| line.err(format!("invalid value: {e}")))?;
    Ok(normalize_nan(v))
}

fn parse_timestamp(line: &Line<'_>, tok: &str, what: &str) -> Result<i64, ParseError> {
    let ts = parse_go_float(tok).map_err(|e| line.err(format!("invalid {what}: {e}")))?;
    if !ts.is_finite() {
        return Err(line.err(format!("invalid {what} {tok:?}")));
    }
    Ok((ts * 1000.0) as i64)
}

fn describe_at_line(line: &Line<'_>, input: &str, p: usize) -> String {
    if p >= line.end {
        if line.nl {
            "end of line".into()
        } else {
            "end of input".into()
        }
    } else {
        describe_at(input, p)
    }
}

fn scan_metric_name(line: &Line<'_>, start: usize) -> usize {
    let mut p = start;
    if line.at(p).is_some_and(is_name_start) {
        p += 1;
        while line.at(p).is_some_and(is_name_char) {
            p += 1;
        }
    }
    p
}

/// Parses `name="value",…}` starting just after `{`; returns the position after `}`.
fn parse_label_set(
    line: &Line<'_>,
    mut p: usize,
    out: &mut Vec<LabelSpan>,
) -> Result<usize, ParseError> {
    let mut first = true;
    loop {
        match line.at(p) {
            Some(b'}') => return Ok(p + 1),
            Some(b',') if !first => {
                p += 1;
                if !line.at(p).is_some_and(is_label_start) {
                    return Err(line.err("expected label name after comma"));
                }
            }
            Some(c) if first && is_label_start(c) => {}
            Some(c) => {
                let what = if first {
                    "expected label name or '}'"
                } else {
                    "expected ',' or '}'"
                };
                return Err(line.err(format!("{what} in label set, got {:?}", c as char)));
            }
            None => return Err(line.err("unexpected end of line in label set")),
        }
        first = false;
        let ns = p;
        while line.at(p).is_some_and(is_label_char) {
            p += 1;
        }
        let ne = p;
        if line.at(p) != Some(b'=') {
            return Err(line.err("expected '=' after label name"));
        }
        p += 1;
        if line.at(p) != Some(b'"') {
            return Err(line.err("expected quoted label value after '='"));
        }
        p += 1;
        let vs = p;
        loop {
            match line.at(p) {
                Some(b'"') => break,
                Some(b'\\') => {
                    if line.at(p + 1).is_none() {
                        return Err(line.err("unterminated label value"));
                    }
                    p += 2;
                }
                Some(_) => p += 1,
                None => return Err(line.err("unterminated label value")),
            }
        }
        out.push(LabelSpan {
            name: (ns as u32, ne as u32),
            value: (vs as u32, p as u32),
        });
        p += 1;
    }
}

fn truncate(s: &str) -> Cow<'_, str> {
    if s.len() <= 40 {
        return Cow::Borrowed(s);
    }
    let mut cut = 40;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}…", &s[..cut]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &str) -> Result<Vec<String>, ParseError> {
        let mut p = OpenMetricsParser::new(input);
        let mut out = Vec::new();
        while let Some(e) = p.next_entry()? {
            out.push(match e {
                Entry::Series(s) => {
                    let ls: Vec<String> = p.labels().map(|(n, v)| format!("{n}={v:?}")).collect();
                    let ex = s.exemplar.map(|e| {
                        let el: Vec<String> = p
                            .exemplar_labels()
                            .map(|(n, v)| format!("{n}={v}"))
                            .collect();
                        format!(" ex[{} {} {:?}]", el.join(","), e.value, e.timestamp)
                    });
                    format!(
                        "{} [{}] {} {:?}{} @{}",
                        s.name,
                        ls.join(","),
                        s.value,
                        s.timestamp,
                        ex.unwrap_or_default(),
                        s.line
                    )
                }
                Entry::Type { metric, kind } => format!("TYPE {metric} {}", kind.as_str()),
                Entry::Help { metric, text } => format!("HELP {metric} {text:?}"),
                Entry::Unit { metric, unit } => format!("UNIT {metric} {unit}"),
                Entry::Comment(c) => format!("COMMENT {c}"),
            });
        }
        Ok(out)
    }

    #[test]
    fn parses_metadata_samples_and_exemplars() {
        let input = "# TYPE foo counter\n# UNIT foo_seconds seconds\n# HELP foo Some \\\"help\\\" \\\\ \\n.\n\
foo_total 17 1520879607.789\n\
foo_total{a=\"1\",b=\"x\\\"y\\\\z\\nw\"} 1.5e3\n\
foo_created 1520430000.123\n\
foo_bucket{le=\"+Inf\"} 2 123 # {trace_id=\"abc\"} 0.67 1520879607.1\n\
foo_total 3 # {} 1\n\
bar{} NaN -1.5\n\
baz +Inf\n\
# EOF\n";
        let got = all(input).unwrap();
        let want = vec![
            "TYPE foo counter",
            "UNIT foo_seconds seconds",
            "HELP foo \"Some \\\"help\\\" \\\\ \\n.\"",
            "foo_total [] 17 Some(1520879607789) @4",
            "foo_total [a=\"1\",b=\"x\\\"y\\\\z\\nw\"] 1500 None @5",
            "foo_created [] 1520430000.123 None @6",
            "foo_bucket [le=\"+Inf\"] 2 Some(123000) ex[trace_id=abc 0.67 Some(1520879607100)] @7",
            "foo_total [] 3 None ex[ 1 None] @8",
            "bar [] NaN Some(-1500) @9",
            "baz [] inf None @10",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn eof_rules() {
        assert!(all("# EOF").unwrap().is_empty());
        assert!(all("# EOF\n").unwrap().is_empty());
        let e = all("a 1\n").unwrap_err();
        assert_eq!(
            (e.line, e.msg.as_str()),
            (2, "data does not end with # EOF")
        );
        let e = all("a 1\n# EOF\nb 2\n").unwrap_err();
        assert_eq!((e.line, e.msg.as_str()), (3, "unexpected data after # EOF"));
        let e = all("a 1").unwrap_err();
        assert_eq!(
            (e.line, e.msg.as_str()),
            (1, "data does not end with # EOF")
        );
    }

    #[test]
    fn errors_name_line_and_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("a 1\n\nb 2\n# EOF\n", 2, "not a valid start"),
            ("a 1\n# random comment\n# EOF\n", 2, "invalid comment line"),
            ("a 1\nb{x=\"1\" 2\n# EOF\n", 2, "expected ',' or '}'"),
            (
                "a{x=\"1\",} 2\n# EOF\n",
                1,
                "expected label name after comma",
            ),
            ("a{x=1} 2\n# EOF\n", 1, "expected quoted label value"),
            ("a{x=\"1} 2\n# EOF\n", 1, "unterminated label value"),
            ("a\n# EOF\n", 1, "expected value after metric"),
            ("a  1\n# EOF\n", 1, "expected value after metric"),
            ("a 1x\n# EOF\n", 1, "invalid value"),
            ("a 1 2 3\n# EOF\n", 1, "expected end of line or exemplar"),
            ("a 1 NaN\n# EOF\n", 1, "invalid timestamp"),
            (
                "a 1 # {x=\"y\"} 1\n# EOF\n",
                1,
                "does not support exemplars",
            ),
            (
                "# TYPE a countr\n# EOF\n",
                1,
                "invalid metric type \"countr\"",
            ),
            ("# TYPE a\n# EOF\n", 1, "expected text"),
            ("# UNIT a_bytes seconds\n# EOF\n", 1, "not a suffix"),
            ("# HELP 1a x\n# EOF\n", 1, "expected metric name after HELP"),
            (
                "a{x-y=\"1\"} 1\n# EOF\n",
                1,
                "expected '=' after label name",
            ),
        ];
        for &(input, line, msg) in cases {
            let e = all(input).unwrap_err();
            assert_eq!(e.line, line, "{input:?}: {e}");
            assert!(e.msg.contains(msg), "{input:?}: got {e}, want {msg:?}");
        }
    }

    #[test]
    fn nan_is_normalized() {
        let mut p = OpenMetricsParser::new("a NaN\n# EOF\n");
        match p.next_entry().unwrap() {
            Some(Entry::Series(s)) => assert_eq!(s.value.to_bits(), super::super::NORMAL_NAN),
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod throughput {
    use super::*;

    /// Parses the OpenMetrics fixture (515,480 samples) and prints the rate; run with
    /// `cargo test -p web --release -- --ignored --nocapture om_fixture_throughput`.
    #[test]
    #[ignore = "measurement, not a check"]
    fn om_fixture_throughput() {
        use std::io::Read;
        let shared = std::env::var("IGNIS_SHARED")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared").to_string());
        let path = format!("{shared}/fixtures/prometheus-2.42/openmetrics/metrics.om.gz");
        let mut input = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_string(&mut input)
            .unwrap();
        let start = std::time::Instant::now();
        let mut p = OpenMetricsParser::new(&input);
        let (mut n, mut nl) = (0usize, 0usize);
        while let Some(e) = p.next_entry().unwrap() {
            if let Entry::Series(_) = e {
                n += 1;
                nl += p.labels().map(|(_, v)| v.len()).sum::<usize>();
            }
        }
        let el = start.elapsed();
        assert_eq!(n, 515_480);
        println!(
            "{n} samples ({nl} label bytes) in {el:?}: {:.1} M samples/s, {:.0} MB/s",
            n as f64 / el.as_secs_f64() / 1e6,
            input.len() as f64 / el.as_secs_f64() / 1e6
        );
    }
}
