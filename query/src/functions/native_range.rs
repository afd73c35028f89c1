//! Range functions over windows holding only native-histogram samples: `rate`, `increase`,
//! `delta`, `irate`, `idelta`, `sum_over_time`, `avg_over_time`, `first_over_time`,
//! `last_over_time`, `count_over_time`, `present_over_time`, `changes`, `resets`.
//!
//! The engine handles windows mixing floats and histograms (Prometheus drops those with a
//! "mix of histograms and floats" warning for the rate family and `sum`/`avg_over_time`, and
//! ignores the histograms with an info for float-only functions). Annotations follow
//! Prometheus: counter functions over gauge histograms warn "not a counter", `delta`/`idelta`
//! over counter histograms warn "not a gauge", incompatible schemas warn and give no result.

use crate::functions::annotation::Annotation;
use crate::functions::native::{CounterResetHint, FloatHistogram};
use crate::functions::native_arith::ArithError;

/// Inputs of one range-function call over the histogram samples of one series.
pub struct HistRangeCtx<'a> {
    /// The samples `(timestamp ms, histogram)` inside `(range_start, range_end]`, ascending.
    pub samples: &'a [(i64, FloatHistogram)],
    /// Start of the window in ms (exclusive).
    pub range_start: i64,
    /// End of the window in ms (inclusive).
    pub range_end: i64,
    /// Metric name of the series, for annotation texts (may be empty).
    pub metric_name: &'a str,
    /// Where warnings and infos go.
    pub annotations: &'a mut Vec<Annotation>,
}

/// The value a histogram range function produces.
#[derive(Clone, Debug, PartialEq)]
pub enum HistValue {
    /// A float result (`count_over_time`, `changes`, …).
    Float(f64),
    /// A histogram result (`rate`, `sum_over_time`, …).
    Histogram(FloatHistogram),
}

/// Computes range function `name` over histogram samples; `None` when Prometheus gives no
/// output (too few samples, incompatible layouts, or a function that ignores histograms).
pub fn eval(name: &str, ctx: &mut HistRangeCtx) -> Option<HistValue> {
    let s = ctx.samples;
    if s.is_empty() {
        return None;
    }
    match name {
        "rate" => extrapolated(ctx, true, true).map(HistValue::Histogram),
        "increase" => extrapolated(ctx, true, false).map(HistValue::Histogram),
        "delta" => extrapolated(ctx, false, false).map(HistValue::Histogram),
        "irate" => instant(ctx, true).map(HistValue::Histogram),
        "idelta" => instant(ctx, false).map(HistValue::Histogram),
        "sum_over_time" => sum(ctx).map(HistValue::Histogram),
        "avg_over_time" => sum(ctx).map(|mut h| {
            h.div(s.len() as f64);
            HistValue::Histogram(h)
        }),
        "first_over_time" => Some(HistValue::Histogram(s[0].1.clone())),
        "last_over_time" => Some(HistValue::Histogram(s[s.len() - 1].1.clone())),
        "count_over_time" => Some(HistValue::Float(s.len() as f64)),
        "present_over_time" => Some(HistValue::Float(1.0)),
        "ts_of_first_over_time" => Some(HistValue::Float(s[0].0 as f64 / 1000.0)),
        "ts_of_last_over_time" => Some(HistValue::Float(s[s.len() - 1].0 as f64 / 1000.0)),
        "changes" => Some(HistValue::Float(
            s.windows(2).filter(|w| !w[1].1.equals(&w[0].1)).count() as f64,
        )),
        "resets" => Some(HistValue::Float(
            s.windows(2)
                .filter(|w| w[1].1.detect_reset(&w[0].1))
                .count() as f64,
        )),
        _ => None,
    }
}

fn mixed_schemas(ctx: &mut HistRangeCtx) {
    ctx.annotations
        .push(Annotation::MixedExponentialCustomHistograms {
            metric_name: ctx.metric_name.to_string(),
        });
}

fn is_gauge(h: &FloatHistogram) -> bool {
    h.counter_reset_hint == CounterResetHint::Gauge
}

/// The histogram change over the window with counter resets added back (for counters):
/// Prometheus's `histogramRate` before extrapolation.
fn histogram_change(ctx: &mut HistRangeCtx, is_counter: bool) -> Option<FloatHistogram> {
    let s = ctx.samples;
    let last = &s[s.len() - 1].1;
    let mut prev = s[0].1.clone();
    let name = ctx.metric_name.to_string();
    if is_counter && (is_gauge(&prev) || is_gauge(last)) {
        ctx.annotations.push(Annotation::NativeHistogramNotCounter {
            metric_name: name.clone(),
        });
    }
    if is_counter && s[1].1.detect_reset(&prev) {
        // A reset right after the first sample: its layout does not matter.
        prev = FloatHistogram {
            schema: s[1].1.schema,
            custom_values: s[1].1.custom_values.clone(),
            ..Default::default()
        };
    }
    if last.uses_custom_buckets() != prev.uses_custom_buckets() {
        mixed_schemas(ctx);
        return None;
    }
    let mut min_schema = last.schema.min(prev.schema);
    for (_, cur) in &s[1..s.len() - 1] {
        if !is_counter {
            continue;
        }
        if is_gauge(cur) {
            ctx.annotations.push(Annotation::NativeHistogramNotCounter {
                metric_name: name.clone(),
            });
        }
        min_schema = min_schema.min(cur.schema);
        if cur.uses_custom_buckets() != prev.uses_custom_buckets() {
            mixed_schemas(ctx);
            return None;
        }
    }
    let mut h = last.clone();
    h.reduce_resolution(min_schema);
    match h.sub(&prev) {
        Err(ArithError::IncompatibleSchema) => {
            mixed_schemas(ctx);
            return None;
        }
        Ok(o) if o.nhcb_bounds_reconciled => {
            ctx.annotations.push(Annotation::MismatchedCustomBuckets {
                operation: "subtraction".into(),
            })
        }
        Ok(_) => {}
    }
    if is_counter {
        let mut prev = prev;
        for (_, cur) in &s[1..] {
            if cur.detect_reset(&prev) {
                match h.add(&prev) {
                    Err(ArithError::IncompatibleSchema) => {
                        mixed_schemas(ctx);
                        return None;
                    }
                    Ok(o) if o.nhcb_bounds_reconciled => {
                        ctx.annotations.push(Annotation::MismatchedCustomBuckets {
                            operation: "addition".into(),
                        })
                    }
                    Ok(_) => {}
                }
            }
            prev = cur.clone();
        }
    } else if !is_gauge(&s[0].1) || !is_gauge(last) {
        ctx.annotations
            .push(Annotation::NativeHistogramNotGauge { metric_name: name });
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact();
    Some(h)
}

/// `rate`/`increase`/`delta` with the same extrapolation as for floats, the zero point of a
/// counter estimated from the histograms' counts.
fn extrapolated(ctx: &mut HistRangeCtx, is_counter: bool, is_rate: bool) -> Option<FloatHistogram> {
    let s = ctx.samples;
    if s.len() < 2 {
        return None;
    }
    let mut h = histogram_change(ctx, is_counter)?;
    let (first_t, last_t) = (s[0].0, s[s.len() - 1].0);
    let mut to_start = (first_t - ctx.range_start) as f64 / 1000.0;
    let mut to_end = (ctx.range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / (s.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter {
        let first_count = s[0].1.count;
        let mut to_zero = to_start;
        if h.count > 0.0 && first_count >= 0.0 {
            to_zero = sampled * (first_count / h.count);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = if sampled != 0.0 {
        (sampled + to_start + to_end) / sampled
    } else {
        1.0
    };
    if is_rate {
        factor /= (ctx.range_end - ctx.range_start) as f64 / 1000.0;
    }
    h.mul(factor);
    Some(h)
}

/// `irate`/`idelta` over the last two histograms.
fn instant(ctx: &mut HistRangeCtx, is_rate: bool) -> Option<FloatHistogram> {
    let s = ctx.samples;
    if s.len() < 2 {
        return None;
    }
    let (t0, h0) = (&s[s.len() - 2].0, &s[s.len() - 2].1);
    let (t1, h1) = (&s[s.len() - 1].0, &s[s.len() - 1].1);
    let interval = t1 - t0;
    if interval == 0 {
        return None;
    }
    let name = ctx.metric_name.to_string();
    if is_rate && (is_gauge(h0) || is_gauge(h1)) {
        ctx.annotations.push(Annotation::NativeHistogramNotCounter {
            metric_name: name.clone(),
        });
    }
    if !is_rate && (!is_gauge(h0) || !is_gauge(h1)) {
        ctx.annotations
            .push(Annotation::NativeHistogramNotGauge { metric_name: name });
    }
    let mut out = h1.clone();
    if !is_rate || !h1.detect_reset(h0) {
        match out.sub(h0) {
            Err(ArithError::IncompatibleSchema) => {
                mixed_schemas(ctx);
                return None;
            }
            Ok(o) if o.nhcb_bounds_reconciled => {
                ctx.annotations.push(Annotation::MismatchedCustomBuckets {
                    operation: "subtraction".into(),
                })
            }
            Ok(_) => {}
        }
    }
    out.counter_reset_hint = CounterResetHint::Gauge;
    out.compact();
    if is_rate {
        out.div(interval as f64 / 1000.0);
    }
    Some(out)
}

/// Sum of the histograms, with the aggregation warnings Prometheus gives (conflicting
/// counter-reset hints, reconciled custom bounds).
fn sum(ctx: &mut HistRangeCtx) -> Option<FloatHistogram> {
    let s = ctx.samples;
    let mut total = s[0].1.clone();
    let (mut reset_seen, mut not_reset_seen, mut reconciled) = (false, false, false);
    let mut track = |h: &FloatHistogram| match h.counter_reset_hint {
        CounterResetHint::CounterReset => reset_seen = true,
        CounterResetHint::NotCounterReset => not_reset_seen = true,
        _ => {}
    };
    track(&s[0].1);
    for (_, h) in &s[1..] {
        track(h);
        match total.add(h) {
            Err(ArithError::IncompatibleSchema) => {
                mixed_schemas(ctx);
                return None;
            }
            Ok(o) => reconciled |= o.nhcb_bounds_reconciled,
        }
    }
    if reset_seen && not_reset_seen {
        ctx.annotations
            .push(Annotation::HistogramCounterResetCollision {
                operation: "aggregation".into(),
            });
    }
    if reconciled {
        ctx.annotations.push(Annotation::MismatchedCustomBuckets {
            operation: "aggregation".into(),
        });
    }
    total.compact();
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::native::Span;

    fn h(count: f64, sum: f64, buckets: &[f64]) -> FloatHistogram {
        FloatHistogram {
            count,
            sum,
            positive_spans: if buckets.is_empty() {
                vec![]
            } else {
                vec![Span {
                    offset: 0,
                    length: buckets.len() as u32,
                }]
            },
            positive_buckets: buckets.to_vec(),
            ..Default::default()
        }
    }

    fn run(
        name: &str,
        s: &[(i64, FloatHistogram)],
        start: i64,
        end: i64,
    ) -> (Option<HistValue>, Vec<Annotation>) {
        let mut annotations = Vec::new();
        let mut ctx = HistRangeCtx {
            samples: s,
            range_start: start,
            range_end: end,
            metric_name: "m",
            annotations: &mut annotations,
        };
        (eval(name, &mut ctx), annotations)
    }

    #[test]
    fn irate_of_counter_histograms() {
        // functions.test: {{sum:2 count:2}}+{{sum:3 count:3}}x5, irate at 20m over [20m]
        // → {{sum:0.01 count:0.01 counter_reset_hint:gauge}}.
        let s: Vec<(i64, FloatHistogram)> = (0..5)
            .map(|i| {
                (
                    i * 300_000,
                    h(2.0 + 3.0 * i as f64, 2.0 + 3.0 * i as f64, &[]),
                )
            })
            .filter(|(t, _)| *t > 0)
            .collect();
        let (v, annos) = run("irate", &s, 0, 1_200_000);
        let Some(HistValue::Histogram(r)) = v else {
            panic!("no histogram")
        };
        assert!((r.count - 0.01).abs() < 1e-12 && (r.sum - 0.01).abs() < 1e-12);
        assert_eq!(r.counter_reset_hint, CounterResetHint::Gauge);
        assert!(annos.is_empty());
    }

    #[test]
    fn delta_of_gauge_and_counter_histograms() {
        // functions.test: gauge {{schema:0 sum:0 count:0 buckets:[0 0 0]}}+{{sum:1 count:2
        // buckets:[1 1 1]}}x5; delta at 20m over [20m] → {{sum:4 count:8 buckets:[4 4 4]}}.
        let mk = |i: f64, gauge: bool| {
            let mut x = h(2.0 * i, i, &[i, i, i]);
            if gauge {
                x.counter_reset_hint = CounterResetHint::Gauge;
            }
            x
        };
        for gauge in [true, false] {
            let s: Vec<(i64, FloatHistogram)> = (1..=4)
                .map(|i| (i * 300_000, mk(i as f64, gauge)))
                .collect();
            let (v, annos) = run("delta", &s, 0, 1_200_000);
            let Some(HistValue::Histogram(r)) = v else {
                panic!("no histogram")
            };
            assert!((r.count - 8.0).abs() < 1e-9, "{}", r.count);
            assert!((r.sum - 4.0).abs() < 1e-9);
            assert_eq!(r.positive_buckets.len(), 3);
            assert!(r.positive_buckets.iter().all(|c| (c - 4.0).abs() < 1e-9));
            if gauge {
                assert!(annos.is_empty());
            } else {
                assert_eq!(
                    annos,
                    vec![Annotation::NativeHistogramNotGauge {
                        metric_name: "m".into()
                    }]
                );
            }
        }
    }

    #[test]
    fn rate_handles_resets_and_extrapolation() {
        // Counts 10, 20, 5, 15 every 60s inside (0, 240s]: increase 10 + 20 + 10 = ... with a
        // reset adding back the 20 before it: 15 - 10 + 20 = 25 over 180s sampled.
        let s: Vec<(i64, FloatHistogram)> = [10.0, 20.0, 5.0, 15.0]
            .iter()
            .enumerate()
            .map(|(i, &c)| ((i as i64 + 1) * 60_000, h(c, c, &[c])))
            .collect();
        let (v, _) = run("increase", &s, 0, 240_000);
        let Some(HistValue::Histogram(r)) = v else {
            panic!("no histogram")
        };
        // Start gap 60s < 66s; zero point 180 * 10/25 = 72s > 60s → factor (180+60)/180.
        assert!((r.count - 25.0 * 240.0 / 180.0).abs() < 1e-9, "{}", r.count);
        let (v, _) = run("resets", &s, 0, 240_000);
        assert_eq!(v, Some(HistValue::Float(1.0)));
        let (v, _) = run("changes", &s, 0, 240_000);
        assert_eq!(v, Some(HistValue::Float(3.0)));
    }

    #[test]
    fn sum_avg_and_simple_functions() {
        // functions.test metric13 {{schema:0 sum:1 count:1}}x5 → sum {{sum:5 count:5}}, avg 1.
        let s: Vec<(i64, FloatHistogram)> =
            (0..5).map(|i| (i * 10_000, h(1.0, 1.0, &[]))).collect();
        let (v, _) = run("sum_over_time", &s, -1, 40_000);
        let Some(HistValue::Histogram(r)) = v else {
            panic!()
        };
        assert_eq!((r.count, r.sum), (5.0, 5.0));
        let (v, _) = run("avg_over_time", &s, -1, 40_000);
        let Some(HistValue::Histogram(r)) = v else {
            panic!()
        };
        assert_eq!((r.count, r.sum), (1.0, 1.0));
        assert_eq!(
            run("count_over_time", &s, -1, 40_000).0,
            Some(HistValue::Float(5.0))
        );
        assert_eq!(run("max_over_time", &s, -1, 40_000).0, None);
        let mixed = vec![
            (0, h(1.0, 1.0, &[1.0])),
            (
                1000,
                FloatHistogram {
                    schema: -53,
                    count: 1.0,
                    ..Default::default()
                },
            ),
        ];
        let (v, annos) = run("sum_over_time", &mixed, -1, 1000);
        assert_eq!(v, None);
        assert_eq!(
            annos,
            vec![Annotation::MixedExponentialCustomHistograms {
                metric_name: "m".into()
            }]
        );
    }
}
