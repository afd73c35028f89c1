//! Finding the blocks of a data directory, reading their `meta.json` and measuring their size,
//! as promtool's read-only DB does.
//!
//! A block is a sub-directory whose name is a ULID and that holds a `meta.json` (Prometheus
//! format, version 1):
//!
//! ```json
//! {"ulid": "01M8…", "minTime": 1704067200000, "maxTime": 1704074385001,
//!  "stats": {"numSamples": 128580, "numSeries": 268, "numChunks": 1072},
//!  "compaction": {"level": 1, "sources": ["01M8…"]}, "version": 1}
//! ```
//!
//! `maxTime` is exclusive. A block's size is the sum of the sizes of its chunk segment files,
//! `index`, `tombstones` and `meta.json` (Prometheus's `Block.Size()`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// Statistics stored in `meta.json`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MetaStats {
    /// Number of samples.
    #[serde(default)]
    pub num_samples: u64,
    /// Number of series.
    #[serde(default)]
    pub num_series: u64,
    /// Number of chunks.
    #[serde(default)]
    pub num_chunks: u64,
}

/// The fields of `meta.json` the tools print.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Block ULID.
    pub ulid: String,
    /// First timestamp (ms, inclusive).
    pub min_time: i64,
    /// End timestamp (ms, exclusive).
    pub max_time: i64,
    /// Counts.
    #[serde(default)]
    pub stats: MetaStats,
}

/// A block directory found in a data directory.
#[derive(Clone, Debug)]
pub struct BlockDir {
    /// The block's directory.
    pub dir: PathBuf,
    /// Its parsed `meta.json`.
    pub meta: Meta,
}

impl BlockDir {
    /// Reads the block at `dir`.
    pub fn open(dir: &Path) -> Result<BlockDir> {
        let path = dir.join("meta.json");
        let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let meta: Meta =
            serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))?;
        Ok(BlockDir {
            dir: dir.to_path_buf(),
            meta,
        })
    }

    /// Bytes on disk: chunk segments, index, tombstones and meta.json.
    pub fn size(&self) -> Result<u64> {
        let mut total = 0;
        for name in ["index", "tombstones", "meta.json"] {
            let p = self.dir.join(name);
            match std::fs::metadata(&p) {
                Ok(m) => total += m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == "tombstones" => {}
                Err(e) => return Err(e).with_context(|| format!("stat {}", p.display())),
            }
        }
        let chunks = self.dir.join("chunks");
        for entry in
            std::fs::read_dir(&chunks).with_context(|| format!("read dir {}", chunks.display()))?
        {
            let entry = entry.with_context(|| format!("read dir {}", chunks.display()))?;
            let name = entry.file_name();
            if name
                .to_str()
                .is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
            {
                total += entry
                    .metadata()
                    .with_context(|| format!("stat {}", entry.path().display()))?
                    .len();
            }
        }
        Ok(total)
    }
}

/// Whether `name` looks like a ULID (26 Crockford base-32 characters).
pub fn is_ulid(name: &str) -> bool {
    name.len() == 26 && name.parse::<ulid::Ulid>().is_ok()
}

/// The blocks of the data directory `dir`, sorted by min time (then ULID). Directories that
/// are not ULIDs are skipped, as Prometheus does.
pub fn list_blocks(dir: &Path) -> Result<Vec<BlockDir>> {
    let rd =
        std::fs::read_dir(dir).with_context(|| format!("open data directory {}", dir.display()))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.with_context(|| format!("read dir {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_ulid(&name) || !entry.path().is_dir() {
            continue;
        }
        out.push(BlockDir::open(&entry.path())?);
    }
    out.sort_by(|a, b| (a.meta.min_time, &a.meta.ulid).cmp(&(b.meta.min_time, &b.meta.ulid)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meta_and_size() {
        let tmp = tempfile::tempdir().unwrap();
        let b = tmp.path().join("01M8BBP7NGC1DJPDEQ4B9A263N");
        std::fs::create_dir_all(b.join("chunks")).unwrap();
        let meta = r#"{"ulid":"01M8BBP7NGC1DJPDEQ4B9A263N","minTime":10,"maxTime":20,"stats":{"numSamples":3,"numSeries":1,"numChunks":1},"compaction":{"level":1},"version":1}"#;
        std::fs::write(b.join("meta.json"), meta).unwrap();
        std::fs::write(b.join("index"), [0u8; 100]).unwrap();
        std::fs::write(b.join("tombstones"), [0u8; 9]).unwrap();
        std::fs::write(b.join("chunks/000001"), [0u8; 50]).unwrap();
        std::fs::create_dir(tmp.path().join("wal")).unwrap();
        std::fs::create_dir(
            tmp.path()
                .join("01M8BBP7NGC1DJPDEQ4B9A263N.tmp-for-creation"),
        )
        .unwrap();
        let blocks = list_blocks(tmp.path()).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].meta.stats.num_samples, 3);
        assert_eq!(blocks[0].meta.max_time, 20);
        assert_eq!(blocks[0].size().unwrap(), 100 + 9 + 50 + meta.len() as u64);
    }

    #[test]
    fn bad_meta_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let b = tmp.path().join("01M8BBP7NGC1DJPDEQ4B9A263N");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("meta.json"), "{").unwrap();
        let err = format!("{:#}", list_blocks(tmp.path()).unwrap_err());
        assert!(err.contains("meta.json"), "{err}");
    }
}
