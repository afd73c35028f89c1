//! From `prometheus.yml` to running loops: [`job_from_config`] resolves one `scrape_config`
//! into a [`ScrapeJob`], and [`ScrapeManager::apply_prometheus_config`] applies a whole
//! [`Config`], (re)starting service discovery per job and feeding the targets it finds,
//! after `relabel_configs`, to the manager.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use tsdb::labels::Labels;

use super::manager::ScrapeManager;
use super::target::ScrapeJob;
use crate::config::http_client::client_settings;
use crate::config::{Config, ScrapeConfig};
use crate::discovery::{discoverers_for, targets_for, TargetGroup};

/// The scraper's settings for one `scrape_config`, with credential files read relative to
/// `config_dir`.
pub fn job_from_config(sc: &ScrapeConfig, config_dir: &Path) -> Result<ScrapeJob, String> {
    let mut job = ScrapeJob::new(sc.job_name.clone());
    job.interval = sc.interval().as_std();
    job.timeout = sc.timeout().as_std().min(job.interval);
    job.honor_labels = sc.honor_labels;
    job.honor_timestamps = sc.honor_timestamps;
    job.sample_limit = sc.sample_limit as usize;
    job.label_limit = sc.label_limit as usize;
    job.label_name_length_limit = sc.label_name_length_limit as usize;
    job.label_value_length_limit = sc.label_value_length_limit as usize;
    job.body_size_limit = sc.body_size_limit_bytes() as usize;
    let client = client_settings(&sc.http_client(), config_dir)?;
    job.headers = client.headers;
    job.tls = Some(client.tls);
    if !sc.metric_relabel_configs.is_empty() {
        let cfgs = sc.metric_relabel_configs.clone();
        job.metric_relabel_key = format!("{cfgs:?}");
        job.metric_relabel = Some(Arc::new(move |ls: &Labels| {
            crate::relabel::process(ls, &cfgs)
        }));
    }
    Ok(job)
}

impl ScrapeManager {
    /// Applies a loaded configuration: jobs are (re)configured and each job's service
    /// discovery restarted; its targets reach the loops as discovery reports them. Jobs whose
    /// credentials cannot be read are skipped with an error in the log.
    pub fn apply_prometheus_config(self: &Arc<Self>, cfg: &Config, config_dir: &Path) {
        let mut jobs = Vec::new();
        let mut configs = Vec::new();
        for sc in &cfg.scrape_configs {
            match job_from_config(sc, config_dir) {
                Ok(j) => {
                    jobs.push(j);
                    configs.push(sc.clone());
                }
                Err(e) => tracing::error!(job = %sc.job_name, err = %e, "skipping scrape job"),
            }
        }
        self.apply_config(&jobs);
        let mut tasks = Vec::new();
        for sc in configs {
            let discoverers = discoverers_for(&sc, config_dir);
            let (tx, mut rx) = mpsc::channel::<(usize, Vec<TargetGroup>)>(16);
            for (i, d) in discoverers.into_iter().enumerate() {
                let (dtx, mut drx) = mpsc::channel(1);
                tasks.push(tokio::spawn(d.run(dtx)));
                let tx = tx.clone();
                tasks.push(tokio::spawn(async move {
                    while let Some(g) = drx.recv().await {
                        if tx.send((i, g)).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            drop(tx);
            let me = Arc::clone(self);
            tasks.push(tokio::spawn(async move {
                let mut by_source: BTreeMap<usize, Vec<TargetGroup>> = BTreeMap::new();
                while let Some((i, groups)) = rx.recv().await {
                    by_source.insert(i, groups);
                    let all: Vec<TargetGroup> = by_source.values().flatten().cloned().collect();
                    match targets_for(&sc, &all, false) {
                        Ok(ts) => {
                            let mut keep = Vec::new();
                            let mut dropped = Vec::new();
                            for t in ts {
                                match t {
                                    Ok(p) => match p.labels {
                                        Some(l) => keep.push((l, p.discovered)),
                                        None => dropped.push(p.discovered),
                                    },
                                    Err(e) => {
                                        tracing::warn!(job = %sc.job_name, err = %e, "dropping target")
                                    }
                                }
                            }
                            me.set_targets_and_dropped(&sc.job_name, keep, dropped);
                        }
                        Err(e) => {
                            tracing::error!(job = %sc.job_name, err = %e, "creating targets failed");
                            me.set_targets(&sc.job_name, Vec::new());
                        }
                    }
                }
            }));
        }
        let old = std::mem::replace(&mut *self.discovery.lock(), tasks);
        for t in old {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_from_yaml() {
        let c = Config::parse(
            "global: {scrape_interval: 30s}\nscrape_configs:\n- job_name: n\n  scrape_timeout: 5s\n  honor_labels: true\n  sample_limit: 7\n  body_size_limit: 1KB\n  basic_auth: {username: u, password: p}\n  metric_relabel_configs:\n  - {source_labels: [__name__], regex: 'go_.*', action: drop}\n",
            "t",
        )
        .unwrap();
        let j = job_from_config(&c.scrape_configs[0], Path::new(".")).unwrap();
        assert_eq!(j.interval, std::time::Duration::from_secs(30));
        assert_eq!(j.timeout, std::time::Duration::from_secs(5));
        assert!(j.honor_labels && j.honor_timestamps);
        assert_eq!((j.sample_limit, j.body_size_limit), (7, 1024));
        assert_eq!(
            j.headers,
            vec![("Authorization".into(), "Basic dTpw".into())]
        );
        let f = j.metric_relabel.as_ref().unwrap();
        assert!(f(&Labels::from_pairs(&[("__name__", "go_x")])).is_none());
        assert!(f(&Labels::from_pairs(&[("__name__", "up")])).is_some());
        let j2 = job_from_config(&c.scrape_configs[0], Path::new(".")).unwrap();
        assert!(
            j.same_settings(&j2),
            "a reload of the same config keeps loops"
        );
    }
}
