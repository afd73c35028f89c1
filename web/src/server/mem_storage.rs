//! An in-memory [`Storage`] for tests: series in a map, published as a [`MemQueryable`] on
//! commit, with the same order checks as the head.

use std::collections::BTreeMap;
use std::path::Path;

use parking_lot::RwLock;
use tsdb::labels::{Labels, Matcher};
use tsdb::querier::{matches_all, MemQueryable, Queryable, VecSeries};
use tsdb::{Error, Result};

use super::storage::{HeadStats, Storage, StorageAppender};

/// An in-memory [`Storage`]: series in a map, published as a [`MemQueryable`] on commit.
#[derive(Default)]
pub struct MemStorage {
    inner: RwLock<MemInner>,
}

#[derive(Default)]
struct MemInner {
    series: BTreeMap<Labels, Vec<(i64, f64)>>,
    published: MemQueryable,
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `series`.
    pub fn with_series(series: Vec<VecSeries>) -> Self {
        let s = MemStorage::new();
        {
            let mut inner = s.inner.write();
            for v in series {
                inner.series.entry(v.labels).or_default().extend(v.samples);
            }
            for samples in inner.series.values_mut() {
                samples.sort_by_key(|s| s.0);
            }
            inner.publish();
        }
        s
    }
}

impl MemInner {
    fn publish(&mut self) {
        self.published = MemQueryable::new(
            self.series
                .iter()
                .map(|(l, s)| VecSeries {
                    labels: l.clone(),
                    samples: s.clone(),
                })
                .collect(),
        );
    }
}

impl Queryable for MemStorage {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn tsdb::Querier>> {
        self.inner.read().published.querier(mint, maxt)
    }
}

struct MemAppender<'a> {
    store: &'a MemStorage,
    pending: Vec<(Labels, i64, f64)>,
    /// Newest timestamp per series seen in this transaction, to order-check within it.
    last: BTreeMap<Labels, (i64, f64)>,
}

impl StorageAppender for MemAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<()> {
        labels.validate()?;
        let prev = match self.last.get(labels) {
            Some(p) => Some(*p),
            None => self
                .store
                .inner
                .read()
                .series
                .get(labels)
                .and_then(|s| s.last().copied()),
        };
        if let Some((pt, pv)) = prev {
            if t < pt {
                return Err(Error::OutOfOrderSample);
            }
            if t == pt {
                if pv.to_bits() == v.to_bits() {
                    return Ok(());
                }
                return Err(Error::DuplicateSampleForTimestamp);
            }
        }
        self.last.insert(labels.clone(), (t, v));
        self.pending.push((labels.clone(), t, v));
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let mut inner = self.store.inner.write();
        for (l, t, v) in self.pending {
            inner.series.entry(l).or_default().push((t, v));
        }
        inner.publish();
        Ok(())
    }

    fn rollback(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

impl Storage for MemStorage {
    fn queryable(&self) -> &dyn Queryable {
        self
    }

    fn appender(&self) -> Box<dyn StorageAppender + '_> {
        Box::new(MemAppender {
            store: self,
            pending: Vec::new(),
            last: BTreeMap::new(),
        })
    }

    fn snapshot(&self, dir: &Path, _skip_head: bool) -> Result<()> {
        // The in-memory store has no block format of its own: it writes one JSON line per
        // series so that a snapshot is at least a faithful copy.
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let inner = self.inner.read();
        let mut out = String::new();
        for (l, s) in &inner.series {
            let labels: BTreeMap<&str, &str> = l
                .iter()
                .map(|x| (x.name.as_str(), x.value.as_str()))
                .collect();
            let line = serde_json::json!({ "labels": labels, "samples": s.iter().map(|(t, v)| (t, v.to_string())).collect::<Vec<_>>() });
            out.push_str(&line.to_string());
            out.push('\n');
        }
        let f = dir.join("series.jsonl");
        std::fs::write(&f, out).map_err(|e| Error::io(&f, e))
    }

    fn delete(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> Result<()> {
        let mut inner = self.inner.write();
        for (l, s) in inner.series.iter_mut() {
            if matches_all(l, matchers) {
                s.retain(|&(t, _)| t < mint || t > maxt);
            }
        }
        inner.series.retain(|_, s| !s.is_empty());
        inner.publish();
        Ok(())
    }

    fn clean_tombstones(&self) -> Result<()> {
        Ok(())
    }

    fn head_stats(&self) -> HeadStats {
        let inner = self.inner.read();
        let mut st = HeadStats {
            min_time: i64::MAX,
            max_time: i64::MIN,
            ..Default::default()
        };
        for s in inner.series.values() {
            st.num_series += 1;
            st.num_samples += s.len() as u64;
            st.num_chunks += s.len().div_ceil(120) as u64;
            if let (Some(f), Some(l)) = (s.first(), s.last()) {
                st.min_time = st.min_time.min(f.0);
                st.max_time = st.max_time.max(l.0);
            }
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_storage_commits_atomically_and_checks_order() {
        let s = MemStorage::new();
        let l = Labels::from_pairs(&[("__name__", "m")]);
        let mut app = s.appender();
        app.append(&l, 10, 1.0).unwrap();
        app.append(&l, 20, 2.0).unwrap();
        assert!(matches!(
            app.append(&l, 15, 0.0),
            Err(Error::OutOfOrderSample)
        ));
        assert_eq!(
            s.head_stats().num_series,
            0,
            "nothing visible before commit"
        );
        app.commit().unwrap();
        assert_eq!(s.head_stats().num_samples, 2);
        let mut app = s.appender();
        assert!(matches!(
            app.append(&l, 20, 3.0),
            Err(Error::DuplicateSampleForTimestamp)
        ));
        app.append(&l, 20, 2.0).unwrap();
        app.append(&l, 30, 3.0).unwrap();
        app.rollback().unwrap();
        assert_eq!(s.head_stats().num_samples, 2);
        s.delete(0, 15, &[Matcher::equal("__name__", "m")]).unwrap();
        assert_eq!(s.head_stats().min_time, 20);
    }
}
