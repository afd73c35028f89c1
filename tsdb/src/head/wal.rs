//! The head's use of the write-ahead log: [`WalWriter`] logs committed batches (a series
//! record, then a samples record, in one `log` call so they share a write), and
//! [`replay_wal`] rebuilds the head from the last checkpoint and the segments after it.
//!
//! Replay follows Prometheus: a series record whose labels already exist under another
//! reference maps that reference to the existing series; samples of unknown references are
//! counted and skipped; samples not newer than the series' last sample (already in an mmapped
//! chunk) are skipped; a tombstones record deletes from what has been replayed so far. A
//! corrupt or torn record ends the replay: everything before it stays, the damage is logged
//! and returned, and with `repair` the log is cut back to the last good record.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Head, SeriesRef, WalLog};
use crate::labels::Labels;
use crate::wal::record::{self, RecordType, RefSample, RefSeries, RefTombstone};
use crate::wal::{CorruptionError, Reader, Wal};
use crate::{Error, Result};

/// Logs the head's commits into a [`Wal`].
pub struct WalWriter {
    inner: Mutex<WriterState>,
}

struct WriterState {
    wal: Wal,
    series: Vec<RefSeries>,
    samples: Vec<RefSample>,
    sbuf: Vec<u8>,
    xbuf: Vec<u8>,
}

impl WalWriter {
    /// A writer over an open WAL.
    pub fn new(wal: Wal) -> Self {
        WalWriter {
            inner: Mutex::new(WriterState {
                wal,
                series: Vec::new(),
                samples: Vec::new(),
                sbuf: Vec::new(),
                xbuf: Vec::new(),
            }),
        }
    }

    /// Runs `f` on the WAL with other writers held off (segment cuts, truncation, close).
    pub fn with_wal<R>(&self, f: impl FnOnce(&mut Wal) -> R) -> R {
        f(&mut self.inner.lock().wal)
    }

    /// Logs a tombstones record.
    pub fn log_tombstones(&self, stones: &[RefTombstone]) -> Result<()> {
        if stones.is_empty() {
            return Ok(());
        }
        let mut st = self.inner.lock();
        let mut buf = Vec::new();
        record::encode_tombstones(stones, &mut buf);
        st.wal.log(&[&buf])
    }
}

impl WalLog for WalWriter {
    fn log(&self, series: &[(SeriesRef, Labels)], samples: &[(SeriesRef, i64, f64)]) -> Result<()> {
        let mut guard = self.inner.lock();
        let st = &mut *guard;
        st.sbuf.clear();
        st.xbuf.clear();
        if !series.is_empty() {
            st.series.clear();
            st.series.extend(series.iter().map(|(r, l)| RefSeries {
                series_ref: *r,
                labels: l.clone(),
            }));
            record::encode_series(&st.series, &mut st.sbuf);
        }
        if !samples.is_empty() {
            st.samples.clear();
            st.samples
                .extend(
                    samples
                        .iter()
                        .map(|&(series_ref, t, v)| RefSample { series_ref, t, v }),
                );
            record::encode_samples(&st.samples, &mut st.xbuf);
        }
        match (st.sbuf.is_empty(), st.xbuf.is_empty()) {
            (true, true) => Ok(()),
            (false, true) => st.wal.log(&[&st.sbuf]),
            (true, false) => st.wal.log(&[&st.xbuf]),
            (false, false) => st.wal.log(&[&st.sbuf, &st.xbuf]),
        }
    }
}

/// What a WAL replay read and did.
#[derive(Clone, Debug, Default)]
pub struct ReplayStats {
    /// Records read.
    pub records: u64,
    /// Series records' entries.
    pub series: u64,
    /// Samples appended to the head.
    pub samples: u64,
    /// Samples skipped: unknown series reference.
    pub unknown_refs: u64,
    /// Samples skipped: not newer than the series' last sample (e.g. already in an mmapped
    /// chunk) or older than the head's minimum valid time.
    pub skipped_samples: u64,
    /// Tombstone entries applied.
    pub tombstones: u64,
    /// Records of other types (exemplars, metadata, histograms) that were ignored.
    pub ignored_records: u64,
    /// The corruption that ended the replay, if any.
    pub corruption: Option<CorruptionError>,
    /// Wall time of the replay.
    pub duration: Duration,
}

/// Replays the WAL in `wal_dir` into `head` (see the module docs). With `repair`, a corruption
/// is cut off with [`crate::wal::repair`] after replaying everything before it.
pub fn replay_wal(head: &Head, wal_dir: &Path, repair: bool) -> Result<ReplayStats> {
    replay_wal_with_metrics(head, wal_dir, repair, None)
}

/// As [`replay_wal`], counting corruptions into `metrics`.
pub fn replay_wal_with_metrics(
    head: &Head,
    wal_dir: &Path,
    repair: bool,
    metrics: Option<std::sync::Arc<crate::wal::WalMetrics>>,
) -> Result<ReplayStats> {
    let start = Instant::now();
    let mut stats = ReplayStats::default();
    if !wal_dir.exists() {
        return Ok(stats);
    }
    let mut reader = Reader::open(wal_dir)?;
    if let Some(m) = metrics {
        reader = reader.with_metrics(m);
    }
    let mut remap: HashMap<u64, u64> = HashMap::new();
    let mut series: Vec<RefSeries> = Vec::new();
    let mut samples: Vec<RefSample> = Vec::new();
    let mut stones: Vec<RefTombstone> = Vec::new();
    let mut last_log = Instant::now();
    loop {
        let rec = match reader.next() {
            Ok(Some((_, _, rec))) => rec,
            Ok(None) => break,
            Err(Error::WalCorruption(e)) => {
                tracing::warn!(error = %e, records = stats.records, "WAL replay stopped at corruption");
                stats.corruption = Some(e);
                break;
            }
            Err(e) => return Err(e),
        };
        stats.records += 1;
        match record::record_type(rec) {
            RecordType::Series => {
                series.clear();
                record::decode_series(rec, &mut series)?;
                for s in series.drain(..) {
                    stats.series += 1;
                    let got = head.replay_series(s.series_ref, &s.labels)?;
                    if got != s.series_ref {
                        remap.insert(s.series_ref, got);
                    }
                }
            }
            RecordType::Samples => {
                samples.clear();
                record::decode_samples(rec, &mut samples)?;
                for s in &samples {
                    let r = remap.get(&s.series_ref).copied().unwrap_or(s.series_ref);
                    match head.replay_sample_checked(r, s.t, s.v)? {
                        Some(true) => stats.samples += 1,
                        Some(false) => stats.skipped_samples += 1,
                        None => stats.unknown_refs += 1,
                    }
                }
            }
            RecordType::Tombstones => {
                stones.clear();
                record::decode_tombstones(rec, &mut stones)?;
                for s in &stones {
                    let r = remap.get(&s.series_ref).copied().unwrap_or(s.series_ref);
                    head.delete_series_range(r, s.mint, s.maxt)?;
                    stats.tombstones += 1;
                }
            }
            _ => stats.ignored_records += 1,
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            last_log = Instant::now();
            tracing::info!(
                records = stats.records,
                samples = stats.samples,
                "WAL replay in progress"
            );
        }
    }
    if let (Some(e), true) = (&stats.corruption, repair) {
        crate::wal::repair(wal_dir, e)?;
    }
    stats.duration = start.elapsed();
    tracing::info!(
        dir = %wal_dir.display(),
        records = stats.records,
        series = stats.series,
        samples = stats.samples,
        unknown_refs = stats.unknown_refs,
        skipped = stats.skipped_samples,
        corrupted = stats.corruption.is_some(),
        duration_ms = stats.duration.as_millis() as u64,
        "WAL replay done"
    );
    Ok(stats)
}
