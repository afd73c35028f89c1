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

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;

use super::proto::{v2, WriteRequest};
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

/// Decodes a remote write 1.0 body.
pub fn decode_write_request(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snappy_decode(body)?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("decode protobuf WriteRequest: {e}"))
}

/// What went wrong applying a request.
enum ApplyError {
    /// The sender's fault (400).
    Bad(String),
    /// Ours (500).
    Internal(String),
}

/// Appends every sample of `req` in one transaction; returns the number of samples written.
fn apply(st: &SharedState, req: WriteRequest) -> Result<u64, ApplyError> {
    let mut app = st.storage.appender();
    let mut n = 0u64;
    for ts in req.timeseries {
        let labels = match to_labels(ts.labels) {
            Ok(l) => l,
            Err(e) => {
                let _ = app.rollback();
                return Err(ApplyError::Bad(format!("invalid labels for series: {e}")));
            }
        };
        for s in &ts.samples {
            if let Err(e) = app.append(&labels, s.timestamp, s.value) {
                let _ = app.rollback();
                return Err(match e {
                    tsdb::Error::OutOfOrderSample
                    | tsdb::Error::OutOfBounds
                    | tsdb::Error::DuplicateSampleForTimestamp
                    | tsdb::Error::TooOldSample => {
                        st.metrics
                            .out_of_order_samples
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(err = %e, series = %labels, timestamp = s.timestamp, "Out of order sample from remote write");
                        ApplyError::Bad(e.to_string())
                    }
                    tsdb::Error::InvalidLabels(m) => {
                        ApplyError::Bad(format!("invalid labels for series: {m}"))
                    }
                    e => ApplyError::Internal(e.to_string()),
                });
            }
            n += 1;
        }
    }
    app.commit()
        .map_err(|e| ApplyError::Internal(e.to_string()))?;
    Ok(n)
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

/// Labels of a 2.0 series from the symbol table.
fn v2_labels(symbols: &[String], refs: &[u32]) -> Result<tsdb::Labels, String> {
    if refs.len() & 1 == 1 {
        return Err(format!("odd number of label references ({})", refs.len()));
    }
    let mut pairs = Vec::with_capacity(refs.len() / 2);
    for p in refs.chunks(2) {
        let get = |i: u32| {
            symbols.get(i as usize).ok_or_else(|| {
                format!(
                    "label reference {i} out of range ({} symbols)",
                    symbols.len()
                )
            })
        };
        pairs.push(super::proto::Label {
            name: get(p[0])?.clone(),
            value: get(p[1])?.clone(),
        });
    }
    to_labels(pairs)
}

/// Appends a 2.0 request: refused samples are skipped and reported; returns the samples
/// written and the messages of the refused ones.
fn apply_v2(st: &SharedState, req: &v2::Request) -> Result<(u64, Vec<String>), ApplyError> {
    let mut app = st.storage.appender();
    let (mut n, mut bad) = (0u64, Vec::new());
    for ts in &req.timeseries {
        let labels = match v2_labels(&req.symbols, &ts.labels_refs) {
            Ok(l) => l,
            Err(e) => {
                bad.push(format!("invalid labels for series: {e}"));
                continue;
            }
        };
        for s in &ts.samples {
            match app.append(&labels, s.timestamp, s.value) {
                Ok(()) => n += 1,
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
    let res = tokio::task::spawn_blocking(move || {
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
    let res = tokio::task::spawn_blocking(move || {
        let req = decode_write_request(&body).map_err(ApplyError::Bad)?;
        apply(&st2, req)
    })
    .await;
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
