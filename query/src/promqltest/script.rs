//! Parser for the PromQL test-script language (`.test` files of Prometheus's `promqltest`).
//!
//! A file is a list of commands separated by empty lines (a comment line `# …` counts as
//! empty): `load <interval>` / `load_with_nhcb <interval>` with series lines in the series
//! notation (`name{l="v"} 1+2x3 _ stale`), `clear`, and `eval instant at <t> <expr>` /
//! `eval range from <s> to <e> step <d> <expr>` followed by `expect …` lines, a scalar line or
//! expected series lines. See `shared/conformance/README.md` for the full description.

use tsdb::chunkenc::stale_nan;
use tsdb::{Label, Labels};

/// One slot of an expanded series sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum SeqValue {
    /// No sample in this slot (`_`).
    Omitted,
    /// A float sample (stale markers included).
    Float(f64),
    /// A native histogram sample; its value is not modelled here.
    Histogram,
}

/// A series line: labels and expanded values.
#[derive(Clone, Debug)]
pub struct SeriesLine {
    /// The series labels (`__name__` included).
    pub labels: Labels,
    /// One value per slot.
    pub values: Vec<SeqValue>,
    /// Start-timestamp offsets per slot (ms, relative to the sample time), from an `@st` line.
    pub start_offsets: Option<Vec<Option<i64>>>,
}

/// Which annotation or failure an `expect` line is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectKind {
    /// `expect fail`
    Fail,
    /// `expect warn`
    Warn,
    /// `expect no_warn`
    NoWarn,
    /// `expect info`
    Info,
    /// `expect no_info`
    NoInfo,
    /// `expect ordered`
    Ordered,
}

/// How an expected message is matched.
#[derive(Clone, Debug)]
pub enum MsgMatch {
    /// Any message.
    Any,
    /// The exact message.
    Exact(String),
    /// An unanchored regular expression.
    Regex(regex::Regex),
}

impl MsgMatch {
    /// Whether `msg` satisfies this expectation.
    pub fn matches(&self, msg: &str) -> bool {
        match self {
            MsgMatch::Any => true,
            MsgMatch::Exact(s) => s == msg,
            MsgMatch::Regex(r) => r.is_match(msg),
        }
    }
}

/// When an eval runs.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalTime {
    /// `eval instant at <t>`
    Instant(i64),
    /// `eval range from <s> to <e> step <d>`
    Range {
        /// Start (ms).
        start: i64,
        /// End (ms).
        end: i64,
        /// Step (ms).
        step: i64,
    },
}

/// One `eval` command.
#[derive(Clone, Debug)]
pub struct EvalCmd {
    /// 1-based line number of the header.
    pub line: usize,
    /// The PromQL expression text.
    pub expr: String,
    /// When it is evaluated.
    pub time: EvalTime,
    /// Expected failure, if any.
    pub fail: Option<MsgMatch>,
    /// `expect warn` lines.
    pub warn: Vec<MsgMatch>,
    /// `expect no_warn` present.
    pub no_warn: bool,
    /// `expect info` lines.
    pub info: Vec<MsgMatch>,
    /// `expect no_info` present.
    pub no_info: bool,
    /// Result order is checked.
    pub ordered: bool,
    /// `expect range vector from s to e step d`.
    pub range_vector: Option<(i64, i64, i64)>,
    /// `expect string "…"`.
    pub string: Option<String>,
    /// A bare number line: the expected scalar.
    pub scalar: Option<f64>,
    /// Expected series.
    pub series: Vec<SeriesLine>,
    /// Some expected value is a native histogram.
    pub expects_histograms: bool,
}

/// One command of a script.
#[derive(Clone, Debug)]
pub enum Command {
    /// `load` / `load_with_nhcb`.
    Load {
        /// Interval between slots (ms).
        interval: i64,
        /// Whether classic histograms are also converted to NHCB series.
        nhcb: bool,
        /// The series lines (later duplicates replace earlier ones).
        series: Vec<SeriesLine>,
    },
    /// `clear`
    Clear,
    /// `eval …`
    Eval(Box<EvalCmd>),
}

/// A parse error with its line number.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

fn err<T>(line: usize, msg: impl Into<String>) -> Result<T, ScriptError> {
    Err(ScriptError {
        line,
        msg: msg.into(),
    })
}

/// Parses a Prometheus duration (`1h30m`, `10s53ms`, `0`) into milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    let mut last_unit = 0usize; // index+1 into UNITS of the last unit used
    while i < b.len() {
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if st == i {
            return None;
        }
        let n: i64 = s[st..i].parse().ok()?;
        let ust = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ust..i];
        let idx = UNITS.iter().position(|(u, _)| *u == unit)?;
        if idx < last_unit {
            return None;
        }
        last_unit = idx + 1;
        total = total.checked_add(n.checked_mul(UNITS[idx].1)?)?;
    }
    Some(total)
}

/// Parses a float the way the script language does (`Inf`, `NaN`, signs, exponents).
pub fn parse_float(s: &str) -> Option<f64> {
    let t = s.strip_prefix('+').unwrap_or(s);
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        "nan" | "-nan" => return Some(f64::NAN),
        _ => {}
    }
    if lower.starts_with("0x") || lower.starts_with("-0x") {
        return None;
    }
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    t.parse::<f64>().ok()
}

/// Parses a number line the way upstream does (Go integer with base prefix, else float).
pub fn parse_number(s: &str) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = body.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(bn) = lower.strip_prefix("0b") {
        i64::from_str_radix(bn, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else if !lower.is_empty() && lower.bytes().all(|c| c.is_ascii_digit()) {
        lower.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(n) = int {
        return Some(if neg { -(n as f64) } else { n as f64 });
    }
    let f = parse_float(body)?;
    Some(if neg { -f } else { f })
}

/// Unquotes a Go string literal (`"…"`, `'…'` or `` `…` ``) starting at the beginning of `s`;
/// returns the value and the number of bytes consumed.
pub fn unquote_prefix(s: &str) -> Option<(String, usize)> {
    let mut chars = s.char_indices();
    let (_, q) = chars.next()?;
    if q != '"' && q != '\'' && q != '`' {
        return None;
    }
    let mut out = String::new();
    if q == '`' {
        let end = s[1..].find('`')?;
        return Some((s[1..1 + end].to_string(), end + 2));
    }
    while let Some((i, c)) = chars.next() {
        if c == q {
            return Some((out, i + 1));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let (_, e) = chars.next()?;
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut hex = String::new();
                for _ in 0..n {
                    hex.push(chars.next()?.1);
                }
                let v = u32::from_str_radix(&hex, 16).ok()?;
                out.push(char::from_u32(v)?);
            }
            '0'..='7' => {
                let mut oct = String::from(e);
                for _ in 0..2 {
                    oct.push(chars.next()?.1);
                }
                let v = u32::from_str_radix(&oct, 8).ok()?;
                out.push(char::from_u32(v)?);
            }
            _ => return None,
        }
    }
    None
}

/// Splits a series line into labels and the rest (the values text).
pub fn parse_series_desc(s: &str) -> Result<(Labels, &str), String> {
    let s = s.trim_start();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    let name = &s[..i];
    let mut labels: Vec<Label> = Vec::new();
    if !name.is_empty() {
        labels.push(Label::new("__name__", name));
    }
    let mut rest = &s[i..];
    if rest.starts_with('{') {
        rest = &rest[1..];
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            // label name (possibly quoted)
            let lname: String;
            if rest.starts_with('"') || rest.starts_with('\'') || rest.starts_with('`') {
                let (v, n) = unquote_prefix(rest).ok_or("bad quoted label name")?;
                lname = v;
                rest = &rest[n..];
            } else {
                let rb = rest.as_bytes();
                let mut j = 0;
                while j < rb.len()
                    && (rb[j].is_ascii_alphanumeric() || rb[j] == b'_' || rb[j] == b':')
                {
                    j += 1;
                }
                if j == 0 {
                    return Err(format!("bad label name in {s:?}"));
                }
                lname = rest[..j].to_string();
                rest = &rest[j..];
            }
            rest = rest.trim_start();
            if rest.starts_with(',') || rest.starts_with('}') {
                // a bare quoted metric name inside braces
                labels.push(Label::new("__name__", lname));
            } else {
                rest = rest
                    .strip_prefix('=')
                    .ok_or_else(|| format!("expected '=' in {s:?}"))?;
                rest = rest.trim_start();
                let (v, n) =
                    unquote_prefix(rest).ok_or_else(|| format!("bad label value in {s:?}"))?;
                rest = &rest[n..];
                labels.push(Label::new(lname, v));
            }
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            }
        }
    } else if name.is_empty() {
        return Err(format!("bad series description {s:?}"));
    }
    Ok((Labels::new(labels), rest))
}

/// Splits a values text into items, keeping `{{…}}` histogram literals (and their
/// `+{{…}}xN` continuations) in one item.
fn split_items(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c == '{' {
            depth += 1;
        } else if c == '}' {
            depth -= 1;
        }
        if (c == ' ' || c == '\t') && depth == 0 {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
        i += 1;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Expands a values text into slots.
pub fn parse_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    for item in split_items(s) {
        if item.contains("{{") {
            // histogram literal, optionally `{{…}}xN` or `{{H}}±{{D}}xN`
            let n = match item.rfind("}}") {
                Some(p) => {
                    let tail = &item[p + 2..];
                    if let Some(k) = tail.strip_prefix('x') {
                        k.parse::<usize>()
                            .map_err(|_| format!("bad repeat in {item:?}"))?
                            + 1
                    } else if tail.is_empty() {
                        1
                    } else {
                        return Err(format!("bad histogram item {item:?}"));
                    }
                }
                None => return Err(format!("unterminated histogram {item:?}")),
            };
            out.extend(std::iter::repeat_n(SeqValue::Histogram, n));
            continue;
        }
        if item == "_" {
            out.push(SeqValue::Omitted);
            continue;
        }
        if let Some(k) = item.strip_prefix("_x") {
            let k: usize = k.parse().map_err(|_| format!("bad item {item:?}"))?;
            out.extend(std::iter::repeat_n(SeqValue::Omitted, k));
            continue;
        }
        if item == "stale" {
            out.push(SeqValue::Float(stale_nan()));
            continue;
        }
        if let Some(v) = parse_float(&item) {
            out.push(SeqValue::Float(v));
            continue;
        }
        // A+BxK, A-BxK, AxK
        let (body, times) = match item.rfind('x') {
            Some(p) => (&item[..p], &item[p + 1..]),
            None => return Err(format!("bad value {item:?}")),
        };
        let k: usize = times
            .parse()
            .map_err(|_| format!("bad repeat count in {item:?}"))?;
        // find the operator: a + or - not at position 0 and not after 'e'/'E'
        let bb = body.as_bytes();
        let mut op_pos = None;
        for j in 1..bb.len() {
            if (bb[j] == b'+' || bb[j] == b'-') && !matches!(bb[j - 1], b'e' | b'E' | b'+' | b'-') {
                op_pos = Some(j);
                break;
            }
        }
        match op_pos {
            None => {
                let v = parse_float(body).ok_or_else(|| format!("bad value {item:?}"))?;
                out.extend(std::iter::repeat_n(SeqValue::Float(v), k + 1));
            }
            Some(j) => {
                let a = parse_float(&body[..j]).ok_or_else(|| format!("bad start in {item:?}"))?;
                let d =
                    parse_float(&body[j + 1..]).ok_or_else(|| format!("bad step in {item:?}"))?;
                let d = if bb[j] == b'-' { -d } else { d };
                let mut v = a;
                out.push(SeqValue::Float(v));
                for _ in 0..k {
                    v += d;
                    out.push(SeqValue::Float(v));
                }
            }
        }
    }
    Ok(out)
}

/// Parses a signed duration (`-1m`, `+30s`, `-0ms`) into milliseconds.
fn parse_signed_duration(s: &str) -> Option<i64> {
    match s.strip_prefix('-') {
        Some(r) => parse_duration(r).map(|d| -d),
        None => parse_duration(s.strip_prefix('+').unwrap_or(s)),
    }
}

/// Expands the items of an `@st` line: `_`, `_xK`, `<dur>`, `<dur>xK`, `<dur>±<dur>xK`.
pub fn parse_st_values(s: &str) -> Result<Vec<Option<i64>>, String> {
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        if item == "_" {
            out.push(None);
            continue;
        }
        if let Some(k) = item.strip_prefix("_x") {
            let k: usize = k.parse().map_err(|_| format!("bad @st item {item:?}"))?;
            out.extend(std::iter::repeat_n(None, k));
            continue;
        }
        if let Some(d) = parse_signed_duration(item) {
            out.push(Some(d));
            continue;
        }
        let p = item
            .rfind('x')
            .ok_or_else(|| format!("bad @st item {item:?}"))?;
        let k: usize = item[p + 1..]
            .parse()
            .map_err(|_| format!("bad @st repeat in {item:?}"))?;
        let body = &item[..p];
        let b = body.as_bytes();
        let op = (1..b.len()).find(|&j| b[j] == b'+' || b[j] == b'-');
        match op {
            None => {
                let d =
                    parse_signed_duration(body).ok_or_else(|| format!("bad @st item {item:?}"))?;
                out.extend(std::iter::repeat_n(Some(d), k + 1));
            }
            Some(j) => {
                let a = parse_signed_duration(&body[..j])
                    .ok_or_else(|| format!("bad @st start {item:?}"))?;
                let d = parse_duration(&body[j + 1..])
                    .ok_or_else(|| format!("bad @st step {item:?}"))?;
                let d = if b[j] == b'-' { -d } else { d };
                for n in 0..=k as i64 {
                    out.push(Some(a + n * d));
                }
            }
        }
    }
    Ok(out)
}

fn parse_series_line(line: &str) -> Result<SeriesLine, String> {
    let (labels, rest) = parse_series_desc(line)?;
    let values = parse_values(rest)?;
    Ok(SeriesLine {
        labels,
        values,
        start_offsets: None,
    })
}

fn parse_expect(line: &str, ln: usize) -> Result<(ExpectKind, MsgMatch), ScriptError> {
    let rest = line["expect".len()..].trim_start();
    let (word, tail) = match rest.find(char::is_whitespace) {
        Some(p) => (&rest[..p], rest[p..].trim()),
        None => (rest, ""),
    };
    let kind = match word {
        "fail" => ExpectKind::Fail,
        "warn" => ExpectKind::Warn,
        "no_warn" => ExpectKind::NoWarn,
        "info" => ExpectKind::Info,
        "no_info" => ExpectKind::NoInfo,
        "ordered" => ExpectKind::Ordered,
        _ => return err(ln, format!("invalid expect line {line:?}")),
    };
    let m = if tail.is_empty() {
        MsgMatch::Any
    } else if let Some(m) = tail.strip_prefix("msg:") {
        MsgMatch::Exact(m.trim().to_string())
    } else if let Some(r) = tail.strip_prefix("regex:") {
        MsgMatch::Regex(regex::Regex::new(r.trim()).map_err(|e| ScriptError {
            line: ln,
            msg: e.to_string(),
        })?)
    } else {
        return err(ln, format!("invalid expect line {line:?}"));
    };
    Ok((kind, m))
}

fn dur(s: &str, ln: usize) -> Result<i64, ScriptError> {
    parse_duration(s).ok_or_else(|| ScriptError {
        line: ln,
        msg: format!("invalid duration {s:?}"),
    })
}

/// Parses a whole script.
pub fn parse_script(text: &str) -> Result<Vec<Command>, ScriptError> {
    let lines: Vec<String> = text
        .split('\n')
        .map(|l| {
            let t = l.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_string()
            }
        })
        .collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let ln = i + 1;
        let word = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut body_end = i + 1;
        while body_end < lines.len() && !lines[body_end].is_empty() {
            body_end += 1;
        }
        if word == "clear" {
            cmds.push(Command::Clear);
            i += 1;
            continue;
        }
        if word.starts_with("load") {
            let nhcb = word == "load_with_nhcb";
            let arg = l[word.len()..].trim();
            let interval = dur(arg, ln)?;
            let mut series: Vec<SeriesLine> = Vec::new();
            let mut pending_st: Option<(Labels, Vec<Option<i64>>)> = None;
            for (k, bl) in lines[i + 1..body_end].iter().enumerate() {
                let first = bl.split_whitespace().next().unwrap_or("");
                if first.ends_with("@st") {
                    let st_line = bl.replacen("@st", "", 1);
                    let (labels, rest) = parse_series_desc(&st_line).map_err(|m| ScriptError {
                        line: i + 2 + k,
                        msg: m,
                    })?;
                    let offs = parse_st_values(rest).map_err(|m| ScriptError {
                        line: i + 2 + k,
                        msg: m,
                    })?;
                    pending_st = Some((labels, offs));
                    continue;
                }
                let mut s = parse_series_line(bl).map_err(|m| ScriptError {
                    line: i + 2 + k,
                    msg: m,
                })?;
                if let Some((l, offs)) = pending_st.take() {
                    if l != s.labels || offs.len() != s.values.len() {
                        return err(
                            i + 2 + k,
                            "@st line does not match the following series line",
                        );
                    }
                    s.start_offsets = Some(offs);
                }
                if let Some(p) = series.iter().position(|x| x.labels == s.labels) {
                    series[p] = s;
                } else {
                    series.push(s);
                }
            }
            cmds.push(Command::Load {
                interval,
                nhcb,
                series,
            });
            i = body_end;
            continue;
        }
        if word.starts_with("eval") {
            let toks: Vec<&str> = l.split_whitespace().collect();
            let suffix = word.strip_prefix("eval").unwrap_or("");
            let mut cmd = EvalCmd {
                line: ln,
                expr: String::new(),
                time: EvalTime::Instant(0),
                fail: None,
                warn: vec![],
                no_warn: false,
                info: vec![],
                no_info: false,
                ordered: false,
                range_vector: None,
                string: None,
                scalar: None,
                series: vec![],
                expects_histograms: false,
            };
            match suffix {
                "" => {}
                "_fail" => cmd.fail = Some(MsgMatch::Any),
                "_warn" => cmd.warn.push(MsgMatch::Any),
                "_info" => cmd.info.push(MsgMatch::Any),
                "_ordered" => cmd.ordered = true,
                _ => return err(ln, format!("invalid command {word:?}")),
            }
            // header: find positions of tokens in the original line to take the rest as expr
            let rest_after = |n: usize| -> &str {
                let mut s = l.as_str();
                for _ in 0..n {
                    s = s.trim_start();
                    let p = s.find(char::is_whitespace).unwrap_or(s.len());
                    s = &s[p..];
                }
                s.trim()
            };
            match toks.get(1).copied() {
                Some("instant") => {
                    if toks.get(2) != Some(&"at") || toks.len() < 5 {
                        return err(ln, "invalid instant eval header");
                    }
                    cmd.time = EvalTime::Instant(dur(toks[3], ln)?);
                    cmd.expr = rest_after(4).to_string();
                }
                Some("range") => {
                    if toks.len() < 9 || toks[2] != "from" || toks[4] != "to" || toks[6] != "step" {
                        return err(ln, "invalid range eval header");
                    }
                    let (s, e, st) = (dur(toks[3], ln)?, dur(toks[5], ln)?, dur(toks[7], ln)?);
                    if e < s {
                        return err(ln, "end before start");
                    }
                    cmd.time = EvalTime::Range {
                        start: s,
                        end: e,
                        step: st,
                    };
                    cmd.expr = rest_after(8).to_string();
                }
                _ => return err(ln, "invalid eval header"),
            }
            let mut j = i + 1;
            while j < body_end {
                let bl = lines[j].as_str();
                let bln = j + 1;
                j += 1;
                if let Some(r) = bl.strip_prefix("expected_fail_message") {
                    cmd.fail = Some(MsgMatch::Exact(r.trim().to_string()));
                    break;
                }
                if let Some(r) = bl.strip_prefix("expected_fail_regexp") {
                    let re = regex::Regex::new(r.trim()).map_err(|e| ScriptError {
                        line: bln,
                        msg: e.to_string(),
                    })?;
                    cmd.fail = Some(MsgMatch::Regex(re));
                    break;
                }
                if let Some(r) = bl.strip_prefix("expect range vector") {
                    let t: Vec<&str> = r.split_whitespace().collect();
                    if t.len() != 6 || t[0] != "from" || t[2] != "to" || t[4] != "step" {
                        return err(bln, "invalid expect range vector line");
                    }
                    let (s, e, st) = (dur(t[1], bln)?, dur(t[3], bln)?, dur(t[5], bln)?);
                    cmd.range_vector = Some((s, e, st));
                    cmd.time = EvalTime::Instant(e);
                    continue;
                }
                if let Some(r) = bl.strip_prefix("expect string") {
                    let (v, _) = unquote_prefix(r.trim()).ok_or(ScriptError {
                        line: bln,
                        msg: "bad string".into(),
                    })?;
                    cmd.string = Some(v);
                    continue;
                }
                if bl.split(' ').next() == Some("expect") {
                    let (k, m) = parse_expect(bl, bln)?;
                    match k {
                        ExpectKind::Fail => cmd.fail = Some(m),
                        ExpectKind::Warn => cmd.warn.push(m),
                        ExpectKind::NoWarn => cmd.no_warn = true,
                        ExpectKind::Info => cmd.info.push(m),
                        ExpectKind::NoInfo => cmd.no_info = true,
                        ExpectKind::Ordered => cmd.ordered = true,
                    }
                    continue;
                }
                if let Some(v) = parse_number(bl) {
                    cmd.scalar = Some(v);
                    break;
                }
                let s = parse_series_line(bl).map_err(|m| ScriptError { line: bln, msg: m })?;
                if s.values.contains(&SeqValue::Histogram) {
                    cmd.expects_histograms = true;
                }
                cmd.series.push(s);
            }
            cmds.push(Command::Eval(Box::new(cmd)));
            i = body_end;
            continue;
        }
        return err(ln, format!("invalid command {l:?}"));
    }
    Ok(cmds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("10s53ms"), Some(10_053));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("30s1m"), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn values_expand() {
        let v = parse_values("0+10x2 _ 1x1 _x2 stale -2-1x1 Inf").unwrap();
        assert_eq!(v.len(), 3 + 1 + 2 + 2 + 1 + 2 + 1);
        assert_eq!(v[0], SeqValue::Float(0.0));
        assert_eq!(v[2], SeqValue::Float(20.0));
        assert_eq!(v[3], SeqValue::Omitted);
        assert_eq!(v[9], SeqValue::Float(-2.0));
        assert_eq!(v[10], SeqValue::Float(-3.0));
        assert_eq!(v[11], SeqValue::Float(f64::INFINITY));
        let h = parse_values("1 {{schema:0 sum:1 count:1}}x2 {{count:1}}+{{count:1}}x1").unwrap();
        assert_eq!(h.len(), 1 + 3 + 2);
    }

    #[test]
    fn series_desc() {
        let (l, rest) = parse_series_desc(r#"foo{a="b", c='d',} 1 2"#).unwrap();
        assert_eq!(
            l,
            Labels::from_pairs(&[("__name__", "foo"), ("a", "b"), ("c", "d")])
        );
        assert_eq!(rest.trim(), "1 2");
        let (l, _) = parse_series_desc(r#"{__name__="x", y="a\"b"} 1"#).unwrap();
        assert_eq!(l.get("y"), Some("a\"b"));
    }

    #[test]
    fn script_blocks() {
        let s = "load 1m\n  m{a=\"1\"} 1 2\n\n# c\neval instant at 1m m\n  expect no_warn\n  m{a=\"1\"} 2\n\neval range from 0 to 1m step 1m m\n#x\n";
        let c = parse_script(s).unwrap();
        assert_eq!(c.len(), 3);
        match &c[1] {
            Command::Eval(e) => {
                assert_eq!(e.expr, "m");
                assert!(e.no_warn);
                assert_eq!(e.series.len(), 1);
            }
            _ => panic!("not an eval"),
        }
        assert_eq!(parse_number("0x10"), Some(16.0));
        assert_eq!(
            parse_st_values("_ -30s-1mx2 0x1 _x2").unwrap(),
            vec![
                None,
                Some(-30_000),
                Some(-90_000),
                Some(-150_000),
                Some(0),
                Some(0),
                None,
                None
            ]
        );
        assert_eq!(parse_number("-0.5"), Some(-0.5));
    }
}
