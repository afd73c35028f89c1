//! Turning one scrape's body into appended samples: parsing (format by `Content-Type`), the
//! series cache, target labels (`honor_labels`), `metric_relabel_configs`, limits, staleness
//! markers, the synthetic `up`/`scrape_*` series and metadata.
//!
//! The hot path is one hash lookup per sample: the cache maps the series text exactly as the
//! target wrote it (`name{a="b"}`) to its final label set, so a series seen before is neither
//! re-parsed into labels, relabeled, nor allocated. Each entry also keeps the storage's
//! reference of the series, which later appends pass so the storage skips its own lookup by
//! labels (as Prometheus's `Append(ref, …)`; a reference no longer in the head falls back to
//! the labels). Each cache entry remembers the iteration it was last seen in; after a successful scrape every series seen in the previous successful
//! scrape and not in this one gets a staleness marker (`StaleNaN`), and after a failed scrape
//! every series of the previous successful one does. Series with a timestamp in the body (with
//! `honor_timestamps`) are not tracked for staleness, as in Prometheus.

use std::collections::{HashMap, HashSet};

use tsdb::chunkenc::stale_nan;
use tsdb::head::SeriesRef;
use tsdb::labels::{Label, Labels, METRIC_NAME};
use tsdb::Error;

use super::target::{MetricMetadata, ScrapeJob, TargetMetadata};
use crate::server::storage::{Storage, StorageAppender};
use crate::textparse::{
    self, Entry, LabelIter, MetricType, OpenMetricsParser, ParseError, PromTextParser,
};

/// Cache entries not seen for this many scrapes are evicted.
const CACHE_KEEP_ITERATIONS: u64 = 10;

/// Names of the synthetic series, in the order [`ScrapeState`] appends them.
pub const REPORT_NAMES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// A fast non-cryptographic hasher for the series cache (keys are series texts of the
/// scraped target, a few dozen bytes; SipHash would cost more than the parse).
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
        self.0 = h;
    }
    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

struct CacheEntry {
    /// Final labels; `None` when metric relabeling drops the series.
    labels: Option<Labels>,
    /// The storage's reference of the series `labels`, once an append returned one: later
    /// appends pass it and skip the lookup by labels. It is only ever used for this entry's
    /// labels; the storage falls back to the labels if the series left the head.
    sref: Option<SeriesRef>,
    /// Iteration the series was last seen in.
    seen: u64,
    /// The value of `seen` before the current iteration (to undo a failed scrape).
    prev_seen: u64,
    /// Whether the series takes part in staleness (no explicit timestamp).
    track: bool,
}

/// Counts of one scrape, as reported in the synthetic series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeCounts {
    /// Samples in the body (`scrape_samples_scraped`).
    pub total: u64,
    /// Samples left after metric relabeling (`scrape_samples_post_metric_relabeling`).
    pub added: u64,
    /// Series new to the cache (`scrape_series_added`).
    pub series_added: u64,
    /// Samples rejected by the storage as out of order, duplicate or out of bounds.
    pub rejected: u64,
}

/// A failed scrape: the message for `lastError` and the counts up to the failure.
#[derive(Debug)]
pub struct ScrapeFailure {
    /// Why it failed.
    pub msg: String,
    /// Counts up to the failure.
    pub counts: ScrapeCounts,
}

/// The per-target state kept between scrapes.
pub struct ScrapeState {
    cache: HashMap<Box<str>, CacheEntry, FxBuild>,
    /// Current iteration (incremented per scrape).
    iter: u64,
    /// Iteration of the last successful scrape whose series are still "live".
    prev_ok: Option<u64>,
    /// Labels of the synthetic series (target labels plus `__name__`).
    report_labels: [Labels; 5],
    /// Storage references of the synthetic series.
    report_refs: [Option<SeriesRef>; 5],
    target_labels: Labels,
    metadata: TargetMetadata,
    metadata_changed: bool,
    /// Whether report series were written (so they get staleness markers at the end).
    reported: bool,
}

/// Either parser behind one interface.
enum AnyParser<'a> {
    Om(OpenMetricsParser<'a>),
    Text(PromTextParser<'a>),
}

impl<'a> AnyParser<'a> {
    fn for_content_type(ct: &str, body: &'a str) -> Self {
        if ct
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/openmetrics-text")
        {
            AnyParser::Om(OpenMetricsParser::new(body))
        } else {
            AnyParser::Text(PromTextParser::new(body))
        }
    }

    #[inline]
    fn next_entry(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        match self {
            AnyParser::Om(p) => p.next_entry(),
            AnyParser::Text(p) => p.next_entry(),
        }
    }

    fn labels(&self) -> LabelIter<'_, 'a> {
        match self {
            AnyParser::Om(p) => p.labels(),
            AnyParser::Text(p) => p.labels(),
        }
    }
}

/// Whether a storage error rejects only the one sample (Prometheus counts and skips these).
fn sample_level(e: &Error) -> bool {
    matches!(
        e,
        Error::OutOfOrderSample
            | Error::DuplicateSampleForTimestamp
            | Error::OutOfBounds
            | Error::TooOldSample
    )
}

/// Applies the target's labels to scraped labels as Prometheus's `mutateSampleLabels` does:
/// with `honor_labels` the scraped value wins; otherwise the target's wins and the scraped one
/// is kept as `exported_<name>` (more `exported_` prefixes while that name is taken).
pub fn apply_target_labels(scraped: Labels, target: &Labels, honor_labels: bool) -> Labels {
    if target.is_empty() {
        return scraped;
    }
    let mut v = scraped.into_vec();
    if honor_labels {
        for t in target.iter() {
            if !v.iter().any(|l| l.name == t.name) {
                v.push(t.clone());
            }
        }
        return Labels::new(v);
    }
    let mut renamed: Vec<Label> = Vec::new();
    v.retain(|l| {
        if target.has(&l.name) {
            renamed.push(l.clone());
            false
        } else {
            true
        }
    });
    for mut c in renamed {
        let mut name = format!("exported_{}", c.name);
        while target.has(&name) || v.iter().any(|l| l.name == name) {
            name.insert_str(0, "exported_");
        }
        c.name = name;
        v.push(c);
    }
    v.extend(target.iter().cloned());
    Labels::new(v)
}

fn truncate50(s: &str) -> &str {
    match s.char_indices().nth(50) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Checks `label_limit` and the name/value length limits (0: none).
fn check_label_limits(ls: &Labels, job: &ScrapeJob) -> Result<(), String> {
    let metric = ls.metric_name().unwrap_or("");
    if job.label_limit > 0 && ls.len() > job.label_limit {
        return Err(format!(
            "label_limit exceeded (metric: {}, number of labels: {}, limit: {})",
            truncate50(metric),
            ls.len(),
            job.label_limit
        ));
    }
    for l in ls.iter() {
        if job.label_name_length_limit > 0 && l.name.len() > job.label_name_length_limit {
            return Err(format!(
                "label_name_length_limit exceeded (metric: {}, label name: {}, length: {}, limit: {})",
                truncate50(metric),
                truncate50(&l.name),
                l.name.len(),
                job.label_name_length_limit
            ));
        }
        if job.label_value_length_limit > 0 && l.value.len() > job.label_value_length_limit {
            return Err(format!(
                "label_value_length_limit exceeded (metric: {}, label value: {}, length: {}, limit: {})",
                truncate50(metric),
                truncate50(&l.value),
                l.value.len(),
                job.label_value_length_limit
            ));
        }
    }
    Ok(())
}

impl ScrapeState {
    /// Fresh state for a target whose series get `target_labels`.
    pub fn new(target_labels: Labels) -> Self {
        let report_labels = REPORT_NAMES.map(|n| target_labels.with(METRIC_NAME, n));
        ScrapeState {
            cache: HashMap::default(),
            iter: 0,
            prev_ok: None,
            report_labels,
            report_refs: [None; 5],
            target_labels,
            metadata: TargetMetadata::new(),
            metadata_changed: false,
            reported: false,
        }
    }

    /// The metadata of the latest successful scrape, if it changed since the last call.
    pub fn take_metadata_if_changed(&mut self) -> Option<TargetMetadata> {
        if std::mem::take(&mut self.metadata_changed) {
            Some(self.metadata.clone())
        } else {
            None
        }
    }

    /// Number of series in the cache.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Processes one scrape at time `t` (ms): `body` is the fetched response (content type,
    /// bytes) or the fetch error. Appends the samples (all or nothing), staleness markers and
    /// the synthetic series with `duration` seconds, committing once. Returns the counts, or
    /// the failure for `lastError`.
    pub fn scrape(
        &mut self,
        storage: &dyn Storage,
        job: &ScrapeJob,
        body: Result<(&str, &[u8]), String>,
        t: i64,
        duration: f64,
    ) -> Result<ScrapeCounts, ScrapeFailure> {
        self.iter += 1;
        let outcome = match body {
            Ok((ct, bytes)) => {
                let mut app = storage.appender();
                match self.append_body(app.as_mut(), job, ct, bytes, t) {
                    Ok(counts) => {
                        self.mark_stale(app.as_mut(), t, false);
                        self.prev_ok = Some(self.iter);
                        match app.commit() {
                            Ok(()) => Ok(counts),
                            Err(e) => {
                                self.prev_ok = None;
                                Err(ScrapeFailure {
                                    msg: format!("committing samples: {e}"),
                                    counts,
                                })
                            }
                        }
                    }
                    Err(f) => {
                        let _ = app.rollback();
                        Err(f)
                    }
                }
            }
            Err(msg) => Err(ScrapeFailure {
                msg,
                counts: ScrapeCounts::default(),
            }),
        };
        let mut app = storage.appender();
        if outcome.is_err() {
            self.mark_stale(app.as_mut(), t, true);
            self.prev_ok = None;
        }
        let (up, c) = match &outcome {
            Ok(c) => (1.0, *c),
            Err(f) => (0.0, f.counts),
        };
        let values = [
            up,
            duration,
            c.total as f64,
            c.added as f64,
            c.series_added as f64,
        ];
        for ((ls, sref), v) in self
            .report_labels
            .iter()
            .zip(self.report_refs.iter_mut())
            .zip(values)
        {
            match app.append_ref(*sref, ls, t, v) {
                Ok(r) => *sref = r,
                Err(e) if !sample_level(&e) => {
                    tracing::warn!(err = %e, series = %ls, "appending scrape report failed");
                }
                Err(_) => {}
            }
        }
        self.reported = true;
        if let Err(e) = app.commit() {
            tracing::warn!(err = %e, "committing scrape report failed");
        }
        self.evict();
        outcome
    }

    /// Writes staleness markers at `t` for every live series and the synthetic ones: the
    /// target went away.
    pub fn stop(&mut self, storage: &dyn Storage, t: i64) {
        self.iter += 1;
        let mut app = storage.appender();
        self.mark_stale(app.as_mut(), t, true);
        self.prev_ok = None;
        if self.reported {
            for (ls, sref) in self.report_labels.iter().zip(self.report_refs) {
                let _ = app.append_ref(sref, ls, t, stale_nan());
            }
        }
        if let Err(e) = app.commit() {
            tracing::warn!(err = %e, "committing staleness markers failed");
        }
    }

    /// Appends staleness markers for series seen in the previous successful scrape and not in
    /// this one (`all`: regardless of this one, which failed).
    fn mark_stale(&mut self, app: &mut dyn StorageAppender, t: i64, all: bool) {
        let Some(prev) = self.prev_ok else { return };
        let iter = self.iter;
        for e in self.cache.values_mut() {
            let (Some(ls), true) = (&e.labels, e.track) else {
                continue;
            };
            let last = if e.seen == iter { e.prev_seen } else { e.seen };
            let gone = if all {
                last == prev
            } else {
                e.seen != iter && e.seen == prev
            };
            if gone {
                match app.append_ref(e.sref, ls, t, stale_nan()) {
                    Ok(r) => e.sref = r,
                    Err(err) if !sample_level(&err) => {
                        tracing::debug!(err = %err, series = %ls, "staleness marker failed");
                    }
                    Err(_) => {}
                }
            }
        }
    }

    fn evict(&mut self) {
        let iter = self.iter;
        if iter.is_multiple_of(CACHE_KEEP_ITERATIONS) {
            self.cache.retain(|_, e| {
                e.seen + CACHE_KEEP_ITERATIONS > iter || Some(e.seen) == self.prev_ok
            });
        }
    }

    fn append_body(
        &mut self,
        app: &mut dyn StorageAppender,
        job: &ScrapeJob,
        ct: &str,
        bytes: &[u8],
        scrape_t: i64,
    ) -> Result<ScrapeCounts, ScrapeFailure> {
        let mut counts = ScrapeCounts::default();
        let fail = |msg: String, counts: ScrapeCounts| ScrapeFailure { msg, counts };
        let body = match std::str::from_utf8(bytes) {
            Ok(b) => b,
            Err(e) => {
                return Err(fail(
                    format!("body is not valid UTF-8 at byte {}", e.valid_up_to()),
                    counts,
                ))
            }
        };
        let mut parser = AnyParser::for_content_type(ct, body);
        let mut families: HashSet<&str> = HashSet::new();
        let iter = self.iter;
        loop {
            let entry = match parser.next_entry() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => return Err(fail(e.to_string(), counts)),
            };
            let s = match entry {
                Entry::Series(s) => s,
                Entry::Type { metric, kind } => {
                    families.insert(metric);
                    self.set_meta(metric, |m| set_if(&mut m.kind, kind.as_str()));
                    continue;
                }
                Entry::Help { metric, text } => {
                    families.insert(metric);
                    self.set_meta(metric, |m| set_if(&mut m.help, &text));
                    continue;
                }
                Entry::Unit { metric, unit } => {
                    families.insert(metric);
                    self.set_meta(metric, |m| set_if(&mut m.unit, unit));
                    continue;
                }
                Entry::Comment(_) => continue,
            };
            counts.total += 1;
            let explicit_t = if job.honor_timestamps {
                s.timestamp
            } else {
                None
            };
            let t = explicit_t.unwrap_or(scrape_t);
            match self.cache.get_mut(s.series) {
                Some(e) => {
                    if e.seen != iter {
                        e.prev_seen = e.seen;
                        e.seen = iter;
                    }
                    e.track = explicit_t.is_none();
                    if let Some(ls) = &e.labels {
                        push_sample(app, job, ls, &mut e.sref, t, s.value, s.series, &mut counts)?;
                    }
                }
                None => {
                    let scraped = textparse::to_tsdb_labels(s.name, parser.labels());
                    let ls = apply_target_labels(scraped, &self.target_labels, job.honor_labels);
                    let ls = match &job.metric_relabel {
                        Some(f) => f(&ls),
                        None => Some(ls),
                    };
                    let mut sref = None;
                    if let Some(ls) = &ls {
                        check_label_limits(ls, job).map_err(|m| fail(m, counts))?;
                        counts.series_added += 1;
                        push_sample(app, job, ls, &mut sref, t, s.value, s.series, &mut counts)?;
                    }
                    self.cache.insert(
                        s.series.into(),
                        CacheEntry {
                            labels: ls,
                            sref,
                            seen: iter,
                            prev_seen: 0,
                            track: explicit_t.is_none(),
                        },
                    );
                }
            }
        }
        if counts.rejected > 0 {
            tracing::debug!(
                rejected = counts.rejected,
                "samples rejected as out of order, duplicate or out of bounds"
            );
        }
        let before = self.metadata.len();
        self.metadata.retain(|k, _| families.contains(k.as_str()));
        if self.metadata.len() != before {
            self.metadata_changed = true;
        }
        Ok(counts)
    }

    fn set_meta(&mut self, metric: &str, f: impl FnOnce(&mut MetricMetadata) -> bool) {
        let changed = match self.metadata.get_mut(metric) {
            Some(m) => f(m),
            None => {
                let mut m = MetricMetadata {
                    kind: MetricType::Unknown.as_str().to_string(),
                    ..Default::default()
                };
                f(&mut m);
                self.metadata.insert(metric.to_string(), m);
                true
            }
        };
        self.metadata_changed |= changed;
    }
}

/// Counts and appends one sample, enforcing `sample_limit`; storage errors of one sample are
/// counted and skipped. `sref` is the cached storage reference of `ls`, updated from the append.
#[inline]
#[allow(clippy::too_many_arguments)]
fn push_sample(
    app: &mut dyn StorageAppender,
    job: &ScrapeJob,
    ls: &Labels,
    sref: &mut Option<SeriesRef>,
    t: i64,
    v: f64,
    series: &str,
    counts: &mut ScrapeCounts,
) -> Result<(), ScrapeFailure> {
    counts.added += 1;
    if job.sample_limit > 0 && counts.added > job.sample_limit as u64 {
        return Err(ScrapeFailure {
            msg: format!("sample limit exceeded (limit {})", job.sample_limit),
            counts: *counts,
        });
    }
    match app.append_ref(*sref, ls, t, v) {
        Ok(r) => *sref = r,
        Err(e) if sample_level(&e) => counts.rejected += 1,
        Err(e) => {
            return Err(ScrapeFailure {
                msg: format!("appending {series}: {e}"),
                counts: *counts,
            })
        }
    }
    Ok(())
}

/// Sets `dst` to `v` if it differs; returns whether it changed.
fn set_if(dst: &mut String, v: &str) -> bool {
    if dst != v {
        dst.clear();
        dst.push_str(v);
        true
    } else {
        false
    }
}
