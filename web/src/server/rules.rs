//! Runs the rule groups of the loaded configuration's `rule_files`: each group is evaluated
//! at its interval (at Prometheus's per-group offset) through the server's query engine, and
//! recording-rule samples and `ALERTS`/`ALERTS_FOR_STATE` series are appended to storage.
//!
//! At server start the alerting rules' `for` state is restored from the stored
//! `ALERTS_FOR_STATE` series after each group's second evaluation (as Prometheus: the first
//! one may lack data), looking back `--rules.alert.for-outage-tolerance` and keeping
//! `--rules.alert.for-grace-period`. On a reload, rules of a group with the same file and name
//! keep their alerts. After every evaluation the alerts due under Prometheus's resend rules
//! (`--rules.alert.resend-delay`) go to the [`Notifier`] with the external labels and
//! `alert_relabel_configs` applied.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::state::SharedState;
use crate::api::engine::{QueryOpts, QueryValue};
use crate::config::Config;
use crate::notifier::Notifier;
use crate::relabel::RelabelConfig;
use crate::rules::alerting::AlertingRule;
use crate::rules::group::{Rule, RuleGroup};
use crate::rules::notify::to_api_alerts;

/// What the evaluation loops need of the configuration for notifying.
#[derive(Default)]
struct NotifyCfg {
    external_labels: Vec<(String, String)>,
    alert_relabel: Vec<RelabelConfig>,
}

/// The running rule groups, their evaluation tasks and the Alertmanager notifier.
#[derive(Default)]
pub struct RuleRunner {
    groups: Mutex<Vec<Arc<RuleGroup>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    notifier: std::sync::OnceLock<Arc<Notifier>>,
    notify_cfg: Arc<parking_lot::RwLock<NotifyCfg>>,
    started: std::sync::atomic::AtomicBool,
}

impl RuleRunner {
    /// The loaded groups.
    pub fn groups(&self) -> Vec<Arc<RuleGroup>> {
        self.groups.lock().clone()
    }

    /// The Alertmanager notifier.
    pub fn notifier(&self) -> &Arc<Notifier> {
        self.notifier
            .get_or_init(|| Notifier::new(crate::notifier::DEFAULT_CAPACITY))
    }

    /// Stops every evaluation task and the notifier.
    pub fn stop(&self) {
        for t in std::mem::take(&mut *self.tasks.lock()) {
            t.abort();
        }
        if let Some(n) = self.notifier.get() {
            n.stop();
        }
    }

    /// Replaces the running groups with those of `cfg`'s rule files and applies its
    /// `alerting` section. Files that fail to load are logged and skipped. The first call
    /// (server start) restores `for` state; later calls carry alerts over from the old groups.
    pub fn apply(&self, state: &SharedState, cfg: &Config) {
        for t in std::mem::take(&mut *self.tasks.lock()) {
            t.abort();
        }
        let first = !self.started.swap(true, std::sync::atomic::Ordering::SeqCst);
        let dir = state.config_dir();
        let notifier = self.notifier().clone();
        notifier.set_capacity(state.args.alertmanager_notification_queue_capacity);
        notifier.apply(cfg, &dir);
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
        *self.notify_cfg.write() = NotifyCfg {
            external_labels: ext.clone(),
            alert_relabel: cfg.alerting.alert_relabel_configs.clone(),
        };
        let old = self.groups();
        let mut groups = Vec::new();
        for f in files {
            let f = f.strip_prefix("./").map(|p| p.to_path_buf()).unwrap_or(f);
            match RuleGroup::load_file(&f, cfg.global.evaluation_interval(), &ext, "", !first) {
                Ok(gs) => groups.extend(gs.into_iter().map(Arc::new)),
                Err(errs) => {
                    tracing::error!(file = %f.display(), err = %errs.join("; "), "Failed to load rule file")
                }
            }
        }
        for g in &groups {
            if let Some(o) = old.iter().find(|o| o.file == g.file && o.name == g.name) {
                copy_group_state(o, g);
            }
        }
        let mut tasks = self.tasks.lock();
        for g in &groups {
            tasks.push(tokio::spawn(run_group(
                state.clone(),
                g.clone(),
                first,
                notifier.clone(),
                self.notify_cfg.clone(),
            )));
        }
        *self.groups.lock() = groups;
    }
}

/// Alerting rules of `new` with the same name, expression and labels as one in `old` take
/// over its alerts.
fn copy_group_state(old: &RuleGroup, new: &RuleGroup) {
    let olds: Vec<&AlertingRule> = old.alerting_rules().collect();
    for r in new.rules.iter() {
        if let Rule::Alerting(a) = r {
            if let Some(o) = olds
                .iter()
                .find(|o| o.name() == a.name() && o.expr() == a.expr() && o.labels() == a.labels())
            {
                a.copy_state_from(o);
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn run_group(
    state: SharedState,
    group: Arc<RuleGroup>,
    mut should_restore: bool,
    notifier: Arc<Notifier>,
    ncfg: Arc<parking_lot::RwLock<NotifyCfg>>,
) {
    let iv = (group.interval.as_millis() as i64).max(1);
    let mut next = group.eval_timestamp(now_ms()) + iv;
    let mut evals = 0u32;
    loop {
        let wait = next - now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        let ts = next;
        next += iv;
        let (st, g) = (state.clone(), group.clone());
        let restore_now = should_restore && evals >= 1;
        let (n2, c2) = (notifier.clone(), ncfg.clone());
        let _ = tokio::task::spawn_blocking(move || {
            eval_once(&st, &g, ts);
            send_alerts(&st, &g, ts, &n2, &c2.read());
            if restore_now {
                restore_for_state(&st, &g, now_ms());
            }
        })
        .await;
        if state.storage.is_ready() {
            evals += 1;
        }
        if restore_now {
            should_restore = false;
        }
        let now = now_ms();
        if next <= now {
            // Missed iterations are skipped, as in Prometheus.
            next = group.eval_timestamp(now) + iv;
        }
    }
}

/// Hands the alerts of `group` due at `ts` to the notifier.
fn send_alerts(state: &SharedState, group: &RuleGroup, ts: i64, n: &Notifier, cfg: &NotifyCfg) {
    let resend = state.args.rules_alert_resend_delay.as_millis() as i64;
    let iv = group.interval.as_millis() as i64;
    let url = external_url(state);
    for rule in group.alerting_rules() {
        let due = rule.alerts_to_send(ts, resend, iv);
        if due.is_empty() {
            continue;
        }
        n.send(to_api_alerts(
            &due,
            rule.expr(),
            &url,
            &cfg.external_labels,
            &cfg.alert_relabel,
        ));
    }
}

/// The URL alerts link back to: `http://<listen address>` with a wildcard host replaced by
/// this host's name, as Prometheus's default `--web.external-url`.
fn external_url(state: &SharedState) -> String {
    let addr = &state.args.listen_address;
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "9090"));
    let host = if host.is_empty() || host == "0.0.0.0" || host == "[::]" {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    } else {
        host.to_string()
    };
    format!("http://{host}:{port}")
}

/// Restores the `for` state of `group`'s alerting rules from the stored `ALERTS_FOR_STATE`
/// series at `ts` (ms).
pub fn restore_for_state(state: &SharedState, group: &RuleGroup, ts: i64) {
    let tolerance = state.args.rules_alert_for_outage_tolerance.as_millis() as i64;
    let grace = state.args.rules_alert_for_grace_period.as_millis() as i64;
    let querier = match state.storage.queryable().querier(ts - tolerance, ts) {
        Ok(q) => q,
        Err(e) => {
            tracing::error!(group = %group.name, err = %e, "Failed to get Querier to restore for state");
            for r in group.alerting_rules() {
                r.set_restored(true);
            }
            return;
        }
    };
    let lookup = |ls: &tsdb::Labels| -> Option<(i64, f64)> {
        let matchers: Vec<tsdb::labels::Matcher> = ls
            .iter()
            .map(|l| tsdb::labels::Matcher::equal(&l.name, &l.value))
            .collect();
        let set = querier.select(false, None, &matchers);
        for s in set {
            let Ok(s) = s else { continue };
            if s.labels().len() != matchers.len() {
                continue;
            }
            let mut it = s.iter();
            let mut last = None;
            while it.next() != tsdb::chunkenc::ValueType::None {
                last = Some(it.at());
            }
            return last.filter(|(_, v)| !tsdb::chunkenc::is_stale_nan(*v));
        }
        None
    };
    for r in group.alerting_rules() {
        r.restore_for_state(ts, grace, &lookup);
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
