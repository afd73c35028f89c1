//! `ignis tsdb create-blocks-from openmetrics <file> [<outdir>]`: backfilling blocks from an
//! OpenMetrics file, as promtool 2.42 does.
//!
//! 1. The whole input is parsed first ([`parse_input`]); any malformed line, a sample without
//!    timestamp, a repeated label name, or an out-of-order/duplicate sample of a series stops
//!    everything with an error naming the line, before any block is written.
//! 2. The block duration is 2h, or the largest of Prometheus's exponential ranges (2h, 6h, 18h,
//!    …) not above `--max-block-duration`. Blocks are aligned windows `[k·d, (k+1)·d)`; each
//!    window holding samples becomes one block whose time range is that of its samples
//!    (`maxTime` = last sample + 1).
//! 3. In each block a series' samples are cut into XOR chunks as Prometheus's head does with a
//!    chunk range of twice the block duration (what promtool's block writer uses).
//! 4. Unless `--quiet`, each written block is printed as a `tsdb list` row, the header before
//!    the first (each row laid out on its own, as promtool does).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use tsdb::compact::{
    chunks_from_samples, exponential_block_ranges, write_block, DEFAULT_BLOCK_DURATION,
};
use tsdb::querier::ChunkSeries;
use tsdb::Labels;

use super::blocks::BlockDir;
use super::list::format_blocks;
use super::OpenMetricsArgs;
use crate::textparse::{check_utf8, to_tsdb_labels, Entry, OpenMetricsParser, ParseError};

/// Samples of one series, in increasing time order.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSamples {
    /// The series' labels, metric name included.
    pub labels: Labels,
    /// `(timestamp ms, value)` pairs, strictly increasing in time.
    pub samples: Vec<(i64, f64)>,
}

/// Everything read from the input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    /// Series sorted by labels.
    pub series: Vec<SeriesSamples>,
    /// Smallest timestamp (0 when there are no samples).
    pub min_time: i64,
    /// Largest timestamp (0 when there are no samples).
    pub max_time: i64,
}

/// Parses a whole OpenMetrics input into per-series samples.
pub fn parse_input(input: &str) -> Result<Parsed, ParseError> {
    let mut p = OpenMetricsParser::new(input);
    let mut by_text: HashMap<&str, usize> = HashMap::new();
    let mut by_labels: HashMap<Labels, usize> = HashMap::new();
    let mut series: Vec<SeriesSamples> = Vec::new();
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    let mut names: Vec<&str> = Vec::new();
    while let Some(entry) = p.next_entry()? {
        let Entry::Series(s) = entry else { continue };
        let idx = match by_text.get(s.series) {
            Some(&i) => i,
            None => {
                names.clear();
                names.extend(p.labels().map(|(n, _)| n));
                names.push(tsdb::labels::METRIC_NAME);
                names.sort_unstable();
                if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                    return Err(ParseError::new(
                        s.line,
                        format!("label name {:?} is not unique", w[0]),
                    ));
                }
                let labels = to_tsdb_labels(s.name, p.labels());
                let i = *by_labels.entry(labels.clone()).or_insert_with(|| {
                    series.push(SeriesSamples {
                        labels,
                        samples: Vec::new(),
                    });
                    series.len() - 1
                });
                by_text.insert(s.series, i);
                i
            }
        };
        let entry = &mut series[idx];
        let Some(t) = s.timestamp else {
            return Err(ParseError::new(
                s.line,
                format!("expected timestamp for series {}, got none", entry.labels),
            ));
        };
        if let Some(&(last_t, last_v)) = entry.samples.last() {
            if t < last_t {
                return Err(ParseError::new(
                    s.line,
                    format!(
                        "out of order sample for series {}: timestamp {t} before {last_t}",
                        entry.labels
                    ),
                ));
            }
            if t == last_t {
                if last_v.to_bits() == s.value.to_bits() {
                    continue;
                }
                return Err(ParseError::new(
                    s.line,
                    format!(
                        "duplicate sample for timestamp {t} with a different value in series {}",
                        entry.labels
                    ),
                ));
            }
        }
        entry.samples.push((t, s.value));
        mint = mint.min(t);
        maxt = maxt.max(t);
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    if series.iter().all(|s| s.samples.is_empty()) {
        return Ok(Parsed {
            series,
            min_time: 0,
            max_time: 0,
        });
    }
    Ok(Parsed {
        series,
        min_time: mint,
        max_time: maxt,
    })
}

/// The block duration promtool uses for a requested maximum (ms): 2h, or the largest of the
/// exponential ranges 2h·3^k not above it.
pub fn compatible_block_duration(max_block_duration: i64) -> i64 {
    if max_block_duration <= DEFAULT_BLOCK_DURATION {
        return DEFAULT_BLOCK_DURATION;
    }
    let ranges = exponential_block_ranges(DEFAULT_BLOCK_DURATION, 10, 3);
    ranges
        .iter()
        .copied()
        .take_while(|&r| r <= max_block_duration)
        .last()
        .unwrap_or(DEFAULT_BLOCK_DURATION)
}

/// The chunk series of one block window `[lo, hi)`, with the window's sample time range.
fn window_series(
    parsed: &Parsed,
    lo: i64,
    hi: i64,
    chunk_range: i64,
) -> (Vec<ChunkSeries>, i64, i64) {
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    let mut out = Vec::new();
    for s in &parsed.series {
        let a = s.samples.partition_point(|x| x.0 < lo);
        let b = s.samples.partition_point(|x| x.0 < hi);
        if a == b {
            continue;
        }
        let part = &s.samples[a..b];
        mint = mint.min(part[0].0);
        maxt = maxt.max(part[part.len() - 1].0);
        out.push(ChunkSeries {
            labels: s.labels.clone(),
            chunks: chunks_from_samples(part, chunk_range),
        });
    }
    (out, mint, maxt)
}

/// Writes the blocks for `parsed` into `out_dir`; calls `on_block` with each new block's
/// directory in time order.
pub fn write_blocks(
    parsed: &Parsed,
    out_dir: &Path,
    max_block_duration: i64,
    mut on_block: impl FnMut(&Path) -> Result<()>,
) -> Result<()> {
    if parsed.series.iter().all(|s| s.samples.is_empty()) {
        return Ok(());
    }
    let bd = compatible_block_duration(max_block_duration);
    let mut t = parsed.min_time.div_euclid(bd) * bd;
    while t <= parsed.max_time {
        let hi = t.saturating_add(bd);
        let (series, mint, maxt) = window_series(parsed, t, hi, 2 * bd);
        if !series.is_empty() {
            let ulid = write_block(out_dir, series, mint, maxt + 1, 1, &[]).with_context(|| {
                format!("write block for [{t}, {hi}) into {}", out_dir.display())
            })?;
            on_block(&out_dir.join(ulid.to_string()))?;
        }
        t = hi;
    }
    Ok(())
}

/// Runs `create-blocks-from openmetrics`.
pub fn run(args: &OpenMetricsArgs) -> Result<()> {
    let path = &args.input;
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let parsed = check_utf8(&bytes)
        .and_then(parse_input)
        .with_context(|| format!("parse {}", path.display()))?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("create output dir {}", args.output.display()))?;
    let mut header = true;
    let stdout = std::io::stdout();
    write_blocks(&parsed, &args.output, args.max_block_duration, |dir| {
        if args.quiet {
            return Ok(());
        }
        let b = BlockDir::open(dir)?;
        let table = format_blocks(&[b], header, args.human_readable)?;
        header = false;
        stdout.lock().write_all(table.as_bytes())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_series_and_checks_order() {
        let input = "# TYPE a counter\na_total{x=\"1\"} 1 10\na_total{x=\"1\"} 2 20\nb 5 15.5\n\
a_total{ x=\"1\"} 3 30\n# EOF\n";
        // The space inside braces is not OpenMetrics: the line is rejected.
        let e = parse_input(input).unwrap_err();
        assert_eq!(e.line, 5);
        let input = "a_total{x=\"1\",y=\"2\"} 1 10\nb 5 15.5\na_total{y=\"2\",x=\"1\"} 2 20\na_total{x=\"1\",y=\"2\"} 2 20\n# EOF\n";
        let p = parse_input(input).unwrap();
        assert_eq!(p.series.len(), 2);
        assert_eq!(
            p.series[0].labels.to_string(),
            r#"{__name__="a_total", x="1", y="2"}"#
        );
        assert_eq!(p.series[0].samples, vec![(10_000, 1.0), (20_000, 2.0)]);
        assert_eq!(p.series[1].samples, vec![(15_500, 5.0)]);
        assert_eq!((p.min_time, p.max_time), (10_000, 20_000));
    }

    #[test]
    fn rejects_bad_samples_with_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "a 1\n# EOF\n",
                1,
                "expected timestamp for series {__name__=\"a\"}, got none",
            ),
            ("a 1 2\na 1 1\n# EOF\n", 2, "out of order sample"),
            ("a 1 2\na 2 2\n# EOF\n", 2, "duplicate sample"),
            ("a{x=\"1\",x=\"2\"} 1 2\n# EOF\n", 1, "not unique"),
            ("a{__name__=\"b\"} 1 2\n# EOF\n", 1, "not unique"),
        ];
        for &(input, line, msg) in cases {
            let e = parse_input(input).unwrap_err();
            assert_eq!(e.line, line, "{input:?}: {e}");
            assert!(e.msg.contains(msg), "{input:?}: {e}");
        }
        // Same timestamp and value twice is tolerated.
        assert_eq!(
            parse_input("a 1 2\na 1 2\n# EOF\n").unwrap().series[0]
                .samples
                .len(),
            1
        );
    }

    #[test]
    fn block_durations() {
        let h = 3_600_000;
        assert_eq!(compatible_block_duration(2 * h), 2 * h);
        assert_eq!(compatible_block_duration(h), 2 * h);
        assert_eq!(compatible_block_duration(5 * h), 2 * h);
        assert_eq!(compatible_block_duration(6 * h), 6 * h);
        assert_eq!(compatible_block_duration(24 * h), 18 * h);
        assert_eq!(compatible_block_duration(i64::MAX), 2 * h * 3i64.pow(9));
    }

    #[test]
    fn writes_aligned_blocks() {
        let tmp = tempfile::tempdir().unwrap();
        let mut input = String::new();
        // 3h of 15s samples from 01:00 to 03:59:45 -> blocks [0h,2h) and [2h,4h).
        for i in 0..720 {
            input.push_str(&format!("m{{k=\"v\"}} {i} {}\n", 3600 + i * 15));
        }
        input.push_str("# EOF\n");
        let parsed = parse_input(&input).unwrap();
        let mut dirs = Vec::new();
        write_blocks(&parsed, tmp.path(), 2 * 3_600_000, |d| {
            dirs.push(d.to_path_buf());
            Ok(())
        })
        .unwrap();
        assert_eq!(dirs.len(), 2);
        let metas: Vec<_> = dirs
            .iter()
            .map(|d| BlockDir::open(d).unwrap().meta)
            .collect();
        assert_eq!(
            (metas[0].min_time, metas[0].max_time),
            (3_600_000, 7_185_001)
        );
        assert_eq!(
            (metas[1].min_time, metas[1].max_time),
            (7_200_000, 14_385_001)
        );
        assert_eq!(metas[0].stats.num_samples + metas[1].stats.num_samples, 720);
        assert_eq!(metas[1].stats.num_series, 1);
    }
}
