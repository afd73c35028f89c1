//! Running independent per-series work on several threads.
//!
//! The work of one query step over many series (decoding selected series, sliding a range
//! function's window) is shared between the calling thread and the worker pool
//! ([`tsdb::parallel`]), up to one thread per core. Below a size threshold everything runs
//! on the calling thread, where waking a worker would cost more than it saves.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{QResult, QueryError};

/// Threads worth using for `n` items when parallelism starts at `min` items.
pub(crate) fn threads_for(n: usize, min: usize) -> usize {
    if n < min {
        return 1;
    }
    tsdb::parallel::cores()
        .min(tsdb::parallel::MAX_WORKERS)
        .min(n)
}

/// Splits `items` into at most `parts` runs of consecutive items, in order, each owned.
pub(crate) fn split_owned<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    let per = items.len().div_ceil(parts.max(1)).max(1);
    let mut out = Vec::with_capacity(parts);
    let mut rest = items.into_iter();
    loop {
        let part: Vec<T> = rest.by_ref().take(per).collect();
        if part.is_empty() {
            return out;
        }
        out.push(part);
    }
}

/// Fewest items [`drop_all`] frees on several threads.
const PARALLEL_DROP_MIN: usize = 2048;

/// Frees `items`, on all cores when there are many: freeing the series of a large vector
/// (their points and the last reference to their labels) is otherwise a serial cost at the
/// end of an evaluation.
pub(crate) fn drop_all<T: Send>(items: Vec<T>) {
    let threads = threads_for(items.len(), PARALLEL_DROP_MIN);
    if threads <= 1 {
        return;
    }
    let _ = par_map(split_owned(items, threads), threads, drop);
}

/// Maps `f` over `items` in order, on up to `threads` threads (contiguous parts, run on the
/// calling thread and the worker pool, [`tsdb::parallel`]). A panic in a part becomes an
/// `execution` error.
pub(crate) fn par_map<T, R, F>(items: Vec<T>, threads: usize, f: F) -> QResult<Vec<R>>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    if threads <= 1 || items.len() < 2 {
        return Ok(items.into_iter().map(f).collect());
    }
    let n = items.len();
    let f = &f;
    let parts: Vec<_> = split_owned(items, threads)
        .into_iter()
        .map(|part| move || part.into_iter().map(f).collect::<Vec<R>>())
        .collect();
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tsdb::parallel::run_parallel(parts)
    }))
    .map_err(|_| QueryError::execution("query evaluation thread panicked"))?;
    let mut out = Vec::with_capacity(n);
    out.extend(done.into_iter().flatten());
    Ok(out)
}

/// Runs `f(&mut state, i)` for every `i` in `0..n` on up to `threads` threads (the caller
/// and the worker pool, [`tsdb::parallel`]), each thread taking the next index as soon as it
/// is free, with one `state` per thread from `init`. Returns the results paired with their
/// index, in no particular order; the first error stops every thread and is returned. A
/// panic in a worker becomes an `execution` error.
pub(crate) fn par_dynamic<S, R, I, F>(
    n: usize,
    threads: usize,
    init: I,
    f: F,
) -> QResult<Vec<(usize, R)>>
where
    R: Send,
    I: Fn() -> S + Sync,
    F: Fn(&mut S, usize) -> QResult<R> + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || -> QResult<Vec<(usize, R)>> {
        let mut state = init();
        let mut out = Vec::new();
        loop {
            if failed.load(Ordering::Relaxed) {
                break;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            match f(&mut state, i) {
                Ok(r) => out.push((i, r)),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(out)
    };
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return work();
    }
    // Each thread's results, or the first error.
    let results: Mutex<QResult<Vec<(usize, R)>>> = Mutex::new(Ok(Vec::with_capacity(n)));
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tsdb::parallel::broadcast(threads, &|| {
            let mine = work();
            let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
            match (&mut *all, mine) {
                (Ok(all), Ok(mut v)) => all.append(&mut v),
                (Ok(_), Err(e)) => *all = Err(e),
                (Err(_), _) => {}
            }
        })
    }));
    if ran.is_err() {
        return Err(QueryError::execution("query evaluation thread panicked"));
    }
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_map_keeps_order_on_any_thread_count() {
        let items: Vec<u64> = (0..1001).collect();
        for threads in [1, 2, 3, 8] {
            let got = par_map(items.clone(), threads, |x| x * 3).unwrap();
            let want: Vec<u64> = items.iter().map(|x| x * 3).collect();
            assert_eq!(got, want, "threads {threads}");
        }
        assert!(par_map(Vec::<u8>::new(), 4, |x| x).unwrap().is_empty());
    }

    #[test]
    fn par_dynamic_runs_each_index_once_with_thread_state() {
        for threads in [1, 2, 5] {
            let mut got = par_dynamic(
                100,
                threads,
                || 0usize,
                |calls, i| {
                    *calls += 1;
                    Ok((i * 2, *calls))
                },
            )
            .unwrap();
            got.sort_by_key(|x| x.0);
            let idx: Vec<usize> = got.iter().map(|x| x.0).collect();
            assert_eq!(idx, (0..100).collect::<Vec<_>>(), "threads {threads}");
            assert!(got.iter().all(|(i, (v, _))| *v == i * 2));
            // Per-thread state: the call counts of all threads add up to 100.
            let max_calls: usize = got.iter().map(|x| x.1 .1).max().unwrap();
            assert!(max_calls <= 100 && max_calls >= 100 / threads);
        }
        let err = par_dynamic(
            50,
            2,
            || (),
            |_, i| {
                if i == 7 {
                    Err(QueryError::execution("boom"))
                } else {
                    Ok(i)
                }
            },
        );
        assert!(err.is_err());
        assert!(par_dynamic(0, 4, || (), |_, i| Ok(i)).unwrap().is_empty());
    }

    #[test]
    fn split_owned_keeps_order_and_every_item() {
        for n in [0usize, 1, 2, 7, 100] {
            for parts in [1usize, 2, 3, 8, 200] {
                let got = split_owned((0..n).collect::<Vec<_>>(), parts);
                assert!(got.len() <= parts.max(1), "n {n} parts {parts}");
                assert!(got.iter().all(|p| !p.is_empty()));
                let flat: Vec<usize> = got.into_iter().flatten().collect();
                assert_eq!(flat, (0..n).collect::<Vec<_>>(), "n {n} parts {parts}");
            }
        }
    }

    #[test]
    fn drop_all_frees_every_item() {
        let token = std::sync::Arc::new(());
        let items: Vec<std::sync::Arc<()>> = (0..5000).map(|_| token.clone()).collect();
        assert_eq!(std::sync::Arc::strong_count(&token), 5001);
        drop_all(items);
        assert_eq!(std::sync::Arc::strong_count(&token), 1);
        drop_all(vec![token.clone()]);
        assert_eq!(std::sync::Arc::strong_count(&token), 1);
    }

    #[test]
    fn threads_for_respects_threshold() {
        assert_eq!(threads_for(10, 100), 1);
        assert!(threads_for(1000, 100) >= 1);
        assert!(threads_for(2, 1) <= 2);
    }
}
