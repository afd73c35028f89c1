//! End-to-end tests of the real `ignis` binary on loopback: the Grafana datasource sequence,
//! remote write and read round trips, bad input (each with Prometheus's status and error type,
//! none blocking later requests), `promtool query` against ignis, admin and lifecycle.

#[path = "server_common.rs"]
mod common;

use std::process::Command;

use prost::Message;
use serde_json::Value;

use web::remote::proto::{Label, Sample, TimeSeries, WriteRequest};

const T0: i64 = 1_700_000_000_000;

fn series(name: &str, job: &str, n: i64) -> TimeSeries {
    TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: name.into(),
            },
            Label {
                name: "job".into(),
                value: job.into(),
            },
        ],
        samples: (0..n)
            .map(|i| Sample {
                timestamp: T0 + i * 15_000,
                value: i as f64,
            })
            .collect(),
        ..Default::default()
    }
}

fn write(addr: &str, req: &WriteRequest) -> common::Response {
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    common::request(
        addr,
        "POST",
        "/api/v1/write",
        Some(&body),
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
    )
    .unwrap()
}

fn start() -> (tempfile::TempDir, common::Server) {
    let tmp = tempfile::tempdir().unwrap();
    let srv = common::start(
        &tmp.path().join("data"),
        &[
            "--web.enable-remote-write-receiver",
            "--web.enable-admin-api",
            "--web.enable-lifecycle",
        ],
    );
    (tmp, srv)
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn grafana_datasource_sequence() {
    let (_tmp, srv) = start();
    let a = &srv.addr;
    let r = write(
        a,
        &WriteRequest {
            timeseries: vec![
                series("http_requests_total", "api", 40),
                series("http_requests_total", "db", 40),
            ],
            ..Default::default()
        },
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let (s, e) = (T0 / 1000, T0 / 1000 + 600);

    // 1. health check
    let v = common::get(a, "/api/v1/query?query=1%2B1&time=1700000100").json();
    assert_eq!(
        v["data"],
        serde_json::json!({"resultType":"scalar","result":[1700000100,"2"]})
    );
    // 2. flavour: Prometheus, no `features`
    let v = common::get(a, "/api/v1/status/buildinfo").json();
    assert!(v["data"]["version"].is_string());
    assert!(v["data"].get("features").is_none());
    // 3. exemplars
    let v = common::get(
        a,
        &format!("/api/v1/query_exemplars?query=test&start={s}&end={e}"),
    )
    .json();
    assert_eq!(
        (v["status"].as_str(), v["data"].as_array().map(|x| x.len())),
        (Some("success"), Some(0))
    );
    // 4. labels and metric names with match[] and a time range
    let v = common::get(
        a,
        &format!(
            "/api/v1/labels?match[]={}&start={s}&end={e}",
            enc("{job=\"api\"}")
        ),
    )
    .json();
    assert_eq!(v["data"], serde_json::json!(["__name__", "job"]));
    let v = common::get(
        a,
        &format!(
            "/api/v1/label/__name__/values?match[]={}&start={s}&end={e}",
            enc("{job=~\".+\"}")
        ),
    )
    .json();
    assert_eq!(v["data"], serde_json::json!(["http_requests_total"]));
    // 5. series with limit
    let v = common::get(
        a,
        &format!("/api/v1/series?match[]=http_requests_total&start={s}&end={e}&limit=1"),
    )
    .json();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    // 6. metadata and rules
    assert_eq!(
        common::get(a, "/api/v1/metadata").json()["data"],
        serde_json::json!({})
    );
    assert_eq!(
        common::get(a, "/api/v1/rules").json()["data"],
        serde_json::json!({"groups": []})
    );
    // 7. range query by GET and POST form with float seconds
    let q = enc("sum by (job) (rate(http_requests_total[1m]))");
    let get = common::get(
        a,
        &format!(
            "/api/v1/query_range?query={q}&start={s}.5&end={}&step=30.0",
            s + 300
        ),
    )
    .json();
    let post = common::post_form(
        a,
        "/api/v1/query_range",
        &format!("query={q}&start={s}.5&end={}&step=30.0", s + 300),
    )
    .json();
    assert_eq!(get, post);
    let r = get["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["metric"], serde_json::json!({"job": "api"}));
    // rate() needs two samples in its 1m window: the first point is 30.5 s after the start.
    let first = &r[0]["values"][0];
    assert_eq!(first[0].as_f64().unwrap(), s as f64 + 30.5);
    // Samples 0, 1, 2 at s, s+15, s+30; extrapolated 0.5 s to the window end, not below zero.
    let want = 2.0 * (30.5 / 30.0) / 60.0;
    assert!(
        (first[1].as_str().unwrap().parse::<f64>().unwrap() - want).abs() < 1e-12,
        "{first}"
    );
}

#[test]
fn bad_input_gets_prometheus_errors_and_does_not_block() {
    let (_tmp, srv) = start();
    let a = &srv.addr;
    // malformed protobuf / wrong snappy
    let bad_proto = snap::raw::Encoder::new()
        .compress_vec(&[0x0a, 0xff, 0xff, 0xff])
        .unwrap();
    let r = common::request(a, "POST", "/api/v1/write", Some(&bad_proto), &[]).unwrap();
    assert_eq!(r.status, 400);
    assert!(!r.text().is_empty());
    let r = common::request(
        a,
        "POST",
        "/api/v1/write",
        Some(b"\xff\xffnot snappy at all"),
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 400);
    // a query that does not parse, a match[] with no matcher, start after end
    for (path, field) in [
        ("/api/v1/query?query=sum(rate(x%5B5m%5D)", "bad_data"),
        (
            &*format!("/api/v1/series?match[]={}", enc("{job=~\".*\"}")),
            "bad_data",
        ),
        (
            "/api/v1/query_range?query=up&start=200&end=100&step=15",
            "bad_data",
        ),
        ("/api/v1/labels?start=200&end=100", "bad_data"),
        ("/api/v1/query?query=up&time=notatime", "bad_data"),
    ] {
        let r = common::get(a, path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        let v = r.json();
        assert_eq!(
            (v["status"].as_str(), v["errorType"].as_str()),
            (Some("error"), Some(field)),
            "{path}"
        );
    }
    // out-of-order samples reject the request as a whole and are counted
    assert_eq!(
        write(
            a,
            &WriteRequest {
                timeseries: vec![series("m", "x", 10)],
                ..Default::default()
            }
        )
        .status,
        204
    );
    let mut late = series("m", "x", 1);
    late.samples[0].timestamp = T0 - 1;
    let r = write(
        a,
        &WriteRequest {
            timeseries: vec![series("fresh", "x", 3), late],
            ..Default::default()
        },
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("out of order"), "{}", r.text());
    let v = common::get(a, "/api/v1/series?match[]=fresh").json();
    assert_eq!(v["data"], serde_json::json!([]));
    let metrics = common::get(a, "/metrics").text();
    assert!(
        metrics.contains("prometheus_tsdb_out_of_order_samples_total{type=\"float\"} 1"),
        "{metrics}"
    );
    // still healthy and answering
    assert_eq!(common::get(a, "/-/healthy").status, 200);
    assert_eq!(common::get(a, "/api/v1/query?query=1").status, 200);
}

#[test]
fn promtool_queries_match_direct_queries() {
    let (_tmp, srv) = start();
    let a = &srv.addr;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = (now - 600_000) / 1000 * 1000;
    let ts = TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: "pt".into(),
            },
            Label {
                name: "k".into(),
                value: "v".into(),
            },
        ],
        samples: (0..40)
            .map(|i| Sample {
                timestamp: base + i * 15_000,
                value: (i * 2) as f64,
            })
            .collect(),
        ..Default::default()
    };
    assert_eq!(
        write(
            a,
            &WriteRequest {
                timeseries: vec![ts],
                ..Default::default()
            }
        )
        .status,
        204
    );
    let t = (base + 30 * 15_000) / 1000;
    let out = Command::new("promtool")
        .args([
            "query",
            "instant",
            "-o",
            "json",
            &format!("http://{a}"),
            "pt",
            &format!("--time={t}"),
        ])
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let via_promtool: Value = serde_json::from_slice(&out.stdout).unwrap();
    let direct = common::get(a, &format!("/api/v1/query?query=pt&time={t}")).json();
    assert_eq!(via_promtool, direct["data"]["result"]);
    let (s, e) = (base / 1000, base / 1000 + 300);
    let out = Command::new("promtool")
        .args([
            "query",
            "range",
            "-o",
            "json",
            &format!("--start={s}"),
            &format!("--end={e}"),
            "--step=1m",
            &format!("http://{a}"),
            "pt",
        ])
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let via_promtool: Value = serde_json::from_slice(&out.stdout).unwrap();
    let direct = common::get(
        a,
        &format!("/api/v1/query_range?query=pt&start={s}&end={e}&step=60"),
    )
    .json();
    assert_eq!(via_promtool, direct["data"]["result"]);
    assert_eq!(
        direct["data"]["result"][0]["values"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

#[test]
fn admin_snapshot_and_lifecycle_quit() {
    let (tmp, srv) = start();
    let a = srv.addr.clone();
    assert_eq!(
        write(
            &a,
            &WriteRequest {
                timeseries: vec![series("snap", "x", 5)],
                ..Default::default()
            }
        )
        .status,
        204
    );
    let r = common::request(&a, "POST", "/api/v1/admin/tsdb/snapshot", None, &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let name = r.json()["data"]["name"].as_str().unwrap().to_string();
    let snap = tmp.path().join("data/snapshots").join(&name);
    assert!(snap.is_dir());
    // The snapshot holds the head as a block that promtool can read.
    let out = Command::new("promtool")
        .args(["tsdb", "list", snap.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() >= 2);
    let r = common::request(
        &a,
        "POST",
        &format!(
            "/api/v1/admin/tsdb/delete_series?match[]=snap&start={}&end={}",
            T0 / 1000,
            T0 / 1000 + 30
        ),
        None,
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let v = common::get(
        &a,
        &format!(
            "/api/v1/query?query=count_over_time(snap[10m])&time={}",
            T0 / 1000 + 120
        ),
    )
    .json();
    assert_eq!(v["data"]["result"][0]["value"][1], "2");
    let r = common::request(&a, "POST", "/-/quit", None, &[]).unwrap();
    assert_eq!(r.status, 200);
    let mut srv = srv;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(status) = srv.try_wait() {
            assert!(status.success());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ignis did not exit after /-/quit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn web_config_basic_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("web.yml");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  alice: {hash}\n")).unwrap();
    let srv = common::start_with_headers(
        &tmp.path().join("data"),
        &[&format!("--web.config.file={}", web.display())],
        &[("Authorization", "Basic YWxpY2U6czNjcmV0")],
    );
    let a = &srv.addr;
    let r = common::get(a, "/api/v1/query?query=1");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Basic"));
    let r = common::request(
        a,
        "GET",
        "/api/v1/query?query=1",
        None,
        &[("Authorization", "Basic YWxpY2U6czNjcmV0")],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = common::request(
        a,
        "GET",
        "/api/v1/query?query=1",
        None,
        &[("Authorization", "Basic YWxpY2U6d3Jvbmc=")],
    )
    .unwrap();
    assert_eq!(r.status, 401);
    // A web config whose TLS files cannot be read stops the server with an error naming them.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .arg(format!(
            "--storage.tsdb.path={}",
            tmp.path().join("data2").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg(format!("--web.config.file={}", web.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed to read cert_file"), "{err}");
}

#[test]
fn help_lists_prometheus_flags_with_defaults() {
    let out = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for (flag, default) in [
        ("--web.listen-address", "[default: 0.0.0.0:9090]"),
        ("--storage.tsdb.path", "[default: data/]"),
        ("--query.timeout", "[default: 2m]"),
        ("--query.lookback-delta", "[default: 5m]"),
        ("--query.max-samples", "[default: 50000000]"),
        ("--storage.tsdb.retention.time", "[default: 15d]"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(flag))
            .unwrap_or_else(|| panic!("{flag} missing:\n{text}"));
        let idx = text.find(line).unwrap();
        assert!(text[idx..].contains(default), "{flag} {default}");
    }
    for flag in [
        "--web.enable-remote-write-receiver",
        "--web.enable-admin-api",
        "--web.enable-lifecycle",
        "--web.config.file",
        "--enable-feature",
        "--log.level",
        "--log.format",
        "--config.file",
        "--query.max-concurrency",
        "--storage.tsdb.retention.size",
    ] {
        assert!(text.contains(flag), "{flag} missing");
    }
}
