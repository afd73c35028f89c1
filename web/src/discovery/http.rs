//! `http_sd_configs`: target groups fetched with an HTTP GET every `refresh_interval`. The
//! response must be `200` with `Content-Type: application/json` and a JSON list of groups; the
//! request carries `X-Prometheus-Refresh-Interval-Seconds`. A failed refresh keeps the previous
//! groups. Each group carries `__meta_url`. The built-in client speaks plain HTTP/1.1 (hyper);
//! `https` URLs are reported as unsupported.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use tokio::sync::mpsc;

use super::{parse_groups_json, BoxFuture, Discoverer, TargetGroup};

/// Label holding the URL a group came from.
pub const META_URL: &str = "__meta_url";

/// Largest response accepted (Prometheus reads whole bodies; cap to stay safe).
const MAX_BODY: usize = 64 << 20;

/// Discovers targets from an HTTP endpoint.
pub struct HttpDiscoverer {
    url: String,
    refresh: Duration,
    timeout: Duration,
    groups: Vec<TargetGroup>,
    last_error: Option<String>,
}

/// `(host:port, path?query)` of an `http://` URL.
fn split_url(url: &str) -> Result<(String, String), String> {
    if url.starts_with("https://") {
        return Err(format!(
            "{url}: https is not supported by the built-in HTTP SD client"
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: URL must start with http://"))?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    if auth.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let has_port = if auth.starts_with('[') {
        auth.contains("]:")
    } else {
        auth.contains(':')
    };
    let auth = if has_port {
        auth.to_string()
    } else {
        format!("{auth}:80")
    };
    Ok((auth, path.to_string()))
}

/// Fetches `url` with a GET; returns status, content type and body.
pub async fn http_get(
    url: &str,
    headers: &[(&str, String)],
    timeout: Duration,
) -> Result<(u16, String, Bytes), String> {
    let (auth, path) = split_url(url)?;
    let fut = async {
        let stream = tokio::net::TcpStream::connect(&auth)
            .await
            .map_err(|e| format!("connecting to {auth}: {e}"))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::get(path).header(hyper::header::HOST, auth.as_str());
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading body: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, ct, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("{url}: request timed out after {timeout:?}"))?
}

impl HttpDiscoverer {
    /// Polls `url` every `refresh`.
    pub fn new(url: &str, refresh: Duration) -> Self {
        HttpDiscoverer {
            url: url.to_string(),
            refresh,
            timeout: refresh.max(Duration::from_secs(1)),
            groups: Vec::new(),
            last_error: None,
        }
    }

    /// The error of the last refresh, if it failed.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The current groups.
    pub fn groups(&self) -> &[TargetGroup] {
        &self.groups
    }

    /// Fetches once; returns whether the groups changed. Failures keep the old groups.
    pub async fn refresh(&mut self) -> bool {
        let hdr = [(
            "X-Prometheus-Refresh-Interval-Seconds",
            self.refresh.as_secs().to_string(),
        )];
        let r = http_get(&self.url, &hdr, self.timeout)
            .await
            .and_then(|(status, ct, body)| {
                if status != 200 {
                    return Err(format!("server returned HTTP status {status}"));
                }
                let mt = ct.split(';').next().unwrap_or("").trim();
                if mt != "application/json" {
                    return Err(format!("unsupported content type {ct:?}"));
                }
                parse_groups_json(&body, &self.url, &[(META_URL, self.url.as_str())])
            });
        match r {
            Ok(g) => {
                self.last_error = None;
                let changed = g != self.groups;
                self.groups = g;
                changed
            }
            Err(e) => {
                self.last_error = Some(e);
                false
            }
        }
    }
}

impl Discoverer for HttpDiscoverer {
    fn run(mut self: Box<Self>, tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.refresh().await;
            if tx.send(self.groups.clone()).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(self.refresh) => {}
                }
                if self.refresh().await && tx.send(self.groups.clone()).await.is_err() {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-route HTTP server answering each request with the next of `bodies`.
    async fn serve(bodies: Vec<(&'static str, &'static str)>) -> (String, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let i = n2.fetch_add(1, Ordering::SeqCst);
                let (ct, body) = bodies[i.min(bodies.len() - 1)];
                let mut buf = vec![0u8; 4096];
                let k = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..k]).to_string();
                assert!(req.starts_with("GET /sd?x=1 HTTP/1.1"), "{req}");
                assert!(
                    req.to_ascii_lowercase()
                        .contains("x-prometheus-refresh-interval-seconds: 1"),
                    "{req}"
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        (format!("http://{addr}/sd?x=1"), n)
    }

    #[tokio::test]
    async fn fetches_and_keeps_groups_on_error() {
        let (url, n) = serve(vec![
            (
                "application/json",
                r#"[{"targets": ["a:1"], "labels": {"k": "v"}}]"#,
            ),
            ("text/plain", "[]"),
            (
                "application/json; charset=utf-8",
                r#"[{"targets": ["b:1"]}]"#,
            ),
        ])
        .await;
        let mut d = HttpDiscoverer::new(&url, Duration::from_secs(1));
        assert!(d.refresh().await);
        assert_eq!(d.groups()[0].labels.get("k"), Some("v"));
        assert_eq!(d.groups()[0].labels.get(META_URL), Some(url.as_str()));
        assert!(!d.refresh().await);
        assert!(d.last_error().unwrap().contains("content type"));
        assert_eq!(d.groups()[0].targets[0].get("__address__"), Some("a:1"));
        assert!(d.refresh().await);
        assert_eq!(d.groups()[0].targets[0].get("__address__"), Some("b:1"));
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn unreachable_and_https() {
        let mut d = HttpDiscoverer::new("http://127.0.0.1:1/x", Duration::from_secs(1));
        assert!(!d.refresh().await);
        assert!(d.last_error().is_some());
        assert!(split_url("https://x/").is_err());
        assert_eq!(
            split_url("http://h/p").unwrap(),
            ("h:80".to_string(), "/p".to_string())
        );
        assert_eq!(
            split_url("http://h:9/").unwrap(),
            ("h:9".to_string(), "/".to_string())
        );
    }
}
