//! `query`, `query_range`, `query_exemplars`, `format_query`, `parse_query`.
//!
//! Parameters as Prometheus: `query`; `time` (default now) or `start`/`end`/`step`; `timeout`
//! (capped by `--query.timeout`); `lookback_delta`; `stats` (any value asks for statistics).
//! A range query is refused with `bad_data` when `end < start`, `step <= 0` or it would return
//! more than 11,000 points per series.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;

use super::engine::{parse_query as parse_expr, QueryOpts, QueryOutput, QueryValue, RangeSeries};
use super::error::{ApiError, ErrorType};
use super::json::{self, write_labels, write_sample, write_str, write_ts};
use super::params::Params;
use super::{json_response, success};
use crate::server::state::SharedState;

/// Current time in ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn query_opts(state: &SharedState, p: &Params) -> Result<QueryOpts, ApiError> {
    let mut timeout = state.args.query_timeout;
    if let Some(ms) = p.duration("timeout")? {
        let t = Duration::from_millis(ms.max(0) as u64);
        if t < timeout {
            timeout = t;
        }
    }
    Ok(QueryOpts {
        lookback_delta: p.duration("lookback_delta")?,
        timeout: Some(timeout),
        stats: p.get("stats").is_some(),
    })
}

fn query_param(p: &Params) -> Result<String, ApiError> {
    match p.get("query") {
        Some(q) => Ok(q.to_string()),
        None => Err(ApiError::invalid_param(
            "query",
            "1:1: parse error: no expression found in input",
        )),
    }
}

/// Runs a query with the concurrency limit and the timeout. Evaluation, sorting a range
/// result and encoding the response body all run on the blocking pool, so large results never
/// hold up the async workers; returns the body and the evaluation time.
///
/// The body is handed back as soon as it is encoded: freeing the result and the allocator
/// work after a query ([`tsdb::querier::thread_idle`], [`tsdb::parallel::pool_idle`]) happen
/// on the blocking thread while the response is already on its way.
async fn run_query(
    state: &SharedState,
    opts: &QueryOpts,
    sort_matrix: bool,
    f: impl FnOnce(&SharedState) -> Result<QueryOutput, ApiError> + Send + 'static,
) -> Result<(String, Duration), ApiError> {
    let queued = Instant::now();
    let _slot = state
        .query_slots
        .acquire()
        .await
        .map_err(|_| ApiError::new(ErrorType::Unavailable, "server is shutting down"))?;
    let started = Instant::now();
    let st = Arc::clone(state);
    let stats = opts.stats;
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<(String, Duration), ApiError>>();
    // Not awaited: the answer comes through `rx` before the clean-up below. If the closure
    // panics, `tx` is dropped and the request fails with an internal error.
    drop(tokio::task::spawn_blocking(move || {
        let out = f(&st).map(|mut out| {
            let took = started.elapsed();
            if sort_matrix {
                if let QueryValue::Matrix(m) = &mut out.value {
                    if !m.windows(2).all(|w| w[0].labels <= w[1].labels) {
                        m.sort_by(|a, b| a.labels.cmp(&b.labels));
                    }
                }
            }
            let body = response_body(&out, took, stats);
            (out, body, took)
        });
        let out = match out {
            Ok((out, body, took)) => {
                let _ = tx.send(Ok((body, took)));
                Some(out)
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                None
            }
        };
        // Free the result here, then let this thread and the selection pool hand back the
        // allocator pages the query used (see `web`'s binary): pages freed by a thread other
        // than their owner stay resident until the owner looks at them, and the pool threads
        // that built the series sit idle after the query.
        drop(out);
        tsdb::querier::thread_idle();
        tsdb::parallel::pool_idle();
    }));
    let timeout = opts.timeout.unwrap_or(state.args.query_timeout);
    let (body, took) = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r?,
        Ok(Err(_)) => {
            return Err(ApiError::internal(
                "request handler failed: query evaluation panicked",
            ))
        }
        Err(_) => {
            return Err(ApiError::new(
                ErrorType::Timeout,
                "query timed out in expression evaluation",
            ))
        }
    };
    state.metrics.observe_query("inner_eval", took);
    state
        .metrics
        .observe_query("queue_time", started.duration_since(queued));
    Ok((body, took))
}

/// A generous guess of the encoded size of `v`, so the body is written without regrowing
/// (pages reserved but never written cost nothing): 40 bytes per point, 300 per series.
fn estimate_len(v: &QueryValue) -> usize {
    256 + match v {
        QueryValue::Vector(vs) => vs.len() * 230,
        QueryValue::Matrix(m) => matrix_len(m),
        QueryValue::Scalar(..) => 0,
        QueryValue::String(_, v) => v.len(),
    }
}

/// A generous estimate of the encoded length of matrix series `m` (a point takes up to ~36
/// bytes: `[1795766340,"0.12345678901234567"],`): a buffer of this size is never grown,
/// which would copy it.
fn matrix_len(m: &[RangeSeries]) -> usize {
    m.iter().map(|x| 300 + x.samples.len() * 40).sum()
}

/// Fewest points of a matrix result for it to be encoded on two threads (a point takes
/// ~50 ns to write; a pool worker ~30–70 µs to wake).
const PARALLEL_ENCODE_MIN_POINTS: usize = 8192;

/// Appends the series of a matrix result, comma-separated, to `s`.
fn encode_matrix_series(s: &mut String, m: &[RangeSeries]) {
    let mut w = json::SampleWriter::default();
    for (i, x) in m.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"metric\":");
        write_labels(s, &x.labels);
        s.push_str(",\"values\":[");
        w.write_samples(s, &x.samples);
        s.push_str("]}");
    }
}

/// Appends the API's `data` object for a query result to `s`.
pub fn encode_data_into(s: &mut String, out: &QueryOutput, took: Duration, want_stats: bool) {
    s.push_str("{\"resultType\":\"");
    s.push_str(out.value.type_name());
    s.push_str("\",\"result\":");
    let mut samples = 0usize;
    match &out.value {
        QueryValue::Scalar(t, v) => write_sample(s, *t, *v),
        QueryValue::String(t, v) => {
            s.push('[');
            write_ts(s, *t);
            s.push(',');
            write_str(s, v);
            s.push(']');
        }
        QueryValue::Vector(vs) => {
            s.push('[');
            for (i, x) in vs.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str("{\"metric\":");
                write_labels(s, &x.labels);
                s.push_str(",\"value\":");
                write_sample(s, x.t, x.v);
                s.push('}');
            }
            samples = vs.len();
            s.push(']');
        }
        QueryValue::Matrix(m) => {
            s.push('[');
            samples = m.iter().map(|x| x.samples.len()).sum();
            if samples >= PARALLEL_ENCODE_MIN_POINTS && m.len() > 1 {
                // The second half of the points on another thread.
                let mut acc = 0;
                let cut = m
                    .iter()
                    .position(|x| {
                        acc += x.samples.len();
                        acc * 2 >= samples
                    })
                    .map_or(m.len(), |i| (i + 1).min(m.len() - 1));
                let (a, b) = m.split_at(cut);
                // The first half straight into `s`, the second into its own buffer.
                let out = &mut *s;
                let halves: Vec<Box<dyn FnOnce() -> Option<String> + Send + '_>> = vec![
                    Box::new(move || {
                        encode_matrix_series(out, a);
                        None
                    }),
                    Box::new(|| {
                        let mut t = String::with_capacity(matrix_len(b));
                        encode_matrix_series(&mut t, b);
                        Some(t)
                    }),
                ];
                if let Some(Some(t)) = tsdb::parallel::run_parallel(halves).pop() {
                    s.push(',');
                    s.push_str(&t);
                }
            } else {
                encode_matrix_series(s, m);
            }
            s.push(']');
        }
    }
    if want_stats {
        s.push_str(",\"stats\":");
        match &out.stats {
            Some(v) => s.push_str(&v.to_string()),
            None => {
                let secs = took.as_secs_f64();
                let _ = write!(
                    s,
                    "{{\"timings\":{{\"evalTotalTime\":{secs},\"resultSortTime\":0,\"queryPreparationTime\":0,\"innerEvalTime\":{secs},\"execQueueTime\":0,\"execTotalTime\":{secs}}},\"samples\":{{\"totalQueryableSamples\":{samples},\"peakSamples\":{samples}}}}}"
                );
            }
        }
    }
    s.push('}');
}

/// The whole response body, envelope included, written into one buffer.
pub fn response_body(out: &QueryOutput, took: Duration, stats: bool) -> String {
    let mut body = String::with_capacity(estimate_len(&out.value) + json::SUCCESS_PREFIX.len());
    body.push_str(json::SUCCESS_PREFIX);
    encode_data_into(&mut body, out, took, stats);
    json::end_success(&mut body, &out.warnings, &out.infos);
    body
}

/// `GET|POST /api/v1/query`
pub async fn query(State(state): State<SharedState>, p: Params) -> Result<Response, ApiError> {
    let q = query_param(&p)?;
    let t = p.time_or("time", now_ms())?;
    let opts = query_opts(&state, &p)?;
    let o2 = opts.clone();
    let (body, _) = run_query(&state, &opts, false, move |st| {
        st.engine.instant_query(st.storage.queryable(), &q, t, &o2)
    })
    .await?;
    Ok(json_response(body))
}

/// Checks a range query's times as Prometheus does.
pub fn check_range(start: i64, end: i64, step: i64) -> Result<(), ApiError> {
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    if step <= 0 {
        return Err(ApiError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > 11_000 {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    Ok(())
}

/// `GET|POST /api/v1/query_range`
pub async fn query_range(
    State(state): State<SharedState>,
    p: Params,
) -> Result<Response, ApiError> {
    let start = match p.get("start") {
        Some(s) => super::params::parse_time(s).map_err(|e| ApiError::invalid_param("start", e))?,
        None => {
            return Err(ApiError::invalid_param(
                "start",
                "cannot parse \"\" to a valid timestamp",
            ))
        }
    };
    let end = match p.get("end") {
        Some(s) => super::params::parse_time(s).map_err(|e| ApiError::invalid_param("end", e))?,
        None => {
            return Err(ApiError::invalid_param(
                "end",
                "cannot parse \"\" to a valid timestamp",
            ))
        }
    };
    let step = match p.get("step") {
        Some(s) => {
            super::params::parse_duration(s).map_err(|e| ApiError::invalid_param("step", e))?
        }
        None => {
            return Err(ApiError::invalid_param(
                "step",
                "cannot parse \"\" to a valid duration",
            ))
        }
    };
    check_range(start, end, step)?;
    let q = query_param(&p)?;
    let opts = query_opts(&state, &p)?;
    let o2 = opts.clone();
    let (body, _) = run_query(&state, &opts, true, move |st| {
        st.engine
            .range_query(st.storage.queryable(), &q, start, end, step, &o2)
    })
    .await?;
    Ok(json_response(body))
}

/// `GET|POST /api/v1/query_exemplars`: the query is checked; ignis stores no exemplars, so the
/// answer is an empty list.
pub async fn query_exemplars(p: Params) -> Result<Response, ApiError> {
    let q = query_param(&p)?;
    let start = p.time_or("start", super::params::MIN_TIME)?;
    let end = p.time_or("end", super::params::MAX_TIME)?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    parse_expr(&q)?;
    Ok(success("[]"))
}

/// `GET|POST /api/v1/format_query`: the query pretty-printed.
pub async fn format_query(p: Params) -> Result<Response, ApiError> {
    let q = query_param(&p)?;
    let expr = parse_expr(&q)?;
    let mut data = String::new();
    write_str(&mut data, &expr.prettify());
    Ok(success(&data))
}

/// `GET|POST /api/v1/parse_query`: the query's syntax tree as JSON.
pub async fn parse_query(p: Params) -> Result<Response, ApiError> {
    let q = query_param(&p)?;
    let expr = parse_expr(&q)?;
    Ok(success(&super::status::ast_json(&expr).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb::labels::Labels;

    /// A large matrix is encoded on two threads into the same JSON as series by series.
    #[test]
    fn parallel_matrix_encoding_matches_sequential() {
        for (nseries, npoints) in [(2, PARALLEL_ENCODE_MIN_POINTS), (7, 3000), (1, 20_000)] {
            let m: Vec<RangeSeries> = (0..nseries)
                .map(|k| RangeSeries {
                    labels: Labels::from_pairs(&[("__name__", "m"), ("k", &k.to_string())]),
                    samples: (0..npoints as i64)
                        .map(|i| (i * 15_000 + k, (i * k) as f64 / 7.0))
                        .collect(),
                })
                .collect();
            let mut want = String::from("{\"resultType\":\"matrix\",\"result\":[");
            encode_matrix_series(&mut want, &m);
            want.push(']');
            let out = QueryOutput {
                value: QueryValue::Matrix(m),
                warnings: Vec::new(),
                infos: Vec::new(),
                stats: None,
            };
            let mut got = String::new();
            encode_data_into(&mut got, &out, Duration::ZERO, false);
            assert!(got.starts_with(&want), "{nseries} series");
            serde_json::from_str::<serde_json::Value>(&got).expect("valid JSON");
        }
    }
}
