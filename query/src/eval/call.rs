//! Function calls. Functions that need series or labels (`absent`, `scalar`, `vector`,
//! `time`, `timestamp`, `sort*`, `label_*`, histogram bucket grouping, range-window sliding)
//! live here; the arithmetic of each function comes from the library via [`super::fnlib`].

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{Call, Expr};
use tsdb::Labels;

use super::aggregate::go_g;
use super::fnlib;
use super::{advance, unparen, Evaluator, Ext, OutCollector, StepCursor, StepSeries, Val};
use crate::error::{QResult, QueryError};
use crate::functions::extended;
use crate::functions::range::{RangeCtx, RangeFn};

/// Natural-order comparison (digit runs compared as numbers), as Go's `natsort.Compare`.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            let o = ab[i].cmp(&bb[j]);
            if o != Ordering::Equal {
                return o;
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

/// Labels `absent()` gives its output: the equality matchers of the selector argument.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match unparen(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == "__name__" {
            continue;
        }
        let is_eq = matches!(m.op, promql_parser::label::MatchOp::Equal);
        match out.iter_mut().find(|(n, _)| *n == m.name) {
            Some(e) => e.1 = None,
            None => out.push((
                m.name.clone(),
                if is_eq { Some(m.value.clone()) } else { None },
            )),
        }
    }
    Labels::from_pairs(
        &out.into_iter()
            .filter_map(|(n, v)| v.map(|v| (n, v)))
            .collect::<Vec<_>>(),
    )
}

/// The `functions::extended` mode of a range-selector modifier.
fn ext_mode(ext: Ext) -> extended::Mode {
    match ext {
        Ext::Anchored => extended::Mode::Anchored,
        Ext::Smoothed => extended::Mode::Smoothed,
    }
}

fn has_counter_suffix(n: &str) -> bool {
    n.ends_with("_total") || n.ends_with("_sum") || n.ends_with("_count") || n.ends_with("_bucket")
}

impl Evaluator<'_> {
    pub(crate) fn eval_call(&mut self, c: &Call) -> QResult<Val> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
        match name {
            "time" => {
                return Ok(Val::Scalar(
                    self.steps().map(|t| t as f64 / 1000.0).collect(),
                ))
            }
            "start" | "end" | "range" | "step" => {
                let v = match name {
                    "start" => self.query_start,
                    "end" => self.query_end,
                    "range" => self.query_end - self.query_start,
                    _ => self.query_step,
                } as f64
                    / 1000.0;
                return Ok(Val::Scalar(vec![v; self.num_steps()]));
            }
            "min_of" | "max_of" => {
                let a = self.eval_scalar(args[0])?;
                let b = self.eval_scalar(args[1])?;
                let v = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| fnlib::math_eval(name, *x, &[*y]).unwrap_or(f64::NAN))
                    .collect();
                return Ok(Val::Scalar(v));
            }
            "pi" => return Ok(Val::Scalar(vec![std::f64::consts::PI; self.num_steps()])),
            "vector" => {
                let v = self.eval_scalar(args[0])?;
                let s = self.scalar_to_series(&v);
                return Ok(Val::Vector(vec![s]));
            }
            "scalar" => {
                let input = self.eval_vector(args[0])?;
                let mut cur = StepCursor::new(input.len());
                let mut vals = Vec::new();
                let steps: Vec<i64> = self.steps().collect();
                let mut out = Vec::with_capacity(steps.len());
                for ts in steps {
                    cur.gather(&input, ts, &mut vals);
                    out.push(if vals.len() == 1 { vals[0].1 } else { f64::NAN });
                }
                return Ok(Val::Scalar(out));
            }
            "timestamp" => {
                if let Expr::VectorSelector(vs) = unparen(args[0]) {
                    let (mut ss, tss) = self.eval_vector_selector(vs, true)?;
                    for (s, ts) in ss.iter_mut().zip(tss) {
                        for (p, t) in s.pts.iter_mut().zip(ts) {
                            p.1 = t as f64 / 1000.0;
                        }
                        s.drop_name = true;
                    }
                    return Ok(Val::Vector(ss));
                }
                let mut ss = self.eval_vector(args[0])?;
                for s in &mut ss {
                    for p in &mut s.pts {
                        p.1 = p.0 as f64 / 1000.0;
                    }
                    s.drop_name = true;
                }
                return Ok(Val::Vector(ss));
            }
            "absent" => {
                let input = self.eval_vector(args[0])?;
                let mut present = vec![false; self.num_steps()];
                for s in &input {
                    for p in &s.pts {
                        present[((p.0 - self.start) / self.interval) as usize] = true;
                    }
                }
                let pts: Vec<(i64, f64)> = self
                    .steps()
                    .zip(present)
                    .filter(|(_, p)| !p)
                    .map(|(t, _)| (t, 1.0))
                    .collect();
                if pts.is_empty() {
                    return Ok(Val::Vector(vec![]));
                }
                return Ok(Val::Vector(vec![StepSeries {
                    metric: Arc::new(absent_labels(args[0])),
                    pts: pts.into(),
                    drop_name: true,
                }]));
            }
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
                if !self.is_instant() {
                    self.annos.warn("sort is ineffective for range queries since results are always ordered by labels");
                }
                let mut input = self.eval_vector(args[0])?;
                if self.is_instant() {
                    match name {
                        "sort" => input.sort_by(|a, b| cmp_value(a.pts[0].1, b.pts[0].1, false)),
                        "sort_desc" => {
                            input.sort_by(|a, b| cmp_value(a.pts[0].1, b.pts[0].1, true))
                        }
                        _ => {
                            let mut labels = Vec::new();
                            for a in &args[1..] {
                                labels.push(self.eval_string(a)?);
                            }
                            let desc = name == "sort_by_label_desc";
                            input.sort_by(|a, b| {
                                for l in &labels {
                                    let (x, y) = (
                                        a.metric.get(l).unwrap_or(""),
                                        b.metric.get(l).unwrap_or(""),
                                    );
                                    if x == y {
                                        continue;
                                    }
                                    let o = natural_cmp(x, y);
                                    return if desc { o.reverse() } else { o };
                                }
                                if desc {
                                    b.metric.cmp(&a.metric)
                                } else {
                                    a.metric.cmp(&b.metric)
                                }
                            });
                        }
                    }
                }
                return Ok(Val::Vector(input));
            }
            "label_replace" => {
                let dst = self.eval_string(args[1])?;
                let repl = self.eval_string(args[2])?;
                let src = self.eval_string(args[3])?;
                let re = self.eval_string(args[4])?;
                let regex = regex::Regex::new(&format!("^(?s:{re})$")).map_err(|_| {
                    QueryError::execution(format!(
                        "invalid regular expression in label_replace(): {re}"
                    ))
                })?;
                if !valid_label_name(&dst) {
                    return Err(QueryError::execution(format!(
                        "invalid destination label name in label_replace(): {dst}"
                    )));
                }
                let mut input = self.eval_vector(args[0])?;
                for s in &mut input {
                    let sv = s.metric.get(&src).unwrap_or("").to_string();
                    if let Some(caps) = regex.captures(&sv) {
                        let mut res = String::new();
                        caps.expand(&go_template(&repl), &mut res);
                        s.metric = Arc::new(s.metric.with(&dst, &res));
                        if dst == "__name__" {
                            s.drop_name = false;
                        }
                    }
                }
                return Ok(Val::Vector(merge_same_labelset(input)?));
            }
            "label_join" => {
                let dst = self.eval_string(args[1])?;
                let sep = self.eval_string(args[2])?;
                let mut srcs = Vec::new();
                for a in &args[3..] {
                    let s = self.eval_string(a)?;
                    if !valid_label_name(&s) {
                        return Err(QueryError::execution(format!(
                            "invalid source label name in label_join(): {s}"
                        )));
                    }
                    srcs.push(s);
                }
                if !valid_label_name(&dst) {
                    return Err(QueryError::execution(format!(
                        "invalid destination label name in label_join(): {dst}"
                    )));
                }
                let mut input = self.eval_vector(args[0])?;
                for s in &mut input {
                    let joined: Vec<&str> =
                        srcs.iter().map(|l| s.metric.get(l).unwrap_or("")).collect();
                    let joined = joined.join(&sep);
                    s.metric = Arc::new(s.metric.with(&dst, &joined));
                    if dst == "__name__" {
                        s.drop_name = false;
                    }
                }
                return Ok(Val::Vector(merge_same_labelset(input)?));
            }
            "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => {
                return self.eval_histogram_fn(name, &args)
            }
            "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
            | "histogram_stdvar" => {
                // These read native histograms only; float samples give no output.
                let input = self.eval_vector(args[0])?;
                self.release(&Val::Vector(input));
                return Ok(Val::Vector(vec![]));
            }
            "info" => return self.eval_info(&args),
            _ => {}
        }
        if fnlib::is_time_function(name) {
            if args.is_empty() {
                let pts: Vec<(i64, f64)> = self
                    .steps()
                    .map(|t| (t, fnlib::time_eval(name, t as f64 / 1000.0)))
                    .collect();
                return Ok(Val::Vector(vec![StepSeries {
                    metric: Arc::new(Labels::empty()),
                    pts: pts.into(),
                    drop_name: false,
                }]));
            }
            let mut input = self.eval_vector(args[0])?;
            for s in &mut input {
                for p in &mut s.pts {
                    p.1 = fnlib::time_eval(name, p.1);
                }
                s.drop_name = true;
            }
            return Ok(Val::Vector(input));
        }
        if fnlib::is_math_function(name) {
            let mut params: Vec<Vec<f64>> = Vec::new();
            for a in &args[1..] {
                params.push(self.eval_scalar(a)?);
            }
            let input = self.eval_vector(args[0])?;
            let mut out = Vec::with_capacity(input.len());
            let mut pbuf = Vec::with_capacity(params.len());
            for mut s in input {
                let mut pts = Vec::with_capacity(s.pts.len());
                for &(t, v) in &s.pts {
                    let k = ((t - self.start) / self.interval) as usize;
                    pbuf.clear();
                    pbuf.extend(params.iter().map(|p| p[k]));
                    if let Some(r) = fnlib::math_eval(name, v, &pbuf) {
                        pts.push((t, r));
                    }
                }
                if !pts.is_empty() {
                    s.pts = pts.into();
                    s.drop_name = true;
                    out.push(s);
                }
            }
            return Ok(Val::Vector(out));
        }
        let mi = args
            .iter()
            .position(|a| matches!(unparen(a), Expr::MatrixSelector(_) | Expr::Subquery(_)));
        match mi {
            Some(mi) => self.eval_range_fn(name, &args, mi),
            None => Err(QueryError::bad_data(format!(
                "function {name} is not supported"
            ))),
        }
    }

    fn eval_range_fn(&mut self, name: &str, args: &[&Expr], mi: usize) -> QResult<Val> {
        let keep = self.keep_labels.take();
        if let Expr::MatrixSelector(ms) = unparen(args[mi]) {
            if let Some(ext) = super::ext_modifier(&ms.vs) {
                let mode = ext_mode(ext);
                if !extended::allowed(name, mode) {
                    return Err(QueryError::execution(extended::not_allowed_error(
                        name, mode,
                    )));
                }
            }
        }
        let arg = match unparen(args[mi]) {
            Expr::MatrixSelector(ms)
                if name != "absent_over_time" && super::ext_modifier(&ms.vs).is_none() =>
            {
                self.range_arg_lazy(ms)?
            }
            _ => self.range_arg(args[mi])?,
        };
        if let Some(ext) = arg.ext {
            return self.eval_extended_range_fn(name, arg, ext);
        }
        let mut params: Vec<Vec<f64>> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i != mi {
                params.push(self.eval_scalar(a)?);
            }
        }
        let steps: Vec<i64> = self.steps().collect();
        let drop = !(name == "last_over_time" || name == "first_over_time");
        if name == "absent_over_time" {
            let mut present = vec![false; steps.len()];
            for s in &arg.series {
                let (mut lo, mut hi) = (0usize, 0usize);
                for (k, &ts) in steps.iter().enumerate() {
                    let rt = arg.at.unwrap_or(ts) - arg.offset;
                    while hi < s.samples.len() && s.samples[hi].0 <= rt {
                        hi += 1;
                    }
                    while lo < hi && s.samples[lo].0 <= rt - arg.range {
                        lo += 1;
                    }
                    if lo < hi {
                        present[k] = true;
                    }
                }
            }
            let pts: Vec<(i64, f64)> = steps
                .iter()
                .zip(present)
                .filter(|(_, p)| !p)
                .map(|(t, _)| (*t, 1.0))
                .collect();
            if pts.is_empty() {
                return Ok(Val::Vector(vec![]));
            }
            let metric = if arg.from_subquery {
                Labels::empty()
            } else {
                absent_labels(args[mi])
            };
            return Ok(Val::Vector(vec![StepSeries {
                metric: Arc::new(metric),
                pts: pts.into(),
                drop_name: true,
            }]));
        }
        let mut out = Vec::new();
        let mut pbuf: Vec<f64> = Vec::with_capacity(params.len());
        let mut fn_annos: Vec<crate::functions::Annotation> = Vec::new();
        for k in 0..steps.len() {
            pbuf.clear();
            pbuf.extend(params.iter().map(|p| p[k]));
            fnlib::range_check_params(name, &pbuf).map_err(QueryError::execution)?;
        }
        let job = SeriesJob {
            name,
            steps: &steps,
            params: &params,
            at: arg.at,
            offset: arg.offset,
            range: arg.range,
            from_subquery: arg.from_subquery,
            sts_src: self.start_timestamps,
            drop,
            deadline: self.deadline,
            cancel: self.cancel,
            metric_name: match unparen(args[mi]) {
                Expr::MatrixSelector(ms) => ms.vs.name.as_deref(),
                _ => None,
            },
        };
        let series = arg.series;
        let results: Vec<QResult<SeriesOut>> = if let Some(lz) = arg.lazy {
            // Decode each series right where its window slides, on all cores, reusing one
            // buffer per thread.
            let threads = super::decode_threads(lz.series.len(), lz.mint, lz.maxt);
            let nseries = lz.series.len();
            // Each thread owns its part and drops every series once done with it.
            let parts = super::par::split_owned(lz.series, threads);
            let job = &job;
            let (mint, maxt, keep) = (lz.mint, lz.maxt, keep.as_deref());
            let outs = super::par::par_map(parts, threads, |part| {
                decode_and_run(job, part, mint, maxt, keep)
            })?;
            let mut all = Vec::with_capacity(nseries);
            for o in outs {
                let (rs, decoded) = o?;
                self.total_samples += decoded;
                all.extend(rs.into_iter().map(Ok));
            }
            all
        } else {
            run_series_all(&job, series)
        };
        for r in results {
            let r = r?;
            self.total_samples += r.samples;
            fn_annos.extend(r.annos);
            if let Some(mn) = r.non_counter {
                self.annos.info(format!(
                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {mn:?}"
                ));
            }
            if let Some(ss) = r.series {
                self.add_samples(ss.pts.len())?;
                out.push(ss);
            }
        }
        fnlib::add_annotations(&mut self.annos, fn_annos);
        Ok(Val::Vector(out))
    }

    /// `rate`/`increase`/`delta` (and for `anchored`, `changes`/`resets`) over `anchored` or
    /// `smoothed` windows.
    fn eval_extended_range_fn(
        &mut self,
        name: &str,
        arg: super::RangeArg,
        ext: Ext,
    ) -> QResult<Val> {
        let steps: Vec<i64> = self.steps().collect();
        let lb = self.lookback;
        let mode = ext_mode(ext);
        let mut out = Vec::new();
        let mut fn_annos: Vec<crate::functions::Annotation> = Vec::new();
        for s in arg.series {
            let f = &s.samples;
            let mut pts = Vec::new();
            for &ts in &steps {
                let rt = arg.at.unwrap_or(ts) - arg.offset;
                let (rs, re) = (rt - arg.range, rt);
                let a = f.partition_point(|x| x.0 <= rs - lb);
                let b = match mode {
                    extended::Mode::Smoothed => f.partition_point(|x| x.0 <= re + lb),
                    extended::Mode::Anchored => f.partition_point(|x| x.0 <= re),
                };
                let mut ctx = RangeCtx {
                    samples: &f[a..b],
                    range_start: rs,
                    range_end: re,
                    params: &[],
                    annotations: &mut fn_annos,
                };
                if let Some(v) = extended::eval(name, &mut ctx, mode) {
                    pts.push((ts, v));
                }
            }
            if !pts.is_empty() {
                self.add_samples(pts.len())?;
                out.push(StepSeries {
                    metric: s.metric,
                    pts: pts.into(),
                    drop_name: true,
                });
            }
        }
        fnlib::add_annotations(&mut self.annos, fn_annos);
        Ok(Val::Vector(out))
    }

    fn eval_histogram_fn(&mut self, name: &str, args: &[&Expr]) -> QResult<Val> {
        use crate::functions::histogram::Bucket;
        // (scalar params, vector arg index, label for histogram_quantiles)
        let (param_args, vec_arg, qlabel): (Vec<&Expr>, usize, Option<String>) = match name {
            "histogram_quantile" => (vec![args[0]], 1, None),
            "histogram_quantiles" => (args[2..].to_vec(), 0, Some(self.eval_string(args[1])?)),
            _ => (vec![args[0], args[1]], 2, None),
        };
        let mut params: Vec<Vec<f64>> = Vec::new();
        for a in &param_args {
            params.push(self.eval_scalar(a)?);
        }
        let is_quantile = name != "histogram_fraction";
        let input = self.eval_vector(args[vec_arg])?;
        // Group buckets by the series labels without `le` (name included: delayed removal).
        let mut groups: HashMap<Labels, usize> = HashMap::new();
        let mut group_metric: Vec<Arc<Labels>> = Vec::new();
        let mut series_group: Vec<Option<(usize, f64)>> = Vec::with_capacity(input.len());
        for s in &input {
            let le = s.metric.get("le").unwrap_or("");
            match fnlib::parse_le(le) {
                Some(ub) => {
                    let key = s.metric.drop_names(&["le"]);
                    let n = groups.len();
                    let g = *groups.entry(key.clone()).or_insert_with(|| {
                        group_metric.push(Arc::new(key));
                        n
                    });
                    series_group.push(Some((g, ub)));
                }
                None => series_group.push(None),
            }
        }
        // output label sets per (quantile index, group) for histogram_quantiles
        let mut qmetrics: HashMap<(usize, usize), Arc<Labels>> = HashMap::new();
        let instant = self.is_instant();
        let mut cur = StepCursor::new(input.len());
        let mut vals = Vec::new();
        let mut out = OutCollector::new();
        let mut buckets: Vec<Vec<Bucket>> = vec![Vec::new(); group_metric.len()];
        let steps: Vec<i64> = self.steps().collect();
        for (k, &ts) in steps.iter().enumerate() {
            if is_quantile {
                for p in &params {
                    let q = p[k];
                    if q.is_nan() || !(0.0..=1.0).contains(&q) {
                        self.annos.warn(format!(
                            "quantile value should be between 0 and 1, got {}",
                            go_g(q)
                        ));
                    }
                }
            }
            cur.gather(&input, ts, &mut vals);
            if vals.is_empty() {
                continue;
            }
            for b in buckets.iter_mut() {
                b.clear();
            }
            for &(si, v) in &vals {
                match series_group[si] {
                    Some((g, ub)) => buckets[g].push(Bucket {
                        upper: ub,
                        count: v,
                    }),
                    None => {
                        let mn = input[si].metric.metric_name().unwrap_or("");
                        let le = input[si].metric.get("le").unwrap_or("");
                        let mut msg = format!(
                            "bucket label \"le\" is missing or has a malformed value of {}",
                            tsdb::labels::go_quote(le)
                        );
                        if !mn.is_empty() {
                            msg.push_str(&format!(
                                " for metric name {}",
                                tsdb::labels::go_quote(mn)
                            ));
                        }
                        self.annos.warn(msg);
                    }
                }
            }
            let nq = if is_quantile { params.len() } else { 1 };
            for qi in 0..nq {
                for (g, b) in buckets.iter_mut().enumerate() {
                    if b.is_empty() {
                        continue;
                    }
                    let v = if is_quantile {
                        let qr = fnlib::bucket_quantile(params[qi][k], b);
                        if qr.forced_monotonic {
                            let mn = group_metric[g].metric_name().unwrap_or("");
                            let base = "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)";
                            if mn.is_empty() {
                                self.annos.info(base);
                            } else {
                                self.annos.info(format!(
                                    "{base} for metric name {}",
                                    tsdb::labels::go_quote(mn)
                                ));
                            }
                        }
                        qr.value
                    } else {
                        fnlib::bucket_fraction(params[0][k], params[1][k], b)
                    };
                    let metric = match &qlabel {
                        None => group_metric[g].clone(),
                        Some(l) => qmetrics
                            .entry((qi, g))
                            .or_insert_with(|| {
                                Arc::new(group_metric[g].with(
                                    l,
                                    &crate::functions::gofmt::format_openmetrics_float(
                                        params[qi][k],
                                    ),
                                ))
                            })
                            .clone(),
                    };
                    out.push(&metric, ts, v, true, instant)?;
                }
            }
        }
        Ok(Val::Vector(out.finish()))
    }
}

/// Converts a Go regexp replacement template to the regex crate's syntax (they agree on `$1`,
/// `${1}`, `$name` and `$$`).
fn go_template(s: &str) -> String {
    s.to_string()
}

/// Whether a label name is valid: non-empty UTF-8. `promql-parser` turns a `\xNN` escape into
/// the character U+00NN, where Go keeps the raw byte; a name made only of such characters is
/// read back as bytes, so `"\xff"` is rejected as invalid UTF-8 the way Prometheus rejects it.
pub(crate) fn valid_label_name(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    if s.chars().all(|c| ('\u{80}'..='\u{ff}').contains(&c)) {
        let bytes: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
        return std::str::from_utf8(&bytes).is_ok();
    }
    true
}

/// Ascending (or descending) by value with NaN last either way.
fn cmp_value(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => {
            let o = a.partial_cmp(&b).unwrap_or(Ordering::Equal);
            if desc {
                o.reverse()
            } else {
                o
            }
        }
    }
}

/// Series count from which range functions run on several threads.
const PARALLEL_MIN_SERIES: usize = 2000;

/// What every series of one range-function evaluation shares.
pub(super) struct SeriesJob<'a> {
    pub name: &'a str,
    pub steps: &'a [i64],
    pub params: &'a [Vec<f64>],
    pub at: Option<i64>,
    pub offset: i64,
    pub range: i64,
    pub from_subquery: bool,
    pub sts_src: Option<&'a dyn crate::engine::StartTimestampSource>,
    pub drop: bool,
    pub deadline: Option<std::time::Instant>,
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
    /// The metric name of every series, when the matrix selector names the metric
    /// (`foo[5m]`): the series' own labels need not be searched for it.
    pub metric_name: Option<&'a str>,
}

/// The result of one series.
struct SeriesOut {
    series: Option<StepSeries>,
    annos: Vec<crate::functions::Annotation>,
    samples: u64,
    non_counter: Option<String>,
}

/// Reusable per-thread buffers of [`run_series_into`].
#[derive(Default)]
pub(super) struct SeriesScratch {
    /// The output points of the last series.
    pub pts: Vec<(i64, f64)>,
    /// Annotations of the range function (appended to, never cleared here).
    pub annos: Vec<crate::functions::Annotation>,
    resets: Vec<usize>,
    pbuf: Vec<f64>,
    windows: crate::functions::range::CounterWindows,
}

/// What [`run_series_into`] reports besides the points.
pub(super) struct SeriesStats {
    /// Samples in all windows (the query's `total_queryable_samples` share).
    pub samples: u64,
    /// The metric name when `rate`/`increase` ran over a series not named like a counter.
    pub non_counter: Option<String>,
}

/// Slides the window of one series over all steps and applies the range function, with
/// the caller's (per-thread) buffers; the points are copied out at their exact size.
fn run_series(
    job: &SeriesJob,
    metric: Arc<Labels>,
    data: &[(i64, f64)],
    drop_name: bool,
    sc: &mut SeriesScratch,
) -> QResult<SeriesOut> {
    let st = run_series_into(job, || &*metric, data, sc)?;
    let series = (!sc.pts.is_empty()).then(|| StepSeries {
        metric,
        pts: super::Points::from_slice(&sc.pts),
        drop_name: job.drop || drop_name,
    });
    Ok(SeriesOut {
        series,
        annos: std::mem::take(&mut sc.annos),
        samples: st.samples,
        non_counter: st.non_counter,
    })
}

/// Slides the window of one series over all steps and applies the range function, leaving
/// the output points in `sc.pts` (cleared first) and appending annotations to `sc.annos`.
/// `metric` gives the series' labels, asked for only when needed (a merged block series
/// builds them on demand).
pub(super) fn run_series_into<'m>(
    job: &SeriesJob,
    metric: impl Fn() -> &'m Labels,
    data: &[(i64, f64)],
    sc: &mut SeriesScratch,
) -> QResult<SeriesStats> {
    if job
        .cancel
        .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    {
        return Err(QueryError::canceled());
    }
    if job.deadline.is_some_and(|d| std::time::Instant::now() >= d) {
        return Err(QueryError::timeout());
    }
    let name = job.name;
    let annos = &mut sc.annos;
    let mut samples = 0u64;
    let pts = &mut sc.pts;
    pts.clear();
    let pbuf = &mut sc.pbuf;
    let sts = match job.sts_src {
        Some(src)
            if !job.from_subquery && matches!(name, "rate" | "increase" | "irate" | "resets") =>
        {
            src.start_timestamps(metric(), data)
        }
        _ => None,
    };
    // Resolved once per series rather than by name at every step.
    let range_fn = RangeFn::from_name(name);
    // predict_linear predicts from the evaluation time, not the window end.
    let predict = range_fn == Some(RangeFn::PredictLinear);
    // rate/increase slide over the series: where the counter resets is found once, so each
    // step looks only at the resets inside its window instead of rescanning it.
    let counter = match range_fn {
        Some(RangeFn::Rate) if sts.is_none() => Some(true),
        Some(RangeFn::Increase) if sts.is_none() => Some(false),
        _ => None,
    };
    if let Some(is_rate) = counter {
        let resets = &mut sc.resets;
        resets.clear();
        let interval = find_resets(data, resets);
        pts.reserve(job.steps.len());
        // Evenly spaced samples with the step a multiple of their interval are computed in
        // one pass; otherwise windows are collected first (all at once when the samples are
        // evenly spaced, else sliding step by step) and extrapolated together (see
        // `CounterWindows`).
        let cw = &mut sc.windows;
        let (steps, offset, range) = (job.steps, job.offset, job.range);
        let even = if job.at.is_none() { interval } else { None };
        match even
            .and_then(|iv| cw.compute_regular(data, iv, steps, offset, range, resets, is_rate))
        {
            Some(n) => samples = n,
            None => {
                match even.and_then(|iv| cw.record_even(data, iv, steps, offset, range, resets)) {
                    Some(n) => samples = n,
                    None => record_sliding(data, job, resets, cw, &mut samples),
                }
                cw.compute(range as f64 / 1000.0, is_rate);
            }
        }
        if job.from_subquery {
            samples = 0;
        }
        pts.extend(cw.step_ts().iter().copied().zip(cw.out.iter().copied()));
        return Ok(SeriesStats {
            samples,
            non_counter: non_counter_name(job, &metric, pts),
        });
    }
    let mut win = Window::default();
    for (k, &ts) in job.steps.iter().enumerate() {
        let rt = job.at.unwrap_or(ts) - job.offset;
        if job.at.is_none() || k == 0 {
            win.slide(data, rt, job.range);
        }
        let (lo, hi) = (win.lo, win.hi);
        if lo == hi {
            continue;
        }
        if !job.from_subquery {
            samples += (hi - lo) as u64;
        }
        let end = if predict { ts } else { rt };
        let w = &data[lo..hi];
        // rate/increase without start timestamps returned above.
        let r = match &sts {
            Some(st) => {
                pbuf.clear();
                pbuf.extend(job.params.iter().map(|p| p[k]));
                fnlib::range_eval_st(
                    name,
                    w,
                    &st[lo..hi],
                    rt - job.range,
                    end,
                    pbuf,
                    annos,
                    metric().metric_name().unwrap_or(""),
                )
            }
            None => {
                pbuf.clear();
                pbuf.extend(job.params.iter().map(|p| p[k]));
                range_fn.and_then(|f| {
                    f.eval(&mut RangeCtx {
                        samples: w,
                        range_start: rt - job.range,
                        range_end: end,
                        params: pbuf,
                        annotations: annos,
                    })
                })
            }
        };
        if let Some(v) = r {
            pts.push((ts, v));
        }
    }
    Ok(SeriesStats {
        samples,
        non_counter: non_counter_name(job, &metric, pts),
    })
}

/// Records the window of every step of a counter function in `cw` one by one, sliding
/// over `data`; adds the samples of all windows to `samples`.
fn record_sliding(
    data: &[(i64, f64)],
    job: &SeriesJob,
    resets: &[usize],
    cw: &mut crate::functions::range::CounterWindows,
    samples: &mut u64,
) {
    let mut slots = cw.slots(job.steps.len());
    let mut rlo = 0usize;
    let mut win = Window::default();
    let range = job.range;
    // The window of one step `ts` evaluated at `rt`, once `win` covers it.
    macro_rules! record {
        ($win:expr, $ts:expr, $rt:expr) => {{
            let (win, ts, rt): (&Window, i64, i64) = ($win, $ts, $rt);
            let (lo, hi) = (win.lo, win.hi);
            *samples += (hi - lo) as u64;
            if hi - lo < 2 {
                continue;
            }
            if rlo < resets.len() {
                while rlo < resets.len() && resets[rlo] < lo {
                    rlo += 1;
                }
                let inside = resets[rlo..]
                    .iter()
                    .take_while(|&&i| i + 1 < hi)
                    .map(|&i| data[i].1);
                slots.push(ts, &data[lo..hi], rt - range, rt, inside);
            } else {
                slots.push(ts, &data[lo..hi], rt - range, rt, std::iter::empty());
            }
        }};
    }
    // The two loops differ in whether the window moves: the test is hoisted out of the
    // step loop rather than made at every step.
    match job.at {
        None => {
            for &ts in job.steps {
                let rt = ts - job.offset;
                win.slide(data, rt, range);
                record!(&win, ts, rt);
            }
        }
        Some(at) => {
            let rt = at - job.offset;
            win.slide(data, rt, range);
            for &ts in job.steps {
                record!(&win, ts, rt);
            }
        }
    }
}

/// The metric name when `rate`/`increase` gave points for a series not named like a counter.
fn non_counter_name<'m>(
    job: &SeriesJob,
    metric: &impl Fn() -> &'m Labels,
    pts: &[(i64, f64)],
) -> Option<String> {
    if (job.name == "rate" || job.name == "increase") && !pts.is_empty() {
        if let Some(mn) = job.metric_name.or_else(|| metric().metric_name()) {
            if !has_counter_suffix(mn) {
                return Some(mn.to_string());
            }
        }
    }
    None
}

/// Appends to `out` the index `i` of every sample whose successor has a lower value (a
/// counter reset between samples `i` and `i + 1`), and returns the interval between the
/// samples when they are evenly spaced in time (at least two, at a positive interval). Scans
/// eight pairs at a time without branching, as resets are rare.
pub(super) fn find_resets(data: &[(i64, f64)], out: &mut Vec<usize>) -> Option<i64> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { find_resets_avx2(data, out) };
        }
    }
    find_resets_generic(data, out)
}

/// The distance between the first two samples, when positive: the interval of samples
/// that are evenly spaced.
fn first_gap(data: &[(i64, f64)]) -> Option<i64> {
    match data {
        [(a, _), (b, _), ..] if b > a => Some(b - a),
        _ => None,
    }
}

/// [`find_resets`] with AVX2: the values and times of eight samples and of their successors
/// are unpacked from the `(t, v)` pairs and compared in vector compares (`<` on NaN is false,
/// as in the scalar loop).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn find_resets_avx2(data: &[(i64, f64)], out: &mut Vec<usize>) -> Option<i64> {
    use std::arch::x86_64::*;
    let Some(gap) = first_gap(data) else {
        return find_resets_generic(data, out);
    };
    let p = data.as_ptr().cast::<f64>();
    let gaps = _mm256_set1_epi64x(gap);
    let mut even = _mm256_set1_epi64x(-1);
    let mut i = 0;
    while i + 9 <= data.len() {
        // SAFETY: samples `i..i + 9` exist, and a sample is two 8-byte words (`t`, `v`); each
        // load reads two whole samples of them.
        let (t, v) = unsafe {
            let load = |k: usize| _mm256_loadu_pd(p.add(2 * k));
            // [x(k), x(k+2), x(k+1), x(k+3)] of the times and of the values.
            let halves = |k: usize| {
                let (a, b) = (load(k), load(k + 2));
                (_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b))
            };
            let h = [halves(i), halves(i + 4), halves(i + 1), halves(i + 5)];
            (h.map(|x| _mm256_castpd_si256(x.0)), h.map(|x| x.1))
        };
        let lower = _mm256_or_pd(
            _mm256_cmp_pd::<_CMP_LT_OQ>(v[2], v[0]),
            _mm256_cmp_pd::<_CMP_LT_OQ>(v[3], v[1]),
        );
        if _mm256_movemask_pd(lower) != 0 {
            out.extend((i..i + 8).filter(|&j| data[j + 1].1 < data[j].1));
        }
        even = _mm256_and_si256(even, _mm256_cmpeq_epi64(_mm256_sub_epi64(t[2], t[0]), gaps));
        even = _mm256_and_si256(even, _mm256_cmpeq_epi64(_mm256_sub_epi64(t[3], t[1]), gaps));
        i += 8;
    }
    let pairs = data.len().saturating_sub(1);
    out.extend((i..pairs).filter(|&j| data[j + 1].1 < data[j].1));
    // The pairs from sample `i` on were not compared above.
    let even = _mm256_movemask_pd(_mm256_castsi256_pd(even)) == 0b1111
        && data[i..].windows(2).all(|w| w[1].0 - w[0].0 == gap);
    even.then_some(gap)
}

/// [`find_resets`] eight pairs at a time without vectors.
#[inline(always)]
fn find_resets_generic(data: &[(i64, f64)], out: &mut Vec<usize>) -> Option<i64> {
    let mut i = 0;
    // Eight pairs (nine samples) at a time.
    while let Some(w) = data.get(i..i + 9) {
        let mut any = false;
        for j in 0..8 {
            any |= w[j + 1].1 < w[j].1;
        }
        if any {
            out.extend((0..8).filter(|&j| w[j + 1].1 < w[j].1).map(|j| i + j));
        }
        i += 8;
    }
    let pairs = data.len().saturating_sub(1);
    out.extend((i..pairs).filter(|&j| data[j + 1].1 < data[j].1));
    first_gap(data).filter(|&d| data.windows(2).all(|w| w[1].0 - w[0].0 == d))
}

/// Runs the range function over already decoded series, on several threads when many (one
/// scratch per thread).
fn run_series_all(job: &SeriesJob, series: Vec<super::RawSeries>) -> Vec<QResult<SeriesOut>> {
    let threads = super::par::threads_for(series.len(), PARALLEL_MIN_SERIES);
    let parts = super::par::split_owned(series, threads);
    let outs = super::par::par_map(parts, threads, |part| {
        let mut scratch = SeriesScratch::default();
        part.into_iter()
            .map(|s| run_series(job, s.metric, &s.samples, s.drop_name, &mut scratch))
            .collect::<Vec<_>>()
    });
    match outs {
        Ok(outs) => outs.into_iter().flatten().collect(),
        Err(e) => vec![Err(e)],
    }
}

/// Decodes each series of `part` over `[mint, maxt]` (staleness markers dropped) into one
/// reused buffer and slides the range function over it; returns the results in order and
/// the count of samples decoded. Each series is dropped as soon as it is done with. The
/// results carry the labels named in `keep`, or all (see [`super::ResultLabels`]).
fn decode_and_run(
    job: &SeriesJob,
    part: Vec<Arc<dyn tsdb::Series>>,
    mint: i64,
    maxt: i64,
    keep: Option<&[String]>,
) -> QResult<(Vec<SeriesOut>, u64)> {
    let mut buf: Vec<(i64, f64)> = Vec::new();
    let mut out = Vec::with_capacity(part.len());
    let mut decoded = 0u64;
    let mut scratch = SeriesScratch::default();
    let mut labels = super::ResultLabels::new(keep);
    for s in part {
        buf.clear();
        super::decode_into(s.as_ref(), mint, maxt, &mut buf)?;
        decoded += buf.len() as u64;
        if super::has_stale(&buf) {
            buf.retain(|x| !tsdb::chunkenc::is_stale_nan(x.1));
        }
        out.push(run_series(
            job,
            labels.of(s.as_ref()),
            &buf,
            false,
            &mut scratch,
        )?);
    }
    Ok((out, decoded))
}

/// Merges series that ended up with the same labels; overlapping points are an error.
pub(crate) fn merge_same_labelset(series: Vec<StepSeries>) -> QResult<Vec<StepSeries>> {
    // Whether any label set repeats, by the sets' xxHash (far cheaper than hashing every
    // label string with the map's SipHash); a shared hash sends the input to the exact pass
    // below, which also handles the (practically never seen) different sets sharing one.
    let mut seen = std::collections::HashSet::with_capacity(series.len());
    let dup = series.iter().any(|s| !seen.insert(s.metric.hash()));
    if !dup {
        return Ok(series);
    }
    let mut out: Vec<StepSeries> = Vec::new();
    let mut pos: HashMap<Arc<Labels>, usize> = HashMap::new();
    for s in series {
        match pos.get(&s.metric) {
            Some(&i) => {
                let base = &mut out[i];
                base.pts.extend(s.pts);
                base.pts.sort_by_key(|p| p.0);
                if base.pts.windows(2).any(|w| w[0].0 == w[1].0) {
                    return Err(QueryError::execution(
                        "vector cannot contain metrics with the same labelset",
                    ));
                }
            }
            None => {
                pos.insert(s.metric.clone(), out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// The window `data[lo..hi]` of the samples in the left-open range `(rt - range, rt]`, slid
/// forward step by step (samples in time order; both ends only move forward).
///
/// Each end first tries to move by as many samples as it did at the last step: with regular
/// scrapes that guess is right at almost every step and costs two well-predicted comparisons
/// instead of a short loop whose exit branch is mispredicted.
#[derive(Default)]
struct Window {
    lo: usize,
    hi: usize,
    dlo: usize,
    dhi: usize,
}

impl Window {
    /// Moves the window to `(rt - range, rt]`.
    #[inline(always)]
    fn slide(&mut self, data: &[(i64, f64)], rt: i64, range: i64) {
        let hi = advance(data, self.hi, rt, self.dhi);
        self.dhi = hi - self.hi;
        self.hi = hi;
        // `data[hi]` (if any) is later than `rt`, so `lo` stops at `hi` at the latest.
        let lo = advance(data, self.lo, rt - range, self.dlo);
        self.dlo = lo - self.lo;
        self.lo = lo;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::range::CounterWindows;

    #[test]
    fn window_slides_like_a_plain_scan() {
        // Regular, irregular and gappy timestamps (some repeated), windows of several
        // lengths and steps.
        let regular: Vec<i64> = (0..200).map(|i| i * 15_000).collect();
        let irregular: Vec<i64> = (0..200).map(|i| i * 15_000 + (i * i % 7) * 1_000).collect();
        let gappy: Vec<i64> = (0..200)
            .map(|i| i * 10_000 + if i > 80 { 3_600_000 } else { 0 })
            .collect();
        let repeated: Vec<i64> = (0..200).map(|i| (i / 3) * 20_000).collect();
        for ts in [regular, irregular, gappy, repeated] {
            let data: Vec<(i64, f64)> = ts.iter().map(|&t| (t, 1.0)).collect();
            for range in [1i64, 14_999, 60_000, 300_000, 3_000_000] {
                for step in [1_000i64, 15_000, 60_000, 600_000] {
                    let mut win = Window::default();
                    let mut rt = -400_000;
                    while rt < 6_500_000 {
                        win.slide(&data, rt, range);
                        let lo = data.iter().take_while(|x| x.0 <= rt - range).count();
                        let hi = data.iter().take_while(|x| x.0 <= rt).count();
                        assert_eq!((win.lo, win.hi), (lo, hi), "rt {rt} range {range}");
                        rt += step;
                    }
                }
            }
        }
    }

    #[test]
    fn find_resets_matches_a_plain_scan() {
        for n in [0usize, 1, 2, 7, 8, 9, 10, 16, 17, 18, 40, 100] {
            for period in [3usize, 5, 8, 13, 1000] {
                // Every seventh value NaN where `nan` (never lower, nor higher, than another).
                for nan in [false, true] {
                    // Evenly spaced, or one sample (any one) 1 ms late.
                    for late in [None].into_iter().chain((0..n).map(Some)) {
                        let data: Vec<(i64, f64)> = (0..n)
                            .map(|i| {
                                let v = if nan && i % 7 == 3 {
                                    f64::NAN
                                } else {
                                    (i % period) as f64
                                };
                                (i as i64 * 15_000 + i64::from(late == Some(i)), v)
                            })
                            .collect();
                        let want: Vec<usize> = (0..n.saturating_sub(1))
                            .filter(|&i| data[i + 1].1 < data[i].1)
                            .collect();
                        let even = n == 2 || n > 2 && late.is_none();
                        let mut got = vec![usize::MAX];
                        let case = format!("n {n} period {period} nan {nan} late {late:?}");
                        assert_eq!(find_resets(&data, &mut got).is_some(), even, "{case}");
                        assert_eq!(got[0], usize::MAX, "appends");
                        assert_eq!(&got[1..], &want[..], "{case}");
                        let mut generic = Vec::new();
                        let gap = find_resets_generic(&data, &mut generic);
                        assert_eq!(gap.is_some(), even, "{case}");
                        assert_eq!(generic, want, "generic: {case}");
                    }
                }
            }
        }
    }

    #[test]
    fn even_windows_are_recorded_as_sliding_ones_are() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pick = |r: u64, xs: &[i64]| xs[(r % xs.len() as u64) as usize];
        let (mut ran, mut regulars) = (0, 0);
        for case in 0..3000 {
            let n = if case % 10 == 0 {
                2 + (rnd() % 3) as usize
            } else {
                2 + (rnd() % 400) as usize
            };
            let interval = pick(rnd(), &[1, 7, 1_000, 15_000, 60_000]);
            let t0 = (rnd() % 4_000_000) as i64 - 2_000_000;
            // Increasing values with some counter resets, some NaN, some repeated; some from
            // zero, where the extrapolation stops at the counter's zero point.
            let mut v = if case % 3 == 0 {
                0.0
            } else {
                (rnd() % 100) as f64
            };
            let data: Vec<(i64, f64)> = (0..n as i64)
                .map(|i| {
                    v += (rnd() % 4) as f64 * 0.5;
                    if rnd() % 40 == 0 {
                        v = (rnd() % 3) as f64 * 0.25;
                    }
                    let val = if rnd() % 50 == 0 { f64::NAN } else { v };
                    (t0 + i * interval, val)
                })
                .collect();
            let mut resets = Vec::new();
            find_resets(&data, &mut resets);
            let step = pick(rnd(), &[1, 1_000, 15_000, 60_000, 3_600_000]);
            let range = pick(rnd(), &[1, 14_999, 15_000, 60_000, 300_000, 3_600_000]);
            let offset = pick(rnd(), &[0, 0, 60_000, -300_000, 7]);
            let span = n as i64 * interval;
            let first = t0 - span / 2 + (rnd() % (2 * span as u64 + 1)) as i64;
            let steps: Vec<i64> = (0..1 + rnd() % 40)
                .map(|k| first + k as i64 * step)
                .collect();
            let job = SeriesJob {
                name: "rate",
                steps: &steps,
                params: &[],
                at: None,
                offset,
                range,
                from_subquery: false,
                sts_src: None,
                drop: true,
                deadline: None,
                cancel: None,
                metric_name: None,
            };
            let (mut even, mut sliding) = (CounterWindows::default(), CounterWindows::default());
            let Some(got) = even.record_even(&data, interval, &steps, offset, range, &resets)
            else {
                // Only without AVX2.
                continue;
            };
            ran += 1;
            let mut want = 0;
            record_sliding(&data, &job, &resets, &mut sliding, &mut want);
            assert_eq!(got, want, "case {case}: samples");
            let is_rate = case % 2 == 0;
            for cw in [&mut even, &mut sliding] {
                cw.compute(range as f64 / 1000.0, is_rate);
            }
            assert_eq!(even.step_ts(), sliding.step_ts(), "case {case}: steps");
            let bits = |cw: &CounterWindows| cw.out.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&even), bits(&sliding), "case {case}: values");
            // Where the step is a multiple of the interval, the one-pass path agrees too.
            let mut regular = CounterWindows::default();
            if let Some(got) =
                regular.compute_regular(&data, interval, &steps, offset, range, &resets, is_rate)
            {
                regulars += 1;
                assert_eq!(got, want, "case {case}: regular samples");
                assert_eq!(
                    regular.step_ts(),
                    sliding.step_ts(),
                    "case {case}: regular steps"
                );
                assert_eq!(
                    bits(&regular),
                    bits(&sliding),
                    "case {case}: regular values"
                );
            }
        }
        #[cfg(target_arch = "x86_64")]
        assert!(
            ran == 3000 || !std::arch::is_x86_feature_detected!("avx2"),
            "{ran} cases"
        );
        assert!(
            regulars > 500,
            "{regulars} cases with the step a multiple of the interval"
        );
    }

    #[test]
    fn has_stale_finds_a_marker_anywhere() {
        let stale = f64::from_bits(tsdb::chunkenc::STALE_NAN_BITS);
        for n in [0usize, 1, 7, 8, 9, 16, 17, 23] {
            let mut data: Vec<(i64, f64)> = (0..n).map(|i| (i as i64, f64::NAN)).collect();
            assert!(!super::super::has_stale(&data), "n {n}");
            for k in 0..n {
                data[k].1 = stale;
                assert!(super::super::has_stale(&data), "n {n} at {k}");
                data[k].1 = 1.0;
            }
        }
    }
}
