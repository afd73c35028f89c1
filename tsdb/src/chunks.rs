//! Chunk segment files `chunks/000001…` of a persistent block, byte-compatible with Prometheus.
//!
//! ```text
//! segment file (named %06d, starting at 000001):
//! ┌──────────────────────────────┬──────────────────┬──────────────────┐
//! │ magic 0x85BD40DD (4B, BE)    │ version 1 (1B)   │ padding 0 (3B)   │
//! ├──────────────────────────────┴──────────────────┴──────────────────┤
//! │ chunk 1 … chunk n                                                  │
//! └────────────────────────────────────────────────────────────────────┘
//! chunk:
//! ┌───────────────────┬───────────────┬──────────────┬─────────────────────────────┐
//! │ len <uvarint>     │ encoding <1B> │ data <len B> │ CRC-32C(encoding+data) <4B> │
//! └───────────────────┴───────────────┴──────────────┴─────────────────────────────┘
//! ```
//!
//! A chunk reference is `segment_index << 32 | offset`, where `segment_index` is the 0-based
//! position of the segment among the directory's segment files (in name order) and `offset`
//! the byte position of the chunk's `len` field in that file. A segment is cut before it would
//! grow past the segment size (512 MiB by default).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::Mmap;

use crate::chunk_scan::SegmentCheck;
use crate::chunkenc::Encoding;
use crate::encoding::{crc32c, crc32c_append, crc32c_many, put_uvarint, uvarint};
use crate::{Error, Result};

/// Magic number at the start of every chunk segment file.
pub const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
/// The only chunk segment format version.
pub const CHUNKS_FORMAT_V1: u8 = 1;
/// Size of a segment's header (magic, version, padding).
pub const SEGMENT_HEADER_SIZE: u64 = 8;
/// Default maximum size of one segment file.
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;
/// Most bytes a chunk's length field can take (Go's `binary.MaxVarintLen32`).
const MAX_LEN_FIELD: u64 = 5;

/// Builds a chunk reference from a segment index and an offset in it.
pub fn chunk_ref(segment: u64, offset: u64) -> u64 {
    (segment << 32) | (offset & 0xffff_ffff)
}

/// Splits a chunk reference into segment index and offset.
pub fn split_chunk_ref(r: u64) -> (u64, u64) {
    (r >> 32, r & 0xffff_ffff)
}

/// Name of the segment file with sequence number `seq` (1-based), e.g. `000001`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:06}")
}

/// Writes chunks into the segment files of a block's `chunks/` directory.
pub struct ChunkWriter {
    dir: PathBuf,
    segment_size: u64,
    files: Vec<PathBuf>,
    cur: Option<BufWriter<File>>,
    /// Bytes in the current segment.
    n: u64,
    buf: Vec<u8>,
}

impl ChunkWriter {
    /// A writer into `dir` (created if missing) with the default segment size.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self> {
        Self::with_segment_size(dir, DEFAULT_SEGMENT_SIZE)
    }

    /// A writer cutting segments at `segment_size` bytes.
    pub fn with_segment_size(dir: impl AsRef<Path>, segment_size: u64) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(ChunkWriter {
            dir,
            segment_size: segment_size.max(SEGMENT_HEADER_SIZE + 1),
            files: Vec::new(),
            cur: None,
            n: 0,
            buf: Vec::with_capacity(256),
        })
    }

    fn cut(&mut self) -> Result<()> {
        self.finish_current()?;
        let path = self.dir.join(segment_name(self.files.len() as u64 + 1));
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut hdr = [0u8; SEGMENT_HEADER_SIZE as usize];
        hdr[..4].copy_from_slice(&MAGIC_CHUNKS.to_be_bytes());
        hdr[4] = CHUNKS_FORMAT_V1;
        w.write_all(&hdr).map_err(|e| Error::io(&path, e))?;
        self.files.push(path);
        self.cur = Some(w);
        self.n = SEGMENT_HEADER_SIZE;
        Ok(())
    }

    fn finish_current(&mut self) -> Result<()> {
        if let Some(w) = self.cur.take() {
            let path = self.files.last().cloned().unwrap_or_default();
            let f = w
                .into_inner()
                .map_err(|e| Error::io(&path, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// Appends one chunk and returns its reference.
    pub fn write_chunk(&mut self, enc: Encoding, data: &[u8]) -> Result<u64> {
        let mut out = [0u64];
        self.write_chunks(&[(enc, data)], &mut out)?;
        Ok(out[0])
    }

    /// Appends the chunks of one series, storing their references in `refs` (same length).
    /// Segments are cut as Prometheus's `WriteChunks` does: the series' chunks stay in the
    /// current segment while they fit (sizes counted with a 5-byte length field), and go on in
    /// new segments in batches that each fit a segment.
    pub fn write_chunks(&mut self, chks: &[(Encoding, &[u8])], refs: &mut [u64]) -> Result<()> {
        if refs.len() != chks.len() {
            return Err(Error::InvalidArgument(format!(
                "write_chunks: {} chunks but {} reference slots",
                chks.len(),
                refs.len()
            )));
        }
        // Indexes where a new segment starts.
        let mut cuts: Vec<usize> = Vec::new();
        let mut batch = 0u64;
        let mut first_batch = true;
        for (i, (_, data)) in chks.iter().enumerate() {
            let size = MAX_LEN_FIELD + 1 + data.len() as u64 + 4;
            batch += size;
            let mut cut = i != 0 && batch + SEGMENT_HEADER_SIZE > self.segment_size;
            if first_batch && self.n > SEGMENT_HEADER_SIZE {
                cut = batch + self.n > self.segment_size;
                if cut {
                    first_batch = false;
                }
            }
            if cut {
                cuts.push(i);
                batch = size;
            }
        }
        if self.cur.is_none() {
            self.cut()?;
        }
        let mut next_cut = cuts.iter().peekable();
        for (i, (enc, data)) in chks.iter().enumerate() {
            if next_cut.peek() == Some(&&i) {
                next_cut.next();
                self.cut()?;
            }
            refs[i] = self.append(*enc, data)?;
        }
        Ok(())
    }

    fn append(&mut self, enc: Encoding, data: &[u8]) -> Result<u64> {
        let r = chunk_ref(self.files.len() as u64 - 1, self.n);
        self.buf.clear();
        put_uvarint(&mut self.buf, data.len() as u64);
        self.buf.push(enc as u8);
        let crc = crc32c_append(crc32c(&[enc as u8]), data);
        let path = self.files.last().cloned().unwrap_or_default();
        let w = self
            .cur
            .as_mut()
            .ok_or_else(|| Error::Other("chunk writer has no segment".into()))?;
        w.write_all(&self.buf).map_err(|e| Error::io(&path, e))?;
        w.write_all(data).map_err(|e| Error::io(&path, e))?;
        w.write_all(&crc.to_be_bytes())
            .map_err(|e| Error::io(&path, e))?;
        self.n += self.buf.len() as u64 + data.len() as u64 + 4;
        Ok(r)
    }

    /// Flushes and fsyncs every segment and the directory.
    pub fn close(mut self) -> Result<()> {
        self.finish_current()?;
        sync_dir(&self.dir)
    }
}

pub(crate) use crate::fsutil::sync_dir;

struct Segment {
    path: PathBuf,
    map: Mmap,
    /// Whether the whole file passed its checksum scan ([`crate::chunk_scan`]): then its
    /// chunks are read without checking their CRCs.
    check: Arc<SegmentCheck>,
    /// Offset below which the map's pages were last given back while reading forward (see
    /// [`ChunkReader::chunk`]).
    released: AtomicU64,
}

/// Reading forward through a segment gives back the pages more than [`RELEASE_LAG`] behind
/// the read, every [`RELEASE_STEP`] bytes: a large selection reads a block's chunks in
/// series order, which is file order, so without this every page it read would stay mapped
/// until the selection ends (~60 MiB for the 100k bench's p90 range query).
const RELEASE_STEP: u64 = 8 << 20;
/// See [`RELEASE_STEP`]: the distance kept behind the furthest read, for readers working on
/// neighbouring series at the same time.
const RELEASE_LAG: u64 = 2 << 20;

impl Segment {
    /// Notes a read up to `end`: gives back the pages more than [`RELEASE_LAG`] behind it
    /// once it is [`RELEASE_STEP`] past the last release.
    fn read_up_to(&self, end: u64) {
        let done = self.released.load(Ordering::Relaxed);
        if end < done + RELEASE_STEP + RELEASE_LAG {
            return;
        }
        // 64 KiB: a multiple of every page size Linux uses.
        let upto = (end - RELEASE_LAG) & !0xffff;
        if self
            .released
            .compare_exchange(done, upto, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let from = done as usize & !0xffff;
        // SAFETY: as in `ChunkReader::release_pages`: a read-only shared map of an immutable
        // file, whose pages fault back in unchanged when read again.
        let res = unsafe {
            self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                from,
                upto as usize - from,
            )
        };
        if let Err(e) = res {
            tracing::debug!(err = %e, path = %self.path.display(), "madvise(DONTNEED) failed");
        }
    }
}

/// Reads chunks by reference from the memory-mapped segment files of a `chunks/` directory.
pub struct ChunkReader {
    dir: PathBuf,
    segments: Vec<Segment>,
    size: u64,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .finish()
    }
}

impl ChunkReader {
    /// Maps every segment file of `dir` (files whose names are numbers, in numeric order) and
    /// checks their headers; queues the files not yet known for their checksum scan.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let mut seqs: Vec<(u64, PathBuf)> = Vec::new();
        for ent in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let ent = ent.map_err(|e| Error::io(&dir, e))?;
            let name = ent.file_name();
            if let Some(seq) = name.to_str().and_then(|s| s.parse::<u64>().ok()) {
                seqs.push((seq, ent.path()));
            }
        }
        seqs.sort();
        let mut segments = Vec::with_capacity(seqs.len());
        let mut size = 0;
        for (_, path) in seqs {
            let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: block files are immutable once written; the map is read-only.
            let map = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(&path, e))?;
            if map.len() < SEGMENT_HEADER_SIZE as usize {
                return Err(Error::corruption(
                    &path,
                    0,
                    format!("segment too short: {} bytes", map.len()),
                ));
            }
            let magic = u32::from_be_bytes([map[0], map[1], map[2], map[3]]);
            if magic != MAGIC_CHUNKS {
                return Err(Error::corruption(
                    &path,
                    0,
                    format!("invalid magic number {magic:#010x}"),
                ));
            }
            if map[4] != CHUNKS_FORMAT_V1 {
                return Err(Error::corruption(
                    &path,
                    4,
                    format!("invalid chunk format version {}", map[4]),
                ));
            }
            size += map.len() as u64;
            let check = crate::chunk_scan::check_of(&path, &f);
            segments.push(Segment {
                path,
                map,
                check,
                released: AtomicU64::new(0),
            });
        }
        Ok(ChunkReader {
            dir,
            segments,
            size,
        })
    }

    /// The checksum states of the segment files (tests).
    #[cfg(test)]
    pub(crate) fn checks(&self) -> Vec<Arc<SegmentCheck>> {
        self.segments.iter().map(|s| s.check.clone()).collect()
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Total bytes of all segments.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of segment files.
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// Gives back the mapped pages of the segment files (`madvise(MADV_DONTNEED)`): after a
    /// query they would otherwise stay in the process's RSS. The bytes stay readable: a later
    /// read faults them in again from the page cache.
    pub fn release_pages(&self) {
        for s in &self.segments {
            s.released.store(0, Ordering::Relaxed);
            // SAFETY: segment files are immutable once written and mapped read-only and
            // shared; for such a map MADV_DONTNEED only drops the process's page table
            // entries, and any later access (even through a slice borrowed before this
            // call) faults the same file bytes back in, so no observable content changes.
            let res = unsafe { s.map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
            if let Err(e) = res {
                tracing::debug!(err = %e, path = %s.path.display(), "madvise(DONTNEED) failed");
            }
        }
    }

    /// The encoding and bytes of the chunk at `r`, borrowed from the map, CRC-checked.
    pub fn chunk(&self, r: u64) -> Result<(Encoding, &[u8])> {
        self.chunk_tailed(r).map(|(enc, data, _)| (enc, data))
    }

    /// [`ChunkReader::chunk`], with the chunk's data also given as the start of
    /// `ext`: the rest of the segment from the data on, so that a decoder may read past the
    /// chunk's end ([`crate::chunkenc::xor::TailedChunk`]).
    pub fn chunk_tailed(&self, r: u64) -> Result<TailedRead<'_>> {
        let c = self.locate(r)?;
        let computed = (!c.segment.check.verified()).then(|| crc32c(c.body));
        c.checked(computed)
    }

    /// [`ChunkReader::chunk_tailed`] of each of `refs` (at most [`CHUNK_GROUP`]), the CRCs of
    /// those to check computed side by side ([`crc32c_many`]); `None` past `refs`' length.
    pub fn chunks_tailed(&self, refs: &[u64]) -> [Option<Result<TailedRead<'_>>>; CHUNK_GROUP] {
        let located: [Option<Result<Located<'_>>>; CHUNK_GROUP] =
            std::array::from_fn(|i| refs.get(i).map(|&r| self.locate(r)));
        // Read once: a scan may finish between here and the CRCs' use below.
        let verified: [bool; CHUNK_GROUP] = std::array::from_fn(
            |i| matches!(&located[i], Some(Ok(c)) if c.segment.check.verified()),
        );
        let mut body = [&[][..]; CHUNK_GROUP];
        let mut n = 0;
        for (c, &v) in located.iter().zip(&verified) {
            if let (Some(Ok(c)), false) = (c, v) {
                body[n] = c.body;
                n += 1;
            }
        }
        // A block is read in series order, which is its files' order: the bytes as far past
        // these chunks as the reader will be a few series on start loading now (the CPU's own
        // prefetcher stops at each 4 KiB page).
        if let Some(last) = located.iter().flatten().flatten().last() {
            let map = &last.segment.map;
            let end = last.enc_pos + last.body.len();
            let read: usize = located
                .iter()
                .flatten()
                .flatten()
                .map(|c| c.body.len())
                .sum();
            let from = (end + READ_AHEAD).min(map.len());
            crate::prefetch(map[from..].as_ptr(), read.min(map.len() - from));
        }
        let mut crc = [0u32; CHUNK_GROUP];
        crc32c_many(&body[..n], &mut crc[..n]);
        let mut crc = crc.into_iter();
        let mut verified = verified.into_iter();
        located.map(|l| {
            let trusted = verified.next().unwrap_or_default();
            l.map(|l| {
                l.and_then(|c| {
                    let computed = (!trusted).then(|| crc.next().unwrap_or_default());
                    c.checked(computed)
                })
            })
        })
    }

    /// Where the chunk `r` lies, its bounds checked (not its CRC), the read noted in its
    /// segment (which gives back the pages far behind it).
    fn locate(&self, r: u64) -> Result<Located<'_>> {
        let (seg, off) = split_chunk_ref(r);
        let Some(s) = self.segments.get(seg as usize) else {
            return Err(Error::corruption(
                &self.dir,
                off,
                format!(
                    "chunk ref {r:#x}: segment index {seg} out of range ({} segments)",
                    self.segments.len()
                ),
            ));
        };
        let b: &[u8] = &s.map;
        let off_us = off as usize;
        if off < SEGMENT_HEADER_SIZE || off_us >= b.len() {
            return Err(Error::corruption(
                &s.path,
                off,
                format!("chunk ref {r:#x}: offset out of range (size {})", b.len()),
            ));
        }
        let (len, n) = uvarint(&b[off_us..])
            .ok_or_else(|| Error::corruption(&s.path, off, "invalid chunk length varint"))?;
        let enc_pos = off_us + n;
        let end = (enc_pos as u64).saturating_add(len).saturating_add(5);
        if end > b.len() as u64 {
            return Err(Error::corruption(
                &s.path,
                off,
                format!(
                    "chunk of {len} bytes runs past end of segment (size {})",
                    b.len()
                ),
            ));
        }
        s.read_up_to(end);
        let end = end as usize;
        Ok(Located {
            segment: s,
            off,
            enc_pos,
            body: &b[enc_pos..end - 4],
            stored: u32::from_be_bytes([b[end - 4], b[end - 3], b[end - 2], b[end - 1]]),
        })
    }
}

/// What [`ChunkReader::chunk_tailed`] gives: the chunk's encoding, its data, and the segment
/// from its data on.
pub type TailedRead<'a> = (Encoding, &'a [u8], &'a [u8]);

/// How far past the chunks it reads [`ChunkReader::chunks_tailed`] prefetches.
const READ_AHEAD: usize = 8 << 10;

/// Most chunks [`ChunkReader::chunks_tailed`] reads at once: four CRCs side by side hide the
/// CRC instruction's latency.
pub const CHUNK_GROUP: usize = 4;

/// A chunk found in a segment by [`ChunkReader::locate`], before its CRC is checked.
struct Located<'a> {
    segment: &'a Segment,
    off: u64,
    enc_pos: usize,
    /// The encoding byte and the data: what the CRC covers.
    body: &'a [u8],
    /// The CRC stored after it.
    stored: u32,
}

impl<'a> Located<'a> {
    /// The chunk read, given the CRC computed over its body (`None`: not computed, its file
    /// having passed its checksum scan).
    fn checked(self, computed: Option<u32>) -> Result<TailedRead<'a>> {
        let s = self.segment;
        if let Some(got) = computed.filter(|&got| got != self.stored) {
            return Err(Error::corruption(
                &s.path,
                self.off,
                format!(
                    "chunk checksum mismatch: stored {:#010x}, computed {got:#010x}",
                    self.stored
                ),
            ));
        }
        let enc = Encoding::from_u8(self.body[0]).ok_or_else(|| {
            Error::corruption(
                &s.path,
                self.enc_pos as u64,
                format!("unknown chunk encoding {}", self.body[0]),
            )
        })?;
        Ok((enc, &self.body[1..], &s.map[self.enc_pos + 1..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks read as a group are the chunks read one by one; a damaged one fails alone,
    /// also once the file's checksum scan has run (it fails the file, so reads keep
    /// checking); a sound file's chunks read the same once its scan passed.
    #[test]
    fn chunks_read_in_a_group_are_checked_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("chunks");
        let mut w = ChunkWriter::new(&cdir).unwrap();
        let written: Vec<(u64, Vec<u8>)> = (0..6u8)
            .map(|i| {
                let data: Vec<u8> = (0..40 + 50 * u32::from(i)).map(|j| (j as u8) ^ i).collect();
                (w.write_chunk(Encoding::Xor, &data).unwrap(), data)
            })
            .collect();
        w.close().unwrap();
        let refs: Vec<u64> = written.iter().map(|(r, _)| *r).collect();
        let read_all = |r: &ChunkReader, damaged: Option<usize>| {
            let first = r.chunks_tailed(&refs[..CHUNK_GROUP]);
            let rest = r.chunks_tailed(&refs[CHUNK_GROUP..]);
            let got: Vec<_> = first.into_iter().chain(rest).flatten().collect();
            assert_eq!(got.len(), written.len());
            for (k, (g, (rf, want))) in got.into_iter().zip(&written).enumerate() {
                match g {
                    Ok((enc, data, ext)) => {
                        assert_eq!((enc, data), (Encoding::Xor, &want[..]), "chunk {k}");
                        assert!(ext.starts_with(data));
                        assert_eq!(r.chunk(*rf).unwrap().1, data);
                    }
                    Err(e) => {
                        assert_eq!(Some(k), damaged);
                        assert!(e.to_string().contains("checksum mismatch"), "{e}");
                        assert!(r.chunk(*rf).is_err());
                    }
                }
            }
        };
        let scanned = |r: &ChunkReader| {
            let checks = r.checks();
            assert!(crate::chunk_scan::wait_scanned(
                &checks,
                std::time::Duration::from_secs(20)
            ));
            checks[0].verified()
        };
        // Damage chunk 1's data.
        let path = cdir.join("000001");
        let good = std::fs::read(&path).unwrap();
        let mut bytes = good.clone();
        bytes[split_chunk_ref(written[1].0).1 as usize + 10] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        let r = ChunkReader::open(&cdir).unwrap();
        read_all(&r, Some(1));
        assert!(!scanned(&r));
        read_all(&r, Some(1));
        // The sound bytes in a new file.
        let tmp = cdir.join("tmp");
        std::fs::write(&tmp, &good).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let r = ChunkReader::open(&cdir).unwrap();
        assert!(scanned(&r));
        read_all(&r, None);
    }

    #[test]
    fn write_read_round_trip_and_segment_cut() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("chunks");
        let mut w = ChunkWriter::with_segment_size(&cdir, 64).unwrap();
        let mut refs = Vec::new();
        for i in 0..10u8 {
            let data = vec![i; 20 + i as usize];
            refs.push((w.write_chunk(Encoding::Xor, &data).unwrap(), data));
        }
        w.close().unwrap();
        let r = ChunkReader::open(&cdir).unwrap();
        assert!(r.num_segments() > 1);
        assert_eq!(refs[0].0, 8);
        for (rf, data) in &refs {
            let (enc, got) = r.chunk(*rf).unwrap();
            assert_eq!(enc, Encoding::Xor);
            assert_eq!(got, &data[..]);
        }
        assert!(r.chunk(chunk_ref(99, 8)).is_err());
        assert!(r.chunk(chunk_ref(0, 100_000)).is_err());
    }

    /// RSS of this process's mappings of `path`, in KiB, from `/proc/self/smaps`.
    fn mapped_kib(path: &Path) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let mut cur = false;
        let mut kib = 0;
        for line in smaps.lines() {
            if line.contains('-') && line.split_whitespace().count() >= 5 {
                cur = line.ends_with(path.to_str().unwrap());
            } else if cur && line.starts_with("Rss:") {
                kib += line
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
        kib
    }

    #[test]
    fn reading_forward_gives_back_the_pages_behind_and_reads_stay_right() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("chunks");
        let mut w = ChunkWriter::new(&cdir).unwrap();
        // 32 MiB of 4 KiB chunks.
        let refs: Vec<(u64, u8)> = (0..8192u32)
            .map(|i| {
                let b = (i % 251) as u8;
                (w.write_chunk(Encoding::Xor, &vec![b; 4096]).unwrap(), b)
            })
            .collect();
        w.close().unwrap();
        let r = ChunkReader::open(&cdir).unwrap();
        let seg = cdir.join("000001");
        let mut most = 0;
        for pass in 0..2 {
            for (i, (rf, b)) in refs.iter().enumerate() {
                let (_, got) = r.chunk(*rf).unwrap();
                assert!(got.iter().all(|x| x == b), "pass {pass} chunk {rf:#x}");
                if i % 64 == 0 {
                    most = most.max(mapped_kib(&seg));
                }
            }
            r.release_pages();
        }
        // Never much more than a step and the lag mapped (the kernel maps ahead of reads).
        assert!(most < 16 << 10, "{most} KiB mapped");
        assert_eq!(mapped_kib(&seg), 0);
    }

    #[test]
    fn crc_mismatch_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ChunkWriter::new(dir.path()).unwrap();
        let r0 = w.write_chunk(Encoding::Xor, b"hello world").unwrap();
        w.close().unwrap();
        let p = dir.path().join("000001");
        let mut b = fs::read(&p).unwrap();
        b[12] ^= 0xff;
        fs::write(&p, b).unwrap();
        let r = ChunkReader::open(dir.path()).unwrap();
        let err = r.chunk(r0).unwrap_err().to_string();
        assert!(err.contains("000001") && err.contains("checksum"), "{err}");
    }
}
