//! Binary operators: scalar/scalar, vector/scalar and vector/vector with label matching
//! (`on`, `ignoring`, `group_left`, `group_right`, `bool`, fill modifiers) and the set
//! operators `and`, `or`, `unless`.

use std::sync::Arc;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use tsdb::{Label, Labels};

use super::{Evaluator, FxMap, OutCollector, StepCursor, StepSeries, Val};
use crate::error::{QResult, QueryError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Mod,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "^" => Op::Pow,
            "%" => Op::Mod,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    fn changes_schema(self) -> bool {
        matches!(
            self,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow | Op::Mod | Op::Atan2
        )
    }

    /// Applies the operator to two floats: (value, keep).
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Pow => (l.powf(r), true),
            Op::Mod => (go_mod(l, r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (l, true),
        }
    }
}

/// Go's `math.Mod`: result has the sign of `x`.
fn go_mod(x: f64, y: f64) -> f64 {
    if y == 0.0 || x.is_infinite() || x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    x % y
}

fn scalar_op(op: Op, l: f64, r: f64) -> f64 {
    let (v, keep) = op.apply(l, r);
    if op.is_comparison() {
        if keep {
            1.0
        } else {
            0.0
        }
    } else {
        v
    }
}

/// Label-matching description of a vector/vector operation.
struct Matching {
    card: Card,
    on: bool,
    names: Vec<String>,
    include: Vec<String>,
    fill_lhs: Option<f64>,
    fill_rhs: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

/// The labels an operation matches on: `on` keeps `names`, `ignoring` drops them and the name.
fn match_labels(l: &Labels, on: bool, names: &[String]) -> Labels {
    if on {
        l.keep(names)
    } else {
        Labels::from_sorted(
            l.iter()
                .filter(|x| x.name != "__name__" && !names.contains(&x.name))
                .cloned()
                .collect(),
        )
    }
}

fn signature(l: &Labels, on: bool, names: &[String]) -> Vec<u8> {
    let matched = l.iter().filter(|x| {
        if on {
            names.contains(&x.name)
        } else {
            x.name != "__name__" && !names.contains(&x.name)
        }
    });
    let mut b = Vec::new();
    super::pairs_key(&mut b, matched.map(|x| (x.name.as_str(), x.value.as_str())));
    b
}

fn result_metric(lhs: &Labels, rhs: &Labels, op: Op, m: &Matching) -> Labels {
    let mut v: Vec<Label> = lhs.as_slice().to_vec();
    if op.changes_schema() {
        v.retain(|l| l.name != "__name__");
    }
    if m.card == Card::OneToOne {
        if m.on {
            v.retain(|l| m.names.contains(&l.name));
        } else {
            v.retain(|l| !m.names.contains(&l.name));
        }
    }
    let mut out = Labels::from_sorted(v);
    for ln in &m.include {
        out = out.with(ln, rhs.get(ln).unwrap_or(""));
    }
    out
}

impl Evaluator<'_> {
    pub(crate) fn eval_binary(&mut self, b: &BinaryExpr) -> QResult<Val> {
        let op_s = b.op.to_string();
        let op_str = op_s.as_str();
        let op = Op::parse(op_str)
            .ok_or_else(|| QueryError::bad_data(format!("unknown binary operator {op_str}")))?;
        let return_bool = b.return_bool();
        let lv = self.eval(&b.lhs)?;
        let rv = self.eval(&b.rhs)?;
        match (lv, rv) {
            (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
                l.iter()
                    .zip(r.iter())
                    .map(|(a, c)| scalar_op(op, *a, *c))
                    .collect(),
            )),
            (Val::Vector(l), Val::Scalar(r)) => self.vector_scalar(op, l, &r, false, return_bool),
            (Val::Scalar(l), Val::Vector(r)) => self.vector_scalar(op, r, &l, true, return_bool),
            (Val::Vector(l), Val::Vector(r)) => {
                let m = self.matching(b, op)?;
                let res = self.vector_vector(op, &l, &r, &m, return_bool);
                self.release(&Val::Vector(l));
                self.release(&Val::Vector(r));
                res
            }
            _ => Err(QueryError::bad_data(
                "binary expression must contain only scalar and instant vector types",
            )),
        }
    }

    fn matching(&self, b: &BinaryExpr, op: Op) -> QResult<Matching> {
        let mut m = Matching {
            card: Card::OneToOne,
            on: false,
            names: vec![],
            include: vec![],
            fill_lhs: None,
            fill_rhs: None,
        };
        if let Some(md) = &b.modifier {
            m.card = match &md.card {
                VectorMatchCardinality::OneToOne => Card::OneToOne,
                VectorMatchCardinality::ManyToOne(ls) => {
                    m.include = ls.labels.clone();
                    Card::ManyToOne
                }
                VectorMatchCardinality::OneToMany(ls) => {
                    m.include = ls.labels.clone();
                    Card::OneToMany
                }
                VectorMatchCardinality::ManyToMany => Card::ManyToMany,
            };
            match &md.matching {
                Some(LabelModifier::Include(ls)) => {
                    m.on = true;
                    m.names = ls.labels.clone();
                }
                Some(LabelModifier::Exclude(ls)) => {
                    m.names = ls.labels.clone();
                }
                None => {}
            }
            m.fill_lhs = md.fill_values.lhs;
            m.fill_rhs = md.fill_values.rhs;
        }
        if matches!(op, Op::And | Op::Or | Op::Unless) {
            m.card = Card::ManyToMany;
        }
        Ok(m)
    }

    fn vector_scalar(
        &mut self,
        op: Op,
        vec: Vec<StepSeries>,
        sc: &[f64],
        swap: bool,
        return_bool: bool,
    ) -> QResult<Val> {
        let start = self.start;
        let interval = self.interval;
        let mut out = Vec::with_capacity(vec.len());
        for mut s in vec {
            let mut pts = Vec::with_capacity(s.pts.len());
            for &(t, v) in &s.pts {
                let k = ((t - start) / interval) as usize;
                let r = sc[k];
                let (l, rr) = if swap { (r, v) } else { (v, r) };
                let (mut val, mut keep) = op.apply(l, rr);
                if op.is_comparison() && swap {
                    val = v;
                }
                if return_bool {
                    val = if keep { 1.0 } else { 0.0 };
                    keep = true;
                }
                if keep {
                    pts.push((t, val));
                }
            }
            if op.changes_schema() || return_bool {
                s.drop_name = true;
            }
            if !pts.is_empty() {
                s.pts = pts.into();
                out.push(s);
            }
        }
        Ok(Val::Vector(out))
    }

    fn vector_vector(
        &mut self,
        op: Op,
        lhs: &[StepSeries],
        rhs: &[StepSeries],
        m: &Matching,
        return_bool: bool,
    ) -> QResult<Val> {
        // signature ordinals for both sides
        let mut sig_ord: FxMap<Vec<u8>, usize> = FxMap::default();
        let mut ord = |l: &Labels| {
            let s = signature(l, m.on, &m.names);
            let n = sig_ord.len();
            *sig_ord.entry(s).or_insert(n)
        };
        let lsig: Vec<usize> = lhs.iter().map(|s| ord(&s.metric)).collect();
        let rsig: Vec<usize> = rhs.iter().map(|s| ord(&s.metric)).collect();
        let nsigs = sig_ord.len();
        let instant = self.is_instant();
        let mut lc = StepCursor::new(lhs.len());
        let mut rc = StepCursor::new(rhs.len());
        let mut lv: Vec<(usize, f64)> = Vec::new();
        let mut rv: Vec<(usize, f64)> = Vec::new();
        let mut out = OutCollector::new();
        let mut present = vec![false; nsigs];
        let mut right_at: Vec<usize> = vec![0; nsigs];
        let mut matched = vec![false; nsigs];
        let mut matched_sets: Vec<Vec<Arc<Labels>>> = vec![Vec::new(); nsigs];
        let mut metric_cache: FxMap<(usize, usize, bool), (Arc<Labels>, usize)> = FxMap::default();
        let mut lslot: Vec<usize> = vec![usize::MAX; lhs.len()];
        let mut rslot: Vec<usize> = vec![usize::MAX; rhs.len()];
        let slot_of = |out: &mut OutCollector,
                       cache: &mut Vec<usize>,
                       side: &[StepSeries],
                       i: usize|
         -> usize {
            if cache[i] == usize::MAX {
                cache[i] = out.slot(&side[i].metric, side[i].drop_name, instant);
            }
            cache[i]
        };
        let steps: Vec<i64> = self.steps().collect();
        for ts in steps {
            self.check_deadline()?;
            lc.gather(lhs, ts, &mut lv);
            rc.gather(rhs, ts, &mut rv);
            match op {
                Op::And | Op::Unless => {
                    // `and` keeps the left samples with a match on the right, `unless` those
                    // without one.
                    let keep_matched = matches!(op, Op::And);
                    if keep_matched && (lv.is_empty() || rv.is_empty()) {
                        continue;
                    }
                    present.iter_mut().for_each(|x| *x = false);
                    for &(j, _) in &rv {
                        present[rsig[j]] = true;
                    }
                    for &(i, v) in &lv {
                        if present[lsig[i]] == keep_matched {
                            let sl = slot_of(&mut out, &mut lslot, lhs, i);
                            out.push_slot(sl, ts, v)?;
                        }
                    }
                }
                Op::Or => {
                    present.iter_mut().for_each(|x| *x = false);
                    for &(i, v) in &lv {
                        present[lsig[i]] = true;
                        let sl = slot_of(&mut out, &mut lslot, lhs, i);
                        out.push_slot(sl, ts, v)?;
                    }
                    for &(j, v) in &rv {
                        if !present[rsig[j]] {
                            let sl = slot_of(&mut out, &mut rslot, rhs, j);
                            out.push_slot(sl, ts, v)?;
                        }
                    }
                }
                _ => {
                    if (lv.is_empty() && rv.is_empty())
                        || ((lv.is_empty() || rv.is_empty())
                            && m.fill_lhs.is_none()
                            && m.fill_rhs.is_none())
                    {
                        continue;
                    }
                    // after a swap for one-to-many, "l" is the many side.
                    let swap = m.card == Card::OneToMany;
                    let (ls, rs, lsg, rsg, lvv, rvv) = if swap {
                        (rhs, lhs, &rsig, &lsig, &rv, &lv)
                    } else {
                        (lhs, rhs, &lsig, &rsig, &lv, &rv)
                    };
                    present.iter_mut().for_each(|x| *x = false);
                    for &(j, _) in rvv.iter() {
                        let so = rsg[j];
                        if present[so] {
                            let other = right_at[so];
                            let one_side = if swap { "left" } else { "right" };
                            let ml = match_labels(&rs[j].metric, m.on, &m.names);
                            let mut d1 = rs[j].metric.to_string();
                            let mut d2 = rs[rvv[other].0].metric.to_string();
                            if d1 > d2 {
                                std::mem::swap(&mut d1, &mut d2);
                            }
                            return Err(QueryError::execution(format!(
                                "found duplicate series for the match group {ml} on the {one_side} hand-side of the operation: [{d1}, {d2}];many-to-many matching not allowed: matching labels must be unique on one side"
                            )));
                        }
                        present[so] = true;
                    }
                    // index of right sample per signature
                    for (k, &(j, _)) in rvv.iter().enumerate() {
                        right_at[rsg[j]] = k;
                    }
                    matched.iter_mut().for_each(|x| *x = false);
                    matched_sets.iter_mut().for_each(|x| x.clear());
                    let one_to_one = m.card == Card::OneToOne;
                    let mut do_op = |li: Option<usize>,
                                     lval: f64,
                                     ri: Option<usize>,
                                     rval: f64,
                                     so: usize,
                                     out: &mut OutCollector,
                                     matched: &mut Vec<bool>,
                                     matched_sets: &mut Vec<Vec<Arc<Labels>>>|
                     -> QResult<()> {
                        let (fl, fr) = if swap { (rval, lval) } else { (lval, rval) };
                        let (mut val, keep) = op.apply(fl, fr);
                        if return_bool {
                            val = if keep { 1.0 } else { 0.0 };
                        }
                        let key = match (li, ri) {
                            (Some(a), Some(c)) => (a, c, false),
                            (Some(a), None) => (a, usize::MAX, false),
                            (None, Some(c)) => (usize::MAX, c, true),
                            (None, None) => return Ok(()),
                        };
                        let (metric, slot) = metric_cache
                            .entry(key)
                            .or_insert_with(|| {
                                let ml = match (li, ri) {
                                    (Some(a), Some(c)) => {
                                        result_metric(&ls[a].metric, &rs[c].metric, op, m)
                                    }
                                    (Some(a), None) => {
                                        let rl = match_labels(&ls[a].metric, m.on, &m.names);
                                        result_metric(&ls[a].metric, &rl, op, m)
                                    }
                                    (_, Some(c)) => {
                                        let ll = match_labels(&rs[c].metric, m.on, &m.names);
                                        result_metric(&ll, &rs[c].metric, op, m)
                                    }
                                    _ => Labels::empty(),
                                };
                                let ml = Arc::new(ml);
                                let sl = out.slot(&ml, return_bool, instant);
                                (ml, sl)
                            })
                            .clone();
                        if one_to_one {
                            if matched[so] {
                                return Err(QueryError::execution(
                                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                                ));
                            }
                            matched[so] = true;
                        } else {
                            if matched_sets[so]
                                .iter()
                                .any(|x| Arc::ptr_eq(x, &metric) || **x == *metric)
                            {
                                return Err(QueryError::execution(
                                    "multiple matches for labels: grouping labels must ensure unique matches",
                                ));
                            }
                            matched_sets[so].push(metric.clone());
                        }
                        if !keep && !return_bool {
                            return Ok(());
                        }
                        out.push_slot(slot, ts, val)
                    };
                    for &(i, v) in lvv.iter() {
                        let so = lsg[i];
                        if present[so] {
                            let (j, rvalue) = rvv[right_at[so]];
                            do_op(
                                Some(i),
                                v,
                                Some(j),
                                rvalue,
                                so,
                                &mut out,
                                &mut matched,
                                &mut matched_sets,
                            )?;
                        } else if let Some(f) = m.fill_rhs {
                            do_op(
                                Some(i),
                                v,
                                None,
                                f,
                                so,
                                &mut out,
                                &mut matched,
                                &mut matched_sets,
                            )?;
                        }
                    }
                    if let Some(f) = m.fill_lhs {
                        for &(j, rvalue) in rvv.iter() {
                            let so = rsg[j];
                            let done = if one_to_one {
                                matched[so]
                            } else {
                                !matched_sets[so].is_empty()
                            };
                            if done {
                                continue;
                            }
                            do_op(
                                None,
                                f,
                                Some(j),
                                rvalue,
                                so,
                                &mut out,
                                &mut matched,
                                &mut matched_sets,
                            )?;
                        }
                    }
                }
            }
        }
        let n: usize = out.series.iter().map(|s| s.pts.len()).sum();
        self.add_samples(n)?;
        Ok(Val::Vector(out.finish()))
    }
}
