//! End to end: the real binary scrapes itself and a dead target from its config file, serves
//! the results through `/api/v1/query` and `/api/v1/targets`, and reloads its config.

mod server_common;

use std::time::{Duration, Instant};

use server_common::*;

/// A port nobody listens on.
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    drop(l);
    a
}

fn config(self_addr: &str, dead: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
         - job_name: self\n  static_configs:\n  - targets: ['{self_addr}']\n\
         - job_name: dead\n  static_configs:\n  - targets: ['{dead}']\n"
    )
}

fn query_value(addr: &str, q: &str) -> Option<f64> {
    let r = get(addr, &format!("/api/v1/query?query={q}")).json();
    let v = r["data"]["result"].as_array()?.first()?["value"][1]
        .as_str()?
        .to_string();
    v.parse().ok()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn scrapes_itself_reports_targets_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dead = dead_addr();
    let mut srv = start_with_config(&data, &["--web.enable-lifecycle"], |a| config(a, &dead));
    let addr = srv.addr.clone();

    wait_until("up{job=\"self\"} == 1", || {
        query_value(&addr, "up%7Bjob%3D%22self%22%7D") == Some(1.0)
    });
    wait_until("up{job=\"dead\"} == 0", || {
        query_value(&addr, "up%7Bjob%3D%22dead%22%7D") == Some(0.0)
    });
    // Series from the scraped /metrics are queryable with the target's labels.
    wait_until("prometheus_http_requests_total scraped", || {
        query_value(
            &addr,
            "count(prometheus_http_requests_total%7Bjob%3D%22self%22%7D)",
        )
        .is_some_and(|v| v >= 1.0)
    });

    let t = get(&addr, "/api/v1/targets").json();
    assert_eq!(t["status"], "success");
    let active = t["data"]["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 2, "{t}");
    let by_job = |job: &str| {
        active
            .iter()
            .find(|x| x["scrapePool"] == job)
            .unwrap_or_else(|| panic!("no {job} target in {t}"))
            .clone()
    };
    let me = by_job("self");
    assert_eq!(me["health"], "up");
    assert_eq!(me["lastError"], "");
    assert_eq!(me["labels"]["instance"], addr.as_str());
    assert_eq!(me["labels"]["job"], "self");
    assert_eq!(me["scrapeUrl"], format!("http://{addr}/metrics"));
    assert_eq!(me["scrapeInterval"], "1s");
    assert_eq!(me["discoveredLabels"]["__address__"], addr.as_str());
    let d = by_job("dead");
    assert_eq!(d["health"], "down");
    assert!(!d["lastError"].as_str().unwrap().is_empty(), "{d}");

    let dropped = get(&addr, "/api/v1/targets?state=dropped").json();
    assert_eq!(
        dropped["data"]["activeTargets"].as_array().unwrap().len(),
        0
    );
    let bad = get(&addr, "/api/v1/targets?state=nope");
    assert_eq!(bad.status, 400);

    let pools = get(&addr, "/api/v1/scrape_pools").json();
    assert_eq!(
        pools["data"]["scrapePools"],
        serde_json::json!(["dead", "self"])
    );

    let tm = get(
        &addr,
        "/api/v1/targets/metadata?metric=prometheus_http_requests_total",
    )
    .json();
    let tm = tm["data"].as_array().unwrap();
    assert_eq!(tm.len(), 1, "{tm:?}");
    assert_eq!(tm[0]["type"], "counter");
    assert_eq!(tm[0]["target"]["job"], "self");
    let md = get(
        &addr,
        "/api/v1/metadata?metric=prometheus_http_requests_total",
    )
    .json();
    assert_eq!(
        md["data"]["prometheus_http_requests_total"][0]["type"],
        "counter"
    );

    // A bad file keeps the running config and reports the failure.
    let cfg_path = data.with_extension("yml");
    let good = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, "scrape_configs:\n- job_name: x\n  bogus: 1\n").unwrap();
    let r = post_form(&addr, "/-/reload", "");
    assert_eq!(r.status, 500, "{}", r.text());
    let m = get(&addr, "/metrics").text();
    assert!(
        m.contains("prometheus_config_last_reload_successful 0"),
        "{m}"
    );
    let c = get(&addr, "/api/v1/status/config").json();
    assert_eq!(c["data"]["yaml"], good.as_str());

    // A good file replaces the jobs.
    std::fs::write(
        &cfg_path,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n\
             - job_name: again\n  static_configs:\n  - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let r = post_form(&addr, "/-/reload", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let pools = get(&addr, "/api/v1/scrape_pools").json();
    assert_eq!(pools["data"]["scrapePools"], serde_json::json!(["again"]));
    wait_until("the new job's target", || {
        let t = get(&addr, "/api/v1/targets").json();
        let a = t["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        a.len() == 1 && a[0]["scrapePool"] == "again"
    });
    assert!(get(&addr, "/metrics")
        .text()
        .contains("prometheus_config_last_reload_successful 1"));

    let r = post_form(&addr, "/-/quit", "");
    assert_eq!(r.status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = srv.try_wait() {
            assert!(
                st.success(),
                "{}",
                std::fs::read_to_string(&srv.log).unwrap()
            );
            break;
        }
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn evaluates_recording_and_alerting_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n- name: g\n  interval: 1s\n  rules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n  - alert: TargetDown\n    expr: up == 0\n    labels:\n      severity: page\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let dead = dead_addr();
    let _srv = start_with_config(&data, &[], |a| {
        format!("{}rule_files: ['rules.yml']\n", config(a, &dead))
    });
    let addr = _srv.addr.clone();
    wait_until("job:up:sum{job=\"self\"} == 1", || {
        query_value(&addr, "job:up:sum%7Bjob%3D%22self%22%7D") == Some(1.0)
    });
    wait_until("ALERTS for the dead target", || {
        query_value(
            &addr,
            "ALERTS%7Balertname%3D%22TargetDown%22%2Cjob%3D%22dead%22%2Cseverity%3D%22page%22%7D",
        ) == Some(1.0)
    });
    let a = get(&addr, "/api/v1/alerts").json();
    let alerts = a["data"]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{a}");
    assert_eq!(alerts[0]["state"], "firing");
    assert_eq!(alerts[0]["labels"]["alertname"], "TargetDown");
    assert_eq!(alerts[0]["value"], "0e+00");
}
