//! Shared helpers of the configuration, relabeling, discovery and rules tests, and the `web`
//! modules they exercise.
#![allow(dead_code, unused_imports)]

pub use web::{config, discovery, gofmt, relabel, rules, template};

use std::path::Path;
use std::process::Command;

/// Runs `promtool` with `args` in `dir`, if it is installed: (stdout, stderr, success).
pub fn promtool(dir: &Path, args: &[&str]) -> Option<(String, String, bool)> {
    let bin = Path::new("/usr/bin/promtool");
    if !bin.exists() {
        return None;
    }
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    Some((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    ))
}
