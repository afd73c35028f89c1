//! Full chunks waiting in their series to be written to the chunk store in batches.
//!
//! Written as they are cut, the chunks of all series lie in the store's files in cut order;
//! when many series are scraped together they are cut together, so the chunks of one metric
//! are spread thinly over every page of the files, and a query of that metric faults in (and
//! gives back) most of the files' pages. Instead, a cut chunk stays in its series
//! ([`super::series::SeriesData::waiting`], the appender's own buffer, not copied) and the
//! series is put on a list; once [`BATCH_BYTES`] of chunks wait, the thread that cut the last
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
