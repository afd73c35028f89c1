//! The head block: the most recent samples, in memory, appendable.
//!
//! * [`Head`] holds the series: each has a stable `u64` reference handed out from 1 upwards,
//!   is found by reference (a dense table, [`ref_table`]) or by the hash of its labels (collisions kept in a
//!   list), and keeps its labels as interned strings ([`index::Symbols`]).
//! * Postings ([`index::MemPostings`]): a `roaring` bitmap of series refs per label pair and
//!   one of all series, used by the querier ([`querier`]) to select series by matchers.
//! * Each series keeps only its open XOR chunk in memory; full chunks (about 120 samples, see
//!   [`series`]) go to a [`chunk_store::ChunkStore`] — the mmapped `chunks_head/` files in a
//!   database, memory in tests — in batches grouped by metric ([`waiting`]).
//! * Writes go through an [`Appender`] ([`appender`]): samples are checked at `append`, written
//!   to the WAL ([`WalLog`]) at `commit` and only then become visible.
//! * After a block is cut, [`Head::truncate`] drops the chunks and series older than the block.

pub mod appender;
pub mod block_source;
pub mod chunk_store;
pub mod disk_chunks;
pub mod head_chunks;
pub mod index;
pub mod querier;
pub mod ref_table;
pub mod series;
pub mod sorted_cache;
pub mod sparse_cache;
pub mod waiting;
pub mod wal;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use appender::Appender;
pub use chunk_store::{ChunkStore, MemChunkStore};
pub use querier::HeadQuerier;

use crate::labels::{Label, Labels};
use crate::{Error, Result};
use index::{IntMap, MemPostings, Symbols};
use series::{MemSeries, MmappedChunk, SeriesData};

/// Reference of a series: stable for the life of the series in the head and in the WAL.
pub type SeriesRef = u64;

/// Default chunk range of the head: two hours in milliseconds.
pub const DEFAULT_CHUNK_RANGE: i64 = 2 * 3600 * 1000;

const STRIPES: usize = 1024;

/// Options of the head.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Width of a block's time range (ms); chunks never cross a multiple of it.
    pub chunk_range: i64,
    /// Out-of-order window (ms). Only 0 (out-of-order samples rejected) is supported now.
    pub ooo_window: i64,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            chunk_range: DEFAULT_CHUNK_RANGE,
            ooo_window: 0,
        }
    }
}

/// Where a committing appender writes its records before the samples become visible.
pub trait WalLog: Send + Sync {
    /// Writes a series record (when `series` is not empty) and then a samples record (when
    /// `samples` is not empty), durably enough that a crash after return keeps them.
    fn log(&self, series: &[(SeriesRef, Labels)], samples: &[(SeriesRef, i64, f64)]) -> Result<()>;
}

/// Counters of the head, for `/api/v1/status/tsdb` and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadStats {
    /// Number of series in the head.
    pub num_series: u64,
    /// Oldest sample's timestamp (`i64::MAX` when empty).
    pub min_time: i64,
    /// Newest sample's timestamp (`i64::MIN` when empty).
    pub max_time: i64,
    /// Number of chunks (full and open).
    pub num_chunks: u64,
    /// Number of interned label strings.
    pub num_symbols: u64,
}

/// Series by labels hash: one series per hash, rare collisions in a side map.
#[derive(Default)]
struct HashStripe {
    one: IntMap<u64, Arc<MemSeries>>,
    more: IntMap<u64, Vec<Arc<MemSeries>>>,
}

impl HashStripe {
    fn find(&self, head: &Head, hash: u64, ls: &Labels) -> Option<Arc<MemSeries>> {
        let s = self.one.get(&hash)?;
        if head.same_labels(s, ls) {
            return Some(s.clone());
        }
        self.more
            .get(&hash)?
            .iter()
            .find(|s| head.same_labels(s, ls))
            .cloned()
    }

    fn insert(&mut self, hash: u64, s: Arc<MemSeries>) {
        match self.one.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.more.entry(hash).or_default().push(s)
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(s);
            }
        }
    }

    fn remove(&mut self, hash: u64, s: &Arc<MemSeries>) {
        if self.one.get(&hash).is_some_and(|o| Arc::ptr_eq(o, s)) {
            self.one.remove(&hash);
            if let Some(v) = self.more.get_mut(&hash) {
                if let Some(next) = v.pop() {
                    self.one.insert(hash, next);
                }
                if v.is_empty() {
                    self.more.remove(&hash);
                }
            }
        } else if let Some(v) = self.more.get_mut(&hash) {
            v.retain(|o| !Arc::ptr_eq(o, s));
            if v.is_empty() {
                self.more.remove(&hash);
            }
        }
    }
}

pub(crate) struct HeadInner {
    opts: HeadOptions,
    syms: Symbols,
    postings: RwLock<MemPostings>,
    by_ref: ref_table::RefTable<MemSeries>,
    by_hash: Box<[RwLock<HashStripe>]>,
    next_ref: AtomicU64,
    num_series: AtomicU64,
    min_time: AtomicI64,
    max_time: AtomicI64,
    min_valid_time: AtomicI64,
    chunks: Arc<dyn ChunkStore>,
    closed: AtomicBool,
    wal: RwLock<Option<Arc<dyn WalLog>>>,
    /// Full chunks read from disk before their series is known (WAL replay).
    pending_mmapped: Mutex<HashMap<u64, Vec<MmappedChunk>>>,
    /// Recent large selections sorted by labels (see [`sorted_cache`]).
    sorted: sorted_cache::SortedSelections,
    /// Cut chunks not yet in `chunks` (see [`waiting`]).
    waiting: waiting::WaitingChunks,
}

/// The head block. Cloning gives another handle to the same head.
#[derive(Clone)]
pub struct Head {
    pub(crate) inner: Arc<HeadInner>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Head {
    /// An empty head keeping its full chunks in `chunks`, without a WAL.
    pub fn new(opts: HeadOptions, chunks: Arc<dyn ChunkStore>) -> Result<Self> {
        if opts.chunk_range <= 0 {
            return Err(Error::InvalidArgument(format!(
                "head chunk range must be positive, got {}",
                opts.chunk_range
            )));
        }
        if opts.ooo_window != 0 {
            return Err(Error::InvalidArgument(
                "out-of-order window is not supported yet; use 0".into(),
            ));
        }
        Ok(Head {
            inner: Arc::new(HeadInner {
                opts,
                syms: Symbols::default(),
                postings: RwLock::new(MemPostings::default()),
                by_ref: ref_table::RefTable::default(),
                by_hash: (0..STRIPES)
                    .map(|_| RwLock::new(HashStripe::default()))
                    .collect(),
                next_ref: AtomicU64::new(1),
                num_series: AtomicU64::new(0),
                min_time: AtomicI64::new(i64::MAX),
                max_time: AtomicI64::new(i64::MIN),
                min_valid_time: AtomicI64::new(i64::MIN),
                chunks,
                closed: AtomicBool::new(false),
                wal: RwLock::new(None),
                pending_mmapped: Mutex::new(HashMap::new()),
                sorted: sorted_cache::SortedSelections::default(),
                waiting: waiting::WaitingChunks::default(),
            }),
        })
    }

    /// An empty head with in-memory chunk storage and default options.
    pub fn in_memory() -> Self {
        // Default options are valid, so this cannot fail.
        match Head::new(HeadOptions::default(), Arc::new(MemChunkStore::default())) {
            Ok(h) => h,
            Err(e) => unreachable!("default head options rejected: {e}"),
        }
    }

    /// Refuses further commits ([`Error::Closed`]) and detaches the WAL.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.set_wal(None);
    }

    /// Whether [`Head::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Sets the WAL that committing appenders write to.
    pub fn set_wal(&self, wal: Option<Arc<dyn WalLog>>) {
        *self.inner.wal.write() = wal;
    }

    /// The head's options.
    pub fn options(&self) -> &HeadOptions {
        &self.inner.opts
    }

    /// A new appender.
    pub fn appender(&self) -> Appender {
        Appender::new(self.clone())
    }

    /// Oldest sample's timestamp (`i64::MAX` when empty).
    pub fn min_time(&self) -> i64 {
        self.inner.min_time.load(Ordering::Acquire)
    }

    /// Newest sample's timestamp (`i64::MIN` when empty).
    pub fn max_time(&self) -> i64 {
        self.inner.max_time.load(Ordering::Acquire)
    }

    /// Samples older than this are rejected (the end of the last block cut from the head).
    pub fn min_valid_time(&self) -> i64 {
        self.inner.min_valid_time.load(Ordering::Acquire)
    }

    /// Sets the minimum valid time (after loading blocks: the newest block's end).
    pub fn set_min_valid_time(&self, t: i64) {
        self.inner.min_valid_time.fetch_max(t, Ordering::AcqRel);
    }

    /// The oldest timestamp an appender accepts now: the minimum valid time, and not more than
    /// half a chunk range behind the newest sample.
    pub fn appendable_min_valid_time(&self) -> i64 {
        let half = self
            .inner
            .max_time
            .load(Ordering::Acquire)
            .saturating_sub(self.inner.opts.chunk_range / 2);
        self.min_valid_time().max(half)
    }

    /// Number of series.
    pub fn num_series(&self) -> u64 {
        self.inner.num_series.load(Ordering::Relaxed)
    }

    /// Counters of the head.
    pub fn stats(&self) -> HeadStats {
        let mut num_chunks = 0u64;
        self.inner.by_ref.for_each(|s| {
            let d = s.data.lock();
            num_chunks += (d.mmapped.len() + d.waiting.len()) as u64
                + d.head
                    .as_ref()
                    .map_or(0, |h| (h.app.num_samples() > 0) as u64);
        });
        HeadStats {
            num_series: self.num_series(),
            min_time: self.min_time(),
            max_time: self.max_time(),
            num_chunks,
            num_symbols: self.inner.syms.len() as u64,
        }
    }

    /// Cardinality statistics (top `limit` per list; 0 for all), as `/api/v1/status/tsdb`
    /// reports them.
    pub fn postings_stats(&self, limit: usize) -> index::PostingsStats {
        self.inner.postings.read().stats(&self.inner.syms, limit)
    }

    /// Updates the head's time range with a committed sample range.
    pub(crate) fn update_time_range(&self, mint: i64, maxt: i64) {
        if mint <= maxt {
            self.inner.min_time.fetch_min(mint, Ordering::AcqRel);
            self.inner.max_time.fetch_max(maxt, Ordering::AcqRel);
        }
    }

    fn stripe(r: u64) -> usize {
        (r as usize) & (STRIPES - 1)
    }

    /// The series with reference `r`.
    pub(crate) fn series(&self, r: u64) -> Option<Arc<MemSeries>> {
        self.inner.by_ref.get(r)
    }

    /// `f` of series `r`, without taking a reference to it.
    pub(crate) fn with_series<R>(&self, r: u64, f: impl FnOnce(&MemSeries) -> R) -> Option<R> {
        self.inner.by_ref.with(r, f)
    }

    /// Appends `(t, v)` to series `s` as [`series::SeriesData::append`] does. A chunk it cuts
    /// waits in the series; when a batch of them is due, this thread writes it ([`waiting`]).
    pub(crate) fn append_sample(&self, s: &Arc<MemSeries>, t: i64, v: f64) -> bool {
        let mut d = s.data.lock();
        let before = d.waiting.len();
        let ok = d.append(t, v, self.inner.opts.chunk_range);
        let cut = d
            .waiting
            .last()
            .filter(|_| d.waiting.len() > before)
            .map(|w| w.bytes.len());
        drop(d);
        if let Some(bytes) = cut {
            if self.inner.waiting.add(s, before == 0, bytes) {
                self.inner
                    .waiting
                    .write_batch(&*self.inner.chunks, self.metric_name_symbol());
            }
        }
        ok
    }

    /// Writes every chunk waiting in a series to the chunk store (before closing it).
    pub fn write_waiting_chunks(&self) {
        self.inner
            .waiting
            .write_all(&*self.inner.chunks, self.metric_name_symbol());
    }

    /// The symbol of `__name__`, if any series has it.
    fn metric_name_symbol(&self) -> Option<u32> {
        self.inner.syms.lookup(crate::labels::METRIC_NAME)
    }

    /// The series `series_ref` (when still in the head) or the one with labels `ls` (created
    /// if new), pinned for an appender: its `pending` count is raised, so [`Head::truncate`]
    /// keeps it until the caller lowers the count again.
    ///
    /// Truncation removes a series only after swapping its `pending` count from 0 to
    /// [`series::REMOVED`] in one atomic step; so a pin that raised the count first keeps the
    /// series, and a pin that finds the `REMOVED` bit in the count it raised knows the series
    /// is gone: it is unpinned and looked up (or created) again. No lock is taken to pin.
    #[cfg(test)]
    pub(crate) fn pin_series(
        &self,
        series_ref: Option<SeriesRef>,
        ls: &Labels,
    ) -> Result<Arc<MemSeries>> {
        self.pin_series_hashed(series_ref, ls, None)
    }

    /// As [`Head::pin_series`], given `ls.hash()` when the caller has it already.
    pub(crate) fn pin_series_hashed(
        &self,
        series_ref: Option<SeriesRef>,
        ls: &Labels,
        hash: Option<u64>,
    ) -> Result<Arc<MemSeries>> {
        let mut by_ref = series_ref.and_then(|r| self.series(r));
        loop {
            let s = match by_ref.take() {
                Some(s) => s,
                None => self.get_or_create_hashed(ls, hash, None)?.0,
            };
            if s.pending.fetch_add(1, Ordering::AcqRel) & series::REMOVED == 0 {
                return Ok(s);
            }
            s.pending.fetch_sub(1, Ordering::AcqRel);
            // Truncation is still unlinking it from the label index; let it finish.
            std::thread::yield_now();
        }
    }

    /// The labels of a series.
    pub(crate) fn labels_of(&self, s: &MemSeries) -> Labels {
        let r = self.inner.syms.reader();
        Labels::from_sorted(
            s.lset
                .chunks_exact(2)
                .map(|p| Label::new(r.get(p[0]), r.get(p[1])))
                .collect(),
        )
    }

    pub(crate) fn same_labels(&self, s: &MemSeries, ls: &Labels) -> bool {
        if s.lset.len() != ls.len() * 2 {
            return false;
        }
        let r = self.inner.syms.reader();
        s.lset
            .chunks_exact(2)
            .zip(ls.iter())
            .all(|(p, l)| r.get(p[0]) == l.name && r.get(p[1]) == l.value)
    }

    fn find_by_labels(&self, hash: u64, ls: &Labels) -> Option<Arc<MemSeries>> {
        self.inner.by_hash[Self::stripe(hash)]
            .read()
            .find(self, hash, ls)
    }

    /// The reference of the series with labels `ls`, if it exists.
    pub fn series_ref(&self, ls: &Labels) -> Option<SeriesRef> {
        self.find_by_labels(ls.hash(), ls).map(|s| s.sref)
    }

    /// The series with labels `ls`, created (with reference `want_ref` if given, else the next
    /// free one) if it does not exist. Returns the series and whether it was created.
    pub(crate) fn get_or_create(
        &self,
        ls: &Labels,
        want_ref: Option<u64>,
    ) -> Result<(Arc<MemSeries>, bool)> {
        self.get_or_create_hashed(ls, None, want_ref)
    }

    /// As [`Head::get_or_create`], given `ls.hash()` when the caller has it already.
    fn get_or_create_hashed(
        &self,
        ls: &Labels,
        hash: Option<u64>,
        want_ref: Option<u64>,
    ) -> Result<(Arc<MemSeries>, bool)> {
        let hash = hash.unwrap_or_else(|| ls.hash());
        if let Some(s) = self.find_by_labels(hash, ls) {
            return Ok((s, false));
        }
        ls.validate()?;
        let mut stripe = self.inner.by_hash[Self::stripe(hash)].write();
        if let Some(s) = stripe.find(self, hash, ls) {
            return Ok((s, false));
        }
        let sref = match want_ref {
            Some(r) => {
                self.inner.next_ref.fetch_max(r + 1, Ordering::AcqRel);
                r
            }
            None => self.inner.next_ref.fetch_add(1, Ordering::AcqRel),
        };
        let id = u32::try_from(sref).map_err(|_| {
            Error::Other(format!(
                "series reference {sref} does not fit the head's 32-bit postings"
            ))
        })?;
        let lset: Box<[u32]> = ls
            .iter()
            .flat_map(|l| {
                [
                    self.inner.syms.intern(&l.name),
                    self.inner.syms.intern(&l.value),
                ]
            })
            .collect();
        let mut data = SeriesData::default();
        if let Some(mm) = self.inner.pending_mmapped.lock().remove(&sref) {
            data.mmapped = mm;
        }
        let s = Arc::new(MemSeries {
            sref,
            lset,
            logged: AtomicBool::new(false),
            pending: AtomicU32::new(0),
            data: Mutex::new(data),
        });
        if !self.inner.by_ref.insert_new(sref, s.clone()) {
            return Err(Error::Other(format!(
                "series reference {sref} already used by other labels"
            )));
        }
        stripe.insert(hash, s.clone());
        drop(stripe);
        self.inner.postings.write().add(id, &s.lset);
        self.inner.num_series.fetch_add(1, Ordering::Relaxed);
        Ok((s, true))
    }

    pub(crate) fn wal(&self) -> Option<Arc<dyn WalLog>> {
        self.inner.wal.read().clone()
    }

    pub(crate) fn chunk_store(&self) -> &dyn ChunkStore {
        &*self.inner.chunks
    }

    pub(crate) fn symbols(&self) -> &Symbols {
        &self.inner.syms
    }

    pub(crate) fn postings(&self) -> &RwLock<MemPostings> {
        &self.inner.postings
    }

    pub(crate) fn sorted_selections(&self) -> &sorted_cache::SortedSelections {
        &self.inner.sorted
    }

    // ---- replay -------------------------------------------------------------------------

    /// Replays a WAL series record: creates the series with reference `r`, or, when a series
    /// with these labels exists under another reference, returns that one (the caller maps
    /// samples of `r` to it).
    pub fn replay_series(&self, r: SeriesRef, ls: &Labels) -> Result<SeriesRef> {
        let (s, _) = self.get_or_create(ls, Some(r))?;
        s.logged.store(true, Ordering::Release);
        Ok(s.sref)
    }

    /// Replays a WAL sample: appends it without the WAL or bound checks. Returns `None` when
    /// the series is unknown, `Some(false)` when the sample is older than the minimum valid
    /// time or not newer than the series' last one.
    pub fn replay_sample_checked(&self, r: SeriesRef, t: i64, v: f64) -> Result<Option<bool>> {
        let Some(s) = self.series(r) else {
            return Ok(None);
        };
        if t < self.min_valid_time() {
            return Ok(Some(false));
        }
        let ok = self.append_sample(&s, t, v);
        if ok {
            self.update_time_range(t, t);
        }
        Ok(Some(ok))
    }

    /// As [`Head::replay_sample_checked`], `false` for unknown series.
    pub fn replay_sample(&self, r: SeriesRef, t: i64, v: f64) -> Result<bool> {
        Ok(self.replay_sample_checked(r, t, v)?.unwrap_or(false))
    }

    // ---- deletion -----------------------------------------------------------------------

    /// Deletes the samples of series `r` in `[mint, maxt]` by rewriting its chunks (full chunks
    /// are written anew to the chunk store; the old ones go with the next truncation). Returns
    /// the number of samples deleted; an unknown series deletes nothing.
    pub fn delete_series_range(&self, r: SeriesRef, mint: i64, maxt: i64) -> Result<usize> {
        let Some(s) = self.series(r) else {
            return Ok(0);
        };
        let mut d = s.data.lock();
        let overlaps = d
            .mmapped
            .iter()
            .any(|c| c.max_time >= mint && c.min_time <= maxt)
            || d.waiting
                .iter()
                .any(|c| c.max_time >= mint && c.min_time <= maxt)
            || d.head.as_ref().is_some_and(|h| {
                h.app.num_samples() > 0 && h.max_time >= mint && h.min_time <= maxt
            });
        if !overlaps {
            return Ok(0);
        }
        let mut samples: Vec<(i64, f64)> = Vec::new();
        let mut decode = |bytes: &[u8]| -> Result<()> {
            let mut it = crate::chunkenc::XorIterator::new(bytes);
            while it.next() != crate::chunkenc::ValueType::None {
                samples.push(it.at());
            }
            match it.err() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        };
        for c in &d.mmapped {
            decode(&self.inner.chunks.read(c.chunk_ref)?)?;
        }
        for w in &d.waiting {
            decode(&w.bytes)?;
        }
        if let Some(h) = d.head.as_ref().filter(|h| h.app.num_samples() > 0) {
            decode(h.app.bytes())?;
        }
        // Chunks read back from disk may overlap after an earlier rewrite: sort, keep the first
        // of equal timestamps.
        samples.sort_by_key(|x| x.0);
        samples.dedup_by_key(|x| x.0);
        let before = samples.len();
        samples.retain(|&(t, _)| t < mint || t > maxt);
        let deleted = before - samples.len();
        let mut nd = SeriesData::default();
        for (t, v) in samples {
            nd.append(t, v, self.inner.opts.chunk_range);
        }
        nd.store_waiting(s.sref, &*self.inner.chunks)?;
        *d = nd;
        Ok(deleted)
    }

    /// References of the series matching `matchers`.
    pub fn series_refs_matching(&self, matchers: &[crate::labels::Matcher]) -> Vec<SeriesRef> {
        let p = self.inner.postings.read();
        index::postings_for_matchers(&p, &self.inner.syms, matchers, None)
            .iter()
            .map(u64::from)
            .collect()
    }

    /// Whether series `r` is in the head.
    pub fn series_exists(&self, r: SeriesRef) -> bool {
        self.series(r).is_some()
    }

    /// Deletes the samples in `[mint, maxt]` of every series matching `matchers`; returns the
    /// references of the series that had samples there.
    pub fn delete(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[crate::labels::Matcher],
    ) -> Result<Vec<SeriesRef>> {
        let refs: Vec<u64> = {
            let p = self.inner.postings.read();
            index::postings_for_matchers(&p, &self.inner.syms, matchers, None)
                .iter()
                .map(u64::from)
                .collect()
        };
        let mut out = Vec::new();
        for r in refs {
            if self.delete_series_range(r, mint, maxt)? > 0 {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Attaches a full chunk read back from the chunk store (from `chunks_head/` at startup) to
    /// series `r`; if the series is not created yet it is attached when it is.
    pub fn attach_mmapped_chunk(&self, r: SeriesRef, chunk_ref: u64, min_time: i64, max_time: i64) {
        // Chunks already persisted in a block stay in the files until a whole file is old.
        if max_time < self.min_valid_time() {
            return;
        }
        let c = MmappedChunk {
            chunk_ref,
            min_time,
            max_time,
        };
        if let Some(s) = self.series(r) {
            let mut d = s.data.lock();
            let pos = d.mmapped.partition_point(|x| x.min_time < min_time);
            d.mmapped.insert(pos, c);
        } else {
            let mut p = self.inner.pending_mmapped.lock();
            let v = p.entry(r).or_default();
            let pos = v.partition_point(|x| x.min_time < min_time);
            v.insert(pos, c);
        }
        self.update_time_range(min_time, max_time);
    }

    /// Drops full chunks attached for series that never appeared (after replay).
    pub fn drop_unclaimed_chunks(&self) -> usize {
        let mut p = self.inner.pending_mmapped.lock();
        let n = p.values().map(Vec::len).sum();
        p.clear();
        n
    }

    // ---- truncation ---------------------------------------------------------------------

    /// Drops every chunk that ends before `mint` and every series left without samples (and
    /// not in use by an appender); samples before `mint` are rejected from now on. Returns the
    /// number of series removed.
    pub fn truncate(&self, mint: i64) -> Result<usize> {
        self.set_min_valid_time(mint);
        let mut removed: Vec<Arc<MemSeries>> = Vec::new();
        let mut new_min = i64::MAX;
        self.inner.by_ref.retain(|s| {
            let mut d = s.data.lock();
            let empty = d.truncate_before(mint);
            if empty
                && s.pending
                    .compare_exchange(0, series::REMOVED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                removed.push(s.clone());
                false
            } else {
                if let Some(t) = d.min_time() {
                    new_min = new_min.min(t);
                }
                true
            }
        });
        {
            let mut p = self.inner.postings.write();
            for s in &removed {
                p.remove(s.sref as u32, &s.lset);
            }
        }
        if !removed.is_empty() {
            self.inner.sorted.clear();
        }
        for s in &removed {
            let ls = self.labels_of(s);
            let hash = ls.hash();
            self.inner.by_hash[Self::stripe(hash)]
                .write()
                .remove(hash, s);
        }
        self.inner
            .num_series
            .fetch_sub(removed.len() as u64, Ordering::Relaxed);
        self.inner.min_time.store(
            if new_min == i64::MAX {
                mint.max(self.min_time())
            } else {
                new_min.max(mint)
            },
            Ordering::Release,
        );
        self.inner.chunks.truncate(mint)?;
        Ok(removed.len())
    }

    /// All series refs currently in the head.
    pub fn series_refs(&self) -> Vec<SeriesRef> {
        self.inner
            .postings
            .read()
            .all()
            .iter()
            .map(u64::from)
            .collect()
    }

    /// Writes every open chunk that holds samples to the chunk store (before a clean shutdown),
    /// so a restart reads them back instead of replaying their samples.
    pub fn flush_open_chunks(&self) -> Result<()> {
        for s in self.inner.by_ref.values() {
            s.data.lock().flush(s.sref, &*self.inner.chunks)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_created_once_and_found_by_labels_and_ref() {
        let h = Head::in_memory();
        let a = Labels::from_pairs(&[("__name__", "up"), ("job", "x")]);
        let (s1, c1) = h.get_or_create(&a, None).unwrap();
        let (s2, c2) = h.get_or_create(&a, None).unwrap();
        assert!(c1 && !c2);
        assert_eq!(s1.sref, s2.sref);
        assert_eq!(h.series_ref(&a), Some(s1.sref));
        assert_eq!(h.labels_of(&h.series(s1.sref).unwrap()), a);
        assert_eq!(h.num_series(), 1);
        assert!(h.get_or_create(&Labels::empty(), None).is_err());
    }

    #[test]
    fn pinned_series_survive_truncation_and_removed_ones_are_not_pinned() {
        let h = Head::in_memory();
        let a = Labels::from_pairs(&[("a", "1")]);
        let s = h.pin_series(None, &a).unwrap();
        // Empty but pinned: kept.
        assert_eq!(h.truncate(0).unwrap(), 0);
        assert_eq!(s.pending.load(Ordering::Acquire), 1);
        s.pending.fetch_sub(1, Ordering::AcqRel);
        // Unpinned: removed, and marked so.
        assert_eq!(h.truncate(0).unwrap(), 1);
        assert_eq!(s.pending.load(Ordering::Acquire), series::REMOVED);
        assert!(!h.series_exists(s.sref));
        // Pinning by the stale reference gets a new live series with the same labels.
        let s2 = h.pin_series(Some(s.sref), &a).unwrap();
        assert_ne!(s2.sref, s.sref);
        assert_eq!(s2.pending.load(Ordering::Acquire), 1);
        assert_eq!(h.series_ref(&a), Some(s2.sref));
    }

    #[test]
    fn replay_maps_duplicate_labels_to_existing_ref() {
        let h = Head::in_memory();
        let a = Labels::from_pairs(&[("a", "1")]);
        assert_eq!(h.replay_series(7, &a).unwrap(), 7);
        assert_eq!(h.replay_series(9, &a).unwrap(), 7);
        assert!(h.replay_sample(7, 10, 1.0).unwrap());
        assert!(!h.replay_sample(8, 10, 1.0).unwrap());
        // new series continue after the highest replayed ref
        let (s, _) = h
            .get_or_create(&Labels::from_pairs(&[("a", "2")]), None)
            .unwrap();
        assert_eq!(s.sref, 8);
    }
}
