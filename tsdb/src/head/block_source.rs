//! The head as a source of a block ([`HeadBlockSource`]): its series in label order with their
//! labels as numbers of a sorted symbol table and their chunks in a time range, one series at a
//! time, for [`crate::compact::BlockWriter::write_from`].
//!
//! Nothing is copied per series up front: the source holds the head's symbol strings it needs
//! (shared `Arc<str>`s, sorted), a table from head symbol id to block symbol number, and the
//! series handles sorted by label — about 8 bytes per series and 20 per symbol. Label order is
//! the order of the block symbol numbers, so sorting compares integers, not strings. Chunks are
//! read from the chunk store only when their series comes.
//!
//! Full chunks are read from the chunk files without mapping them and without keeping them
//! for later reads ([`super::ChunkStore::read_once`]): a series' chunks lie far apart in the
//! files, and a mapped read maps the whole page-cache folio around it — up to the 1 MiB the
//! file was written in, so a few series' reads mapped tens of MiB into the process's RSS (the
//! peak of the 100k-series replay came at each head block write).
//!
//! Each series' chunks are joined into chunks of up to
//! [`crate::compact::BLOCK_CHUNK_MAX_SAMPLES`] samples ([`crate::compact::join_chunks`]): the
//! head cuts a chunk every ~120 samples so that its open chunk stays small, which a block,
//! read in long ranges, does not need.
//!
//! Series created after the source was made are not in it (as with any head querier); series
//! without chunks inside the range are skipped by the writer.

use std::sync::Arc;

use super::series::MemSeries;
use super::Head;
use crate::chunkenc::Encoding;
use crate::compact::SymbolSeriesSource;
use crate::querier::{ChunkData, ChunkMeta};
use crate::Result;

/// How often (in series) the source checks whether the database is closing.
const CLOSED_CHECK_EVERY: usize = 16;

/// The head's series with chunks inside `[mint, maxt)`, for writing a block.
pub struct HeadBlockSource {
    head: Head,
    mint: i64,
    maxt: i64,
    /// The symbols the series use, sorted, starting with the empty string.
    symbols: Vec<Arc<str>>,
    /// Head symbol id → position in `symbols` (`u32::MAX` when unused).
    remap: Vec<u32>,
    /// The series, sorted by labels.
    series: Vec<Arc<MemSeries>>,
    next: usize,
    /// Full chunks of the series being read (scratch).
    refs: Vec<super::series::MmappedChunk>,
}

impl Head {
    /// A block source over the series now in the head, with their chunks that lie inside
    /// `[mint, maxt)` (a chunk never straddles a block boundary; one that would is left out).
    pub fn block_source(&self, mint: i64, maxt: i64) -> HeadBlockSource {
        let ids: Vec<u32> = self.postings().read().all().iter().collect();
        let series: Vec<Arc<MemSeries>> = ids
            .into_iter()
            .filter_map(|id| self.series(u64::from(id)))
            .collect();
        let syms = self.symbols();
        // Mark the symbols in use, then number them in string order.
        let mut remap = vec![u32::MAX; syms.len()];
        for s in &series {
            for &id in s.lset.iter() {
                if let Some(r) = remap.get_mut(id as usize) {
                    *r = 0;
                }
            }
        }
        let mut symbols: Vec<(Arc<str>, u32)> = {
            let r = syms.reader();
            remap
                .iter()
                .enumerate()
                .filter(|(_, &m)| m == 0)
                .map(|(id, _)| (r.get_arc(id as u32), id as u32))
                .collect()
        };
        symbols.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if symbols.first().is_none_or(|s| !s.0.is_empty()) {
            symbols.insert(0, (Arc::from(""), u32::MAX));
        }
        for (pos, (_, id)) in symbols.iter().enumerate() {
            if let Some(r) = remap.get_mut(*id as usize) {
                *r = pos as u32;
            }
        }
        let symbols: Vec<Arc<str>> = symbols.into_iter().map(|(s, _)| s).collect();
        let mut series = series;
        let key = |s: &MemSeries, i: usize| remap[s.lset[i] as usize];
        let cmp = |a: &Arc<MemSeries>, b: &Arc<MemSeries>| {
            let n = a.lset.len().min(b.lset.len());
            (0..n)
                .map(|i| key(a, i).cmp(&key(b, i)))
                .find(|o| o.is_ne())
                .unwrap_or_else(|| a.lset.len().cmp(&b.lset.len()))
        };
        // Series references follow creation order, often the labels' order already.
        if !series.is_sorted_by(|a, b| cmp(a, b).is_le()) {
            series.sort_unstable_by(cmp);
        }
        HeadBlockSource {
            head: self.clone(),
            mint,
            maxt,
            symbols,
            remap,
            series,
            next: 0,
            refs: Vec::new(),
        }
    }
}

impl HeadBlockSource {
    /// Number of series in the source (with or without chunks in the range).
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the source has no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// How many series have been handed out so far.
    pub fn position(&self) -> usize {
        self.next
    }
}

impl SymbolSeriesSource for HeadBlockSource {
    fn symbols(&mut self, f: &mut dyn FnMut(&str) -> Result<()>) -> Result<()> {
        self.symbols.iter().try_for_each(|s| f(s))
    }

    fn next_series(&mut self, labels: &mut Vec<u32>, chunks: &mut Vec<ChunkMeta>) -> Result<bool> {
        let Some(s) = self.series.get(self.next).cloned() else {
            // Done: let the symbols and series go before the writer finishes the index.
            self.symbols = Vec::new();
            self.series = Vec::new();
            self.remap = Vec::new();
            return Ok(false);
        };
        self.next += 1;
        if self.next.is_multiple_of(CLOSED_CHECK_EVERY) {
            // A closing database abandons the block rather than keep shutdown waiting for it;
            // the WAL still holds every sample, and the next start writes the block again.
            if self.head.is_closed() {
                return Err(crate::Error::Closed);
            }
        }
        let (mint, maxt) = (self.mint, self.maxt);
        self.refs.clear();
        {
            let d = s.data.lock();
            self.refs.extend(
                d.mmapped
                    .iter()
                    .filter(|c| c.min_time >= mint && c.max_time < maxt),
            );
            // Chunks waiting to be stored, and the open chunk when its series stopped getting
            // samples inside the range, are copied under the lock.
            let waiting = d
                .waiting
                .iter()
                .map(|w| (w.min_time, w.max_time, &w.bytes[..]));
            let open = d
                .head
                .as_ref()
                .filter(|h| h.app.num_samples() > 0)
                .map(|h| (h.min_time, h.max_time, h.app.bytes()));
            for (min_time, max_time, bytes) in waiting.chain(open) {
                if min_time >= mint && max_time < maxt {
                    chunks.push(ChunkMeta {
                        min_time,
                        max_time,
                        encoding: Encoding::Xor,
                        data: ChunkData::from(bytes),
                    });
                }
            }
        }
        let store = self.head.chunk_store();
        let in_memory = chunks.len();
        for c in &self.refs {
            chunks.push(c.with_data(store.read_once(c.chunk_ref)?.into()));
        }
        // The stored chunks are the older ones.
        chunks.rotate_left(in_memory);
        crate::compact::join_chunks(chunks, crate::compact::BLOCK_CHUNK_MAX_SAMPLES);
        labels.extend(s.lset.iter().map(|&id| self.remap[id as usize]));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Block;
    use crate::compact::BlockWriter;
    use crate::labels::{Labels, MatchType, Matcher};

    const H2: i64 = 2 * 3600 * 1000;

    /// A head with series created in an order unrelated to their labels (so the source has to
    /// sort), every one with samples in `[0, 2h)` and some beyond it.
    fn head() -> Head {
        let h = Head::in_memory();
        let mut app = h.appender();
        for i in 0..300u32 {
            let k = (i * 7919) % 300;
            let ls = Labels::from_pairs(&[
                ("__name__", if k % 3 == 0 { "a_metric" } else { "b" }),
                ("instance", &format!("host-{k}")),
                ("job", if k % 2 == 0 { "x" } else { "" }),
            ]);
            let mut r = None;
            for j in 0..(200 + k as i64) {
                r = Some(
                    app.append(r, &ls, j * 60_000, (j * k as i64) as f64)
                        .unwrap(),
                );
            }
        }
        app.commit().unwrap();
        h
    }

    fn chunk_files(dir: &std::path::Path) -> Vec<Vec<u8>> {
        let mut names: Vec<_> = std::fs::read_dir(dir.join("chunks"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    #[test]
    fn streamed_head_block_equals_buffered_block() {
        let h = head();
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        let mut src = h.block_source(0, H2);
        assert_eq!(src.len(), 300);
        let ma = BlockWriter::new(&a, 0, H2).write_from(&mut src).unwrap();
        assert_eq!(src.position(), 300);

        let all = [Matcher::new(MatchType::Regexp, "__name__", ".*").unwrap()];
        let cq = h.chunk_querier(0, H2 - 1);
        let series = cq.select_chunks(true, None, &all).map(|r| {
            r.map(|mut cs| {
                cs.chunks.retain(|c| c.min_time >= 0 && c.max_time < H2);
                cs
            })
        });
        let mb = BlockWriter::new(&b, 0, H2).write(series).unwrap();
        assert_eq!(ma.stats, mb.stats);
        assert_eq!(ma.stats.num_series, 300);
        assert!(ma.stats.num_samples > 0);
        let da = a.join(ma.ulid.to_string());
        let db = b.join(mb.ulid.to_string());
        assert_eq!(
            std::fs::read(da.join("index")).unwrap(),
            std::fs::read(db.join("index")).unwrap()
        );
        assert_eq!(chunk_files(&da), chunk_files(&db));
    }

    #[test]
    fn full_chunks_are_read_without_mapping_the_store() {
        let (store, h) = crate::head::chunk_store::RecordingStore::interleaved_head(1000);
        let tmp = tempfile::tempdir().unwrap();
        let meta = BlockWriter::new(tmp.path(), 0, H2)
            .write_from(&mut h.block_source(0, H2))
            .unwrap();
        assert_eq!(meta.stats.num_samples, 3000);
        let log = store.log.lock();
        assert!(log.len() >= 3 * 8, "{log:?}");
        assert!(log.iter().all(|e| e.starts_with("unmapped")), "{log:?}");
    }

    #[test]
    fn closing_the_head_abandons_the_block() {
        let h = head();
        let tmp = tempfile::tempdir().unwrap();
        let mut src = h.block_source(0, H2);
        h.close();
        let res = BlockWriter::new(tmp.path(), 0, H2).write_from(&mut src);
        assert!(matches!(res, Err(crate::Error::Closed)), "{res:?}");
        assert!(src.position() <= CLOSED_CHECK_EVERY);
        // Neither the block nor its temporary directory is left behind.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn series_without_chunks_in_range_are_skipped() {
        let h = head();
        // Only series with k > 40 reach past 4h (200 + k minutes).
        let tmp = tempfile::tempdir().unwrap();
        let (mint, maxt) = (4 * 3600 * 1000, 6 * 3600 * 1000);
        let mut src = h.block_source(mint, maxt);
        let meta = BlockWriter::new(tmp.path(), mint, maxt)
            .write_from(&mut src)
            .unwrap();
        let blk = Block::open(tmp.path().join(meta.ulid.to_string())).unwrap();
        let q = blk.chunk_querier(mint, maxt - 1).unwrap();
        let all = [Matcher::new(MatchType::Regexp, "__name__", ".*").unwrap()];
        let got: Vec<_> = q
            .select_chunks(true, None, &all)
            .map(|r| r.unwrap())
            .collect();
        // Chunks are cut at 2h boundaries, so everything after 4h is in the block.
        let want = (0..300).filter(|k| 200 + k > 240).count();
        assert_eq!(got.len(), want);
        assert_eq!(meta.stats.num_series as usize, want);
        assert!(got.windows(2).all(|w| w[0].labels < w[1].labels));
        let samples: u64 = got
            .iter()
            .flat_map(|s| s.chunks.iter())
            .map(|c| crate::chunkenc::xor::num_samples(&c.data) as u64)
            .sum();
        assert_eq!(samples, meta.stats.num_samples);
        // One sample a minute: those in [240, 360) minutes.
        let want_samples: u64 = (0..300u64)
            .map(|k| (200 + k).min(360).saturating_sub(240))
            .sum();
        assert_eq!(samples, want_samples);
    }
}
