//! Decodes one 120-sample XOR chunk many times and prints the rate: a fixed amount of work for
//! instruction counting (`perf stat -e instructions:u`), where wall time on a busy machine lies.
//!
//! `cargo run --release -p tsdb --example xor_decode -- [iterations]`

use std::time::Instant;
use tsdb::chunkenc::{ValueType, XorAppender, XorIterator};

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut app = XorAppender::new();
    let mut v = 100.0f64;
    for i in 0..120 {
        v += (i % 7) as f64 * 0.25;
        app.append(1_700_000_000_000 + i * 15_000 + (i % 3), v);
    }
    let bytes = app.bytes().to_vec();
    let start = Instant::now();
    let mut sum = 0.0;
    let mut n = 0usize;
    for _ in 0..iters {
        let mut it = XorIterator::new(std::hint::black_box(&bytes));
        while it.next() == ValueType::Float {
            sum += it.at().1;
            n += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} samples in {secs:.3}s: {:.1}M samples/s (checksum {sum})",
        n as f64 / secs / 1e6
    );
}
