//! The worker pool: long-lived threads, two per core (of up to [`MAX_WORKERS`] cores), each
//! pinned to its core, that run the parallel parts of selections and query evaluations
//! beside the thread that asked for them.
//!
//! Why pinned threads, and not threads spawned per query or a pool the scheduler places: on
//! a small machine (measured on the 2-core bench VM, Linux 6.18) a thread spawned or woken
//! to help is put on the core of the thread that woke it, even with the other core idle, and
//! waits there until that thread blocks: a 1 ms + 1 ms split took 2.05 ms after the machine
//! had been idle for 1–5 ms, 1.06 ms with a helper pinned to the other core. A query arrives
//! after such an idle gap (the client's round trip), so every short parallel section ran
//! serially. A worker pinned to a core starts there within ~30–70 µs of being woken, and
//! only workers on other cores than the caller's are woken.
//!
//! The calling thread always works too ([`broadcast`]), and waits only for workers that
//! started on its job before it finished: a worker still busy elsewhere skips the job when it
//! gets to it. So work may be nested (a part may start parallel work of its own) without
//! deadlock, and a busy worker never holds up a caller. Long-lived workers also keep their
//! allocator heaps warm (a thread per query faulted in a fresh heap each time).

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};

/// Most cores the pool has workers on (and so most threads one parallel section uses).
pub const MAX_WORKERS: usize = 8;

/// The cores this process may run on, found once: `available_parallelism` reads the cgroup
/// CPU limit files on every call, which cost ~5% of a small instant query.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |c| c.get()))
}

/// Runs `work` on the calling thread and, at the same time, on up to `threads - 1` pool
/// workers (those free to start before the caller's own call returns); returns when every
/// call that started has returned. `work` is expected to share its work out itself (an
/// atomic counter over items, say), so it does not matter how many calls run. A panic in
/// any call is raised again here, after all of them have returned.
pub fn broadcast(threads: usize, work: &(dyn Fn() + Sync)) {
    let pool = pool();
    if threads <= 1 || pool.workers.is_empty() {
        work();
        return;
    }
    // Workers call `work` only while the job is open (`Job::run`); `Closer` below, run when
    // this function returns or unwinds, closes it and waits until no worker is inside.
    // SAFETY: only the lifetime is erased, and the pointer is not used after the job closes.
    let erased: *const (dyn Fn() + Sync + 'static) = unsafe { std::mem::transmute(work) };
    let job = Arc::new(Job {
        work: erased,
        state: Mutex::new(JobState::default()),
        left: Condvar::new(),
    });
    for w in pool.helpers_for(threads - 1) {
        w.post(Arc::clone(&job));
    }
    let closer = Closer(&job);
    work();
    drop(closer);
    let panic = job.state.lock().panic.take();
    if let Some(panic) = panic {
        std::panic::resume_unwind(panic);
    }
}

/// One part of a parallel section, boxed so that parts made by different code can share a list.
pub(crate) type ParallelPart<T> = Box<dyn FnOnce() -> T + Send>;

/// Runs `parts` on up to as many threads (the caller and pool workers, see [`broadcast`]),
/// each thread taking the next part as soon as it is free; returns their results in order.
/// A part that panics makes this panic with the same payload.
pub fn run_parallel<T: Send, F: FnOnce() -> T + Send>(parts: Vec<F>) -> Vec<T> {
    let n = parts.len();
    if n <= 1 {
        return parts.into_iter().map(|f| f()).collect();
    }
    let parts: Vec<Mutex<Option<F>>> = parts.into_iter().map(|f| Mutex::new(Some(f))).collect();
    let results: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    broadcast(n, &|| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = parts.get(i) else {
            return;
        };
        if let Some(f) = slot.lock().take() {
            let r = f();
            *results[i].lock() = Some(r);
        }
    });
    let out: Vec<T> = results.into_iter().filter_map(|r| r.into_inner()).collect();
    assert_eq!(out.len(), n, "a parallel part was lost");
    out
}

/// Asks every pool worker that ran a job since it last ran the idle hook
/// ([`crate::querier::thread_idle`]) to run it once it has nothing to do, without waiting:
/// for the server after a query, once the series the workers built have been freed by other
/// threads (memory an allocator gives back only when its owning thread looks at it). A query
/// that used no worker wakes nothing. Does nothing before the pool has started.
pub fn pool_idle() {
    let Some(pool) = POOL.get() else {
        return;
    };
    for w in &pool.workers {
        let mut m = w.mailbox.lock();
        if m.dirty {
            m.dirty = false;
            m.collect = true;
            w.wake.notify_one();
        }
    }
}

/// One parallel section: the caller's work, shared with the workers it was posted to.
struct Job {
    /// The caller's work; valid while the job is open (see [`broadcast`]).
    work: *const (dyn Fn() + Sync),
    state: Mutex<JobState>,
    /// Signalled when the last worker inside a closed job leaves it.
    left: Condvar,
}

// SAFETY: `work` points to a `Sync` closure, called only while the job is open (see
// `broadcast`); the rest is behind a mutex.
unsafe impl Send for Job {}
// SAFETY: as for `Send`.
unsafe impl Sync for Job {}

#[derive(Default)]
struct JobState {
    /// The caller has finished: workers that have not entered must not.
    closed: bool,
    /// Workers inside the job.
    active: usize,
    /// The first panic of a worker's call.
    panic: Option<Box<dyn Any + Send>>,
}

impl Job {
    /// A worker's turn at the job: runs the work unless the caller has already closed it.
    fn run(&self) {
        {
            let mut s = self.state.lock();
            if s.closed {
                return;
            }
            s.active += 1;
        }
        // SAFETY: the job is open and this worker is counted in `active`, so the caller is
        // still inside `broadcast` and `work` still points to its closure.
        let work = unsafe { &*self.work };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let mut s = self.state.lock();
        s.active -= 1;
        if let Err(p) = r {
            s.panic.get_or_insert(p);
        }
        if s.closed && s.active == 0 {
            self.left.notify_all();
        }
    }
}

/// Closes a job when dropped (also while the caller unwinds) and waits for the workers
/// inside it to leave.
struct Closer<'a>(&'a Job);

impl Drop for Closer<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock();
        s.closed = true;
        while s.active > 0 {
            self.0.left.wait(&mut s);
        }
    }
}

/// A pool worker: its queue of posted jobs and the core it is pinned to.
struct Worker {
    mailbox: Mutex<Mailbox>,
    wake: Condvar,
    /// The core this worker runs on, when pinned.
    cpu: Option<usize>,
    /// Inside a job or about to take one (a hint for [`Pool::helpers_for`]: a job posted to a
    /// busy worker may start late).
    busy: AtomicBool,
}

#[derive(Default)]
struct Mailbox {
    jobs: VecDeque<Arc<Job>>,
    /// Ran a job since it last ran the idle hook.
    dirty: bool,
    /// [`pool_idle`] asked for the idle hook.
    collect: bool,
}

impl Worker {
    fn post(&self, job: Arc<Job>) {
        self.busy.store(true, Ordering::Relaxed);
        self.mailbox.lock().jobs.push_back(job);
        self.wake.notify_one();
    }
}

struct Pool {
    /// [`WORKERS_PER_CORE`] per core, those of one core next to each other.
    workers: Vec<Worker>,
    /// Where the next caller that cannot tell its core starts looking for workers.
    rotor: AtomicUsize,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Workers per core. More than one, so that parallel work started inside a part (a
/// selection window read while the evaluation's parts run) finds a free worker on the other
/// cores while their first worker waits inside the outer part.
const WORKERS_PER_CORE: usize = 2;

impl Pool {
    /// Up to `n` workers to help a caller, each on a different core than the caller's and
    /// than each other's (a worker on the caller's core could only start once the caller
    /// blocks): per core, a worker not busy if there is one. Cores are taken in turn from
    /// the one after the caller's, so that concurrent callers spread.
    fn helpers_for(&self, n: usize) -> Vec<&Worker> {
        let cores = self.workers.len() / WORKERS_PER_CORE;
        let group = |k: usize| &self.workers[k * WORKERS_PER_CORE..(k + 1) * WORKERS_PER_CORE];
        let here = current_cpu();
        let start = match here {
            Some(c) => (0..cores)
                .position(|k| group(k)[0].cpu == Some(c))
                .map_or(0, |i| i + 1),
            None => self.rotor.fetch_add(1, Ordering::Relaxed),
        };
        (0..cores)
            .map(|k| group((start + k) % cores))
            .filter(|g| g[0].cpu.is_none() || g[0].cpu != here)
            .take(n)
            .map(|g| {
                g.iter()
                    .find(|w| !w.busy.load(Ordering::Relaxed))
                    .unwrap_or(&g[0])
            })
            .collect()
    }
}

/// The pool, started on first use.
fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let ncores = cores().clamp(1, MAX_WORKERS);
        let cpus = pin_targets(ncores);
        let n = ncores * WORKERS_PER_CORE;
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            workers.push(Worker {
                mailbox: Mutex::new(Mailbox::default()),
                wake: Condvar::new(),
                cpu: cpus.as_ref().map(|c| c[i / WORKERS_PER_CORE]),
                busy: AtomicBool::new(false),
            });
        }
        // Each thread looks itself up in the pool, once this initialization has finished.
        for i in 0..n {
            let spawned = std::thread::Builder::new()
                .name(format!("ignis-worker-{i}"))
                .spawn(move || worker_loop(i));
            if let Err(e) = spawned {
                tracing::warn!(err = %e, "cannot start a worker thread");
                // Whole cores only: `helpers_for` takes the workers a core at a time.
                workers.truncate(i - i % WORKERS_PER_CORE);
                break;
            }
        }
        Pool {
            workers,
            rotor: AtomicUsize::new(0),
        }
    })
}

/// The loop of worker `i`: pins itself, then runs posted jobs and, when [`pool_idle`]
/// asked it to and no job is waiting, the idle hook.
fn worker_loop(i: usize) {
    let pool = pool();
    let me = &pool.workers[i];
    if let Some(cpu) = me.cpu {
        pin_to(cpu);
    }
    let mut m = me.mailbox.lock();
    loop {
        if let Some(job) = m.jobs.pop_front() {
            me.busy.store(true, Ordering::Relaxed);
            m.dirty = true;
            drop(m);
            job.run();
            m = me.mailbox.lock();
        } else if m.collect {
            m.collect = false;
            drop(m);
            crate::querier::thread_idle();
            m = me.mailbox.lock();
        } else {
            me.busy.store(false, Ordering::Relaxed);
            me.wake.wait(&mut m);
        }
    }
}

/// The cores to pin `n` workers to: the first `n` this process may run on, when its CPU
/// mask holds as many cores as it may use (under a CPU quota smaller than the mask, the
/// workers are left to the scheduler). `IGNIS_POOL_PIN=0` turns pinning off.
fn pin_targets(n: usize) -> Option<Vec<usize>> {
    if std::env::var("IGNIS_POOL_PIN").is_ok_and(|v| v == "0") {
        return None;
    }
    let allowed = allowed_cpus()?;
    (allowed.len() == cores() && allowed.len() >= n).then(|| allowed[..n].to_vec())
}

#[cfg(target_os = "linux")]
fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: `sched_getaffinity` writes at most `size_of::<cpu_set_t>()` bytes into `set`.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        set
    };
    // SAFETY: `CPU_ISSET` reads the set, with an index below its size.
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    Some(cpus)
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Option<Vec<usize>> {
    None
}

#[cfg(target_os = "linux")]
fn pin_to(cpu: usize) {
    // SAFETY: `set` is a zeroed `cpu_set_t` with one bit set; `sched_setaffinity` only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(not(target_os = "linux"))]
fn pin_to(_cpu: usize) {}

/// The core the calling thread runs on (a hint: it may move right after).
#[cfg(target_os = "linux")]
fn current_cpu() -> Option<usize> {
    // SAFETY: `sched_getcpu` takes no arguments and only returns a number.
    let c = unsafe { libc::sched_getcpu() };
    usize::try_from(c).ok()
}

#[cfg(not(target_os = "linux"))]
fn current_cpu() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_parallel_keeps_order() {
        for round in 0..3usize {
            let parts: Vec<_> = (0..6usize).map(|i| move || i * 10 + round).collect();
            let got = run_parallel(parts);
            assert_eq!(got, (0..6).map(|i| i * 10 + round).collect::<Vec<_>>());
        }
        assert!(run_parallel(Vec::<fn() -> u8>::new()).is_empty());
    }

    #[test]
    fn parts_borrow_the_callers_stack_and_nest() {
        let data: Vec<u64> = (0..10_000).collect();
        let parts: Vec<_> = data
            .chunks(1000)
            .map(|c| {
                move || {
                    // A nested parallel section inside a part.
                    let halves: Vec<_> = c
                        .chunks(500)
                        .map(|h| move || h.iter().sum::<u64>())
                        .collect();
                    run_parallel(halves).into_iter().sum::<u64>()
                }
            })
            .collect();
        let total: u64 = run_parallel(parts).into_iter().sum();
        assert_eq!(total, data.iter().sum::<u64>());
    }

    #[test]
    fn broadcast_runs_on_workers_and_shares_items() {
        let next = AtomicUsize::new(0);
        let sum = AtomicUsize::new(0);
        let names = Mutex::new(Vec::new());
        broadcast(cores().min(MAX_WORKERS), &|| {
            names
                .lock()
                .push(std::thread::current().name().unwrap_or("").to_string());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 100_000 {
                    return;
                }
                sum.fetch_add(i, Ordering::Relaxed);
            }
        });
        assert_eq!(sum.into_inner(), (0..100_000).sum::<usize>());
        // Every call but the caller's ran on a worker.
        let names = names.into_inner();
        let here = std::thread::current().name().unwrap_or("").to_string();
        assert_eq!(names.iter().filter(|n| **n == here).count(), 1);
        assert!(names
            .iter()
            .all(|n| *n == here || n.starts_with("ignis-worker-")));
    }

    #[test]
    fn a_panicking_part_panics_the_caller_after_the_others_finish() {
        let finished = AtomicUsize::new(0);
        let parts: Vec<Box<dyn FnOnce() + Send + '_>> = (0..4)
            .map(|i| {
                let finished = &finished;
                Box::new(move || {
                    if i == 3 {
                        panic!("part {i} failed");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    finished.fetch_add(1, Ordering::Relaxed);
                }) as Box<dyn FnOnce() + Send + '_>
            })
            .collect();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_parallel(parts)));
        let msg = r.expect_err("the panic comes back to the caller");
        assert_eq!(
            msg.downcast_ref::<String>().map(String::as_str),
            Some("part 3 failed")
        );
        // No part still runs on the caller's stack once it has returned.
        let seen = finished.load(Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(finished.load(Ordering::Relaxed), seen);
    }

    /// Names of the threads the test hook ran on.
    static IDLE_CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn record_idle() {
        let name = std::thread::current().name().unwrap_or("").to_string();
        IDLE_CALLS.lock().push(name);
    }

    /// The workers that ran some of eight 20 ms parts.
    fn workers_that_ran_parts() -> Vec<String> {
        let parts: Vec<_> = (0..8)
            .map(|_| {
                || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    std::thread::current().name().unwrap_or("").to_string()
                }
            })
            .collect();
        let mut out: Vec<String> = run_parallel(parts)
            .into_iter()
            .filter(|n| n.starts_with("ignis-worker-"))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn pool_idle_runs_the_hook_once_on_every_worker_that_worked() {
        use crate::querier::{set_thread_idle_hook, thread_idle};
        if cores() < 2 {
            return; // no worker ever helps a caller on one core
        }
        let worked = workers_that_ran_parts();
        assert!(!worked.is_empty());
        // The only test that installs the hook.
        assert!(set_thread_idle_hook(record_idle));
        assert!(
            !set_thread_idle_hook(record_idle),
            "only the first hook is installed"
        );
        thread_idle();
        let me = std::thread::current().name().unwrap_or("").to_string();
        assert_eq!(*IDLE_CALLS.lock(), vec![me]);
        IDLE_CALLS.lock().clear();

        pool_idle();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let all_called = || {
            let calls = IDLE_CALLS.lock();
            worked.iter().all(|w| calls.contains(w))
        };
        while !all_called() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Every worker that ran a part ran the hook, once (other tests running parts at the
        // same time may have made more workers due one), and only workers did.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut calls = IDLE_CALLS.lock().clone();
        assert!(
            worked.iter().all(|w| calls.contains(w)),
            "{calls:?} {worked:?}"
        );
        assert!(calls.iter().all(|n| n.starts_with("ignis-worker-")));
        let n = calls.len();
        calls.sort();
        calls.dedup();
        assert_eq!(calls.len(), n, "a thread ran the hook twice");

        // The workers still help after going idle.
        assert!(!workers_that_ran_parts().is_empty());
    }

    /// Spins for `us` microseconds.
    fn busy(us: u64) {
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_micros(us) {
            std::hint::spin_loop();
        }
    }

    /// The measurement behind this module's choice (prints, asserts nothing about speed):
    /// 1 ms of work on the caller and 1 ms on a helper, after an idle gap, with the helper a
    /// scoped thread spawned for it and with the pool. `cargo test --release -p tsdb --lib
    /// helper_placement -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn helper_placement_after_an_idle_gap() {
        let median = |mut v: Vec<u128>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        for gap_ms in [0u64, 1, 5] {
            let gap = std::time::Duration::from_millis(gap_ms);
            let (mut spawned, mut pooled) = (Vec::new(), Vec::new());
            for _ in 0..300 {
                std::thread::sleep(gap);
                let t = std::time::Instant::now();
                std::thread::scope(|sc| {
                    sc.spawn(|| busy(1000));
                    busy(1000);
                });
                spawned.push(t.elapsed().as_micros());
                std::thread::sleep(gap);
                let t = std::time::Instant::now();
                run_parallel(vec![|| busy(1000), || busy(1000)]);
                pooled.push(t.elapsed().as_micros());
            }
            println!(
                "gap {gap_ms} ms: scoped thread {} µs, pool {} µs (median of 300)",
                median(spawned),
                median(pooled)
            );
        }
    }
}
