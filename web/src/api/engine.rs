//! The seam between the HTTP API and the PromQL engine.
//!
//! [`QueryEngine`] runs instant and range queries over a [`Queryable`] and returns a
//! [`QueryOutput`] in the API's own value types, which the handlers serialize. The full engine
//! (the `query` crate) plugs in through one `impl QueryEngine`; [`BasicEngine`] is a small
//! built-in evaluator (literals, selectors, scalar arithmetic) that keeps the server useful
//! and testable on its own.

use std::time::Duration;

use promql_parser::parser::token::{T_ADD, T_DIV, T_MOD, T_MUL, T_POW, T_SUB};
use promql_parser::parser::{Expr, Offset, VectorSelector};
use tsdb::chunkenc::{is_stale_nan, ValueType};
use tsdb::labels::Labels;
use tsdb::querier::{Queryable, SelectHints};

use super::error::ApiError;

/// Per-query options from the request and the flags.
#[derive(Clone, Debug, Default)]
pub struct QueryOpts {
    /// Lookback delta (ms); the engine default when `None`.
    pub lookback_delta: Option<i64>,
    /// Time limit; the engine default when `None`.
    pub timeout: Option<Duration>,
    /// Whether per-query statistics are wanted (`stats=all`).
    pub stats: bool,
}

/// One sample of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct InstantSample {
    /// The series' labels.
    pub labels: Labels,
    /// Timestamp (ms).
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// One series of a range vector.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Samples in time order.
    pub samples: Vec<(i64, f64)>,
}

/// A query's result value.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryValue {
    /// An instant vector.
    Vector(Vec<InstantSample>),
    /// A range vector (matrix).
    Matrix(Vec<RangeSeries>),
    /// A scalar at a time.
    Scalar(i64, f64),
    /// A string at a time.
    String(i64, String),
}

impl QueryValue {
    /// Prometheus's `resultType` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            QueryValue::Vector(_) => "vector",
            QueryValue::Matrix(_) => "matrix",
            QueryValue::Scalar(..) => "scalar",
            QueryValue::String(..) => "string",
        }
    }
}

/// What a query returns: the value, annotations and optional statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryOutput {
    /// The result.
    pub value: QueryValue,
    /// Warning annotations.
    pub warnings: Vec<String>,
    /// Info annotations.
    pub infos: Vec<String>,
    /// Statistics as a JSON object, when asked for and available.
    pub stats: Option<serde_json::Value>,
}

impl QueryOutput {
    /// An output with only a value.
    pub fn new(value: QueryValue) -> Self {
        QueryOutput {
            value,
            warnings: Vec::new(),
            infos: Vec::new(),
            stats: None,
        }
    }
}

/// A PromQL engine as the API sees it. Errors carry Prometheus's error types: `bad_data` for
/// queries that do not parse, `execution`, `timeout`, `canceled`.
pub trait QueryEngine: Send + Sync + 'static {
    /// Evaluates `query` at `t` (ms).
    fn instant_query(
        &self,
        db: &dyn Queryable,
        query: &str,
        t: i64,
        opts: &QueryOpts,
    ) -> Result<QueryOutput, ApiError>;
    /// Evaluates `query` at every `step` from `start` to `end` (ms, inclusive).
    fn range_query(
        &self,
        db: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        opts: &QueryOpts,
    ) -> Result<QueryOutput, ApiError>;
}

/// Parses a query the way the API reports parse failures:
/// `invalid parameter "query": <parser message>`.
pub fn parse_query(query: &str) -> Result<Expr, ApiError> {
    promql_parser::parser::parse(query).map_err(|e| ApiError::invalid_param("query", e))
}

/// A minimal evaluator: number and string literals, parentheses, unary minus, arithmetic
/// between scalars, vector selectors (with lookback, offset and staleness) and, at the top of
/// an instant query, range selectors. Anything else is an `execution` error.
#[derive(Clone, Debug)]
pub struct BasicEngine {
    /// Default lookback delta (ms).
    pub lookback_delta: i64,
    /// Maximum samples a query may load.
    pub max_samples: usize,
}

impl Default for BasicEngine {
    fn default() -> Self {
        BasicEngine {
            lookback_delta: 300_000,
            max_samples: 50_000_000,
        }
    }
}

enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<InstantSample>),
    Matrix(Vec<RangeSeries>),
}

impl BasicEngine {
    fn eval(
        &self,
        db: &dyn Queryable,
        e: &Expr,
        t: i64,
        lookback: i64,
        loaded: &mut usize,
    ) -> Result<Val, ApiError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(db, &p.expr, t, lookback, loaded),
            Expr::Unary(u) => match self.eval(db, &u.expr, t, lookback, loaded)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(mut vs) => {
                    for s in &mut vs {
                        s.v = -s.v;
                        s.labels = s.labels.without_metric_name();
                    }
                    Ok(Val::Vector(vs))
                }
                _ => Err(unsupported(e)),
            },
            Expr::Binary(b) => {
                let l = self.eval(db, &b.lhs, t, lookback, loaded)?;
                let r = self.eval(db, &b.rhs, t, lookback, loaded)?;
                match (l, r) {
                    (Val::Scalar(x), Val::Scalar(y)) => {
                        let v = match b.op.id() {
                            T_ADD => x + y,
                            T_SUB => x - y,
                            T_MUL => x * y,
                            T_DIV => x / y,
                            T_MOD => x % y,
                            T_POW => x.powf(y),
                            _ => return Err(unsupported(e)),
                        };
                        Ok(Val::Scalar(v))
                    }
                    _ => Err(unsupported(e)),
                }
            }
            Expr::VectorSelector(vs) => {
                let t = t - offset_ms(vs);
                let mut out = Vec::new();
                self.select(db, vs, t - lookback, t, loaded, |labels, samples| {
                    if let Some(&(st, v)) = samples.last() {
                        if !is_stale_nan(v) {
                            out.push(InstantSample { labels, t: st, v });
                        }
                    }
                })?;
                for s in &mut out {
                    s.t = t;
                }
                Ok(Val::Vector(out))
            }
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let t = t - offset_ms(vs);
                let range = ms.range.as_millis() as i64;
                let mut out = Vec::new();
                self.select(db, vs, t - range, t, loaded, |labels, samples| {
                    let samples: Vec<(i64, f64)> = samples
                        .iter()
                        .copied()
                        .filter(|s| !is_stale_nan(s.1))
                        .collect();
                    if !samples.is_empty() {
                        out.push(RangeSeries { labels, samples });
                    }
                })?;
                Ok(Val::Matrix(out))
            }
            _ => Err(unsupported(e)),
        }
    }

    /// Selects the series of `vs` with samples in `(mint, maxt]` and hands each to `f`.
    fn select(
        &self,
        db: &dyn Queryable,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        loaded: &mut usize,
        mut f: impl FnMut(Labels, &[(i64, f64)]),
    ) -> Result<(), ApiError> {
        if vs.at.is_some() {
            return Err(ApiError::execution(
                "the built-in engine does not support the @ modifier",
            ));
        }
        let sets = super::params::selector_matchers(vs).map_err(ApiError::bad_data)?;
        let q = db
            .querier(mint + 1, maxt)
            .map_err(|e| ApiError::execution(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        let mut buf: Vec<(i64, f64)> = Vec::new();
        for set in sets {
            let hints = SelectHints {
                start: mint + 1,
                end: maxt,
                ..Default::default()
            };
            for s in q.select(true, Some(&hints), &set) {
                let s = s.map_err(|e| ApiError::execution(e.to_string()))?;
                if !seen.insert(s.labels().clone()) {
                    continue;
                }
                buf.clear();
                let mut it = s.iter();
                let mut vt = it.seek(mint + 1);
                while vt != ValueType::None {
                    let (st, v) = it.at();
                    if st > maxt {
                        break;
                    }
                    buf.push((st, v));
                    vt = it.next();
                }
                if let Some(err) = it.err() {
                    return Err(ApiError::execution(err.to_string()));
                }
                *loaded += buf.len();
                if *loaded > self.max_samples {
                    return Err(ApiError::execution(
                        "query processing would load too many samples into memory in query execution",
                    ));
                }
                f(s.labels().clone(), &buf);
            }
        }
        Ok(())
    }
}

fn offset_ms(vs: &VectorSelector) -> i64 {
    match &vs.offset {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

fn unsupported(e: &Expr) -> ApiError {
    ApiError::execution(format!("the built-in engine cannot evaluate {e}"))
}

impl QueryEngine for BasicEngine {
    fn instant_query(
        &self,
        db: &dyn Queryable,
        query: &str,
        t: i64,
        opts: &QueryOpts,
    ) -> Result<QueryOutput, ApiError> {
        let expr = parse_query(query)?;
        let lookback = opts.lookback_delta.unwrap_or(self.lookback_delta);
        let mut loaded = 0;
        let value = match self.eval(db, &expr, t, lookback, &mut loaded)? {
            Val::Scalar(v) => QueryValue::Scalar(t, v),
            Val::Str(s) => QueryValue::String(t, s),
            Val::Vector(v) => QueryValue::Vector(v),
            Val::Matrix(m) => QueryValue::Matrix(m),
        };
        Ok(QueryOutput::new(value))
    }

    fn range_query(
        &self,
        db: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        opts: &QueryOpts,
    ) -> Result<QueryOutput, ApiError> {
        let expr = parse_query(query)?;
        if matches!(
            expr.value_type(),
            promql_parser::parser::value::ValueType::Matrix
                | promql_parser::parser::value::ValueType::String
        ) {
            return Err(ApiError::bad_data(format!(
                "invalid parameter \"query\": invalid expression type {:?} for range query, must be Scalar or instant Vector",
                expr.value_type().to_string()
            )));
        }
        let lookback = opts.lookback_delta.unwrap_or(self.lookback_delta);
        let mut series: std::collections::BTreeMap<Labels, Vec<(i64, f64)>> = Default::default();
        let mut loaded = 0;
        let mut t = start;
        while t <= end {
            match self.eval(db, &expr, t, lookback, &mut loaded)? {
                Val::Scalar(v) => series.entry(Labels::empty()).or_default().push((t, v)),
                Val::Vector(vs) => {
                    for s in vs {
                        series.entry(s.labels).or_default().push((t, s.v));
                    }
                }
                _ => return Err(unsupported(&expr)),
            }
            t += step;
        }
        let m = series
            .into_iter()
            .map(|(labels, samples)| RangeSeries { labels, samples })
            .collect();
        Ok(QueryOutput::new(QueryValue::Matrix(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb::querier::{MemQueryable, VecSeries};

    fn db() -> MemQueryable {
        MemQueryable::new(vec![
            VecSeries {
                labels: Labels::from_pairs(&[("__name__", "up"), ("job", "a")]),
                samples: (0..10).map(|i| (i * 15_000, i as f64)).collect(),
            },
            VecSeries {
                labels: Labels::from_pairs(&[("__name__", "up"), ("job", "b")]),
                samples: vec![(0, 7.0), (15_000, tsdb::chunkenc::stale_nan())],
            },
        ])
    }

    #[test]
    fn scalars_and_strings() {
        let e = BasicEngine::default();
        let o = e
            .instant_query(&db(), "1+1", 5000, &QueryOpts::default())
            .unwrap();
        assert_eq!(o.value, QueryValue::Scalar(5000, 2.0));
        let o = e
            .instant_query(&db(), "\"hi\"", 1, &QueryOpts::default())
            .unwrap();
        assert_eq!(o.value, QueryValue::String(1, "hi".into()));
        let err = e
            .instant_query(&db(), "sum(", 1, &QueryOpts::default())
            .unwrap_err();
        assert_eq!(err.kind, super::super::error::ErrorType::BadData);
    }

    #[test]
    fn selectors_use_lookback_and_staleness() {
        let e = BasicEngine::default();
        let o = e
            .instant_query(&db(), "up", 20_000, &QueryOpts::default())
            .unwrap();
        let QueryValue::Vector(v) = o.value else {
            panic!("not a vector")
        };
        assert_eq!(v.len(), 1, "job b is stale");
        assert_eq!((v[0].t, v[0].v), (20_000, 1.0));
        let o = e
            .instant_query(&db(), "up{job=\"a\"}[31s]", 45_000, &QueryOpts::default())
            .unwrap();
        let QueryValue::Matrix(m) = o.value else {
            panic!("not a matrix")
        };
        assert_eq!(
            m[0].samples,
            vec![(15_000, 1.0), (30_000, 2.0), (45_000, 3.0)]
        );
        let o = e
            .range_query(&db(), "up", 0, 30_000, 15_000, &QueryOpts::default())
            .unwrap();
        let QueryValue::Matrix(m) = o.value else {
            panic!("not a matrix")
        };
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].samples, vec![(0, 0.0), (15_000, 1.0), (30_000, 2.0)]);
        assert_eq!(m[1].samples, vec![(0, 7.0)]);
    }
}
