//! Compaction: writing blocks ([`BlockWriter`], [`write_block`]), cutting raw samples into
//! chunks the way Prometheus does, merging blocks (also overlapping ones, with deduplication of
//! equal timestamps) and the leveled planner of Prometheus's `LeveledCompactor`.
//!
//! A block is written into `<parent>/<ulid>.tmp-for-creation`, every file is fsynced, then the
//! directory is renamed to `<parent>/<ulid>` and the parent fsynced, so a crash leaves either
//! the whole block or a `.tmp-for-creation` directory that openers ignore and may delete.
//!
//! Planning (same rules as Prometheus): blocks are sorted by `minTime`; if any overlap, the
//! first run of overlapping blocks is compacted. Otherwise the newest block is left out, and for
//! each range after the first (2h → 6h → 18h → …) the blocks are split into aligned windows of
//! that range; the first window holding more than one block that either spans the whole range or
//! ends before the newest block's start is picked. Failing that, one big enough block with more
//! than 5 % tombstones is picked for rewriting.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ulid::Ulid;

use crate::block::{write_meta, Block, BlockDesc, BlockMeta, CHUNKS_DIRNAME, INDEX_FILENAME};
use crate::chunkenc::{Encoding, ValueType, XorAppender, XorIterator};
use crate::chunks::{sync_dir, ChunkWriter};
use crate::index::{ChunkRefMeta, IndexWriter};
use crate::labels::{Labels, MatchType, Matcher};
use crate::querier::{ChunkData, ChunkMeta, ChunkSeries, ChunkSeriesSet};
use crate::tombstones::{write_tombstones, Tombstones};
use crate::{Error, Result};

/// Default duration of a head block and of the first compaction level: 2h in ms.
pub const DEFAULT_BLOCK_DURATION: i64 = 2 * 60 * 60 * 1000;
/// Samples per chunk the head aims for; also the split size of merged chunks.
pub const SAMPLES_PER_CHUNK: usize = 120;
/// Most samples of a chunk in a block written from the head: consecutive head chunks of a
/// series are joined up to it ([`join_chunks`]). A series scraped every 15 s has one chunk per
/// 2h block instead of four, so a range query over blocks locates a quarter of the chunks and
/// decodes the samples ~15–25% faster (the two first samples of a chunk, a varint time and a
/// raw value, take the slow path, and each chunk sets up a decoder). The price is paid by
/// queries that read a few samples of a block: the chunk holding them is decoded from its start
/// up to them ([`crate::chunkenc::xor::decode_chunk_cut_spanned`]).
pub const BLOCK_CHUNK_MAX_SAMPLES: usize = 480;
/// Suffix of a block directory being written.
pub const TMP_FOR_CREATION_SUFFIX: &str = ".tmp-for-creation";

/// Ranges `min_size`, `min_size * step_size`, … (`steps` of them), as Prometheus's
/// `ExponentialBlockRanges`.
pub fn exponential_block_ranges(min_size: i64, steps: usize, step_size: i64) -> Vec<i64> {
    let mut out = Vec::with_capacity(steps);
    let mut cur = min_size;
    for _ in 0..steps {
        out.push(cur);
        cur = cur.saturating_mul(step_size);
    }
    out
}

/// End of the chunk range holding `t`: `(t / width) * width + width`.
fn range_for_timestamp(t: i64, width: i64) -> i64 {
    (t / width) * width + width
}

/// Prometheus's `computeChunkEndTime`: an end time spreading the remaining samples of a range
/// evenly over chunks, given the first (`start`) and current (`cur`) timestamps.
fn compute_chunk_end_time(start: i64, cur: i64, max: i64) -> i64 {
    let denom = (cur - start + 1).saturating_mul(4);
    let n = if denom == 0 { 0 } else { (max - start) / denom };
    if n <= 1 {
        return max;
    }
    start + (max - start) / n
}

fn finish_chunk(app: XorAppender, min_time: i64, max_time: i64) -> ChunkMeta {
    ChunkMeta {
        min_time,
        max_time,
        encoding: Encoding::Xor,
        data: ChunkData::from(app.bytes()),
    }
}

/// Cuts float samples (in increasing time order; out-of-order or duplicate timestamps are
/// dropped) into XOR chunks exactly as Prometheus's head does with chunk range `chunk_range`
/// (the block duration, 2h by default): a chunk ends at the chunk range's boundary, its end is
/// re-estimated after 30 samples to spread samples evenly (about 120 per chunk), and it is cut
/// at the latest at 240 samples.
pub fn chunks_from_samples(samples: &[(i64, f64)], chunk_range: i64) -> Vec<ChunkMeta> {
    let chunk_range = chunk_range.max(1);
    let mut out = Vec::new();
    let mut cur: Option<(XorAppender, i64, i64)> = None;
    let mut next_at = i64::MAX;
    for &(t, v) in samples {
        if let Some((app, min_t, max_t)) = &mut cur {
            if t <= *max_t {
                continue;
            }
            let n = app.num_samples();
            if n == SAMPLES_PER_CHUNK / 4 {
                next_at = compute_chunk_end_time(*min_t, *max_t, next_at);
            }
            if t >= next_at || n >= SAMPLES_PER_CHUNK * 2 {
                if let Some((app, lo, hi)) = cur.take() {
                    out.push(finish_chunk(app, lo, hi));
                }
            }
        }
        match &mut cur {
            Some((app, _, max_t)) => {
                app.append(t, v);
                *max_t = t;
            }
            None => {
                let mut app = XorAppender::new();
                app.append(t, v);
                next_at = range_for_timestamp(t, chunk_range);
                cur = Some((app, t, t));
            }
        }
    }
    if let Some((app, lo, hi)) = cur {
        out.push(finish_chunk(app, lo, hi));
    }
    out
}

/// Cuts float samples (in increasing time order) into XOR chunks of at most `max` samples, as
/// Prometheus re-encodes merged overlapping chunks.
pub fn chunks_split(samples: &[(i64, f64)], max: usize) -> Vec<ChunkMeta> {
    let max = max.clamp(1, crate::chunkenc::xor::MAX_SAMPLES);
    samples
        .chunks(max)
        .map(|part| {
            let mut app = XorAppender::new();
            for &(t, v) in part {
                app.append(t, v);
            }
            finish_chunk(app, part[0].0, part[part.len() - 1].0)
        })
        .collect()
}

/// A chunk series from raw samples, cut as the head does with the default 2h chunk range.
pub fn chunk_series_from_samples(labels: Labels, samples: &[(i64, f64)]) -> ChunkSeries {
    ChunkSeries {
        labels,
        chunks: chunks_from_samples(samples, DEFAULT_BLOCK_DURATION),
    }
}

/// A chunk series from raw samples, cut as a head with chunk range `chunk_range` does
/// (`promtool tsdb create-blocks-from` uses twice the block duration).
pub fn chunk_series_with_range(
    labels: Labels,
    samples: &[(i64, f64)],
    chunk_range: i64,
) -> ChunkSeries {
    ChunkSeries {
        labels,
        chunks: chunks_from_samples(samples, chunk_range),
    }
}

/// Decodes the samples of an XOR chunk.
pub fn decode_chunk(c: &ChunkMeta) -> Result<Vec<(i64, f64)>> {
    if c.encoding != Encoding::Xor {
        return Err(Error::Other(format!(
            "chunk encoding {:?} is not supported",
            c.encoding
        )));
    }
    let mut it = XorIterator::new(&c.data);
    let mut out = Vec::with_capacity(crate::chunkenc::xor::num_samples(&c.data));
    while it.next() == ValueType::Float {
        out.push(it.at());
    }
    if let Some(e) = it.err() {
        return Err(e);
    }
    Ok(out)
}

/// Number of samples a chunk holds (every encoding starts with a big-endian u16 count).
fn chunk_num_samples(data: &[u8]) -> u64 {
    crate::chunkenc::xor::num_samples(data) as u64
}

/// Writes one block from chunk series sorted by labels.
#[derive(Clone, Debug)]
pub struct BlockWriter {
    parent: PathBuf,
    meta: BlockMeta,
    segment_size: u64,
}

impl BlockWriter {
    /// A writer of a new level-1 block over `[min_time, max_time)` into directory `parent`.
    pub fn new(parent: impl AsRef<Path>, min_time: i64, max_time: i64) -> Self {
        let ulid = Ulid::new();
        BlockWriter {
            parent: parent.as_ref().to_path_buf(),
            meta: BlockMeta::new(ulid, min_time, max_time),
            segment_size: crate::chunks::DEFAULT_SEGMENT_SIZE,
        }
    }

    /// Uses the given ULID instead of a fresh one (sources that named the old ULID follow).
    pub fn ulid(mut self, ulid: Ulid) -> Self {
        let old = self.meta.ulid;
        self.meta.ulid = ulid;
        for s in &mut self.meta.compaction.sources {
            if *s == old {
                *s = ulid;
            }
        }
        self
    }

    /// Sets the maximum size of a chunk segment file (512 MiB by default).
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Sets the compaction level.
    pub fn level(mut self, level: u32) -> Self {
        self.meta.compaction.level = level;
        self
    }

    /// Sets the source blocks; an empty list means the block is its own source.
    pub fn sources(mut self, sources: &[Ulid]) -> Self {
        self.meta.compaction.sources = if sources.is_empty() {
            vec![self.meta.ulid]
        } else {
            let set: BTreeSet<Ulid> = sources.iter().copied().collect();
            set.into_iter().collect()
        };
        self
    }

    /// Sets the parent blocks.
    pub fn parents(mut self, parents: Vec<BlockDesc>) -> Self {
        self.meta.compaction.parents = parents;
        self
    }

    /// Adds an unparsed `meta.json` key (e.g. `thanos`).
    pub fn extra(mut self, key: &str, value: serde_json::Value) -> Self {
        self.meta.extra.insert(key.to_string(), value);
        self
    }

    /// The ULID the block will have.
    pub fn block_ulid(&self) -> Ulid {
        self.meta.ulid
    }

    /// Writes the block and returns its meta. Series must be sorted by labels with unique
    /// label sets; series without chunks are skipped.
    ///
    /// The symbols are known only after the last series, so the index is written at the end:
    /// until then each series is kept as its label strings' numbers in a string table (each
    /// distinct string once) and its chunk references, about 8 bytes per label and 24 per
    /// chunk. A source that knows its symbols up front streams with
    /// [`BlockWriter::write_from`] instead.
    pub fn write(self, series: impl Iterator<Item = Result<ChunkSeries>>) -> Result<BlockMeta> {
        self.write_with(|w, tmp| w.write_buffered(tmp, series))
    }

    /// Writes the block from a source listing its symbols first, then its series by symbol
    /// numbers: each series goes to the chunk files and the index at once, so nothing is kept
    /// per series but its postings entries. Series without chunks are skipped.
    pub fn write_from(self, source: &mut dyn SymbolSeriesSource) -> Result<BlockMeta> {
        self.write_with(|w, tmp| w.write_streamed(tmp, source))
    }

    fn write_with(
        self,
        f: impl FnOnce(&BlockWriter, &Path) -> Result<BlockMeta>,
    ) -> Result<BlockMeta> {
        let dir = self.parent.join(self.meta.ulid.to_string());
        let tmp = self
            .parent
            .join(format!("{}{TMP_FOR_CREATION_SUFFIX}", self.meta.ulid));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        match f(&self, &tmp) {
            Ok(meta) => {
                fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
                sync_dir(&self.parent)?;
                Ok(meta)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    fn write_buffered(
        &self,
        tmp: &Path,
        series: impl Iterator<Item = Result<ChunkSeries>>,
    ) -> Result<BlockMeta> {
        let mut meta = self.meta.clone();
        let mut cw = ChunkWriter::with_segment_size(tmp.join(CHUNKS_DIRNAME), self.segment_size)?;
        // Prometheus's symbol tables always hold the empty string (the all-postings key).
        let mut table = StringTable::default();
        table.id("");
        // Per series: label string numbers and chunk references, flattened.
        let mut ids: Vec<u32> = Vec::new();
        let mut ids_end: Vec<usize> = Vec::new();
        let mut refs: Vec<ChunkRefMeta> = Vec::new();
        let mut refs_end: Vec<usize> = Vec::new();
        let mut scratch = ChunkScratch::default();
        let mut last: Option<Labels> = None;
        for s in series {
            let s = s?;
            if let Some(last) = &last {
                if &s.labels <= last {
                    return Err(Error::InvalidArgument(format!(
                        "series {} not in increasing label order (after {})",
                        s.labels, last
                    )));
                }
            }
            let before = refs.len();
            scratch.write(&mut cw, &s.chunks, &mut refs, &mut meta)?;
            if refs.len() == before {
                continue;
            }
            for l in s.labels.iter() {
                ids.push(table.id(&l.name));
                ids.push(table.id(&l.value));
            }
            ids_end.push(ids.len());
            refs_end.push(refs.len());
            meta.stats.num_series += 1;
            last = Some(s.labels);
        }
        cw.close()?;
        let mut iw = IndexWriter::create(tmp.join(INDEX_FILENAME))?;
        let rank = table.sorted(|s| iw.add_symbol(s))?;
        let (mut i0, mut c0) = (0, 0);
        let mut cur = Vec::new();
        for (&ie, &ce) in ids_end.iter().zip(&refs_end) {
            cur.clear();
            cur.extend(ids[i0..ie].iter().map(|&i| rank[i as usize]));
            iw.add_series_ids(&cur, &refs[c0..ce])?;
            (i0, c0) = (ie, ce);
        }
        iw.close()?;
        write_tombstones(tmp, &Tombstones::new())?;
        write_meta(tmp, &meta)?;
        sync_dir(tmp)?;
        Ok(meta)
    }

    fn write_streamed(&self, tmp: &Path, source: &mut dyn SymbolSeriesSource) -> Result<BlockMeta> {
        let mut meta = self.meta.clone();
        let mut cw = ChunkWriter::with_segment_size(tmp.join(CHUNKS_DIRNAME), self.segment_size)?;
        let mut iw = IndexWriter::create(tmp.join(INDEX_FILENAME))?;
        source.symbols(&mut |s| {
            if iw.num_symbols() == 0 && !s.is_empty() {
                // Prometheus's symbol tables always start with the empty string.
                iw.add_symbol("")?;
            }
            iw.add_symbol(s)
        })?;
        if iw.num_symbols() == 0 {
            iw.add_symbol("")?;
        }
        let mut labels = Vec::new();
        let mut chunks = Vec::new();
        let mut refs = Vec::new();
        let mut scratch = ChunkScratch::default();
        loop {
            labels.clear();
            chunks.clear();
            if !source.next_series(&mut labels, &mut chunks)? {
                break;
            }
            refs.clear();
            scratch.write(&mut cw, &chunks, &mut refs, &mut meta)?;
            if refs.is_empty() {
                continue;
            }
            iw.add_series_ids(&labels, &refs)?;
            meta.stats.num_series += 1;
        }
        drop(chunks);
        cw.close()?;
        iw.close()?;
        write_tombstones(tmp, &Tombstones::new())?;
        write_meta(tmp, &meta)?;
        sync_dir(tmp)?;
        Ok(meta)
    }
}

/// Series for [`BlockWriter::write_from`]: the sorted symbols first, then the series in label
/// order with their labels as symbol numbers.
pub trait SymbolSeriesSource {
    /// Calls `f` with every string the series' labels use, sorted and unique (more strings do
    /// no harm). The empty string is added first if it is not the first one given.
    fn symbols(&mut self, f: &mut dyn FnMut(&str) -> Result<()>) -> Result<()>;

    /// Fills `labels` (cleared by the caller) with the next series' label pairs as symbol
    /// numbers — name, value, name, value… where a number is the position of the string among
    /// the symbols, counting the empty string as 0 — and `chunks` with its chunks in time
    /// order. Returns `false` after the last series.
    fn next_series(&mut self, labels: &mut Vec<u32>, chunks: &mut Vec<ChunkMeta>) -> Result<bool>;
}

/// Distinct strings numbered in the order they come.
#[derive(Default)]
struct StringTable {
    ids: std::collections::HashMap<Arc<str>, u32>,
    strs: Vec<Arc<str>>,
}

impl StringTable {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.strs.len() as u32;
        let a: Arc<str> = Arc::from(s);
        self.strs.push(a.clone());
        self.ids.insert(a, i);
        i
    }

    /// Calls `add` with the strings in sorted order and returns, per string number, its
    /// position in that order. The table is emptied.
    fn sorted(&mut self, mut add: impl FnMut(&str) -> Result<()>) -> Result<Vec<u32>> {
        self.ids = Default::default();
        let strs = std::mem::take(&mut self.strs);
        let mut order: Vec<u32> = (0..strs.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| strs[a as usize].cmp(&strs[b as usize]));
        let mut rank = vec![0u32; strs.len()];
        for (pos, &i) in order.iter().enumerate() {
            add(&strs[i as usize])?;
            rank[i as usize] = pos as u32;
        }
        Ok(rank)
    }
}

/// Buffers reused while writing the chunks of one series after another.
#[derive(Default)]
struct ChunkScratch {
    crefs: Vec<u64>,
}

impl ChunkScratch {
    /// Writes the chunks holding samples to `cw`, appends their references to `refs` and
    /// counts them in `meta`'s stats.
    fn write(
        &mut self,
        cw: &mut ChunkWriter,
        chunks: &[ChunkMeta],
        refs: &mut Vec<ChunkRefMeta>,
        meta: &mut BlockMeta,
    ) -> Result<()> {
        let data: Vec<(Encoding, &[u8])> = chunks
            .iter()
            .filter(|c| chunk_num_samples(&c.data) > 0)
            .map(|c| (c.encoding, &c.data[..]))
            .collect();
        if data.is_empty() {
            return Ok(());
        }
        self.crefs.clear();
        self.crefs.resize(data.len(), 0);
        cw.write_chunks(&data, &mut self.crefs)?;
        let kept = chunks.iter().filter(|c| chunk_num_samples(&c.data) > 0);
        for (c, &r) in kept.zip(&self.crefs) {
            refs.push(ChunkRefMeta {
                min_time: c.min_time,
                max_time: c.max_time,
                chunk_ref: r,
            });
            meta.stats.num_samples += chunk_num_samples(&c.data);
            meta.stats.num_chunks += 1;
        }
        Ok(())
    }
}

/// Writes a block into `<parent_dir>/<ulid>` from chunk series sorted by labels, covering
/// `[min_time, max_time)`. `sources` empty means a fresh level-1 block that is its own source.
pub fn write_block(
    parent_dir: impl AsRef<Path>,
    series: impl IntoIterator<Item = ChunkSeries>,
    min_time: i64,
    max_time: i64,
    level: u32,
    sources: &[Ulid],
) -> Result<Ulid> {
    let w = BlockWriter::new(parent_dir, min_time, max_time)
        .level(level)
        .sources(sources);
    let meta = w.write(series.into_iter().map(Ok))?;
    Ok(meta.ulid)
}

/// Joins runs of consecutive XOR chunks of one series (in time order) into chunks of at most
/// `max` samples, each run re-encoded as one chunk: the same samples, bit for bit. A chunk
/// that overlaps the one before, holds another encoding, or does not decode (it is kept as it
/// is, to fail where it is read) ends a run.
pub fn join_chunks(chunks: &mut Vec<ChunkMeta>, max: usize) {
    let max = max.min(crate::chunkenc::xor::MAX_SAMPLES);
    if chunks.len() < 2 {
        return;
    }
    let mut out: Vec<ChunkMeta> = Vec::with_capacity(chunks.len());
    let mut run: Vec<ChunkMeta> = Vec::new();
    let mut run_samples = 0usize;
    let mut samples = Vec::new();
    let flush =
        |run: &mut Vec<ChunkMeta>, out: &mut Vec<ChunkMeta>, samples: &mut Vec<(i64, f64)>| {
            if run.len() > 1 {
                samples.clear();
                let bytes: Vec<&[u8]> = run.iter().map(|c| &c.data[..]).collect();
                if crate::chunkenc::xor::decode_chunks_into(&bytes, samples).is_ok() {
                    let mut app = XorAppender::new();
                    for &(t, v) in samples.iter() {
                        app.append(t, v);
                    }
                    let (first, last) = (samples[0].0, samples[samples.len() - 1].0);
                    out.push(finish_chunk(app, first, last));
                    run.clear();
                    return;
                }
            }
            out.append(run);
        };
    for c in chunks.drain(..) {
        let n = chunk_num_samples(&c.data) as usize;
        let joins = c.encoding == Encoding::Xor
            && n > 0
            && run.last().is_some_and(|p| p.max_time < c.min_time)
            && run_samples + n <= max;
        if !joins {
            flush(&mut run, &mut out, &mut samples);
            run_samples = 0;
        }
        if c.encoding == Encoding::Xor && n > 0 {
            run_samples += n;
            run.push(c);
        } else {
            out.push(c);
        }
    }
    flush(&mut run, &mut out, &mut samples);
    *chunks = out;
}

/// Merges the chunk lists of one series from several sources (earlier sources win on equal
/// timestamps). Chunks that overlap no other are kept as they are; each run of overlapping
/// chunks is decoded, deduplicated and re-cut into chunks of at most 120 samples.
pub fn merge_chunks(lists: Vec<Vec<ChunkMeta>>) -> Result<Vec<ChunkMeta>> {
    if lists.len() == 1 {
        return Ok(lists.into_iter().next().unwrap_or_default());
    }
    let mut all: Vec<(usize, ChunkMeta)> = lists
        .into_iter()
        .enumerate()
        .flat_map(|(i, l)| l.into_iter().map(move |c| (i, c)))
        .collect();
    all.sort_by_key(|(i, c)| (c.min_time, *i));
    let mut out = Vec::with_capacity(all.len());
    let mut group: Vec<(usize, ChunkMeta)> = Vec::new();
    let mut group_max = i64::MIN;
    let flush = |group: &mut Vec<(usize, ChunkMeta)>, out: &mut Vec<ChunkMeta>| -> Result<()> {
        if group.len() == 1 {
            if let Some((_, c)) = group.pop() {
                out.push(c);
            }
            return Ok(());
        }
        let mut samples: Vec<(i64, usize, f64)> = Vec::new();
        for (i, c) in group.iter() {
            samples.extend(decode_chunk(c)?.into_iter().map(|(t, v)| (t, *i, v)));
        }
        samples.sort_by_key(|&(t, i, _)| (t, i));
        samples.dedup_by_key(|s| s.0);
        let plain: Vec<(i64, f64)> = samples.into_iter().map(|(t, _, v)| (t, v)).collect();
        out.extend(chunks_split(&plain, SAMPLES_PER_CHUNK));
        group.clear();
        Ok(())
    };
    for (i, c) in all {
        if !group.is_empty() && c.min_time > group_max {
            flush(&mut group, &mut out)?;
        }
        group_max = if group.is_empty() {
            c.max_time
        } else {
            group_max.max(c.max_time)
        };
        group.push((i, c));
    }
    if !group.is_empty() {
        flush(&mut group, &mut out)?;
    }
    Ok(out)
}

/// Merges chunk series sets, each sorted by labels, into one sorted set; series with equal
/// labels have their chunks merged with [`merge_chunks`].
pub fn merge_chunk_series_sets(sets: Vec<ChunkSeriesSet>) -> ChunkSeriesSet {
    let mut heads: Vec<Option<ChunkSeries>> = Vec::with_capacity(sets.len());
    let mut sets = sets;
    let mut failed: Option<Error> = None;
    for s in sets.iter_mut() {
        match s.next() {
            Some(Ok(cs)) => heads.push(Some(cs)),
            Some(Err(e)) => {
                failed.get_or_insert(e);
                heads.push(None);
            }
            None => heads.push(None),
        }
    }
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        if let Some(e) = failed.take() {
            done = true;
            return Some(Err(e));
        }
        let min = heads.iter().flatten().map(|c| &c.labels).min().cloned()?;
        let mut lists = Vec::new();
        for (i, h) in heads.iter_mut().enumerate() {
            if h.as_ref().is_some_and(|c| c.labels == min) {
                if let Some(c) = h.take() {
                    lists.push(c.chunks);
                }
                match sets[i].next() {
                    Some(Ok(cs)) => *h = Some(cs),
                    Some(Err(e)) => {
                        done = true;
                        return Some(Err(e));
                    }
                    None => {}
                }
            }
        }
        match merge_chunks(lists) {
            Ok(chunks) => Some(Ok(ChunkSeries {
                labels: min,
                chunks,
            })),
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    }))
}

/// A block directory with its meta, as the planner sees it.
#[derive(Clone, Debug)]
pub struct DirMeta {
    /// The block directory.
    pub dir: PathBuf,
    /// Its `meta.json`.
    pub meta: BlockMeta,
}

/// Plans and runs compactions with Prometheus's leveled strategy.
#[derive(Clone, Debug)]
pub struct Compactor {
    ranges: Vec<i64>,
}

impl Compactor {
    /// A compactor over the given block ranges (ms), smallest first.
    pub fn new(ranges: Vec<i64>) -> Self {
        Compactor { ranges }
    }

    /// Prometheus's default ranges: 2h ×3 per level, ten levels, cut at the first range above
    /// `max_block_duration`.
    pub fn with_max_block_duration(max_block_duration: i64) -> Self {
        let mut r = exponential_block_ranges(DEFAULT_BLOCK_DURATION, 10, 3);
        if let Some(i) = r.iter().position(|&v| v > max_block_duration) {
            r.truncate(i.max(1));
        }
        Compactor::new(r)
    }

    /// The block ranges.
    pub fn ranges(&self) -> &[i64] {
        &self.ranges
    }

    /// Reads the metas of every block directory under `dir` (ignoring `.tmp…` directories and
    /// directories without a `meta.json`) and plans.
    pub fn plan_dir(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        let mut dms = Vec::new();
        for p in crate::block::block_dirs(dir)? {
            let meta = crate::block::read_meta(&p)?;
            dms.push(DirMeta { dir: p, meta });
        }
        Ok(self.plan(dms))
    }

    /// The block directories to compact next (empty when nothing is due).
    pub fn plan(&self, mut dms: Vec<DirMeta>) -> Vec<PathBuf> {
        dms.sort_by_key(|d| d.meta.min_time);
        let res = select_overlapping_dirs(&dms);
        if !res.is_empty() {
            return res;
        }
        if dms.is_empty() {
            return Vec::new();
        }
        // Leave out the newest block: it was just cut from the head.
        dms.pop();
        let sel = self.select_dirs(&dms);
        if !sel.is_empty() {
            return sel.into_iter().map(|d| d.dir.clone()).collect();
        }
        // Rewrite a big enough block with many tombstones.
        let half = self.ranges.get(self.ranges.len() / 2).copied().unwrap_or(0);
        for d in dms.iter().rev() {
            let m = &d.meta;
            if m.max_time - m.min_time < half {
                if m.stats.num_tombstones > 0 && m.stats.num_tombstones >= m.stats.num_series {
                    return vec![d.dir.clone()];
                }
                break;
            }
            if m.stats.num_tombstones as f64 / (m.stats.num_series + 1) as f64 > 0.05 {
                return vec![d.dir.clone()];
            }
        }
        Vec::new()
    }

    fn select_dirs<'a>(&self, ds: &'a [DirMeta]) -> Vec<&'a DirMeta> {
        if self.ranges.len() < 2 || ds.is_empty() {
            return Vec::new();
        }
        let high_time = ds[ds.len() - 1].meta.min_time;
        for &iv in self.ranges[1..].iter().filter(|&&iv| iv > 0) {
            for p in split_by_range(ds, iv) {
                if p.iter().any(|d| d.meta.compaction.failed) {
                    continue;
                }
                let mint = p[0].meta.min_time;
                let maxt = p[p.len() - 1].meta.max_time;
                if (maxt - mint == iv || maxt <= high_time) && p.len() > 1 {
                    return p;
                }
            }
        }
        Vec::new()
    }

    /// Compacts the blocks in `dirs` into one new block in `dest`.
    pub fn compact_dirs(&self, dest: impl AsRef<Path>, dirs: &[PathBuf]) -> Result<Option<Ulid>> {
        let blocks = dirs.iter().map(Block::open).collect::<Result<Vec<_>>>()?;
        self.compact(dest, &blocks)
    }

    /// Merges `blocks` (overlapping or not) into one new block in `dest`: level one above the
    /// highest input, sources the union of theirs, parents the inputs. Tombstones are applied.
    /// Returns `None` (and writes nothing) when the result would hold no samples.
    pub fn compact(&self, dest: impl AsRef<Path>, blocks: &[Block]) -> Result<Option<Ulid>> {
        let dest = dest.as_ref();
        if blocks.is_empty() {
            return Ok(None);
        }
        let mut sorted: Vec<&Block> = blocks.iter().collect();
        sorted.sort_by_key(|b| b.min_time());
        let min_time = sorted.iter().map(|b| b.min_time()).min().unwrap_or(0);
        let max_time = sorted.iter().map(|b| b.max_time()).max().unwrap_or(0);
        let level = sorted
            .iter()
            .map(|b| b.meta().compaction.level)
            .max()
            .unwrap_or(0)
            + 1;
        let sources: Vec<Ulid> = sorted
            .iter()
            .flat_map(|b| b.meta().compaction.sources.iter().copied())
            .collect();
        let parents: Vec<BlockDesc> = sorted
            .iter()
            .map(|b| BlockDesc {
                ulid: b.ulid(),
                min_time: b.min_time(),
                max_time: b.max_time(),
            })
            .collect();
        let all = Matcher::new(MatchType::Regexp, crate::labels::METRIC_NAME, ".*")?;
        let mut sets = Vec::with_capacity(sorted.len());
        for b in &sorted {
            let q = b.block_querier(b.min_time(), b.max_time() - 1);
            sets.push(crate::querier::ChunkQuerier::select_chunks(
                &q,
                true,
                None,
                std::slice::from_ref(&all),
            ));
        }
        let mut w = BlockWriter::new(dest, min_time, max_time)
            .level(level)
            .sources(&sources)
            .parents(parents);
        // Keep the Thanos section of the inputs when they all agree on it.
        if let Some(th) = sorted[0].meta().thanos() {
            if sorted.iter().all(|b| b.meta().thanos() == Some(th)) {
                w = w.extra("thanos", th.clone());
            }
        }
        let ulid = w.block_ulid();
        let meta = w.write(merge_chunk_series_sets(sets))?;
        if meta.stats.num_samples == 0 {
            let dir = dest.join(ulid.to_string());
            fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            return Ok(None);
        }
        Ok(Some(ulid))
    }
}

/// The first run of blocks (sorted by min time) that overlap one another, as directories.
fn select_overlapping_dirs(ds: &[DirMeta]) -> Vec<PathBuf> {
    if ds.len() < 2 {
        return Vec::new();
    }
    let mut out: Vec<PathBuf> = Vec::new();
    let mut global_maxt = ds[0].meta.max_time;
    for i in 1..ds.len() {
        let d = &ds[i];
        if d.meta.min_time < global_maxt {
            if out.is_empty() {
                out.push(ds[i - 1].dir.clone());
            }
            out.push(d.dir.clone());
        } else if !out.is_empty() {
            break;
        }
        global_maxt = global_maxt.max(d.meta.max_time);
    }
    out
}

/// Groups blocks (sorted by min time) into windows of `tr` aligned to multiples of `tr`;
/// blocks not fitting a window are skipped.
fn split_by_range(ds: &[DirMeta], tr: i64) -> Vec<Vec<&DirMeta>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ds.len() {
        let m = &ds[i].meta;
        let t0 = if m.min_time >= 0 {
            tr * (m.min_time / tr)
        } else {
            tr * ((m.min_time - tr + 1) / tr)
        };
        if m.max_time > t0 + tr {
            i += 1;
            continue;
        }
        let mut group = Vec::new();
        while i < ds.len() {
            if ds[i].meta.max_time > t0 + tr {
                break;
            }
            group.push(&ds[i]);
            i += 1;
        }
        if !group.is_empty() {
            out.push(group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_chunk_cutting_matches_prometheus_shape() {
        // 15s samples over 2h: 4 chunks of 120 samples each, cut at 30 min boundaries.
        let samples: Vec<(i64, f64)> = (0..480).map(|i| (i * 15_000, i as f64)).collect();
        let chunks = chunks_from_samples(&samples, DEFAULT_BLOCK_DURATION);
        assert_eq!(chunks.len(), 4);
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(chunk_num_samples(&c.data), 120);
            assert_eq!(c.min_time, i as i64 * 1_800_000);
        }
        // 1s samples: capped at 240 per chunk at first, later chunks re-estimated.
        let dense: Vec<(i64, f64)> = (0..1000).map(|i| (i * 1000, 1.0)).collect();
        let chunks = chunks_from_samples(&dense, DEFAULT_BLOCK_DURATION);
        assert!(chunks.iter().all(|c| chunk_num_samples(&c.data) <= 240));
        let total: u64 = chunks.iter().map(|c| chunk_num_samples(&c.data)).sum();
        assert_eq!(total, 1000);
        // a chunk never crosses the chunk range boundary
        let cross: Vec<(i64, f64)> = (0..10)
            .map(|i| (7_200_000 - 5_000 + i * 1000, 1.0))
            .collect();
        let chunks = chunks_from_samples(&cross, DEFAULT_BLOCK_DURATION);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].min_time, 7_200_000);
    }

    #[test]
    fn join_chunks_joins_consecutive_chunks_up_to_the_limit() {
        let bits = |cs: &[ChunkMeta]| -> Vec<(i64, u64)> {
            cs.iter()
                .flat_map(|c| decode_chunk(c).unwrap())
                .map(|(t, v)| (t, v.to_bits()))
                .collect()
        };
        // Two hours at 15 s, with a stale marker and a reset: four head chunks become one.
        let samples: Vec<(i64, f64)> = (0..480)
            .map(|i| {
                let v = match i {
                    100 => f64::from_bits(crate::chunkenc::STALE_NAN_BITS),
                    _ if i > 300 => (i - 300) as f64 * 0.25,
                    _ => i as f64 * 1.5,
                };
                (i * 15_000 + i % 3, v)
            })
            .collect();
        let mut chunks = chunks_from_samples(&samples, DEFAULT_BLOCK_DURATION);
        let want = bits(&chunks);
        assert_eq!(chunks.len(), 4);
        join_chunks(&mut chunks, BLOCK_CHUNK_MAX_SAMPLES);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunk_num_samples(&chunks[0].data), 480);
        assert_eq!(
            (chunks[0].min_time, chunks[0].max_time),
            (0, 479 * 15_000 + 2)
        );
        assert_eq!(bits(&chunks), want);
        // A lower limit joins what fits: 120 + 120, then 120 + 120.
        let mut chunks = chunks_from_samples(&samples, DEFAULT_BLOCK_DURATION);
        join_chunks(&mut chunks, 300);
        let sizes: Vec<u64> = chunks.iter().map(|c| chunk_num_samples(&c.data)).collect();
        assert_eq!(sizes, vec![240, 240]);
        assert_eq!(bits(&chunks), want);
        // Overlapping chunks and chunks that do not decode are left as they are.
        let a = chunks_split(&[(1, 1.0), (5, 2.0)], 120);
        let b = chunks_split(&[(5, 3.0), (6, 4.0)], 120);
        let mut broken = chunks_split(&[(7, 1.0), (8, 2.0), (9, 3.0)], 120);
        let mut data = broken[0].data.to_vec();
        data.truncate(data.len() - 2);
        broken[0].data = ChunkData::from(&data[..]);
        let c = chunks_split(&[(20, 1.0)], 120);
        let mut chunks: Vec<ChunkMeta> = [a, b, broken, c].concat();
        let before: Vec<Vec<u8>> = chunks.iter().map(|c| c.data.to_vec()).collect();
        join_chunks(&mut chunks, BLOCK_CHUNK_MAX_SAMPLES);
        let after: Vec<Vec<u8>> = chunks.iter().map(|c| c.data.to_vec()).collect();
        assert_eq!(after, before);
    }

    #[test]
    fn merge_chunks_dedups_overlaps_and_keeps_disjoint_chunks() {
        let a = chunks_split(&[(1, 1.0), (2, 2.0), (3, 3.0)], 120);
        let b = chunks_split(&[(3, 30.0), (4, 4.0)], 120);
        let c = chunks_split(&[(10, 10.0)], 120);
        let c_bytes = c[0].data.clone();
        let m = merge_chunks(vec![a, b, c]).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            decode_chunk(&m[0]).unwrap(),
            vec![(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]
        );
        assert!(std::ptr::eq(&*m[1].data, &*c_bytes));
    }

    #[test]
    fn exponential_ranges() {
        let h = 3_600_000;
        assert_eq!(
            exponential_block_ranges(2 * h, 3, 3),
            vec![2 * h, 6 * h, 18 * h]
        );
        let c = Compactor::with_max_block_duration(54 * h);
        assert_eq!(c.ranges(), &[2 * h, 6 * h, 18 * h, 54 * h]);
    }
}
