//! Prometheus remote storage protocols on the server side.
//!
//! - [`write`] — `POST /api/v1/write`, the remote write receiver (1.0: snappy block-compressed
//!   `prometheus.WriteRequest`), behind `--web.enable-remote-write-receiver`.
//! - [`read`] — `POST /api/v1/read`, remote read with both response types (samples, and
//!   streamed XOR chunks in CRC-32C checked frames).
//! - [`proto`] — the protobuf messages, declared by hand.
//! - [`appliers`] — the fixed set of threads that apply remote-write requests.

pub mod appliers;
pub mod proto;
pub mod read;
pub mod write;

use axum::routing::post;
use axum::Router;

use crate::server::state::SharedState;

/// Largest compressed request body accepted.
pub const MAX_BODY: usize = 64 << 20;
/// Largest decompressed request accepted.
pub const MAX_DECODED: usize = 256 << 20;

/// The remote write and read routes.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/write", post(write::write))
        .route("/api/v1/read", post(read::read))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// Decompresses a snappy block-format body, refusing sizes over [`MAX_DECODED`].
pub fn snappy_decode(body: &[u8]) -> Result<Vec<u8>, String> {
    let n = snap::raw::decompress_len(body).map_err(|e| format!("snappy: {e}"))?;
    if n > MAX_DECODED {
        return Err(format!(
            "snappy: decoded length {n} exceeds the limit of {MAX_DECODED} bytes"
        ));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))
}

/// Snappy block-format compression.
pub fn snappy_encode(data: &[u8]) -> Vec<u8> {
    // Compression of an in-memory buffer cannot fail except for sizes over 4 GiB.
    snap::raw::Encoder::new()
        .compress_vec(data)
        .unwrap_or_default()
}

/// Converts protobuf labels into a label set (moving the strings), checking it is valid.
pub fn to_labels(ls: Vec<proto::Label>) -> Result<tsdb::Labels, String> {
    let mut v: Vec<tsdb::Label> = ls
        .into_iter()
        .map(|l| tsdb::Label {
            name: l.name,
            value: l.value,
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = v.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(format!("duplicate label name {:?}", w[0].name));
    }
    if let Some(l) = v.iter().find(|l| l.name.is_empty()) {
        return Err(format!("empty label name for value {:?}", l.value));
    }
    let labels = tsdb::Labels::new(v);
    if labels.is_empty() {
        return Err("series has no labels".into());
    }
    Ok(labels)
}

/// Converts a label set into protobuf labels.
pub fn from_labels(ls: &tsdb::Labels) -> Vec<proto::Label> {
    ls.iter()
        .map(|l| proto::Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}
