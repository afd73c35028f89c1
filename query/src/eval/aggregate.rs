//! Aggregation operators (`sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`,
//! `quantile`, `topk`, `bottomk`, `limitk`, `limit_ratio`, `count_values`) with `by` /
//! `without`. Input series are assigned to groups once; each step then folds the samples
//! present at that step into per-group accumulators.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{AggregateExpr, LabelModifier};
use tsdb::{Label, Labels};

use super::{Evaluator, FxMap, OutCollector, StepCursor, StepSeries, Val};
use crate::error::{QResult, QueryError};
use crate::functions::aggregate::{
    kahan_inc, quantile, ratio_keep, ratio_sample_offset, KahanSum, Mean, Variance,
};
use crate::functions::gofmt;

/// The simple (per-group fold) aggregation operators.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FoldOp {
    Sum,
    Avg,
    Max,
    Min,
    Count,
    Group,
    Stddev,
    Stdvar,
    Quantile,
}

impl FoldOp {
    /// Whether a range query can fold this operator series by series.
    pub(super) fn series_major(self) -> bool {
        matches!(
            self,
            FoldOp::Sum | FoldOp::Avg | FoldOp::Count | FoldOp::Min | FoldOp::Max | FoldOp::Group
        )
    }

    /// The operator named `op`, if it is a fold.
    pub(super) fn parse(op: &str) -> Option<FoldOp> {
        Some(match op {
            "sum" => FoldOp::Sum,
            "avg" => FoldOp::Avg,
            "max" => FoldOp::Max,
            "min" => FoldOp::Min,
            "count" => FoldOp::Count,
            "group" => FoldOp::Group,
            "stddev" => FoldOp::Stddev,
            "stdvar" => FoldOp::Stdvar,
            "quantile" => FoldOp::Quantile,
            _ => return None,
        })
    }
}

/// Most group × step accumulators the series-major fold allocates; above it the
/// step-by-step fold runs.
pub(super) const SERIES_MAJOR_MAX_CELLS: usize = 1 << 20;

/// One group's running state at one step; only the fields of the operator in use matter.
#[derive(Clone, Default)]
struct Acc {
    seen: bool,
    drop_name: bool,
    /// `min`, `max`, `group`.
    value: f64,
    /// `count`.
    count: f64,
    sum: KahanSum,
    mean: Mean,
    var: Variance,
    /// `quantile`.
    values: Vec<f64>,
}

/// A binary heap with Go's `container/heap` algorithm, so ties come out in Prometheus's order.
struct GoHeap {
    items: Vec<(usize, f64)>,
    reverse: bool,
}

/// The `topk`-like aggregation operators.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KOp {
    Top,
    Bottom,
    Limit,
    LimitRatio,
}

impl KOp {
    /// The operator named `op`, if it is one of them.
    fn of(op: &str) -> Option<KOp> {
        Some(match op {
            "topk" => KOp::Top,
            "bottomk" => KOp::Bottom,
            "limitk" => KOp::Limit,
            "limit_ratio" => KOp::LimitRatio,
            _ => return None,
        })
    }
}

/// What [`Evaluator::aggregate_k`] keeps from step to step: a heap per group, which groups
/// took a value at this step, and (range queries) each input series' output slot.
struct KSteps {
    heaps: Vec<GoHeap>,
    marked: Vec<bool>,
    used: Vec<usize>,
    slots: Vec<usize>,
}

impl KSteps {
    fn new(kop: KOp, ngroups: usize, nseries: usize) -> Self {
        let heap = || GoHeap {
            items: Vec::new(),
            reverse: kop == KOp::Bottom,
        };
        KSteps {
            heaps: (0..ngroups).map(|_| heap()).collect(),
            marked: vec![false; ngroups],
            used: Vec::new(),
            slots: vec![usize::MAX; nseries],
        }
    }
}

impl GoHeap {
    fn less(&self, i: usize, j: usize) -> bool {
        let (a, b) = (self.items[i].1, self.items[j].1);
        if a.is_nan() {
            return true;
        }
        if self.reverse {
            a > b
        } else {
            a < b
        }
    }
    fn up(&mut self, mut j: usize) {
        while j > 0 {
            let i = (j - 1) / 2;
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            j = i;
        }
    }
    fn down(&mut self, i0: usize) -> bool {
        let n = self.items.len();
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            let j2 = j1 + 1;
            if j2 < n && self.less(j2, j1) {
                j = j2;
            }
            if !self.less(j, i) {
                break;
            }
            self.items.swap(i, j);
            i = j;
        }
        i > i0
    }
    fn push(&mut self, x: (usize, f64)) {
        self.items.push(x);
        let n = self.items.len() - 1;
        self.up(n);
    }
    fn fix0(&mut self) {
        if !self.down(0) {
            self.up(0);
        }
    }
    /// Sorts in reverse heap order (`sort.Sort(sort.Reverse(h))`), insertion sort as Go
    /// does for small inputs.
    fn sort_reverse(&mut self) {
        let n = self.items.len();
        if n > 12 {
            // stable sort by the reversed order for larger inputs
            let rev = self.reverse;
            self.items.sort_by(|x, y| {
                let lt = |a: f64, b: f64| {
                    if a.is_nan() {
                        true
                    } else if rev {
                        a > b
                    } else {
                        a < b
                    }
                };
                if lt(y.1, x.1) {
                    std::cmp::Ordering::Less
                } else if lt(x.1, y.1) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            });
            return;
        }
        for i in 1..n {
            let mut j = i;
            while j > 0 && self.less(j - 1, j) {
                self.items.swap(j, j - 1);
                j -= 1;
            }
        }
    }
}

/// Assigns each series (by its labels, in order) to its aggregation group, numbering groups
/// by first appearance; returns the group of each series and the labels of each group.
pub(super) fn assign_groups<'l>(
    metrics: impl Iterator<Item = &'l Labels>,
    without: bool,
    grouping: &[String],
) -> (Vec<usize>, Vec<Arc<Labels>>) {
    if !without && grouping.is_empty() {
        // `by ()` (or no grouping at all): one group with no labels, whatever the series.
        let series_group: Vec<usize> = metrics.map(|_| 0).collect();
        let group_metric = if series_group.is_empty() {
            Vec::new()
        } else {
            vec![Arc::new(Labels::empty())]
        };
        return (series_group, group_metric);
    }
    let mut groups = GroupAssigner::new(without, grouping);
    let series_group = metrics
        .map(|m| groups.assign(tsdb::querier::LabelPairs::of_labels(m)))
        .collect();
    (series_group, groups.group_metric)
}

/// Numbers aggregation groups by first appearance as series come, one at a time.
pub(super) struct GroupAssigner<'g> {
    without: bool,
    grouping: &'g [String],
    key_to_group: FxMap<Vec<u8>, usize>,
    key: Vec<u8>,
    /// The labels of each group, by number.
    pub group_metric: Vec<Arc<Labels>>,
}

impl<'g> GroupAssigner<'g> {
    /// No group yet, for `by (grouping)` or `without (grouping)`.
    pub(super) fn new(without: bool, grouping: &'g [String]) -> Self {
        GroupAssigner {
            without,
            grouping,
            key_to_group: FxMap::default(),
            key: Vec::new(),
            group_metric: Vec::new(),
        }
    }

    /// The group of the series labelled `m` (its label pairs in order), numbered now if it
    /// is the first of its group.
    pub(super) fn assign<'a>(
        &mut self,
        m: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> usize {
        let (without, grouping) = (self.without, self.grouping);
        let kept = m.filter(|(n, _)| in_group(n, without, grouping));
        // The key is built from the series' own labels; the group's labels are copied out
        // only for a new group.
        super::pairs_key(&mut self.key, kept.clone());
        if let Some(&g) = self.key_to_group.get(&self.key) {
            return g;
        }
        let g = self.group_metric.len();
        self.key_to_group.insert(self.key.clone(), g);
        self.group_metric
            .push(Arc::new(Labels::from_sorted_pairs(kept)));
        g
    }
}

/// Calls `add(k, f, first)` for every point `(ts, f)` of one series that falls on step `k`
/// (`(ts - start) / interval`, below `flags.len()`, at most once per step), `first` when no
/// series had a point there before; marks the step seen in `flags`, with `dn`. `dense` is
/// [`consecutive_steps`] of the points, as the caller found it.
#[inline(always)]
fn place_on_cells(
    flags: &mut [u8],
    dn: u8,
    pts: &[(i64, f64)],
    dense: Option<usize>,
    start: i64,
    interval: i64,
    mut add: impl FnMut(usize, f64, bool),
) {
    let nsteps = flags.len();
    if let Some(k0) = dense {
        for (k, &(_, f)) in (k0..).zip(pts) {
            let first = flags[k] & FoldCells::SEEN == 0;
            flags[k] |= FoldCells::SEEN | dn;
            add(k, f, first);
        }
        return;
    }
    // `next_t` is the time of step `next_k`: points on consecutive steps (the usual case)
    // need no division to find their step.
    let mut next_k = 0usize;
    let mut next_t = start;
    for &(ts, f) in pts {
        if ts < next_t {
            continue;
        }
        let k = if ts == next_t {
            next_k
        } else {
            let d = ts - start;
            if d % interval != 0 {
                continue;
            }
            (d / interval) as usize
        };
        if k >= nsteps {
            continue;
        }
        next_k = k + 1;
        next_t = ts + interval;
        let first = flags[k] & FoldCells::SEEN == 0;
        flags[k] |= FoldCells::SEEN | dn;
        add(k, f, first);
    }
}

/// The index of the first step when `pts` holds one point on each of consecutive steps
/// within the `nsteps` steps from `start`, in order (the usual range-function output: a point
/// at every step where the series has data); `None` otherwise.
#[inline]
fn consecutive_steps(
    pts: &[(i64, f64)],
    nsteps: usize,
    start: i64,
    interval: i64,
) -> Option<usize> {
    let first = pts.first()?.0;
    let d = first.checked_sub(start)?;
    if d < 0 || d % interval != 0 {
        return None;
    }
    let k0 = usize::try_from(d / interval).ok()?;
    if k0.checked_add(pts.len())? > nsteps {
        return None;
    }
    pts.iter()
        .zip((0..).map(|k: i64| first.wrapping_add(k.wrapping_mul(interval))))
        .fold(true, |ok, (p, t)| ok & (p.0 == t))
        .then_some(k0)
}

/// The cells of one group that a series with points on consecutive steps is added to, one
/// per point: compensated sums (see [`FoldCells`]), with their counts for `avg`.
struct DenseCells<'a> {
    sum: &'a mut [f64],
    comp: &'a mut [f64],
    counts: Option<&'a mut [f64]>,
    flags: &'a mut [u8],
}

/// Adds the values of `pts`, one per cell, to `cells`' compensated sums ([`kahan_inc`]); a
/// cell not seen before starts at its value. Written without branches so that it compiles to
/// vector code (see [`add_every_step`]).
#[inline(always)]
fn add_every_step_generic(cells: DenseCells<'_>, dn: u8, pts: &[(i64, f64)]) {
    let DenseCells {
        sum,
        comp,
        counts,
        flags,
    } = cells;
    let n = pts.len().min(sum.len()).min(comp.len()).min(flags.len());
    let (sum, comp, flags, pts) = (&mut sum[..n], &mut comp[..n], &mut flags[..n], &pts[..n]);
    let mut counts = counts.map(|c| &mut c[..n]);
    for k in 0..n {
        let f = pts[k].1;
        let seen = flags[k] & FoldCells::SEEN != 0;
        flags[k] |= FoldCells::SEEN | dn;
        let (s, c) = kahan_inc(f, sum[k], comp[k]);
        sum[k] = if seen { s } else { f };
        comp[k] = if seen { c } else { 0.0 };
        if let Some(counts) = counts.as_deref_mut() {
            counts[k] = if seen { counts[k] + 1.0 } else { 1.0 };
        }
    }
}

/// Counts one more point in every cell of `vals` (a cell not seen before starts at 1) and
/// marks them seen, with `dn`: `count`'s fold of a series with a point at each of these
/// steps, in a loop without branches or bounds checks, which compiles to vector code.
fn count_every_step(vals: &mut [f64], flags: &mut [u8], dn: u8) {
    for (v, fl) in vals.iter_mut().zip(flags.iter_mut()) {
        let seen = *fl & FoldCells::SEEN != 0;
        *fl |= FoldCells::SEEN | dn;
        *v = if seen { *v + 1.0 } else { 1.0 };
    }
}

/// Whether the CPU has the AVX-512 subsets (F, BW, DQ, VL) the folds' AVX-512 variants are
/// compiled for (BW, DQ and VL each imply F).
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_every_step_avx2(cells: DenseCells<'_>, dn: u8, pts: &[(i64, f64)]) {
    add_every_step_generic(cells, dn, pts)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn add_every_step_avx512(cells: DenseCells<'_>, dn: u8, pts: &[(i64, f64)]) {
    add_every_step_generic(cells, dn, pts)
}

/// [`add_every_step_generic`], in AVX-512 or AVX2 where the CPU has them.
fn add_every_step(cells: DenseCells<'_>, dn: u8, pts: &[(i64, f64)]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: the CPU supports the AVX-512 subsets the function is compiled for.
            unsafe { add_every_step_avx512(cells, dn, pts) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { add_every_step_avx2(cells, dn, pts) };
            return;
        }
    }
    add_every_step_generic(cells, dn, pts)
}

/// Whether adding the values of `pts`, one per cell, to the sums `sum` (a cell not seen yet
/// starting at its value) leaves every sum finite or NaN: then no `avg` cell switches to its
/// incremental form. In AVX-512 or AVX2 where the CPU has them.
fn sums_stay_finite(sum: &[f64], flags: &[u8], pts: &[(i64, f64)]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: the CPU supports the AVX-512 subsets the function is compiled for.
            return unsafe { sums_stay_finite_avx512(sum, flags, pts) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { sums_stay_finite_avx2(sum, flags, pts) };
        }
    }
    sums_stay_finite_generic(sum, flags, pts)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn sums_stay_finite_avx512(sum: &[f64], flags: &[u8], pts: &[(i64, f64)]) -> bool {
    sums_stay_finite_generic(sum, flags, pts)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sums_stay_finite_avx2(sum: &[f64], flags: &[u8], pts: &[(i64, f64)]) -> bool {
    sums_stay_finite_generic(sum, flags, pts)
}

#[inline(always)]
fn sums_stay_finite_generic(sum: &[f64], flags: &[u8], pts: &[(i64, f64)]) -> bool {
    sum.iter()
        .zip(flags)
        .zip(pts)
        .fold(true, |ok, ((&s, &fl), &(_, f))| {
            let t = if fl & FoldCells::SEEN != 0 { s + f } else { f };
            ok & !t.is_infinite()
        })
}

/// Whether the label `name` is part of the group labels (the ones [`group_labels`] keeps).
#[inline]
fn in_group(name: &str, without: bool, grouping: &[String]) -> bool {
    if without {
        name != "__name__" && !grouping.iter().any(|g| g == name)
    } else {
        grouping.iter().any(|g| g == name)
    }
}

/// Per-step accumulators of the series-major fold (`sum`/`avg`/`count`/`min`/`max`/`group`)
/// for one or more groups: cell `g * nsteps + k` holds group `g` at step `k`.
pub(super) struct FoldCells {
    fold: FoldOp,
    flags: Vec<u8>,
    /// Compensated sums of `sum` and `avg` ([`kahan_inc`]) in two columns: the running sums
    /// and their compensations.
    sums: Vec<f64>,
    comps: Vec<f64>,
    /// The values of `count`, `min`, `max`, `group`, …; the number of values of `avg`.
    vals: Vec<f64>,
    /// `avg` cells whose sum overflowed, as incremental means (see [`Mean`]); all other
    /// `avg` cells are a sum in `sums`/`comps` over `vals` values.
    overflowed: FxMap<usize, Mean>,
}

impl FoldCells {
    const SEEN: u8 = 1;
    const DROP: u8 = 2;

    /// `cells` empty accumulators for `fold`.
    pub(super) fn new(fold: FoldOp, cells: usize) -> Self {
        let mut c = FoldCells {
            fold,
            flags: Vec::new(),
            sums: Vec::new(),
            comps: Vec::new(),
            vals: Vec::new(),
            overflowed: FxMap::default(),
        };
        c.grow(cells);
        c
    }

    /// Adds empty accumulators up to `cells` in all.
    pub(super) fn grow(&mut self, cells: usize) {
        self.flags.resize(cells, 0);
        match self.fold {
            FoldOp::Sum => {
                self.sums.resize(cells, 0.0);
                self.comps.resize(cells, 0.0);
            }
            FoldOp::Avg => {
                self.sums.resize(cells, 0.0);
                self.comps.resize(cells, 0.0);
                self.vals.resize(cells, 0.0);
            }
            _ => self.vals.resize(cells, 0.0),
        }
    }

    /// The output series of a fold whose cells hold `groups` (group `g`'s steps at
    /// `g * steps.len()..`), one per group with a value, in the order the groups first have a
    /// value step by step (then by `groups`' order), as a step-by-step evaluation makes them.
    pub(super) fn output(
        &self,
        groups: &[usize],
        group_metric: &[Arc<Labels>],
        steps: &[i64],
    ) -> QResult<OutCollector> {
        match self.output_by_group(groups, group_metric, steps) {
            Some(out) => Ok(out),
            None => self.output_by_step(groups, group_metric, steps),
        }
    }

    /// [`FoldCells::output`] with each series' points written in one go, room reserved.
    /// `None` when two groups would share an output series (the same labels): the
    /// step-by-step way then reports it.
    fn output_by_group(
        &self,
        groups: &[usize],
        group_metric: &[Arc<Labels>],
        steps: &[i64],
    ) -> Option<OutCollector> {
        let nsteps = steps.len();
        // Each group with a value: its first step, and its place in `groups`.
        let mut firsts: Vec<(usize, usize)> = groups
            .iter()
            .enumerate()
            .filter_map(|(j, &g)| {
                (0..nsteps)
                    .find(|&k| self.get(g * nsteps + k).is_some())
                    .map(|k| (k, j))
            })
            .collect();
        firsts.sort_unstable();
        let mut out = OutCollector::new();
        for &(k, j) in &firsts {
            let g = groups[j];
            let (_, drop) = self.get(g * nsteps + k)?;
            let made = out.series.len();
            let slot = out.slot(&group_metric[g], drop, false);
            if slot != made {
                return None;
            }
            let pts = &mut out.series[slot].pts;
            pts.reserve(nsteps - k);
            for (k, &ts) in steps.iter().enumerate().skip(k) {
                if let Some((v, _)) = self.get(g * nsteps + k) {
                    pts.push((ts, v));
                }
            }
        }
        Some(out)
    }

    /// [`FoldCells::output`] step by step: every group's value at the first step, then at the
    /// next, each group's series made when it first has one.
    fn output_by_step(
        &self,
        groups: &[usize],
        group_metric: &[Arc<Labels>],
        steps: &[i64],
    ) -> QResult<OutCollector> {
        let nsteps = steps.len();
        let mut out = OutCollector::new();
        let mut gslot: Vec<usize> = vec![usize::MAX; groups.len()];
        for (k, &ts) in steps.iter().enumerate() {
            for (j, &g) in groups.iter().enumerate() {
                let Some((v, drop)) = self.get(g * nsteps + k) else {
                    continue;
                };
                if gslot[j] == usize::MAX {
                    gslot[j] = out.slot(&group_metric[g], drop, false);
                }
                out.push_slot(gslot[j], ts, v)?;
            }
        }
        Ok(out)
    }

    /// Folds the points of one series into cells `base..base + nsteps`; a point counts at
    /// step `(ts - start) / interval` when it falls on a step, at most once per step.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn add_series(
        &mut self,
        base: usize,
        nsteps: usize,
        pts: &[(i64, f64)],
        drop_name: bool,
        start: i64,
        interval: i64,
    ) {
        let dn = if drop_name { Self::DROP } else { 0 };
        let flags = &mut self.flags[base..base + nsteps];
        let cells = base..base + nsteps;
        let dense = consecutive_steps(pts, nsteps, start, interval);
        // One loop per operation, so that the step placement is not interleaved with a
        // dispatch on the operation at every point.
        match self.fold {
            FoldOp::Sum => {
                let (sums, comps) = (&mut self.sums[cells.clone()], &mut self.comps[cells]);
                if let Some(k0) = dense {
                    let r = k0..k0 + pts.len();
                    let cells = DenseCells {
                        sum: &mut sums[r.clone()],
                        comp: &mut comps[r.clone()],
                        counts: None,
                        flags: &mut flags[r],
                    };
                    add_every_step(cells, dn, pts);
                    return;
                }
                place_on_cells(flags, dn, pts, dense, start, interval, |k, f, first| {
                    (sums[k], comps[k]) = if first {
                        (f, 0.0)
                    } else {
                        kahan_inc(f, sums[k], comps[k])
                    };
                });
            }
            FoldOp::Avg => {
                let (sums, comps) = (
                    &mut self.sums[cells.clone()],
                    &mut self.comps[cells.clone()],
                );
                let counts = &mut self.vals[cells];
                let overflowed = &mut self.overflowed;
                let summed = dense.map(|k0| k0..k0 + pts.len()).filter(|r| {
                    overflowed.is_empty()
                        && sums_stay_finite(&sums[r.clone()], &flags[r.clone()], pts)
                });
                if let Some(r) = summed {
                    // The cells stay sums, as `Mean::add` keeps them while they are finite.
                    let cells = DenseCells {
                        sum: &mut sums[r.clone()],
                        comp: &mut comps[r.clone()],
                        counts: Some(&mut counts[r.clone()]),
                        flags: &mut flags[r],
                    };
                    add_every_step(cells, dn, pts);
                    return;
                }
                place_on_cells(flags, dn, pts, dense, start, interval, |k, f, first| {
                    let mut m = match overflowed.get(&(base + k)) {
                        Some(m) => *m,
                        None if first => Mean::new(),
                        None => Mean::summed(counts[k], sums[k], comps[k]),
                    };
                    m.add(f);
                    match m.as_summed() {
                        Some((n, s, c)) => (counts[k], sums[k], comps[k]) = (n, s, c),
                        None => {
                            overflowed.insert(base + k, m);
                        }
                    }
                });
            }
            FoldOp::Count => {
                let vals = &mut self.vals[cells];
                if let Some(k0) = dense {
                    let r = k0..k0 + pts.len();
                    count_every_step(&mut vals[r.clone()], &mut flags[r], dn);
                    return;
                }
                place_on_cells(flags, dn, pts, dense, start, interval, |k, _, first| {
                    vals[k] = if first { 1.0 } else { vals[k] + 1.0 };
                });
            }
            FoldOp::Group => {
                let vals = &mut self.vals[cells];
                place_on_cells(flags, dn, pts, dense, start, interval, |k, _, _| {
                    vals[k] = 1.0
                });
            }
            FoldOp::Max => {
                let vals = &mut self.vals[cells];
                place_on_cells(flags, dn, pts, dense, start, interval, |k, f, first| {
                    if first || vals[k] < f || vals[k].is_nan() {
                        vals[k] = f;
                    }
                });
            }
            FoldOp::Min => {
                let vals = &mut self.vals[cells];
                place_on_cells(flags, dn, pts, dense, start, interval, |k, f, first| {
                    if first || vals[k] > f || vals[k].is_nan() {
                        vals[k] = f;
                    }
                });
            }
            FoldOp::Stddev | FoldOp::Stdvar | FoldOp::Quantile => {
                let vals = &mut self.vals[cells];
                place_on_cells(flags, dn, pts, dense, start, interval, |k, f, first| {
                    if first {
                        vals[k] = f;
                    }
                });
            }
        }
    }

    /// The aggregated value of cell `c` and whether the name is dropped, if any series
    /// had a point there.
    #[inline]
    pub(super) fn get(&self, c: usize) -> Option<(f64, bool)> {
        let fl = self.flags[c];
        if fl & Self::SEEN == 0 {
            return None;
        }
        let v = match self.fold {
            FoldOp::Sum => KahanSum {
                sum: self.sums[c],
                c: self.comps[c],
            }
            .value(),
            FoldOp::Avg => match self.overflowed.get(&c) {
                Some(m) => m.value(),
                None => Mean::summed(self.vals[c], self.sums[c], self.comps[c]).value(),
            },
            _ => self.vals[c],
        };
        Some((v, fl & Self::DROP != 0))
    }
}

/// The `by`/`without` modifier of an aggregation: (is `without`, label names).
pub(super) fn grouping_of(a: &AggregateExpr) -> (bool, Vec<String>) {
    match &a.modifier {
        Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
        None => (false, vec![]),
    }
}

/// The labels of the group a series with labels `m` falls in.
pub(super) fn group_labels(m: &Labels, without: bool, grouping: &[String]) -> Labels {
    Labels::from_sorted(
        m.iter()
            .filter(|l| in_group(&l.name, without, grouping))
            .cloned()
            .collect(),
    )
}

impl Evaluator<'_> {
    pub(crate) fn eval_aggregate(&mut self, a: &AggregateExpr) -> QResult<Val> {
        let op_s = a.op.to_string();
        let op = op_s.as_str();
        let (without, grouping) = grouping_of(a);
        if op == "count_values" {
            return self.eval_count_values(a, without, grouping);
        }
        let params = match &a.param {
            Some(p) if op != "count_values" => Some(self.eval_scalar(p)?),
            _ => None,
        };
        if params.is_none() && (!self.is_instant() || super::fused::streams_long_ranges(&a.expr)) {
            if let Some(fold) = FoldOp::parse(op).filter(|f| f.series_major()) {
                if let Some(v) = self.try_fused_aggregate(fold, &a.expr, without, &grouping)? {
                    return Ok(v);
                }
            }
        }
        // Over a selection that feeds the groups directly, its series need only the grouping
        // labels (and the metric name, for annotations): building all of every series'
        // labels was a tenth of `sum by (job) (rate(x[5m]))`'s instant time.
        let kop = KOp::of(op);
        let is_k = kop.is_some();
        if !without && params.is_none() && !is_k && super::fused::selection_feeds_groups(&a.expr) {
            let mut keep = grouping.clone();
            keep.push("__name__".to_string());
            self.keep_labels = Some(keep);
        }
        let input = self.eval_vector(&a.expr);
        self.keep_labels = None;
        let input = input?;
        let (series_group, group_metric) =
            assign_groups(input.iter().map(|s| &*s.metric), without, &grouping);
        let ngroups = group_metric.len();
        let fold = match FoldOp::parse(op) {
            Some(f) => f,
            None if is_k => FoldOp::Group, // unused: the k operators take their own path
            None => return Err(QueryError::bad_data(format!("unknown aggregation {op}"))),
        };
        if let Some(p) = &params {
            let has_nan = p.iter().any(|x| x.is_nan());
            let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let min = p.iter().copied().fold(f64::INFINITY, f64::min);
            match op {
                "topk" | "bottomk" | "limitk" => {
                    if max < 1.0 && !has_nan {
                        return Ok(Val::Vector(vec![]));
                    }
                    if has_nan {
                        return Err(QueryError::execution("Parameter value is NaN"));
                    }
                    if min <= i64::MIN as f64 {
                        return Err(QueryError::execution(format!(
                            "Scalar value {} underflows int64",
                            go_g(min)
                        )));
                    }
                    if max >= i64::MAX as f64 {
                        return Err(QueryError::execution(format!(
                            "Scalar value {} overflows int64",
                            go_g(max)
                        )));
                    }
                }
                "limit_ratio" => {
                    if max == 0.0 && min == 0.0 {
                        return Ok(Val::Vector(vec![]));
                    }
                    if has_nan {
                        return Err(QueryError::execution("Ratio value is NaN"));
                    }
                    if max > 1.0 {
                        self.annos.warn(format!(
                            "ratio value should be between -1 and 1, got {}, capping to 1",
                            go_g(max)
                        ));
                    }
                    if min < -1.0 {
                        self.annos.warn(format!(
                            "ratio value should be between -1 and 1, got {}, capping to -1",
                            go_g(min)
                        ));
                    }
                }
                "quantile" => {
                    if has_nan {
                        self.annos
                            .warn("quantile value should be between 0 and 1, got NaN");
                    }
                    if max > 1.0 {
                        self.annos.warn(format!(
                            "quantile value should be between 0 and 1, got {}",
                            go_g(max)
                        ));
                    }
                    if min < 0.0 {
                        self.annos.warn(format!(
                            "quantile value should be between 0 and 1, got {}",
                            go_g(min)
                        ));
                    }
                }
                _ => {}
            }
        }
        let instant = self.is_instant();
        let steps: Vec<i64> = self.steps().collect();
        if !instant
            && !is_k
            && matches!(
                fold,
                FoldOp::Sum
                    | FoldOp::Avg
                    | FoldOp::Count
                    | FoldOp::Min
                    | FoldOp::Max
                    | FoldOp::Group
            )
            && ngroups.saturating_mul(steps.len()) <= SERIES_MAJOR_MAX_CELLS
        {
            let out = self.fold_series_major(fold, &input, &series_group, &group_metric, &steps)?;
            self.release_series(input);
            let n: usize = out.series.iter().map(|s| s.pts.len()).sum();
            self.add_samples(n)?;
            return Ok(Val::Vector(out.finish()));
        }
        let mut cur = StepCursor::new(input.len());
        let mut vals: Vec<(usize, f64)> = Vec::new();
        let mut out = OutCollector::new();
        let mut accs: Vec<Acc> = vec![Acc::default(); ngroups];
        let mut gslot: Vec<usize> = vec![usize::MAX; ngroups];
        let mut ks = kop.map(|kop| (kop, KSteps::new(kop, ngroups, input.len())));
        for (k, &ts) in steps.iter().enumerate() {
            self.check_deadline()?;
            cur.gather(&input, ts, &mut vals);
            if vals.is_empty() {
                continue;
            }
            let param = params.as_ref().map(|p| p[k]).unwrap_or(0.0);
            if let Some((kop, ks)) = ks.as_mut() {
                self.aggregate_k(
                    *kop,
                    param,
                    &input,
                    &series_group,
                    &vals,
                    ts,
                    instant,
                    ks,
                    &mut out,
                )?;
                continue;
            }
            for a in accs.iter_mut() {
                a.seen = false;
            }
            for &(si, f) in &vals {
                let g = &mut accs[series_group[si]];
                if !g.seen {
                    g.seen = true;
                    g.drop_name = input[si].drop_name;
                    match fold {
                        FoldOp::Sum => g.sum = KahanSum::starting_at(f),
                        FoldOp::Avg => {
                            g.mean = Mean::new();
                            g.mean.add(f);
                        }
                        FoldOp::Max | FoldOp::Min => g.value = f,
                        FoldOp::Count => g.count = 1.0,
                        FoldOp::Group => g.value = 1.0,
                        FoldOp::Stddev | FoldOp::Stdvar => {
                            g.var = Variance::new();
                            g.var.add(f);
                        }
                        FoldOp::Quantile => {
                            g.values.clear();
                            g.values.push(f);
                        }
                    }
                    continue;
                }
                if input[si].drop_name {
                    g.drop_name = true;
                }
                match fold {
                    FoldOp::Sum => g.sum.add(f),
                    FoldOp::Avg => g.mean.add(f),
                    FoldOp::Max => {
                        if g.value < f || g.value.is_nan() {
                            g.value = f;
                        }
                    }
                    FoldOp::Min => {
                        if g.value > f || g.value.is_nan() {
                            g.value = f;
                        }
                    }
                    FoldOp::Count => g.count += 1.0,
                    FoldOp::Group => {}
                    FoldOp::Stddev | FoldOp::Stdvar => g.var.add(f),
                    FoldOp::Quantile => g.values.push(f),
                }
            }
            for (gi, g) in accs.iter_mut().enumerate() {
                if !g.seen {
                    continue;
                }
                let v = match fold {
                    FoldOp::Sum => g.sum.value(),
                    FoldOp::Avg => g.mean.value(),
                    FoldOp::Count => g.count,
                    FoldOp::Stdvar => g.var.stdvar(),
                    FoldOp::Stddev => g.var.stddev(),
                    FoldOp::Quantile => quantile(param, &mut g.values),
                    FoldOp::Max | FoldOp::Min | FoldOp::Group => g.value,
                };
                if gslot[gi] == usize::MAX || instant {
                    gslot[gi] = out.slot(&group_metric[gi], g.drop_name, instant);
                }
                out.push_slot(gslot[gi], ts, v)?;
            }
        }
        self.release_series(input);
        let n: usize = out.series.iter().map(|s| s.pts.len()).sum();
        self.add_samples(n)?;
        Ok(Val::Vector(out.finish()))
    }

    /// `sum`/`avg`/`count`/`min`/`max`/`group` of a range query, walking each input series
    /// once (in input order) into a per-group, per-step accumulator instead of gathering all
    /// series at every step. Each accumulator sees its values in the same order as the
    /// step-by-step fold, so the results are the same to the bit; the output series and
    /// their points come out in the same order too.
    fn fold_series_major(
        &mut self,
        fold: FoldOp,
        input: &[StepSeries],
        series_group: &[usize],
        group_metric: &[Arc<Labels>],
        steps: &[i64],
    ) -> QResult<OutCollector> {
        let (nsteps, ngroups) = (steps.len(), group_metric.len());
        let (start, interval) = (self.start, self.interval);
        let mut cells = FoldCells::new(fold, nsteps * ngroups);
        for (si, s) in input.iter().enumerate() {
            if si % 1024 == 0 {
                self.check_deadline()?;
            }
            let base = series_group[si] * nsteps;
            cells.add_series(base, nsteps, &s.pts, s.drop_name, start, interval);
        }
        let groups: Vec<usize> = (0..ngroups).collect();
        cells.output(&groups, group_metric, steps)
    }

    /// One step of `topk`/`bottomk`/`limitk`/`limit_ratio` over the step's values `vals`
    /// (input series index, value): each group's selection pushed to `out` in Prometheus's
    /// order. `ks` is reused from step to step.
    #[allow(clippy::too_many_arguments)]
    fn aggregate_k(
        &mut self,
        kop: KOp,
        param: f64,
        input: &[StepSeries],
        series_group: &[usize],
        vals: &[(usize, f64)],
        ts: i64,
        instant: bool,
        ks: &mut KSteps,
        out: &mut OutCollector,
    ) -> QResult<()> {
        let mut k: usize = 0;
        let mut ratio = 0.0;
        if kop == KOp::LimitRatio {
            if param == 0.0 {
                return Ok(());
            }
            ratio = param.clamp(-1.0, 1.0);
        } else {
            let kk = (param as i64).min(input.len() as i64);
            if kk < 1 {
                return Ok(());
            }
            k = kk as usize;
        }
        for &(si, f) in vals {
            let gi = series_group[si];
            if !ks.marked[gi] {
                ks.marked[gi] = true;
                ks.used.push(gi);
            }
            let h = &mut ks.heaps[gi];
            match kop {
                KOp::Top | KOp::Bottom => {
                    if h.items.len() < k {
                        h.push((si, f));
                    } else {
                        let top = h.items[0].1;
                        let replace = if kop == KOp::Top {
                            top < f || (top.is_nan() && !f.is_nan())
                        } else {
                            top > f || (top.is_nan() && !f.is_nan())
                        };
                        if replace {
                            h.items[0] = (si, f);
                            if k > 1 {
                                h.fix0();
                            }
                        }
                    }
                }
                KOp::Limit => {
                    if h.items.len() < k {
                        h.items.push((si, f));
                    }
                }
                KOp::LimitRatio => {
                    if ratio_keep(ratio, ratio_sample_offset(input[si].metric.hash())) {
                        h.items.push((si, f));
                    }
                }
            }
        }
        // Groups in the order of their index, as the selection is output group by group.
        ks.used.sort_unstable();
        for &gi in &ks.used {
            let h = &mut ks.heaps[gi];
            if matches!(kop, KOp::Top | KOp::Bottom) {
                h.sort_reverse();
            }
            for &(si, f) in &h.items {
                let s = &input[si];
                if instant {
                    out.push(&s.metric, ts, f, s.drop_name, true)?;
                    continue;
                }
                if ks.slots[si] == usize::MAX {
                    ks.slots[si] = out.slot(&s.metric, s.drop_name, false);
                }
                out.push_slot(ks.slots[si], ts, f)?;
            }
            h.items.clear();
            ks.marked[gi] = false;
        }
        ks.used.clear();
        Ok(())
    }

    fn eval_count_values(
        &mut self,
        a: &AggregateExpr,
        without: bool,
        mut grouping: Vec<String>,
    ) -> QResult<Val> {
        let label = match &a.param {
            Some(p) => self.eval_string(p)?,
            None => return Err(QueryError::bad_data("count_values needs a label parameter")),
        };
        if !super::call::valid_label_name(&label) {
            return Err(QueryError::execution(format!(
                "invalid label name {:?}",
                label
            )));
        }
        if !without {
            grouping.push(label.clone());
        }
        let input = self.eval_vector(&a.expr)?;
        let instant = self.is_instant();
        let mut cur = StepCursor::new(input.len());
        let mut vals = Vec::new();
        let mut out = OutCollector::new();
        let steps: Vec<i64> = self.steps().collect();
        for ts in steps {
            cur.gather(&input, ts, &mut vals);
            let mut groups: Vec<(Labels, usize)> = Vec::new();
            let mut idx: HashMap<Labels, usize> = HashMap::new();
            for &(si, f) in &vals {
                let mut v: Vec<Label> = input[si].metric.as_slice().to_vec();
                v.retain(|l| l.name != label);
                v.push(Label::new(label.clone(), gofmt::format_f(f)));
                let m = Labels::new(v);
                let gl = group_labels(&m, without, &grouping);
                match idx.get(&gl) {
                    Some(&i) => groups[i].1 += 1,
                    None => {
                        idx.insert(gl.clone(), groups.len());
                        groups.push((gl, 1));
                    }
                }
            }
            for (gl, n) in groups {
                out.push(&Arc::new(gl), ts, n as f64, false, instant)?;
            }
        }
        Ok(Val::Vector(out.finish()))
    }
}

/// Go's `%g` formatting for the values in messages.
pub(crate) fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let exp = if v == 0.0 {
        0
    } else {
        v.abs().log10().floor() as i32
    };
    if !(-4..21).contains(&exp) {
        let s = format!("{v:e}");
        // Rust: 1e21 -> "1e21"; Go: "1e+21"
        if let Some((m, e)) = s.split_once('e') {
            let (sign, digits) = if let Some(d) = e.strip_prefix('-') {
                ('-', d)
            } else {
                ('+', e)
            };
            let digits = if digits.len() < 2 {
                format!("0{digits}")
            } else {
                digits.to_string()
            };
            return format!("{m}e{sign}{digits}");
        }
        s
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The step of each point as the fold has always placed them: on the grid, within the
    /// steps, at most once per step and in increasing order.
    fn reference_steps(pts: &[(i64, f64)], start: i64, interval: i64, nsteps: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut next_k = 0usize;
        for &(ts, _) in pts {
            let d = ts - start;
            if d < 0 || d % interval != 0 {
                continue;
            }
            let k = (d / interval) as usize;
            if k >= nsteps || k < next_k {
                continue;
            }
            next_k = k + 1;
            out.push(k);
        }
        out
    }

    #[test]
    fn add_series_places_points_like_the_division_rule() {
        let (start, interval, nsteps) = (1_000i64, 60i64, 12usize);
        let cases: Vec<Vec<i64>> = vec![
            (0..12).map(|k| start + k * interval).collect(),
            vec![
                start - 60,
                start,
                start + 30,
                start + 60,
                start + 60,
                start + 300,
                start + 240,
            ],
            vec![
                start + 120,
                start + 180,
                start + 181,
                start + 660,
                start + 720,
                start + 780,
            ],
            vec![start - 1, start + 59, start + 61, start + 119, start + 120],
            vec![],
        ];
        for ts in cases {
            let pts: Vec<(i64, f64)> = ts.iter().map(|&t| (t, 1.0)).collect();
            let mut cells = FoldCells::new(FoldOp::Count, nsteps);
            cells.add_series(0, nsteps, &pts, false, start, interval);
            let got: Vec<usize> = (0..nsteps).filter(|&k| cells.get(k).is_some()).collect();
            let mut want = reference_steps(&pts, start, interval, nsteps);
            want.sort();
            want.dedup();
            assert_eq!(got, want, "{ts:?}");
            assert!((0..nsteps).all(|k| cells.get(k).is_none_or(|(v, _)| v == 1.0)));
        }
    }

    /// `count` over dense and sparse series counts, at each step, the series with a point
    /// there, and marks the name dropped where any of them dropped it.
    #[test]
    fn count_counts_series_with_a_point_at_each_step() {
        let (start, interval, nsteps) = (0i64, 10i64, 9usize);
        let on = |ks: &[usize]| -> Vec<(i64, f64)> {
            ks.iter()
                .map(|&k| (start + k as i64 * interval, 5.0))
                .collect()
        };
        let series = [
            (on(&[0, 1, 2, 3, 4, 5, 6, 7, 8]), false),
            (on(&[2, 3, 4]), true),
            (on(&[1, 4, 8]), false),
            (on(&[4, 5, 6, 7, 8]), false),
        ];
        let mut cells = FoldCells::new(FoldOp::Count, nsteps);
        for (pts, drop) in &series {
            cells.add_series(0, nsteps, pts, *drop, start, interval);
        }
        for k in 0..nsteps {
            let at = |pts: &Vec<(i64, f64)>| pts.iter().any(|p| p.0 == k as i64 * interval);
            let n = series.iter().filter(|(p, _)| at(p)).count();
            let dropped = series.iter().any(|(p, d)| *d && at(p));
            assert_eq!(cells.get(k), Some((n as f64, dropped)), "step {k}");
        }
    }

    /// Dense (a point at every step, or at consecutive ones) and sparse series into `sum` and
    /// `avg` cells give the same bits as [`KahanSum`] and [`Mean`] fed point by point, also
    /// when a sum overflows and the mean turns incremental.
    #[test]
    fn dense_sum_and_avg_equal_the_point_by_point_fold() {
        let (start, interval, nsteps) = (0i64, 10i64, 9usize);
        let dense = |f: &dyn Fn(usize) -> f64| -> Vec<(i64, f64)> {
            (0..nsteps)
                .map(|k| (start + k as i64 * interval, f(k)))
                .collect()
        };
        let series: Vec<Vec<(i64, f64)>> = vec![
            dense(&|k| k as f64 * 0.1 + 1e15),
            dense(&|k| -(k as f64) * 3.3),
            vec![(10, 7.0), (40, f64::NAN), (80, 1e-3)],
            dense(&|k| {
                if k == 4 {
                    f64::MAX
                } else {
                    1.0 / (k as f64 + 1.0)
                }
            }),
            dense(&|k| {
                if k == 4 {
                    f64::MAX
                } else {
                    f64::INFINITY * (k % 3) as f64
                }
            }),
            dense(&|k| 2.5e-17 * k as f64),
            // On consecutive steps, but not all of them.
            dense(&|k| k as f64 * 7.0)[2..6].to_vec(),
            dense(&|k| f64::MAX / (k as f64 + 1.0))[5..].to_vec(),
            dense(&|k| -1e300 * k as f64)[..3].to_vec(),
        ];
        for fold in [FoldOp::Sum, FoldOp::Avg] {
            let mut cells = FoldCells::new(fold, nsteps);
            let mut sums = vec![None::<KahanSum>; nsteps];
            let mut means = vec![Mean::new(); nsteps];
            for s in &series {
                cells.add_series(0, nsteps, s, false, start, interval);
                for &(t, v) in s {
                    let k = ((t - start) / interval) as usize;
                    sums[k] = Some(match sums[k] {
                        None => KahanSum::starting_at(v),
                        Some(mut x) => {
                            x.add(v);
                            x
                        }
                    });
                    means[k].add(v);
                }
                for k in 0..nsteps {
                    let want = match fold {
                        FoldOp::Sum => sums[k].map(|x| x.value()),
                        _ => sums[k].map(|_| means[k].value()),
                    };
                    let got = cells.get(k).map(|(v, _)| v);
                    assert_eq!(
                        got.map(f64::to_bits),
                        want.map(f64::to_bits),
                        "step {k}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }

    /// An output's series: labels, name dropped, points (values as bits).
    type View = Vec<(Labels, bool, Vec<(i64, u64)>)>;

    fn group(name: &str) -> Arc<Labels> {
        Arc::new(Labels::from_pairs(&[("job", name)]))
    }

    /// By group or step by step, the same series in the same order (by the step each group
    /// first has a value), with the same points; two groups of one label set fall back.
    #[test]
    fn output_by_group_is_the_step_by_step_output() {
        let steps: Vec<i64> = (0..6).map(|k| k * 60_000).collect();
        let n = steps.len();
        let mut cells = FoldCells::new(FoldOp::Sum, 4 * n);
        // Group 0 from step 3, group 1 from step 0 with a gap, group 2 never, group 3 from 3.
        let pts = |ks: &[i64]| -> Vec<(i64, f64)> {
            ks.iter().map(|&k| (k * 60_000, k as f64 + 0.5)).collect()
        };
        cells.add_series(0, n, &pts(&[3, 4, 5]), true, 0, 60_000);
        cells.add_series(n, n, &pts(&[0, 1, 4]), false, 0, 60_000);
        cells.add_series(3 * n, n, &pts(&[3, 5]), true, 0, 60_000);
        let groups = [0, 1, 2, 3];
        let metrics = [group("a"), group("b"), group("c"), group("d")];
        let by_group = cells.output_by_group(&groups, &metrics, &steps).unwrap();
        let by_step = cells.output_by_step(&groups, &metrics, &steps).unwrap();
        let view = |o: OutCollector| -> View {
            o.finish()
                .into_iter()
                .map(|s| {
                    let pts = s.pts.iter().map(|&(t, v)| (t, v.to_bits())).collect();
                    ((*s.metric).clone(), s.drop_name, pts)
                })
                .collect()
        };
        let got = view(by_group);
        assert_eq!(got, view(by_step));
        let order: Vec<&str> = got.iter().map(|s| s.0.get("job").unwrap()).collect();
        assert_eq!(order, ["b", "a", "d"]);
        // Groups 0 and 3 with one label set: the step-by-step way reports it.
        let clash = [group("a"), group("b"), group("c"), group("a")];
        assert!(cells.output_by_group(&groups, &clash, &steps).is_none());
        assert!(cells.output_by_step(&groups, &clash, &steps).is_err());
    }
}
