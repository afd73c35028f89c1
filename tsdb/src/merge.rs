//! Merging what several queriers return: the head and the blocks of a database, or any other
//! set of [`Querier`]s over overlapping data.
//!
//! * [`merge_series_sets`]: k-way merge of series sets sorted by labels; series with equal
//!   labels become one [`MergedSeries`].
//! * [`MergedSeries`] iterates the samples of its parts merged by time; a timestamp present in
//!   several parts is returned once, from the first part that has it (parts are given oldest
//!   source first, so a block wins over the head for the same timestamp).
//! * [`MergeQuerier`] applies both to a list of queriers, and unions their label names/values.

use std::iter::Peekable;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::chunkenc::ValueType;
use crate::labels::{Labels, Matcher};
use crate::querier::{cmp_labels, Querier, SampleIter, SelectHints, Series, SeriesSet};
use crate::Result;

/// One series made of several series with the same labels.
pub struct MergedSeries {
    /// The labels, when given; else those of the last part (there is one).
    labels: Option<Labels>,
    parts: Parts,
}

/// The parts of a [`MergedSeries`], inline up to the two blocks and the head a dashboard's
/// range usually spans (a large selection merges thousands of series).
type Parts = SmallVec<[Arc<dyn Series>; 3]>;

impl MergedSeries {
    /// A series merging `parts`, which all have labels `labels`.
    pub fn new(labels: Labels, parts: Vec<Arc<dyn Series>>) -> Self {
        MergedSeries {
            labels: Some(labels),
            parts: Parts::from_vec(parts),
        }
    }

    /// A series merging `parts` (at least one), which have the same labels: they are read
    /// from the last part rather than copied. That is the newest source, the head when the
    /// series is in it, which shares its labels; a block series would build them.
    fn of_parts(parts: Parts) -> Self {
        MergedSeries {
            labels: None,
            parts,
        }
    }
}

impl Series for MergedSeries {
    fn labels(&self) -> &Labels {
        match (&self.labels, self.parts.last()) {
            (Some(l), _) => l,
            (None, Some(p)) => p.labels(),
            // Not built: `of_parts` always has a part.
            (None, None) => empty_labels(),
        }
    }
    fn shared_labels(&self) -> Arc<Labels> {
        // Every part has these labels; one may share them.
        match (&self.labels, self.parts.last()) {
            (None, Some(p)) => p.shared_labels(),
            _ => Arc::new(self.labels().clone()),
        }
    }
    fn label_pairs(&self) -> crate::querier::LabelPairs<'_> {
        match (&self.labels, self.parts.last()) {
            (None, Some(p)) => p.label_pairs(),
            _ => crate::querier::LabelPairs::of_labels(self.labels()),
        }
    }
    fn iter(&self) -> Box<dyn SampleIter + '_> {
        Box::new(MergeIter::new(
            self.parts.iter().map(|p| p.iter()).collect(),
        ))
    }
    fn collect_range(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> Result<()> {
        collect_sources(self.parts.len(), out, |i, out| {
            self.parts[i].collect_range(mint, maxt, out)
        })
    }
}

/// Appends the samples of `n` sources, which `collect(i, out)` appends source by source
/// (oldest first), merged by time. When they lie one after another in time (blocks, then the
/// head) that is already the merge; overlapping sources are sorted by time, the earliest
/// source's sample winning a tie, as [`MergeIter`] does. Stops at the first error.
fn collect_sources(
    n: usize,
    out: &mut Vec<(i64, f64)>,
    mut collect: impl FnMut(usize, &mut Vec<(i64, f64)>) -> Result<()>,
) -> Result<()> {
    let base = out.len();
    let mut ordered = true;
    for i in 0..n {
        let from = out.len();
        collect(i, out)?;
        if from > base && out.len() > from && out[from].0 <= out[from - 1].0 {
            ordered = false;
        }
    }
    if !ordered {
        // The sort is stable: the earliest source's sample comes first among equal times.
        out[base..].sort_by_key(|s| s.0);
        let mut w = base;
        for r in base..out.len() {
            if w == base || out[r].0 != out[w - 1].0 {
                out[w] = out[r];
                w += 1;
            }
        }
        out.truncate(w);
    }
    Ok(())
}

/// An empty label set, for a merged series without parts.
fn empty_labels() -> &'static Labels {
    static EMPTY: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Labels::empty)
}

/// Merges sample iterators by time, dropping repeated timestamps (the first iterator wins).
pub struct MergeIter<'a> {
    its: Vec<Box<dyn SampleIter + 'a>>,
    /// Current timestamp of each iterator; `None` when exhausted.
    cur: Vec<Option<i64>>,
    started: bool,
    idx: usize,
    last_t: Option<i64>,
}

impl<'a> MergeIter<'a> {
    /// A merge of `its`, all positioned before their first sample.
    pub fn new(its: Vec<Box<dyn SampleIter + 'a>>) -> Self {
        let n = its.len();
        MergeIter {
            its,
            cur: vec![None; n],
            started: false,
            idx: 0,
            last_t: None,
        }
    }

    fn set(&mut self, i: usize, vt: ValueType) {
        self.cur[i] = match vt {
            ValueType::None => None,
            _ => Some(self.its[i].at_t()),
        };
    }

    fn pick(&mut self) -> ValueType {
        let mut best: Option<(usize, i64)> = None;
        for (i, c) in self.cur.iter().enumerate() {
            if let Some(t) = *c {
                if best.is_none_or(|(_, bt)| t < bt) {
                    best = Some((i, t));
                }
            }
        }
        match best {
            Some((i, t)) => {
                self.idx = i;
                self.last_t = Some(t);
                ValueType::Float
            }
            None => {
                self.last_t = None;
                ValueType::None
            }
        }
    }
}

impl SampleIter for MergeIter<'_> {
    fn next(&mut self) -> ValueType {
        if !self.started {
            self.started = true;
            for i in 0..self.its.len() {
                let vt = self.its[i].next();
                self.set(i, vt);
            }
        } else {
            let Some(last) = self.last_t else {
                return ValueType::None;
            };
            for i in 0..self.its.len() {
                if self.cur[i] == Some(last) {
                    let vt = self.its[i].next();
                    self.set(i, vt);
                }
            }
        }
        self.pick()
    }

    fn seek(&mut self, t: i64) -> ValueType {
        if !self.started {
            self.started = true;
            for i in 0..self.its.len() {
                let vt = self.its[i].seek(t);
                self.set(i, vt);
            }
            return self.pick();
        }
        match self.last_t {
            None => return ValueType::None,
            Some(last) if last >= t => return ValueType::Float,
            _ => {}
        }
        for i in 0..self.its.len() {
            if self.cur[i].is_some_and(|c| c < t) {
                let vt = self.its[i].seek(t);
                self.set(i, vt);
            }
        }
        self.pick()
    }

    fn collect_range(&mut self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        if self.started {
            return crate::querier::collect_range_stepwise(self, mint, maxt, out);
        }
        self.started = true;
        self.last_t = None;
        self.cur.iter_mut().for_each(|c| *c = None);
        let its = &mut self.its;
        // Errors are reported by `err`, as for the other calls.
        let _ = collect_sources(its.len(), out, |i, out| {
            its[i].collect_range(mint, maxt, out);
            Ok(())
        });
    }

    fn at(&self) -> (i64, f64) {
        self.its[self.idx].at()
    }

    fn at_t(&self) -> i64 {
        self.its[self.idx].at_t()
    }

    fn err(&self) -> Option<crate::Error> {
        self.its.iter().find_map(|i| i.err())
    }
}

type Item = Result<Arc<dyn Series>>;

struct MergeSet {
    sets: Vec<Peekable<SeriesSet>>,
    failed: bool,
    /// Indices of the inputs holding the next smallest labels (reused at every step).
    min: Vec<usize>,
}

impl Iterator for MergeSet {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.failed {
            return None;
        }
        // An error from any input ends the merge with that error.
        for s in self.sets.iter_mut() {
            if matches!(s.peek(), Some(Err(_))) {
                self.failed = true;
                return s.next();
            }
        }
        // The inputs whose next series has the smallest labels, found with one comparison
        // per input (an equal series of every input is the common case, and each comparison
        // of equal labels walks all of them).
        let min = &mut self.min;
        min.clear();
        let mut min_series: Option<Arc<dyn Series>> = None;
        for (i, s) in self.sets.iter_mut().enumerate() {
            let Some(Ok(x)) = s.peek() else {
                continue;
            };
            let order = match &min_series {
                None => std::cmp::Ordering::Less,
                Some(m) => cmp_labels(x.as_ref(), m.as_ref()),
            };
            match order {
                std::cmp::Ordering::Less => {
                    min.clear();
                    min.push(i);
                    min_series = Some(x.clone());
                }
                std::cmp::Ordering::Equal => min.push(i),
                std::cmp::Ordering::Greater => {}
            }
        }
        drop(min_series);
        let mut parts = Parts::new();
        for &i in min.iter() {
            if let Some(Ok(x)) = self.sets[i].next() {
                parts.push(x);
            }
        }
        if parts.len() <= 1 {
            return parts.pop().map(Ok);
        }
        Some(Ok(Arc::new(MergedSeries::of_parts(parts))))
    }
}

/// Merges series sets that are each sorted by labels into one sorted set.
pub fn merge_series_sets(sets: Vec<SeriesSet>) -> SeriesSet {
    match sets.len() {
        0 => Box::new(std::iter::empty()),
        1 => sets
            .into_iter()
            .next()
            .unwrap_or_else(|| Box::new(std::iter::empty())),
        _ => Box::new(MergeSet {
            sets: sets.into_iter().map(Iterator::peekable).collect(),
            failed: false,
            min: Vec::new(),
        }),
    }
}

/// A querier over several queriers (oldest data first); see the module docs.
pub struct MergeQuerier {
    queriers: Vec<Box<dyn Querier>>,
}

impl MergeQuerier {
    /// A querier merging `queriers`, given oldest source first.
    pub fn new(queriers: Vec<Box<dyn Querier>>) -> Self {
        MergeQuerier { queriers }
    }
}

fn union_sorted(lists: Vec<Vec<String>>, limit: usize) -> Vec<String> {
    let mut all: Vec<String> = lists.into_iter().flatten().collect();
    all.sort();
    all.dedup();
    if limit > 0 {
        all.truncate(limit);
    }
    all
}

impl Querier for MergeQuerier {
    fn select(&self, sorted: bool, hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet {
        if self.queriers.len() == 1 {
            return self.queriers[0].select(sorted, hints, matchers);
        }
        // Merging needs sorted inputs; the result is then sorted too.
        let merged = merge_series_sets(
            self.queriers
                .iter()
                .map(|q| q.select(true, hints, matchers))
                .collect(),
        );
        match hints.map_or(0, |h| h.limit) {
            0 => merged,
            limit => Box::new(merged.take(limit)),
        }
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], limit: usize) -> Result<Vec<String>> {
        let lists = self
            .queriers
            .iter()
            .map(|q| q.label_values(name, matchers, 0))
            .collect::<Result<Vec<_>>>()?;
        Ok(union_sorted(lists, limit))
    }

    fn label_names(&self, matchers: &[Matcher], limit: usize) -> Result<Vec<String>> {
        let lists = self
            .queriers
            .iter()
            .map(|q| q.label_names(matchers, 0))
            .collect::<Result<Vec<_>>>()?;
        Ok(union_sorted(lists, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::MatchType;
    use crate::querier::{MemQueryable, Queryable, VecSeries};

    fn vs(name: &str, samples: &[(i64, f64)]) -> VecSeries {
        VecSeries {
            labels: Labels::from_pairs(&[("__name__", name)]),
            samples: samples.to_vec(),
        }
    }

    fn read(s: &dyn Series) -> Vec<(i64, f64)> {
        let mut it = s.iter();
        let mut out = Vec::new();
        while it.next() == ValueType::Float {
            out.push(it.at());
        }
        out
    }

    #[test]
    fn merges_sets_and_samples_dropping_duplicates() {
        let a = MemQueryable::new(vec![vs("a", &[(1, 1.0), (3, 3.0)]), vs("c", &[(1, 1.0)])]);
        let b = MemQueryable::new(vec![
            vs("a", &[(2, 2.0), (3, 30.0), (4, 4.0)]),
            vs("b", &[(5, 5.0)]),
        ]);
        let q = MergeQuerier::new(vec![a.querier(0, 10).unwrap(), b.querier(0, 10).unwrap()]);
        let m = [Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()];
        let got: Vec<_> = q.select(false, None, &m).map(|s| s.unwrap()).collect();
        let names: Vec<_> = got
            .iter()
            .map(|s| s.labels().metric_name().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        assert_eq!(read(&*got[0]), vec![(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]);
        let mut it = got[0].iter();
        assert_eq!(it.seek(3), ValueType::Float);
        assert_eq!(it.at(), (3, 3.0));
        assert_eq!(it.seek(2), ValueType::Float);
        assert_eq!(it.at(), (3, 3.0));
        assert_eq!(it.next(), ValueType::Float);
        assert_eq!(it.at(), (4, 4.0));
        assert_eq!(it.seek(5), ValueType::None);
        assert_eq!(
            q.label_values("__name__", &[], 0).unwrap(),
            vec!["a", "b", "c"]
        );
        assert_eq!(q.label_values("__name__", &[], 2).unwrap(), vec!["a", "b"]);
        assert_eq!(q.label_names(&[], 0).unwrap(), vec!["__name__"]);
    }

    /// `collect_range` (the batch path the engine uses) must give what `seek`/`next` give,
    /// for sources one after another in time and for overlapping ones with duplicates.
    #[test]
    fn collect_range_matches_stepwise_merge() {
        type Samples<'a> = &'a [(i64, f64)];
        let cases: [(Samples, Samples); 3] = [
            (&[(1, 1.0), (2, 2.0)], &[(3, 3.0), (5, 5.0)]),
            (
                &[(1, 1.0), (3, 3.0), (6, 6.0)],
                &[(2, 2.0), (3, 30.0), (4, 4.0)],
            ),
            (&[], &[(2, 2.0)]),
        ];
        for (a, b) in cases {
            for (mint, maxt) in [(0, 10), (2, 4), (3, 3), (7, 9)] {
                let mk = || {
                    MergeIter::new(vec![
                        Box::new(crate::querier::SliceIter::new(a)) as Box<dyn SampleIter>,
                        Box::new(crate::querier::SliceIter::new(b)),
                    ])
                };
                let mut want = Vec::new();
                crate::querier::collect_range_stepwise(&mut mk(), mint, maxt, &mut want);
                let mut got = vec![(-1, -1.0)];
                let mut it = mk();
                it.collect_range(mint, maxt, &mut got);
                assert_eq!(got[0], (-1, -1.0), "kept what was in the buffer");
                assert_eq!(&got[1..], &want[..], "{a:?} {b:?} [{mint}, {maxt}]");
                assert_eq!(it.next(), ValueType::None);
            }
        }
    }

    /// A series holding its labels in an `Arc`, like the head's series.
    struct SharedLabels(Arc<Labels>, VecSeries);

    impl Series for SharedLabels {
        fn labels(&self) -> &Labels {
            &self.0
        }
        fn shared_labels(&self) -> Arc<Labels> {
            self.0.clone()
        }
        fn iter(&self) -> Box<dyn SampleIter + '_> {
            self.1.iter()
        }
    }

    #[test]
    fn merged_series_answer_with_the_newest_parts_labels() {
        let part = |samples: &[(i64, f64)]| {
            let v = vs("m", samples);
            let l = Arc::new(v.labels.clone());
            (l.clone(), Arc::new(SharedLabels(l, v)) as Arc<dyn Series>)
        };
        let (_, p1) = part(&[(1, 1.0)]);
        let (_, p2) = part(&[(2, 2.0)]);
        let (l3, p3) = part(&[(3, 3.0)]);
        let sets: Vec<SeriesSet> = vec![p1, p2, p3]
            .into_iter()
            .map(|p| Box::new(std::iter::once(Ok(p))) as SeriesSet)
            .collect();
        let merged: Vec<_> = merge_series_sets(sets).map(|s| s.unwrap()).collect();
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].labels(), &*l3);
        assert!(Arc::ptr_eq(&merged[0].shared_labels(), &l3));
        assert_eq!(read(merged[0].as_ref()), vec![(1, 1.0), (2, 2.0), (3, 3.0)]);
    }

    #[test]
    fn error_in_input_ends_merge() {
        let ok: SeriesSet =
            Box::new(vec![Ok(Arc::new(vs("a", &[(1, 1.0)])) as Arc<dyn Series>)].into_iter());
        let bad: SeriesSet = Box::new(vec![Err(crate::Error::Other("boom".into()))].into_iter());
        let mut m = merge_series_sets(vec![ok, bad]);
        assert!(m.next().unwrap().is_err());
        assert!(m.next().is_none());
    }
}
