//! The seam between the HTTP API and the PromQL engine.
//!
//! [`QueryEngine`] runs instant and range queries over a [`Queryable`] and returns a
//! [`QueryOutput`] in the API's own value types, which the handlers serialize. The full engine
//! is the `query` crate's, plugged in as [`PromqlEngine`].
//!
//! Parsed queries are cached by their text (see [`parse_eval_query`]): dashboards send the
//! same few queries on every refresh, and parsing one costs more than evaluating many small
//! ones (the parser compiles every regex matcher of the query).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::Expr;
use query::{Engine, EngineOptions, ErrorKind, QueryError, QueryOptions, Value};
use tsdb::labels::Labels;
use tsdb::querier::Queryable;

use super::error::{ApiError, ErrorType};

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

/// Parses a query to evaluate as the engine does in-process: text the parser rejects gets
/// its duration expressions (`[step()*2]`, `offset 1h+5m`), extended range selectors and
/// `info()` selectors rewritten first (`query::rewrite`), using the query's `step_ms` and
/// `range_ms` (0 for instant queries). Errors are the parser's, as [`parse_query`]'s.
/// Results are cached by query text ([`PARSE_CACHE_MAX`] entries; a hit needs the same step
/// and range); failures are not.
pub fn parse_eval_query(query: &str, step_ms: i64, range_ms: i64) -> Result<Expr, ApiError> {
    if let Some((s, r, e)) = parse_cache().lock().get(query) {
        if (*s, *r) == (step_ms, range_ms) {
            return Ok(e.clone());
        }
    }
    let expr = query::rewrite::parse_query(query, step_ms, range_ms)
        .map_err(|e| ApiError::invalid_param("query", e))?;
    let mut cache = parse_cache().lock();
    if cache.len() >= PARSE_CACHE_MAX {
        cache.clear();
    }
    cache.insert(query.to_string(), (step_ms, range_ms, expr.clone()));
    Ok(expr)
}

/// How many parsed queries [`parse_eval_query`] keeps; when full the cache is emptied and
/// starts again, which bounds the memory a client sending ever new queries can pin.
pub const PARSE_CACHE_MAX: usize = 512;

/// Successfully parsed queries by text, with the step and range they were rewritten for.
type ParseCache = HashMap<String, (i64, i64, Expr)>;

fn parse_cache() -> &'static Mutex<ParseCache> {
    static CACHE: OnceLock<Mutex<ParseCache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The `query` crate's PromQL engine behind the [`QueryEngine`] seam. A per-query `timeout`
/// shorter than the engine's is honoured by running that query with a tighter deadline.
#[derive(Clone, Debug, Default)]
pub struct PromqlEngine {
    base: EngineOptions,
}

impl PromqlEngine {
    /// An engine with the given defaults (lookback delta, sample limit, timeout).
    pub fn new(base: EngineOptions) -> Self {
        PromqlEngine { base }
    }

    fn engine(&self, opts: &QueryOpts) -> Engine {
        let mut o = self.base.clone();
        if let Some(t) = opts.timeout {
            o.timeout = o.timeout.min(t);
        }
        Engine::new(o)
    }
}

/// Maps an engine error onto the API's error types.
pub fn convert_error(e: QueryError) -> ApiError {
    let kind = match e.kind {
        ErrorKind::BadData => ErrorType::BadData,
        ErrorKind::Execution => ErrorType::Execution,
        ErrorKind::Timeout => ErrorType::Timeout,
        ErrorKind::Canceled => ErrorType::Canceled,
        ErrorKind::Internal => ErrorType::Internal,
    };
    ApiError::new(kind, e.msg)
}

fn convert_result(r: query::QueryResult, want_stats: bool) -> QueryOutput {
    let value = match r.value {
        Value::Scalar { t, v } => QueryValue::Scalar(t, v),
        Value::String { t, v } => QueryValue::String(t, v),
        Value::Vector(vs) => QueryValue::Vector(
            vs.into_iter()
                .map(|s| InstantSample {
                    labels: s.metric,
                    t: s.t,
                    v: s.v,
                })
                .collect(),
        ),
        Value::Matrix(m) => QueryValue::Matrix(
            m.into_iter()
                .map(|s| RangeSeries {
                    labels: s.metric,
                    samples: s.floats,
                })
                .collect(),
        ),
    };
    let stats = want_stats.then(|| {
        let eval = r.stats.eval_time.as_secs_f64();
        let prep = r.stats.prepare_time.as_secs_f64();
        serde_json::json!({
            "timings": {
                "evalTotalTime": eval + prep,
                "resultSortTime": 0,
                "queryPreparationTime": prep,
                "innerEvalTime": eval,
                "execQueueTime": 0,
                "execTotalTime": eval + prep,
            },
            "samples": {
                "totalQueryableSamples": r.stats.total_queryable_samples,
                "peakSamples": r.stats.peak_samples,
            },
        })
    });
    QueryOutput {
        value,
        warnings: r.annotations.warnings,
        infos: r.annotations.infos,
        stats,
    }
}

impl QueryEngine for PromqlEngine {
    fn instant_query(
        &self,
        db: &dyn Queryable,
        query: &str,
        t: i64,
        opts: &QueryOpts,
    ) -> Result<QueryOutput, ApiError> {
        let expr = parse_eval_query(query, 0, 0)?;
        let qo = QueryOptions {
            lookback_delta: opts.lookback_delta,
            ..Default::default()
        };
        let r = self
            .engine(opts)
            .instant_query_expr(db, &expr, t, &qo)
            .map_err(convert_error)?;
        Ok(convert_result(r, opts.stats))
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
        let expr = parse_eval_query(query, step, end - start)?;
        let vt = expr.value_type();
        if !matches!(vt, ValueType::Scalar | ValueType::Vector) {
            let name = match vt {
                ValueType::Matrix => "range vector",
                _ => "string",
            };
            return Err(ApiError::invalid_param(
                "query",
                format!("invalid expression type {name:?} for range query, must be Scalar or instant Vector"),
            ));
        }
        let qo = QueryOptions {
            lookback_delta: opts.lookback_delta,
            ..Default::default()
        };
        let r = self
            .engine(opts)
            .range_query_expr(db, &expr, start, end, step, &qo)
            .map_err(convert_error)?;
        Ok(convert_result(r, opts.stats))
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
    fn results_and_errors_convert() {
        let e = PromqlEngine::default();
        let o = e
            .instant_query(&db(), "1+1", 5000, &QueryOpts::default())
            .unwrap();
        assert_eq!(o.value, QueryValue::Scalar(5000, 2.0));
        let o = e
            .instant_query(
                &db(),
                "sum(up)",
                20_000,
                &QueryOpts {
                    stats: true,
                    ..Default::default()
                },
            )
            .unwrap();
        let QueryValue::Vector(v) = o.value else {
            panic!("not a vector")
        };
        assert_eq!((v.len(), v[0].v), (1, 1.0));
        assert!(o.stats.is_some());
        let err = e
            .instant_query(&db(), "sum(", 1, &QueryOpts::default())
            .unwrap_err();
        assert_eq!(err.kind, ErrorType::BadData);
        assert!(err.msg.starts_with("invalid parameter \"query\": "));
        let o = e
            .range_query(&db(), "up", 0, 30_000, 15_000, &QueryOpts::default())
            .unwrap();
        let QueryValue::Matrix(m) = o.value else {
            panic!("not a matrix")
        };
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].samples, vec![(0, 0.0), (15_000, 1.0), (30_000, 2.0)]);
        let err = e
            .range_query(&db(), "up[5m]", 0, 30_000, 15_000, &QueryOpts::default())
            .unwrap_err();
        assert_eq!(err.kind, ErrorType::BadData);
        // Duration expressions are folded with the query's step, as the engine does
        // in-process; a query that still does not parse keeps the parser's message.
        let o = e
            .range_query(
                &db(),
                "count_over_time(up{job=\"a\"}[step()*2])",
                30_000,
                60_000,
                15_000,
                &QueryOpts::default(),
            )
            .unwrap();
        let QueryValue::Matrix(m) = o.value else {
            panic!("not a matrix")
        };
        assert_eq!(
            m[0].samples,
            vec![(30_000, 2.0), (45_000, 2.0), (60_000, 2.0)]
        );
        let o = e
            .instant_query(
                &db(),
                "count_over_time(up[29s+1s])",
                60_000,
                &QueryOpts::default(),
            )
            .unwrap();
        assert!(matches!(o.value, QueryValue::Vector(ref v) if v.len() == 1 && v[0].v == 2.0));
        let err = e
            .range_query(
                &db(),
                "up[step()*]",
                0,
                30_000,
                15_000,
                &QueryOpts::default(),
            )
            .unwrap_err();
        assert_eq!(err.msg, parse_query("up[step()*]").unwrap_err().msg);
    }

    #[test]
    fn cached_parses_follow_the_step_and_range() {
        let e = PromqlEngine::default();
        let q = "count_over_time(up{job=~\"a|x\"}[step()*2])";
        let run = |step: i64| {
            let o = e
                .range_query(&db(), q, 60_000, 120_000, step, &QueryOpts::default())
                .unwrap();
            let QueryValue::Matrix(m) = o.value else {
                panic!("not a matrix")
            };
            m[0].samples.clone()
        };
        let by_15s = vec![
            (60_000, 2.0),
            (75_000, 2.0),
            (90_000, 2.0),
            (105_000, 2.0),
            (120_000, 2.0),
        ];
        let by_30s = vec![(60_000, 4.0), (90_000, 4.0), (120_000, 4.0)];
        // Parsed for 15 s, then 30 s (a cached parse must not be reused), then 15 s again.
        assert_eq!(run(15_000), by_15s);
        assert_eq!(run(30_000), by_30s);
        assert_eq!(run(15_000), by_15s);
        assert_eq!(run(15_000), by_15s);
        // A failed parse is reported every time.
        for _ in 0..2 {
            assert!(parse_eval_query("sum(", 0, 0).is_err());
        }
    }
}
