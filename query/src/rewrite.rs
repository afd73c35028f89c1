//! A thin layer in front of `promql-parser` for the experimental duration expressions it
//! cannot parse (Prometheus's `promql-duration-expr` feature).
//!
//! Duration expressions only depend on constants and on the query's step and range, which
//! are known before parsing, so they are folded to plain millisecond literals in the query
//! text:
//!
//! * inside range and subquery brackets: `[29m+60s]`, `[1800]`, `[2m*(10+5)]`,
//!   `[step()+1ms]`, `[29s+1s:20*500ms]`, `[min_of(step()+1, 1h)]` → `[1800000ms]` …;
//! * after `offset`: one operand — a signed literal, a parenthesised expression or a
//!   function call (`offset (100 + 2)`, `offset -step()*2` = `(offset -step()) * 2`,
//!   `offset min_of(step(), 1s)`) → `offset 102000ms`, `offset -5000ms`.
//!
//! Operators: `+ - * / % ^` with PromQL precedence (`^` right-associative and above unary
//! minus), parentheses, plain numbers meaning seconds, duration literals (`1h30m`, `500ms`),
//! and the functions `step()`, `range()`, `min_of(a, b)`, `max_of(a, b)` (any letter case).
//! The rewrite is only tried when the original text does not parse, so queries the parser
//! accepts are never touched.

use promql_parser::parser::{self, Expr};

/// Parses `query`; when the parser rejects it, folds duration expressions using the query's
/// `step_ms` and `range_ms` (0 for instant queries) and parses again. On failure the
/// original parse error is returned.
pub fn parse_query(query: &str, step_ms: i64, range_ms: i64) -> Result<Expr, String> {
    match parser::parse(query) {
        Ok(e) => Ok(e),
        Err(orig) => {
            let text =
                rewrite_durations(query, step_ms, range_ms).unwrap_or_else(|| query.to_string());
            let text = rewrite_extended_selectors(&text);
            let text = rewrite_info_selectors(&text);
            if text == query {
                return Err(orig);
            }
            parser::parse(&text).map_err(|_| orig)
        }
    }
}

/// Name of the marker matcher added to `info()`'s label selector when all its matchers
/// match the empty string (the parser rejects such a selector); `info()` ignores it.
pub const INFO_MARKER_LABEL: &str = "__ignis_info_selector__";

/// Adds [`INFO_MARKER_LABEL`] to the `{…}` selector given as `info()`'s second argument, so a
/// selector like `{data=~".*"}` parses.
pub fn rewrite_info_selectors(query: &str) -> String {
    let b = query.as_bytes();
    let mut out = String::with_capacity(query.len() + 32);
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if is_word_at(b, i, "info") {
            let mut j = i + 4;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < b.len() && b[j] == b'(' {
                // find the top-level comma and the closing parenthesis
                let (mut depth, mut k, mut comma) = (0i32, j, None);
                let mut quote: Option<u8> = None;
                while k < b.len() {
                    let c = b[k];
                    if let Some(q) = quote {
                        if c == b'\\' {
                            k += 1;
                        } else if c == q {
                            quote = None;
                        }
                    } else {
                        match c {
                            b'"' | b'\'' | b'`' => quote = Some(c),
                            b'(' | b'{' | b'[' => depth += 1,
                            b')' | b'}' | b']' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            b',' if depth == 1 && comma.is_none() => comma = Some(k),
                            _ => {}
                        }
                    }
                    k += 1;
                }
                if let Some(c) = comma {
                    let mut m = c + 1;
                    while m < k && b[m].is_ascii_whitespace() {
                        m += 1;
                    }
                    if m < k && b[m] == b'{' {
                        out.push_str(&query[copied..=m]);
                        out.push_str(INFO_MARKER_LABEL);
                        out.push_str("=\"1\", ");
                        copied = m + 1;
                    }
                }
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&query[copied..]);
    out
}

/// Name of the marker matcher that carries an `anchored` / `smoothed` modifier through the
/// parser; the evaluator removes it before selecting.
pub const EXT_MODIFIER_LABEL: &str = "__ignis_range_modifier__";

/// Moves the experimental `anchored` / `smoothed` selector modifiers (which the parser
/// rejects) into a marker matcher on the selector: `m{a="b"}[1m] anchored` becomes
/// `m{__ignis_range_modifier__="anchored",a="b"}[1m]`, `m offset 1m smoothed` becomes
/// `m{__ignis_range_modifier__="smoothed"} offset 1m`.
pub fn rewrite_extended_selectors(query: &str) -> String {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(concat!(
            r"([A-Za-z_:][A-Za-z0-9_:]*)?(\{[^{}]*\})?(\[[^\]]*\])?",
            r"((?:\s+(?:offset\s+[-+]?[0-9A-Za-z.]+|@\s+[-+]?[0-9.]+|@\s+(?:start|end)\(\)))*)",
            r"\s+(anchored|smoothed)\b"
        ))
        .expect("static regex")
    });
    re.replace_all(query, |c: &regex::Captures| {
        let name = c.get(1).map_or("", |m| m.as_str());
        let inner = c.get(2).map_or("", |m| {
            m.as_str().trim_start_matches('{').trim_end_matches('}')
        });
        let range = c.get(3).map_or("", |m| m.as_str());
        let mods = c.get(4).map_or("", |m| m.as_str());
        let kw = &c[5];
        let sep = if inner.trim().is_empty() { "" } else { "," };
        format!("{name}{{{EXT_MODIFIER_LABEL}=\"{kw}\"{sep}{inner}}}{range}{mods}")
    })
    .into_owned()
}

/// Folds the duration expressions of `query` into millisecond literals; `None` when an
/// expression cannot be evaluated.
pub fn rewrite_durations(query: &str, step_ms: i64, range_ms: i64) -> Option<String> {
    let b = query.as_bytes();
    let mut out = String::with_capacity(query.len());
    let mut i = 0;
    let ctx = Ctx {
        step: step_ms as f64 / 1000.0,
        range: range_ms as f64 / 1000.0,
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push_str(&query[start..i]);
            }
            b'#' => {
                let start = i;
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                out.push_str(&query[start..i]);
            }
            b'[' => {
                let close = find_close(b, i)?;
                let inner = &query[i + 1..close];
                let parts: Vec<&str> = split_top_colon(inner);
                out.push('[');
                for (k, p) in parts.iter().enumerate() {
                    if k > 0 {
                        out.push(':');
                    }
                    if p.trim().is_empty() || is_plain_duration(p.trim()) {
                        out.push_str(p);
                    } else {
                        let v = eval_full(p, &ctx)?;
                        out.push_str(&secs_to_literal(v)?);
                    }
                }
                out.push(']');
                i = close + 1;
            }
            _ if is_word_at(b, i, "offset") => {
                out.push_str("offset");
                i += 6;
                let ws_start = i;
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                out.push_str(&query[ws_start..i]);
                let mut p = Parser {
                    s: &b[i..],
                    pos: 0,
                    ctx: &ctx,
                };
                let v = p.unary_operand()?;
                let consumed = p.pos;
                let text = &query[i..i + consumed];
                if is_plain_duration(text.trim())
                    || is_plain_duration(text.trim().trim_start_matches('-'))
                {
                    out.push_str(text);
                } else {
                    out.push_str(&secs_to_literal(v)?);
                    if text.ends_with(char::is_whitespace) {
                        out.push(' ');
                    }
                }
                i += consumed;
            }
            _ => {
                let ch = query[i..].chars().next()?;
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Some(out)
}

struct Ctx {
    step: f64,
    range: f64,
}

fn is_word_at(b: &[u8], i: usize, w: &str) -> bool {
    let wb = w.as_bytes();
    if i + wb.len() > b.len() || !b[i..i + wb.len()].eq_ignore_ascii_case(wb) {
        return false;
    }
    let before_ok =
        i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':');
    let after = b.get(i + wb.len()).copied().unwrap_or(b' ');
    before_ok && !(after.is_ascii_alphanumeric() || after == b'_' || after == b':')
}

fn find_close(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (k, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

fn split_top_colon(s: &str) -> Vec<&str> {
    let mut depth = 0i32;
    for (k, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' if depth == 0 => return vec![&s[..k], &s[k + 1..]],
            _ => {}
        }
    }
    vec![s]
}

/// Whether `s` is a duration literal the parser accepts as is (`5m`, `1h30m`, `500ms`).
fn is_plain_duration(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !b[0].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    let mut saw_unit = false;
    while i < b.len() {
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if st == i {
            return false;
        }
        let us = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        if !matches!(&s[us..i], "y" | "w" | "d" | "h" | "m" | "s" | "ms") {
            return false;
        }
        saw_unit = true;
    }
    saw_unit
}

fn secs_to_literal(v: f64) -> Option<String> {
    if !v.is_finite() {
        return None;
    }
    let ms = (v * 1000.0).round() as i64;
    if ms == 0 {
        // the parser rejects `0ms` but accepts a bare `0`
        return Some("0".to_string());
    }
    Some(if ms < 0 {
        format!("-{}ms", -ms)
    } else {
        format!("{ms}ms")
    })
}

fn eval_full(s: &str, ctx: &Ctx) -> Option<f64> {
    let mut p = Parser {
        s: s.as_bytes(),
        pos: 0,
        ctx,
    };
    let v = p.expr(0)?;
    p.ws();
    (p.pos == p.s.len()).then_some(v)
}

/// A precedence-climbing evaluator over seconds.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    ctx: &'a Ctx,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    /// Binary operators with precedence: + - (1), * / % (2), ^ (4, right-assoc).
    fn expr(&mut self, min_prec: u8) -> Option<f64> {
        let mut lhs = self.unary()?;
        while let Some(op @ (b'+' | b'-' | b'*' | b'/' | b'%' | b'^')) = self.peek() {
            let prec = match op {
                b'+' | b'-' => 1,
                b'*' | b'/' | b'%' => 2,
                _ => 4,
            };
            if prec < min_prec {
                break;
            }
            self.pos += 1;
            let next_min = if op == b'^' { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = match op {
                b'+' => lhs + rhs,
                b'-' => lhs - rhs,
                b'*' => lhs * rhs,
                b'/' => lhs / rhs,
                b'%' => lhs % rhs,
                _ => lhs.powf(rhs),
            };
        }
        Some(lhs)
    }

    /// A unary-signed operand; `^` binds tighter than the sign (`-2^2` = -4).
    fn unary(&mut self) -> Option<f64> {
        match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                Some(-self.expr(3)?)
            }
            Some(b'+') => {
                self.pos += 1;
                self.expr(3)
            }
            _ => self.primary(),
        }
    }

    /// The operand of `offset`: a sign, then one primary (with a following `^` chain bound
    /// to it only inside parentheses).
    fn unary_operand(&mut self) -> Option<f64> {
        match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                Some(-self.primary()?)
            }
            Some(b'+') => {
                self.pos += 1;
                self.primary()
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Option<f64> {
        let c = self.peek()?;
        if c == b'(' {
            self.pos += 1;
            let v = self.expr(0)?;
            if self.peek()? != b')' {
                return None;
            }
            self.pos += 1;
            return Some(v);
        }
        if c.is_ascii_digit() || c == b'.' {
            return self.number();
        }
        if c.is_ascii_alphabetic() {
            let st = self.pos;
            while self.pos < self.s.len()
                && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_')
            {
                self.pos += 1;
            }
            let name = std::str::from_utf8(&self.s[st..self.pos])
                .ok()?
                .to_ascii_lowercase();
            if self.peek()? != b'(' {
                return None;
            }
            self.pos += 1;
            let mut args = Vec::new();
            if self.peek()? != b')' {
                loop {
                    args.push(self.expr(0)?);
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b')' => break,
                        _ => return None,
                    }
                }
            }
            self.pos += 1;
            return match (name.as_str(), args.as_slice()) {
                ("step", []) => Some(self.ctx.step),
                ("range", []) => Some(self.ctx.range),
                ("min_of", [a, b]) => Some(a.min(*b)),
                ("max_of", [a, b]) => Some(a.max(*b)),
                _ => None,
            };
        }
        None
    }

    /// A number (seconds) or a duration literal.
    fn number(&mut self) -> Option<f64> {
        let st = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_digit() || self.s[self.pos] == b'.')
        {
            self.pos += 1;
        }
        if self.pos < self.s.len() && self.s[self.pos].is_ascii_alphabetic() {
            // duration literal: digits and units
            let mut total = 0.0;
            let mut p = st;
            loop {
                let ds = p;
                while p < self.s.len() && self.s[p].is_ascii_digit() {
                    p += 1;
                }
                if ds == p {
                    break;
                }
                let n: f64 = std::str::from_utf8(&self.s[ds..p]).ok()?.parse().ok()?;
                let us = p;
                while p < self.s.len() && self.s[p].is_ascii_alphabetic() {
                    p += 1;
                }
                let unit = match std::str::from_utf8(&self.s[us..p]).ok()? {
                    "y" => 365.0 * 86400.0,
                    "w" => 7.0 * 86400.0,
                    "d" => 86400.0,
                    "h" => 3600.0,
                    "m" => 60.0,
                    "s" => 1.0,
                    "ms" => 0.001,
                    _ => return None,
                };
                total += n * unit;
            }
            self.pos = p;
            return Some(total);
        }
        std::str::from_utf8(&self.s[st..self.pos])
            .ok()?
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(q: &str, step: i64, range: i64) -> String {
        rewrite_durations(q, step, range).unwrap()
    }

    #[test]
    fn folds_bracket_expressions() {
        assert_eq!(rw("changes(x[26m+4m])", 0, 0), "changes(x[1800000ms])");
        assert_eq!(rw("changes(x[1800])", 0, 0), "changes(x[1800000ms])");
        assert_eq!(
            rw("changes(x[30m1s-30m1s % 1m])", 0, 0),
            "changes(x[1800000ms])"
        );
        assert_eq!(rw("changes(x[-5m+35m])", 0, 0), "changes(x[1800000ms])");
        assert_eq!(
            rw("sum_over_time(x[29s+1s:20*500ms])", 0, 0),
            "sum_over_time(x[30000ms:10000ms])"
        );
        assert_eq!(
            rw("count_over_time(x[1+(STep()-5)*2])", 10_000, 0),
            "count_over_time(x[11000ms])"
        );
        assert_eq!(
            rw("count_over_time(x[range()])", 5_000, 10_000),
            "count_over_time(x[10000ms])"
        );
        assert_eq!(
            rw("x[5m] and y{a=\"[1+1]\"}", 0, 0),
            "x[5m] and y{a=\"[1+1]\"}"
        );
    }

    #[test]
    fn folds_offset_operands() {
        assert_eq!(rw("m offset (100 + 2)", 0, 0), "m offset 102000ms");
        assert_eq!(rw("m offset -step()*2", 5_000, 0), "m offset -5000ms*2");
        assert_eq!(
            rw("m offset min_of(step(), 1s)+8000", 5_000, 0),
            "m offset 1000ms+8000"
        );
        assert_eq!(
            rw("m offset -(min_of(step(), 2s)-5)+8000", 5_000, 0),
            "m offset 3000ms+8000"
        );
        assert_eq!(rw("m offset (-2 ^ 2)", 0, 0), "m offset -4000ms");
        assert_eq!(rw("m offset 5m", 0, 0), "m offset 5m");
    }

    #[test]
    fn moves_extended_modifiers_into_matchers() {
        assert_eq!(
            rewrite_extended_selectors("increase(m[1m] anchored)"),
            "increase(m{__ignis_range_modifier__=\"anchored\"}[1m])"
        );
        assert_eq!(
            rewrite_extended_selectors("rate(m{a=\"b\"}[5m] offset 1m smoothed)"),
            "rate(m{__ignis_range_modifier__=\"smoothed\",a=\"b\"}[5m] offset 1m)"
        );
        assert_eq!(
            rewrite_extended_selectors("m @ 100 smoothed + 0"),
            "m{__ignis_range_modifier__=\"smoothed\"} @ 100 + 0"
        );
        assert!(parse_query("increase(m[1m] anchored)", 0, 0).is_ok());
    }

    #[test]
    fn marks_info_selectors() {
        assert_eq!(
            rewrite_info_selectors("info(m, {data=~\".*\"})"),
            "info(m, {__ignis_info_selector__=\"1\", data=~\".*\"})"
        );
        assert!(parse_query("info(m, {data=~\".*\"})", 0, 0).is_ok());
        assert_eq!(rewrite_info_selectors("info(m)"), "info(m)");
    }

    #[test]
    fn parse_query_only_rewrites_on_failure() {
        assert!(parse_query("m offset 5m", 0, 0).is_ok());
        assert!(parse_query("changes(m[2m*15])", 0, 0).is_ok());
        assert!(parse_query("m offset step()", 5_000, 0).is_ok());
        assert!(parse_query("sum(", 0, 0).is_err());
    }
}
