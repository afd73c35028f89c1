//! End-to-end: the real `ignis` binary serving HTTPS from `--web.config.file`
//! (`tls_server_config`, client certificates, basic auth over TLS, extra headers), and the
//! `--web.max-connections` limit. Certificates come from a CA generated with `rcgen`.

#[path = "server_common.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A CA with a server certificate for 127.0.0.1 and a client certificate, all written as PEM.
struct Pki {
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    /// A client certificate from another CA.
    stranger_cert_pem: String,
    stranger_key_pem: String,
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    let key = KeyPair::generate().unwrap();
    (p.self_signed(&key).unwrap(), key)
}

fn leaf(names: &[&str], ca: &rcgen::Certificate, ca_key: &KeyPair) -> (String, String) {
    let p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca, ca_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes `ca.crt`, `server.crt`, `server.key` into `dir` and returns the PKI.
fn make_pki(dir: &Path) -> Pki {
    let (ca, ca_key) = make_ca("ignis test CA");
    let (server_cert, server_key) = leaf(&["127.0.0.1", "localhost"], &ca, &ca_key);
    let (client_cert_pem, client_key_pem) = leaf(&["client.example"], &ca, &ca_key);
    let (other, other_key) = make_ca("other CA");
    let (stranger_cert_pem, stranger_key_pem) = leaf(&["client.example"], &other, &other_key);
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), server_cert).unwrap();
    std::fs::write(dir.join("server.key"), server_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        client_cert_pem,
        client_key_pem,
        stranger_cert_pem,
        stranger_key_pem,
    }
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .unwrap()
        .unwrap()
}

/// A TLS client trusting `ca_pem`, presenting `client` (cert, key PEM) when given.
fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem) {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match client {
        Some((c, k)) => b.with_client_auth_cert(certs(c), key(k)).unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// One HTTPS request (`Connection: close`); returns the status and the raw response text.
fn https(
    addr: &str,
    cfg: &Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Go and rustls servers may close without close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    Ok((status, text))
}

/// A server started by [`start_tls`]; killed on drop.
struct TlsServer {
    child: std::process::Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts ignis with `web_yml` as its web config and waits until `/-/ready` answers over TLS
/// with `probe` as the client.
fn start_tls(
    dir: &Path,
    web_yml: &str,
    probe: &Arc<rustls::ClientConfig>,
    probe_headers: &[(&str, &str)],
) -> TlsServer {
    let web = dir.join("web.yml");
    std::fs::write(&web, web_yml).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "scrape_configs: []\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let log = dir.join("ignis.log");
    let child = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--web.config.file={}", web.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start ignis");
    let mut srv = TlsServer { child, addr, log };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = https(&srv.addr, probe, "/-/ready", probe_headers) {
            return srv;
        }
        assert!(
            srv.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline,
            "ignis did not become ready over TLS: {}",
            std::fs::read_to_string(&srv.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn https_with_generated_ca_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let client = client_config(&pki.ca_pem, None);
    let srv = start_tls(
        dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n",
        &client,
        &[],
    );
    let (status, text) = https(&srv.addr, &client, "/api/v1/query?query=1%2B1", &[]).unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"status\":\"success\""), "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("x-frame-options: deny"), "{text}");
    assert!(
        lower.contains("strict-transport-security: max-age=31536000"),
        "{text}"
    );
    // TLS 1.2 only also works (min_version defaults to TLS12).
    let tls12 = {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certs(&pki.ca_pem).remove(0)).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    };
    assert_eq!(https(&srv.addr, &tls12, "/-/healthy", &[]).unwrap().0, 200);
    // A client that does not trust the CA fails the handshake.
    let (other, _) = make_ca("untrusted");
    let untrusted = client_config(&other.pem(), None);
    assert!(https(&srv.addr, &untrusted, "/-/healthy", &[]).is_err());
}

#[test]
fn plain_http_on_tls_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let client = client_config(&pki.ca_pem, None);
    let srv = start_tls(
        dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
        &client,
        &[],
    );
    let r = common::request(&srv.addr, "GET", "/-/healthy", None, &[]).unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("HTTP request to an HTTPS server"),
        "{}",
        r.text()
    );
    // The server keeps serving TLS afterwards.
    assert_eq!(https(&srv.addr, &client, "/-/healthy", &[]).unwrap().0, 200);
}

#[test]
fn client_cert_required_rejects_clients_without_a_valid_cert() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let with_cert = client_config(
        &pki.ca_pem,
        Some((&pki.client_cert_pem, &pki.client_key_pem)),
    );
    let srv = start_tls(
        dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
        &with_cert,
        &[],
    );
    assert_eq!(
        https(&srv.addr, &with_cert, "/-/healthy", &[]).unwrap().0,
        200
    );
    let without = client_config(&pki.ca_pem, None);
    let r = https(&srv.addr, &without, "/-/healthy", &[]);
    assert!(
        r.is_err(),
        "a client without a certificate was served: {r:?}"
    );
    let stranger = client_config(
        &pki.ca_pem,
        Some((&pki.stranger_cert_pem, &pki.stranger_key_pem)),
    );
    let r = https(&srv.addr, &stranger, "/-/healthy", &[]);
    assert!(
        r.is_err(),
        "a certificate from another CA was accepted: {r:?}"
    );
}

#[test]
fn client_allowed_sans_and_verify_if_given() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let with_cert = client_config(
        &pki.ca_pem,
        Some((&pki.client_cert_pem, &pki.client_key_pem)),
    );
    let without = client_config(&pki.ca_pem, None);
    let srv = start_tls(
        dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n  \
         client_allowed_sans: [other.example]\n",
        &without,
        &[],
    );
    // No certificate: allowed. A valid certificate without an allowed SAN: refused.
    assert_eq!(
        https(&srv.addr, &without, "/-/healthy", &[]).unwrap().0,
        200
    );
    assert!(https(&srv.addr, &with_cert, "/-/healthy", &[]).is_err());
    // The web config is re-read per connection: allow the client's name.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(
        dir.path().join("web.yml"),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n  \
         client_allowed_sans: [client.example]\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while https(&srv.addr, &with_cert, "/-/healthy", &[])
        .ok()
        .map(|r| r.0)
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "the edited web config was not picked up"
        );
        std::thread::sleep(Duration::from_millis(200));
        // Touch again in case both writes fell in the same mtime tick.
        let text = std::fs::read_to_string(dir.path().join("web.yml")).unwrap();
        std::fs::write(dir.path().join("web.yml"), text).unwrap();
    }
}

#[test]
fn basic_auth_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let client = client_config(&pki.ca_pem, None);
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    // alice:s3cret
    let good = [("Authorization", "Basic YWxpY2U6czNjcmV0")];
    let srv = start_tls(
        dir.path(),
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  alice: {hash}\n"
        ),
        &client,
        &good,
    );
    let (status, text) = https(&srv.addr, &client, "/api/v1/labels", &[]).unwrap();
    assert_eq!(status, 401, "{text}");
    assert!(text
        .to_ascii_lowercase()
        .contains("www-authenticate: basic"));
    let wrong = [("Authorization", "Basic YWxpY2U6d3Jvbmc=")];
    assert_eq!(
        https(&srv.addr, &client, "/api/v1/labels", &wrong)
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        https(&srv.addr, &client, "/api/v1/labels", &good)
            .unwrap()
            .0,
        200
    );
}

#[test]
fn bad_tls_config_fails_startup() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let web = dir.path().join("web.yml");
    for (yml, want) in [
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n", "missing.crt"),
        ("tls_server_config:\n  cert_file: server.crt\n", "key_file"),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n",
            "Client Auth Policy",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Maybe\n",
            "invalid ClientAuth",
        ),
        ("http_server_config:\n  headers:\n    Server: x\n", "can not be configured"),
    ] {
        std::fs::write(&web, yml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ignis"))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg(format!("--web.config.file={}", web.display()))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{yml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{yml}: {err}");
    }
}

/// Sends a keep-alive request on `s` and reads one response (by Content-Length).
fn keepalive_get(s: &mut TcpStream, path: &str) -> std::io::Result<u16> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                return text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| std::io::Error::other("bad status"));
            }
        }
    }
}

#[test]
fn max_connections_holds_extra_clients_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let srv = common::start(&dir.path().join("data"), &["--web.max-connections=2"]);
    let mut a = TcpStream::connect(&srv.addr).unwrap();
    let mut b = TcpStream::connect(&srv.addr).unwrap();
    assert_eq!(keepalive_get(&mut a, "/-/healthy").unwrap(), 200);
    assert_eq!(keepalive_get(&mut b, "/-/healthy").unwrap(), 200);
    // A third connection is held in the backlog: no answer while both slots are taken.
    let mut c = TcpStream::connect(&srv.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let held = keepalive_get(&mut c, "/-/healthy");
    assert!(held.is_err(), "third connection was served: {held:?}");
    // Closing one frees a slot and the waiting client is served.
    drop(a);
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&raw).contains("\r\n\r\n") {
        let n = c
            .read(&mut buf)
            .expect("held connection answered after a slot freed");
        assert!(n > 0, "closed");
        raw.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    assert_eq!(keepalive_get(&mut b, "/-/healthy").unwrap(), 200);
}
