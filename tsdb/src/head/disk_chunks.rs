//! [`DiskChunkStore`]: the head's full chunks in the mmapped `chunks_head/` files, through
//! [`ChunkDiskMapper`](super::head_chunks::ChunkDiskMapper).
//!
//! On open, every chunk already in the files is handed to the head
//! ([`DiskChunkStore::load_into`]) so replay only has to add what the WAL holds after them.

use std::sync::Arc;

use parking_lot::RwLock;

use super::chunk_store::ChunkStore;
use super::head_chunks::{ChunkDiskMapper, HeadChunkRef, OOO_MASK};
use super::sparse_cache::{SparseChunkCache, DEFAULT_BUDGET};
use super::Head;
use crate::chunkenc::Encoding;
use crate::querier::ChunkData;
use crate::Result;

/// Full head chunks in `chunks_head/`. Reads share the mapper (queries snapshot chunks on
/// several threads); writes, truncation and closing take it alone. Chunks read one by one
/// ([`ChunkStore::read_unmapped`]) are kept in a [`SparseChunkCache`].
pub struct DiskChunkStore {
    mapper: RwLock<ChunkDiskMapper>,
    sparse: SparseChunkCache,
}

impl DiskChunkStore {
    /// Wraps an open mapper.
    pub fn new(mapper: ChunkDiskMapper) -> Self {
        DiskChunkStore {
            mapper: RwLock::new(mapper),
            sparse: SparseChunkCache::new(DEFAULT_BUDGET),
        }
    }

    /// Attaches every in-order float chunk in the files to its series in `head` (attached when
    /// the series appears during WAL replay). Returns the number of chunks. The pages read
    /// to find them are given back after.
    pub fn load_into(&self, head: &Head) -> Result<u64> {
        let mut n = 0u64;
        let mut m = self.mapper.write();
        m.iterate_all(|series_ref, chunk_ref, mint, maxt, _num, enc| {
            if enc & OOO_MASK == 0 && Encoding::from_u8(enc) == Some(Encoding::Xor) {
                head.attach_mmapped_chunk(series_ref, chunk_ref.0, mint, maxt);
                n += 1;
            }
            Ok(())
        })?;
        m.release_pages();
        Ok(n)
    }

    /// Flushes buffered chunks and fsyncs.
    pub fn close(&self) -> Result<()> {
        let mut m = self.mapper.write();
        self.sparse.clear();
        m.close()
    }

    /// Runs `f` on the mapper (which may change any file, so the cache is cleared).
    pub fn with_mapper<R>(&self, f: impl FnOnce(&mut ChunkDiskMapper) -> R) -> R {
        let mut m = self.mapper.write();
        self.sparse.clear();
        f(&mut m)
    }

    /// Bytes held by the cache of sparsely read chunks.
    #[cfg(test)]
    fn sparse_cache_bytes(&self) -> usize {
        self.sparse.bytes()
    }
}

impl ChunkStore for DiskChunkStore {
    fn write(
        &self,
        series_ref: u64,
        mint: i64,
        maxt: i64,
        enc: Encoding,
        data: &[u8],
    ) -> Result<u64> {
        Ok(self
            .mapper
            .write()
            .write_chunk(series_ref, mint, maxt, enc, data)?
            .0)
    }

    fn read(&self, chunk_ref: u64) -> Result<Arc<[u8]>> {
        let m = self.mapper.read();
        Ok(Arc::from(m.chunk(HeadChunkRef(chunk_ref))?))
    }

    fn read_many(&self, refs: &[u64]) -> Vec<Result<ChunkData>> {
        let m = self.mapper.read();
        // Windows of up to SPAN_WINDOW bytes of one file (by offset), each read in one span
        // where its chunks lie close enough, else through the map; each packed in `refs`'
        // order.
        let mut by_offset: Vec<u32> = (0..refs.len() as u32).collect();
        by_offset.sort_unstable_by_key(|&i| refs[i as usize]);
        let mut out: Vec<Option<Result<ChunkData>>> = (0..refs.len()).map(|_| None).collect();
        let mut rest = &by_offset[..];
        while let Some(&first) = rest.first() {
            let start = refs[first as usize];
            let n = rest
                .iter()
                .position(|&i| refs[i as usize] - start >= SPAN_WINDOW)
                .unwrap_or(rest.len());
            let (window, next) = rest.split_at(n);
            rest = next;
            let mut window = window.to_vec();
            window.sort_unstable();
            let wrefs: Vec<HeadChunkRef> = window
                .iter()
                .map(|&i| HeadChunkRef(refs[i as usize]))
                .collect();
            let spanned = SPAN.with_borrow_mut(|buf| {
                let ranges = m.read_span(&wrefs, buf)?;
                let chunks = ranges.into_iter().map(|r| r.map(|r| &buf[r])).collect();
                Some(ChunkData::pack(chunks))
            });
            let got = spanned.unwrap_or_else(|| {
                let chunks = wrefs.iter().enumerate().map(|(i, &r)| {
                    if let Some(&ahead) = wrefs.get(i + PREFETCH_AHEAD) {
                        m.prefetch(ahead);
                    }
                    m.chunk(r)
                });
                ChunkData::pack(chunks.collect())
            });
            for (&i, d) in window.iter().zip(got) {
                out[i as usize] = Some(d);
            }
        }
        out.into_iter()
            .map(|d| d.unwrap_or_else(|| Err(crate::Error::Other("head chunk not read".into()))))
            .collect()
    }

    fn read_unmapped(&self, chunk_ref: u64) -> Result<Arc<[u8]>> {
        if let Some(d) = self.sparse.get(chunk_ref) {
            return Ok(d);
        }
        // Read and kept under the read lock: truncation clears the cache under the write lock,
        // so no chunk of a deleted file is kept after it.
        let m = self.mapper.read();
        let d = m.chunk_unmapped(HeadChunkRef(chunk_ref))?;
        self.sparse.insert(chunk_ref, &d);
        Ok(d)
    }

    fn read_once(&self, chunk_ref: u64) -> Result<Arc<[u8]>> {
        match self.sparse.get(chunk_ref) {
            Some(d) => Ok(d),
            None => self.mapper.read().chunk_unmapped(HeadChunkRef(chunk_ref)),
        }
    }

    fn truncate(&self, mint: i64) -> Result<()> {
        let mut m = self.mapper.write();
        self.sparse.clear();
        m.truncate(mint).map(|_| ())
    }

    fn region_of(&self, chunk_ref: u64) -> u64 {
        chunk_ref >> REGION_SHIFT
    }

    fn release_region(&self, region: u64) {
        let start = HeadChunkRef(region << REGION_SHIFT);
        self.mapper
            .read()
            .release_range(start.seq(), start.offset() as usize, 1 << REGION_SHIFT);
    }
}

/// Most bytes from the first to the last chunk that [`DiskChunkStore::read_many`] reads in
/// one span: a quarter of a region keeps each thread's buffer small.
const SPAN_WINDOW: u64 = 256 << 10;

thread_local! {
    /// The bytes of [`ChunkDiskMapper::read_span`]'s last read, kept per thread (at most
    /// [`SPAN_WINDOW`] and a chunk).
    static SPAN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How many chunks ahead of the one it reads [`DiskChunkStore::read_many`] prefetches
/// ([`ChunkDiskMapper::prefetch`]): enough for memory's latency to pass while the chunks
/// between are checked and copied.
const PREFETCH_AHEAD: usize = 8;

/// A region ([`ChunkStore::region_of`]) is 1 MiB of one file: a reference is `file << 32 |
/// offset`, so `ref >> 20` names the file and the MiB in it. A page the kernel maps around a
/// read (fault-around maps an aligned 64 KiB) never crosses a region's edge.
const REGION_SHIFT: u32 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    /// A store over a new directory of 4 KiB files holding `n` chunks of series 1, chunk `i`
    /// being `[0, 1]` and `extra(i)` bytes after, 100 ms each; their references and bytes.
    fn store_with(
        n: u8,
        extra: impl Fn(u8) -> u8,
    ) -> (tempfile::TempDir, DiskChunkStore, Vec<(u64, Vec<u8>)>) {
        let dir = tempfile::tempdir().unwrap();
        let mapper = ChunkDiskMapper::open_with_max_file_size(dir.path(), 4096).unwrap();
        let store = DiskChunkStore::new(mapper);
        let mut refs = Vec::new();
        for i in 0..n {
            let data: Vec<u8> = [0, 1]
                .into_iter()
                .chain((0..extra(i)).map(|j| i ^ j))
                .collect();
            let t = i64::from(i) * 100;
            let r = store.write(1, t, t + 99, Encoding::Xor, &data).unwrap();
            refs.push((r, data));
        }
        store.with_mapper(|m| m.flush()).unwrap();
        (dir, store, refs)
    }

    #[test]
    fn sparse_reads_are_cached_until_truncation() {
        let (_dir, store, refs) = store_with(60, |_| 40);
        // A block write's reads keep nothing.
        for (r, d) in &refs {
            assert_eq!(&*store.read_once(*r).unwrap(), &d[..]);
        }
        assert_eq!(store.sparse_cache_bytes(), 0);
        for (r, d) in &refs {
            assert_eq!(&*store.read_unmapped(*r).unwrap(), &d[..]);
        }
        let held = store.sparse_cache_bytes();
        assert!(held >= 60 * 42, "every chunk read is kept: {held}");
        // Answered from the cache: the same bytes as through the map.
        for (r, d) in &refs {
            assert_eq!(&*store.read_unmapped(*r).unwrap(), &d[..]);
            assert_eq!(&*store.read(*r).unwrap(), &d[..]);
        }
        assert_eq!(store.sparse_cache_bytes(), held);
        // Truncation deletes files: nothing of them stays cached.
        store.truncate(3000).unwrap();
        assert_eq!(store.sparse_cache_bytes(), 0);
        let (last, d) = refs.last().unwrap();
        assert_eq!(&*store.read_unmapped(*last).unwrap(), &d[..]);
    }

    #[test]
    fn read_many_packs_the_chunks_and_passes_errors_through() {
        let (_dir, store, written) = store_with(30, |i| 20 + i);
        let (refs, want): (Vec<u64>, Vec<Vec<u8>>) = written.into_iter().unzip();
        // Out of order, with a reference to a file that does not exist in the middle.
        let mut asked: Vec<u64> = refs.iter().rev().copied().collect();
        asked.insert(5, HeadChunkRef::new(999, 8).0);
        let got = store.read_many(&asked);
        assert_eq!(got.len(), asked.len());
        assert!(got[5].is_err());
        let ok: Vec<&ChunkData> = got.iter().filter_map(|d| d.as_ref().ok()).collect();
        for (d, w) in ok.iter().zip(want.iter().rev()) {
            assert_eq!(&d[..], &w[..]);
        }
        // One buffer for all of them, each chunk right after the one before.
        for w in ok.windows(2) {
            assert_eq!(w[0].as_ptr().wrapping_add(w[0].len()), w[1].as_ptr());
        }
    }

    /// A dense run of one file is read in one span, in the asked order; a run over two files
    /// is not; a damaged chunk in a span reads as an error and the others still read.
    #[test]
    fn read_many_reads_a_dense_run_in_one_span() {
        let (dir, store, written) = store_with(150, |i| 20 + i % 7);
        let seq = HeadChunkRef(written[0].0).seq();
        let mut one_file: Vec<&(u64, Vec<u8>)> = written
            .iter()
            .filter(|(r, _)| HeadChunkRef(*r).seq() == seq)
            .collect();
        assert!(one_file.len() > 10 && one_file.len() < written.len());
        one_file.reverse();
        let refs: Vec<HeadChunkRef> = one_file.iter().map(|(r, _)| HeadChunkRef(*r)).collect();
        let mut buf = Vec::new();
        let spans = store.with_mapper(|m| m.read_span(&refs, &mut buf));
        for (range, (_, want)) in spans.expect("one span").into_iter().zip(&one_file) {
            assert_eq!(&buf[range.unwrap()], &want[..]);
        }
        let across: Vec<HeadChunkRef> = written.iter().map(|(r, _)| HeadChunkRef(*r)).collect();
        assert!(store
            .with_mapper(|m| m.read_span(&across, &mut buf))
            .is_none());
        // Damage one chunk's data in the file.
        let bad = HeadChunkRef(one_file[3].0);
        let path = dir.path().join(format!("{:06}", bad.seq()));
        let mut bytes = std::fs::read(&path).unwrap();
        // Past the 25-byte fixed header and the one-byte length.
        bytes[bad.offset() as usize + 28] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let asked: Vec<u64> = one_file.iter().map(|(r, _)| *r).collect();
        let got = store.read_many(&asked);
        for (k, (d, (_, want))) in got.iter().zip(&one_file).enumerate() {
            match d {
                Ok(d) => assert_eq!(&d[..], &want[..]),
                Err(e) => assert!(k == 3, "chunk {k}: {e}"),
            }
        }
        assert!(got[3].is_err());
    }

    /// A run longer than a span window is read window by window, each chunk in its place.
    #[test]
    fn read_many_splits_a_long_run_into_windows() {
        let dir = tempfile::tempdir().unwrap();
        let mapper = ChunkDiskMapper::open_with_max_file_size(dir.path(), 4 << 20).unwrap();
        let store = DiskChunkStore::new(mapper);
        let mut written = Vec::new();
        for i in 0..700u32 {
            let data: Vec<u8> = (0..1000u32).map(|j| (i * 7 + j) as u8).collect();
            let t = i64::from(i) * 100;
            written.push((
                store.write(1, t, t + 99, Encoding::Xor, &data).unwrap(),
                data,
            ));
        }
        store.with_mapper(|m| m.flush()).unwrap();
        let span = written.last().unwrap().0 - written[0].0;
        assert!(span > 2 * SPAN_WINDOW, "{span}");
        written.reverse();
        let refs: Vec<u64> = written.iter().map(|(r, _)| *r).collect();
        for (got, (_, want)) in store.read_many(&refs).iter().zip(&written) {
            assert_eq!(&got.as_ref().unwrap()[..], &want[..]);
        }
    }
}
