//! Full chunks waiting in their series to be written to the chunk store in batches.
//!
//! Written as they are cut, the chunks of all series lie in the store's files in cut order;
//! when many series are scraped together they are cut together, so the chunks of one metric
//! are spread thinly over every page of the files, and a query of that metric faults in (and
//! gives back) most of the files' pages. Instead, a cut chunk stays in its series
//! ([`super::series::SeriesData::waiting`], copied out of the appender's larger buffer at its
//! exact size) and the series is put on a list; once [`BATCH_BYTES`] of chunks wait, the thread that cut the last
//! one writes the listed series' chunks ordered by metric name, then series, each series under
//! its lock, so a reader sees every chunk either waiting or stored.
//!
//! Nothing is lost in a crash: the WAL holds the waiting chunks' samples, and replay rebuilds
//! them. [`WaitingChunks::write_all`] writes every waiting chunk (on close).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::chunk_store::ChunkStore;
use super::series::MemSeries;

/// Bytes of waiting chunks that start a batch write: large enough that each metric of a
/// scrape-wide cut gets a run of chunks together, small against the head's memory.
pub const BATCH_BYTES: usize = 2 << 20;

/// The series with waiting chunks and their bytes.
#[derive(Default)]
pub struct WaitingChunks {
    /// Series whose waiting chunks went from none to some since the last batch (a series may
    /// be listed twice; the second time it has nothing or newer chunks to write).
    series: Mutex<Vec<Arc<MemSeries>>>,
    /// Bytes of chunks cut since the last batch was taken.
    bytes: AtomicUsize,
    /// Held by the thread writing a batch.
    writer: Mutex<()>,
}

impl WaitingChunks {
    /// Records that `s` cut a chunk of `bytes` bytes (`first`: its only waiting one). Whether
    /// a batch is due.
    pub fn add(&self, s: &Arc<MemSeries>, first: bool, bytes: usize) -> bool {
        if first {
            self.series.lock().push(Arc::clone(s));
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes >= BATCH_BYTES
    }

    /// Writes the listed series' waiting chunks to `store`, grouped by metric name (the
    /// symbol `name_sym` names it; `None` when no series has one). Returns at once if another
    /// thread is writing a batch. A series whose chunks could not be written is listed again
    /// and its error logged: its chunks stay in memory until a later batch succeeds.
    pub fn write_batch(&self, store: &dyn ChunkStore, name_sym: Option<u32>) {
        let Some(_writing) = self.writer.try_lock() else {
            return;
        };
        self.write_listed(store, name_sym);
    }

    /// Writes every waiting chunk, after any batch being written.
    pub fn write_all(&self, store: &dyn ChunkStore, name_sym: Option<u32>) {
        let _writing = self.writer.lock();
        self.write_listed(store, name_sym);
    }

    fn write_listed(&self, store: &dyn ChunkStore, name_sym: Option<u32>) {
        let mut batch = {
            let mut l = self.series.lock();
            self.bytes.store(0, Ordering::Relaxed);
            std::mem::take(&mut *l)
        };
        batch.sort_unstable_by_key(|s| (metric_name(s, name_sym), s.sref));
        let mut failed = Vec::new();
        for s in batch {
            let res = s.data.lock().store_waiting(s.sref, store);
            if let Err(e) = res {
                tracing::error!(err = %e, series = s.sref, "writing head chunks failed; they stay in memory");
                failed.push(s);
            }
        }
        if !failed.is_empty() {
            self.series.lock().extend(failed);
        }
    }
}

/// The symbol of series `s`'s metric name (`u32::MAX` without one).
fn metric_name(s: &MemSeries, name_sym: Option<u32>) -> u32 {
    name_sym
        .and_then(|n| s.lset.chunks_exact(2).find(|p| p[0] == n).map(|p| p[1]))
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::Head;
    use crate::labels::Labels;

    /// Series of metrics `a` and `b` created alternately; each cuts chunks, which wait until
    /// written, and are then stored metric by metric, each metric's series in order.
    #[test]
    fn a_batch_is_written_grouped_by_metric() {
        let h = Head::in_memory();
        let names: Vec<(&str, u32)> = (0..4).flat_map(|k| [("b", k), ("a", k)]).collect();
        for t in 0..300 {
            let mut app = h.appender();
            for &(name, k) in &names {
                let ls = Labels::from_pairs(&[("__name__", name), ("k", &k.to_string())]);
                app.append(None, &ls, t * 1000, t as f64).unwrap();
            }
            app.commit().unwrap();
        }
        let chunks = |r: u64| {
            let s = h.series(r).unwrap();
            let d = s.data.lock();
            (d.mmapped.clone(), d.waiting.len())
        };
        // Refs 1..=8 in creation order: b0 a0 b1 a1 ...; two chunks cut each, none stored.
        for r in 1..=8 {
            assert_eq!(chunks(r), (Vec::new(), 2));
        }
        h.write_waiting_chunks();
        let mut order: Vec<(u64, u64)> = Vec::new();
        for r in 1..=8 {
            let (stored, waiting) = chunks(r);
            assert_eq!((stored.len(), waiting), (2, 0));
            assert!(stored[0].chunk_ref < stored[1].chunk_ref);
            order.extend(stored.iter().map(|c| (c.chunk_ref, r)));
        }
        order.sort_unstable();
        let series: Vec<u64> = order.iter().map(|&(_, r)| r).collect();
        // `b` was interned first, so its chunks come first; within a metric, by reference.
        assert_eq!(series, [1, 1, 3, 3, 5, 5, 7, 7, 2, 2, 4, 4, 6, 6, 8, 8]);
        // The samples read back whole.
        let q = h.head_querier(0, 300_000);
        let m = [crate::labels::Matcher::new(crate::labels::MatchType::Equal, "k", "2").unwrap()];
        let mut n = 0;
        for s in crate::querier::Querier::select(&q, true, None, &m) {
            let mut got = Vec::new();
            s.unwrap().collect_range(0, 300_000, &mut got).unwrap();
            let want: Vec<(i64, f64)> = (0..300).map(|t| (t * 1000, t as f64)).collect();
            assert_eq!(got, want);
            n += 1;
        }
        assert_eq!(n, 2);
    }

    /// Once [`BATCH_BYTES`] of chunks wait, the appending thread writes them without being
    /// asked; what waits afterwards stays under a batch.
    #[test]
    fn chunks_are_written_once_a_batch_is_due() {
        let h = Head::in_memory();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let series: Vec<Labels> = (0..64)
            .map(|k| {
                let k = k.to_string();
                Labels::from_pairs(&[("__name__", "m"), ("k", &k)])
            })
            .collect();
        for t in 0..10_000 {
            let mut app = h.appender();
            for ls in &series {
                // Random values: ~1 KiB chunks.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                app.append(None, ls, t * 1000, f64::from_bits(x >> 12))
                    .unwrap();
            }
            app.commit().unwrap();
        }
        let (mut stored, mut waiting) = (0, 0);
        for r in 1..=64 {
            let s = h.series(r).unwrap();
            let d = s.data.lock();
            stored += d.mmapped.len();
            waiting += d.waiting.iter().map(|w| w.bytes.len()).sum::<usize>();
        }
        assert!(stored > 64 * 10, "{stored} chunks stored");
        assert!(waiting < BATCH_BYTES, "{waiting} bytes waiting");
    }
}
