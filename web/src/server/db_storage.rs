//! [`Storage`] over the on-disk database, [`tsdb::db::Db`].
//!
//! The database is opened in the background ([`DbStorage::open_in_background`]) so the HTTP
//! server can answer `/-/healthy` and report "not ready" while the WAL is replayed; until then
//! reads see an empty store and appends fail. A background task compacts the head into blocks
//! and applies retention every minute, and at once when an append made the head compactable,
//! as Prometheus does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tsdb::db::{Db, Options};
use tsdb::head::{Appender, SeriesRef};
use tsdb::labels::{Labels, Matcher};
use tsdb::querier::{MemQueryable, Queryable};
use tsdb::{Error, Result};

use super::storage::{HeadStats, Storage, StorageAppender};

/// How often the head is compacted and retention applied.
const COMPACT_INTERVAL: Duration = Duration::from_secs(60);

/// The on-disk database as the server's storage.
pub struct DbStorage {
    db: OnceLock<Db>,
    empty: MemQueryable,
    /// Wakes the compaction task early: an append made the head compactable (as Prometheus
    /// signals from its appender's commit), so it is cut into a block now rather than up to
    /// a minute later with the head still holding that block's samples.
    compact_now: Arc<tokio::sync::Notify>,
}

impl DbStorage {
    /// A storage whose database is not open yet.
    pub fn pending() -> Arc<Self> {
        Arc::new(DbStorage {
            db: OnceLock::new(),
            empty: MemQueryable::default(),
            compact_now: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// A storage over an open database.
    #[cfg(test)]
    pub fn new(db: Db) -> Arc<Self> {
        let s = DbStorage::pending();
        let _ = s.db.set(db);
        s
    }

    /// The database, once open.
    pub fn db(&self) -> Option<&Db> {
        self.db.get()
    }

    /// Opens the database at `dir` on a blocking thread, then starts periodic compaction.
    /// `on_error` is called when opening fails.
    pub fn open_in_background(
        self: &Arc<Self>,
        dir: PathBuf,
        opts: Options,
        on_error: impl FnOnce(String) + Send + 'static,
    ) {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            tracing::info!(dir = %dir.display(), "Starting TSDB ...");
            let t0 = std::time::Instant::now();
            match Db::open(&dir, opts) {
                Ok(db) => {
                    let st = db.head_stats();
                    tracing::info!(
                        duration = ?t0.elapsed(),
                        series = st.num_series,
                        blocks = db.blocks().len(),
                        "TSDB started"
                    );
                    let _ = me.db.set(db);
                    me.spawn_compaction();
                }
                Err(e) => {
                    tracing::error!(err = %e, dir = %dir.display(), "Opening storage failed");
                    on_error(format!("opening storage failed: {e}"));
                }
            }
        });
    }

    fn spawn_compaction(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let wake = Arc::clone(&self.compact_now);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(COMPACT_INTERVAL);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = wake.notified() => {}
                }
                let Some(me) = weak.upgrade() else { return };
                let res = tokio::task::spawn_blocking(move || {
                    let res = me.db().map(|db| db.compact());
                    // Compaction frees the head's copy of what it wrote: hand the pages back.
                    tsdb::querier::thread_idle();
                    tsdb::parallel::pool_idle();
                    res
                })
                .await;
                match res {
                    Ok(Some(Ok(ulids))) if !ulids.is_empty() => {
                        tracing::info!(blocks = ulids.len(), "Head compaction wrote blocks")
                    }
                    Ok(Some(Err(Error::Closed))) => return,
                    Ok(Some(Err(e))) => tracing::error!(err = %e, "Compaction failed"),
                    _ => {}
                }
            }
        });
    }
}

/// An append transaction on the database. Consecutive samples of one series skip the lookup
/// by labels inside the head's appender, so nothing is remembered here (a copy of every
/// series' labels would cost more than it saves when series have one sample each).
struct DbAppender<'a> {
    app: Appender,
    storage: &'a DbStorage,
}

impl StorageAppender for DbAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<()> {
        self.app.append(None, labels, t, v).map(drop)
    }

    fn append_ref(
        &mut self,
        series_ref: Option<SeriesRef>,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<Option<SeriesRef>> {
        // The head checks the reference is still in it and otherwise finds (or creates) the
        // series by `labels`; references are never reused for other series.
        self.app.append(series_ref, labels, t, v).map(Some)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.app.commit()?;
        if self.storage.db().is_some_and(Db::head_compactable) {
            self.storage.compact_now.notify_one();
        }
        Ok(())
    }

    fn rollback(mut self: Box<Self>) -> Result<()> {
        self.app.rollback()
    }
}

struct NotReady;

impl StorageAppender for NotReady {
    fn append(&mut self, _: &Labels, _: i64, _: f64) -> Result<()> {
        Err(Error::Other(
            "storage is not ready yet (WAL replay in progress)".into(),
        ))
    }
    fn commit(self: Box<Self>) -> Result<()> {
        Ok(())
    }
    fn rollback(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

fn not_ready() -> Error {
    Error::Other("storage is not ready yet (WAL replay in progress)".into())
}

impl Storage for DbStorage {
    fn queryable(&self) -> &dyn Queryable {
        match self.db.get() {
            Some(db) => db,
            None => &self.empty,
        }
    }

    fn appender(&self) -> Box<dyn StorageAppender + '_> {
        match self.db.get() {
            Some(db) => Box::new(DbAppender {
                app: db.appender(),
                storage: self,
            }),
            None => Box::new(NotReady),
        }
    }

    fn snapshot(&self, dir: &Path, skip_head: bool) -> Result<()> {
        self.db
            .get()
            .ok_or_else(not_ready)?
            .snapshot(dir, !skip_head)
    }

    fn delete(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> Result<()> {
        self.db
            .get()
            .ok_or_else(not_ready)?
            .delete(mint, maxt, matchers)
    }

    fn clean_tombstones(&self) -> Result<()> {
        self.db
            .get()
            .ok_or_else(not_ready)?
            .clean_tombstones()
            .map(|_| ())
    }

    fn head_stats(&self) -> HeadStats {
        match self.db.get() {
            Some(db) => {
                let s = db.head_stats();
                HeadStats {
                    num_series: s.num_series,
                    num_samples: 0,
                    num_chunks: s.num_chunks,
                    min_time: s.min_time,
                    max_time: s.max_time,
                }
            }
            None => HeadStats {
                min_time: i64::MAX,
                max_time: i64::MIN,
                ..Default::default()
            },
        }
    }

    fn is_ready(&self) -> bool {
        self.db.get().is_some()
    }

    fn close(&self) -> Result<()> {
        match self.db.get() {
            Some(db) => db.close(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_makes_the_head_compactable_starts_compaction_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let s = DbStorage::new(db);
        s.spawn_compaction();
        let l = Labels::from_pairs(&[("__name__", "m")]);
        // 3h + 1 min of samples: more than 1.5 block ranges, so the first 2h go to a block.
        let mut app = s.appender();
        for i in 0..=(181 * 4) {
            app.append(&l, i * 15_000, i as f64).unwrap();
        }
        app.commit().unwrap();
        // The minute timer has not fired again; the commit's signal did it.
        let t0 = std::time::Instant::now();
        while s.db().unwrap().blocks().is_empty() || s.db().unwrap().head_compactable() {
            assert!(t0.elapsed() < Duration::from_secs(20), "no compaction");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn db_storage_appends_queries_and_rejects_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let s = DbStorage::new(db);
        assert!(s.is_ready());
        let l = Labels::from_pairs(&[("__name__", "m"), ("a", "1")]);
        let mut app = s.appender();
        for i in 0..10 {
            app.append(&l, 1000 * i, i as f64).unwrap();
        }
        app.commit().unwrap();
        let mut app = s.appender();
        assert!(matches!(
            app.append(&l, 500, 1.0),
            Err(Error::OutOfOrderSample)
        ));
        app.rollback().unwrap();
        let q = s.queryable().querier(0, 100_000).unwrap();
        let got: Vec<_> = q
            .select(true, None, &[Matcher::equal("__name__", "m")])
            .collect();
        assert_eq!(got.len(), 1);
        assert_eq!(s.head_stats().num_series, 1);
        assert_eq!(
            (s.head_stats().min_time, s.head_stats().max_time),
            (0, 9000)
        );
        s.close().unwrap();
    }

    #[test]
    fn pending_storage_is_not_ready() {
        let s = DbStorage::pending();
        assert!(!s.is_ready());
        let mut app = s.appender();
        assert!(app
            .append(&Labels::from_pairs(&[("a", "b")]), 1, 1.0)
            .is_err());
        assert!(s.queryable().querier(0, 1).is_ok());
    }
}
