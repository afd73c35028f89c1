//! The threads that decode and apply remote-write requests.
//!
//! Applying a request is blocking work (decompressing, decoding, appending under series locks,
//! writing the WAL), so it cannot run on the async workers. On tokio's blocking pool it ran on
//! whichever thread was free, and that pool grows a thread whenever a request arrives before
//! the last one's thread has gone back to idle: under a 4-connection replay it held 14–21
//! threads. Every one of them kept its own remote-write caches (series references, decode
//! buffers) and its own allocator heap with partly used pages, which together made ~100 MiB
//! of the resident memory at the end of the 100k-series replay. Here a fixed set of two
//! threads per core does that work: fewer copies of those caches and heaps, and each thread's
//! series-reference cache sees more of the requests.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

/// Applier threads per core: more than one, so that a request waiting on a lock or on the WAL
/// does not leave a core idle.
const APPLIERS_PER_CORE: usize = 2;

/// One queued request's work, which sends its own result back.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The queue the applier threads take jobs from.
struct Appliers {
    queue: mpsc::Sender<Job>,
}

/// The appliers, started by the first request.
fn appliers() -> &'static Appliers {
    static APPLIERS: OnceLock<Appliers> = OnceLock::new();
    APPLIERS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let n = tsdb::parallel::cores() * APPLIERS_PER_CORE;
        for i in 0..n {
            let rx = Arc::clone(&rx);
            let started = std::thread::Builder::new()
                .name(format!("rw-apply-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = started {
                tracing::error!(err = %e, "Could not start a remote-write applier thread");
            }
        }
        Appliers { queue: tx }
    })
}

/// Runs `f` on an applier thread and waits for its result; `Err` with a message when it
/// panicked or no applier thread could run it.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(res.map_err(|_| "remote write handler panicked".to_string()));
    });
    if appliers().queue.send(job).is_err() {
        return Err("remote write appliers unavailable".into());
    }
    rx.await
        .unwrap_or_else(|_| Err("remote write applier stopped".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_jobs_on_applier_threads_and_reports_panics() {
        let name = run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("rw-apply-")));
        let many: Vec<_> = (0..64u64).map(|i| run(move || i * 2)).collect();
        let mut got = Vec::new();
        for r in many {
            got.push(r.await.unwrap());
        }
        assert_eq!(got, (0..64u64).map(|i| i * 2).collect::<Vec<_>>());
        let err = run(|| -> u8 { panic!("boom") }).await.unwrap_err();
        assert!(err.contains("panicked"), "{err}");
        // The pool survives a panicking job.
        assert_eq!(run(|| 7).await.unwrap(), 7);
    }
}
