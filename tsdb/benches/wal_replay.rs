//! WAL replay rate: opening a data directory whose head holds 1.2M samples of 10k series, read
//! only (so the whole head comes from the WAL, none from `chunks_head/`).
//!
//! Run: `cargo bench -p tsdb --bench wal_replay`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tsdb::db::{Db, Options};
use tsdb::labels::Labels;

const SERIES: usize = 10_000;
const SAMPLES: i64 = 120;

fn bench_replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        retention: Duration::ZERO,
        ..Options::default()
    };
    {
        let db = Db::open(dir.path(), opts.clone()).unwrap();
        let labels: Vec<Labels> = (0..SERIES)
            .map(|i| {
                Labels::from_pairs(&[
                    ("__name__", format!("metric_{}", i % 100).as_str()),
                    ("instance", &format!("host-{}", i / 100)),
                    ("job", "bench"),
                ])
            })
            .collect();
        let mut refs = vec![None; SERIES];
        for k in 0..SAMPLES {
            let mut app = db.appender();
            for (i, l) in labels.iter().enumerate() {
                refs[i] = Some(
                    app.append(refs[i], l, k * 15_000, (k * i as i64) as f64)
                        .unwrap(),
                );
            }
            app.commit().unwrap();
        }
        db.close().unwrap();
    }
    let mut g = c.benchmark_group("wal");
    g.sample_size(10);
    g.throughput(Throughput::Elements(SERIES as u64 * SAMPLES as u64));
    g.bench_function("replay_10k_series_x_120_samples", |b| {
        b.iter(|| {
            let db = Db::open_read_only(dir.path(), opts.clone()).unwrap();
            assert_eq!(db.replay_stats().samples, SERIES as u64 * SAMPLES as u64);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_replay);
criterion_main!(benches);
