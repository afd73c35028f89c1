//! One `POST` of a JSON body to an Alertmanager, through the shared HTTP client
//! ([`crate::config::http_client::send`]: TLS for `https` with the entry's `tls_config`, one
//! connection per request, errors in Go's words). A response status outside 2xx is an error,
//! as in Prometheus.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;

use crate::config::http_client;
use crate::config::tls::TlsClient;

/// POSTs `body` as `application/json` to `url` with extra `headers`, within `timeout`.
pub async fn post_json(
    url: &str,
    headers: &[(String, String)],
    tls: &TlsClient,
    body: Bytes,
    timeout: Duration,
) -> Result<(), String> {
    let mut all: Vec<(&str, &str)> = vec![
        ("Content-Type", "application/json"),
        ("User-Agent", concat!("ignis/", env!("CARGO_PKG_VERSION"))),
    ];
    all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let fut = async {
        let (resp, _conn) =
            http_client::send(hyper::Method::POST, url, &all, body, Some(tls)).await?;
        let status = resp.status();
        // read the body so the connection closes cleanly
        let _ = resp.into_body().collect().await;
        if !status.is_success() {
            return Err(format!("bad response status {status}"));
        }
        Ok(())
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("Post {url:?}: context deadline exceeded"))?
}
