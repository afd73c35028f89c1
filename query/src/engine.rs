//! The PromQL engine: parses a query, evaluates it over a [`Queryable`] as an instant or a
//! range query with Prometheus 3.x semantics, and returns the value with its annotations and
//! statistics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::{self, Expr};
use tsdb::{Labels, Queryable};

use crate::annotations::Annotations;
use crate::error::{QResult, QueryError};
use crate::eval::{Evaluator, StepSeries, Val};
use crate::value::{Sample, Series, Value};

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (ms). Prometheus: 5m.
    pub lookback_delta: i64,
    /// Most samples a query may hold in memory at once.
    pub max_samples: usize,
    /// Longest a query may run.
    pub timeout: Duration,
    /// Step of subqueries written without one (`[10m:]`), in ms.
    pub default_subquery_step: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step: 60_000,
        }
    }
}

/// Supplies the start (created) timestamps of stored samples, for storages that keep them.
/// `rate`, `increase`, `irate` and `resets` use them to detect counter resets and zero points.
pub trait StartTimestampSource: Send + Sync {
    /// Start timestamps parallel to `samples` of the series `labels` (0 where unknown), or
    /// `None` when the series has none.
    fn start_timestamps(&self, labels: &Labels, samples: &[(i64, f64)]) -> Option<Vec<i64>>;
}

/// Per-query settings that override the engine's.
#[derive(Clone, Default)]
pub struct QueryOptions {
    /// Lookback delta for this query (ms); `None` uses the engine's.
    pub lookback_delta: Option<i64>,
    /// Where start timestamps come from, if the storage keeps them.
    pub start_timestamps: Option<Arc<dyn StartTimestampSource>>,
    /// Set to `true` (e.g. when the client goes away) to stop the query with a `canceled`
    /// error at the next check.
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl std::fmt::Debug for QueryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryOptions")
            .field("lookback_delta", &self.lookback_delta)
            .field("start_timestamps", &self.start_timestamps.is_some())
            .field("cancel", &self.cancel.is_some())
            .finish()
    }
}

/// Statistics of one query, as Prometheus's `stats` parameter reports them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryStats {
    /// Samples read from storage and processed.
    pub total_queryable_samples: u64,
    /// Most samples held in memory at once.
    pub peak_samples: usize,
    /// Time spent evaluating.
    pub eval_time: Duration,
    /// Time spent parsing and preparing.
    pub prepare_time: Duration,
}

/// The outcome of a successful query.
#[derive(Clone, Debug)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// Warnings and infos.
    pub annotations: Annotations,
    /// Statistics.
    pub stats: QueryStats,
}

/// The PromQL engine. Cheap to share; holds only settings.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOptions,
}

/// Parses a query, mapping parse errors to `bad_data`.
pub fn parse(query: &str) -> QResult<Expr> {
    parser::parse(query).map_err(QueryError::bad_data)
}

impl Engine {
    /// An engine with the given options.
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    /// The engine's options.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at time `t` (ms).
    pub fn instant_query(&self, q: &dyn Queryable, query: &str, t: i64) -> QResult<QueryResult> {
        let expr = parse(query)?;
        self.instant_query_expr(q, &expr, t, &QueryOptions::default())
    }

    /// Evaluates `query` from `start` to `end` every `step` (ms).
    pub fn range_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> QResult<QueryResult> {
        let expr =
            crate::rewrite::parse_query(query, step, end - start).map_err(QueryError::bad_data)?;
        self.range_query_expr(q, &expr, start, end, step, &QueryOptions::default())
    }

    /// Evaluates a parsed expression at time `t` (ms).
    pub fn instant_query_expr(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        t: i64,
        o: &QueryOptions,
    ) -> QResult<QueryResult> {
        self.exec(q, expr, t, t, 0, o)
    }

    /// Evaluates a parsed expression as a range query.
    pub fn range_query_expr(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        o: &QueryOptions,
    ) -> QResult<QueryResult> {
        if step <= 0 {
            return Err(QueryError::bad_data(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if end < start {
            return Err(QueryError::bad_data(
                "end timestamp must not be before start time",
            ));
        }
        match expr.value_type() {
            parser::value::ValueType::Vector | parser::value::ValueType::Scalar => {}
            other => {
                let t = match other {
                    parser::value::ValueType::Matrix => "range vector",
                    parser::value::ValueType::String => "string",
                    _ => "unknown",
                };
                return Err(QueryError::bad_data(format!(
                    "invalid expression type \"{t}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        self.exec(q, expr, start, end, step, o)
    }

    fn exec(
        &self,
        q: &dyn Queryable,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        o: &QueryOptions,
    ) -> QResult<QueryResult> {
        let began = Instant::now();
        let lookback = match o.lookback_delta {
            Some(l) if l > 0 => l,
            _ => self.opts.lookback_delta,
        };
        let mut ev = Evaluator {
            q,
            start,
            end,
            interval: if step == 0 { 1 } else { step },
            query_start: start,
            query_end: end,
            query_step: step,
            start_timestamps: o.start_timestamps.as_deref(),
            cancel: o.cancel.as_deref(),
            lookback,
            max_samples: self.opts.max_samples,
            cur_samples: 0,
            total_samples: 0,
            peak_samples: 0,
            deadline: Some(began + self.opts.timeout),
            annos: Annotations::default(),
            default_subquery_step: self.opts.default_subquery_step,
            keep_labels: None,
        };
        let val = ev.eval(expr)?;
        let value = if step == 0 {
            match val {
                Val::Scalar(v) => Value::Scalar { t: start, v: v[0] },
                Val::Str(s) => Value::String { t: start, v: s },
                Val::Vector(ss) => {
                    let ss = cleanup(ss)?;
                    let mut out = Vec::with_capacity(ss.len());
                    for s in ss {
                        if let Some(&(_, v)) = s.pts.first() {
                            out.push(Sample {
                                metric: Arc::unwrap_or_clone(s.metric),
                                t: start,
                                v,
                            });
                        }
                    }
                    // `cleanup` merged series of one label set, failing if two had a point
                    // at this one step: the label sets here are distinct.
                    Value::Vector(out)
                }
                Val::Range(ss) => {
                    let ss = cleanup(ss)?;
                    Value::Matrix(
                        ss.into_iter()
                            .map(|s| Series {
                                metric: Arc::unwrap_or_clone(s.metric),
                                floats: s.pts.into_vec(),
                            })
                            .collect(),
                    )
                }
            }
        } else {
            let ss = match val {
                Val::Scalar(v) => {
                    let pts: Vec<(i64, f64)> = ev.steps().zip(v).collect();
                    vec![StepSeries {
                        metric: Arc::new(Labels::empty()),
                        pts: pts.into(),
                        drop_name: false,
                    }]
                }
                Val::Vector(ss) => ss,
                _ => {
                    return Err(QueryError::bad_data(
                        "invalid expression type for range query",
                    ))
                }
            };
            let ss = cleanup(ss)?;
            let mut m: Vec<Series> = ss
                .into_iter()
                .filter(|s| !s.pts.is_empty())
                .map(|s| Series {
                    metric: Arc::unwrap_or_clone(s.metric),
                    floats: s.pts.into_vec(),
                })
                .collect();
            m.sort_by(|a, b| a.metric.cmp(&b.metric));
            Value::Matrix(m)
        };
        let stats = QueryStats {
            total_queryable_samples: ev.total_samples,
            peak_samples: ev.peak_samples,
            eval_time: began.elapsed(),
            prepare_time: Duration::ZERO,
        };
        Ok(QueryResult {
            value,
            annotations: ev.annos,
            stats,
        })
    }
}

/// Delayed name removal: drops `__name__` where flagged, then merges series that now share
/// labels (overlapping points are an error).
fn cleanup(mut ss: Vec<StepSeries>) -> QResult<Vec<StepSeries>> {
    for s in &mut ss {
        if s.drop_name && s.metric.has("__name__") {
            s.metric = Arc::new(s.metric.without_metric_name());
        }
    }
    crate::eval::merge_same_labelset(ss)
}
