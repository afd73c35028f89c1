//! Engine API behaviour: value shapes of instant and range queries, error kinds and
//! messages, limits, per-query options and statistics.

use std::time::Duration;

use query::{Engine, EngineOptions, ErrorKind, QueryOptions, Value};
use tsdb::querier::{MemQueryable, VecSeries};
use tsdb::Labels;

fn store() -> MemQueryable {
    let mut v = Vec::new();
    for i in 0..10 {
        v.push(VecSeries {
            labels: Labels::from_pairs(&[
                ("__name__", "http_requests_total"),
                ("job", if i % 2 == 0 { "a" } else { "b" }),
                ("i", &i.to_string()),
            ]),
            // one sample every 15s for 1h, counter increasing by i+1 per sample
            samples: (0..240)
                .map(|k| (k * 15_000, (k * (i + 1)) as f64))
                .collect(),
        });
    }
    MemQueryable::new(v)
}

#[test]
fn instant_vector_and_scalar() {
    let e = Engine::new(EngineOptions::default());
    let q = store();
    let r = e
        .instant_query(&q, "sum by (job) (rate(http_requests_total[1m]))", 600_000)
        .unwrap();
    let Value::Vector(v) = r.value else {
        panic!("not a vector")
    };
    assert_eq!(v.len(), 2);
    let a = v.iter().find(|s| s.metric.get("job") == Some("a")).unwrap();
    // job a: i = 0,2,4,6,8 -> increments 1,3,5,7,9 per 15s
    assert!((a.v - 25.0 / 15.0).abs() < 1e-9, "{}", a.v);
    assert_eq!(a.t, 600_000);
    assert!(a.metric.get("__name__").is_none());
    let r = e
        .instant_query(&q, "scalar(count(http_requests_total)) * 2", 1000)
        .unwrap();
    assert_eq!(r.value, Value::Scalar { t: 1000, v: 20.0 });
    let r = e.instant_query(&q, "\"x\"", 5).unwrap();
    assert_eq!(
        r.value,
        Value::String {
            t: 5,
            v: "x".into()
        }
    );
}

#[test]
fn range_query_is_sorted_matrix() {
    let e = Engine::new(EngineOptions::default());
    let q = store();
    let r = e
        .range_query(
            &q,
            "http_requests_total{job=\"b\"} offset 1m",
            120_000,
            300_000,
            60_000,
        )
        .unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("not a matrix")
    };
    assert_eq!(m.len(), 5);
    assert!(m.windows(2).all(|w| w[0].metric < w[1].metric));
    for s in &m {
        let i: i64 = s.metric.get("i").unwrap().parse().unwrap();
        let ts: Vec<i64> = s.floats.iter().map(|p| p.0).collect();
        assert_eq!(ts, vec![120_000, 180_000, 240_000, 300_000]);
        // value at t is the sample at t - 1m: index (t-60s)/15s
        assert_eq!(s.floats[0].1, (4 * (i + 1)) as f64);
    }
    // a scalar range query gives one label-less series
    let r = e.range_query(&q, "time()", 0, 120_000, 60_000).unwrap();
    let Value::Matrix(m) = r.value else {
        panic!("not a matrix")
    };
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].floats,
        vec![(0, 0.0), (60_000, 60.0), (120_000, 120.0)]
    );
    assert!(r.stats.total_queryable_samples == 0);
}

#[test]
fn errors_have_prometheus_kinds() {
    let e = Engine::new(EngineOptions::default());
    let q = store();
    let err = e.instant_query(&q, "sum(", 0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadData);
    assert_eq!(err.kind.as_str(), "bad_data");
    let err = e
        .range_query(&q, "http_requests_total[5m]", 0, 10, 1)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadData);
    assert!(
        err.msg.contains("invalid expression type \"range vector\""),
        "{}",
        err.msg
    );
    let err = e.range_query(&q, "1", 0, 10, 0).unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadData);
    // many-to-many matching
    let err = e
        .instant_query(
            &q,
            "http_requests_total + on(job) http_requests_total",
            60_000,
        )
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Execution);
    assert!(
        err.msg.starts_with(
            "found duplicate series for the match group {job=\"a\"} on the right hand-side"
        ),
        "{}",
        err.msg
    );
}

#[test]
fn max_samples_limit() {
    let e = Engine::new(EngineOptions {
        max_samples: 100,
        ..Default::default()
    });
    let q = store();
    // 10 series x 40 samples in a 10m window
    let err = e
        .instant_query(&q, "http_requests_total[10m]", 3_000_000)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Execution);
    assert_eq!(
        err.msg,
        "query processing would load too many samples into memory in query execution"
    );
    // a small query still works on the same engine
    let r = e
        .instant_query(&q, "count(http_requests_total)", 3_000_000)
        .unwrap();
    assert_eq!(
        r.value,
        Value::Vector(vec![query::Sample {
            metric: Labels::empty(),
            t: 3_000_000,
            v: 10.0
        }])
    );
}

#[test]
fn timeout_limit() {
    let e = Engine::new(EngineOptions {
        timeout: Duration::ZERO,
        ..Default::default()
    });
    let q = store();
    let err = e
        .range_query(&q, "rate(http_requests_total[5m])", 0, 3_600_000, 15_000)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert_eq!(err.kind.as_str(), "timeout");
}

#[test]
fn per_query_lookback_and_stats() {
    let e = Engine::new(EngineOptions::default());
    let q = store();
    // the last sample is at 3585s; 4000s is more than 5m later
    let r = e
        .instant_query(&q, "http_requests_total", 4_000_000)
        .unwrap();
    assert_eq!(r.value, Value::Vector(vec![]));
    let expr = query::engine::parse("http_requests_total").unwrap();
    let o = QueryOptions {
        lookback_delta: Some(600_000),
        ..Default::default()
    };
    let r = e.instant_query_expr(&q, &expr, 4_000_000, &o).unwrap();
    let Value::Vector(v) = r.value else {
        panic!("not a vector")
    };
    assert_eq!(v.len(), 10);
    assert!(r.stats.total_queryable_samples > 0);
    assert!(r.stats.peak_samples >= 10);
}

#[test]
fn annotations_for_non_counters() {
    let e = Engine::new(EngineOptions::default());
    let q = MemQueryable::new(vec![VecSeries {
        labels: Labels::from_pairs(&[("__name__", "temperature")]),
        samples: vec![(0, 1.0), (15_000, 2.0), (30_000, 3.0)],
    }]);
    let r = e
        .instant_query(&q, "rate(temperature[1m])", 30_000)
        .unwrap();
    assert_eq!(
        r.annotations.infos,
        vec!["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"temperature\""]
    );
    let r = e
        .range_query(&q, "sort(temperature)", 0, 30_000, 15_000)
        .unwrap();
    assert_eq!(
        r.annotations.warnings,
        vec!["PromQL warning: sort is ineffective for range queries since results are always ordered by labels"]
    );
}

#[test]
fn cancellation() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let e = Engine::new(EngineOptions::default());
    let q = store();
    let flag = Arc::new(AtomicBool::new(true));
    let o = QueryOptions {
        cancel: Some(flag.clone()),
        ..Default::default()
    };
    let expr = query::engine::parse("sum(http_requests_total)").unwrap();
    let err = e
        .range_query_expr(&q, &expr, 0, 3_600_000, 60_000, &o)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Canceled);
    assert_eq!(err.kind.as_str(), "canceled");
    flag.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(e
        .range_query_expr(&q, &expr, 0, 3_600_000, 60_000, &o)
        .is_ok());
}
