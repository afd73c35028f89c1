//! WAL replay rate for a 1M-series WAL: writes 1M series × `samples` samples through `Db`
//! (one commit per 10k series, as scrapes of many targets), closes it, then times a fresh
//! `Db::open` that replays the WAL into the head.
//!
//! `cargo run --release -p tsdb --example wal_replay_1m -- [series] [samples per series]`

use std::time::Instant;

use tsdb::db::{Db, Options};
use tsdb::labels::Labels;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let series = args.next().transpose()?.unwrap_or(1_000_000);
    let samples = args.next().transpose()?.unwrap_or(10) as i64;
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path(), Options::default())?;
    let mut refs = vec![0u64; series];
    let started = Instant::now();
    for t in 0..samples {
        for (batch, rs) in refs.chunks_mut(10_000).enumerate() {
            let mut app = db.appender();
            for (j, r) in rs.iter_mut().enumerate() {
                let i = batch * 10_000 + j;
                let labels = if t == 0 {
                    Labels::from_pairs(&[
                        ("__name__", format!("metric_{}", i % 500).as_str()),
                        ("job", "node"),
                        (
                            "instance",
                            &format!("10.0.{}.{}:9100", (i / 250) % 256, i % 250),
                        ),
                        ("pod", &format!("pod-{}", i / 100)),
                        ("id", &format!("{i}")),
                    ])
                } else {
                    Labels::empty()
                };
                *r = app.append(
                    (t > 0).then_some(*r),
                    &labels,
                    t * 15_000,
                    i as f64 + t as f64,
                )?;
            }
            app.commit()?;
        }
    }
    let total = series as f64 * samples as f64;
    println!(
        "wrote {series} series x {samples} samples in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    db.close()?;
    drop(db);
    let started = Instant::now();
    let db = Db::open(dir.path(), Options::default())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replayed {} series, {total} samples in {secs:.2}s: {:.2}M samples/s, {:.0}k series/s",
        db.head_stats().num_series,
        total / secs / 1e6,
        series as f64 / secs / 1e3
    );
    Ok(())
}
