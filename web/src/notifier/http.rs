//! One `POST` of a JSON body to an Alertmanager over HTTP/1.1 (hyper's connection-level
//! client over a tokio `TcpStream`, one connection per request). A response status outside
//! 2xx is an error, as in Prometheus. `https` is not supported by the built-in client.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

/// `(host:port, path)` of an `http://host:port/path` URL.
fn split(url: &str) -> Result<(&str, &str), String> {
    if url.starts_with("https://") {
        return Err(format!(
            "{url}: https is not supported by the built-in Alertmanager client"
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: URL must start with http://"))?;
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

/// POSTs `body` as `application/json` to `url` with extra `headers`, within `timeout`.
pub async fn post_json(
    url: &str,
    headers: &[(String, String)],
    body: Bytes,
    timeout: Duration,
) -> Result<(), String> {
    let (auth, path) = split(url)?;
    let fut = async {
        let stream = tokio::net::TcpStream::connect(auth)
            .await
            .map_err(|e| format!("Post \"{url}\": dial tcp {auth}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("Post \"{url}\": {e}"))?;
        let conn_task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::post(path)
            .header(hyper::header::HOST, auth)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("ignis/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("Post \"{url}\": {e}"))?;
        let r = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("Post \"{url}\": {e}"))?;
            let status = resp.status();
            // drain the body so the connection closes cleanly
            let _ = resp.into_body().collect().await;
            if !status.is_success() {
                return Err(format!("bad response status {status}"));
            }
            Ok(())
        }
        .await;
        conn_task.abort();
        r
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("Post \"{url}\": context deadline exceeded"))?
}
