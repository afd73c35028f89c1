//! Aggregations fused with the series they aggregate.
//!
//! `sum`/`avg`/`count`/`min`/`max`/`group` (with `by`/`without`) over a range function of a
//! plain matrix selector (`sum by (job) (rate(x[5m]))`) or over a plain instant selector
//! (`count by (job) (up)`) would otherwise hold every selected series and the per-step output
//! of every one in memory before folding it. Here the selected series are streamed from
//! storage and taken in runs of consecutive series (storage order) by all cores; each series
//! is decoded and turned into its per-step points, which are kept only until their run is
//! folded into the per-group, per-step accumulators, and dropped with the series.
//!
//! Range queries are fused whenever the shape allows; instant queries only over long ranges
//! (see [`streams_long_ranges`]).
//!
//! The result is the same to the bit as the unfused evaluation: runs are folded strictly in
//! input order (by whichever thread completes the next one), so every group sees its series
//! in input order; groups are numbered by the first input series that yields a point, and
//! annotations, sample statistics and the memory limit are accounted as if the input had
//! been materialised.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use promql_parser::parser::{Call, Expr, MatrixSelector, VectorSelector};

use super::aggregate::{FoldCells, FoldOp, GroupAssigner, SERIES_MAJOR_MAX_CELLS};
use super::call::{run_series_into, SeriesJob, SeriesScratch};
use super::{
    decode_into, ext_modifier, fnlib, has_stale, offset_ms, par, place_on_steps, selector_matchers,
    unparen, Evaluator, Val, HOUR_MS, PARALLEL_DECODE_MIN_SERIES,
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
    /// A points buffer for the next run (recycled from a folded run).
    run_pts: Vec<(i64, f64)>,
}

/// Most series in one unit of work of [`Evaluator::fused_fold`].
const CHUNK_SERIES: usize = 32;

/// Fewest series-hours of data (selected series × the hours each is read over) for which
/// [`Evaluator::fused_fold`] uses more than one thread: about 60k samples at a 15 s
/// interval, a few hundred µs of decoding, against ~30 µs to start a thread. On the 100k
/// bench, regex_pod_cpu [r] (54 series over 6h) ran on one thread with 256 series as the
/// bar.
const PARALLEL_FOLD_MIN_SERIES_HOURS: u128 = 256;

/// What producing one series' per-step points reported.
struct Produced {
    decoded: u64,
    samples: u64,
    non_counter: Option<String>,
}

/// A run of consecutive input series handed to one thread, with their groups.
struct RunIn {
    /// The run's number (runs are folded in this order).
    index: usize,
    /// Index of the run's first series.
    first: usize,
    series: Vec<Arc<dyn tsdb::Series>>,
    /// The group of each series.
    groups: Vec<usize>,
    /// Groups numbered so far (all of this run's are below).
    ngroups: usize,
}

/// The per-step points of a run of consecutive input series, produced by one thread.
struct RunOut {
    /// Index of the run's first series.
    first: usize,
    /// The group of each series.
    groups: Vec<usize>,
    ngroups: usize,
    /// End of each series' points in `pts`.
    ends: Vec<usize>,
    pts: Vec<(i64, f64)>,
    decoded: u64,
    samples: u64,
    /// `(series index, annotations, non-counter metric name)` of series that had any.
    notes: Vec<(usize, Vec<Annotation>, Option<String>)>,
}

/// The selected series still to fold and the groups numbered so far, shared by the threads:
/// each takes the next run from here.
struct RunSource<'g> {
    series: tsdb::SeriesSet,
    /// Series taken from `series` ahead of the runs (to size the thread count).
    ahead: std::vec::IntoIter<Arc<dyn tsdb::Series>>,
    /// Series per run: [`CHUNK_SERIES`], fewer for a small selection so that every thread
    /// gets some.
    run_len: usize,
    groups: GroupAssigner<'g>,
    nsteps: usize,
    runs: usize,
    taken: usize,
    /// Set once the groups × steps exceeded [`SERIES_MAJOR_MAX_CELLS`]: no more runs.
    too_many: bool,
}

impl RunSource<'_> {
    /// The next run of up to `run_len` series, `None` at the end of the selection or once
    /// there are too many groups.
    fn next_run(&mut self) -> QResult<Option<RunIn>> {
        if self.too_many {
            return Ok(None);
        }
        let mut series = Vec::with_capacity(self.run_len);
        series.extend(self.ahead.by_ref().take(self.run_len));
        while series.len() < self.run_len {
            match self.series.next() {
                Some(s) => series.push(s.map_err(QueryError::storage)?),
                None => break,
            }
        }
        if series.is_empty() {
            return Ok(None);
        }
        let groups: Vec<usize> = series
            .iter()
            .map(|s| self.groups.assign(s.label_pairs()))
            .collect();
        let ngroups = self.groups.group_metric.len();
        if ngroups.saturating_mul(self.nsteps) > SERIES_MAJOR_MAX_CELLS {
            self.too_many = true;
            return Ok(None);
        }
        let run = RunIn {
            index: self.runs,
            first: self.taken,
            series,
            groups,
            ngroups,
        };
        self.runs += 1;
        self.taken += run.series.len();
        Ok(Some(run))
    }
}

/// The fold of all groups, fed runs in input order.
struct FoldState {
    /// The next run to fold.
    next: usize,
    /// Runs produced but not folded yet (a later run can finish first), by number.
    ready: std::collections::BTreeMap<usize, RunOut>,
    /// Cell `g * nsteps + k`: group `g` at step `k`.
    cells: FoldCells,
    /// Per group, index of the first input series with a point (`usize::MAX` if none).
    first: Vec<usize>,
    decoded: u64,
    samples: u64,
    points: usize,
    notes: Vec<(usize, Vec<Annotation>, Option<String>)>,
}

impl FoldState {
    /// Folds the series of `run` into their groups, in order; returns the run's points
    /// buffer for reuse.
    fn fold_run(
        &mut self,
        run: RunOut,
        nsteps: usize,
        drop_name: bool,
        start: i64,
        interval: i64,
    ) -> Vec<(i64, f64)> {
        if self.first.len() < run.ngroups {
            self.first.resize(run.ngroups, usize::MAX);
            self.cells.grow(run.ngroups * nsteps);
        }
        self.decoded += run.decoded;
        self.samples += run.samples;
        self.points += run.pts.len();
        let mut from = 0usize;
        for (n, &end) in run.ends.iter().enumerate() {
            if end > from {
                let si = run.first + n;
                let g = run.groups[n];
                if self.first[g] == usize::MAX {
                    self.first[g] = si;
                }
                self.cells.add_series(
                    g * nsteps,
                    nsteps,
                    &run.pts[from..end],
                    drop_name,
                    start,
                    interval,
                );
            }
            from = end;
        }
        self.notes.extend(run.notes);
        run.pts
    }
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
        fnlib::range_check_params(name, &[]).map_err(QueryError::execution)?;
        let span = self.matrix_span(ms);
        let groups = selector_matchers(&ms.vs)?;
        let series = self.select_stream(&groups, span.mint, span.maxt, span.range)?;
        let steps: Vec<i64> = self.steps().collect();
        let job = SeriesJob {
            name,
            steps: &steps,
            params: &[],
            at: span.at,
            offset: span.offset,
            range: span.range,
            from_subquery: false,
            sts_src: self.start_timestamps,
            drop: !(name == "last_over_time" || name == "first_over_time"),
            deadline: self.deadline,
            cancel: self.cancel,
            metric_name: ms.vs.name.as_deref(),
        };
        let (mint, maxt) = (span.mint, span.maxt);
        let produce = |s: &dyn tsdb::Series, sc: &mut Scratch| -> QResult<Produced> {
            sc.buf.clear();
            decode_into(s, mint, maxt, &mut sc.buf)?;
            let decoded = sc.buf.len() as u64;
            if has_stale(&sc.buf) {
                sc.buf.retain(|x| !tsdb::chunkenc::is_stale_nan(x.1));
            }
            let st = run_series_into(&job, || s.labels(), &sc.buf, &mut sc.sc)?;
            Ok(Produced {
                decoded,
                samples: st.samples,
                non_counter: st.non_counter,
            })
        };
        let out = self.fused_fold(
            fold,
            series,
            maxt - mint,
            without,
            grouping,
            &steps,
            job.drop,
            produce,
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
        let picked = self.select_stream(&groups, mint, maxt, 0)?;
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
        let out = self.fused_fold(
            fold,
            picked,
            maxt - mint,
            without,
            grouping,
            &steps,
            false,
            produce,
        )?;
        Ok(out.map(Val::Vector))
    }

    /// Groups `series` (each read over `span_ms`), then on all cores produces each series'
    /// per-step points with `produce` (into `Scratch::sc.pts`) and folds them into its group;
    /// `None` when there are too many group × step cells for the series-major fold.
    ///
    /// Threads take runs of up to [`CHUNK_SERIES`] consecutive series from the stream (input
    /// order, which is the storage order: neighbouring series share index and chunk pages),
    /// number their groups, and produce their points into a buffer of the run; runs are
    /// folded strictly in input order by whichever thread completes the next one, so every
    /// group sees its series in input order. Each series is dropped by the thread that
    /// produced it, right after, so a large selection is never held whole.
    #[allow(clippy::too_many_arguments)]
    fn fused_fold<P>(
        &mut self,
        fold: FoldOp,
        mut series: tsdb::SeriesSet,
        span_ms: i64,
        without: bool,
        grouping: &[String],
        steps: &[i64],
        drop_name: bool,
        produce: P,
    ) -> QResult<Option<Vec<super::StepSeries>>>
    where
        P: Fn(&dyn tsdb::Series, &mut Scratch) -> QResult<Produced> + Sync,
    {
        let nsteps = steps.len();
        // Enough series ahead to tell whether more than one thread pays.
        let ahead = series
            .by_ref()
            .take(PARALLEL_DECODE_MIN_SERIES)
            .collect::<tsdb::Result<Vec<Arc<dyn tsdb::Series>>>>()
            .map_err(QueryError::storage)?;
        let series_hours = ahead.len() as u128 * span_ms.max(0) as u128 / HOUR_MS;
        let (threads, run_len) = if ahead.len() < PARALLEL_DECODE_MIN_SERIES {
            if series_hours < PARALLEL_FOLD_MIN_SERIES_HOURS {
                (1, CHUNK_SERIES)
            } else {
                // The whole selection is ahead: runs sized to give each thread a few.
                let t = par::threads_for(ahead.len(), 2);
                (t, ahead.len().div_ceil(4 * t).clamp(1, CHUNK_SERIES))
            }
        } else {
            let t = par::threads_for(usize::MAX, PARALLEL_DECODE_MIN_SERIES);
            (t, CHUNK_SERIES)
        };
        let source = Mutex::new(RunSource {
            series,
            ahead: ahead.into_iter(),
            run_len,
            groups: GroupAssigner::new(without, grouping),
            nsteps,
            runs: 0,
            taken: 0,
            too_many: false,
        });
        let state = Mutex::new(FoldState {
            next: 0,
            ready: Default::default(),
            cells: FoldCells::new(fold, 0),
            first: Vec::new(),
            decoded: 0,
            samples: 0,
            points: 0,
            notes: Vec::new(),
        });
        let (start, interval) = (self.start, self.interval);
        let (cancel, deadline) = (self.cancel, self.deadline);
        // Set when a thread failed: the others stop taking runs.
        let failed = AtomicBool::new(false);
        par::par_dynamic(threads, threads, Scratch::default, |sc, _| loop {
            check_stop(cancel, deadline)?;
            if failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let next = source.lock().unwrap_or_else(|e| e.into_inner()).next_run();
            let next = next.inspect_err(|_| failed.store(true, Ordering::Relaxed))?;
            let Some(run) = next else {
                return Ok(());
            };
            let mut pts = std::mem::take(&mut sc.run_pts);
            pts.clear();
            pts.reserve(run.series.len() * nsteps);
            let mut out = RunOut {
                first: run.first,
                groups: run.groups,
                ngroups: run.ngroups,
                ends: Vec::with_capacity(run.series.len()),
                pts,
                decoded: 0,
                samples: 0,
                notes: Vec::new(),
            };
            for (n, s) in run.series.into_iter().enumerate() {
                let p = produce(s.as_ref(), sc)
                    .inspect_err(|_| failed.store(true, Ordering::Relaxed))?;
                drop(s);
                out.decoded += p.decoded;
                out.samples += p.samples;
                out.pts.extend_from_slice(&sc.sc.pts);
                out.ends.push(out.pts.len());
                if !sc.sc.annos.is_empty() || p.non_counter.is_some() {
                    out.notes.push((
                        out.first + n,
                        std::mem::take(&mut sc.sc.annos),
                        p.non_counter,
                    ));
                }
            }
            let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
            let st = &mut *guard;
            st.ready.insert(run.index, out);
            while let Some(run) = st.ready.remove(&st.next) {
                st.next += 1;
                let spare = st.fold_run(run, nsteps, drop_name, start, interval);
                if spare.capacity() > sc.run_pts.capacity() {
                    sc.run_pts = spare;
                }
            }
        })?;
        let source = source.into_inner().unwrap_or_else(|e| e.into_inner());
        if source.too_many {
            return Ok(None);
        }
        let st = state.into_inner().unwrap_or_else(|e| e.into_inner());
        if st.next != source.runs {
            return Err(QueryError::execution(
                "fused aggregation left series unfolded",
            ));
        }
        let group_metric = source.groups.group_metric;
        let ngroups = group_metric.len();
        // Accounting as if the input had been materialised.
        self.total_samples += st.decoded + st.samples;
        self.add_samples(st.points)?;
        self.cur_samples = self.cur_samples.saturating_sub(st.points);
        let mut fn_annos = Vec::new();
        for (_, annos, non_counter) in st.notes {
            if let Some(mn) = non_counter {
                self.annos.info(format!(
                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {mn:?}"
                ));
            }
            fn_annos.extend(annos);
        }
        fnlib::add_annotations(&mut self.annos, fn_annos);
        // Groups numbered by their first series with a point, as the unfused fold does.
        let mut groups: Vec<usize> = (0..ngroups)
            .filter(|&g| st.first[g] != usize::MAX)
            .collect();
        groups.sort_by_key(|&g| st.first[g]);
        let out = st.cells.output(&groups, &group_metric, steps)?;
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

/// Whether `expr`, an aggregation's argument, is a selection whose series go into the
/// aggregation's groups as they are (but for the dropped metric name): a plain instant
/// selector, or a range function of a plain matrix selector (see
/// [`super::Evaluator::keep_labels`]).
pub(super) fn selection_feeds_groups(expr: &Expr) -> bool {
    match unparen(expr) {
        Expr::VectorSelector(vs) => ext_modifier(vs).is_none(),
        Expr::Call(c) => fused_range_arg(c).is_some(),
        _ => false,
    }
}

/// Shortest matrix range for which an instant query's aggregation is fused too.
const INSTANT_FUSE_MIN_RANGE_MS: u128 = 3_600_000;

/// Whether an instant query's aggregation over `expr` is fused: only when `expr` is a range
/// function over at least [`INSTANT_FUSE_MIN_RANGE_MS`]
/// (`sum(count_over_time(x[6h]))`), whose series each carry many samples, so that streaming
/// them keeps a large selection from being held whole. Over short ranges (`rate(x[5m])`, a
/// plain selector) the series are small and the unfused instant evaluation is faster
/// (~20–40% less wall time on the 100k bench's instant dashboard queries).
pub(super) fn streams_long_ranges(expr: &Expr) -> bool {
    match unparen(expr) {
        Expr::Call(c) => fused_range_arg(c)
            .is_some_and(|(_, ms)| ms.range.as_millis() >= INSTANT_FUSE_MIN_RANGE_MS),
        _ => false,
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
