//! Where the head puts its full chunks: the seam between the head and the `chunks_head/` files.
//!
//! The head cuts a chunk once it holds about 120 samples; the full chunk is handed to a
//! [`ChunkStore`], which returns a reference to read it back. [`MemChunkStore`] keeps them in
//! memory (tests, read-only databases, benchmarks); the database plugs in the mmapped
//! `chunks_head/` files.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::chunkenc::Encoding;
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
    /// Drops stored chunks that end before `mint`, where the store can (whole files for disk).
    fn truncate(&self, mint: i64) -> Result<()>;
    /// Gives back memory used only to read chunks (for disk: the mapped pages of the files),
    /// after reading many of them. Nothing by default.
    fn release_pages(&self) {}
}

/// Keeps full head chunks in memory.
#[derive(Default)]
pub struct MemChunkStore {
    chunks: RwLock<MemChunks>,
}

#[derive(Default)]
struct MemChunks {
    next: u64,
    by_ref: BTreeMap<u64, (i64, Arc<[u8]>)>,
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
        let mut c = self.chunks.write();
        c.next += 1;
        let r = c.next;
        c.by_ref.insert(r, (maxt, Arc::from(data)));
        Ok(r)
    }

    fn read(&self, chunk_ref: u64) -> Result<Arc<[u8]>> {
        self.chunks
            .read()
            .by_ref
            .get(&chunk_ref)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| crate::Error::Other(format!("head chunk {chunk_ref} not found")))
    }

    fn truncate(&self, mint: i64) -> Result<()> {
        self.chunks
            .write()
            .by_ref
            .retain(|_, (maxt, _)| *maxt >= mint);
        Ok(())
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
}
