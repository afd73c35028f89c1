//! Command-line flags of `ignis server`, named and defaulted as Prometheus names them so ignis
//! drops into existing deployments (`--storage.tsdb.path`, `--web.listen-address`, …).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Flags of the `server` subcommand.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Prometheus configuration file path.
    #[arg(long = "config.file", default_value = "prometheus.yml")]
    pub config_file: PathBuf,

    /// Base path for metrics storage.
    #[arg(long = "storage.tsdb.path", default_value = "data/")]
    pub storage_path: PathBuf,

    /// How long to retain samples in storage (e.g. 15d, 100y). 0 means the default of 15d.
    #[arg(long = "storage.tsdb.retention.time", default_value = "15d", value_parser = parse_duration)]
    pub retention_time: Duration,

    /// Maximum number of bytes that can be stored for blocks (e.g. 512MB). 0 disables it.
    #[arg(long = "storage.tsdb.retention.size", default_value = "0B", value_parser = parse_bytes)]
    pub retention_size: u64,

    /// Address to listen on for UI, API, and telemetry.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    pub listen_address: String,

    /// Enable API endpoint accepting remote write requests.
    #[arg(long = "web.enable-remote-write-receiver", default_value_t = false)]
    pub enable_remote_write_receiver: bool,

    /// Enable API endpoints for admin control actions.
    #[arg(long = "web.enable-admin-api", default_value_t = false)]
    pub enable_admin_api: bool,

    /// Enable shutdown and reload via HTTP request.
    #[arg(long = "web.enable-lifecycle", default_value_t = false)]
    pub enable_lifecycle: bool,

    /// [EXPERIMENTAL] Path to configuration file that can enable TLS or authentication.
    #[arg(long = "web.config.file", default_value = "")]
    pub web_config_file: String,

    /// Prefix for the internal routes of web endpoints.
    #[arg(long = "web.route-prefix", default_value = "/")]
    pub route_prefix: String,

    /// Maximum number of simultaneous connections.
    #[arg(long = "web.max-connections", default_value_t = 512)]
    pub max_connections: usize,

    /// Maximum time a query may take before being aborted.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = parse_duration)]
    pub query_timeout: Duration,

    /// Maximum number of samples a single query can load into memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    pub query_max_samples: usize,

    /// The maximum lookback duration for retrieving metrics during expression evaluations.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = parse_duration)]
    pub query_lookback_delta: Duration,

    /// Maximum number of queries executed concurrently.
    #[arg(long = "query.max-concurrency", default_value_t = 20)]
    pub query_max_concurrency: usize,

    /// Maximum overall number of samples to return via the remote read interface, in a single
    /// query. 0 means no limit. Ignored for the streamed response types.
    #[arg(
        long = "storage.remote.read-sample-limit",
        default_value_t = 50_000_000
    )]
    pub remote_read_sample_limit: usize,

    /// Maximum number of concurrent remote read calls. 0 means no limit.
    #[arg(long = "storage.remote.read-concurrent-limit", default_value_t = 10)]
    pub remote_read_concurrent_limit: usize,

    /// Maximum number of bytes in a single frame for streaming remote read responses.
    #[arg(
        long = "storage.remote.read-max-bytes-in-frame",
        default_value_t = 1_048_576
    )]
    pub remote_read_max_bytes_in_frame: usize,

    /// Max time to tolerate prometheus outage for restoring "for" state of alert.
    #[arg(long = "rules.alert.for-outage-tolerance", default_value = "1h", value_parser = parse_duration)]
    pub rules_alert_for_outage_tolerance: Duration,

    /// Minimum duration between alert and restored "for" state. This is maintained only for
    /// alerts with configured "for" time greater than grace period.
    #[arg(long = "rules.alert.for-grace-period", default_value = "10m", value_parser = parse_duration)]
    pub rules_alert_for_grace_period: Duration,

    /// Minimum amount of time to wait before resending an alert to Alertmanager.
    #[arg(long = "rules.alert.resend-delay", default_value = "1m", value_parser = parse_duration)]
    pub rules_alert_resend_delay: Duration,

    /// The capacity of the queue for pending Alertmanager notifications.
    #[arg(
        long = "alertmanager.notification-queue-capacity",
        default_value_t = 10_000
    )]
    pub alertmanager_notification_queue_capacity: usize,

    /// Comma separated feature names to enable.
    #[arg(long = "enable-feature", value_delimiter = ',')]
    pub enable_feature: Vec<String>,

    /// Only log messages with the given severity or above. One of: [debug, info, warn, error]
    #[arg(long = "log.level", default_value = "info", value_parser = ["debug", "info", "warn", "error"])]
    pub log_level: String,

    /// Output format of log messages. One of: [logfmt, json]
    #[arg(long = "log.format", default_value = "logfmt", value_parser = ["logfmt", "json"])]
    pub log_format: String,
}

impl ServerArgs {
    /// The flags as Prometheus's `/api/v1/status/flags` reports them: flag name (without
    /// dashes) to its value as a string.
    pub fn as_map(&self) -> Vec<(&'static str, String)> {
        vec![
            ("config.file", self.config_file.display().to_string()),
            ("storage.tsdb.path", self.storage_path.display().to_string()),
            (
                "storage.tsdb.retention.time",
                format_duration(self.retention_time),
            ),
            (
                "storage.tsdb.retention.size",
                format!("{}B", self.retention_size),
            ),
            ("web.listen-address", self.listen_address.clone()),
            (
                "web.enable-remote-write-receiver",
                self.enable_remote_write_receiver.to_string(),
            ),
            ("web.enable-admin-api", self.enable_admin_api.to_string()),
            ("web.enable-lifecycle", self.enable_lifecycle.to_string()),
            ("web.config.file", self.web_config_file.clone()),
            ("web.route-prefix", self.route_prefix.clone()),
            ("web.max-connections", self.max_connections.to_string()),
            ("query.timeout", format_duration(self.query_timeout)),
            ("query.max-samples", self.query_max_samples.to_string()),
            (
                "query.lookback-delta",
                format_duration(self.query_lookback_delta),
            ),
            (
                "query.max-concurrency",
                self.query_max_concurrency.to_string(),
            ),
            (
                "storage.remote.read-sample-limit",
                self.remote_read_sample_limit.to_string(),
            ),
            (
                "storage.remote.read-concurrent-limit",
                self.remote_read_concurrent_limit.to_string(),
            ),
            (
                "storage.remote.read-max-bytes-in-frame",
                self.remote_read_max_bytes_in_frame.to_string(),
            ),
            (
                "rules.alert.for-outage-tolerance",
                format_duration(self.rules_alert_for_outage_tolerance),
            ),
            (
                "rules.alert.for-grace-period",
                format_duration(self.rules_alert_for_grace_period),
            ),
            (
                "rules.alert.resend-delay",
                format_duration(self.rules_alert_resend_delay),
            ),
            (
                "alertmanager.notification-queue-capacity",
                self.alertmanager_notification_queue_capacity.to_string(),
            ),
            ("enable-feature", self.enable_feature.join(",")),
            ("log.level", self.log_level.clone()),
            ("log.format", self.log_format.clone()),
        ]
    }
}

impl Default for ServerArgs {
    fn default() -> Self {
        use clap::{FromArgMatches, Parser};
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            a: ServerArgs,
        }
        // The defaults above are all valid (checked by a test), so this cannot fail.
        <Wrap as clap::CommandFactory>::command()
            .try_get_matches_from(["ignis"])
            .and_then(|m| Wrap::from_arg_matches(&m))
            .map(|w| w.a)
            .unwrap_or_else(|e| panic!("bad flag defaults: {e}"))
    }
}

/// Parses a Prometheus duration: one or more `<number><unit>` with units `y w d h m s ms`
/// (`1h30m`, `5m`, `100y`, `0`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_duration_ms(s).map(|ms| Duration::from_millis(ms as u64))
}

/// Like [`parse_duration`], in milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    // Units must appear in decreasing order, each at most once.
    let mut last_rank = usize::MAX;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!("not a valid duration string: {s:?}"));
        }
        let n: i64 = s[start..i]
            .parse()
            .map_err(|_| format!("not a valid duration string: {s:?}"))?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let (rank, mult) = match &s[ustart..i] {
            "y" => (0, 365 * 24 * 3_600_000),
            "w" => (1, 7 * 24 * 3_600_000),
            "d" => (2, 24 * 3_600_000),
            "h" => (3, 3_600_000),
            "m" => (4, 60_000),
            "s" => (5, 1000),
            "ms" => (6, 1),
            _ => return Err(format!("not a valid duration string: {s:?}")),
        };
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(format!("not a valid duration string: {s:?}"));
        }
        last_rank = rank;
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration out of range: {s:?}"))?;
    }
    Ok(total)
}

/// Formats a duration the way Prometheus's `model.Duration` prints it (`15d`, `2m`, `1h30m`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as i64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, mult) in [
        ("y", 365 * 24 * 3_600_000i64),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= mult {
            out.push_str(&format!("{}{}", ms / mult, unit));
            ms %= mult;
        }
    }
    out
}

/// Parses a byte size like `512MB`, `1GB`, `0B` or a plain number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split]
        .parse()
        .map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match s[split..].to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        "PB" => 1 << 50,
        "EB" => 1 << 60,
        _ => return Err(format!("invalid size {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size out of range: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(parse_duration_ms("5m").unwrap(), 300_000);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("100ms").unwrap(), 100);
        assert_eq!(parse_duration_ms("1d2h").unwrap(), 93_600_000);
        assert_eq!(parse_duration_ms("0").unwrap(), 0);
        assert!(parse_duration_ms("5").is_err());
        assert!(parse_duration_ms("m").is_err());
        assert!(parse_duration_ms("1m1h").is_err());
        assert!(parse_duration_ms("1x").is_err());
        assert_eq!(format_duration(Duration::from_secs(15 * 86400)), "2w1d");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("0B").unwrap(), 0);
        assert_eq!(parse_bytes("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert!(parse_bytes("1XB").is_err());
    }

    #[test]
    fn defaults_match_prometheus() {
        let a = ServerArgs::default();
        assert_eq!(a.listen_address, "0.0.0.0:9090");
        assert_eq!(a.storage_path, PathBuf::from("data/"));
        assert_eq!(a.query_timeout, Duration::from_secs(120));
        assert_eq!(a.query_lookback_delta, Duration::from_secs(300));
        assert_eq!(a.query_max_samples, 50_000_000);
        assert!(!a.enable_admin_api);
        assert_eq!(
            a.rules_alert_for_outage_tolerance,
            Duration::from_secs(3600)
        );
        assert_eq!(a.rules_alert_for_grace_period, Duration::from_secs(600));
        assert_eq!(a.rules_alert_resend_delay, Duration::from_secs(60));
        assert_eq!(a.alertmanager_notification_queue_capacity, 10_000);
    }
}
