//! Scrape jobs and targets as the scraper sees them: the resolved settings of one
//! `scrape_config` ([`ScrapeJob`]), one target built from its relabeled labels ([`Target`]), and
//! the health the API reports ([`TargetStatus`]).
//!
//! These are the scraper's own types so it does not depend on the shape of the YAML config:
//! the config loader resolves defaults (global interval, timeout, limits) and turns
//! `metric_relabel_configs` into a [`MetricRelabel`] function.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tsdb::labels::{Label, Labels};

use crate::config::tls::TlsClient;

/// Applies `metric_relabel_configs` to a scraped series: `None` drops it.
pub type MetricRelabel = Arc<dyn Fn(&Labels) -> Option<Labels> + Send + Sync>;

/// The resolved settings of one `scrape_config`.
#[derive(Clone)]
pub struct ScrapeJob {
    /// `job_name`.
    pub job_name: String,
    /// `scrape_interval`.
    pub interval: Duration,
    /// `scrape_timeout` (at most the interval).
    pub timeout: Duration,
    /// `honor_labels`: scraped labels win over target labels.
    pub honor_labels: bool,
    /// `honor_timestamps`: keep timestamps written in the body.
    pub honor_timestamps: bool,
    /// `sample_limit` (0: none), counted after metric relabeling.
    pub sample_limit: usize,
    /// `label_limit` (0: none), labels per series including `__name__`.
    pub label_limit: usize,
    /// `label_name_length_limit` (0: none).
    pub label_name_length_limit: usize,
    /// `label_value_length_limit` (0: none).
    pub label_value_length_limit: usize,
    /// `body_size_limit` in bytes (0: none).
    pub body_size_limit: usize,
    /// Extra request headers (`Authorization`, …).
    pub headers: Vec<(String, String)>,
    /// `tls_config` for `https` targets (None: system CAs, TLS 1.2+).
    pub tls: Option<Arc<TlsClient>>,
    /// `metric_relabel_configs`, if any.
    pub metric_relabel: Option<MetricRelabel>,
    /// Identifies the relabeling rules behind `metric_relabel` (two jobs with equal non-empty
    /// keys relabel alike); when empty, functions are compared by identity.
    pub metric_relabel_key: String,
}

impl fmt::Debug for ScrapeJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrapeJob")
            .field("job_name", &self.job_name)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("honor_labels", &self.honor_labels)
            .field("honor_timestamps", &self.honor_timestamps)
            .field("sample_limit", &self.sample_limit)
            .field("metric_relabel", &self.metric_relabel.is_some())
            .finish()
    }
}

impl ScrapeJob {
    /// A job with Prometheus's defaults: 1m interval, 10s timeout, honor_timestamps, no limits.
    pub fn new(job_name: impl Into<String>) -> Self {
        ScrapeJob {
            job_name: job_name.into(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            body_size_limit: 0,
            headers: Vec::new(),
            tls: None,
            metric_relabel: None,
            metric_relabel_key: String::new(),
        }
    }

    /// Whether two versions of a job can keep their running loops (same settings apart from
    /// relabeling functions, which are compared by identity).
    pub(crate) fn same_settings(&self, o: &ScrapeJob) -> bool {
        self.interval == o.interval
            && self.timeout == o.timeout
            && self.honor_labels == o.honor_labels
            && self.honor_timestamps == o.honor_timestamps
            && self.sample_limit == o.sample_limit
            && self.label_limit == o.label_limit
            && self.label_name_length_limit == o.label_name_length_limit
            && self.label_value_length_limit == o.label_value_length_limit
            && self.body_size_limit == o.body_size_limit
            && self.headers == o.headers
            && match (&self.tls, &o.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => a.same(b),
                _ => false,
            }
            && match (&self.metric_relabel, &o.metric_relabel) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    Arc::ptr_eq(a, b)
                        || (!self.metric_relabel_key.is_empty()
                            && self.metric_relabel_key == o.metric_relabel_key)
                }
                _ => false,
            }
    }
}

/// One target: its URL and the labels its series get.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The URL scraped.
    pub url: String,
    /// Labels added to every scraped series (`job`, `instance`, …; no `__` labels).
    pub labels: Labels,
    /// The labels before relabeling (`discoveredLabels`); the relabeled ones when unknown.
    pub discovered: Labels,
    /// `__scrape_interval__` after relabeling, when set and valid.
    pub interval: Option<Duration>,
    /// `__scrape_timeout__` after relabeling, when set and valid.
    pub timeout: Option<Duration>,
}

impl Target {
    /// Builds a target from labels after `relabel_configs`: `__address__` (required),
    /// `__scheme__` (default `http`), `__metrics_path__` (default `/metrics`), `__param_<name>`
    /// query parameters; `instance` defaults to `__address__`, `job` to `job_name`. Labels
    /// starting with `__` are not added to series.
    pub fn from_labels(labels: &Labels, job_name: &str) -> Result<Target, String> {
        let addr = labels
            .get("__address__")
            .filter(|a| !a.is_empty())
            .ok_or("no address")?;
        if addr.contains('/') {
            return Err(format!("{addr:?} is not a valid hostname"));
        }
        let scheme = labels.get("__scheme__").unwrap_or("http");
        let path = labels.get("__metrics_path__").unwrap_or("/metrics");
        let mut url = format!("{scheme}://{addr}{path}");
        let mut first = !path.contains('?');
        for l in labels.iter() {
            if let Some(p) = l.name.strip_prefix("__param_") {
                url.push(if first { '?' } else { '&' });
                first = false;
                url.extend(form_urlencoded::byte_serialize(p.as_bytes()));
                url.push('=');
                url.extend(form_urlencoded::byte_serialize(l.value.as_bytes()));
            }
        }
        let mut out: Vec<Label> = labels
            .iter()
            .filter(|l| !l.name.starts_with("__") && !l.value.is_empty())
            .cloned()
            .collect();
        if !out.iter().any(|l| l.name == "instance") {
            out.push(Label::new("instance", addr));
        }
        if !out.iter().any(|l| l.name == "job") {
            out.push(Label::new("job", job_name));
        }
        Ok(Target {
            url,
            labels: Labels::new(out),
            discovered: labels.clone(),
            interval: labels
                .get("__scrape_interval__")
                .and_then(|d| crate::config::parse_duration(d).ok())
                .filter(|d| !d.is_zero())
                .map(|d| d.as_std()),
            timeout: labels
                .get("__scrape_timeout__")
                .and_then(|d| crate::config::parse_duration(d).ok())
                .filter(|d| !d.is_zero())
                .map(|d| d.as_std()),
        })
    }

    /// Prometheus-style offset of this target's scrapes within the interval: a hash of the URL
    /// and labels modulo the interval, so targets spread out and keep their phase over restarts.
    pub fn offset(&self, interval: Duration, now_nanos: u128) -> Duration {
        let iv = interval.as_nanos().max(1);
        let mut h = fnv1a(0xcbf2_9ce4_8422_2325, self.url.as_bytes());
        h = fnv1a(h, &self.labels.hash().to_le_bytes());
        let base = iv - now_nanos % iv;
        let mut next = base + u128::from(h) % iv;
        if next > iv {
            next -= iv;
        }
        Duration::from_nanos(next as u64)
    }
}

fn fnv1a(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Health of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Health {
    /// Last scrape succeeded.
    Up,
    /// Last scrape failed.
    Down,
    /// Not scraped yet.
    #[default]
    Unknown,
}

impl Health {
    /// `up`, `down` or `unknown`, as `/api/v1/targets` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unknown => "unknown",
        }
    }
}

/// Metadata of one metric family, from `# TYPE`, `# HELP`, `# UNIT`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricMetadata {
    /// `counter`, `gauge`, … (`unknown` when no TYPE line).
    pub kind: String,
    /// HELP text.
    pub help: String,
    /// UNIT (OpenMetrics).
    pub unit: String,
}

/// A target's state for `/api/v1/targets`.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    /// `job_name` (`scrapePool`).
    pub scrape_pool: String,
    /// The URL scraped (`scrapeUrl`).
    pub scrape_url: String,
    /// Labels of its series (`labels`).
    pub labels: Labels,
    /// Labels before relabeling (`discoveredLabels`).
    pub discovered_labels: Labels,
    /// `health`.
    pub health: Health,
    /// `lastError` (empty when none).
    pub last_error: String,
    /// `lastScrape` (None before the first scrape).
    pub last_scrape: Option<SystemTime>,
    /// `lastScrapeDuration`.
    pub last_scrape_duration: Duration,
    /// `scrapeInterval`.
    pub scrape_interval: Duration,
    /// `scrapeTimeout`.
    pub scrape_timeout: Duration,
}

/// Per-target metadata, for `/api/v1/targets/metadata` and `/api/v1/metadata`.
pub type TargetMetadata = BTreeMap<String, MetricMetadata>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_from_labels() {
        let l = Labels::from_pairs(&[
            ("__address__", "127.0.0.1:9100"),
            ("__metrics_path__", "/m"),
            ("__param_module", "a b"),
            ("__meta_x", "y"),
            ("env", "prod"),
        ]);
        let t = Target::from_labels(&l, "node").unwrap();
        assert_eq!(t.url, "http://127.0.0.1:9100/m?module=a+b");
        assert_eq!(
            t.labels,
            Labels::from_pairs(&[
                ("env", "prod"),
                ("instance", "127.0.0.1:9100"),
                ("job", "node")
            ])
        );
        assert!(Target::from_labels(&Labels::from_pairs(&[("a", "b")]), "j").is_err());
    }

    #[test]
    fn offsets_stay_within_the_interval_and_differ_per_target() {
        let iv = Duration::from_secs(15);
        let a = Target::from_labels(&Labels::from_pairs(&[("__address__", "a:1")]), "j").unwrap();
        let b = Target::from_labels(&Labels::from_pairs(&[("__address__", "b:1")]), "j").unwrap();
        let now = 1_700_000_000_123_456_789u128;
        let (oa, ob) = (a.offset(iv, now), b.offset(iv, now));
        assert!(oa <= iv && ob <= iv);
        assert_ne!(oa, ob);
        // The phase is stable: the absolute scrape time modulo the interval does not depend
        // on when the loop starts.
        let phase = |o: Duration, now: u128| (now + o.as_nanos()) % iv.as_nanos();
        assert_eq!(
            phase(oa, now),
            phase(a.offset(iv, now + 7_000_000_001), now + 7_000_000_001)
        );
    }
}
