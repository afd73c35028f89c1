//! `ignis tsdb dump` (pending).
use anyhow::Result;

/// Runs `tsdb dump`.
pub fn run(_args: &super::DumpArgs) -> Result<()> {
    anyhow::bail!("tsdb dump: not available yet")
}
