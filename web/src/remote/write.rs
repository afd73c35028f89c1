//! The remote write receiver, `POST /api/v1/write`.
//!
//! Body: a `prometheus.WriteRequest` (see [`super::proto`]) compressed with snappy's block
//! format (not the framed format), as remote write 1.0 specifies. The whole request is one
//! append transaction: a body that does not decompress or decode gets 400 with the reason and
//! nothing is appended; a sample the storage refuses as out of order, out of bounds or a
//! duplicate rolls the whole request back and gets 400 with the storage's message (so the
//! sender does not retry), and the rejection is counted in
//! `prometheus_tsdb_out_of_order_samples_total`. Success is 204.

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prost::Message;

use super::proto::WriteRequest;
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
fn apply(st: &SharedState, req: &WriteRequest) -> Result<u64, ApplyError> {
    let mut app = st.storage.appender();
    let mut n = 0u64;
    for ts in &req.timeseries {
        let labels = match to_labels(&ts.labels) {
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

/// `POST /api/v1/write`
pub async fn write(State(st): State<SharedState>, body: Bytes) -> Response {
    if !st.args.enable_remote_write_receiver {
        return plain(
            StatusCode::NOT_FOUND,
            "remote write receiver needs to be enabled with --web.enable-remote-write-receiver"
                .into(),
        );
    }
    let st2 = st.clone();
    let res = tokio::task::spawn_blocking(move || {
        let req = decode_write_request(&body).map_err(ApplyError::Bad)?;
        apply(&st2, &req)
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
