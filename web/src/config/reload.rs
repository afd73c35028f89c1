//! Configuration reloading: a new file replaces the running configuration only when it loads
//! cleanly; otherwise the old one stays and the failure is recorded for the
//! `prometheus_config_last_reload_successful` and
//! `prometheus_config_last_reload_success_timestamp_seconds` metrics.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::{Config, ConfigError};

#[derive(Debug)]
struct State {
    config: Arc<Config>,
    last_successful: bool,
    last_success_unix: f64,
    last_error: Option<String>,
}

/// Holds the running configuration and reloads it from its file.
#[derive(Debug)]
pub struct ConfigReloader {
    path: PathBuf,
    state: RwLock<State>,
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl ConfigReloader {
    /// Loads `path` for the first time; a failure here is fatal for the caller.
    pub fn new(path: &Path) -> Result<Self, ConfigError> {
        let cfg = Config::load(path)?;
        Ok(ConfigReloader {
            path: path.to_path_buf(),
            state: RwLock::new(State {
                config: Arc::new(cfg),
                last_successful: true,
                last_success_unix: now_unix(),
                last_error: None,
            }),
        })
    }

    /// The running configuration.
    pub fn current(&self) -> Arc<Config> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .clone()
    }

    /// Re-reads the file. On success the new configuration runs and is returned; on failure
    /// the old one stays and the error is returned and remembered.
    pub fn reload(&self) -> Result<Arc<Config>, String> {
        let r = Config::load(&self.path);
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok(c) => {
                st.config = Arc::new(c);
                st.last_successful = true;
                st.last_success_unix = now_unix();
                st.last_error = None;
                Ok(st.config.clone())
            }
            Err(e) => {
                let msg = format!(
                    "couldn't load configuration (--config.file={:?}): {e}",
                    self.path.display().to_string()
                );
                st.last_successful = false;
                st.last_error = Some(msg.clone());
                Err(msg)
            }
        }
    }

    /// `prometheus_config_last_reload_successful`: 1 or 0.
    pub fn last_reload_successful(&self) -> f64 {
        if self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last_successful
        {
            1.0
        } else {
            0.0
        }
    }

    /// `prometheus_config_last_reload_success_timestamp_seconds`.
    pub fn last_success_timestamp(&self) -> f64 {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last_success_unix
    }

    /// The error of the last reload, if it failed.
    pub fn last_error(&self) -> Option<String> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last_error
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_reload_keeps_old_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yml");
        std::fs::write(&p, "scrape_configs:\n  - job_name: a\n").unwrap();
        let r = ConfigReloader::new(&p).unwrap();
        assert_eq!(r.last_reload_successful(), 1.0);
        std::fs::write(&p, "scrape_configs:\n  - job_name: b\n    nope: 1\n").unwrap();
        let e = r.reload().unwrap_err();
        assert!(e.contains("nope") && e.contains("line 3"), "{e}");
        assert_eq!(r.last_reload_successful(), 0.0);
        assert_eq!(r.current().scrape_configs[0].job_name, "a");
        std::fs::write(&p, "scrape_configs:\n  - job_name: c\n").unwrap();
        assert_eq!(r.reload().unwrap().scrape_configs[0].job_name, "c");
        assert_eq!(r.last_reload_successful(), 1.0);
        assert!(r.last_error().is_none());
        assert!(r.last_success_timestamp() > 1.6e9);
    }
}
