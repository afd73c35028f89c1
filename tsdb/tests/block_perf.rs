//! Rough throughput figures for block reading and writing, printed, never asserted.
//! Run with `cargo test --release -p tsdb --test block_perf -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::*;
use tsdb::block::Block;
use tsdb::chunkenc::ValueType;
use tsdb::compact::{write_block, DEFAULT_BLOCK_DURATION};
use tsdb::labels::{MatchType, Matcher};
use tsdb::querier::{ChunkQuerier, Queryable};

#[test]
#[ignore]
fn block_read_and_write_throughput() {
    let dirs = fixture_block_dirs();
    let t0 = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        for d in &dirs {
            Block::open(d).unwrap();
        }
    }
    let open = t0.elapsed() / (rounds * dirs.len() as u32);

    let blocks: Vec<Block> = dirs.iter().map(|d| Block::open(d).unwrap()).collect();
    let m = [Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()];
    let t0 = Instant::now();
    let mut n = 0u64;
    for _ in 0..rounds {
        for b in &blocks {
            let q = b.querier(i64::MIN, i64::MAX).unwrap();
            for s in q.select(true, None, &m) {
                let s = s.unwrap();
                let mut it = s.iter();
                while it.next() == ValueType::Float {
                    n += 1;
                }
            }
        }
    }
    let el = t0.elapsed();
    println!(
        "open block: {open:?}; select+iterate: {n} samples in {el:?} = {:.1} M samples/s",
        n as f64 / el.as_secs_f64() / 1e6
    );

    let series: Vec<_> = blocks
        .iter()
        .flat_map(|b| {
            b.select_chunks(true, None, &m)
                .map(|s| s.unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut merged: std::collections::BTreeMap<_, Vec<_>> = Default::default();
    for s in series {
        merged.entry(s.labels).or_default().extend(s.chunks);
    }
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let u = write_block(
        tmp.path(),
        merged
            .into_iter()
            .map(|(labels, chunks)| tsdb::querier::ChunkSeries { labels, chunks }),
        blocks[0].min_time(),
        blocks[0].min_time() + 4 * DEFAULT_BLOCK_DURATION,
        2,
        &[],
    )
    .unwrap();
    println!("write_block of 4299 chunks: {:?}", t0.elapsed());
    let c = tsdb::compact::Compactor::with_max_block_duration(i64::MAX);
    let t0 = Instant::now();
    c.compact(tmp.path(), &blocks).unwrap();
    println!("compact 4 fixture blocks: {:?} ({u})", t0.elapsed());
}
