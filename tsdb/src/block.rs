//! Persistent blocks: a directory holding `meta.json`, `index`, `chunks/000001…` and
//! `tombstones`, as Prometheus writes them; [`Block::open`] maps one and queries it.
//!
//! `meta.json` (version 1, indented with tabs as Prometheus writes it):
//!
//! ```text
//! {
//!     "ulid": "01M8BBP7NGC1DJPDEQ4B9A263N",
//!     "minTime": 1704067200000,            // ms, inclusive
//!     "maxTime": 1704074385001,            // ms, exclusive
//!     "stats": {"numSamples": …, "numSeries": …, "numChunks": …, "numTombstones": …},
//!     "compaction": {"level": 1, "sources": [ulid…], "parents": [{"ulid", "minTime",
//!                    "maxTime"}…], "failed": bool, "deletable": bool, "hints": [..]},
//!     "version": 1,
//!     "thanos": {…}                        // optional; any unknown key is kept as is
//! }
//! ```
//!
//! Zero-valued stats and empty/false compaction fields are omitted, as Go's `omitempty` does.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use ulid::Ulid;

use crate::chunkenc::xor::TailedChunk;
use crate::chunkenc::{Encoding, ValueType, XorAppender, XorIterator};
use crate::chunks::{ChunkReader, CHUNK_GROUP};
use crate::index::{ChunkRefMeta, IndexReader};
use crate::labels::{Labels, Matcher};
use crate::querier::{
    select_threads, windowed, ChunkData, ChunkMeta, ChunkQuerier, ChunkSeries, ChunkSeriesSet,
    Querier, Queryable, SampleIter, SelectHints, Series, SeriesSet, SELECT_WINDOW,
};
use crate::tombstones::{read_tombstones, Intervals, Tombstones};
use crate::{Error, Result};

/// File name of a block's metadata.
pub const META_FILENAME: &str = "meta.json";
/// File name of a block's index.
pub const INDEX_FILENAME: &str = "index";
/// Directory name of a block's chunk segments.
pub const CHUNKS_DIRNAME: &str = "chunks";
/// The `meta.json` format version.
pub const META_VERSION: u32 = 1;

mod ulid_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(u: &Ulid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&u.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let s = String::deserialize(d)?;
        Ulid::from_string(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid ULID {s:?}: {e}")))
    }
}

mod ulid_vec_serde {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(v: &[Ulid], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for u in v {
            seq.serialize_element(&u.to_string())?;
        }
        seq.end()
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ulid>, D::Error> {
        let v = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
        v.iter()
            .map(|s| {
                Ulid::from_string(s)
                    .map_err(|e| serde::de::Error::custom(format!("invalid ULID {s:?}: {e}")))
            })
            .collect()
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Counts of a block's content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// Number of samples.
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    /// Number of series.
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    /// Number of chunks.
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    /// Number of tombstone intervals.
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
    /// Counts this crate does not compute (e.g. newer Prometheus's `numFloatSamples`), kept.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A parent block of a compacted block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDesc {
    /// The parent's ULID.
    #[serde(with = "ulid_serde")]
    pub ulid: Ulid,
    /// Its minimum time.
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// Its maximum time.
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

/// Compaction history of a block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMetaCompaction {
    /// Compaction level: 1 for a block cut from the head.
    pub level: u32,
    /// ULIDs of all level-1 blocks this block was built from.
    #[serde(
        with = "ulid_vec_serde",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sources: Vec<Ulid>,
    /// Whether the block may be deleted (its data lives elsewhere).
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    /// The blocks compacted into this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    /// Whether compacting this block failed before.
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    /// Compaction hints (e.g. `from-out-of-order`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    /// Keys this crate does not interpret, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The content of `meta.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// The block's ULID (also its directory name).
    #[serde(with = "ulid_serde")]
    pub ulid: Ulid,
    /// Minimum timestamp (inclusive, ms).
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// Maximum timestamp (exclusive, ms).
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    /// Content counts.
    #[serde(default)]
    pub stats: BlockStats,
    /// Compaction history.
    #[serde(default)]
    pub compaction: BlockMetaCompaction,
    /// Format version, 1.
    pub version: u32,
    /// Keys this crate does not interpret (Thanos's `thanos` section), kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BlockMeta {
    /// A level-1 meta for a new block over `[min_time, max_time)`.
    pub fn new(ulid: Ulid, min_time: i64, max_time: i64) -> Self {
        BlockMeta {
            ulid,
            min_time,
            max_time,
            stats: BlockStats::default(),
            compaction: BlockMetaCompaction {
                level: 1,
                sources: vec![ulid],
                ..Default::default()
            },
            version: META_VERSION,
            extra: serde_json::Map::new(),
        }
    }

    /// The `thanos` section, if present.
    pub fn thanos(&self) -> Option<&serde_json::Value> {
        self.extra.get("thanos")
    }

    /// Serializes as Prometheus does: tab-indented JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(512);
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        self.serialize(&mut ser)
            .map_err(|e| Error::Other(format!("encoding meta.json: {e}")))?;
        Ok(out)
    }
}

/// The block directories directly under `dir`: directories named by a ULID that hold a
/// `meta.json`, sorted by name. Directories being written (`<ulid>.tmp-for-creation`) and
/// other files are skipped.
pub fn block_dirs(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let mut out = Vec::new();
    for ent in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        let p = ent.path();
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if Ulid::from_string(name).is_ok() && p.is_dir() && p.join(META_FILENAME).exists() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Suffix of a block directory being deleted.
pub const TMP_FOR_DELETION_SUFFIX: &str = ".tmp-for-deletion";

/// Removes the leftovers of interrupted block writes and deletions under `dir`
/// (`*.tmp-for-creation`, `*.tmp-for-deletion`). Returns how many were removed.
pub fn remove_tmp_block_dirs(dir: impl AsRef<Path>) -> Result<usize> {
    let dir = dir.as_ref();
    let mut n = 0;
    for ent in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(crate::compact::TMP_FOR_CREATION_SUFFIX)
            || name.ends_with(TMP_FOR_DELETION_SUFFIX)
        {
            let p = ent.path();
            fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Deletes a block directory crash-safely: renames it to `<ulid>.tmp-for-deletion` (so a
/// crash never leaves a half-deleted block that looks valid), then removes it.
pub fn remove_block_dir(block_dir: impl AsRef<Path>) -> Result<()> {
    let dir = block_dir.as_ref();
    let name = dir.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::InvalidArgument(format!("not a block directory: {}", dir.display()))
    })?;
    let tmp = dir.with_file_name(format!("{name}{TMP_FOR_DELETION_SUFFIX}"));
    fs::rename(dir, &tmp).map_err(|e| Error::io(dir, e))?;
    if let Some(parent) = dir.parent() {
        crate::chunks::sync_dir(parent)?;
    }
    fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))
}

/// Reads and checks `<dir>/meta.json`.
pub fn read_meta(dir: impl AsRef<Path>) -> Result<BlockMeta> {
    let path = dir.as_ref().join(META_FILENAME);
    let b = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let meta: BlockMeta = serde_json::from_slice(&b).map_err(|e| {
        Error::corruption(
            &path,
            e.column() as u64,
            format!("invalid meta.json (line {}): {e}", e.line()),
        )
    })?;
    if meta.version != META_VERSION {
        return Err(Error::corruption(
            &path,
            0,
            format!("unexpected meta.json version {}", meta.version),
        ));
    }
    Ok(meta)
}

/// Writes `<dir>/meta.json` atomically (temporary file, fsync, rename). Returns its size.
pub fn write_meta(dir: impl AsRef<Path>, meta: &BlockMeta) -> Result<u64> {
    let dir = dir.as_ref();
    let b = meta.to_json()?;
    crate::fsutil::write_atomic(dir, META_FILENAME, &b)?;
    Ok(b.len() as u64)
}

struct BlockInner {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
    tombstones: Tombstones,
    tombstones_size: u64,
    /// Selections whose series may still read the chunk files (see [`ReadToken`]).
    readers: std::sync::atomic::AtomicUsize,
}

/// Held (shared) by a selection and every series it hands out: while any token of a block is
/// alive its chunk files' mapped pages stay; when the last one goes they are given back
/// ([`ChunkReader::release_pages`]), so the pages a query touched do not stay in the
/// process's RSS after it. Pages are faulted in again from the page cache by the next reader.
struct ReadToken {
    block: Block,
}

impl ReadToken {
    fn new(block: Block) -> Arc<ReadToken> {
        block
            .inner
            .readers
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Arc::new(ReadToken { block })
    }
}

impl Drop for ReadToken {
    fn drop(&mut self) {
        let inner = &self.block.inner;
        if inner
            .readers
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            inner.chunks.release_pages();
        }
    }
}

/// An opened persistent block. Cheap to clone (shared inside), `Send + Sync`.
#[derive(Clone)]
pub struct Block {
    inner: Arc<BlockInner>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("dir", &self.inner.dir)
            .field("ulid", &self.inner.meta.ulid)
            .finish()
    }
}

impl Block {
    /// Opens the block in `dir`: reads `meta.json` and the tombstones, maps the index and
    /// the chunk segments, and checks their headers, TOC and tables.
    pub fn open(dir: impl AsRef<Path>) -> Result<Block> {
        let dir = dir.as_ref().to_path_buf();
        let meta = read_meta(&dir)?;
        let index = IndexReader::open(dir.join(INDEX_FILENAME))?;
        let chunks = ChunkReader::open(dir.join(CHUNKS_DIRNAME))?;
        let (tombstones, tombstones_size) = read_tombstones(&dir)?;
        Ok(Block {
            inner: Arc::new(BlockInner {
                dir,
                meta,
                index,
                chunks,
                tombstones,
                tombstones_size,
                readers: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }

    /// The block's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The block's metadata.
    pub fn meta(&self) -> &BlockMeta {
        &self.inner.meta
    }

    /// The block's ULID.
    pub fn ulid(&self) -> Ulid {
        self.inner.meta.ulid
    }

    /// Minimum time (inclusive).
    pub fn min_time(&self) -> i64 {
        self.inner.meta.min_time
    }

    /// Maximum time (exclusive).
    pub fn max_time(&self) -> i64 {
        self.inner.meta.max_time
    }

    /// The index reader.
    pub fn index(&self) -> &IndexReader {
        &self.inner.index
    }

    /// The chunk reader.
    pub fn chunks(&self) -> &ChunkReader {
        &self.inner.chunks
    }

    /// Deleted intervals by series reference.
    pub fn tombstones(&self) -> &Tombstones {
        &self.inner.tombstones
    }

    /// Bytes on disk of index, chunks and tombstones.
    pub fn size(&self) -> u64 {
        self.inner.index.size() + self.inner.chunks.size() + self.inner.tombstones_size
    }

    /// Whether the block holds data in `[mint, maxt]` (inclusive).
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.min_time() <= maxt && mint < self.max_time()
    }

    /// A querier over `[mint, maxt]` that also answers at chunk level.
    pub fn block_querier(&self, mint: i64, maxt: i64) -> BlockQuerier {
        BlockQuerier {
            block: self.clone(),
            mint,
            maxt,
        }
    }

    /// A chunk querier over `[mint, maxt]`.
    pub fn chunk_querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn ChunkQuerier>> {
        Ok(Box::new(self.block_querier(mint, maxt)))
    }

    /// Deletes the samples in `[mint, maxt]` of the series matching `matchers`: adds the
    /// interval to their tombstones, rewrites `tombstones` and `meta.json` (`numTombstones`),
    /// and returns the block opened again (this value keeps the old view).
    pub fn delete(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> Result<Block> {
        let index = &self.inner.index;
        let refs = index.postings_for_matchers(matchers)?;
        let mut t = self.inner.tombstones.clone();
        let (mut lb, mut cb) = (Vec::new(), Vec::new());
        for r in refs {
            index.series_refs(r, &mut lb, &mut cb)?;
            if cb.iter().any(|c| c.max_time >= mint && c.min_time <= maxt) {
                t.entry(r)
                    .or_default()
                    .add(crate::tombstones::Interval::new(mint, maxt));
            }
        }
        let dir = &self.inner.dir;
        crate::tombstones::write_tombstones(dir, &t)?;
        let mut meta = self.inner.meta.clone();
        meta.stats.num_tombstones = t.values().map(|i| i.len() as u64).sum();
        write_meta(dir, &meta)?;
        Block::open(dir)
    }

    /// The labels of a series from their symbol references (read by
    /// [`crate::index::IndexReader::series_refs`], which checked them).
    fn labels_of(&self, refs: &[(u32, u32)]) -> Labels {
        Labels::from_sorted_pairs(crate::querier::LabelPairs::of_symbols(
            &self.inner.index,
            refs,
        ))
    }

    /// Decodes every sample of the chunk `c`, for checks and tools.
    pub fn chunk_samples(&self, c: &ChunkRefMeta) -> Result<Vec<(i64, f64)>> {
        let (enc, data) = self.inner.chunks.chunk(c.chunk_ref)?;
        if enc != Encoding::Xor {
            return Err(Error::Other(format!(
                "chunk encoding {enc:?} is not supported"
            )));
        }
        let mut it = XorIterator::new(data);
        let mut out = Vec::with_capacity(crate::chunkenc::xor::num_samples(data));
        while it.next() == ValueType::Float {
            out.push(it.at());
        }
        if let Some(e) = it.err() {
            return Err(self.chunk_err(c, e));
        }
        Ok(out)
    }

    fn chunk_err(&self, c: &ChunkRefMeta, e: Error) -> Error {
        Error::corruption(
            self.inner.dir.join(CHUNKS_DIRNAME),
            c.chunk_ref,
            format!("decoding chunk {:#x}: {e}", c.chunk_ref),
        )
    }
}

impl Queryable for Block {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>> {
        Ok(Box::new(self.block_querier(mint, maxt)))
    }
}

impl ChunkQuerier for Block {
    /// Chunks over the block's whole time range.
    fn select_chunks(
        &self,
        sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> ChunkSeriesSet {
        self.block_querier(self.min_time(), self.max_time() - 1)
            .select_chunks(sorted, hints, matchers)
    }
}

/// Querier over one block and a time range `[mint, maxt]` (inclusive). Applies the block's
/// tombstones; series come out sorted by labels (the index's order).
#[derive(Clone, Debug)]
pub struct BlockQuerier {
    block: Block,
    mint: i64,
    maxt: i64,
}

/// A series selected from a block: the symbol references of its labels (see
/// [`crate::index::IndexReader::series_refs`]), the chunks overlapping the range, minus
/// deleted ones.
struct Selected {
    label_refs: LabelRefs,
    chunks: ChunkRefs,
    deleted: Option<Intervals>,
}

/// A selected series' label symbol references, held inline up to a typical label count: a
/// large selection builds thousands of series, each read again when it is merged and folded,
/// and a separate allocation would be one more allocation and one more cache miss each.
type LabelRefs = SmallVec<[(u32, u32); 10]>;

/// A selected series' chunks in the range, held inline up to the four chunks a 2h block has
/// of a series scraped every 15 s (as [`LabelRefs`]).
type ChunkRefs = SmallVec<[ChunkRefMeta; 4]>;

/// Iterates the selected series of a block lazily.
struct SelectIter {
    /// The block, held (with its pages) for the selection and every series it hands out.
    tok: Arc<ReadToken>,
    refs: std::vec::IntoIter<u64>,
    mint: i64,
    maxt: i64,
    lbuf: Vec<(u32, u32)>,
    cbuf: Vec<ChunkRefMeta>,
}

impl SelectIter {
    /// The next selected series as a [`Series`].
    fn next_series(&mut self) -> Option<Result<Arc<dyn Series>>> {
        let sel = match self.next_selected()? {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(Arc::new(BlockSeries {
            label_refs: sel.label_refs,
            labels: std::sync::OnceLock::new(),
            chunks: sel.chunks,
            deleted: sel.deleted,
            tok: self.tok.clone(),
            mint: self.mint,
            maxt: self.maxt,
        }) as Arc<dyn Series>))
    }

    /// The same selection over a part of the references.
    fn part(&self, refs: Vec<u64>) -> SelectIter {
        SelectIter {
            tok: self.tok.clone(),
            refs: refs.into_iter(),
            mint: self.mint,
            maxt: self.maxt,
            lbuf: Vec::new(),
            cbuf: Vec::new(),
        }
    }

    fn next_selected(&mut self) -> Option<Result<Selected>> {
        for r in self.refs.by_ref() {
            if let Err(e) =
                self.tok
                    .block
                    .inner
                    .index
                    .series_refs(r, &mut self.lbuf, &mut self.cbuf)
            {
                return Some(Err(e));
            }
            let deleted = self
                .tok
                .block
                .inner
                .tombstones
                .get(&r)
                .filter(|d| !d.is_empty());
            let (mint, maxt) = (self.mint, self.maxt);
            let chunks: ChunkRefs = self
                .cbuf
                .iter()
                .filter(|c| c.max_time >= mint && c.min_time <= maxt)
                .filter(|c| !deleted.is_some_and(|d| d.covers(c.min_time, c.max_time)))
                .copied()
                .collect();
            if chunks.is_empty() {
                continue;
            }
            return Some(Ok(Selected {
                label_refs: SmallVec::from_slice(&self.lbuf),
                chunks,
                deleted: deleted.cloned(),
            }));
        }
        None
    }
}

impl BlockQuerier {
    fn select_iter(&self, matchers: &[Matcher]) -> Result<SelectIter> {
        let refs = self.block.inner.index.postings_for_matchers(matchers)?;
        Ok(SelectIter {
            tok: ReadToken::new(self.block.clone()),
            refs: refs.into_iter(),
            mint: self.mint,
            maxt: self.maxt,
            lbuf: Vec::new(),
            cbuf: Vec::new(),
        })
    }

    fn matching_labels(&self, matchers: &[Matcher]) -> Result<Vec<Labels>> {
        let refs = self.block.inner.index.postings_for_matchers(matchers)?;
        let mut out = Vec::with_capacity(refs.len());
        let mut lb = Vec::new();
        let mut cb = Vec::new();
        for r in refs {
            self.block.inner.index.series_refs(r, &mut lb, &mut cb)?;
            out.push(self.block.labels_of(&lb));
        }
        Ok(out)
    }
}

/// One selected series, or the error that ends a selection.
type Item = Result<Arc<dyn Series>>;

/// The series of `refs` (a window of `it`'s references), read on `threads` threads (decoding
/// each series entry, resolving its symbols, building its labels and chunk list), in
/// reference order (the labels' order); the first error ends the result.
fn select_parallel(it: &SelectIter, refs: Vec<u64>, threads: usize) -> Vec<Item> {
    let per = refs.len().div_ceil(threads.max(1)).max(1);
    let jobs: Vec<crate::parallel::ParallelPart<Vec<Item>>> = refs
        .chunks(per)
        .map(|c| {
            let mut p = it.part(c.to_vec());
            Box::new(move || {
                let mut v = Vec::new();
                while let Some(x) = p.next_series() {
                    let failed = x.is_err();
                    v.push(x);
                    if failed {
                        break;
                    }
                }
                v
            }) as crate::parallel::ParallelPart<Vec<Item>>
        })
        .collect();
    let done = crate::parallel::run_parallel(jobs);
    let mut out = Vec::with_capacity(refs.len());
    for part in done {
        let failed = part.last().is_some_and(|x| x.is_err());
        out.extend(part);
        if failed {
            break;
        }
    }
    out
}

impl Querier for BlockQuerier {
    fn select(
        &self,
        _sorted: bool,
        _hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> SeriesSet {
        let mut it = match self.select_iter(matchers) {
            Ok(it) => it,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        if select_threads(it.refs.len()) > 1 {
            let refs: Vec<u64> = std::mem::take(&mut it.refs).collect();
            return windowed(refs, SELECT_WINDOW, move |w| {
                let threads = select_threads(w.len());
                select_parallel(&it, w, threads)
            });
        }
        Box::new(std::iter::from_fn(move || it.next_series()))
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], limit: usize) -> Result<Vec<String>> {
        let mut vals: Vec<String> = if matchers.is_empty() {
            self.block
                .inner
                .index
                .label_values(name)
                .into_iter()
                .map(str::to_string)
                .collect()
        } else {
            let mut v: Vec<String> = self
                .matching_labels(matchers)?
                .iter()
                .filter_map(|l| l.get(name).map(str::to_string))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        if limit > 0 {
            vals.truncate(limit);
        }
        Ok(vals)
    }

    fn label_names(&self, matchers: &[Matcher], limit: usize) -> Result<Vec<String>> {
        let mut names: Vec<String> = if matchers.is_empty() {
            self.block
                .inner
                .index
                .label_names()
                .into_iter()
                .map(str::to_string)
                .collect()
        } else {
            let mut v: Vec<String> = self
                .matching_labels(matchers)?
                .iter()
                .flat_map(|l| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        if limit > 0 {
            names.truncate(limit);
        }
        Ok(names)
    }
}

impl ChunkQuerier for BlockQuerier {
    fn select_chunks(
        &self,
        _sorted: bool,
        _hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> ChunkSeriesSet {
        let mut it = match self.select_iter(matchers) {
            Ok(it) => it,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        Box::new(std::iter::from_fn(move || loop {
            let sel = match it.next_selected()? {
                Ok(s) => s,
                Err(e) => return Some(Err(e)),
            };
            match chunks_of(&it.tok.block, &sel, it.mint, it.maxt) {
                Ok(chunks) if chunks.is_empty() => continue,
                Ok(chunks) => {
                    return Some(Ok(ChunkSeries {
                        labels: it.tok.block.labels_of(&sel.label_refs),
                        chunks,
                    }))
                }
                Err(e) => return Some(Err(e)),
            }
        }))
    }
}

/// The chunks of a selected series: stored bytes when a chunk lies inside the range and has
/// no deleted samples, re-encoded otherwise.
fn chunks_of(block: &Block, sel: &Selected, mint: i64, maxt: i64) -> Result<Vec<ChunkMeta>> {
    let mut out = Vec::with_capacity(sel.chunks.len());
    for c in &sel.chunks {
        let (enc, data) = block.inner.chunks.chunk(c.chunk_ref)?;
        let deleted = sel
            .deleted
            .as_ref()
            .filter(|d| d.overlaps(c.min_time, c.max_time));
        if c.min_time >= mint && c.max_time <= maxt && deleted.is_none() {
            out.push(ChunkMeta {
                min_time: c.min_time,
                max_time: c.max_time,
                encoding: enc,
                data: ChunkData::from(data),
            });
            continue;
        }
        if enc != Encoding::Xor {
            return Err(Error::Other(format!(
                "trimming chunk encoding {enc:?} is not supported"
            )));
        }
        let mut app = XorAppender::new();
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        let mut it = XorIterator::new(data);
        while it.next() == ValueType::Float {
            let (t, v) = it.at();
            if t < mint || t > maxt || deleted.is_some_and(|d| d.contains(t)) {
                continue;
            }
            app.append(t, v);
            lo = lo.min(t);
            hi = hi.max(t);
        }
        if let Some(e) = it.err() {
            return Err(block.chunk_err(c, e));
        }
        if app.num_samples() > 0 {
            out.push(ChunkMeta {
                min_time: lo,
                max_time: hi,
                encoding: Encoding::Xor,
                data: ChunkData::from(app.bytes()),
            });
        }
    }
    Ok(out)
}

/// A series of a block; its iterator decodes chunks straight from the memory map. Its labels
/// are built from their symbol references only when asked for: a series merged with the
/// head's answers with the head's labels.
struct BlockSeries {
    label_refs: LabelRefs,
    labels: std::sync::OnceLock<Arc<Labels>>,
    chunks: ChunkRefs,
    deleted: Option<Intervals>,
    /// The block, whose chunk files' pages stay mapped while the series may be read.
    tok: Arc<ReadToken>,
    mint: i64,
    maxt: i64,
}

impl BlockSeries {
    /// The series' block.
    fn block(&self) -> &Block {
        &self.tok.block
    }

    /// An iterator over the series' samples.
    fn sample_iter(&self) -> BlockSampleIter<'_> {
        BlockSampleIter {
            series: self,
            ci: 0,
            it: None,
            cur: (i64::MIN, 0.0),
            started: false,
            done: false,
            err: None,
        }
    }

    /// The labels, built on the first call.
    fn built_labels(&self) -> &Arc<Labels> {
        self.labels
            .get_or_init(|| Arc::new(self.block().labels_of(&self.label_refs)))
    }
}

impl Series for BlockSeries {
    fn labels(&self) -> &Labels {
        self.built_labels()
    }
    fn shared_labels(&self) -> Arc<Labels> {
        self.built_labels().clone()
    }
    fn label_pairs(&self) -> crate::querier::LabelPairs<'_> {
        crate::querier::LabelPairs::of_symbols(&self.block().inner.index, &self.label_refs)
    }
    fn iter(&self) -> Box<dyn SampleIter + '_> {
        Box::new(self.sample_iter())
    }
    fn collect_range(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> Result<()> {
        crate::querier::collect_with(&mut self.sample_iter(), mint, maxt, out)
    }
}

struct BlockSampleIter<'a> {
    series: &'a BlockSeries,
    /// Index of the chunk `it` reads, or of the next chunk to load when `it` is `None`.
    ci: usize,
    it: Option<XorIterator<'a>>,
    cur: (i64, f64),
    started: bool,
    done: bool,
    err: Option<Error>,
}

impl BlockSampleIter<'_> {
    fn fail(&mut self, e: Error) -> ValueType {
        self.err = Some(e);
        self.done = true;
        self.it = None;
        ValueType::None
    }
}

impl SampleIter for BlockSampleIter<'_> {
    fn collect_range(&mut self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        if self.done || self.started || self.it.is_some() || self.ci != 0 {
            return crate::querier::collect_range_stepwise(self, mint, maxt, out);
        }
        self.started = true;
        self.done = true;
        let s = self.series;
        let (lo, hi) = (mint.max(s.mint), maxt.min(s.maxt));
        /// Drops the samples of `out[from..]` that the tombstones delete.
        fn drop_deleted(deleted: Option<&Intervals>, out: &mut Vec<(i64, f64)>, from: usize) {
            if let Some(d) = deleted {
                let mut w = from;
                for r in from..out.len() {
                    if !d.contains(out[r].0) {
                        out[w] = out[r];
                        w += 1;
                    }
                }
                out.truncate(w);
            }
        }
        // Runs of whole chunks inside [lo, hi] are decoded in one batch, unfiltered (see
        // `decode_tailed_into`); `run` holds such a run's chunks, from chunk `run_first` on,
        // where they lie in the segment.
        // A chunk at an edge of the range is cut while decoding.
        let mut run: Vec<TailedChunk> = Vec::new();
        let mut run_first = 0;
        let flush = |run: &mut Vec<TailedChunk>, run_first: usize, out: &mut Vec<(i64, f64)>| {
            if run.is_empty() {
                return None;
            }
            let from = out.len();
            let res = crate::chunkenc::xor::decode_tailed_into(run, out);
            run.clear();
            drop_deleted(s.deleted.as_ref(), out, from);
            res.err()
                .map(|e| s.block().chunk_err(&s.chunks[run_first + e.chunk], e.err))
        };
        // The chunks in the range, read (and CRC-checked) a group at a time.
        let mut in_range = s
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.max_time >= lo)
            .take_while(|(_, c)| c.min_time <= hi);
        let reader = &s.block().inner.chunks;
        let mut group = [const { None }; CHUNK_GROUP];
        let (mut at, mut len) = (0, 0);
        while let Some((k, c)) = in_range.next() {
            if at == len {
                let mut refs = [0u64; CHUNK_GROUP];
                let ahead = std::iter::once(c).chain(in_range.clone().map(|(_, c)| c));
                len = refs
                    .iter_mut()
                    .zip(ahead)
                    .map(|(r, c)| *r = c.chunk_ref)
                    .count();
                group = reader.chunks_tailed(&refs[..len]);
                at = 0;
            }
            let read = group[at].take().expect("read with its group");
            at += 1;
            let (data, ext) = match read {
                Ok((Encoding::Xor, data, ext)) => (data, ext),
                Ok((enc, _, _)) => {
                    let e = flush(&mut run, run_first, out).unwrap_or_else(|| {
                        Error::Other(format!("chunk encoding {enc:?} is not supported"))
                    });
                    self.fail(e);
                    return;
                }
                Err(e) => {
                    self.fail(flush(&mut run, run_first, out).unwrap_or(e));
                    return;
                }
            };
            if c.min_time >= lo && c.max_time <= hi {
                if run.is_empty() {
                    run_first = k;
                }
                run.push(TailedChunk::new(ext, data.len()));
                continue;
            }
            if let Some(e) = flush(&mut run, run_first, out) {
                self.fail(e);
                return;
            }
            let from = out.len();
            let res = crate::chunkenc::xor::decode_chunk_cut_spanned(
                TailedChunk::new(ext, data.len()),
                (c.min_time, c.max_time),
                lo,
                hi,
                out,
            );
            drop_deleted(s.deleted.as_ref(), out, from);
            match res {
                Err(e) => {
                    self.fail(s.block().chunk_err(c, e));
                    return;
                }
                Ok(true) => return,
                Ok(false) => {}
            }
        }
        if let Some(e) = flush(&mut run, run_first, out) {
            self.fail(e);
        }
    }

    fn next(&mut self) -> ValueType {
        if self.done {
            return ValueType::None;
        }
        self.started = true;
        let s = self.series;
        loop {
            if self.it.is_none() {
                let Some(c) = s.chunks.get(self.ci) else {
                    self.done = true;
                    return ValueType::None;
                };
                match s.block().inner.chunks.chunk(c.chunk_ref) {
                    Ok((Encoding::Xor, data)) => self.it = Some(XorIterator::new(data)),
                    Ok((enc, _)) => {
                        return self.fail(Error::Other(format!(
                            "chunk encoding {enc:?} is not supported"
                        )))
                    }
                    Err(e) => return self.fail(e),
                }
            }
            let Some(it) = self.it.as_mut() else { continue };
            if it.next() != ValueType::Float {
                if let Some(e) = it.err() {
                    let c = s.chunks[self.ci];
                    return self.fail(s.block().chunk_err(&c, e));
                }
                self.it = None;
                self.ci += 1;
                continue;
            }
            let (t, v) = it.at();
            if t < s.mint {
                continue;
            }
            if t > s.maxt {
                self.done = true;
                self.it = None;
                return ValueType::None;
            }
            if s.deleted.as_ref().is_some_and(|d| d.contains(t)) {
                continue;
            }
            self.cur = (t, v);
            return ValueType::Float;
        }
    }

    fn seek(&mut self, t: i64) -> ValueType {
        if self.done {
            return ValueType::None;
        }
        if self.started && self.it.is_some() && self.cur.0 >= t {
            return ValueType::Float;
        }
        let chunks = &self.series.chunks;
        if self.it.is_some() && chunks[self.ci].max_time < t {
            self.it = None;
            self.ci += 1;
        }
        if self.it.is_none() {
            while self.ci < chunks.len() && chunks[self.ci].max_time < t {
                self.ci += 1;
            }
        }
        loop {
            match self.next() {
                ValueType::None => return ValueType::None,
                vt if self.cur.0 >= t => return vt,
                _ => {}
            }
        }
    }

    fn at(&self) -> (i64, f64) {
        self.cur
    }

    fn err(&self) -> Option<Error> {
        self.err.as_ref().map(|e| Error::Other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_block() -> Option<Block> {
        let shared = std::env::var("IGNIS_SHARED")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared").into());
        let dir = Path::new(&shared).join("fixtures/prometheus-2.42/blocks");
        let first = block_dirs(&dir).ok()?.into_iter().next()?;
        Some(Block::open(first).expect("fixture block opens"))
    }

    /// Prometheus's own chunk files pass the checksum scan (their chunks fill them from the
    /// header to the end), so their chunks are read without a CRC each after it.
    #[test]
    fn prometheus_chunk_files_pass_their_checksum_scan() {
        let b = fixture_block().expect("the fixture blocks are in ../shared");
        let checks = b.inner.chunks.checks();
        assert!(!checks.is_empty());
        assert!(crate::chunk_scan::wait_scanned(
            &checks,
            std::time::Duration::from_secs(60)
        ));
        assert!(checks.iter().all(|c| c.verified()));
    }

    /// Every selected series with its samples (values as bits: the fixture has NaNs).
    fn read_all(b: &Block, m: &[Matcher]) -> Vec<(Labels, Vec<(i64, u64)>)> {
        let q = b.querier(i64::MIN, i64::MAX).unwrap();
        q.select(true, None, m)
            .map(|s| {
                let s = s.unwrap();
                let mut out = Vec::new();
                s.iter().collect_range(i64::MIN, i64::MAX, &mut out);
                (s.labels().clone(), bits(&out))
            })
            .collect()
    }

    fn bits(s: &[(i64, f64)]) -> Vec<(i64, u64)> {
        s.iter().map(|&(t, v)| (t, v.to_bits())).collect()
    }

    #[test]
    fn pages_are_released_after_the_last_reader_and_reads_stay_right() {
        let Some(b) = fixture_block() else {
            eprintln!("no fixture blocks; skipped");
            return;
        };
        let readers = || b.inner.readers.load(std::sync::atomic::Ordering::Acquire);
        let m = [Matcher::new(crate::labels::MatchType::Regexp, "__name__", ".+").unwrap()];
        let first = read_all(&b, &m);
        assert!(!first.is_empty());
        assert_eq!(readers(), 0, "series and selections dropped");
        // A series kept past its querier still reads, while another query comes and goes.
        let q = b.querier(i64::MIN, i64::MAX).unwrap();
        let kept = q.select(true, None, &m).next().unwrap().unwrap();
        drop(q);
        assert_eq!(readers(), 1);
        assert!(
            read_all(&b, &m) == first,
            "reads after a release are the same"
        );
        assert_eq!(readers(), 1);
        let mut out = Vec::new();
        kept.iter().collect_range(i64::MIN, i64::MAX, &mut out);
        assert!((kept.labels().clone(), bits(&out)) == first[0]);
        drop(kept);
        assert_eq!(readers(), 0);
    }

    #[test]
    fn large_selections_read_in_parallel_keep_order_and_ranges() {
        let tmp = tempfile::tempdir().unwrap();
        let n = crate::querier::PARALLEL_SELECT_MIN * 2 + 5;
        let series: Vec<ChunkSeries> = (0..n)
            .map(|k| {
                let ls = Labels::from_pairs(&[("__name__", "m"), ("i", &format!("{k:06}"))]);
                // Every fourth series lies outside the queried range.
                let base = if k % 4 == 0 { 100_000 } else { 0 };
                let samples: Vec<(i64, f64)> =
                    (0..10).map(|j| (base + j * 1000, k as f64)).collect();
                crate::compact::chunk_series_from_samples(ls, &samples)
            })
            .collect();
        let id = crate::compact::write_block(tmp.path(), series, 0, 200_000, 1, &[]).unwrap();
        let b = Block::open(tmp.path().join(id.to_string())).unwrap();
        let m = [Matcher::new(crate::labels::MatchType::Equal, "__name__", "m").unwrap()];
        let q = b.querier(2500, 6000).unwrap();
        let got: Vec<(Labels, Vec<(i64, u64)>)> = q
            .select(true, None, &m)
            .map(|s| {
                let s = s.unwrap();
                let mut v = Vec::new();
                s.iter().collect_range(i64::MIN, i64::MAX, &mut v);
                (s.labels().clone(), bits(&v))
            })
            .collect();
        let want: Vec<(Labels, Vec<(i64, u64)>)> = (0..n)
            .filter(|k| k % 4 != 0)
            .map(|k| {
                let ls = Labels::from_pairs(&[("__name__", "m"), ("i", &format!("{k:06}"))]);
                let v: Vec<(i64, f64)> = (3..=6).map(|j| (j * 1000, k as f64)).collect();
                (ls, bits(&v))
            })
            .collect();
        assert_eq!(got.len(), want.len());
        assert!(got == want);
        drop(q);
        assert_eq!(
            b.inner.readers.load(std::sync::atomic::Ordering::Acquire),
            0
        );
    }

    /// Series of two blocks with different symbol tables merge by their labels' order
    /// (compared through symbol references, without building labels), and the pairs a
    /// block series gives are its labels.
    #[test]
    fn block_series_compare_by_symbols_across_blocks() {
        let tmp = tempfile::tempdir().unwrap();
        let sets: [&[(&str, &str)]; 6] = [
            &[("__name__", "a")],
            &[("__name__", "a"), ("x", "1")],
            &[("__name__", "a"), ("x", "10")],
            &[("__name__", "a"), ("xy", "0")],
            &[("__name__", "ab")],
            &[("__name__", "b"), ("job", "j")],
        ];
        // Block 1 holds the even series, block 2 the odd ones and two of the even ones, with
        // extra symbols that shift every reference.
        let write = |keep: &dyn Fn(usize) -> bool, extra: &str, t0: i64| {
            let mut series: Vec<ChunkSeries> = sets
                .iter()
                .enumerate()
                .filter(|(k, _)| keep(*k))
                .map(|(_, ls)| {
                    crate::compact::chunk_series_from_samples(Labels::from_pairs(ls), &[(t0, 1.0)])
                })
                .collect();
            series.push(crate::compact::chunk_series_from_samples(
                Labels::from_pairs(&[("__name__", "zz"), (extra, "v")]),
                &[(t0, 1.0)],
            ));
            let id =
                crate::compact::write_block(tmp.path(), series, t0, t0 + 1000, 1, &[]).unwrap();
            Block::open(tmp.path().join(id.to_string())).unwrap()
        };
        let b1 = write(&|k| k % 2 == 0, "aaa", 0);
        let b2 = write(&|k| k % 2 == 1 || k == 0 || k == 4, "b", 1000);
        let m = [Matcher::new(crate::labels::MatchType::NotEqual, "__name__", "zz").unwrap()];
        let merged = crate::merge::merge_series_sets(vec![
            b1.querier(0, 5000).unwrap().select(true, None, &m),
            b2.querier(0, 5000).unwrap().select(true, None, &m),
        ]);
        let got: Vec<Labels> = merged
            .map(|s| {
                let s = s.unwrap();
                let pairs: Vec<(&str, &str)> = s.label_pairs().collect();
                assert_eq!(Labels::from_pairs(&pairs), *s.labels());
                s.labels().clone()
            })
            .collect();
        let want: Vec<Labels> = sets.iter().map(|ls| Labels::from_pairs(ls)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn meta_json_round_trip_keeps_thanos_section() {
        let src = r#"{
	"ulid": "01M8BBP7NGC1DJPDEQ4B9A263N",
	"minTime": 1,
	"maxTime": 10,
	"stats": {
		"numSamples": 5,
		"numSeries": 1,
		"numChunks": 1,
		"numFloatSamples": 5
	},
	"compaction": {
		"level": 1,
		"sources": [
			"01M8BBP7NGC1DJPDEQ4B9A263N"
		]
	},
	"version": 1,
	"thanos": {
		"labels": {
			"replica": "a"
		},
		"downsample": {
			"resolution": 0
		},
		"source": "sidecar"
	}
}"#;
        let m: BlockMeta = serde_json::from_str(src).unwrap();
        assert_eq!(m.stats.num_samples, 5);
        assert_eq!(m.thanos().unwrap()["labels"]["replica"], "a");
        let out = String::from_utf8(m.to_json().unwrap()).unwrap();
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        let orig: serde_json::Value = serde_json::from_str(src).unwrap();
        assert_eq!(back, orig);
    }
}
