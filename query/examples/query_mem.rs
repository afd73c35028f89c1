//! Peak heap of each dashboard query in-process: how many bytes the query holds live at once
//! at most, beside what the allocator keeps (RSS). A counting wrapper around the server's
//! allocator tracks the live bytes; before each query its peak is reset to the current level.
//!
//! `cargo run --release -p query --example query_mem -- <datadir> [queries file]`
//! (`Q=<name>` or `Q=<name>:<kind>` runs only that query.) Queries run as in the `dashboard`
//! example: instants at the data end, 6h ranges at a 60 s step.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

/// mimalloc with a count of live bytes and their peak.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(n: isize) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grew(l.size() as isize);
        mimalloc::MiMalloc.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        mimalloc::MiMalloc.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        grew(l.size() as isize);
        mimalloc::MiMalloc.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        grew(n as isize - l.size() as isize);
        mimalloc::MiMalloc.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

use query::{Engine, EngineOptions};
use tsdb::db::{Db, Options};
use tsdb::Queryable;

fn mib(b: isize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// `(VmRSS, RssAnon)` of this process in MiB.
fn rss() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (get("VmRSS:"), get("RssAnon:"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).cloned().unwrap_or_else(|| "/tmp/d100k".into());
    let qfile = args.get(2).cloned().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/bench/queries_dashboard.txt"
        )
        .into()
    });
    let db = Db::open_read_only(&dir, Options::default()).unwrap_or_else(|e| {
        eprintln!("open {dir}: {e}");
        std::process::exit(1)
    });
    let (min_t, max_t) = (db.min_time().unwrap_or(0), db.head().max_time());
    let step = 60i64;
    let q_end = (max_t / 1000 + 1) / step * step;
    let q_start = (q_end - 6 * 3600).max((min_t / 1000 + step) / step * step);
    let text = std::fs::read_to_string(&qfile).unwrap_or_default();
    let only = std::env::var("Q").ok();
    let e = Engine::new(EngineOptions::default());
    let q: &dyn Queryable = &db;
    println!(
        "opened: live heap {:.1} MiB, rss {:.1} MiB (anon {:.1})",
        mib(LIVE.load(Relaxed)),
        rss().0,
        rss().1
    );
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, '|').map(str::trim);
        let (Some(kind), Some(name), Some(expr)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if only
            .as_deref()
            .is_some_and(|o| o != name && o != format!("{name}:{kind}"))
        {
            continue;
        }
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let r = if kind == "instant" {
            e.instant_query(q, expr, q_end * 1000)
        } else {
            e.range_query(q, expr, q_start * 1000, q_end * 1000, step * 1000)
        };
        let peak = PEAK.load(Relaxed) - before;
        drop(r);
        let (vm, anon) = rss();
        println!(
            "{name:>20} {kind:<7} heap peak +{:>7.1} MiB  after +{:>6.1} MiB  rss {vm:>6.1} anon {anon:>6.1}",
            mib(peak),
            mib(LIVE.load(Relaxed) - before),
        );
    }
}
