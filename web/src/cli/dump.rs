//! `ignis tsdb dump`: every sample of a data directory (blocks and the head replayed from the
//! WAL, opened read-only), as `promtool tsdb dump` (2.42) prints them: one line per sample,
//! series sorted by labels, samples by time:
//!
//! ```text
//! {__name__="up", instance="a:9100", job="node"} 1 1704067200000
//! ```
//!
//! Labels are printed as Prometheus's `Labels.String()` (Go-quoted values), values with Go's
//! `%g`, timestamps in milliseconds.

use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use tsdb::chunkenc::ValueType;

use super::storage::{parse_selector, DataDir};
use super::DumpArgs;
use crate::gofmt::append_g;

/// Runs `tsdb dump`.
pub fn run(args: &DumpArgs) -> Result<()> {
    let matchers = parse_selector(&args.matcher)?;
    let dir = DataDir::open(&args.db_path)?;
    let q = dir.querier(args.min_time, args.max_time)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    match dump(q.as_ref(), &matchers, &mut out).and_then(|()| out.flush().map_err(Into::into)) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Writes the dump lines of every series `q` selects with `matchers` to `out`.
pub fn dump(q: &dyn tsdb::Querier, matchers: &[tsdb::Matcher], out: &mut impl Write) -> Result<()> {
    let mut line = Vec::with_capacity(256);
    for series in q.select(true, None, matchers) {
        let series = series.context("select series")?;
        let prefix = series.labels().to_string();
        let mut it = series.iter();
        while it.next() == ValueType::Float {
            let (t, v) = it.at();
            line.clear();
            line.extend_from_slice(prefix.as_bytes());
            line.push(b' ');
            append_g(&mut line, v);
            line.push(b' ');
            writeln!(line, "{t}")?;
            out.write_all(&line)?;
        }
        if let Some(e) = it.err() {
            return Err(e).with_context(|| format!("read samples of {}", series.labels()));
        }
    }
    Ok(())
}
