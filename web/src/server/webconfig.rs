//! `--web.config.file`: the exporter-toolkit web configuration file, as Prometheus reads it.
//!
//! ```yaml
//! basic_auth_users:          # user name -> bcrypt hash ($2a$/$2b$/$2y$)
//!   alice: $2y$10$…
//! tls_server_config:         # not supported yet: refused at startup with a clear error
//!   cert_file: server.crt
//!   key_file: server.key
//! ```
//!
//! With users configured, every request needs `Authorization: Basic …` with a matching user and
//! password, else 401 with `WWW-Authenticate: Basic`. Without the flag nothing changes.
//! Verified credentials are cached (by a hash of user and password) so bcrypt's deliberate
//! slowness is paid once per credential, not per request.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::Deserialize;

use super::state::SharedState;

/// The parsed web configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// User name to bcrypt hash.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    /// TLS settings (refused for now).
    #[serde(default)]
    pub tls_server_config: Option<serde_yaml_ng::Value>,
    /// HTTP server settings (accepted, ignored).
    #[serde(default)]
    #[allow(dead_code)]
    pub http_server_config: Option<serde_yaml_ng::Value>,
}

impl WebConfig {
    /// Reads and checks a web config file.
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg: WebConfig =
            serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if cfg.tls_server_config.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "{}: tls_server_config is not supported by ignis yet",
                path.display()
            ));
        }
        for (user, hash) in &cfg.basic_auth_users {
            if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
                return Err(format!(
                    "{}: password of user {user:?} is not a bcrypt hash",
                    path.display()
                ));
            }
        }
        Ok(cfg)
    }
}

/// Checks Basic credentials against the configured users.
#[derive(Default)]
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<u64>>,
}

impl BasicAuth {
    /// An authenticator for `users` (name to bcrypt hash); empty means no authentication.
    pub fn new(users: BTreeMap<String, String>) -> Self {
        BasicAuth {
            users,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        !self.users.is_empty()
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
        let Some(hash) = self.users.get(user) else {
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
        assert!(WebConfig::load(&p)
            .unwrap_err()
            .contains("tls_server_config"));
        std::fs::write(&p, "bogus: 1\n").unwrap();
        assert!(WebConfig::load(&p).is_err());
    }
}
