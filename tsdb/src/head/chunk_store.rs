//! Where the head puts its full chunks: the seam between the head and the `chunks_head/` files.
//!
//! The head cuts a chunk once it holds about 120 samples; the full chunk is handed to a
//! [`ChunkStore`], which returns a reference to read it back. [`MemChunkStore`] keeps them in
//! memory (tests, read-only databases, benchmarks); the database plugs in the mmapped
//! `chunks_head/` files.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::chunkenc::Encoding;
use crate::querier::ChunkData;
use crate::Result;

/// Storage for the head's full chunks.
pub trait ChunkStore: Send + Sync {
    /// Stores a full chunk of series `series_ref` covering `[mint, maxt]`; returns its reference.
    fn write(
        &self,
        series_ref: u64,
        mint: i64,
        maxt: i64,
        enc: Encoding,
        data: &[u8],
    ) -> Result<u64>;
    /// The bytes of a stored chunk (header included).
    fn read(&self, chunk_ref: u64) -> Result<Arc<[u8]>>;
    /// The bytes of the stored chunks `refs`, as [`ChunkStore::read`] gives them, for reads
    /// of many chunks at once: a store that copies chunks out packs them into one buffer
    /// ([`ChunkData::pack`]) instead of allocating one per chunk. Each chunk by itself by
    /// default.
    fn read_many(&self, refs: &[u64]) -> Vec<Result<ChunkData>> {
        refs.iter()
            .map(|&r| self.read(r).map(ChunkData::from))
            .collect()
    }
    /// [`ChunkStore::read`] without mapping the store's files into memory, for chunks read
    /// far apart (see [`ChunkStore::region_of`]). The same as `read` by default.
    fn read_unmapped(&self, chunk_ref: u64) -> Result<Arc<[u8]>> {
        self.read(chunk_ref)
    }
    /// [`ChunkStore::read_unmapped`] of a chunk read once, by a pass over the whole head
    /// (writing a block): the store keeps nothing of it for later reads. The same as
    /// `read_unmapped` by default.
    fn read_once(&self, chunk_ref: u64) -> Result<Arc<[u8]>> {
        self.read_unmapped(chunk_ref)
    }
    /// Drops stored chunks that end before `mint`, where the store can (whole files for disk).
    fn truncate(&self, mint: i64) -> Result<()>;
    /// The storage region holding chunk `chunk_ref`. Reading many chunks grouped by region,
    /// regions in increasing order, with [`ChunkStore::release_region`] after each, keeps the
    /// pages of only one region mapped at a time. A single region (0) by default.
    fn region_of(&self, _chunk_ref: u64) -> u64 {
        0
    }
    /// Gives back the mapped pages of `region` (see [`ChunkStore::region_of`]). Nothing by
    /// default.
    fn release_region(&self, _region: u64) {}
}

/// Keeps full head chunks in memory. References are handed out in sequence (1, 2, ...), so a
/// chunk is found by indexing, not by a search: a query reads a chunk per series and block of
/// the head, and a tree over millions of chunks costs a cache miss per level.
#[derive(Default)]
pub struct MemChunkStore {
    chunks: RwLock<MemChunks>,
}

#[derive(Default)]
struct MemChunks {
    /// Reference of `slots[0]`, the oldest chunk still held (or of the next one when empty).
    first: u64,
    /// Chunk `first + i` at `i`: its max time and bytes, `None` once truncated.
    slots: VecDeque<Option<(i64, Arc<[u8]>)>>,
}

impl MemChunks {
    /// The reference the next written chunk gets.
    fn next_ref(&self) -> u64 {
        self.first.max(1) + self.slots.len() as u64
    }
}

impl ChunkStore for MemChunkStore {
    fn write(
        &self,
        _series_ref: u64,
        _mint: i64,
        maxt: i64,
        _enc: Encoding,
        data: &[u8],
    ) -> Result<u64> {
        let data: Arc<[u8]> = Arc::from(data);
        let mut c = self.chunks.write();
        let r = c.next_ref();
        if c.slots.is_empty() {
            c.first = r;
        }
        c.slots.push_back(Some((maxt, data)));
        Ok(r)
    }

    fn read(&self, chunk_ref: u64) -> Result<Arc<[u8]>> {
        let c = self.chunks.read();
        chunk_ref
            .checked_sub(c.first)
            .and_then(|i| c.slots.get(usize::try_from(i).ok()?))
            .and_then(|slot| slot.as_ref())
            .map(|(_, d)| d.clone())
            .ok_or_else(|| crate::Error::Other(format!("head chunk {chunk_ref} not found")))
    }

    fn truncate(&self, mint: i64) -> Result<()> {
        let mut c = self.chunks.write();
        for slot in c.slots.iter_mut() {
            if slot.as_ref().is_some_and(|(maxt, _)| *maxt < mint) {
                *slot = None;
            }
        }
        // Emptied slots at the front go; the references of the rest stay as they are.
        while matches!(c.slots.front(), Some(None)) {
            c.slots.pop_front();
            c.first += 1;
        }
        Ok(())
    }
}

/// A chunk store in memory that records what is read and given back, by region (a region per
/// 64 references), for tests of how readers use a store.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct RecordingStore {
    pub(crate) mem: MemChunkStore,
    pub(crate) log: parking_lot::Mutex<Vec<String>>,
}

#[cfg(test)]
impl RecordingStore {
    /// A head over a new recording store holding series `m{k="0"}` to `m{k="2"}`, appended in
    /// turns one sample a second for `seconds` seconds, so their full chunks interleave in
    /// the store (each commit's cut chunks are written before the next).
    pub(crate) fn interleaved_head(seconds: i64) -> (Arc<RecordingStore>, super::Head) {
        let store = Arc::new(RecordingStore::default());
        let h = super::Head::new(super::HeadOptions::default(), store.clone()).unwrap();
        for t in 0..seconds {
            let mut app = h.appender();
            for k in 0..3 {
                let ls =
                    crate::labels::Labels::from_pairs(&[("__name__", "m"), ("k", &k.to_string())]);
                app.append(None, &ls, t * 1000, t as f64).unwrap();
            }
            app.commit().unwrap();
            h.write_waiting_chunks();
        }
        (store, h)
    }
}

#[cfg(test)]
impl ChunkStore for RecordingStore {
    fn write(&self, s: u64, mint: i64, maxt: i64, e: Encoding, d: &[u8]) -> Result<u64> {
        self.mem.write(s, mint, maxt, e, d)
    }
    fn read(&self, r: u64) -> Result<Arc<[u8]>> {
        self.log.lock().push(format!("read {}", self.region_of(r)));
        self.mem.read(r)
    }
    fn read_unmapped(&self, r: u64) -> Result<Arc<[u8]>> {
        self.log
            .lock()
            .push(format!("unmapped {}", self.region_of(r)));
        self.mem.read(r)
    }
    fn truncate(&self, mint: i64) -> Result<()> {
        self.mem.truncate(mint)
    }
    fn region_of(&self, r: u64) -> u64 {
        r / 64
    }
    fn release_region(&self, g: u64) {
        self.log.lock().push(format!("release {g}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_store_round_trips_and_truncates() {
        let s = MemChunkStore::default();
        let a = s.write(1, 0, 10, Encoding::Xor, &[1, 2]).unwrap();
        let b = s.write(1, 11, 20, Encoding::Xor, &[3]).unwrap();
        assert_eq!(&*s.read(a).unwrap(), &[1, 2]);
        s.truncate(11).unwrap();
        assert!(s.read(a).is_err());
        assert_eq!(&*s.read(b).unwrap(), &[3]);
    }

    #[test]
    fn mem_store_keeps_references_across_truncation() {
        let s = MemChunkStore::default();
        assert!(s.read(0).is_err() && s.read(1).is_err());
        // maxt 10, 30, 20, 40: truncating at 25 drops the first and third.
        let refs: Vec<u64> = [10, 30, 20, 40]
            .iter()
            .map(|&maxt| s.write(1, 0, maxt, Encoding::Xor, &[maxt as u8]).unwrap())
            .collect();
        assert_eq!(refs, vec![1, 2, 3, 4]);
        s.truncate(25).unwrap();
        assert!(s.read(1).is_err());
        assert_eq!(&*s.read(2).unwrap(), &[30]);
        assert!(s.read(3).is_err());
        assert_eq!(&*s.read(4).unwrap(), &[40]);
        let e = s.write(1, 0, 50, Encoding::Xor, &[50]).unwrap();
        assert_eq!(e, 5);
        s.truncate(100).unwrap();
        for r in 0..7 {
            assert!(s.read(r).is_err(), "ref {r}");
        }
        // Emptied, references still go on from where they were.
        assert_eq!(s.write(1, 0, 60, Encoding::Xor, &[60]).unwrap(), 6);
        assert_eq!(&*s.read(6).unwrap(), &[60]);
        assert!(s.read(u64::MAX).is_err());
    }
}
