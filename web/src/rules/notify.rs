//! Alerts as sent to Alertmanager's v2 API (`POST /api/v2/alerts`): a JSON list of
//! `{"labels": {…}, "annotations": {…}, "startsAt": RFC 3339, "endsAt": RFC 3339,
//! "generatorURL": "<external URL>/graph?g0.expr=<expr>&g0.tab=1"}`. `startsAt` is when the
//! alert fired; `endsAt` is its resolve time, or `valid_until` while it fires. External labels
//! are added where the alert lacks them, then `alert_relabel_configs` apply (an alert they drop
//! is not sent).

use std::collections::BTreeMap;

use serde::Serialize;
use tsdb::{Label, Labels};

use super::alerting::Alert;
use crate::relabel::{process, RelabelConfig};

/// One alert in the v2 API's form.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiAlert {
    /// Identifying labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 start.
    pub starts_at: String,
    /// RFC 3339 end.
    pub ends_at: String,
    /// Link back to the expression.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds, as Alertmanager's client writes.
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = crate::template::civil_from_days(secs.div_euclid(86400));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Converts alerts of a rule with expression `expr` into what is posted to Alertmanager.
pub fn to_api_alerts(
    alerts: &[Alert],
    expr: &str,
    external_url: &str,
    external_labels: &[(String, String)],
    alert_relabel: &[RelabelConfig],
) -> Vec<ApiAlert> {
    let url = format!(
        "{}/graph?g0.expr={}&g0.tab=1",
        external_url.trim_end_matches('/'),
        query_escape(expr)
    );
    let mut out = Vec::with_capacity(alerts.len());
    for a in alerts {
        let mut ls: Vec<Label> = a.labels.iter().cloned().collect();
        for (k, v) in external_labels {
            if !a.labels.has(k) {
                ls.push(Label::new(k, v));
            }
        }
        let Some(labels) = process(&Labels::new(ls), alert_relabel) else {
            continue;
        };
        if labels.is_empty() {
            continue;
        }
        let ends = a.resolved_at.or(a.valid_until).unwrap_or(0);
        out.push(ApiAlert {
            labels: labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
            annotations: a
                .annotations
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
            starts_at: rfc3339_millis(a.fired_at.unwrap_or(a.active_at)),
            ends_at: rfc3339_millis(ends),
            generator_url: url.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::alerting::AlertingRule;
    use query::Sample;

    #[test]
    fn resend_rules_and_payload() {
        let r = AlertingRule::new(
            "Down",
            "up == 0",
            0,
            0,
            vec![],
            vec![("summary".into(), "{{ $labels.instance }}".into())],
            vec![],
            "",
            true,
        );
        let v = vec![Sample {
            metric: Labels::from_pairs(&[("__name__", "up"), ("instance", "a")]),
            t: 0,
            v: 0.0,
        }];
        let t0 = 1_700_000_000_000;
        r.eval(t0, v.clone(), 0, None).unwrap();
        let s = r.alerts_to_send(t0, 60_000, 15_000);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].valid_until, Some(t0 + 240_000));
        // not again within the resend delay
        r.eval(t0 + 15_000, v.clone(), 0, None).unwrap();
        assert!(r.alerts_to_send(t0 + 15_000, 60_000, 15_000).is_empty());
        r.eval(t0 + 75_000, v.clone(), 0, None).unwrap();
        assert_eq!(r.alerts_to_send(t0 + 75_000, 60_000, 15_000).len(), 1);
        // resolved: sent at once
        r.eval(t0 + 90_000, vec![], 0, None).unwrap();
        let s = r.alerts_to_send(t0 + 90_000, 60_000, 15_000);
        assert_eq!(s.len(), 1);
        let relabel: Vec<RelabelConfig> =
            serde_yaml_ng::from_str("[{regex: dc, action: labeldrop}]").unwrap();
        let api = to_api_alerts(
            &s,
            "up == 0",
            "http://ignis:9090/",
            &[("cluster".into(), "eu".into()), ("dc".into(), "x".into())],
            &relabel,
        );
        let j = serde_json::to_value(&api).unwrap();
        assert_eq!(
            j,
            serde_json::json!([{
                "labels": {"alertname": "Down", "instance": "a", "cluster": "eu"},
                "annotations": {"summary": "a"},
                "startsAt": "2023-11-14T22:13:20.000Z",
                "endsAt": "2023-11-14T22:14:50.000Z",
                "generatorURL": "http://ignis:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
            }])
        );
    }
}
