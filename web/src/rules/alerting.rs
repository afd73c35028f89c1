//! Alerting rules: the per-alert state machine (inactive → pending → firing → inactive
//! (resolved)), `for` and `keep_firing_for`, template expansion of labels and annotations, the
//! `ALERTS` / `ALERTS_FOR_STATE` series each evaluation writes, and the restore of `for` state
//! after a restart, all as Prometheus does them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use query::Sample;
use tsdb::{Label, Labels};

use crate::template::{expand_alert_template, AlertTemplateData, QueryFn};

/// How long a resolved alert is kept so that it is re-sent as resolved (15 minutes).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;
/// Series of active alerts.
pub const ALERTS_METRIC: &str = "ALERTS";
/// Series holding each active alert's `activeAt` (Unix seconds), for restoring `for` state.
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";

/// The state of one alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertState {
    /// Not active (resolved).
    Inactive,
    /// Active, waiting for `for` to pass.
    Pending,
    /// Active and firing.
    Firing,
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        })
    }
}

/// One alert of a rule, identified by its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Current state.
    pub state: AlertState,
    /// Identifying labels (series labels without `__name__`, rule labels, `alertname`).
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: Labels,
    /// The value of the sample that last made it active.
    pub value: f64,
    /// When it became active (ms).
    pub active_at: i64,
    /// When it started firing (ms).
    pub fired_at: Option<i64>,
    /// When it was resolved (ms).
    pub resolved_at: Option<i64>,
    /// When its condition cleared while `keep_firing_for` holds it firing (ms).
    pub keep_firing_since: Option<i64>,
    /// When it was last sent to Alertmanager (ms), kept for the notifier's resend rules.
    pub last_sent_at: Option<i64>,
    /// Until when Alertmanager should consider it firing without hearing again (ms).
    pub valid_until: Option<i64>,
}

impl Alert {
    /// Prometheus's `needsSending`: never while pending; at once when resolved since the last
    /// send; otherwise when `resend_delay_ms` has passed since the last send.
    pub fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last = self.last_sent_at.unwrap_or(i64::MIN);
        if self.resolved_at.is_some_and(|r| r > last) {
            return true;
        }
        self.last_sent_at.is_none_or(|l| l + resend_delay_ms < ts)
    }
}

/// An alerting rule and its active alerts.
#[derive(Debug)]
pub struct AlertingRule {
    name: String,
    expr: String,
    hold_ms: i64,
    keep_firing_for_ms: i64,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    external_labels: Vec<(String, String)>,
    external_url: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    active: HashMap<Labels, Alert>,
    restored: bool,
    health_err: Option<String>,
}

/// The default outage tolerance when restoring `for` state (1h).
pub const OUTAGE_TOLERANCE_MS: i64 = 3_600_000;
/// The default grace period after a restore before a restored alert may fire (10m).
pub const FOR_GRACE_PERIOD_MS: i64 = 600_000;

impl AlertingRule {
    /// A rule; `restored` false means it writes no `ALERTS` series until
    /// [`AlertingRule::restore_for_state`] or [`AlertingRule::set_restored`] runs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        expr: &str,
        hold_ms: i64,
        keep_firing_for_ms: i64,
        labels: Vec<(String, String)>,
        annotations: Vec<(String, String)>,
        external_labels: Vec<(String, String)>,
        external_url: &str,
        restored: bool,
    ) -> Self {
        AlertingRule {
            name: name.to_string(),
            expr: expr.to_string(),
            hold_ms,
            keep_firing_for_ms,
            labels,
            annotations,
            external_labels,
            external_url: external_url.to_string(),
            inner: Mutex::new(Inner {
                restored,
                ..Default::default()
            }),
        }
    }

    /// The alert name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The expression.
    pub fn expr(&self) -> &str {
        &self.expr
    }
    /// `for` in ms.
    pub fn hold_ms(&self) -> i64 {
        self.hold_ms
    }
    /// `keep_firing_for` in ms.
    pub fn keep_firing_for_ms(&self) -> i64 {
        self.keep_firing_for_ms
    }
    /// The rule's label templates.
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }
    /// The rule's annotation templates.
    pub fn annotations(&self) -> &[(String, String)] {
        &self.annotations
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the rule as restored: it writes `ALERTS` series from now on.
    pub fn set_restored(&self, v: bool) {
        self.lock().restored = v;
    }

    /// The last evaluation error, if the last evaluation failed.
    pub fn last_error(&self) -> Option<String> {
        self.lock().health_err.clone()
    }

    /// Records the outcome of an evaluation that failed before the state machine ran.
    pub fn set_last_error(&self, e: Option<String>) {
        self.lock().health_err = e;
    }

    /// Whether the rule writes `ALERTS` series (its `for` state was restored or needs none).
    pub fn is_restored(&self) -> bool {
        self.lock().restored
    }

    /// The alerts that are pending or firing (and resolved ones still retained), sorted by
    /// labels.
    pub fn active_alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.lock().active.values().cloned().collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// The rule's overall state: firing if any alert fires, else pending if any is pending.
    pub fn state(&self) -> AlertState {
        let g = self.lock();
        let mut s = AlertState::Inactive;
        for a in g.active.values() {
            if a.state == AlertState::Firing {
                return AlertState::Firing;
            }
            if a.state == AlertState::Pending {
                s = AlertState::Pending;
            }
        }
        s
    }

    /// The alerts to send to Alertmanager at `ts` under Prometheus's resend rules, marked as
    /// sent: firing alerts every `resend_delay_ms` (1m by default), resolved ones once more
    /// right after resolving. Each gets `valid_until = ts + 4 * max(interval, resend_delay)`.
    pub fn alerts_to_send(&self, ts: i64, resend_delay_ms: i64, interval_ms: i64) -> Vec<Alert> {
        let mut g = self.lock();
        let mut out = Vec::new();
        for a in g.active.values_mut() {
            if a.needs_sending(ts, resend_delay_ms) {
                a.last_sent_at = Some(ts);
                a.valid_until = Some(ts + 4 * interval_ms.max(resend_delay_ms));
                out.push(a.clone());
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// One evaluation at `ts` (ms) on the rule expression's result `vector`; returns the
    /// `ALERTS` and `ALERTS_FOR_STATE` samples to write. `limit` > 0 caps the number of
    /// pending/firing alerts (exceeding it clears them and fails). `query` backs the template
    /// `query` function.
    pub fn eval(
        &self,
        ts: i64,
        vector: Vec<Sample>,
        limit: usize,
        query: Option<QueryFn<'_>>,
    ) -> Result<Vec<Sample>, String> {
        let r = self.eval_inner(ts, vector, limit, query);
        self.lock().health_err = r.as_ref().err().cloned();
        r
    }

    fn eval_inner(
        &self,
        ts: i64,
        vector: Vec<Sample>,
        limit: usize,
        query: Option<QueryFn<'_>>,
    ) -> Result<Vec<Sample>, String> {
        let mut fresh: HashMap<Labels, Alert> = HashMap::with_capacity(vector.len());
        for s in vector {
            let series: Vec<(String, String)> = s
                .metric
                .iter()
                .filter(|l| l.name != tsdb::labels::METRIC_NAME)
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            let data = AlertTemplateData {
                labels: series.clone(),
                external_labels: self.external_labels.clone(),
                external_url: self.external_url.clone(),
                value: s.v,
            };
            let expand = |text: &str| -> String {
                expand_alert_template(text, &data, query)
                    .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
            };
            let mut ls: Vec<Label> = series.iter().map(|(k, v)| Label::new(k, v)).collect();
            for (k, t) in &self.labels {
                ls.push(Label::new(k, expand(t)));
            }
            ls.push(Label::new("alertname", &self.name));
            let labels = Labels::new(ls);
            let annotations = Labels::new(
                self.annotations
                    .iter()
                    .map(|(k, t)| Label::new(k, expand(t)))
                    .collect(),
            );
            if fresh.contains_key(&labels) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            fresh.insert(
                labels.clone(),
                Alert {
                    state: AlertState::Pending,
                    labels,
                    annotations,
                    value: s.v,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    keep_firing_since: None,
                    last_sent_at: None,
                    valid_until: None,
                },
            );
        }

        let mut g = self.lock();
        let in_result: std::collections::HashSet<Labels> = fresh.keys().cloned().collect();
        for (k, a) in fresh {
            match g.active.get_mut(&k) {
                Some(old) if old.state != AlertState::Inactive => {
                    old.value = a.value;
                    old.annotations = a.annotations;
                }
                _ => {
                    g.active.insert(k, a);
                }
            }
        }

        let mut out = Vec::new();
        let mut n_active = 0usize;
        let restored = g.restored;
        let mut remove = Vec::new();
        for (k, a) in g.active.iter_mut() {
            if !in_result.contains(k) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    if ts - since < self.keep_firing_for_ms {
                        keep_firing = true;
                    }
                }
                if a.state == AlertState::Pending
                    || a.resolved_at
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    remove.push(k.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            n_active += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= self.hold_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            if restored {
                out.push(Sample {
                    metric: a
                        .labels
                        .with(tsdb::labels::METRIC_NAME, ALERTS_METRIC)
                        .with("alertstate", &a.state.to_string()),
                    t: ts,
                    v: 1.0,
                });
                out.push(Sample {
                    metric: a
                        .labels
                        .with(tsdb::labels::METRIC_NAME, ALERTS_FOR_STATE_METRIC),
                    t: ts,
                    v: (a.active_at.div_euclid(1000)) as f64,
                });
            }
        }
        for k in remove {
            g.active.remove(&k);
        }
        if limit > 0 && n_active > limit {
            g.active.clear();
            return Err(format!("exceeded limit of {limit} with {n_active} alerts"));
        }
        out.sort_by(|a, b| a.metric.cmp(&b.metric));
        Ok(out)
    }

    /// Restores `for` state after a restart, at `ts` (ms), as Prometheus: rules whose `for` is
    /// shorter than `grace_ms` are only marked restored. Otherwise, for each active alert,
    /// `last_for_state(labels of its ALERTS_FOR_STATE series)` gives the newest stored
    /// `ALERTS_FOR_STATE` sample `(t ms, activeAt s)` (the caller looks back `outage_tolerance`
    /// and skips stale markers); the alert's `activeAt` is restored, then moved so that a pending
    /// alert does not fire before `grace_ms` has passed. Marks the rule restored.
    pub fn restore_for_state(
        &self,
        ts: i64,
        grace_ms: i64,
        last_for_state: &dyn Fn(&Labels) -> Option<(i64, f64)>,
    ) {
        let mut g = self.lock();
        g.restored = true;
        if self.hold_ms < grace_ms {
            return;
        }
        for a in g.active.values_mut() {
            let key = a
                .labels
                .with(tsdb::labels::METRIC_NAME, ALERTS_FOR_STATE_METRIC);
            let Some((t, v)) = last_for_state(&key) else {
                continue;
            };
            let mut restored_active = (v as i64) * 1000;
            let down_at = t.div_euclid(1000) * 1000;
            let spent = down_at - restored_active;
            let remaining = self.hold_ms - spent;
            if remaining <= 0 {
                // It was firing when the server stopped; the next evaluation decides.
            } else if remaining < grace_ms {
                restored_active = ts + grace_ms - self.hold_ms;
            } else {
                restored_active += ts - down_at;
            }
            a.active_at = restored_active;
        }
    }

    /// Takes over the alerts and restore flag of `old` (the same rule before a reload).
    pub fn copy_state_from(&self, old: &AlertingRule) {
        let o = old.lock();
        let (active, restored) = (o.active.clone(), o.restored);
        drop(o);
        let mut g = self.lock();
        g.active = active;
        g.restored = restored;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(hold: i64, keep: i64) -> AlertingRule {
        AlertingRule::new(
            "HighLoad",
            "load > 1",
            hold,
            keep,
            vec![("severity".into(), "page".into())],
            vec![(
                "summary".into(),
                "{{ $labels.instance }} at {{ $value }}".into(),
            )],
            vec![],
            "",
            true,
        )
    }

    fn v(val: f64) -> Vec<Sample> {
        vec![Sample {
            metric: Labels::from_pairs(&[("__name__", "load"), ("instance", "a")]),
            t: 0,
            v: val,
        }]
    }

    fn alerts_state(out: &[Sample]) -> Option<String> {
        out.iter()
            .find(|s| s.metric.get("__name__") == Some("ALERTS"))
            .and_then(|s| s.metric.get("alertstate").map(str::to_string))
    }

    #[test]
    fn pending_firing_resolved() {
        let r = rule(60_000, 0);
        let out = r.eval(0, v(2.0), 0, None).unwrap();
        assert_eq!(alerts_state(&out).as_deref(), Some("pending"));
        let fs = out
            .iter()
            .find(|s| s.metric.get("__name__") == Some("ALERTS_FOR_STATE"))
            .unwrap();
        assert_eq!(fs.v, 0.0);
        assert_eq!(fs.metric.get("alertname"), Some("HighLoad"));
        assert_eq!(fs.metric.get("severity"), Some("page"));
        let out = r.eval(30_000, v(3.0), 0, None).unwrap();
        assert_eq!(alerts_state(&out).as_deref(), Some("pending"));
        let out = r.eval(60_000, v(4.0), 0, None).unwrap();
        assert_eq!(alerts_state(&out).as_deref(), Some("firing"));
        let a = &r.active_alerts()[0];
        assert_eq!(a.annotations.get("summary"), Some("a at 4"));
        assert_eq!(a.fired_at, Some(60_000));
        // condition clears: resolved, no series written, alert kept for resending
        let out = r.eval(90_000, vec![], 0, None).unwrap();
        assert!(out.is_empty());
        let a = &r.active_alerts()[0];
        assert_eq!(a.state, AlertState::Inactive);
        assert_eq!(a.resolved_at, Some(90_000));
        // dropped after the resolved retention
        r.eval(90_000 + RESOLVED_RETENTION_MS + 1, vec![], 0, None)
            .unwrap();
        assert!(r.active_alerts().is_empty());
    }

    #[test]
    fn pending_alert_that_clears_is_dropped() {
        let r = rule(60_000, 0);
        r.eval(0, v(2.0), 0, None).unwrap();
        r.eval(10_000, vec![], 0, None).unwrap();
        assert!(r.active_alerts().is_empty());
        // and starts over
        r.eval(20_000, v(2.0), 0, None).unwrap();
        assert_eq!(r.active_alerts()[0].active_at, 20_000);
    }

    #[test]
    fn zero_for_fires_at_once_and_keep_firing_for_holds() {
        let r = rule(0, 30_000);
        let out = r.eval(0, v(2.0), 0, None).unwrap();
        assert_eq!(alerts_state(&out).as_deref(), Some("firing"));
        let out = r.eval(10_000, vec![], 0, None).unwrap();
        assert_eq!(alerts_state(&out).as_deref(), Some("firing"));
        let out = r.eval(39_000, vec![], 0, None).unwrap();
        assert_eq!(alerts_state(&out).as_deref(), Some("firing"));
        let out = r.eval(40_000, vec![], 0, None).unwrap();
        assert!(out.is_empty());
        assert_eq!(r.active_alerts()[0].state, AlertState::Inactive);
    }

    #[test]
    fn limit_and_duplicates() {
        let r = rule(0, 0);
        let two = vec![
            Sample {
                metric: Labels::from_pairs(&[("instance", "a")]),
                t: 0,
                v: 1.0,
            },
            Sample {
                metric: Labels::from_pairs(&[("instance", "b")]),
                t: 0,
                v: 1.0,
            },
        ];
        let e = r.eval(0, two.clone(), 1, None).unwrap_err();
        assert!(e.contains("exceeded limit of 1 with 2 alerts"), "{e}");
        assert!(r.active_alerts().is_empty());
        let dup = vec![
            Sample {
                metric: Labels::from_pairs(&[("__name__", "x"), ("instance", "a")]),
                t: 0,
                v: 1.0,
            },
            Sample {
                metric: Labels::from_pairs(&[("__name__", "y"), ("instance", "a")]),
                t: 0,
                v: 1.0,
            },
        ];
        assert!(r
            .eval(0, dup, 0, None)
            .unwrap_err()
            .contains("same labelset"));
        assert!(r.last_error().is_some());
    }

    #[test]
    fn restore_shifts_active_at() {
        let hold = 30 * 60_000;
        let r = AlertingRule::new("A", "x", hold, 0, vec![], vec![], vec![], "", false);
        // first evaluation after restart: not restored yet, so no series
        let now = 10 * 3_600_000;
        assert!(r.eval(now, v(1.0), 0, None).unwrap().is_empty());
        // it had been pending for 5 minutes when the server went down 2 minutes ago
        let down = now - 2 * 60_000;
        let active = down - 5 * 60_000;
        r.restore_for_state(now, FOR_GRACE_PERIOD_MS, &|ls: &Labels| {
            assert_eq!(ls.get("__name__"), Some(ALERTS_FOR_STATE_METRIC));
            Some((down, (active / 1000) as f64))
        });
        // remaining 25m > grace: activeAt shifted by the 2m downtime
        assert_eq!(r.active_alerts()[0].active_at, active + 2 * 60_000);
        let out = r.eval(now + 15_000, v(1.0), 0, None).unwrap();
        assert_eq!(alerts_state(&out).as_deref(), Some("pending"));
    }

    #[test]
    fn restore_keeps_firing_active_at_applies_grace_and_skips_short_for() {
        let hold = 20 * 60_000;
        let now = 10 * 3_600_000;
        // was firing when the server went down: activeAt kept
        let r = AlertingRule::new("A", "x", hold, 0, vec![], vec![], vec![], "", false);
        r.eval(now, v(1.0), 0, None).unwrap();
        let down = now - 60_000;
        let active = down - 30 * 60_000;
        r.restore_for_state(now, FOR_GRACE_PERIOD_MS, &|_: &Labels| {
            Some((down, (active / 1000) as f64))
        });
        assert!(r.is_restored());
        assert_eq!(r.active_alerts()[0].active_at, active);
        let out = r.eval(now + 15_000, v(1.0), 0, None).unwrap();
        assert_eq!(alerts_state(&out).as_deref(), Some("firing"));

        // 5 minutes left (< 10m grace): fires no earlier than the grace period from now
        let r = AlertingRule::new("A", "x", hold, 0, vec![], vec![], vec![], "", false);
        r.eval(now, v(1.0), 0, None).unwrap();
        let active = down - 15 * 60_000;
        r.restore_for_state(now, FOR_GRACE_PERIOD_MS, &|_: &Labels| {
            Some((down, (active / 1000) as f64))
        });
        assert_eq!(
            r.active_alerts()[0].active_at,
            now + FOR_GRACE_PERIOD_MS - hold
        );

        // no stored state: the alert keeps the activeAt of its first evaluation
        let r = AlertingRule::new("A", "x", hold, 0, vec![], vec![], vec![], "", false);
        r.eval(now, v(1.0), 0, None).unwrap();
        r.restore_for_state(now + 1000, FOR_GRACE_PERIOD_MS, &|_: &Labels| None);
        assert_eq!(r.active_alerts()[0].active_at, now);

        // `for` shorter than the grace period: nothing restored, only marked restored
        let r = AlertingRule::new("A", "x", 60_000, 0, vec![], vec![], vec![], "", false);
        r.eval(now, v(1.0), 0, None).unwrap();
        r.restore_for_state(now, FOR_GRACE_PERIOD_MS, &|_: &Labels| {
            panic!("must not look up state")
        });
        assert!(r.is_restored());
        assert_eq!(r.active_alerts()[0].active_at, now);
    }

    #[test]
    fn reload_carries_alerts_over() {
        let old = rule(60_000, 0);
        old.eval(0, v(2.0), 0, None).unwrap();
        let new = AlertingRule::new(
            "HighLoad",
            "load > 1",
            60_000,
            0,
            vec![("severity".into(), "page".into())],
            vec![],
            vec![],
            "",
            false,
        );
        new.copy_state_from(&old);
        assert!(new.is_restored());
        let out = new.eval(60_000, v(2.0), 0, None).unwrap();
        assert_eq!(alerts_state(&out).as_deref(), Some("firing"));
        assert_eq!(new.active_alerts()[0].active_at, 0);
    }
}
