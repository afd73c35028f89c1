//! `ignis check config|rules` against files, compared with promtool 2.42 where it is installed.

use std::path::Path;
use std::process::{Command, Output};

fn ignis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ignis"))
        .args(args)
        .output()
        .expect("run ignis")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn check_config_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "r.yml",
        "groups:\n- name: g\n  rules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n  - alert: Down\n    expr: up == 0\n",
    );
    let cfg = write(
        dir.path(),
        "p.yml",
        "rule_files: ['r.yml']\nscrape_configs:\n- job_name: a\n  static_configs:\n  - targets: ['localhost:9090']\n",
    );
    let bad_rules = write(
        dir.path(),
        "bad.yml",
        "groups:\n- name: g\n  rules:\n  - record: x\n    expr: sum(\n",
    );
    let bad_cfg = write(
        dir.path(),
        "badcfg.yml",
        "scrape_configs:\n- job_name: a\n  nope: 1\n",
    );

    let o = ignis(&["check", "rules", &rules]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("SUCCESS: 2 rules found"));
    let o = ignis(&["check", "config", &cfg]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("Checking {rules}")));

    let o = ignis(&["check", "rules", &bad_rules]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("FAILED"));
    let o = ignis(&["check", "config", &bad_cfg]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"));

    // Same exit status and standard output as promtool.
    if Path::new("/usr/bin/promtool").exists() {
        for args in [
            ["check", "rules", rules.as_str()],
            ["check", "config", cfg.as_str()],
            ["check", "rules", bad_rules.as_str()],
            ["check", "config", bad_cfg.as_str()],
        ] {
            let p = Command::new("/usr/bin/promtool")
                .args(args)
                .output()
                .unwrap();
            let i = ignis(&args);
            assert_eq!(i.status.code(), p.status.code(), "{args:?}");
            assert_eq!(
                String::from_utf8_lossy(&i.stdout),
                String::from_utf8_lossy(&p.stdout),
                "{args:?}"
            );
        }
    }
}
