//! The state every handler shares: storage, query engine, flags, metrics, config text, limits
//! and the shutdown signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use tokio::sync::{watch, Semaphore};

use super::flags::ServerArgs;
use super::metrics::Metrics;
use super::storage::SharedStorage;
use crate::api::engine::QueryEngine;

/// The configuration used when no config file exists: scrape ignis itself.
pub const DEFAULT_CONFIG: &str = "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\nscrape_configs:\n- job_name: prometheus\n  static_configs:\n  - targets:\n    - localhost:9090\n";

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
        let config = load_config(&args.config_file).unwrap_or_else(|_| DEFAULT_CONFIG.to_string());
        Arc::new(AppState {
            storage,
            engine,
            query_slots: Semaphore::new(args.query_max_concurrency.max(1)),
            read_slots: (args.remote_read_concurrent_limit > 0)
                .then(|| Semaphore::new(args.remote_read_concurrent_limit)),
            args,
            metrics: Metrics::default(),
            config_yaml: RwLock::new(config),
            config_time: RwLock::new(SystemTime::now()),
            shutdown,
            auth,
        })
    }

    /// Re-reads the configuration file (`/-/reload`, SIGHUP).
    pub fn reload_config(&self) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        match load_config(&self.args.config_file) {
            Ok(text) => {
                *self.config_yaml.write() = text;
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

    /// Asks the server to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Where snapshots go.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.args.storage_path.join("snapshots")
    }
}

/// Reads the config file (which must be YAML); a missing default `prometheus.yml` gives the
/// embedded default.
fn load_config(path: &std::path::Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&s) {
            Ok(_) => Ok(s),
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
            Ok(DEFAULT_CONFIG.to_string())
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
        assert!(load_config(&p).unwrap().contains("5s"));
        std::fs::write(&p, "global: [unclosed\n").unwrap();
        assert!(load_config(&p).unwrap_err().contains("parsing YAML"));
        assert!(load_config(&dir.path().join("missing.yml")).is_err());
    }
}
