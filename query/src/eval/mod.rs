//! The step-wise evaluator behind [`crate::engine::Engine`].
//!
//! Every instant-vector expression is evaluated over all steps of the query at once and
//! yields a [`StepSeries`] list: one entry per output series with one point per step where it
//! has a value. Scalars are one value per step. Selectors decode each selected series once
//! into a vector of samples; instant selectors walk it with a cursor, range functions slide
//! their `(t - range, t]` window over it. Operators that combine series (binary operators,
//! aggregations, most functions) gather the per-step vectors of their inputs and combine them
//! step by step, as Prometheus's `rangeEval` does.
//!
//! Delayed `__name__` removal (Prometheus 3.x): functions and operators that would drop the
//! metric name only set [`StepSeries::drop_name`]; the name is removed when the query
//! finishes, and only then are duplicate label sets an error.

mod aggregate;
mod binary;
mod call;
pub(crate) mod fnlib;
mod fused;
mod info;
pub(crate) mod par;

pub(crate) use call::merge_same_labelset;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use tsdb::chunkenc::is_stale_nan;
use tsdb::{Labels, MatchType, Matcher, Queryable, SelectHints};

use crate::annotations::Annotations;
use crate::error::{QResult, QueryError};

/// One output series of an instant-vector expression: a point per step where it has a value.
#[derive(Clone, Debug)]
pub(crate) struct StepSeries {
    pub metric: Arc<Labels>,
    pub pts: Points,
    pub drop_name: bool,
}

/// A series' points at the steps, `(step time, value)` in step order: inline when there is
/// one (an instant query's), so that the many small series of an instant query take no
/// allocation each.
pub(crate) type Points = smallvec::SmallVec<[(i64, f64); 1]>;

/// A decoded input series (or subquery output) that range windows slide over.
#[derive(Clone, Debug)]
pub(crate) struct RawSeries {
    pub metric: Arc<Labels>,
    pub samples: Vec<(i64, f64)>,
    pub drop_name: bool,
}

/// The value of one evaluated node.
#[derive(Debug)]
pub(crate) enum Val {
    /// Instant vector over all steps.
    Vector(Vec<StepSeries>),
    /// One value per step.
    Scalar(Vec<f64>),
    /// A string.
    Str(String),
    /// A range vector (instant evaluation only): points with their own timestamps.
    Range(Vec<StepSeries>),
}

/// The experimental range-selector modifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ext {
    /// `anchored`: windows start at the last sample at or before the window start.
    Anchored,
    /// `smoothed`: values at the window edges are interpolated.
    Smoothed,
}

/// The `anchored` / `smoothed` modifier of a selector (carried by a marker matcher).
pub(crate) fn ext_modifier(vs: &VectorSelector) -> Option<Ext> {
    vs.matchers
        .matchers
        .iter()
        .find(|m| m.name == crate::rewrite::EXT_MODIFIER_LABEL)
        .and_then(|m| match m.value.as_str() {
            "anchored" => Some(Ext::Anchored),
            "smoothed" => Some(Ext::Smoothed),
            _ => None,
        })
}

/// Linear interpolation between two points at `t`; a counter reset counts from 0.
fn interpolate(p1: (i64, f64), p2: (i64, f64), t: i64, is_counter: bool) -> f64 {
    let (mut y1, y2) = (p1.1, p2.1);
    if is_counter && y2 < y1 {
        y1 = 0.0;
    }
    y1 + (y2 - y1) * (t - p1.0) as f64 / (p2.0 - p1.0) as f64
}

/// Index of the first element in `0..n` for which `f` holds (`n` if none), as Go's
/// `sort.Search`.
fn go_search(n: usize, f: impl Fn(usize) -> bool) -> usize {
    (0..n).find(|&i| f(i)).unwrap_or(n)
}

/// Extends window samples to the window edges (`extendFloats`): one point at `mint` and one
/// at `maxt`, interpolated when smoothed, with the samples strictly inside between them.
pub(crate) fn extend_floats(
    f: &[(i64, f64)],
    mint: i64,
    maxt: i64,
    smoothed: bool,
) -> Vec<(i64, f64)> {
    if f.is_empty() {
        return vec![];
    }
    let mut last = f.len() - 1;
    let mut first = go_search(last, |i| f[i].0 > mint).saturating_sub(1);
    if smoothed {
        last = go_search(last, |i| f[i].0 >= maxt);
    }
    if f[last].0 <= mint {
        return vec![];
    }
    let left = if smoothed && f[first].0 < mint {
        interpolate(f[first], f[first + 1], mint, false)
    } else {
        f[first].1
    };
    let right = if smoothed && last > 0 && f[last].0 > maxt {
        interpolate(f[last - 1], f[last], maxt, false)
    } else {
        f[last].1
    };
    if f[first].0 <= mint {
        first += 1;
    }
    let mut end = last as i64;
    if f[last].0 >= maxt {
        end -= 1;
    }
    let mut out = vec![(mint, left)];
    if end >= first as i64 {
        out.extend_from_slice(&f[first..=end as usize]);
    }
    out.push((maxt, right));
    out
}

/// A range-vector argument ready for windowing: series plus how windows are placed.
pub(crate) struct RangeArg {
    pub series: Vec<RawSeries>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
    pub from_subquery: bool,
    pub ext: Option<Ext>,
    /// Series selected but not decoded yet (then `series` is empty): the caller decodes
    /// each one where it uses it, in parallel, instead of holding them all decoded at once.
    pub lazy: Option<LazySeries>,
}

/// Selected, not yet decoded series of a matrix selector and the time range to decode.
pub(crate) struct LazySeries {
    pub series: Vec<Arc<dyn tsdb::Series>>,
    pub mint: i64,
    pub maxt: i64,
}

/// A matrix selector's window placement and the time range its series are read over.
pub(crate) struct MatrixSpan {
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
    pub mint: i64,
    pub maxt: i64,
}

/// Series count from which selected series are decoded on several threads.
pub(crate) const PARALLEL_DECODE_MIN_SERIES: usize = 256;

/// An hour in milliseconds, the unit of the series-hours that size parallel work.
pub(crate) const HOUR_MS: u128 = 3_600_000;

/// Threads to decode `series` selected series over `[mint, maxt]` with: several from
/// [`PARALLEL_DECODE_MIN_SERIES`] series when they span an hour or more, and from
/// proportionally more series over shorter spans. An instant query's 5-minute lookback over
/// a few hundred series is less work than starting a thread: on the 100k bench,
/// count_up_by_job [i] (445 series) spent ~20% of its CPU starting and waking the second.
pub(crate) fn decode_threads(series: usize, mint: i64, maxt: i64) -> usize {
    let span = (maxt.saturating_sub(mint).max(0) as u128).max(1);
    let work = series as u128 * span.min(HOUR_MS);
    if work < PARALLEL_DECODE_MIN_SERIES as u128 * HOUR_MS {
        return 1;
    }
    par::threads_for(series, PARALLEL_DECODE_MIN_SERIES)
}

/// Per-query state of an evaluation.
pub(crate) struct Evaluator<'a> {
    pub q: &'a dyn Queryable,
    pub start: i64,
    pub end: i64,
    pub interval: i64,
    /// Start and end of the whole query, for `@ start()` / `@ end()`.
    pub query_start: i64,
    pub query_end: i64,
    /// Step of the whole query (0 for instant queries), for `step()`.
    pub query_step: i64,
    /// Start timestamps of stored samples, if the storage keeps them.
    pub start_timestamps: Option<&'a dyn crate::engine::StartTimestampSource>,
    /// Cancellation flag of the query.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
    pub lookback: i64,
    pub max_samples: usize,
    pub cur_samples: usize,
    pub total_samples: u64,
    pub peak_samples: usize,
    pub deadline: Option<Instant>,
    pub annos: Annotations,
    pub default_subquery_step: i64,
    /// The only labels an aggregation reads from its argument, set by it for the argument's
    /// evaluation when the argument is a selection whose series go straight into its groups
    /// (see [`Evaluator::eval_aggregate`]); taken by that selection, which then builds each
    /// series' labels from these alone.
    pub keep_labels: Option<Vec<String>>,
}

/// The labels result series get from the selected series they come from: all of them, or
/// only those named in `keep` (see [`Evaluator::keep_labels`]). Result series with the same
/// kept labels share one set: a run of series of one job, say, or the series of one
/// `instance` that a grouping by it keeps (up to [`ResultLabels::MAX_SHARED`] distinct sets
/// are remembered).
pub(crate) struct ResultLabels<'k> {
    keep: Option<&'k [String]>,
    last: Option<Arc<Labels>>,
    /// Kept sets built so far, by [`pairs_key`].
    shared: FxMap<Vec<u8>, Arc<Labels>>,
    key: Vec<u8>,
}

impl<'k> ResultLabels<'k> {
    /// Most distinct kept sets remembered for sharing.
    const MAX_SHARED: usize = 4096;

    /// Labels named in `keep`, or all when `None`.
    pub(crate) fn new(keep: Option<&'k [String]>) -> Self {
        ResultLabels {
            keep,
            last: None,
            shared: FxMap::default(),
            key: Vec::new(),
        }
    }

    /// The labels of the result series that `s` gives.
    pub(crate) fn of(&mut self, s: &dyn tsdb::Series) -> Arc<Labels> {
        let Some(keep) = self.keep else {
            return s.shared_labels();
        };
        let kept = s.label_pairs().filter(|(n, _)| keep.iter().any(|k| k == n));
        if let Some(last) = &self.last {
            let last_pairs = last.iter().map(|l| (l.name.as_str(), l.value.as_str()));
            if kept.clone().eq(last_pairs) {
                return Arc::clone(last);
            }
        }
        pairs_key(&mut self.key, kept.clone());
        let labels = match self.shared.get(&self.key) {
            Some(seen) => Arc::clone(seen),
            None => {
                let built = Arc::new(Labels::from_sorted_pairs(kept));
                if self.shared.len() < Self::MAX_SHARED {
                    self.shared.insert(self.key.clone(), Arc::clone(&built));
                }
                built
            }
        };
        self.last = Some(Arc::clone(&labels));
        labels
    }
}

/// Writes into `key` (cleared first) bytes that identify the label pairs `pairs`: each name
/// and value followed by 0xff, a byte no UTF-8 string holds.
pub(crate) fn pairs_key<'a>(key: &mut Vec<u8>, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    key.clear();
    for (n, v) in pairs {
        key.extend_from_slice(n.as_bytes());
        key.push(0xff);
        key.extend_from_slice(v.as_bytes());
        key.push(0xff);
    }
}

/// Milliseconds of an offset modifier (negative for `offset -5m`).
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

/// Milliseconds since the epoch of a `SystemTime` (negative before the epoch).
pub(crate) fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Strips parentheses around an expression.
pub(crate) fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Converts a parser matcher to a storage matcher.
fn convert_matcher(m: &promql_parser::label::Matcher) -> QResult<Matcher> {
    let kind = match m.op {
        MatchOp::Equal => MatchType::Equal,
        MatchOp::NotEqual => MatchType::NotEqual,
        MatchOp::Re(_) => MatchType::Regexp,
        MatchOp::NotRe(_) => MatchType::NotRegexp,
    };
    Matcher::new(kind, m.name.clone(), m.value.clone())
        .map_err(|e| QueryError::bad_data(e.to_string()))
}

/// Converts a parser matcher to a storage matcher (for sibling modules).
pub(crate) fn convert_matcher_pub(m: &promql_parser::label::Matcher) -> QResult<Matcher> {
    convert_matcher(m)
}

/// The matcher groups of a selector (one group unless `or` is used), name included.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> QResult<Vec<Vec<Matcher>>> {
    let mut groups: Vec<Vec<Matcher>> = Vec::new();
    let base: Vec<&promql_parser::label::Matcher> = vs.matchers.matchers.iter().collect();
    let mut raw_groups: Vec<Vec<&promql_parser::label::Matcher>> = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        raw_groups.push(base);
    } else {
        for g in &vs.matchers.or_matchers {
            let mut v: Vec<&promql_parser::label::Matcher> = g.iter().collect();
            v.extend(base.iter().copied());
            raw_groups.push(v);
        }
    }
    for g in raw_groups {
        let mut ms = Vec::with_capacity(g.len() + 1);
        if let Some(n) = &vs.name {
            ms.push(Matcher::equal("__name__", n.clone()));
        }
        for m in g {
            if m.name == crate::rewrite::EXT_MODIFIER_LABEL {
                continue;
            }
            ms.push(convert_matcher(m)?);
        }
        groups.push(ms);
    }
    Ok(groups)
}

/// Appends the samples of `s` in `[mint, maxt]` to `buf`; a storage error fails the query.
pub(crate) fn decode_into(
    s: &dyn tsdb::Series,
    mint: i64,
    maxt: i64,
    buf: &mut Vec<(i64, f64)>,
) -> QResult<()> {
    s.collect_range(mint, maxt, buf)
        .map_err(QueryError::storage)
}

/// Whether any sample is a staleness marker; checks eight at a time without branching, as
/// markers are rare.
pub(crate) fn has_stale(buf: &[(i64, f64)]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { has_stale_avx2(buf) };
        }
    }
    has_stale_generic(buf)
}

/// [`has_stale`] with AVX2: the value bits of eight samples, unpacked from the `(t, v)`
/// pairs, compared with the marker's in two vector compares.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn has_stale_avx2(buf: &[(i64, f64)]) -> bool {
    use std::arch::x86_64::*;
    let marker = _mm256_set1_epi64x(tsdb::chunkenc::STALE_NAN_BITS as i64);
    let p = buf.as_ptr().cast::<f64>();
    let mut i = 0;
    while i + 8 <= buf.len() {
        // SAFETY: samples `i..i + 8` exist; each load reads two whole (t, v) samples.
        let v = unsafe {
            let load = |k: usize| _mm256_loadu_pd(p.add(2 * k));
            let values = |k: usize| _mm256_castpd_si256(_mm256_unpackhi_pd(load(k), load(k + 2)));
            [values(i), values(i + 4)]
        };
        let hit = _mm256_or_si256(
            _mm256_cmpeq_epi64(v[0], marker),
            _mm256_cmpeq_epi64(v[1], marker),
        );
        if _mm256_testz_si256(hit, hit) == 0 {
            return true;
        }
        i += 8;
    }
    has_stale_generic(&buf[i..])
}

#[inline(always)]
fn has_stale_generic(buf: &[(i64, f64)]) -> bool {
    let bits = tsdb::chunkenc::STALE_NAN_BITS;
    let mut chunks = buf.chunks_exact(8);
    for c in chunks.by_ref() {
        if c.iter().fold(false, |a, x| a | (x.1.to_bits() == bits)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|x| x.1.to_bits() == bits)
}

/// Decodes the samples in `[mint, maxt]` of each series.
fn decode_series(part: &[Arc<dyn tsdb::Series>], mint: i64, maxt: i64) -> QResult<Vec<RawSeries>> {
    let mut out = Vec::with_capacity(part.len());
    // Series of one selection tend to hold about as many samples as each other.
    let mut hint = 0usize;
    for s in part {
        let mut samples = Vec::with_capacity(hint);
        decode_into(s.as_ref(), mint, maxt, &mut samples)?;
        hint = samples.len();
        out.push(RawSeries {
            metric: s.shared_labels(),
            samples,
            drop_name: false,
        });
    }
    Ok(out)
}

/// The value of an instant selector at each step from one series' samples: the latest
/// sample at or before the step's reference time, if within the lookback and not a
/// staleness marker. With `keep_ts`, also the chosen samples' own timestamps.
/// The points go to `pts` and the timestamps to `ts_orig` (both cleared first).
#[allow(clippy::too_many_arguments)]
pub(crate) fn place_on_steps(
    samples: &[(i64, f64)],
    steps: &[i64],
    at: Option<i64>,
    offset: i64,
    lookback: i64,
    keep_ts: bool,
    pts: &mut Vec<(i64, f64)>,
    ts_orig: &mut Vec<i64>,
) {
    pts.clear();
    ts_orig.clear();
    let Some(&first) = samples.first() else {
        return;
    };
    pts.reserve(steps.len());
    if keep_ts {
        ts_orig.reserve(steps.len());
    }
    // Every step's candidate is written to the next free slot, which is kept (the count
    // moves past it) only when it is a point: no branch on the (data-dependent) outcome.
    let (pts_out, ts_out) = (pts.spare_capacity_mut(), ts_orig.spare_capacity_mut());
    let mut n = 0usize;
    // `idx`: the first sample later than the step's time; `moved`: how far it moved at the
    // last step, the guess for this one (see `advance`).
    let (mut idx, mut moved) = (0usize, 0usize);
    for &ts in steps {
        let rt = at.unwrap_or(ts) - offset;
        let next = advance(samples, idx, rt, moved);
        moved = next - idx;
        idx = next;
        let (t, v) = if idx == 0 { first } else { samples[idx - 1] };
        let keep = (idx > 0) & (t > rt - lookback) & !is_stale_nan(v);
        // At most one slot per step: both buffers have room.
        pts_out[n].write((ts, v));
        if keep_ts {
            ts_out[n].write(t);
        }
        n += usize::from(keep);
    }
    // SAFETY: slots `0..n` were written (each kept one at its step, none overwritten after,
    // as `n` only grows past a written slot), within the capacity reserved above.
    unsafe {
        pts.set_len(n);
        if keep_ts {
            ts_orig.set_len(n);
        }
    }
}

/// The first index from `i` on whose sample is later than `bound` (samples in time order),
/// `i + guess` being checked first.
#[inline(always)]
pub(super) fn advance(data: &[(i64, f64)], i: usize, bound: i64, guess: usize) -> usize {
    let j = i + guess;
    if j < data.len() && data[j].0 > bound && (guess == 0 || data[j - 1].0 <= bound) {
        return j;
    }
    let mut k = i;
    while k < data.len() && data[k].0 <= bound {
        k += 1;
    }
    k
}

impl<'a> Evaluator<'a> {
    pub fn num_steps(&self) -> usize {
        ((self.end - self.start) / self.interval) as usize + 1
    }

    pub fn is_instant(&self) -> bool {
        self.start == self.end
    }

    pub fn check_deadline(&self) -> QResult<()> {
        if self
            .cancel
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(QueryError::canceled());
        }
        if let Some(d) = self.deadline {
            if Instant::now() >= d {
                return Err(QueryError::timeout());
            }
        }
        Ok(())
    }

    /// Accounts for `n` more samples held in memory.
    pub fn add_samples(&mut self, n: usize) -> QResult<()> {
        self.cur_samples += n;
        if self.cur_samples > self.peak_samples {
            self.peak_samples = self.cur_samples;
        }
        if self.cur_samples > self.max_samples {
            return Err(QueryError::too_many_samples());
        }
        Ok(())
    }

    /// Releases the samples of a value no longer needed.
    pub fn release(&mut self, v: &Val) {
        let n = match v {
            Val::Vector(s) | Val::Range(s) => s.iter().map(|x| x.pts.len()).sum(),
            _ => 0,
        };
        self.cur_samples = self.cur_samples.saturating_sub(n);
    }

    /// Like [`Evaluator::release`] for a vector that is freed here, on all cores when large.
    pub fn release_series(&mut self, v: Vec<StepSeries>) {
        let n: usize = v.iter().map(|x| x.pts.len()).sum();
        self.cur_samples = self.cur_samples.saturating_sub(n);
        par::drop_all(v);
    }

    /// The `@` time of a modifier, if any.
    pub fn at_time(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    /// Step timestamps.
    pub fn steps(&self) -> impl Iterator<Item = i64> {
        let (s, e, i) = (self.start, self.end, self.interval);
        (0..).map(move |k| s + k * i).take_while(move |t| *t <= e)
    }

    /// Selects and decodes the series of a selector over `[mint, maxt]`.
    pub fn select(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        range: i64,
    ) -> QResult<Vec<RawSeries>> {
        let groups = selector_matchers(vs)?;
        self.select_groups(&groups, mint, maxt, range)
    }

    /// The hints for selecting over `[mint, maxt]` with a selector of range `range` (0 for an
    /// instant selector).
    fn hints(&self, mint: i64, maxt: i64, range: i64) -> SelectHints {
        SelectHints {
            start: mint,
            end: maxt,
            step: self.interval,
            range,
            ..Default::default()
        }
    }

    /// A querier over the hints' `[start, end]`.
    fn querier_for(&self, hints: &SelectHints) -> QResult<Box<dyn tsdb::Querier>> {
        self.check_deadline()?;
        self.q
            .querier(hints.start, hints.end)
            .map_err(QueryError::storage)
    }

    /// Selects (without decoding) the series matching any of the matcher groups over
    /// `[mint, maxt]`, each once, sorted by labels within each group.
    pub fn select_series(
        &mut self,
        groups: &[Vec<Matcher>],
        hints: &SelectHints,
    ) -> QResult<Vec<Arc<dyn tsdb::Series>>> {
        let querier = self.querier_for(hints)?;
        let mut picked: Vec<Arc<dyn tsdb::Series>> = Vec::new();
        let mut seen: HashMap<Labels, ()> = HashMap::new();
        let multi = groups.len() > 1;
        for ms in groups {
            for s in querier.select(true, Some(hints), ms) {
                let s = s.map_err(QueryError::storage)?;
                if multi {
                    if seen.contains_key(s.labels()) {
                        continue;
                    }
                    seen.insert(s.labels().clone(), ());
                }
                picked.push(s);
            }
        }
        Ok(picked)
    }

    /// [`Evaluator::select_series`], then sorted by labels across the groups when there are
    /// several (a single group is sorted already), which is the order evaluation needs.
    pub fn select_sorted(
        &mut self,
        groups: &[Vec<Matcher>],
        hints: &SelectHints,
    ) -> QResult<Vec<Arc<dyn tsdb::Series>>> {
        let mut picked = self.select_series(groups, hints)?;
        if groups.len() > 1 {
            picked.sort_by(|a, b| a.labels().cmp(b.labels()));
        }
        Ok(picked)
    }

    /// [`Evaluator::select_sorted`] as a stream, for a caller that uses each series once, in
    /// order: a single matcher group is read from storage as the caller takes it (storage
    /// prepares a large selection a window at a time), so the caller need not hold all the
    /// selected series at once.
    pub fn select_stream(
        &mut self,
        groups: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        range: i64,
    ) -> QResult<tsdb::SeriesSet> {
        let hints = self.hints(mint, maxt, range);
        let [matchers] = groups else {
            let picked = self.select_sorted(groups, &hints)?;
            return Ok(Box::new(picked.into_iter().map(Ok)));
        };
        let querier = self.querier_for(&hints)?;
        let mut set = querier.select(true, Some(&hints), matchers);
        Ok(Box::new(std::iter::from_fn(move || {
            // The querier lives as long as the stream reads through it.
            let _reading = &querier;
            set.next()
        })))
    }

    /// Selects and decodes the series matching any of the matcher groups over `[mint, maxt]`,
    /// sorted by labels.
    pub fn select_groups(
        &mut self,
        groups: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        range: i64,
    ) -> QResult<Vec<RawSeries>> {
        let picked = self.select_sorted(groups, &self.hints(mint, maxt, range))?;
        // Decoding is independent per series: spread it over the cores.
        let threads = decode_threads(picked.len(), mint, maxt);
        let parts = par::split_owned(picked, threads);
        let decoded = par::par_map(parts, threads, |part| decode_series(&part, mint, maxt))?;
        let mut out: Vec<RawSeries> = Vec::new();
        for part in decoded {
            let part = part?;
            if out.is_empty() {
                out = part;
            } else {
                out.extend(part);
            }
        }
        self.total_samples += out.iter().map(|s| s.samples.len() as u64).sum::<u64>();
        self.check_deadline()?;
        Ok(out)
    }

    /// The reference times (after `@` and offset) of the first and last step.
    fn ref_bounds(&self, at: Option<i64>, offset: i64) -> (i64, i64) {
        match at {
            Some(t) => (t - offset, t - offset),
            None => (self.start - offset, self.end - offset),
        }
    }

    /// Evaluates an instant vector selector at every step. When `keep_ts` is set the points
    /// carry the sample's own timestamp in a parallel vector (for `timestamp()`).
    pub fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
        keep_ts: bool,
    ) -> QResult<(Vec<StepSeries>, Vec<Vec<i64>>)> {
        let keep = self.keep_labels.take();
        let offset = offset_ms(&vs.offset);
        let at = self.at_time(&vs.at);
        let (lo, hi) = self.ref_bounds(at, offset);
        if ext_modifier(vs) == Some(Ext::Smoothed) {
            return self.eval_smoothed_selector(vs, at, offset, lo, hi);
        }
        let (mint, maxt) = (lo - self.lookback + 1, hi);
        let groups = selector_matchers(vs)?;
        // Evaluated at one time (an instant query, or `@`), each series gives only its
        // newest sample in the lookback window.
        let hints = SelectHints {
            last_only: lo == hi,
            ..self.hints(mint, maxt, 0)
        };
        let picked = self.select_sorted(&groups, &hints)?;
        let steps: Vec<i64> = self.steps().collect();
        let lookback = self.lookback;
        // Decode and place each series on the steps on all cores; one buffer per thread.
        let nseries = picked.len();
        let threads = decode_threads(nseries, mint, maxt);
        // Each thread owns its part and drops every series once done with it.
        let parts = par::split_owned(picked, threads);
        let steps_ref = &steps;
        let keep = keep.as_deref();
        let placed = par::par_map(parts, threads, |part| {
            let mut labels = ResultLabels::new(keep);
            let mut buf: Vec<(i64, f64)> = Vec::new();
            let mut res = Vec::with_capacity(part.len());
            let mut decoded = 0u64;
            let (mut pts, mut ts_orig) = (Vec::new(), Vec::new());
            for s in part {
                buf.clear();
                decode_into(s.as_ref(), mint, maxt, &mut buf)?;
                decoded += buf.len() as u64;
                place_on_steps(
                    &buf,
                    steps_ref,
                    at,
                    offset,
                    lookback,
                    keep_ts,
                    &mut pts,
                    &mut ts_orig,
                );
                if !pts.is_empty() {
                    // One point is kept inline and the buffer reused; more move out whole.
                    let points = if pts.len() == 1 {
                        Points::from_slice(&pts)
                    } else {
                        Points::from_vec(std::mem::take(&mut pts))
                    };
                    let ts = std::mem::take(&mut ts_orig);
                    res.push((labels.of(s.as_ref()), points, ts));
                }
            }
            Ok((res, decoded))
        })?;
        let mut out = Vec::with_capacity(nseries);
        let mut tss = Vec::new();
        for part in placed {
            let (res, decoded) = part?;
            self.total_samples += decoded;
            for (metric, pts, ts_orig) in res {
                self.add_samples(pts.len())?;
                out.push(StepSeries {
                    metric,
                    pts,
                    drop_name: false,
                });
                if keep_ts {
                    tss.push(ts_orig);
                }
            }
        }
        self.check_deadline()?;
        Ok((out, tss))
    }

    /// A `smoothed` instant selector: the value at each step is interpolated between the
    /// samples around it (within the lookback delta on both sides).
    fn eval_smoothed_selector(
        &mut self,
        vs: &VectorSelector,
        at: Option<i64>,
        offset: i64,
        lo: i64,
        hi: i64,
    ) -> QResult<(Vec<StepSeries>, Vec<Vec<i64>>)> {
        let lb = self.lookback;
        let raw = self.select(vs, lo - lb + 1, hi + lb, 0)?;
        let steps: Vec<i64> = self.steps().collect();
        let mut out = Vec::new();
        for s in raw {
            let f: Vec<(i64, f64)> = s
                .samples
                .iter()
                .copied()
                .filter(|x| !is_stale_nan(x.1))
                .collect();
            let mut pts = Vec::new();
            for &ts in &steps {
                let d = at.unwrap_or(ts) - offset;
                let a = f.partition_point(|x| x.0 <= d - lb);
                let b = f.partition_point(|x| x.0 <= d + lb);
                if let Some(v) = crate::functions::extended::smoothed_value(&f[a..b], d) {
                    pts.push((ts, v));
                }
            }
            if !pts.is_empty() {
                self.add_samples(pts.len())?;
                out.push(StepSeries {
                    metric: s.metric,
                    pts: pts.into(),
                    drop_name: false,
                });
            }
        }
        Ok((out, Vec::new()))
    }

    /// Loads the data of a range-vector argument (matrix selector or subquery).
    pub fn range_arg(&mut self, e: &Expr) -> QResult<RangeArg> {
        match unparen(e) {
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let range = ms.range.as_millis() as i64;
                let offset = offset_ms(&vs.offset);
                let at = self.at_time(&vs.at);
                let (lo, hi) = self.ref_bounds(at, offset);
                let ext = ext_modifier(vs);
                let (mint, maxt) = match ext {
                    None => (lo - range + 1, hi),
                    Some(Ext::Anchored) => (lo - range - self.lookback + 1, hi),
                    Some(Ext::Smoothed) => (lo - range - self.lookback + 1, hi + self.lookback),
                };
                let mut raw = self.select(vs, mint, maxt, range)?;
                for s in &mut raw {
                    if s.samples.iter().any(|x| is_stale_nan(x.1)) {
                        s.samples.retain(|x| !is_stale_nan(x.1));
                    }
                }
                Ok(RangeArg {
                    series: raw,
                    range,
                    offset,
                    at,
                    from_subquery: false,
                    ext,
                    lazy: None,
                })
            }
            Expr::Subquery(sq) => {
                let range = sq.range.as_millis() as i64;
                let offset = offset_ms(&sq.offset);
                let at = self.at_time(&sq.at);
                let inner = self.run_subquery(sq)?;
                let series = inner
                    .into_iter()
                    .map(|s| RawSeries {
                        metric: s.metric,
                        samples: s.pts.into_vec(),
                        drop_name: s.drop_name,
                    })
                    .collect();
                Ok(RangeArg {
                    series,
                    range,
                    offset,
                    at,
                    from_subquery: true,
                    ext: None,
                    lazy: None,
                })
            }
            other => Err(QueryError::bad_data(format!(
                "expected range vector, got {other}"
            ))),
        }
    }

    /// Like [`Evaluator::range_arg`] for a plain matrix selector (no `anchored`/`smoothed`),
    /// leaving the selected series undecoded in [`RangeArg::lazy`].
    pub fn range_arg_lazy(
        &mut self,
        ms: &promql_parser::parser::MatrixSelector,
    ) -> QResult<RangeArg> {
        let span = self.matrix_span(ms);
        let groups = selector_matchers(&ms.vs)?;
        let hints = self.hints(span.mint, span.maxt, span.range);
        let series = self.select_sorted(&groups, &hints)?;
        Ok(RangeArg {
            series: Vec::new(),
            range: span.range,
            offset: span.offset,
            at: span.at,
            from_subquery: false,
            ext: None,
            lazy: Some(LazySeries {
                series,
                mint: span.mint,
                maxt: span.maxt,
            }),
        })
    }

    /// Where the windows of the matrix selector `ms` lie and the time range its series are
    /// read over.
    pub(crate) fn matrix_span(&self, ms: &promql_parser::parser::MatrixSelector) -> MatrixSpan {
        let range = ms.range.as_millis() as i64;
        let offset = offset_ms(&ms.vs.offset);
        let at = self.at_time(&ms.vs.at);
        let (lo, hi) = self.ref_bounds(at, offset);
        MatrixSpan {
            range,
            offset,
            at,
            mint: lo - range + 1,
            maxt: hi,
        }
    }

    /// Runs a subquery as a range query over its own aligned steps.
    pub fn run_subquery(
        &mut self,
        sq: &promql_parser::parser::SubqueryExpr,
    ) -> QResult<Vec<StepSeries>> {
        let offset = offset_ms(&sq.offset);
        let range = sq.range.as_millis() as i64;
        let at = self.at_time(&sq.at);
        let (outer_start, outer_end) = match at {
            Some(t) => (t, t),
            None => {
                let end = self.start + ((self.end - self.start) / self.interval) * self.interval;
                (self.start, end)
            }
        };
        let step = match &sq.step {
            Some(d) if !d.is_zero() => d.as_millis() as i64,
            _ => self.default_subquery_step,
        };
        let end = outer_end - offset;
        let lo = outer_start - offset - range;
        let mut start = step * lo.div_euclid(step);
        if start <= lo {
            start += step;
        }
        let mut sub = Evaluator {
            q: self.q,
            start,
            end,
            interval: step,
            query_start: self.query_start,
            query_end: self.query_end,
            query_step: self.query_step,
            start_timestamps: self.start_timestamps,
            cancel: self.cancel,
            lookback: self.lookback,
            max_samples: self.max_samples,
            cur_samples: self.cur_samples,
            total_samples: 0,
            peak_samples: self.peak_samples,
            deadline: self.deadline,
            annos: Annotations::default(),
            default_subquery_step: self.default_subquery_step,
            keep_labels: None,
        };
        let v = if start > end {
            Val::Vector(vec![])
        } else {
            sub.eval(&sq.expr)?
        };
        self.cur_samples = sub.cur_samples;
        self.peak_samples = self.peak_samples.max(sub.peak_samples);
        self.total_samples += sub.total_samples;
        self.annos.merge(std::mem::take(&mut sub.annos));
        match v {
            Val::Vector(s) => Ok(s),
            Val::Scalar(vals) => {
                let pts: Vec<(i64, f64)> = sub.steps().zip(vals).collect();
                Ok(vec![StepSeries {
                    metric: Arc::new(Labels::empty()),
                    pts: pts.into(),
                    drop_name: false,
                }])
            }
            _ => Err(QueryError::bad_data(
                "subquery is only allowed on instant vector",
            )),
        }
    }

    /// Evaluates any expression.
    pub fn eval(&mut self, e: &Expr) -> QResult<Val> {
        self.check_deadline()?;
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.num_steps()])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(mut ss) => {
                    for s in &mut ss {
                        s.drop_name = true;
                        for p in &mut s.pts {
                            p.1 = -p.1;
                        }
                    }
                    Ok(Val::Vector(ss))
                }
                _ => Err(QueryError::bad_data(
                    "unary expression only allowed on scalars and vectors",
                )),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.eval_vector_selector(vs, false)?.0)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if !self.is_instant() {
                    return Err(QueryError::bad_data(
                        "cannot do range evaluation of matrix selector",
                    ));
                }
                let arg = self.range_arg(e)?;
                let ts = self.start;
                let rt = arg.at.unwrap_or(ts) - arg.offset;
                let mut out = Vec::new();
                for s in arg.series {
                    let pts = match arg.ext {
                        None => {
                            let lo = s.samples.partition_point(|x| x.0 <= rt - arg.range);
                            let hi = s.samples.partition_point(|x| x.0 <= rt);
                            s.samples[lo..hi].to_vec()
                        }
                        Some(ext) => {
                            let lo = s
                                .samples
                                .partition_point(|x| x.0 <= rt - arg.range - self.lookback);
                            let hi = match ext {
                                Ext::Anchored => s.samples.partition_point(|x| x.0 <= rt),
                                Ext::Smoothed => {
                                    s.samples.partition_point(|x| x.0 <= rt + self.lookback)
                                }
                            };
                            extend_floats(
                                &s.samples[lo..hi],
                                rt - arg.range,
                                rt,
                                ext == Ext::Smoothed,
                            )
                        }
                    };
                    if !pts.is_empty() {
                        self.add_samples(pts.len())?;
                        out.push(StepSeries {
                            metric: s.metric,
                            pts: pts.into(),
                            drop_name: s.drop_name,
                        });
                    }
                }
                Ok(Val::Range(out))
            }
            Expr::Call(c) => self.eval_call(c),
            Expr::Aggregate(a) => self.eval_aggregate(a),
            Expr::Binary(b) => self.eval_binary(b),
            Expr::Extension(_) => Err(QueryError::bad_data(
                "extension expressions are not supported",
            )),
        }
    }

    /// Evaluates an expression that must yield a scalar per step.
    pub fn eval_scalar(&mut self, e: &Expr) -> QResult<Vec<f64>> {
        match self.eval(e)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(QueryError::bad_data(format!(
                "expected scalar expression, got {e}"
            ))),
        }
    }

    /// Evaluates an expression that must yield an instant vector.
    pub fn eval_vector(&mut self, e: &Expr) -> QResult<Vec<StepSeries>> {
        match self.eval(e)? {
            Val::Vector(v) => Ok(v),
            _ => Err(QueryError::bad_data(format!(
                "expected instant vector expression, got {e}"
            ))),
        }
    }

    /// Evaluates a string argument.
    pub fn eval_string(&mut self, e: &Expr) -> QResult<String> {
        match unparen(e) {
            Expr::StringLiteral(s) => Ok(s.val.clone()),
            other => Err(QueryError::bad_data(format!(
                "expected string literal, got {other}"
            ))),
        }
    }

    /// Converts per-step scalars into a "vector" of one label-less series.
    pub fn scalar_to_series(&self, v: &[f64]) -> StepSeries {
        StepSeries {
            metric: Arc::new(Labels::empty()),
            pts: self.steps().zip(v.iter().copied()).collect(),
            drop_name: false,
        }
    }
}

/// Per-step views of a list of step series: a cursor per series.
pub(crate) struct StepCursor {
    pos: Vec<usize>,
}

impl StepCursor {
    pub fn new(n: usize) -> Self {
        StepCursor { pos: vec![0; n] }
    }

    /// Fills `out` with `(series index, value)` of the series that have a point at `ts`.
    pub fn gather(&mut self, series: &[StepSeries], ts: i64, out: &mut Vec<(usize, f64)>) {
        out.clear();
        for (i, s) in series.iter().enumerate() {
            let p = &mut self.pos[i];
            while *p < s.pts.len() && s.pts[*p].0 < ts {
                *p += 1;
            }
            if *p < s.pts.len() && s.pts[*p].0 == ts {
                out.push((i, s.pts[*p].1));
            }
        }
    }
}

/// A fast non-cryptographic hasher (FxHash) for the evaluator's internal maps.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`FxHasher`]s.
pub(crate) type FxBuild = std::hash::BuildHasherDefault<FxHasher>;
/// A `HashMap` with [`FxHasher`].
pub(crate) type FxMap<K, V> = HashMap<K, V, FxBuild>;

/// Collects per-step output samples into series, as Prometheus's `rangeEval` does: an output
/// label set seen twice at one step is an error. Callers that produce the same label set at
/// many steps get its slot once ([`OutCollector::slot`]) and push by slot.
pub(crate) struct OutCollector {
    map: FxMap<Arc<Labels>, usize>,
    pub series: Vec<StepSeries>,
    last_ts: Vec<i64>,
}

impl OutCollector {
    pub fn new() -> Self {
        OutCollector {
            map: FxMap::default(),
            series: Vec::new(),
            last_ts: Vec::new(),
        }
    }

    /// The output series for `metric`. In instant mode every call makes a new series, so
    /// duplicates survive until the final label-set check.
    pub fn slot(&mut self, metric: &Arc<Labels>, drop_name: bool, instant: bool) -> usize {
        if !instant {
            if let Some(&i) = self.map.get(metric) {
                return i;
            }
            self.map.insert(metric.clone(), self.series.len());
        }
        self.last_ts.push(i64::MIN);
        self.series.push(StepSeries {
            metric: metric.clone(),
            pts: Points::new(),
            drop_name,
        });
        self.series.len() - 1
    }

    /// Adds a sample at `ts` to the series in `slot`.
    #[inline]
    pub fn push_slot(&mut self, slot: usize, ts: i64, v: f64) -> QResult<()> {
        if self.last_ts[slot] == ts {
            return Err(QueryError::execution(
                "vector cannot contain metrics with the same labelset",
            ));
        }
        self.last_ts[slot] = ts;
        self.series[slot].pts.push((ts, v));
        Ok(())
    }

    /// Adds one sample at `ts` for `metric`.
    pub fn push(
        &mut self,
        metric: &Arc<Labels>,
        ts: i64,
        v: f64,
        drop_name: bool,
        instant: bool,
    ) -> QResult<()> {
        let s = self.slot(metric, drop_name, instant);
        self.push_slot(s, ts, v)
    }

    /// The collected series without empty ones.
    pub fn finish(self) -> Vec<StepSeries> {
        self.series
            .into_iter()
            .filter(|s| !s.pts.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_series_with_the_same_kept_labels_share_them() {
        let series = |inst: &str, x: &str| tsdb::querier::VecSeries {
            labels: Labels::from_pairs(&[("__name__", "m"), ("instance", inst), ("x", x)]),
            samples: Vec::new(),
        };
        let keep = vec!["instance".to_string()];
        let mut labels = ResultLabels::new(Some(&keep));
        let a1 = labels.of(&series("a", "1"));
        let b = labels.of(&series("b", "1"));
        let a2 = labels.of(&series("a", "2"));
        assert_eq!(*a1, Labels::from_pairs(&[("instance", "a")]));
        assert_eq!(*b, Labels::from_pairs(&[("instance", "b")]));
        // Not the series just before, but a set built earlier.
        assert!(Arc::ptr_eq(&a1, &a2));
        let mut all = ResultLabels::new(None);
        assert_eq!(all.of(&series("a", "1")).len(), 3);
    }

    /// `place_on_steps` picks the latest sample within the lookback at each step, whether a
    /// step holds none, a few or many samples, with staleness markers and an `offset`.
    #[test]
    fn place_on_steps_matches_a_plain_scan() {
        let stale = f64::from_bits(tsdb::chunkenc::STALE_NAN_BITS);
        for gap in [1i64, 7, 15, 60, 200] {
            let samples: Vec<(i64, f64)> = (0..400i64)
                .map(|i| {
                    let t = i * gap + (i * 7919 % 5);
                    (t, if i % 97 == 13 { stale } else { i as f64 })
                })
                .collect();
            let steps: Vec<i64> = (-3..300).map(|k| k * 30).collect();
            for (offset, keep_ts) in [(0, true), (45, true), (0, false), (45, false)] {
                let (mut pts, mut ts) = (Vec::new(), Vec::new());
                place_on_steps(
                    &samples, &steps, None, offset, 100, keep_ts, &mut pts, &mut ts,
                );
                let mut want = Vec::new();
                for &s in &steps {
                    let rt = s - offset;
                    if let Some(&(t, v)) = samples.iter().rev().find(|x| x.0 <= rt) {
                        if t > rt - 100 && !is_stale_nan(v) {
                            want.push(((s, v), t));
                        }
                    }
                }
                if !keep_ts {
                    assert!(ts.is_empty());
                    ts = want.iter().map(|w| w.1).collect();
                }
                let got: Vec<_> = pts.into_iter().zip(ts).collect();
                assert_eq!(got, want, "gap {gap} offset {offset} keep_ts {keep_ts}");
            }
        }
        // No samples: no points, and what the buffers held before is gone.
        let (mut pts, mut ts) = (vec![(1, 1.0)], vec![1]);
        place_on_steps(&[], &[0, 30], None, 0, 100, true, &mut pts, &mut ts);
        assert!(pts.is_empty() && ts.is_empty());
    }
}
