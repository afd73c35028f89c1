//! The PromQL function library: the per-sample arithmetic behind PromQL's functions, kept
//! apart from the evaluator so that each algorithm can be tested on its own.
//!
//! The engine selects series, slides range windows and handles labels; this module computes
//! numbers from the values it is handed, with Prometheus 3.x semantics:
//!
//! * [`range`] — functions over a range window of one series (`rate`, `*_over_time`, …);
//! * [`math`] — element-wise math of instant vectors (`abs`, `round`, `clamp`, …);
//! * [`time`] — calendar functions of Unix seconds (`hour`, `days_in_month`, …), UTC;
//! * [`histogram`] — classic `le`-bucket histograms (`histogram_quantile`,
//!   `histogram_fraction`);
//! * [`aggregate`] — helpers the aggregation operators share (`quantile`, Kahan summation);
//! * [`label`] — `label_replace` and `label_join`;
//! * [`annotation`] — the warnings and infos functions (and the engine) raise, rendering
//!   Prometheus's exact texts; re-exported here as [`Annotation`].

pub mod aggregate;
pub mod annotation;
pub mod gofmt;
pub mod histogram;
pub mod label;
pub mod math;
pub mod range;
pub mod time;

pub use annotation::Annotation;
