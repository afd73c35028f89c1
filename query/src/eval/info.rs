//! The experimental `info()` function: enriches series with the data labels of matching info
//! metrics (by default `target_info`), joined on the identifying labels `instance` and `job`.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::Expr;
use tsdb::chunkenc::is_stale_nan;
use tsdb::{Labels, MatchType, Matcher};

use super::{convert_matcher_pub, unparen, Evaluator, OutCollector, StepCursor, StepSeries, Val};
use crate::error::{QResult, QueryError};

const TARGET_INFO: &str = "target_info";
const IDENTIFYING: [&str; 2] = ["instance", "job"];

fn effective_name_matchers(ms: &[Matcher]) -> QResult<Vec<Matcher>> {
    if ms
        .iter()
        .any(|m| matches!(m.kind, MatchType::Equal | MatchType::Regexp))
    {
        return Ok(ms.to_vec());
    }
    if !ms.is_empty() {
        let mut v = vec![Matcher::new(MatchType::Regexp, "__name__", ".+_info")
            .map_err(|e| QueryError::bad_data(e.to_string()))?];
        v.extend(ms.iter().cloned());
        return Ok(v);
    }
    Ok(vec![Matcher::equal("__name__", TARGET_INFO)])
}

fn regex_quote(s: &str) -> String {
    regex::escape(s)
}

impl Evaluator<'_> {
    pub(crate) fn eval_info(&mut self, args: &[&Expr]) -> QResult<Val> {
        let base = self.eval_vector(args[0])?;
        // data label matchers by label name
        let mut data: Vec<(String, Vec<Matcher>)> = Vec::new();
        let mut name_matchers: Vec<Matcher> = Vec::new();
        if let Some(a) = args.get(1) {
            let Expr::VectorSelector(vs) = unparen(a) else {
                return Err(QueryError::bad_data(
                    "info() expects a label selector as its second argument",
                ));
            };
            let mut all: Vec<Matcher> = Vec::new();
            if let Some(n) = &vs.name {
                all.push(Matcher::equal("__name__", n.clone()));
            }
            for m in &vs.matchers.matchers {
                if m.name == crate::rewrite::INFO_MARKER_LABEL {
                    continue;
                }
                all.push(convert_matcher_pub(m)?);
            }
            for m in all {
                if m.name == "__name__" {
                    name_matchers.push(m.clone());
                }
                match data.iter_mut().find(|(n, _)| *n == m.name) {
                    Some(e) => e.1.push(m),
                    None => data.push((m.name.clone(), vec![m])),
                }
            }
        } else {
            name_matchers.push(Matcher::equal("__name__", TARGET_INFO));
        }
        let eff = effective_name_matchers(&name_matchers)?;
        let ignored: Vec<bool> = base
            .iter()
            .map(|s| {
                let n = s.metric.metric_name().unwrap_or("");
                eff.iter().all(|m| m.matches(n))
            })
            .collect();
        // identifying label values of the other series
        let mut id_vals: Vec<(&str, Vec<String>)> = Vec::new();
        for (s, ig) in base.iter().zip(&ignored) {
            if *ig {
                continue;
            }
            for l in IDENTIFYING {
                if let Some(v) = s.metric.get(l) {
                    match id_vals.iter_mut().find(|(n, _)| *n == l) {
                        Some(e) => {
                            if !e.1.iter().any(|x| x == v) {
                                e.1.push(v.to_string());
                            }
                        }
                        None => id_vals.push((l, vec![v.to_string()])),
                    }
                }
            }
        }
        let data_name_matchers: Vec<Matcher> = data
            .iter()
            .flat_map(|(_, ms)| ms.iter().filter(|m| m.name == "__name__").cloned())
            .collect();
        data.retain(|(n, _)| n != "__name__");
        let mut info_series: Vec<StepSeries> = Vec::new();
        if !id_vals.is_empty() {
            let mut ms: Vec<Matcher> = Vec::new();
            for (n, vals) in &id_vals {
                let re = vals
                    .iter()
                    .map(|v| regex_quote(v))
                    .collect::<Vec<_>>()
                    .join("|");
                ms.push(
                    Matcher::new(MatchType::Regexp, *n, re)
                        .map_err(|e| QueryError::bad_data(e.to_string()))?,
                );
            }
            for (_, dm) in &data {
                ms.extend(dm.iter().cloned());
            }
            ms.extend(effective_name_matchers(&data_name_matchers)?);
            let raw = self.select_groups(&[ms], self.start - self.lookback + 1, self.end, 0)?;
            let steps: Vec<i64> = self.steps().collect();
            for s in raw {
                let mut pts = Vec::new();
                let mut idx = 0usize;
                for &ts in &steps {
                    while idx < s.samples.len() && s.samples[idx].0 <= ts {
                        idx += 1;
                    }
                    if idx == 0 {
                        continue;
                    }
                    let (t, v) = s.samples[idx - 1];
                    if t <= ts - self.lookback || is_stale_nan(v) {
                        continue;
                    }
                    pts.push((ts, t as f64));
                }
                if !pts.is_empty() {
                    info_series.push(StepSeries {
                        metric: s.metric,
                        pts: pts.into(),
                        drop_name: false,
                    });
                }
            }
        }
        let sig = |name: &str, l: &Labels| -> Labels {
            let mut v = l.keep(&IDENTIFYING);
            v = v.with("__name__", name);
            v
        };
        let mut info_names: Vec<String> = Vec::new();
        for s in &info_series {
            let n = s.metric.metric_name().unwrap_or("").to_string();
            if !info_names.contains(&n) {
                info_names.push(n);
            }
        }
        let base_sigs: Vec<Vec<Labels>> = base
            .iter()
            .map(|s| info_names.iter().map(|n| sig(n, &s.metric)).collect())
            .collect();
        let info_sigs: Vec<Labels> = info_series
            .iter()
            .map(|s| sig(s.metric.metric_name().unwrap_or(""), &s.metric))
            .collect();
        let all_match_empty = data.iter().all(|(_, ms)| ms.iter().all(|m| m.matches("")));
        let instant = self.is_instant();
        let mut bc = StepCursor::new(base.len());
        let mut ic = StepCursor::new(info_series.len());
        let (mut bv, mut iv) = (Vec::new(), Vec::new());
        let mut out = OutCollector::new();
        let mut cache: HashMap<(usize, Vec<usize>), Arc<Labels>> = HashMap::new();
        let steps: Vec<i64> = self.steps().collect();
        for ts in steps {
            bc.gather(&base, ts, &mut bv);
            if bv.is_empty() {
                continue;
            }
            ic.gather(&info_series, ts, &mut iv);
            let mut right: HashMap<&Labels, (usize, i64)> = HashMap::new();
            for &(ii, ot) in &iv {
                let ot = ot as i64;
                let sg = &info_sigs[ii];
                match right.get(sg) {
                    Some(&(ej, et)) => {
                        if et < ot {
                            right.insert(sg, (ii, ot));
                        } else if et == ot {
                            return Err(QueryError::execution(format!(
                                "found duplicate series for info metric: existing {} @ {}, new {} @ {}",
                                info_series[ej].metric, et, info_series[ii].metric, ot
                            )));
                        }
                    }
                    None => {
                        right.insert(sg, (ii, ot));
                    }
                }
            }
            for &(bi, v) in &bv {
                if ignored[bi] {
                    out.push(&base[bi].metric, ts, v, false, instant)?;
                    continue;
                }
                let mut used: Vec<usize> = Vec::new();
                for sg in &base_sigs[bi] {
                    if let Some(&(ii, _)) = right.get(sg) {
                        used.push(ii);
                    }
                }
                if used.is_empty() && !all_match_empty {
                    continue;
                }
                let key = (bi, used.clone());
                let metric = match cache.get(&key) {
                    Some(m) => m.clone(),
                    None => {
                        let mut add: Vec<(String, String)> = Vec::new();
                        for &ii in &used {
                            for l in info_series[ii].metric.iter() {
                                if l.name == "__name__" {
                                    continue;
                                }
                                if !data.is_empty() && !data.iter().any(|(n, _)| *n == l.name) {
                                    continue;
                                }
                                if let Some((_, v)) = add.iter().find(|(n, _)| *n == l.name) {
                                    if *v != l.value {
                                        return Err(QueryError::execution(format!(
                                            "conflicting label: {}",
                                            l.name
                                        )));
                                    }
                                }
                                if base[bi].metric.has(&l.name) {
                                    continue;
                                }
                                add.push((l.name.clone(), l.value.clone()));
                            }
                        }
                        let mut m = (*base[bi].metric).clone();
                        for (n, v) in add {
                            m = m.with(&n, &v);
                        }
                        let m = Arc::new(m);
                        cache.insert(key, m.clone());
                        m
                    }
                };
                out.push(&metric, ts, v, false, instant)?;
            }
        }
        Ok(Val::Vector(out.finish()))
    }
}
