//! Aggregation operators (`sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`,
//! `quantile`, `topk`, `bottomk`, `limitk`, `limit_ratio`, `count_values`) with `by` /
//! `without`. Input series are assigned to groups once; each step then folds the samples
//! present at that step into per-group accumulators.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{AggregateExpr, LabelModifier};
use tsdb::{Label, Labels};

use super::{Evaluator, OutCollector, StepCursor, StepSeries, Val};
use crate::error::{QResult, QueryError};
use crate::functions::aggregate::{
    quantile, ratio_keep, ratio_sample_offset, KahanSum, Mean, Variance,
};
use crate::functions::gofmt;

/// The simple (per-group fold) aggregation operators.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FoldOp {
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
    fn parse(op: &str) -> Option<FoldOp> {
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
const SERIES_MAJOR_MAX_CELLS: usize = 1 << 20;

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

fn grouping_of(a: &AggregateExpr) -> (bool, Vec<String>) {
    match &a.modifier {
        Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
        None => (false, vec![]),
    }
}

fn group_labels(m: &Labels, without: bool, grouping: &[String]) -> Labels {
    if without {
        Labels::from_sorted(
            m.iter()
                .filter(|l| l.name != "__name__" && !grouping.contains(&l.name))
                .cloned()
                .collect(),
        )
    } else {
        m.keep(grouping)
    }
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
        let input = self.eval_vector(&a.expr)?;
        // assign groups
        let mut key_to_group: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut group_metric: Vec<Arc<Labels>> = Vec::new();
        let mut series_group = Vec::with_capacity(input.len());
        for s in &input {
            let gl = group_labels(&s.metric, without, &grouping);
            let mut key = Vec::new();
            for l in gl.iter() {
                key.extend_from_slice(l.name.as_bytes());
                key.push(0xff);
                key.extend_from_slice(l.value.as_bytes());
                key.push(0xff);
            }
            let n = key_to_group.len();
            let g = *key_to_group.entry(key).or_insert_with(|| {
                group_metric.push(Arc::new(gl));
                n
            });
            series_group.push(g);
        }
        let ngroups = group_metric.len();
        let is_k = matches!(op, "topk" | "bottomk" | "limitk" | "limit_ratio");
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
            self.release(&Val::Vector(input));
            let n: usize = out.series.iter().map(|s| s.pts.len()).sum();
            self.add_samples(n)?;
            return Ok(Val::Vector(out.finish()));
        }
        let mut cur = StepCursor::new(input.len());
        let mut vals: Vec<(usize, f64)> = Vec::new();
        let mut out = OutCollector::new();
        let mut accs: Vec<Acc> = vec![Acc::default(); ngroups];
        let mut gslot: Vec<usize> = vec![usize::MAX; ngroups];
        for (k, &ts) in steps.iter().enumerate() {
            self.check_deadline()?;
            cur.gather(&input, ts, &mut vals);
            if vals.is_empty() {
                continue;
            }
            let param = params.as_ref().map(|p| p[k]).unwrap_or(0.0);
            if is_k {
                self.aggregate_k(
                    op,
                    param,
                    &input,
                    &series_group,
                    ngroups,
                    &vals,
                    ts,
                    instant,
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
        self.release(&Val::Vector(input));
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
        const SEEN: u8 = 1;
        const DROP: u8 = 2;
        let (nsteps, ngroups) = (steps.len(), group_metric.len());
        let cells = nsteps * ngroups;
        let (start, interval) = (self.start, self.interval);
        let mut flags = vec![0u8; cells];
        let mut sums = if fold == FoldOp::Sum {
            vec![KahanSum::new(); cells]
        } else {
            Vec::new()
        };
        let mut means = if fold == FoldOp::Avg {
            vec![Mean::new(); cells]
        } else {
            Vec::new()
        };
        let mut vals = if matches!(fold, FoldOp::Sum | FoldOp::Avg) {
            Vec::new()
        } else {
            vec![0.0f64; cells]
        };
        for (si, s) in input.iter().enumerate() {
            if si % 1024 == 0 {
                self.check_deadline()?;
            }
            let base = series_group[si] * nsteps;
            let dn = if s.drop_name { DROP } else { 0 };
            let mut next_k = 0usize;
            for &(ts, f) in &s.pts {
                let d = ts - start;
                if d < 0 || d % interval != 0 {
                    continue;
                }
                let k = (d / interval) as usize;
                if k >= nsteps || k < next_k {
                    continue;
                }
                next_k = k + 1;
                let c = base + k;
                if flags[c] & SEEN == 0 {
                    flags[c] = SEEN | dn;
                    match fold {
                        FoldOp::Sum => sums[c] = KahanSum::starting_at(f),
                        FoldOp::Avg => means[c].add(f),
                        FoldOp::Count | FoldOp::Group => vals[c] = 1.0,
                        _ => vals[c] = f,
                    }
                    continue;
                }
                flags[c] |= dn;
                match fold {
                    FoldOp::Sum => sums[c].add(f),
                    FoldOp::Avg => means[c].add(f),
                    FoldOp::Count => vals[c] += 1.0,
                    FoldOp::Max if vals[c] < f || vals[c].is_nan() => vals[c] = f,
                    FoldOp::Min if vals[c] > f || vals[c].is_nan() => vals[c] = f,
                    _ => {}
                }
            }
        }
        let mut out = OutCollector::new();
        let mut gslot: Vec<usize> = vec![usize::MAX; ngroups];
        for (k, &ts) in steps.iter().enumerate() {
            for g in 0..ngroups {
                let c = g * nsteps + k;
                if flags[c] & SEEN == 0 {
                    continue;
                }
                let v = match fold {
                    FoldOp::Sum => sums[c].value(),
                    FoldOp::Avg => means[c].value(),
                    _ => vals[c],
                };
                if gslot[g] == usize::MAX {
                    gslot[g] = out.slot(&group_metric[g], flags[c] & DROP != 0, false);
                }
                out.push_slot(gslot[g], ts, v)?;
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn aggregate_k(
        &mut self,
        op: &str,
        param: f64,
        input: &[StepSeries],
        series_group: &[usize],
        ngroups: usize,
        vals: &[(usize, f64)],
        ts: i64,
        instant: bool,
        out: &mut OutCollector,
    ) -> QResult<()> {
        let mut k: i64 = 0;
        let mut ratio = 0.0;
        match op {
            "limit_ratio" => {
                if param == 0.0 {
                    return Ok(());
                }
                ratio = param.clamp(-1.0, 1.0);
            }
            _ => {
                k = (param as i64).min(input.len() as i64);
                if k < 1 {
                    return Ok(());
                }
            }
        }
        let mut heaps: Vec<Option<GoHeap>> = (0..ngroups).map(|_| None).collect();
        for &(si, f) in vals {
            let gi = series_group[si];
            let h = heaps[gi].get_or_insert_with(|| GoHeap {
                items: Vec::new(),
                reverse: op == "bottomk",
            });
            match op {
                "topk" | "bottomk" => {
                    if (h.items.len() as i64) < k {
                        h.push((si, f));
                    } else {
                        let top = h.items[0].1;
                        let replace = if op == "topk" {
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
                "limitk" => {
                    if (h.items.len() as i64) < k {
                        h.items.push((si, f));
                    }
                }
                _ => {
                    if ratio_keep(ratio, ratio_sample_offset(input[si].metric.hash())) {
                        h.items.push((si, f));
                    }
                }
            }
        }
        for h in heaps.iter_mut().flatten() {
            if op == "topk" || op == "bottomk" {
                h.sort_reverse();
            }
            for &(si, f) in &h.items {
                out.push(&input[si].metric, ts, f, input[si].drop_name, instant)?;
            }
        }
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
