//! Times the dashboard queries of the shared bench (`queries_dashboard.txt`) in-process over a
//! real data directory opened read-only, the way `measure.py` runs them against the server:
//! instants at the data end, ranges of 6h (clipped to the data) ending there at a 60 s step.
//!
//! `cargo run --release -p query --example dashboard -- <datadir> [runs] [queries file]`
//!
//! Prints, per query, the median wall time, the process CPU time per timed run (user + system, so
//! parallel evaluation shows as CPU > wall), the result size and a checksum of the values
//! (to check that a change leaves the answers alone), and the resident memory after opening and
//! after the queries. `Q=<name>` runs only that query; `RANGE_S=<seconds>` shortens the range
//! queries' 6h; `RW=1` opens the directory read-write as the server does (head chunks read
//! from `chunks_head/` rather than kept in memory; it writes to the directory: use a copy).
//! `GAP_MS=<ms>` sleeps between runs, as a client's round trip leaves the server idle.

use std::time::Instant;

/// The server's allocator, so allocation costs match what `ignis` pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use query::{Engine, EngineOptions, Value};
use tsdb::db::{Db, Options};
use tsdb::Queryable;

/// User + system CPU time of this process in seconds, ended threads included
/// (`CLOCK_PROCESS_CPUTIME_ID`, nanosecond resolution; `/proc/self/stat` counts 10 ms ticks).
fn cpu_s() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return 0.0;
    }
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

fn checksum(v: &Value) -> (usize, usize, f64) {
    match v {
        Value::Matrix(m) => {
            let pts = m.iter().map(|s| s.floats.len()).sum();
            let sum = m
                .iter()
                .flat_map(|s| s.floats.iter())
                .map(|&(t, v)| {
                    if v.is_finite() {
                        v + t as f64 * 1e-12
                    } else {
                        0.0
                    }
                })
                .sum();
            (m.len(), pts, sum)
        }
        Value::Vector(s) => (
            s.len(),
            s.len(),
            s.iter()
                .map(|x| if x.v.is_finite() { x.v } else { 0.0 })
                .sum(),
        ),
        Value::Scalar { v, .. } => (1, 1, *v),
        Value::String { .. } => (1, 1, 0.0),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).cloned().unwrap_or_else(|| "/tmp/h1data".into());
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let qfile = args.get(3).cloned().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/bench/queries_dashboard.txt"
        )
        .into()
    });
    let t0 = Instant::now();
    // The server opens read-write, reading the head's full chunks from `chunks_head/`; a
    // read-only open keeps them in memory (replayed from the WAL).
    let open = if std::env::var_os("RW").is_some() {
        Db::open
    } else {
        Db::open_read_only
    };
    let db = match open(&dir, Options::default()) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("open {dir}: {e}");
            std::process::exit(1);
        }
    };
    let rss_opened = rss_mib();
    let min_t = db.min_time().unwrap_or(0);
    // The head's newest sample, or the blocks' end when the head is empty.
    let max_t = db
        .blocks()
        .iter()
        .map(|b| b.max_time() - 1)
        .fold(db.head().max_time(), i64::max);
    println!(
        "opened {dir} in {:.2?}: data [{min_t}, {max_t}]",
        t0.elapsed()
    );
    let step = 60i64;
    let end_s = max_t / 1000 + 1;
    let q_end = end_s / step * step;
    let range_s: i64 = std::env::var("RANGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6 * 3600);
    let q_start = (q_end - range_s).max((min_t / 1000 + step) / step * step);
    let text = std::fs::read_to_string(&qfile).unwrap_or_else(|e| {
        eprintln!("read {qfile}: {e}");
        std::process::exit(1)
    });
    let only = std::env::var("Q").ok();
    let gap = std::time::Duration::from_millis(
        std::env::var("GAP_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let e = Engine::new(EngineOptions::default());
    let q: &dyn Queryable = &db;
    let (mut tot_wall, mut tot_cpu) = (0.0, 0.0);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, '|');
        let (kind, name, expr) = match (parts.next(), parts.next(), parts.next()) {
            (Some(k), Some(n), Some(e)) => (k.trim(), n.trim(), e.trim()),
            _ => continue,
        };
        if only
            .as_deref()
            .is_some_and(|o| o != name && o != format!("{name}:{kind}"))
        {
            continue;
        }
        let run = || {
            if kind == "instant" {
                e.instant_query(q, expr, q_end * 1000)
            } else {
                e.range_query(q, expr, q_start * 1000, q_end * 1000, step * 1000)
            }
        };
        let mut walls = Vec::new();
        let mut res = None;
        let mut c0 = cpu_s();
        for i in 0..=runs {
            if gap.as_nanos() > 0 {
                std::thread::sleep(gap);
            }
            let t = Instant::now();
            let r = run();
            if i > 0 {
                walls.push(t.elapsed().as_secs_f64() * 1000.0);
            } else {
                c0 = cpu_s();
            }
            res = Some(r);
        }
        let cpu = (cpu_s() - c0) * 1000.0 / runs.max(1) as f64;
        walls.sort_by(f64::total_cmp);
        let med = walls[walls.len() / 2];
        tot_wall += med;
        tot_cpu += cpu;
        match res {
            Some(Ok(r)) => {
                let (ns, np, sum) = checksum(&r.value);
                println!(
                    "{name:>20} {kind:<7} {med:>8.1} ms  cpu {cpu:>7.1} ms  {ns:>6} series {np:>7} pts  samples {:>10}  sum {sum:.6e}",
                    r.stats.total_queryable_samples
                );
            }
            Some(Err(err)) => println!("{name:>20} {kind:<7} ERROR {err}"),
            None => {}
        }
    }
    println!("total: wall {tot_wall:.1} ms, cpu {tot_cpu:.1} ms");
    println!(
        "rss: {:.1} MiB after opening, {:.1} MiB after the queries",
        rss_opened,
        rss_mib()
    );
}

/// Resident memory of this process in MiB, from `/proc/self/statm`.
fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}
