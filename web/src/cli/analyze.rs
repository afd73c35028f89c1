//! `ignis tsdb analyze [<dir>] [<block id>] [--limit=20] [--extended]`: churn and cardinality
//! report of one block (the last one by default), as `promtool tsdb analyze` (2.42) prints it:
//!
//! ```text
//! Block ID: <ulid>
//! Duration: <Go duration of maxTime - minTime>
//! Series: <n>
//! Label names: <n>
//! Postings (unique label pairs): <n>
//! Postings entries (total label pairs): <n>
//!
//! Label pairs most involved in churning:          (then `<count> <key>` lines, at most limit)
//! Label names most involved in churning:
//! Most common label pairs:
//! Label names with highest cumulative label value length:
//! Highest cardinality labels:
//! Highest cardinality metric names:
//! ```
//!
//! A series' churn is the part of the block's time range its chunks do not cover; per label
//! pair/name the summed churn is divided by the block range. Lists are sorted by count,
//! largest first; promtool leaves the order of ties unspecified, here they are ordered by key.
//! `--extended` adds the chunk fullness histogram (share of chunks per 10% of 120 samples).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::{anyhow, Context, Result};
use tsdb::block::Block;
use tsdb::index::postings::Postings;
use tsdb::Label;

use super::gotime::go_duration;
use super::storage::DataDir;
use super::AnalyzeArgs;

/// Runs `tsdb analyze`.
pub fn run(args: &AnalyzeArgs) -> Result<()> {
    let dir = DataDir::open(&args.db_path)?;
    let blocks = dir.blocks();
    let block = match &args.block_id {
        Some(id) => blocks.iter().find(|b| b.ulid().to_string() == *id),
        None => blocks.last(),
    }
    .ok_or_else(|| anyhow!("block {} not found", args.block_id.as_deref().unwrap_or("")))?;
    let report = analyze(block, args.limit, args.extended)?;
    std::io::stdout().lock().write_all(report.as_bytes())?;
    Ok(())
}

/// Sorts `(key, count)` by count descending (ties by key) and prints at most `limit` lines.
fn print_top(out: &mut String, mut items: Vec<(String, u64)>, limit: usize) {
    items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (k, n) in items.into_iter().take(limit) {
        let _ = writeln!(out, "{n} {k}");
    }
}

/// The analysis report of `block`.
pub fn analyze(block: &Block, limit: usize, extended: bool) -> Result<String> {
    let meta = block.meta();
    let ir = block.index();
    let range = meta.max_time - meta.min_time;
    let mut out = String::new();
    let _ = writeln!(out, "Block ID: {}", meta.ulid);
    let _ = writeln!(
        out,
        "Duration: {}",
        go_duration(range.saturating_mul(1_000_000))
    );
    let _ = writeln!(out, "Series: {}", meta.stats.num_series);
    let names: Vec<&str> = ir
        .label_names()
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
    let _ = writeln!(out, "Label names: {}", names.len());

    let mut labels_uncovered: HashMap<String, u64> = HashMap::new();
    let mut pairs_uncovered: HashMap<String, u64> = HashMap::new();
    let mut pairs_count: HashMap<String, u64> = HashMap::new();
    let mut entries = 0u64;
    let mut lbls: Vec<Label> = Vec::new();
    let mut chks = Vec::new();
    let mut fullness = [0u64; 10];
    let mut total_chunks = 0u64;
    let mut p = ir.all_postings().context("read all postings")?;
    while p.next() {
        ir.series(p.at(), &mut lbls, &mut chks)
            .with_context(|| format!("read series {}", p.at()))?;
        if extended {
            for c in &chks {
                let (_, data) = block.chunks().chunk(c.chunk_ref)?;
                let n = tsdb::chunkenc::xor::num_samples(data).min(120);
                let bucket = ((10 * n).div_ceil(120)).max(1) - 1;
                fullness[bucket] += 1;
                total_chunks += 1;
            }
        }
        let (Some(first), Some(last)) = (chks.first(), chks.last()) else {
            continue;
        };
        let uncovered = (range as u64).wrapping_sub((last.max_time - first.min_time) as u64);
        for l in &lbls {
            let key = format!("{}={}", l.name, l.value);
            *labels_uncovered.entry(l.name.clone()).or_default() += uncovered;
            *pairs_uncovered.entry(key.clone()).or_default() += uncovered;
            *pairs_count.entry(key).or_default() += 1;
            entries += 1;
        }
    }
    let _ = writeln!(
        out,
        "Postings (unique label pairs): {}",
        pairs_uncovered.len()
    );
    let _ = writeln!(out, "Postings entries (total label pairs): {entries}");

    let per_range = |m: u64| (m as f64 / range as f64) as u64;
    out.push_str("\nLabel pairs most involved in churning:\n");
    print_top(
        &mut out,
        pairs_uncovered
            .into_iter()
            .map(|(k, m)| (k, per_range(m)))
            .collect(),
        limit,
    );
    out.push_str("\nLabel names most involved in churning:\n");
    print_top(
        &mut out,
        labels_uncovered
            .into_iter()
            .map(|(k, m)| (k, per_range(m)))
            .collect(),
        limit,
    );
    out.push_str("\nMost common label pairs:\n");
    print_top(&mut out, pairs_count.into_iter().collect(), limit);

    out.push_str("\nLabel names with highest cumulative label value length:\n");
    let lengths = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                ir.label_values(n).iter().map(|v| v.len() as u64).sum(),
            )
        })
        .collect();
    print_top(&mut out, lengths, limit);

    out.push_str("\nHighest cardinality labels:\n");
    let cards = names
        .iter()
        .map(|n| (n.to_string(), ir.label_values(n).len() as u64))
        .collect();
    print_top(&mut out, cards, limit);

    out.push_str("\nHighest cardinality metric names:\n");
    let mut metrics = Vec::new();
    for name in ir.label_values(tsdb::labels::METRIC_NAME) {
        let mut p = ir.postings(tsdb::labels::METRIC_NAME, name)?;
        let mut n = 0u64;
        while p.next() {
            n += 1;
        }
        metrics.push((name.to_string(), n));
    }
    print_top(&mut out, metrics, limit);

    if extended {
        out.push_str(
            "\nCompaction analysis:\nFullness: Amount of samples in chunks (100% is 120 samples)\n",
        );
        for (i, &n) in fullness.iter().enumerate() {
            let pct = (100 * n).checked_div(total_chunks).unwrap_or(0);
            let _ = writeln!(out, "{:>7}%: {}", (i + 1) * 10, "#".repeat(pct as usize));
        }
    }
    Ok(out)
}
