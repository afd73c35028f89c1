//! Runs the rule groups of the loaded configuration's `rule_files`: each group is evaluated
//! at its interval (at Prometheus's per-group offset) through the server's query engine, and
//! recording-rule samples and `ALERTS`/`ALERTS_FOR_STATE` series are appended to storage.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::state::SharedState;
use crate::api::engine::{QueryOpts, QueryValue};
use crate::config::Config;
use crate::rules::group::RuleGroup;

/// The running rule groups and their evaluation tasks.
#[derive(Default)]
pub struct RuleRunner {
    groups: Mutex<Vec<Arc<RuleGroup>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl RuleRunner {
    /// The loaded groups.
    pub fn groups(&self) -> Vec<Arc<RuleGroup>> {
        self.groups.lock().clone()
    }

    /// Stops every evaluation task.
    pub fn stop(&self) {
        for t in std::mem::take(&mut *self.tasks.lock()) {
            t.abort();
        }
    }

    /// Replaces the running groups with those of `cfg`'s rule files. Files that fail to
    /// load are logged and skipped.
    pub fn apply(&self, state: &SharedState, cfg: &Config) {
        self.stop();
        let dir = state.config_dir();
        let files = match cfg.rule_file_paths(&dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(err = %e, "Failed to resolve rule_files");
                Vec::new()
            }
        };
        let ext: Vec<(String, String)> = cfg
            .global
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut groups = Vec::new();
        for f in files {
            match RuleGroup::load_file(&f, cfg.global.evaluation_interval(), &ext, "", true) {
                Ok(gs) => groups.extend(gs.into_iter().map(Arc::new)),
                Err(errs) => {
                    tracing::error!(file = %f.display(), err = %errs.join("; "), "Failed to load rule file")
                }
            }
        }
        let mut tasks = self.tasks.lock();
        for g in &groups {
            tasks.push(tokio::spawn(run_group(state.clone(), g.clone())));
        }
        *self.groups.lock() = groups;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn run_group(state: SharedState, group: Arc<RuleGroup>) {
    let iv = (group.interval.as_millis() as i64).max(1);
    let mut next = group.eval_timestamp(now_ms()) + iv;
    loop {
        let wait = next - now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        let ts = next;
        next += iv;
        let (st, g) = (state.clone(), group.clone());
        let _ = tokio::task::spawn_blocking(move || eval_once(&st, &g, ts)).await;
        let now = now_ms();
        if next <= now {
            // Missed iterations are skipped, as in Prometheus.
            next = group.eval_timestamp(now) + iv;
        }
    }
}

/// Evaluates `group` once at `ts` and appends what it writes.
pub fn eval_once(state: &SharedState, group: &RuleGroup, ts: i64) {
    if !state.storage.is_ready() {
        return;
    }
    let opts = QueryOpts::default();
    let query = |q: &str, t: i64| -> Result<Vec<query::Sample>, String> {
        let out = state
            .engine
            .instant_query(state.storage.queryable(), q, t, &opts)
            .map_err(|e| e.to_string())?;
        match out.value {
            QueryValue::Vector(v) => Ok(v
                .into_iter()
                .map(|s| query::Sample {
                    metric: s.labels,
                    t: s.t,
                    v: s.v,
                })
                .collect()),
            QueryValue::Scalar(t, v) => Ok(vec![query::Sample {
                metric: tsdb::Labels::default(),
                t,
                v,
            }]),
            _ => Err("rule result is not a vector or scalar".to_string()),
        }
    };
    let mut app = state.storage.appender();
    let res = group.eval_with(ts, &query, &mut |samples| {
        for s in samples {
            if let Err(e) = app.append(&s.metric, s.t, s.v) {
                tracing::warn!(group = %group.name, err = %e, "Rule sample append failed");
            }
        }
    });
    if let Err(e) = app.commit() {
        tracing::warn!(group = %group.name, err = %e, "Rule commit failed");
    }
    for (_, name, err) in res.errors {
        tracing::warn!(group = %group.name, rule = %name, err = %err, "Evaluating rule failed");
    }
}
