//! Remote read, `POST /api/v1/read`.
//!
//! Request: a snappy block-compressed `prometheus.ReadRequest`. The response type is the first
//! of `accepted_response_types` the server supports (none given means samples):
//!
//! - **samples**: a snappy block-compressed `prometheus.ReadResponse`, content type
//!   `application/x-protobuf`, `Content-Encoding: snappy`; the total number of samples is
//!   capped by `--storage.remote.read-sample-limit` (400 `exceeded sample limit (N)`).
//! - **streamed XOR chunks**: content type
//!   `application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse`, a stream of
//!   frames, each
//!
//!   ```text
//!   ┌────────────────────┬──────────────────────────┬──────────────────────────────┐
//!   │ len(data) uvarint  │ CRC-32C(data), 4 B, BE   │ data: ChunkedReadResponse    │
//!   └────────────────────┴──────────────────────────┴──────────────────────────────┘
//!   ```
//!
//!   Each frame holds chunks of one series (a series spans several frames when its chunks
//!   exceed `--storage.remote.read-max-bytes-in-frame` bytes, 1 MiB by default). Chunks are XOR
//!   chunks of up to 120 samples, byte-identical to the TSDB's.
//!
//! Concurrent reads are bounded by `--storage.remote.read-concurrent-limit`.

use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;
use tsdb::chunkenc::xor::XorAppender;
use tsdb::chunkenc::ValueType;
use tsdb::labels::{MatchType, Matcher};
use tsdb::querier::SelectHints;

use super::proto::{
    self, ChunkedReadResponse, ChunkedSeries, QueryResult, ReadRequest, ReadResponse,
};
use super::{from_labels, snappy_decode, snappy_encode};
use crate::server::state::SharedState;

/// Samples per encoded chunk in streamed responses.
const SAMPLES_PER_CHUNK: usize = 120;

fn plain(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg + "\n",
    )
        .into_response()
}

/// Decodes a remote read body.
pub fn decode_read_request(body: &[u8]) -> Result<ReadRequest, String> {
    let raw = snappy_decode(body)?;
    ReadRequest::decode(raw.as_slice()).map_err(|e| format!("decode protobuf ReadRequest: {e}"))
}

/// Converts protobuf matchers into `tsdb` matchers.
pub fn to_matchers(ms: &[proto::LabelMatcher]) -> Result<Vec<Matcher>, String> {
    ms.iter()
        .map(|m| {
            let kind = match m.r#type {
                0 => MatchType::Equal,
                1 => MatchType::NotEqual,
                2 => MatchType::Regexp,
                3 => MatchType::NotRegexp,
                t => return Err(format!("invalid matcher type {t}")),
            };
            Matcher::new(kind, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())
        })
        .collect()
}

/// Reads every series of `q` with its samples in `[start, end]`, calling `f` for each.
fn for_each_series(
    st: &SharedState,
    q: &proto::Query,
    mut f: impl FnMut(&tsdb::Labels, &[(i64, f64)]) -> Result<(), String>,
) -> Result<(), String> {
    let matchers = to_matchers(&q.matchers)?;
    let (start, end) = (q.start_timestamp_ms, q.end_timestamp_ms);
    let querier = st
        .storage
        .queryable()
        .querier(start, end)
        .map_err(|e| e.to_string())?;
    let hints = q.hints.as_ref().map(|h| SelectHints {
        start: h.start_ms,
        end: h.end_ms,
        step: h.step_ms,
        range: h.range_ms,
        func: (!h.func.is_empty()).then(|| h.func.clone()),
        grouping: h.grouping.clone(),
        by: h.by,
        ..Default::default()
    });
    let mut buf: Vec<(i64, f64)> = Vec::new();
    for s in querier.select(true, hints.as_ref(), &matchers) {
        let s = s.map_err(|e| e.to_string())?;
        buf.clear();
        let mut it = s.iter();
        let mut vt = it.seek(start);
        while vt != ValueType::None {
            let (t, v) = it.at();
            if t > end {
                break;
            }
            buf.push((t, v));
            vt = it.next();
        }
        if let Some(e) = it.err() {
            return Err(e.to_string());
        }
        if !buf.is_empty() {
            f(s.labels(), &buf)?;
        }
    }
    Ok(())
}

/// Answers `req` with the samples response.
fn samples_response(st: &SharedState, req: &ReadRequest) -> Result<Vec<u8>, (StatusCode, String)> {
    let limit = st.args.remote_read_sample_limit;
    let mut total = 0usize;
    let mut resp = ReadResponse {
        results: Vec::with_capacity(req.queries.len()),
    };
    for q in &req.queries {
        let mut res = QueryResult::default();
        for_each_series(st, q, |labels, samples| {
            total += samples.len();
            if limit > 0 && total > limit {
                return Err(format!("exceeded sample limit ({limit})"));
            }
            res.timeseries.push(proto::TimeSeries {
                labels: from_labels(labels),
                samples: samples
                    .iter()
                    .map(|&(t, v)| proto::Sample {
                        value: v,
                        timestamp: t,
                    })
                    .collect(),
                ..Default::default()
            });
            Ok(())
        })
        .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        resp.results.push(res);
    }
    Ok(snappy_encode(&resp.encode_to_vec()))
}

/// Encodes samples into XOR chunks of up to [`SAMPLES_PER_CHUNK`] samples.
pub fn encode_chunks(samples: &[(i64, f64)]) -> Vec<proto::Chunk> {
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .map(|part| {
            let mut app = XorAppender::new();
            for &(t, v) in part {
                app.append(t, v);
            }
            proto::Chunk {
                min_time_ms: part[0].0,
                max_time_ms: part[part.len() - 1].0,
                r#type: proto::CHUNK_XOR,
                data: app.into_chunk().into_bytes(),
            }
        })
        .collect()
}

/// Appends one frame (uvarint length, CRC-32C big-endian, message) to `out`.
pub fn write_frame(out: &mut Vec<u8>, msg: &[u8]) {
    let mut n = msg.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(&crc32c::crc32c(msg).to_be_bytes());
    out.extend_from_slice(msg);
}

/// Splits one series' chunks into frames of at most `max_bytes` chunk bytes (at least one
/// chunk per frame) and hands each encoded frame to `emit`.
pub fn series_frames(
    labels: &[proto::Label],
    chunks: Vec<proto::Chunk>,
    query_index: i64,
    max_bytes: usize,
    mut emit: impl FnMut(Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    let labels_size: usize = labels.iter().map(|l| l.encoded_len()).sum();
    let budget = max_bytes.saturating_sub(labels_size) as i64;
    let mut left = budget;
    let mut batch: Vec<proto::Chunk> = Vec::new();
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        left -= c.encoded_len() as i64;
        batch.push(c);
        if left > 0 && i + 1 < n {
            continue;
        }
        let msg = ChunkedReadResponse {
            chunked_series: vec![ChunkedSeries {
                labels: labels.to_vec(),
                chunks: std::mem::take(&mut batch),
            }],
            query_index,
        };
        let mut frame = Vec::with_capacity(msg.encoded_len() + 16);
        write_frame(&mut frame, &msg.encode_to_vec());
        emit(frame)?;
        left = budget;
    }
    Ok(())
}

/// `POST /api/v1/read`
pub async fn read(State(st): State<SharedState>, body: Bytes) -> Response {
    let _slot = match &st.read_slots {
        Some(s) => match s.acquire().await {
            Ok(p) => Some(p),
            Err(_) => {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server is shutting down".into(),
                )
            }
        },
        None => None,
    };
    st.metrics
        .remote_read_queries
        .fetch_add(1, Ordering::Relaxed);
    let resp = read_inner(st.clone(), body).await;
    st.metrics
        .remote_read_queries
        .fetch_sub(1, Ordering::Relaxed);
    resp
}

async fn read_inner(st: SharedState, body: Bytes) -> Response {
    let req = match decode_read_request(&body) {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    let rtype = if req.accepted_response_types.is_empty() {
        proto::RESPONSE_SAMPLES
    } else {
        match req
            .accepted_response_types
            .iter()
            .find(|t| **t == proto::RESPONSE_SAMPLES || **t == proto::RESPONSE_STREAMED_XOR_CHUNKS)
        {
            Some(t) => *t,
            None => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "server does not support any of the requested response types: {:?}; supported: [SAMPLES STREAMED_XOR_CHUNKS]",
                        req.accepted_response_types
                    ),
                )
            }
        }
    };
    if rtype == proto::RESPONSE_SAMPLES {
        let st2 = st.clone();
        return match tokio::task::spawn_blocking(move || samples_response(&st2, &req)).await {
            Ok(Ok(b)) => (
                [
                    (header::CONTENT_TYPE, "application/x-protobuf"),
                    (header::CONTENT_ENCODING, "snappy"),
                ],
                b,
            )
                .into_response(),
            Ok(Err((code, msg))) => plain(code, msg),
            Err(e) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("remote read failed: {e}"),
            ),
        };
    }
    // Streamed chunks: frames are produced on the blocking pool and sent as they are made.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let max_bytes = st.args.remote_read_max_bytes_in_frame.max(1);
    tokio::task::spawn_blocking(move || {
        for (qi, q) in req.queries.iter().enumerate() {
            let res = for_each_series(&st, q, |labels, samples| {
                series_frames(
                    &from_labels(labels),
                    encode_chunks(samples),
                    qi as i64,
                    max_bytes,
                    |frame| {
                        tx.blocking_send(Ok(Bytes::from(frame)))
                            .map_err(|_| "client went away".to_string())
                    },
                )
            });
            if let Err(e) = res {
                tracing::error!(err = %e, "Streaming remote read failed");
                let _ = tx.blocking_send(Err(std::io::Error::other(e)));
                return;
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    (
        [(
            header::CONTENT_TYPE,
            "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
        )],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_xor_and_split_at_120() {
        let samples: Vec<(i64, f64)> = (0..250).map(|i| (i * 1000, i as f64 * 0.5)).collect();
        let chunks = encode_chunks(&samples);
        assert_eq!(chunks.len(), 3);
        assert_eq!((chunks[0].min_time_ms, chunks[0].max_time_ms), (0, 119_000));
        assert_eq!(
            (chunks[2].min_time_ms, chunks[2].max_time_ms),
            (240_000, 249_000)
        );
        let c = tsdb::chunkenc::xor::XorChunk::from_bytes(chunks[1].data.clone());
        assert_eq!(c.num_samples(), 120);
        let mut it = c.iter();
        assert_eq!(it.next(), ValueType::Float);
        assert_eq!(it.at(), (120_000, 60.0));
    }

    #[test]
    fn frames_carry_length_and_crc_and_respect_the_size() {
        let labels = vec![proto::Label {
            name: "__name__".into(),
            value: "m".into(),
        }];
        let samples: Vec<(i64, f64)> = (0..1200).map(|i| (i * 15_000, (i as f64).sin())).collect();
        let chunks = encode_chunks(&samples);
        let mut frames = Vec::new();
        series_frames(&labels, chunks, 3, 2048, |f| {
            frames.push(f);
            Ok(())
        })
        .unwrap();
        assert!(frames.len() > 1, "small frame limit splits the series");
        let mut total = 0;
        for f in &frames {
            // uvarint length
            let (mut len, mut shift, mut i) = (0usize, 0, 0);
            loop {
                let b = f[i];
                len |= ((b & 0x7f) as usize) << shift;
                i += 1;
                if b < 0x80 {
                    break;
                }
                shift += 7;
            }
            let crc = u32::from_be_bytes([f[i], f[i + 1], f[i + 2], f[i + 3]]);
            let data = &f[i + 4..];
            assert_eq!(data.len(), len);
            assert_eq!(crc32c::crc32c(data), crc);
            let msg = ChunkedReadResponse::decode(data).unwrap();
            assert_eq!(msg.query_index, 3);
            assert_eq!(msg.chunked_series.len(), 1);
            assert_eq!(msg.chunked_series[0].labels, labels);
            total += msg.chunked_series[0].chunks.len();
        }
        assert_eq!(total, 10);
    }
}
