//! The experimental `anchored` and `smoothed` range-selector modifiers (Prometheus 3.x,
//! `--enable-feature=promql-extended-range-selectors`) for float samples.
//!
//! * `m[5m] anchored` — the window also includes the last sample at or before its start
//!   (within the lookback delta), so `increase`/`rate`/`delta` take the exact difference
//!   from that anchor to the last sample, without extrapolation, and `changes`/`resets`
//!   compare against it.
//! * `m[5m] smoothed` — the values at both window boundaries are linearly interpolated from
//!   the neighbouring samples (within the lookback delta on either side), and
//!   `increase`/`rate`/`delta` take the difference of those boundary values. An instant
//!   selector `m smoothed` interpolates the value at the evaluation time
//!   ([`smoothed_value`]).
//!
//! The engine selects the extra samples: for `anchored`, the samples in
//! `(range_start − lookback, range_end]`; for `smoothed`, those in
//! `(range_start − lookback, range_end + lookback]`, passed as [`RangeCtx::samples`] with the
//! nominal window in `range_start`/`range_end`. Only `rate`, `increase`, `delta`, `changes`
//! and `resets` accept `anchored`, and only `rate`, `increase` and `delta` accept `smoothed`
//! ([`allowed`]); Prometheus fails the query for any other function.

use crate::functions::range::RangeCtx;

/// Which extended range selector the samples come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `anchored`
    Anchored,
    /// `smoothed`
    Smoothed,
}

/// Whether function `name` accepts a range selector with `mode`.
pub fn allowed(name: &str, mode: Mode) -> bool {
    match mode {
        Mode::Anchored => matches!(name, "rate" | "increase" | "delta" | "changes" | "resets"),
        Mode::Smoothed => matches!(name, "rate" | "increase" | "delta"),
    }
}

/// The error text Prometheus fails a query with when `name` does not accept `mode`.
pub fn not_allowed_error(name: &str, mode: Mode) -> String {
    match mode {
        Mode::Anchored => format!(
            "anchored modifier can only be used with: changes, delta, increase, rate, resets - not with {name}"
        ),
        Mode::Smoothed => format!(
            "smoothed modifier can only be used with: delta, increase, rate - not with {name}"
        ),
    }
}

/// Computes `rate`, `increase`, `delta`, `changes` or `resets` over an extended window (see
/// the module docs for which samples `ctx` must hold). `None` when there is no output.
pub fn eval(name: &str, ctx: &mut RangeCtx, mode: Mode) -> Option<f64> {
    let s = ctx.samples;
    if s.is_empty() || !allowed(name, mode) {
        return None;
    }
    match name {
        "rate" => extended_rate(ctx, mode, true, true),
        "increase" => extended_rate(ctx, mode, true, false),
        "delta" => extended_rate(ctx, mode, false, false),
        "changes" | "resets" => {
            // Start at the anchor: the last sample at or before the window start.
            let after = s.partition_point(|p| p.0 <= ctx.range_start);
            if after >= s.len() {
                return None; // nothing strictly inside the window
            }
            let first = after.saturating_sub(1);
            let w = &s[first..];
            let n = if name == "changes" {
                w.windows(2)
                    .filter(|p| p[1].1 != p[0].1 && !(p[1].1.is_nan() && p[0].1.is_nan()))
                    .count()
            } else {
                w.windows(2).filter(|p| p[1].1 < p[0].1).count()
            };
            Some(n as f64)
        }
        _ => None,
    }
}

/// Linear interpolation between two samples at `t`; for counters a decrease is taken as a
/// reset to zero first.
fn interpolate(p1: (i64, f64), p2: (i64, f64), t: i64, is_counter: bool) -> f64 {
    let mut y1 = p1.1;
    let y2 = p2.1;
    if is_counter && y2 < y1 {
        y1 = 0.0;
    }
    y1 + (y2 - y1) * (t - p1.0) as f64 / (p2.0 - p1.0) as f64
}

fn extended_rate(ctx: &RangeCtx, mode: Mode, is_counter: bool, is_rate: bool) -> Option<f64> {
    let f = ctx.samples;
    let smoothed = mode == Mode::Smoothed;
    let (range_start, range_end) = (ctx.range_start, ctx.range_end);
    let mut last = f.len() - 1;
    // The last sample at or before the window start (or the first sample).
    let mut first = f[..last]
        .partition_point(|p| p.0 <= range_start)
        .saturating_sub(1);
    if smoothed {
        // The first sample at or after the window end (or the last sample).
        last = f[..last].partition_point(|p| p.0 < range_end);
    }
    if f[last].0 <= range_start {
        return None;
    }
    if smoothed && f[first].0 > range_end {
        return None;
    }
    let left = if smoothed && f[first].0 < range_start {
        interpolate(f[first], f[first + 1], range_start, is_counter)
    } else {
        f[first].1
    };
    let right = if smoothed && last > 0 && f[last].0 > range_end {
        interpolate(f[last - 1], f[last], range_end, is_counter)
    } else {
        f[last].1
    };
    let mut result = right - left;
    if is_counter {
        // Resets strictly inside the window; the boundary values already handle the edges.
        if f[first].0 <= range_start {
            first += 1;
        }
        let end = if f[last].0 >= range_end {
            last
        } else {
            last + 1
        };
        let inner = if first < end { &f[first..end] } else { &[][..] };
        let mut prev = left;
        let mut correction = 0.0;
        for &(_, v) in inner {
            if v < prev {
                correction += prev;
            }
            prev = v;
        }
        if right < prev {
            correction += prev;
        }
        result += correction;
    }
    if is_rate {
        result /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result)
}

/// The value of a `smoothed` instant selector at time `t` (ms) from the samples within the
/// lookback delta on both sides of `t`: the sample at `t` if there is one, else the linear
/// interpolation between its neighbours, else the last earlier sample; `None` when every
/// sample is later than `t`.
pub fn smoothed_value(samples: &[(i64, f64)], t: i64) -> Option<f64> {
    let i = samples.partition_point(|p| p.0 < t);
    if i < samples.len() && samples[i].0 == t {
        Some(samples[i].1)
    } else if i > 0 && i < samples.len() {
        Some(interpolate(samples[i - 1], samples[i], t, false))
    } else if i > 0 {
        Some(samples[i - 1].1)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOKBACK: i64 = 300_000;

    /// Evaluates like extended_vectors.test: samples every `step` ms from 0 (`None` = gap).
    fn run(
        name: &str,
        vals: &[Option<f64>],
        step: i64,
        at: i64,
        range: i64,
        mode: Mode,
    ) -> Option<f64> {
        let (start, end) = (at - range, at);
        let (lo, hi) = match mode {
            Mode::Anchored => (start - LOOKBACK, end),
            Mode::Smoothed => (start - LOOKBACK, end + LOOKBACK),
        };
        let s: Vec<(i64, f64)> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i as i64 * step, v)))
            .filter(|&(t, _)| t > lo && t <= hi)
            .collect();
        let mut annotations = Vec::new();
        let mut ctx = RangeCtx {
            samples: &s,
            range_start: start,
            range_end: end,
            params: &[],
            annotations: &mut annotations,
        };
        eval(name, &mut ctx, mode)
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        matches!(a, Some(a) if a == b || (a - b).abs() / (a.abs() + b.abs()) < 1e-6)
    }

    fn seq(parts: &[(f64, usize)]) -> Vec<Option<f64>> {
        let mut out = Vec::new();
        for &(start, n) in parts {
            if start.is_nan() {
                out.extend(std::iter::repeat_n(None, n));
            } else {
                out.extend((0..=n).map(|i| Some(start + i as f64)));
            }
        }
        out
    }

    #[test]
    fn complete_dataset_prom52() {
        // load 15s: metric 1+1x4 9+1x4
        let m = seq(&[(1.0, 4), (9.0, 4)]);
        let times = [5, 20, 35, 50, 65, 80, 95, 110, 125];
        let anchored = [0.0, 1.0, 2.0, 3.0, 4.0, 7.0, 7.0, 7.0, 7.0];
        let smoothed = [
            0.333333333,
            1.333333333,
            2.333333333,
            3.333333333,
            5.0,
            7.0,
            7.0,
            7.0,
            6.0,
        ];
        for (k, t) in times.iter().enumerate() {
            let at = t * 1000;
            let a = run("increase", &m, 15_000, at, 60_000, Mode::Anchored);
            assert!(close(a, anchored[k]), "anchored at {t}s: {a:?}");
            let s = run("increase", &m, 15_000, at, 60_000, Mode::Smoothed);
            assert!(close(s, smoothed[k]), "smoothed at {t}s: {s:?}");
        }
    }

    #[test]
    fn partial_dataset_prom52() {
        // load 15s: metric 1+1x2 _ _ 9+1x4
        let m = seq(&[(1.0, 2), (f64::NAN, 2), (9.0, 4)]);
        let times = [5, 20, 35, 50, 65, 80, 95, 110, 125];
        let anchored = [0.0, 1.0, 2.0, 2.0, 2.0, 7.0, 7.0, 8.0, 9.0];
        let smoothed = [
            0.333333333,
            1.333333333,
            2.666666666,
            4.666666666,
            6.333333333,
            7.0,
            6.666666666,
            5.666666666,
            4.666666666,
        ];
        for (k, t) in times.iter().enumerate() {
            let a = run("increase", &m, 15_000, t * 1000, 60_000, Mode::Anchored);
            assert!(close(a, anchored[k]), "anchored at {t}s: {a:?}");
            let s = run("increase", &m, 15_000, t * 1000, 60_000, Mode::Smoothed);
            assert!(close(s, smoothed[k]), "smoothed at {t}s: {s:?}");
        }
    }

    fn vals(xs: &[f64]) -> Vec<Option<f64>> {
        xs.iter()
            .map(|&x| if x.is_nan() { None } else { Some(x) })
            .collect()
    }

    #[test]
    fn left_open_and_resets_from_extended_vectors_test() {
        let gap = f64::NAN;
        let m = vals(&[1.0, 2.0, gap, 4.0, 5.0]);
        assert!(close(
            run("increase", &m, 60_000, 120_000, 60_000, Mode::Smoothed),
            1.0
        ));
        assert_eq!(
            run("increase", &m, 60_000, 120_000, 60_000, Mode::Anchored),
            None
        );

        // metric{id="1"} 1+1x4 1+1x4, {id="2"} 3 2+2x9, {id="3"} 5+3x2 3+3x6
        let id1 = seq(&[(1.0, 4), (1.0, 4)]);
        let id2: Vec<Option<f64>> = std::iter::once(Some(3.0))
            .chain((0..=9).map(|i| Some(2.0 + 2.0 * i as f64)))
            .collect();
        let id3: Vec<Option<f64>> = (0..=2)
            .map(|i| Some(5.0 + 3.0 * i as f64))
            .chain((0..=6).map(|i| Some(3.0 + 3.0 * i as f64)))
            .collect();
        let ids = [&id1, &id2, &id3];
        for (id, want) in ids.iter().zip([1.0, 2.0, 3.0]) {
            for mode in [Mode::Smoothed, Mode::Anchored] {
                assert!(
                    close(run("increase", id, 60_000, 90_000, 60_000, mode), want),
                    "{mode:?}"
                );
            }
        }
        for (at, wants) in [
            (90_000, [1.0, -1.0, 3.0]),
            (180_000, [1.0, 2.0, -8.0]),
            (210_000, [1.0, 2.0, -8.0]),
        ] {
            for (id, want) in ids.iter().zip(wants) {
                assert!(
                    close(run("delta", id, 60_000, at, 60_000, Mode::Anchored), want),
                    "delta at {at}"
                );
            }
        }
        for (id, want) in ids.iter().zip([5.0, 10.0, 15.0]) {
            assert!(close(
                run("increase", id, 60_000, 375_000, 300_000, Mode::Smoothed),
                want
            ));
            assert!(close(
                run("increase", id, 60_000, 360_000, 300_000, Mode::Smoothed),
                want
            ));
            assert!(close(
                run("increase", id, 60_000, 300_000, 300_000, Mode::Anchored),
                want
            ));
            assert_eq!(
                run("increase", id, 60_000, 900_000, 300_000, Mode::Anchored),
                None
            );
        }
        // Smoothed delta: {id="1"} 11 -1 100 0, {id="2"} 0 0 100 0 0 11 -1.
        let d1 = vals(&[11.0, -1.0, 100.0, 0.0]);
        let d2 = vals(&[0.0, 0.0, 100.0, 0.0, 0.0, 11.0, -1.0]);
        assert!(close(
            run("delta", &d1, 60_000, 330_000, 300_000, Mode::Smoothed),
            -5.0
        ));
        assert!(close(
            run("delta", &d2, 60_000, 330_000, 300_000, Mode::Smoothed),
            5.0
        ));
        assert!(close(
            run("delta", &d1, 60_000, 345_000, 300_000, Mode::Smoothed),
            -2.0
        ));
        assert!(close(
            run("delta", &d2, 60_000, 345_000, 300_000, Mode::Smoothed),
            2.0
        ));
        // Counter interpolation across resets.
        let r = vals(&[9.0, 8.0, 5.0, 4.0]);
        assert!(close(
            run("increase", &r, 60_000, 135_000, 120_000, Mode::Smoothed),
            12.0
        ));
        let r = vals(&[100.0, 10.0]);
        assert!(close(
            run("rate", &r, 15_000, 12_000, 10_000, Mode::Smoothed),
            0.666666666666667
        ));
    }

    #[test]
    fn anchored_changes_and_resets() {
        // {id="1"} 1+1x10, {id="2"} 1 1+1x10, {id="3"} 99-1x10, {id="4"} 99 99-1x10
        let id1: Vec<Option<f64>> = (0..=10).map(|i| Some(1.0 + i as f64)).collect();
        let id2: Vec<Option<f64>> = std::iter::once(Some(1.0))
            .chain(id1.iter().copied())
            .collect();
        let id3: Vec<Option<f64>> = (0..=10).map(|i| Some(99.0 - i as f64)).collect();
        let id4: Vec<Option<f64>> = std::iter::once(Some(99.0))
            .chain(id3.iter().copied())
            .collect();
        let ids = [&id1, &id2, &id3, &id4];
        for (at, wants) in [
            (300_000, [5.0, 4.0, 5.0, 4.0]),
            (360_000, [5.0; 4]),
            (330_000, [5.0, 4.0, 5.0, 4.0]),
        ] {
            for (id, want) in ids.iter().zip(wants) {
                assert_eq!(
                    run("changes", id, 60_000, at, 300_000, Mode::Anchored),
                    Some(want),
                    "at {at}"
                );
            }
        }
        for (id, want) in ids.iter().zip([0.0, 0.0, 5.0, 4.0]) {
            assert_eq!(
                run("resets", id, 60_000, 330_000, 300_000, Mode::Anchored),
                Some(want)
            );
        }
        // {id="1"} 2 _ 1 _ _ _ _ _ 0, {id="2"} 99-1x10
        let gap = f64::NAN;
        let a = vals(&[2.0, gap, 1.0, gap, gap, gap, gap, gap, 0.0]);
        let b = &id3;
        for f in ["changes", "resets"] {
            assert_eq!(
                run(f, &a, 60_000, 120_000, 60_000, Mode::Anchored),
                Some(1.0)
            );
            assert_eq!(
                run(f, b, 60_000, 120_000, 60_000, Mode::Anchored),
                Some(1.0)
            );
            assert_eq!(run(f, &a, 60_000, 180_000, 60_000, Mode::Anchored), None);
            assert_eq!(
                run(f, b, 60_000, 180_000, 60_000, Mode::Anchored),
                Some(1.0)
            );
            assert_eq!(
                run(f, &a, 60_000, 480_000, 60_000, Mode::Anchored),
                Some(0.0)
            );
            assert_eq!(
                run(f, b, 60_000, 480_000, 60_000, Mode::Anchored),
                Some(1.0)
            );
            assert_eq!(
                run(f, &a, 60_000, 480_000, 60_001, Mode::Anchored),
                Some(1.0)
            );
            assert_eq!(
                run(f, b, 60_000, 480_000, 60_001, Mode::Anchored),
                Some(2.0)
            );
        }
    }

    #[test]
    fn allowed_functions_and_errors() {
        assert!(allowed("resets", Mode::Anchored));
        assert!(!allowed("resets", Mode::Smoothed));
        assert!(!allowed("max_over_time", Mode::Anchored));
        assert_eq!(
            not_allowed_error("max_over_time", Mode::Smoothed),
            "smoothed modifier can only be used with: delta, increase, rate - not with max_over_time"
        );
    }

    #[test]
    fn smoothed_instant_values() {
        // load 10s: metric 1+1x10, withreset 1+1x4 1+1x5, notregular 0 5 100 2 8.
        let around = |xs: &[f64], t: i64| -> Vec<(i64, f64)> {
            xs.iter()
                .enumerate()
                .map(|(i, &v)| (i as i64 * 10_000, v))
                .filter(|&(ts, _)| ts > t - LOOKBACK && ts <= t + LOOKBACK)
                .collect()
        };
        let metric: Vec<f64> = (0..=10).map(|i| 1.0 + i as f64).collect();
        assert_eq!(smoothed_value(&around(&metric, 10_000), 10_000), Some(2.0));
        assert_eq!(smoothed_value(&around(&metric, 15_000), 15_000), Some(2.5));
        assert_eq!(smoothed_value(&around(&metric, 5_000), 5_000), Some(1.5));
        assert_eq!(
            smoothed_value(&around(&metric, 105_000), 105_000),
            Some(11.0)
        );
        let withreset = [1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            smoothed_value(&around(&withreset, 45_000), 45_000),
            Some(3.0)
        );
        let notregular = [0.0, 5.0, 100.0, 2.0, 8.0];
        assert_eq!(
            smoothed_value(&around(&notregular, 30_000), 30_000),
            Some(2.0)
        );
        let s = [(10_000, 1.0), (20_000, 3.0)];
        assert_eq!(smoothed_value(&s, 10_000), Some(1.0));
        assert_eq!(smoothed_value(&s, 15_000), Some(2.0));
        assert_eq!(smoothed_value(&s, 25_000), Some(3.0));
        assert_eq!(smoothed_value(&s, 5_000), None);
    }
}
