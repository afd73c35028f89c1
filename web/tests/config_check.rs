//! `prometheus.yml` loading and `check config` / `check rules` against promtool 2.42.

mod common_h5;
use common_h5::*;

use std::path::{Path, PathBuf};

use config::{check_config, Config, PromDuration};

const FULL: &str = r#"
global:
  scrape_interval: 15s
  scrape_timeout: 5s
  evaluation_interval: 30s
  external_labels:
    cluster: eu1
    replica: "a"
rule_files:
  - "rules/*.yml"
scrape_configs:
  - job_name: node
    scrape_interval: 10s
    metrics_path: /metrics
    scheme: http
    params:
      collect[]: [cpu, meminfo]
    honor_labels: true
    honor_timestamps: false
    basic_auth:
      username: u
      password: p
    tls_config:
      insecure_skip_verify: true
    sample_limit: 1000
    label_limit: 30
    label_name_length_limit: 100
    label_value_length_limit: 200
    target_limit: 10
    body_size_limit: 10MB
    static_configs:
      - targets: ["localhost:9100"]
        labels: {env: test}
    file_sd_configs:
      - files: ["sd/*.json", "sd/*.yml"]
        refresh_interval: 1m
    http_sd_configs:
      - url: http://localhost:8000/sd
        refresh_interval: 30s
    relabel_configs:
      - source_labels: [__address__]
        regex: "(.*):9100"
        target_label: host
        replacement: "$1"
      - regex: __meta_(.*)
        action: labelmap
      - source_labels: [host]
        modulus: 4
        target_label: shard
        action: hashmod
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: go_.*
        action: drop
  - job_name: other
    authorization:
      type: Bearer
      credentials: secret
    static_configs:
      - targets: ["localhost:9090"]
alerting:
  alert_relabel_configs:
    - regex: replica
      action: labeldrop
  alertmanagers:
    - static_configs:
        - targets: ["localhost:9093"]
      timeout: 5s
      api_version: v2
      path_prefix: /
storage:
  tsdb:
    out_of_order_time_window: 30m
remote_write:
  - url: http://localhost:9201/write
    name: rw
    remote_timeout: 10s
    write_relabel_configs:
      - source_labels: [__name__]
        regex: up
        action: keep
    queue_config:
      capacity: 2500
      max_shards: 10
      batch_send_deadline: 5s
    metadata_config:
      send: true
      send_interval: 1m
remote_read:
  - url: http://localhost:9201/read
    read_recent: true
    required_matchers: {job: node}
"#;

const RULES: &str = r#"groups:
  - name: g
    interval: 1m
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: up == 0
        for: 5m
        keep_firing_for: 1m
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.instance }} down, value {{ $value | humanize }}"
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// `text` with the `dir/` prefix of paths removed.
fn relative(text: &str, dir: &Path) -> String {
    text.replace(&format!("{}/", dir.display()), "")
}

#[test]
fn full_config_loads_with_all_fields() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "prometheus.yml", FULL);
    let c = Config::load(&p).unwrap();
    assert_eq!(c.global.scrape_timeout, Some(PromDuration::from_secs(5)));
    assert_eq!(c.global.evaluation_interval(), PromDuration::from_secs(30));
    assert_eq!(
        c.global.external_labels.get("cluster").map(String::as_str),
        Some("eu1")
    );
    let node = &c.scrape_configs[0];
    assert_eq!(node.interval(), PromDuration::from_secs(10));
    assert_eq!(node.timeout(), PromDuration::from_secs(5));
    assert!(node.honor_labels && !node.honor_timestamps);
    assert_eq!(node.params["collect[]"], vec!["cpu", "meminfo"]);
    assert_eq!(node.body_size_limit_bytes(), 10 << 20);
    assert_eq!(node.relabel_configs.len(), 3);
    assert_eq!(node.relabel_configs[2].modulus, 4);
    assert_eq!(
        node.http_sd_configs[0].refresh_interval,
        PromDuration::from_secs(30)
    );
    assert_eq!(c.scrape_configs[1].interval(), PromDuration::from_secs(15));
    assert_eq!(
        c.alerting.alertmanagers[0].timeout,
        PromDuration::from_secs(5)
    );
    assert_eq!(
        c.storage.tsdb.out_of_order_time_window,
        PromDuration::from_secs(1800)
    );
    assert_eq!(c.remote_write[0].queue_config.capacity, Some(2500));
    assert!(c.remote_read[0].read_recent);
}

#[test]
fn check_config_matches_promtool_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "prometheus.yml", FULL);
    write(dir.path(), "rules/a.yml", RULES);
    let ours = check_config(std::slice::from_ref(&p));
    assert!(ours.ok, "{}", ours.stderr);
    assert!(ours.stdout.contains("  SUCCESS: 1 rule files found\n"));
    assert!(ours.stdout.contains("  SUCCESS: 2 rules found\n"));
    if let Some((out, err, ok)) = promtool(dir.path(), &["check", "config", "prometheus.yml"]) {
        assert!(ok, "promtool rejected the fixture: {err}");
        // both name files as given; ours was given absolute paths
        assert_eq!(relative(&ours.stdout, dir.path()), out);
    }
}

#[test]
fn bad_configs_fail_like_promtool() {
    // (config, text our error must contain)
    let cases: &[(&str, &str)] = &[
        ("scrape_configs:\n  - job_name: a\n    foo: 1\n", "line 3"),
        ("scrape_configs:\n  - job_name: a\n    foo: 1\n", "foo"),
        (
            "global:\n  scrape_interval: 5x\n",
            "not a valid duration string",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n",
            "scrape timeout greater than scrape interval",
        ),
        (
            "global:\n  scrape_interval: 5s\n  scrape_timeout: 10s\n",
            "global scrape timeout greater than scrape interval",
        ),
        (
            "scrape_configs:\n  - job_name: a\n  - job_name: a\n",
            "found multiple scrape configs with job name \"a\"",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['a/b']\n",
            "is not a valid hostname",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: nope\n",
            "unknown relabel action",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    file_sd_configs:\n      - files: ['x.txt']\n",
            "not valid for file discovery",
        ),
        (
            "global:\n  external_labels:\n    'a-b': x\n",
            "not a valid label name",
        ),
        (
            "alerting:\n  alertmanagers:\n    - api_version: v3\n",
            "api version",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    sample_limit: lots\n",
            "sample_limit",
        ),
        (
            "storage:\n  tsdb:\n    out_of_order_time_window: soon\n",
            "not a valid duration string",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    tls_config:\n      min_version: SSL3\n",
            "unknown TLS version: SSL3",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    tls_config:\n      insecure: true\n",
            "insecure",
        ),
        ("bogus_top: 1\n", "bogus_top"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (text, want)) in cases.iter().enumerate() {
        let name = format!("c{i}.yml");
        let p = write(dir.path(), &name, text);
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains(want), "{text}\nour error: {e}");
        let r = check_config(&[p]);
        assert!(!r.ok && r.stderr.starts_with("  FAILED: "), "{r:?}");
        if let Some((_, err, ok)) = promtool(dir.path(), &["check", "config", &name]) {
            assert!(!ok, "promtool accepted {text}: {err}");
        }
    }
}

#[test]
fn check_rules_matches_promtool() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yml", RULES);
    let bad = "groups:\n- name: g\n  rules:\n  - record: x\n    expr: up +\n  - alert: A\n    record: b\n    expr: up\n";
    write(dir.path(), "bad.yml", bad);
    let mut good = rules::check_rule_files(&[dir.path().join("good.yml")]);
    let mut badr = rules::check_rule_files(&[dir.path().join("bad.yml")]);
    good.stdout = relative(&good.stdout, dir.path());
    badr.stdout = relative(&badr.stdout, dir.path());
    assert!(good.ok);
    assert!(!badr.ok);
    assert!(
        badr.stderr
            .contains("group \"g\", rule 1, \"x\": could not parse expression"),
        "{}",
        badr.stderr
    );
    assert!(
        badr.stderr.contains("group \"g\", rule 2"),
        "{}",
        badr.stderr
    );
    assert!(
        badr.stderr
            .contains("group \"g\", rule 2, \"A\": only one of 'record' and 'alert' must be set"),
        "{}",
        badr.stderr
    );
    if let Some((out, _, ok)) = promtool(dir.path(), &["check", "rules", "good.yml"]) {
        assert!(ok);
        assert_eq!(good.stdout, out);
    }
    if let Some((out, _, ok)) = promtool(dir.path(), &["check", "rules", "bad.yml"]) {
        assert!(!ok);
        assert_eq!(badr.stdout, out);
    }
}
