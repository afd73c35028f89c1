//! [`DiskChunkStore`]: the head's full chunks in the mmapped `chunks_head/` files, through
//! [`ChunkDiskMapper`](super::head_chunks::ChunkDiskMapper).
//!
//! On open, every chunk already in the files is handed to the head
//! ([`DiskChunkStore::load_into`]) so replay only has to add what the WAL holds after them.

use std::sync::Arc;

use parking_lot::RwLock;

use super::chunk_store::ChunkStore;
use super::head_chunks::{ChunkDiskMapper, HeadChunkRef, OOO_MASK};
use super::Head;
use crate::chunkenc::Encoding;
use crate::Result;

/// Full head chunks in `chunks_head/`. Reads share the mapper (queries snapshot chunks on
/// several threads); writes, truncation and closing take it alone.
pub struct DiskChunkStore {
    mapper: RwLock<ChunkDiskMapper>,
}

impl DiskChunkStore {
    /// Wraps an open mapper.
    pub fn new(mapper: ChunkDiskMapper) -> Self {
        DiskChunkStore {
            mapper: RwLock::new(mapper),
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
        self.mapper.write().close()
    }

    /// Runs `f` on the mapper.
    pub fn with_mapper<R>(&self, f: impl FnOnce(&mut ChunkDiskMapper) -> R) -> R {
        f(&mut self.mapper.write())
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

    fn read_unmapped(&self, chunk_ref: u64) -> Result<Arc<[u8]>> {
        self.mapper.read().chunk_unmapped(HeadChunkRef(chunk_ref))
    }

    fn truncate(&self, mint: i64) -> Result<()> {
        self.mapper.write().truncate(mint).map(|_| ())
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

/// A region ([`ChunkStore::region_of`]) is 1 MiB of one file: a reference is `file << 32 |
/// offset`, so `ref >> 20` names the file and the MiB in it. A page the kernel maps around a
/// read (fault-around maps an aligned 64 KiB) never crosses a region's edge.
const REGION_SHIFT: u32 = 20;
