//! The head chunk files `chunks_head/000001…`: full head chunks written to disk and read back
//! through `mmap`, byte-compatible with Prometheus's `chunks.ChunkDiskMapper`
//! (`tsdb/docs/format/head_chunks.md` upstream).
//!
//! # File format
//!
//! Files are named by a sequence number with 6 digits, starting at `000001`, and are at most
//! 128 MiB. Integers are big-endian.
//!
//! ```text
//! ┌──────────────────────────────┬──────────────┬───────────────┐
//! │ magic 0x0130BC91 <4 bytes>   │ version 1 <1>│ padding 0 <3> │
//! ├──────────────────────────────┴──────────────┴───────────────┤
//! │ chunk 1 … chunk N                                           │
//! │ (then possibly zeros: preallocated space, ignored)          │
//! └─────────────────────────────────────────────────────────────┘
//! chunk: series ref <8> │ mint <8> │ maxt <8> │ encoding <1> │ len <uvarint> │ data <len>
//!        │ CRC32C <4> over everything from the series ref to the end of data
//! ```
//!
//! The top bit of the encoding byte ([`OOO_MASK`]) marks an out-of-order chunk. A chunk's
//! [`HeadChunkRef`] is `file sequence << 32 | offset of the chunk's series ref in the file`.
//! A chunk whose series ref, mint and maxt are all zero marks the end of a file's data.
//!
//! # Behaviour
//!
//! [`ChunkDiskMapper::open`] maps every existing file and checks every chunk's CRC. A damaged
//! or torn chunk cuts that file at the chunk and deletes every later file (their chunks are
//! still in the WAL, which replay then uses); the damage is logged with `tracing::warn!` and
//! reported by [`ChunkDiskMapper::corruptions`], never a panic. New chunks always go to a new
//! file after the last existing one, as in Prometheus. Writes are buffered and reach the OS
//! when the buffer fills, on [`ChunkDiskMapper::flush`], and when a file is cut (which also
//! fsyncs it); chunks still in the buffer are served from it.
//! [`ChunkDiskMapper::open_read_only`] reads a directory without changing anything in it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};

use crate::chunkenc::Encoding;
use crate::encoding::{crc32c, crc32c_many, uvarint};
use crate::fsutil::{numbered_files, sync_dir};
use crate::{Error, Result};

/// Magic number at the start of every head chunk file.
pub const MAGIC_HEAD_CHUNKS: u32 = 0x0130_BC91;
/// Head chunk file format version.
pub const HEAD_CHUNKS_FORMAT_V1: u8 = 1;
/// Size of a file header: magic, version, padding.
pub const FILE_HEADER_SIZE: usize = 8;
/// Maximum size of a head chunk file.
pub const MAX_HEAD_CHUNK_FILE_SIZE: u64 = 128 * 1024 * 1024;
/// Bit of the encoding byte marking an out-of-order chunk.
pub const OOO_MASK: u8 = 0x80;

/// series ref + mint + maxt + encoding.
const FIXED_META: usize = 8 + 8 + 8 + 1;
const CRC_SIZE: usize = 4;
/// Buffered bytes that trigger a write to the file.
const WRITE_BUFFER_SIZE: usize = 1024 * 1024;
/// Bytes [`ChunkDiskMapper::chunk_unmapped`] reads first: a whole chunk of 120 float samples
/// with its header, most of the time.
const UNMAPPED_READ: usize = 512;

/// Most bytes per chunk between the first and the last chunk of a [`ChunkDiskMapper::read_span`]
/// (a 120-sample chunk takes 150-500 bytes).
const SPAN_GAP: usize = 2048;

/// Bytes a [`ChunkDiskMapper::read_span`] reads from the start of its last chunk: enough for
/// all but unusually long chunks.
const SPAN_TAIL: usize = 4096;

/// Where a head chunk lives: `file sequence << 32 | byte offset of the chunk in the file`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HeadChunkRef(pub u64);

impl HeadChunkRef {
    /// A reference to the chunk at `offset` in file `seq`.
    pub fn new(seq: u32, offset: u32) -> Self {
        HeadChunkRef((seq as u64) << 32 | offset as u64)
    }
    /// The file sequence number.
    pub fn seq(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// The byte offset in the file.
    pub fn offset(self) -> u32 {
        self.0 as u32
    }
}

impl From<u64> for HeadChunkRef {
    fn from(r: u64) -> Self {
        HeadChunkRef(r)
    }
}

impl From<HeadChunkRef> for u64 {
    fn from(r: HeadChunkRef) -> Self {
        r.0
    }
}

/// Damage found (and cut off) when opening the head chunk files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadChunksCorruption {
    /// The damaged file (cut at `offset`; later files were deleted).
    pub file: PathBuf,
    /// Offset of the first chunk that could not be read.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

struct MappedFile {
    /// Read-only map; for the file being written it spans the maximum file size.
    mmap: Mmap,
    /// The file, for reads that bypass the map ([`ChunkDiskMapper::chunk_unmapped`]).
    file: File,
    /// Bytes of the file that may be read (header and chunks written so far).
    len: usize,
    /// Largest maxt of the file's chunks (`i64::MIN` when it has none).
    maxt: i64,
    /// Number of chunks in the file.
    chunks: usize,
}

struct CurrentFile {
    seq: u32,
    file: File,
    /// Bytes written to the file so far.
    flushed: u64,
    /// Bytes not yet written; they belong at offset `flushed`.
    buf: Vec<u8>,
}

impl CurrentFile {
    fn offset(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }
}

/// Writer and mmapped reader of the `chunks_head/` directory.
pub struct ChunkDiskMapper {
    dir: PathBuf,
    files: BTreeMap<u32, MappedFile>,
    cur: Option<CurrentFile>,
    max_file_size: u64,
    last_seq: u32,
    corruptions: Vec<HeadChunksCorruption>,
    read_only: bool,
}

impl std::fmt::Debug for ChunkDiskMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkDiskMapper")
            .field("dir", &self.dir)
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Path of head chunk file `seq` in `dir`: the number with 6 digits.
pub fn chunk_file_name(dir: &Path, seq: u32) -> PathBuf {
    dir.join(format!("{seq:06}"))
}

/// One parsed chunk header.
struct ChunkHeader {
    series_ref: u64,
    mint: i64,
    maxt: i64,
    encoding: u8,
    data_start: usize,
    data_len: usize,
    /// Offset just after the CRC.
    end: usize,
}

/// Parses and CRC-checks the chunk at `at` in `b`. `Ok(None)` at an end marker (all-zero
/// header or only zeros left).
fn parse_chunk(b: &[u8], at: usize) -> std::result::Result<Option<ChunkHeader>, String> {
    match parse_unchecked(b, at)? {
        Some(h) => {
            let computed = crc32c(&b[at..h.data_start + h.data_len]);
            check_crc(b, h, computed).map(Some)
        }
        None => Ok(None),
    }
}

/// [`parse_chunk`] without the CRC check (see [`check_crc`]).
fn parse_unchecked(b: &[u8], at: usize) -> std::result::Result<Option<ChunkHeader>, String> {
    let rest = &b[at.min(b.len())..];
    if rest.len() < FIXED_META + 1 {
        return if rest.iter().all(|&x| x == 0) {
            Ok(None)
        } else {
            Err(format!(
                "{} bytes left, too few for a chunk header",
                rest.len()
            ))
        };
    }
    let be = |o: usize| u64::from_be_bytes(rest[o..o + 8].try_into().unwrap_or([0; 8]));
    let (series_ref, mint, maxt) = (be(0), be(8) as i64, be(16) as i64);
    if series_ref == 0 && mint == 0 && maxt == 0 {
        return Ok(None);
    }
    let encoding = rest[24];
    let (len, n) = uvarint(&rest[FIXED_META..]).ok_or("bad chunk length varint")?;
    let data_start = FIXED_META + n;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| data_start.checked_add(l))
        .and_then(|e| e.checked_add(CRC_SIZE))
        .filter(|&e| e <= rest.len())
        .ok_or_else(|| {
            format!("chunk of {len} bytes runs past the end of the file (torn write)")
        })?;
    Ok(Some(ChunkHeader {
        series_ref,
        mint,
        maxt,
        encoding,
        data_start: at + data_start,
        data_len: end - CRC_SIZE - data_start,
        end: at + end,
    }))
}

/// The chunk `h` of `b` ([`parse_unchecked`]) when `computed`, the CRC of its header and
/// data, is the one stored after them.
fn check_crc(b: &[u8], h: ChunkHeader, computed: u32) -> std::result::Result<ChunkHeader, String> {
    let data_end = h.data_start + h.data_len;
    let stored = u32::from_be_bytes(b[data_end..h.end].try_into().unwrap_or([0; 4]));
    if stored != computed {
        return Err(format!(
            "checksum mismatch: stored {stored:08x}, computed {computed:08x}"
        ));
    }
    Ok(h)
}

/// Bytes from a chunk's start that [`ChunkDiskMapper::prefetch`] asks for: its header and
/// most of a typical chunk's data, four cache lines.
const PREFETCH_BYTES: usize = 256;

fn map_file(path: &Path, file: &File, len: usize) -> Result<Mmap> {
    // SAFETY: the files of chunks_head/ are only written by this process through the
    // ChunkDiskMapper, by appending; bytes that were read are never changed, and reads are
    // bounded by what was written.
    unsafe { MmapOptions::new().len(len).map(file) }.map_err(|e| Error::io(path, e))
}

impl ChunkDiskMapper {
    /// Opens (creating if missing) the head chunk directory `dir`, maps its files and checks
    /// them; see the module doc for how damage is handled.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_max_file_size(dir, MAX_HEAD_CHUNK_FILE_SIZE)
    }

    /// As [`ChunkDiskMapper::open`] with a smaller maximum file size (for tests).
    pub fn open_with_max_file_size(dir: impl AsRef<Path>, max_file_size: u64) -> Result<Self> {
        Self::open_inner(dir.as_ref(), max_file_size, false)
    }

    /// Opens the files for reading only (e.g. a live Prometheus data dir): nothing is created,
    /// deleted or cut. Damage ends the readable data at the damaged chunk (reported by
    /// [`ChunkDiskMapper::corruptions`]; later files are ignored). A missing directory gives an
    /// empty mapper. Writing and truncating fail.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_inner(dir.as_ref(), MAX_HEAD_CHUNK_FILE_SIZE, true)
    }

    fn open_inner(dir: &Path, max_file_size: u64, read_only: bool) -> Result<Self> {
        let dir = dir.to_path_buf();
        if !(FILE_HEADER_SIZE as u64 + 64..=MAX_HEAD_CHUNK_FILE_SIZE).contains(&max_file_size) {
            return Err(Error::InvalidArgument(format!(
                "head chunk file size {max_file_size} out of range"
            )));
        }
        let empty = |dir: PathBuf| ChunkDiskMapper {
            dir,
            files: BTreeMap::new(),
            cur: None,
            max_file_size,
            last_seq: 0,
            corruptions: Vec::new(),
            read_only,
        };
        if read_only && !dir.exists() {
            return Ok(empty(dir));
        }
        if !read_only {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let mut seqs = numbered_files(&dir)?;
        let mut cdm = empty(dir);
        // A last file without even a magic number was cut but never written (crash): drop it.
        if let Some(&last) = seqs.last() {
            let p = chunk_file_name(&cdm.dir, last);
            let mut head = Vec::with_capacity(4);
            File::open(&p)
                .and_then(|f| f.take(4).read_to_end(&mut head))
                .map_err(|e| Error::io(&p, e))?;
            if head.len() < 4 || head == [0, 0, 0, 0] {
                if !read_only {
                    tracing::warn!(file = %p.display(), "deleting empty last head chunk file");
                    std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                }
                seqs.pop();
            }
        }
        for w in seqs.windows(2) {
            if w[0] + 1 != w[1] {
                return Err(Error::Other(format!(
                    "{}: head chunk files are not consecutive: {:06} is followed by {:06}",
                    cdm.dir.display(),
                    w[0],
                    w[1]
                )));
            }
        }
        let mut i = 0;
        while i < seqs.len() {
            let seq = seqs[i];
            match cdm.open_file(seq)? {
                None => i += 1,
                Some(c) if cdm.read_only => {
                    // Readable data ends at the damage; later files are ignored.
                    seqs.truncate(i + 1);
                    cdm.corruptions.push(c);
                    i += 1;
                }
                Some(c) => {
                    // Cut here and drop all later files.
                    for &later in &seqs[i + 1..] {
                        let p = chunk_file_name(&cdm.dir, later);
                        tracing::warn!(file = %p.display(), "deleting head chunk file after a corrupted one");
                        std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                    }
                    seqs.truncate(i + 1);
                    cdm.corruptions.push(c);
                    sync_dir(&cdm.dir)?;
                    i += 1;
                }
            }
        }
        cdm.last_seq = seqs.last().copied().unwrap_or(0);
        Ok(cdm)
    }

    /// Maps and checks one file. Returns the damage it cut off, if any.
    fn open_file(&mut self, seq: u32) -> Result<Option<HeadChunksCorruption>> {
        let path = chunk_file_name(&self.dir, seq);
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let size = file.metadata().map_err(|e| Error::io(&path, e))?.len() as usize;
        if size < FILE_HEADER_SIZE {
            return Err(Error::corruption(
                &path,
                0,
                format!("head chunk file of {size} bytes has no header"),
            ));
        }
        let mmap = map_file(&path, &file, size)?;
        let magic = u32::from_be_bytes([mmap[0], mmap[1], mmap[2], mmap[3]]);
        if magic != MAGIC_HEAD_CHUNKS {
            return Err(Error::corruption(
                &path,
                0,
                format!("invalid magic number {magic:#010x}"),
            ));
        }
        if mmap[4] != HEAD_CHUNKS_FORMAT_V1 {
            return Err(Error::corruption(
                &path,
                4,
                format!("invalid head chunk format version {}", mmap[4]),
            ));
        }
        let (mut at, mut maxt, mut chunks) = (FILE_HEADER_SIZE, i64::MIN, 0usize);
        let mut damage = None;
        loop {
            match parse_chunk(&mmap, at) {
                Ok(Some(h)) => {
                    maxt = maxt.max(h.maxt);
                    chunks += 1;
                    at = h.end;
                }
                Ok(None) => break,
                Err(reason) => {
                    damage = Some(HeadChunksCorruption {
                        file: path.clone(),
                        offset: at as u64,
                        reason,
                    });
                    break;
                }
            }
        }
        let mmap = if let Some(d) = &damage {
            if self.read_only {
                tracing::warn!(file = %path.display(), offset = d.offset, reason = %d.reason,
                    "corrupted head chunk file: reading it up to the last good chunk");
                self.files.insert(
                    seq,
                    MappedFile {
                        mmap,
                        file,
                        len: at,
                        maxt,
                        chunks,
                    },
                );
                return Ok(damage);
            }
            tracing::warn!(file = %path.display(), offset = d.offset, reason = %d.reason,
                "corrupted head chunk file: cutting it at the last good chunk");
            drop(mmap);
            let wf = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            wf.set_len(at as u64).map_err(|e| Error::io(&path, e))?;
            wf.sync_all().map_err(|e| Error::io(&path, e))?;
            map_file(&path, &file, at)?
        } else {
            mmap
        };
        let len = mmap.len();
        self.files.insert(
            seq,
            MappedFile {
                mmap,
                file,
                len,
                maxt,
                chunks,
            },
        );
        Ok(damage)
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::InvalidArgument(format!(
                "{}: head chunk files are open read-only",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Damage found and cut off by [`ChunkDiskMapper::open`].
    pub fn corruptions(&self) -> &[HeadChunksCorruption] {
        &self.corruptions
    }

    /// Sequence numbers of the files on disk, ascending.
    pub fn file_seqs(&self) -> Vec<u32> {
        self.files.keys().copied().collect()
    }

    /// Writes a chunk of `series_ref` covering `[mint, maxt]` and returns its reference.
    pub fn write_chunk(
        &mut self,
        series_ref: u64,
        mint: i64,
        maxt: i64,
        encoding: Encoding,
        data: &[u8],
    ) -> Result<HeadChunkRef> {
        self.write_chunk_raw(series_ref, mint, maxt, encoding as u8, data)
    }

    /// As [`ChunkDiskMapper::write_chunk`] with a raw encoding byte (e.g. with [`OOO_MASK`]).
    pub fn write_chunk_raw(
        &mut self,
        series_ref: u64,
        mint: i64,
        maxt: i64,
        encoding: u8,
        data: &[u8],
    ) -> Result<HeadChunkRef> {
        self.check_writable()?;
        // The data length as a uvarint, without allocating.
        let (mut lenbuf, mut lenlen, mut l) = ([0u8; 10], 0, data.len() as u64);
        while l >= 0x80 {
            lenbuf[lenlen] = l as u8 | 0x80;
            l >>= 7;
            lenlen += 1;
        }
        lenbuf[lenlen] = l as u8;
        lenlen += 1;
        let lenbuf = &lenbuf[..lenlen];
        let total = (FIXED_META + lenlen + data.len() + CRC_SIZE) as u64;
        if total + FILE_HEADER_SIZE as u64 > self.max_file_size {
            return Err(Error::InvalidArgument(format!(
                "head chunk of {} bytes is too large",
                data.len()
            )));
        }
        if self
            .cur
            .as_ref()
            .is_none_or(|c| c.offset() + total > self.max_file_size)
        {
            self.cut()?;
        }
        let Some(cur) = self.cur.as_mut() else {
            return Err(Error::Other("no head chunk file after cut".into()));
        };
        let offset = cur.offset();
        let r = HeadChunkRef::new(cur.seq, offset as u32);
        let start = cur.buf.len();
        cur.buf.extend_from_slice(&series_ref.to_be_bytes());
        cur.buf.extend_from_slice(&mint.to_be_bytes());
        cur.buf.extend_from_slice(&maxt.to_be_bytes());
        cur.buf.push(encoding);
        cur.buf.extend_from_slice(lenbuf);
        cur.buf.extend_from_slice(data);
        let crc = crc32c(&cur.buf[start..]);
        cur.buf.extend_from_slice(&crc.to_be_bytes());
        let seq = cur.seq;
        let need_flush = cur.buf.len() >= WRITE_BUFFER_SIZE;
        if let Some(f) = self.files.get_mut(&seq) {
            f.maxt = f.maxt.max(maxt);
            f.chunks += 1;
        }
        if need_flush {
            self.flush()?;
        }
        Ok(r)
    }

    /// Writes buffered chunks to the OS.
    pub fn flush(&mut self) -> Result<()> {
        let Some(cur) = self.cur.as_mut() else {
            return Ok(());
        };
        if cur.buf.is_empty() {
            return Ok(());
        }
        let path = chunk_file_name(&self.dir, cur.seq);
        cur.file
            .write_all(&cur.buf)
            .map_err(|e| Error::io(&path, e))?;
        cur.flushed += cur.buf.len() as u64;
        cur.buf.clear();
        if let Some(f) = self.files.get_mut(&cur.seq) {
            f.len = cur.flushed as usize;
        }
        Ok(())
    }

    /// Flushes and fsyncs the file being written.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        if let Some(cur) = &self.cur {
            cur.file
                .sync_data()
                .map_err(|e| Error::io(chunk_file_name(&self.dir, cur.seq), e))?;
        }
        Ok(())
    }

    /// Finishes the file being written (flush, fsync, close); the next chunk starts a new file.
    pub fn cut_new_file(&mut self) -> Result<()> {
        self.sync()?;
        self.cur = None;
        Ok(())
    }

    fn cut(&mut self) -> Result<()> {
        self.cut_new_file()?;
        let seq = self.last_seq + 1;
        let path = chunk_file_name(&self.dir, seq);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.dir)?;
        let mmap = map_file(&path, &file, self.max_file_size as usize)?;
        let mut buf = Vec::with_capacity(WRITE_BUFFER_SIZE.min(self.max_file_size as usize));
        buf.extend_from_slice(&MAGIC_HEAD_CHUNKS.to_be_bytes());
        buf.extend_from_slice(&[HEAD_CHUNKS_FORMAT_V1, 0, 0, 0]);
        let read_handle = file.try_clone().map_err(|e| Error::io(&path, e))?;
        self.files.insert(
            seq,
            MappedFile {
                mmap,
                file: read_handle,
                len: 0,
                maxt: i64::MIN,
                chunks: 0,
            },
        );
        self.cur = Some(CurrentFile {
            seq,
            file,
            flushed: 0,
            buf,
        });
        self.last_seq = seq;
        Ok(())
    }

    /// Locates the chunk `r`: the bytes holding it and its parsed header.
    fn locate(&self, r: HeadChunkRef) -> Result<(&[u8], ChunkHeader)> {
        let (seq, off) = (r.seq(), r.offset() as usize);
        let path = || chunk_file_name(&self.dir, seq);
        let (bytes, base) = match &self.cur {
            Some(c) if c.seq == seq && off as u64 >= c.flushed => (&c.buf[..], c.flushed as usize),
            _ => {
                let f = self.files.get(&seq).ok_or_else(|| {
                    Error::corruption(
                        path(),
                        off as u64,
                        format!("head chunk file {seq:06} does not exist"),
                    )
                })?;
                (&f.mmap[..f.len], 0)
            }
        };
        if off < FILE_HEADER_SIZE || off < base || off - base >= bytes.len() {
            return Err(Error::corruption(
                path(),
                off as u64,
                "head chunk reference out of range",
            ));
        }
        let local = &bytes[off - base..];
        match parse_chunk(local, 0) {
            Ok(Some(h)) => Ok((local, h)),
            Ok(None) => Err(Error::corruption(
                path(),
                off as u64,
                "no head chunk at reference",
            )),
            Err(reason) => Err(Error::corruption(path(), off as u64, reason)),
        }
    }

    /// Asks the CPU to start loading the first bytes of the mapped chunk `r` into its caches
    /// (a chunk header and ~200 bytes of data), so that a reader walking many chunks
    /// prefetches a few ahead of the one it parses: the chunks a selection reads lie apart in
    /// the files, each a cache miss that the hardware does not foresee. Nothing for a chunk
    /// not in a mapped file, or on other CPUs; a prefetch never faults.
    pub fn prefetch(&self, r: HeadChunkRef) {
        if let Some(f) = self.files.get(&r.seq()) {
            let off = (r.offset() as usize).min(f.len);
            crate::prefetch(f.mmap[off..].as_ptr(), PREFETCH_BYTES.min(f.len - off));
        }
    }

    /// Drops the pages of every mapped file from this process's memory (`MADV_DONTNEED`):
    /// they stay in the page cache and the next read faults them back in, but until then they
    /// no longer count in the process's RSS. Called after reading many chunks at once (head
    /// compaction), whose bytes have been copied out.
    pub fn release_pages(&self) {
        for f in self.files.values() {
            // SAFETY: these are read-only shared maps of files that are only appended to,
            // never rewritten in place. For a shared file map, MADV_DONTNEED only unmaps the
            // pages; any later access (even through a slice borrowed before this call)
            // faults the same file bytes back in, so no observable content changes.
            let res = unsafe { f.mmap.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
            if let Err(e) = res {
                tracing::debug!(err = %e, "madvise(DONTNEED) on a head chunk file failed");
            }
        }
    }

    /// Drops the pages of `len` bytes from `offset` of file `seq` from this process's memory,
    /// like [`ChunkDiskMapper::release_pages`] for a part of one file. `offset` is rounded
    /// down to 64 KiB, a multiple of every page size Linux uses.
    pub fn release_range(&self, seq: u32, offset: usize, len: usize) {
        let Some(f) = self.files.get(&seq) else {
            return;
        };
        let start = offset & !0xffff;
        let end = (offset + len).min(f.mmap.len());
        if end <= start {
            return;
        }
        // SAFETY: as in `release_pages`: a shared read-only file map, refaulted on access.
        let res = unsafe {
            f.mmap
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
        if let Err(e) = res {
            tracing::debug!(err = %e, "madvise(DONTNEED) on part of a head chunk file failed");
        }
    }

    /// The data of chunk `r` (without its encoding), CRC-checked. Borrowed from the mapped file
    /// or the write buffer.
    pub fn chunk(&self, r: HeadChunkRef) -> Result<&[u8]> {
        self.chunk_and_encoding(r).map(|(_, d)| d)
    }

    /// The encoding byte (OOO bit included) and data of chunk `r`.
    pub fn chunk_and_encoding(&self, r: HeadChunkRef) -> Result<(u8, &[u8])> {
        let (local, h) = self.locate(r)?;
        Ok((h.encoding, &local[h.data_start..h.data_start + h.data_len]))
    }

    /// The data of chunk `r` (without its encoding), CRC-checked, read with `pread` instead of
    /// through the map. For a few chunks scattered over a file: a mapped read maps the
    /// kernel's whole fault-around window (64 KiB) around each chunk, and maps it again on the
    /// next query once the pages were given back; a read copies only the chunk. Chunks still
    /// in the write buffer are copied from there.
    pub fn chunk_unmapped(&self, r: HeadChunkRef) -> Result<Arc<[u8]>> {
        let (seq, off) = (r.seq(), u64::from(r.offset()));
        let buffered = self
            .cur
            .as_ref()
            .is_some_and(|c| c.seq == seq && off >= c.flushed);
        let f = match self.files.get(&seq) {
            Some(f) if !buffered && off >= FILE_HEADER_SIZE as u64 && off < f.len as u64 => f,
            // The write buffer, or a reference the mapped read reports as bad.
            _ => return self.chunk(r).map(Arc::from),
        };
        let path = || chunk_file_name(&self.dir, seq);
        let avail = f.len as u64 - off;
        let read = |buf: &mut [u8]| -> Result<()> {
            std::os::unix::fs::FileExt::read_exact_at(&f.file, buf, off)
                .map_err(|e| Error::io(path(), e))
        };
        // Most chunks fit the first read, into the stack.
        let mut first = [0u8; UNMAPPED_READ];
        let first = &mut first[..avail.min(UNMAPPED_READ as u64) as usize];
        read(first)?;
        // A chunk longer than the first read: read it whole (its length is in its header).
        let whole = first
            .get(FIXED_META..)
            .and_then(uvarint)
            .and_then(|(len, n)| {
                usize::try_from(len)
                    .ok()?
                    .checked_add(FIXED_META + n + CRC_SIZE)
            });
        let mut long = Vec::new();
        let buf: &[u8] = match whole.filter(|&t| t > first.len() && t as u64 <= avail) {
            Some(total) => {
                long.resize(total, 0);
                read(&mut long)?;
                &long
            }
            None => first,
        };
        match parse_chunk(buf, 0) {
            Ok(Some(h)) => Ok(Arc::from(&buf[h.data_start..h.data_start + h.data_len])),
            Ok(None) => Err(Error::corruption(path(), off, "no head chunk at reference")),
            Err(reason) => Err(Error::corruption(path(), off, reason)),
        }
    }

    /// The data of the chunks `refs`, CRC-checked, read with one `pread` into `buf` of the
    /// bytes from the first chunk to [`SPAN_TAIL`] past the start of the last, as ranges of
    /// `buf`, in `refs`' order. For chunks lying close together (chunks of one metric written
    /// in a batch, see [`super::waiting`]): one read copies them and a little between,
    /// instead of mapping their pages and giving them back. `None` when the span does not
    /// suit (chunks of several files or in the write buffer, more than [`SPAN_GAP`] bytes
    /// per chunk between the first and the last) or a read or chunk failed short of the
    /// file's end (a chunk may run past the bytes read): the caller reads them another way.
    pub fn read_span(
        &self,
        refs: &[HeadChunkRef],
        buf: &mut Vec<u8>,
    ) -> Option<Vec<Result<std::ops::Range<usize>>>> {
        let seq = refs.first()?.seq();
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for r in refs {
            if r.seq() != seq {
                return None;
            }
            lo = lo.min(u64::from(r.offset()));
            hi = hi.max(u64::from(r.offset()));
        }
        let f = self.files.get(&seq)?;
        let buffered = self
            .cur
            .as_ref()
            .is_some_and(|c| c.seq == seq && hi >= c.flushed);
        let sparse = hi - lo > (refs.len() * SPAN_GAP) as u64;
        if buffered || sparse || lo < FILE_HEADER_SIZE as u64 || hi >= f.len as u64 {
            return None;
        }
        let end = (hi + SPAN_TAIL as u64).min(f.len as u64);
        buf.resize((end - lo) as usize, 0);
        // A failed read is left to the other way, which reports it per chunk.
        std::os::unix::fs::FileExt::read_exact_at(&f.file, buf, lo).ok()?;
        let path = || chunk_file_name(&self.dir, seq);
        let at = |r: &HeadChunkRef| (u64::from(r.offset()) - lo) as usize;
        // Headers first, then the CRCs of all the chunks found, several side by side.
        let parsed: Vec<_> = refs.iter().map(|r| parse_unchecked(buf, at(r))).collect();
        let covered: Vec<&[u8]> = refs
            .iter()
            .zip(&parsed)
            .filter_map(|(r, p)| match p {
                Ok(Some(h)) => Some(&buf[at(r)..h.data_start + h.data_len]),
                _ => None,
            })
            .collect();
        let mut crcs = vec![0; covered.len()];
        crc32c_many(&covered, &mut crcs);
        let mut crcs = crcs.into_iter();
        let mut out = Vec::with_capacity(refs.len());
        for (r, p) in refs.iter().zip(parsed) {
            let p = p.and_then(|h| {
                h.map(|h| check_crc(buf, h, crcs.next().unwrap_or_default()))
                    .transpose()
            });
            out.push(match p {
                Ok(Some(h)) => Ok(h.data_start..h.data_start + h.data_len),
                // Perhaps a chunk running past the bytes read: the other way tells.
                Err(_) if (end as usize) < f.len => return None,
                Ok(None) => Err(Error::corruption(
                    path(),
                    u64::from(r.offset()),
                    "no head chunk at reference",
                )),
                Err(reason) => Err(Error::corruption(path(), u64::from(r.offset()), reason)),
            });
        }
        Some(out)
    }

    /// Calls `f(series_ref, chunk_ref, mint, maxt, num_samples, encoding_byte)` for every chunk
    /// of every file, in file and offset order (for the head's startup replay). The encoding
    /// byte includes [`OOO_MASK`]; `num_samples` is read from the chunk's first two bytes.
    /// Stops at the first error `f` returns.
    pub fn iterate_all<F>(&mut self, mut f: F) -> Result<()>
    where
        F: FnMut(u64, HeadChunkRef, i64, i64, u16, u8) -> Result<()>,
    {
        self.flush()?;
        for (&seq, mf) in &self.files {
            let b = &mf.mmap[..mf.len];
            let mut at = FILE_HEADER_SIZE;
            while at < b.len() {
                let h = match parse_chunk(b, at) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(reason) => {
                        return Err(Error::corruption(
                            chunk_file_name(&self.dir, seq),
                            at as u64,
                            reason,
                        ))
                    }
                };
                let data = &b[h.data_start..h.data_start + h.data_len];
                let num = if data.len() >= 2 {
                    u16::from_be_bytes([data[0], data[1]])
                } else {
                    0
                };
                f(
                    h.series_ref,
                    HeadChunkRef::new(seq, at as u32),
                    h.mint,
                    h.maxt,
                    num,
                    h.encoding,
                )?;
                at = h.end;
            }
        }
        Ok(())
    }

    /// Deletes the oldest files whose chunks all end before `mint` (only a leading run of
    /// files, so the remaining ones stay consecutive). When the file being written qualifies
    /// too, it is finished first and the next chunk starts a new file. Returns how many files
    /// were deleted. References into deleted files become invalid.
    pub fn truncate(&mut self, mint: i64) -> Result<usize> {
        self.check_writable()?;
        let mut doomed = Vec::new();
        for (&seq, f) in &self.files {
            if f.maxt >= mint {
                break;
            }
            doomed.push(seq);
        }
        if let Some(cur) = &self.cur {
            if doomed.contains(&cur.seq) {
                self.cut_new_file()?;
            }
        }
        for seq in &doomed {
            self.files.remove(seq);
            let p = chunk_file_name(&self.dir, *seq);
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(doomed.len())
    }

    /// Number of chunks in each file, by sequence number.
    pub fn chunk_counts(&self) -> Vec<(u32, usize)> {
        self.files.iter().map(|(&s, f)| (s, f.chunks)).collect()
    }

    /// Flushes and fsyncs pending chunks; the mapper stays usable.
    pub fn close(&mut self) -> Result<()> {
        self.cut_new_file()
    }
}

impl Drop for ChunkDiskMapper {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "flushing head chunks on drop failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapper_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ChunkDiskMapper>();
    }

    #[test]
    fn refs_pack_file_and_offset() {
        let r = HeadChunkRef::new(3, 0x1234);
        assert_eq!(r.0, 3 << 32 | 0x1234);
        assert_eq!((r.seq(), r.offset()), (3, 0x1234));
        assert_eq!(HeadChunkRef::from(u64::from(r)), r);
    }

    #[test]
    fn write_read_reopen_iterate() {
        let dir = tempfile::tempdir().unwrap();
        let mut refs = Vec::new();
        {
            let mut m = ChunkDiskMapper::open_with_max_file_size(dir.path(), 4096).unwrap();
            for i in 0..100u64 {
                let data: Vec<u8> = (0..(20 + i as usize % 50))
                    .map(|j| (i as usize + j) as u8)
                    .collect();
                let mut d = data.clone();
                d[0] = 0;
                d[1] = (i % 120) as u8;
                let r = m
                    .write_chunk(i + 1, i as i64 * 10, i as i64 * 10 + 9, Encoding::Xor, &d)
                    .unwrap();
                // readable straight from the buffer
                assert_eq!(m.chunk(r).unwrap(), &d[..]);
                assert_eq!(&*m.chunk_unmapped(r).unwrap(), &d[..]);
                refs.push((r, d));
            }
            assert!(m.file_seqs().len() > 1, "small max size cuts several files");
            assert_eq!(m.file_seqs()[0], 1);
            m.flush().unwrap();
            for (r, d) in &refs {
                assert_eq!(m.chunk(*r).unwrap(), &d[..]);
                assert_eq!(&*m.chunk_unmapped(*r).unwrap(), &d[..]);
            }
            // Dropping the mapped pages changes nothing a read sees, even a held slice.
            let held = m.chunk(refs[0].0).unwrap().to_vec();
            m.release_pages();
            for (r, d) in &refs {
                assert_eq!(m.chunk(*r).unwrap(), &d[..]);
            }
            assert_eq!(held, refs[0].1);
        }
        let mut m = ChunkDiskMapper::open_with_max_file_size(dir.path(), 4096).unwrap();
        assert!(m.corruptions().is_empty());
        for (r, d) in &refs {
            assert_eq!(m.chunk_and_encoding(*r).unwrap(), (1, &d[..]));
            assert_eq!(&*m.chunk_unmapped(*r).unwrap(), &d[..]);
        }
        let mut seen = Vec::new();
        m.iterate_all(|s, r, mint, maxt, n, enc| {
            seen.push((s, r, mint, maxt, n, enc));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 100);
        for (i, (s, r, mint, maxt, n, enc)) in seen.iter().enumerate() {
            assert_eq!(
                (*s, *r, *mint, *maxt, *n, *enc),
                (
                    i as u64 + 1,
                    refs[i].0,
                    i as i64 * 10,
                    i as i64 * 10 + 9,
                    (i % 120) as u16,
                    1
                )
            );
        }
        // New chunks go to a new file after the last one.
        let last = *m.file_seqs().last().unwrap();
        let r = m
            .write_chunk(7, 5000, 5001, Encoding::Xor, &[0, 1, 2])
            .unwrap();
        assert_eq!(r.seq(), last + 1);
        assert_eq!(r.offset() as usize, FILE_HEADER_SIZE);
    }

    #[test]
    fn long_chunks_use_multi_byte_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = ChunkDiskMapper::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
        let r = m.write_chunk(5, 1, 2, Encoding::Xor, &data).unwrap();
        m.flush().unwrap();
        let b = std::fs::read(chunk_file_name(dir.path(), 1)).unwrap();
        let at = r.offset() as usize + FIXED_META;
        assert_eq!(&b[at..at + 3], &[0xa0, 0x9c, 0x01]); // uvarint(20000)
        assert_eq!(m.chunk(r).unwrap(), &data[..]);
        // Longer than the first unmapped read: read again whole.
        assert_eq!(&*m.chunk_unmapped(r).unwrap(), &data[..]);
        assert_eq!(
            b.len(),
            FILE_HEADER_SIZE + FIXED_META + 3 + data.len() + CRC_SIZE
        );
        // A damaged byte fails the unmapped read's checksum like the mapped one's.
        let f = OpenOptions::new()
            .write(true)
            .open(chunk_file_name(dir.path(), 1))
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[0x55], (at + 3 + 100) as u64).unwrap();
        let err = m.chunk_unmapped(r).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn truncate_deletes_leading_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = ChunkDiskMapper::open_with_max_file_size(dir.path(), 1024).unwrap();
        let mut refs = Vec::new();
        for i in 0..60i64 {
            refs.push(
                m.write_chunk(1, i * 100, i * 100 + 99, Encoding::Xor, &[0u8; 60])
                    .unwrap(),
            );
        }
        let files = m.file_seqs();
        assert!(files.len() >= 4);
        let n = m.truncate(3000).unwrap();
        assert!(n >= 1);
        for r in &refs {
            let want_ok = m.file_seqs().contains(&r.seq());
            assert_eq!(m.chunk(*r).is_ok(), want_ok);
        }
        // Every remaining file holds a chunk with maxt >= 3000 or is after one.
        assert!(refs.iter().filter(|r| m.chunk(**r).is_ok()).count() >= 30);
        // Truncating everything also finishes the current file.
        m.truncate(i64::MAX).unwrap();
        assert!(m.file_seqs().is_empty());
        let r = m.write_chunk(1, 0, 1, Encoding::Xor, &[0, 1]).unwrap();
        assert!(r.seq() > *files.last().unwrap());
    }
}
