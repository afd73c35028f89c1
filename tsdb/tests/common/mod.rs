//! Helpers shared by the integration tests: locating the shared fixtures, copying a fixture
//! directory, opening a WAL, and a tiny OpenMetrics sample-line reader.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use tsdb::labels::{Label, Labels};
use tsdb::wal::{Wal, WalOptions, PAGE_SIZE};

/// The shared folder (fixtures).
pub fn shared_dir() -> PathBuf {
    std::env::var("IGNIS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")))
}

/// Copies the directory tree `from` into `to` (created), making every copied file writable
/// (the fixtures are read-only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let dst = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
            let mut perm = std::fs::metadata(&dst).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&dst, perm).unwrap();
        }
    }
}

/// Opens (or creates) a WAL in `dir` with segments of `pages` pages.
pub fn open_wal(dir: impl AsRef<Path>, pages: usize, compress: bool) -> Wal {
    let opts = WalOptions {
        segment_size: pages * PAGE_SIZE,
        compress,
    };
    Wal::open(dir.as_ref(), opts).unwrap()
}

/// The installed Prometheus 2.42 `promtool`, or `None` (printing that its checks are skipped).
pub fn promtool() -> Option<&'static str> {
    let p = "/usr/bin/promtool";
    if Path::new(p).exists() {
        Some(p)
    } else {
        println!("skipping promtool checks: {p} is not installed");
        None
    }
}

/// The text `promtool tsdb dump <dir>` prints (one sample a line), asserting it succeeded.
pub fn promtool_dump(promtool: impl AsRef<std::ffi::OsStr>, dir: &Path) -> String {
    let out = std::process::Command::new(promtool)
        .args(["tsdb", "dump"])
        .arg(dir)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool tsdb dump {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The fixture blocks directory.
pub fn fixture_blocks_dir() -> PathBuf {
    shared_dir().join("fixtures/prometheus-2.42/blocks")
}

/// Every fixture block's directory, sorted.
pub fn fixture_block_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture_blocks_dir())
        .expect("fixture blocks dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    v.sort();
    v
}

/// Go's `math.NaN()` bit pattern, which Prometheus's parsers produce for `NaN`.
pub const GO_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

fn parse_value(s: &str) -> f64 {
    match s {
        "NaN" => f64::from_bits(GO_NAN_BITS),
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or_else(|_| panic!("bad value {s:?}")),
    }
}

/// Parses `name{a="x",b="y"} value timestamp_seconds` into labels, ms timestamp and value.
pub fn parse_line(line: &str) -> (Labels, i64, f64) {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] != b'{' && b[i] != b' ' {
        i += 1;
    }
    let name = &line[..i];
    let mut labels = vec![Label::new("__name__", name)];
    if i < b.len() && b[i] == b'{' {
        i += 1;
        loop {
            if b[i] == b'}' {
                i += 1;
                break;
            }
            if b[i] == b',' {
                i += 1;
                continue;
            }
            let start = i;
            while b[i] != b'=' {
                i += 1;
            }
            let lname = &line[start..i];
            i += 1; // '='
            assert_eq!(b[i], b'"', "line {line:?}");
            i += 1;
            let mut val: Vec<u8> = Vec::new();
            loop {
                match b[i] {
                    b'\\' => {
                        match b[i + 1] {
                            b'n' => val.push(b'\n'),
                            b'\\' => val.push(b'\\'),
                            b'"' => val.push(b'"'),
                            c => panic!("bad escape {c} in {line:?}"),
                        }
                        i += 2;
                    }
                    b'"' => {
                        i += 1;
                        break;
                    }
                    c => {
                        val.push(c);
                        i += 1;
                    }
                }
            }
            labels.push(Label::new(lname, String::from_utf8(val).unwrap()));
        }
    }
    let rest = line[i..].trim();
    let mut parts = rest.split(' ');
    let v = parse_value(parts.next().unwrap());
    let ts: f64 = parts.next().expect("timestamp").parse().unwrap();
    let t = (ts * 1000.0).round() as i64;
    (Labels::new(labels), t, v)
}

/// All samples of `metrics.om.gz` by series: (timestamp ms, value bits), in file order.
pub fn openmetrics_samples() -> BTreeMap<Labels, Vec<(i64, u64)>> {
    let path = shared_dir().join("fixtures/prometheus-2.42/openmetrics/metrics.om.gz");
    let f = std::fs::File::open(&path).expect("metrics.om.gz");
    let r = BufReader::new(flate2::read::GzDecoder::new(f));
    let mut out: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
    let mut last: Option<(Labels, Vec<(i64, u64)>)> = None;
    for line in r.lines() {
        let line = line.unwrap();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (ls, t, v) = parse_line(&line);
        match &mut last {
            Some((l, s)) if *l == ls => s.push((t, v.to_bits())),
            _ => {
                if let Some((l, s)) = last.take() {
                    out.entry(l).or_default().extend(s);
                }
                last = Some((ls, vec![(t, v.to_bits())]));
            }
        }
    }
    if let Some((l, s)) = last.take() {
        out.entry(l).or_default().extend(s);
    }
    for s in out.values_mut() {
        s.sort_by_key(|x| x.0);
    }
    out
}
