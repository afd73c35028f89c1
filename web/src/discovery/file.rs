//! `file_sd_configs`: target groups read from JSON (`.json`) or YAML (`.yml`, `.yaml`) files
//! matched by globs. Files are polled: a change of the matched set or of a file's modification
//! time or size re-reads it at once, and every `refresh_interval` all files are re-read. A file
//! that fails to parse keeps its previous groups (its error is kept for reporting). Each group
//! carries `__meta_filepath`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::{parse_groups_json, parse_groups_yaml, BoxFuture, Discoverer, TargetGroup};

/// Label holding the file a group came from.
pub const META_FILEPATH: &str = "__meta_filepath";

#[derive(Clone, Debug, PartialEq)]
struct FileState {
    stamp: Option<(SystemTime, u64)>,
    groups: Vec<TargetGroup>,
    error: Option<String>,
}

/// Discovers targets from files.
pub struct FileDiscoverer {
    patterns: Vec<String>,
    base: PathBuf,
    refresh: Duration,
    poll: Duration,
    files: BTreeMap<PathBuf, FileState>,
}

impl FileDiscoverer {
    /// Watches `patterns` (relative to `base`), re-reading everything every `refresh`.
    pub fn new(patterns: Vec<String>, base: &Path, refresh: Duration) -> Self {
        FileDiscoverer {
            patterns,
            base: base.to_path_buf(),
            refresh,
            poll: Duration::from_secs(1),
            files: BTreeMap::new(),
        }
    }

    /// Sets how often modification times are polled (1s by default).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The current groups of all files, in file order.
    pub fn groups(&self) -> Vec<TargetGroup> {
        self.files
            .values()
            .flat_map(|f| f.groups.iter().cloned())
            .collect()
    }

    /// Errors of files that failed to read or parse the last time.
    pub fn errors(&self) -> Vec<(PathBuf, String)> {
        self.files
            .iter()
            .filter_map(|(p, f)| f.error.clone().map(|e| (p.clone(), e)))
            .collect()
    }

    fn read_file(path: &Path, prev: Option<&FileState>) -> FileState {
        let stamp = std::fs::metadata(path)
            .ok()
            .and_then(|m| m.modified().ok().map(|t| (t, m.len())));
        let shown = path.display().to_string();
        let meta = [(META_FILEPATH, shown.as_str())];
        let parsed = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                if shown.ends_with(".json") {
                    parse_groups_json(&bytes, &shown, &meta)
                } else {
                    let text = String::from_utf8(bytes).map_err(|e| e.to_string())?;
                    parse_groups_yaml(&text, &shown, &meta)
                }
            });
        match parsed {
            Ok(groups) => FileState {
                stamp,
                groups,
                error: None,
            },
            Err(e) => FileState {
                stamp,
                groups: prev.map(|p| p.groups.clone()).unwrap_or_default(),
                error: Some(format!("reading {shown}: {e}")),
            },
        }
    }

    /// One polling pass: re-reads changed (or, with `force`, all) files. Returns whether the
    /// groups changed.
    pub fn refresh(&mut self, force: bool) -> bool {
        let before = self.groups();
        let paths = crate::config::resolve_globs(&self.base, &self.patterns).unwrap_or_default();
        let mut next = BTreeMap::new();
        for p in paths {
            let prev = self.files.get(&p);
            let stamp = std::fs::metadata(&p)
                .ok()
                .and_then(|m| m.modified().ok().map(|t| (t, m.len())));
            let state = match prev {
                Some(s) if !force && s.stamp == stamp && stamp.is_some() => s.clone(),
                _ => Self::read_file(&p, prev),
            };
            next.insert(p, state);
        }
        self.files = next;
        self.groups() != before
    }
}

impl Discoverer for FileDiscoverer {
    fn run(mut self: Box<Self>, tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.refresh(true);
            if tx.send(self.groups()).await.is_err() {
                return;
            }
            let mut last_full = Instant::now();
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(self.poll) => {}
                }
                let force = last_full.elapsed() >= self.refresh;
                if force {
                    last_full = Instant::now();
                }
                if self.refresh(force) && tx.send(self.groups()).await.is_err() {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rereads_on_change_and_keeps_groups_on_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("a.json");
        std::fs::write(&j, r#"[{"targets": ["a:1"], "labels": {"env": "x"}}]"#).unwrap();
        let y = dir.path().join("b.yml");
        std::fs::write(&y, "- targets: ['b:1']\n").unwrap();
        std::fs::write(dir.path().join("c.txt"), "ignored").unwrap();
        let d = FileDiscoverer::new(
            vec!["*.json".into(), "*.yml".into()],
            dir.path(),
            Duration::from_secs(300),
        )
        .with_poll_interval(Duration::from_millis(20));
        let (tx, mut rx) = mpsc::channel(4);
        let h = tokio::spawn(Box::new(d).run(tx));
        let g = rx.recv().await.unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].targets[0].get("__address__"), Some("a:1"));
        assert_eq!(
            g[0].labels.get(META_FILEPATH),
            Some(j.display().to_string().as_str())
        );
        assert_eq!(g[1].targets[0].get("__address__"), Some("b:1"));
        // edit: a different size is noticed even within the same mtime second
        std::fs::write(&y, "- targets: ['b:1', 'b:2']\n").unwrap();
        let g = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(g[1].targets.len(), 2);
        // a new file matching the glob
        std::fs::write(dir.path().join("d.json"), r#"[{"targets": ["d:1"]}]"#).unwrap();
        let g = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(g.len(), 3);
        // removing a file removes its groups
        std::fs::remove_file(dir.path().join("d.json")).unwrap();
        let g = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(g.len(), 2);
        drop(rx);
        h.await.unwrap();
    }

    #[test]
    fn bad_file_keeps_previous_groups() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("a.json");
        std::fs::write(&j, r#"[{"targets": ["a:1"]}]"#).unwrap();
        let mut d = FileDiscoverer::new(vec!["a.json".into()], dir.path(), Duration::from_secs(1));
        assert!(d.refresh(true));
        std::fs::write(&j, "[{").unwrap();
        assert!(!d.refresh(true));
        assert_eq!(d.groups()[0].targets[0].get("__address__"), Some("a:1"));
        assert_eq!(d.errors().len(), 1);
    }
}
