//! Rule groups evaluated with the real PromQL engine over an in-memory store that receives what
//! the rules write: a recording rule feeding an alert that goes pending, fires and resolves.

mod common_h5;
use common_h5::*;

use std::cell::RefCell;
use std::collections::BTreeMap;

use config::PromDuration;
use query::{Engine, Sample, Value};
use rules::alerting::AlertState;
use rules::group::RuleGroup;
use tsdb::querier::{MemQueryable, VecSeries};
use tsdb::Labels;

const RULES: &str = r#"groups:
  - name: availability
    interval: 15s
    rules:
      - record: job:up:avg
        expr: avg by (job) (up)
      - alert: JobDegraded
        expr: job:up:avg < 1
        for: 1m
        labels:
          severity: "{{ if lt $value 0.5 }}page{{ else }}ticket{{ end }}"
        annotations:
          summary: "{{ $labels.job }} at {{ $value | humanizePercentage }} in {{ $externalLabels.cluster }}"
          down: "{{ range query \"up == 0\" }}{{ .Labels.instance }} {{ end }}"
"#;

/// A store of series keyed by labels; rule output is appended to it.
struct Store {
    series: BTreeMap<Labels, Vec<(i64, f64)>>,
}

impl Store {
    fn append(&mut self, samples: &[Sample]) {
        for s in samples {
            self.series
                .entry(s.metric.clone())
                .or_default()
                .push((s.t, s.v));
        }
    }
    fn queryable(&self) -> MemQueryable {
        MemQueryable::new(
            self.series
                .iter()
                .map(|(l, s)| VecSeries {
                    labels: l.clone(),
                    samples: s.clone(),
                })
                .collect(),
        )
    }
}

#[test]
fn recording_rule_feeds_alert_through_engine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yml");
    std::fs::write(&path, RULES).unwrap();
    let ext = vec![("cluster".to_string(), "eu1".to_string())];
    let groups =
        RuleGroup::load_file(&path, PromDuration::from_secs(60), &ext, "http://x", true).unwrap();
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(g.interval, PromDuration::from_secs(15));

    // instance b goes down at t=60s and comes back at t=240s
    let mut store = Store {
        series: BTreeMap::new(),
    };
    for t in (0..=600_000).step_by(15_000) {
        for inst in ["a", "b"] {
            let v = if inst == "b" && (60_000..240_000).contains(&t) {
                0.0
            } else {
                1.0
            };
            store.append(&[Sample {
                metric: Labels::from_pairs(&[
                    ("__name__", "up"),
                    ("instance", inst),
                    ("job", "api"),
                ]),
                t,
                v,
            }]);
        }
    }
    let store = RefCell::new(store);
    let engine = Engine::default();
    let query = |e: &str, ts: i64| -> Result<Vec<Sample>, String> {
        let q = store.borrow().queryable();
        let r = engine.instant_query(&q, e, ts).map_err(|e| e.to_string())?;
        match r.value {
            Value::Vector(v) => Ok(v),
            Value::Scalar { t, v } => Ok(vec![Sample {
                metric: Labels::empty(),
                t,
                v,
            }]),
            other => Err(format!("unexpected {}", other.type_name())),
        }
    };
    let mut states = Vec::new();
    for t in (0..=300_000).step_by(15_000) {
        let r = g.eval_with(t, &query, &mut |s| store.borrow_mut().append(s));
        assert!(r.errors.is_empty(), "t={t}: {:?}", r.errors);
        let a = g.alerting_rules().next().unwrap();
        states.push((t, a.state()));
        if t == 135_000 {
            let al = a.active_alerts();
            assert_eq!(al.len(), 1);
            assert_eq!(al[0].state, AlertState::Firing);
            assert_eq!(al[0].active_at, 60_000);
            assert_eq!(al[0].labels.get("severity"), Some("ticket"));
            assert_eq!(al[0].labels.get("job"), Some("api"));
            assert_eq!(al[0].annotations.get("summary"), Some("api at 50% in eu1"));
            assert_eq!(al[0].annotations.get("down"), Some("b "));
        }
    }
    let firing_from = states
        .iter()
        .find(|(_, s)| *s == AlertState::Firing)
        .unwrap()
        .0;
    assert_eq!(
        firing_from, 120_000,
        "fires once `for: 1m` has passed since 60s"
    );
    let pending: Vec<i64> = states
        .iter()
        .filter(|(_, s)| *s == AlertState::Pending)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(pending, vec![60_000, 75_000, 90_000, 105_000]);
    let resolved_at = states
        .iter()
        .find(|(t, s)| *t > 120_000 && *s == AlertState::Inactive)
        .unwrap()
        .0;
    assert_eq!(resolved_at, 240_000);

    // what was written: the recording rule's series, and ALERTS with pending then firing
    let st = store.borrow();
    let rec = &st.series[&Labels::from_pairs(&[("__name__", "job:up:avg"), ("job", "api")])];
    assert_eq!(rec.iter().find(|(t, _)| *t == 60_000).unwrap().1, 0.5);
    let firing = Labels::from_pairs(&[
        ("__name__", "ALERTS"),
        ("alertname", "JobDegraded"),
        ("alertstate", "firing"),
        ("job", "api"),
        ("severity", "ticket"),
    ]);
    let f = &st.series[&firing];
    assert_eq!(f.first().unwrap(), &(120_000, 1.0));
    // staleness marker when it resolved
    let last = f.last().unwrap();
    assert_eq!(last.0, 240_000);
    assert!(tsdb::chunkenc::is_stale_nan(last.1));
    let for_state = Labels::from_pairs(&[
        ("__name__", "ALERTS_FOR_STATE"),
        ("alertname", "JobDegraded"),
        ("job", "api"),
        ("severity", "ticket"),
    ]);
    assert_eq!(st.series[&for_state][0], (60_000, 60.0));
}
