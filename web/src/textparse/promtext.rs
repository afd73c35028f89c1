//! The Prometheus text exposition format 0.0.4 parser.
//!
//! Format (blanks and tabs may separate any two tokens; blank lines are allowed):
//!
//! ```text
//! # HELP <name> <text>      (text escapes: \\ \n)
//! # TYPE <name> <counter|gauge|histogram|summary|untyped>   (case-insensitive)
//! # any other comment
//! <name>[{<lname>="<lvalue>"[,<lname>="<lvalue>"]*[,]}] <value>[ <timestamp>]
//! ```
//!
//! Metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`. Label
//! values are double-quoted with `\\`, `\"`, `\n` escapes (a raw newline inside is tolerated,
//! as Prometheus does). Values are Go floats; timestamps are integer milliseconds. The last
//! line need not end with a newline; a NUL byte ends the input.

use super::{
    describe_at, is_label_char, is_label_start, is_name_char, is_name_start, normalize_nan,
    parse_go_float, unescape_help, Entry, LabelIter, LabelSpan, MetricType, ParseError, Sample,
};

/// Parser over a Prometheus text-format exposition, borrowing from the input.
#[derive(Debug)]
pub struct PromTextParser<'a> {
    input: &'a str,
    pos: usize,
    /// Line number at `pos`.
    line: usize,
    labels: Vec<LabelSpan>,
}

impl<'a> PromTextParser<'a> {
    /// A parser over `input`.
    pub fn new(input: &'a str) -> Self {
        PromTextParser {
            input,
            pos: 0,
            line: 1,
            labels: Vec::new(),
        }
    }

    /// The labels of the latest [`Entry::Series`], in the order written (no metric name).
    pub fn labels(&self) -> LabelIter<'_, 'a> {
        LabelIter::new(self.input, &self.labels)
    }

    #[inline]
    fn at(&self, p: usize) -> Option<u8> {
        self.input.as_bytes().get(p).copied()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.at(self.pos), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.line, msg)
    }

    /// Position of the end of the current line (the `\n` or end of input).
    fn line_end(&self, from: usize) -> usize {
        let b = self.input.as_bytes();
        memchr::memchr(b'\n', &b[from..]).map_or(b.len(), |i| from + i)
    }

    /// Consumes the newline ending a record, or accepts end of input.
    fn end_record(&mut self, what: &str) -> Result<(), ParseError> {
        self.skip_blanks();
        match self.at(self.pos) {
            None | Some(0) => Ok(()),
            Some(b'\n') => {
                self.pos += 1;
                self.line += 1;
                Ok(())
            }
            Some(_) => Err(self.err(format!("{what}, got {}", describe_at(self.input, self.pos)))),
        }
    }

    fn scan_name(&self, start: usize, first: fn(u8) -> bool, rest: fn(u8) -> bool) -> usize {
        let mut p = start;
        if self.at(p).is_some_and(first) {
            p += 1;
            while self.at(p).is_some_and(rest) {
                p += 1;
            }
        }
        p
    }

    /// The next entry; `Ok(None)` at the end of the input.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        loop {
            self.skip_blanks();
            match self.at(self.pos) {
                None | Some(0) => return Ok(None),
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                }
                Some(b'#') => {
                    if let Some(e) = self.parse_comment()? {
                        return Ok(Some(e));
                    }
                }
                Some(_) => return self.parse_sample().map(|s| Some(Entry::Series(s))),
            }
        }
    }

    /// Parses a line starting with `#`. Returns `None` never; free comments are entries too.
    fn parse_comment(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        let start = self.pos;
        let end = self.line_end(start);
        let rest = &self.input[start + 1..end];
        let after_blank = rest.trim_start_matches([' ', '\t']);
        let kw = if after_blank.len() < rest.len() {
            ["HELP", "TYPE"].into_iter().find(|k| {
                after_blank.starts_with(k)
                    && after_blank
                        .as_bytes()
                        .get(4)
                        .is_some_and(|&c| c == b' ' || c == b'\t')
            })
        } else {
            None
        };
        let Some(kw) = kw else {
            self.pos = end;
            self.end_record("expected end of comment")?;
            return Ok(Some(Entry::Comment(rest)));
        };
        let name_start = end - after_blank.len() + 4;
        let name_start = name_start + self.input[name_start..end].len()
            - self.input[name_start..end]
                .trim_start_matches([' ', '\t'])
                .len();
        let name_end = self.scan_name(name_start, is_name_start, is_name_char);
        if name_end == name_start {
            return Err(self.err(format!(
                "expected metric name after {kw}, got {}",
                describe_at(self.input, name_start)
            )));
        }
        let metric = &self.input[name_start..name_end];
        // The text is the rest of the line minus the one separator character.
        let text = self.input.get(name_end + 1..end).unwrap_or("");
        let entry = if kw == "TYPE" {
            let kind = match text.to_ascii_lowercase().as_str() {
                "counter" => MetricType::Counter,
                "gauge" => MetricType::Gauge,
                "histogram" => MetricType::Histogram,
                "summary" => MetricType::Summary,
                "untyped" => MetricType::Unknown,
                _ => return Err(self.err(format!("invalid metric type {text:?}"))),
            };
            Entry::Type { metric, kind }
        } else {
            Entry::Help {
                metric,
                text: unescape_help(text),
            }
        };
        self.pos = end;
        self.end_record("linebreak expected after metadata")?;
        Ok(Some(entry))
    }

    fn parse_sample(&mut self) -> Result<Sample<'a>, ParseError> {
        let start = self.pos;
        let line = self.line;
        self.labels.clear();
        let name_end = self.scan_name(start, is_name_start, is_name_char);
        if name_end == start {
            return Err(self.err(format!(
                "{} is not a valid start of a metric name",
                describe_at(self.input, start)
            )));
        }
        self.pos = name_end;
        self.skip_blanks();
        if self.at(self.pos) == Some(b'{') {
            self.pos += 1;
            self.parse_label_set()?;
        }
        let series = self.input[start..self.pos].trim_end_matches([' ', '\t']);
        let name = &self.input[start..name_end];
        self.skip_blanks();
        let vs = self.pos;
        while self
            .at(self.pos)
            .is_some_and(|c| !matches!(c, b'{' | b' ' | b'\t' | b'\n'))
        {
            self.pos += 1;
        }
        if self.pos == vs {
            return Err(self.err(format!(
                "expected value after metric, got {}",
                describe_at(self.input, vs)
            )));
        }
        let value = parse_go_float(&self.input[vs..self.pos])
            .map_err(|e| self.err(format!("invalid value: {e}")))?;
        let mut sample = Sample {
            series,
            name,
            value: normalize_nan(value),
            timestamp: None,
            exemplar: None,
            line,
        };
        self.skip_blanks();
        let ts_start = self.pos;
        while self.at(self.pos).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos > ts_start {
            let tok = &self.input[ts_start..self.pos];
            let ts: i64 = tok
                .parse()
                .map_err(|_| self.err(format!("invalid timestamp {tok:?}")))?;
            sample.timestamp = Some(ts);
            self.end_record("expected next entry after timestamp")?;
        } else {
            self.end_record("expected timestamp or new record")?;
        }
        Ok(sample)
    }

    /// Parses labels after `{` up to and including `}`.
    fn parse_label_set(&mut self) -> Result<(), ParseError> {
        loop {
            self.skip_blanks();
            match self.at(self.pos) {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(c) if is_label_start(c) => {}
                _ => {
                    return Err(self.err(format!(
                        "expected label name, got {}",
                        describe_at(self.input, self.pos)
                    )))
                }
            }
            let ns = self.pos;
            let ne = self.scan_name(ns, is_label_start, is_label_char);
            self.pos = ne;
            self.skip_blanks();
            if self.at(self.pos) != Some(b'=') {
                return Err(self.err(format!(
                    "expected '=' after label name, got {}",
                    describe_at(self.input, self.pos)
                )));
            }
            self.pos += 1;
            self.skip_blanks();
            if self.at(self.pos) != Some(b'"') {
                return Err(self.err(format!(
                    "expected label value, got {}",
                    describe_at(self.input, self.pos)
                )));
            }
            self.pos += 1;
            let vs = self.pos;
            let start_line = self.line;
            loop {
                match self.at(self.pos) {
                    Some(b'"') => break,
                    Some(b'\\') if self.at(self.pos + 1).is_some_and(|c| c != b'\n') => {
                        self.pos += 2
                    }
                    Some(b'\n') => {
                        self.line += 1;
                        self.pos += 1;
                    }
                    Some(_) => self.pos += 1,
                    None => return Err(ParseError::new(start_line, "unterminated label value")),
                }
            }
            self.labels.push(LabelSpan {
                name: (ns as u32, ne as u32),
                value: (vs as u32, self.pos as u32),
            });
            self.pos += 1;
            self.skip_blanks();
            if self.at(self.pos) == Some(b',') {
                self.pos += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &str) -> Result<Vec<String>, ParseError> {
        let mut p = PromTextParser::new(input);
        let mut out = Vec::new();
        while let Some(e) = p.next_entry()? {
            out.push(match e {
                Entry::Series(s) => {
                    let ls: Vec<String> = p.labels().map(|(n, v)| format!("{n}={v:?}")).collect();
                    format!(
                        "{} [{}] {} {:?} @{} {:?}",
                        s.name,
                        ls.join(","),
                        s.value,
                        s.timestamp,
                        s.line,
                        s.series
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
    fn parses_text_format() {
        let input = "# HELP go_gc Some help \\\\ \\n \\\"x\\\"\n# TYPE go_gc Summary\n\n\
go_gc{quantile=\"0\"} 3.318e-05\n\
  go_gc { quantile = \"1\" , } 1 1395066363000\n\
#just a comment\n\
metric_without_labels\t12.47\n\
no_ts{a=\"x\\\"y\\ny\\\\z\" b=\"2\"} -Inf\n\
multi{a=\"one\ntwo\"} 1\n\
last 1 2";
        let got = all(input).unwrap();
        let want = vec![
            "HELP go_gc \"Some help \\\\ \\n \\\\\\\"x\\\\\\\"\"",
            "TYPE go_gc summary",
            "go_gc [quantile=\"0\"] 0.00003318 None @4 \"go_gc{quantile=\\\"0\\\"}\"",
            "go_gc [quantile=\"1\"] 1 Some(1395066363000) @5 \"go_gc { quantile = \\\"1\\\" , }\"",
            "COMMENT just a comment",
            "metric_without_labels [] 12.47 None @7 \"metric_without_labels\"",
            "no_ts [a=\"x\\\"y\\ny\\\\z\",b=\"2\"] -inf None @8 \"no_ts{a=\\\"x\\\\\\\"y\\\\ny\\\\\\\\z\\\" b=\\\"2\\\"}\"",
            "multi [a=\"one\\ntwo\"] 1 None @9 \"multi{a=\\\"one\\ntwo\\\"}\"",
            "last [] 1 Some(2) @11 \"last\"",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn errors_name_line_and_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("a 1\n{b=\"1\"} 2\n", 2, "not a valid start"),
            ("a 1\nb\n", 2, "expected value after metric"),
            ("a 1\nb 1 -5\n", 2, "expected timestamp or new record"),
            ("b 1 5 6\n", 1, "expected next entry after timestamp"),
            ("b{a=1} 2\n", 1, "expected label value"),
            ("b{a} 2\n", 1, "expected '='"),
            ("b{1=\"x\"} 2\n", 1, "expected label name"),
            ("b{a=\"x} 2\n", 1, "unterminated label value"),
            ("\n\n# TYPE a whatever\n", 3, "invalid metric type"),
            ("# HELP 9 x\n", 1, "expected metric name after HELP"),
            ("b zz\n", 1, "invalid value"),
            ("b 1 99999999999999999999\n", 1, "invalid timestamp"),
        ];
        for &(input, line, msg) in cases {
            let e = all(input).unwrap_err();
            assert_eq!(e.line, line, "{input:?}: {e}");
            assert!(e.msg.contains(msg), "{input:?}: got {e}, want {msg:?}");
        }
    }
}
