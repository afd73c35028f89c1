//! The HTTP client sections of `prometheus.yml` (`basic_auth`, `authorization`, `tls_config`)
//! made usable: [`client_settings`] resolves them, files read, into request headers and a
//! [`TlsClient`]; [`get`] sends one `GET` ([`send`]: any method, with a body) over HTTP/1.1, in
//! TLS for `https` URLs. Scrapes and HTTP service discovery use both; anything else that talks
//! HTTP to a configured endpoint (Alertmanagers, remote write) can.
//!
//! The client is hyper's own connection-level HTTP/1.1 client over a tokio `TcpStream`: hyper is
//! already in the build through axum. One connection per request.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::tls::TlsClient;
use super::{HttpClientConfig, TlsConfig};

/// What an HTTP client section resolves to.
#[derive(Debug)]
pub struct ClientSettings {
    /// The `Authorization` header, if any.
    pub headers: Vec<(String, String)>,
    /// TLS for `https` URLs.
    pub tls: Arc<TlsClient>,
}

/// Standard base64 (with padding), for `basic_auth`.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn read_secret(path: &str, base: &Path) -> Result<String, String> {
    let p = base.join(path);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("reading {}: {e}", p.display()))
}

/// Resolves the HTTP client fields of a config section, reading credential, CA, certificate
/// and key files relative to `config_dir`.
pub fn client_settings(c: &HttpClientConfig, config_dir: &Path) -> Result<ClientSettings, String> {
    let mut headers = Vec::new();
    if let Some(b) = &c.basic_auth {
        let pw = match (&b.password, &b.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => read_secret(f, config_dir)?,
            (None, None) => String::new(),
        };
        let token = base64(format!("{}:{pw}", b.username).as_bytes());
        headers.push(("Authorization".into(), format!("Basic {token}")));
    }
    if let Some(a) = &c.authorization {
        let cred = match (&a.credentials, &a.credentials_file) {
            (Some(c), _) => c.clone(),
            (None, Some(f)) => read_secret(f, config_dir)?,
            (None, None) => String::new(),
        };
        let kind = a.kind.as_deref().unwrap_or("Bearer");
        headers.push(("Authorization".into(), format!("{kind} {cred}")));
    }
    let tls = if c.tls_config == TlsConfig::default() {
        TlsClient::default_client()
    } else {
        Arc::new(TlsClient::from_config(&c.tls_config, config_dir)?)
    };
    Ok(ClientSettings { headers, tls })
}

/// Scheme, host, port and path-and-query of an `http://` or `https://` URL.
fn split_url(url: &str) -> Result<(bool, &str, u16, &str), String> {
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
    let path = path.split('#').next().unwrap_or("/");
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => {
            let p = authority[i + 1..]
                .parse::<u16>()
                .map_err(|_| bad("invalid port"))?;
            (&authority[..i], p)
        }
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

/// The method as Go's client errors spell it (`Get`, `Post`, …).
fn go_verb(m: &hyper::Method) -> String {
    let s = m.as_str();
    let mut out = s[..1].to_string();
    out.push_str(&s[1..].to_ascii_lowercase());
    out
}

/// A connect error in Go's words where they differ (`connect: connection refused`).
fn dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

/// Aborts the task driving a client connection when dropped (the response has been read).
pub struct ConnGuard(tokio::task::JoinHandle<()>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to the URL's host (TLS for `https`, with `tls` or the default client) and sends a
/// `GET` with `headers` (plus `Host`); returns the response, whose body is readable while the
/// guard lives. Errors read like Go's (`Get "<url>": …`). No deadline: callers wrap it in
/// theirs.
pub async fn get(
    url: &str,
    headers: &[(&str, &str)],
    tls: Option<&TlsClient>,
) -> Result<(hyper::Response<Incoming>, ConnGuard), String> {
    send(hyper::Method::GET, url, headers, Bytes::new(), tls).await
}

/// As [`get`] with any method and a request body (e.g. a `POST` of JSON to an Alertmanager;
/// set `Content-Type` in `headers`).
pub async fn send(
    method: hyper::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    tls: Option<&TlsClient>,
) -> Result<(hyper::Response<Incoming>, ConnGuard), String> {
    let verb = go_verb(&method);
    let (https, host, port, path) = split_url(url)?;
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("{verb} {url:?}: dial tcp {host}:{port}: {}", dial_error(&e)))?;
    let _ = stream.set_nodelay(true);
    let default_port = if https { 443 } else { 80 };
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let host_header = if port == default_port {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, host_header);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| format!("{verb} {url:?}: {e}"))?;
    if https {
        let default;
        let tls = match tls {
            Some(t) => t,
            None => {
                default = TlsClient::default_client();
                &*default
            }
        };
        let stream = tls
            .connect(host, port, stream)
            .await
            .map_err(|e| format!("{verb} {url:?}: {e}"))?;
        exchange(TokioIo::new(stream), request, &verb, url).await
    } else {
        exchange(TokioIo::new(stream), request, &verb, url).await
    }
}

async fn exchange<S>(
    io: S,
    request: hyper::Request<Full<Bytes>>,
    verb: &str,
    url: &str,
) -> Result<(hyper::Response<Incoming>, ConnGuard), String>
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("{verb} {url:?}: HTTP handshake: {e}"))?;
    let guard = ConnGuard(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{verb} {url:?}: {e}"))?;
    Ok((resp, guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn urls_split_into_scheme_host_port_path() {
        assert_eq!(
            split_url("http://127.0.0.1:9100/metrics?a=b").unwrap(),
            (false, "127.0.0.1", 9100, "/metrics?a=b")
        );
        assert_eq!(
            split_url("http://example.org").unwrap(),
            (false, "example.org", 80, "/")
        );
        assert_eq!(
            split_url("http://[::1]:80/m").unwrap(),
            (false, "::1", 80, "/m")
        );
        assert_eq!(
            split_url("https://x/m#frag").unwrap(),
            (true, "x", 443, "/m")
        );
        assert!(split_url("ftp://x/").unwrap_err().contains("scheme"));
        assert!(split_url("http://x:99999/").is_err());
        assert!(split_url("http:///m").is_err());
    }

    #[tokio::test]
    async fn posts_a_body() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&req).ends_with("[1]") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0);
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(req).unwrap()
        });
        let url = format!("http://{addr}/api/v2/alerts");
        let (resp, _g) = send(
            hyper::Method::POST,
            &url,
            &[("Content-Type", "application/json")],
            Bytes::from_static(b"[1]"),
            None,
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 204);
        let req = server.await.unwrap();
        assert!(req.starts_with("POST /api/v2/alerts HTTP/1.1\r\n"), "{req}");
        assert!(req
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
        assert_eq!(go_verb(&hyper::Method::POST), "Post");
    }

    #[tokio::test]
    async fn refused_connections_read_like_go() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let url = format!("http://{addr}/metrics");
        let e = get(&url, &[], None).await.err().unwrap();
        assert_eq!(
            e,
            format!("Get \"{url}\": dial tcp {addr}: connect: connection refused")
        );
    }

    #[test]
    fn client_settings_from_yaml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let c = super::super::Config::parse(
            "scrape_configs:\n- job_name: a\n  basic_auth: {username: u, password_file: pw}\n- job_name: b\n  authorization: {type: Token, credentials: xyz}\n- job_name: c\n  tls_config: {ca_file: missing.pem}\n",
            "t",
        )
        .unwrap();
        let s = |i: usize| client_settings(&c.scrape_configs[i].http_client(), dir.path());
        assert_eq!(
            s(0).unwrap().headers,
            vec![(
                "Authorization".to_string(),
                format!("Basic {}", base64(b"u:s3cret"))
            )]
        );
        assert_eq!(
            s(1).unwrap().headers,
            vec![("Authorization".to_string(), "Token xyz".to_string())]
        );
        assert!(s(2).unwrap_err().contains("missing.pem"));
    }
}
