//! The `web` crate is a binary without a library target, so these integration tests compile
//! the configuration, relabeling, discovery, rules and template modules from their sources.
#![allow(dead_code, unused_imports)]

#[path = "../../src/config/mod.rs"]
pub mod config;
#[path = "../../src/discovery/mod.rs"]
pub mod discovery;
#[path = "../../src/gofmt.rs"]
pub mod gofmt;
#[path = "../../src/relabel.rs"]
pub mod relabel;
#[path = "../../src/rules/mod.rs"]
pub mod rules;
#[path = "../../src/template.rs"]
pub mod template;

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
