//! WAL segment files and the [`Wal`] writer.
//!
//! # Segment format
//!
//! A segment has no header. It is a sequence of 32 KiB pages; only the last page of the
//! segment being written may be partial. Records are stored as one or more fragments:
//!
//! ```text
//! ┌──────────┬───────────────┬──────────────────┬───────────────┐
//! │ type <1b>│ len <2b, BE>  │ CRC32C <4b, BE>  │ data <len b>  │
//! └──────────┴───────────────┴──────────────────┴───────────────┘
//! type byte: bits 0-2 fragment type  0 = rest of page is padding (zeros)
//!                                    1 = full record, 2 = first, 3 = middle, 4 = last fragment
//!            bit 3 snappy-compressed record, bit 4 zstd-compressed record, bits 5-7 zero
//! ```
//!
//! The CRC (Castagnoli) covers the fragment's data only. A fragment never crosses a page: a
//! record longer than the room left in the page is split into first/middle…/last fragments on
//! consecutive pages. When fewer than 7 bytes (one header) are left in a page, the rest of the
//! page is zero padding and the next fragment starts on the next page. A record never crosses a
//! segment: when it does not fit into the rest of the segment, a new segment is started (a single
//! record larger than a whole segment makes that segment larger than the nominal size).
//!
//! Records are compressed with snappy (raw/block format) when that makes them smaller; the
//! snappy bit is set on every fragment of a compressed record. Closing a segment pads its last
//! page with zeros.
//!
//! # Durability
//!
//! Every [`Wal::log`] call writes its records to the OS (the current partial page included),
//! so a crash of the process loses nothing that `log` returned for; [`Wal::sync`] and the close
//! of a segment fsync it, which makes it survive a machine crash as well.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{list_segments, segment_name, sync_dir, WalMetrics};
use crate::{Error, Result};

/// Size of a WAL page.
pub const PAGE_SIZE: usize = 32 * 1024;
/// Size of a fragment header: type, length, CRC.
pub const RECORD_HEADER_SIZE: usize = 7;
/// Default (nominal) size of a segment file: 128 MiB.
pub const DEFAULT_SEGMENT_SIZE: usize = 128 * 1024 * 1024;

pub(crate) const SNAPPY_FLAG: u8 = 1 << 3;
pub(crate) const ZSTD_FLAG: u8 = 1 << 4;
pub(crate) const TYPE_MASK: u8 = 0b111;

pub(crate) const FRAG_PAGE_TERM: u8 = 0;
pub(crate) const FRAG_FULL: u8 = 1;
pub(crate) const FRAG_FIRST: u8 = 2;
pub(crate) const FRAG_MIDDLE: u8 = 3;
pub(crate) const FRAG_LAST: u8 = 4;

/// Options of a [`Wal`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Nominal segment size; a multiple of [`PAGE_SIZE`]. Default 128 MiB.
    pub segment_size: usize,
    /// Snappy-compress records when that makes them smaller. Default on.
    pub compress: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            compress: true,
        }
    }
}

/// The WAL writer: appends records to the newest segment of a directory.
///
/// Not internally synchronised: wrap it in a mutex to share it.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    file: File,
    segment: u32,
    page: Box<[u8]>,
    /// Bytes of the page filled with fragments.
    alloc: usize,
    /// Bytes of the page already written to the file.
    flushed: usize,
    /// Complete pages in the current segment.
    done_pages: usize,
    snappy: snap::raw::Encoder,
    cbuf: Vec<u8>,
    metrics: Arc<WalMetrics>,
    closed: bool,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segment", &self.segment)
            .finish()
    }
}

fn create_segment(dir: &Path, index: u32) -> Result<File> {
    let path = segment_name(dir, index);
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    sync_dir(dir)?;
    Ok(f)
}

/// A record ready for [`Wal::log_prepared`]: the bytes to store and whether they are
/// snappy-compressed.
#[derive(Clone, Copy, Debug)]
pub struct Prepared<'a> {
    /// The bytes stored in the fragments.
    pub data: &'a [u8],
    /// Whether `data` is the snappy (block format) compression of the record.
    pub compressed: bool,
    /// Length of the record before compression.
    pub raw_len: usize,
}

impl<'a> Prepared<'a> {
    /// A record stored as it is.
    pub fn raw(rec: &'a [u8]) -> Self {
        Prepared {
            data: rec,
            compressed: false,
            raw_len: rec.len(),
        }
    }
}

/// Snappy-compresses `rec` into `out` (resized as needed) and returns the compressed bytes
/// when they are smaller than `rec`, else `rec` itself uncompressed, as Prometheus stores it.
pub fn compress_record<'a>(
    rec: &'a [u8],
    enc: &mut snap::raw::Encoder,
    out: &'a mut Vec<u8>,
) -> Result<Prepared<'a>> {
    if rec.is_empty() {
        return Ok(Prepared::raw(rec));
    }
    out.resize(snap::raw::max_compress_len(rec.len()), 0);
    match enc.compress(rec, out) {
        Ok(n) if n < rec.len() => Ok(Prepared {
            data: &out[..n],
            compressed: true,
            raw_len: rec.len(),
        }),
        Ok(_) => Ok(Prepared::raw(rec)),
        Err(e) => Err(Error::Other(format!(
            "snappy compression of a WAL record: {e}"
        ))),
    }
}

impl Wal {
    /// Opens the WAL in `dir` (created if missing) for appending. Writing always starts in a new
    /// segment after the last existing one, as Prometheus does: read (and if needed
    /// [`super::repair()`]) the existing segments before opening the writer.
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Self> {
        Self::open_with_metrics(dir, opts, Arc::new(WalMetrics::default()))
    }

    /// As [`Wal::open`], counting into the given metrics.
    pub fn open_with_metrics(
        dir: impl AsRef<Path>,
        opts: WalOptions,
        metrics: Arc<WalMetrics>,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if opts.segment_size == 0 || !opts.segment_size.is_multiple_of(PAGE_SIZE) {
            return Err(Error::InvalidArgument(format!(
                "WAL segment size {} is not a positive multiple of the page size {PAGE_SIZE}",
                opts.segment_size
            )));
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let segment = list_segments(&dir)?.last().map_or(0, |l| l + 1);
        let file = create_segment(&dir, segment)?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(segment_name(&dir, segment), e))?
            .len();
        metrics
            .current_segment
            .store(segment as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(Wal {
            dir,
            opts,
            file,
            segment,
            page: vec![0u8; PAGE_SIZE].into_boxed_slice(),
            alloc: 0,
            flushed: 0,
            done_pages: size as usize / PAGE_SIZE,
            snappy: snap::raw::Encoder::new(),
            cbuf: Vec::new(),
            metrics,
            closed: false,
        })
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The counters of this WAL.
    pub fn metrics(&self) -> &Arc<WalMetrics> {
        &self.metrics
    }

    /// Index of the segment being written.
    pub fn current_segment(&self) -> u32 {
        self.segment
    }

    /// The first and last segment on disk (the last is the one being written).
    pub fn segments(&self) -> Result<(u32, u32)> {
        let segs = list_segments(&self.dir)?;
        match (segs.first(), segs.last()) {
            (Some(&f), Some(&l)) => Ok((f, l)),
            _ => Err(Error::Other(format!(
                "{}: WAL has no segments",
                self.dir.display()
            ))),
        }
    }

    /// The segment being written and the offset up to which it is filled.
    pub fn last_segment_and_offset(&self) -> (u32, u64) {
        (
            self.segment,
            (self.done_pages * PAGE_SIZE + self.alloc) as u64,
        )
    }

    fn path(&self) -> PathBuf {
        segment_name(&self.dir, self.segment)
    }

    fn page_full(&self) -> bool {
        PAGE_SIZE - self.alloc < RECORD_HEADER_SIZE
    }

    /// Writes the unwritten part of the page; pads and completes the page when it is full or
    /// `force_clear` is set.
    fn flush_page(&mut self, force_clear: bool) -> Result<()> {
        WalMetrics::inc(&self.metrics.page_flushes_total);
        let clear = force_clear || self.page_full();
        let used = self.alloc;
        let end = if clear { PAGE_SIZE } else { self.alloc };
        if let Err(e) = self.file.write_all(&self.page[self.flushed..end]) {
            return Err(Error::io(self.path(), e));
        }
        self.flushed = end;
        if clear {
            self.page[..used].fill(0);
            self.alloc = 0;
            self.flushed = 0;
            self.done_pages += 1;
            WalMetrics::inc(&self.metrics.completed_pages_total);
        }
        Ok(())
    }

    /// Appends the records in order as one batch: one write to the file at the end (more when
    /// pages fill up). Records are written to the OS before this returns; call [`Wal::sync`]
    /// to make them durable against machine crashes.
    pub fn log(&mut self, records: &[&[u8]]) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        for (i, r) in records.iter().enumerate() {
            if let Err(e) = self.log_one(r, i + 1 == records.len()) {
                WalMetrics::inc(&self.metrics.writes_failed_total);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether this WAL snappy-compresses records.
    pub fn compresses(&self) -> bool {
        self.opts.compress
    }

    /// As [`Wal::log`], for records already passed through [`compress_record`] (so the
    /// compression can run before the caller takes the lock around the WAL): each is its bytes
    /// and whether they are snappy-compressed. Compressed records must only be given to a WAL
    /// that [`Wal::compresses`].
    pub fn log_prepared(&mut self, records: &[Prepared<'_>]) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        for (i, r) in records.iter().enumerate() {
            if r.compressed {
                self.metrics.record_bytes_saved_total.fetch_add(
                    r.raw_len.saturating_sub(r.data.len()) as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            let res = match self.page_full() {
                true => self.flush_page(true),
                false => Ok(()),
            }
            .and_then(|()| self.write_record(r.data, r.compressed, i + 1 == records.len()));
            if let Err(e) = res {
                WalMetrics::inc(&self.metrics.writes_failed_total);
                return Err(e);
            }
        }
        Ok(())
    }

    fn log_one(&mut self, rec: &[u8], last_of_batch: bool) -> Result<()> {
        if self.page_full() {
            self.flush_page(true)?;
        }
        let mut cbuf = std::mem::take(&mut self.cbuf);
        let result = match self.opts.compress {
            true => compress_record(rec, &mut self.snappy, &mut cbuf),
            false => Ok(Prepared::raw(rec)),
        }
        .and_then(|p| {
            if p.compressed {
                self.metrics.record_bytes_saved_total.fetch_add(
                    (rec.len() - p.data.len()) as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            self.write_record(p.data, p.compressed, last_of_batch)
        });
        self.cbuf = cbuf;
        result
    }

    /// Writes one record's (possibly compressed) bytes as fragments.
    fn write_record(
        &mut self,
        mut enc: &[u8],
        compressed: bool,
        last_of_batch: bool,
    ) -> Result<()> {
        // A record never crosses segments: start a new one if it does not fit.
        // (Negative free pages when an oversized record overran the segment: start a new one.)
        let pages_per_segment = (self.opts.segment_size / PAGE_SIZE) as i64;
        let free_pages = pages_per_segment - self.done_pages as i64 - 1;
        let left = (PAGE_SIZE - self.alloc - RECORD_HEADER_SIZE) as i64
            + (PAGE_SIZE - RECORD_HEADER_SIZE) as i64 * free_pages;
        if enc.len() as i64 > left {
            self.next_segment()?;
        }

        let flag = if compressed { SNAPPY_FLAG } else { 0 };
        let mut first = true;
        loop {
            let room = PAGE_SIZE - self.alloc - RECORD_HEADER_SIZE;
            let l = enc.len().min(room);
            let (part, rest) = enc.split_at(l);
            let typ = match (first, rest.is_empty()) {
                (true, true) => FRAG_FULL,
                (true, false) => FRAG_FIRST,
                (false, true) => FRAG_LAST,
                (false, false) => FRAG_MIDDLE,
            };
            let a = self.alloc;
            self.page[a] = typ | flag;
            self.page[a + 1..a + 3].copy_from_slice(&(l as u16).to_be_bytes());
            self.page[a + 3..a + 7].copy_from_slice(&crate::encoding::crc32c(part).to_be_bytes());
            self.page[a + 7..a + 7 + l].copy_from_slice(part);
            self.alloc += RECORD_HEADER_SIZE + l;
            WalMetrics::inc(&self.metrics.record_part_writes_total);
            if self.page_full() {
                self.flush_page(true)?;
            }
            enc = rest;
            first = false;
            if enc.is_empty() {
                break;
            }
        }
        if last_of_batch && self.alloc > self.flushed {
            self.flush_page(false)?;
        }
        Ok(())
    }

    fn fsync(&self) -> Result<()> {
        WalMetrics::inc(&self.metrics.fsyncs_total);
        self.file.sync_data().map_err(|e| Error::io(self.path(), e))
    }

    /// fsyncs the segment being written.
    pub fn sync(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.fsync()
    }

    /// Closes the current segment (padding its last page and fsyncing it) and starts the next
    /// one. Returns the new segment's index.
    pub fn next_segment(&mut self) -> Result<u32> {
        if self.closed {
            return Err(Error::Closed);
        }
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        self.fsync()?;
        let next = self.segment + 1;
        let file = create_segment(&self.dir, next)?;
        self.file = file;
        self.segment = next;
        self.done_pages = 0;
        self.alloc = 0;
        self.flushed = 0;
        self.metrics
            .current_segment
            .store(next as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(next)
    }

    /// Deletes every segment with an index below `before` (never the segment being written).
    pub fn truncate(&mut self, before: u32) -> Result<()> {
        WalMetrics::inc(&self.metrics.truncations_total);
        let r = (|| {
            for i in list_segments(&self.dir)? {
                if i >= before || i >= self.segment {
                    break;
                }
                let p = segment_name(&self.dir, i);
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
            sync_dir(&self.dir)
        })();
        if r.is_err() {
            WalMetrics::inc(&self.metrics.truncations_failed_total);
        }
        r
    }

    /// Pads the last page, fsyncs and closes the segment. Further calls fail with `Closed`.
    pub fn close(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        self.fsync()?;
        self.closed = true;
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if !self.closed {
            if let Err(e) = self.close() {
                tracing::warn!(dir = %self.dir.display(), error = %e, "closing WAL on drop failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records compressed before the call ([`compress_record`] + [`Wal::log_prepared`]) are
    /// stored byte for byte as [`Wal::log`] stores them, across pages and segments.
    #[test]
    fn prepared_records_are_written_like_logged_ones() {
        let recs: Vec<Vec<u8>> = (0..60usize)
            .map(|i| match i % 4 {
                0 => Vec::new(),
                1 => (0..i * 37).map(|j| (j % 7) as u8).collect(), // compressible
                2 => (0..i * 900)
                    .map(|j| ((j * 2_654_435_761) >> 13) as u8)
                    .collect(),
                _ => (0..PAGE_SIZE + i).map(|j| (j % 251) as u8).collect(),
            })
            .collect();
        for compress in [true, false] {
            let opts = WalOptions {
                segment_size: 2 * PAGE_SIZE,
                compress,
            };
            let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let mut wa = Wal::open(a.path(), opts.clone()).unwrap();
            let mut wb = Wal::open(b.path(), opts).unwrap();
            let mut enc = snap::raw::Encoder::new();
            for batch in recs.chunks(3) {
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                wa.log(&refs).unwrap();
                let mut bufs = vec![Vec::new(); batch.len()];
                let prepared: Vec<Prepared<'_>> = batch
                    .iter()
                    .zip(bufs.iter_mut())
                    .map(|(r, out)| match wb.compresses() {
                        true => compress_record(r, &mut enc, out).unwrap(),
                        false => Prepared::raw(r),
                    })
                    .collect();
                wb.log_prepared(&prepared).unwrap();
            }
            assert_eq!(wa.last_segment_and_offset(), wb.last_segment_and_offset());
            assert!(
                compress || wa.current_segment() > 2,
                "test should cross segments"
            );
            wa.close().unwrap();
            wb.close().unwrap();
            let saved = |w: &Wal| WalMetrics::get(&w.metrics().record_bytes_saved_total);
            assert_eq!(saved(&wa), saved(&wb));
            for seg in list_segments(a.path()).unwrap() {
                let fa = std::fs::read(segment_name(a.path(), seg)).unwrap();
                let fb = std::fs::read(segment_name(b.path(), seg)).unwrap();
                assert!(fa == fb, "segment {seg} differs (compress {compress})");
            }
            assert_eq!(
                list_segments(a.path()).unwrap(),
                list_segments(b.path()).unwrap()
            );
        }
    }
}
