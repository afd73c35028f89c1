//! Decode rate of one metric's chunks in a block, as stored or joined into longer chunks.
//!
//!     cargo run --release -p tsdb --example block_decode -- BLOCK_DIR METRIC [JOIN]
//!
//! Reads every chunk of the series named METRIC from the block, optionally joins each
//! series' chunks into chunks of up to JOIN samples (`compact::join_chunks`, as head blocks
//! are written), then decodes each series' chunks with one batch call into a reused buffer,
//! as a range query does, and prints the best of 20 passes in ns per sample, with the share of
//! each XOR value encoding ('0' repeat, '10' same window, '11' new window).

use std::time::Instant;

use tsdb::block::Block;
use tsdb::chunkenc::xor::decode_chunks_into;
use tsdb::querier::{ChunkData, ChunkMeta};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(metric)) = (args.first(), args.get(1)) else {
        eprintln!("usage: block_decode BLOCK_DIR METRIC [JOIN]");
        std::process::exit(2);
    };
    let join: usize = args.get(2).and_then(|j| j.parse().ok()).unwrap_or(0);
    let block = Block::open(dir).expect("open block");
    let ix = block.index();
    let refs = tsdb::index::postings::collect(ix.postings("__name__", metric).expect("postings"));
    let (mut labels, mut metas) = (Vec::new(), Vec::new());
    let mut series: Vec<Vec<ChunkMeta>> = Vec::new();
    for r in &refs {
        ix.series_refs(*r, &mut labels, &mut metas).expect("series");
        let mut chunks: Vec<ChunkMeta> = metas
            .iter()
            .map(|m| {
                let (encoding, data) = block.chunks().chunk(m.chunk_ref).expect("chunk");
                ChunkMeta {
                    min_time: m.min_time,
                    max_time: m.max_time,
                    encoding,
                    data: ChunkData::from(data),
                }
            })
            .collect();
        if join > 0 {
            tsdb::compact::join_chunks(&mut chunks, join);
        }
        series.push(chunks);
    }
    let lists: Vec<Vec<&[u8]>> = series
        .iter()
        .map(|cs| cs.iter().map(|c| &c.data[..]).collect())
        .collect();
    let mut out = Vec::new();
    let (mut best, mut samples) = (f64::MAX, 0usize);
    for _ in 0..20 {
        let t = Instant::now();
        samples = 0;
        for l in &lists {
            out.clear();
            decode_chunks_into(l, &mut out).expect("decode");
            samples += out.len();
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let chunks: usize = lists.iter().map(|l| l.len()).sum();
    let bytes: usize = lists.iter().flatten().map(|c| c.len()).sum();
    let (mut repeat, mut same, mut new, mut total) = (0usize, 0usize, 0usize, 0usize);
    for l in &lists {
        for c in l {
            out.clear();
            decode_chunks_into(&[c], &mut out).expect("decode");
            let mut window: Option<(u32, u32)> = None;
            for w in out.windows(2).skip(1) {
                total += 1;
                let x = w[1].1.to_bits() ^ w[0].1.to_bits();
                if x == 0 {
                    repeat += 1;
                    continue;
                }
                let (lead, trail) = (x.leading_zeros().min(31), x.trailing_zeros());
                match window {
                    Some((l, t)) if lead >= l && trail >= t => same += 1,
                    _ => {
                        new += 1;
                        window = Some((lead, trail));
                    }
                }
            }
        }
    }
    let pct = |n: usize| 100.0 * n as f64 / total.max(1) as f64;
    println!(
        "{} series, {chunks} chunks, {samples} samples, {:.2} bytes/sample: {:.2} ns/sample; \
         values '0' {:.1}%, '10' {:.1}%, '11' {:.1}%",
        lists.len(),
        bytes as f64 / samples.max(1) as f64,
        best * 1e9 / samples.max(1) as f64,
        pct(repeat),
        pct(same),
        pct(new)
    );
}
