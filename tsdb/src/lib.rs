//! The ignis storage engine.
//!
//! Everything here is byte-compatible with Prometheus's `tsdb` package: the write-ahead log
//! ([`wal`]), the head block's memory-mapped chunk files ([`head`]), persistent blocks
//! ([`index`], [`chunks`], [`block`], [`tombstones`]) and the XOR chunk encoding ([`chunkenc`]).
//! [`querier`] holds the storage traits that the PromQL engine, the HTTP API and later the store
//! gateway read through. Nothing in this crate knows about HTTP, PromQL or object stores.

pub mod block;
pub(crate) mod chunk_scan;
pub mod chunkenc;
pub mod chunks;
pub mod compact;
pub mod db;
pub mod encoding;
pub mod error;
pub(crate) mod fsutil;
pub mod head;
pub mod index;
pub mod labels;
pub mod merge;
pub mod parallel;
pub mod querier;
pub mod tombstones;
pub mod wal;

pub use error::{Error, Result};
pub use labels::{Label, Labels, MatchType, Matcher};
pub use querier::{Querier, Queryable, SampleIter, SelectHints, Series, SeriesSet};

/// Asks the CPU to start loading the `bytes` bytes from `p` into its caches, for a reader
/// walking scattered memory (series, mapped chunks) to prefetch a few items ahead. Nothing on
/// CPUs other than x86-64; a prefetch never faults, whatever `p` points to.
#[inline]
pub(crate) fn prefetch(p: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..bytes).step_by(64) {
        // SAFETY: a prefetch hint reads nothing architecturally and never faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.wrapping_add(line).cast(),
            )
        };
    }
}
