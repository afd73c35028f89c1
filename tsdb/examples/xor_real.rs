//! Decodes the real XOR chunks of a block and prints ns per sample: noisy counters and gauges
//! decode slower than the regular chunk of `xor_decode`. Chunks are copied into memory first,
//! so the measurement is the decoder alone (no page faults).
//!
//! `cargo run --release -p tsdb --example xor_real -- <block dir> [max chunks] [rounds]`
//!
//! Prints, for the plain `next()` loop, `collect_into` and the batch decoder
//! (`decode_chunks_into`, four chunks per call), the CPU time per sample and a
//! checksum (to check that a change leaves the decoded values alone).

use tsdb::block::Block;
use tsdb::chunkenc::{ValueType, XorIterator};

/// User + system CPU seconds of this process.
fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let u: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let k: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (u + k) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: xor_real <block dir> [max chunks] [rounds]");
        std::process::exit(2);
    };
    let max_chunks: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let block = match Block::open(dir) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("open {dir}: {e}");
            std::process::exit(1);
        }
    };
    let ix = block.index();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let refs = match ix.all_postings() {
        Ok(p) => tsdb::index::postings::collect(p),
        Err(e) => {
            eprintln!("postings: {e}");
            std::process::exit(1);
        }
    };
    let (mut lb, mut cb) = (Vec::new(), Vec::new());
    'outer: for r in refs {
        if ix.series(r, &mut lb, &mut cb).is_err() {
            continue;
        }
        for c in &cb {
            if let Ok((_, data)) = block.chunks().chunk(c.chunk_ref) {
                chunks.push(data.to_vec());
                if chunks.len() >= max_chunks {
                    break 'outer;
                }
            }
        }
    }
    let total: usize = chunks
        .iter()
        .map(|c| tsdb::chunkenc::xor::num_samples(c))
        .sum();
    println!("{} chunks, {total} samples", chunks.len());

    // Runs `decode` (which returns a checksum of the values) and prints its CPU time per
    // sample.
    let per_sample = |label: &str, decode: &mut dyn FnMut() -> f64| {
        let c0 = cpu_s();
        let sum = decode();
        let cpu = cpu_s() - c0;
        println!(
            "{label:<19} {:.2} ns/sample (cpu {cpu:.2}s, checksum {sum:e})",
            cpu * 1e9 / (total * rounds) as f64
        );
    };
    per_sample("next():", &mut || {
        let mut sum = 0.0f64;
        for _ in 0..rounds {
            for c in &chunks {
                let mut it = XorIterator::new(std::hint::black_box(c));
                while it.next() == ValueType::Float {
                    let (t, v) = it.at();
                    sum += v + t as f64;
                }
            }
        }
        sum
    });
    let mut out = Vec::with_capacity(256);
    per_sample("collect_into:", &mut || {
        let mut sum = 0.0f64;
        for _ in 0..rounds {
            for c in &chunks {
                out.clear();
                let mut it = XorIterator::new(std::hint::black_box(c));
                it.collect_into(i64::MIN, i64::MAX, &mut out);
                for &(t, v) in &out {
                    sum += v + t as f64;
                }
            }
        }
        sum
    });
    per_sample("decode_chunks_into:", &mut || {
        let mut sum = 0.0f64;
        for _ in 0..rounds {
            // Four chunks per call, about what a query decodes of one series over a few hours.
            for group in chunks.chunks(4) {
                out.clear();
                let group: Vec<&[u8]> = group.iter().map(|c| c.as_slice()).collect();
                let res =
                    tsdb::chunkenc::xor::decode_chunks_into(std::hint::black_box(&group), &mut out);
                if res.is_err() {
                    eprintln!("decode_chunks_into failed");
                }
                for &(t, v) in &out {
                    sum += v + t as f64;
                }
            }
        }
        sum
    });

    let c0 = cpu_s();
    let mut n = 0usize;
    for _ in 0..rounds {
        for c in &chunks {
            let mut it = XorIterator::new(std::hint::black_box(c));
            if it.seek(i64::MAX) == ValueType::None {
                n += tsdb::chunkenc::xor::num_samples(c);
            }
        }
    }
    let cpu = cpu_s() - c0;
    println!(
        "seek(end):          {:.2} ns/sample (cpu {cpu:.2}s, {n} samples)",
        cpu * 1e9 / (total * rounds) as f64
    );
}
