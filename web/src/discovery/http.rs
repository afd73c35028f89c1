//! `http_sd_configs`: target groups fetched with an HTTP GET every `refresh_interval`. The
//! response must be `200` with `Content-Type: application/json` and a JSON list of groups; the
//! request carries `X-Prometheus-Refresh-Interval-Seconds`. A failed refresh keeps the previous
//! groups. Each group carries `__meta_url`. The request is [`http_client::get`], as for scrapes:
//! HTTP/1.1, TLS for `https` URLs, with the section's `basic_auth`/`authorization`/`tls_config`.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use tokio::sync::mpsc;

use super::{parse_groups_json, BoxFuture, Discoverer, TargetGroup};
use crate::config::http_client::{self, ClientSettings};
use crate::config::tls::TlsClient;

/// Label holding the URL a group came from.
pub const META_URL: &str = "__meta_url";

/// Largest response accepted (Prometheus reads whole bodies; cap to stay safe).
const MAX_BODY: usize = 64 << 20;

/// Discovers targets from an HTTP endpoint.
pub struct HttpDiscoverer {
    url: String,
    refresh: Duration,
    timeout: Duration,
    /// Authorization headers and TLS, or why they could not be set up (reported per refresh).
    client: Result<ClientSettings, String>,
    groups: Vec<TargetGroup>,
    last_error: Option<String>,
}

/// Fetches `url` with a GET (TLS for `https` with `tls`, else system CAs); returns status,
/// content type and body (at most 64 MiB).
pub async fn http_get(
    url: &str,
    headers: &[(&str, &str)],
    tls: Option<&TlsClient>,
    timeout: Duration,
) -> Result<(u16, String, Bytes), String> {
    let fut = async {
        let (resp, _guard) = http_client::get(url, headers, tls).await?;
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
    /// Polls `url` every `refresh`, with no credentials and default TLS.
    pub fn new(url: &str, refresh: Duration) -> Self {
        HttpDiscoverer {
            url: url.to_string(),
            refresh,
            timeout: refresh.max(Duration::from_secs(1)),
            client: Ok(ClientSettings {
                headers: Vec::new(),
                tls: TlsClient::default_client(),
            }),
            groups: Vec::new(),
            last_error: None,
        }
    }

    /// Uses the resolved `basic_auth`/`authorization`/`tls_config` of the `http_sd_config`, or
    /// reports `Err`'s message on every refresh.
    pub fn with_client(mut self, client: Result<ClientSettings, String>) -> Self {
        self.client = client;
        self
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
        let r = match &self.client {
            Ok(c) => {
                let secs = self.refresh.as_secs().to_string();
                let mut hdr: Vec<(&str, &str)> =
                    vec![("X-Prometheus-Refresh-Interval-Seconds", secs.as_str())];
                hdr.extend(c.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                http_get(&self.url, &hdr, Some(&c.tls), self.timeout).await
            }
            Err(e) => Err(format!("{}: {e}", self.url)),
        };
        let r = r.and_then(|(status, ct, body)| {
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
    async fn unreachable_bad_scheme_and_bad_client() {
        let mut d = HttpDiscoverer::new("http://127.0.0.1:1/x", Duration::from_secs(1));
        assert!(!d.refresh().await);
        assert!(d.last_error().is_some());
        let mut d = HttpDiscoverer::new("ftp://127.0.0.1:1/x", Duration::from_secs(1));
        assert!(!d.refresh().await);
        assert!(d.last_error().unwrap().contains("scheme"));
        let mut d = HttpDiscoverer::new("http://127.0.0.1:1/x", Duration::from_secs(1))
            .with_client(Err("reading ca.pem: not found".into()));
        assert!(!d.refresh().await);
        assert!(d.last_error().unwrap().contains("ca.pem"));
    }
}
