//! The state every handler shares: storage, query engine, flags, metrics, config text, limits
//! and the shutdown signal.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use parking_lot::RwLock;
use tokio::sync::{watch, Semaphore};

use super::flags::ServerArgs;
use super::metrics::Metrics;
use super::storage::SharedStorage;
use crate::api::engine::QueryEngine;
use crate::config::Config;
use crate::scrape::ScrapeManager;

/// The configuration used when no config file exists: scrape ignis itself.
pub use crate::config::DEFAULT_CONFIG;

/// Shared server state.
pub struct AppState {
    /// The database.
    pub storage: SharedStorage,
    /// The PromQL engine.
    pub engine: Arc<dyn QueryEngine>,
    /// The flags the server runs with.
    pub args: ServerArgs,
    /// Own metrics.
    pub metrics: Metrics,
    /// The loaded configuration file's text.
    pub config_yaml: RwLock<String>,
    /// The loaded configuration, parsed.
    pub config: RwLock<Arc<Config>>,
    /// The scrape manager, once the server has started it.
    pub scrape: OnceLock<Arc<ScrapeManager>>,
    /// The rule groups being evaluated.
    pub rules: super::rules::RuleRunner,
    /// When the config was last loaded.
    pub config_time: RwLock<SystemTime>,
    /// Bounds concurrent queries (`--query.max-concurrency`).
    pub query_slots: Semaphore,
    /// Bounds concurrent remote reads (`--storage.remote.read-concurrent-limit`), if limited.
    pub read_slots: Option<Semaphore>,
    /// Set to true to stop the server.
    pub shutdown: watch::Sender<bool>,
    /// Basic authentication from `--web.config.file` (disabled when no users).
    pub auth: super::webconfig::BasicAuth,
}

/// Handle to the shared state.
pub type SharedState = Arc<AppState>;

impl AppState {
    /// State over a storage and engine with the given flags.
    #[cfg(test)]
    pub fn new(
        storage: SharedStorage,
        engine: Arc<dyn QueryEngine>,
        args: ServerArgs,
    ) -> SharedState {
        Self::with_auth(storage, engine, args, Default::default())
    }

    /// State with basic authentication.
    pub fn with_auth(
        storage: SharedStorage,
        engine: Arc<dyn QueryEngine>,
        args: ServerArgs,
        auth: super::webconfig::BasicAuth,
    ) -> SharedState {
        let (shutdown, _) = watch::channel(false);
        let (config, parsed) = load_config(&args.config_file).unwrap_or_else(|e| {
            tracing::error!(err = %e, "Using the default configuration");
            (
                DEFAULT_CONFIG.to_string(),
                Arc::new(Config::default_config()),
            )
        });
        Arc::new(AppState {
            storage,
            engine,
            query_slots: Semaphore::new(args.query_max_concurrency.max(1)),
            read_slots: (args.remote_read_concurrent_limit > 0)
                .then(|| Semaphore::new(args.remote_read_concurrent_limit)),
            args,
            metrics: Metrics::default(),
            config_yaml: RwLock::new(config),
            config: RwLock::new(parsed),
            scrape: OnceLock::new(),
            rules: Default::default(),
            config_time: RwLock::new(SystemTime::now()),
            shutdown,
            auth,
        })
    }

    /// Re-reads the configuration file (`/-/reload`, SIGHUP).
    pub fn reload_config(self: &Arc<Self>) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        match load_config(&self.args.config_file) {
            Ok((text, cfg)) => {
                *self.config_yaml.write() = text;
                *self.config.write() = cfg.clone();
                self.apply_scrape_config(&cfg);
                *self.config_time.write() = SystemTime::now();
                self.metrics.last_reload_ok.store(1, Ordering::Relaxed);
                let now = SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                self.metrics.last_reload_time.store(now, Ordering::Relaxed);
                tracing::info!(filename = %self.args.config_file.display(), "Completed loading of configuration file");
                Ok(())
            }
            Err(e) => {
                self.metrics.last_reload_ok.store(0, Ordering::Relaxed);
                tracing::error!(filename = %self.args.config_file.display(), err = %e, "Error reloading config");
                Err(e)
            }
        }
    }

    /// Starts scraping with `manager` and applies the loaded configuration to it.
    pub fn start_scraping(&self, manager: Arc<ScrapeManager>) {
        let manager = self.scrape.get_or_init(|| manager).clone();
        let cfg = self.config.read().clone();
        manager.apply_prometheus_config(&cfg, &self.config_dir());
    }

    /// Starts evaluating the loaded configuration's rule groups.
    pub fn start_rules(self: &Arc<Self>) {
        let cfg = self.config.read().clone();
        self.rules.apply(self, &cfg);
    }

    fn apply_scrape_config(self: &Arc<Self>, cfg: &Config) {
        if let Some(m) = self.scrape.get() {
            m.apply_prometheus_config(cfg, &self.config_dir());
            self.rules.apply(self, cfg);
        }
    }

    /// The directory relative paths in the configuration are resolved against.
    pub fn config_dir(&self) -> PathBuf {
        match self.args.config_file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Asks the server to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Where snapshots go.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.args.storage_path.join("snapshots")
    }
}

/// Reads and parses the config file; a missing default `prometheus.yml` gives the embedded
/// default.
fn load_config(path: &std::path::Path) -> Result<(String, Arc<Config>), String> {
    match std::fs::read_to_string(path) {
        Ok(s) => match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&s) {
            Ok(_) => match Config::load(path) {
                Ok(c) => Ok((s, Arc::new(c))),
                Err(e) => Err(format!(
                    "couldn't load configuration (--config.file={:?}): {e}",
                    path.display().to_string()
                )),
            },
            Err(e) => Err(format!(
                "couldn't load configuration (--config.file={:?}): parsing YAML file {}: {e}",
                path.display().to_string(),
                path.display()
            )),
        },
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && path == std::path::Path::new("prometheus.yml") =>
        {
            Ok((
                DEFAULT_CONFIG.to_string(),
                Arc::new(Config::default_config()),
            ))
        }
        Err(e) => Err(format!(
            "couldn't load configuration (--config.file={:?}): {e}",
            path.display().to_string()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_must_be_yaml_and_reload_reports_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prom.yml");
        std::fs::write(&p, "global:\n  scrape_interval: 5s\n").unwrap();
        assert!(load_config(&p).unwrap().0.contains("5s"));
        std::fs::write(&p, "global:\n  scrape_interval: 5s\n  bogus: 1\n").unwrap();
        assert!(load_config(&p).unwrap_err().contains("bogus"));
        std::fs::write(&p, "global: [unclosed\n").unwrap();
        assert!(load_config(&p).unwrap_err().contains("parsing YAML"));
        assert!(load_config(&dir.path().join("missing.yml")).is_err());
    }
}
