//! Head benchmarks: append rate with series refs, XOR chunk decode rate.
//!
//! Run: `cargo bench -p tsdb --bench head`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tsdb::chunkenc::{ValueType, XorAppender, XorIterator};
use tsdb::head::Head;
use tsdb::labels::Labels;

const SERIES: usize = 10_000;

fn bench_append(c: &mut Criterion) {
    let head = Head::in_memory();
    let labels: Vec<Labels> = (0..SERIES)
        .map(|i| {
            Labels::from_pairs(&[
                ("__name__", "bench_metric"),
                ("instance", &format!("host-{}", i % 100)),
                ("id", &format!("{i}")),
            ])
        })
        .collect();
    let mut refs: Vec<u64> = Vec::with_capacity(SERIES);
    let mut app = head.appender();
    for l in &labels {
        refs.push(app.append(None, l, 0, 0.0).unwrap());
    }
    app.commit().unwrap();
    let mut t = 0i64;
    let mut g = c.benchmark_group("head");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("append_commit_10k_series_with_refs", |b| {
        b.iter(|| {
            t += 15_000;
            let mut app = head.appender();
            for (i, r) in refs.iter().enumerate() {
                app.append(Some(*r), &labels[i], t, (t as f64) * 0.5 + i as f64)
                    .unwrap();
            }
            app.commit().unwrap();
        })
    });
    g.finish();
}

fn bench_xor_decode(c: &mut Criterion) {
    let mut app = XorAppender::new();
    let mut v = 100.0f64;
    for i in 0..120 {
        v += (i % 7) as f64 * 0.25;
        app.append(1_700_000_000_000 + i * 15_000 + (i % 3), v);
    }
    let bytes = app.bytes().to_vec();
    let mut g = c.benchmark_group("xor");
    g.throughput(Throughput::Elements(120));
    g.bench_function("decode_120_sample_chunk", |b| {
        b.iter(|| {
            let mut it = XorIterator::new(black_box(&bytes));
            let mut sum = 0.0;
            while it.next() == ValueType::Float {
                sum += it.at().1;
            }
            black_box(sum)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_append, bench_xor_decode);
criterion_main!(benches);
