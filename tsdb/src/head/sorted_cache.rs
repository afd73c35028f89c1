//! [`SortedSelections`]: the head's recent large selections, sorted by labels, kept for the
//! next query that matches the same series.
//!
//! A selection that is merged with the blocks' series must come sorted by labels, and the
//! head keeps its series in creation order: sorting 10k series (a lookup per series, then
//! their label strings ranked and compared) took ~5 ms of one thread per query on the 100k
//! bench, more than finding them, and it runs before the selection's parallel part. A
//! dashboard asks the same selections at every refresh.
//!
//! An entry is keyed by the set of series references the matchers gave. Head references are
//! never reused and a series' labels never change, so the same set always sorts the same way:
//! a new or removed series changes the set and misses, and nothing needs invalidating for
//! correctness. The head clears the cache when it drops series, so that entries do not keep
//! removed series in memory.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use roaring::RoaringBitmap;

use super::series::MemSeries;

/// Fewest series a selection has for its sorted order to be kept: smaller ones sort in a few
/// microseconds. Sorting the 445 series of `up` on the 100k bench took ~120 µs, an eighth of
/// `count by (job) (up)` at one time (each distinct label string is ranked by comparing
/// strings).
pub const MIN_SERIES: u64 = 64;

/// Most selections kept; the least recently used goes first. A dashboard's panels select a
/// few dozen sets of series.
const MAX_ENTRIES: usize = 64;

/// Most series references kept over all entries (8 bytes each).
const MAX_SERIES: usize = 1 << 20;

/// Recently sorted selections of the head, by the references they matched.
#[derive(Default)]
pub struct SortedSelections {
    entries: Mutex<VecDeque<Entry>>,
}

struct Entry {
    ids: RoaringBitmap,
    sorted: Arc<[Arc<MemSeries>]>,
}

impl SortedSelections {
    /// The series of `ids` sorted by labels, if this selection was sorted before.
    pub fn get(&self, ids: &RoaringBitmap) -> Option<Arc<[Arc<MemSeries>]>> {
        let mut entries = self.entries.lock();
        let i = entries
            .iter()
            .position(|e| e.ids.len() == ids.len() && e.ids == *ids)?;
        let hit = entries.remove(i)?;
        let sorted = Arc::clone(&hit.sorted);
        entries.push_back(hit);
        Some(sorted)
    }

    /// Keeps `sorted`, the series of `ids` in label order, evicting the least recently used
    /// selections beyond the limits. A selection over [`MAX_SERIES`] / 4 is not kept.
    pub fn insert(&self, ids: RoaringBitmap, sorted: Arc<[Arc<MemSeries>]>) {
        if sorted.len() > MAX_SERIES / 4 {
            return;
        }
        let mut entries = self.entries.lock();
        entries.retain(|e| e.ids != ids);
        entries.push_back(Entry { ids, sorted });
        let mut total: usize = entries.iter().map(|e| e.sorted.len()).sum();
        while entries.len() > MAX_ENTRIES || total > MAX_SERIES {
            match entries.pop_front() {
                Some(e) => total -= e.sorted.len(),
                None => break,
            }
        }
    }

    /// Forgets every selection.
    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    /// Selections kept now.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether no selection is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::Head;
    use crate::labels::Labels;

    /// A head with `n` series `m{i="<k>"}`, and the series themselves in reference order.
    fn head_with(n: usize) -> (Head, Vec<Arc<MemSeries>>) {
        let h = Head::in_memory();
        let mut app = h.appender();
        for k in 0..n {
            let ls = Labels::from_pairs(&[("__name__", "m"), ("i", &k.to_string())]);
            app.append(None, &ls, 1000, k as f64).unwrap();
        }
        app.commit().unwrap();
        let all = (1..=n as u64).filter_map(|r| h.series(r)).collect();
        (h, all)
    }

    fn ids(r: std::ops::Range<u32>) -> RoaringBitmap {
        r.collect()
    }

    #[test]
    fn hits_the_same_set_only_and_evicts_the_least_recent() {
        let (_h, all) = head_with(MAX_ENTRIES + 8);
        let c = SortedSelections::default();
        assert!(c.get(&ids(1..11)).is_none());
        for k in 0..MAX_ENTRIES as u32 + 1 {
            c.insert(ids(1..2 + k), Arc::from(&all[..1 + k as usize]));
        }
        // The first (1..2) went when one more than MAX_ENTRIES came.
        assert_eq!(c.len(), MAX_ENTRIES);
        assert!(c.get(&ids(1..2)).is_none());
        let hit = c.get(&ids(1..4)).unwrap();
        assert_eq!(hit.len(), 3);
        assert!(Arc::ptr_eq(&hit[2], &all[2]));
        // A set differing by one reference misses.
        let mut other = ids(1..4);
        other.insert(MAX_ENTRIES as u32 + 7);
        assert!(c.get(&other).is_none());
        // 1..4 was used last, so 1..3 is now the least recent.
        c.insert(ids(20..30), Arc::from(&all[19..29]));
        assert!(c.get(&ids(1..3)).is_none());
        assert!(c.get(&ids(1..4)).is_some());
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn head_selection_is_reused_until_the_series_change() {
        use crate::labels::Matcher;
        use crate::querier::Queryable;
        let (h, _) = head_with(MIN_SERIES as usize + 10);
        let m = [Matcher::equal("__name__", "m")];
        let select = |h: &Head| -> Vec<String> {
            let q = h.querier(0, i64::MAX).unwrap();
            q.select(true, None, &m)
                .map(|s| s.unwrap().labels().to_string())
                .collect()
        };
        let first = select(&h);
        assert_eq!(h.sorted_selections().len(), 1);
        let mut want = first.clone();
        want.sort();
        assert_eq!(first, want, "sorted by labels");
        assert_eq!(select(&h), first, "the kept order");
        // A new series changes the set: sorted again, with it.
        let mut app = h.appender();
        let ls = Labels::from_pairs(&[("__name__", "m"), ("i", "0a")]);
        app.append(None, &ls, 2000, 1.0).unwrap();
        app.commit().unwrap();
        let again = select(&h);
        assert_eq!(again.len(), first.len() + 1);
        assert!(again.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(h.sorted_selections().len(), 2);
        // Removing series clears the cache.
        h.truncate(1500).unwrap();
        assert!(h.sorted_selections().is_empty());
        assert_eq!(select(&h), vec![ls.to_string()]);
    }
}
