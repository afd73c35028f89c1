//! The remote write receiver, `POST /api/v1/write`.
//!
//! Body: a `prometheus.WriteRequest` (see [`super::proto`]) compressed with snappy's block
//! format (not the framed format), as remote write 1.0 specifies. The whole request is one
//! append transaction: a body that does not decompress or decode gets 400 with the reason and
//! nothing is appended; a sample the storage refuses as out of order, out of bounds or a
//! duplicate rolls the whole request back and gets 400 with the storage's message (so the
//! sender does not retry), and the rejection is counted in
//! `prometheus_tsdb_out_of_order_samples_total`. Success is 204.
//!
//! Remote write 2.0 (`Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request`,
//! labels interned in a symbol table) is accepted too, with Prometheus 3's semantics: samples
//! the storage refuses are skipped and reported together in a 400 answer while the others are
//! kept, and the answer carries `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written`.
//! Any other `proto=` gets 415.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;

use super::proto::zerocopy::{SeriesRef, WriteRequestRef};
#[cfg(test)]
use super::proto::WriteRequest;
use super::proto::{v2, Label};
use super::{snappy_decode, to_labels};
use crate::server::state::SharedState;

fn plain(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        msg + "\n",
    )
        .into_response()
}

/// What went wrong applying a request.
enum ApplyError {
    /// The sender's fault (400).
    Bad(String),
    /// Ours (500).
    Internal(String),
}

/// Checks one series' label pairs and writes them, sorted by name and without empty values,
/// into `out` (reusing its strings). Pairs already sorted with unique non-empty names and
/// non-empty values (what well-behaved senders send) are copied as they are; anything else
/// goes through [`to_labels`], so the rules stay Prometheus's: unsorted pairs are sorted, a
/// repeated or empty name is an error, pairs with an empty value are dropped, no label left
/// is an error.
fn series_labels(pairs: &[(&str, &str)], out: &mut tsdb::Labels) -> Result<(), String> {
    let sorted = pairs.windows(2).all(|w| w[0].0 < w[1].0);
    let first_ok = pairs.first().is_some_and(|p| !p.0.is_empty());
    if sorted && first_ok && pairs.iter().all(|p| !p.1.is_empty()) {
        out.assign_sorted(pairs.iter().copied());
        return Ok(());
    }
    let owned = pairs
        .iter()
        .map(|&(name, value)| Label {
            name: name.to_string(),
            value: value.to_string(),
        })
        .collect();
    *out = to_labels(owned)?;
    Ok(())
}

/// Counts and logs a sample the storage refused, and turns the error into the answer.
fn refused(st: &SharedState, e: tsdb::Error, labels: &tsdb::Labels, t: i64) -> ApplyError {
    match e {
        tsdb::Error::OutOfOrderSample
        | tsdb::Error::OutOfBounds
        | tsdb::Error::DuplicateSampleForTimestamp
        | tsdb::Error::TooOldSample => {
            st.metrics
                .out_of_order_samples
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(err = %e, series = %labels, timestamp = t, "Out of order sample from remote write");
            ApplyError::Bad(e.to_string())
        }
        tsdb::Error::InvalidLabels(m) => ApplyError::Bad(format!("invalid labels for series: {m}")),
        e => ApplyError::Internal(e.to_string()),
    }
}

/// Appends every sample of `req` in one transaction (one WAL write at commit); returns the
/// number of samples written. Any refused sample or invalid label set rolls back the whole
/// request. `keys` is scratch space for the series' [`series_key`]s.
///
/// The first sample of a series goes by the storage reference this thread's [`RefCache`]
/// remembers for it (senders repeat the same series in the same order every request), which
/// spares decoding its labels and the storage the lookup by labels; later samples by the
/// reference the first one got.
fn apply(
    st: &SharedState,
    req: &WriteRequestRef<'_>,
    keys: &mut Vec<u128>,
) -> Result<u64, ApplyError> {
    keys.clear();
    keys.extend(req.series.iter().map(|s| series_key(req, s)));
    REF_CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        cache.bind(&st.storage);
        let first = keys.first().copied().unwrap_or(0);
        let mut run = cache.take_run(first);
        let res = apply_cached(st, req, keys, &mut run);
        cache.put_run(first, run);
        res
    })
}

/// The labels of series `s` of `req`, decoded (if the decode left them raw) and checked, into
/// `out`; `pairs` is scratch space.
fn decode_labels<'a>(
    req: &WriteRequestRef<'a>,
    s: &SeriesRef,
    pairs: &mut Vec<(&'a str, &'a str)>,
    out: &mut tsdb::Labels,
) -> Result<(), ApplyError> {
    req.labels_of(s, pairs)
        .map_err(|e| ApplyError::Bad(format!("decode protobuf WriteRequest: {e}")))?;
    series_labels(pairs, out)
        .map_err(|e| ApplyError::Bad(format!("invalid labels for series: {e}")))
}

/// [`apply`] with the run of series the cache holds for requests starting like this one;
/// leaves in `run` the keys and references of this request's series.
///
/// First the series the run has no reference for get their labels decoded and checked, so a
/// request with a bad label set is refused before anything is appended. Series the run knows
/// are appended by reference with an empty label set: the head refuses that
/// ([`tsdb::Error::InvalidLabels`]) only if it no longer knows the reference (the series was
/// truncated away), and then the labels are decoded and the sample appended by them.
fn apply_cached(
    st: &SharedState,
    req: &WriteRequestRef<'_>,
    keys: &[u128],
    run: &mut Run,
) -> Result<u64, ApplyError> {
    let cached = |run: &Run, i: usize| run.get(i).filter(|e| e.0 == keys[i]).and_then(|e| e.1);
    let mut pairs = Vec::new();
    let mut fresh = Vec::new();
    for (i, s) in req.series.iter().enumerate() {
        if cached(run, i).is_none() {
            let mut labels = tsdb::Labels::empty();
            decode_labels(req, s, &mut pairs, &mut labels)?;
            fresh.push(labels);
        }
    }
    let mut app = st.storage.appender();
    let empty = tsdb::Labels::empty();
    let mut next_fresh = 0;
    for (i, s) in req.series.iter().enumerate() {
        let mut sref = cached(run, i);
        // The labels in `fresh` this series' samples go by; `None`: by `sref` alone.
        let mut by = sref.is_none().then(|| {
            next_fresh += 1;
            next_fresh - 1
        });
        for &(t, v) in &req.samples[s.samples.clone()] {
            let mut res = app.append_ref(sref, by.map_or(&empty, |k| &fresh[k]), t, v);
            if by.is_none() && matches!(res, Err(tsdb::Error::InvalidLabels(_))) {
                // The storage no longer knows the cached reference.
                let mut labels = tsdb::Labels::empty();
                if let Err(e) = decode_labels(req, s, &mut pairs, &mut labels) {
                    let _ = app.rollback();
                    run.truncate(i);
                    return Err(e);
                }
                fresh.push(labels);
                by = Some(fresh.len() - 1);
                res = app.append_ref(None, &fresh[fresh.len() - 1], t, v);
            }
            match res {
                Ok(r) => sref = r,
                Err(e) => {
                    let _ = app.rollback();
                    run.truncate(i);
                    let mut decoded = tsdb::Labels::empty();
                    let labels = match by {
                        Some(k) => &fresh[k],
                        None => {
                            let _ = decode_labels(req, s, &mut pairs, &mut decoded);
                            &decoded
                        }
                    };
                    return Err(refused(st, e, labels, t));
                }
            }
        }
        match run.get_mut(i) {
            Some(e) => *e = (keys[i], sref),
            None => run.push((keys[i], sref)),
        }
    }
    run.truncate(req.series.len());
    app.commit()
        .map_err(|e| ApplyError::Internal(e.to_string()))?;
    Ok(req.samples.len() as u64)
}

/// Seed of the hash of raw label bytes in [`series_key`], so that those keys and
/// [`pairs_key`]s come from different hash functions.
const RAW_KEY_SEED: u64 = 0x6967_6e69_735f_7277;

/// The key standing for the labels of series `s` of `req` in [`RefCache`]: the xxh3-128 hash
/// of its label fields' bytes when the decode left them raw (the same bytes always decode to
/// the same labels), else its [`pairs_key`].
fn series_key(req: &WriteRequestRef<'_>, s: &SeriesRef) -> u128 {
    match &s.raw_labels {
        Some(r) => xxhash_rust::xxh3::xxh3_128_with_seed(
            req.body.get(r.clone()).unwrap_or_default(),
            RAW_KEY_SEED,
        ),
        None => pairs_key(&req.labels[s.labels.clone()]),
    }
}

/// A 128-bit hash of a series' label pairs as the request sent them (before sorting or
/// dropping empty values, which depend on the pairs only): xxh3 over `name 0xff value 0xff`…
/// (0xff never occurs in UTF-8, so different pair lists give different inputs). 128 bits make
/// a collision between two label sets practically impossible, so the hash stands for the
/// pairs in [`RefCache`].
fn pairs_key(pairs: &[(&str, &str)]) -> u128 {
    tsdb::labels::hash_pairs_128(pairs.iter().copied())
}

/// Passes a `u64` that is already a hash through as its own hash.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The (key, storage reference) of each series of a request, in request order.
type Run = Vec<(u128, Option<tsdb::head::SeriesRef>)>;

/// Storage series references of the series of recent requests, in request order, by the
/// [`pairs_key`] of each request's first series; kept by an applier thread
/// ([`super::appliers`]) between requests for one storage (cleared when another storage uses
/// the thread). A sender sends the same series in the same order request after request, so
/// the references are found walking the run in step with the request, without a lookup per
/// series; an entry is used only when its key matches the series at that position.
///
/// The storage's contract makes this safe: a reference is only passed with the labels it was
/// obtained for, and one the storage no longer knows falls back to the labels (whose new
/// reference then replaces the cached one).
#[derive(Default)]
struct RefCache {
    /// The storage the references belong to; a `Weak` keeps its allocation (and so its
    /// address) from being reused by another storage while the cache holds it.
    owner: Option<std::sync::Weak<dyn crate::server::storage::Storage>>,
    /// Low 64 bits of the first series' key -> the request's (key, reference) per series.
    runs: std::collections::HashMap<u64, Run, std::hash::BuildHasherDefault<KeyHasher>>,
    /// Entries in `runs`.
    entries: usize,
}

/// Entries beyond this clear the cache (bounds its memory at some tens of MiB per thread).
const MAX_CACHED_REFS: usize = 1 << 20;

impl RefCache {
    /// Makes the cache hold references of `storage`, forgetting those of any other.
    fn bind(&mut self, storage: &crate::server::storage::SharedStorage) {
        let same = self
            .owner
            .as_ref()
            .is_some_and(|w| std::ptr::addr_eq(w.as_ptr(), Arc::as_ptr(storage)));
        if !same {
            self.runs.clear();
            self.entries = 0;
            self.owner = Some(Arc::downgrade(storage));
        }
    }

    /// The run kept for requests whose first series has key `first` (empty if none).
    fn take_run(&mut self, first: u128) -> Run {
        let run = self.runs.remove(&(first as u64)).unwrap_or_default();
        self.entries -= run.len();
        run
    }

    /// Keeps `run` for requests whose first series has key `first`.
    fn put_run(&mut self, first: u128, run: Run) {
        if run.is_empty() {
            return;
        }
        if self.entries + run.len() > MAX_CACHED_REFS {
            self.runs.clear();
            self.entries = 0;
        }
        self.entries += run.len();
        self.runs.insert(first as u64, run);
    }
}

thread_local! {
    static REF_CACHE: std::cell::RefCell<RefCache> = std::cell::RefCell::default();
}

/// Buffers an applier thread keeps between requests: the decompressed body and the decoded
/// label pairs' vector (its allocation only; see [`recycle`]).
#[derive(Default)]
struct Scratch {
    raw: Vec<u8>,
    labels: Vec<(&'static str, &'static str)>,
    samples: Vec<(i64, f64)>,
    series: Vec<SeriesRef>,
    keys: Vec<u128>,
}

impl Scratch {
    /// Whether the buffers are small enough to keep for the next request.
    fn keep(&self) -> bool {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        [
            bytes(&self.raw),
            bytes(&self.labels),
            bytes(&self.samples),
            bytes(&self.series),
            bytes(&self.keys),
        ]
        .iter()
        .all(|&b| b <= KEEP_SCRATCH)
    }
}

/// Buffers larger than this are not kept after a request.
const KEEP_SCRATCH: usize = 8 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// An empty vector reusing `v`'s allocation for another element type of the same size and
/// alignment (std collects a mapped `IntoIter` in place), so borrowed pairs of one request can
/// live in the buffer of the previous one without `unsafe`.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("vector was cleared"))
        .collect()
}

/// Decompresses and decodes a 1.0 body, then applies it.
fn decode_and_apply(st: &SharedState, body: &[u8]) -> Result<u64, ApplyError> {
    let mut scratch = SCRATCH.with(|s| s.take());
    let res = decode_and_apply_with(st, body, &mut scratch);
    if scratch.keep() {
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
    }
    res
}

fn decode_and_apply_with(
    st: &SharedState,
    body: &[u8],
    scratch: &mut Scratch,
) -> Result<u64, ApplyError> {
    let n = snap::raw::decompress_len(body).map_err(|e| ApplyError::Bad(format!("snappy: {e}")))?;
    if n > super::MAX_DECODED {
        return Err(ApplyError::Bad(format!(
            "snappy: decoded length {n} exceeds the limit of {} bytes",
            super::MAX_DECODED
        )));
    }
    let raw = &mut scratch.raw;
    raw.resize(n, 0);
    let got = snap::raw::Decoder::new()
        .decompress(body, raw)
        .map_err(|e| ApplyError::Bad(format!("snappy: {e}")))?;
    raw.truncate(got);
    // The vectors of the previous request are reused: about 200 wire bytes per series and
    // sample for typical senders, so they rarely grow (and copy) while decoding.
    let mut req = WriteRequestRef {
        labels: recycle(std::mem::take(&mut scratch.labels)),
        samples: std::mem::take(&mut scratch.samples),
        series: std::mem::take(&mut scratch.series),
        histograms: 0,
        body: &[],
    };
    req.samples.reserve(raw.len() / 200 + 16);
    req.series.reserve(raw.len() / 200 + 16);
    let res = match req.decode_lazy_into(raw) {
        Ok(()) => apply(st, &req, &mut scratch.keys),
        Err(e) => Err(ApplyError::Bad(format!(
            "decode protobuf WriteRequest: {e}"
        ))),
    };
    scratch.labels = recycle(req.labels);
    scratch.samples = req.samples;
    scratch.series = req.series;
    res
}

/// Which protobuf message a request carries, from its content type.
fn message_type(headers: &HeaderMap) -> Result<bool, String> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match ct
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("proto="))
    {
        None | Some("prometheus.WriteRequest") => Ok(false),
        Some("io.prometheus.write.v2.Request") => Ok(true),
        Some(other) => Err(format!("unknown remote write content type: proto={other}")),
    }
}

/// Decodes a remote write 2.0 body.
pub fn decode_v2_request(body: &[u8]) -> Result<v2::Request, String> {
    let raw = snappy_decode(body)?;
    v2::Request::decode(raw.as_slice()).map_err(|e| format!("decode protobuf v2 Request: {e}"))
}

/// Labels of a 2.0 series from the symbol table, into `out` (checked as 1.0 labels are).
fn v2_labels<'a>(
    symbols: &'a [String],
    refs: &[u32],
    pairs: &mut Vec<(&'a str, &'a str)>,
    out: &mut tsdb::Labels,
) -> Result<(), String> {
    if refs.len() & 1 == 1 {
        return Err(format!("odd number of label references ({})", refs.len()));
    }
    let get = |i: u32| {
        symbols.get(i as usize).map(String::as_str).ok_or_else(|| {
            format!(
                "label reference {i} out of range ({} symbols)",
                symbols.len()
            )
        })
    };
    pairs.clear();
    for p in refs.chunks_exact(2) {
        pairs.push((get(p[0])?, get(p[1])?));
    }
    series_labels(pairs, out)
}

/// Appends a 2.0 request: refused samples are skipped and reported; returns the samples
/// written and the messages of the refused ones.
fn apply_v2(st: &SharedState, req: &v2::Request) -> Result<(u64, Vec<String>), ApplyError> {
    let mut app = st.storage.appender();
    let (mut n, mut bad) = (0u64, Vec::new());
    let (mut labels, mut pairs) = (tsdb::Labels::empty(), Vec::new());
    for ts in &req.timeseries {
        if let Err(e) = v2_labels(&req.symbols, &ts.labels_refs, &mut pairs, &mut labels) {
            bad.push(format!("invalid labels for series: {e}"));
            continue;
        }
        let mut sref = None;
        for s in &ts.samples {
            match app.append_ref(sref, &labels, s.timestamp, s.value) {
                Ok(r) => {
                    sref = r;
                    n += 1
                }
                Err(
                    e @ (tsdb::Error::OutOfOrderSample
                    | tsdb::Error::OutOfBounds
                    | tsdb::Error::DuplicateSampleForTimestamp
                    | tsdb::Error::TooOldSample),
                ) => {
                    st.metrics
                        .out_of_order_samples
                        .fetch_add(1, Ordering::Relaxed);
                    bad.push(format!("{e} for series {labels}"));
                }
                Err(tsdb::Error::InvalidLabels(m)) => {
                    bad.push(format!("invalid labels for series: {m}"))
                }
                Err(e) => {
                    let _ = app.rollback();
                    return Err(ApplyError::Internal(e.to_string()));
                }
            }
        }
    }
    app.commit()
        .map_err(|e| ApplyError::Internal(e.to_string()))?;
    Ok((n, bad))
}

async fn write_v2(st: SharedState, body: Bytes) -> Response {
    let st2 = st.clone();
    let res = super::appliers::run(move || {
        let req = decode_v2_request(&body).map_err(ApplyError::Bad)?;
        apply_v2(&st2, &req)
    })
    .await;
    let (n, bad) = match res {
        Ok(Ok(x)) => x,
        Ok(Err(ApplyError::Bad(msg))) => return plain(StatusCode::BAD_REQUEST, msg),
        Ok(Err(ApplyError::Internal(msg))) => return plain(StatusCode::INTERNAL_SERVER_ERROR, msg),
        Err(e) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("remote write handler failed: {e}"),
            )
        }
    };
    st.metrics
        .remote_write_samples
        .fetch_add(n, Ordering::Relaxed);
    let mut resp = if bad.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        tracing::error!(errors = bad.len(), first = %bad[0], "Samples rejected in remote write 2.0 request");
        plain(StatusCode::BAD_REQUEST, bad.join("\n"))
    };
    let h = resp.headers_mut();
    h.insert("X-Prometheus-Remote-Write-Samples-Written", n.into());
    h.insert("X-Prometheus-Remote-Write-Histograms-Written", 0u64.into());
    h.insert("X-Prometheus-Remote-Write-Exemplars-Written", 0u64.into());
    resp
}

/// `POST /api/v1/write`
pub async fn write(State(st): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    if !st.args.enable_remote_write_receiver {
        return plain(
            StatusCode::NOT_FOUND,
            "remote write receiver needs to be enabled with --web.enable-remote-write-receiver"
                .into(),
        );
    }
    match message_type(&headers) {
        Err(e) => return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, e),
        Ok(true) => return write_v2(st, body).await,
        Ok(false) => {}
    }
    let st2 = st.clone();
    let res = super::appliers::run(move || decode_and_apply(&st2, &body)).await;
    match res {
        Ok(Ok(n)) => {
            st.metrics
                .remote_write_samples
                .fetch_add(n, Ordering::Relaxed);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(ApplyError::Bad(msg))) => {
            tracing::error!(err = %msg, "Error decoding or appending remote write request");
            plain(StatusCode::BAD_REQUEST, msg)
        }
        Ok(Err(ApplyError::Internal(msg))) => {
            tracing::error!(err = %msg, "Error appending remote write");
            plain(StatusCode::INTERNAL_SERVER_ERROR, msg)
        }
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("remote write handler failed: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost::Message;
    use tsdb::labels::Matcher;
    use tsdb::Labels;

    use super::super::proto::{Sample, TimeSeries};
    use super::*;
    use crate::server::db_storage::DbStorage;
    use crate::server::state::AppState;

    fn labels_of(pairs: &[(&str, &str)]) -> Result<Labels, String> {
        let mut out = Labels::from_pairs(&[("stale", "value"), ("x", "y"), ("zz", "zz")]);
        series_labels(pairs, &mut out).map(|()| out)
    }

    #[test]
    fn recycled_vectors_keep_their_allocation() {
        let v: Vec<(&str, &str)> = Vec::with_capacity(1000);
        let u: Vec<(&'static str, &'static str)> = recycle(v);
        assert!(u.capacity() >= 1000);
        assert!(u.is_empty());
    }

    #[test]
    fn series_labels_follow_prometheus_rules() {
        let want = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        assert_eq!(
            labels_of(&[("__name__", "up"), ("job", "a")]),
            Ok(want.clone())
        );
        // Unsorted: sorted.
        assert_eq!(
            labels_of(&[("job", "a"), ("__name__", "up")]),
            Ok(want.clone())
        );
        // Empty values are dropped.
        assert_eq!(
            labels_of(&[("__name__", "up"), ("e", ""), ("job", "a")]),
            Ok(want)
        );
        // Duplicate names, sorted or not, and empty names are errors.
        assert!(labels_of(&[("a", "1"), ("a", "2")])
            .unwrap_err()
            .contains("duplicate label name \"a\""));
        assert!(labels_of(&[("a", "1"), ("b", "1"), ("a", "1")])
            .unwrap_err()
            .contains("duplicate"));
        assert!(labels_of(&[("", "v"), ("a", "1")])
            .unwrap_err()
            .contains("empty label name"));
        // No labels, or only empty values.
        assert_eq!(labels_of(&[]).unwrap_err(), "series has no labels");
        assert_eq!(labels_of(&[("a", "")]).unwrap_err(), "series has no labels");
    }

    fn state() -> (tempfile::TempDir, SharedState) {
        let dir = tempfile::tempdir().unwrap();
        let db = tsdb::db::Db::open(dir.path(), tsdb::db::Options::default()).unwrap();
        let st = AppState::new(
            DbStorage::new(db),
            Arc::new(crate::api::engine::PromqlEngine::default()),
            Default::default(),
        );
        (dir, st)
    }

    /// A series for [`body`]: label pairs and samples.
    type TestSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

    fn body(series: &[TestSeries<'_>]) -> Vec<u8> {
        let req = WriteRequest {
            timeseries: series
                .iter()
                .map(|(ls, ss)| TimeSeries {
                    labels: ls
                        .iter()
                        .map(|&(n, v)| Label {
                            name: n.into(),
                            value: v.into(),
                        })
                        .collect(),
                    samples: ss
                        .iter()
                        .map(|&(timestamp, value)| Sample { value, timestamp })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            metadata: vec![],
        };
        req.encode_to_vec()
    }

    fn samples(st: &SharedState, name: &str) -> Vec<(Labels, usize)> {
        let q = st.storage.queryable().querier(i64::MIN, i64::MAX).unwrap();
        q.select(true, None, &[Matcher::equal("__name__", name)])
            .map(|s| {
                let s = s.unwrap();
                let mut it = s.iter();
                let mut n = 0;
                while it.next() != tsdb::chunkenc::ValueType::None {
                    n += 1;
                }
                (s.labels().clone(), n)
            })
            .collect()
    }

    fn run(st: &SharedState, raw: &[u8]) -> Result<u64, String> {
        match decode_and_apply(st, &crate::remote::snappy_encode(raw)) {
            Ok(n) => Ok(n),
            Err(ApplyError::Bad(m)) => Err(format!("400 {m}")),
            Err(ApplyError::Internal(m)) => Err(format!("500 {m}")),
        }
    }

    #[test]
    fn requests_apply_all_or_nothing() {
        let (_dir, st) = state();
        let ok = body(&[
            (
                &[("job", "a"), ("__name__", "m")],
                &[(1000, 1.0), (2000, 2.0)],
            ),
            (&[("__name__", "m"), ("job", "b")], &[(1000, 3.0)]),
        ]);
        assert_eq!(run(&st, &ok), Ok(3));
        let m = Labels::from_pairs(&[("__name__", "m"), ("job", "a")]);
        assert_eq!(samples(&st, "m").len(), 2);
        assert!(samples(&st, "m").contains(&(m.clone(), 2)));

        // An out-of-order sample after good ones: nothing of the request is applied.
        let bad = body(&[
            (&[("__name__", "m"), ("job", "b")], &[(5000, 1.0)]),
            (&[("__name__", "other")], &[(5000, 1.0)]),
            (
                &[("__name__", "m"), ("job", "a")],
                &[(3000, 1.0), (1500, 1.0)],
            ),
        ]);
        assert_eq!(run(&st, &bad), Err("400 out of order sample".into()));
        // Invalid labels after good series: nothing applied either.
        let bad = body(&[
            (&[("__name__", "m"), ("job", "b")], &[(5000, 1.0)]),
            (&[("__name__", "m"), ("__name__", "n")], &[(5000, 1.0)]),
        ]);
        assert!(run(&st, &bad).unwrap_err().contains("duplicate label name"));
        // A valid request cut short: refused before anything is appended.
        let good = body(&[
            (&[("__name__", "m"), ("job", "b")], &[(5000, 1.0)]),
            (&[("__name__", "m"), ("job", "c")], &[(5000, 1.0)]),
        ]);
        let e = run(&st, &good[..good.len() - 3]).unwrap_err();
        assert!(e.starts_with("400 decode protobuf WriteRequest:"), "{e}");
        assert!(run(&st, b"\xff").unwrap_err().contains("truncated varint"));
        let mut got = samples(&st, "m");
        got.sort();
        assert_eq!(
            got,
            vec![
                (m, 2),
                (Labels::from_pairs(&[("__name__", "m"), ("job", "b")]), 1)
            ]
        );
        assert!(samples(&st, "other").is_empty());
        // The same good request then applies.
        assert_eq!(run(&st, &good), Ok(2));
        assert_eq!(samples(&st, "m").len(), 3);
        st.storage.close().unwrap();
    }

    #[test]
    fn pairs_key_tells_label_sets_apart() {
        let k = |p: &[(&str, &str)]| pairs_key(p);
        assert_eq!(k(&[("a", "1"), ("b", "2")]), k(&[("a", "1"), ("b", "2")]));
        assert_ne!(k(&[("a", "1"), ("b", "2")]), k(&[("a", "1"), ("b", "3")]));
        assert_ne!(k(&[("ab", "1")]), k(&[("a", "b1")]));
        assert_ne!(k(&[("a", "1"), ("b", "2")]), k(&[("b", "2"), ("a", "1")]));
        // Past the stack buffer the streaming hash gives the same kind of key.
        let long = "x".repeat(700);
        let (p1, p2) = (
            [("a", long.as_str()), ("b", "1")],
            [("a", long.as_str()), ("b", "2")],
        );
        assert_eq!(k(&p1), k(&p1));
        assert_ne!(k(&p1), k(&p2));
    }

    /// A cached reference the storage does not know (its series was truncated away) is
    /// appended by the series' labels instead, and the cache then holds the new reference.
    #[test]
    fn unknown_cached_refs_fall_back_to_the_labels() {
        let (_dir, st) = state();
        let a: &[(&str, &str)] = &[("__name__", "m"), ("job", "a")];
        assert_eq!(run(&st, &body(&[(a, &[(1000, 1.0)])])), Ok(1));
        let bogus = 1 << 30;
        let real = REF_CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let entries: Vec<_> = c.runs.values_mut().flat_map(|r| r.iter_mut()).collect();
            assert_eq!(entries.len(), 1);
            let e = entries.into_iter().next().unwrap();
            let real = e.1.unwrap();
            e.1 = Some(bogus);
            real
        });
        assert_eq!(run(&st, &body(&[(a, &[(2000, 2.0), (3000, 3.0)])])), Ok(2));
        assert_eq!(samples(&st, "m"), vec![(Labels::from_pairs(a), 3)]);
        REF_CACHE.with(|c| {
            let c = c.borrow();
            let refs: Vec<_> = c.runs.values().flatten().map(|e| e.1).collect();
            assert_eq!(refs, vec![Some(real)]);
        });
        // An out-of-order sample by a cached reference is refused and counted as before.
        let e = run(&st, &body(&[(a, &[(2500, 1.0)])])).unwrap_err();
        assert_eq!(e, "400 out of order sample");
        assert_eq!(st.metrics.out_of_order_samples.load(Ordering::Relaxed), 1);
        st.storage.close().unwrap();
    }

    /// References cached by one storage are not used for another on the same thread, and
    /// series found by cached references get their own samples, request after request.
    #[test]
    fn cached_refs_stay_with_their_storage_and_series() {
        let (_d1, st1) = state();
        let (_d2, st2) = state();
        let (a, b) = (
            &[("__name__", "m"), ("job", "a")],
            &[("__name__", "m"), ("job", "b")],
        );
        // Created in opposite orders, so the two storages give the two series swapped refs.
        assert_eq!(
            run(&st1, &body(&[(a, &[(1000, 1.0)]), (b, &[(1000, 2.0)])])),
            Ok(2)
        );
        assert_eq!(
            run(&st2, &body(&[(b, &[(1000, 2.0)]), (a, &[(1000, 1.0)])])),
            Ok(2)
        );
        // Runs of requests to one storage (the cache hits), then to the other (it is reset).
        for (st, from) in [(&st1, 2), (&st2, 2), (&st1, 4)] {
            for i in from..from + 2 {
                let t = i * 1000;
                assert_eq!(run(st, &body(&[(a, &[(t, 1.0)]), (b, &[(t, 2.0)])])), Ok(2));
            }
        }
        assert_eq!(
            run(&st2, &body(&[(b, &[(4000, 2.0)]), (a, &[(4000, 1.0)])])),
            Ok(2)
        );
        assert_eq!(
            run(&st2, &body(&[(a, &[(5000, 1.0)]), (b, &[(5000, 2.0)])])),
            Ok(2)
        );
        for st in [&st1, &st2] {
            let q = st.storage.queryable().querier(i64::MIN, i64::MAX).unwrap();
            let got: Vec<(Labels, Vec<f64>)> = q
                .select(true, None, &[Matcher::equal("__name__", "m")])
                .map(|s| {
                    let s = s.unwrap();
                    let mut it = s.iter();
                    let mut vs = Vec::new();
                    while it.next() != tsdb::chunkenc::ValueType::None {
                        vs.push(it.at().1);
                    }
                    (s.labels().clone(), vs)
                })
                .collect();
            assert_eq!(
                got,
                vec![
                    (Labels::from_pairs(a), vec![1.0; 5]),
                    (Labels::from_pairs(b), vec![2.0; 5])
                ]
            );
            st.storage.close().unwrap();
        }
    }
}
