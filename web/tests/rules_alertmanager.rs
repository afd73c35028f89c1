//! Acceptance of rules and alerting with real programs on loopback: ignis evaluates a recording
//! rule and an alert over data received by remote write and sends the alert to the Debian
//! `prometheus-alertmanager`; the alert fires, shows in `/api/v1/alerts` and `/api/v1/rules`
//! and in Alertmanager with its labels and annotations; a restart on the same data dir
//! restores its `for` state; when the condition clears Alertmanager sees it resolved. A second
//! test compares `/api/v1/rules` with Prometheus 2.42's on the same rule file.

#[path = "server_common.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use serde_json::Value;

use web::remote::proto::{Label, Sample, TimeSeries, WriteRequest};

const RULES: &str = r#"groups:
  - name: test
    interval: 1s
    rules:
      - record: cond:doubled
        expr: cond * 2
      - alert: CondHigh
        expr: cond:doubled > 1
        for: 8s
        labels:
          severity: page
        annotations:
          summary: "cond is {{ $value }}"
"#;

/// Alertmanager, killed on drop.
struct Am {
    child: Child,
    addr: String,
}

impl Drop for Am {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn start_alertmanager(dir: &Path) -> Am {
    let cfg = dir.join("am.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("am-data")).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("am.log")).unwrap();
    let child = Command::new("/usr/bin/prometheus-alertmanager")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus-alertmanager");
    let am = Am { child, addr };
    wait_for(Duration::from_secs(30), "alertmanager ready", || {
        common::request(&am.addr, "GET", "/-/ready", None, &[])
            .ok()
            .filter(|r| r.status == 200)
    });
    am
}

fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn write_cond(addr: &str, v: f64) {
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: "cond".into(),
            }],
            samples: vec![Sample {
                value: v,
                timestamp: now_ms(),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let r = common::request(
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
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
}

fn alerts(addr: &str) -> Vec<Value> {
    let v = common::get(addr, "/api/v1/alerts").json();
    v["data"]["alerts"].as_array().cloned().unwrap_or_default()
}

fn firing(addr: &str) -> Option<Value> {
    alerts(addr).into_iter().find(|a| a["state"] == "firing")
}

fn start_ignis(data: &Path, rules: &Path, am: &str) -> common::Server {
    let rules = rules.display().to_string();
    common::start_with_config(
        data,
        &[
            "--web.enable-remote-write-receiver",
            "--web.enable-lifecycle",
            "--rules.alert.for-grace-period=1s",
            "--rules.alert.resend-delay=1s",
        ],
        |_| {
            format!(
                "global:\n  evaluation_interval: 1s\n  external_labels:\n    cluster: test\nscrape_configs: []\nrule_files: ['{rules}']\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
            )
        },
    )
}

fn am_alerts(am: &Am) -> Vec<Value> {
    let r = common::get(&am.addr, "/api/v2/alerts");
    r.json().as_array().cloned().unwrap_or_default()
}

fn stop(mut srv: common::Server) {
    let r = common::request(&srv.addr, "POST", "/-/quit", None, &[]).unwrap();
    assert_eq!(r.status, 200);
    wait_for(Duration::from_secs(30), "ignis to exit", || srv.try_wait());
}

#[test]
fn alert_fires_reaches_alertmanager_survives_restart_and_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let am = start_alertmanager(tmp.path());
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let data = tmp.path().join("data");

    let srv = start_ignis(&data, &rules, &am.addr);
    write_cond(&srv.addr, 1.0);
    let t_write = Instant::now();
    let a = wait_for(Duration::from_secs(60), "the alert to fire", || {
        firing(&srv.addr)
    });
    assert!(
        t_write.elapsed() >= Duration::from_secs(7),
        "fired only after `for: 8s`"
    );
    let active_at = a["activeAt"].as_str().unwrap().to_string();
    assert_eq!(a["labels"]["alertname"], "CondHigh");
    assert_eq!(a["labels"]["severity"], "page");
    assert_eq!(a["annotations"]["summary"], "cond is 2");
    assert_eq!(a["value"], "2e+00");

    // /api/v1/rules shows both rules, the alert firing
    let rules_v = common::get(&srv.addr, "/api/v1/rules").json();
    let g = &rules_v["data"]["groups"][0];
    assert_eq!(g["name"], "test");
    assert_eq!(g["interval"], 1);
    assert_eq!(g["rules"][0]["name"], "cond:doubled");
    assert_eq!(g["rules"][0]["health"], "ok");
    assert_eq!(g["rules"][0]["type"], "recording");
    assert_eq!(g["rules"][1]["state"], "firing");
    assert_eq!(g["rules"][1]["duration"], 8);
    assert_eq!(g["rules"][1]["alerts"][0]["activeAt"], active_at.as_str());
    let only_rec = common::get(&srv.addr, "/api/v1/rules?type=record").json();
    assert_eq!(
        only_rec["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Alertmanager has it, with the external label and the expanded annotation
    let got = wait_for(
        Duration::from_secs(30),
        "alertmanager to show the alert",
        || {
            am_alerts(&am).into_iter().find(|x| {
                x["labels"]["alertname"] == "CondHigh" && x["status"]["state"] == "active"
            })
        },
    );
    assert_eq!(got["labels"]["cluster"], "test");
    assert_eq!(got["labels"]["severity"], "page");
    assert_eq!(got["annotations"]["summary"], "cond is 2");
    assert_eq!(got["status"]["state"], "active");
    let ams = common::get(&srv.addr, "/api/v1/alertmanagers").json();
    assert_eq!(
        ams["data"]["activeAlertmanagers"][0]["url"],
        format!("http://{}/api/v2/alerts", am.addr)
    );
    let metrics = common::get(&srv.addr, "/metrics").text();
    assert!(metrics.contains("prometheus_notifications_alertmanagers_discovered 1"));
    assert!(metrics.contains(&format!(
        "prometheus_notifications_errors_total{{alertmanager=\"http://{}/api/v2/alerts\"}} 0",
        am.addr
    )));

    // restart on the same data: the alert fires again with its old activeAt, without
    // waiting `for` again
    stop(srv);
    let srv = start_ignis(&data, &rules, &am.addr);
    let t_restart = Instant::now();
    let a2 = wait_for(
        Duration::from_secs(60),
        "the alert to fire after restart",
        || firing(&srv.addr),
    );
    // ALERTS_FOR_STATE keeps activeAt in whole seconds, so the restored one is the original
    // truncated to the second, as in Prometheus.
    assert_eq!(
        a2["activeAt"].as_str().unwrap()[..19],
        active_at[..19],
        "for state restored"
    );
    assert!(
        t_restart.elapsed() < Duration::from_secs(7),
        "fired again without waiting `for: 8s` ({:?})",
        t_restart.elapsed()
    );

    // the condition clears: resolved in ignis and in Alertmanager
    write_cond(&srv.addr, 0.0);
    wait_for(Duration::from_secs(30), "the alert to resolve", || {
        alerts(&srv.addr).is_empty().then_some(())
    });
    wait_for(
        Duration::from_secs(30),
        "alertmanager to see it resolved",
        || {
            let now = chrono_like_now();
            let open = am_alerts(&am).into_iter().any(|x| {
                x["labels"]["alertname"] == "CondHigh"
                    && x["endsAt"].as_str().is_some_and(|e| e > now.as_str())
            });
            (!open).then_some(())
        },
    );

    // a reload with the alerting section removed drops the Alertmanager; rules stay
    std::fs::write(
        data.with_extension("yml"),
        format!(
            "global:\n  evaluation_interval: 1s\nscrape_configs: []\nrule_files: ['{}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let r = common::request(&srv.addr, "POST", "/-/reload", None, &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let ams = common::get(&srv.addr, "/api/v1/alertmanagers").json();
    assert_eq!(ams["data"]["activeAlertmanagers"], serde_json::json!([]));
    let rules_v = common::get(&srv.addr, "/api/v1/rules").json();
    assert_eq!(rules_v["data"]["groups"][0]["rules"][1]["name"], "CondHigh");
    stop(srv);
}

/// Now as RFC 3339 (UTC, seconds), comparable as a string with Alertmanager's times.
fn chrono_like_now() -> String {
    let s = now_ms() / 1000;
    let days = s.div_euclid(86400);
    let sod = s.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn rules_api_matches_prometheus() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g1\n    interval: 1s\n    rules:\n      - record: job:up:sum\n        expr: sum by(job)(up)\n        labels: {src: rule}\n      - record: plain\n        expr: vector(1)\n      - alert: AlwaysOn\n        expr: vector(1) > 0\n        for: 2s\n        keep_firing_for: 3s\n        labels: {severity: page}\n        annotations: {summary: 'value {{ $value }}'}\n      - alert: Never\n        expr: vector(0) > 1\n  - name: g2\n    limit: 5\n    rules:\n      - alert: Bad\n        expr: foo + on() group_left bar\n",
    )
    .unwrap();
    let cfg = format!(
        "global:\n  evaluation_interval: 2s\nscrape_configs: []\nrule_files: ['{}']\n",
        rules.display()
    );
    let prom = common::start_prometheus(&tmp.path().join("prom"), &cfg);
    let ig = common::start_with_config(&tmp.path().join("ignis"), &[], |_| cfg.clone());
    let settled = |addr: &str| -> Value {
        wait_for(
            Duration::from_secs(30),
            "rules evaluated and firing",
            || {
                let v = common::get(addr, "/api/v1/rules").json();
                let gs = v["data"]["groups"].as_array()?.clone();
                let all_ran = gs.iter().all(|g| {
                    g["rules"]
                        .as_array()
                        .is_some_and(|r| r.iter().all(|r| r["health"] == "ok"))
                });
                (all_ran && gs[0]["rules"][2]["state"] == "firing").then_some(v)
            },
        )
    };
    let (p, i) = (settled(&prom.addr), settled(&ig.addr));
    let (pg, ig_) = (
        p["data"]["groups"].as_array().unwrap(),
        i["data"]["groups"].as_array().unwrap(),
    );
    assert_eq!(pg.len(), ig_.len());
    for (a, b) in pg.iter().zip(ig_) {
        assert_eq!(keys(a), keys(b));
        for k in ["name", "interval", "limit"] {
            assert_eq!(a[k], b[k], "group {k}");
        }
        assert!(b["file"].as_str().unwrap().ends_with("rules.yml"));
        let (ar, br) = (
            a["rules"].as_array().unwrap(),
            b["rules"].as_array().unwrap(),
        );
        assert_eq!(ar.len(), br.len());
        for (x, y) in ar.iter().zip(br) {
            assert_eq!(keys(x), keys(y), "rule {}", x["name"]);
            for k in [
                "name",
                "query",
                "labels",
                "annotations",
                "duration",
                "keepFiringFor",
                "health",
                "type",
                "state",
            ] {
                assert_eq!(x.get(k), y.get(k), "rule {} key {k}", x["name"]);
            }
            if let (Some(xa), Some(ya)) = (x["alerts"].as_array(), y["alerts"].as_array()) {
                assert_eq!(xa.len(), ya.len());
                for (m, n) in xa.iter().zip(ya) {
                    assert_eq!(keys(m), keys(n));
                    for k in ["labels", "annotations", "state", "value"] {
                        assert_eq!(m[k], n[k], "alert {k}");
                    }
                }
            }
        }
    }
    for (filter, n) in [("type=alert", 3usize), ("type=record", 2)] {
        let count = |addr: &str| -> usize {
            common::get(addr, &format!("/api/v1/rules?{filter}")).json()["data"]["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["rules"].as_array().unwrap().len())
                .sum()
        };
        assert_eq!(count(&prom.addr), n);
        assert_eq!(count(&ig.addr), n);
    }
    let bad = common::get(&ig.addr, "/api/v1/rules?type=xx");
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json()["error"],
        common::get(&prom.addr, "/api/v1/rules?type=xx").json()["error"]
    );
}
