//! ignis's own metrics, exposed on `/metrics` in the Prometheus text format 0.0.4 under the
//! names Prometheus uses (`prometheus_http_requests_total`, `prometheus_tsdb_head_series`,
//! `prometheus_engine_query_duration_seconds`, …). Counters are atomics or small maps behind a
//! mutex touched once per request, never per sample.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::storage::HeadStats;

/// Upper bounds of the HTTP request duration histogram (seconds), as Prometheus's.
const HTTP_BUCKETS: [f64; 11] = [
    0.1, 0.2, 0.4, 1.0, 3.0, 8.0, 20.0, 60.0, 120.0, 240.0, 480.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; HTTP_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// The server's metric registry.
pub struct Metrics {
    start: SystemTime,
    http: Mutex<BTreeMap<(String, u16), u64>>,
    http_duration: Mutex<BTreeMap<String, Histogram>>,
    query_duration: Mutex<BTreeMap<&'static str, (f64, u64)>>,
    /// Samples accepted by remote write.
    pub remote_write_samples: AtomicU64,
    /// Samples rejected as out of order (or out of bounds / duplicate) by remote write.
    pub out_of_order_samples: AtomicU64,
    /// Remote read queries in flight.
    pub remote_read_queries: AtomicU64,
    /// Config reloads that succeeded (1) or failed (0) last.
    pub last_reload_ok: AtomicU64,
    /// Unix seconds of the last successful reload.
    pub last_reload_time: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let now = SystemTime::now();
        Metrics {
            start: now,
            http: Default::default(),
            http_duration: Default::default(),
            query_duration: Default::default(),
            remote_write_samples: AtomicU64::new(0),
            out_of_order_samples: AtomicU64::new(0),
            remote_read_queries: AtomicU64::new(0),
            last_reload_ok: AtomicU64::new(1),
            last_reload_time: AtomicU64::new(
                now.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            ),
        }
    }
}

impl Metrics {
    /// Counts one finished HTTP request.
    pub fn observe_http(&self, handler: &str, code: u16, took: Duration) {
        *self
            .http
            .lock()
            .entry((handler.to_string(), code))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let mut h = self.http_duration.lock();
        let e = h.entry(handler.to_string()).or_default();
        for (i, b) in HTTP_BUCKETS.iter().enumerate() {
            if secs <= *b {
                e.counts[i] += 1;
            }
        }
        e.sum += secs;
        e.count += 1;
    }

    /// Records a query's evaluation time under `slice` (`inner_eval`, `exec_total`, …).
    pub fn observe_query(&self, slice: &'static str, took: Duration) {
        let mut q = self.query_duration.lock();
        let e = q.entry(slice).or_default();
        e.0 += took.as_secs_f64();
        e.1 += 1;
    }

    /// Process start time.
    pub fn start_time(&self) -> SystemTime {
        self.start
    }

    /// The exposition text.
    pub fn render(&self, head: &HeadStats, ready: bool) -> String {
        let mut o = String::with_capacity(4096);
        let gauge = |o: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(
                o,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                fmt_f(v)
            );
        };
        let _ = writeln!(
            o,
            "# HELP prometheus_build_info A metric with a constant '1' value labeled by version, revision, branch, goversion from which prometheus was built, and the goos and goarch for the build.\n# TYPE prometheus_build_info gauge\nprometheus_build_info{{branch=\"\",goarch=\"{}\",goos=\"{}\",goversion=\"rust\",revision=\"\",tags=\"\",version=\"{}\"}} 1",
            std::env::consts::ARCH,
            std::env::consts::OS,
            env!("CARGO_PKG_VERSION")
        );
        gauge(&mut o, "prometheus_ready", "Whether Prometheus startup was fully completed and the server is ready for normal operation.", if ready { 1.0 } else { 0.0 });
        gauge(
            &mut o,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            self.start
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
        if let Some(rss) = resident_memory_bytes() {
            gauge(
                &mut o,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss as f64,
            );
        }
        gauge(
            &mut o,
            "prometheus_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            self.last_reload_ok.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut o,
            "prometheus_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            self.last_reload_time.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut o,
            "prometheus_tsdb_head_series",
            "Total number of series in the head block.",
            head.num_series as f64,
        );
        gauge(
            &mut o,
            "prometheus_tsdb_head_chunks",
            "Total number of chunks in the head block.",
            head.num_chunks as f64,
        );
        let (mint, maxt) = if head.num_series == 0 {
            (i64::MAX, i64::MIN)
        } else {
            (head.min_time, head.max_time)
        };
        gauge(
            &mut o,
            "prometheus_tsdb_head_min_time",
            "Minimum time bound of the head block.",
            mint as f64,
        );
        gauge(
            &mut o,
            "prometheus_tsdb_head_max_time",
            "Maximum timestamp of the head block.",
            maxt as f64,
        );
        gauge(
            &mut o,
            "prometheus_api_remote_read_queries",
            "The current number of remote read queries being executed or waiting.",
            self.remote_read_queries.load(Ordering::Relaxed) as f64,
        );
        let _ = writeln!(
            o,
            "# HELP prometheus_tsdb_head_samples_appended_total Total number of appended samples.\n# TYPE prometheus_tsdb_head_samples_appended_total counter\nprometheus_tsdb_head_samples_appended_total{{type=\"float\"}} {}",
            self.remote_write_samples.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP prometheus_tsdb_out_of_order_samples_total Total number of out of order samples ingestion failed attempts due to out of order being disabled.\n# TYPE prometheus_tsdb_out_of_order_samples_total counter\nprometheus_tsdb_out_of_order_samples_total{{type=\"float\"}} {}",
            self.out_of_order_samples.load(Ordering::Relaxed)
        );
        o.push_str("# HELP prometheus_http_requests_total Counter of HTTP requests.\n# TYPE prometheus_http_requests_total counter\n");
        for ((h, code), n) in self.http.lock().iter() {
            let _ = writeln!(
                o,
                "prometheus_http_requests_total{{code=\"{code}\",handler=\"{}\"}} {n}",
                escape(h)
            );
        }
        o.push_str("# HELP prometheus_http_request_duration_seconds Histogram of latencies for HTTP requests.\n# TYPE prometheus_http_request_duration_seconds histogram\n");
        for (h, hist) in self.http_duration.lock().iter() {
            let h = escape(h);
            for (i, b) in HTTP_BUCKETS.iter().enumerate() {
                let _ = writeln!(o, "prometheus_http_request_duration_seconds_bucket{{handler=\"{h}\",le=\"{}\"}} {}", fmt_f(*b), hist.counts[i]);
            }
            let _ = writeln!(
                o,
                "prometheus_http_request_duration_seconds_bucket{{handler=\"{h}\",le=\"+Inf\"}} {}",
                hist.count
            );
            let _ = writeln!(
                o,
                "prometheus_http_request_duration_seconds_sum{{handler=\"{h}\"}} {}",
                fmt_f(hist.sum)
            );
            let _ = writeln!(
                o,
                "prometheus_http_request_duration_seconds_count{{handler=\"{h}\"}} {}",
                hist.count
            );
        }
        o.push_str("# HELP prometheus_engine_query_duration_seconds Query timings\n# TYPE prometheus_engine_query_duration_seconds summary\n");
        for (slice, (sum, count)) in self.query_duration.lock().iter() {
            let _ = writeln!(
                o,
                "prometheus_engine_query_duration_seconds_sum{{slice=\"{slice}\"}} {}",
                fmt_f(*sum)
            );
            let _ = writeln!(
                o,
                "prometheus_engine_query_duration_seconds_count{{slice=\"{slice}\"}} {count}"
            );
        }
        o
    }
}

fn fmt_f(v: f64) -> String {
    crate::api::json::format_float(v)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Resident set size of this process from `/proc/self/statm`, if readable.
pub fn resident_memory_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.observe_http("/api/v1/query", 200, Duration::from_millis(150));
        m.observe_http("/api/v1/query", 200, Duration::from_millis(50));
        m.observe_query("inner_eval", Duration::from_millis(10));
        let head = HeadStats {
            num_series: 3,
            ..Default::default()
        };
        let text = m.render(&head, true);
        assert!(text.contains(
            "prometheus_http_requests_total{code=\"200\",handler=\"/api/v1/query\"} 2\n"
        ));
        assert!(text.contains("prometheus_http_request_duration_seconds_bucket{handler=\"/api/v1/query\",le=\"0.1\"} 1\n"));
        assert!(text.contains("prometheus_http_request_duration_seconds_bucket{handler=\"/api/v1/query\",le=\"0.2\"} 2\n"));
        assert!(text.contains("prometheus_tsdb_head_series 3\n"));
        assert!(text
            .contains("prometheus_engine_query_duration_seconds_count{slice=\"inner_eval\"} 1\n"));
        assert!(text.contains("prometheus_ready 1\n"));
    }
}
