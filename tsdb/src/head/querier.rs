//! Reading the head: [`HeadQuerier`] implements [`Querier`] and [`ChunkQuerier`].
//!
//! Selection intersects and subtracts postings bitmaps (see [`super::index::postings_for_matchers`]),
//! then snapshots each series' chunks overlapping `[mint, maxt]` under the series lock:
//! references of full chunks and a copy of the open chunk's bytes, so later appends do not
//! disturb a running query. The full chunks of a window of the selection (`HEAD_SELECT_WINDOW`
//! series, prepared when the reader gets to it) are then copied out of the chunk store in its
//! order, region by region: a region read densely through the store's map and its pages given
//! back after it, a sparsely read one without mapping it (see `read_in_store_order`; the
//! disk store keeps chunks read that way in a [`super::sparse_cache::SparseChunkCache`]). A
//! selection with a series limit reads series one by one. Series without samples in the range
//! are skipped.

use std::sync::Arc;

use roaring::RoaringBitmap;
use smallvec::SmallVec;

use super::index::{postings_for_matchers, SymReader};
use super::series::{HeadChunk, MemSeries, MmappedChunk};
use super::Head;
use crate::chunkenc::xor::TailedChunk;
use crate::chunkenc::{Encoding, ValueType, XorCursor, XorIterator};
use crate::labels::{Labels, Matcher};
use crate::parallel::{run_parallel, ParallelPart};
use crate::querier::{
    select_threads, windowed, ChunkData, ChunkMeta, ChunkQuerier, ChunkSeries, ChunkSeriesSet,
    LabelPairs, Querier, Queryable, SampleIter, SelectHints, Series, SeriesSet,
};
use crate::Result;

/// Series a large head selection prepares at once: four times the blocks' window
/// ([`crate::querier::SELECT_WINDOW`]). The series of a window have their full chunks all
/// over the chunk files, so each window maps (and gives back) every region of the files
/// again; the blocks' window made req_rate_by_job [r] (12.7k series) do that four times. On
/// the 100k bench data (server restarted, alternated runs): kernel time 56 -> 35 ms and
/// latency 187 -> 173 ms for req_rate_by_job [r], p90_latency_by_job [r] 10-18% faster,
/// peak RSS over all dashboard queries 202-210 -> 222-227 MiB.
const HEAD_SELECT_WINDOW: usize = 4 * crate::querier::SELECT_WINDOW;

/// A querier over the head for `[mint, maxt]`.
pub struct HeadQuerier {
    head: Head,
    mint: i64,
    maxt: i64,
}

impl Queryable for Head {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>> {
        Ok(Box::new(self.head_querier(mint, maxt)))
    }
}

impl Head {
    /// A querier over `[mint, maxt]`.
    pub fn head_querier(&self, mint: i64, maxt: i64) -> HeadQuerier {
        HeadQuerier {
            head: self.clone(),
            mint,
            maxt,
        }
    }

    /// A chunk querier over `[mint, maxt]`.
    pub fn chunk_querier(&self, mint: i64, maxt: i64) -> Box<dyn ChunkQuerier> {
        Box::new(self.head_querier(mint, maxt))
    }
}

/// What one series' lock gives for `[mint, maxt]`: its stored full chunks overlapping the
/// range (references into the chunk store, not read yet) and copies of its waiting full
/// chunks and its open chunk that overlap it.
///
/// With `last_only` ([`SelectHints::last_only`]), when the open chunk starts by the range's
/// end, the series' newest sample up to that end is in it, and that sample is all that is
/// given ([`Locked::newest`]; nothing when it is before the range). It is decoded here,
/// from the chunk's newest seek mark before it, when the chunk goes on past the range.
fn lock_snapshot(s: &MemSeries, mint: i64, maxt: i64, last_only: bool) -> Locked {
    let d = s.data.lock();
    if last_only {
        if let Some(h) = d
            .head
            .as_ref()
            .filter(|h| h.app.num_samples() > 0 && h.min_time <= maxt)
        {
            let newest = newest_until(h, maxt).filter(|&(t, _)| t >= mint);
            drop(d);
            return Locked {
                newest,
                ..Locked::default()
            };
        }
    }
    let full: Vec<MmappedChunk> = d
        .mmapped
        .iter()
        .filter(|c| c.max_time >= mint && c.min_time <= maxt)
        .copied()
        .collect();
    let copy = |min_time, max_time, bytes: &[u8]| ChunkMeta {
        min_time,
        max_time,
        encoding: Encoding::Xor,
        data: ChunkData::padded_copy(bytes),
    };
    let waiting = d
        .waiting
        .iter()
        .filter(|w| w.max_time >= mint && w.min_time <= maxt)
        .map(|w| copy(w.min_time, w.max_time, &w.bytes))
        .collect();
    let open_chunk = d
        .head
        .as_ref()
        .filter(|h| h.app.num_samples() > 0 && h.max_time >= mint && h.min_time <= maxt);
    Locked {
        full,
        waiting,
        open: open_chunk.map(|h| copy(h.min_time, h.max_time, h.app.bytes())),
        open_mark: open_chunk.and_then(|h| h.mark_before(mint)),
        newest: None,
    }
}

/// The newest sample of the open chunk `h` at or before `t` (its first sample being at or
/// before `t`), decoded from the newest seek mark before it: the last sample itself when the
/// chunk ends by `t`.
fn newest_until(h: &HeadChunk, t: i64) -> Option<(i64, f64)> {
    if h.max_time <= t {
        return Some((h.app.last_t(), h.app.last_v()));
    }
    let bytes = h.app.bytes();
    let (mut it, mut newest) = match h.mark_before(t.saturating_add(1)) {
        Some(m) => {
            let it = XorIterator::resume(bytes, &m);
            let at = it.at();
            (it, Some(at))
        }
        None => (XorIterator::new(bytes), None),
    };
    while it.next() == ValueType::Float && it.at().0 <= t {
        newest = Some(it.at());
    }
    newest
}

/// A series' chunks as [`lock_snapshot`] took them, in time order: `full`, then `waiting`,
/// then `open`; or, for a last-only read, its newest sample alone.
#[derive(Default)]
struct Locked {
    full: Vec<MmappedChunk>,
    waiting: Vec<ChunkMeta>,
    open: Option<ChunkMeta>,
    /// Where decoding `open` may start for the range's first sample: its newest seek mark
    /// before the range.
    open_mark: Option<XorCursor>,
    /// A last-only read's answer, taken from the open chunk (the other fields are then
    /// empty): the series' newest sample in the range.
    newest: Option<(i64, f64)>,
}

impl Locked {
    fn is_empty(&self) -> bool {
        self.full.is_empty()
            && self.waiting.is_empty()
            && self.open.is_none()
            && self.newest.is_none()
    }

    /// The chunks in time order, the full ones' bytes being the next `full.len()` items of
    /// `data` (all of them taken, even after a failed read), or the first failed read.
    fn into_chunks(self, data: impl Iterator<Item = ChunkBytes>) -> Result<SeriesChunks> {
        let mut out = SeriesChunks::with_capacity(self.full.len() + self.waiting.len() + 1);
        let mut failed = None;
        for (c, d) in self.full.iter().zip(data) {
            match d {
                Ok(d) => out.push(c.with_data(d)),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        out.extend(self.waiting);
        out.extend(self.open);
        Ok(out)
    }
}

/// Chunks of one series overlapping a time range, snapshotted from the head.
fn snapshot_chunks(head: &Head, s: &MemSeries, mint: i64, maxt: i64) -> Result<SeriesChunks> {
    let locked = lock_snapshot(s, mint, maxt, false);
    let data = read_unmapped(head, &locked);
    locked.into_chunks(data)
}

/// The bytes of the full chunks of `locked`, read without mapping the chunk store
/// ([`crate::head::ChunkStore::read_unmapped`]): series taken one by one have their chunks
/// far apart in the files, and a mapped read maps the whole page-cache folio around it (up to
/// the 1 MiB the file was written in).
fn read_unmapped(head: &Head, locked: &Locked) -> impl Iterator<Item = ChunkBytes> {
    let store = head.chunk_store();
    let data: Vec<ChunkBytes> = locked
        .full
        .iter()
        .map(|c| store.read_unmapped(c.chunk_ref).map(ChunkData::from))
        .collect();
    data.into_iter()
}

/// Whether chunks that overlap `[mint, maxt]` hold a sample inside it. A chunk's first and
/// last sample times are exact, so only a chunk reaching past both ends is decoded.
pub fn has_samples_in(chunks: &[ChunkMeta], mint: i64, maxt: i64) -> bool {
    samples_in(chunks, mint, maxt, None).is_some()
}

/// Where the samples of time-ordered chunks overlapping `[mint, maxt]` start: `None` when
/// there are none in the range, else `Some(resume)` where `resume` is, when the range lies
/// strictly inside one chunk (which then had to be decoded up to it), that chunk's index and
/// the decoder's state at the first sample in the range, so reading can go on from there.
/// `last_from` is where decoding the last chunk may start (a seek mark of the open chunk
/// before `mint`).
fn samples_in(
    chunks: &[ChunkMeta],
    mint: i64,
    maxt: i64,
    last_from: Option<XorCursor>,
) -> Option<Option<(usize, XorCursor)>> {
    let inside = |t: i64| t >= mint && t <= maxt;
    if chunks
        .iter()
        .any(|c| inside(c.min_time) || inside(c.max_time))
    {
        return Some(None);
    }
    // Non-overlapping chunks, none with an edge in the range: at most one spans it.
    let (idx, c) = chunks
        .iter()
        .enumerate()
        .find(|(_, c)| c.min_time < mint && c.max_time > maxt)?;
    if c.encoding != Encoding::Xor {
        // Let the iterator report the encoding.
        return Some(None);
    }
    let mut it = match last_from.filter(|_| idx + 1 == chunks.len()) {
        Some(m) => XorIterator::resume(&c.data, &m),
        None => XorIterator::new(&c.data),
    };
    match it.seek(mint) {
        ValueType::None if it.err().is_some() => Some(None),
        ValueType::None => None,
        _ if it.at_t() > maxt => None,
        _ => Some(it.cursor().map(|cur| (idx, cur))),
    }
}

impl HeadQuerier {
    fn overlaps_head(&self) -> bool {
        let (hmin, hmax) = (self.head.min_time(), self.head.max_time());
        hmin <= hmax && self.mint <= hmax && self.maxt >= hmin
    }

    fn selected(&self, matchers: &[Matcher]) -> RoaringBitmap {
        let p = self.head.postings().read();
        let labels_match = |id: u32, f: &dyn Fn(&[u32]) -> bool| {
            self.head.with_series(u64::from(id), |s| f(&s.lset)) == Some(true)
        };
        postings_for_matchers(&p, self.head.symbols(), matchers, Some(&labels_match))
    }

    /// Matching series, sorted by labels when asked. Their labels are built later, only for
    /// the series that have samples in the range. A large selection sorted before for the
    /// same series comes from the head's [`super::sorted_cache::SortedSelections`].
    fn matching(&self, sorted: bool, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        if !self.overlaps_head() {
            return Vec::new();
        }
        let bm = self.selected(matchers);
        let cache = self.head.sorted_selections();
        let cached = sorted && bm.len() >= super::sorted_cache::MIN_SERIES;
        if cached {
            if let Some(v) = cache.get(&bm) {
                return v.to_vec();
            }
        }
        let mut v: Vec<Arc<MemSeries>> = bm
            .iter()
            .filter_map(|id| self.head.series(u64::from(id)))
            .collect();
        if sorted {
            sort_by_labels(&self.head.symbols().reader(), &mut v);
        }
        if cached {
            cache.insert(bm, Arc::from(&v[..]));
        }
        v
    }
}

/// Orders label pairs given as symbol ids (name, value, name, value…) the way [`Labels`]
/// orders the same labels: pair by pair, by name then value, a prefix first.
fn cmp_lsets(r: &SymReader<'_>, a: &[u32], b: &[u32]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return r.get(*x).cmp(r.get(*y));
        }
    }
    a.len().cmp(&b.len())
}

/// Sorts series by their labels, as `Labels`' order would, without building the labels:
/// each distinct symbol of the series is ranked once by its string, then the series are
/// sorted by their sequences of ranks (comparing flattened `name, value` pairs of ranks is
/// the same as comparing the label pairs). Series references follow creation order, often
/// the labels' order already: that is checked first.
fn sort_by_labels(r: &SymReader<'_>, v: &mut Vec<Arc<MemSeries>>) {
    if v.windows(2)
        .all(|w| cmp_lsets(r, &w[0].lset, &w[1].lset) != std::cmp::Ordering::Greater)
    {
        return;
    }
    // Distinct symbols, through a bitset over the ids in use.
    let max_id = v
        .iter()
        .flat_map(|s| s.lset.iter().copied())
        .max()
        .unwrap_or(0) as usize;
    let mut seen = vec![0u64; max_id / 64 + 1];
    let mut total = 0usize;
    for s in v.iter() {
        total += s.lset.len();
        for &id in s.lset.iter() {
            seen[id as usize / 64] |= 1 << (id % 64);
        }
    }
    let mut distinct: Vec<u32> = Vec::new();
    for (w, &bits) in seen.iter().enumerate() {
        let mut b = bits;
        while b != 0 {
            distinct.push((w * 64) as u32 + b.trailing_zeros());
            b &= b - 1;
        }
    }
    drop(seen);
    distinct.sort_unstable_by(|a, b| r.get(*a).cmp(r.get(*b)));
    let mut rank = vec![0u32; max_id + 1];
    for (i, &id) in distinct.iter().enumerate() {
        rank[id as usize] = i as u32;
    }
    // Rank sequences, flattened: series i owns keys[offs[i]..offs[i + 1]].
    let mut keys: Vec<u32> = Vec::with_capacity(total);
    let mut offs: Vec<u32> = Vec::with_capacity(v.len() + 1);
    offs.push(0);
    for s in v.iter() {
        keys.extend(s.lset.iter().map(|&id| rank[id as usize]));
        offs.push(keys.len() as u32);
    }
    let key = |i: u32| &keys[offs[i as usize] as usize..offs[i as usize + 1] as usize];
    let mut order: Vec<u32> = (0..v.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| key(a).cmp(key(b)));
    let mut taken: Vec<Option<Arc<MemSeries>>> = v.drain(..).map(Some).collect();
    v.extend(order.iter().filter_map(|&i| taken[i as usize].take()));
}

/// One selected series, or the error that ends a selection.
type Item = Result<Arc<dyn Series>>;

/// The series `s` as selected over `[mint, maxt]`: its chunks snapshotted, `None` when it
/// has no sample in the range.
fn select_one(head: &Head, s: &MemSeries, mint: i64, maxt: i64, last_only: bool) -> Option<Item> {
    let locked = lock_snapshot(s, mint, maxt, last_only);
    let data = read_unmapped(head, &locked);
    series_of(head, s, locked, data, mint, maxt)
}

/// The selected series `s` made of what its lock gave (`locked`, the bytes of its full
/// chunks being the next items of `data`), `None` when that holds no sample in the range.
fn series_of(
    head: &Head,
    s: &MemSeries,
    locked: Locked,
    data: impl Iterator<Item = ChunkBytes>,
    mint: i64,
    maxt: i64,
) -> Option<Item> {
    if let Some(sample) = locked.newest {
        return Some(Ok(Arc::new(NewestSample {
            labels: SeriesLabels::of_head(head, s),
            sample: [sample],
        })));
    }
    let mark = locked.open_mark;
    let chunks = match locked.into_chunks(data) {
        Ok(chunks) => chunks,
        Err(e) => return Some(Err(e)),
    };
    let resume = samples_in(&chunks, mint, maxt, mark)?;
    Some(Ok(Arc::new(ChunkedSeries {
        labels: SeriesLabels::of_head(head, s),
        chunks,
        mint,
        maxt,
        resume,
    })))
}

/// A series of a parallel selection between its lock snapshot and the reading of its full
/// chunks.
struct Pending {
    series: Arc<MemSeries>,
    /// Its chunks in the range; the bytes of the stored ones come from the selection's
    /// reads, in the same order.
    locked: Locked,
}

/// [`select_one`] over `list` (a window of the selection) on `threads` threads (one runs
/// here), in `list`'s order. Most of a large selection's time is here (locking each series,
/// copying its open chunk, decoding up to the range's start, building its labels), and each
/// series is independent.
///
/// It runs in three rounds: every series is snapshotted under its lock, then all their full
/// chunks are read at once in the store's order ([`read_in_store_order`]), then the series
/// are built. The store's files hold chunks in the order they were cut, the series of every
/// time mixed, so reading series by series would map every page of the files for a large
/// selection (the kernel maps 64 KiB around each read); in the store's order each page is
/// mapped at most once and given back right after.
fn select_parallel(
    head: &Head,
    list: Vec<Arc<MemSeries>>,
    mint: i64,
    maxt: i64,
    last_only: bool,
    threads: usize,
) -> Vec<Item> {
    let per = list.len().div_ceil(threads.max(1)).max(1);
    let mut list = list.into_iter();
    let mut jobs: Vec<ParallelPart<(Vec<Pending>, Vec<u64>)>> = Vec::new();
    loop {
        let part: Vec<Arc<MemSeries>> = list.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        jobs.push(Box::new(move || {
            let mut refs = Vec::new();
            let pending = part
                .iter()
                .enumerate()
                .filter_map(|(i, series)| {
                    // The series are scattered in memory: each is a cache miss or two.
                    if let Some(ahead) = part.get(i + SNAPSHOT_AHEAD) {
                        let p = Arc::as_ptr(ahead).cast::<u8>();
                        crate::prefetch(p, std::mem::size_of::<MemSeries>());
                    }
                    let locked = lock_snapshot(series, mint, maxt, last_only);
                    if locked.is_empty() {
                        return None;
                    }
                    refs.extend(locked.full.iter().map(|c| c.chunk_ref));
                    let series = Arc::clone(series);
                    Some(Pending { series, locked })
                })
                .collect();
            (pending, refs)
        }));
    }
    let snapshots = run_parallel(jobs);
    let all_refs: Vec<u64> = snapshots
        .iter()
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    let release = all_refs.len() >= RELEASE_MIN_CHUNKS;
    // Reading is a system call per sparse chunk: worth both cores sooner than the rest.
    let read_threads = if all_refs.len() >= PARALLEL_READ_MIN_CHUNKS {
        crate::parallel::cores().min(crate::querier::MAX_SELECT_THREADS)
    } else {
        threads
    };
    let mut data = read_in_store_order(head, all_refs, read_threads, release).into_iter();
    let mut jobs: Vec<ParallelPart<Vec<Item>>> = Vec::new();
    for (pending, refs) in snapshots {
        let mine: Vec<ChunkBytes> = data.by_ref().take(refs.len()).collect();
        let head = head.clone();
        jobs.push(Box::new(move || {
            let mut mine = mine.into_iter();
            let mut out = Vec::with_capacity(pending.len());
            for p in pending {
                out.extend(series_of(
                    &head,
                    &p.series,
                    p.locked,
                    mine.by_ref(),
                    mint,
                    maxt,
                ));
            }
            out
        }));
    }
    run_parallel(jobs).into_iter().flatten().collect()
}

/// How many series ahead of the one it snapshots [`select_parallel`] prefetches.
const SNAPSHOT_AHEAD: usize = 4;

/// Fewest full chunks a selection reads for the reads to be split over the cores whatever
/// its series count (each chunk of a sparse region is one `pread`).
const PARALLEL_READ_MIN_CHUNKS: usize = 1024;

/// A full chunk's bytes as read from the chunk store.
type ChunkBytes = Result<ChunkData>;

/// Fewest chunks a selection reads for it to give each region's pages back after reading
/// it; a smaller read maps at most this many × 64 KiB and leaves them. Any larger read maps
/// most of the files (chunks of all series are interleaved), so it gives them back even
/// though mapping them again costs the next such query ~1 µs per 64 KiB (~2.5 ms for the
/// 100k bench's 160 MiB of head chunks).
const RELEASE_MIN_CHUNKS: usize = 512;

/// Fewest chunks of one region a read maps; fewer are read without mapping the store
/// ([`ChunkStore::read_unmapped`]). Each mapped read maps the 64 KiB around it, and maps it
/// again on the next query once the region's pages were given back, which made the
/// mapping and unmapping a third of a small range query's time (count_up_by_job [r] on the
/// 100k bench: ~16 chunks per MiB region).
const DENSE_REGION_CHUNKS: usize = 32;

/// The bytes of the full chunks `refs`, in `refs`' order, read on `threads` threads in the
/// chunk store's order: grouped by [`ChunkStore::region_of`], regions in increasing order.
/// A region with at least [`DENSE_REGION_CHUNKS`] chunks to read is read at once
/// ([`ChunkStore::read_many`]: the disk store reads close-lying chunks with one `pread`,
/// others through its map) and, when `release` is set, the pages it mapped given back after;
/// the chunks of a sparser region are read one by one without mapping it.
fn read_in_store_order(
    head: &Head,
    refs: Vec<u64>,
    threads: usize,
    release: bool,
) -> Vec<ChunkBytes> {
    let store = head.chunk_store();
    let n = refs.len();
    let regions: Vec<u64> = refs.iter().map(|&r| store.region_of(r)).collect();
    // Indices ordered by region: a counting sort when the regions are few and dense (the
    // files of a head), a sort otherwise.
    let (lo, hi) = regions
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), &g| (lo.min(g), hi.max(g)));
    let order: Vec<u32> = if n == 0 || hi - lo < 1 << 16 {
        let lo = if n == 0 { 0 } else { lo };
        let mut starts = vec![0u32; (hi.saturating_sub(lo) + 2) as usize];
        for &g in &regions {
            starts[(g - lo + 1) as usize] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut order = vec![0u32; n];
        for (i, &g) in regions.iter().enumerate() {
            let slot = &mut starts[(g - lo) as usize];
            order[*slot as usize] = i as u32;
            *slot += 1;
        }
        order
    } else {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by_key(|&i| regions[i as usize]);
        order
    };
    drop(regions);
    // Each thread puts the chunks it reads in their places in `out` itself: the places are
    // all over a large array, each a cache miss, which the calling thread alone took 3% of
    // cpu_busy_by_inst [r]'s time to fill after the reads.
    let mut out: Vec<ChunkBytes> = Vec::with_capacity(n);
    let slots = Slots(out.as_mut_ptr());
    let per = n.div_ceil(threads.max(1)).max(1);
    let jobs: Vec<ParallelPart<()>> = order
        .chunks(per)
        .map(|part| {
            let part: Vec<(u32, u64)> = part.iter().map(|&i| (i, refs[i as usize])).collect();
            let head = head.clone();
            Box::new(move || {
                let store = head.chunk_store();
                let put = |i: u32, d: ChunkBytes| {
                    // SAFETY: `order` is a permutation of `0..n`, split into disjoint parts,
                    // so each slot below `n` is written once, by the one thread owning it.
                    unsafe { slots.put(i as usize, d) }
                };
                let mut rest = &part[..];
                while let Some(&(_, first)) = rest.first() {
                    let g = store.region_of(first);
                    let n = rest
                        .iter()
                        .position(|&(_, r)| store.region_of(r) != g)
                        .unwrap_or(rest.len());
                    let (run, next) = rest.split_at(n);
                    if n >= DENSE_REGION_CHUNKS {
                        let refs: Vec<u64> = run.iter().map(|&(_, r)| r).collect();
                        let mut got = store.read_many(&refs).into_iter();
                        for &(i, _) in run {
                            let d = got.next().unwrap_or_else(|| {
                                Err(crate::Error::Other("head chunk not read".into()))
                            });
                            put(i, d);
                        }
                        if release {
                            store.release_region(g);
                        }
                    } else {
                        for &(i, r) in run {
                            put(i, store.read_unmapped(r).map(ChunkData::from));
                        }
                    }
                    rest = next;
                }
            }) as ParallelPart<_>
        })
        .collect();
    run_parallel(jobs);
    // SAFETY: the parts cover every slot below `n`, and each wrote all of its slots (a panic
    // in one would have been raised by `run_parallel`).
    unsafe { out.set_len(n) };
    out
}

/// The spare capacity of [`read_in_store_order`]'s output, written by several threads, each
/// to slots of its own.
#[derive(Clone, Copy)]
struct Slots(*mut ChunkBytes);

// SAFETY: the threads write disjoint slots (see `Slots::put`), and the vector outlives them.
unsafe impl Send for Slots {}
// SAFETY: as above.
unsafe impl Sync for Slots {}

impl Slots {
    /// Writes `d` to slot `i` without reading or dropping what was there.
    ///
    /// # Safety
    /// `i` is within the vector's capacity, and no other thread writes or reads slot `i`
    /// meanwhile.
    unsafe fn put(self, i: usize, d: ChunkBytes) {
        // SAFETY: as the caller promises.
        unsafe { self.0.add(i).write(d) }
    }
}

impl Querier for HeadQuerier {
    fn select(&self, sorted: bool, hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet {
        let list = self.matching(sorted, matchers);
        let (head, mint, maxt) = (self.head.clone(), self.mint, self.maxt);
        let limit = hints.map_or(0, |h| h.limit);
        let limit = if limit == 0 { usize::MAX } else { limit };
        let last_only = hints.is_some_and(|h| h.last_only);
        if limit >= list.len() {
            return windowed(list, HEAD_SELECT_WINDOW, move |w| {
                let threads = select_threads(w.len());
                select_parallel(&head, w, mint, maxt, last_only, threads)
            });
        }
        // A limited selection reads series one by one, up to the limit.
        Box::new(
            list.into_iter()
                .filter_map(move |s| select_one(&head, &s, mint, maxt, last_only))
                .take(limit),
        )
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], limit: usize) -> Result<Vec<String>> {
        if !self.overlaps_head() {
            return Ok(Vec::new());
        }
        let syms = self.head.symbols();
        let Some(name_id) = syms.lookup(name) else {
            return Ok(Vec::new());
        };
        let sel = (!matchers.is_empty()).then(|| self.selected(matchers));
        let p = self.head.postings().read();
        let Some(vals) = p.values(name_id) else {
            return Ok(Vec::new());
        };
        let r = syms.reader();
        let mut out: Vec<String> = vals
            .iter()
            .filter(|(_, bm)| sel.as_ref().is_none_or(|s| !bm.is_disjoint(s)))
            .map(|(v, _)| r.get(*v).to_string())
            .collect();
        out.sort();
        if limit > 0 {
            out.truncate(limit);
        }
        Ok(out)
    }

    fn label_names(&self, matchers: &[Matcher], limit: usize) -> Result<Vec<String>> {
        if !self.overlaps_head() {
            return Ok(Vec::new());
        }
        let syms = self.head.symbols();
        let ids: Vec<u32> = if matchers.is_empty() {
            self.head.postings().read().names().collect()
        } else {
            let mut set = std::collections::HashSet::new();
            for id in self.selected(matchers).iter() {
                if let Some(s) = self.head.series(u64::from(id)) {
                    set.extend(s.lset.chunks_exact(2).map(|p| p[0]));
                }
            }
            set.into_iter().collect()
        };
        let r = syms.reader();
        let mut out: Vec<String> = ids.into_iter().map(|i| r.get(i).to_string()).collect();
        out.sort();
        if limit > 0 {
            out.truncate(limit);
        }
        Ok(out)
    }
}

impl ChunkQuerier for HeadQuerier {
    fn select_chunks(
        &self,
        sorted: bool,
        _hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> ChunkSeriesSet {
        let list = self.matching(sorted, matchers);
        let (head, mint, maxt) = (self.head.clone(), self.mint, self.maxt);
        Box::new(list.into_iter().filter_map(move |s| {
            match snapshot_chunks(&head, &s, mint, maxt) {
                Ok(chunks) if chunks.is_empty() => None,
                Ok(chunks) => Some(Ok(ChunkSeries {
                    labels: head.labels_of(&s),
                    chunks: chunks.into_vec(),
                })),
                Err(e) => Some(Err(e)),
            }
        }))
    }
}

/// A selected series' chunks, inline up to the four full chunks and the open one that two
/// hours of a series scraped every 15 s take (a large selection builds thousands of series).
pub type SeriesChunks = SmallVec<[ChunkMeta; 5]>;

/// A series made of XOR chunks, limited to `[mint, maxt]`.
pub struct ChunkedSeries {
    /// The series' labels.
    labels: SeriesLabels,
    /// Its chunks in time order (non-overlapping).
    pub chunks: SeriesChunks,
    /// First timestamp returned.
    pub mint: i64,
    /// Last timestamp returned.
    pub maxt: i64,
    /// When `[mint, maxt]` lies inside one chunk: its index and the decoder's state at the
    /// first sample in the range (found while selecting), where reading starts.
    pub resume: Option<(usize, XorCursor)>,
}

/// The labels of a [`ChunkedSeries`]: given, or the head series' label strings borrowed from
/// the head's symbol table and built into [`Labels`] only when asked for (a series merged and
/// aggregated is compared and grouped by its label pairs, and its labels are never built).
/// The pairs are held inline: the value lives in its series' one allocation, and a separate
/// one for the pairs cost each series of a large selection an allocation and a cache miss.
#[allow(clippy::large_enum_variant)]
enum SeriesLabels {
    Built(Arc<Labels>),
    Head {
        /// Keeps the symbol table that `pairs` borrow from alive.
        _head: Head,
        pairs: SmallVec<[(&'static str, &'static str); 10]>,
        built: std::sync::OnceLock<Arc<Labels>>,
    },
}

impl SeriesLabels {
    /// The labels of the head series `s`.
    fn of_head(head: &Head, s: &MemSeries) -> Self {
        let mut pairs = SmallVec::new();
        // SAFETY: the strings are used only through this value, which holds `head` and so
        // its symbol table.
        unsafe { head.symbols().pairs_unbounded(&s.lset, &mut pairs) };
        SeriesLabels::Head {
            _head: head.clone(),
            pairs,
            built: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> &Arc<Labels> {
        match self {
            SeriesLabels::Built(l) => l,
            SeriesLabels::Head { pairs, built, .. } => {
                built.get_or_init(|| Arc::new(Labels::from_sorted_pairs(pairs.iter().copied())))
            }
        }
    }

    fn pairs(&self) -> LabelPairs<'_> {
        match self {
            SeriesLabels::Built(l) => LabelPairs::of_labels(l),
            SeriesLabels::Head { pairs, .. } => LabelPairs::of_strs(pairs),
        }
    }
}

impl ChunkedSeries {
    /// A series labelled `labels` made of `chunks`, limited to `[mint, maxt]`; `resume` as
    /// in [`ChunkedSeries::resume`].
    pub fn new(
        labels: Arc<Labels>,
        chunks: Vec<ChunkMeta>,
        mint: i64,
        maxt: i64,
        resume: Option<(usize, XorCursor)>,
    ) -> Self {
        ChunkedSeries {
            labels: SeriesLabels::Built(labels),
            chunks: SeriesChunks::from_vec(chunks),
            mint,
            maxt,
            resume,
        }
    }

    /// An iterator over the series' samples, resuming where the selection left off.
    fn sample_iter(&self) -> ChunksIter<'_> {
        let mut it = ChunksIter::new(&self.chunks, self.mint, self.maxt);
        it.resume = self.resume;
        it
    }
}

/// The label methods of [`Series`] for a head series whose labels are its `labels` field (a
/// [`SeriesLabels`]).
macro_rules! labels_from_field {
    () => {
        fn labels(&self) -> &Labels {
            self.labels.get()
        }
        fn shared_labels(&self) -> Arc<Labels> {
            self.labels.get().clone()
        }
        fn label_pairs(&self) -> LabelPairs<'_> {
            self.labels.pairs()
        }
    };
}

impl Series for ChunkedSeries {
    labels_from_field!();
    fn iter(&self) -> Box<dyn SampleIter + '_> {
        Box::new(self.sample_iter())
    }
    fn collect_range(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> Result<()> {
        crate::querier::collect_with(&mut self.sample_iter(), mint, maxt, out)
    }
}

/// A series of a last-only selection ([`SelectHints::last_only`]) whose newest sample in the
/// range was in its open chunk: that sample, all a plain instant selector reads.
struct NewestSample {
    labels: SeriesLabels,
    sample: [(i64, f64); 1],
}

impl Series for NewestSample {
    labels_from_field!();
    fn iter(&self) -> Box<dyn SampleIter + '_> {
        Box::new(crate::querier::SliceIter::new(&self.sample))
    }
    fn collect_range(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> Result<()> {
        out.extend(self.sample.iter().filter(|s| s.0 >= mint && s.0 <= maxt));
        Ok(())
    }
}

/// Iterates the samples of time-ordered, non-overlapping XOR chunks within `[mint, maxt]`.
pub struct ChunksIter<'a> {
    chunks: &'a [ChunkMeta],
    idx: usize,
    cur: Option<XorIterator<'a>>,
    mint: i64,
    maxt: i64,
    done: bool,
    err: Option<crate::Error>,
    /// Where [`SampleIter::collect_range`] may start decoding (see [`ChunkedSeries::resume`]).
    resume: Option<(usize, XorCursor)>,
}

impl<'a> ChunksIter<'a> {
    /// An iterator over `chunks` limited to `[mint, maxt]`.
    pub fn new(chunks: &'a [ChunkMeta], mint: i64, maxt: i64) -> Self {
        ChunksIter {
            chunks,
            idx: 0,
            cur: None,
            mint,
            maxt,
            done: false,
            err: None,
            resume: None,
        }
    }

    fn open_next(&mut self, from_t: i64) -> bool {
        while self.idx < self.chunks.len() {
            let c = &self.chunks[self.idx];
            self.idx += 1;
            if c.max_time < from_t {
                continue;
            }
            if c.min_time > self.maxt {
                break;
            }
            if c.encoding != Encoding::Xor {
                self.err = Some(crate::Error::Other(format!(
                    "unsupported chunk encoding {:?}",
                    c.encoding
                )));
                return false;
            }
            self.cur = Some(XorIterator::new(&c.data));
            return true;
        }
        false
    }

    fn finish(&mut self) -> ValueType {
        self.done = true;
        self.cur = None;
        ValueType::None
    }

    fn check(&mut self, t: i64) -> ValueType {
        if t > self.maxt {
            self.finish()
        } else {
            ValueType::Float
        }
    }
}

impl SampleIter for ChunksIter<'_> {
    fn collect_range(&mut self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        if self.done || self.idx != 0 || self.cur.is_some() {
            return crate::querier::collect_range_stepwise(self, mint, maxt, out);
        }
        let (lo, hi) = (mint.max(self.mint), maxt.min(self.maxt));
        if let Some((idx, cur)) = self.resume {
            // The range lies inside chunk `idx`, whose samples before `cur` are older than
            // `self.mint` (so than `lo`).
            if let Some(c) = self.chunks.get(idx) {
                let mut it = XorIterator::resume(&c.data, &cur);
                let (t, v) = it.at();
                if t <= hi {
                    if t >= lo {
                        out.push((t, v));
                    }
                    if !it.collect_into(lo, hi, out) {
                        self.err = it.err();
                    }
                }
                self.idx = self.chunks.len();
                self.finish();
                return;
            }
        }
        // Runs of whole chunks inside [lo, hi] are decoded in one batch, unfiltered (see
        // `decode_tailed_into`); a chunk at an edge of the range is cut while decoding.
        let mut run: Vec<TailedChunk> = Vec::new();
        let flush = |run: &mut Vec<TailedChunk>, out: &mut Vec<(i64, f64)>| {
            let res = crate::chunkenc::xor::decode_tailed_into(run, out);
            run.clear();
            res.err().map(|e| e.err)
        };
        for c in self.chunks {
            if c.max_time < lo {
                continue;
            }
            if c.min_time > hi {
                break;
            }
            if c.encoding != Encoding::Xor {
                self.err = Some(flush(&mut run, out).unwrap_or_else(|| {
                    crate::Error::Other(format!("unsupported chunk encoding {:?}", c.encoding))
                }));
                break;
            }
            if c.min_time >= lo && c.max_time <= hi {
                run.push(c.data.tailed());
                continue;
            }
            if let Some(e) = flush(&mut run, out) {
                self.err = Some(e);
                break;
            }
            match crate::chunkenc::xor::decode_chunk_cut(c.data.tailed(), lo, hi, out) {
                Ok(false) => {}
                Ok(true) => break,
                Err(e) => {
                    self.err = Some(e);
                    break;
                }
            }
        }
        if self.err.is_none() {
            self.err = flush(&mut run, out);
        }
        self.idx = self.chunks.len();
        self.finish();
    }

    fn next(&mut self) -> ValueType {
        if self.done {
            return ValueType::None;
        }
        loop {
            if let Some(it) = self.cur.as_mut() {
                match it.next() {
                    ValueType::None => {
                        if let Some(e) = it.err() {
                            self.err = Some(e);
                            return self.finish();
                        }
                        self.cur = None;
                    }
                    _ => {
                        let t = it.at_t();
                        if t < self.mint {
                            continue;
                        }
                        return self.check(t);
                    }
                }
            }
            if !self.open_next(self.mint) {
                return self.finish();
            }
        }
    }

    fn seek(&mut self, t: i64) -> ValueType {
        if self.done {
            return ValueType::None;
        }
        let t = t.max(self.mint);
        loop {
            if let Some(it) = self.cur.as_mut() {
                // Current chunk may already be past t or contain it.
                match it.seek(t) {
                    ValueType::None => {
                        if let Some(e) = it.err() {
                            self.err = Some(e);
                            return self.finish();
                        }
                        self.cur = None;
                    }
                    _ => {
                        let at = it.at_t();
                        return self.check(at);
                    }
                }
            }
            if !self.open_next(t) {
                return self.finish();
            }
        }
    }

    fn at(&self) -> (i64, f64) {
        self.cur.as_ref().map_or((0, 0.0), |c| c.at())
    }

    fn at_t(&self) -> i64 {
        self.cur.as_ref().map_or(0, |c| c.at_t())
    }

    fn err(&self) -> Option<crate::Error> {
        self.err
            .as_ref()
            .map(|e| crate::Error::Other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::XorChunk;
    use crate::head::ChunkStore;

    fn chunk(samples: &[(i64, f64)]) -> ChunkMeta {
        let mut app = XorChunk::new().appender().expect("empty chunk");
        for &(t, v) in samples {
            app.append(t, v);
        }
        ChunkMeta {
            min_time: samples[0].0,
            max_time: samples[samples.len() - 1].0,
            encoding: Encoding::Xor,
            data: ChunkData::from(app.bytes()),
        }
    }

    #[test]
    fn select_sorts_by_labels_whatever_the_creation_order() {
        let h = Head::in_memory();
        // Creation order differs from label order; symbols are interned in creation order,
        // so their ids do not follow their strings; some sets are prefixes of others.
        let sets: Vec<Labels> = [
            vec![("__name__", "m"), ("job", "z"), ("x", "1")],
            vec![("__name__", "m"), ("job", "b")],
            vec![("__name__", "m"), ("job", "b"), ("x", "2")],
            vec![("__name__", "m"), ("a", "q"), ("job", "b")],
            vec![("__name__", "m"), ("job", "a"), ("x", "10")],
            vec![("__name__", "m"), ("job", "a"), ("x", "1")],
            vec![("__name__", "m"), ("job", "zz")],
            vec![("__name__", "m"), ("instance", "h:1"), ("job", "a")],
        ]
        .iter()
        .map(|p| Labels::from_pairs(p))
        .collect();
        let mut app = h.appender();
        for (i, ls) in sets.iter().enumerate() {
            app.append(None, ls, 1000, i as f64).unwrap();
        }
        app.commit().unwrap();
        let q = h.head_querier(0, 2000);
        let m = [Matcher::new(crate::labels::MatchType::Equal, "__name__", "m").unwrap()];
        let got: Vec<Labels> = q
            .select(true, None, &m)
            .map(|s| s.unwrap().labels().clone())
            .collect();
        let mut want = sets.clone();
        want.sort();
        assert_eq!(got, want);
        // Already sorted input stays as it is.
        let m = [Matcher::new(crate::labels::MatchType::Equal, "job", "a").unwrap()];
        let got: Vec<Labels> = q
            .select(true, None, &m)
            .map(|s| s.unwrap().labels().clone())
            .collect();
        let mut want: Vec<Labels> = sets
            .iter()
            .filter(|l| l.get("job") == Some("a"))
            .cloned()
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    /// A head series gives its label pairs from the symbol table, and its labels once
    /// asked for, both valid after the head itself was dropped.
    #[test]
    fn head_series_labels_outlive_the_head() {
        let h = Head::in_memory();
        let ls = Labels::from_pairs(&[("__name__", "m"), ("job", "j"), ("x", "1")]);
        let mut app = h.appender();
        app.append(None, &ls, 1000, 1.0).unwrap();
        app.commit().unwrap();
        let m = [Matcher::new(crate::labels::MatchType::Equal, "__name__", "m").unwrap()];
        let series: Vec<Arc<dyn Series>> = h
            .head_querier(0, 2000)
            .select(true, None, &m)
            .map(|s| s.unwrap())
            .collect();
        // Many more symbols after the selection, so that the table's list grows and moves.
        let mut app = h.appender();
        for i in 0..1000 {
            let other = Labels::from_pairs(&[("__name__", "n"), ("i", &i.to_string())]);
            app.append(None, &other, 1000, 1.0).unwrap();
        }
        app.commit().unwrap();
        drop(h);
        assert_eq!(series.len(), 1);
        let pairs: Vec<(&str, &str)> = series[0].label_pairs().collect();
        assert_eq!(pairs, vec![("__name__", "m"), ("job", "j"), ("x", "1")]);
        assert_eq!(series[0].labels(), &ls);
        assert!(Arc::ptr_eq(
            &series[0].shared_labels(),
            &series[0].shared_labels()
        ));
    }

    #[test]
    fn large_selections_snapshotted_in_parallel_keep_order_and_ranges() {
        let h = Head::in_memory();
        let n = crate::querier::PARALLEL_SELECT_MIN * 2 + 17;
        let mut app = h.appender();
        // Created in reverse label order; every third series has no sample in the range.
        for k in (0..n).rev() {
            let ls = Labels::from_pairs(&[("__name__", "m"), ("i", &format!("{k:06}"))]);
            let ts: Vec<i64> = if k % 3 == 0 {
                vec![20_000, 21_000]
            } else {
                (0..10).map(|j| j * 1000).collect()
            };
            for t in ts {
                app.append(None, &ls, t, k as f64).unwrap();
            }
        }
        app.commit().unwrap();
        let q = h.head_querier(2500, 6000);
        let m = [Matcher::new(crate::labels::MatchType::Equal, "__name__", "m").unwrap()];
        let got: Vec<(Labels, Vec<(i64, f64)>)> = q
            .select(true, None, &m)
            .map(|s| {
                let s = s.unwrap();
                let mut v = Vec::new();
                s.iter().collect_range(i64::MIN, i64::MAX, &mut v);
                (s.labels().clone(), v)
            })
            .collect();
        let want: Vec<(Labels, Vec<(i64, f64)>)> = (0..n)
            .filter(|k| k % 3 != 0)
            .map(|k| {
                (
                    Labels::from_pairs(&[("__name__", "m"), ("i", &format!("{k:06}"))]),
                    (3..=6).map(|j| (j * 1000, k as f64)).collect(),
                )
            })
            .collect();
        assert!(select_threads(n) > 1 || std::thread::available_parallelism().unwrap().get() == 1);
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }

    /// Series with full chunks in `chunks_head/` files (small files, so several), the chunks
    /// of all series interleaved as live ingestion cuts them.
    fn disk_head(dir: &std::path::Path, n: usize, samples: i64) -> Head {
        let mapper =
            super::super::head_chunks::ChunkDiskMapper::open_with_max_file_size(dir, 256 << 10)
                .unwrap();
        let store = Arc::new(super::super::disk_chunks::DiskChunkStore::new(mapper));
        let h = Head::new(super::super::HeadOptions::default(), store).unwrap();
        for t in 0..samples {
            let mut app = h.appender();
            for k in 0..n {
                let ls = Labels::from_pairs(&[("__name__", "m"), ("i", &format!("{k:06}"))]);
                app.append(None, &ls, t * 1000, (k as i64 * 10_000 + t) as f64)
                    .unwrap();
            }
            app.commit().unwrap();
        }
        h
    }

    #[test]
    fn parallel_selection_reads_stored_chunks_in_store_order_and_keeps_series_order() {
        let dir = tempfile::tempdir().unwrap();
        let n = crate::querier::PARALLEL_SELECT_MIN * 2 + 17;
        let h = disk_head(dir.path(), n, 400);
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(files > 2, "chunks spread over several files: {files}");
        let m = [Matcher::new(crate::labels::MatchType::Equal, "__name__", "m").unwrap()];
        let read = |s: Arc<dyn Series>| {
            let mut v = Vec::new();
            s.iter().collect_range(i64::MIN, i64::MAX, &mut v);
            (s.labels().clone(), v)
        };
        for (mint, maxt) in [(0, 399_000), (100_500, 250_000), (390_000, 399_000)] {
            let q = h.head_querier(mint, maxt);
            let got: Vec<_> = q.select(true, None, &m).map(|s| read(s.unwrap())).collect();
            assert_eq!(got.len(), n);
            for (k, (ls, v)) in got.iter().enumerate() {
                assert_eq!(ls.get("i"), Some(format!("{k:06}").as_str()));
                let want: Vec<(i64, f64)> = (0..400)
                    .map(|t| (t * 1000, (k as i64 * 10_000 + t) as f64))
                    .filter(|&(t, _)| t >= mint && t <= maxt)
                    .collect();
                assert!(*v == want, "series {k} over [{mint}, {maxt}]");
            }
            // The one-by-one path (a limit below the selection) reads the same.
            let hints = SelectHints {
                limit: n - 1,
                ..Default::default()
            };
            let lazy: Vec<_> = q
                .select(true, Some(&hints), &m)
                .map(|s| read(s.unwrap()))
                .collect();
            assert!(lazy[..] == got[..n - 1]);
        }
    }

    #[test]
    fn selections_give_back_the_pages_they_read() {
        // 3 series, appended in turns: their ~120 full chunks interleave in the store.
        let (store, h) = super::super::chunk_store::RecordingStore::interleaved_head(5000);
        let m = [Matcher::new(crate::labels::MatchType::Equal, "__name__", "m").unwrap()];
        let q = h.head_querier(0, 5_000_000);
        // A small selection reads in the store's order and leaves the pages mapped.
        let n = q.select(true, None, &m).count();
        assert_eq!(n, 3);
        let log = std::mem::take(&mut *store.log.lock());
        assert!(log.iter().all(|e| !e.starts_with("release")), "{log:?}");
        // A large read goes through regions in increasing order. It maps a region it reads
        // many chunks of (0: 63 chunks) and gives it back after; a region it reads only a few
        // chunks of (1: 7 chunks) it reads without mapping, and has nothing to give back.
        let refs: Vec<u64> = (1..=70).rev().collect();
        let got = read_in_store_order(&h, refs.clone(), 1, true);
        for (r, d) in refs.iter().zip(&got) {
            assert_eq!(
                &d.as_ref().unwrap()[..],
                &ChunkStore::read(&store.mem, *r).unwrap()[..]
            );
        }
        let log = std::mem::take(&mut *store.log.lock());
        let mut want = vec!["read 0".to_string(); 63];
        want.push("release 0".into());
        want.extend(vec!["unmapped 1".to_string(); 7]);
        assert_eq!(log, want);
        // A limited selection reads series one by one, without mapping the store; so does a
        // chunk selection.
        let hints = SelectHints {
            limit: 2,
            ..Default::default()
        };
        let it = q.select(true, Some(&hints), &m);
        assert_eq!(it.count(), 2);
        assert_eq!(
            h.chunk_querier(0, 5_000_000)
                .select_chunks(true, None, &m)
                .count(),
            3
        );
        let log = std::mem::take(&mut *store.log.lock());
        assert!(!log.is_empty());
        assert!(log.iter().all(|e| e.starts_with("unmapped")), "{log:?}");
    }

    #[test]
    fn last_only_selections_give_the_newest_sample_alone() {
        let h = Head::in_memory();
        let mut app = h.appender();
        // "a" gets a sample every 10 s up to 600 s; "b" stops at 100 s.
        for t in 0..=60 {
            let a = Labels::from_pairs(&[("__name__", "m"), ("s", "a")]);
            app.append(None, &a, t * 10_000, t as f64).unwrap();
            if t <= 10 {
                let b = Labels::from_pairs(&[("__name__", "m"), ("s", "b")]);
                app.append(None, &b, t * 10_000, -(t as f64)).unwrap();
            }
        }
        app.commit().unwrap();
        let m = [Matcher::new(crate::labels::MatchType::Equal, "__name__", "m").unwrap()];
        let read = |mint: i64, maxt: i64, last_only: bool| -> Vec<(String, Vec<(i64, f64)>)> {
            let hints = SelectHints {
                start: mint,
                end: maxt,
                last_only,
                ..Default::default()
            };
            h.head_querier(mint, maxt)
                .select(true, Some(&hints), &m)
                .map(|s| {
                    let s = s.unwrap();
                    let mut out = Vec::new();
                    s.iter().collect_range(mint, maxt, &mut out);
                    (s.labels().get("s").unwrap_or("").to_string(), out)
                })
                .collect()
        };
        // Both newest samples inside the range: just those.
        assert_eq!(
            read(50_000, 700_000, true),
            vec![
                ("a".into(), vec![(600_000, 60.0)]),
                ("b".into(), vec![(100_000, -10.0)])
            ]
        );
        // "b" ended before the range: left out, as a full read leaves it out.
        assert_eq!(
            read(300_000, 700_000, true),
            vec![("a".into(), vec![(600_000, 60.0)])]
        );
        assert_eq!(read(300_000, 700_000, false).len(), 1);
        // The range ends before "a"'s newest sample: "a" gives its newest sample up to the
        // range's end, decoded from its open chunk; "b" its newest.
        let got = read(50_000, 300_000, true);
        let full = read(50_000, 300_000, false);
        assert_eq!(got[0].1, vec![(300_000, 30.0)]);
        assert_eq!(full[0].1.last(), Some(&(300_000, 30.0)));
        assert_eq!(got[1], ("b".into(), vec![(100_000, -10.0)]));
    }

    #[test]
    fn reads_from_seek_marks_match_the_samples() {
        let h = Head::in_memory();
        let mut app = h.appender();
        let ls = Labels::from_pairs(&[("__name__", "m")]);
        // Every 10 s for 1000 s past a chunk cut, values wandering (some repeated).
        let samples: Vec<(i64, f64)> = (0..700)
            .map(|i| (i * 10_000 + i % 3, ((i * 7919) % 23) as f64 * 0.5))
            .collect();
        for &(t, v) in &samples {
            app.append(None, &ls, t, v).unwrap();
        }
        app.commit().unwrap();
        let m = [Matcher::new(crate::labels::MatchType::Equal, "__name__", "m").unwrap()];
        let read = |mint: i64, maxt: i64, last_only: bool| -> Vec<(i64, f64)> {
            let hints = SelectHints {
                start: mint,
                end: maxt,
                last_only,
                ..Default::default()
            };
            let mut out = Vec::new();
            for s in h.head_querier(mint, maxt).select(true, Some(&hints), &m) {
                s.unwrap().collect_range(mint, maxt, &mut out).unwrap();
            }
            out
        };
        let last = samples.last().unwrap().0;
        for back in (0..2_000_000).step_by(33_333) {
            for width in [1, 9_999, 60_000, 300_000] {
                let maxt = last - back;
                let mint = maxt - width;
                let want: Vec<(i64, f64)> = samples
                    .iter()
                    .copied()
                    .filter(|x| x.0 >= mint && x.0 <= maxt)
                    .collect();
                assert_eq!(read(mint, maxt, false), want, "[{mint}, {maxt}]");
                // Only the newest from the open chunk; all of them from full chunks.
                let got = read(mint, maxt, true);
                let newest: Vec<(i64, f64)> = want.last().copied().into_iter().collect();
                assert!(got == newest || got == want, "newest in [{mint}, {maxt}]");
            }
        }
    }

    #[test]
    fn has_samples_in_checks_edges_and_gaps() {
        let c = [chunk(&[(10, 1.0), (20, 2.0), (30, 3.0)])];
        assert!(has_samples_in(&c, 0, 10));
        assert!(has_samples_in(&c, 30, 40));
        assert!(has_samples_in(&c, 15, 25), "a sample inside, edges outside");
        assert!(!has_samples_in(&c, 21, 29), "a gap between samples");
        assert!(!has_samples_in(&c, 31, 40));
    }

    #[test]
    fn resumed_series_reads_the_same_samples() {
        let samples: Vec<(i64, f64)> = (0..120).map(|i| (i * 10, i as f64)).collect();
        let cs = vec![chunk(&samples)];
        for (mint, maxt) in [(1, 1188), (5, 5), (15, 25), (500, 600), (401, 409)] {
            let resume = samples_in(&cs, mint, maxt, None);
            let want: Vec<(i64, f64)> = samples
                .iter()
                .copied()
                .filter(|x| x.0 >= mint && x.0 <= maxt)
                .collect();
            assert_eq!(resume.is_some(), !want.is_empty(), "[{mint}, {maxt}]");
            let Some(resume) = resume else { continue };
            assert!(resume.is_some(), "the range lies inside the chunk");
            let s = ChunkedSeries::new(Arc::new(Labels::empty()), cs.clone(), mint, maxt, resume);
            let mut got = Vec::new();
            s.iter().collect_range(i64::MIN, i64::MAX, &mut got);
            assert_eq!(got, want, "[{mint}, {maxt}]");
            got.clear();
            s.iter().collect_range(mint + 10, maxt, &mut got);
            let tail: Vec<_> = want.iter().copied().filter(|x| x.0 >= mint + 10).collect();
            assert_eq!(got, tail, "[{mint}+10, {maxt}]");
        }
    }

    #[test]
    fn collect_range_matches_stepwise() {
        let cs = vec![
            chunk(&[(10, 1.0), (20, 2.0), (30, 3.0)]),
            chunk(&[(40, 4.0), (50, 5.0)]),
        ];
        for (mint, maxt) in [(0, 100), (20, 40), (25, 35), (31, 39), (50, 50)] {
            for (qmin, qmax) in [(0, 100), (15, 45)] {
                let mut want = Vec::new();
                crate::querier::collect_range_stepwise(
                    &mut ChunksIter::new(&cs, qmin, qmax),
                    mint,
                    maxt,
                    &mut want,
                );
                let mut got = Vec::new();
                ChunksIter::new(&cs, qmin, qmax).collect_range(mint, maxt, &mut got);
                assert_eq!(got, want, "[{mint}, {maxt}] in [{qmin}, {qmax}]");
            }
        }
    }
}
