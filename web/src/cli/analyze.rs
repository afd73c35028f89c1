//! `ignis tsdb analyze` (pending).
use anyhow::Result;

/// Runs `tsdb analyze`.
pub fn run(_args: &super::AnalyzeArgs) -> Result<()> {
    anyhow::bail!("tsdb analyze: not available yet")
}
