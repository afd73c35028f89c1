//! [`SparseChunkCache`]: the bytes of full head chunks read one by one from `chunks_head/`,
//! kept in memory up to a byte budget.
//!
//! A small selection (a few hundred series of 100k) reads its series' full chunks with one
//! `pread` each ([`super::ChunkStore::read_unmapped`]): the chunks of one series lie far
//! apart in the files, and mapping them would map the kernel's 64 KiB fault-around window
//! around every one. Those reads are a quarter to a third of such a query's CPU time, and a
//! dashboard asks the same small queries again at every refresh. Keeping the chunks read this
//! way answers the next read from memory; large selections read through the map and never
//! come here, so they cannot push a dashboard's chunks out.
//!
//! A chunk reference names a file and an offset, and the bytes there never change while the
//! file exists; the cache is cleared whenever files are truncated or closed, so a reference
//! reused by a later file never finds old bytes.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use super::index::IntMap;

/// Bytes of chunk data the cache holds at most (all shards together).
pub const DEFAULT_BUDGET: usize = 8 << 20;

/// Independent parts of the cache, so that the threads of one selection rarely wait on each
/// other.
const SHARDS: usize = 8;

/// Bytes counted per entry beyond the chunk's own: the map slot, the queue slot and the
/// allocation's header.
const ENTRY_OVERHEAD: usize = 48;

/// Chunk bytes by reference, evicted oldest-inserted first once over the budget.
pub struct SparseChunkCache {
    shards: [Mutex<Shard>; SHARDS],
    shard_budget: usize,
}

#[derive(Default)]
struct Shard {
    map: IntMap<u64, Arc<[u8]>>,
    /// References in insertion order (the eviction order).
    order: VecDeque<u64>,
    bytes: usize,
}

impl SparseChunkCache {
    /// An empty cache holding up to `budget` bytes.
    pub fn new(budget: usize) -> Self {
        SparseChunkCache {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            shard_budget: budget / SHARDS,
        }
    }

    fn shard(&self, chunk_ref: u64) -> &Mutex<Shard> {
        // Chunk offsets grow by a few hundred bytes: mix the bits before taking the shard.
        let h = chunk_ref.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61;
        &self.shards[h as usize % SHARDS]
    }

    /// The cached bytes of `chunk_ref`, if any.
    pub fn get(&self, chunk_ref: u64) -> Option<Arc<[u8]>> {
        self.shard(chunk_ref).lock().map.get(&chunk_ref).cloned()
    }

    /// Keeps `data` as the bytes of `chunk_ref`, evicting the oldest entries of its shard
    /// beyond the budget. A chunk larger than a shard's budget is not kept.
    pub fn insert(&self, chunk_ref: u64, data: &Arc<[u8]>) {
        let cost = data.len() + ENTRY_OVERHEAD;
        if cost > self.shard_budget {
            return;
        }
        let mut s = self.shard(chunk_ref).lock();
        if s.map.insert(chunk_ref, Arc::clone(data)).is_some() {
            return;
        }
        s.order.push_back(chunk_ref);
        s.bytes += cost;
        while s.bytes > self.shard_budget {
            let Some(old) = s.order.pop_front() else {
                break;
            };
            if let Some(d) = s.map.remove(&old) {
                s.bytes -= d.len() + ENTRY_OVERHEAD;
            }
        }
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        for s in &self.shards {
            *s.lock() = Shard::default();
        }
    }

    /// Bytes held now, entry overhead included.
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, fill: u8) -> Arc<[u8]> {
        Arc::from(vec![fill; n])
    }

    #[test]
    fn returns_what_was_inserted() {
        let c = SparseChunkCache::new(1 << 20);
        assert!(c.get(7).is_none());
        c.insert(7, &bytes(100, 3));
        assert_eq!(&*c.get(7).unwrap(), &[3u8; 100][..]);
        // A second insert of the same reference keeps one entry.
        c.insert(7, &bytes(100, 3));
        assert_eq!(c.bytes(), 100 + ENTRY_OVERHEAD);
    }

    #[test]
    fn stays_within_budget_evicting_oldest_first() {
        let budget = SHARDS * 1000;
        let c = SparseChunkCache::new(budget);
        for r in 0..10_000u64 {
            c.insert(r, &bytes(200, r as u8));
            assert!(c.bytes() <= budget);
        }
        // The newest entries are there, the oldest gone.
        assert!(c.get(9_999).is_some());
        assert!(c.get(0).is_none());
        // Too large for a shard: not kept.
        c.insert(20_000, &bytes(budget, 1));
        assert!(c.get(20_000).is_none());
    }

    #[test]
    fn clear_forgets_everything() {
        let c = SparseChunkCache::new(1 << 20);
        for r in 0..100 {
            c.insert(r, &bytes(50, 1));
        }
        c.clear();
        assert_eq!(c.bytes(), 0);
        assert!((0..100).all(|r| c.get(r).is_none()));
    }
}
