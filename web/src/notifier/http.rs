//! One `POST` of a JSON body to an Alertmanager over HTTP/1.1 (hyper's connection-level
//! client over a tokio `TcpStream`, in TLS for `https` with the entry's `tls_config`; one
//! connection per request). A response status outside 2xx is an error, as in Prometheus.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

use crate::config::tls::TlsClient;

/// `(https, host, port, path)` of an `http(s)://host[:port]/path` URL.
fn split(url: &str) -> Result<(bool, &str, u16, &str), String> {
    let bad = |m: &str| format!("invalid URL {url:?}: {m}");
    let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(bad("scheme must be http or https"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (
            &authority[..i],
            authority[i + 1..]
                .parse::<u16>()
                .map_err(|_| bad("invalid port"))?,
        ),
        _ => (authority, if https { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    Ok((
        https,
        host.trim_start_matches('[').trim_end_matches(']'),
        port,
        path,
    ))
}

async fn exchange<S>(io: S, req: hyper::Request<Full<Bytes>>, url: &str) -> Result<(), String>
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("Post {url:?}: {e}"))?;
    let conn_task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let r = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("Post {url:?}: {e}"))?;
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
}

/// POSTs `body` as `application/json` to `url` with extra `headers`, within `timeout`.
pub async fn post_json(
    url: &str,
    headers: &[(String, String)],
    tls: &TlsClient,
    body: Bytes,
    timeout: Duration,
) -> Result<(), String> {
    let (https, host, port, path) = split(url)?;
    let fut = async {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("Post {url:?}: dial tcp {host}:{port}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let authority = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or(host);
        let mut req = hyper::Request::post(path)
            .header(hyper::header::HOST, authority)
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
            .map_err(|e| format!("Post {url:?}: {e}"))?;
        if https {
            let s = tls
                .connect(host, port, stream)
                .await
                .map_err(|e| format!("Post {url:?}: {e}"))?;
            exchange(TokioIo::new(s), req, url).await
        } else {
            exchange(TokioIo::new(stream), req, url).await
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("Post {url:?}: context deadline exceeded"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        assert_eq!(
            split("http://a:9093/api/v2/alerts").unwrap(),
            (false, "a", 9093, "/api/v2/alerts")
        );
        assert_eq!(split("https://a/x").unwrap(), (true, "a", 443, "/x"));
        assert!(split("ftp://a/").is_err());
    }
}
