//! Status and metadata endpoints: `status/{config,flags,runtimeinfo,buildinfo,tsdb,walreplay}`,
//! `features`, `alerts` and `rules` (from the running rule groups, see [`crate::rules::api`]),
//! `alertmanagers` (from the notifier), in Prometheus's exact shapes. Also the JSON syntax tree of `parse_query`.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::Response;
use promql_parser::label::MatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use serde_json::{json, Value};
use tsdb::labels::Matcher;

use super::error::ApiError;
use super::json::write_str;
use super::params::Params;
use super::{blocking, success};
use crate::server::state::SharedState;

/// `GET /api/v1/status/buildinfo`
pub async fn buildinfo() -> Response {
    let v = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("IGNIS_GIT_REVISION").unwrap_or("unknown"),
        "branch": option_env!("IGNIS_GIT_BRANCH").unwrap_or("unknown"),
        "buildUser": option_env!("USER").unwrap_or("unknown"),
        "buildDate": option_env!("IGNIS_BUILD_DATE").unwrap_or("unknown"),
        "goVersion": format!("rust (ignis {})", env!("CARGO_PKG_VERSION")),
    });
    success(&v.to_string())
}

/// `GET /api/v1/status/flags`
pub async fn flags(State(st): State<SharedState>) -> Response {
    let m: serde_json::Map<String, Value> = st
        .args
        .as_map()
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v)))
        .collect();
    success(&Value::Object(m).to_string())
}

/// `GET /api/v1/status/config`
pub async fn config(State(st): State<SharedState>) -> Response {
    let mut s = String::from("{\"yaml\":");
    write_str(&mut s, &st.config_yaml.read());
    s.push('}');
    success(&s)
}

/// `GET /api/v1/status/runtimeinfo`
pub async fn runtimeinfo(State(st): State<SharedState>) -> Response {
    let start: chrono::DateTime<chrono::Utc> = st.metrics.start_time().into();
    let cfg: chrono::DateTime<chrono::Utc> = (*st.config_time.read()).into();
    let v = json!({
        "startTime": start.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "CWD": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": st.metrics.last_reload_ok.load(std::sync::atomic::Ordering::Relaxed) == 1,
        "lastConfigTime": cfg.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "corruptionCount": 0,
        "goroutineCount": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        "GOMAXPROCS": tsdb::parallel::cores(),
        "GOMEMLIMIT": i64::MAX,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": crate::server::flags::format_duration(st.args.retention_time),
    });
    success(&v.to_string())
}

/// `GET /api/v1/status/walreplay`
pub async fn walreplay(State(st): State<SharedState>) -> Response {
    let done = if st.storage.is_ready() { 1 } else { 0 };
    success(&json!({"min": 0, "max": done, "current": done}).to_string())
}

/// `GET /api/v1/status/tsdb[?limit=N]`: head statistics and the top cardinalities.
pub async fn tsdb(State(st): State<SharedState>, p: Params) -> Result<Response, ApiError> {
    let limit = match p.limit()? {
        0 => 10,
        n => n,
    };
    let data = blocking(move || tsdb_stats(&st, limit)).await?;
    Ok(success(&data.to_string()))
}

fn tsdb_stats(st: &SharedState, limit: usize) -> Result<Value, ApiError> {
    let head = st.storage.head_stats();
    let (mint, maxt) = if head.num_series == 0 {
        (0, 0)
    } else {
        (head.min_time, head.max_time)
    };
    let q = st.storage.queryable().querier(mint, maxt)?;
    let all = [Matcher::new(tsdb::MatchType::Regexp, "__name__", ".+")?];
    let mut by_metric: HashMap<String, u64> = HashMap::new();
    let mut values_by_name: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
    let mut mem_by_name: HashMap<String, u64> = HashMap::new();
    let mut by_pair: HashMap<String, u64> = HashMap::new();
    let mut label_pairs: std::collections::HashSet<(String, String)> = Default::default();
    for s in q.select(false, None, &all) {
        let s = s?;
        let ls = s.labels();
        if let Some(n) = ls.metric_name() {
            *by_metric.entry(n.to_string()).or_default() += 1;
        }
        for l in ls.iter() {
            if values_by_name
                .entry(l.name.clone())
                .or_default()
                .insert(l.value.clone())
            {
                *mem_by_name.entry(l.name.clone()).or_default() += l.value.len() as u64;
            }
            *by_pair
                .entry(format!("{}={}", l.name, l.value))
                .or_default() += 1;
            label_pairs.insert((l.name.clone(), l.value.clone()));
        }
    }
    let top = |m: HashMap<String, u64>| -> Value {
        let mut v: Vec<(String, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        Value::Array(
            v.into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        )
    };
    let values_count = values_by_name
        .into_iter()
        .map(|(k, v)| (k, v.len() as u64))
        .collect();
    let (min_time, max_time) = if head.num_series == 0 {
        (i64::MAX, i64::MIN)
    } else {
        (head.min_time, head.max_time)
    };
    Ok(json!({
        "headStats": {
            "numSeries": head.num_series,
            "numLabelPairs": label_pairs.len(),
            "chunkCount": head.num_chunks,
            "minTime": min_time,
            "maxTime": max_time,
        },
        "seriesCountByMetricName": top(by_metric),
        "labelValueCountByLabelName": top(values_count),
        "memoryInBytesByLabelName": top(mem_by_name),
        "seriesCountByLabelValuePair": top(by_pair),
    }))
}

/// `GET /api/v1/rules`: the loaded rule groups with their rules' state, filtered by `type`,
/// `rule_name[]`, `rule_group[]` and `file[]`.
pub async fn rules(State(st): State<SharedState>, p: Params) -> Result<Response, ApiError> {
    let owned = |n: &str| p.get_all(n).into_iter().map(str::to_string).collect();
    let filter = crate::rules::api::RuleFilter {
        kind: p.get("type").map(str::to_string),
        rule_names: owned("rule_name[]"),
        rule_groups: owned("rule_group[]"),
        files: owned("file[]"),
    };
    filter
        .validate()
        .map_err(|e| ApiError::invalid_param("type", e))?;
    let v = crate::rules::api::rules_json(&st.rules.groups(), &filter);
    Ok(success(&v.to_string()))
}

/// `GET /api/v1/alerts`: the pending and firing alerts of every alerting rule.
pub async fn alerts(State(st): State<SharedState>) -> Response {
    success(&crate::rules::api::alerts_json(&st.rules.groups()).to_string())
}

#[cfg(test)]
use crate::rules::api::go_exp;

/// `GET /api/v1/alertmanagers`: the discovered Alertmanagers' URLs.
pub async fn alertmanagers(State(st): State<SharedState>) -> Response {
    let (active, dropped) = st.rules.notifier().alertmanagers();
    let urls =
        |v: Vec<String>| -> Vec<Value> { v.into_iter().map(|u| json!({ "url": u })).collect() };
    success(
        &json!({
            "activeAlertmanagers": urls(active),
            "droppedAlertmanagers": urls(dropped),
        })
        .to_string(),
    )
}

/// `GET /api/v1/features`: what this server supports, by area.
pub async fn features() -> Response {
    let v = json!({
        "api": {"admin": true, "exclude_alerts": false, "query_stats": true, "lifecycle": true, "remote_write_receiver": true},
        "promql": {"at_modifier": true, "negative_offset": true, "subqueries": true},
        "remote_read": {"samples": true, "streamed_xor_chunks": true},
        "remote_write": {"v1": true},
    });
    success(&v.to_string())
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

fn at_json(at: &Option<AtModifier>) -> (Value, Value) {
    match at {
        None => (Value::Null, Value::Null),
        Some(AtModifier::Start) => (Value::Null, json!("start")),
        Some(AtModifier::End) => (Value::Null, json!("end")),
        Some(AtModifier::At(t)) => {
            let ms = match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_millis() as i64,
                Err(e) => -(e.duration().as_millis() as i64),
            };
            (json!(ms), Value::Null)
        }
    }
}

fn matchers_json(vs: &VectorSelector) -> Value {
    let mut out = Vec::new();
    if let Some(n) = &vs.name {
        out.push(json!({"type": "=", "name": "__name__", "value": n}));
    }
    for m in vs
        .matchers
        .matchers
        .iter()
        .chain(vs.matchers.or_matchers.iter().flatten())
    {
        let op = match m.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Re(_) => "=~",
            MatchOp::NotRe(_) => "!~",
        };
        out.push(json!({"type": op, "name": m.name, "value": m.value}));
    }
    Value::Array(out)
}

/// The syntax tree of a query in the JSON shape of Prometheus's `parse_query`.
pub fn ast_json(e: &Expr) -> Value {
    match e {
        Expr::Aggregate(a) => {
            let (grouping, without) = match &a.modifier {
                Some(m) => (m.labels().labels.clone(), !m.is_include()),
                None => (vec![], false),
            };
            json!({"type": "aggregation", "op": a.op.to_string(), "expr": ast_json(&a.expr),
                   "param": a.param.as_ref().map(|p| ast_json(p)), "grouping": grouping, "without": without})
        }
        Expr::Binary(b) => {
            let (matching, ret_bool) = match &b.modifier {
                Some(m) => {
                    let card = match &m.card {
                        promql_parser::parser::VectorMatchCardinality::OneToOne => "one-to-one",
                        promql_parser::parser::VectorMatchCardinality::ManyToOne(_) => {
                            "many-to-one"
                        }
                        promql_parser::parser::VectorMatchCardinality::OneToMany(_) => {
                            "one-to-many"
                        }
                        promql_parser::parser::VectorMatchCardinality::ManyToMany => "many-to-many",
                    };
                    let include: Vec<String> = m
                        .card
                        .labels()
                        .map(|l| l.labels.clone())
                        .unwrap_or_default();
                    let (labels, on) = match &m.matching {
                        Some(lm) => (lm.labels().labels.clone(), lm.is_include()),
                        None => (vec![], false),
                    };
                    (
                        json!({"card": card, "labels": labels, "on": on, "include": include}),
                        m.return_bool,
                    )
                }
                None => (Value::Null, false),
            };
            json!({"type": "binaryExpr", "op": b.op.to_string(), "lhs": ast_json(&b.lhs), "rhs": ast_json(&b.rhs),
                   "matching": matching, "bool": ret_bool})
        }
        Expr::Call(c) => {
            let arg_types: Vec<String> = c.func.arg_types.iter().map(|t| t.to_string()).collect();
            json!({"type": "call", "func": {"name": c.func.name, "argTypes": arg_types, "variadic": c.func.variadic,
                   "returnType": c.func.return_type.to_string()},
                   "args": c.args.args.iter().map(|a| ast_json(a)).collect::<Vec<_>>()})
        }
        Expr::MatrixSelector(m) => {
            let (ts, soe) = at_json(&m.vs.at);
            json!({"type": "matrixSelector", "name": m.vs.name.clone().unwrap_or_default(), "range": m.range.as_millis() as i64,
                   "offset": offset_ms(&m.vs.offset), "matchers": matchers_json(&m.vs), "timestamp": ts, "startOrEnd": soe})
        }
        Expr::Subquery(s) => {
            let (ts, soe) = at_json(&s.at);
            json!({"type": "subquery", "expr": ast_json(&s.expr), "range": s.range.as_millis() as i64,
                   "offset": offset_ms(&s.offset), "step": s.step.map(|d| d.as_millis() as i64).unwrap_or(0),
                   "timestamp": ts, "startOrEnd": soe})
        }
        Expr::NumberLiteral(n) => {
            json!({"type": "numberLiteral", "val": super::json::format_float(n.val)})
        }
        Expr::StringLiteral(s) => json!({"type": "stringLiteral", "val": s.val}),
        Expr::Paren(p) => json!({"type": "parenExpr", "expr": ast_json(&p.expr)}),
        Expr::Unary(u) => json!({"type": "unaryExpr", "op": "-", "expr": ast_json(&u.expr)}),
        Expr::VectorSelector(vs) => {
            let (ts, soe) = at_json(&vs.at);
            json!({"type": "vectorSelector", "name": vs.name.clone().unwrap_or_default(), "offset": offset_ms(&vs.offset),
                   "matchers": matchers_json(vs), "timestamp": ts, "startOrEnd": soe})
        }
        Expr::Extension(_) => Value::Null,
    }
}

#[cfg(test)]
mod go_exp_tests {
    #[test]
    fn go_exp_matches_go() {
        assert_eq!(super::go_exp(1.0), "1e+00");
        assert_eq!(super::go_exp(0.0025), "2.5e-03");
        assert_eq!(super::go_exp(-123456.0), "-1.23456e+05");
        assert_eq!(super::go_exp(f64::INFINITY), "+Inf");
    }
}
