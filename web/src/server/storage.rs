//! The seam between the HTTP server and the storage engine.
//!
//! [`Storage`] is everything the server needs from a database: a [`Queryable`] to read, an
//! appender for remote write, and the admin operations. The on-disk database implements it in
//! [`super::db_storage`]; tests use the in-memory `MemStorage`.

use std::path::Path;
use std::sync::Arc;

use tsdb::head::SeriesRef;
use tsdb::labels::{Labels, Matcher};
use tsdb::querier::Queryable;
use tsdb::Result;

/// Statistics of the in-memory head block, for `/api/v1/status/tsdb` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeadStats {
    /// Number of series in the head.
    pub num_series: u64,
    /// Number of samples appended so far (0 if unknown).
    pub num_samples: u64,
    /// Number of chunks in the head (0 if unknown).
    pub num_chunks: u64,
    /// Earliest sample time in the head (ms); `i64::MAX` when empty.
    pub min_time: i64,
    /// Latest sample time in the head (ms); `i64::MIN` when empty.
    pub max_time: i64,
}

/// A transaction of appended samples: all or nothing becomes visible on commit.
pub trait StorageAppender: Send {
    /// Adds one float sample. Errors of Prometheus's kinds (`OutOfOrderSample`, `OutOfBounds`,
    /// `DuplicateSampleForTimestamp`) reject the sample.
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<()>;
    /// Adds one float sample like [`StorageAppender::append`], given the series reference an
    /// earlier call returned for exactly these `labels` (or `None`), as Prometheus's
    /// `Append(ref, labels, t, v)`. Returns the reference to pass next time (`None` if the
    /// storage has none). A reference the storage no longer knows (the series was dropped
    /// from the head) falls back to `labels`; callers must never pass a reference obtained
    /// for other labels.
    fn append_ref(
        &mut self,
        series_ref: Option<SeriesRef>,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<Option<SeriesRef>> {
        let _ = series_ref;
        self.append(labels, t, v).map(|()| None)
    }
    /// Makes every appended sample visible.
    fn commit(self: Box<Self>) -> Result<()>;
    /// Drops every appended sample.
    fn rollback(self: Box<Self>) -> Result<()>;
}

/// The storage engine as the server sees it.
pub trait Storage: Send + Sync + 'static {
    /// Read access over any time range.
    fn queryable(&self) -> &dyn Queryable;
    /// A new append transaction.
    fn appender(&self) -> Box<dyn StorageAppender + '_>;
    /// Writes a snapshot of the data into `dir` (which does not exist yet); the head is
    /// included unless `skip_head`.
    fn snapshot(&self, dir: &Path, skip_head: bool) -> Result<()>;
    /// Deletes the samples in `[mint, maxt]` of the series matching all `matchers`.
    fn delete(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> Result<()>;
    /// Rewrites blocks to drop deleted data.
    fn clean_tombstones(&self) -> Result<()>;
    /// Head statistics.
    fn head_stats(&self) -> HeadStats;
    /// Whether startup (WAL replay) has finished and queries may be served.
    fn is_ready(&self) -> bool {
        true
    }
    /// Flushes and closes the storage at shutdown.
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// Shared handle to a storage.
pub type SharedStorage = Arc<dyn Storage>;
