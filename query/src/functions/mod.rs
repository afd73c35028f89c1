//! The PromQL function library: the per-sample arithmetic behind PromQL's functions, kept
//! apart from the evaluator so that each algorithm can be tested on its own.
//!
//! The engine selects series, slides range windows and handles labels; this module computes
//! numbers from the values it is handed, with Prometheus 3.x semantics:
//!
//! * [`range`] — functions over a range window of one series (`rate`, `*_over_time`, …):
//!   [`range::eval`] over a [`range::RangeCtx`];
//! * [`math`] — element-wise math of instant vectors (`abs`, `round`, `clamp`, …):
//!   [`math::eval`];
//! * [`time`] — calendar functions of Unix seconds (`hour`, `days_in_month`, …), UTC:
//!   [`time::eval`];
//! * [`extended`] — the `anchored`/`smoothed` range-selector forms of `rate`, `increase`,
//!   `delta`, `changes`, `resets`, and smoothed instant values;
//! * [`histogram`] — classic `le`-bucket histograms: [`histogram::bucket_quantile`],
//!   [`histogram::bucket_fraction`], [`histogram::parse_le`];
//! * [`native`], [`native_arith`], [`native_range`] — native histograms as float values
//!   ([`native::FloatHistogram`]): their quantile, fraction, stddev/stdvar; addition,
//!   subtraction, reset detection; and the range functions over histogram samples;
//! * [`aggregate`] — helpers the aggregation operators share: [`aggregate::quantile`],
//!   [`aggregate::KahanSum`], [`aggregate::Mean`], [`aggregate::Variance`], `limit_ratio`
//!   sampling;
//! * [`label`] — `label_replace`, `label_join` and the natural order of `sort_by_label`;
//! * [`annotation`] — the warnings and infos functions (and the engine) raise, rendering
//!   Prometheus's exact texts; re-exported here as [`Annotation`];
//! * [`gofmt`] — Go's float formatting (`%g`, `FormatOpenMetricsFloat`) for texts and labels.

pub mod aggregate;
pub mod annotation;
pub mod extended;
pub mod gofmt;
pub mod histogram;
pub mod label;
pub mod math;
pub mod native;
pub mod native_arith;
pub mod native_range;
pub mod range;
pub mod time;

pub use annotation::Annotation;
