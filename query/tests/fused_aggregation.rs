//! Range queries whose aggregation is fused with the range function or selector below it
//! (`sum by (job) (rate(x[5m]))`, `count by (job) (up)`) must give exactly the answer of the
//! unfused evaluation: the same series, the same bits at every step, the same annotations and
//! sample statistics, and the same memory-limit failures.

use query::{Engine, EngineOptions, ErrorKind, Value};
use tsdb::chunkenc::STALE_NAN_BITS;
use tsdb::querier::{MemQueryable, VecSeries};
use tsdb::Labels;

/// 700 series (enough to run on several threads) in groups of very different sizes, with
/// counter resets, staleness markers, gaps, series that end early and values of very
/// different magnitudes (so that the order of additions shows in the bits).
fn store() -> MemQueryable {
    let mut v = Vec::new();
    for i in 0..700i64 {
        let job = match i % 10 {
            0..=5 => "big",
            6 | 7 => "mid",
            8 => "small",
            _ => ["x", "y", "z", "w"][(i / 10 % 4) as usize],
        };
        let scale = if i % 7 == 0 {
            1e12
        } else {
            1.0 + i as f64 * 0.37
        };
        let mut samples = Vec::new();
        let mut c = 0.0f64;
        let n = if i % 13 == 0 { 300 } else { 960 };
        for k in 0..n {
            let t = k * 15_000 + (i % 5) * 1_000;
            if i % 11 == 0 && (400..440).contains(&k) {
                continue; // a gap longer than the lookback
            }
            if i % 17 == 0 && k == 500 {
                samples.push((t, f64::from_bits(STALE_NAN_BITS)));
                continue;
            }
            if i % 3 == 0 && k % 97 == 0 {
                c = 0.0; // counter reset
            }
            c += scale * (1.0 + ((k * (i + 3)) % 7) as f64 / 3.0);
            samples.push((t, c));
        }
        v.push(VecSeries {
            labels: Labels::from_pairs(&[
                ("__name__", "reqs_total"),
                ("job", job),
                ("instance", &format!("i{i:04}")),
                ("mode", if i % 4 == 0 { "idle" } else { "busy" }),
            ]),
            samples: samples.clone(),
        });
        if i < 40 {
            v.push(VecSeries {
                labels: Labels::from_pairs(&[
                    ("__name__", "temperature"),
                    ("job", job),
                    ("instance", &format!("i{i:04}")),
                ]),
                samples,
            });
        }
    }
    MemQueryable::new(v)
}

fn matrix(v: Value) -> Vec<query::Series> {
    match v {
        Value::Matrix(m) => m,
        other => panic!("not a matrix: {other:?}"),
    }
}

fn bits(m: &[query::Series]) -> Vec<(Labels, Vec<(i64, u64)>)> {
    m.iter()
        .map(|s| {
            (
                s.metric.clone(),
                s.floats.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect()
}

/// Asserts that two results are equal, naming the first series that differs.
fn same(got: &[(Labels, Vec<(i64, u64)>)], want: &[(Labels, Vec<(i64, u64)>)], what: &str) {
    let gl: Vec<&Labels> = got.iter().map(|s| &s.0).collect();
    let wl: Vec<&Labels> = want.iter().map(|s| &s.0).collect();
    assert_eq!(gl, wl, "{what}: series");
    for (g, w) in got.iter().zip(want) {
        assert!(g.1 == w.1, "{what}: points of {:?}", g.0);
    }
}

/// (aggregation, its argument).
const FUSED: &[(&str, &str)] = &[
    ("sum by (job)", "rate(reqs_total[5m])"),
    ("sum by (job, mode)", "increase(reqs_total[2m])"),
    ("avg by (job)", "rate(reqs_total{mode!=\"idle\"}[5m])"),
    ("count by (job)", "rate(reqs_total[1m])"),
    ("min by (mode)", "delta(reqs_total[5m])"),
    ("max without (instance)", "irate(reqs_total[5m])"),
    ("group by (job)", "avg_over_time(reqs_total[3m])"),
    ("sum by (__name__, job)", "last_over_time(reqs_total[4m])"),
    ("sum", "rate(reqs_total[5m] offset 2m)"),
    ("sum by (mode)", "rate(reqs_total[5m])"),
    ("avg without (instance, job)", "reqs_total"),
    ("sum by (job)", "rate(temperature[5m])"),
    ("sum by (job)", "reqs_total"),
    ("count by (job)", "reqs_total"),
    ("avg by (mode)", "reqs_total offset 3m"),
    ("max by (job)", "{__name__=~\"reqs_total|temperature\"}"),
    ("min without (instance, mode)", "reqs_total"),
];

#[test]
fn fused_equals_unfused_and_instant_evaluation() {
    let e = Engine::new(EngineOptions::default());
    let q = store();
    let (start, end, step) = (600_000, 14_000_000, 60_000);
    for (op, inner) in FUSED {
        let expr = format!("{op} ({inner})");
        let fused = e.range_query(&q, &expr, start, end, step).unwrap();
        // `or` with nothing keeps the series as they are but stops the fusion.
        let unfused_expr = format!("{op} (({inner}) or nothing_here)");
        let unfused = e.range_query(&q, &unfused_expr, start, end, step).unwrap();
        let (fm, um) = (matrix(fused.value), matrix(unfused.value));
        assert!(!fm.is_empty(), "{expr}: empty");
        same(&bits(&fm), &bits(&um), &format!("{expr} vs {unfused_expr}"));
        assert_eq!(
            fused.stats.total_queryable_samples, unfused.stats.total_queryable_samples,
            "{expr}"
        );
        assert_eq!(fused.annotations, unfused.annotations, "{expr}");
        // Each step equals the instant query at that time, to the bit.
        for t in (start..=end).step_by(step as usize * 17) {
            let Value::Vector(iv) = e.instant_query(&q, &expr, t).unwrap().value else {
                panic!("not a vector")
            };
            let mut want: Vec<(Labels, u64)> = iv
                .iter()
                .map(|s| (s.metric.clone(), s.v.to_bits()))
                .collect();
            want.sort();
            // The instant query must match its unfused form.
            let ui = e.instant_query(&q, &unfused_expr, t).unwrap();
            let Value::Vector(uv) = ui.value else {
                panic!("not a vector")
            };
            let mut unfused_want: Vec<(Labels, u64)> = uv
                .iter()
                .map(|s| (s.metric.clone(), s.v.to_bits()))
                .collect();
            unfused_want.sort();
            assert_eq!(want, unfused_want, "{expr} instant at {t}");
            let mut got: Vec<(Labels, u64)> = fm
                .iter()
                .filter_map(|s| {
                    s.floats
                        .iter()
                        .find(|p| p.0 == t)
                        .map(|p| (s.metric.clone(), p.1.to_bits()))
                })
                .collect();
            got.sort();
            assert_eq!(got, want, "{expr} at {t}");
        }
    }
}

#[test]
fn fused_reports_non_counter_infos_in_series_order() {
    let e = Engine::new(EngineOptions::default());
    let q = store();
    let r = e
        .range_query(
            &q,
            "sum by (job) (rate({__name__=~\"reqs_total|temperature\"}[5m]))",
            600_000,
            3_600_000,
            60_000,
        )
        .unwrap();
    assert_eq!(
        r.annotations.infos,
        vec!["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"temperature\""]
    );
}

#[test]
fn fused_keeps_the_memory_limit() {
    let q = store();
    let expr = "sum by (job) (rate(reqs_total[5m]))";
    // The unfused input is ~700 series x 100 steps: over the limit although the output is
    // small.
    let e = Engine::new(EngineOptions {
        max_samples: 20_000,
        ..Default::default()
    });
    let err = e
        .range_query(&q, expr, 600_000, 6_600_000, 60_000)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Execution);
    assert!(err.msg.contains("too many samples"), "{}", err.msg);
    let e = Engine::new(EngineOptions::default());
    let r = e.range_query(&q, expr, 600_000, 6_600_000, 60_000).unwrap();
    assert!(r.stats.peak_samples >= 700 * 90, "{}", r.stats.peak_samples);
}

#[test]
fn too_many_groups_found_mid_stream_fall_back_to_the_unfused_fold() {
    let e = Engine::new(EngineOptions::default());
    let q = store();
    // 700 groups × 2,881 steps is over the series-major fold's cells; the fused fold finds
    // out only after ~350 series have been taken from the selection's stream.
    let (start, end, step) = (0, 14_400_000, 5_000);
    let expr = "sum by (instance) (rate(reqs_total[5m]))";
    let got = e.range_query(&q, expr, start, end, step).unwrap();
    let unfused_expr = "sum by (instance) ((rate(reqs_total[5m])) or nothing_here)";
    let want = e.range_query(&q, unfused_expr, start, end, step).unwrap();
    let (gm, wm) = (matrix(got.value), matrix(want.value));
    assert_eq!(gm.len(), 700);
    same(&bits(&gm), &bits(&wm), expr);
    assert_eq!(
        got.stats.total_queryable_samples,
        want.stats.total_queryable_samples
    );
}

#[test]
fn instant_aggregations_over_long_ranges_are_fused_with_the_same_answer() {
    let e = Engine::new(EngineOptions::default());
    let q = store();
    for (op, inner) in [
        ("sum by (job)", "count_over_time(reqs_total[3h])"),
        ("max by (mode)", "increase(reqs_total[2h])"),
        ("avg", "avg_over_time(reqs_total[1h])"),
    ] {
        let expr = format!("{op} ({inner})");
        let unfused_expr = format!("{op} (({inner}) or nothing_here)");
        for t in [3_600_000, 10_000_000, 14_400_000] {
            let got = e.instant_query(&q, &expr, t).unwrap();
            let want = e.instant_query(&q, &unfused_expr, t).unwrap();
            let (Value::Vector(gv), Value::Vector(wv)) = (got.value, want.value) else {
                panic!("not a vector")
            };
            let g: Vec<(Labels, u64)> = gv
                .iter()
                .map(|s| (s.metric.clone(), s.v.to_bits()))
                .collect();
            let w: Vec<(Labels, u64)> = wv
                .iter()
                .map(|s| (s.metric.clone(), s.v.to_bits()))
                .collect();
            assert!(!g.is_empty(), "{expr} at {t}: empty");
            assert_eq!(g, w, "{expr} at {t}");
            assert_eq!(
                got.stats.total_queryable_samples, want.stats.total_queryable_samples,
                "{expr} at {t}"
            );
        }
    }
}
