//! The head's appender: a batch of samples that becomes visible all at once.
//!
//! [`Appender::append`] finds or creates the series (by reference when the caller passes the
//! one it got before, else by labels) and checks the sample against the series' committed
//! samples with Prometheus's rules: older than the head accepts → [`Error::OutOfBounds`];
//! older than the series' newest sample → [`Error::OutOfOrderSample`]; same timestamp with
//! another value (compared by bits, so stale NaN markers are ordinary values) →
//! [`Error::DuplicateSampleForTimestamp`]; same timestamp and value → accepted and ignored.
//!
//! [`Appender::commit`] writes the WAL records — series not yet logged first, then the samples
//! — and only after the WAL accepted them appends the samples to their series. Samples of one
//! batch that are out of order among themselves are dropped at commit, as Prometheus does.
//! [`Appender::rollback`] (or dropping the appender) discards the batch; series it created stay.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::series::MemSeries;
use super::{Head, SeriesRef};
use crate::labels::Labels;
use crate::{Error, Result};

struct Pending {
    series: Arc<MemSeries>,
    /// Hash of the series' labels when the caller passed labels without a reference (0 when
    /// not computed), to recognise the next sample of the same series cheaply.
    hash: u64,
    t: i64,
    v: f64,
}

/// A batch of samples for the head; see the module docs.
pub struct Appender {
    head: Head,
    samples: Vec<Pending>,
    min_valid: i64,
    wal_series: Vec<(SeriesRef, Labels)>,
    wal_samples: Vec<(SeriesRef, i64, f64)>,
}

impl Appender {
    pub(crate) fn new(head: Head) -> Self {
        let min_valid = head.appendable_min_valid_time();
        Appender {
            head,
            samples: Vec::new(),
            min_valid,
            wal_series: Vec::new(),
            wal_samples: Vec::new(),
        }
    }

    /// Adds a sample for the series `series_ref` (when known and still in the head) or `labels`
    /// (created if new). Returns the series reference to pass next time.
    pub fn append(
        &mut self,
        series_ref: Option<SeriesRef>,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<SeriesRef> {
        if t < self.min_valid {
            return Err(Error::OutOfBounds);
        }
        // Consecutive samples of one series (several samples per series in a request) reuse
        // the series of the previous sample, already pinned by this batch, without a lookup:
        // by reference, or by labels when their hash matches too (so a batch of different
        // series does not compare labels twice per sample).
        let hash = match series_ref {
            Some(_) => 0,
            None => labels.hash(),
        };
        let last = self.samples.last().filter(|p| match series_ref {
            Some(r) => p.series.sref == r,
            None => p.hash == hash && self.head.same_labels(&p.series, labels),
        });
        let s = match last {
            Some(p) => {
                p.series.pending.fetch_add(1, Ordering::AcqRel);
                p.series.clone()
            }
            None => self
                .head
                .pin_series_hashed(series_ref, labels, (hash != 0).then_some(hash))?,
        };
        if let Err(e) = Self::check_order(&s, t, v) {
            s.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        let r = s.sref;
        self.samples.push(Pending {
            series: s,
            hash,
            t,
            v,
        });
        Ok(r)
    }

    /// Rejects `(t, v)` if it is older than the series' newest sample, or at the same time
    /// with a different value.
    fn check_order(s: &MemSeries, t: i64, v: f64) -> Result<()> {
        let d = s.data.lock();
        if let Some(maxt) = d.max_time() {
            if t < maxt {
                return Err(Error::OutOfOrderSample);
            }
            if t == maxt {
                let last = d.last_value().map(f64::to_bits);
                if last.is_some_and(|b| b != v.to_bits()) {
                    return Err(Error::DuplicateSampleForTimestamp);
                }
            }
        }
        Ok(())
    }

    /// Number of samples in the batch.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Writes the batch to the WAL and makes it visible. On a WAL error nothing becomes visible
    /// and the batch is discarded.
    pub fn commit(&mut self) -> Result<()> {
        if self.head.is_closed() {
            self.release();
            return Err(Error::Closed);
        }
        if self.samples.is_empty() {
            return Ok(());
        }
        let res = self.log();
        if let Err(e) = res {
            self.release();
            return Err(e);
        }
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        // A block may have been cut since `append` checked the bound: drop what it covers.
        let min_valid = self.head.min_valid_time();
        for p in &self.samples {
            if p.t >= min_valid && self.head.append_sample(&p.series, p.t, p.v) {
                mint = mint.min(p.t);
                maxt = maxt.max(p.t);
            }
        }
        self.head.update_time_range(mint, maxt);
        self.release();
        self.min_valid = self.head.appendable_min_valid_time();
        Ok(())
    }

    fn log(&mut self) -> Result<()> {
        let Some(wal) = self.head.wal() else {
            return Ok(());
        };
        self.wal_series.clear();
        self.wal_samples.clear();
        let mut seen = std::collections::HashSet::new();
        for p in &self.samples {
            if !p.series.logged.load(Ordering::Acquire) && seen.insert(p.series.sref) {
                self.wal_series
                    .push((p.series.sref, self.head.labels_of(&p.series)));
            }
            self.wal_samples.push((p.series.sref, p.t, p.v));
        }
        wal.log(&self.wal_series, &self.wal_samples)?;
        for p in &self.samples {
            p.series.logged.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Discards the batch.
    pub fn rollback(&mut self) -> Result<()> {
        self.release();
        Ok(())
    }

    fn release(&mut self) {
        for p in self.samples.drain(..) {
            p.series.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Consecutive samples of one series are recognised by labels or by reference; series
    /// with the same number of labels are not mixed up, in any order.
    #[test]
    fn consecutive_samples_find_their_series() {
        let h = Head::in_memory();
        let a = Labels::from_pairs(&[("__name__", "m"), ("job", "a")]);
        let b = Labels::from_pairs(&[("__name__", "m"), ("job", "b")]);
        let mut app = h.appender();
        let ra = app.append(None, &a, 1, 1.0).unwrap();
        assert_eq!(app.append(None, &a, 2, 2.0).unwrap(), ra);
        let rb = app.append(None, &b, 1, 3.0).unwrap();
        assert_ne!(ra, rb);
        assert_eq!(app.append(Some(rb), &b, 2, 4.0).unwrap(), rb);
        assert_eq!(app.append(None, &a, 3, 5.0).unwrap(), ra);
        assert_eq!(app.append(Some(ra), &a, 4, 6.0).unwrap(), ra);
        // Out of order against the batch is found at commit; against committed data now.
        app.commit().unwrap();
        assert_eq!(h.num_series(), 2);
        let mut app = h.appender();
        assert!(matches!(
            app.append(Some(ra), &a, 3, 0.0),
            Err(Error::OutOfOrderSample)
        ));
        assert!(matches!(
            app.append(None, &b, 1, 0.0),
            Err(Error::OutOfOrderSample)
        ));
        app.rollback().unwrap();
        let count = |r| {
            let s = h.series(r).unwrap();
            let d = s.data.lock();
            d.head.as_ref().map_or(0, |c| c.app.num_samples())
        };
        assert_eq!((count(ra), count(rb)), (4, 2));
        assert_eq!(h.series(ra).unwrap().data.lock().last_value(), Some(6.0));
        assert_eq!(h.series(rb).unwrap().data.lock().last_value(), Some(4.0));
    }
}
