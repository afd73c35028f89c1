//! The JSON of `/api/v1/rules` and `/api/v1/alerts`, in Prometheus's exact shapes:
//!
//! - a group is `{"name","file","rules":[…],"interval" (s),"limit","evaluationTime" (s),
//!   "lastEvaluation" (RFC 3339 nano)}`;
//! - an alerting rule is `{"state","name","query","duration","keepFiringFor","labels",
//!   "annotations","alerts":[…],"health","lastError"?,"evaluationTime","lastEvaluation",
//!   "type":"alerting"}`;
//! - a recording rule is `{"name","query","labels"? (omitted when empty),"health",
//!   "lastError"?,"evaluationTime","lastEvaluation","type":"recording"}`;
//! - an alert is `{"labels","annotations","state","activeAt","keepFiringSince"?,"value"}` with
//!   the value as Go's `%e` formatting.
//!
//! `health` is `unknown` before the first evaluation, then `ok` or `err`. A time never set is
//! Go's zero time `0001-01-01T00:00:00Z`. The query is the expression re-printed from its
//! syntax tree, as Prometheus does.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tsdb::Labels;

use super::alerting::{Alert, AlertState};
use super::group::{EvalStats, Rule, RuleGroup};

/// Which rules `/api/v1/rules` returns.
#[derive(Clone, Debug, Default)]
pub struct RuleFilter {
    /// `type`: `alert`, `record` or none.
    pub kind: Option<String>,
    /// `rule_name[]`.
    pub rule_names: Vec<String>,
    /// `rule_group[]`.
    pub rule_groups: Vec<String>,
    /// `file[]`.
    pub files: Vec<String>,
}

impl RuleFilter {
    /// Checks `type`; returns Prometheus's message for a bad value.
    pub fn validate(&self) -> Result<(), String> {
        match self.kind.as_deref() {
            None | Some("") | Some("alert") | Some("record") => Ok(()),
            Some(t) => Err(format!("not supported value {t:?}")),
        }
    }

    fn by_name(&self) -> bool {
        !self.rule_names.is_empty() || !self.rule_groups.is_empty() || !self.files.is_empty()
    }
}

/// Go's `time.RFC3339Nano` in UTC: fraction with trailing zeros removed.
pub fn go_time(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "0001-01-01T00:00:00Z".to_string();
    };
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    go_time_nanos(d.as_secs() as i64, d.subsec_nanos())
}

/// Go's `time.RFC3339Nano` for milliseconds since the epoch.
pub fn go_time_ms(ms: i64) -> String {
    go_time_nanos(
        ms.div_euclid(1000),
        (ms.rem_euclid(1000) * 1_000_000) as u32,
    )
}

fn go_time_nanos(secs: i64, nanos: u32) -> String {
    let base = super::notify::rfc3339_millis(secs * 1000);
    // "YYYY-MM-DDTHH:MM:SS.mmmZ" → drop ".mmmZ"
    let head = &base[..base.len() - 5];
    if nanos == 0 {
        return format!("{head}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{head}.{}Z", frac.trim_end_matches('0'))
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: `1e+00`, `2.5e-03`.
pub fn go_exp(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = e.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{m}e{sign}{:02}", exp.abs())
}

/// A float as Go's JSON encoder writes it: whole numbers without a fraction.
fn num(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn labels_obj(ls: &Labels) -> Value {
    Value::Object(
        ls.iter()
            .map(|l| (l.name.clone(), Value::String(l.value.clone())))
            .collect(),
    )
}

fn pairs_obj(ps: &[(String, String)]) -> Map<String, Value> {
    // later entries win, as rule labels override group labels
    let mut m = Map::new();
    for (k, v) in ps {
        m.insert(k.clone(), Value::String(v.clone()));
    }
    m
}

/// One alert as `/api/v1/alerts` and `/api/v1/rules` show it.
pub fn alert_json(a: &Alert) -> Value {
    let mut m = Map::new();
    m.insert("labels".into(), labels_obj(&a.labels));
    m.insert("annotations".into(), labels_obj(&a.annotations));
    m.insert("state".into(), Value::String(a.state.to_string()));
    m.insert("activeAt".into(), Value::String(go_time_ms(a.active_at)));
    if let Some(k) = a.keep_firing_since {
        m.insert("keepFiringSince".into(), Value::String(go_time_ms(k)));
    }
    m.insert("value".into(), Value::String(go_exp(a.value)));
    Value::Object(m)
}

/// The active (pending or firing) alerts of the groups, as `/api/v1/alerts` lists them.
pub fn alerts_json(groups: &[std::sync::Arc<RuleGroup>]) -> Value {
    let mut out = Vec::new();
    for g in groups {
        for rule in g.alerting_rules() {
            for a in rule.active_alerts() {
                if a.state != AlertState::Inactive {
                    out.push(alert_json(&a));
                }
            }
        }
    }
    json!({ "alerts": out })
}

fn pretty_query(expr: &str) -> String {
    promql_parser::parser::parse(expr)
        .map(|e| e.to_string())
        .unwrap_or_else(|_| expr.to_string())
}

fn health(stats: &EvalStats, err: &Option<String>) -> &'static str {
    if err.is_some() {
        "err"
    } else if stats.last_evaluation.is_none() {
        "unknown"
    } else {
        "ok"
    }
}

fn rule_json(rule: &Rule, stats: EvalStats) -> Value {
    let err = rule.last_error();
    let mut m = Map::new();
    match rule {
        Rule::Alerting(a) => {
            m.insert("state".into(), Value::String(a.state().to_string()));
            m.insert("name".into(), Value::String(a.name().to_string()));
            m.insert("query".into(), Value::String(pretty_query(a.expr())));
            m.insert("duration".into(), num(a.hold_ms() as f64 / 1000.0));
            m.insert(
                "keepFiringFor".into(),
                num(a.keep_firing_for_ms() as f64 / 1000.0),
            );
            m.insert("labels".into(), Value::Object(pairs_obj(a.labels())));
            m.insert(
                "annotations".into(),
                Value::Object(pairs_obj(a.annotations())),
            );
            let alerts: Vec<Value> = a
                .active_alerts()
                .iter()
                .filter(|x| x.state != AlertState::Inactive)
                .map(alert_json)
                .collect();
            m.insert("alerts".into(), Value::Array(alerts));
        }
        Rule::Recording(r) => {
            m.insert("name".into(), Value::String(r.name().to_string()));
            m.insert("query".into(), Value::String(pretty_query(r.expr())));
            let ls = pairs_obj(r.labels());
            if !ls.is_empty() {
                m.insert("labels".into(), Value::Object(ls));
            }
        }
    }
    m.insert("health".into(), Value::String(health(&stats, &err).into()));
    if let Some(e) = err {
        m.insert("lastError".into(), Value::String(e));
    }
    m.insert("evaluationTime".into(), json!(stats.evaluation_seconds));
    m.insert(
        "lastEvaluation".into(),
        Value::String(go_time(stats.last_evaluation)),
    );
    m.insert(
        "type".into(),
        Value::String(
            match rule {
                Rule::Alerting(_) => "alerting",
                Rule::Recording(_) => "recording",
            }
            .into(),
        ),
    );
    Value::Object(m)
}

/// The `data` of `/api/v1/rules` for `groups` under `filter`. With only `type`, every group is
/// listed (possibly with no rules), as Prometheus 2.42; with name, group or file filters,
/// groups left without rules are omitted, as later versions do.
pub fn rules_json(groups: &[std::sync::Arc<RuleGroup>], filter: &RuleFilter) -> Value {
    let want_alert = filter.kind.as_deref() != Some("record");
    let want_record = filter.kind.as_deref() != Some("alert");
    let mut out = Vec::new();
    for g in groups {
        if !filter.rule_groups.is_empty() && !filter.rule_groups.contains(&g.name) {
            continue;
        }
        if !filter.files.is_empty() && !filter.files.contains(&g.file) {
            continue;
        }
        let mut rules = Vec::new();
        for (i, r) in g.rules.iter().enumerate() {
            let keep = match r {
                Rule::Alerting(_) => want_alert,
                Rule::Recording(_) => want_record,
            };
            if !keep {
                continue;
            }
            if !filter.rule_names.is_empty() && !filter.rule_names.iter().any(|n| n == r.name()) {
                continue;
            }
            rules.push(rule_json(r, g.rule_stats(i)));
        }
        if filter.by_name() && rules.is_empty() {
            continue;
        }
        let st = g.stats();
        out.push(json!({
            "name": g.name,
            "file": g.file,
            "rules": rules,
            "interval": num(g.interval.as_millis() as f64 / 1000.0),
            "limit": g.limit,
            "evaluationTime": st.evaluation_seconds,
            "lastEvaluation": go_time(st.last_evaluation),
        }));
    }
    json!({ "groups": out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PromDuration;
    use crate::rules::file::parse_rules;
    use query::Sample;
    use std::sync::Arc;

    const RULES: &str = r#"
groups:
  - name: g1
    interval: 1s
    rules:
      - record: job:up:sum
        expr: sum by(job)(up)
        labels: {src: rule}
      - record: plain
        expr: vector(1)
      - alert: AlwaysOn
        expr: vector(1) > 0
        for: 2s
        keep_firing_for: 3s
        labels: {severity: page}
        annotations: {summary: "value {{ $value }}"}
  - name: g2
    limit: 5
    rules:
      - alert: Bad
        expr: foo + on() group_left bar
"#;

    fn groups() -> Vec<Arc<RuleGroup>> {
        let f = parse_rules(RULES).unwrap();
        f.groups
            .iter()
            .map(|d| {
                Arc::new(RuleGroup::from_def(
                    d,
                    "rules.yml",
                    PromDuration::from_secs(2),
                    &[],
                    "",
                    true,
                ))
            })
            .collect()
    }

    #[test]
    fn times_and_floats_as_go_writes_them() {
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
        assert_eq!(go_time_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(go_time_ms(1_700_000_000_150), "2023-11-14T22:13:20.15Z");
        let t = UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 159_825_900);
        assert_eq!(go_time(Some(t)), "2023-11-14T22:13:20.1598259Z");
        assert_eq!(go_exp(1.0), "1e+00");
        assert_eq!(go_exp(0.0025), "2.5e-03");
    }

    #[test]
    fn shape_before_and_after_evaluation() {
        let gs = groups();
        let v = rules_json(&gs, &RuleFilter::default());
        let g1 = &v["groups"][0];
        assert_eq!(g1["name"], "g1");
        assert_eq!(g1["file"], "rules.yml");
        assert_eq!(g1["interval"], json!(1));
        assert_eq!(g1["limit"], json!(0));
        assert_eq!(g1["lastEvaluation"], "0001-01-01T00:00:00Z");
        assert_eq!(g1["rules"][0]["health"], "unknown");
        assert_eq!(g1["rules"][0]["query"], "sum by (job) (up)");
        assert_eq!(g1["rules"][0]["labels"], json!({"src": "rule"}));
        assert!(g1["rules"][1].get("labels").is_none());
        assert_eq!(v["groups"][1]["interval"], json!(2));
        assert_eq!(v["groups"][1]["limit"], json!(5));
        assert_eq!(
            v["groups"][1]["rules"][0]["query"],
            "foo + on () group_left () bar"
        );

        let q = |e: &str, ts: i64| -> Result<Vec<Sample>, String> {
            match e {
                "vector(1) > 0" | "vector(1)" => Ok(vec![Sample {
                    metric: Labels::default(),
                    t: ts,
                    v: 1.0,
                }]),
                "sum by(job)(up)" => Err("boom".into()),
                _ => Ok(vec![]),
            }
        };
        gs[0].eval(10_000, &q);
        let v = rules_json(&gs, &RuleFilter::default());
        let g1 = &v["groups"][0];
        assert_ne!(g1["lastEvaluation"], "0001-01-01T00:00:00Z");
        let r0 = &g1["rules"][0];
        assert_eq!(r0["health"], "err");
        assert_eq!(r0["lastError"], "boom");
        assert_eq!(r0["type"], "recording");
        let a = &g1["rules"][2];
        let keys: Vec<&str> = a.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = vec![
            "state",
            "name",
            "query",
            "duration",
            "keepFiringFor",
            "labels",
            "annotations",
            "alerts",
            "health",
            "evaluationTime",
            "lastEvaluation",
            "type",
        ];
        want.sort();
        let mut got = keys.clone();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(a["state"], "pending");
        assert_eq!(a["duration"], json!(2));
        assert_eq!(a["keepFiringFor"], json!(3));
        assert_eq!(a["health"], "ok");
        assert_eq!(a["type"], "alerting");
        assert_eq!(
            a["alerts"],
            json!([{
                "labels": {"alertname": "AlwaysOn", "severity": "page"},
                "annotations": {"summary": "value 1"},
                "state": "pending",
                "activeAt": "1970-01-01T00:00:10Z",
                "value": "1e+00"
            }])
        );
    }

    #[test]
    fn filters() {
        let gs = groups();
        let only = |f: RuleFilter| -> Vec<(String, Vec<String>)> {
            let v = rules_json(&gs, &f);
            v["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    (
                        g["name"].as_str().unwrap().to_string(),
                        g["rules"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|r| r["name"].as_str().unwrap().to_string())
                            .collect(),
                    )
                })
                .collect()
        };
        let rec = only(RuleFilter {
            kind: Some("record".into()),
            ..Default::default()
        });
        assert_eq!(
            rec,
            vec![
                ("g1".into(), vec!["job:up:sum".into(), "plain".into()]),
                ("g2".into(), vec![])
            ]
        );
        let by_name = only(RuleFilter {
            rule_names: vec!["Bad".into()],
            ..Default::default()
        });
        assert_eq!(by_name, vec![("g2".into(), vec!["Bad".into()])]);
        let by_group = only(RuleFilter {
            kind: Some("alert".into()),
            rule_groups: vec!["g1".into()],
            ..Default::default()
        });
        assert_eq!(by_group, vec![("g1".into(), vec!["AlwaysOn".into()])]);
        assert!(only(RuleFilter {
            files: vec!["other.yml".into()],
            ..Default::default()
        })
        .is_empty());
        assert!(RuleFilter {
            kind: Some("xx".into()),
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
