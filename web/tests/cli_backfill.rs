//! `ignis tsdb create-blocks-from openmetrics` on the fixture, checked with `ignis tsdb list`
//! and with promtool (when installed), and its refusal of malformed input.

mod cli_common;

use std::path::Path;
use std::process::Command;

use cli_common::*;

fn write_fixture_om(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("metrics.om");
    std::fs::write(&p, gunzip(&fixtures().join("openmetrics/metrics.om.gz"))).unwrap();
    p
}

/// Drops the first column (the block ULID) of a `tsdb list` table.
fn without_ulids(table: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.get(26..).unwrap_or("").to_string())
        .collect()
}

#[test]
fn backfill_fixture_like_promtool() {
    let tmp = tempfile::tempdir().unwrap();
    let om = write_fixture_om(tmp.path());
    let out = tmp.path().join("out");
    let printed = ignis_ok(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        om.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let blocks = block_dirs(&out);
    assert_eq!(blocks.len(), 4, "{printed}");
    // What was printed while creating is the list of the created blocks.
    assert_eq!(printed, ignis_ok(&["tsdb", "list", out.to_str().unwrap()]));

    // Same time ranges, counts and even sizes as the blocks Prometheus made.
    let want = std::fs::read_to_string(fixtures().join("blocks.list.txt")).unwrap();
    let got = ignis_ok(&["tsdb", "list", "-r", out.to_str().unwrap()]);
    assert_eq!(without_ulids(&got), without_ulids(&want));

    // Our dump of our blocks equals our dump of Prometheus's blocks.
    let ours = ignis_ok(&["tsdb", "dump", out.to_str().unwrap()]);
    let theirs = ignis_ok(&["tsdb", "dump", fixtures().join("blocks").to_str().unwrap()]);
    assert_eq!(ours.lines().count(), 515_480);
    assert!(ours == theirs, "dumps differ");

    let Some(promtool) = promtool() else { return };
    // promtool reads our blocks: same dump as over the Prometheus-made blocks.
    let ref_dir = tmp.path().join("ref");
    copy_dir(&fixtures().join("blocks"), &ref_dir);
    for d in [&out, &ref_dir] {
        std::fs::create_dir_all(d.join("wal")).unwrap();
    }
    let dump = |d: &Path| {
        let o = Command::new(&promtool)
            .args(["tsdb", "dump"])
            .arg(d)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "promtool dump: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    let a = dump(&out);
    let b = dump(&ref_dir);
    assert_eq!(a.len(), b.len());
    assert!(a == b, "promtool dumps differ");
    for id in &blocks {
        let o = Command::new(&promtool)
            .args(["tsdb", "analyze"])
            .arg(&out)
            .arg(id)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "promtool analyze {id}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains(&format!("Block ID: {id}")), "{text}");
    }
}

#[test]
fn larger_block_duration_merges_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let mut om = String::new();
    // 8h of one sample per minute from 2024-01-01T00:00:00Z.
    for i in 0..480 {
        om.push_str(&format!(
            "m_total{{a=\"b\"}} {i} {}\n",
            1_704_067_200 + i * 60
        ));
    }
    om.push_str("# EOF\n");
    let input = tmp.path().join("in.om");
    std::fs::write(&input, om).unwrap();
    let out = tmp.path().join("out");
    ignis_ok(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        "--max-block-duration=7h",
        "-q",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    // 6h blocks aligned to multiples of 6h: [18:00, 00:00) is empty, [00:00, 06:00), [06:00, 12:00).
    let list = ignis_ok(&["tsdb", "list", out.to_str().unwrap()]);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!(rows[0][1..3], ["1704067200000", "1704088740001"]);
    assert_eq!(rows[0][4], "360");
    assert_eq!(rows[1][1..3], ["1704088800000", "1704095940001"]);
    assert_eq!(rows[1][4], "120");
}

#[test]
fn malformed_input_is_rejected_without_blocks() {
    let good = "# TYPE a counter\na_total 1 1704067200\na_total 2 1704067215\n";
    let cases: &[(&str, &str)] = &[
        (
            "a_total 3 1704067230\nb{x=\"1\" 2 1704067230\n# EOF\n",
            "line 5",
        ),
        ("a_total 3\n# EOF\n", "line 4: expected timestamp"),
        (
            "a_total 3 1704067230\nb 1 1704067200\n",
            "line 6: data does not end with # EOF",
        ),
        ("a_total three 1704067230\n# EOF\n", "line 4: invalid value"),
        (
            "a_total 3 1704067230\n# EOF\nextra 1 1\n",
            "line 6: unexpected data after # EOF",
        ),
        ("a_total 3 1704067215\n# EOF\n", "line 4: duplicate sample"),
        (
            "a_total 3 1704067100\n# EOF\n",
            "line 4: out of order sample",
        ),
        ("# TYPE b nonsense\n# EOF\n", "line 4: invalid metric type"),
    ];
    for (i, &(tail, want)) in cases.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join(format!("bad{i}.om"));
        std::fs::write(&input, format!("{good}{tail}")).unwrap();
        let out = tmp.path().join("out");
        let o = ignis(&[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            input.to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "case {i} succeeded");
        assert!(
            stderr.contains(want),
            "case {i}: stderr {stderr:?} lacks {want:?}"
        );
        assert!(
            stderr.contains(input.to_str().unwrap()),
            "case {i}: {stderr:?} does not name the file"
        );
        assert!(block_dirs(&out).is_empty(), "case {i}: a block was written");
    }
    let missing = ignis(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        "/nonexistent/x.om",
        "/tmp/never",
    ]);
    assert!(!missing.status.success());
}
