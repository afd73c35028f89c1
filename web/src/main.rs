//! The `ignis` binary: a Prometheus-compatible server and its command-line tools.
//!
//! `ignis` alone (or `ignis server`) starts the server; `ignis tsdb …` holds the block tools
//! that mirror `promtool tsdb` (see [`web::cli`]). The modules live in the `web` library; this
//! file holds only what belongs to the process: the allocator and its tuning.

use clap::Parser as _;

/// mimalloc instead of glibc malloc: glibc keeps memory freed by query threads in per-thread
/// arenas, so RSS stayed at its query peak (measured: 73 → 518 MiB anonymous memory after the
/// bench's dashboard queries on the 20k-series dataset).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option numbers (`mi_option_t` in mimalloc 3's `mimalloc.h`).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
const MI_OPTION_ALLOW_THP: std::ffi::c_int = 43;
/// How long freed memory stays committed before mimalloc gives it back (ms). mimalloc 3
/// keeps it 1000 ms, longer than a query: the memory a large query frees while it runs
/// could not go back before its end, and the next queries' peaks stacked on it. Measured on
/// the 100k bench data (server restarted, all dashboard queries, 3 alternated runs each):
/// peak RSS 291–323 MiB at 1000 ms, 284–293 at 250, 274 at 100 (instant queries up to ~20%
/// slower), ~250 at 0–1 ms (up to ~2× slower: pages faulted in again). Ingest frees as much:
/// on the live 100k bench the peak to settle was 245.5 MiB at 100 ms and 272.4 at 250 ms.
/// See BENCHMARKS.md, session 6.
const PURGE_DELAY_MS: std::ffi::c_long = 100;
/// `prctl` option that turns transparent huge pages off for this process (`linux/prctl.h`).
#[cfg(target_os = "linux")]
const PR_SET_THP_DISABLE: std::ffi::c_int = 41;

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    fn mi_collect(force: bool);
    #[cfg(target_os = "linux")]
    fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
}

/// Keeps the allocator from holding memory the process no longer uses: freed memory goes
/// back after [`PURGE_DELAY_MS`] (unless `MIMALLOC_PURGE_DELAY` is set), and no huge pages.
///
/// With transparent huge pages allowed, mimalloc asks for them (`MADV_HUGEPAGE`) on its
/// arenas, so a 2 MiB page stays resident while any 4 KiB of it is in use, and freed memory is
/// given back only in whole huge pages. Measured on the 20k-series remote-write replay: peak
/// RSS 134 → 86 MiB, anonymous memory during ingest ~120 → ~53 MiB, CPU unchanged. THP is
/// turned off for the process (`prctl`, which also covers the arena reserved before `main`)
/// and mimalloc told not to use it, unless `MIMALLOC_ALLOW_THP` is set in the environment.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` only stores an option value.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    #[cfg(target_os = "linux")]
    let (on, off): (std::ffi::c_ulong, std::ffi::c_ulong) = (1, 0);
    // SAFETY: `mi_option_set` only stores an option value; `prctl(PR_SET_THP_DISABLE, 1, 0,
    // 0, 0)` only sets a flag of this process. Neither touches memory we own.
    unsafe {
        mi_option_set(MI_OPTION_ALLOW_THP, 0);
        #[cfg(target_os = "linux")]
        prctl(PR_SET_THP_DISABLE, on, off, off, off);
    }
}

/// The "thread idle" hook ([`tsdb::querier::set_thread_idle_hook`]): run by a query thread
/// after a query and by the selection pool's threads after it. mimalloc gives a page back only
/// when its owning thread collects it, and memory freed by other threads (series built on the
/// pool and dropped by the query's workers) waits on the owner's lists; long-lived threads that
/// go idle would keep it resident.
fn collect_thread_heap() {
    // SAFETY: `mi_collect` only walks the calling thread's own heap.
    unsafe { mi_collect(false) }
}

fn main() {
    tune_allocator();
    // `IGNIS_NO_IDLE_COLLECT` set: no hook (for A/B measurements of its cost).
    if std::env::var_os("IGNIS_NO_IDLE_COLLECT").is_none() {
        tsdb::querier::set_thread_idle_hook(collect_thread_heap);
    }
    let args = web::cli::Cli::parse();
    std::process::exit(web::cli::run(args));
}
