//! An interpreter for Prometheus's PromQL test scripts (`promqltest`), used by the
//! conformance test and reusable by other crates.
//!
//! [`run_file`] parses a script ([`script`]), loads its series into an in-memory
//! [`MemQueryable`], and runs every `eval` through the [`Engine`], including the extra checks
//! upstream makes on instant evals: the same query as a range query around the eval time, and
//! variants with every selector pinned by `@` evaluated at other times. Evals that need
//! native-histogram values, or whose expression `promql-parser` cannot parse, are skipped with
//! a reason.

pub mod script;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr};
use tsdb::chunkenc::is_stale_nan;
use tsdb::querier::{MemQueryable, Queryable, VecSeries};
use tsdb::Labels;

use std::sync::Arc;

use crate::engine::{Engine, EngineOptions, QueryOptions, QueryResult, StartTimestampSource};
use crate::error::QueryError;
use crate::value::Value;
use script::{Command, EvalCmd, EvalTime, MsgMatch, SeqValue, SeriesLine};

/// Outcome of one eval statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every check passed.
    Passed,
    /// A check failed; the message says which and how.
    Failed(String),
    /// Not run; the reason starts with `native histograms:` or `parser:`.
    Skipped(String),
}

/// Result of one eval statement of a file.
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// Line of the eval header.
    pub line: usize,
    /// The expression.
    pub expr: String,
    /// What happened.
    pub outcome: Outcome,
}

/// Result of a whole file.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    /// Per-eval results, in file order.
    pub evals: Vec<EvalReport>,
    /// A failure that stopped the file (bad script, failed load).
    pub fatal: Option<String>,
}

impl FileReport {
    /// (passed, failed, skipped) counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for e in &self.evals {
            match e.outcome {
                Outcome::Passed => c.0 += 1,
                Outcome::Failed(_) => c.1 += 1,
                Outcome::Skipped(_) => c.2 += 1,
            }
        }
        c
    }
}

/// The engine settings the test scripts assume (README section 4).
pub fn test_engine() -> Engine {
    Engine::new(EngineOptions {
        lookback_delta: 5 * 60 * 1000,
        max_samples: 10_000,
        timeout: Duration::from_secs(100),
        default_subquery_step: 60_000,
    })
}

/// Storage state of a running script.
/// Start timestamps of the loaded series: `(sample time, start time)` pairs.
#[derive(Default)]
struct StMap(BTreeMap<Labels, Vec<(i64, i64)>>);

impl StartTimestampSource for StMap {
    fn start_timestamps(&self, labels: &Labels, samples: &[(i64, f64)]) -> Option<Vec<i64>> {
        let sts = self.0.get(labels)?;
        Some(
            samples
                .iter()
                .map(|(t, _)| match sts.binary_search_by_key(t, |x| x.0) {
                    Ok(i) => sts[i].1,
                    Err(_) => 0,
                })
                .collect(),
        )
    }
}

/// Where a script's loaded series are kept and queried from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// Sample vectors in memory ([`MemQueryable`]).
    #[default]
    Memory,
    /// The database head (in memory, its chunks in a [`tsdb::head::MemChunkStore`]): the
    /// path queries of recent data take, with its own selection shortcuts.
    Head,
}

struct Storage {
    backend: Backend,
    series: BTreeMap<Labels, Vec<(i64, f64)>>,
    sts: BTreeMap<Labels, Vec<(i64, i64)>>,
    st_source: Option<Arc<dyn StartTimestampSource>>,
    /// Label sets of series that hold native histograms.
    hist: Vec<Labels>,
    /// The loaded series, as the engine queries them.
    queryable: Arc<dyn Queryable>,
}

impl Storage {
    fn load(&mut self, interval: i64, nhcb: bool, lines: &[SeriesLine]) {
        for l in lines {
            let mut has_hist = false;
            let e = self.series.entry(l.labels.clone()).or_default();
            for (k, v) in l.values.iter().enumerate() {
                let t = k as i64 * interval;
                match v {
                    SeqValue::Omitted => {}
                    SeqValue::Histogram => has_hist = true,
                    SeqValue::Float(f) => match e.last_mut() {
                        Some(last) if last.0 == t => last.1 = *f,
                        Some(last) if last.0 > t => {}
                        _ => e.push((t, *f)),
                    },
                }
            }
            if e.is_empty() {
                self.series.remove(&l.labels);
            }
            if let Some(offs) = &l.start_offsets {
                let st = self.sts.entry(l.labels.clone()).or_default();
                for (k, (o, v)) in offs.iter().zip(&l.values).enumerate() {
                    if let (Some(o), SeqValue::Float(_)) = (o, v) {
                        let t = k as i64 * interval;
                        st.push((t, t + o));
                    }
                }
                st.sort_by_key(|x| x.0);
                st.dedup_by_key(|x| x.0);
            }
            if has_hist && !self.hist.contains(&l.labels) {
                self.hist.push(l.labels.clone());
            }
            if nhcb {
                if let Some(name) = l.labels.metric_name() {
                    for suf in ["_bucket", "_count", "_sum"] {
                        if let Some(base) = name.strip_suffix(suf) {
                            let hl = l.labels.drop_names(&["le"]).with("__name__", base);
                            if !self.hist.contains(&hl) {
                                self.hist.push(hl);
                            }
                        }
                    }
                }
            }
        }
        self.rebuild();
    }

    fn rebuild(&mut self) {
        let v: Vec<VecSeries> = self
            .series
            .iter()
            .map(|(l, s)| VecSeries {
                labels: l.clone(),
                samples: s.clone(),
            })
            .collect();
        self.queryable = match self.backend {
            Backend::Memory => Arc::new(MemQueryable::new(v)),
            Backend::Head => Arc::new(head_with(&v)),
        };
        self.st_source = if self.sts.is_empty() {
            None
        } else {
            Some(Arc::new(StMap(self.sts.clone())) as Arc<dyn StartTimestampSource>)
        };
    }

    fn opts(&self) -> QueryOptions {
        QueryOptions {
            lookback_delta: None,
            start_timestamps: self.st_source.clone(),
            cancel: None,
        }
    }

    fn clear(&mut self) {
        *self = Storage::new(self.backend);
    }

    fn new(backend: Backend) -> Self {
        Storage {
            backend,
            series: BTreeMap::new(),
            sts: BTreeMap::new(),
            st_source: None,
            hist: Vec::new(),
            queryable: Arc::new(MemQueryable::default()),
        }
    }

    /// Whether any selector of `e` matches a histogram series.
    fn selects_histograms(&self, e: &Expr) -> bool {
        if self.hist.is_empty() {
            return false;
        }
        let mut found = false;
        visit_selectors(e, &mut |vs| {
            if let Ok(groups) = crate::eval::selector_matchers(vs) {
                for ms in &groups {
                    if self.hist.iter().any(|h| tsdb::querier::matches_all(h, ms)) {
                        found = true;
                    }
                }
            }
        });
        found
    }
}

fn visit_selectors(e: &Expr, f: &mut dyn FnMut(&promql_parser::parser::VectorSelector)) {
    match e {
        Expr::VectorSelector(vs) => f(vs),
        Expr::MatrixSelector(ms) => f(&ms.vs),
        Expr::Subquery(s) => visit_selectors(&s.expr, f),
        Expr::Paren(p) => visit_selectors(&p.expr, f),
        Expr::Unary(u) => visit_selectors(&u.expr, f),
        Expr::Binary(b) => {
            visit_selectors(&b.lhs, f);
            visit_selectors(&b.rhs, f);
        }
        Expr::Aggregate(a) => {
            visit_selectors(&a.expr, f);
            if let Some(p) = &a.param {
                visit_selectors(p, f);
            }
        }
        Expr::Call(c) => {
            for a in &c.args.args {
                visit_selectors(a, f);
            }
        }
        _ => {}
    }
}

/// Functions whose result depends on the evaluation time even with `@` on every selector.
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "end",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "range",
    "start",
    "step",
    "time",
    "timestamp",
];

fn has_at_unsafe(e: &Expr) -> bool {
    match e {
        Expr::Call(c) => {
            AT_UNSAFE.contains(&c.func.name) || c.args.args.iter().any(|a| has_at_unsafe(a))
        }
        Expr::Subquery(s) => has_at_unsafe(&s.expr),
        Expr::Paren(p) => has_at_unsafe(&p.expr),
        Expr::Unary(u) => has_at_unsafe(&u.expr),
        Expr::Binary(b) => has_at_unsafe(&b.lhs) || has_at_unsafe(&b.rhs),
        Expr::Aggregate(a) => {
            has_at_unsafe(&a.expr) || a.param.as_ref().is_some_and(|p| has_at_unsafe(p))
        }
        _ => false,
    }
}

fn ms_to_system_time(t: i64) -> SystemTime {
    if t >= 0 {
        UNIX_EPOCH + Duration::from_millis(t as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(t.unsigned_abs())
    }
}

/// Pins every selector and subquery without `@` to `t`, leaving the inside of subqueries
/// with `@` alone (upstream's `atModifierTestCases`).
fn set_at(e: &mut Expr, t: SystemTime) {
    match e {
        Expr::VectorSelector(vs) if vs.at.is_none() => vs.at = Some(AtModifier::At(t)),
        Expr::MatrixSelector(ms) if ms.vs.at.is_none() => ms.vs.at = Some(AtModifier::At(t)),
        Expr::Subquery(s) if s.at.is_none() => s.at = Some(AtModifier::At(t)),
        Expr::Paren(p) => set_at(&mut p.expr, t),
        Expr::Unary(u) => set_at(&mut u.expr, t),
        Expr::Binary(b) => {
            set_at(&mut b.lhs, t);
            set_at(&mut b.rhs, t);
        }
        Expr::Aggregate(a) => {
            set_at(&mut a.expr, t);
            if let Some(p) = &mut a.param {
                set_at(p, t);
            }
        }
        Expr::Call(c) => {
            for a in &mut c.args.args {
                set_at(a, t);
            }
        }
        _ => {}
    }
}

/// Float equality of the test language (README 3.10).
pub fn almost_equal(a: f64, b: f64) -> bool {
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    const EPS: f64 = 1e-6;
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < MIN_NORMAL {
        return diff < EPS * MIN_NORMAL;
    }
    diff / (a.abs() + b.abs()) < EPS
}

fn fmt_err(e: &QueryError) -> String {
    e.msg.clone()
}

fn fmt_value(v: &Value) -> String {
    match v {
        Value::Scalar { v, .. } => format!("scalar {v}"),
        Value::String { v, .. } => format!("string {v:?}"),
        Value::Vector(s) => {
            let items: Vec<String> = s.iter().map(|x| format!("{} {}", x.metric, x.v)).collect();
            format!("vector [{}]", items.join(", "))
        }
        Value::Matrix(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|x| {
                    let pts: Vec<String> =
                        x.floats.iter().map(|(t, v)| format!("{v}@{t}")).collect();
                    format!("{} [{}]", x.metric, pts.join(" "))
                })
                .collect();
            format!("matrix [{}]", items.join(", "))
        }
    }
}

struct Expectation<'a> {
    cmd: &'a EvalCmd,
    /// Start and step that the i-th expected value refers to.
    start: i64,
    step: i64,
    end: i64,
}

impl Expectation<'_> {
    fn find(&self, l: &Labels) -> Option<(usize, &SeriesLine)> {
        self.cmd
            .series
            .iter()
            .enumerate()
            .find(|(_, s)| s.labels == *l)
    }

    fn compare(&self, v: &Value) -> Result<(), String> {
        let cmd = self.cmd;
        match v {
            Value::Matrix(m) => {
                if cmd.ordered {
                    return Err("expected ordered result, but query returned a matrix".into());
                }
                if cmd.scalar.is_some() {
                    return Err(format!("expected scalar result, but got {}", fmt_value(v)));
                }
                if cmd.string.is_some() {
                    return Err(format!("expected string result, but got {}", fmt_value(v)));
                }
                for w in m.windows(2) {
                    if w[0].metric > w[1].metric {
                        return Err(format!(
                            "matrix results should always be sorted by labels, got {}",
                            fmt_value(v)
                        ));
                    }
                }
                for s in m {
                    let (_, exp) = self.find(&s.metric).ok_or_else(|| {
                        format!(
                            "unexpected metric {} in result, has {}",
                            s.metric,
                            fmt_value(v)
                        )
                    })?;
                    let mut want: Vec<(i64, f64)> = Vec::new();
                    for (i, ev) in exp.values.iter().enumerate() {
                        let t = self.start + i as i64 * self.step;
                        if t > self.end {
                            return Err(format!("expected {} points for {}, but query time range cannot return this many points", exp.values.len(), exp.labels));
                        }
                        if let SeqValue::Float(f) = ev {
                            want.push((t, *f));
                        }
                    }
                    if want.len() != s.floats.len() {
                        return Err(format!(
                            "expected {} float points for {}, but got {}: {:?}",
                            want.len(),
                            s.metric,
                            s.floats.len(),
                            s.floats
                        ));
                    }
                    for (w, g) in want.iter().zip(&s.floats) {
                        if w.0 != g.0 {
                            return Err(format!(
                                "expected float point {}@{} for {} but got {}@{}",
                                w.1, w.0, s.metric, g.1, g.0
                            ));
                        }
                        if !almost_equal(w.1, g.1) {
                            return Err(format!("expected float value at index {} for {} to be {}, but got {} (t={})", 0, s.metric, w.1, g.1, g.0));
                        }
                    }
                }
                for e in &cmd.series {
                    if !m.iter().any(|s| s.metric == e.labels) {
                        return Err(format!(
                            "expected metric {} not found in {}",
                            e.labels,
                            fmt_value(v)
                        ));
                    }
                }
                Ok(())
            }
            Value::Vector(vec) => {
                if cmd.scalar.is_some() {
                    return Err(format!("expected scalar result, but got {}", fmt_value(v)));
                }
                if cmd.string.is_some() {
                    return Err(format!("expected string result, but got {}", fmt_value(v)));
                }
                for (pos, s) in vec.iter().enumerate() {
                    let (idx, exp) = self.find(&s.metric).ok_or_else(|| {
                        format!(
                            "unexpected metric {} in result, has {}",
                            s.metric,
                            fmt_value(v)
                        )
                    })?;
                    if cmd.ordered && idx != pos {
                        return Err(format!(
                            "expected metric {} at position {} but was at {}",
                            s.metric, idx, pos
                        ));
                    }
                    match exp.values.first() {
                        Some(SeqValue::Float(f)) => {
                            if !almost_equal(*f, s.v) {
                                return Err(format!(
                                    "expected {} for {} but got {}",
                                    f, s.metric, s.v
                                ));
                            }
                        }
                        other => {
                            return Err(format!(
                                "expected {other:?} for {} but got float {}",
                                s.metric, s.v
                            ))
                        }
                    }
                }
                if vec.len() != cmd.series.len() {
                    return Err(format!(
                        "expected {} samples, got {}: {}",
                        cmd.series.len(),
                        vec.len(),
                        fmt_value(v)
                    ));
                }
                Ok(())
            }
            Value::Scalar { v: got, .. } => {
                let want = cmd.scalar.ok_or_else(|| {
                    format!("expected vector or matrix result, but got {}", fmt_value(v))
                })?;
                if !almost_equal(want, *got) {
                    return Err(format!("expected scalar {want} but got {got}"));
                }
                Ok(())
            }
            Value::String { v: got, .. } => {
                let want = cmd
                    .string
                    .as_ref()
                    .ok_or_else(|| format!("unexpected string result {got:?}"))?;
                if want != got {
                    return Err(format!("expected string {want:?} but got {got:?}"));
                }
                Ok(())
            }
        }
    }
}

fn check_annotations(cmd: &EvalCmd, r: &QueryResult) -> Result<(), String> {
    let a = &r.annotations;
    let check = |exps: &[MsgMatch], got: &[String], no: bool, kind: &str| -> Result<(), String> {
        if !exps.is_empty() {
            if got.is_empty() {
                return Err(format!("expected {kind} annotations but got none"));
            }
            for e in exps {
                if !got.iter().any(|g| e.matches(g)) {
                    return Err(format!(
                        "expected {kind} annotation {e:?} not found in {got:?}"
                    ));
                }
            }
            for g in got {
                if !exps.iter().any(|e| e.matches(g)) {
                    return Err(format!("unexpected {kind} annotation {g:?}"));
                }
            }
        }
        if no && !got.is_empty() {
            return Err(format!("unexpected {kind} annotations {got:?}"));
        }
        Ok(())
    };
    check(&cmd.warn, &a.warnings, cmd.no_warn, "warn")?;
    check(&cmd.info, &a.infos, cmd.no_info, "info")
}

fn check_failure(cmd: &EvalCmd, e: &QueryError) -> Result<(), String> {
    match &cmd.fail {
        Some(m) => {
            if m.matches(&fmt_err(e)) {
                Ok(())
            } else {
                Err(format!(
                    "expected error matching {m:?} but got {:?}",
                    fmt_err(e)
                ))
            }
        }
        None => Err(format!("unexpected error: {}", fmt_err(e))),
    }
}

fn context_funcs(expr: &str) -> bool {
    ["start()", "end()", "range()", "step()"]
        .iter()
        .any(|f| expr.contains(f))
}

fn run_instant_case(
    engine: &Engine,
    st: &Storage,
    cmd: &EvalCmd,
    expr: &Expr,
    t: i64,
) -> Result<(), String> {
    let opts = st.opts();
    let res = engine.instant_query_expr(&*st.queryable, expr, t, &opts);
    let r = match res {
        Err(e) => return check_failure(cmd, &e),
        Ok(r) => r,
    };
    if cmd.fail.is_some() {
        return Err(format!("expected error but got {}", fmt_value(&r.value)));
    }
    check_annotations(cmd, &r)?;
    let (start, step, end) = match cmd.range_vector {
        Some((s, e, st)) => (s, st, e),
        None => (t, 1, t),
    };
    let exp = Expectation {
        cmd,
        start,
        step,
        end,
    };
    exp.compare(&r.value)?;
    if cmd.range_vector.is_some() || cmd.string.is_some() || context_funcs(&cmd.expr) {
        return Ok(());
    }
    let rr = engine
        .range_query_expr(&*st.queryable, expr, t - 60_000, t + 60_000, 60_000, &opts)
        .map_err(|e| format!("range mode: unexpected error: {}", fmt_err(&e)))?;
    if cmd.ordered {
        return Ok(());
    }
    let Value::Matrix(m) = &rr.value else {
        return Err("range mode: result is not a matrix".into());
    };
    for w in m.windows(2) {
        if w[0].metric > w[1].metric {
            return Err("range mode: matrix not sorted by labels".into());
        }
    }
    let vec: Vec<crate::value::Sample> = m
        .iter()
        .filter_map(|s| {
            s.floats
                .iter()
                .find(|p| p.0 == t)
                .map(|p| crate::value::Sample {
                    metric: s.metric.clone(),
                    t,
                    v: p.1,
                })
        })
        .collect();
    let picked = if matches!(r.value, Value::Scalar { .. }) {
        match vec.first() {
            Some(s) => Value::Scalar { t, v: s.v },
            None => return Err("range mode: scalar result has no point at the eval time".into()),
        }
    } else {
        Value::Vector(vec)
    };
    exp.compare(&picked).map_err(|e| format!("range mode: {e}"))
}

fn run_eval(engine: &Engine, st: &Storage, cmd: &EvalCmd) -> Outcome {
    let (step, range) = match cmd.time {
        EvalTime::Range { start, end, step } => (step, end - start),
        EvalTime::Instant(_) => (0, 0),
    };
    let expr = match crate::rewrite::parse_query(&cmd.expr, step, range) {
        Ok(e) => e,
        Err(e) => return Outcome::Skipped(format!("parser: {}", short(&e))),
    };
    if cmd.expects_histograms {
        return Outcome::Skipped("native histograms: expected value is a histogram".into());
    }
    if st.selects_histograms(&expr) {
        return Outcome::Skipped("native histograms: expression selects histogram series".into());
    }
    match &cmd.time {
        EvalTime::Range { start, end, step } => {
            let res =
                engine.range_query_expr(&*st.queryable, &expr, *start, *end, *step, &st.opts());
            let r = match res {
                Err(e) => {
                    return match check_failure(cmd, &e) {
                        Ok(()) => Outcome::Passed,
                        Err(m) => Outcome::Failed(m),
                    }
                }
                Ok(r) => r,
            };
            if cmd.fail.is_some() {
                return Outcome::Failed(format!("expected error but got {}", fmt_value(&r.value)));
            }
            if let Err(m) = check_annotations(cmd, &r) {
                return Outcome::Failed(m);
            }
            let exp = Expectation {
                cmd,
                start: *start,
                step: *step,
                end: *end,
            };
            match exp.compare(&r.value) {
                Ok(()) => Outcome::Passed,
                Err(m) => Outcome::Failed(m),
            }
        }
        EvalTime::Instant(t) => {
            let t = *t;
            if let Err(m) = run_instant_case(engine, st, cmd, &expr, t) {
                return Outcome::Failed(m);
            }
            if has_at_unsafe(&expr) {
                return Outcome::Passed;
            }
            let mut pinned = expr.clone();
            set_at(&mut pinned, ms_to_system_time(t));
            let times: Vec<i64> = if t == 0 {
                vec![-1000, 0, 1000]
            } else {
                vec![-10 * t, 0, t / 5, t, 10 * t]
            };
            for et in times {
                if let Err(m) = run_instant_case(engine, st, cmd, &pinned, et) {
                    return Outcome::Failed(format!("@-variant at {et}ms ({pinned}): {m}"));
                }
            }
            Outcome::Passed
        }
    }
}

fn short(s: &str) -> String {
    let s = s.lines().next().unwrap_or("");
    if s.len() > 70 {
        let mut end = 70;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

/// A head holding `series` (each in time order).
fn head_with(series: &[VecSeries]) -> tsdb::head::Head {
    let head = tsdb::head::Head::in_memory();
    let mut app = head.appender();
    for s in series {
        let mut r = None;
        for &(t, v) in &s.samples {
            match app.append(r, &s.labels, t, v) {
                Ok(sref) => r = Some(sref),
                Err(e) => panic!("head rejected a loaded sample of {}: {e}", s.labels),
            }
        }
    }
    if let Err(e) = app.commit() {
        panic!("head rejected the loaded series: {e}");
    }
    head
}

/// Runs one script's text through `engine`, its series in memory.
pub fn run_script(engine: &Engine, text: &str) -> FileReport {
    run_script_on(engine, text, Backend::Memory)
}

/// Runs one script's text through `engine`, its series kept in `backend`.
pub fn run_script_on(engine: &Engine, text: &str, backend: Backend) -> FileReport {
    let mut report = FileReport::default();
    let cmds = match script::parse_script(text) {
        Ok(c) => c,
        Err(e) => {
            report.fatal = Some(e.to_string());
            return report;
        }
    };
    let mut st = Storage::new(backend);
    for c in &cmds {
        match c {
            Command::Clear => st.clear(),
            Command::Load {
                interval,
                nhcb,
                series,
            } => st.load(*interval, *nhcb, series),
            Command::Eval(cmd) => {
                let outcome = run_eval(engine, &st, cmd);
                report.evals.push(EvalReport {
                    line: cmd.line,
                    expr: cmd.expr.clone(),
                    outcome,
                });
            }
        }
    }
    report
}

/// Reads and runs one script file, its series in memory.
pub fn run_file(engine: &Engine, path: &std::path::Path) -> FileReport {
    run_file_on(engine, path, Backend::Memory)
}

/// Reads and runs one script file, its series kept in `backend`.
pub fn run_file_on(engine: &Engine, path: &std::path::Path, backend: Backend) -> FileReport {
    match std::fs::read_to_string(path) {
        Ok(t) => run_script_on(engine, &t, backend),
        Err(e) => FileReport {
            evals: vec![],
            fatal: Some(format!("{}: {e}", path.display())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_equality() {
        assert!(almost_equal(1.0, 1.0 + 1e-9));
        assert!(!almost_equal(1.0, 1.1));
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(!almost_equal(0.0, 1e-300));
        assert!(!almost_equal(f64::INFINITY, 1e308));
    }

    #[test]
    fn small_script_passes() {
        let s = "load 1m\n  m{a=\"1\"} 1 2 3\n  m{a=\"2\"} 10 20 30\n\neval instant at 2m sum(m)\n  {} 33\n\neval range from 0 to 2m step 1m m{a=\"1\"}\n  m{a=\"1\"} 1 2 3\n\neval instant at 1m m\n  m{a=\"1\"} 5\n";
        let r = run_script(&test_engine(), s);
        assert!(r.fatal.is_none());
        assert_eq!(r.evals.len(), 3);
        assert_eq!(r.evals[0].outcome, Outcome::Passed, "{:?}", r.evals[0]);
        assert_eq!(r.evals[1].outcome, Outcome::Passed, "{:?}", r.evals[1]);
        assert!(matches!(r.evals[2].outcome, Outcome::Failed(_)));
    }
}
