//! Repair of a WAL after a [`CorruptionError`].
//!
//! Records are causal (a sample needs its series record), so everything from the damage on is
//! given up: the damaged segment is cut at the offset of the first unreadable record and its
//! last page padded with zeros, and every later segment of the same directory is deleted. All
//! records before the damage are kept byte for byte. Afterwards a new [`super::Wal`] continues
//! in a fresh segment after the repaired one, and the log reads clean.

use std::fs::OpenOptions;
use std::path::Path;

use super::segment::PAGE_SIZE;
use super::{list_segments, segment_name, sync_dir, CorruptionError};
use crate::{Error, Result};

/// Cuts the WAL in `wal_dir` back to the last good record before `err` (see the module doc).
/// `err.dir` may be `wal_dir` or a checkpoint directory inside it; the repair applies to the
/// directory named in the error. Logs every step with `tracing::warn!`.
pub fn repair(wal_dir: impl AsRef<Path>, err: &CorruptionError) -> Result<()> {
    let wal_dir = wal_dir.as_ref();
    let dir = if err.dir.as_os_str().is_empty() {
        wal_dir
    } else {
        err.dir.as_path()
    };
    tracing::warn!(
        dir = %dir.display(), segment = err.segment, offset = err.offset, reason = %err.reason,
        "starting WAL corruption repair"
    );
    for i in list_segments(dir)? {
        if i > err.segment {
            let p = segment_name(dir, i);
            tracing::warn!(file = %p.display(), "deleting WAL segment after the corrupted one");
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    let path = segment_name(dir, err.segment);
    let f = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
    let cut = err.offset.min(len);
    let padded = cut.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64;
    tracing::warn!(
        file = %path.display(), offset = cut, dropped_bytes = len - cut,
        "truncating corrupted WAL segment at the last good record"
    );
    // Cut, then extend with zeros to the end of the page (set_len zero-fills).
    f.set_len(cut).map_err(|e| Error::io(&path, e))?;
    f.set_len(padded).map_err(|e| Error::io(&path, e))?;
    f.sync_all().map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)?;
    Ok(())
}
