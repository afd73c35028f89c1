//! Acceptance: ignis serving the blocks Prometheus 2.42 wrote answers every request in
//! `fixtures/prometheus-2.42/api/requests.json` with the saved response: same HTTP status, same
//! data (vector results compared as sets, floats with a relative tolerance of 1e-9). Error
//! answers are compared by `status` and `errorType`; buildinfo by its keys.

#[path = "server_common.rs"]
mod common;

use serde_json::Value;

fn floats_close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => {
            ((x - y).abs() <= 1e-9 * x.abs().max(y.abs())) || (x.is_nan() && y.is_nan())
        }
        _ => false,
    }
}

/// Compares JSON values; strings that are both numbers compare with a tolerance, and arrays
/// of vector samples (objects with `metric`) compare as sets.
fn same(a: &Value, b: &Value, path: &str) -> Result<(), String> {
    match (a, b) {
        (Value::String(x), Value::String(y)) if floats_close(x, y) => Ok(()),
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => Ok(()),
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!("{path}: {} items vs {}", x.len(), y.len()));
            }
            let is_vector = x
                .iter()
                .all(|v| v.get("metric").is_some() && v.get("value").is_some());
            if is_vector {
                for v in x {
                    let found = y.iter().any(|w| {
                        w["metric"] == v["metric"] && same(&v["value"], &w["value"], path).is_ok()
                    });
                    if !found {
                        return Err(format!("{path}: no match for {v}"));
                    }
                }
                Ok(())
            } else {
                x.iter()
                    .zip(y)
                    .enumerate()
                    .try_for_each(|(i, (v, w))| same(v, w, &format!("{path}[{i}]")))
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() || x.keys().any(|k| !y.contains_key(k)) {
                return Err(format!(
                    "{path}: keys {:?} vs {:?}",
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>()
                ));
            }
            x.iter()
                .try_for_each(|(k, v)| same(v, &y[k], &format!("{path}.{k}")))
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{path}: {a} vs {b}")),
    }
}

#[test]
fn answers_like_prometheus_over_the_fixture_blocks() {
    let api = common::shared_dir().join("fixtures/prometheus-2.42/api");
    let reqs: Vec<Value> =
        serde_json::from_slice(&std::fs::read(api.join("requests.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::copy_dir(
        &common::shared_dir().join("fixtures/prometheus-2.42/blocks"),
        &data,
    );
    let srv = common::start(&data, &["--storage.tsdb.retention.time=100y"]);
    let mut failures = Vec::new();
    for r in &reqs {
        let file = r["file"].as_str().unwrap();
        let want: Value = serde_json::from_slice(&std::fs::read(api.join(file)).unwrap()).unwrap();
        let resp = common::get(&srv.addr, r["url"].as_str().unwrap());
        if resp.status as u64 != r["http_status"].as_u64().unwrap() {
            failures.push(format!(
                "{file}: status {} want {}: {}",
                resp.status,
                r["http_status"],
                resp.text()
            ));
            continue;
        }
        assert_eq!(
            resp.header("content-type"),
            Some("application/json"),
            "{file}"
        );
        let got = resp.json();
        let res = if want["status"] == "error" {
            if got["status"] == want["status"]
                && got["errorType"] == want["errorType"]
                && got["error"].is_string()
            {
                Ok(())
            } else {
                Err(format!("{got} vs {want}"))
            }
        } else if file == "status_buildinfo.json" {
            let keys = |v: &Value| {
                v["data"]
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>())
            };
            if keys(&got) == keys(&want) {
                Ok(())
            } else {
                Err(format!("{got} vs {want}"))
            }
        } else {
            same(&got, &want, "")
        };
        if let Err(e) = res {
            failures.push(format!("{file}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        reqs.len(),
        failures.join("\n")
    );
}
