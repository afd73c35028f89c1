//! The database: a data directory holding persistent blocks, the head's WAL and its full
//! chunks, laid out as Prometheus lays it out so either can open the other's directory:
//!
//! ```text
//! <dir>/
//!   lock                     flock'ed while a writable Db has the directory open
//!   <ULID>/                  a block (meta.json, index, chunks/, tombstones)
//!   chunks_head/000001…      the head's full chunks, mmapped
//!   wal/00000000…            WAL segments; wal/checkpoint.<n>/ the last checkpoint
//! ```
//!
//! [`Db::open`] takes the lock, deletes leftovers of interrupted writes (`*.tmp*` block
//! directories), opens the blocks, hands the chunks of `chunks_head/` to the head, replays the
//! WAL (checkpoint, then later segments) and cuts a corrupt WAL tail back to the last good
//! record (logged with file and offset, counted in [`Db::replay_stats`]). Writes go through
//! [`Db::appender`]; [`Db::compact`] cuts a block out of the head when the head spans more
//! than 1.5 chunk ranges, truncates the head, checkpoints and truncates the WAL, compacts
//! blocks with [`Compactor`] and applies retention. [`Db`] is a [`Queryable`] merging the
//! blocks and the head ([`crate::merge`]).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use ulid::Ulid;

use crate::block::Block;
use crate::compact::{exponential_block_ranges, merge_chunk_series_sets, BlockWriter, Compactor};
use crate::head::disk_chunks::DiskChunkStore;
use crate::head::head_chunks::ChunkDiskMapper;
use crate::head::wal::{replay_wal_with_metrics, ReplayStats, WalWriter};
use crate::head::{Appender, ChunkStore, Head, HeadOptions, HeadStats, MemChunkStore, WalLog};
use crate::labels::Matcher;
use crate::merge::MergeQuerier;
use crate::querier::{ChunkQuerier, ChunkSeriesSet, Querier, Queryable};
use crate::tombstones::{read_tombstones, write_tombstones, Interval};
use crate::wal::record::RefTombstone;
use crate::wal::{Wal, WalMetrics, WalOptions};
use crate::{Error, Result};

/// Name of the WAL directory.
pub const WAL_DIRNAME: &str = "wal";
/// Name of the head chunks directory.
pub const CHUNKS_HEAD_DIRNAME: &str = "chunks_head";
/// Name of the lock file.
pub const LOCK_FILENAME: &str = "lock";

/// Options of a [`Db`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Delete blocks whose end is older than this behind the newest block's end (0: keep).
    pub retention: Duration,
    /// Delete the oldest blocks while blocks + WAL + head chunks take more bytes (0: no limit).
    pub max_bytes: u64,
    /// Block ranges for compaction (ms), smallest first; the first is the head's chunk range.
    pub block_ranges: Vec<i64>,
    /// WAL segment size in bytes (a multiple of 32 KiB).
    pub wal_segment_size: usize,
    /// Snappy-compress WAL records.
    pub wal_compression: bool,
    /// Out-of-order window (ms); only 0 is supported.
    pub ooo_window: i64,
    /// Do not take the lock file.
    pub no_lockfile: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retention: Duration::from_secs(15 * 24 * 3600),
            max_bytes: 0,
            block_ranges: exponential_block_ranges(crate::compact::DEFAULT_BLOCK_DURATION, 3, 5),
            wal_segment_size: crate::wal::DEFAULT_SEGMENT_SIZE,
            wal_compression: true,
            ooo_window: 0,
            no_lockfile: false,
        }
    }
}

/// Held flock on `<dir>/lock`, released on drop.
struct DirLock {
    _file: File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<Self> {
        use std::os::unix::io::AsRawFd;
        let path = dir.join(LOCK_FILENAME);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // A lock held by another open is retried for a while: a process that starts a child
        // lends the child its descriptors until the child's `exec` closes them, so a lock this
        // process gave up a moment ago can still be held by such a child (seen in the tests:
        // a database closed and reopened while another test started `promtool`).
        let mut tries = 0;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is shared.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(DirLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            tries += 1;
            if err.kind() != std::io::ErrorKind::WouldBlock || tries >= LOCK_TRIES {
                return Err(Error::io(&path, err));
            }
            std::thread::sleep(LOCK_RETRY_PAUSE);
        }
    }
}

/// Attempts to take a held directory lock before giving up (see [`DirLock::acquire`]).
const LOCK_TRIES: u32 = 20;
/// Pause between attempts: all of them take about half a second.
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(25);

/// The head's full chunks: on disk for a writable database, in memory when read-only.
enum HeadChunks {
    Disk(Arc<DiskChunkStore>),
    Mem,
}

/// An open data directory; see the module docs.
pub struct Db {
    dir: PathBuf,
    opts: Options,
    head: Head,
    blocks: RwLock<Vec<Block>>,
    wal: Option<Arc<WalWriter>>,
    chunks: HeadChunks,
    read_only: bool,
    replay: ReplayStats,
    wal_metrics: Arc<WalMetrics>,
    compact_lock: Mutex<()>,
    readers: Arc<Readers>,
    closed: AtomicBool,
    _lock: Option<DirLock>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("dir", &self.dir)
            .field("head", &self.head)
            .finish()
    }
}

fn is_tmp_dir(name: &str) -> bool {
    name.ends_with(".tmp-for-creation")
        || name.ends_with(".tmp-for-deletion")
        || name.ends_with(".tmp")
}

/// Opens the blocks in `dir`, sorted by time. With `cleanup`, removes leftover temporary dirs.
fn load_blocks(dir: &Path, cleanup: bool) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    for ent in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        let p = ent.path();
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if !p.is_dir() {
            continue;
        }
        if is_tmp_dir(name) {
            if cleanup {
                tracing::info!(dir = %p.display(), "removing leftover temporary block directory");
                fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            }
            continue;
        }
        if Ulid::from_string(name).is_err() || !p.join(crate::block::META_FILENAME).exists() {
            continue;
        }
        let b = Block::open(&p)?;
        if b.meta().compaction.deletable {
            continue;
        }
        blocks.push(b);
    }
    blocks.sort_by_key(|b| (b.min_time(), b.max_time()));
    // A block whose sources are all covered by another (a compaction finished but its inputs
    // were not deleted yet) is dropped, as Prometheus does.
    let mut keep = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        let sources = &b.meta().compaction.sources;
        let covered = blocks.iter().enumerate().any(|(j, o)| {
            j != i
                && o.meta().compaction.level > b.meta().compaction.level
                && sources
                    .iter()
                    .all(|s| o.meta().compaction.sources.contains(s))
        });
        if covered {
            if cleanup {
                tracing::info!(block = %b.ulid(), "removing block already compacted into another");
                fs::remove_dir_all(b.dir()).map_err(|e| Error::io(b.dir(), e))?;
            }
        } else {
            keep.push(b.clone());
        }
    }
    Ok(keep)
}

impl Db {
    /// Opens (creating if needed) the data directory `dir` for reading and writing.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        Self::open_inner(dir.as_ref(), opts, false)
    }

    /// Opens `dir` read-only: no lock, no WAL writes, no repairs or deletions; the head is
    /// replayed into memory (for `ignis tsdb dump` and analysis of a copy).
    pub fn open_read_only(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        Self::open_inner(dir.as_ref(), opts, true)
    }

    fn open_inner(dir: &Path, opts: Options, read_only: bool) -> Result<Db> {
        if opts.block_ranges.is_empty() {
            return Err(Error::InvalidArgument(
                "at least one block range is needed".into(),
            ));
        }
        if read_only {
            if !dir.is_dir() {
                return Err(Error::io(
                    dir,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
        } else {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let lock = if read_only || opts.no_lockfile {
            None
        } else {
            Some(DirLock::acquire(dir)?)
        };
        tracing::info!(dir = %dir.display(), read_only, "opening TSDB");
        let blocks = load_blocks(dir, !read_only)?;
        tracing::info!(blocks = blocks.len(), "blocks loaded");

        let head_opts = HeadOptions {
            chunk_range: opts.block_ranges[0],
            ooo_window: opts.ooo_window,
        };
        let chunks_dir = dir.join(CHUNKS_HEAD_DIRNAME);
        let (chunks, store): (HeadChunks, Arc<dyn ChunkStore>) = if read_only {
            (HeadChunks::Mem, Arc::new(MemChunkStore::default()))
        } else {
            let mapper = ChunkDiskMapper::open(&chunks_dir)?;
            for c in mapper.corruptions() {
                tracing::warn!(corruption = ?c, "head chunks damaged; the WAL replaces them");
            }
            let d = Arc::new(DiskChunkStore::new(mapper));
            (HeadChunks::Disk(d.clone()), d)
        };
        let head = Head::new(head_opts, store)?;
        if let Some(last) = blocks.last() {
            head.set_min_valid_time(
                blocks
                    .iter()
                    .map(|b| b.max_time())
                    .max()
                    .unwrap_or(last.max_time()),
            );
        }
        if let HeadChunks::Disk(d) = &chunks {
            let n = d.load_into(&head)?;
            tracing::info!(chunks = n, "head chunks loaded");
        }
        // Read-only opens skip `chunks_head/`: the WAL (checkpoint + segments) holds every
        // sample of the head, the chunk files are only a shortcut.
        let wal_dir = dir.join(WAL_DIRNAME);
        let wal_metrics = Arc::new(WalMetrics::default());
        let replay =
            replay_wal_with_metrics(&head, &wal_dir, !read_only, Some(wal_metrics.clone()))?;
        let dropped = head.drop_unclaimed_chunks();
        if dropped > 0 {
            tracing::info!(
                chunks = dropped,
                "dropped head chunks of series not in the WAL"
            );
        }
        let wal = if read_only {
            None
        } else {
            let w = Wal::open_with_metrics(
                &wal_dir,
                WalOptions {
                    segment_size: opts.wal_segment_size,
                    compress: opts.wal_compression,
                },
                wal_metrics.clone(),
            )?;
            let w = Arc::new(WalWriter::new(w));
            head.set_wal(Some(w.clone() as Arc<dyn WalLog>));
            Some(w)
        };
        Ok(Db {
            dir: dir.to_path_buf(),
            opts,
            head,
            blocks: RwLock::new(blocks),
            wal,
            chunks,
            read_only,
            replay,
            wal_metrics,
            compact_lock: Mutex::new(()),
            readers: Arc::new(Readers::default()),
            closed: AtomicBool::new(false),
            _lock: lock,
        })
    }

    fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.read_only {
            return Err(Error::InvalidArgument("database opened read-only".into()));
        }
        Ok(())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The head block.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The open blocks, oldest first.
    pub fn blocks(&self) -> Vec<Block> {
        self.blocks.read().clone()
    }

    /// What the WAL replay at open read and did (a corruption found is in `corruption`).
    pub fn replay_stats(&self) -> &ReplayStats {
        &self.replay
    }

    /// Counters of the WAL (`prometheus_tsdb_wal_*`), corruptions found at replay included.
    pub fn wal_metrics(&self) -> &Arc<WalMetrics> {
        &self.wal_metrics
    }

    /// Counters of the head (series count, time range), for `/api/v1/status/tsdb`.
    pub fn head_stats(&self) -> HeadStats {
        self.head.stats()
    }

    /// A new appender; samples become visible and durable (written to the OS) at commit.
    pub fn appender(&self) -> Appender {
        self.head.appender()
    }

    /// Oldest timestamp held (blocks or head), `None` when empty.
    pub fn min_time(&self) -> Option<i64> {
        let b = self.blocks.read().first().map(|b| b.min_time());
        let h = (self.head.min_time() <= self.head.max_time()).then(|| self.head.min_time());
        match (b, h) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- compaction -----------------------------------------------------------------------

    /// Whether the head spans more than 1.5 chunk ranges, so [`Db::compact`] would cut a
    /// block out of it.
    pub fn head_compactable(&self) -> bool {
        let (mint, maxt) = (self.head.min_time(), self.head.max_time());
        mint <= maxt && maxt - mint > self.head.options().chunk_range / 2 * 3
    }

    /// Cuts blocks out of the head while it spans more than 1.5 chunk ranges (then truncates
    /// the head and the WAL), compacts blocks as the [`Compactor`] plans, and applies
    /// retention. Returns the ULIDs of the blocks written.
    pub fn compact(&self) -> Result<Vec<Ulid>> {
        self.check_writable()?;
        let _g = self.compact_lock.lock();
        let mut written = Vec::new();
        while self.head_compactable() {
            let range = self.head.options().chunk_range;
            let mint = self.head.min_time().div_euclid(range) * range;
            let maxt = mint + range;
            // An earlier round may have written this range already and then skipped truncation.
            let covered = self
                .blocks
                .read()
                .iter()
                .any(|b| b.min_time() <= mint && b.max_time() >= maxt);
            if !covered {
                if let Some(u) = self.write_head_block(&self.dir, mint, maxt)? {
                    written.push(u);
                }
                self.reload_blocks()?;
            }
            // Queriers opened before the new block may still read the head range; waiting for
            // them could stall forever (e.g. held by this very thread), so skip the truncation
            // and let a later compaction retry it.
            if !self.readers.wait_below(maxt, TRUNCATE_WAIT) {
                tracing::warn!(
                    maxt,
                    wait_ms = TRUNCATE_WAIT.as_millis() as u64,
                    "queriers still read the head range; head truncation skipped until the next compaction"
                );
                break;
            }
            self.truncate_head(maxt)?;
        }
        written.extend(self.compact_blocks()?);
        self.apply_retention()?;
        Ok(written)
    }

    /// Writes the head's samples in `[mint, maxt)` as a level-1 block into `parent`; `None`
    /// (and nothing written) when there are none.
    fn write_head_block(&self, parent: &Path, mint: i64, maxt: i64) -> Result<Option<Ulid>> {
        tracing::info!(mint, maxt, "writing head block");
        // Series stream from the head into the writer by symbol numbers; the source gives the
        // mapped head chunk pages back as it goes.
        let mut source = self.head.block_source(mint, maxt);
        let meta = BlockWriter::new(parent, mint, maxt).write_from(&mut source);
        drop(source);
        let meta = meta?;
        if meta.stats.num_samples == 0 {
            let d = parent.join(meta.ulid.to_string());
            fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
            return Ok(None);
        }
        tracing::info!(block = %meta.ulid, samples = meta.stats.num_samples, series = meta.stats.num_series, "head block written");
        Ok(Some(meta.ulid))
    }

    fn reload_blocks(&self) -> Result<()> {
        let blocks = load_blocks(&self.dir, true)?;
        if let Some(maxt) = blocks.iter().map(|b| b.max_time()).max() {
            self.head.set_min_valid_time(maxt);
        }
        *self.blocks.write() = blocks;
        Ok(())
    }

    /// Drops head data before `mint`, checkpoints the older WAL segments and deletes them.
    ///
    /// As Prometheus does, only the lower two thirds of the closed segments are checkpointed
    /// when there are three or more: those hold mostly samples older than `mint`, which the
    /// checkpoint drops, while the newer ones hold mostly samples it would have to copy (with
    /// 2h blocks cut from a 3h head, checkpointing every closed segment rewrote about half of
    /// the WAL each time: 44M of 92M samples in the 100k-series replay).
    fn truncate_head(&self, mint: i64) -> Result<()> {
        let removed = self.head.truncate(mint)?;
        tracing::info!(mint, removed_series = removed, "head truncated");
        let Some(w) = &self.wal else { return Ok(()) };
        let wal_dir = self.dir.join(WAL_DIRNAME);
        // Close the segment being written so everything up to now can be checkpointed.
        let last = w.with_wal(|wal| wal.next_segment())?.saturating_sub(1);
        let Some((first, _)) = crate::wal::segment_range(&wal_dir)? else {
            return Ok(());
        };
        if last < first {
            return Ok(());
        }
        let last = checkpoint_end(first, last);
        let head = self.head.clone();
        let stats = crate::wal::checkpoint(&wal_dir, first, last, |r| head.series_exists(r), mint)?;
        tracing::info!(first, last, ?stats, "WAL checkpoint written");
        w.with_wal(|wal| wal.truncate(last + 1))?;
        crate::wal::checkpoint::delete_checkpoints(&wal_dir, last)?;
        Ok(())
    }

    fn compact_blocks(&self) -> Result<Vec<Ulid>> {
        let compactor = Compactor::new(self.opts.block_ranges.clone());
        let mut written = Vec::new();
        loop {
            let plan = compactor.plan_dir(&self.dir)?;
            if plan.is_empty() {
                break;
            }
            tracing::info!(blocks = ?plan, "compacting blocks");
            let res = compactor.compact_dirs(&self.dir, &plan)?;
            if let Some(u) = res {
                written.push(u);
            }
            for p in &plan {
                fs::remove_dir_all(p).map_err(|e| Error::io(p, e))?;
            }
            self.reload_blocks()?;
            if res.is_none() {
                break;
            }
        }
        Ok(written)
    }

    fn dir_size(p: &Path) -> u64 {
        let Ok(rd) = fs::read_dir(p) else { return 0 };
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => Self::dir_size(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }

    /// Deletes blocks beyond the time and size retention; returns how many.
    pub fn apply_retention(&self) -> Result<usize> {
        let blocks = self.blocks();
        let mut delete: Vec<Block> = Vec::new();
        let ret = self.opts.retention.as_millis() as i64;
        if ret > 0 {
            if let Some(newest) = blocks.iter().map(|b| b.max_time()).max() {
                delete.extend(
                    blocks
                        .iter()
                        .filter(|b| newest - b.max_time() > ret)
                        .cloned(),
                );
            }
        }
        if self.opts.max_bytes > 0 {
            let mut total: u64 = blocks.iter().map(|b| b.size()).sum::<u64>()
                + Self::dir_size(&self.dir.join(WAL_DIRNAME))
                + Self::dir_size(&self.dir.join(CHUNKS_HEAD_DIRNAME));
            for b in &blocks {
                if total <= self.opts.max_bytes {
                    break;
                }
                total = total.saturating_sub(b.size());
                if !delete.iter().any(|d| d.ulid() == b.ulid()) {
                    delete.push(b.clone());
                }
            }
        }
        if delete.is_empty() {
            return Ok(0);
        }
        for b in &delete {
            tracing::info!(block = %b.ulid(), min_time = b.min_time(), max_time = b.max_time(), "deleting block (retention)");
            // Rename first so a crash never leaves half a block that looks complete.
            let tmp = self.dir.join(format!("{}.tmp-for-deletion", b.ulid()));
            fs::rename(b.dir(), &tmp).map_err(|e| Error::io(b.dir(), e))?;
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        self.reload_blocks()?;
        Ok(delete.len())
    }

    // ---- deletion ---------------------------------------------------------------------------

    /// Deletes the samples in `[mint, maxt]` of the series matching `matchers`: tombstones in
    /// the blocks, a tombstones record in the WAL and a rewrite in the head.
    pub fn delete(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> Result<()> {
        self.check_writable()?;
        let _g = self.compact_lock.lock();
        let mut changed = false;
        for b in self.blocks() {
            if !b.overlaps(mint, maxt) {
                continue;
            }
            let refs = b.index().postings_for_matchers(matchers)?;
            let (mut stones, _) = read_tombstones(b.dir())?;
            let mut n = 0;
            for r in refs {
                let (_, chunks) = b.index().series_labels(r)?;
                if chunks
                    .iter()
                    .any(|c| c.max_time >= mint && c.min_time <= maxt)
                {
                    stones.entry(r).or_default().add(Interval::new(mint, maxt));
                    n += 1;
                }
            }
            if n > 0 {
                write_tombstones(b.dir(), &stones)?;
                changed = true;
                tracing::info!(block = %b.ulid(), series = n, mint, maxt, "tombstones written");
            }
        }
        if changed {
            self.reload_blocks()?;
        }
        // Head: log first, so a crash after the rewrite still replays the deletion.
        let refs = self.head.series_refs_matching(matchers);
        if let Some(w) = &self.wal {
            let stones: Vec<RefTombstone> = refs
                .iter()
                .map(|&series_ref| RefTombstone {
                    series_ref,
                    mint,
                    maxt,
                })
                .collect();
            w.log_tombstones(&stones)?;
        }
        for r in refs {
            self.head.delete_series_range(r, mint, maxt)?;
        }
        Ok(())
    }

    /// Rewrites every block that has tombstones without the deleted data.
    pub fn clean_tombstones(&self) -> Result<usize> {
        self.check_writable()?;
        let _g = self.compact_lock.lock();
        let compactor = Compactor::new(self.opts.block_ranges.clone());
        let mut n = 0;
        for b in self.blocks() {
            if b.tombstones().is_empty() {
                continue;
            }
            tracing::info!(block = %b.ulid(), "rewriting block without tombstones");
            compactor.compact(&self.dir, std::slice::from_ref(&b))?;
            let dir = b.dir().to_path_buf();
            let tmp = self.dir.join(format!("{}.tmp-for-deletion", b.ulid()));
            fs::rename(&dir, &tmp).map_err(|e| Error::io(&dir, e))?;
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
            n += 1;
        }
        self.reload_blocks()?;
        Ok(n)
    }

    // ---- snapshot ---------------------------------------------------------------------------

    /// Writes a snapshot into `dir`: every block hard-linked (copied where linking fails) and,
    /// with `with_head`, the head written as a block.
    pub fn snapshot(&self, dir: impl AsRef<Path>, with_head: bool) -> Result<()> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for b in self.blocks() {
            let dst = dir.join(b.ulid().to_string());
            link_tree(b.dir(), &dst)?;
        }
        if with_head {
            let (mint, maxt) = (self.head.min_time(), self.head.max_time());
            if mint <= maxt {
                self.write_head_block(dir, mint, maxt + 1)?;
            }
        }
        Ok(())
    }

    /// Closes the WAL and the head chunk files. Later writes fail with [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.head.close();
        if let Some(w) = &self.wal {
            w.with_wal(|wal| wal.close())?;
        }
        // Not needed for safety (the WAL holds their samples), but a restart then reads them
        // back instead of rebuilding them.
        self.head.write_waiting_chunks();
        if let HeadChunks::Disk(d) = &self.chunks {
            d.close()?;
        }
        tracing::info!(dir = %self.dir.display(), "TSDB closed");
        Ok(())
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing TSDB");
        }
    }
}

fn link_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    for ent in fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let ent = ent.map_err(|e| Error::io(src, e))?;
        let (s, d) = (ent.path(), dst.join(ent.file_name()));
        if s.is_dir() {
            link_tree(&s, &d)?;
        } else if fs::hard_link(&s, &d).is_err() {
            fs::copy(&s, &d).map_err(|e| Error::io(&d, e))?;
        }
    }
    Ok(())
}

/// Chunk-level selection over several chunk queriers (blocks, then the head).
struct MergeChunkQuerier {
    queriers: Vec<Box<dyn ChunkQuerier>>,
}

impl ChunkQuerier for MergeChunkQuerier {
    fn select_chunks(
        &self,
        sorted: bool,
        hints: Option<&crate::querier::SelectHints>,
        matchers: &[Matcher],
    ) -> ChunkSeriesSet {
        if self.queriers.len() == 1 {
            return self.queriers[0].select_chunks(sorted, hints, matchers);
        }
        merge_chunk_series_sets(
            self.queriers
                .iter()
                .map(|q| q.select_chunks(true, hints, matchers))
                .collect(),
        )
    }
}

impl Db {
    /// A chunk querier over `[mint, maxt]` merging blocks and head (for remote read's streamed
    /// chunks): chunks of equal series from several sources are merged where they overlap.
    pub fn chunk_querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn ChunkQuerier>> {
        let mut queriers: Vec<Box<dyn ChunkQuerier>> = Vec::new();
        for b in self.blocks.read().iter() {
            if b.overlaps(mint, maxt) {
                queriers.push(b.chunk_querier(mint, maxt)?);
            }
        }
        queriers.push(self.head.chunk_querier(mint, maxt));
        Ok(Box::new(MergeChunkQuerier { queriers }))
    }
}

/// The last WAL segment to checkpoint when segments `first..=last` are closed: the lower two
/// thirds of them when there are three or more, else all.
fn checkpoint_end(first: u32, last: u32) -> u32 {
    let span = last.saturating_sub(first);
    if span >= 2 {
        first + span * 2 / 3
    } else {
        last
    }
}

/// How long head truncation waits for queriers still reading the range being dropped before
/// it is put off to the next compaction.
const TRUNCATE_WAIT: Duration = Duration::from_millis(200);

/// Queriers in use, by id, with the start of their range: head truncation waits for those
/// that may still read the range being dropped (their block list predates the new block).
#[derive(Default)]
struct Readers {
    next: std::sync::atomic::AtomicU64,
    active: Mutex<std::collections::HashMap<u64, i64>>,
}

impl Readers {
    fn register(self: &Arc<Self>, mint: i64) -> ReaderGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.active.lock().insert(id, mint);
        ReaderGuard {
            readers: self.clone(),
            id,
        }
    }

    /// Waits (up to `timeout`) until no querier that started before now reads below `mint`.
    fn wait_below(&self, mint: i64, timeout: Duration) -> bool {
        let waiting: Vec<u64> = self
            .active
            .lock()
            .iter()
            .filter(|(_, &m)| m < mint)
            .map(|(&id, _)| id)
            .collect();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let still = {
                let a = self.active.lock();
                waiting.iter().any(|id| a.contains_key(id))
            };
            if !still {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

struct ReaderGuard {
    readers: Arc<Readers>,
    id: u64,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.readers.active.lock().remove(&self.id);
    }
}

/// The database's querier: blocks and head merged, registered as a reader while it or a
/// series set it returned is alive (sources prepare large selections a window at a time, as
/// they are read).
struct DbQuerier {
    inner: MergeQuerier,
    guard: Arc<ReaderGuard>,
}

impl Querier for DbQuerier {
    fn select(
        &self,
        sorted: bool,
        hints: Option<&crate::querier::SelectHints>,
        matchers: &[Matcher],
    ) -> crate::querier::SeriesSet {
        let guard = self.guard.clone();
        let mut set = self.inner.select(sorted, hints, matchers);
        Box::new(std::iter::from_fn(move || {
            let _reading = &guard;
            set.next()
        }))
    }
    fn label_values(&self, name: &str, matchers: &[Matcher], limit: usize) -> Result<Vec<String>> {
        self.inner.label_values(name, matchers, limit)
    }
    fn label_names(&self, matchers: &[Matcher], limit: usize) -> Result<Vec<String>> {
        self.inner.label_names(matchers, limit)
    }
}

impl Queryable for Db {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>> {
        // Register before reading the block list (see `Readers`).
        let guard = self.readers.register(mint);
        let mut qs: Vec<Box<dyn Querier>> = Vec::new();
        for b in self.blocks.read().iter() {
            if b.overlaps(mint, maxt) {
                qs.push(b.querier(mint, maxt)?);
            }
        }
        qs.push(self.head.querier(mint, maxt)?);
        Ok(Box::new(DbQuerier {
            inner: MergeQuerier::new(qs),
            guard: Arc::new(guard),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::checkpoint_end;

    #[test]
    fn checkpoint_covers_the_lower_two_thirds_of_many_segments() {
        assert_eq!(checkpoint_end(0, 0), 0);
        assert_eq!(checkpoint_end(3, 4), 4);
        assert_eq!(checkpoint_end(0, 2), 1);
        assert_eq!(checkpoint_end(0, 7), 4);
        assert_eq!(checkpoint_end(8, 11), 10);
    }
}
