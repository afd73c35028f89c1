//! Runs every `.test` file of `$IGNIS_PROMQL_TESTS` (default: the shared conformance folder)
//! through the PromQL engine and fails when any eval fails; then runs them all again with the
//! series kept in the database head instead of plain sample vectors (the head's selections
//! take shortcuts of their own, e.g. only the newest sample for an instant selector).
//!
//! A plain program (`harness = false`), so its per-file lines and the closing
//! `promql conformance: N passed, M failed, K skipped` line show in every test run.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use query::promqltest::{run_file_on, test_engine, Backend, Outcome};

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
        let r = run_file_on(&engine, f, Backend::Memory);
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
    over_the_head(&engine, &files, only.as_deref(), verbose);
}

/// The same files with the series in the head: prints one line per file with failures and a
/// closing count, and fails when any eval fails.
fn over_the_head(engine: &query::Engine, files: &[PathBuf], only: Option<&str>, verbose: bool) {
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let r = run_file_on(engine, f, Backend::Head);
        let (p, fl, s) = r.counts();
        passed += p;
        failed += fl;
        skipped += s;
        if fl > 0 || r.fatal.is_some() {
            println!("over the head: {name}: {p} passed, {fl} failed, {s} skipped");
        }
        assert!(r.fatal.is_none(), "{name} over the head: {:?}", r.fatal);
        for e in &r.evals {
            if let Outcome::Failed(m) = &e.outcome {
                if verbose {
                    println!("  FAIL {name}:{} {}\n      {m}", e.line, e.expr);
                }
            }
        }
    }
    println!(
        "promql conformance over the head: {passed} passed, {failed} failed, {skipped} skipped"
    );
    assert!(failed == 0, "{failed} evals failed over the head");
}
