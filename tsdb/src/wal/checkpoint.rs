//! WAL checkpoints, as Prometheus's `wlog.Checkpoint`.
//!
//! A checkpoint `checkpoint.<n>` (n = last segment it covers, 8 digits) is a directory in the
//! WAL directory that is itself a WAL (segments `00000000`, …, same page format, snappy on). It
//! holds what is still needed from the previous checkpoint and the segments up to `n`:
//!
//! * series records of the series `keep_series` accepts;
//! * float and histogram samples and exemplars with `t >= mint`;
//! * tombstones of kept series with `maxt >= mint`;
//! * the latest metadata of every kept series (one record at the end);
//! * m-map markers and unknown records are dropped.
//!
//! It is written under `checkpoint.<n>.tmp`, fsynced and renamed, so a crash leaves either no
//! checkpoint or a complete one (leftover `.tmp` dirs are deleted by the next run). After it the
//! caller truncates the WAL segments `<= n` and deletes older checkpoints
//! ([`delete_checkpoints`]). Replay reads the last checkpoint, then the segments after `n`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::reader::{Reader, SegmentRef};
use super::record::{self, RecordType};
use super::segment::{Wal, WalOptions};
use super::{list_segments, sync_dir};
use crate::{Error, Result};

const PREFIX: &str = "checkpoint.";
const TMP_SUFFIX: &str = ".tmp";

/// What a checkpoint kept and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Series read.
    pub total_series: usize,
    /// Series dropped (not kept).
    pub dropped_series: usize,
    /// Float and histogram samples read.
    pub total_samples: usize,
    /// Samples dropped (older than mint).
    pub dropped_samples: usize,
    /// Tombstones read.
    pub total_tombstones: usize,
    /// Tombstones dropped.
    pub dropped_tombstones: usize,
    /// Exemplars read.
    pub total_exemplars: usize,
    /// Exemplars dropped.
    pub dropped_exemplars: usize,
    /// Metadata entries read.
    pub total_metadata: usize,
    /// Metadata entries dropped (series not kept, or superseded).
    pub dropped_metadata: usize,
}

/// Path of checkpoint `index` in `wal_dir`.
pub fn checkpoint_dir(wal_dir: &Path, index: u32) -> PathBuf {
    wal_dir.join(format!("{PREFIX}{index:08}"))
}

fn list_checkpoints(wal_dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let rd = std::fs::read_dir(wal_dir).map_err(|e| Error::io(wal_dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(wal_dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(i) = num.parse::<u32>() else { continue };
        let path = ent.path();
        if !path.is_dir() {
            return Err(Error::Other(format!(
                "checkpoint {} is not a directory",
                path.display()
            )));
        }
        out.push((i, path));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// The newest checkpoint in `wal_dir`: its directory and index, or `None`.
pub fn last_checkpoint(wal_dir: impl AsRef<Path>) -> Result<Option<(PathBuf, u32)>> {
    Ok(list_checkpoints(wal_dir.as_ref())?
        .pop()
        .map(|(i, p)| (p, i)))
}

/// Deletes the checkpoints with an index below `before`.
pub fn delete_checkpoints(wal_dir: impl AsRef<Path>, before: u32) -> Result<()> {
    let wal_dir = wal_dir.as_ref();
    for (i, p) in list_checkpoints(wal_dir)? {
        if i >= before {
            break;
        }
        std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    sync_dir(wal_dir)
}

fn delete_temp_checkpoints(wal_dir: &Path) -> Result<()> {
    let rd = std::fs::read_dir(wal_dir).map_err(|e| Error::io(wal_dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(wal_dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX) {
            let p = ent.path();
            tracing::info!(dir = %p.display(), "removing leftover temporary checkpoint");
            std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

/// Writes checkpoint `to` from the last checkpoint (if any) and the WAL segments `from..=to`
/// of `wal_dir` (see the module doc). When a checkpoint exists, reading continues right after
/// it: `from` must not leave a gap after it. Returns what was kept and dropped.
pub fn checkpoint(
    wal_dir: impl AsRef<Path>,
    from: u32,
    to: u32,
    keep_series: impl Fn(u64) -> bool,
    mint: i64,
) -> Result<CheckpointStats> {
    let wal_dir = wal_dir.as_ref();
    tracing::info!(dir = %wal_dir.display(), from, to, mint, "creating WAL checkpoint");
    let mut segs = Vec::new();
    let mut from = from;
    if let Some((cp_dir, idx)) = last_checkpoint(wal_dir)? {
        let next = idx.saturating_add(1);
        if from > next {
            return Err(Error::InvalidArgument(format!(
                "unexpected gap after the last checkpoint {idx:08}: asked to start at segment {from:08}"
            )));
        }
        from = next;
        segs.extend(list_segments(&cp_dir)?.into_iter().map(|index| SegmentRef {
            dir: cp_dir.clone(),
            index,
        }));
    }
    segs.extend(
        list_segments(wal_dir)?
            .into_iter()
            .filter(|&i| i >= from && i <= to)
            .map(|index| SegmentRef {
                dir: wal_dir.to_path_buf(),
                index,
            }),
    );

    delete_temp_checkpoints(wal_dir)?;
    let final_dir = checkpoint_dir(wal_dir, to);
    let tmp_dir = PathBuf::from(format!("{}{TMP_SUFFIX}", final_dir.display()));
    let result = write_checkpoint(&tmp_dir, segs, &keep_series, mint);
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp_dir);
            return Err(e);
        }
    };
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| Error::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp_dir, &final_dir).map_err(|e| Error::io(&tmp_dir, e))?;
    sync_dir(wal_dir)?;
    Ok(stats)
}

fn write_checkpoint(
    tmp_dir: &Path,
    segs: Vec<SegmentRef>,
    keep: &dyn Fn(u64) -> bool,
    mint: i64,
) -> Result<CheckpointStats> {
    std::fs::create_dir_all(tmp_dir).map_err(|e| Error::io(tmp_dir, e))?;
    let mut cp = Wal::open(tmp_dir, WalOptions::default())?;
    let mut reader = Reader::new(segs);
    let mut st = CheckpointStats::default();

    let mut series = Vec::new();
    let mut samples = Vec::new();
    let mut hists = Vec::new();
    let mut fhists = Vec::new();
    let mut stones = Vec::new();
    let mut exemplars = Vec::new();
    let mut metadata = Vec::new();
    let mut latest_meta: HashMap<u64, record::RefMetadata> = HashMap::new();
    // Encoded records waiting to be logged, and their total size.
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut buf = Vec::new();

    fn flush(cp: &mut Wal, pending: &mut Vec<Vec<u8>>, bytes: &mut usize) -> Result<()> {
        let refs: Vec<&[u8]> = pending.iter().map(|r| r.as_slice()).collect();
        cp.log(&refs)?;
        pending.clear();
        *bytes = 0;
        Ok(())
    }

    while let Some((_, _, rec)) = reader.next()? {
        let before = pending.len();
        match record::record_type(rec) {
            RecordType::Series => {
                series.clear();
                record::decode_series(rec, &mut series)?;
                let n = series.len();
                series.retain(|s| keep(s.series_ref));
                st.total_series += n;
                st.dropped_series += n - series.len();
                if !series.is_empty() {
                    record::encode_series(&series, &mut buf);
                    pending.push(buf.clone());
                }
            }
            RecordType::Samples | RecordType::SamplesV2 => {
                samples.clear();
                record::decode_samples(rec, &mut samples)?;
                let n = samples.len();
                samples.retain(|s| s.t >= mint);
                st.total_samples += n;
                st.dropped_samples += n - samples.len();
                if !samples.is_empty() {
                    record::encode_samples(&samples, &mut buf);
                    pending.push(buf.clone());
                }
            }
            RecordType::HistogramSamples
            | RecordType::CustomBucketsHistogramSamples
            | RecordType::HistogramSamplesV2 => {
                hists.clear();
                record::decode_histogram_samples(rec, &mut hists)?;
                let n = hists.len();
                hists.retain(|h| h.t >= mint);
                st.total_samples += n;
                st.dropped_samples += n - hists.len();
                let (exp, custom) = record::split_custom_buckets(hists.iter().map(|h| h.h.schema));
                for (present, cb) in [(exp, false), (custom, true)] {
                    if present {
                        record::encode_histogram_samples(&hists, cb, &mut buf);
                        pending.push(buf.clone());
                    }
                }
            }
            RecordType::FloatHistogramSamples
            | RecordType::CustomBucketsFloatHistogramSamples
            | RecordType::FloatHistogramSamplesV2 => {
                fhists.clear();
                record::decode_float_histogram_samples(rec, &mut fhists)?;
                let n = fhists.len();
                fhists.retain(|h| h.t >= mint);
                st.total_samples += n;
                st.dropped_samples += n - fhists.len();
                let (exp, custom) =
                    record::split_custom_buckets(fhists.iter().map(|h| h.fh.schema));
                for (present, cb) in [(exp, false), (custom, true)] {
                    if present {
                        record::encode_float_histogram_samples(&fhists, cb, &mut buf);
                        pending.push(buf.clone());
                    }
                }
            }
            RecordType::Tombstones => {
                stones.clear();
                record::decode_tombstones(rec, &mut stones)?;
                let n = stones.len();
                stones.retain(|s| keep(s.series_ref) && s.maxt >= mint);
                st.total_tombstones += n;
                st.dropped_tombstones += n - stones.len();
                if !stones.is_empty() {
                    record::encode_tombstones(&stones, &mut buf);
                    pending.push(buf.clone());
                }
            }
            RecordType::Exemplars => {
                exemplars.clear();
                record::decode_exemplars(rec, &mut exemplars)?;
                let n = exemplars.len();
                exemplars.retain(|e| e.t >= mint);
                st.total_exemplars += n;
                st.dropped_exemplars += n - exemplars.len();
                if !exemplars.is_empty() {
                    record::encode_exemplars(&exemplars, &mut buf);
                    pending.push(buf.clone());
                }
            }
            RecordType::Metadata => {
                metadata.clear();
                record::decode_metadata(rec, &mut metadata)?;
                st.total_metadata += metadata.len();
                for m in metadata.drain(..) {
                    if keep(m.series_ref) {
                        latest_meta.insert(m.series_ref, m);
                    }
                }
            }
            RecordType::MmapMarkers | RecordType::Unknown(_) => {}
        }
        for r in &pending[before..] {
            pending_bytes += r.len();
        }
        if pending_bytes > 1 << 20 {
            flush(&mut cp, &mut pending, &mut pending_bytes)?;
        }
    }
    if !latest_meta.is_empty() {
        let mut ms: Vec<_> = latest_meta.into_values().collect();
        ms.sort_by_key(|m| m.series_ref);
        st.dropped_metadata = st.total_metadata - ms.len();
        record::encode_metadata(&ms, &mut buf);
        pending.push(buf.clone());
    } else {
        st.dropped_metadata = st.total_metadata;
    }
    if !pending.is_empty() {
        flush(&mut cp, &mut pending, &mut pending_bytes)?;
    }
    cp.close()?;
    sync_dir(tmp_dir)?;
    Ok(st)
}
