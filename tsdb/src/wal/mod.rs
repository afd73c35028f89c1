//! The write-ahead log, byte-compatible with Prometheus's `tsdb/wlog` (see
//! `tsdb/docs/format/wal.md` upstream).
//!
//! A WAL directory holds numbered segment files `00000000`, `00000001`, … (8 digits) and at
//! most a few checkpoint directories `checkpoint.<n, 8 digits>` that are themselves WAL
//! directories. The page and fragment layout of a segment is described in [`segment`], the
//! record payloads in [`record`], checkpoints in [`mod@checkpoint`].
//!
//! * [`Wal`] appends records to the newest segment ([`segment`]);
//! * [`Reader`] reads the records of a checkpoint and of segments back, in order, and stops with
//!   a [`CorruptionError`] (segment, offset, reason) at the first damaged or torn record
//!   ([`reader`]);
//! * [`fn@repair`] cuts the log back to the last good record before such damage;
//! * [`checkpoint::checkpoint`] compacts a range of segments into a checkpoint.
//!
//! Replay of a data directory is "last checkpoint, then the segments after it":
//! [`Reader::open`] does exactly that.

pub mod checkpoint;
pub mod reader;
pub mod record;
pub mod repair;
pub mod segment;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

pub use checkpoint::{checkpoint, last_checkpoint};
pub use reader::{Reader, SegmentRef};
pub use repair::repair;
pub use segment::{
    compress_record, Prepared, Wal, WalOptions, DEFAULT_SEGMENT_SIZE, PAGE_SIZE, RECORD_HEADER_SIZE,
};

/// A damaged or torn record: where it starts and what is wrong. Every record that starts before
/// `offset` in `segment` (and in every earlier segment) was read intact.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("WAL corruption in segment {} at offset {offset}: {reason}", segment_name(dir, *segment).display())]
pub struct CorruptionError {
    /// The directory holding the segment (the WAL directory or a checkpoint directory in it).
    pub dir: PathBuf,
    /// Index of the damaged segment.
    pub segment: u32,
    /// Byte offset in the segment of the first record (or padding) that could not be read.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// Counters of a WAL, for the server's metrics endpoint (Prometheus names them
/// `prometheus_tsdb_wal_*`). Shared between the writer, readers and repair through an `Arc`.
#[derive(Debug, Default)]
pub struct WalMetrics {
    /// Corruptions found while reading (`prometheus_tsdb_wal_corruptions_total`).
    pub corruptions_total: AtomicU64,
    /// Pages written out (partial or full).
    pub page_flushes_total: AtomicU64,
    /// Pages completed (filled or padded).
    pub completed_pages_total: AtomicU64,
    /// Calls of `log` that failed.
    pub writes_failed_total: AtomicU64,
    /// fsync calls.
    pub fsyncs_total: AtomicU64,
    /// Truncations attempted.
    pub truncations_total: AtomicU64,
    /// Truncations that failed.
    pub truncations_failed_total: AtomicU64,
    /// Record fragments written.
    pub record_part_writes_total: AtomicU64,
    /// Bytes of records saved by compression.
    pub record_bytes_saved_total: AtomicU64,
    /// Index of the segment being written.
    pub current_segment: AtomicU64,
}

impl WalMetrics {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    /// Current value of a counter (relaxed load).
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Path of segment `index` in `dir`: the index as 8 decimal digits.
pub fn segment_name(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("{index:08}"))
}

/// Indices of the segment files in `dir` (files whose whole name is a number), ascending.
/// Fails when they are not consecutive.
pub fn list_segments(dir: &Path) -> Result<Vec<u32>> {
    let out = crate::fsutil::numbered_files(dir)?;
    for w in out.windows(2) {
        if w[0] + 1 != w[1] {
            return Err(Error::Other(format!(
                "{}: WAL segments are not consecutive: {:08} is followed by {:08}",
                dir.display(),
                w[0],
                w[1]
            )));
        }
    }
    Ok(out)
}

/// The first and last segment index in `dir`, or `None` when it holds no segment.
pub fn segment_range(dir: &Path) -> Result<Option<(u32, u32)>> {
    let segs = list_segments(dir)?;
    Ok(segs.first().map(|&f| (f, *segs.last().unwrap_or(&f))))
}

pub(crate) use crate::fsutil::sync_dir;
