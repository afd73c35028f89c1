//! The Alertmanager notifier, as Prometheus's: alerts handed to [`Notifier::send`] go into a
//! bounded queue (`--alertmanager.notification-queue-capacity`, 10,000; when full the oldest
//! are dropped); a sender task takes batches of at most [`MAX_BATCH`] (64) and POSTs each batch
//! as one JSON list to every active Alertmanager of every `alerting.alertmanagers` entry at
//! `<scheme>://<address><path_prefix>/api/v2/alerts`, concurrently, each request bounded by the
//! entry's `timeout`. A batch no Alertmanager accepted is counted as dropped.
//!
//! Requests carry the entry's `basic_auth` / `authorization` header and use its `tls_config`
//! for `https` (see [`crate::config::http_client`]).
//!
//! Alertmanagers are discovered per entry (static, file and HTTP SD) and pass Prometheus's
//! labels `__address__`, `__scheme__` and `__alerts_path__` through the entry's
//! `relabel_configs`; an address without a port gets 80 (http) or 443 (https).
//!
//! Metrics (Prometheus's names): `prometheus_notifications_total` (alerts handed in),
//! `prometheus_notifications_sent_total{alertmanager}` (alerts sent, per request attempted),
//! `prometheus_notifications_errors_total{alertmanager}` (failed requests),
//! `prometheus_notifications_latency_seconds{alertmanager}` (summary sum/count),
//! `prometheus_notifications_dropped_total`, `prometheus_notifications_queue_length`,
//! `prometheus_notifications_queue_capacity`, `prometheus_notifications_alertmanagers_discovered`.

pub mod http;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tsdb::{Label, Labels};

use crate::config::http_client::client_settings;
use crate::config::tls::TlsClient;
use crate::config::{AlertmanagerConfig, Config};
use crate::discovery::{self, Discoverer, TargetGroup};
use crate::relabel::process;
use crate::rules::notify::ApiAlert;

/// Most alerts in one request.
pub const MAX_BATCH: usize = 64;
/// The label holding an Alertmanager's API path.
pub const ALERTS_PATH_LABEL: &str = "__alerts_path__";
/// The default queue capacity.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// The Alertmanagers of one `alerting.alertmanagers` entry.
struct AmSet {
    timeout: Duration,
    headers: Vec<(String, String)>,
    tls: Arc<TlsClient>,
    active: RwLock<Vec<String>>,
    dropped: RwLock<Vec<String>>,
}

#[derive(Default)]
struct PerAm {
    sent: u64,
    errors: u64,
    latency_sum: f64,
    latency_count: u64,
}

/// The notifier: queue, sender and the discovered Alertmanagers.
pub struct Notifier {
    queue: Mutex<VecDeque<ApiAlert>>,
    capacity: AtomicUsize,
    more: Notify,
    sets: RwLock<Vec<Arc<AmSet>>>,
    total: AtomicU64,
    dropped: AtomicU64,
    per_am: Mutex<BTreeMap<String, PerAm>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            queue: Mutex::new(VecDeque::new()),
            capacity: AtomicUsize::new(DEFAULT_CAPACITY),
            more: Notify::new(),
            sets: RwLock::new(Vec::new()),
            total: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            per_am: Mutex::new(BTreeMap::new()),
            tasks: Mutex::new(Vec::new()),
            sender: Mutex::new(None),
        }
    }
}

/// `path.Join("/", prefix, "/api/v2/alerts")`.
pub fn alerts_path(prefix: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in prefix.split('/').chain(["api", "v2", "alerts"]) {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    format!("/{}", parts.join("/"))
}

fn url_of(ls: &Labels) -> String {
    format!(
        "{}://{}{}",
        ls.get("__scheme__").unwrap_or("http"),
        ls.get("__address__").unwrap_or(""),
        ls.get(ALERTS_PATH_LABEL).unwrap_or("")
    )
}

/// The Alertmanager URLs of discovered groups for an entry: `(active, dropped)`, each
/// deduplicated and sorted. Invalid addresses are skipped with an error.
pub fn alertmanagers_from_groups(
    am: &AlertmanagerConfig,
    groups: &[TargetGroup],
) -> (Vec<String>, Vec<String>) {
    let (mut active, mut dropped) = (Vec::new(), Vec::new());
    let path = alerts_path(&am.path_prefix);
    for g in groups {
        for t in &g.targets {
            let mut ls: Vec<Label> = t.iter().cloned().collect();
            ls.push(Label::new("__scheme__", &am.scheme));
            ls.push(Label::new(ALERTS_PATH_LABEL, &path));
            for l in &g.labels {
                if !t.has(&l.name) {
                    ls.push(l.clone());
                }
            }
            let before = Labels::new(ls);
            let Some(after) = process(&before, &am.relabel_configs) else {
                dropped.push(url_of(&before));
                continue;
            };
            let mut addr = after.get("__address__").unwrap_or("").to_string();
            if addr.is_empty() || addr.contains('/') {
                tracing::error!(address = %addr, "Invalid Alertmanager address");
                continue;
            }
            let has_port = if addr.starts_with('[') {
                addr.contains("]:")
            } else {
                addr.contains(':')
            };
            if !has_port {
                match after.get("__scheme__").unwrap_or("") {
                    "http" | "" => addr.push_str(":80"),
                    "https" => addr.push_str(":443"),
                    s => {
                        tracing::error!(scheme = %s, "Invalid Alertmanager scheme");
                        continue;
                    }
                }
            }
            active.push(url_of(&after.with("__address__", &addr)));
        }
    }
    active.sort();
    active.dedup();
    dropped.sort();
    dropped.dedup();
    (active, dropped)
}

fn discoverers(am: &AlertmanagerConfig, dir: &Path) -> Vec<Box<dyn Discoverer>> {
    let mut v: Vec<Box<dyn Discoverer>> = Vec::new();
    if !am.static_configs.is_empty() {
        v.push(Box::new(discovery::StaticDiscoverer::new(
            &am.static_configs,
        )));
    }
    for f in &am.file_sd_configs {
        v.push(Box::new(discovery::file::FileDiscoverer::new(
            f.files.clone(),
            dir,
            f.refresh_interval.as_std(),
        )));
    }
    for h in &am.http_sd_configs {
        v.push(Box::new(discovery::http::HttpDiscoverer::new(
            &h.url,
            h.refresh_interval.as_std(),
        )));
    }
    v
}

impl Notifier {
    /// A notifier with the given queue capacity.
    pub fn new(capacity: usize) -> Arc<Self> {
        let n = Notifier::default();
        n.capacity.store(capacity.max(1), Ordering::Relaxed);
        Arc::new(n)
    }

    /// Sets the queue capacity.
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    /// Applies the `alerting` section of `cfg`: discovery restarts for every entry; the queue
    /// and counters are kept. Starts the sender on first use. Must run inside a tokio runtime.
    pub fn apply(self: &Arc<Self>, cfg: &Config, config_dir: &Path) {
        for t in std::mem::take(&mut *self.tasks.lock()) {
            t.abort();
        }
        let mut sets = Vec::new();
        let mut tasks = Vec::new();
        for am in &cfg.alerting.alertmanagers {
            let client = match client_settings(&am.http_client(), config_dir) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(err = %e, "Skipping Alertmanager config: HTTP client settings");
                    continue;
                }
            };
            let set = Arc::new(AmSet {
                timeout: am.timeout.as_std(),
                headers: client.headers,
                tls: client.tls,
                active: RwLock::new(Vec::new()),
                dropped: RwLock::new(Vec::new()),
            });
            // Static lists are known at once, so alerts sent right after (re)load reach them.
            if am.file_sd_configs.is_empty() && am.http_sd_configs.is_empty() {
                let groups = discovery::StaticDiscoverer::new(&am.static_configs)
                    .groups()
                    .to_vec();
                let (a, d) = alertmanagers_from_groups(am, &groups);
                *set.active.write() = a;
                *set.dropped.write() = d;
            } else {
                for (j, d) in discoverers(am, config_dir).into_iter().enumerate() {
                    let (tx, mut rx) = mpsc::channel::<Vec<TargetGroup>>(4);
                    tasks.push(tokio::spawn(d.run(tx)));
                    let (set2, am2) = (set.clone(), am.clone());
                    let n = self.clone();
                    let per_disc: Arc<Mutex<BTreeMap<usize, Vec<TargetGroup>>>> =
                        Default::default();
                    tasks.push(tokio::spawn(async move {
                        while let Some(groups) = rx.recv().await {
                            per_disc.lock().insert(j, groups);
                            let all: Vec<TargetGroup> =
                                per_disc.lock().values().flatten().cloned().collect();
                            let (a, d) = alertmanagers_from_groups(&am2, &all);
                            *set2.active.write() = a;
                            *set2.dropped.write() = d;
                            n.more.notify_one();
                        }
                    }));
                }
            }
            sets.push(set);
        }
        *self.sets.write() = sets;
        self.tasks.lock().extend(tasks);
        let mut sender = self.sender.lock();
        if sender.is_none() {
            let n = self.clone();
            *sender = Some(tokio::spawn(async move { n.run().await }));
        }
    }

    /// Stops discovery and the sender.
    pub fn stop(&self) {
        for t in std::mem::take(&mut *self.tasks.lock()) {
            t.abort();
        }
        if let Some(s) = self.sender.lock().take() {
            s.abort();
        }
    }

    /// Queues alerts (already labelled and relabelled) for sending. When more arrive than fit,
    /// the oldest are dropped, as Prometheus.
    pub fn send(&self, mut alerts: Vec<ApiAlert>) {
        if alerts.is_empty() {
            return;
        }
        self.total.fetch_add(alerts.len() as u64, Ordering::Relaxed);
        let cap = self.capacity.load(Ordering::Relaxed);
        if alerts.len() > cap {
            let d = alerts.len() - cap;
            alerts.drain(..d);
            self.dropped.fetch_add(d as u64, Ordering::Relaxed);
            tracing::warn!(
                num_dropped = d,
                "Alert batch larger than queue capacity, dropping alerts"
            );
        }
        let mut q = self.queue.lock();
        let over = (q.len() + alerts.len()).saturating_sub(cap);
        if over > 0 {
            q.drain(..over);
            self.dropped.fetch_add(over as u64, Ordering::Relaxed);
            tracing::warn!(
                num_dropped = over,
                "Alert notification queue full, dropping alerts"
            );
        }
        q.extend(alerts);
        drop(q);
        self.more.notify_one();
    }

    /// Alerts waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.queue.lock().len()
    }

    fn next_batch(&self) -> Vec<ApiAlert> {
        let mut q = self.queue.lock();
        let n = q.len().min(MAX_BATCH);
        q.drain(..n).collect()
    }

    async fn run(self: Arc<Self>) {
        loop {
            self.more.notified().await;
            loop {
                let batch = self.next_batch();
                if batch.is_empty() {
                    break;
                }
                if !self.send_all(&batch).await {
                    self.dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }

    /// Sends one batch to every active Alertmanager; true when at least one accepted it.
    async fn send_all(&self, batch: &[ApiAlert]) -> bool {
        let body = match serde_json::to_vec(batch) {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) => {
                tracing::error!(err = %e, "Encoding alerts failed");
                return false;
            }
        };
        let sets: Vec<Arc<AmSet>> = self.sets.read().clone();
        let mut reqs = Vec::new();
        for set in &sets {
            for url in set.active.read().iter() {
                let (url, body, set) = (url.clone(), body.clone(), set.clone());
                reqs.push(async move {
                    let t0 = Instant::now();
                    let r = http::post_json(&url, &set.headers, &set.tls, body, set.timeout).await;
                    (url, r, t0.elapsed())
                });
            }
        }
        let results = futures_util::future::join_all(reqs).await;
        let mut ok = 0;
        let mut per = self.per_am.lock();
        for (url, r, took) in results {
            let e = per.entry(url.clone()).or_default();
            e.sent += batch.len() as u64;
            e.latency_sum += took.as_secs_f64();
            e.latency_count += 1;
            match r {
                Ok(()) => ok += 1,
                Err(err) => {
                    e.errors += 1;
                    tracing::error!(alertmanager = %url, count = batch.len(), err = %err, "Error sending alert");
                }
            }
        }
        ok > 0
    }

    /// The active and dropped Alertmanager URLs.
    pub fn alertmanagers(&self) -> (Vec<String>, Vec<String>) {
        let (mut a, mut d) = (Vec::new(), Vec::new());
        for s in self.sets.read().iter() {
            a.extend(s.active.read().iter().cloned());
            d.extend(s.dropped.read().iter().cloned());
        }
        (a, d)
    }

    /// The notifier's metrics in the text exposition format.
    pub fn render_metrics(&self) -> String {
        let mut o = String::new();
        let (active, _) = self.alertmanagers();
        let per = self.per_am.lock();
        let _ = writeln!(o, "# HELP prometheus_notifications_alertmanagers_discovered The number of alertmanagers discovered and active.\n# TYPE prometheus_notifications_alertmanagers_discovered gauge\nprometheus_notifications_alertmanagers_discovered {}", active.len());
        let _ = writeln!(o, "# HELP prometheus_notifications_dropped_total Total number of alerts dropped due to errors when sending to Alertmanager.\n# TYPE prometheus_notifications_dropped_total counter\nprometheus_notifications_dropped_total {}", self.dropped.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP prometheus_notifications_errors_total Total number of errors sending alert notifications.\n# TYPE prometheus_notifications_errors_total counter");
        for (u, m) in per.iter() {
            let _ = writeln!(
                o,
                "prometheus_notifications_errors_total{{alertmanager=\"{u}\"}} {}",
                m.errors
            );
        }
        let _ = writeln!(o, "# HELP prometheus_notifications_latency_seconds Latency quantiles for sending alert notifications.\n# TYPE prometheus_notifications_latency_seconds summary");
        for (u, m) in per.iter() {
            let _ = writeln!(
                o,
                "prometheus_notifications_latency_seconds_sum{{alertmanager=\"{u}\"}} {}\nprometheus_notifications_latency_seconds_count{{alertmanager=\"{u}\"}} {}",
                m.latency_sum, m.latency_count
            );
        }
        let _ = writeln!(o, "# HELP prometheus_notifications_queue_capacity The capacity of the alert notifications queue.\n# TYPE prometheus_notifications_queue_capacity gauge\nprometheus_notifications_queue_capacity {}", self.capacity.load(Ordering::Relaxed));
        let _ = writeln!(o, "# HELP prometheus_notifications_queue_length The number of alert notifications in the queue.\n# TYPE prometheus_notifications_queue_length gauge\nprometheus_notifications_queue_length {}", self.queue_len());
        let _ = writeln!(o, "# HELP prometheus_notifications_sent_total Total number of alerts sent.\n# TYPE prometheus_notifications_sent_total counter");
        for (u, m) in per.iter() {
            let _ = writeln!(
                o,
                "prometheus_notifications_sent_total{{alertmanager=\"{u}\"}} {}",
                m.sent
            );
        }
        let _ = writeln!(o, "# HELP prometheus_notifications_total Total number of alerts handed to the notifier.\n# TYPE prometheus_notifications_total counter\nprometheus_notifications_total {}", self.total.load(Ordering::Relaxed));
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str) -> ApiAlert {
        ApiAlert {
            labels: [("alertname".to_string(), name.to_string())]
                .into_iter()
                .collect(),
            annotations: BTreeMap::new(),
            starts_at: String::new(),
            ends_at: String::new(),
            generator_url: String::new(),
        }
    }

    #[test]
    fn paths_and_discovered_urls() {
        assert_eq!(alerts_path("/"), "/api/v2/alerts");
        assert_eq!(alerts_path("/am/"), "/am/api/v2/alerts");
        assert_eq!(alerts_path("am"), "/am/api/v2/alerts");
        let cfg: Config = serde_yaml_ng::from_str(
            "alerting:\n  alertmanagers:\n  - path_prefix: /pre\n    static_configs:\n    - targets: ['a:9093', 'b', 'drop:1']\n    relabel_configs:\n    - {source_labels: [__address__], regex: 'drop.*', action: drop}\n",
        )
        .unwrap();
        let am = &cfg.alerting.alertmanagers[0];
        let g = discovery::StaticDiscoverer::new(&am.static_configs)
            .groups()
            .to_vec();
        let (a, d) = alertmanagers_from_groups(am, &g);
        assert_eq!(
            a,
            vec![
                "http://a:9093/pre/api/v2/alerts".to_string(),
                "http://b:80/pre/api/v2/alerts".to_string()
            ]
        );
        assert_eq!(d, vec!["http://drop:1/pre/api/v2/alerts".to_string()]);
    }

    #[test]
    fn queue_drops_oldest_and_batches() {
        let n = Notifier::new(100);
        n.send((0..150).map(|i| alert(&i.to_string())).collect());
        assert_eq!(n.queue_len(), 100);
        assert_eq!(n.dropped.load(Ordering::Relaxed), 50);
        n.send(vec![alert("x")]);
        assert_eq!(n.queue_len(), 100);
        assert_eq!(n.dropped.load(Ordering::Relaxed), 51);
        let b = n.next_batch();
        assert_eq!(b.len(), MAX_BATCH);
        assert_eq!(b[0].labels["alertname"], "51");
        assert_eq!(n.next_batch().len(), 100 - MAX_BATCH);
        assert!(n
            .render_metrics()
            .contains("prometheus_notifications_total 151\n"));
    }

    #[test]
    fn basic_auth_header() {
        let cfg: Config = serde_yaml_ng::from_str(
            "alerting:\n  alertmanagers:\n  - basic_auth: {username: u, password: p}\n    static_configs: [{targets: ['a:1']}]\n",
        )
        .unwrap();
        let n = Notifier::new(10);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { n.apply(&cfg, Path::new(".")) });
        let sets = n.sets.read();
        assert_eq!(
            sets[0].headers,
            vec![("Authorization".to_string(), "Basic dTpw".to_string())]
        );
        drop(sets);
        n.stop();
    }

    #[tokio::test]
    async fn reload_replaces_alertmanagers() {
        let n = Notifier::new(10);
        let one: Config = serde_yaml_ng::from_str(
            "alerting:\n  alertmanagers:\n  - static_configs: [{targets: ['a:1']}]\n",
        )
        .unwrap();
        n.apply(&one, Path::new("."));
        assert_eq!(n.alertmanagers().0, vec!["http://a:1/api/v2/alerts"]);
        let two: Config = serde_yaml_ng::from_str(
            "alerting:\n  alertmanagers:\n  - scheme: http\n    path_prefix: /x\n    static_configs: [{targets: ['b:2', 'c:3']}]\n",
        )
        .unwrap();
        n.apply(&two, Path::new("."));
        assert_eq!(
            n.alertmanagers().0,
            vec!["http://b:2/x/api/v2/alerts", "http://c:3/x/api/v2/alerts"]
        );
        assert!(n
            .render_metrics()
            .contains("prometheus_notifications_alertmanagers_discovered 2\n"));
        n.apply(&Config::default(), Path::new("."));
        assert!(n.alertmanagers().0.is_empty());
        n.stop();
    }

    #[tokio::test]
    async fn posts_batches_to_a_local_alertmanager() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::<String>::new()));
        let g2 = got.clone();
        let srv = tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut tmp = [0u8; 65536];
                loop {
                    let n = s.read(&mut tmp).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            g2.lock().push(text);
                            break;
                        }
                    }
                }
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .unwrap();
            }
        });
        let cfg: Config = serde_yaml_ng::from_str(&format!(
            "alerting:\n  alertmanagers:\n  - authorization: {{credentials: tok}}\n    static_configs: [{{targets: ['{addr}']}}]\n"
        ))
        .unwrap();
        let n = Notifier::new(1000);
        n.apply(&cfg, Path::new("."));
        assert_eq!(n.alertmanagers().0.len(), 1);
        n.send((0..70).map(|i| alert(&i.to_string())).collect());
        for _ in 0..200 {
            if got.lock().len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reqs = got.lock().clone();
        assert_eq!(reqs.len(), 2, "two batches: 64 + 6");
        assert!(reqs[0].starts_with("POST /api/v2/alerts HTTP/1.1"));
        assert!(reqs[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer tok"));
        assert!(reqs[0].contains("\"alertname\":\"63\""));
        assert!(!reqs[0].contains("\"alertname\":\"64\""));
        assert!(reqs[1].contains("\"alertname\":\"69\""));
        let m = n.render_metrics();
        assert!(
            m.contains(&format!(
                "prometheus_notifications_sent_total{{alertmanager=\"http://{addr}/api/v2/alerts\"}} 70"
            )),
            "{m}"
        );
        n.stop();
        srv.abort();
    }
}
