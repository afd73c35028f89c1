//! The protobuf messages of Prometheus's remote write 1.0 and remote read protocols
//! (`prometheus/prompb/{types,remote}.proto`), declared by hand with `prost` derives so no
//! `protoc` is needed. Field numbers and types follow the `.proto` files exactly; fields ignis
//! does not use (native histograms, exemplars' details) are declared so they decode and are
//! skipped cleanly.

use prost::Message;

/// `prometheus.Sample`: a float sample.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Sample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Timestamp in ms.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    /// Exemplar labels.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Timestamp in ms.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.Histogram`, kept opaque: only its timestamp is read, to report it.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    /// Timestamp in ms.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels, sorted by name by well-behaved senders.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Float samples in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars.
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histograms.
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.MetricMetadata`.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    /// Metric type (enum `MetricType`).
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Metric family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// `prometheus.WriteRequest`: the remote write 1.0 body (snappy block-compressed). The
/// receiver decodes it with [`zerocopy::WriteRequestRef`]; this owned form is the reference
/// the tests compare with.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// Series with their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric metadata.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.LabelMatcher`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelMatcher {
    /// 0 `EQ`, 1 `NEQ`, 2 `RE`, 3 `NRE`.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Value or regular expression.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// `prometheus.ReadHints`.
#[derive(Clone, PartialEq, Message)]
pub struct ReadHints {
    /// Query step (ms).
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    /// Surrounding function.
    #[prost(string, tag = "2")]
    pub func: String,
    /// Start (ms).
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    /// End (ms).
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    /// Grouping labels.
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    /// Whether grouping is `by`.
    #[prost(bool, tag = "6")]
    pub by: bool,
    /// Range of the range selector (ms).
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}

/// `prometheus.Query`.
#[derive(Clone, PartialEq, Message)]
pub struct Query {
    /// Start (ms, inclusive).
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// End (ms, inclusive).
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// Matchers.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    /// Hints.
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

/// `ReadRequest.ResponseType.SAMPLES`.
pub const RESPONSE_SAMPLES: i32 = 0;
/// `ReadRequest.ResponseType.STREAMED_XOR_CHUNKS`.
pub const RESPONSE_STREAMED_XOR_CHUNKS: i32 = 1;

/// `prometheus.ReadRequest` (snappy block-compressed).
#[derive(Clone, PartialEq, Message)]
pub struct ReadRequest {
    /// Queries.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// Response types the client accepts, in order of preference.
    #[prost(int32, repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `prometheus.QueryResult`.
#[derive(Clone, PartialEq, Message)]
pub struct QueryResult {
    /// Series with samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.ReadResponse`: the samples response (snappy block-compressed).
#[derive(Clone, PartialEq, Message)]
pub struct ReadResponse {
    /// One result per query, in order.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `Chunk.Encoding.XOR`.
pub const CHUNK_XOR: i32 = 1;

/// `prometheus.Chunk`.
#[derive(Clone, PartialEq, Message)]
pub struct Chunk {
    /// First sample's time (ms).
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    /// Last sample's time (ms).
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    /// Encoding (1 = XOR).
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    /// The encoded chunk.
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

/// `prometheus.ChunkedSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct ChunkedSeries {
    /// Labels.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Chunks in time order.
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

/// `prometheus.ChunkedReadResponse`: one frame of the streamed response.
#[derive(Clone, PartialEq, Message)]
pub struct ChunkedReadResponse {
    /// Series (parts) in this frame.
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    /// Index of the query this frame answers.
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

/// Remote write 2.0 messages (`io.prometheus.write.v2`): label names and values are interned in
/// the request's symbol table and referenced by index.
pub mod v2 {
    use prost::Message;

    /// `io.prometheus.write.v2.Sample`.
    #[derive(Clone, Copy, PartialEq, Message)]
    pub struct Sample {
        /// Value.
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Timestamp in ms.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    /// `io.prometheus.write.v2.TimeSeries` (histograms, exemplars and metadata are skipped).
    #[derive(Clone, PartialEq, Message)]
    pub struct TimeSeries {
        /// Pairs of symbol indexes: name, value, name, value, …
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// Float samples.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        /// Created timestamp (ms), 0 when unknown.
        #[prost(int64, tag = "6")]
        pub created_timestamp: i64,
    }

    /// `io.prometheus.write.v2.Request`.
    #[derive(Clone, PartialEq, Message)]
    pub struct Request {
        /// The symbol table; the first entry is the empty string.
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        /// Series.
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }
}

/// Zero-copy decoding of a remote write 1.0 `WriteRequest`.
///
/// [`WriteRequestRef::decode`] walks the protobuf wire format of a decompressed body once and
/// keeps label names and values as `&str` slices of it (checked to be UTF-8), so decoding a
/// request allocates three vectors whatever its size instead of two strings per label and
/// vectors per series. Only what the receiver uses is kept: labels and float samples.
/// Exemplars, native histograms (counted), metadata and unknown fields are skipped by wire
/// type. Wire format (protobuf):
///
/// ```text
/// WriteRequest: 1 timeseries (LEN, TimeSeries, repeated) | 3 metadata (LEN, skipped)
/// TimeSeries:   1 labels (LEN, Label, repeated) | 2 samples (LEN, Sample, repeated)
///               | 3 exemplars (LEN, skipped) | 4 histograms (LEN, counted and skipped)
/// Label:        1 name (LEN, UTF-8) | 2 value (LEN, UTF-8)
/// Sample:       1 value (I64, f64 bits) | 2 timestamp (VARINT, int64)
/// ```
///
/// A field's key is a varint `tag << 3 | wire type`; wire types are 0 VARINT, 1 I64, 2 LEN
/// (varint length, then the bytes), 5 I32. A known field with another wire type, a truncated
/// varint or field, a length past the end of its message, a varint over 10 bytes, tag 0, a
/// group (wire types 3/4) or invalid UTF-8 in a string is an error naming the byte offset.
/// As in proto3, a scalar field given twice keeps its last value.
pub mod zerocopy {
    use std::ops::Range;

    /// One series of a request: ranges into [`WriteRequestRef::labels`] and
    /// [`WriteRequestRef::samples`].
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SeriesRef {
        /// Its labels, in wire order.
        pub labels: Range<usize>,
        /// Its float samples, in wire order.
        pub samples: Range<usize>,
        /// After [`WriteRequestRef::decode_lazy_into`]: the body byte range of the series'
        /// label fields, not decoded yet (`labels` is then empty; see
        /// [`WriteRequestRef::labels_of`]). `None` when `labels` holds them.
        pub raw_labels: Option<Range<usize>>,
    }

    /// A decoded `WriteRequest` borrowing its strings from the decompressed body.
    #[derive(Debug, Default, PartialEq)]
    pub struct WriteRequestRef<'a> {
        /// Every series' labels (name, value), series after series.
        pub labels: Vec<(&'a str, &'a str)>,
        /// Every series' samples (timestamp ms, value), series after series.
        pub samples: Vec<(i64, f64)>,
        /// The series.
        pub series: Vec<SeriesRef>,
        /// Native histogram samples seen (not stored by ignis).
        pub histograms: usize,
        /// The body decoded last.
        pub body: &'a [u8],
    }

    const VARINT: u8 = 0;
    const I64: u8 = 1;
    const LEN: u8 = 2;
    const I32: u8 = 5;

    /// A cursor over one message's bytes; `base` is the message's offset in the body, for
    /// error messages.
    struct Cursor<'a> {
        buf: &'a [u8],
        pos: usize,
        base: usize,
    }

    impl<'a> Cursor<'a> {
        fn new(buf: &'a [u8], base: usize) -> Self {
            Cursor { buf, pos: 0, base }
        }

        fn at_end(&self) -> bool {
            self.pos >= self.buf.len()
        }

        fn offset(&self) -> usize {
            self.base + self.pos
        }

        #[inline]
        fn varint(&mut self) -> Result<u64, String> {
            // Most varints (keys, short lengths) are one byte.
            if let Some(&b) = self.buf.get(self.pos) {
                if b < 0x80 {
                    self.pos += 1;
                    return Ok(u64::from(b));
                }
            }
            self.varint_slow()
        }

        #[inline(never)]
        fn varint_slow(&mut self) -> Result<u64, String> {
            let start = self.offset();
            let mut v = 0u64;
            for i in 0..10 {
                let Some(&b) = self.buf.get(self.pos) else {
                    return Err(format!("truncated varint at byte {start}"));
                };
                self.pos += 1;
                if i == 9 && b > 1 {
                    return Err(format!("varint overflows 64 bits at byte {start}"));
                }
                v |= u64::from(b & 0x7f) << (7 * i);
                if b < 0x80 {
                    return Ok(v);
                }
            }
            Err(format!("varint longer than 10 bytes at byte {start}"))
        }

        /// The next field's tag and wire type, `None` at the end.
        #[inline]
        fn key(&mut self) -> Result<Option<(u32, u8)>, String> {
            if self.at_end() {
                return Ok(None);
            }
            let at = self.offset();
            let k = self.varint()?;
            let tag = k >> 3;
            if tag == 0 || tag > u64::from(u32::MAX >> 3) {
                return Err(format!("invalid field tag {tag} at byte {at}"));
            }
            Ok(Some((tag as u32, (k & 7) as u8)))
        }

        fn fixed64(&mut self) -> Result<u64, String> {
            let at = self.offset();
            let b = self
                .buf
                .get(self.pos..self.pos + 8)
                .ok_or_else(|| format!("truncated 64-bit field at byte {at}"))?;
            self.pos += 8;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(u64::from_le_bytes(a))
        }

        /// A length-delimited field's bytes and their offset in the body.
        #[inline]
        fn bytes(&mut self) -> Result<(&'a [u8], usize), String> {
            let at = self.offset();
            let n = self.varint()?;
            let left = self.buf.len() - self.pos;
            if n > left as u64 {
                return Err(format!(
                    "length {n} at byte {at} exceeds the {left} bytes left in the message"
                ));
            }
            let start = self.pos;
            self.pos += n as usize;
            Ok((&self.buf[start..self.pos], self.base + start))
        }

        /// A string field. `whole` is the enclosing message as text when all of it is valid
        /// UTF-8: then the field is a slice of it and needs no check of its own (it starts
        /// after an ASCII length byte and ends before an ASCII key byte or the end, so it is
        /// valid UTF-8 too; `str::get` still checks the boundaries).
        fn string(&mut self, what: &str, whole: Option<&'a str>) -> Result<&'a str, String> {
            let (b, at) = self.bytes()?;
            if let Some(s) = whole.and_then(|w| w.get(self.pos - b.len()..self.pos)) {
                return Ok(s);
            }
            std::str::from_utf8(b)
                .map_err(|e| format!("invalid UTF-8 in {what} at byte {}", at + e.valid_up_to()))
        }

        /// Skips a field of wire type `wt` (unknown or unused field `tag`).
        fn skip(&mut self, tag: u32, wt: u8) -> Result<(), String> {
            let at = self.offset();
            match wt {
                VARINT => self.varint().map(drop),
                I64 => self.fixed64().map(drop),
                LEN => self.bytes().map(drop),
                I32 => {
                    if self.buf.len() - self.pos < 4 {
                        return Err(format!("truncated 32-bit field at byte {at}"));
                    }
                    self.pos += 4;
                    Ok(())
                }
                _ => Err(format!(
                    "unsupported wire type {wt} for field {tag} at byte {at}"
                )),
            }
        }
    }

    fn expect(msg: &str, tag: u32, wt: u8, want: u8, at: usize) -> Result<(), String> {
        if wt == want {
            Ok(())
        } else {
            Err(format!(
                "invalid wire type {wt} for {msg} field {tag} at byte {at} (expected {want})"
            ))
        }
    }

    impl<'a> WriteRequestRef<'a> {
        /// Decodes a decompressed `WriteRequest`; see the module docs.
        #[cfg(test)]
        pub fn decode(body: &'a [u8]) -> Result<Self, String> {
            let mut r = WriteRequestRef::default();
            r.decode_into(body)?;
            Ok(r)
        }

        /// As [`WriteRequestRef::decode`], into `self` (cleared first) to reuse its vectors.
        pub fn decode_into(&mut self, body: &'a [u8]) -> Result<(), String> {
            self.decode_with(body, false)
        }

        /// As [`WriteRequestRef::decode_into`], but a series whose label fields all come first
        /// with one-byte keys and lengths (what usual senders send) keeps them undecoded and
        /// unchecked in [`SeriesRef::raw_labels`]: [`WriteRequestRef::labels_of`] decodes (and
        /// checks) them when they are needed. The rest of the body is checked as by
        /// [`WriteRequestRef::decode_into`].
        pub fn decode_lazy_into(&mut self, body: &'a [u8]) -> Result<(), String> {
            self.decode_with(body, true)
        }

        fn decode_with(&mut self, body: &'a [u8], lazy: bool) -> Result<(), String> {
            self.labels.clear();
            self.samples.clear();
            self.series.clear();
            self.histograms = 0;
            self.body = body;
            let mut c = Cursor::new(body, 0);
            while let Some((tag, wt)) = c.key()? {
                if tag == 1 {
                    expect("WriteRequest", tag, wt, LEN, c.offset())?;
                    let (b, at) = c.bytes()?;
                    self.series_msg(b, at, lazy)?;
                } else {
                    c.skip(tag, wt)?;
                }
            }
            Ok(())
        }

        /// The label pairs of `s` (a series of this request) into `out` (cleared first),
        /// decoded from the body now if the decode left them raw.
        pub fn labels_of(
            &self,
            s: &SeriesRef,
            out: &mut Vec<(&'a str, &'a str)>,
        ) -> Result<(), String> {
            out.clear();
            match &s.raw_labels {
                Some(r) => {
                    let run = self
                        .body
                        .get(r.clone())
                        .ok_or_else(|| format!("label range {r:?} outside the body"))?;
                    label_run(run, r.start, out)
                }
                None => {
                    out.extend_from_slice(&self.labels[s.labels.clone()]);
                    Ok(())
                }
            }
        }

        fn series_msg(&mut self, buf: &'a [u8], base: usize, lazy: bool) -> Result<(), String> {
            let (l0, s0) = (self.labels.len(), self.samples.len());
            // The leading run of label fields with one-byte keys and lengths (all of them, from
            // usual senders).
            let mut end = 0;
            while let [0x0a, n, ..] = buf[end..] {
                let next = end + 2 + usize::from(n);
                if n >= 0x80 || next > buf.len() {
                    break;
                }
                end = next;
            }
            let mut raw = Some(base..base + end);
            if !lazy {
                label_run(&buf[..end], base, &mut self.labels)?;
                raw = None;
            }
            let mut c = Cursor::new(buf, base);
            c.pos = end;
            while let Some((tag, wt)) = c.key()? {
                match tag {
                    1 => {
                        expect("TimeSeries", tag, wt, LEN, c.offset())?;
                        if raw.take().is_some() {
                            // A label after the leading run: all are decoded now.
                            label_run(&buf[..end], base, &mut self.labels)?;
                        }
                        let (b, at) = c.bytes()?;
                        self.labels.push(label_msg(b, at, None)?);
                    }
                    2 => {
                        expect("TimeSeries", tag, wt, LEN, c.offset())?;
                        let (b, at) = c.bytes()?;
                        self.samples.push(sample_msg(b, at)?);
                    }
                    4 => {
                        expect("TimeSeries", tag, wt, LEN, c.offset())?;
                        c.bytes()?;
                        self.histograms += 1;
                    }
                    _ => c.skip(tag, wt)?,
                }
            }
            self.series.push(SeriesRef {
                labels: l0..self.labels.len(),
                samples: s0..self.samples.len(),
                raw_labels: raw,
            });
            Ok(())
        }
    }

    /// Decodes `run`, a sequence of `Label` fields with one-byte keys and lengths starting at
    /// byte `base` of the body, into `out`. The run is checked for UTF-8 in one go: its framing
    /// bytes are ASCII, so when the run is valid UTF-8 every label string in it is too.
    fn label_run<'a>(
        run: &'a [u8],
        base: usize,
        out: &mut Vec<(&'a str, &'a str)>,
    ) -> Result<(), String> {
        let text = std::str::from_utf8(run).ok();
        let mut c = Cursor::new(run, base);
        while let Some((tag, wt)) = c.key()? {
            // Only label fields make up a run (see `series_msg`).
            expect("TimeSeries", tag, wt, LEN, c.offset())?;
            if tag != 1 {
                return Err(format!(
                    "field {tag} in a run of labels at byte {}",
                    c.offset()
                ));
            }
            let (b, at) = c.bytes()?;
            let whole = text.and_then(|t| t.get(c.pos - b.len()..c.pos));
            out.push(label_msg(b, at, whole)?);
        }
        Ok(())
    }

    /// A `Label` message; `whole` is `buf` as text when the caller already checked it.
    #[inline]
    fn label_msg<'a>(
        buf: &'a [u8],
        base: usize,
        whole: Option<&'a str>,
    ) -> Result<(&'a str, &'a str), String> {
        // Usual shape: name then value, one-byte lengths, nothing else.
        if let (Some(w), [0x0a, nl, ..]) = (whole, buf) {
            let nl = usize::from(*nl);
            if let (Some(0x12), Some(&vl)) = (buf.get(2 + nl), buf.get(3 + nl)) {
                if nl < 0x80 && vl < 0x80 && 4 + nl + usize::from(vl) == buf.len() {
                    if let (Some(n), Some(v)) = (w.get(2..2 + nl), w.get(4 + nl..)) {
                        return Ok((n, v));
                    }
                }
            }
        }
        let (mut name, mut value) = ("", "");
        // One UTF-8 check for the whole label instead of one per string.
        let whole = whole.or_else(|| std::str::from_utf8(buf).ok());
        let mut c = Cursor::new(buf, base);
        while let Some((tag, wt)) = c.key()? {
            match tag {
                1 => {
                    expect("Label", tag, wt, LEN, c.offset())?;
                    name = c.string("label name", whole)?;
                }
                2 => {
                    expect("Label", tag, wt, LEN, c.offset())?;
                    value = c.string("label value", whole)?;
                }
                _ => c.skip(tag, wt)?,
            }
        }
        Ok((name, value))
    }

    #[inline]
    fn sample_msg(buf: &[u8], base: usize) -> Result<(i64, f64), String> {
        // Usual shape: value then timestamp, nothing else.
        if let [0x09, b0, b1, b2, b3, b4, b5, b6, b7, 0x10, ref ts @ ..] = *buf {
            let v = f64::from_bits(u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]));
            let mut c = Cursor::new(ts, base + 10);
            let t = c.varint()? as i64;
            if c.at_end() {
                return Ok((t, v));
            }
        }
        let (mut t, mut v) = (0i64, 0f64);
        let mut c = Cursor::new(buf, base);
        while let Some((tag, wt)) = c.key()? {
            match tag {
                1 => {
                    expect("Sample", tag, wt, I64, c.offset())?;
                    v = f64::from_bits(c.fixed64()?);
                }
                2 => {
                    expect("Sample", tag, wt, VARINT, c.offset())?;
                    t = c.varint()? as i64;
                }
                _ => c.skip(tag, wt)?,
            }
        }
        Ok((t, v))
    }
}

#[cfg(test)]
mod tests {
    use super::zerocopy::{SeriesRef, WriteRequestRef};
    use super::*;

    fn label(n: &str, v: &str) -> Label {
        Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn rich_request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![label("__name__", "up"), label("job", "ñode")],
                    samples: vec![
                        Sample {
                            value: 1.5,
                            timestamp: 1000,
                        },
                        Sample {
                            value: f64::NAN,
                            timestamp: -5,
                        },
                    ],
                    exemplars: vec![Exemplar {
                        labels: vec![label("trace_id", "abc")],
                        value: 2.0,
                        timestamp: 3,
                    }],
                    histograms: vec![Histogram { timestamp: 7 }],
                },
                // Defaults: an empty label value and a sample with zero value and time.
                TimeSeries {
                    labels: vec![label("z", ""), label("a", "1")],
                    samples: vec![Sample {
                        value: 0.0,
                        timestamp: 0,
                    }],
                    exemplars: vec![],
                    histograms: vec![],
                },
                TimeSeries::default(),
            ],
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        }
    }

    #[test]
    fn zero_copy_decode_matches_prost() {
        let req = rich_request();
        let mut body = req.encode_to_vec();
        // An unknown field of every wire type at the top level is skipped.
        body.extend_from_slice(&[0x10, 0x96, 0x01]); // 2: varint
        body.extend_from_slice(&[0x21, 1, 2, 3, 4, 5, 6, 7, 8]); // 4: i64
        body.extend_from_slice(&[0x2a, 2, b'h', b'i']); // 5: len
        body.extend_from_slice(&[0x35, 1, 2, 3, 4]); // 6: i32
        let got = WriteRequestRef::decode(&body).unwrap();
        assert_eq!(got.series.len(), req.timeseries.len());
        assert_eq!(got.histograms, 1);
        for (s, want) in got.series.iter().zip(&req.timeseries) {
            let labels: Vec<_> = got.labels[s.labels.clone()]
                .iter()
                .map(|&(n, v)| label(n, v))
                .collect();
            assert_eq!(labels, want.labels);
            let samples = &got.samples[s.samples.clone()];
            assert_eq!(samples.len(), want.samples.len());
            for (&(t, v), w) in samples.iter().zip(&want.samples) {
                assert_eq!((t, v.to_bits()), (w.timestamp, w.value.to_bits()));
            }
        }
        assert_eq!(
            got.series[2],
            SeriesRef {
                labels: 4..4,
                samples: 3..3,
                raw_labels: None,
            }
        );
        assert_eq!(WriteRequestRef::decode(&[]).unwrap(), Default::default());
    }

    #[test]
    fn long_and_multibyte_strings_decode() {
        let long = "é".repeat(200) + "x";
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("ä", &long), label("b", "日本")],
                ..Default::default()
            }],
            metadata: vec![],
        };
        let body = req.encode_to_vec();
        let got = WriteRequestRef::decode(&body).unwrap();
        assert_eq!(got.labels, vec![("ä", long.as_str()), ("b", "日本")]);
    }

    #[test]
    fn repeated_scalar_keeps_the_last_value() {
        // Label with name given twice, sample with timestamp given twice.
        let label = [0x0a, 1, b'a', 0x0a, 1, b'b', 0x12, 1, b'v'];
        let sample = [0x10, 5, 0x10, 6];
        let mut ts = vec![0x0a, label.len() as u8];
        ts.extend_from_slice(&label);
        ts.extend_from_slice(&[0x12, sample.len() as u8]);
        ts.extend_from_slice(&sample);
        let mut body = vec![0x0a, ts.len() as u8];
        body.extend_from_slice(&ts);
        let got = WriteRequestRef::decode(&body).unwrap();
        assert_eq!(got.labels, vec![("b", "v")]);
        assert_eq!(got.samples, vec![(6, 0.0)]);
    }

    /// Messages off the usual shape (labels after samples or between them, extra fields in
    /// a label or sample, value before name, two-byte lengths next to one-byte ones, multibyte
    /// text) decode as prost decodes them.
    #[test]
    fn unusual_shapes_decode_like_prost() {
        let long = "x".repeat(130);
        let want = vec![
            label("__name__", "up"),
            label("ü", "日本"),
            label("job", &long),
            label("z", "1"),
        ];
        let mut ts = Vec::new();
        let field = |out: &mut Vec<u8>, key: u8, body: &[u8]| {
            out.push(key);
            prost::encoding::encode_varint(body.len() as u64, out);
            out.extend_from_slice(body);
        };
        // A sample first: value then timestamp, and a trailing unknown varint field.
        let mut smp = vec![0x09];
        smp.extend_from_slice(&2.5f64.to_le_bytes());
        smp.extend_from_slice(&[0x10, 0x05, 0x18, 0x01]);
        field(&mut ts, 0x12, &smp);
        // Usual label.
        field(&mut ts, 0x0a, &label("__name__", "up").encode_to_vec());
        // Value before name.
        let mut l = Vec::new();
        field(&mut l, 0x12, "日本".as_bytes());
        field(&mut l, 0x0a, "ü".as_bytes());
        field(&mut ts, 0x0a, &l);
        // Two-byte length.
        field(&mut ts, 0x0a, &label("job", &long).encode_to_vec());
        // Unknown field inside the label.
        let mut l = label("z", "1").encode_to_vec();
        l.extend_from_slice(&[0x18, 0x07]);
        field(&mut ts, 0x0a, &l);
        // Timestamp before value.
        let mut smp = vec![0x10, 0x06, 0x09];
        smp.extend_from_slice(&3.5f64.to_le_bytes());
        field(&mut ts, 0x12, &smp);
        let mut body = Vec::new();
        field(&mut body, 0x0a, &ts);
        let via_prost = WriteRequest::decode(body.as_slice()).unwrap();
        assert_eq!(via_prost.timeseries[0].labels, want);
        let got = WriteRequestRef::decode(&body).unwrap();
        let labels: Vec<_> = got.labels.iter().map(|&(n, v)| label(n, v)).collect();
        assert_eq!(labels, want);
        assert_eq!(got.samples, vec![(5, 2.5), (6, 3.5)]);
        // A usual label message whose value is not UTF-8 is still refused.
        let mut ts = Vec::new();
        field(&mut ts, 0x0a, &[0x0a, 1, b'a', 0x12, 2, 0xc3, 0x28]);
        let mut body = Vec::new();
        field(&mut body, 0x0a, &ts);
        assert!(err(&body).contains("invalid UTF-8 in label value at byte 9"));
        // A usual sample whose timestamp varint is cut short is refused.
        let mut smp = vec![0x09];
        smp.extend_from_slice(&1f64.to_le_bytes());
        smp.extend_from_slice(&[0x10, 0x85]);
        let mut ts = Vec::new();
        field(&mut ts, 0x12, &smp);
        let mut body = Vec::new();
        field(&mut body, 0x0a, &ts);
        assert!(
            err(&body).contains("truncated varint at byte 14"),
            "{}",
            err(&body)
        );
    }

    /// The lazy decode leaves usual label runs raw, decodes them as the eager decode does on
    /// demand, decodes irregular series' labels at once, and checks everything but the raw
    /// runs while decoding.
    #[test]
    fn lazy_decode_defers_label_runs() {
        let req = rich_request();
        let body = req.encode_to_vec();
        let eager = WriteRequestRef::decode(&body).unwrap();
        let mut lazy = WriteRequestRef::default();
        lazy.decode_lazy_into(&body).unwrap();
        assert!(lazy.labels.is_empty());
        let bits = |r: &WriteRequestRef| -> Vec<(i64, u64)> {
            r.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
        };
        assert_eq!(bits(&lazy), bits(&eager));
        assert_eq!(lazy.histograms, eager.histograms);
        let mut pairs = Vec::new();
        for (l, e) in lazy.series.iter().zip(&eager.series) {
            assert!(l.raw_labels.is_some());
            lazy.labels_of(l, &mut pairs).unwrap();
            assert_eq!(pairs, eager.labels[e.labels.clone()]);
            eager.labels_of(e, &mut pairs).unwrap();
            assert_eq!(pairs, eager.labels[e.labels.clone()]);
        }
        // A label after a sample: decoded at once, in wire order.
        let field = |out: &mut Vec<u8>, key: u8, body: &[u8]| {
            out.push(key);
            prost::encoding::encode_varint(body.len() as u64, out);
            out.extend_from_slice(body);
        };
        let mut ts = Vec::new();
        field(&mut ts, 0x0a, &label("a", "1").encode_to_vec());
        let mut smp = vec![0x09];
        smp.extend_from_slice(&2.5f64.to_le_bytes());
        smp.extend_from_slice(&[0x10, 0x05]);
        field(&mut ts, 0x12, &smp);
        field(&mut ts, 0x0a, &label("b", "2").encode_to_vec());
        let mut body = Vec::new();
        field(&mut body, 0x0a, &ts);
        lazy.decode_lazy_into(&body).unwrap();
        assert_eq!(lazy.series[0].raw_labels, None);
        assert_eq!(lazy.labels, vec![("a", "1"), ("b", "2")]);
        assert_eq!(lazy.samples, vec![(5, 2.5)]);
        // Damage inside a raw run is found when the labels are asked for: invalid UTF-8, a
        // malformed label message.
        let run_error = |label: &[u8]| {
            let mut ts = Vec::new();
            field(&mut ts, 0x0a, label);
            let mut body = Vec::new();
            field(&mut body, 0x0a, &ts);
            let mut lazy = WriteRequestRef::default();
            lazy.decode_lazy_into(&body).unwrap();
            lazy.labels_of(&lazy.series[0], &mut Vec::new())
                .unwrap_err()
        };
        let e = run_error(&[0x0a, 1, b'a', 0x12, 2, 0xc3, 0x28]);
        assert!(e.contains("invalid UTF-8 in label value at byte 9"), "{e}");
        let e = run_error(&[0x0a, 5, b'a']);
        assert!(e.contains("length 5 at byte 5 exceeds"), "{e}");
        // Samples are still checked while decoding.
        let mut ts = Vec::new();
        field(&mut ts, 0x0a, &label("a", "1").encode_to_vec());
        field(&mut ts, 0x12, &[0x09, 0, 0]);
        let mut body = Vec::new();
        field(&mut body, 0x0a, &ts);
        let e = lazy.decode_lazy_into(&body).unwrap_err();
        assert!(e.contains("truncated 64-bit field"), "{e}");
    }

    fn err(body: &[u8]) -> String {
        WriteRequestRef::decode(body).unwrap_err()
    }

    #[test]
    fn malformed_protobuf_is_refused_with_the_offset() {
        // Truncated varint (key continues past the end).
        assert!(err(&[0x0a, 0x80]).contains("truncated varint at byte 1"));
        assert!(err(&[0x80]).contains("truncated varint at byte 0"));
        // Varint over 10 bytes / overflowing 64 bits.
        assert!(
            err(&[0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .contains("overflows 64 bits")
        );
        // Wrong wire type for a known field: timeseries as varint.
        let e = err(&[0x08, 0x01]);
        assert!(
            e.contains("invalid wire type 0 for WriteRequest field 1"),
            "{e}"
        );
        // Sample value as varint instead of 64-bit.
        let e = err(&[0x0a, 0x04, 0x12, 0x02, 0x08, 0x01]);
        assert!(e.contains("invalid wire type 0 for Sample field 1"), "{e}");
        // Length past the end, at the top and inside a series.
        let e = err(&[0x0a, 0x05, 0x0a]);
        assert!(
            e.contains("length 5 at byte 1 exceeds the 1 bytes left"),
            "{e}"
        );
        let e = err(&[0x0a, 0x02, 0x0a, 0x09]);
        assert!(
            e.contains("length 9 at byte 3 exceeds the 0 bytes left"),
            "{e}"
        );
        // Truncated fixed64 sample value.
        let e = err(&[0x0a, 0x05, 0x12, 0x03, 0x09, 0x00, 0x00]);
        assert!(e.contains("truncated 64-bit field at byte 5"), "{e}");
        // Invalid UTF-8 in a label value.
        let e = err(&[0x0a, 0x08, 0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, 0xff]);
        assert!(e.contains("invalid UTF-8 in label value at byte 9"), "{e}");
        // Field tag 0 and groups.
        assert!(err(&[0x00]).contains("invalid field tag 0"));
        assert!(err(&[0x13]).contains("unsupported wire type 3 for field 2"));
        assert!(err(&[0x0b]).contains("invalid wire type 3 for WriteRequest field 1"));
        // Every strict prefix of the series part of a valid request fails or decodes less.
        let mut req = rich_request();
        req.metadata.clear();
        let full = req.encode_to_vec();
        for n in 0..full.len() {
            if let Ok(r) = WriteRequestRef::decode(&full[..n]) {
                assert!(r.samples.len() < 3 || r.series.len() < 3, "prefix {n}");
            }
        }
    }
}
