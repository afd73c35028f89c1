//! `prometheus.yml`: the configuration file Prometheus 2.x/3.x reads, parsed with the same
//! fields, defaults and validation.
//!
//! The file is YAML with top-level keys `global`, `rule_files`, `scrape_config_files`,
//! `scrape_configs`, `alerting`, `storage`, `remote_write` and `remote_read`. Unknown keys
//! anywhere fail the load with the line and the field named. After parsing, defaults flow from
//! `global` into each scrape config and the cross-field rules Prometheus checks are applied
//! (timeouts not above intervals, unique job names, valid label names, valid URLs).
//! [`check_config`] reproduces `promtool check config`.
//!
//! The HTTP client sections (`basic_auth`, `authorization`, `tls_config`) become usable
//! clients in [`http_client`] (headers, one GET over HTTP/1.1 or HTTPS) and [`tls`] (rustls).

mod duration;
pub mod http_client;
mod reload;
pub mod tls;

pub use duration::{parse_duration, PromDuration};
pub use reload::ConfigReloader;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::relabel::{is_valid_label_name, RelabelConfig};

/// An error loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// YAML syntax or field error (the message names line and field).
    #[error("parsing YAML file {path}: {msg}")]
    Yaml {
        /// The file.
        path: String,
        /// The parser's message, with the location.
        msg: String,
    },
    /// A semantic rule was broken.
    #[error("{0}")]
    Invalid(String),
}

/// The default `prometheus.yml` ignis runs with when none is given: it scrapes itself under
/// the job name `prometheus`, as Prometheus's own default file does, so dashboards and alerts
/// written for `job="prometheus"` work unchanged.
pub const DEFAULT_CONFIG: &str = r#"# ignis default configuration: scrape ignis itself.
global:
  scrape_interval: 15s
  evaluation_interval: 15s

scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
"#;

/// Default global `scrape_interval`.
pub const DEFAULT_SCRAPE_INTERVAL: PromDuration = PromDuration::from_secs(60);
/// Default global `scrape_timeout`.
pub const DEFAULT_SCRAPE_TIMEOUT: PromDuration = PromDuration::from_secs(10);
/// Default global `evaluation_interval`.
pub const DEFAULT_EVALUATION_INTERVAL: PromDuration = PromDuration::from_secs(60);

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Defaults and external labels.
    #[serde(default)]
    pub global: GlobalConfig,
    /// Globs of rule files, relative to the config file's directory.
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// Globs of files holding more `scrape_configs`.
    #[serde(default)]
    pub scrape_config_files: Vec<String>,
    /// Scrape jobs.
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Alertmanager settings.
    #[serde(default)]
    pub alerting: AlertingConfig,
    /// Storage settings.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Remote write endpoints (parsed and kept).
    #[serde(default)]
    pub remote_write: Vec<RemoteWriteConfig>,
    /// Remote read endpoints (parsed and kept).
    #[serde(default)]
    pub remote_read: Vec<RemoteReadConfig>,
}

/// The `global` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// Default scrape interval (1m).
    #[serde(default)]
    pub scrape_interval: Option<PromDuration>,
    /// Default scrape timeout (10s, or the interval when that is shorter).
    #[serde(default)]
    pub scrape_timeout: Option<PromDuration>,
    /// Default rule evaluation interval (1m).
    #[serde(default)]
    pub evaluation_interval: Option<PromDuration>,
    /// Labels added to alerts and to data sent out.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// File the query log is written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_log_file: Option<String>,
    /// Per-scrape limits applied to jobs that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_size_limit: Option<String>,
    /// Default `sample_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_limit: Option<u64>,
    /// Default `label_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_limit: Option<u64>,
    /// Default `label_name_length_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_name_length_limit: Option<u64>,
    /// Default `label_value_length_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_value_length_limit: Option<u64>,
    /// Default `target_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_limit: Option<u64>,
}

impl GlobalConfig {
    /// The effective scrape interval.
    pub fn scrape_interval(&self) -> PromDuration {
        self.scrape_interval.unwrap_or(DEFAULT_SCRAPE_INTERVAL)
    }
    /// The effective scrape timeout.
    pub fn scrape_timeout(&self) -> PromDuration {
        self.scrape_timeout.unwrap_or(DEFAULT_SCRAPE_TIMEOUT)
    }
    /// The effective evaluation interval.
    pub fn evaluation_interval(&self) -> PromDuration {
        self.evaluation_interval
            .unwrap_or(DEFAULT_EVALUATION_INTERVAL)
    }
}

/// `basic_auth`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// File holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

/// `authorization`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// Scheme, `Bearer` by default.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    /// File holding the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
}

/// `tls_config`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Client certificate file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// Client key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// Server name for SNI and verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Skip verification of the server certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Minimum TLS version (`TLS12`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
}

/// The HTTP client fields shared by scrape configs, Alertmanagers, remote endpoints and HTTP SD.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HttpClientConfig {
    /// `basic_auth`.
    pub basic_auth: Option<BasicAuth>,
    /// `authorization`.
    pub authorization: Option<Authorization>,
    /// `tls_config`.
    pub tls_config: TlsConfig,
    /// `proxy_url`.
    pub proxy_url: Option<String>,
    /// `follow_redirects` (default true).
    pub follow_redirects: bool,
    /// `enable_http2` (default true).
    pub enable_http2: bool,
}

impl HttpClientConfig {
    fn validate(&self) -> Result<(), String> {
        tls::validate(&self.tls_config)?;
        if let Some(a) = &self.authorization {
            if a.credentials.is_some() && a.credentials_file.is_some() {
                return Err(
                    "at most one of authorization credentials & credentials_file must be configured"
                        .into(),
                );
            }
            if a.kind
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("basic"))
            {
                return Err(
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead"
                        .into(),
                );
            }
        }
        if let Some(b) = &self.basic_auth {
            if b.password.is_some() && b.password_file.is_some() {
                return Err(
                    "at most one of basic_auth password & password_file must be configured".into(),
                );
            }
            if self.authorization.is_some() {
                return Err(
                    "at most one of basic_auth, oauth2 & authorization must be configured".into(),
                );
            }
        }
        Ok(())
    }
}

/// Files an HTTP client section reads, for existence checks.
fn client_files<'a>(
    b: &'a Option<BasicAuth>,
    a: &'a Option<Authorization>,
    t: &'a TlsConfig,
) -> impl Iterator<Item = &'a str> {
    [
        b.as_ref().and_then(|b| b.password_file.as_deref()),
        a.as_ref().and_then(|a| a.credentials_file.as_deref()),
        t.ca_file.as_deref(),
        t.cert_file.as_deref(),
        t.key_file.as_deref(),
    ]
    .into_iter()
    .flatten()
}

/// Declares a config struct whose YAML mapping includes the HTTP client fields, and a
/// `http_client()` accessor returning them as [`HttpClientConfig`].
macro_rules! with_http_client {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
            /// `basic_auth`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub basic_auth: Option<BasicAuth>,
            /// `authorization`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub authorization: Option<Authorization>,
            /// `tls_config`.
            #[serde(default)]
            pub tls_config: TlsConfig,
            /// `proxy_url`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub proxy_url: Option<String>,
            /// `follow_redirects`.
            #[serde(default = "default_true")]
            pub follow_redirects: bool,
            /// `enable_http2`.
            #[serde(default = "default_true")]
            pub enable_http2: bool,
        }

        impl $name {
            /// The HTTP client settings of this section.
            pub fn http_client(&self) -> HttpClientConfig {
                HttpClientConfig {
                    basic_auth: self.basic_auth.clone(),
                    authorization: self.authorization.clone(),
                    tls_config: self.tls_config.clone(),
                    proxy_url: self.proxy_url.clone(),
                    follow_redirects: self.follow_redirects,
                    enable_http2: self.enable_http2,
                }
            }
        }
    };
}

fn default_true() -> bool {
    true
}

with_http_client! {
    /// One entry of `scrape_configs`.
    pub struct ScrapeConfig {
        /// The `job` label value; unique in the file.
        pub job_name: String,
        /// Scrape interval; defaults to the global one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub scrape_interval: Option<PromDuration>,
        /// Scrape timeout; defaults to the global one, capped by the interval.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub scrape_timeout: Option<PromDuration>,
        /// HTTP path (`/metrics`).
        #[serde(default = "default_metrics_path")]
        pub metrics_path: String,
        /// `http` or `https`.
        #[serde(default = "default_scheme")]
        pub scheme: String,
        /// URL query parameters.
        #[serde(default)]
        pub params: BTreeMap<String, Vec<String>>,
        /// Keep the scraped labels on conflict with target labels.
        #[serde(default)]
        pub honor_labels: bool,
        /// Keep the timestamps the target exposes (default true).
        #[serde(default = "default_true")]
        pub honor_timestamps: bool,
        /// Maximum samples per scrape (0: none).
        #[serde(default)]
        pub sample_limit: u64,
        /// Maximum labels per series (0: none).
        #[serde(default)]
        pub label_limit: u64,
        /// Maximum label name length (0: none).
        #[serde(default)]
        pub label_name_length_limit: u64,
        /// Maximum label value length (0: none).
        #[serde(default)]
        pub label_value_length_limit: u64,
        /// Maximum targets after relabeling (0: none).
        #[serde(default)]
        pub target_limit: u64,
        /// Maximum uncompressed body size, as `10MB` (absent or 0: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub body_size_limit: Option<String>,
        /// Statically listed targets.
        #[serde(default)]
        pub static_configs: Vec<StaticConfig>,
        /// File-based discovery.
        #[serde(default)]
        pub file_sd_configs: Vec<FileSdConfig>,
        /// HTTP-based discovery.
        #[serde(default)]
        pub http_sd_configs: Vec<HttpSdConfig>,
        /// Relabeling of targets.
        #[serde(default)]
        pub relabel_configs: Vec<RelabelConfig>,
        /// Relabeling of scraped series.
        #[serde(default)]
        pub metric_relabel_configs: Vec<RelabelConfig>,
    }
}

fn default_metrics_path() -> String {
    "/metrics".to_string()
}
fn default_scheme() -> String {
    "http".to_string()
}

impl ScrapeConfig {
    /// The effective scrape interval (filled in on load).
    pub fn interval(&self) -> PromDuration {
        self.scrape_interval.unwrap_or(DEFAULT_SCRAPE_INTERVAL)
    }
    /// The effective scrape timeout (filled in on load).
    pub fn timeout(&self) -> PromDuration {
        self.scrape_timeout.unwrap_or(DEFAULT_SCRAPE_TIMEOUT)
    }
    /// `body_size_limit` in bytes (0: none).
    pub fn body_size_limit_bytes(&self) -> u64 {
        self.body_size_limit
            .as_deref()
            .and_then(|s| parse_bytes(s).ok())
            .unwrap_or(0)
    }
}

/// Parses a size as Prometheus's `units.Base2Bytes`: a number with `B`, `KB`/`KiB`, `MB`,
/// `GB`, `TB`, `PB`, `EB` (powers of 1024); `0` alone is zero.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("invalid size {s:?}: missing unit"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit {
        "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        "TB" | "TiB" => 1 << 40,
        "PB" | "PiB" => 1 << 50,
        "EB" | "EiB" => 1 << 60,
        _ => return Err(format!("invalid size {s:?}: unknown unit {unit:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// One entry of `static_configs`: targets and labels for all of them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels for every target of the group.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One entry of `file_sd_configs`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Globs of `.json`, `.yml` or `.yaml` files.
    pub files: Vec<String>,
    /// Re-read period (5m).
    #[serde(default = "default_file_refresh")]
    pub refresh_interval: PromDuration,
}

fn default_file_refresh() -> PromDuration {
    PromDuration::from_secs(300)
}

with_http_client! {
    /// One entry of `http_sd_configs`.
    pub struct HttpSdConfig {
        /// The endpoint returning target groups as JSON.
        pub url: String,
        /// Re-fetch period (1m).
        #[serde(default = "default_http_refresh")]
        pub refresh_interval: PromDuration,
    }
}

fn default_http_refresh() -> PromDuration {
    PromDuration::from_secs(60)
}

/// The `alerting` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Relabeling applied to alerts before sending.
    #[serde(default)]
    pub alert_relabel_configs: Vec<RelabelConfig>,
    /// Alertmanagers to send to.
    #[serde(default)]
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

with_http_client! {
    /// One entry of `alerting.alertmanagers`.
    pub struct AlertmanagerConfig {
        /// `http` or `https`.
        #[serde(default = "default_scheme")]
        pub scheme: String,
        /// Prefix of the API path.
        #[serde(default = "default_path_prefix")]
        pub path_prefix: String,
        /// Per-request timeout (10s).
        #[serde(default = "default_am_timeout")]
        pub timeout: PromDuration,
        /// API version: `v2` (`v1` is accepted as Prometheus 2.x does, alerts are sent with v2).
        #[serde(default = "default_api_version")]
        pub api_version: String,
        /// Statically listed Alertmanagers.
        #[serde(default)]
        pub static_configs: Vec<StaticConfig>,
        /// File-discovered Alertmanagers.
        #[serde(default)]
        pub file_sd_configs: Vec<FileSdConfig>,
        /// HTTP-discovered Alertmanagers.
        #[serde(default)]
        pub http_sd_configs: Vec<HttpSdConfig>,
        /// Relabeling of discovered Alertmanagers.
        #[serde(default)]
        pub relabel_configs: Vec<RelabelConfig>,
    }
}

fn default_path_prefix() -> String {
    "/".to_string()
}
fn default_am_timeout() -> PromDuration {
    PromDuration::from_secs(10)
}
fn default_api_version() -> String {
    "v2".to_string()
}

/// The `storage` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `storage.tsdb`.
    #[serde(default)]
    pub tsdb: TsdbConfig,
    /// `storage.exemplars`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemplars: Option<ExemplarsConfig>,
}

/// `storage.tsdb`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TsdbConfig {
    /// How far behind the newest sample out-of-order samples are accepted (0: none).
    #[serde(default)]
    pub out_of_order_time_window: PromDuration,
}

/// `storage.exemplars`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExemplarsConfig {
    /// Size of the exemplar ring buffer.
    #[serde(default)]
    pub max_exemplars: i64,
}

/// `remote_write[].queue_config`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Samples buffered per shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    /// Maximum shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shards: Option<u64>,
    /// Minimum shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_shards: Option<u64>,
    /// Samples per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples_per_send: Option<u64>,
    /// Longest wait before a partial batch is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_send_deadline: Option<PromDuration>,
    /// Initial retry backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_backoff: Option<PromDuration>,
    /// Maximum retry backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<PromDuration>,
    /// Retry on HTTP 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on_http_429: Option<bool>,
    /// Samples older than this are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_age_limit: Option<PromDuration>,
}

/// `remote_write[].metadata_config`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// Whether metadata is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<bool>,
    /// How often.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_interval: Option<PromDuration>,
    /// Entries per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples_per_send: Option<u64>,
}

with_http_client! {
    /// One entry of `remote_write`.
    pub struct RemoteWriteConfig {
        /// Endpoint.
        pub url: String,
        /// Request timeout (30s).
        #[serde(default = "default_remote_timeout")]
        pub remote_timeout: PromDuration,
        /// Extra HTTP headers.
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
        /// Name of the queue (unique).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
        /// Relabeling before sending.
        #[serde(default)]
        pub write_relabel_configs: Vec<RelabelConfig>,
        /// Queue tuning.
        #[serde(default)]
        pub queue_config: QueueConfig,
        /// Metadata sending.
        #[serde(default)]
        pub metadata_config: MetadataConfig,
        /// Send exemplars.
        #[serde(default)]
        pub send_exemplars: bool,
        /// Send native histograms.
        #[serde(default)]
        pub send_native_histograms: bool,
        /// Protobuf message (3.x).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub protobuf_message: Option<String>,
    }
}

with_http_client! {
    /// One entry of `remote_read`.
    pub struct RemoteReadConfig {
        /// Endpoint.
        pub url: String,
        /// Request timeout (1m).
        #[serde(default = "default_read_timeout")]
        pub remote_timeout: PromDuration,
        /// Extra HTTP headers.
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
        /// Name (unique).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
        /// Equality matchers a query must have to be sent here.
        #[serde(default)]
        pub required_matchers: BTreeMap<String, String>,
        /// Also read data the local TSDB holds.
        #[serde(default)]
        pub read_recent: bool,
        /// Add external labels as matchers.
        #[serde(default = "default_true")]
        pub filter_external_labels: bool,
    }
}

fn default_remote_timeout() -> PromDuration {
    PromDuration::from_secs(30)
}
fn default_read_timeout() -> PromDuration {
    PromDuration::from_secs(60)
}

/// The scrape configs listed by a `scrape_config_files` file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScrapeConfigsFile {
    #[serde(default)]
    scrape_configs: Vec<ScrapeConfig>,
}

fn check_url(u: &str, what: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| format!("{what} URL {u:?} must use the http or https scheme"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{what} URL {u:?} has no host"));
    }
    Ok(())
}

fn check_labels_map(m: &BTreeMap<String, String>) -> Result<(), String> {
    for k in m.keys() {
        if !is_valid_label_name(k) {
            return Err(format!("{k:?} is not a valid label name"));
        }
    }
    Ok(())
}

fn check_static(s: &[StaticConfig]) -> Result<(), String> {
    for sc in s {
        check_labels_map(&sc.labels)?;
        for t in &sc.targets {
            if t.contains('/') {
                return Err(format!("{t:?} is not a valid hostname"));
            }
        }
    }
    Ok(())
}

fn check_file_sd(f: &[FileSdConfig]) -> Result<(), String> {
    for c in f {
        for p in &c.files {
            let name = Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            let ok = [".json", ".yml", ".yaml"].iter().any(|e| name.ends_with(e));
            if !ok {
                return Err(format!("path name {p:?} is not valid for file discovery"));
            }
        }
    }
    Ok(())
}

fn check_http_sd(h: &[HttpSdConfig]) -> Result<(), String> {
    for c in h {
        check_url(&c.url, "http_sd_configs")?;
        c.http_client().validate()?;
    }
    Ok(())
}

impl Config {
    /// Parses a configuration from YAML text, applying defaults and validation. `name` appears
    /// in error messages.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
                path: name.to_string(),
                msg: e.to_string(),
            })?
        };
        cfg.finish().map_err(|msg| ConfigError::Yaml {
            path: name.to_string(),
            msg,
        })?;
        Ok(cfg)
    }

    /// Reads and parses a configuration file, including its `scrape_config_files`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let mut cfg = Config::parse(&text, &path.display().to_string())?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut extra = Vec::new();
        for f in resolve_globs(dir, &cfg.scrape_config_files).map_err(ConfigError::Invalid)? {
            let t = std::fs::read_to_string(&f).map_err(|e| ConfigError::Io {
                path: f.display().to_string(),
                source: e,
            })?;
            let sf: ScrapeConfigsFile =
                serde_yaml_ng::from_str(&t).map_err(|e| ConfigError::Yaml {
                    path: f.display().to_string(),
                    msg: e.to_string(),
                })?;
            extra.extend(sf.scrape_configs);
        }
        if !extra.is_empty() {
            cfg.scrape_configs.extend(extra);
            cfg.finish().map_err(ConfigError::Invalid)?;
        }
        Ok(cfg)
    }

    /// The embedded [`DEFAULT_CONFIG`].
    pub fn default_config() -> Config {
        Config::parse(DEFAULT_CONFIG, "default config").expect("embedded default config is valid")
    }

    /// Fills defaults from `global` and checks cross-field rules.
    fn finish(&mut self) -> Result<(), String> {
        let g = &mut self.global;
        let interval = g.scrape_interval.unwrap_or(DEFAULT_SCRAPE_INTERVAL);
        g.scrape_interval = Some(interval);
        match g.scrape_timeout {
            Some(t) if t > interval => {
                return Err("global scrape timeout greater than scrape interval".into())
            }
            Some(_) => {}
            None => {
                g.scrape_timeout = Some(if DEFAULT_SCRAPE_TIMEOUT > interval {
                    interval
                } else {
                    DEFAULT_SCRAPE_TIMEOUT
                })
            }
        }
        g.evaluation_interval = Some(g.evaluation_interval.unwrap_or(DEFAULT_EVALUATION_INTERVAL));
        for (k, v) in &g.external_labels {
            if k == "__name__" || !is_valid_label_name(k) {
                return Err(format!("{k:?} is not a valid label name"));
            }
            if v.is_empty() {
                continue;
            }
        }
        g.external_labels.retain(|_, v| !v.is_empty());
        if let Some(b) = &g.body_size_limit {
            parse_bytes(b)?;
        }
        let gt = g.scrape_timeout.unwrap_or(DEFAULT_SCRAPE_TIMEOUT);
        let global = g.clone();

        let mut jobs = HashSet::new();
        for sc in &mut self.scrape_configs {
            if sc.job_name.is_empty() {
                return Err("job_name is empty".into());
            }
            if !jobs.insert(sc.job_name.clone()) {
                return Err(format!(
                    "found multiple scrape configs with job name {:?}",
                    sc.job_name
                ));
            }
            let iv = sc.scrape_interval.unwrap_or(interval);
            sc.scrape_interval = Some(iv);
            match sc.scrape_timeout {
                None => sc.scrape_timeout = Some(if gt > iv { iv } else { gt }),
                Some(t) if t > iv => {
                    return Err(format!(
                        "scrape timeout greater than scrape interval for scrape config with job name {:?}",
                        sc.job_name
                    ))
                }
                Some(_) => {}
            }
            if !sc.metrics_path.starts_with('/') {
                return Err(format!(
                    "metrics_path {:?} of job {:?} must start with '/'",
                    sc.metrics_path, sc.job_name
                ));
            }
            if sc.sample_limit == 0 {
                sc.sample_limit = global.sample_limit.unwrap_or(0);
            }
            if sc.label_limit == 0 {
                sc.label_limit = global.label_limit.unwrap_or(0);
            }
            if sc.label_name_length_limit == 0 {
                sc.label_name_length_limit = global.label_name_length_limit.unwrap_or(0);
            }
            if sc.label_value_length_limit == 0 {
                sc.label_value_length_limit = global.label_value_length_limit.unwrap_or(0);
            }
            if sc.target_limit == 0 {
                sc.target_limit = global.target_limit.unwrap_or(0);
            }
            match &sc.body_size_limit {
                Some(b) => {
                    parse_bytes(b).map_err(|e| format!("job {:?}: {e}", sc.job_name))?;
                }
                None => sc.body_size_limit = global.body_size_limit.clone(),
            }
            sc.http_client()
                .validate()
                .map_err(|e| format!("job {:?}: {e}", sc.job_name))?;
            check_static(&sc.static_configs)?;
            check_file_sd(&sc.file_sd_configs)?;
            check_http_sd(&sc.http_sd_configs)?;
        }
        for am in &self.alerting.alertmanagers {
            if am.api_version != "v2" && am.api_version != "v1" {
                return Err(format!(
                    "expected Alertmanager api version to be one of [v1 v2] but got {:?}",
                    am.api_version
                ));
            }
            am.http_client().validate()?;
            check_static(&am.static_configs)?;
            check_file_sd(&am.file_sd_configs)?;
            check_http_sd(&am.http_sd_configs)?;
        }
        let mut names = HashSet::new();
        for rw in &self.remote_write {
            check_url(&rw.url, "remote write")?;
            rw.http_client().validate()?;
            if let Some(n) = &rw.name {
                if !names.insert(n.clone()) {
                    return Err(format!(
                        "found multiple remote write configs with job name {n:?}"
                    ));
                }
            }
        }
        let mut names = HashSet::new();
        for rr in &self.remote_read {
            check_url(&rr.url, "remote read")?;
            rr.http_client().validate()?;
            if let Some(n) = &rr.name {
                if !names.insert(n.clone()) {
                    return Err(format!(
                        "found multiple remote read configs with job name {n:?}"
                    ));
                }
            }
        }
        for r in &self.rule_files {
            glob::Pattern::new(r).map_err(|e| format!("invalid rule file path {r:?}: {e}"))?;
        }
        for r in &self.scrape_config_files {
            glob::Pattern::new(r)
                .map_err(|e| format!("invalid scrape config file path {r:?}: {e}"))?;
        }
        Ok(())
    }

    /// Every file the config refers to that must exist (credentials, certificates).
    pub fn referenced_files(&self) -> Vec<&str> {
        let mut v = Vec::new();
        for sc in &self.scrape_configs {
            v.extend(client_files(
                &sc.basic_auth,
                &sc.authorization,
                &sc.tls_config,
            ));
            for h in &sc.http_sd_configs {
                v.extend(client_files(&h.basic_auth, &h.authorization, &h.tls_config));
            }
        }
        for am in &self.alerting.alertmanagers {
            v.extend(client_files(
                &am.basic_auth,
                &am.authorization,
                &am.tls_config,
            ));
        }
        v
    }

    /// The rule files the `rule_files` globs match now, relative to `config_dir`.
    pub fn rule_file_paths(&self, config_dir: &Path) -> Result<Vec<PathBuf>, String> {
        resolve_globs(config_dir, &self.rule_files)
    }
}

/// Expands globs relative to `dir`, sorted, without duplicates.
pub fn resolve_globs(dir: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in patterns {
        let full = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            dir.join(p)
        };
        let s = full.to_string_lossy().to_string();
        let paths = glob::glob(&s).map_err(|e| format!("invalid glob {p:?}: {e}"))?;
        for e in paths {
            let path = e.map_err(|e| format!("reading {p:?}: {e}"))?;
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What `promtool check config` prints: text for standard output and standard error, and
/// whether the file (and its rule files) passed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Text for standard output.
    pub stdout: String,
    /// Text for standard error.
    pub stderr: String,
    /// True when everything checked is valid (exit status 0).
    pub ok: bool,
}

/// Checks configuration files as `promtool check config` does: parses each, checks the files
/// it refers to exist, and checks each rule file it lists (with
/// [`crate::rules::check_rule_file`]).
pub fn check_config(files: &[PathBuf]) -> CheckReport {
    let mut r = CheckReport {
        ok: true,
        ..Default::default()
    };
    for f in files {
        let shown = f.display().to_string();
        r.stdout.push_str(&format!("Checking {shown}\n"));
        let cfg = match Config::load(f) {
            Ok(c) => c,
            Err(e) => {
                r.stderr.push_str(&format!("  FAILED: {e}\n"));
                r.stdout.push('\n');
                r.ok = false;
                continue;
            }
        };
        let dir = f.parent().unwrap_or(Path::new("."));
        let mut failed = false;
        for file in cfg.referenced_files() {
            let p = dir.join(file);
            if !p.exists() {
                r.stderr.push_str(&format!(
                    "  FAILED: error checking file {file:?}: file does not exist\n"
                ));
                failed = true;
            }
        }
        let rule_files = match cfg.rule_file_paths(dir) {
            Ok(v) => v,
            Err(e) => {
                r.stderr.push_str(&format!("  FAILED: {e}\n"));
                r.stdout.push('\n');
                r.ok = false;
                continue;
            }
        };
        if failed {
            r.stdout.push('\n');
            r.ok = false;
            continue;
        }
        for sc in &cfg.scrape_configs {
            for fsd in &sc.file_sd_configs {
                for pat in &fsd.files {
                    let n = resolve_globs(dir, std::slice::from_ref(pat))
                        .map(|v| v.len())
                        .unwrap_or(0);
                    if n == 0 {
                        r.stdout.push_str(&format!(
                            "  WARNING: file {pat:?} for file_sd in scrape job {:?} does not exist\n",
                            sc.job_name
                        ));
                    }
                }
            }
        }
        if !rule_files.is_empty() {
            r.stdout.push_str(&format!(
                "  SUCCESS: {} rule files found\n",
                rule_files.len()
            ));
        }
        r.stdout.push_str(&format!(
            " SUCCESS: {shown} is valid prometheus config file syntax\n"
        ));
        r.stdout.push('\n');
        for rf in &rule_files {
            let sub = crate::rules::check_rule_files(std::slice::from_ref(rf));
            r.stdout.push_str(&sub.stdout);
            r.stderr.push_str(&sub.stderr);
            r.ok &= sub.ok;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_flow_from_global() {
        let c = Config::parse(
            "global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: a\n  - job_name: b\n    scrape_interval: 1m\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.global.scrape_timeout, Some(PromDuration::from_secs(5)));
        assert_eq!(c.scrape_configs[0].interval(), PromDuration::from_secs(5));
        assert_eq!(c.scrape_configs[0].timeout(), PromDuration::from_secs(5));
        assert_eq!(c.scrape_configs[1].interval(), PromDuration::from_secs(60));
        assert_eq!(c.scrape_configs[1].timeout(), PromDuration::from_secs(5));
        assert_eq!(c.scrape_configs[0].metrics_path, "/metrics");
        assert!(c.scrape_configs[0].honor_timestamps);
        assert_eq!(c.global.evaluation_interval(), PromDuration::from_secs(60));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("10MB").unwrap(), 10 << 20);
        assert_eq!(parse_bytes("0").unwrap(), 0);
        assert!(parse_bytes("10").is_err());
        assert!(parse_bytes("1XB").is_err());
    }

    #[test]
    fn default_config_scrapes_self() {
        let c = Config::default_config();
        assert_eq!(c.scrape_configs.len(), 1);
        assert_eq!(c.scrape_configs[0].job_name, "prometheus");
        assert_eq!(c.scrape_configs[0].interval(), PromDuration::from_secs(15));
        assert_eq!(
            c.scrape_configs[0].static_configs[0].targets,
            vec!["localhost:9090".to_string()]
        );
    }
}
