//! Aggregations fused with the series they aggregate, for range queries.
//!
//! `sum`/`avg`/`count`/`min`/`max`/`group` (with `by`/`without`) over a range function of a
//! plain matrix selector (`sum by (job) (rate(x[5m]))`) or over a plain instant selector
//! (`count by (job) (up)`) would otherwise hold the per-step output of every input series
//! in memory before folding it. Here each selected series is decoded, turned into its
//! per-step points in a reused buffer and folded straight into its group's per-step
//! accumulators.
//!
//! The result is the same to the bit as the unfused evaluation: the series of one group are
//! folded in input order (one thread owns a whole group at a time; threads take the next
//! group, biggest first, as they become free), groups are numbered by the first input
//! series that yields a point, and annotations, sample statistics and the memory limit are
//! accounted as if the input had been materialised.

use std::sync::{Arc, Mutex};

use promql_parser::parser::{Call, Expr, MatrixSelector, VectorSelector};
use tsdb::Labels;

use super::aggregate::{assign_groups, FoldCells, FoldOp, SERIES_MAJOR_MAX_CELLS};
use super::call::{run_series_into, SeriesJob, SeriesScratch};
use super::{
    decode_into, ext_modifier, fnlib, has_stale, offset_ms, par, place_on_steps, selector_matchers,
    unparen, Evaluator, OutCollector, Val, PARALLEL_DECODE_MIN_SERIES,
};
use crate::error::{QResult, QueryError};
use crate::functions::range::RangeFn;
use crate::functions::Annotation;

/// Reused per-thread buffers.
#[derive(Default)]
struct Scratch {
    /// Decoded samples of the current series.
    buf: Vec<(i64, f64)>,
    /// Per-step points of the current series (in `sc.pts`) and range-function buffers.
    sc: SeriesScratch,
    /// Unused sample timestamps of instant selectors.
    ts_orig: Vec<i64>,
}

/// An input series of a group with its index in the input.
type Member = (usize, Arc<dyn tsdb::Series>);

/// What producing one series' per-step points reported.
struct Produced {
    decoded: u64,
    samples: u64,
    non_counter: Option<String>,
}

/// The fold of one group.
struct GroupFold {
    cells: FoldCells,
    /// Index of the first input series with a point (`usize::MAX` if none).
    first: usize,
    decoded: u64,
    samples: u64,
    points: usize,
    /// `(series index, annotations, non-counter metric name)` of series that had any.
    notes: Vec<(usize, Vec<Annotation>, Option<String>)>,
}

impl Evaluator<'_> {
    /// Evaluates `fold` over `expr` fused with it when `expr` is a range function of a plain
    /// matrix selector or a plain instant selector; `None` when it is neither (or there are
    /// too many groups), and the caller evaluates it the ordinary way.
    pub(super) fn try_fused_aggregate(
        &mut self,
        fold: FoldOp,
        expr: &Expr,
        without: bool,
        grouping: &[String],
    ) -> QResult<Option<Val>> {
        self.check_deadline()?;
        if !without && grouping.is_empty() && par::threads_for(usize::MAX, 1) > 1 {
            // One group: with several cores `fused_fold` would give up on many series once it
            // had selected them (one thread per group), and they would be selected again.
            return Ok(None);
        }
        match unparen(expr) {
            Expr::Call(c) => match fused_range_arg(c) {
                Some((name, ms)) => self.fused_range_fn(fold, name, ms, without, grouping),
                None => Ok(None),
            },
            Expr::VectorSelector(vs) if ext_modifier(vs).is_none() => {
                self.fused_selector(fold, vs, without, grouping)
            }
            _ => Ok(None),
        }
    }

    /// `fold` over `name(ms)`.
    fn fused_range_fn(
        &mut self,
        fold: FoldOp,
        name: &str,
        ms: &MatrixSelector,
        without: bool,
        grouping: &[String],
    ) -> QResult<Option<Val>> {
        let arg = self.range_arg_lazy(ms)?;
        let Some(lz) = arg.lazy else {
            return Ok(None);
        };
        fnlib::range_check_params(name, &[]).map_err(QueryError::execution)?;
        let steps: Vec<i64> = self.steps().collect();
        let job = SeriesJob {
            name,
            steps: &steps,
            params: &[],
            at: arg.at,
            offset: arg.offset,
            range: arg.range,
            from_subquery: false,
            sts_src: self.start_timestamps,
            drop: !(name == "last_over_time" || name == "first_over_time"),
            deadline: self.deadline,
            cancel: self.cancel,
            metric_name: ms.vs.name.as_deref(),
        };
        let (mint, maxt) = (lz.mint, lz.maxt);
        let produce = |s: &dyn tsdb::Series, sc: &mut Scratch| -> QResult<Produced> {
            sc.buf.clear();
            decode_into(s, mint, maxt, &mut sc.buf)?;
            let decoded = sc.buf.len() as u64;
            if has_stale(&sc.buf) {
                sc.buf.retain(|x| !tsdb::chunkenc::is_stale_nan(x.1));
            }
            let st = run_series_into(&job, s.labels(), &sc.buf, &mut sc.sc)?;
            Ok(Produced {
                decoded,
                samples: st.samples,
                non_counter: st.non_counter,
            })
        };
        let out = self.fused_fold(
            fold, lz.series, without, grouping, &steps, job.drop, produce,
        )?;
        Ok(out.map(Val::Vector))
    }

    /// `fold` over the instant selector `vs`.
    fn fused_selector(
        &mut self,
        fold: FoldOp,
        vs: &VectorSelector,
        without: bool,
        grouping: &[String],
    ) -> QResult<Option<Val>> {
        let offset = offset_ms(&vs.offset);
        let at = self.at_time(&vs.at);
        let (lo, hi) = self.ref_bounds(at, offset);
        let (mint, maxt) = (lo - self.lookback + 1, hi);
        let groups = selector_matchers(vs)?;
        let picked = self.select_sorted(&groups, mint, maxt, 0)?;
        let steps: Vec<i64> = self.steps().collect();
        let lookback = self.lookback;
        let steps_ref = &steps;
        let produce = |s: &dyn tsdb::Series, sc: &mut Scratch| -> QResult<Produced> {
            sc.buf.clear();
            decode_into(s, mint, maxt, &mut sc.buf)?;
            place_on_steps(
                &sc.buf,
                steps_ref,
                at,
                offset,
                lookback,
                false,
                &mut sc.sc.pts,
                &mut sc.ts_orig,
            );
            Ok(Produced {
                decoded: sc.buf.len() as u64,
                samples: 0,
                non_counter: None,
            })
        };
        let out = self.fused_fold(fold, picked, without, grouping, &steps, false, produce)?;
        Ok(out.map(Val::Vector))
    }

    /// Groups `series`, then on all cores produces each series' per-step points with
    /// `produce` (into `Scratch::sc.pts`) and folds them into its group; `None` when there
    /// are too many group × step cells for the series-major fold, or when one group holds
    /// more than two thirds of many series (it would run on one core). Each series is dropped
    /// by the thread that folded it, right after, rather than all at the end on one thread.
    #[allow(clippy::too_many_arguments)]
    fn fused_fold<P>(
        &mut self,
        fold: FoldOp,
        series: Vec<Arc<dyn tsdb::Series>>,
        without: bool,
        grouping: &[String],
        steps: &[i64],
        drop_name: bool,
        produce: P,
    ) -> QResult<Option<Vec<super::StepSeries>>>
    where
        P: Fn(&dyn tsdb::Series, &mut Scratch) -> QResult<Produced> + Sync,
    {
        let (series_group, group_metric) =
            assign_groups(series.iter().map(|s| s.labels()), without, grouping);
        let (ngroups, nsteps) = (group_metric.len(), steps.len());
        if ngroups.saturating_mul(nsteps) > SERIES_MAJOR_MAX_CELLS {
            return Ok(None);
        }
        // The number of input series of each group; biggest groups are taken first.
        let nseries = series.len();
        let mut sizes: Vec<usize> = vec![0; ngroups];
        for &g in &series_group {
            sizes[g] += 1;
        }
        let mut order: Vec<usize> = (0..ngroups).collect();
        order.sort_by_key(|&g| std::cmp::Reverse(sizes[g]));
        let threads = par::threads_for(nseries, PARALLEL_DECODE_MIN_SERIES).min(ngroups);
        // One thread owns a whole group: when one group holds most of the series (`sum`
        // without grouping), the unfused evaluation, which splits series over the cores,
        // answers sooner even though it selects the series again.
        let biggest = order.first().map_or(0, |&g| sizes[g]);
        let all_threads = par::threads_for(nseries, PARALLEL_DECODE_MIN_SERIES);
        if all_threads > 1 && biggest * 3 > nseries * 2 {
            return Ok(None);
        }
        // The input series of each group, in input order, handed over to the thread that
        // takes the group.
        let mut members: Vec<Vec<(usize, Arc<dyn tsdb::Series>)>> =
            sizes.iter().map(|&n| Vec::with_capacity(n)).collect();
        for (si, s) in series.into_iter().enumerate() {
            members[series_group[si]].push((si, s));
        }
        let members: Vec<Mutex<Vec<Member>>> = members.into_iter().map(Mutex::new).collect();
        let (start, interval) = (self.start, self.interval);
        let (cancel, deadline) = (self.cancel, self.deadline);
        let results = par::par_dynamic(ngroups, threads, Scratch::default, |sc, i| {
            let g = order[i];
            let mut gf = GroupFold {
                cells: FoldCells::new(fold, nsteps),
                first: usize::MAX,
                decoded: 0,
                samples: 0,
                points: 0,
                notes: Vec::new(),
            };
            let mine = std::mem::take(&mut *members[g].lock().unwrap_or_else(|e| e.into_inner()));
            for (n, (si, s)) in mine.into_iter().enumerate() {
                if n % 256 == 255 {
                    check_stop(cancel, deadline)?;
                }
                let p = produce(s.as_ref(), sc)?;
                drop(s);
                gf.decoded += p.decoded;
                gf.samples += p.samples;
                let pts = &sc.sc.pts;
                if !pts.is_empty() {
                    gf.points += pts.len();
                    if gf.first == usize::MAX {
                        gf.first = si;
                    }
                    gf.cells
                        .add_series(0, nsteps, pts, drop_name, start, interval);
                }
                if !sc.sc.annos.is_empty() || p.non_counter.is_some() {
                    gf.notes
                        .push((si, std::mem::take(&mut sc.sc.annos), p.non_counter));
                }
            }
            Ok(gf)
        })?;
        let mut folds: Vec<GroupFold> = results.into_iter().map(|(_, gf)| gf).collect();
        // Accounting as if the input had been materialised.
        let (mut points, mut notes) = (0usize, Vec::new());
        for gf in &mut folds {
            self.total_samples += gf.decoded + gf.samples;
            points += gf.points;
            notes.append(&mut gf.notes);
        }
        self.add_samples(points)?;
        self.cur_samples = self.cur_samples.saturating_sub(points);
        notes.sort_by_key(|n| n.0);
        let mut fn_annos = Vec::new();
        for (_, annos, non_counter) in notes {
            if let Some(mn) = non_counter {
                self.annos.info(format!(
                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {mn:?}"
                ));
            }
            fn_annos.extend(annos);
        }
        fnlib::add_annotations(&mut self.annos, fn_annos);
        // Groups numbered by their first series with a point, as the unfused fold does.
        folds.retain(|gf| gf.first != usize::MAX);
        folds.sort_by_key(|gf| gf.first);
        let metrics: Vec<&Arc<Labels>> = folds
            .iter()
            .map(|gf| &group_metric[series_group[gf.first]])
            .collect();
        let mut out = OutCollector::new();
        let mut gslot: Vec<usize> = vec![usize::MAX; folds.len()];
        for (k, &ts) in steps.iter().enumerate() {
            for (g, gf) in folds.iter().enumerate() {
                let Some((v, drop)) = gf.cells.get(k) else {
                    continue;
                };
                if gslot[g] == usize::MAX {
                    gslot[g] = out.slot(metrics[g], drop, false);
                }
                out.push_slot(gslot[g], ts, v)?;
            }
        }
        let n: usize = out.series.iter().map(|s| s.pts.len()).sum();
        self.add_samples(n)?;
        self.check_deadline()?;
        Ok(Some(out.finish()))
    }
}

/// The range function name and matrix selector of `c` when it is a range function with a
/// plain matrix selector as its only argument.
fn fused_range_arg(c: &Call) -> Option<(&'static str, &MatrixSelector)> {
    let name = c.func.name;
    if c.args.args.len() != 1 || RangeFn::from_name(name).is_none() {
        return None;
    }
    match unparen(&c.args.args[0]) {
        Expr::MatrixSelector(ms) if ext_modifier(&ms.vs).is_none() => Some((name, ms)),
        _ => None,
    }
}

/// Fails with the query's cancellation or timeout error once either happened.
fn check_stop(
    cancel: Option<&std::sync::atomic::AtomicBool>,
    deadline: Option<std::time::Instant>,
) -> QResult<()> {
    if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
        return Err(QueryError::canceled());
    }
    if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
        return Err(QueryError::timeout());
    }
    Ok(())
}
