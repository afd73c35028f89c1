//! `ignis tsdb list`: one row per block, as `promtool tsdb list`.
//!
//! Output (Go tabwriter, see [`super::tabwriter`]):
//!
//! ```text
//! BLOCK ULID  MIN TIME  MAX TIME  DURATION  NUM SAMPLES  NUM CHUNKS  NUM SERIES  SIZE
//! ```
//!
//! Times are milliseconds, or with `-r` `time.Unix(ms/1000, 0).UTC()` strings; the duration is
//! Go's `time.Duration` string of `maxTime - minTime`; the size is bytes, or with `-r` Go
//! `units.Base2Bytes` (`382KiB547B`).

use std::io::Write as _;

use anyhow::Result;

use super::blocks::{list_blocks, BlockDir};
use super::gotime::{base2_bytes, go_duration, go_time_utc};
use super::tabwriter::format_table;
use super::ListArgs;

/// The header row.
const HEADER: [&str; 8] = [
    "BLOCK ULID",
    "MIN TIME",
    "MAX TIME",
    "DURATION",
    "NUM SAMPLES",
    "NUM CHUNKS",
    "NUM SERIES",
    "SIZE",
];

/// The cells of one block's row.
pub fn block_row(b: &BlockDir, human: bool) -> Result<Vec<String>> {
    let m = &b.meta;
    let time = |t: i64| if human { go_time_utc(t) } else { t.to_string() };
    let size = b.size()?;
    Ok(vec![
        m.ulid.to_string(),
        time(m.min_time),
        time(m.max_time),
        go_duration((m.max_time - m.min_time).saturating_mul(1_000_000)),
        m.stats.num_samples.to_string(),
        m.stats.num_chunks.to_string(),
        m.stats.num_series.to_string(),
        if human {
            base2_bytes(size as i64)
        } else {
            size.to_string()
        },
    ])
}

/// Formats the table for `blocks`, with the header when `header` is set.
pub fn format_blocks(blocks: &[BlockDir], header: bool, human: bool) -> Result<String> {
    let mut rows = Vec::with_capacity(blocks.len() + 1);
    if header {
        rows.push(HEADER.iter().map(|s| s.to_string()).collect());
    }
    for b in blocks {
        rows.push(block_row(b, human)?);
    }
    Ok(format_table(&rows))
}

/// Runs `tsdb list`.
pub fn run(args: &ListArgs) -> Result<()> {
    let blocks = list_blocks(&args.db_path)?;
    let out = format_blocks(&blocks, true, args.human_readable)?;
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}
