//! Runs every `.test` file of `$IGNIS_PROMQL_TESTS` (default: the shared conformance folder)
//! through the PromQL engine and fails when any eval fails.
//!
//! A plain program (`harness = false`), so its per-file lines and the closing
//! `promql conformance: N passed, M failed, K skipped` line show in every test run.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use query::promqltest::{run_file, test_engine, Outcome};

fn tests_dir() -> PathBuf {
    if let Ok(d) = std::env::var("IGNIS_PROMQL_TESTS") {
        return PathBuf::from(d);
    }
    common::shared().join("conformance/promql")
}

fn main() {
    let dir = tests_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read PromQL test directory {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let verbose = std::env::var("IGNIS_PROMQL_VERBOSE").is_ok_and(|v| !v.is_empty() && v != "0");
    let only = std::env::var("IGNIS_PROMQL_ONLY").ok();
    let verbose_skips = std::env::var("IGNIS_PROMQL_VERBOSE").is_ok_and(|v| v == "2");
    let engine = test_engine();
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut fatal = 0usize;
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(o) = &only {
            if !name.contains(o.as_str()) {
                continue;
            }
        }
        let started = std::time::Instant::now();
        let r = run_file(&engine, f);
        let (p, fl, s) = r.counts();
        passed += p;
        failed += fl;
        skipped += s;
        println!(
            "{name}: {p} passed, {fl} failed, {s} skipped ({:.2?})",
            started.elapsed()
        );
        if let Some(e) = &r.fatal {
            fatal += 1;
            println!("  FATAL: {e}");
        }
        for e in &r.evals {
            match &e.outcome {
                Outcome::Skipped(reason) => {
                    *reasons.entry(reason.clone()).or_default() += 1;
                    if verbose_skips {
                        println!("  SKIP {name}:{} {} ({reason})", e.line, e.expr);
                    }
                }
                Outcome::Failed(m) if verbose => {
                    println!("  FAIL {name}:{} {}\n      {m}", e.line, e.expr)
                }
                _ => {}
            }
        }
    }
    println!("skip reasons:");
    for (r, n) in &reasons {
        println!("  {n:5}  {r}");
    }
    println!("promql conformance: {passed} passed, {failed} failed, {skipped} skipped");
    for r in reasons.keys() {
        assert!(
            r.starts_with("native histograms: ") || r.starts_with("parser: "),
            "skip reason not allowed: {r}"
        );
    }
    assert!(fatal == 0, "{fatal} files could not be run");
    assert!(failed == 0, "{failed} evals failed");
}
