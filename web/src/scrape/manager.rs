//! The scrape manager: one tokio task per target, created, restarted and stopped as the
//! configuration and the discovered targets change.
//!
//! A loop waits for its target's offset within the interval (see [`Target::offset`]), then
//! scrapes every interval: fetch ([`super::http`]), append ([`ScrapeState::scrape`]), update
//! the target's health and metadata. When a target disappears from discovery or its job from
//! the configuration, the loop ends by writing staleness markers for all its series; when only
//! the job's settings change, the loop is restarted without them; at shutdown ([`stop`])
//! loops end without markers, as in Prometheus.
//!
//! [`stop`]: ScrapeManager::stop

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tsdb::labels::Labels;

use super::append::ScrapeState;
use super::http;
use super::target::{Health, ScrapeJob, Target, TargetMetadata, TargetStatus};
use crate::server::storage::SharedStorage;

/// How a loop is told to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Run,
    /// End and write staleness markers (target gone).
    Stale,
    /// End quietly (reload with new settings, shutdown).
    Quiet,
}

/// What a loop shares with the manager.
struct LoopShared {
    status: RwLock<TargetStatus>,
    metadata: RwLock<Arc<TargetMetadata>>,
}

struct LoopHandle {
    target: Target,
    shared: Arc<LoopShared>,
    stop: watch::Sender<Stop>,
    task: tokio::task::JoinHandle<()>,
}

impl LoopHandle {
    fn stop(&self, how: Stop) {
        let _ = self.stop.send(how);
    }
}

#[derive(Default)]
struct Pool {
    job: Option<Arc<ScrapeJob>>,
    /// Target label sets (relabeled, discovered) as last given to `set_targets`.
    targets: Vec<(Labels, Labels)>,
    /// Running loops keyed by URL and target labels.
    loops: BTreeMap<(String, Labels), LoopHandle>,
    /// Why some target label sets were dropped (for logs/tests).
    dropped: Vec<String>,
    /// Discovered label sets of the targets `relabel_configs` dropped (`droppedTargets`).
    relabel_dropped: Vec<Labels>,
}

/// Runs the scrape loops of every job and target.
pub struct ScrapeManager {
    storage: SharedStorage,
    pools: Mutex<BTreeMap<String, Pool>>,
    /// Tasks of loops told to stop, until [`ScrapeManager::wait_stopped`] collects them.
    stopping: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Service-discovery tasks of the applied `prometheus.yml` (see `apply_prometheus_config`).
    pub(super) discovery: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn now_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl ScrapeManager {
    /// A manager appending to `storage`. Loops start on [`apply_config`] plus [`set_targets`];
    /// both must be called inside a tokio runtime.
    ///
    /// [`apply_config`]: ScrapeManager::apply_config
    /// [`set_targets`]: ScrapeManager::set_targets
    pub fn new(storage: SharedStorage) -> Arc<Self> {
        Arc::new(ScrapeManager {
            storage,
            pools: Mutex::new(BTreeMap::new()),
            stopping: Mutex::new(Vec::new()),
            discovery: Mutex::new(Vec::new()),
        })
    }

    /// Applies a (re)loaded configuration: loops of removed jobs stop with staleness markers,
    /// loops of jobs whose settings changed restart, new jobs wait for their targets.
    pub fn apply_config(&self, jobs: &[ScrapeJob]) {
        let mut pools = self.pools.lock();
        let names: HashMap<&str, &ScrapeJob> =
            jobs.iter().map(|j| (j.job_name.as_str(), j)).collect();
        let gone: Vec<String> = pools
            .keys()
            .filter(|n| !names.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(pool) = pools.remove(&name) {
                for h in pool.loops.into_values() {
                    self.retire(h, Stop::Stale);
                }
            }
        }
        for job in jobs {
            let pool = pools.entry(job.job_name.clone()).or_default();
            let same = pool.job.as_ref().is_some_and(|j| j.same_settings(job));
            if same {
                continue;
            }
            pool.job = Some(Arc::new(job.clone()));
            for h in std::mem::take(&mut pool.loops).into_values() {
                self.retire(h, Stop::Quiet);
            }
            let targets = pool.targets.clone();
            self.sync_pool(pool, targets);
        }
    }

    /// Sets the targets of `job_name` (label sets after `relabel_configs`, with
    /// `__address__`, …): new targets start, vanished ones stop with staleness markers.
    /// Label sets that do not make a target are dropped with a warning.
    pub fn set_targets(&self, job_name: &str, targets: Vec<Labels>) {
        let targets = targets.into_iter().map(|l| (l.clone(), l)).collect();
        self.set_targets_discovered(job_name, targets);
    }

    /// As [`set_targets`](ScrapeManager::set_targets), each target with its labels before
    /// relabeling (shown as `discoveredLabels`).
    pub fn set_targets_discovered(&self, job_name: &str, targets: Vec<(Labels, Labels)>) {
        self.set_targets_and_dropped(job_name, targets, Vec::new());
    }

    /// As [`set_targets_discovered`](ScrapeManager::set_targets_discovered), plus the
    /// discovered labels of the targets that `relabel_configs` dropped (`droppedTargets`).
    pub fn set_targets_and_dropped(
        &self,
        job_name: &str,
        targets: Vec<(Labels, Labels)>,
        dropped: Vec<Labels>,
    ) {
        let mut pools = self.pools.lock();
        let pool = pools.entry(job_name.to_string()).or_default();
        pool.relabel_dropped = dropped;
        self.sync_pool(pool, targets);
    }

    /// The targets dropped by relabeling, by job: `(job, discovered labels)`, for
    /// `/api/v1/targets` (`droppedTargets`, `droppedTargetCounts`).
    pub fn dropped_targets(&self) -> Vec<(String, Vec<Labels>)> {
        let pools = self.pools.lock();
        pools
            .iter()
            .filter(|(_, p)| p.job.is_some())
            .map(|(name, p)| (name.clone(), p.relabel_dropped.clone()))
            .collect()
    }

    fn sync_pool(&self, pool: &mut Pool, targets: Vec<(Labels, Labels)>) {
        pool.targets = targets;
        let Some(job) = pool.job.clone() else { return };
        pool.dropped.clear();
        let mut want: BTreeMap<(String, Labels), Target> = BTreeMap::new();
        for (ls, discovered) in &pool.targets {
            match Target::from_labels(ls, &job.job_name) {
                Ok(mut t) => {
                    t.discovered = discovered.clone();
                    want.insert((t.url.clone(), t.labels.clone()), t);
                }
                Err(e) => {
                    tracing::warn!(job = %job.job_name, labels = %ls, err = %e, "dropping target");
                    pool.dropped.push(e);
                }
            }
        }
        let gone: Vec<(String, Labels)> = pool
            .loops
            .iter()
            .filter(|(k, h)| !want.contains_key(*k) || h.task.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(h) = pool.loops.remove(&k) {
                self.retire(h, Stop::Stale);
            }
        }
        for (k, t) in want {
            if let std::collections::btree_map::Entry::Vacant(e) = pool.loops.entry(k) {
                e.insert(self.spawn(Arc::clone(&job), t));
            }
        }
    }

    fn retire(&self, h: LoopHandle, how: Stop) {
        h.stop(how);
        let mut stopping = self.stopping.lock();
        stopping.retain(|t| !t.is_finished());
        stopping.push(h.task);
    }

    fn spawn(&self, job: Arc<ScrapeJob>, target: Target) -> LoopHandle {
        let shared = Arc::new(LoopShared {
            status: RwLock::new(TargetStatus {
                scrape_pool: job.job_name.clone(),
                scrape_url: target.url.clone(),
                labels: target.labels.clone(),
                discovered_labels: target.discovered.clone(),
                health: Health::Unknown,
                last_error: String::new(),
                last_scrape: None,
                last_scrape_duration: Duration::ZERO,
                scrape_interval: target.interval.unwrap_or(job.interval),
                scrape_timeout: target.timeout.unwrap_or(job.timeout),
            }),
            metadata: RwLock::new(Arc::new(TargetMetadata::new())),
        });
        let (tx, rx) = watch::channel(Stop::Run);
        let task = tokio::spawn(run_loop(
            Arc::clone(&self.storage),
            job,
            target.clone(),
            Arc::clone(&shared),
            rx,
        ));
        LoopHandle {
            target,
            shared,
            stop: tx,
            task,
        }
    }

    /// The state of every target, by job then URL, for `/api/v1/targets`.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let pools = self.pools.lock();
        pools
            .values()
            .flat_map(|p| p.loops.values())
            .map(|h| h.shared.status.read().clone())
            .collect()
    }

    /// Metadata of every target's metric families (target labels, metadata), for
    /// `/api/v1/targets/metadata` and `/api/v1/metadata`.
    pub fn metadata(&self) -> Vec<(Labels, Arc<TargetMetadata>)> {
        let pools = self.pools.lock();
        pools
            .values()
            .flat_map(|p| p.loops.values())
            .map(|h| {
                (
                    h.target.labels.clone(),
                    Arc::clone(&h.shared.metadata.read()),
                )
            })
            .collect()
    }

    /// Stops discovery and every loop without staleness markers (shutdown) and waits for the
    /// loops to end.
    pub async fn stop(&self) {
        for t in std::mem::take(&mut *self.discovery.lock()) {
            t.abort();
        }
        let handles: Vec<LoopHandle> = {
            let mut pools = self.pools.lock();
            pools
                .values_mut()
                .flat_map(|p| std::mem::take(&mut p.loops).into_values())
                .collect()
        };
        for h in handles {
            self.retire(h, Stop::Quiet);
        }
        self.wait_stopped().await;
    }

    /// Waits until the loops stopped so far have ended (their staleness markers written).
    pub async fn wait_stopped(&self) {
        let tasks = std::mem::take(&mut *self.stopping.lock());
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn run_loop(
    storage: SharedStorage,
    job: Arc<ScrapeJob>,
    target: Target,
    shared: Arc<LoopShared>,
    mut stop: watch::Receiver<Stop>,
) {
    let now_nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let interval = target
        .interval
        .unwrap_or(job.interval)
        .max(Duration::from_millis(1));
    let offset = target.offset(interval, now_nanos);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut state = ScrapeState::new(target.labels.clone());
    let timeout = target.timeout.unwrap_or(job.timeout).min(interval);
    let req = http::Request {
        url: &target.url,
        timeout,
        body_size_limit: job.body_size_limit,
        headers: &job.headers,
        tls: job.tls.as_deref(),
    };
    'run: loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break 'run,
        }
        let started = SystemTime::now();
        let clock = Instant::now();
        let fetched = tokio::select! {
            r = http::fetch(&req) => r,
            _ = stop.changed() => break 'run,
        };
        let duration = clock.elapsed();
        let body = match &fetched {
            Ok(r) => Ok((r.content_type.as_str(), r.body.as_slice())),
            Err(e) => Err(e.to_string()),
        };
        let out = state.scrape(
            &*storage,
            &job,
            body,
            now_ms(started),
            duration.as_secs_f64(),
        );
        {
            let mut st = shared.status.write();
            st.last_scrape = Some(started);
            st.last_scrape_duration = duration;
            match &out {
                Ok(_) => {
                    st.health = Health::Up;
                    st.last_error.clear();
                }
                Err(f) => {
                    st.health = Health::Down;
                    st.last_error.clone_from(&f.msg);
                }
            }
        }
        if let Err(f) = &out {
            tracing::debug!(url = %target.url, err = %f.msg, "scrape failed");
        }
        if let Some(m) = state.take_metadata_if_changed() {
            *shared.metadata.write() = Arc::new(m);
        }
    }
    let how = *stop.borrow();
    if how == Stop::Stale {
        state.stop(&*storage, now_ms(SystemTime::now()));
    }
}
