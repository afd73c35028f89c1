//! The storage traits every reader goes through: the PromQL engine, the HTTP API, remote read,
//! and later the store gateway and the fanout querier.
//!
//! A [`Queryable`] hands out a [`Querier`] over a time range `[mint, maxt]` (both inclusive,
//! milliseconds). The querier selects series by label matchers as a [`SeriesSet`], sorted by
//! labels when asked to, and answers label names and values. Each [`Series`] yields its samples
//! through a [`SampleIter`] in increasing time order. [`ChunkQuerier`] is the same selection at
//! chunk level, for remote read's streamed chunks and for compaction.
//!
//! [`VecSeries`] and [`MemQueryable`] are plain in-memory implementations: test data for the
//! engine and a reference that faster implementations are checked against.

use std::sync::Arc;

use crate::chunkenc::xor::{TailedChunk, PAD};
use crate::chunkenc::{Encoding, ValueType};
use crate::labels::{Labels, Matcher};
use crate::parallel::cores;
use crate::Result;

/// What the caller will do with the selected data. Implementations may use it to read less;
/// they must still return at least the samples inside `[start - range, end]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelectHints {
    /// Earliest timestamp needed (ms).
    pub start: i64,
    /// Latest timestamp needed (ms).
    pub end: i64,
    /// Query resolution step (ms), 0 for instant queries.
    pub step: i64,
    /// Range of the range selector (ms), 0 for instant selectors.
    pub range: i64,
    /// The function around the selector (`rate`, `series` for metadata calls, …), if any.
    pub func: Option<String>,
    /// Labels of the surrounding aggregation's grouping.
    pub grouping: Vec<String>,
    /// Whether the grouping is `by` (else `without`).
    pub by: bool,
    /// Maximum number of series wanted; 0 means no limit.
    pub limit: usize,
    /// Only the newest sample in `[start, end]` of each series is needed (an instant vector
    /// selector at one time): a querier may return just that sample. The head does for a
    /// series whose newest sample it holds in memory, without decoding or reading chunks.
    pub last_only: bool,
}

/// Something that can be queried over a time range: the head, a block, the whole database.
pub trait Queryable: Send + Sync {
    /// A querier over `[mint, maxt]` (ms, inclusive).
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>>;
}

/// Reads series and labels over the time range it was made for.
pub trait Querier: Send + Sync {
    /// The series matching all `matchers` (at least one matcher must not match the empty
    /// string), sorted by labels when `sorted` is true.
    fn select(&self, sorted: bool, hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet;

    /// Sorted unique values of label `name` among series matching `matchers` (all series if
    /// none). `limit` > 0 caps the count.
    fn label_values(&self, name: &str, matchers: &[Matcher], limit: usize) -> Result<Vec<String>>;

    /// Sorted unique label names among series matching `matchers` (all series if none).
    /// `limit` > 0 caps the count.
    fn label_names(&self, matchers: &[Matcher], limit: usize) -> Result<Vec<String>>;
}

/// A lazily produced sequence of series; an `Err` item ends it with the reason.
pub type SeriesSet = Box<dyn Iterator<Item = Result<Arc<dyn Series>>> + Send>;

/// One series: its labels and a way to iterate its samples.
pub trait Series: Send + Sync {
    /// The series' labels.
    fn labels(&self) -> &Labels;
    /// The series' labels, shared: series that keep them in an `Arc` hand it out without
    /// copying them.
    fn shared_labels(&self) -> Arc<Labels> {
        Arc::new(self.labels().clone())
    }
    /// The series' labels as `(name, value)` pairs in order, for comparing series without
    /// building their [`Labels`] (a block series keeps only symbol references until asked
    /// for its labels).
    fn label_pairs(&self) -> LabelPairs<'_> {
        LabelPairs::of_labels(self.labels())
    }
    /// A new iterator over the series' samples within the querier's range.
    fn iter(&self) -> Box<dyn SampleIter + '_>;
    /// Appends the series' samples in `[mint, maxt]` (within the querier's range) to `out`,
    /// in time order, as a new iterator's [`SampleIter::collect_range`] would; series
    /// override it to decode without boxing an iterator.
    fn collect_range(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> Result<()> {
        collect_with(&mut *self.iter(), mint, maxt, out)
    }
}

/// [`SampleIter::collect_range`] of `it`, then its error if it had one.
pub fn collect_with<I: SampleIter + ?Sized>(
    it: &mut I,
    mint: i64,
    maxt: i64,
    out: &mut Vec<(i64, f64)>,
) -> Result<()> {
    it.collect_range(mint, maxt, out);
    it.err().map_or(Ok(()), Err)
}

/// A series' labels as `(name, value)` pairs ([`Series::label_pairs`]).
#[derive(Clone)]
pub struct LabelPairs<'a>(PairsInner<'a>);

#[derive(Clone)]
enum PairsInner<'a> {
    Labels(std::slice::Iter<'a, crate::labels::Label>),
    Strs(std::slice::Iter<'a, (&'a str, &'a str)>),
    Symbols(
        &'a crate::index::IndexReader,
        std::slice::Iter<'a, (u32, u32)>,
    ),
}

impl<'a> LabelPairs<'a> {
    /// The pairs of `labels`.
    pub fn of_labels(labels: &'a Labels) -> Self {
        LabelPairs(PairsInner::Labels(labels.iter()))
    }

    /// The pairs of a list of `(name, value)` strings.
    pub fn of_strs(pairs: &'a [(&'a str, &'a str)]) -> Self {
        LabelPairs(PairsInner::Strs(pairs.iter()))
    }

    /// The pairs of symbol references `refs` in `index` (as read by
    /// [`crate::index::IndexReader::series_refs`], which checked them).
    pub fn of_symbols(index: &'a crate::index::IndexReader, refs: &'a [(u32, u32)]) -> Self {
        LabelPairs(PairsInner::Symbols(index, refs.iter()))
    }
}

impl<'a> Iterator for LabelPairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            PairsInner::Labels(it) => it.next().map(|l| (l.name.as_str(), l.value.as_str())),
            PairsInner::Strs(it) => it.next().copied(),
            PairsInner::Symbols(index, it) => it
                .next()
                .map(|&(n, v)| (index.symbol_or_empty(n), index.symbol_or_empty(v))),
        }
    }
}

/// Orders two series by their labels as [`Labels`] are ordered.
pub fn cmp_labels(a: &dyn Series, b: &dyn Series) -> std::cmp::Ordering {
    a.label_pairs().cmp(b.label_pairs())
}

/// Iterates the samples of one series in increasing time order.
pub trait SampleIter {
    /// Advances to the next sample and says what kind it is; `ValueType::None` at the end.
    fn next(&mut self) -> ValueType;
    /// Advances to the first sample at or after `t`; stays if already there.
    fn seek(&mut self, t: i64) -> ValueType {
        loop {
            match self.next() {
                ValueType::None => return ValueType::None,
                vt if self.at_t() >= t => return vt,
                _ => {}
            }
        }
    }
    /// The current float sample.
    fn at(&self) -> (i64, f64);
    /// The current timestamp.
    fn at_t(&self) -> i64 {
        self.at().0
    }
    /// The error that ended the iteration early, if any.
    fn err(&self) -> Option<crate::Error> {
        None
    }
    /// Appends every sample in `[mint, maxt]` to `out`, from `seek(mint)` on, leaving the
    /// iterator somewhere past them; check [`SampleIter::err`] afterwards. Implementations
    /// override it to decode without a virtual call per sample.
    fn collect_range(&mut self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        collect_range_stepwise(self, mint, maxt, out)
    }
}

/// [`SampleIter::collect_range`] done sample by sample through `seek`/`next`/`at`, for
/// implementations that override it but sometimes need the plain walk.
pub fn collect_range_stepwise<I: SampleIter + ?Sized>(
    it: &mut I,
    mint: i64,
    maxt: i64,
    out: &mut Vec<(i64, f64)>,
) {
    let mut vt = it.seek(mint);
    while vt != ValueType::None {
        let (t, v) = it.at();
        if t > maxt {
            break;
        }
        out.push((t, v));
        vt = it.next();
    }
}

/// An encoded chunk with its time range, as it is stored.
#[derive(Clone, Debug)]
pub struct ChunkMeta {
    /// First sample's timestamp.
    pub min_time: i64,
    /// Last sample's timestamp.
    pub max_time: i64,
    /// The chunk's encoding.
    pub encoding: Encoding,
    /// The encoded bytes (for XOR: header included).
    pub data: ChunkData,
}

/// A chunk's encoded bytes: all of a shared buffer, or a range of one that holds many chunks
/// read together (one allocation for a whole read instead of one per chunk). Whatever follows
/// the chunk in its buffer is there for decoders that load past a chunk's end
/// ([`ChunkData::tailed`]).
#[derive(Clone)]
pub struct ChunkData {
    buf: Arc<[u8]>,
    start: usize,
    len: usize,
}

impl ChunkData {
    /// The bytes `range` of `buf`.
    ///
    /// # Panics
    /// When `range` is not inside `buf`.
    pub fn in_buffer(buf: Arc<[u8]>, range: std::ops::Range<usize>) -> Self {
        assert!(range.start <= range.end && range.end <= buf.len());
        ChunkData {
            buf,
            start: range.start,
            len: range.end - range.start,
        }
    }

    /// Copies `chunks` into one new buffer, one after another and followed by [`PAD`] zero
    /// bytes, and gives each its part of it; errors are passed through.
    pub fn pack(chunks: Vec<Result<&[u8]>>) -> Vec<Result<ChunkData>> {
        let buf = concat_padded(chunks.iter().filter_map(|c| c.as_ref().ok().copied()));
        let mut at = 0;
        chunks
            .into_iter()
            .map(|c| {
                c.map(|c| {
                    at += c.len();
                    ChunkData::in_buffer(buf.clone(), at - c.len()..at)
                })
            })
            .collect()
    }

    /// A copy of `bytes` followed by [`PAD`] zero bytes, which the batch decoder reads where
    /// it lies.
    pub fn padded_copy(bytes: &[u8]) -> ChunkData {
        ChunkData::in_buffer(concat_padded(std::iter::once(bytes)), 0..bytes.len())
    }

    /// The chunk with the rest of its buffer after it, for the batch decoder.
    pub fn tailed(&self) -> TailedChunk<'_> {
        TailedChunk::new(&self.buf[self.start..], self.len)
    }
}

/// A new buffer holding `parts` one after another, then [`PAD`] zero bytes.
fn concat_padded<'a>(parts: impl Iterator<Item = &'a [u8]> + Clone) -> Arc<[u8]> {
    let total = parts.clone().map(<[u8]>::len).sum::<usize>() + PAD;
    let mut buf = Arc::<[u8]>::new_uninit_slice(total);
    let dst = Arc::get_mut(&mut buf).expect("a new buffer has no other owner");
    let mut at = 0;
    for p in parts {
        for (d, &b) in dst[at..at + p.len()].iter_mut().zip(p) {
            d.write(b);
        }
        at += p.len();
    }
    for d in &mut dst[at..] {
        d.write(0);
    }
    // SAFETY: every byte was written above: the parts' bytes up to `at`, zeros after.
    unsafe { buf.assume_init() }
}

impl std::ops::Deref for ChunkData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl std::fmt::Debug for ChunkData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl From<Arc<[u8]>> for ChunkData {
    fn from(buf: Arc<[u8]>) -> Self {
        let len = buf.len();
        ChunkData { buf, start: 0, len }
    }
}

impl From<&[u8]> for ChunkData {
    fn from(bytes: &[u8]) -> Self {
        Arc::<[u8]>::from(bytes).into()
    }
}

/// A series at chunk level.
#[derive(Clone, Debug)]
pub struct ChunkSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Its chunks in time order.
    pub chunks: Vec<ChunkMeta>,
}

/// A lazily produced sequence of chunk series.
pub type ChunkSeriesSet = Box<dyn Iterator<Item = Result<ChunkSeries>> + Send>;

/// Selection at chunk level, for remote read and compaction.
pub trait ChunkQuerier: Send + Sync {
    /// Like [`Querier::select`], returning chunks instead of samples.
    fn select_chunks(
        &self,
        sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> ChunkSeriesSet;
}

/// Whether a label set matches every matcher.
pub fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers.iter().all(|m| m.matches_labels(labels))
}

/// A series held as a vector of float samples.
#[derive(Clone, Debug, Default)]
pub struct VecSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Samples in increasing time order.
    pub samples: Vec<(i64, f64)>,
}

impl Series for VecSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn iter(&self) -> Box<dyn SampleIter + '_> {
        Box::new(SliceIter {
            s: &self.samples,
            i: usize::MAX,
        })
    }
}

/// Iterates a slice of float samples.
#[derive(Clone, Debug)]
pub struct SliceIter<'a> {
    s: &'a [(i64, f64)],
    /// Index of the current sample; `usize::MAX` before the first.
    i: usize,
}

impl<'a> SliceIter<'a> {
    /// An iterator positioned before the first sample of `s`.
    pub fn new(s: &'a [(i64, f64)]) -> Self {
        SliceIter { s, i: usize::MAX }
    }
}

impl SampleIter for SliceIter<'_> {
    fn next(&mut self) -> ValueType {
        self.i = self.i.wrapping_add(1);
        if self.i < self.s.len() {
            ValueType::Float
        } else {
            self.i = self.s.len();
            ValueType::None
        }
    }
    fn seek(&mut self, t: i64) -> ValueType {
        let from = if self.i == usize::MAX { 0 } else { self.i };
        if from >= self.s.len() {
            return ValueType::None;
        }
        let off = self.s[from..].partition_point(|&(st, _)| st < t);
        self.i = from + off;
        if self.i < self.s.len() {
            ValueType::Float
        } else {
            ValueType::None
        }
    }
    fn collect_range(&mut self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        let from = if self.i == usize::MAX { 0 } else { self.i };
        let rest = self.s.get(from..).unwrap_or(&[]);
        let a = rest.partition_point(|&(t, _)| t < mint);
        let b = rest.partition_point(|&(t, _)| t <= maxt).max(a);
        out.extend_from_slice(&rest[a..b]);
        self.i = (from + b).min(self.s.len());
    }
    fn at(&self) -> (i64, f64) {
        self.s[self.i]
    }
}

/// An in-memory store of float series: the reference implementation of the traits.
#[derive(Clone, Debug, Default)]
pub struct MemQueryable {
    series: Arc<Vec<Arc<VecSeries>>>,
}

impl MemQueryable {
    /// A store over the given series. Series with equal labels are merged; samples are sorted
    /// by time and, for equal timestamps, the last one given wins.
    pub fn new(series: Vec<VecSeries>) -> Self {
        let mut by_labels: std::collections::BTreeMap<Labels, Vec<(i64, f64)>> = Default::default();
        for s in series {
            by_labels.entry(s.labels).or_default().extend(s.samples);
        }
        let series = by_labels
            .into_iter()
            .map(|(labels, mut samples)| {
                samples.sort_by_key(|s| s.0);
                let mut dedup: Vec<(i64, f64)> = Vec::with_capacity(samples.len());
                for s in samples {
                    match dedup.last_mut() {
                        Some(last) if last.0 == s.0 => *last = s,
                        _ => dedup.push(s),
                    }
                }
                Arc::new(VecSeries {
                    labels,
                    samples: dedup,
                })
            })
            .collect();
        MemQueryable {
            series: Arc::new(series),
        }
    }
}

struct MemQuerier {
    series: Arc<Vec<Arc<VecSeries>>>,
    mint: i64,
    maxt: i64,
}

impl Queryable for MemQueryable {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>> {
        Ok(Box::new(MemQuerier {
            series: self.series.clone(),
            mint,
            maxt,
        }))
    }
}

impl MemQuerier {
    fn matching<'a>(
        &'a self,
        matchers: &'a [Matcher],
    ) -> impl Iterator<Item = &'a Arc<VecSeries>> + 'a {
        self.series
            .iter()
            .filter(move |s| matches_all(&s.labels, matchers))
    }
}

impl Querier for MemQuerier {
    fn select(
        &self,
        _sorted: bool,
        _hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> SeriesSet {
        // Series are kept sorted by labels, so the result is always sorted.
        let (mint, maxt) = (self.mint, self.maxt);
        let out: Vec<Result<Arc<dyn Series>>> = self
            .matching(matchers)
            .filter_map(|s| {
                let lo = s.samples.partition_point(|x| x.0 < mint);
                let hi = s.samples.partition_point(|x| x.0 <= maxt);
                (lo < hi).then(|| {
                    Ok(Arc::new(VecSeries {
                        labels: s.labels.clone(),
                        samples: s.samples[lo..hi].to_vec(),
                    }) as Arc<dyn Series>)
                })
            })
            .collect();
        Box::new(out.into_iter())
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], limit: usize) -> Result<Vec<String>> {
        let mut vals: Vec<String> = self
            .matching(matchers)
            .filter_map(|s| s.labels.get(name).map(str::to_string))
            .collect();
        vals.sort();
        vals.dedup();
        if limit > 0 {
            vals.truncate(limit);
        }
        Ok(vals)
    }

    fn label_names(&self, matchers: &[Matcher], limit: usize) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .matching(matchers)
            .flat_map(|s| s.labels.iter().map(|l| l.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        if limit > 0 {
            names.truncate(limit);
        }
        Ok(names)
    }
}

/// Selections of at least this many series are prepared (index entries read, head chunks
/// snapshotted, labels built) on several threads by the block and head queriers.
pub(crate) const PARALLEL_SELECT_MIN: usize = 2048;

/// Series a large selection prepares at once. A selection larger than this is prepared one
/// window at a time, when its reader has taken the window before: a consumer that folds series
/// as they come (the engine's fused aggregations) then holds only a window of each source's
/// series (labels, chunk lists, head chunk copies) instead of the whole selection, three times
/// over for two blocks and the head before their merge.
pub(crate) const SELECT_WINDOW: usize = 4096;

/// A series set made from `items` (series references, head series) `window` at a time by
/// `build`, which prepares one window's series in order; ends after the first error.
pub(crate) fn windowed<T: Send + 'static>(
    items: Vec<T>,
    window: usize,
    mut build: impl FnMut(Vec<T>) -> Vec<Result<Arc<dyn Series>>> + Send + 'static,
) -> SeriesSet {
    let mut rest = items.into_iter();
    let mut cur: std::vec::IntoIter<Result<Arc<dyn Series>>> = Vec::new().into_iter();
    let mut failed = false;
    Box::new(std::iter::from_fn(move || loop {
        if failed {
            return None;
        }
        if let Some(x) = cur.next() {
            failed = x.is_err();
            return Some(x);
        }
        let part: Vec<T> = rest.by_ref().take(window.max(1)).collect();
        if part.is_empty() {
            return None;
        }
        cur = build(part).into_iter();
    }))
}

/// Threads to prepare a selection of `n` series with: one per core, each with at least
/// [`PARALLEL_SELECT_MIN`] / 2 series.
pub(crate) fn select_threads(n: usize) -> usize {
    if n < PARALLEL_SELECT_MIN {
        return 1;
    }
    cores()
        .min(MAX_SELECT_THREADS)
        .min(n / (PARALLEL_SELECT_MIN / 2))
        .max(1)
}

/// Most threads one selection's work is split over.
pub(crate) const MAX_SELECT_THREADS: usize = crate::parallel::MAX_WORKERS;

/// The process-wide "thread idle" callback (see [`set_thread_idle_hook`]).
static THREAD_IDLE_HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Installs the callback that [`thread_idle`] runs: the binary installs one that hands the
/// calling thread's freed allocator pages back (the library crates do not know the global
/// allocator). Only the first call installs; returns whether this one did.
pub fn set_thread_idle_hook(hook: fn()) -> bool {
    THREAD_IDLE_HOOK.set(hook).is_ok()
}

/// Tells the process that the calling thread has finished a piece of query work and is about
/// to wait: runs the hook installed by [`set_thread_idle_hook`], if any.
pub fn thread_idle() {
    if let Some(hook) = THREAD_IDLE_HOOK.get() {
        hook();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::MatchType;

    #[test]
    fn packed_chunks_share_one_padded_buffer() {
        let (a, b) = (vec![1u8, 2, 3], vec![9u8; 40]);
        let err = || Err(crate::Error::Other("gone".into()));
        let parts = ChunkData::pack(vec![Ok(&a[..]), err(), Ok(&b[..]), Ok(&[][..])]);
        assert_eq!(parts.len(), 4);
        let d: Vec<&ChunkData> = parts.iter().filter_map(|p| p.as_ref().ok()).collect();
        assert!(parts[1].is_err());
        assert_eq!((&d[0][..], &d[1][..], d[2].len()), (&a[..], &b[..], 0));
        // Each chunk is followed by the next ones, then by PAD zeros.
        let t = d[0].tailed();
        assert_eq!(t.bytes(), &a[..]);
        assert_eq!(d[0].buf.len(), 3 + 40 + PAD);
        assert!(d[2].buf[43..].iter().all(|&z| z == 0));
        assert!(Arc::ptr_eq(&d[0].buf, &d[1].buf));
        assert_eq!(format!("{:?}", d[0]), "[1, 2, 3]");
    }

    #[test]
    fn mem_queryable_selects_by_matchers_and_range() {
        let q = MemQueryable::new(vec![
            VecSeries {
                labels: Labels::from_pairs(&[("__name__", "a"), ("x", "1")]),
                samples: vec![(1, 1.0), (5, 2.0)],
            },
            VecSeries {
                labels: Labels::from_pairs(&[("__name__", "a"), ("x", "2")]),
                samples: vec![(10, 3.0)],
            },
            VecSeries {
                labels: Labels::from_pairs(&[("__name__", "b")]),
                samples: vec![(1, 4.0)],
            },
        ]);
        let qr = q.querier(0, 5).unwrap();
        let m = [Matcher::new(MatchType::Equal, "__name__", "a").unwrap()];
        let got: Vec<_> = qr.select(true, None, &m).map(|s| s.unwrap()).collect();
        assert_eq!(got.len(), 1);
        let mut it = got[0].iter();
        assert_eq!(it.seek(2), ValueType::Float);
        assert_eq!(it.at(), (5, 2.0));
        assert_eq!(it.next(), ValueType::None);
        assert_eq!(qr.label_values("x", &m, 0).unwrap(), vec!["1", "2"]);
        assert_eq!(qr.label_names(&[], 0).unwrap(), vec!["__name__", "x"]);
    }
}
