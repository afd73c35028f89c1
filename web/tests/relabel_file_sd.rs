//! A real configuration with `file_sd_configs` and `relabel_configs`: the SD file is edited
//! while discovery runs and the relabeled target set follows.

mod common_h5;
use common_h5::*;

use std::time::Duration;

use config::Config;
use discovery::file::FileDiscoverer;
use discovery::{targets_for, Discoverer};
use tokio::sync::mpsc;

const CONFIG: &str = r#"
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: node
    file_sd_configs:
      - files: ["targets/*.json", "targets/*.yml"]
        refresh_interval: 5m
    relabel_configs:
      - source_labels: [env]
        regex: staging
        action: drop
      - source_labels: [__meta_filepath]
        regex: ".*/([^/]+)\\.(json|yml)"
        target_label: sd_file
      - source_labels: [__address__]
        regex: "([^:]+):.*"
        target_label: host
      - regex: "env"
        action: labeldrop
"#;

fn kept(sc: &config::ScrapeConfig, groups: &[discovery::TargetGroup]) -> Vec<String> {
    let mut v: Vec<String> = targets_for(sc, groups, false)
        .unwrap()
        .into_iter()
        .filter_map(|r| r.unwrap().labels)
        .map(|l| relabel::target_series_labels(&l).to_string())
        .collect();
    v.sort();
    v
}

async fn next(rx: &mut mpsc::Receiver<Vec<discovery::TargetGroup>>) -> Vec<discovery::TargetGroup> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn file_sd_edit_while_running() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), CONFIG).unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    std::fs::write(
        dir.path().join("targets/a.json"),
        r#"[{"targets": ["n1:9100", "n2:9100"], "labels": {"env": "prod"}},
            {"targets": ["s1:9100"], "labels": {"env": "staging"}}]"#,
    )
    .unwrap();
    let cfg = Config::load(&dir.path().join("prometheus.yml")).unwrap();
    let sc = &cfg.scrape_configs[0];
    let f = &sc.file_sd_configs[0];
    let d = FileDiscoverer::new(f.files.clone(), dir.path(), f.refresh_interval.as_std())
        .with_poll_interval(Duration::from_millis(20));
    let (tx, mut rx) = mpsc::channel(4);
    let task = tokio::spawn(Box::new(d).run(tx));

    let g = next(&mut rx).await;
    assert_eq!(
        kept(sc, &g),
        vec![
            r#"{host="n1", instance="n1:9100", job="node", sd_file="a"}"#,
            r#"{host="n2", instance="n2:9100", job="node", sd_file="a"}"#,
        ]
    );

    // edit: n2 moves to staging (dropped), a YAML file adds n3
    std::fs::write(
        dir.path().join("targets/a.json"),
        r#"[{"targets": ["n1:9100"], "labels": {"env": "prod"}},
            {"targets": ["n2:9100", "s1:9100"], "labels": {"env": "staging"}}]"#,
    )
    .unwrap();
    let mut g = next(&mut rx).await;
    std::fs::write(dir.path().join("targets/b.yml"), "- targets: ['n3:9100']\n").unwrap();
    while g.len() < 3 {
        g = next(&mut rx).await;
    }
    assert_eq!(
        kept(sc, &g),
        vec![
            r#"{host="n1", instance="n1:9100", job="node", sd_file="a"}"#,
            r#"{host="n3", instance="n3:9100", job="node", sd_file="b"}"#,
        ]
    );
    drop(rx);
    task.await.unwrap();
}
