//! A subset of Go's `text/template`, enough for the labels and annotations of Prometheus
//! alerting rules: `{{ $labels.x }}`, `{{ $value }}`, `{{ $externalLabels.x }}`,
//! `{{ .Labels.x }}`, pipelines (`{{ $value | humanize }}`), function calls with arguments,
//! parenthesised pipelines, `{{ $x := … }}`, `if`/`else if`/`else`/`end`, `with`, `range`
//! (over lists and maps, with `$k, $v :=`), comments and `{{-`/`-}}` trimming; and the
//! functions Prometheus users use most: `humanize`, `humanize1024`, `humanizeDuration`,
//! `humanizePercentage`, `humanizeTimestamp`, `printf`, `query`, `first`, `value`, `label`,
//! `toUpper`, `toLower`, `title`, `match`, `reReplaceAll`, `stripPort`, `safeHtml`, `len`,
//! `index`, `not`, `and`, `or`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A value inside a template.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Go's nil.
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A map with string keys (label sets, samples, the data root).
    Map(BTreeMap<String, Value>),
    /// A list (query results).
    List(Vec<Value>),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::List(l) => !l.is_empty(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Map(_) => "map",
            Value::List(_) => "slice",
        }
    }

    /// The value as Go's `fmt` `%v` prints it.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_text(&mut s);
        s
    }

    fn write_text(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<no value>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&crate::gofmt::format_g(*f)),
            Value::Str(s) => out.push_str(s),
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write_text(out);
                }
                out.push(']');
            }
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_text(out);
                }
                out.push(']');
            }
        }
    }

    /// A string map from pairs.
    pub fn string_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
                .collect(),
        )
    }
}

/// One sample a `query` call returns: its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct QuerySample {
    /// Labels, including `__name__` when the result has one.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// The callback behind the `query` function: runs an instant query at the evaluation time.
pub type QueryFn<'a> = &'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>;

#[derive(Clone, Debug, PartialEq)]
enum Arg {
    /// `.a.b` (empty path: the dot).
    Field(Vec<String>),
    /// `$x.a.b`.
    Var(String, Vec<String>),
    Lit(Value),
    Ident(String),
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
struct Pipe {
    decl: Vec<String>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(Value),
    Ident(String),
    Pipe,
    LParen,
    RParen(Vec<String>),
    Declare,
    Assign,
    Comma,
}

fn lex_action(src: &str) -> Result<Vec<Tok>, String> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut toks = Vec::new();
    let path = |i: &mut usize| -> Vec<String> {
        let mut p = Vec::new();
        while *i < b.len() && b[*i] == b'.' {
            let st = *i + 1;
            let mut j = st;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j == st {
                break;
            }
            p.push(src[st..j].to_string());
            *i = j;
        }
        p
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'|' => {
                toks.push(Tok::Pipe);
                i += 1
            }
            b'(' => {
                toks.push(Tok::LParen);
                i += 1
            }
            b')' => {
                i += 1;
                let p = path(&mut i);
                toks.push(Tok::RParen(p));
            }
            b',' => {
                toks.push(Tok::Comma);
                i += 1
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                toks.push(Tok::Declare);
                i += 2
            }
            b'=' => {
                toks.push(Tok::Assign);
                i += 1
            }
            b'"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&ch) = b.get(i) else {
                        return Err("unterminated quoted string".into());
                    };
                    match ch {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\\' => {
                            let e = b.get(i + 1).ok_or("unterminated quoted string")?;
                            s.push(match e {
                                b'n' => '\n',
                                b't' => '\t',
                                b'r' => '\r',
                                b'\\' => '\\',
                                b'"' => '"',
                                b'\'' => '\'',
                                _ => {
                                    return Err(format!("unknown escape sequence \\{}", *e as char))
                                }
                            });
                            i += 2;
                        }
                        _ => {
                            let ch = src[i..].chars().next().ok_or("bad string")?;
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                toks.push(Tok::Str(s));
            }
            b'`' => {
                let end = src[i + 1..]
                    .find('`')
                    .ok_or("unterminated raw quoted string")?;
                toks.push(Tok::Str(src[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'.' => {
                let p = path(&mut i);
                if p.is_empty() {
                    i += 1;
                }
                toks.push(Tok::Field(p));
            }
            b'$' => {
                let st = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let name = src[st..i].to_string();
                let p = path(&mut i);
                toks.push(Tok::Var(name, p));
            }
            b'0'..=b'9' | b'-' | b'+' => {
                let st = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_')
                {
                    i += 1;
                }
                let t = &src[st..i];
                let v = if let Ok(n) = t.parse::<i64>() {
                    Value::Int(n)
                } else if let Ok(f) = t.parse::<f64>() {
                    Value::Float(f)
                } else {
                    return Err(format!("bad number syntax: {t:?}"));
                };
                toks.push(Tok::Num(v));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let st = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                toks.push(Tok::Ident(src[st..i].to_string()));
            }
            _ => {
                return Err(format!(
                    "unexpected {:?} in command",
                    src[i..].chars().next().unwrap_or('?')
                ))
            }
        }
    }
    Ok(toks)
}

fn parse_pipe(toks: &[Tok], pos: &mut usize, in_paren: bool) -> Result<Pipe, String> {
    let mut decl = Vec::new();
    // `$a :=` or `$a, $b :=`
    let save = *pos;
    let mut names = Vec::new();
    while let Some(Tok::Var(n, p)) = toks.get(*pos) {
        if !p.is_empty() {
            break;
        }
        names.push(n.clone());
        *pos += 1;
        match toks.get(*pos) {
            Some(Tok::Comma) => *pos += 1,
            Some(Tok::Declare) | Some(Tok::Assign) => {
                *pos += 1;
                decl = std::mem::take(&mut names);
                break;
            }
            _ => break,
        }
    }
    if decl.is_empty() {
        *pos = save;
    }
    let mut cmds = Vec::new();
    let mut cur = Vec::new();
    loop {
        match toks.get(*pos) {
            None => break,
            Some(Tok::RParen(_)) if in_paren => break,
            Some(Tok::RParen(_)) => return Err("unexpected right paren".into()),
            Some(Tok::Pipe) => {
                if cur.is_empty() {
                    return Err("missing command".into());
                }
                cmds.push(std::mem::take(&mut cur));
                *pos += 1;
            }
            Some(Tok::LParen) => {
                *pos += 1;
                let sub = parse_pipe(toks, pos, true)?;
                let Some(Tok::RParen(p)) = toks.get(*pos) else {
                    return Err("unclosed left paren".into());
                };
                cur.push(Arg::Sub(Box::new(sub), p.clone()));
                *pos += 1;
            }
            Some(t) => {
                cur.push(match t {
                    Tok::Field(p) => Arg::Field(p.clone()),
                    Tok::Var(n, p) => Arg::Var(n.clone(), p.clone()),
                    Tok::Str(s) => Arg::Lit(Value::Str(s.clone())),
                    Tok::Num(v) => Arg::Lit(v.clone()),
                    Tok::Ident(s) if s == "true" => Arg::Lit(Value::Bool(true)),
                    Tok::Ident(s) if s == "false" => Arg::Lit(Value::Bool(false)),
                    Tok::Ident(s) if s == "nil" => Arg::Lit(Value::Nil),
                    Tok::Ident(s) => {
                        if !is_func(s) {
                            return Err(format!("function {s:?} not defined"));
                        }
                        Arg::Ident(s.clone())
                    }
                    other => return Err(format!("unexpected {other:?} in operand")),
                });
                *pos += 1;
            }
        }
    }
    if cur.is_empty() {
        return Err("missing value for command".into());
    }
    cmds.push(cur);
    Ok(Pipe { decl, cmds })
}

const FUNCS: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "printf",
    "print",
    "query",
    "first",
    "value",
    "label",
    "strvalue",
    "toUpper",
    "toLower",
    "title",
    "match",
    "reReplaceAll",
    "stripPort",
    "safeHtml",
    "len",
    "index",
    "not",
    "and",
    "or",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
];

fn is_func(s: &str) -> bool {
    FUNCS.contains(&s)
}

enum Item {
    Text(String),
    Action(String),
}

/// Splits source into text and action items, applying `{{-`/`-}}` trimming and dropping
/// comments.
fn split_items(src: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let mut body = &rest[start + 2..];
        let trim_left =
            body.starts_with("- ") || body.starts_with("-\t") || body.starts_with("-\n");
        if trim_left {
            text = text.trim_end();
            body = &body[1..];
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        // find the closing delimiter outside quotes
        let bb = body.as_bytes();
        let mut i = 0;
        let mut quote: Option<u8> = None;
        let end = loop {
            if i >= bb.len() {
                return Err("unclosed action".into());
            }
            match quote {
                Some(q) => {
                    if bb[i] == b'\\' && q == b'"' {
                        i += 1;
                    } else if bb[i] == q {
                        quote = None;
                    }
                }
                None => {
                    if bb[i] == b'"' || bb[i] == b'`' {
                        quote = Some(bb[i]);
                    } else if body[i..].starts_with("}}") {
                        break i;
                    }
                }
            }
            i += 1;
        };
        let mut action = &body[..end];
        trim_next = false;
        if action.ends_with(" -") || action.ends_with("\t-") || action.ends_with("\n-") {
            action = &action[..action.len() - 1];
            trim_next = true;
        }
        let a = action.trim();
        if !(a.starts_with("/*") && a.ends_with("*/")) {
            items.push(Item::Action(a.to_string()));
        }
        rest = &body[end + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        items.push(Item::Text(text.to_string()));
    }
    Ok(items)
}

/// How a list of nodes ended.
enum Closer {
    Eof,
    End,
    Else(Option<String>),
}

fn parse_list(items: &[Item], pos: &mut usize) -> Result<(Vec<Node>, Closer), String> {
    let mut nodes = Vec::new();
    while *pos < items.len() {
        let item = &items[*pos];
        *pos += 1;
        match item {
            Item::Text(t) => nodes.push(Node::Text(t.clone())),
            Item::Action(a) => {
                let (kw, rest) = match a.split_once(|c: char| c.is_whitespace()) {
                    Some((k, r)) => (k, r.trim()),
                    None => (a.as_str(), ""),
                };
                match kw {
                    "end" => return Ok((nodes, Closer::End)),
                    "else" => {
                        return Ok((
                            nodes,
                            Closer::Else((!rest.is_empty()).then(|| rest.to_string())),
                        ))
                    }
                    "if" | "with" | "range" => {
                        nodes.push(parse_control(kw, rest, items, pos)?);
                    }
                    "define" | "template" | "block" | "break" | "continue" => {
                        return Err(format!("{kw:?} is not supported"))
                    }
                    _ => {
                        let toks = lex_action(a)?;
                        let mut p = 0;
                        nodes.push(Node::Action(parse_pipe(&toks, &mut p, false)?));
                    }
                }
            }
        }
    }
    Ok((nodes, Closer::Eof))
}

fn parse_control(
    kw: &str,
    pipe_src: &str,
    items: &[Item],
    pos: &mut usize,
) -> Result<Node, String> {
    let toks = lex_action(pipe_src)?;
    let mut p = 0;
    let pipe = parse_pipe(&toks, &mut p, false)?;
    let (body, end) = parse_list(items, pos)?;
    let els = match end {
        Closer::Eof => return Err(format!("unexpected EOF in {kw}")),
        Closer::End => Vec::new(),
        Closer::Else(None) => {
            let (els, end) = parse_list(items, pos)?;
            match end {
                Closer::End => els,
                _ => return Err(format!("expected end after else in {kw}")),
            }
        }
        Closer::Else(Some(chain)) => {
            // `else if …` / `else with …`: a nested control sharing our `end`.
            let (k2, r2) = chain
                .split_once(|c: char| c.is_whitespace())
                .ok_or_else(|| format!("bad else clause {chain:?}"))?;
            if k2 != "if" && k2 != "with" {
                return Err(format!("unexpected {chain:?} after else"));
            }
            vec![parse_control(k2, r2.trim(), items, pos)?]
        }
    };
    Ok(match kw {
        "if" => Node::If(pipe, body, els),
        "with" => Node::With(pipe, body, els),
        _ => Node::Range(pipe, body, els),
    })
}

impl Template {
    /// Parses template text.
    pub fn parse(src: &str) -> Result<Template, String> {
        let items = split_items(src)?;
        let mut pos = 0;
        let (nodes, end) = parse_list(&items, &mut pos)?;
        match end {
            Closer::Eof => Ok(Template { nodes }),
            Closer::End => Err("unexpected {{end}}".into()),
            Closer::Else(_) => Err("unexpected {{else}}".into()),
        }
    }

    /// Runs the template with `dot` as `.` and `$`, the given variables, and `query` behind
    /// the `query` function (none: `query` fails).
    pub fn execute(
        &self,
        dot: &Value,
        vars: &[(&str, Value)],
        query: Option<QueryFn<'_>>,
    ) -> Result<String, String> {
        let mut st = State {
            vars: vec![("$".to_string(), dot.clone())],
            query,
        };
        st.vars.extend(
            vars.iter()
                .map(|(k, v)| (format!("${}", k.trim_start_matches('$')), v.clone())),
        );
        let mut out = String::new();
        st.walk(&self.nodes, dot, &mut out)?;
        Ok(out)
    }
}

struct State<'q> {
    vars: Vec<(String, Value)>,
    query: Option<QueryFn<'q>>,
}

fn field(v: &Value, path: &[String]) -> Result<Value, String> {
    let mut cur = v.clone();
    for name in path {
        cur = match cur {
            Value::Map(mut m) => m.remove(name).unwrap_or(Value::Str(String::new())),
            Value::Nil => return Err(format!("nil pointer evaluating .{name}")),
            other => {
                return Err(format!(
                    "can't evaluate field {name} in type {}",
                    other.type_name()
                ))
            }
        };
    }
    Ok(cur)
}

impl State<'_> {
    fn walk(&mut self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), String> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        v.write_text(out);
                    }
                }
                Node::If(p, body, els) | Node::With(p, body, els) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let r = if v.truthy() {
                        let d = if matches!(n, Node::With(..)) { &v } else { dot };
                        self.walk(body, d, out)
                    } else {
                        self.walk(els, dot, out)
                    };
                    self.vars.truncate(mark);
                    r?;
                }
                Node::Range(p, body, els) => {
                    let mark = self.vars.len();
                    let decl = p.decl.clone();
                    let v = self.pipe(
                        &Pipe {
                            decl: Vec::new(),
                            cmds: p.cmds.clone(),
                        },
                        dot,
                    )?;
                    let entries: Vec<(Value, Value)> = match v {
                        Value::List(l) => l
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::Int(i as i64), v))
                            .collect(),
                        Value::Map(m) => m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect(),
                        Value::Nil => Vec::new(),
                        Value::Int(n) => (0..n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
                        other => {
                            return Err(format!("range can't iterate over {}", other.to_text()))
                        }
                    };
                    if entries.is_empty() {
                        self.walk(els, dot, out)?;
                    }
                    for (k, v) in entries {
                        match decl.len() {
                            0 => {}
                            1 => self.vars.push((decl[0].clone(), v.clone())),
                            _ => {
                                self.vars.push((decl[0].clone(), k));
                                self.vars.push((decl[1].clone(), v.clone()));
                            }
                        }
                        let r = self.walk(body, &v, out);
                        self.vars.truncate(mark);
                        r?;
                    }
                }
            }
        }
        Ok(())
    }

    fn var(&self, name: &str) -> Result<Value, String> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("undefined variable: {name}"))
    }

    fn pipe(&mut self, p: &Pipe, dot: &Value) -> Result<Value, String> {
        let mut last: Option<Value> = None;
        for cmd in &p.cmds {
            last = Some(self.command(cmd, dot, last)?);
        }
        let v = last.unwrap_or(Value::Nil);
        for d in &p.decl {
            // `$x = …` assigns to an existing variable; `$x := …` declares. Both shadow here.
            self.vars.push((d.clone(), v.clone()));
        }
        Ok(v)
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> Result<Value, String> {
        match a {
            Arg::Field(p) => field(dot, p),
            Arg::Var(n, p) => field(&self.var(n)?, p),
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Ident(f) => self.call(f, Vec::new()),
            Arg::Sub(pipe, p) => {
                let mark = self.vars.len();
                let v = self.pipe(pipe, dot);
                self.vars.truncate(mark);
                field(&v?, p)
            }
        }
    }

    fn command(&mut self, cmd: &[Arg], dot: &Value, piped: Option<Value>) -> Result<Value, String> {
        match &cmd[0] {
            Arg::Ident(f) => {
                let mut args = Vec::with_capacity(cmd.len());
                for a in &cmd[1..] {
                    args.push(self.arg(a, dot)?);
                }
                if let Some(p) = piped {
                    args.push(p);
                }
                self.call(f, args)
            }
            first => {
                if cmd.len() > 1 {
                    return Err("can't give argument to non-function".into());
                }
                if piped.is_some() {
                    return Err("can't give argument to non-function".into());
                }
                self.arg(first, dot)
            }
        }
    }

    fn call(&mut self, f: &str, args: Vec<Value>) -> Result<Value, String> {
        let want = |n: usize| -> Result<(), String> {
            if args.len() != n {
                Err(format!(
                    "wrong number of args for {f}: want {n} got {}",
                    args.len()
                ))
            } else {
                Ok(())
            }
        };
        Ok(match f {
            "humanize" => {
                want(1)?;
                Value::Str(humanize(to_float(&args[0])?))
            }
            "humanize1024" => {
                want(1)?;
                Value::Str(humanize1024(to_float(&args[0])?))
            }
            "humanizeDuration" => {
                want(1)?;
                Value::Str(humanize_duration(to_float(&args[0])?))
            }
            "humanizePercentage" => {
                want(1)?;
                Value::Str(format!("{}%", go_g_prec(to_float(&args[0])? * 100.0, 4)))
            }
            "humanizeTimestamp" => {
                want(1)?;
                Value::Str(humanize_timestamp(to_float(&args[0])?))
            }
            "printf" => {
                let Some(Value::Str(fmt)) = args.first() else {
                    return Err("printf: format must be a string".into());
                };
                Value::Str(sprintf(fmt, &args[1..]))
            }
            "print" => {
                let mut s = String::new();
                for (i, a) in args.iter().enumerate() {
                    // Go adds spaces between operands when neither is a string.
                    if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_))
                    {
                        s.push(' ');
                    }
                    a.write_text(&mut s);
                }
                Value::Str(s)
            }
            "query" => {
                want(1)?;
                let q = self.query.ok_or("query function not available")?;
                let res = q(&args[0].to_text())?;
                Value::List(
                    res.into_iter()
                        .map(|s| {
                            let mut m = BTreeMap::new();
                            m.insert(
                                "Labels".to_string(),
                                Value::string_map(
                                    s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                                ),
                            );
                            m.insert("Value".to_string(), Value::Float(s.value));
                            Value::Map(m)
                        })
                        .collect(),
                )
            }
            "first" => {
                want(1)?;
                match &args[0] {
                    Value::List(l) => l
                        .first()
                        .cloned()
                        .ok_or("first() called on vector with no elements")?,
                    _ => return Err("first: argument is not a query result".into()),
                }
            }
            "value" => {
                want(1)?;
                field(&args[0], &["Value".to_string()])?
            }
            "label" => {
                want(2)?;
                field(&args[1], &["Labels".to_string(), args[0].to_text()])?
            }
            "strvalue" => {
                want(1)?;
                field(&args[0], &["Labels".to_string(), "__value__".to_string()])?
            }
            "toUpper" => {
                want(1)?;
                Value::Str(args[0].to_text().to_uppercase())
            }
            "toLower" => {
                want(1)?;
                Value::Str(args[0].to_text().to_lowercase())
            }
            "title" => {
                want(1)?;
                let mut s = String::new();
                let mut start = true;
                for c in args[0].to_text().chars() {
                    if start && c.is_alphabetic() {
                        s.extend(c.to_uppercase());
                    } else {
                        s.push(c);
                    }
                    start = !c.is_alphanumeric() && c != '\'';
                }
                Value::Str(s)
            }
            "match" => {
                want(2)?;
                let re = regex::Regex::new(&args[0].to_text()).map_err(|e| e.to_string())?;
                Value::Bool(re.is_match(&args[1].to_text()))
            }
            "reReplaceAll" => {
                want(3)?;
                let re = regex::Regex::new(&args[0].to_text()).map_err(|e| e.to_string())?;
                Value::Str(
                    re.replace_all(&args[2].to_text(), args[1].to_text().as_str())
                        .into_owned(),
                )
            }
            "stripPort" => {
                want(1)?;
                let s = args[0].to_text();
                Value::Str(match s.rsplit_once(':') {
                    Some((h, _)) if !h.contains(':') || h.ends_with(']') => {
                        h.trim_start_matches('[').trim_end_matches(']').to_string()
                    }
                    _ => s,
                })
            }
            "safeHtml" => {
                want(1)?;
                Value::Str(args[0].to_text())
            }
            "len" => {
                want(1)?;
                Value::Int(match &args[0] {
                    Value::Str(s) => s.len(),
                    Value::List(l) => l.len(),
                    Value::Map(m) => m.len(),
                    other => return Err(format!("len of type {}", other.type_name())),
                } as i64)
            }
            "index" => {
                let mut cur = args.first().cloned().ok_or("index of nothing")?;
                for k in &args[1..] {
                    cur = match (cur, k) {
                        (Value::Map(mut m), k) => {
                            m.remove(&k.to_text()).unwrap_or(Value::Str(String::new()))
                        }
                        (Value::List(l), Value::Int(i)) => l
                            .get(*i as usize)
                            .cloned()
                            .ok_or_else(|| format!("index out of range: {i}"))?,
                        (c, _) => {
                            return Err(format!("can't index item of type {}", c.type_name()))
                        }
                    };
                }
                cur
            }
            "not" => {
                want(1)?;
                Value::Bool(!args[0].truthy())
            }
            "and" => args
                .iter()
                .find(|a| !a.truthy())
                .or(args.last())
                .cloned()
                .unwrap_or(Value::Nil),
            "or" => args
                .iter()
                .find(|a| a.truthy())
                .or(args.last())
                .cloned()
                .unwrap_or(Value::Nil),
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                want(2)?;
                let ord = compare(&args[0], &args[1])?;
                use std::cmp::Ordering::*;
                Value::Bool(match f {
                    "eq" => ord == Some(Equal),
                    "ne" => ord != Some(Equal),
                    "lt" => ord == Some(Less),
                    "le" => matches!(ord, Some(Less | Equal)),
                    "gt" => ord == Some(Greater),
                    _ => matches!(ord, Some(Greater | Equal)),
                })
            }
            _ => return Err(format!("function {f:?} not defined")),
        })
    }
}

fn compare(a: &Value, b: &Value) -> Result<Option<std::cmp::Ordering>, String> {
    Ok(match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Float(_) | Value::Int(_), Value::Float(_) | Value::Int(_)) => {
            to_float(a)?.partial_cmp(&to_float(b)?)
        }
        _ => {
            return Err(format!(
                "incompatible types for comparison: {} and {}",
                a.type_name(),
                b.type_name()
            ))
        }
    })
}

fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

/// `v` as Go's `%.<prec>g`: `prec` significant digits, trailing zeros removed, exponent form
/// when the exponent is below -4 or at least `prec`.
pub fn go_g_prec(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let prec = prec.max(1);
    let e = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= prec as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return go_g_prec(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g_prec(v, 4))
}

/// Prometheus's `humanize1024`: binary prefixes, 4 significant digits.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return go_g_prec(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g_prec(v, 4))
}

/// Prometheus's `humanizeDuration` of a number of seconds.
pub fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_g_prec(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", go_g_prec(v, 4));
    }
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        let d = v as i64;
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {mins}m {secs}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {mins}m {secs}s");
        }
        if mins != 0 {
            return format!("{sign}{mins}m {secs}s");
        }
        return format!("{sign}{}s", go_g_prec(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g_prec(v, 4))
}

/// Days since 1970-01-01 to the proleptic Gregorian `(year, month, day)` (Howard Hinnant's
/// civil-from-days algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Prometheus's `humanizeTimestamp`: Unix seconds as Go's `time.Time.String()` in UTC.
pub fn humanize_timestamp(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_g_prec(v, 4);
    }
    let secs = v.floor() as i64;
    let nanos = ((v - v.floor()) * 1e9).round() as i64;
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let mut s = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// A subset of Go's `fmt.Sprintf`: flags `-+0 `, width, precision, and verbs `v s d f e g q x
/// t %`. Missing operands print as `%!v(MISSING)`.
pub fn sprintf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut ai = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero) = (false, false, false);
        while let Some(&f) = it.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' | '#' => {}
                _ => break,
            }
            it.next();
        }
        let mut width = String::new();
        while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            it.next();
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = String::new();
            while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                it.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(ai) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        ai += 1;
        let num = to_float(arg).ok();
        let mut s = match verb {
            'd' => match arg {
                Value::Int(i) => i.to_string(),
                Value::Float(f) => format!("%!d(float64={})", crate::gofmt::format_g(*f)),
                other => format!("%!d({}={})", other.type_name(), other.to_text()),
            },
            'f' | 'F' => match num {
                Some(f) if !matches!(arg, Value::Str(_)) => format!("{:.*}", prec.unwrap_or(6), f),
                _ => format!("%!f({}={})", arg.type_name(), arg.to_text()),
            },
            'e' => match num {
                Some(f) if !matches!(arg, Value::Str(_)) => {
                    let e = format!("{:.*e}", prec.unwrap_or(6), f);
                    let (m, x) = e.split_once('e').unwrap_or((&e, "0"));
                    let x: i32 = x.parse().unwrap_or(0);
                    format!("{m}e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs())
                }
                _ => format!("%!e({}={})", arg.type_name(), arg.to_text()),
            },
            'g' => match (num, prec) {
                (Some(f), Some(p)) if !matches!(arg, Value::Str(_)) => go_g_prec(f, p),
                (Some(f), None) if !matches!(arg, Value::Str(_)) => crate::gofmt::format_g(f),
                _ => format!("%!g({}={})", arg.type_name(), arg.to_text()),
            },
            'q' => format!("{:?}", arg.to_text()),
            'x' => match arg {
                Value::Int(i) => format!("{i:x}"),
                other => other
                    .to_text()
                    .bytes()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            },
            't' => match arg {
                Value::Bool(b) => b.to_string(),
                other => format!("%!t({}={})", other.type_name(), other.to_text()),
            },
            's' | 'v' => {
                let mut t = arg.to_text();
                if let (Some(p), Value::Str(_)) = (prec, arg) {
                    t = t.chars().take(p).collect();
                }
                t
            }
            other => format!("%!{other}({}={})", arg.type_name(), arg.to_text()),
        };
        if plus && num.is_some() && !s.starts_with('-') && matches!(verb, 'd' | 'f' | 'e' | 'g') {
            s.insert(0, '+');
        }
        let w: usize = width.parse().unwrap_or(0);
        let len = s.chars().count();
        if len < w {
            let pad = w - len;
            if minus {
                s.extend(std::iter::repeat_n(' ', pad));
            } else if zero && num.is_some() {
                let at = usize::from(s.starts_with(['-', '+']));
                s.insert_str(at, &"0".repeat(pad));
            } else {
                s.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&s);
    }
    if ai < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[ai..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}={}", a.type_name(), a.to_text());
        }
        out.push(')');
    }
    out
}

/// What an alert's templates see.
#[derive(Clone, Debug, Default)]
pub struct AlertTemplateData {
    /// The alert's labels (the series labels without `__name__`).
    pub labels: Vec<(String, String)>,
    /// The configured external labels.
    pub external_labels: Vec<(String, String)>,
    /// The server's external URL.
    pub external_url: String,
    /// The sample value.
    pub value: f64,
}

/// Expands one label or annotation template of an alerting rule as Prometheus does, with
/// `$labels`, `$externalLabels`, `$externalURL`, `$value` and `.Labels`, `.ExternalLabels`,
/// `.ExternalURL`, `.Value`.
pub fn expand_alert_template(
    text: &str,
    data: &AlertTemplateData,
    query: Option<QueryFn<'_>>,
) -> Result<String, String> {
    let t = Template::parse(text)?;
    let labels = Value::string_map(data.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let ext = Value::string_map(
        data.external_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let url = Value::Str(data.external_url.clone());
    let value = Value::Float(data.value);
    let mut root = BTreeMap::new();
    root.insert("Labels".to_string(), labels.clone());
    root.insert("ExternalLabels".to_string(), ext.clone());
    root.insert("ExternalURL".to_string(), url.clone());
    root.insert("Value".to_string(), value.clone());
    t.execute(
        &Value::Map(root),
        &[
            ("labels", labels),
            ("externalLabels", ext),
            ("externalURL", url),
            ("value", value),
        ],
        query,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> AlertTemplateData {
        AlertTemplateData {
            labels: vec![
                ("instance".into(), "host:9100".into()),
                ("job".into(), "node".into()),
            ],
            external_labels: vec![("cluster".into(), "eu1".into())],
            external_url: "http://ignis:9090".into(),
            value: 1234567.0,
        }
    }

    #[test]
    fn expansion_table() {
        let q = |e: &str| -> Result<Vec<QuerySample>, String> {
            assert_eq!(e, "up{job=\"node\"}");
            Ok(vec![QuerySample {
                labels: vec![("instance".into(), "a:1".into())],
                value: 0.25,
            }])
        };
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("{{ $labels.instance }} down", "host:9100 down"),
            ("{{ .Labels.job }}", "node"),
            ("{{ $externalLabels.cluster }}", "eu1"),
            ("{{ $externalURL }}", "http://ignis:9090"),
            ("{{ $value }}", "1.234567e+06"),
            ("{{ $value | humanize }}", "1.235M"),
            ("{{ humanize $value }}", "1.235M"),
            ("{{ $labels.missing }}x", "x"),
            ("{{ 2048 | humanize1024 }}", "2ki"),
            ("{{ 90061 | humanizeDuration }}", "1d 1h 1m 1s"),
            ("{{ 0.25 | humanizePercentage }}", "25%"),
            ("{{ printf \"%.2f\" $value }}", "1234567.00"),
            ("{{ printf \"%s=%d\" \"a\" 3 }}", "a=3"),
            ("{{ if gt $value 10.0 }}big{{ else }}small{{ end }}", "big"),
            ("{{ if eq $labels.job \"x\" }}x{{ else if eq $labels.job \"node\" }}n{{ end }}", "n"),
            ("{{- \"  a\" -}}  b", "  ab"),
            ("x  {{- /* comment */ -}}  y", "xy"),
            ("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}", "instance=host:9100;job=node;"),
            ("{{ $x := \"v\" }}{{ $x }}", "v"),
            (
                "{{ with query \"up{job=\\\"node\\\"}\" }}{{ . | first | value | humanizePercentage }}{{ end }}",
                "25%",
            ),
            ("{{ range query \"up{job=\\\"node\\\"}\" }}{{ .Labels.instance }}{{ end }}", "a:1"),
            ("{{ toUpper \"ab\" }}{{ \"x:1\" | stripPort }}", "ABx"),
            ("{{ 1 | humanizeTimestamp }}", "1970-01-01 00:00:01 +0000 UTC"),
            ("{{ (printf \"%d\" 5) }}", "5"),
        ];
        for (src, want) in cases {
            let got = expand_alert_template(src, &data(), Some(&q))
                .unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(&got, want, "{src}");
        }
    }

    #[test]
    fn parse_errors() {
        for src in [
            "{{ $labels.x ",
            "{{ if 1 }}x",
            "{{ end }}",
            "{{ nofunc 1 }}",
            "{{ \"a }}",
        ] {
            assert!(Template::parse(src).is_err(), "{src}");
        }
    }

    #[test]
    fn humanize_functions() {
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(1234.0), "1.234k");
        assert_eq!(humanize(0.0012), "1.2m");
        assert_eq!(humanize(12.0), "12");
        assert_eq!(humanize1024(1.0), "1");
        assert_eq!(humanize1024(1536.0 * 1024.0), "1.5Mi");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.002), "2ms");
        assert_eq!(humanize_duration(3661.0), "1h 1m 1s");
        assert_eq!(go_g_prec(123456.0, 4), "1.235e+05");
        assert_eq!(go_g_prec(0.00001234, 4), "1.234e-05");
        assert_eq!(
            humanize_timestamp(1_700_000_000.5),
            "2023-11-14 22:13:20.5 +0000 UTC"
        );
    }
}
