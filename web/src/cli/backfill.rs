//! `ignis tsdb create-blocks-from openmetrics` (pending).
use anyhow::Result;

/// Runs the backfill.
pub fn run(_args: &super::OpenMetricsArgs) -> Result<()> {
    anyhow::bail!("create-blocks-from: not available yet")
}
