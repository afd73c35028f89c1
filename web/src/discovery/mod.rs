//! Service discovery: a [`Discoverer`] produces the current list of target groups and sends it
//! again whenever it changes. Mechanisms: static lists ([`StaticDiscoverer`]), files
//! ([`file::FileDiscoverer`], JSON or YAML, re-read on change by polling modification times and
//! on `refresh_interval`) and HTTP endpoints ([`http::HttpDiscoverer`]).
//!
//! A target group file or HTTP response is a list of groups:
//! `[{"targets": ["host:port", …], "labels": {"name": "value", …}}, …]`; every target of a
//! group gets `__address__` set to its string, plus the group's labels (target labels win).

pub mod file;
pub mod http;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde::Deserialize;
use tokio::sync::mpsc;
use tsdb::{Label, Labels};

use crate::config::{ScrapeConfig, StaticConfig};
use crate::relabel::{is_valid_label_name, populate_labels, Populated, ScrapeLabelDefaults};

/// A set of targets sharing labels, as discovered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetGroup {
    /// Where it came from (unique per discoverer), e.g. `file.json:0`.
    pub source: String,
    /// One label set per target, each with `__address__`.
    pub targets: Vec<Labels>,
    /// Labels common to all targets.
    pub labels: Labels,
}

/// A boxed future, as discoverers return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A service-discovery mechanism.
pub trait Discoverer: Send {
    /// Runs until `tx` is closed, sending the complete current list of groups first and then
    /// after every change.
    fn run(self: Box<Self>, tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture<'static, ()>;
}

/// The target groups of `static_configs`.
pub struct StaticDiscoverer {
    groups: Vec<TargetGroup>,
}

impl StaticDiscoverer {
    /// Groups from static configs; sources are `0`, `1`, ….
    pub fn new(configs: &[StaticConfig]) -> Self {
        let groups = configs
            .iter()
            .enumerate()
            .map(|(i, c)| TargetGroup {
                source: i.to_string(),
                targets: c
                    .targets
                    .iter()
                    .map(|t| Labels::from_pairs(&[("__address__", t.as_str())]))
                    .collect(),
                labels: Labels::new(c.labels.iter().map(|(k, v)| Label::new(k, v)).collect()),
            })
            .collect();
        StaticDiscoverer { groups }
    }

    /// The groups.
    pub fn groups(&self) -> &[TargetGroup] {
        &self.groups
    }
}

impl Discoverer for StaticDiscoverer {
    fn run(self: Box<Self>, tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if tx.send(self.groups).await.is_ok() {
                tx.closed().await;
            }
        })
    }
}

/// The serialized form of one group in SD files and HTTP SD responses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Builds groups from parsed raw groups, validating names and addresses; `meta` labels are
/// added to every group, sources are `<source>:<index>`.
fn groups_from_raw(
    raw: Vec<RawGroup>,
    source: &str,
    meta: &[(&str, &str)],
) -> Result<Vec<TargetGroup>, String> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, g) in raw.into_iter().enumerate() {
        let mut labels: Vec<Label> = Vec::with_capacity(g.labels.len() + meta.len());
        for (k, v) in g.labels {
            if !is_valid_label_name(&k) {
                return Err(format!("{k:?} is not a valid label name"));
            }
            labels.push(Label::new(k, v));
        }
        for (k, v) in meta {
            labels.push(Label::new(*k, *v));
        }
        let mut targets = Vec::with_capacity(g.targets.len());
        for t in g.targets {
            if t.contains('/') {
                return Err(format!("{t:?} is not a valid hostname"));
            }
            targets.push(Labels::from_pairs(&[("__address__", t.as_str())]));
        }
        out.push(TargetGroup {
            source: format!("{source}:{i}"),
            targets,
            labels: Labels::new(labels),
        });
    }
    Ok(out)
}

/// Parses target groups from JSON text.
pub fn parse_groups_json(
    text: &[u8],
    source: &str,
    meta: &[(&str, &str)],
) -> Result<Vec<TargetGroup>, String> {
    let raw: Vec<RawGroup> = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    groups_from_raw(raw, source, meta)
}

/// Parses target groups from YAML text.
pub fn parse_groups_yaml(
    text: &str,
    source: &str,
    meta: &[(&str, &str)],
) -> Result<Vec<TargetGroup>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<RawGroup> = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    groups_from_raw(raw, source, meta)
}

/// The discoverers a scrape config asks for; relative SD file globs are taken from
/// `config_dir`.
pub fn discoverers_for(sc: &ScrapeConfig, config_dir: &Path) -> Vec<Box<dyn Discoverer>> {
    let mut v: Vec<Box<dyn Discoverer>> = Vec::new();
    if !sc.static_configs.is_empty() {
        v.push(Box::new(StaticDiscoverer::new(&sc.static_configs)));
    }
    for f in &sc.file_sd_configs {
        v.push(Box::new(file::FileDiscoverer::new(
            f.files.clone(),
            config_dir,
            f.refresh_interval.as_std(),
        )));
    }
    for h in &sc.http_sd_configs {
        let client = crate::config::http_client::client_settings(&h.http_client(), config_dir);
        v.push(Box::new(
            http::HttpDiscoverer::new(&h.url, h.refresh_interval.as_std()).with_client(client),
        ));
    }
    v
}

/// The targets of a scrape config for the current groups, as Prometheus's
/// `TargetsFromGroup`: group labels under target labels, then [`populate_labels`]. Targets
/// dropped by relabeling are returned with `labels: None`. More than `target_limit` kept
/// targets fail the whole set.
pub fn targets_for(
    sc: &ScrapeConfig,
    groups: &[TargetGroup],
    no_default_port: bool,
) -> Result<Vec<Result<Populated, String>>, String> {
    let defaults = ScrapeLabelDefaults {
        job_name: &sc.job_name,
        scrape_interval: sc.interval().to_string(),
        scrape_timeout: sc.timeout().to_string(),
        metrics_path: &sc.metrics_path,
        scheme: &sc.scheme,
        params: sc
            .params
            .iter()
            .filter_map(|(k, v)| v.first().map(|f| (k.as_str(), f.as_str())))
            .collect(),
        relabel_configs: &sc.relabel_configs,
        no_default_port,
    };
    let mut out = Vec::new();
    let mut kept = 0u64;
    for g in groups {
        for t in &g.targets {
            let mut ls: Vec<Label> = t.iter().cloned().collect();
            for l in &g.labels {
                if !t.has(&l.name) {
                    ls.push(l.clone());
                }
            }
            let r = populate_labels(&Labels::new(ls), &defaults);
            if matches!(&r, Ok(p) if p.labels.is_some()) {
                kept += 1;
            }
            out.push(r);
        }
    }
    if sc.target_limit > 0 && kept > sc.target_limit {
        return Err(format!(
            "target_limit exceeded (number of targets: {kept}, limit: {})",
            sc.target_limit
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[tokio::test]
    async fn static_discoverer_sends_groups() {
        let c = Config::parse(
            "scrape_configs:\n- job_name: j\n  static_configs:\n  - targets: [a:1, b:2]\n    labels: {env: prod}\n",
            "t",
        )
        .unwrap();
        let d = discoverers_for(&c.scrape_configs[0], Path::new("."));
        assert_eq!(d.len(), 1);
        let (tx, mut rx) = mpsc::channel(1);
        let h = tokio::spawn(d.into_iter().next().unwrap().run(tx));
        let groups = rx.recv().await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].targets.len(), 2);
        assert_eq!(groups[0].labels.get("env"), Some("prod"));
        drop(rx);
        h.await.unwrap();
    }

    #[test]
    fn targets_merge_group_labels_and_limit() {
        let mut c = Config::parse(
            "scrape_configs:\n- job_name: j\n  scrape_interval: 30s\n  relabel_configs:\n  - {source_labels: [__address__], regex: 'drop.*', action: drop}\n",
            "t",
        )
        .unwrap()
        .scrape_configs
        .remove(0);
        let groups = parse_groups_json(
            br#"[{"targets": ["a:1", "drop:2"], "labels": {"env": "x", "__address__": "ignored"}}]"#,
            "f.json",
            &[("__meta_filepath", "f.json")],
        )
        .unwrap();
        let ts = targets_for(&c, &groups, false).unwrap();
        assert_eq!(ts.len(), 2);
        let first = ts[0].as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(first.get("__address__"), Some("a:1"));
        assert_eq!(first.get("env"), Some("x"));
        assert_eq!(first.get("__scrape_interval__"), Some("30s"));
        assert_eq!(first.get("__meta_filepath"), None);
        assert_eq!(ts[1].as_ref().unwrap().labels, None);
        assert_eq!(
            ts[1].as_ref().unwrap().discovered.get("__meta_filepath"),
            Some("f.json")
        );
        c.target_limit = 1;
        assert!(targets_for(&c, &groups, false).is_ok());
        let more = parse_groups_yaml("- targets: [a:1, b:1]\n", "f.yml", &[]).unwrap();
        assert!(targets_for(&c, &more, false)
            .unwrap_err()
            .contains("target_limit exceeded"));
    }

    #[test]
    fn bad_group_files() {
        assert!(parse_groups_json(b"{}", "f", &[]).is_err());
        assert!(parse_groups_json(br#"[{"targets": ["a/b"]}]"#, "f", &[]).is_err());
        assert!(parse_groups_json(br#"[{"labels": {"a-b": "x"}}]"#, "f", &[]).is_err());
        assert!(parse_groups_yaml("- targets: [a]\n  bogus: 1\n", "f", &[])
            .unwrap_err()
            .contains("bogus"));
    }
}
