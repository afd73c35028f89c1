//! Interoperability with a real Prometheus 2.42 (`/usr/bin/prometheus`):
//! - Prometheus scrapes ignis and remote-writes everything to ignis: ignis ends up with every
//!   sample Prometheus stored;
//! - Prometheus reads ignis through `remote_read` and answers a query with ignis's data;
//! - Prometheus federates from ignis's `/federate` and gets the latest samples.

#[path = "server_common.rs"]
mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use serde_json::Value;

use web::remote::proto::{Label, Sample, TimeSeries, WriteRequest};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Writes `name{src="test"}` with `n` samples every 10 s ending now (whole seconds).
fn write_metric(addr: &str, name: &str, n: i64) -> i64 {
    let end = now_ms() / 1000 * 1000;
    let ts = TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: name.into(),
            },
            Label {
                name: "src".into(),
                value: "test".into(),
            },
        ],
        samples: (0..n)
            .map(|i| Sample {
                timestamp: end - (n - 1 - i) * 10_000,
                value: (i * 3) as f64,
            })
            .collect(),
        ..Default::default()
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(
            &WriteRequest {
                timeseries: vec![ts],
                ..Default::default()
            }
            .encode_to_vec(),
        )
        .unwrap();
    let r = common::request(
        addr,
        "POST",
        "/api/v1/write",
        Some(&body),
        &[("Content-Type", "application/x-protobuf")],
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    end
}

fn matrix(addr: &str, query: &str, t: f64) -> Value {
    let v = common::get(
        addr,
        &format!("/api/v1/query?query={}&time={t}", enc(query)),
    )
    .json();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"].clone()
}

#[test]
fn prometheus_remote_writes_scrapes_and_remote_reads_from_ignis() {
    let tmp = tempfile::tempdir().unwrap();
    let ignis = common::start(
        &tmp.path().join("ignis"),
        &["--web.enable-remote-write-receiver"],
    );
    let a = &ignis.addr;
    let written_end = write_metric(a, "rr_only_in_ignis", 30);
    let cfg = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: ignis\n  static_configs:\n  - targets: ['{a}']\n\
         remote_write:\n- url: http://{a}/api/v1/write\n  queue_config:\n    batch_send_deadline: 500ms\n    max_shards: 1\n\
         remote_read:\n- url: http://{a}/api/v1/read\n  read_recent: true\n"
    );
    let prom = common::start_prometheus(&tmp.path().join("prom"), &cfg);
    let p = &prom.addr;

    // Remote read: Prometheus answers with ignis's data.
    let t = written_end as f64 / 1000.0;
    let via_prom = matrix(p, "rr_only_in_ignis[10m]", t);
    let direct = matrix(a, "rr_only_in_ignis[10m]", t);
    assert_eq!(direct.as_array().unwrap().len(), 1);
    assert_eq!(direct[0]["values"].as_array().unwrap().len(), 30);
    assert_eq!(via_prom, direct);

    // Remote write: wait for a few scrapes (Prometheus starts scraping a few seconds after
    // start), then every sample Prometheus holds up to T is in ignis too.
    let q =
        "{job=\"ignis\", __name__=~\"up|scrape_samples_scraped|prometheus_tsdb_head_series\"}[1h]";
    let deadline = Instant::now() + Duration::from_secs(60);
    let (t, want) = loop {
        let t = (now_ms() - 1000) as f64 / 1000.0;
        let want = matrix(p, q, t);
        if want.as_array().unwrap().len() == 3 && want[0]["values"].as_array().unwrap().len() >= 3 {
            break (t, want);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape ignis: {want}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = matrix(a, q, t);
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ignis has\n{got}\nPrometheus has\n{want}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn prometheus_federates_from_ignis() {
    let tmp = tempfile::tempdir().unwrap();
    let ignis = common::start(
        &tmp.path().join("ignis"),
        &["--web.enable-remote-write-receiver"],
    );
    let a = &ignis.addr;
    write_metric(a, "fed_metric", 5);
    let cfg = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: federate\n  honor_labels: true\n  metrics_path: /federate\n  params:\n    'match[]': ['{{__name__=~\"fed_.*\"}}']\n  static_configs:\n  - targets: ['{a}']\n"
    );
    let prom = common::start_prometheus(&tmp.path().join("prom"), &cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = common::get(&prom.addr, "/api/v1/query?query=fed_metric").json();
        let r = &v["data"]["result"];
        if r.as_array().is_some_and(|x| x.len() == 1) {
            assert_eq!(r[0]["metric"]["src"], "test");
            assert_eq!(r[0]["metric"]["__name__"], "fed_metric");
            assert_eq!(r[0]["value"][1], "12", "latest sample (4 * 3)");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not federate: {v}\n{}",
            std::fs::read_to_string(&prom.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Prometheus's view of the target: up.
    let v = common::get(&prom.addr, "/api/v1/query?query=up").json();
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
}
