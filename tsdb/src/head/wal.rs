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
use crate::wal::{compress_record, CorruptionError, Prepared, Reader, Wal};
use crate::{Error, Result};

/// Logs the head's commits into a [`Wal`]. Records are encoded and compressed by the calling
/// thread before the WAL's lock is taken; only the page writes happen under it.
pub struct WalWriter {
    inner: Mutex<Wal>,
    compress: bool,
}

/// Buffers a committing thread keeps between commits: the encoded series and samples records
/// and their compressed forms, and the snappy encoder.
struct Scratch {
    series: Vec<u8>,
    samples: Vec<u8>,
    cseries: Vec<u8>,
    csamples: Vec<u8>,
    snappy: snap::raw::Encoder,
}

/// Buffers larger than this are not kept after a commit.
const KEEP_SCRATCH: usize = 4 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Option<Scratch>> = const { std::cell::RefCell::new(None) };
}

impl WalWriter {
    /// A writer over an open WAL.
    pub fn new(wal: Wal) -> Self {
        WalWriter {
            compress: wal.compresses(),
            inner: Mutex::new(wal),
        }
    }

    /// Runs `f` on the WAL with other writers held off (segment cuts, truncation, close).
    pub fn with_wal<R>(&self, f: impl FnOnce(&mut Wal) -> R) -> R {
        f(&mut self.inner.lock())
    }

    /// Logs a tombstones record.
    pub fn log_tombstones(&self, stones: &[RefTombstone]) -> Result<()> {
        if stones.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        record::encode_tombstones(stones, &mut buf);
        self.inner.lock().log(&[&buf])
    }

    fn log_with(
        &self,
        sc: &mut Scratch,
        series: &[(SeriesRef, Labels)],
        samples: &[(SeriesRef, i64, f64)],
    ) -> Result<()> {
        sc.series.clear();
        sc.samples.clear();
        if !series.is_empty() {
            record::encode_series_refs(series.iter().map(|(r, l)| (*r, l)), &mut sc.series);
        }
        if !samples.is_empty() {
            record::encode_sample_tuples(samples.iter().copied(), &mut sc.samples);
        }
        let compress = self.compress;
        fn prep<'a>(
            compress: bool,
            rec: &'a [u8],
            enc: &mut snap::raw::Encoder,
            out: &'a mut Vec<u8>,
        ) -> Result<Prepared<'a>> {
            match compress {
                true => compress_record(rec, enc, out),
                false => Ok(Prepared::raw(rec)),
            }
        }
        let Scratch {
            series: sbuf,
            samples: xbuf,
            cseries,
            csamples,
            snappy,
        } = sc;
        let mut recs = [Prepared::raw(&[]); 2];
        let mut n = 0;
        if !sbuf.is_empty() {
            recs[n] = prep(compress, sbuf, snappy, cseries)?;
            n += 1;
        }
        if !xbuf.is_empty() {
            recs[n] = prep(compress, xbuf, snappy, csamples)?;
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        self.inner.lock().log_prepared(&recs[..n])
    }
}

impl WalLog for WalWriter {
    fn log(&self, series: &[(SeriesRef, Labels)], samples: &[(SeriesRef, i64, f64)]) -> Result<()> {
        let mut sc = SCRATCH.with(|s| s.take()).unwrap_or_else(|| Scratch {
            series: Vec::new(),
            samples: Vec::new(),
            cseries: Vec::new(),
            csamples: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        });
        let res = self.log_with(&mut sc, series, samples);
        let big = [&sc.series, &sc.samples, &sc.cseries, &sc.csamples]
            .iter()
            .any(|b| b.capacity() > KEEP_SCRATCH);
        if !big {
            SCRATCH.with(|s| *s.borrow_mut() = Some(sc));
        }
        res
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::WalOptions;

    /// What [`WalWriter`] logs reads back as one series record, then one samples record, with
    /// the references, labels, timestamps and value bits given (NaN and -0 included).
    #[test]
    fn writer_logs_series_then_samples() {
        let dir = tempfile::tempdir().unwrap();
        for compress in [true, false] {
            let wdir = dir.path().join(format!("wal-{compress}"));
            let w = WalWriter::new(
                Wal::open(
                    &wdir,
                    WalOptions {
                        compress,
                        ..WalOptions::default()
                    },
                )
                .unwrap(),
            );
            let a = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
            let b = Labels::from_pairs(&[("__name__", "up"), ("job", "b")]);
            let samples: Vec<(SeriesRef, i64, f64)> = (0..500)
                .map(|i| (if i % 2 == 0 { 7 } else { 3 }, 1_000 + i, i as f64 * 0.5))
                .chain([(7, 2_000, f64::NAN), (3, 2_000, -0.0)])
                .collect();
            w.log(&[(7, a.clone()), (3, b.clone())], &samples).unwrap();
            w.log(&[], &samples[..1]).unwrap();
            w.with_wal(|w| w.close()).unwrap();

            let mut r = Reader::open(&wdir).unwrap();
            let mut recs = Vec::new();
            while let Some((_, _, rec)) = r.next().unwrap() {
                recs.push(rec.to_vec());
            }
            assert_eq!(recs.len(), 3);
            let mut series = Vec::new();
            record::decode_series(&recs[0], &mut series).unwrap();
            assert_eq!(
                series,
                vec![
                    RefSeries {
                        series_ref: 7,
                        labels: a
                    },
                    RefSeries {
                        series_ref: 3,
                        labels: b
                    }
                ]
            );
            for (rec, want) in [(&recs[1], &samples[..]), (&recs[2], &samples[..1])] {
                let mut got = Vec::new();
                record::decode_samples(rec, &mut got).unwrap();
                let got: Vec<_> = got
                    .iter()
                    .map(|s| (s.series_ref, s.t, s.v.to_bits()))
                    .collect();
                let want: Vec<_> = want.iter().map(|&(r, t, v)| (r, t, v.to_bits())).collect();
                assert_eq!(got, want);
            }
        }
    }
}
