//! Finding the blocks of a data directory and measuring their size as promtool's read-only DB
//! does (the `meta.json` format itself is `tsdb::block`'s).
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
use tsdb::block::{block_dirs, read_meta, BlockMeta};

/// A block directory found in a data directory.
#[derive(Clone, Debug)]
pub struct BlockDir {
    /// The block's directory.
    pub dir: PathBuf,
    /// Its parsed `meta.json`.
    pub meta: BlockMeta,
}

impl BlockDir {
    /// Reads the block at `dir`.
    pub fn open(dir: &Path) -> Result<BlockDir> {
        let meta = read_meta(dir).with_context(|| format!("read block {}", dir.display()))?;
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

/// The blocks of the data directory `dir` (sub-directories named by a ULID holding a
/// `meta.json`), sorted by min time, then ULID.
pub fn list_blocks(dir: &Path) -> Result<Vec<BlockDir>> {
    let dirs = block_dirs(dir).with_context(|| format!("open data directory {}", dir.display()))?;
    let mut out = dirs
        .iter()
        .map(|d| BlockDir::open(d))
        .collect::<Result<Vec<_>>>()?;
    out.sort_by_key(|b| (b.meta.min_time, b.meta.ulid));
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
