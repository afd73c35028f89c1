//! WAL record codecs, byte-compatible with Prometheus's `tsdb/record` package.
//!
//! A record is the payload the [`super::Wal`] stores (after optional snappy compression). Its
//! first byte is the record type; integers are big-endian, `uvarint`/`varint` are Go's varints,
//! strings are a uvarint length followed by the bytes, floats are their IEEE-754 bits as BE u64.
//!
//! ```text
//! 1  series:     { ref <be64>  n <uvarint>  (name <str> value <str>) x n } ...
//! 2  samples:    base_ref <be64> base_t <be64>
//!                { ref-base_ref <varint>  t-base_t <varint>  value <be64 f64 bits> } ...
//! 3  tombstones: { ref <be64>  mint <varint>  maxt <varint> } ...
//! 4  exemplars:  base_ref <be64> base_t <be64>
//!                { ref-base_ref <varint> t-base_t <varint> value <be64> labels (as in series) } ...
//! 5  mmap markers: { ref <be64>  chunk ref <be64> } ...
//! 6  metadata:   { ref <uvarint>  type <1b>  n <uvarint>  (name <str> value <str>) x n } ...
//!                (fields named "UNIT" and "HELP"; unknown fields are ignored)
//! 7  histograms: base_ref <be64> base_t <be64> { ref delta <varint> t delta <varint> histogram }
//! 8  float histograms: as 7 with float histograms
//! 9  custom-bucket histograms (schema -53), as 7
//! 10 custom-bucket float histograms, as 8
//! 11 samples v2, 12 histograms v2, 13 float histograms v2 (Prometheus 3.x with start
//!    timestamps; decoded, start timestamps dropped, never written):
//!    first entry: ref <varint> t <varint> st <varint> value
//!    then: ref - prev ref <varint> t - first t <varint> st marker <1b> [st - first st <varint>]
//!          value    (marker 0 = no st, 1 = same st as the previous entry, 2 = explicit)
//!
//! histogram:       reset_hint <1b> schema <varint> zero_threshold <be64 f64>
//!                  zero_count <uvarint> count <uvarint> sum <be64 f64>
//!                  pos_spans: n <uvarint> { offset <varint> length <uvarint> } x n
//!                  neg_spans: likewise
//!                  pos_buckets: n <uvarint> { delta <varint> } x n   neg_buckets: likewise
//!                  if schema == -53: n <uvarint> { custom bound <be64 f64> } x n
//! float histogram: as above, but zero_count, count and every bucket are <be64 f64>
//! ```
//!
//! Empty samples/exemplars/histogram records are just the type byte. Record types this module
//! does not know decode to [`Record::Unknown`] rather than failing, so that replay can count
//! and skip them.
//!
//! Encoders write into a caller-provided `Vec<u8>`, which they clear first, so one buffer can be
//! reused for every record without allocating.

use crate::encoding::{put_uvarint, put_varint, Decbuf};
use crate::labels::{Label, Labels};
use crate::{Error, Result};

/// Record type byte of a series record.
pub const SERIES: u8 = 1;
/// Record type byte of a float samples record.
pub const SAMPLES: u8 = 2;
/// Record type byte of a tombstones record.
pub const TOMBSTONES: u8 = 3;
/// Record type byte of an exemplars record.
pub const EXEMPLARS: u8 = 4;
/// Record type byte of an m-map markers record.
pub const MMAP_MARKERS: u8 = 5;
/// Record type byte of a metadata record.
pub const METADATA: u8 = 6;
/// Record type byte of an integer native histogram samples record.
pub const HISTOGRAM_SAMPLES: u8 = 7;
/// Record type byte of a float native histogram samples record.
pub const FLOAT_HISTOGRAM_SAMPLES: u8 = 8;
/// Record type byte of an integer custom-buckets (NHCB) histogram samples record.
pub const CUSTOM_BUCKETS_HISTOGRAM_SAMPLES: u8 = 9;
/// Record type byte of a float custom-buckets (NHCB) histogram samples record.
pub const CUSTOM_BUCKETS_FLOAT_HISTOGRAM_SAMPLES: u8 = 10;
/// Record type byte of float samples with start timestamps (Prometheus 3.x `samples_v2`).
pub const SAMPLES_V2: u8 = 11;
/// Record type byte of integer histograms with start timestamps (`histogram_samples_v2`).
pub const HISTOGRAM_SAMPLES_V2: u8 = 12;
/// Record type byte of float histograms with start timestamps (`float_histogram_samples_v2`).
pub const FLOAT_HISTOGRAM_SAMPLES_V2: u8 = 13;

/// Histogram schema number of custom-bucket (NHCB) histograms.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

const UNIT_FIELD: &str = "UNIT";
const HELP_FIELD: &str = "HELP";

/// The type of a record, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// Series (1).
    Series,
    /// Float samples (2).
    Samples,
    /// Tombstones (3).
    Tombstones,
    /// Exemplars (4).
    Exemplars,
    /// M-map markers (5).
    MmapMarkers,
    /// Metadata (6).
    Metadata,
    /// Integer native histograms (7).
    HistogramSamples,
    /// Float native histograms (8).
    FloatHistogramSamples,
    /// Integer custom-bucket histograms (9).
    CustomBucketsHistogramSamples,
    /// Float custom-bucket histograms (10).
    CustomBucketsFloatHistogramSamples,
    /// Float samples with start timestamps (11).
    SamplesV2,
    /// Integer histograms with start timestamps (12).
    HistogramSamplesV2,
    /// Float histograms with start timestamps (13).
    FloatHistogramSamplesV2,
    /// Empty record or a type byte this module does not decode.
    Unknown(u8),
}

/// The type of `rec` (from its first byte; `Unknown(0)` for an empty record).
pub fn record_type(rec: &[u8]) -> RecordType {
    match rec.first() {
        Some(&SERIES) => RecordType::Series,
        Some(&SAMPLES) => RecordType::Samples,
        Some(&TOMBSTONES) => RecordType::Tombstones,
        Some(&EXEMPLARS) => RecordType::Exemplars,
        Some(&MMAP_MARKERS) => RecordType::MmapMarkers,
        Some(&METADATA) => RecordType::Metadata,
        Some(&HISTOGRAM_SAMPLES) => RecordType::HistogramSamples,
        Some(&FLOAT_HISTOGRAM_SAMPLES) => RecordType::FloatHistogramSamples,
        Some(&CUSTOM_BUCKETS_HISTOGRAM_SAMPLES) => RecordType::CustomBucketsHistogramSamples,
        Some(&CUSTOM_BUCKETS_FLOAT_HISTOGRAM_SAMPLES) => {
            RecordType::CustomBucketsFloatHistogramSamples
        }
        Some(&SAMPLES_V2) => RecordType::SamplesV2,
        Some(&HISTOGRAM_SAMPLES_V2) => RecordType::HistogramSamplesV2,
        Some(&FLOAT_HISTOGRAM_SAMPLES_V2) => RecordType::FloatHistogramSamplesV2,
        Some(&t) => RecordType::Unknown(t),
        None => RecordType::Unknown(0),
    }
}

/// A series: its head reference and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct RefSeries {
    /// Head series reference.
    pub series_ref: u64,
    /// The series' labels.
    pub labels: Labels,
}

/// One float sample of a series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefSample {
    /// Head series reference.
    pub series_ref: u64,
    /// Timestamp in milliseconds.
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// A deleted time range `[mint, maxt]` of one series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefTombstone {
    /// Head series reference.
    pub series_ref: u64,
    /// First deleted timestamp (inclusive).
    pub mint: i64,
    /// Last deleted timestamp (inclusive).
    pub maxt: i64,
}

/// One exemplar of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct RefExemplar {
    /// Head series reference.
    pub series_ref: u64,
    /// Timestamp in milliseconds.
    pub t: i64,
    /// Value.
    pub v: f64,
    /// Exemplar labels (e.g. a trace id).
    pub labels: Labels,
}

/// Metadata of a series: metric type, unit and help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefMetadata {
    /// Head series reference.
    pub series_ref: u64,
    /// Metric type as Prometheus numbers it ([`MetricType`] as u8).
    pub metric_type: u8,
    /// Unit (may be empty).
    pub unit: String,
    /// Help text (may be empty).
    pub help: String,
}

/// Metric types as stored in metadata records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MetricType {
    /// Unknown or untyped.
    Unknown = 0,
    /// Counter.
    Counter = 1,
    /// Gauge.
    Gauge = 2,
    /// Histogram.
    Histogram = 3,
    /// Gauge histogram.
    GaugeHistogram = 4,
    /// Summary.
    Summary = 5,
    /// Info.
    Info = 6,
    /// State set.
    Stateset = 7,
}

impl MetricType {
    /// The metric type for a stored byte (unknown values map to `Unknown`).
    pub fn from_u8(b: u8) -> Self {
        match b {
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::GaugeHistogram,
            5 => MetricType::Summary,
            6 => MetricType::Info,
            7 => MetricType::Stateset,
            _ => MetricType::Unknown,
        }
    }
}

/// An m-map marker: the series' head chunk was written to `chunk_ref` in `chunks_head/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefMmapMarker {
    /// Head series reference.
    pub series_ref: u64,
    /// Head chunk reference (file index << 32 | offset).
    pub chunk_ref: u64,
}

/// A bucket span of a native histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// Gap to the previous span (or start index for the first span).
    pub offset: i32,
    /// Number of consecutive buckets.
    pub length: u32,
}

/// An integer native histogram as stored in the WAL (buckets are deltas, as in Prometheus).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Histogram {
    /// Counter reset hint (0 unknown, 1 reset, 2 not reset, 3 gauge).
    pub counter_reset_hint: u8,
    /// Bucket schema (-53 for custom buckets).
    pub schema: i32,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// Total observations.
    pub count: u64,
    /// Sum of observations.
    pub sum: f64,
    /// Positive bucket spans.
    pub positive_spans: Vec<Span>,
    /// Negative bucket spans.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts, delta-encoded.
    pub positive_buckets: Vec<i64>,
    /// Negative bucket counts, delta-encoded.
    pub negative_buckets: Vec<i64>,
    /// Upper bounds of custom buckets (schema -53 only).
    pub custom_values: Vec<f64>,
}

/// A float native histogram as stored in the WAL (absolute bucket counts).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FloatHistogram {
    /// Counter reset hint.
    pub counter_reset_hint: u8,
    /// Bucket schema (-53 for custom buckets).
    pub schema: i32,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Total observations.
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
    /// Positive bucket spans.
    pub positive_spans: Vec<Span>,
    /// Negative bucket spans.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts.
    pub positive_buckets: Vec<f64>,
    /// Negative bucket counts.
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of custom buckets (schema -53 only).
    pub custom_values: Vec<f64>,
}

/// One integer native histogram sample of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct RefHistogramSample {
    /// Head series reference.
    pub series_ref: u64,
    /// Timestamp in milliseconds.
    pub t: i64,
    /// The histogram.
    pub h: Histogram,
}

/// One float native histogram sample of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct RefFloatHistogramSample {
    /// Head series reference.
    pub series_ref: u64,
    /// Timestamp in milliseconds.
    pub t: i64,
    /// The histogram.
    pub fh: FloatHistogram,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Series definitions (type 1).
    Series(Vec<RefSeries>),
    /// Float samples (type 2).
    Samples(Vec<RefSample>),
    /// Deletions (type 3).
    Tombstones(Vec<RefTombstone>),
    /// Exemplars (type 4).
    Exemplars(Vec<RefExemplar>),
    /// M-map markers (type 5).
    MmapMarkers(Vec<RefMmapMarker>),
    /// Metadata (type 6).
    Metadata(Vec<RefMetadata>),
    /// Integer native histograms (types 7 and 9).
    HistogramSamples(Vec<RefHistogramSample>),
    /// Float native histograms (types 8 and 10).
    FloatHistogramSamples(Vec<RefFloatHistogramSample>),
    /// A record of a type not decoded here (the type byte and the record's length).
    Unknown {
        /// The type byte (0 for an empty record).
        record_type: u8,
        /// Length of the record in bytes.
        len: usize,
    },
}

/// Decodes any record into owned values. Unknown types are returned as [`Record::Unknown`].
/// Hot paths (replay) should prefer the `decode_*` functions that reuse a `Vec`.
pub fn decode(rec: &[u8]) -> Result<Record> {
    Ok(match record_type(rec) {
        RecordType::Series => {
            let mut v = Vec::new();
            decode_series(rec, &mut v)?;
            Record::Series(v)
        }
        RecordType::Samples | RecordType::SamplesV2 => {
            let mut v = Vec::new();
            decode_samples(rec, &mut v)?;
            Record::Samples(v)
        }
        RecordType::Tombstones => {
            let mut v = Vec::new();
            decode_tombstones(rec, &mut v)?;
            Record::Tombstones(v)
        }
        RecordType::Exemplars => {
            let mut v = Vec::new();
            decode_exemplars(rec, &mut v)?;
            Record::Exemplars(v)
        }
        RecordType::MmapMarkers => {
            let mut v = Vec::new();
            decode_mmap_markers(rec, &mut v)?;
            Record::MmapMarkers(v)
        }
        RecordType::Metadata => {
            let mut v = Vec::new();
            decode_metadata(rec, &mut v)?;
            Record::Metadata(v)
        }
        RecordType::HistogramSamples
        | RecordType::CustomBucketsHistogramSamples
        | RecordType::HistogramSamplesV2 => {
            let mut v = Vec::new();
            decode_histogram_samples(rec, &mut v)?;
            Record::HistogramSamples(v)
        }
        RecordType::FloatHistogramSamples
        | RecordType::CustomBucketsFloatHistogramSamples
        | RecordType::FloatHistogramSamplesV2 => {
            let mut v = Vec::new();
            decode_float_histogram_samples(rec, &mut v)?;
            Record::FloatHistogramSamples(v)
        }
        RecordType::Unknown(t) => Record::Unknown {
            record_type: t,
            len: rec.len(),
        },
    })
}

fn check_type(d: &mut Decbuf<'_>, want: &[u8], what: &str) -> Result<()> {
    let t = d.byte()?;
    if want.contains(&t) {
        Ok(())
    } else {
        Err(Error::Encoding(format!(
            "record type {t} is not a {what} record"
        )))
    }
}

fn in_record(what: &str, n: usize, e: Error) -> Error {
    Error::Encoding(format!("{what} record, after {n} entries: {e}"))
}

fn decode_labels(d: &mut Decbuf<'_>) -> Result<Labels> {
    let n = d.uvarint()? as usize;
    // Each label takes at least two bytes; refuse counts the record cannot hold.
    if n > d.remaining() / 2 {
        return Err(Error::Encoding(format!(
            "label count {n} larger than the record"
        )));
    }
    let mut ls = Vec::with_capacity(n);
    for _ in 0..n {
        let name = d.uvarint_str()?;
        let value = d.uvarint_str()?;
        ls.push(Label::new(name, value));
    }
    let sorted =
        ls.windows(2).all(|w| w[0].name < w[1].name) && ls.iter().all(|l| !l.value.is_empty());
    Ok(if sorted {
        Labels::from_sorted(ls)
    } else {
        Labels::new(ls)
    })
}

fn encode_labels(b: &mut Vec<u8>, ls: &Labels) {
    put_uvarint(b, ls.len() as u64);
    for l in ls.iter() {
        put_uvarint(b, l.name.len() as u64);
        b.extend_from_slice(l.name.as_bytes());
        put_uvarint(b, l.value.len() as u64);
        b.extend_from_slice(l.value.as_bytes());
    }
}

/// Decodes a series record, appending to `out`.
pub fn decode_series(rec: &[u8], out: &mut Vec<RefSeries>) -> Result<()> {
    let mut d = Decbuf::new(rec);
    check_type(&mut d, &[SERIES], "series")?;
    let start = out.len();
    while !d.is_empty() {
        let n = out.len() - start;
        let series_ref = d.be64().map_err(|e| in_record("series", n, e))?;
        let labels = decode_labels(&mut d).map_err(|e| in_record("series", n, e))?;
        out.push(RefSeries { series_ref, labels });
    }
    Ok(())
}

/// Encodes a series record into `buf` (cleared first).
pub fn encode_series(series: &[RefSeries], buf: &mut Vec<u8>) {
    encode_series_refs(series.iter().map(|s| (s.series_ref, &s.labels)), buf);
}

/// As [`encode_series`], from `(reference, labels)` pairs (no copy of the labels needed).
pub fn encode_series_refs<'a>(
    series: impl IntoIterator<Item = (u64, &'a Labels)>,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    buf.push(SERIES);
    for (r, ls) in series {
        buf.extend_from_slice(&r.to_be_bytes());
        encode_labels(buf, ls);
    }
}

/// Walks the entries of a v2 record (types 11..13, Prometheus 3.x with start timestamps):
/// `ref <varint> t <varint> st <varint>` for the first entry, then `ref delta to the previous
/// <varint> t delta to the first <varint> st marker <1b> (0 none, 1 same as previous, else
/// delta to the first st <varint>)`, each followed by the entry's value decoded by `value`.
/// Start timestamps are not kept.
fn decode_v2_entries<T>(
    d: &mut Decbuf<'_>,
    what: &str,
    out: &mut Vec<T>,
    value: impl Fn(&mut Decbuf<'_>, u64, i64) -> Result<T>,
) -> Result<()> {
    let (mut prev_ref, mut first_t) = (0u64, 0i64);
    let start = out.len();
    while !d.is_empty() {
        let n = out.len() - start;
        let mut entry = || -> Result<T> {
            let (r, t) = if n == 0 {
                let r = d.varint()? as u64;
                let t = d.varint()?;
                d.varint()?;
                first_t = t;
                (r, t)
            } else {
                let r = prev_ref.wrapping_add(d.varint()? as u64);
                let t = first_t.wrapping_add(d.varint()?);
                if d.byte()? > 1 {
                    d.varint()?;
                }
                (r, t)
            };
            prev_ref = r;
            value(d, r, t)
        };
        let e = entry().map_err(|e| in_record(what, n, e))?;
        out.push(e);
    }
    Ok(())
}

/// Decodes a float samples record (type 2, or 11 whose start timestamps are dropped),
/// appending to `out`.
pub fn decode_samples(rec: &[u8], out: &mut Vec<RefSample>) -> Result<()> {
    let mut d = Decbuf::new(rec);
    check_type(&mut d, &[SAMPLES, SAMPLES_V2], "samples")?;
    if rec[0] == SAMPLES_V2 {
        return decode_v2_entries(&mut d, "samples", out, |d, series_ref, t| {
            Ok(RefSample {
                series_ref,
                t,
                v: d.be_f64()?,
            })
        });
    }
    if d.is_empty() {
        return Ok(());
    }
    let base_ref = d.be64()?;
    let base_t = d.be64()? as i64;
    out.reserve(d.remaining() / 10);
    let start = out.len();
    while !d.is_empty() {
        let n = out.len() - start;
        let s = (|| -> Result<RefSample> {
            let dref = d.varint()?;
            let dt = d.varint()?;
            let v = d.be_f64()?;
            Ok(RefSample {
                series_ref: base_ref.wrapping_add(dref as u64),
                t: base_t.wrapping_add(dt),
                v,
            })
        })()
        .map_err(|e| in_record("samples", n, e))?;
        out.push(s);
    }
    Ok(())
}

/// Encodes a float samples record into `buf` (cleared first).
pub fn encode_samples(samples: &[RefSample], buf: &mut Vec<u8>) {
    encode_sample_tuples(samples.iter().map(|s| (s.series_ref, s.t, s.v)), buf);
}

/// As [`encode_samples`], from `(reference, timestamp, value)` tuples.
pub fn encode_sample_tuples(
    samples: impl ExactSizeIterator<Item = (u64, i64, f64)>,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    buf.push(SAMPLES);
    let n = samples.len();
    let mut samples = samples.peekable();
    let Some(&(first_ref, first_t, _)) = samples.peek() else {
        return;
    };
    // Deltas are mostly 1-2 bytes each, values 8.
    buf.reserve(16 + n * 12);
    buf.extend_from_slice(&first_ref.to_be_bytes());
    buf.extend_from_slice(&first_t.to_be_bytes());
    for (r, t, v) in samples {
        put_varint(buf, r.wrapping_sub(first_ref) as i64);
        put_varint(buf, t.wrapping_sub(first_t));
        buf.extend_from_slice(&v.to_bits().to_be_bytes());
    }
}

/// Decodes a tombstones record, appending to `out`.
pub fn decode_tombstones(rec: &[u8], out: &mut Vec<RefTombstone>) -> Result<()> {
    let mut d = Decbuf::new(rec);
    check_type(&mut d, &[TOMBSTONES], "tombstones")?;
    let start = out.len();
    while !d.is_empty() {
        let n = out.len() - start;
        let s = (|| -> Result<RefTombstone> {
            Ok(RefTombstone {
                series_ref: d.be64()?,
                mint: d.varint()?,
                maxt: d.varint()?,
            })
        })()
        .map_err(|e| in_record("tombstones", n, e))?;
        out.push(s);
    }
    Ok(())
}

/// Encodes a tombstones record into `buf` (cleared first).
pub fn encode_tombstones(stones: &[RefTombstone], buf: &mut Vec<u8>) {
    buf.clear();
    buf.push(TOMBSTONES);
    for s in stones {
        buf.extend_from_slice(&s.series_ref.to_be_bytes());
        put_varint(buf, s.mint);
        put_varint(buf, s.maxt);
    }
}

/// Decodes an exemplars record, appending to `out`.
pub fn decode_exemplars(rec: &[u8], out: &mut Vec<RefExemplar>) -> Result<()> {
    let mut d = Decbuf::new(rec);
    check_type(&mut d, &[EXEMPLARS], "exemplars")?;
    if d.is_empty() {
        return Ok(());
    }
    let base_ref = d.be64()?;
    let base_t = d.be64()? as i64;
    let start = out.len();
    while !d.is_empty() {
        let n = out.len() - start;
        let e = (|| -> Result<RefExemplar> {
            let dref = d.varint()?;
            let dt = d.varint()?;
            let v = d.be_f64()?;
            let labels = decode_labels(&mut d)?;
            Ok(RefExemplar {
                series_ref: base_ref.wrapping_add(dref as u64),
                t: base_t.wrapping_add(dt),
                v,
                labels,
            })
        })()
        .map_err(|e| in_record("exemplars", n, e))?;
        out.push(e);
    }
    Ok(())
}

/// Encodes an exemplars record into `buf` (cleared first).
pub fn encode_exemplars(exemplars: &[RefExemplar], buf: &mut Vec<u8>) {
    buf.clear();
    buf.push(EXEMPLARS);
    let Some(first) = exemplars.first() else {
        return;
    };
    buf.extend_from_slice(&first.series_ref.to_be_bytes());
    buf.extend_from_slice(&first.t.to_be_bytes());
    for e in exemplars {
        put_varint(buf, e.series_ref.wrapping_sub(first.series_ref) as i64);
        put_varint(buf, e.t.wrapping_sub(first.t));
        buf.extend_from_slice(&e.v.to_bits().to_be_bytes());
        encode_labels(buf, &e.labels);
    }
}

/// Decodes an m-map markers record, appending to `out`.
pub fn decode_mmap_markers(rec: &[u8], out: &mut Vec<RefMmapMarker>) -> Result<()> {
    let mut d = Decbuf::new(rec);
    check_type(&mut d, &[MMAP_MARKERS], "mmap markers")?;
    let start = out.len();
    while !d.is_empty() {
        let n = out.len() - start;
        let m = (|| -> Result<RefMmapMarker> {
            Ok(RefMmapMarker {
                series_ref: d.be64()?,
                chunk_ref: d.be64()?,
            })
        })()
        .map_err(|e| in_record("mmap markers", n, e))?;
        out.push(m);
    }
    Ok(())
}

/// Encodes an m-map markers record into `buf` (cleared first).
pub fn encode_mmap_markers(markers: &[RefMmapMarker], buf: &mut Vec<u8>) {
    buf.clear();
    buf.push(MMAP_MARKERS);
    for m in markers {
        buf.extend_from_slice(&m.series_ref.to_be_bytes());
        buf.extend_from_slice(&m.chunk_ref.to_be_bytes());
    }
}

/// Decodes a metadata record, appending to `out`.
pub fn decode_metadata(rec: &[u8], out: &mut Vec<RefMetadata>) -> Result<()> {
    let mut d = Decbuf::new(rec);
    check_type(&mut d, &[METADATA], "metadata")?;
    let start = out.len();
    while !d.is_empty() {
        let n = out.len() - start;
        let m = (|| -> Result<RefMetadata> {
            let series_ref = d.uvarint()?;
            let metric_type = d.byte()?;
            let fields = d.uvarint()?;
            let (mut unit, mut help) = (String::new(), String::new());
            for _ in 0..fields {
                let name = d.uvarint_str()?;
                let value = d.uvarint_str()?;
                match name {
                    UNIT_FIELD => unit = value.to_string(),
                    HELP_FIELD => help = value.to_string(),
                    _ => {}
                }
            }
            Ok(RefMetadata {
                series_ref,
                metric_type,
                unit,
                help,
            })
        })()
        .map_err(|e| in_record("metadata", n, e))?;
        out.push(m);
    }
    Ok(())
}

/// Encodes a metadata record into `buf` (cleared first).
pub fn encode_metadata(metadata: &[RefMetadata], buf: &mut Vec<u8>) {
    buf.clear();
    buf.push(METADATA);
    for m in metadata {
        put_uvarint(buf, m.series_ref);
        buf.push(m.metric_type);
        put_uvarint(buf, 2);
        for (name, value) in [(UNIT_FIELD, &m.unit), (HELP_FIELD, &m.help)] {
            put_uvarint(buf, name.len() as u64);
            buf.extend_from_slice(name.as_bytes());
            put_uvarint(buf, value.len() as u64);
            buf.extend_from_slice(value.as_bytes());
        }
    }
}

fn decode_spans(d: &mut Decbuf<'_>) -> Result<Vec<Span>> {
    let n = d.uvarint()? as usize;
    if n > d.remaining() {
        return Err(Error::Encoding(format!(
            "span count {n} larger than the record"
        )));
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let offset = d.varint()?;
        let offset = i32::try_from(offset)
            .map_err(|_| Error::Encoding(format!("span offset {offset} overflows i32")))?;
        v.push(Span {
            offset,
            length: d.uvarint32()?,
        });
    }
    Ok(v)
}

fn encode_spans(b: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(b, spans.len() as u64);
    for s in spans {
        put_varint(b, s.offset as i64);
        put_uvarint(b, s.length as u64);
    }
}

fn count(d: &mut Decbuf<'_>, elem_min: usize) -> Result<usize> {
    let n = d.uvarint()? as usize;
    if n.saturating_mul(elem_min) > d.remaining() {
        return Err(Error::Encoding(format!(
            "element count {n} larger than the record"
        )));
    }
    Ok(n)
}

fn decode_custom_values(d: &mut Decbuf<'_>, schema: i32) -> Result<Vec<f64>> {
    if schema != CUSTOM_BUCKETS_SCHEMA {
        return Ok(Vec::new());
    }
    let n = count(d, 8)?;
    (0..n).map(|_| d.be_f64()).collect()
}

fn schema_of(d: &mut Decbuf<'_>) -> Result<i32> {
    let s = d.varint()?;
    i32::try_from(s).map_err(|_| Error::Encoding(format!("histogram schema {s} overflows i32")))
}

fn decode_histogram(d: &mut Decbuf<'_>) -> Result<Histogram> {
    let counter_reset_hint = d.byte()?;
    let schema = schema_of(d)?;
    let zero_threshold = d.be_f64()?;
    let zero_count = d.uvarint()?;
    let count_ = d.uvarint()?;
    let sum = d.be_f64()?;
    let positive_spans = decode_spans(d)?;
    let negative_spans = decode_spans(d)?;
    let n = count(d, 1)?;
    let positive_buckets = (0..n).map(|_| d.varint()).collect::<Result<Vec<_>>>()?;
    let n = count(d, 1)?;
    let negative_buckets = (0..n).map(|_| d.varint()).collect::<Result<Vec<_>>>()?;
    let custom_values = decode_custom_values(d, schema)?;
    Ok(Histogram {
        counter_reset_hint,
        schema,
        zero_threshold,
        zero_count,
        count: count_,
        sum,
        positive_spans,
        negative_spans,
        positive_buckets,
        negative_buckets,
        custom_values,
    })
}

fn encode_histogram(b: &mut Vec<u8>, h: &Histogram) {
    b.push(h.counter_reset_hint);
    put_varint(b, h.schema as i64);
    b.extend_from_slice(&h.zero_threshold.to_bits().to_be_bytes());
    put_uvarint(b, h.zero_count);
    put_uvarint(b, h.count);
    b.extend_from_slice(&h.sum.to_bits().to_be_bytes());
    encode_spans(b, &h.positive_spans);
    encode_spans(b, &h.negative_spans);
    put_uvarint(b, h.positive_buckets.len() as u64);
    for &x in &h.positive_buckets {
        put_varint(b, x);
    }
    put_uvarint(b, h.negative_buckets.len() as u64);
    for &x in &h.negative_buckets {
        put_varint(b, x);
    }
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        put_uvarint(b, h.custom_values.len() as u64);
        for &x in &h.custom_values {
            b.extend_from_slice(&x.to_bits().to_be_bytes());
        }
    }
}

fn decode_float_histogram(d: &mut Decbuf<'_>) -> Result<FloatHistogram> {
    let counter_reset_hint = d.byte()?;
    let schema = schema_of(d)?;
    let zero_threshold = d.be_f64()?;
    let zero_count = d.be_f64()?;
    let count_ = d.be_f64()?;
    let sum = d.be_f64()?;
    let positive_spans = decode_spans(d)?;
    let negative_spans = decode_spans(d)?;
    let n = count(d, 8)?;
    let positive_buckets = (0..n).map(|_| d.be_f64()).collect::<Result<Vec<_>>>()?;
    let n = count(d, 8)?;
    let negative_buckets = (0..n).map(|_| d.be_f64()).collect::<Result<Vec<_>>>()?;
    let custom_values = decode_custom_values(d, schema)?;
    Ok(FloatHistogram {
        counter_reset_hint,
        schema,
        zero_threshold,
        zero_count,
        count: count_,
        sum,
        positive_spans,
        negative_spans,
        positive_buckets,
        negative_buckets,
        custom_values,
    })
}

fn encode_float_histogram(b: &mut Vec<u8>, h: &FloatHistogram) {
    b.push(h.counter_reset_hint);
    put_varint(b, h.schema as i64);
    for x in [h.zero_threshold, h.zero_count, h.count, h.sum] {
        b.extend_from_slice(&x.to_bits().to_be_bytes());
    }
    encode_spans(b, &h.positive_spans);
    encode_spans(b, &h.negative_spans);
    for bs in [&h.positive_buckets, &h.negative_buckets] {
        put_uvarint(b, bs.len() as u64);
        for &x in bs.iter() {
            b.extend_from_slice(&x.to_bits().to_be_bytes());
        }
    }
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        put_uvarint(b, h.custom_values.len() as u64);
        for &x in &h.custom_values {
            b.extend_from_slice(&x.to_bits().to_be_bytes());
        }
    }
}

/// Decodes an integer histogram samples record (type 7, 9 or 12), appending to `out`.
pub fn decode_histogram_samples(rec: &[u8], out: &mut Vec<RefHistogramSample>) -> Result<()> {
    let mut d = Decbuf::new(rec);
    check_type(
        &mut d,
        &[
            HISTOGRAM_SAMPLES,
            CUSTOM_BUCKETS_HISTOGRAM_SAMPLES,
            HISTOGRAM_SAMPLES_V2,
        ],
        "histogram samples",
    )?;
    if rec[0] == HISTOGRAM_SAMPLES_V2 {
        return decode_v2_entries(&mut d, "histogram samples", out, |d, series_ref, t| {
            Ok(RefHistogramSample {
                series_ref,
                t,
                h: decode_histogram(d)?,
            })
        });
    }
    if d.is_empty() {
        return Ok(());
    }
    let base_ref = d.be64()?;
    let base_t = d.be64()? as i64;
    let start = out.len();
    while !d.is_empty() {
        let n = out.len() - start;
        let s = (|| -> Result<RefHistogramSample> {
            let dref = d.varint()?;
            let dt = d.varint()?;
            let h = decode_histogram(&mut d)?;
            Ok(RefHistogramSample {
                series_ref: base_ref.wrapping_add(dref as u64),
                t: base_t.wrapping_add(dt),
                h,
            })
        })()
        .map_err(|e| in_record("histogram samples", n, e))?;
        out.push(s);
    }
    Ok(())
}

/// Encodes integer histogram samples into `buf` (cleared first): as one type-7 record, or as
/// type 9 when `custom_buckets` is set. Histograms whose schema does not match the record kind
/// are skipped; use [`split_custom_buckets`] to separate them first.
pub fn encode_histogram_samples(
    hs: &[RefHistogramSample],
    custom_buckets: bool,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    buf.push(if custom_buckets {
        CUSTOM_BUCKETS_HISTOGRAM_SAMPLES
    } else {
        HISTOGRAM_SAMPLES
    });
    let mut it = hs
        .iter()
        .filter(|h| (h.h.schema == CUSTOM_BUCKETS_SCHEMA) == custom_buckets)
        .peekable();
    let Some(first) = it.peek().map(|h| (h.series_ref, h.t)) else {
        return;
    };
    buf.extend_from_slice(&first.0.to_be_bytes());
    buf.extend_from_slice(&first.1.to_be_bytes());
    for h in it {
        put_varint(buf, h.series_ref.wrapping_sub(first.0) as i64);
        put_varint(buf, h.t.wrapping_sub(first.1));
        encode_histogram(buf, &h.h);
    }
}

/// Decodes a float histogram samples record (type 8, 10 or 13), appending to `out`.
pub fn decode_float_histogram_samples(
    rec: &[u8],
    out: &mut Vec<RefFloatHistogramSample>,
) -> Result<()> {
    let mut d = Decbuf::new(rec);
    check_type(
        &mut d,
        &[
            FLOAT_HISTOGRAM_SAMPLES,
            CUSTOM_BUCKETS_FLOAT_HISTOGRAM_SAMPLES,
            FLOAT_HISTOGRAM_SAMPLES_V2,
        ],
        "float histogram samples",
    )?;
    if rec[0] == FLOAT_HISTOGRAM_SAMPLES_V2 {
        return decode_v2_entries(
            &mut d,
            "float histogram samples",
            out,
            |d, series_ref, t| {
                Ok(RefFloatHistogramSample {
                    series_ref,
                    t,
                    fh: decode_float_histogram(d)?,
                })
            },
        );
    }
    if d.is_empty() {
        return Ok(());
    }
    let base_ref = d.be64()?;
    let base_t = d.be64()? as i64;
    let start = out.len();
    while !d.is_empty() {
        let n = out.len() - start;
        let s = (|| -> Result<RefFloatHistogramSample> {
            let dref = d.varint()?;
            let dt = d.varint()?;
            let fh = decode_float_histogram(&mut d)?;
            Ok(RefFloatHistogramSample {
                series_ref: base_ref.wrapping_add(dref as u64),
                t: base_t.wrapping_add(dt),
                fh,
            })
        })()
        .map_err(|e| in_record("float histogram samples", n, e))?;
        out.push(s);
    }
    Ok(())
}

/// Encodes float histogram samples into `buf` (cleared first): type 8, or type 10 when
/// `custom_buckets` is set; histograms of the other kind are skipped.
pub fn encode_float_histogram_samples(
    hs: &[RefFloatHistogramSample],
    custom_buckets: bool,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    buf.push(if custom_buckets {
        CUSTOM_BUCKETS_FLOAT_HISTOGRAM_SAMPLES
    } else {
        FLOAT_HISTOGRAM_SAMPLES
    });
    let mut it = hs
        .iter()
        .filter(|h| (h.fh.schema == CUSTOM_BUCKETS_SCHEMA) == custom_buckets)
        .peekable();
    let Some(first) = it.peek().map(|h| (h.series_ref, h.t)) else {
        return;
    };
    buf.extend_from_slice(&first.0.to_be_bytes());
    buf.extend_from_slice(&first.1.to_be_bytes());
    for h in it {
        put_varint(buf, h.series_ref.wrapping_sub(first.0) as i64);
        put_varint(buf, h.t.wrapping_sub(first.1));
        encode_float_histogram(buf, &h.fh);
    }
}

/// Whether any histogram uses custom buckets, and whether any uses exponential buckets: tells
/// which of the two record kinds [`encode_histogram_samples`] must be called for.
pub fn split_custom_buckets(schemas: impl IntoIterator<Item = i32>) -> (bool, bool) {
    let (mut exp, mut custom) = (false, false);
    for s in schemas {
        if s == CUSTOM_BUCKETS_SCHEMA {
            custom = true;
        } else {
            exp = true;
        }
    }
    (exp, custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(p: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(p)
    }

    #[test]
    fn series_round_trip_and_bytes() {
        let s = vec![
            RefSeries {
                series_ref: 1,
                labels: ls(&[("__name__", "up"), ("job", "a")]),
            },
            RefSeries {
                series_ref: 300,
                labels: ls(&[("x", "日本")]),
            },
        ];
        let mut buf = vec![9, 9, 9];
        encode_series(&s, &mut buf);
        assert_eq!(&buf[..10], &[1, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&buf[10..19], b"\x08__name__");
        let mut out = Vec::new();
        decode_series(&buf, &mut out).unwrap();
        assert_eq!(out, s);
        assert_eq!(decode(&buf).unwrap(), Record::Series(s));
    }

    #[test]
    fn samples_round_trip_and_bytes() {
        let s = vec![
            RefSample {
                series_ref: 10,
                t: 1000,
                v: 1.5,
            },
            RefSample {
                series_ref: 8,
                t: 999,
                v: f64::NAN,
            },
            RefSample {
                series_ref: 11,
                t: 2000,
                v: -0.0,
            },
        ];
        let mut buf = Vec::new();
        encode_samples(&s, &mut buf);
        // type, base ref, base t, then (0, 0, 1.5) for the first sample
        assert_eq!(buf[0], 2);
        assert_eq!(&buf[1..9], &10u64.to_be_bytes());
        assert_eq!(&buf[9..17], &1000i64.to_be_bytes());
        assert_eq!(&buf[17..19], &[0, 0]);
        assert_eq!(&buf[19..27], &1.5f64.to_bits().to_be_bytes());
        assert_eq!(&buf[27..29], &[3, 1]); // zig-zag -2, -1
        let mut out = Vec::new();
        decode_samples(&buf, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!((out[1].series_ref, out[1].t), (8, 999));
        assert!(out[1].v.is_nan());
        assert_eq!(out[2].v.to_bits(), (-0.0f64).to_bits());
        encode_samples(&[], &mut buf);
        assert_eq!(buf, [2]);
        out.clear();
        decode_samples(&buf, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn tombstones_exemplars_metadata_markers_round_trip() {
        let t = vec![RefTombstone {
            series_ref: 5,
            mint: -10,
            maxt: 1 << 40,
        }];
        let mut buf = Vec::new();
        encode_tombstones(&t, &mut buf);
        assert_eq!(decode(&buf).unwrap(), Record::Tombstones(t));

        let e = vec![
            RefExemplar {
                series_ref: 5,
                t: 10,
                v: 1.0,
                labels: ls(&[("trace_id", "abc")]),
            },
            RefExemplar {
                series_ref: 3,
                t: 7,
                v: 2.0,
                labels: Labels::empty(),
            },
        ];
        encode_exemplars(&e, &mut buf);
        assert_eq!(decode(&buf).unwrap(), Record::Exemplars(e));

        let m = vec![RefMetadata {
            series_ref: 1 << 33,
            metric_type: MetricType::Counter as u8,
            unit: "seconds".into(),
            help: "Help \n text".into(),
        }];
        encode_metadata(&m, &mut buf);
        assert_eq!(decode(&buf).unwrap(), Record::Metadata(m));

        let mm = vec![RefMmapMarker {
            series_ref: 1,
            chunk_ref: (1 << 32) | 8,
        }];
        encode_mmap_markers(&mm, &mut buf);
        assert_eq!(decode(&buf).unwrap(), Record::MmapMarkers(mm));
    }

    #[test]
    fn histograms_round_trip() {
        let h = Histogram {
            counter_reset_hint: 1,
            schema: 3,
            zero_threshold: 0.001,
            zero_count: 2,
            count: 9,
            sum: 12.5,
            positive_spans: vec![
                Span {
                    offset: -2,
                    length: 2,
                },
                Span {
                    offset: 1,
                    length: 1,
                },
            ],
            negative_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![1, 2, -1],
            negative_buckets: vec![3],
            custom_values: vec![],
        };
        let mut nhcb = h.clone();
        nhcb.schema = CUSTOM_BUCKETS_SCHEMA;
        nhcb.negative_spans.clear();
        nhcb.negative_buckets.clear();
        nhcb.custom_values = vec![0.5, 1.0, f64::INFINITY];
        let hs = vec![
            RefHistogramSample {
                series_ref: 4,
                t: 100,
                h: h.clone(),
            },
            RefHistogramSample {
                series_ref: 5,
                t: 101,
                h: nhcb.clone(),
            },
        ];
        let mut buf = Vec::new();
        encode_histogram_samples(&hs, false, &mut buf);
        assert_eq!(buf[0], HISTOGRAM_SAMPLES);
        assert_eq!(
            decode(&buf).unwrap(),
            Record::HistogramSamples(vec![hs[0].clone()])
        );
        encode_histogram_samples(&hs, true, &mut buf);
        assert_eq!(buf[0], CUSTOM_BUCKETS_HISTOGRAM_SAMPLES);
        assert_eq!(
            decode(&buf).unwrap(),
            Record::HistogramSamples(vec![hs[1].clone()])
        );

        let fh = FloatHistogram {
            counter_reset_hint: 3,
            schema: 0,
            zero_threshold: 0.0,
            zero_count: 1.5,
            count: 4.5,
            sum: -3.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            negative_spans: vec![],
            positive_buckets: vec![1.0, 2.0],
            negative_buckets: vec![],
            custom_values: vec![],
        };
        let fhs = vec![RefFloatHistogramSample {
            series_ref: 1,
            t: 5,
            fh,
        }];
        encode_float_histogram_samples(&fhs, false, &mut buf);
        assert_eq!(decode(&buf).unwrap(), Record::FloatHistogramSamples(fhs));
        assert_eq!(split_custom_buckets([3, -53]), (true, true));
    }

    #[test]
    fn v2_records_with_start_timestamps_decode() {
        let mut b = vec![SAMPLES_V2];
        put_varint(&mut b, 5);
        put_varint(&mut b, 1000);
        put_varint(&mut b, 900);
        b.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        for (dref, dt, marker, v) in [
            (2i64, 10i64, 1u8, 2.5f64),
            (-1, 20, 2, 3.5),
            (0, 30, 0, 4.5),
        ] {
            put_varint(&mut b, dref);
            put_varint(&mut b, dt);
            b.push(marker);
            if marker == 2 {
                put_varint(&mut b, 5);
            }
            b.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        let want = vec![
            RefSample {
                series_ref: 5,
                t: 1000,
                v: 1.5,
            },
            RefSample {
                series_ref: 7,
                t: 1010,
                v: 2.5,
            },
            RefSample {
                series_ref: 6,
                t: 1020,
                v: 3.5,
            },
            RefSample {
                series_ref: 6,
                t: 1030,
                v: 4.5,
            },
        ];
        assert_eq!(record_type(&b), RecordType::SamplesV2);
        assert_eq!(decode(&b).unwrap(), Record::Samples(want));
        assert!(decode(&b[..b.len() - 1]).is_err());

        // Histograms: the histogram body is the same as in v1 records.
        let h = Histogram {
            schema: 2,
            count: 3,
            positive_spans: vec![Span {
                offset: 1,
                length: 1,
            }],
            positive_buckets: vec![3],
            ..Default::default()
        };
        let mut v1 = Vec::new();
        encode_histogram_samples(
            &[RefHistogramSample {
                series_ref: 1,
                t: 0,
                h: h.clone(),
            }],
            false,
            &mut v1,
        );
        let body = &v1[1 + 16 + 2..];
        let mut b = vec![HISTOGRAM_SAMPLES_V2];
        put_varint(&mut b, 9);
        put_varint(&mut b, 100);
        put_varint(&mut b, 0);
        b.extend_from_slice(body);
        put_varint(&mut b, 1);
        put_varint(&mut b, 7);
        b.push(1);
        b.extend_from_slice(body);
        assert_eq!(
            decode(&b).unwrap(),
            Record::HistogramSamples(vec![
                RefHistogramSample {
                    series_ref: 9,
                    t: 100,
                    h: h.clone()
                },
                RefHistogramSample {
                    series_ref: 10,
                    t: 107,
                    h
                },
            ])
        );
    }

    #[test]
    fn truncated_and_unknown_records() {
        let mut buf = Vec::new();
        encode_samples(
            &[RefSample {
                series_ref: 1,
                t: 2,
                v: 3.0,
            }],
            &mut buf,
        );
        // Only the type byte alone and type + base (17 bytes, no sample) are complete records.
        for n in (2..buf.len()).filter(|&n| n != 17) {
            assert!(decode(&buf[..n]).is_err(), "prefix {n} must not decode");
        }
        encode_series(
            &[RefSeries {
                series_ref: 1,
                labels: ls(&[("a", "b")]),
            }],
            &mut buf,
        );
        assert!(decode(&buf[..buf.len() - 1]).is_err());
        assert_eq!(
            decode(&[14, 1, 2]).unwrap(),
            Record::Unknown {
                record_type: 14,
                len: 3
            }
        );
        assert_eq!(
            decode(&[]).unwrap(),
            Record::Unknown {
                record_type: 0,
                len: 0
            }
        );
        // A huge label count must error, not allocate.
        assert!(decode(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
