//! Scrape endpoints answered from the running [`ScrapeManager`](crate::scrape::ScrapeManager):
//! `targets` (active targets and those dropped by relabeling, with the `state=` filter and
//! optional `scrapePool=`), `scrape_pools`,
//! `targets/metadata` and `metadata`, in Prometheus's JSON shapes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Map, Value};
use tsdb::labels::{Labels, Matcher};

use super::error::ApiError;
use super::params::{parse_selector, Params};
use super::success;
use crate::server::flags::format_duration;
use crate::server::state::SharedState;

fn labels_json(ls: &Labels) -> Value {
    Value::Object(
        ls.iter()
            .map(|l| (l.name.to_string(), Value::String(l.value.to_string())))
            .collect(),
    )
}

fn time_json(t: Option<SystemTime>) -> Value {
    match t {
        Some(t) => {
            let dt: chrono::DateTime<chrono::Utc> = t.into();
            Value::String(dt.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        }
        None => Value::String("0001-01-01T00:00:00Z".into()),
    }
}

fn secs(d: Duration) -> Value {
    json!(d.as_secs_f64())
}

/// `GET /api/v1/targets[?state=active|dropped|any][&scrapePool=…]`
pub async fn targets(State(st): State<SharedState>, p: Params) -> Result<Response, ApiError> {
    let state = p.get("state").unwrap_or("any").to_ascii_lowercase();
    let (show_active, show_dropped) = match state.as_str() {
        "" | "any" => (true, true),
        "active" => (true, false),
        "dropped" => (false, true),
        other => {
            return Err(ApiError::invalid_param(
                "state",
                format!("unknown state {other:?}"),
            ))
        }
    };
    let pool = p.get("scrapePool").filter(|s| !s.is_empty());
    let mut active = Vec::new();
    if show_active {
        let mut ts = st.scrape.get().map(|m| m.targets()).unwrap_or_default();
        ts.retain(|t| pool.is_none_or(|p| p == t.scrape_pool));
        ts.sort_by(|a, b| (&a.scrape_pool, &a.scrape_url).cmp(&(&b.scrape_pool, &b.scrape_url)));
        for t in ts {
            active.push(json!({
                "discoveredLabels": labels_json(&t.discovered_labels),
                "labels": labels_json(&t.labels),
                "scrapePool": t.scrape_pool,
                "scrapeUrl": t.scrape_url,
                "globalUrl": t.scrape_url,
                "lastError": t.last_error,
                "lastScrape": time_json(t.last_scrape),
                "lastScrapeDuration": secs(t.last_scrape_duration),
                "health": t.health.as_str(),
                "scrapeInterval": format_duration(t.scrape_interval),
                "scrapeTimeout": format_duration(t.scrape_timeout),
            }));
        }
    }
    let mut counts = Map::new();
    let mut dropped = Vec::new();
    if show_dropped {
        for sc in &st.config.read().scrape_configs {
            if pool.is_none_or(|p| p == sc.job_name) {
                counts.insert(sc.job_name.clone(), json!(0));
            }
        }
        let by_job = st
            .scrape
            .get()
            .map(|m| m.dropped_targets())
            .unwrap_or_default();
        for (job, ts) in by_job {
            if pool.is_some_and(|p| p != job) || !counts.contains_key(&job) {
                continue;
            }
            counts.insert(job, json!(ts.len()));
            for ls in ts {
                dropped.push(json!({ "discoveredLabels": labels_json(&ls) }));
            }
        }
    }
    let v = json!({
        "activeTargets": active,
        "droppedTargets": dropped,
        "droppedTargetCounts": counts,
    });
    Ok(success(&v.to_string()))
}

/// `GET /api/v1/scrape_pools`: the job names of the loaded configuration.
pub async fn scrape_pools(State(st): State<SharedState>) -> Response {
    let mut pools: Vec<String> = st
        .config
        .read()
        .scrape_configs
        .iter()
        .map(|s| s.job_name.clone())
        .collect();
    pools.sort();
    success(&json!({ "scrapePools": pools }).to_string())
}

fn matches_all(ms: &[Matcher], ls: &Labels) -> bool {
    ms.iter()
        .all(|m| m.matches(ls.get(&m.name).unwrap_or_default()))
}

/// `GET /api/v1/targets/metadata[?match_target=…][&metric=…][&limit=N]`
pub async fn targets_metadata(
    State(st): State<SharedState>,
    p: Params,
) -> Result<Response, ApiError> {
    let limit = p.limit()?;
    let sel = match p.get("match_target").filter(|s| !s.is_empty()) {
        Some(s) => parse_selector(s).map_err(|e| ApiError::invalid_param("match_target", e))?,
        None => Vec::new(),
    };
    let metric = p.get("metric").filter(|s| !s.is_empty());
    let mut out = Vec::new();
    let mut md = st.scrape.get().map(|m| m.metadata()).unwrap_or_default();
    md.sort_by(|a, b| a.0.cmp(&b.0));
    'targets: for (target, fams) in md {
        if !sel.is_empty() && !sel.iter().any(|ms| matches_all(ms, &target)) {
            continue;
        }
        for (name, m) in fams.iter() {
            if metric.is_some_and(|x| x != name) {
                continue;
            }
            if limit > 0 && out.len() >= limit {
                break 'targets;
            }
            out.push(json!({
                "target": labels_json(&target),
                "metric": name,
                "type": m.kind,
                "help": m.help,
                "unit": m.unit,
            }));
        }
    }
    Ok(success(&Value::Array(out).to_string()))
}

/// `GET /api/v1/metadata[?metric=…][&limit=N][&limit_per_metric=N]`: the distinct metadata of
/// each metric over all targets.
pub async fn metadata(State(st): State<SharedState>, p: Params) -> Result<Response, ApiError> {
    let limit = p.limit()?;
    let per_metric = match p.get("limit_per_metric") {
        None => 0,
        Some(s) => s
            .parse::<usize>()
            .map_err(|e| ApiError::invalid_param("limit_per_metric", e))?,
    };
    let metric = p.get("metric").filter(|s| !s.is_empty());
    let mut by_name: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (_, fams) in st.scrape.get().map(|m| m.metadata()).unwrap_or_default() {
        for (name, m) in fams.iter() {
            if metric.is_some_and(|x| x != name) {
                continue;
            }
            let v = json!({"type": m.kind, "help": m.help, "unit": m.unit});
            let list = by_name.entry(name.clone()).or_default();
            if !list.contains(&v) && (per_metric == 0 || list.len() < per_metric) {
                list.push(v);
            }
        }
    }
    let mut out = Map::new();
    for (name, list) in by_name {
        if limit > 0 && out.len() >= limit {
            break;
        }
        out.insert(name, Value::Array(list));
    }
    Ok(success(&Value::Object(out).to_string()))
}
