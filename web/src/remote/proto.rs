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

/// `prometheus.WriteRequest`: the remote write 1.0 body (snappy block-compressed).
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
