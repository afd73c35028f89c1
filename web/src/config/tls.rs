//! TLS for scrapes and HTTP service discovery: a `tls_config` section (`ca_file`, `cert_file`,
//! `key_file`, `server_name`, `insecure_skip_verify`, `min_version`) becomes a [`TlsClient`]
//! that wraps a TCP connection in TLS before the HTTP exchange.
//!
//! rustls with the `ring` provider: pure Rust apart from ring's C/assembly, which needs only a
//! C compiler (no cmake or nasm, unlike aws-lc). File paths are relative to the directory of
//! the configuration file, as in Prometheus. Without `ca_file`, the system's CA bundle is used
//! (`SSL_CERT_FILE`, else Debian's `/etc/ssl/certs/ca-certificates.crt` or the Red Hat path).
//! rustls speaks TLS 1.2 and 1.3 only: `min_version: TLS10`/`TLS11` therefore behave like
//! `TLS12`.

use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::TlsConfig;

/// Files tried, in order, for the system's trusted CAs when `ca_file` is not set.
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A ready TLS client configuration (one per scrape job or HTTP SD config).
#[derive(Debug)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    /// `server_name`: the name sent in SNI and checked in the certificate instead of the host.
    server_name: Option<ServerName<'static>>,
    /// Identifies the settings and the files' contents, to tell whether a reload changed them.
    key: String,
}

fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// The system's trusted CAs, read once.
fn system_roots() -> Arc<RootCertStore> {
    static R: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    Arc::clone(R.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let env = std::env::var("SSL_CERT_FILE").ok();
        let files = env
            .iter()
            .map(String::as_str)
            .chain(SYSTEM_CA_FILES.iter().copied());
        for f in files {
            if let Ok(certs) = read_certs(Path::new(f)) {
                let (ok, _) = store.add_parsable_certificates(certs);
                if ok > 0 {
                    break;
                }
            }
        }
        if store.is_empty() {
            tracing::warn!(
                "no system CA certificates found; https targets need tls_config.ca_file"
            );
        }
        Arc::new(store)
    }))
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = read_file(path)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(data.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("parsing certificates in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate found in {}", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let data = read_file(path)?;
    rustls_pemfile::private_key(&mut BufReader::new(data.as_slice()))
        .map_err(|e| format!("parsing private key in {}: {e}", path.display()))?
        .ok_or_else(|| format!("no PEM private key found in {}", path.display()))
}

/// Checks the fields of a `tls_config` that need no files: `min_version` and the pairing of
/// `cert_file` with `key_file`. Used by the config loader.
pub fn validate(t: &TlsConfig) -> Result<(), String> {
    if let Some(v) = &t.min_version {
        if !matches!(v.as_str(), "TLS10" | "TLS11" | "TLS12" | "TLS13") {
            return Err(format!("unknown TLS version: {v}"));
        }
    }
    match (&t.cert_file, &t.key_file) {
        (Some(c), None) => Err(format!(
            "client cert file {c:?} specified without client key file"
        )),
        (None, Some(k)) => Err(format!(
            "client key file {k:?} specified without client cert file"
        )),
        _ => Ok(()),
    }
}

impl TlsClient {
    /// Builds the client of a `tls_config`, reading its files relative to `base`.
    pub fn from_config(t: &TlsConfig, base: &Path) -> Result<TlsClient, String> {
        validate(t)?;
        let mut key = format!("{t:?}");
        let versions: &[&'static rustls::SupportedProtocolVersion] =
            if t.min_version.as_deref() == Some("TLS13") {
                &[&rustls::version::TLS13]
            } else {
                &[&rustls::version::TLS12, &rustls::version::TLS13]
            };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS setup: {e}"))?;
        let builder = if t.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
        } else if let Some(ca) = &t.ca_file {
            let path = base.join(ca);
            let certs = read_certs(&path)?;
            let mut store = RootCertStore::empty();
            for c in certs {
                key.push_str(&format!("{:x}", md5::compute(c.as_ref())));
                store
                    .add(c)
                    .map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
            }
            builder.with_root_certificates(store)
        } else {
            builder.with_root_certificates(system_roots())
        };
        let mut config = match (&t.cert_file, &t.key_file) {
            (Some(c), Some(k)) => {
                let certs = read_certs(&base.join(c))?;
                let pk = read_key(&base.join(k))?;
                for c in &certs {
                    key.push_str(&format!("{:x}", md5::compute(c.as_ref())));
                }
                key.push_str(&format!("{:x}", md5::compute(pk.secret_der())));
                builder
                    .with_client_auth_cert(certs, pk)
                    .map_err(|e| format!("client certificate {c} / key {k}: {e}"))?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = match t.server_name.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(
                ServerName::try_from(s.to_string())
                    .map_err(|e| format!("invalid tls_config.server_name {s:?}: {e}"))?,
            ),
            None => None,
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
            key,
        })
    }

    /// The client for `https` without a `tls_config`: system CAs, TLS 1.2+.
    pub fn default_client() -> Arc<TlsClient> {
        static D: OnceLock<Arc<TlsClient>> = OnceLock::new();
        Arc::clone(D.get_or_init(|| {
            // The default config reads no files, so it cannot fail.
            Arc::new(
                TlsClient::from_config(&TlsConfig::default(), Path::new("."))
                    .unwrap_or_else(|e| panic!("default TLS client: {e}")),
            )
        }))
    }

    /// Whether two clients have the same settings and files.
    pub fn same(&self, o: &TlsClient) -> bool {
        self.key == o.key
    }

    /// Runs the TLS handshake on `tcp` with the server `host` (the URL's host, unless
    /// `server_name` is set); the error reads like Go's where it can.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, String> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.to_string())
                .map_err(|e| format!("invalid TLS server name {host:?}: {e}"))?,
        };
        tokio_rustls::TlsConnector::from(Arc::clone(&self.config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port}: {}", describe(&e)))
    }
}

/// A handshake error in words, with Go's x509 phrasing for the common certificate failures.
fn describe(e: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    let hint = match r {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "x509: certificate signed by unknown authority",
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "x509: certificate is not valid for the requested name"
            }
            C::Expired | C::ExpiredContext { .. } => "x509: certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "x509: certificate is not yet valid",
            C::BadSignature => "x509: certificate has a bad signature",
            _ => "",
        },
        _ => "",
    };
    if hint.is_empty() {
        r.to_string()
    } else {
        format!("{hint} ({r})")
    }
}

/// `insecure_skip_verify`: any server certificate is accepted; handshake signatures are still
/// checked so the connection is at least consistent with the presented key.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
