//! Helpers shared by the `ignis` command-line tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shared fixtures folder (`$IGNIS_SHARED` or `<checkout>/../shared`).
pub fn shared() -> PathBuf {
    std::env::var("IGNIS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")))
}

/// The Prometheus 2.42 fixtures folder.
pub fn fixtures() -> PathBuf {
    shared().join("fixtures/prometheus-2.42")
}

/// Runs the built `ignis` binary with `args`.
pub fn ignis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ignis"))
        .args(args)
        .output()
        .expect("run ignis")
}

/// Runs `ignis` and returns its stdout, failing the test on a non-zero exit.
pub fn ignis_ok(args: &[&str]) -> String {
    let out = ignis(args);
    assert!(
        out.status.success(),
        "ignis {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Reads a gzip file to a string.
pub fn gunzip(path: &Path) -> String {
    use std::io::Read;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .expect("gunzip");
    s
}

/// Copies a directory tree (files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
            let mut perm = std::fs::metadata(&dst).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&dst, perm).unwrap();
        }
    }
}

/// Block directories (ULID names) directly inside `dir`.
pub fn block_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.len() == 26 && n.parse::<ulid::Ulid>().is_ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// The promtool binary, if installed.
pub fn promtool() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/promtool");
    p.exists().then_some(p)
}
