//! Reading records back from WAL segments (format in [`super::segment`]).
//!
//! A [`Reader`] walks a list of segments page by page, checks every fragment's CRC and the
//! order of fragment types, joins fragments into records, undoes snappy compression and yields
//! `(segment, offset, record)` where `offset` is where the record's first fragment starts. At the
//! first problem it returns [`crate::Error::WalCorruption`] carrying a [`CorruptionError`] that
//! names the segment and the offset of the record that could not be read; every record before
//! it was yielded intact. I/O errors (as opposed to bad contents) come back as `Error::Io`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::segment::{
    FRAG_FIRST, FRAG_FULL, FRAG_LAST, FRAG_MIDDLE, FRAG_PAGE_TERM, PAGE_SIZE, RECORD_HEADER_SIZE,
    SNAPPY_FLAG, TYPE_MASK, ZSTD_FLAG,
};
use super::{checkpoint, list_segments, segment_name, CorruptionError, WalMetrics};
use crate::{Error, Result};

/// One segment to read: its directory and index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRef {
    /// Directory of the segment.
    pub dir: PathBuf,
    /// Index of the segment.
    pub index: u32,
}

/// Sequential reader of WAL records across segments.
pub struct Reader {
    segs: Vec<SegmentRef>,
    /// Index into `segs` of the open segment (== segs.len() when done).
    cur: usize,
    file: Option<File>,
    page: Box<[u8]>,
    page_len: usize,
    /// File offset of `page[0]`.
    page_start: u64,
    pos: usize,
    /// Offset of the first fragment of the record being assembled.
    rec_start: Option<u64>,
    rec: Vec<u8>,
    out: Vec<u8>,
    snappy: snap::raw::Decoder,
    metrics: Option<Arc<WalMetrics>>,
    failed: bool,
    records: u64,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("segments", &self.segs)
            .field("cur", &self.cur)
            .finish()
    }
}

impl Reader {
    /// A reader over the given segments, in the given order.
    pub fn new(segments: Vec<SegmentRef>) -> Self {
        Reader {
            segs: segments,
            cur: 0,
            file: None,
            page: vec![0u8; PAGE_SIZE].into_boxed_slice(),
            page_len: 0,
            page_start: 0,
            pos: 0,
            rec_start: None,
            rec: Vec::new(),
            out: Vec::new(),
            snappy: snap::raw::Decoder::new(),
            metrics: None,
            failed: false,
            records: 0,
        }
    }

    /// A reader for replaying a WAL directory: the segments of the last checkpoint, then the
    /// WAL segments after the checkpoint's index (all segments when there is no checkpoint).
    pub fn open(wal_dir: impl AsRef<Path>) -> Result<Self> {
        let wal_dir = wal_dir.as_ref();
        let mut segs = Vec::new();
        let mut after = None;
        if let Some((cp_dir, idx)) = checkpoint::last_checkpoint(wal_dir)? {
            segs.extend(list_segments(&cp_dir)?.into_iter().map(|index| SegmentRef {
                dir: cp_dir.clone(),
                index,
            }));
            after = Some(idx);
        }
        let wal_segs = list_segments(wal_dir)?;
        segs.extend(
            wal_segs
                .into_iter()
                .filter(|&i| after.is_none_or(|a| i > a))
                .map(|index| SegmentRef {
                    dir: wal_dir.to_path_buf(),
                    index,
                }),
        );
        Ok(Reader::new(segs))
    }

    /// A reader over the segments of `dir` with index in `first..=last` (unbounded where
    /// `None`).
    pub fn segments(dir: impl AsRef<Path>, first: Option<u32>, last: Option<u32>) -> Result<Self> {
        let dir = dir.as_ref();
        let segs = list_segments(dir)?
            .into_iter()
            .filter(|&i| first.is_none_or(|f| i >= f) && last.is_none_or(|l| i <= l))
            .map(|index| SegmentRef {
                dir: dir.to_path_buf(),
                index,
            })
            .collect();
        Ok(Reader::new(segs))
    }

    /// Counts corruptions into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<WalMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The segments this reader walks.
    pub fn segment_refs(&self) -> &[SegmentRef] {
        &self.segs
    }

    /// Number of records yielded so far.
    pub fn records_read(&self) -> u64 {
        self.records
    }

    fn corruption(&mut self, offset: u64, reason: impl Into<String>) -> Error {
        self.failed = true;
        if let Some(m) = &self.metrics {
            WalMetrics::inc(&m.corruptions_total);
        }
        let s = &self.segs[self.cur];
        let e = CorruptionError {
            dir: s.dir.clone(),
            segment: s.index,
            offset,
            reason: reason.into(),
        };
        tracing::warn!(error = %e, "WAL corruption found");
        Error::WalCorruption(e)
    }

    fn seg_path(&self) -> PathBuf {
        let s = &self.segs[self.cur];
        segment_name(&s.dir, s.index)
    }

    /// Reads the next page of the open segment; `page_len` 0 means end of segment.
    fn read_page(&mut self) -> Result<()> {
        self.page_start += self.page_len as u64;
        self.page_len = 0;
        self.pos = 0;
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        while self.page_len < PAGE_SIZE {
            match f.read(&mut self.page[self.page_len..]) {
                Ok(0) => break,
                Ok(n) => self.page_len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(self.seg_path(), e)),
            }
        }
        Ok(())
    }

    /// The next record: `(segment index, offset of the record in the segment, record bytes)`,
    /// or `None` at the end. After an error, returns `None`.
    #[allow(clippy::should_implement_trait)] // a lending iterator: the record borrows the reader
    pub fn next(&mut self) -> Result<Option<(u32, u64, &[u8])>> {
        if self.failed {
            return Ok(None);
        }
        let (start, compressed) = loop {
            if self.file.is_none() {
                if self.cur >= self.segs.len() {
                    return Ok(None);
                }
                let p = self.seg_path();
                let f = File::open(&p).map_err(|e| Error::io(&p, e))?;
                self.file = Some(f);
                self.page_start = 0;
                self.page_len = 0;
                self.read_page()?;
            }
            if self.pos >= self.page_len {
                if self.page_len == PAGE_SIZE {
                    self.read_page()?;
                    if self.page_len > 0 {
                        continue;
                    }
                }
                // End of this segment.
                if let Some(s) = self.rec_start {
                    return Err(self
                        .corruption(s, "last record of the segment is torn (no final fragment)"));
                }
                self.file = None;
                self.cur += 1;
                continue;
            }
            let off = self.page_start + self.pos as u64;
            let hdr = self.page[self.pos];
            let typ = hdr & TYPE_MASK;
            if typ == FRAG_PAGE_TERM {
                if let Some(i) = self.page[self.pos..self.page_len]
                    .iter()
                    .position(|&b| b != 0)
                {
                    let at = off + i as u64;
                    let where_ = self.rec_start.unwrap_or(off);
                    return Err(self.corruption(
                        where_,
                        format!("non-zero byte in page padding at offset {at}"),
                    ));
                }
                self.pos = self.page_len;
                continue;
            }
            let bad_at = self.rec_start.unwrap_or(off);
            if hdr & !(TYPE_MASK | SNAPPY_FLAG | ZSTD_FLAG) != 0 || typ > FRAG_LAST {
                return Err(self.corruption(
                    bad_at,
                    format!("invalid fragment header byte {hdr:#04x} at offset {off}"),
                ));
            }
            if self.page_len - self.pos < RECORD_HEADER_SIZE {
                return Err(self.corruption(
                    bad_at,
                    format!("fragment header at offset {off} is cut off"),
                ));
            }
            let p = self.pos;
            let len = u16::from_be_bytes([self.page[p + 1], self.page[p + 2]]) as usize;
            let crc = u32::from_be_bytes([
                self.page[p + 3],
                self.page[p + 4],
                self.page[p + 5],
                self.page[p + 6],
            ]);
            let data_start = p + RECORD_HEADER_SIZE;
            if len > PAGE_SIZE - data_start {
                return Err(self.corruption(
                    bad_at,
                    format!("fragment at offset {off} has invalid length {len}"),
                ));
            }
            if data_start + len > self.page_len {
                return Err(self.corruption(
                    bad_at,
                    format!("fragment at offset {off} is cut off (torn write)"),
                ));
            }
            let data = &self.page[data_start..data_start + len];
            let got = crate::encoding::crc32c(data);
            if got != crc {
                return Err(self.corruption(
                    bad_at,
                    format!("checksum mismatch in fragment at offset {off}: stored {crc:08x}, computed {got:08x}"),
                ));
            }
            match (typ, self.rec_start.is_some()) {
                (FRAG_FULL | FRAG_FIRST, false) => {
                    self.rec_start = Some(off);
                    self.rec.clear();
                }
                (FRAG_MIDDLE | FRAG_LAST, true) => {}
                (FRAG_FULL | FRAG_FIRST, true) => {
                    return Err(self.corruption(
                        bad_at,
                        format!("record not finished before new record at offset {off}"),
                    ))
                }
                _ => {
                    return Err(self.corruption(
                        bad_at,
                        format!("fragment at offset {off} continues no record"),
                    ))
                }
            }
            self.rec
                .extend_from_slice(&self.page[data_start..data_start + len]);
            self.pos = data_start + len;
            if typ == FRAG_FULL || typ == FRAG_LAST {
                let start = self.rec_start.take().unwrap_or(off);
                if hdr & ZSTD_FLAG != 0 {
                    self.failed = true;
                    return Err(Error::Other(format!(
                        "{}: record at offset {start} is zstd-compressed, which is not supported",
                        self.seg_path().display()
                    )));
                }
                break (start, hdr & SNAPPY_FLAG != 0);
            }
        };
        let seg = self.segs[self.cur].index;
        self.records += 1;
        if !compressed {
            return Ok(Some((seg, start, &self.rec)));
        }
        let n = match snap::raw::decompress_len(&self.rec) {
            Ok(n) => n,
            Err(e) => return Err(self.corruption(start, format!("bad snappy record: {e}"))),
        };
        self.out.resize(n, 0);
        match self.snappy.decompress(&self.rec, &mut self.out) {
            Ok(m) => {
                self.out.truncate(m);
                Ok(Some((seg, start, &self.out)))
            }
            Err(e) => Err(self.corruption(start, format!("bad snappy record: {e}"))),
        }
    }
}
