//! Rule groups: the rules of one group evaluated in order at one timestamp through a query
//! callback, independent of timers and storage. Recording rules rename and relabel their
//! result; alerting rules run their state machine ([`super::alerting`]). Series a rule wrote in
//! the previous evaluation but not in this one get a staleness marker, as in Prometheus.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use query::Sample;
use tsdb::{Label, Labels};

use super::alerting::AlertingRule;
use super::file::{load_rule_file, RuleGroupDef};
use crate::config::PromDuration;
use crate::template::{QueryFn, QuerySample};

/// Runs an instant query `(expr, ts ms)` and returns its vector (a scalar result should be
/// returned as one sample without labels).
pub type EvalQuery<'a> = &'a dyn Fn(&str, i64) -> Result<Vec<Sample>, String>;

/// A recording rule.
#[derive(Debug)]
pub struct RecordingRule {
    name: String,
    expr: String,
    labels: Vec<(String, String)>,
    last_error: Mutex<Option<String>>,
}

impl RecordingRule {
    /// A rule writing `expr`'s result as `name` with `labels` set.
    pub fn new(name: &str, expr: &str, labels: Vec<(String, String)>) -> Self {
        RecordingRule {
            name: name.to_string(),
            expr: expr.to_string(),
            labels,
            last_error: Mutex::new(None),
        }
    }
    /// Name of the series written.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The expression.
    pub fn expr(&self) -> &str {
        &self.expr
    }
    /// The labels set on the result.
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }
    /// The last evaluation error, if the last evaluation failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The samples this rule writes for `vector` evaluated at `ts`.
    pub fn apply(&self, ts: i64, vector: Vec<Sample>, limit: usize) -> Result<Vec<Sample>, String> {
        let mut out = Vec::with_capacity(vector.len());
        let mut seen = HashSet::with_capacity(vector.len());
        for s in vector {
            let mut ls: Vec<Label> = s.metric.into_vec();
            ls.push(Label::new(tsdb::labels::METRIC_NAME, &self.name));
            for (k, v) in &self.labels {
                ls.push(Label::new(k, v));
            }
            let metric = Labels::new(ls);
            if !seen.insert(metric.clone()) {
                return Err(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .into(),
                );
            }
            out.push(Sample {
                metric,
                t: ts,
                v: s.v,
            });
        }
        if limit > 0 && out.len() > limit {
            return Err(format!(
                "exceeded limit of {limit} with {} series",
                out.len()
            ));
        }
        Ok(out)
    }
}

/// One rule of a group.
#[derive(Debug)]
pub enum Rule {
    /// A recording rule.
    Recording(RecordingRule),
    /// An alerting rule.
    Alerting(AlertingRule),
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording(r) => r.name(),
            Rule::Alerting(a) => a.name(),
        }
    }
    /// The rule's expression.
    pub fn expr(&self) -> &str {
        match self {
            Rule::Recording(r) => r.expr(),
            Rule::Alerting(a) => a.expr(),
        }
    }
    /// The last evaluation error, if the last evaluation failed.
    pub fn last_error(&self) -> Option<String> {
        match self {
            Rule::Recording(r) => r.last_error(),
            Rule::Alerting(a) => a.last_error(),
        }
    }
}

/// The result of evaluating a group once.
#[derive(Debug, Default)]
pub struct GroupEval {
    /// All samples to append, in rule order (including staleness markers).
    pub samples: Vec<Sample>,
    /// Rules that failed: `(index, name, error)`.
    pub errors: Vec<(usize, String, String)>,
}

/// When something (a group or one rule) was last evaluated and how long that took.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalStats {
    /// Wall-clock start of the last evaluation (`None`: never evaluated).
    pub last_evaluation: Option<SystemTime>,
    /// Its duration in seconds.
    pub evaluation_seconds: f64,
}

/// A group of rules evaluated together at one interval.
#[derive(Debug)]
pub struct RuleGroup {
    /// Group name.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// Evaluation interval.
    pub interval: PromDuration,
    /// Series / alert limit per rule (0: none).
    pub limit: usize,
    /// The rules, in order.
    pub rules: Vec<Rule>,
    prev_series: Mutex<Vec<HashSet<Labels>>>,
    /// The group's stats, then one per rule.
    stats: Mutex<Vec<EvalStats>>,
}

impl RuleGroup {
    /// A group from its parts.
    pub fn new(
        name: &str,
        file: &str,
        interval: PromDuration,
        limit: usize,
        rules: Vec<Rule>,
    ) -> Self {
        let n = rules.len();
        RuleGroup {
            name: name.to_string(),
            file: file.to_string(),
            interval,
            limit,
            rules,
            prev_series: Mutex::new(vec![HashSet::new(); n]),
            stats: Mutex::new(vec![EvalStats::default(); n + 1]),
        }
    }

    /// Builds a group from its file definition. `restored` is passed to the alerting rules
    /// (false at startup when `for` state is to be restored).
    pub fn from_def(
        def: &RuleGroupDef,
        file: &str,
        default_interval: PromDuration,
        external_labels: &[(String, String)],
        external_url: &str,
        restored: bool,
    ) -> Self {
        let group_labels: Vec<(String, String)> = def
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let rules = def
            .rules
            .iter()
            .map(|r| {
                let mut labels = group_labels.clone();
                labels.extend(r.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                match (&r.record, &r.alert) {
                    (Some(rec), _) => Rule::Recording(RecordingRule::new(rec, &r.expr, labels)),
                    (None, alert) => Rule::Alerting(AlertingRule::new(
                        alert.as_deref().unwrap_or(""),
                        &r.expr,
                        r.for_.map_or(0, |d| d.as_millis() as i64),
                        r.keep_firing_for.map_or(0, |d| d.as_millis() as i64),
                        labels,
                        r.annotations
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        external_labels.to_vec(),
                        external_url,
                        restored,
                    )),
                }
            })
            .collect();
        RuleGroup::new(
            &def.name,
            file,
            def.interval.unwrap_or(default_interval),
            def.limit as usize,
            rules,
        )
    }

    /// Loads every group of a rule file.
    pub fn load_file(
        path: &Path,
        default_interval: PromDuration,
        external_labels: &[(String, String)],
        external_url: &str,
        restored: bool,
    ) -> Result<Vec<RuleGroup>, Vec<String>> {
        let f = load_rule_file(path)?;
        let shown = path.display().to_string();
        Ok(f.groups
            .iter()
            .map(|g| {
                RuleGroup::from_def(
                    g,
                    &shown,
                    default_interval,
                    external_labels,
                    external_url,
                    restored,
                )
            })
            .collect())
    }

    /// Prometheus's evaluation timestamp for `now` (ms): groups are spread over their
    /// interval by a hash of file and name, so each group evaluates at
    /// `floor((now - offset) / interval) * interval + offset`.
    pub fn eval_timestamp(&self, now: i64) -> i64 {
        let iv = self.interval.as_millis().max(1) as i64;
        let mut h = xx_like_hash(self.file.as_bytes(), self.name.as_bytes());
        h %= iv as u64;
        let offset = h as i64;
        let adjusted = now - offset;
        adjusted - adjusted.rem_euclid(iv) + offset
    }

    /// Evaluates all rules in order at `ts` (ms). Each rule's output is handed to `sink`
    /// before the next rule runs, so later rules can read it; the same samples are also
    /// returned.
    pub fn eval_with(
        &self,
        ts: i64,
        query: EvalQuery<'_>,
        sink: &mut dyn FnMut(&[Sample]),
    ) -> GroupEval {
        let mut res = GroupEval::default();
        let (group_wall, group_t0) = (SystemTime::now(), Instant::now());
        let mut stats = vec![EvalStats::default(); self.rules.len() + 1];
        let mut prev = self.prev_series.lock().unwrap_or_else(|p| p.into_inner());
        if prev.len() != self.rules.len() {
            *prev = vec![HashSet::new(); self.rules.len()];
        }
        let tq = |e: &str| -> Result<Vec<QuerySample>, String> {
            Ok(query(e, ts)?
                .into_iter()
                .map(|s| QuerySample {
                    labels: s
                        .metric
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect(),
                    value: s.v,
                })
                .collect())
        };
        let tq: QueryFn<'_> = &tq;
        for (i, rule) in self.rules.iter().enumerate() {
            let (wall, t0) = (SystemTime::now(), Instant::now());
            let out = query(rule.expr(), ts).and_then(|vector| match rule {
                Rule::Recording(r) => {
                    let o = r.apply(ts, vector, self.limit);
                    *r.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                        o.as_ref().err().cloned();
                    o
                }
                Rule::Alerting(a) => a.eval(ts, vector, self.limit, Some(tq)),
            });
            let mut samples = match out {
                Ok(s) => s,
                Err(e) => {
                    match rule {
                        Rule::Recording(r) => {
                            *r.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(e.clone())
                        }
                        Rule::Alerting(a) => a.set_last_error(Some(e.clone())),
                    }
                    res.errors.push((i, rule.name().to_string(), e));
                    Vec::new()
                }
            };
            let now: HashSet<Labels> = samples.iter().map(|s| s.metric.clone()).collect();
            let mut gone: Vec<&Labels> = prev[i].difference(&now).collect();
            gone.sort();
            for gone in gone {
                samples.push(Sample {
                    metric: gone.clone(),
                    t: ts,
                    v: tsdb::chunkenc::stale_nan(),
                });
            }
            prev[i] = now;
            sink(&samples);
            res.samples.extend(samples);
            stats[i + 1] = EvalStats {
                last_evaluation: Some(wall),
                evaluation_seconds: t0.elapsed().as_secs_f64(),
            };
        }
        stats[0] = EvalStats {
            last_evaluation: Some(group_wall),
            evaluation_seconds: group_t0.elapsed().as_secs_f64(),
        };
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = stats;
        res
    }

    /// When the group was last evaluated and how long it took.
    pub fn stats(&self) -> EvalStats {
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .copied()
            .unwrap_or_default()
    }

    /// When rule `i` was last evaluated and how long it took.
    pub fn rule_stats(&self, i: usize) -> EvalStats {
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(i + 1)
            .copied()
            .unwrap_or_default()
    }

    /// Evaluates all rules in order at `ts` (ms) and returns what they write.
    pub fn eval(&self, ts: i64, query: EvalQuery<'_>) -> GroupEval {
        self.eval_with(ts, query, &mut |_| {})
    }

    /// The alerting rules of the group.
    pub fn alerting_rules(&self) -> impl Iterator<Item = &AlertingRule> {
        self.rules.iter().filter_map(|r| match r {
            Rule::Alerting(a) => Some(a),
            Rule::Recording(_) => None,
        })
    }
}

/// A stable 64-bit FNV-1a hash of file and group name with a separator, spreading groups over
/// their interval.
fn xx_like_hash(a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in a.iter().chain(std::iter::once(&0xffu8)).chain(b) {
        h ^= u64::from(c);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file::parse_rules;

    const RULES: &str = r#"
groups:
  - name: example
    interval: 30s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels:
          source: rule
      - alert: JobDown
        expr: job:up:sum == 0
        for: 1m
        labels:
          severity: "{{ if eq $labels.job \"db\" }}page{{ else }}ticket{{ end }}"
        annotations:
          summary: "job {{ $labels.job }} is down ({{ $value }})"
"#;

    #[test]
    fn recording_then_alert_in_order() {
        let f = parse_rules(RULES).unwrap();
        let g = RuleGroup::from_def(
            &f.groups[0],
            "r.yml",
            PromDuration::from_secs(60),
            &[],
            "",
            true,
        );
        assert_eq!(g.interval, PromDuration::from_secs(30));
        // a tiny "database": what the recording rule wrote is visible to the alert's query
        let written = std::cell::RefCell::new(Vec::<Sample>::new());
        let up_value = std::cell::Cell::new(1.0);
        let query = |e: &str, ts: i64| -> Result<Vec<Sample>, String> {
            match e {
                "sum by (job) (up)" => Ok(vec![Sample {
                    metric: Labels::from_pairs(&[("job", "db")]),
                    t: ts,
                    v: up_value.get(),
                }]),
                "job:up:sum == 0" => Ok(written
                    .borrow()
                    .iter()
                    .filter(|s| {
                        s.t == ts && s.v == 0.0 && s.metric.get("__name__") == Some("job:up:sum")
                    })
                    .cloned()
                    .collect()),
                other => Err(format!("unexpected query {other}")),
            }
        };
        let mut sink = |s: &[Sample]| written.borrow_mut().extend_from_slice(s);
        let r = g.eval_with(0, &query, &mut sink);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.samples.len(), 1);
        assert_eq!(
            r.samples[0].metric,
            Labels::from_pairs(&[
                ("__name__", "job:up:sum"),
                ("job", "db"),
                ("source", "rule")
            ])
        );
        up_value.set(0.0);
        let r = g.eval_with(30_000, &query, &mut sink);
        let alerts: Vec<_> = r
            .samples
            .iter()
            .filter(|s| s.metric.get("__name__") == Some("ALERTS"))
            .collect();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].metric.get("alertstate"), Some("pending"));
        assert_eq!(alerts[0].metric.get("severity"), Some("page"));
        assert_eq!(alerts[0].metric.get("source"), Some("rule"));
        let r = g.eval_with(90_000, &query, &mut sink);
        let a = r
            .samples
            .iter()
            .find(|s| s.metric.get("__name__") == Some("ALERTS"))
            .unwrap();
        assert_eq!(a.metric.get("alertstate"), Some("firing"));
        let al = g.alerting_rules().next().unwrap().active_alerts();
        assert_eq!(al[0].annotations.get("summary"), Some("job db is down (0)"));
        // recovery: the ALERTS series of the previous evaluation get staleness markers
        up_value.set(1.0);
        let r = g.eval_with(120_000, &query, &mut sink);
        let stale: Vec<_> = r
            .samples
            .iter()
            .filter(|s| tsdb::chunkenc::is_stale_nan(s.v))
            .map(|s| s.metric.get("__name__").unwrap_or(""))
            .collect();
        assert_eq!(stale, vec!["ALERTS", "ALERTS_FOR_STATE"]);
    }

    #[test]
    fn failing_rule_is_reported_and_others_run() {
        let f = parse_rules(RULES).unwrap();
        let g = RuleGroup::from_def(
            &f.groups[0],
            "r.yml",
            PromDuration::from_secs(60),
            &[],
            "",
            true,
        );
        let query = |e: &str, _ts: i64| -> Result<Vec<Sample>, String> {
            if e.starts_with("sum") {
                Err("boom".into())
            } else {
                Ok(vec![])
            }
        };
        let r = g.eval(0, &query);
        assert_eq!(
            r.errors,
            vec![(0, "job:up:sum".to_string(), "boom".to_string())]
        );
        match &g.rules[0] {
            Rule::Recording(r) => assert_eq!(r.last_error().as_deref(), Some("boom")),
            Rule::Alerting(_) => panic!("order"),
        }
    }

    #[test]
    fn eval_timestamp_is_aligned_and_stable() {
        let g = RuleGroup::new("g", "f", PromDuration::from_secs(60), 0, vec![]);
        let t1 = g.eval_timestamp(1_000_000_000);
        let t2 = g.eval_timestamp(1_000_000_000 + 60_000);
        assert_eq!(t2 - t1, 60_000);
        assert!(t1 <= 1_000_000_000 && 1_000_000_000 - t1 < 60_000);
    }
}
