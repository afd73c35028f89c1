//! Warnings and infos raised while evaluating PromQL, with Prometheus's exact texts.
//!
//! [`Annotation`]'s `Display` renders the text Prometheus returns when no query position is
//! attached (what the upstream test scripts compare against, and the key Prometheus
//! de-duplicates on). [`Annotation::render`] appends the position (`" (1:5)"`) and, for the
//! histogram monotonicity info, the detail suffix Prometheus adds in API responses.
//! [`Annotation::merge`] folds a repeated monotonicity info into one, as Prometheus does.

use std::fmt;

use crate::functions::gofmt::{format_g, format_g_prec};
use tsdb::labels::go_quote;

/// One warning or info annotation.
#[derive(Clone, Debug, PartialEq)]
pub enum Annotation {
    /// `PromQL warning: quantile value should be between 0 and 1, got <q>`.
    InvalidQuantile {
        /// The quantile given.
        q: f64,
    },
    /// `PromQL warning: ratio value should be between -1 and 1, got <r>, capping to <to>`.
    InvalidRatio {
        /// The ratio given.
        ratio: f64,
        /// The value it was capped to.
        capped_to: f64,
    },
    /// `PromQL warning: bucket label "le" is missing or has a malformed value of "<label>"
    /// [for metric name "<name>"]`.
    BadBucketLabel {
        /// Metric name (empty when the series has none).
        metric_name: String,
        /// The raw `le` value (empty when missing).
        label: String,
    },
    /// `PromQL warning: encountered a mix of histograms and floats for metric name "<name>"`.
    MixedFloatsHistograms {
        /// Metric name.
        metric_name: String,
    },
    /// `PromQL warning: encountered a mix of histograms and floats for aggregation`.
    MixedFloatsHistogramsAgg,
    /// `PromQL warning: vector contains a mix of classic and native histograms [for metric
    /// name "<name>"]`.
    MixedClassicNativeHistograms {
        /// Metric name (may be empty).
        metric_name: String,
    },
    /// `PromQL warning: this native histogram metric is not a counter: "<name>"`.
    NativeHistogramNotCounter {
        /// Metric name.
        metric_name: String,
    },
    /// `PromQL warning: this native histogram metric is not a gauge: "<name>"`.
    NativeHistogramNotGauge {
        /// Metric name.
        metric_name: String,
    },
    /// `PromQL warning: vector contains a mix of histograms with exponential and custom
    /// buckets schemas for metric name "<name>"`.
    MixedExponentialCustomHistograms {
        /// Metric name.
        metric_name: String,
    },
    /// `PromQL warning: incompatible bucket layout encountered for binary operator <op>`.
    IncompatibleBucketLayoutInBinOp {
        /// The operator, e.g. `+`.
        operator: String,
    },
    /// `PromQL warning: sort is ineffective for range queries since results are always
    /// ordered by labels`.
    SortInRangeQuery,
    /// `PromQL warning: conflicting counter resets during histogram <operation>`.
    HistogramCounterResetCollision {
        /// `addition`, `subtraction` or `aggregation`.
        operation: String,
    },
    /// `PromQL warning: sample has start time that overlaps with previous sample timestamp
    /// for metric "<name>"`.
    StartTimeOverlap {
        /// Metric name.
        metric_name: String,
    },
    /// `PromQL info: metric might not be a counter, name does not end in
    /// _total/_sum/_count/_bucket: "<name>"`.
    PossibleNonCounter {
        /// Metric name.
        metric_name: String,
    },
    /// `PromQL info: metric might not be a counter, __type__ label is not set to "counter" or
    /// "histogram", got "<type>": "<name>"`.
    PossibleNonCounterLabel {
        /// Metric name.
        metric_name: String,
        /// The `__type__` value found.
        type_label: String,
    },
    /// `PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see
    /// https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)
    /// [for metric name "<name>"]`.
    HistogramQuantileForcedMonotonicity {
        /// Metric name (may be empty).
        metric_name: String,
        /// Earliest evaluation timestamp (ms) where a fix was needed.
        min_ts: i64,
        /// Latest evaluation timestamp (ms) where a fix was needed.
        max_ts: i64,
        /// Lowest bucket upper bound that needed a fix.
        min_bucket: f64,
        /// Highest bucket upper bound that needed a fix.
        max_bucket: f64,
        /// Largest count decrease that was fixed.
        max_diff: f64,
        /// Number of merged occurrences minus one.
        count: usize,
    },
    /// `PromQL info: incompatible sample types encountered for binary operator "<op>": <lhs>
    /// <op> <rhs>`.
    IncompatibleTypesInBinOp {
        /// Left-hand type, e.g. `float`.
        lhs_type: String,
        /// The operator.
        operator: String,
        /// Right-hand type, e.g. `histogram`.
        rhs_type: String,
    },
    /// `PromQL info: ignored histogram in <aggregation> aggregation`.
    HistogramIgnoredInAggregation {
        /// Aggregation name, e.g. `max`.
        aggregation: String,
    },
    /// `PromQL info: ignored histograms in a range containing both floats and histograms for
    /// metric name "<name>"`.
    HistogramIgnoredInMixedRange {
        /// Metric name.
        metric_name: String,
    },
    /// `PromQL info: input to histogram_quantile has NaN observations, result is NaN [for
    /// metric name "<name>"]`.
    NativeHistogramQuantileNaNResult {
        /// Metric name (may be empty).
        metric_name: String,
    },
    /// `PromQL info: input to histogram_quantile has NaN observations, result is skewed higher
    /// [for metric name "<name>"]`.
    NativeHistogramQuantileNaNSkew {
        /// Metric name (may be empty).
        metric_name: String,
    },
    /// `PromQL info: input to histogram_fraction has NaN observations, which are excluded
    /// from all fractions [for metric name "<name>"]`.
    NativeHistogramFractionNaNs {
        /// Metric name (may be empty).
        metric_name: String,
    },
    /// `PromQL info: mismatched custom buckets were reconciled during <operation>`.
    MismatchedCustomBuckets {
        /// `addition`, `subtraction` or `aggregation`.
        operation: String,
    },
}

const WARN: &str = "PromQL warning";
const INFO: &str = "PromQL info";

fn for_metric(metric_name: &str) -> String {
    if metric_name.is_empty() {
        String::new()
    } else {
        format!(" for metric name {}", go_quote(metric_name))
    }
}

impl Annotation {
    /// Whether this is an info (`PromQL info: …`) rather than a warning.
    pub fn is_info(&self) -> bool {
        matches!(
            self,
            Annotation::PossibleNonCounter { .. }
                | Annotation::PossibleNonCounterLabel { .. }
                | Annotation::HistogramQuantileForcedMonotonicity { .. }
                | Annotation::IncompatibleTypesInBinOp { .. }
                | Annotation::HistogramIgnoredInAggregation { .. }
                | Annotation::HistogramIgnoredInMixedRange { .. }
                | Annotation::NativeHistogramQuantileNaNResult { .. }
                | Annotation::NativeHistogramQuantileNaNSkew { .. }
                | Annotation::NativeHistogramFractionNaNs { .. }
                | Annotation::MismatchedCustomBuckets { .. }
        )
    }

    /// Whether this is a warning (`PromQL warning: …`).
    pub fn is_warning(&self) -> bool {
        !self.is_info()
    }

    /// A monotonicity info for one evaluation at `ts` (ms), as histogram_quantile raises it.
    pub fn forced_monotonicity(
        metric_name: &str,
        ts: i64,
        min_bucket: f64,
        max_bucket: f64,
        max_diff: f64,
    ) -> Annotation {
        Annotation::HistogramQuantileForcedMonotonicity {
            metric_name: metric_name.to_string(),
            min_ts: ts,
            max_ts: ts,
            min_bucket,
            max_bucket,
            max_diff,
            count: 0,
        }
    }

    /// Folds `other` (an annotation with the same text) into `self`, as Prometheus merges
    /// repeated annotations: the monotonicity info widens its time and bucket ranges and
    /// counts occurrences; every other kind keeps the first.
    pub fn merge(&mut self, other: &Annotation) {
        if let (
            Annotation::HistogramQuantileForcedMonotonicity {
                metric_name,
                min_ts,
                max_ts,
                min_bucket,
                max_bucket,
                max_diff,
                count,
            },
            Annotation::HistogramQuantileForcedMonotonicity {
                metric_name: o_name,
                min_ts: o_min_ts,
                max_ts: o_max_ts,
                min_bucket: o_min_bucket,
                max_bucket: o_max_bucket,
                max_diff: o_max_diff,
                count: o_count,
            },
        ) = (self, other)
        {
            if metric_name != o_name {
                return;
            }
            *min_ts = (*min_ts).min(*o_min_ts);
            *max_ts = (*max_ts).max(*o_max_ts);
            *min_bucket = min_bucket.min(*o_min_bucket);
            *max_bucket = max_bucket.max(*o_max_bucket);
            *max_diff = max_diff.max(*o_max_diff);
            *count += o_count + 1;
        }
    }

    /// The text with position information, as Prometheus's API returns it: `position` is the
    /// `line:column` of the expression that raised it (e.g. `"1:6"`). The monotonicity info
    /// also gets its details (bucket range, max diff, sample count, time range).
    pub fn render(&self, position: &str) -> String {
        match self {
            Annotation::HistogramQuantileForcedMonotonicity {
                min_ts,
                max_ts,
                min_bucket,
                max_bucket,
                max_diff,
                count,
                ..
            } => format!(
                "{self}, from buckets {} to {}, with a max diff of {}, over {} samples from {} to {} ({position})",
                format_g(*min_bucket),
                format_g(*max_bucket),
                format_g_prec(*max_diff, 2),
                count + 1,
                rfc3339(min_ts.div_euclid(1000)),
                rfc3339(max_ts.div_euclid(1000)),
            ),
            _ => format!("{self} ({position})"),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds `secs`.
fn rfc3339(secs: i64) -> String {
    let (y, m, d) = crate::functions::time::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

impl fmt::Display for Annotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Annotation::InvalidQuantile { q } => write!(
                f,
                "{WARN}: quantile value should be between 0 and 1, got {}",
                format_g(*q)
            ),
            Annotation::InvalidRatio { ratio, capped_to } => write!(
                f,
                "{WARN}: ratio value should be between -1 and 1, got {}, capping to {}",
                format_g(*ratio),
                format_g(*capped_to)
            ),
            Annotation::BadBucketLabel { metric_name, label } => write!(
                f,
                "{WARN}: bucket label \"le\" is missing or has a malformed value of {}{}",
                go_quote(label),
                for_metric(metric_name)
            ),
            Annotation::MixedFloatsHistograms { metric_name } => write!(
                f,
                "{WARN}: encountered a mix of histograms and floats for metric name {}",
                go_quote(metric_name)
            ),
            Annotation::MixedFloatsHistogramsAgg => {
                write!(f, "{WARN}: encountered a mix of histograms and floats for aggregation")
            }
            Annotation::MixedClassicNativeHistograms { metric_name } => write!(
                f,
                "{WARN}: vector contains a mix of classic and native histograms{}",
                for_metric(metric_name)
            ),
            Annotation::NativeHistogramNotCounter { metric_name } => write!(
                f,
                "{WARN}: this native histogram metric is not a counter: {}",
                go_quote(metric_name)
            ),
            Annotation::NativeHistogramNotGauge { metric_name } => write!(
                f,
                "{WARN}: this native histogram metric is not a gauge: {}",
                go_quote(metric_name)
            ),
            Annotation::MixedExponentialCustomHistograms { metric_name } => write!(
                f,
                "{WARN}: vector contains a mix of histograms with exponential and custom buckets schemas for metric name {}",
                go_quote(metric_name)
            ),
            Annotation::IncompatibleBucketLayoutInBinOp { operator } => write!(
                f,
                "{WARN}: incompatible bucket layout encountered for binary operator {operator}"
            ),
            Annotation::SortInRangeQuery => write!(
                f,
                "{WARN}: sort is ineffective for range queries since results are always ordered by labels"
            ),
            Annotation::HistogramCounterResetCollision { operation } => write!(
                f,
                "{WARN}: conflicting counter resets during histogram {operation}"
            ),
            Annotation::StartTimeOverlap { metric_name } => write!(
                f,
                "{WARN}: sample has start time that overlaps with previous sample timestamp for metric {}",
                go_quote(metric_name)
            ),
            Annotation::PossibleNonCounter { metric_name } => write!(
                f,
                "{INFO}: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {}",
                go_quote(metric_name)
            ),
            Annotation::PossibleNonCounterLabel { metric_name, type_label } => write!(
                f,
                "{INFO}: metric might not be a counter, __type__ label is not set to \"counter\" or \"histogram\", got {}: {}",
                go_quote(type_label),
                go_quote(metric_name)
            ),
            Annotation::HistogramQuantileForcedMonotonicity { metric_name, .. } => write!(
                f,
                "{INFO}: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile){}",
                for_metric(metric_name)
            ),
            Annotation::IncompatibleTypesInBinOp { lhs_type, operator, rhs_type } => write!(
                f,
                "{INFO}: incompatible sample types encountered for binary operator {}: {lhs_type} {operator} {rhs_type}",
                go_quote(operator)
            ),
            Annotation::HistogramIgnoredInAggregation { aggregation } => {
                write!(f, "{INFO}: ignored histogram in {aggregation} aggregation")
            }
            Annotation::HistogramIgnoredInMixedRange { metric_name } => write!(
                f,
                "{INFO}: ignored histograms in a range containing both floats and histograms for metric name {}",
                go_quote(metric_name)
            ),
            Annotation::NativeHistogramQuantileNaNResult { metric_name } => write!(
                f,
                "{INFO}: input to histogram_quantile has NaN observations, result is NaN{}",
                for_metric(metric_name)
            ),
            Annotation::NativeHistogramQuantileNaNSkew { metric_name } => write!(
                f,
                "{INFO}: input to histogram_quantile has NaN observations, result is skewed higher{}",
                for_metric(metric_name)
            ),
            Annotation::NativeHistogramFractionNaNs { metric_name } => write!(
                f,
                "{INFO}: input to histogram_fraction has NaN observations, which are excluded from all fractions{}",
                for_metric(metric_name)
            ),
            Annotation::MismatchedCustomBuckets { operation } => write!(
                f,
                "{INFO}: mismatched custom buckets were reconciled during {operation}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_the_conformance_scripts() {
        assert_eq!(
            Annotation::InvalidQuantile { q: f64::NAN }.to_string(),
            "PromQL warning: quantile value should be between 0 and 1, got NaN"
        );
        assert_eq!(
            Annotation::InvalidQuantile { q: -0.5 }.to_string(),
            "PromQL warning: quantile value should be between 0 and 1, got -0.5"
        );
        assert_eq!(
            Annotation::BadBucketLabel { metric_name: "series".into(), label: "Hello World".into() }
                .to_string(),
            "PromQL warning: bucket label \"le\" is missing or has a malformed value of \"Hello World\" for metric name \"series\""
        );
        assert_eq!(
            Annotation::BadBucketLabel {
                metric_name: String::new(),
                label: String::new()
            }
            .to_string(),
            "PromQL warning: bucket label \"le\" is missing or has a malformed value of \"\""
        );
        assert_eq!(
            Annotation::SortInRangeQuery.to_string(),
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels"
        );
        assert_eq!(
            Annotation::MixedClassicNativeHistograms { metric_name: "series".into() }.to_string(),
            "PromQL warning: vector contains a mix of classic and native histograms for metric name \"series\""
        );
        assert_eq!(
            Annotation::PossibleNonCounter { metric_name: "foo".into() }.to_string(),
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"foo\""
        );
        assert_eq!(
            Annotation::NativeHistogramQuantileNaNResult { metric_name: "histogram_nan".into() }
                .to_string(),
            "PromQL info: input to histogram_quantile has NaN observations, result is NaN for metric name \"histogram_nan\""
        );
        assert_eq!(
            Annotation::HistogramCounterResetCollision {
                operation: "aggregation".into()
            }
            .to_string(),
            "PromQL warning: conflicting counter resets during histogram aggregation"
        );
        assert_eq!(
            Annotation::StartTimeOverlap { metric_name: "counter_total".into() }.to_string(),
            "PromQL warning: sample has start time that overlaps with previous sample timestamp for metric \"counter_total\""
        );
        assert!(Annotation::PossibleNonCounter {
            metric_name: "x".into()
        }
        .is_info());
        assert!(Annotation::InvalidQuantile { q: 2.0 }.is_warning());
    }

    #[test]
    fn monotonicity_info_merges_and_renders_details() {
        let mut a = Annotation::forced_monotonicity("h", 60_000, 0.5, 1.0, 3.0);
        let b = Annotation::forced_monotonicity("h", 120_000, 0.1, 0.5, 10.0);
        assert_eq!(a.to_string(), b.to_string());
        a.merge(&b);
        assert_eq!(
            a.to_string(),
            "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name \"h\""
        );
        assert_eq!(
            a.render("1:1"),
            format!("{a}, from buckets 0.1 to 1, with a max diff of 10, over 2 samples from 1970-01-01T00:01:00Z to 1970-01-01T00:02:00Z (1:1)")
        );
        assert_eq!(
            Annotation::SortInRangeQuery.render("1:1"),
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:1)"
        );
    }
}
