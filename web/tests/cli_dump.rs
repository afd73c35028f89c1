//! `ignis tsdb dump` against the Prometheus-written fixture blocks.

mod cli_common;

#[path = "../src/gofmt.rs"]
#[allow(dead_code)]
mod gofmt;

use cli_common::*;
use tsdb::labels::go_quote;

/// Unescapes an OpenMetrics label value (`\\`, `\"`, `\n`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Formats one OpenMetrics sample line of the fixture as `promtool tsdb dump` prints it.
/// The fixture is regular: `name{k="v",…} value seconds`.
fn dump_line(line: &str) -> String {
    let (series, rest) = match line.find('{') {
        Some(_) => {
            // The label set ends at the last `"}` before the value.
            let end = line.rfind("} ").expect("label set end");
            (&line[..end + 1], &line[end + 2..])
        }
        None => {
            let sp = line.find(' ').unwrap();
            (&line[..sp], &line[sp + 1..])
        }
    };
    let (value, ts) = rest.split_once(' ').expect("value and timestamp");
    let mut labels: Vec<(String, String)> = Vec::new();
    let name_end = series.find('{').unwrap_or(series.len());
    labels.push(("__name__".into(), series[..name_end].into()));
    if name_end < series.len() {
        let body = &series[name_end + 1..series.len() - 1];
        let b = body.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let eq = body[i..].find('=').unwrap() + i;
            let name = body[i..eq].to_string();
            let vs = eq + 2;
            let mut j = vs;
            while b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            labels.push((name, unescape(&body[vs..j])));
            i = j + 2; // skip `",`
        }
    }
    labels.sort();
    let ls: Vec<String> = labels
        .iter()
        .map(|(n, v)| format!("{n}={}", go_quote(v)))
        .collect();
    let v: f64 = value.parse().expect("value");
    let t = (ts.parse::<f64>().expect("timestamp") * 1000.0) as i64;
    format!("{{{}}} {} {t}", ls.join(", "), gofmt::format_g(v))
}

#[test]
fn dump_of_fixture_blocks_equals_openmetrics_samples() {
    let om = gunzip(&fixtures().join("openmetrics/metrics.om.gz"));
    let mut want: Vec<String> = om
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(dump_line)
        .collect();
    want.sort();
    assert_eq!(want.len(), 515_480);

    let blocks = fixtures().join("blocks");
    let out = ignis_ok(&["tsdb", "dump", blocks.to_str().unwrap()]);
    let mut got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 515_480);
    // Series come out sorted by labels and samples by time, so the text is not sorted as a
    // whole; compare as sets.
    got.sort_unstable();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

#[test]
fn dump_matches_promtool_byte_for_byte() {
    let Some(promtool) = promtool() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&fixtures().join("blocks"), &data);
    std::fs::create_dir_all(data.join("wal")).unwrap();
    let args = [
        "--match",
        r#"{__name__=~"queue_depth|odd_labels_total|batch_job.*"}"#,
        "--min-time",
        "1704070000000",
        "--max-time",
        "1704090000000",
    ];
    let theirs = std::process::Command::new(promtool)
        .args(["tsdb", "dump"])
        .args(args)
        .arg(&data)
        .output()
        .unwrap();
    assert!(theirs.status.success());
    let mut ours_args = vec!["tsdb", "dump"];
    ours_args.extend(args);
    ours_args.push(data.to_str().unwrap());
    let ours = ignis_ok(&ours_args);
    assert!(ours.lines().count() > 10_000);
    assert_eq!(ours, String::from_utf8(theirs.stdout).unwrap());
}

#[test]
fn dump_filters_by_selector_and_time() {
    let blocks = fixtures().join("blocks");
    let out = ignis_ok(&[
        "tsdb",
        "dump",
        "--match",
        r#"queue_depth{queue="weird"}"#,
        "--min-time=1704067275000",
        "--max-time=1704067305000",
        blocks.to_str().unwrap(),
    ]);
    assert_eq!(
        out,
        "{__name__=\"queue_depth\", queue=\"weird\"} NaN 1704067275000\n\
         {__name__=\"queue_depth\", queue=\"weird\"} -0.5706 1704067290000\n\
         {__name__=\"queue_depth\", queue=\"weird\"} +Inf 1704067305000\n"
    );
    let bad = ignis(&[
        "tsdb",
        "dump",
        "--match",
        "rate(x[5m])",
        blocks.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid series selector"));
}

#[test]
fn dump_of_wal_datadir_equals_promtool_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&fixtures().join("wal-datadir/data"), &data);
    let want = gunzip(&fixtures().join("wal-datadir/dump.txt.gz"));
    let got = ignis_ok(&["tsdb", "dump", data.to_str().unwrap()]);
    assert_eq!(got.lines().count(), 57_130);
    assert!(
        got == want,
        "dump of the WAL data dir differs from promtool's"
    );
}
