//! `--web.config.file`: the exporter-toolkit web configuration file, as Prometheus reads it.
//!
//! ```yaml
//! basic_auth_users:          # user name -> bcrypt hash ($2a$/$2b$/$2y$)
//!   alice: $2y$10$…
//! tls_server_config:
//!   cert_file: server.crt    # PEM chain (or `cert:` inline PEM); paths are relative to this file
//!   key_file: server.key     # PEM private key: PKCS#8, PKCS#1 or SEC1 (or `key:` inline)
//!   client_auth_type: NoClientCert   # | RequestClientCert | RequireAnyClientCert
//!                                    # | VerifyClientCertIfGiven | RequireAndVerifyClientCert
//!   client_ca_file: ca.crt   # (or `client_ca:` inline); needs a client_auth_type other than
//!                            # NoClientCert, and the Verify… types need it
//!   client_allowed_sans: [client.example]  # DNS names / IPs one of which the client cert must hold
//!   min_version: TLS12       # TLS10 | TLS11 | TLS12 | TLS13; rustls speaks 1.2 and 1.3 only
//!   max_version: TLS13
//!   cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, …]  # Go names; TLS 1.2 suites only
//!   prefer_server_cipher_suites: true
//!   curve_preferences: [X25519, CurveP256, CurveP384]          # CurveP521 is ignored
//! http_server_config:
//!   http2: true              # accepted; ignis serves HTTP/1.1
//!   headers:                 # added to every response; only these names, as exporter-toolkit:
//!     Strict-Transport-Security: max-age=31536000
//!     X-Content-Type-Options: nosniff            # only "nosniff"
//!     X-Frame-Options: deny                      # "deny" or "sameorigin"
//!     X-XSS-Protection: 1; mode=block
//!     Content-Security-Policy: default-src 'self'
//! ```
//!
//! With users configured, every request needs `Authorization: Basic …` with a matching user and
//! password, else 401 with `WWW-Authenticate: Basic`. Without the flag nothing changes.
//! Verified credentials are cached (by a hash of user and password) so bcrypt's deliberate
//! slowness is paid once per credential, not per request.
//! Like Prometheus, which re-reads the file per request, edits of the file are followed: users
//! on the next request after its modification time changes, TLS settings on the next connection.
//!
//! TLS maps onto rustls with the `ring` provider (pure Rust + a C compiler: no cmake or nasm,
//! unlike aws-lc-rs). Go's client auth types map onto rustls client verifiers: the Verify…
//! types check the chain against the client CAs, RequestClientCert / RequireAnyClientCert only
//! check that the client holds the key of the certificate it presents (as Go does).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use serde::Deserialize;

use super::state::SharedState;

/// The parsed web configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// User name to bcrypt hash.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    /// TLS settings; TLS is on when any certificate, key or client CA setting is present.
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    /// HTTP server settings.
    #[serde(default)]
    pub http_server_config: Option<HttpServerConfig>,
    /// The directory of the file: relative paths in it are taken from there.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// `tls_server_config`, field names as in exporter-toolkit.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// Inline PEM certificate chain.
    #[serde(default)]
    pub cert: String,
    /// Inline PEM private key.
    #[serde(default)]
    pub key: String,
    /// Inline PEM client CA certificates.
    #[serde(default)]
    pub client_ca: String,
    /// Certificate chain file (PEM).
    #[serde(default)]
    pub cert_file: String,
    /// Private key file (PEM).
    #[serde(default)]
    pub key_file: String,
    /// Go's `tls.ClientAuthType` name.
    #[serde(default)]
    pub client_auth_type: String,
    /// Client CA certificates file (PEM).
    #[serde(default)]
    pub client_ca_file: String,
    /// Go cipher suite names (TLS 1.2; TLS 1.3 suites are not configurable, as in Go).
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Go curve names.
    #[serde(default)]
    pub curve_preferences: Vec<String>,
    /// Lowest TLS version (default TLS12).
    #[serde(default)]
    pub min_version: Option<String>,
    /// Highest TLS version (default TLS13).
    #[serde(default)]
    pub max_version: Option<String>,
    /// Server's cipher order wins (default true).
    #[serde(default)]
    pub prefer_server_cipher_suites: Option<bool>,
    /// Names one of which a client certificate must be valid for.
    #[serde(default)]
    pub client_allowed_sans: Option<Vec<String>>,
}

/// `http_server_config`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// HTTP/2 over TLS (accepted; ignis serves HTTP/1.1).
    #[serde(default)]
    #[allow(dead_code)]
    pub http2: Option<bool>,
    /// Extra response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Response headers exporter-toolkit lets a user set, with their allowed values (empty: any).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

impl WebConfig {
    /// Reads and checks a web config file (users, headers and, when TLS is on, that the
    /// certificate, key and CAs load).
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut cfg: WebConfig =
            serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        for (user, hash) in &cfg.basic_auth_users {
            if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
                return Err(format!(
                    "{}: password of user {user:?} is not a bcrypt hash",
                    path.display()
                ));
            }
        }
        for (name, value) in cfg.headers() {
            let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| n == name) else {
                return Err(format!(
                    "{}: HTTP header {name:?} can not be configured",
                    path.display()
                ));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(format!(
                    "{}: invalid value for {name}. Expected one of: {allowed:?}, but got: {value:?}",
                    path.display()
                ));
            }
            if HeaderValue::from_str(value).is_err() {
                return Err(format!(
                    "{}: invalid value for {name}: {value:?}",
                    path.display()
                ));
            }
        }
        if cfg.tls_enabled() {
            cfg.server_tls_config()
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(cfg)
    }

    /// The extra response headers (empty when none).
    pub fn headers(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.http_server_config
            .as_ref()
            .map(|h| &h.headers)
            .unwrap_or(&EMPTY)
    }

    /// Whether the listener speaks TLS (exporter-toolkit's `IsEnabled`).
    pub fn tls_enabled(&self) -> bool {
        self.tls_server_config.as_ref().is_some_and(|t| {
            !(t.cert.is_empty()
                && t.key.is_empty()
                && t.cert_file.is_empty()
                && t.key_file.is_empty()
                && t.client_ca.is_empty()
                && t.client_ca_file.is_empty()
                && t.client_auth_type.is_empty())
        })
    }

    /// The files whose change should rebuild the TLS configuration: this config's certificate,
    /// key and client CA files.
    pub fn tls_files(&self) -> Vec<PathBuf> {
        let Some(t) = &self.tls_server_config else {
            return Vec::new();
        };
        [&t.cert_file, &t.key_file, &t.client_ca_file]
            .into_iter()
            .filter(|f| !f.is_empty())
            .map(|f| self.dir.join(f))
            .collect()
    }

    /// Builds the rustls server configuration (TLS must be enabled).
    pub fn server_tls_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let t = self
            .tls_server_config
            .as_ref()
            .ok_or("TLS config is not present")?;
        if t.cert_file.is_empty() && t.cert.is_empty() {
            return Err("missing one of cert or cert_file".into());
        }
        if t.key_file.is_empty() && t.key.is_empty() {
            return Err("missing one of key or key_file".into());
        }
        let read = |file: &str, inline: &str, what: &str| -> Result<Vec<u8>, String> {
            if file.is_empty() {
                return Ok(inline.as_bytes().to_vec());
            }
            let p = self.dir.join(file);
            std::fs::read(&p).map_err(|e| format!("failed to read {what} ({}): {e}", p.display()))
        };
        let cert_pem = read(&t.cert_file, &t.cert, "cert_file")?;
        let key_pem = read(&t.key_file, &t.key, "key_file")?;
        let chain =
            parse_certs(&cert_pem).map_err(|e| format!("failed to load X509KeyPair: {e}"))?;
        let key = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|e| format!("failed to load X509KeyPair: key: {e}"))?
            .ok_or("failed to load X509KeyPair: no private key found in key data")?;

        let provider = Arc::new(self.crypto_provider(t)?);
        let versions = tls_versions(t)?;
        let verifier = client_verifier(t, &provider, |f, i| read(f, i, "client_ca_file"))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| format!("failed to load X509KeyPair: {e}"))?;
        cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// The ring provider restricted to the configured cipher suites and curves.
    fn crypto_provider(&self, t: &TlsServerConfig) -> Result<CryptoProvider, String> {
        let mut provider = rustls::crypto::ring::default_provider();
        if !t.cipher_suites.is_empty() {
            let mut suites = Vec::new();
            for name in &t.cipher_suites {
                let name = go_cipher_alias(name);
                let found = provider
                    .cipher_suites
                    .iter()
                    .find(|s| s.suite().as_str() == Some(name));
                match found {
                    Some(s) if s.version() == &rustls::version::TLS12 => suites.push(*s),
                    Some(_) => {} // TLS 1.3 suites are always on, as in Go.
                    None if GO_ONLY_CIPHERS.contains(&name) => {
                        tracing::warn!(
                            cipher = name,
                            "Cipher suite not supported by rustls, ignored"
                        )
                    }
                    None => return Err(format!("unknown cipher: {name}")),
                }
            }
            let tls13: Vec<_> = provider
                .cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .copied()
                .collect();
            suites.extend(tls13);
            provider.cipher_suites = suites;
        }
        if !t.curve_preferences.is_empty() {
            use rustls::crypto::ring::kx_group;
            let mut groups = Vec::new();
            for name in &t.curve_preferences {
                match name.as_str() {
                    "X25519" => groups.push(kx_group::X25519),
                    "CurveP256" => groups.push(kx_group::SECP256R1),
                    "CurveP384" => groups.push(kx_group::SECP384R1),
                    "CurveP521" => {
                        tracing::warn!(
                            curve = name.as_str(),
                            "Curve not supported by rustls, ignored"
                        )
                    }
                    _ => return Err(format!("unknown curve: {name}")),
                }
            }
            if groups.is_empty() {
                return Err("curve_preferences: none of the curves is supported".into());
            }
            provider.kx_groups = groups;
        }
        Ok(provider)
    }
}

/// Go's legacy alias names for the ChaCha20 suites.
fn go_cipher_alias(name: &str) -> &str {
    match name {
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        n => n,
    }
}

/// Cipher suites Go knows and rustls does not implement (CBC, RC4, 3DES, static RSA).
const GO_ONLY_CIPHERS: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate found in PEM data".into());
    }
    Ok(certs)
}

fn tls_versions(
    t: &TlsServerConfig,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let rank = |v: &Option<String>, default: u8| -> Result<u8, String> {
        match v.as_deref() {
            None | Some("") => Ok(default),
            Some("TLS10") => Ok(10),
            Some("TLS11") => Ok(11),
            Some("TLS12") => Ok(12),
            Some("TLS13") => Ok(13),
            Some(other) => Err(format!("unknown TLS version: {other}")),
        }
    };
    let (min, max) = (rank(&t.min_version, 12)?, rank(&t.max_version, 13)?);
    if min < 12 {
        tracing::info!("TLS 1.0 and 1.1 are not supported by rustls: the minimum is TLS 1.2");
    }
    let mut out = Vec::new();
    if min <= 12 && max >= 12 {
        out.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        out.push(&rustls::version::TLS13);
    }
    if out.is_empty() {
        return Err(
            "no TLS version between min_version and max_version is supported (TLS 1.2 and 1.3 are)"
                .to_string(),
        );
    }
    Ok(out)
}

/// The client certificate verifier for `client_auth_type`.
fn client_verifier(
    t: &TlsServerConfig,
    provider: &Arc<CryptoProvider>,
    read_ca: impl Fn(&str, &str) -> Result<Vec<u8>, String>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let has_ca = !t.client_ca_file.is_empty() || !t.client_ca.is_empty();
    let roots = if has_ca {
        let pem = read_ca(&t.client_ca_file, &t.client_ca)?;
        let mut roots = RootCertStore::empty();
        for c in parse_certs(&pem).map_err(|e| format!("client CA: {e}"))? {
            roots
                .add(c)
                .map_err(|e| format!("client CA certificate: {e}"))?;
        }
        Some(Arc::new(roots))
    } else {
        None
    };
    let (offer, mandatory, verify) = match t.client_auth_type.as_str() {
        "" | "NoClientCert" => (false, false, false),
        "RequestClientCert" => (true, false, false),
        "RequireAnyClientCert" | "RequireClientCert" => (true, true, false),
        "VerifyClientCertIfGiven" => (true, false, true),
        "RequireAndVerifyClientCert" => (true, true, true),
        other => return Err(format!("invalid ClientAuth: {other}")),
    };
    if has_ca && !offer {
        return Err("client CA's have been configured without a Client Auth Policy".into());
    }
    if !offer {
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    let inner: Arc<dyn ClientCertVerifier> = if verify {
        let roots = roots.ok_or_else(|| {
            format!(
                "client_auth_type {} needs client_ca_file",
                t.client_auth_type
            )
        })?;
        let b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
        let b = if mandatory {
            b
        } else {
            b.allow_unauthenticated()
        };
        b.build().map_err(|e| format!("client verifier: {e}"))?
    } else {
        Arc::new(AnyClientCert {
            mandatory,
            provider: provider.clone(),
        })
    };
    match &t.client_allowed_sans {
        Some(sans) => {
            let mut names = Vec::new();
            for s in sans {
                names.push(
                    ServerName::try_from(s.clone())
                        .map_err(|e| format!("client_allowed_sans: {s:?}: {e}"))?,
                );
            }
            Ok(Arc::new(AllowedSans { inner, names }))
        }
        None => Ok(inner),
    }
}

/// Go's RequestClientCert / RequireAnyClientCert: any certificate, but the client must prove
/// it holds its key (the handshake signature is checked).
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `client_allowed_sans`: the inner verifier, then the certificate must be valid for one of
/// the names (DNS names and IP addresses; Go also matches e-mail and URI SANs).
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<ServerName<'static>>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("client certificate: {e}")))?;
        if self
            .names
            .iter()
            .any(|n| cert.verify_is_valid_for_subject_name(n).is_ok())
        {
            Ok(ok)
        } else {
            Err(rustls::Error::General(
                "could not find allowed SANs in client cert".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Middleware: adds `http_server_config.headers` to every response (401s included).
pub async fn add_headers(
    State(headers): State<Arc<Vec<(HeaderName, HeaderValue)>>>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    for (k, v) in headers.iter() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

/// The configured headers as typed header pairs (names and values were checked at load).
pub fn header_pairs(cfg: &WebConfig) -> Vec<(HeaderName, HeaderValue)> {
    cfg.headers()
        .iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect()
}

/// Checks Basic credentials against the configured users. Built with [`BasicAuth::from_file`],
/// it re-reads the web config file when its modification time changes (Prometheus re-reads it
/// for every request), so users can be added or rotated without a restart; a broken edit is
/// logged and the previous users stay in force.
#[derive(Default)]
pub struct BasicAuth {
    users: parking_lot::RwLock<Arc<BTreeMap<String, String>>>,
    file: Option<PathBuf>,
    stamp: Mutex<Option<std::time::SystemTime>>,
    verified: Mutex<HashSet<u64>>,
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl BasicAuth {
    /// An authenticator for `users` (name to bcrypt hash); empty means no authentication.
    #[cfg(test)]
    pub fn new(users: BTreeMap<String, String>) -> Self {
        BasicAuth {
            users: parking_lot::RwLock::new(Arc::new(users)),
            ..Default::default()
        }
    }

    /// An authenticator for `users`, loaded from `path`, that follows later edits of the file.
    pub fn from_file(path: &Path, users: BTreeMap<String, String>) -> Self {
        BasicAuth {
            users: parking_lot::RwLock::new(Arc::new(users)),
            file: Some(path.to_path_buf()),
            stamp: Mutex::new(mtime(path)),
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Reloads the users if the file changed.
    fn refresh(&self) {
        let Some(path) = &self.file else { return };
        let now = mtime(path);
        let mut stamp = self.stamp.lock();
        if *stamp == now {
            return;
        }
        *stamp = now;
        match WebConfig::load(path) {
            Ok(cfg) => {
                *self.users.write() = Arc::new(cfg.basic_auth_users);
                self.verified.lock().clear();
                tracing::info!(file = %path.display(), "Web config file changed: users reloaded");
            }
            Err(e) => {
                tracing::error!(err = %e, "Reloading the web config file failed; keeping the previous users")
            }
        }
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        self.refresh();
        !self.users.read().is_empty()
    }

    /// Whether an `Authorization` header value carries valid credentials.
    pub fn check(&self, authorization: Option<&str>) -> bool {
        let Some(b64) = authorization.and_then(|h| h.strip_prefix("Basic ")) else {
            return false;
        };
        let Some(raw) = base64_decode(b64.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return false;
        };
        let Some((user, pass)) = text.split_once(':') else {
            return false;
        };
        let users = self.users.read().clone();
        let Some(hash) = users.get(user) else {
            return false;
        };
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (user, pass, hash).hash(&mut h);
            h.finish()
        };
        if self.verified.lock().contains(&key) {
            return true;
        }
        let ok = bcrypt::verify(pass, hash).unwrap_or(false);
        if ok {
            self.verified.lock().insert(key);
        }
        ok
    }
}

/// Standard base64 (with or without padding).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Middleware: 401 unless the request has valid credentials (when users are configured).
pub async fn require_auth(State(st): State<SharedState>, req: Request, next: Next) -> Response {
    if !st.auth.enabled() {
        return next.run(req).await;
    }
    let hdr = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let st2 = st.clone();
    // bcrypt is slow on purpose: keep it off the reactor.
    let ok = tokio::task::spawn_blocking(move || st2.auth.check(hdr.as_deref()))
        .await
        .unwrap_or(false);
    if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic")],
            "Unauthorized\n",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(base64_decode("YWxpY2U6c2VjcmV0").unwrap(), b"alice:secret");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn basic_auth_checks_bcrypt_hashes() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let auth = BasicAuth::new([("alice".to_string(), hash)].into_iter().collect());
        assert!(auth.enabled());
        assert!(auth.check(Some("Basic YWxpY2U6c2VjcmV0")));
        assert!(auth.check(Some("Basic YWxpY2U6c2VjcmV0")), "cached");
        assert!(!auth.check(Some("Basic YWxpY2U6d3Jvbmc=")), "alice:wrong");
        assert!(!auth.check(Some("Bearer x")));
        assert!(!auth.check(None));
        assert!(!BasicAuth::default().enabled());
    }

    #[test]
    fn config_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.yml");
        std::fs::write(&p, "basic_auth_users:\n  alice: $2y$04$abcdefghijklmnopqrstuu5Zr1b5kXbZt5K0x7wVZlq2w1n0b3b2\n").unwrap();
        assert_eq!(WebConfig::load(&p).unwrap().basic_auth_users.len(), 1);
        std::fs::write(&p, "basic_auth_users:\n  alice: plaintext\n").unwrap();
        assert!(WebConfig::load(&p).unwrap_err().contains("bcrypt"));
        std::fs::write(&p, "tls_server_config:\n  cert_file: a\n  key_file: b\n").unwrap();
        let err = WebConfig::load(&p).unwrap_err();
        assert!(err.contains("cert_file") && err.contains("/a"), "{err}");
        std::fs::write(
            &p,
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
        )
        .unwrap();
        assert!(WebConfig::load(&p).unwrap_err().contains("Expected one of"));
        std::fs::write(
            &p,
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        )
        .unwrap();
        assert_eq!(header_pairs(&WebConfig::load(&p).unwrap()).len(), 1);
        std::fs::write(&p, "bogus: 1\n").unwrap();
        assert!(WebConfig::load(&p).is_err());
    }

    fn write_pki(dir: &Path) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("s.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("s.key"), key.serialize_pem()).unwrap();
    }

    fn load_tls(dir: &Path, extra: &str) -> Result<WebConfig, String> {
        let p = dir.join("web.yml");
        std::fs::write(
            &p,
            format!("tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n{extra}"),
        )
        .unwrap();
        WebConfig::load(&p)
    }

    #[test]
    fn tls_settings_map_onto_rustls() {
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path());
        // Relative paths are taken from the config file's directory.
        let cfg = load_tls(dir.path(), "").unwrap();
        assert!(cfg.tls_enabled());
        let tls = cfg.server_tls_config().unwrap();
        assert!(tls.ignore_client_order);
        assert_eq!(cfg.tls_files().len(), 2);

        let cfg = load_tls(
            dir.path(),
            "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA]\n  \
             curve_preferences: [CurveP256, CurveP521]\n  prefer_server_cipher_suites: false\n  \
             min_version: TLS13\n",
        )
        .unwrap();
        let tls = cfg.server_tls_config().unwrap();
        assert!(!tls.ignore_client_order);
        let suites: Vec<_> = tls
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite().as_str().unwrap_or("?"))
            .collect();
        assert!(suites.contains(&"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"));
        assert!(!suites.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"));
        assert!(suites.contains(&"TLS13_AES_128_GCM_SHA256"), "{suites:?}");
        assert_eq!(tls.crypto_provider().kx_groups.len(), 1);

        let err = |extra: &str| load_tls(dir.path(), extra).unwrap_err();
        assert!(err("  cipher_suites: [TLS_BOGUS]\n").contains("unknown cipher"));
        assert!(err("  curve_preferences: [CurveX]\n").contains("unknown curve"));
        assert!(err("  min_version: TLS14\n").contains("unknown TLS version"));
        assert!(err("  max_version: TLS11\n").contains("no TLS version"));
        assert!(err("  client_auth_type: RequireAndVerifyClientCert\n").contains("client_ca_file"));
        assert!(err("  client_ca_file: s.crt\n").contains("Client Auth Policy"));
        assert!(err("  client_auth_type: Sometimes\n").contains("invalid ClientAuth"));
        assert!(err("  bogus: 1\n").contains("bogus"));
        for t in [
            "NoClientCert",
            "RequestClientCert",
            "RequireAnyClientCert",
            "VerifyClientCertIfGiven",
            "RequireAndVerifyClientCert",
        ] {
            let extra = if t == "NoClientCert" {
                format!("  client_auth_type: {t}\n")
            } else {
                format!("  client_auth_type: {t}\n  client_ca_file: s.crt\n")
            };
            assert!(load_tls(dir.path(), &extra).is_ok(), "{t}");
        }
    }

    #[test]
    fn basic_auth_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.yml");
        let write = |user: &str, pass: &str| {
            let hash = bcrypt::hash(pass, 4).unwrap();
            std::fs::write(&p, format!("basic_auth_users:\n  {user}: {hash}\n")).unwrap();
        };
        write("alice", "secret");
        let auth = BasicAuth::from_file(&p, WebConfig::load(&p).unwrap().basic_auth_users);
        assert!(auth.enabled());
        assert!(auth.check(Some("Basic YWxpY2U6c2VjcmV0")));
        // Rotate the password; keep trying until the mtime differs from the first write's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            std::thread::sleep(std::time::Duration::from_millis(20));
            write("alice", "wrong");
            assert!(auth.enabled());
            if !auth.check(Some("Basic YWxpY2U6c2VjcmV0")) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "edit not picked up");
        }
        assert!(auth.check(Some("Basic YWxpY2U6d3Jvbmc=")), "alice:wrong");
        // A broken edit keeps the previous users.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, "basic_auth_users: [").unwrap();
        assert!(auth.enabled());
        assert!(auth.check(Some("Basic YWxpY2U6d3Jvbmc=")));
    }
}
