//! Answers of Prometheus 2.42 over the backfilled fixture blocks, reproduced by the engine
//! over the same blocks opened through `tsdb` (query times are off the sample grid, so 2.x and
//! 3.x semantics agree).

mod common;

use std::path::Path;

use common::shared;

use query::{Engine, EngineOptions, Value};
use serde_json::Value as J;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let dst = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

fn parse_val(v: &J) -> f64 {
    let s = v.as_str().unwrap();
    match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || ((a - b).abs() / (a.abs() + b.abs())) < 1e-9
}

fn labels_of(m: &J) -> tsdb::Labels {
    let pairs: Vec<(String, String)> = m
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    tsdb::Labels::from_pairs(&pairs)
}

fn secs_to_ms(v: &str) -> i64 {
    (v.parse::<f64>().unwrap() * 1000.0).round() as i64
}

#[test]
fn prometheus_2_42_answers() {
    let fx = shared().join("fixtures/prometheus-2.42");
    let blocks = fx.join("blocks");
    if !blocks.is_dir() {
        panic!("fixture blocks missing: {}", blocks.display());
    }
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&blocks, tmp.path());
    let db = tsdb::db::Db::open_read_only(tmp.path(), Default::default()).unwrap();
    let engine = Engine::new(EngineOptions::default());
    let reqs: J =
        serde_json::from_str(&std::fs::read_to_string(fx.join("api/requests.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for r in reqs.as_array().unwrap() {
        let path = r["path"].as_str().unwrap();
        if r["http_status"].as_u64() != Some(200)
            || !(path == "/api/v1/query" || path == "/api/v1/query_range")
        {
            continue;
        }
        let params: Vec<(String, String)> = r["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let get = |k: &str| {
            params
                .iter()
                .find(|p| p.0 == k)
                .map(|p| p.1.clone())
                .unwrap()
        };
        let file = r["file"].as_str().unwrap();
        let want: J =
            serde_json::from_str(&std::fs::read_to_string(fx.join("api").join(file)).unwrap())
                .unwrap();
        let data = &want["data"];
        let q = get("query");
        let got = if path == "/api/v1/query" {
            engine.instant_query(&db, &q, secs_to_ms(&get("time")))
        } else {
            engine.range_query(
                &db,
                &q,
                secs_to_ms(&get("start")),
                secs_to_ms(&get("end")),
                secs_to_ms(&get("step")),
            )
        }
        .unwrap_or_else(|e| panic!("{file}: {q}: {e}"))
        .value;
        let res = &data["result"];
        match (data["resultType"].as_str().unwrap(), &got) {
            ("vector", Value::Vector(v)) => {
                let w = res.as_array().unwrap();
                assert_eq!(v.len(), w.len(), "{file}: {q}: got {v:?}");
                for ws in w {
                    let l = labels_of(&ws["metric"]);
                    let g = v
                        .iter()
                        .find(|s| s.metric == l)
                        .unwrap_or_else(|| panic!("{file}: missing {l}"));
                    let wv = parse_val(&ws["value"][1]);
                    assert!(close(g.v, wv), "{file}: {l}: got {} want {wv}", g.v);
                }
            }
            ("matrix", Value::Matrix(m)) => {
                let w = res.as_array().unwrap();
                assert_eq!(m.len(), w.len(), "{file}: {q}");
                for (gs, ws) in m.iter().zip(w) {
                    assert_eq!(gs.metric, labels_of(&ws["metric"]), "{file}: series order");
                    let wp = ws["values"].as_array().unwrap();
                    assert_eq!(gs.floats.len(), wp.len(), "{file}: {} points", gs.metric);
                    for (g, p) in gs.floats.iter().zip(wp) {
                        assert_eq!(
                            g.0,
                            (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                            "{file}"
                        );
                        assert!(
                            close(g.1, parse_val(&p[1])),
                            "{file}: got {} want {}",
                            g.1,
                            p[1]
                        );
                    }
                }
            }
            ("scalar", Value::Scalar { v, .. }) => assert!(close(*v, parse_val(&res[1])), "{file}"),
            ("string", Value::String { v, .. }) => {
                assert_eq!(v, res[1].as_str().unwrap(), "{file}")
            }
            (t, g) => panic!("{file}: want {t}, got {}", g.type_name()),
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} requests checked");
}
