//! `ignis tsdb analyze` and `ignis tsdb list` over the fixture blocks, checked against the
//! recorded `promtool tsdb list` output and, when installed, against promtool itself.

mod cli_common;

use std::process::Command;

use cli_common::*;

/// Splits a report into sections (separated by blank lines) of lines.
fn sections(report: &str) -> Vec<Vec<String>> {
    report
        .split("\n\n")
        .map(|s| s.lines().map(str::to_string).collect())
        .collect()
}

/// The counts (first field) of a section's entry lines, after its title line. Lines that do
/// not start with a count continue a label value holding a newline.
fn counts(section: &[String]) -> Vec<String> {
    section
        .iter()
        .skip(1)
        .filter_map(|l| l.split_once(' ').map(|(n, _)| n))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

#[test]
fn list_matches_recorded_promtool_output() {
    let want = std::fs::read_to_string(fixtures().join("blocks.list.txt")).unwrap();
    let got = ignis_ok(&[
        "tsdb",
        "list",
        "-r",
        fixtures().join("blocks").to_str().unwrap(),
    ]);
    assert_eq!(got, want);
    let raw = ignis_ok(&["tsdb", "list", fixtures().join("blocks").to_str().unwrap()]);
    assert!(raw.contains("01M8BBP7NGC1DJPDEQ4B9A263N  1704067200000  1704074385001  1h59m45.001s  128580       1072         268          391715\n"), "{raw}");
}

#[test]
fn analyze_reports_block_cardinality() {
    let blocks = fixtures().join("blocks");
    let report = ignis_ok(&[
        "tsdb",
        "analyze",
        blocks.to_str().unwrap(),
        "01M8BBP7NGC1DJPDEQ4B9A263N",
    ]);
    let secs = sections(&report);
    assert_eq!(
        secs[0],
        [
            "Block ID: 01M8BBP7NGC1DJPDEQ4B9A263N",
            "Duration: 1h59m45.001s",
            "Series: 268",
            "Label names: 33",
            "Postings (unique label pairs): 127",
            "Postings entries (total label pairs): 1225",
        ]
    );
    let titles: Vec<&str> = secs[1..].iter().map(|s| s[0].as_str()).collect();
    assert_eq!(
        titles,
        [
            "Label pairs most involved in churning:",
            "Label names most involved in churning:",
            "Most common label pairs:",
            "Label names with highest cumulative label value length:",
            "Highest cardinality labels:",
            "Highest cardinality metric names:",
        ]
    );
    assert_eq!(
        &secs[6][1..4],
        [
            "96 http_request_duration_seconds_bucket",
            "72 http_requests_total",
            "32 node_cpu_seconds_total"
        ]
    );
    assert_eq!(secs[3][1], "184 job=api");
    // Default block: the last one.
    let last = ignis_ok(&["tsdb", "analyze", "--limit=3", blocks.to_str().unwrap()]);
    assert!(
        last.starts_with("Block ID: 01M8BBP8G92GVPT1KDAE775BZV\n"),
        "{last}"
    );
    assert!(sections(&last)[1..].iter().all(|s| s.len() <= 4));
    let missing = ignis(&[
        "tsdb",
        "analyze",
        blocks.to_str().unwrap(),
        "01M8BBP7NGC1DJPDEQ4B9A2XXX",
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

#[test]
fn analyze_agrees_with_promtool() {
    let Some(promtool) = promtool() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&fixtures().join("blocks"), &data);
    std::fs::create_dir_all(data.join("wal")).unwrap();
    for id in block_dirs(&data) {
        for limit in ["--limit=20", "--limit=100000"] {
            let theirs = Command::new(&promtool)
                .args(["tsdb", "analyze", "--extended", limit])
                .arg(&data)
                .arg(&id)
                .output()
                .unwrap();
            assert!(theirs.status.success());
            let theirs = String::from_utf8(theirs.stdout).unwrap();
            let ours = ignis_ok(&[
                "tsdb",
                "analyze",
                "--extended",
                limit,
                data.to_str().unwrap(),
                &id,
            ]);
            let (a, b) = (sections(&ours), sections(&theirs));
            assert_eq!(a.len(), b.len());
            assert_eq!(a[0], b[0], "{id}: summary");
            for (x, y) in a.iter().zip(&b).skip(1) {
                // Ties are printed in an unspecified order by promtool: compare the counts, and
                // with no limit the whole set of lines.
                assert_eq!(x[0], y[0]);
                assert_eq!(counts(x), counts(y), "{id} {limit}: {}", x[0]);
                if limit == "--limit=100000" {
                    let (mut xs, mut ys) = (x.clone(), y.clone());
                    xs.sort();
                    ys.sort();
                    assert_eq!(xs, ys, "{id}: {}", x[0]);
                }
            }
        }
    }
}
