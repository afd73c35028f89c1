//! The HTTP side of a scrape: one `GET` over HTTP/1.1 with Prometheus's headers, a deadline,
//! gzip decoding and a limit on the (decoded) body size.
//!
//! The client is hyper's own connection-level HTTP/1.1 client over a tokio `TcpStream`: hyper is
//! already in the build through axum, so scraping adds no HTTP stack of its own. One connection
//! per scrape (as cheap as Prometheus's keep-alive on loopback at 15 s intervals, and it never
//! holds sockets of targets that went away). The connection itself (TLS for `https`) is
//! [`crate::config::http_client::get`], shared with HTTP service discovery.

use std::io::Read as _;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use crate::config::http_client::get;
use crate::config::tls::TlsClient;

/// The `Accept` header Prometheus 2.42 sends: OpenMetrics 1.0 first, then the text format.
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// What one request needs.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// Full URL: `http://host:port/path?query`.
    pub url: &'a str,
    /// Deadline for connect, headers and body together.
    pub timeout: Duration,
    /// Largest decoded body accepted, in bytes (0: no limit).
    pub body_size_limit: usize,
    /// Extra headers (`Authorization`, …).
    pub headers: &'a [(String, String)],
    /// TLS settings for `https` URLs (None: system CAs, TLS 1.2+).
    pub tls: Option<&'a TlsClient>,
}

/// A successful response.
#[derive(Debug)]
pub struct Response {
    /// The `Content-Type` header, empty when absent.
    pub content_type: String,
    /// The decoded body.
    pub body: Vec<u8>,
}

/// Why a scrape's HTTP request failed; the message is what `/api/v1/targets` shows.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting or talking to the target failed.
    #[error("{0}")]
    Io(String),
    /// The deadline passed.
    #[error("context deadline exceeded (scrape_timeout {0:?})")]
    Timeout(Duration),
    /// Non-2xx status.
    #[error("server returned HTTP status {0}")]
    Status(String),
    /// Body over `body_size_limit`.
    #[error("body size limit exceeded ({0} bytes)")]
    BodyTooLarge(usize),
    /// The gzip body is malformed.
    #[error("decompressing gzip body: {0}")]
    Gzip(String),
}

/// Performs the scrape request.
pub async fn fetch(req: &Request<'_>) -> Result<Response, FetchError> {
    match tokio::time::timeout(req.timeout, fetch_inner(req)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(req.timeout)),
    }
}

async fn fetch_inner(req: &Request<'_>) -> Result<Response, FetchError> {
    let timeout = format!("{}", req.timeout.as_secs_f64());
    let mut headers: Vec<(&str, &str)> = vec![
        ("Accept", ACCEPT_HEADER),
        ("Accept-Encoding", "gzip"),
        ("User-Agent", concat!("ignis/", env!("CARGO_PKG_VERSION"))),
        ("X-Prometheus-Scrape-Timeout-Seconds", timeout.as_str()),
    ];
    headers.extend(req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (resp, _guard) = get(req.url, &headers, req.tls)
        .await
        .map_err(FetchError::Io)?;
    read_response(resp, req.body_size_limit).await
}

async fn read_response(
    resp: hyper::Response<Incoming>,
    limit: usize,
) -> Result<Response, FetchError> {
    let status = resp.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.to_string()));
    }
    let header = |name: hyper::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = header(hyper::header::CONTENT_TYPE);
    let gzip = header(hyper::header::CONTENT_ENCODING).eq_ignore_ascii_case("gzip");
    let mut body = resp.into_body();
    let mut raw = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| FetchError::Io(format!("reading body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            raw.extend_from_slice(&data);
            if limit > 0 && !gzip && raw.len() > limit {
                return Err(FetchError::BodyTooLarge(limit));
            }
        }
    }
    let body = if gzip { gunzip(&raw, limit)? } else { raw };
    Ok(Response { content_type, body })
}

/// Decodes a gzip body, stopping as soon as it exceeds `limit` (0: none).
fn gunzip(raw: &[u8], limit: usize) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::with_capacity(raw.len() * 4);
    let dec = flate2::read::GzDecoder::new(raw);
    if limit > 0 {
        dec.take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| FetchError::Gzip(e.to_string()))?;
        if out.len() > limit {
            return Err(FetchError::BodyTooLarge(limit));
        }
    } else {
        let mut dec = dec;
        dec.read_to_end(&mut out)
            .map_err(|e| FetchError::Gzip(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gunzip_respects_the_limit() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[b'a'; 1000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz, 0).unwrap().len(), 1000);
        assert_eq!(gunzip(&gz, 1000).unwrap().len(), 1000);
        assert!(matches!(
            gunzip(&gz, 999),
            Err(FetchError::BodyTooLarge(999))
        ));
        assert!(matches!(gunzip(b"nope", 0), Err(FetchError::Gzip(_))));
    }
}
