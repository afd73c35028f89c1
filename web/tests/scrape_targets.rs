//! End to end with the real binary and local targets served by this test: a target that stops
//! answering, one removed from `file_sd_configs` and a job removed by a reload all go stale
//! (`up` 0, series gone from instant queries within about one scrape interval, their samples
//! still there for range functions); malformed and oversized bodies fail only their own
//! target with a clear `lastError` and store nothing; targets dropped by relabeling are listed
//! in `droppedTargets`.

mod server_common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use server_common::*;

/// A scrape target on 127.0.0.1 serving a text-format body that the test can change; it stops
/// listening (connection refused) on [`Target::kill`] or drop.
struct Target {
    addr: String,
    body: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Target {
    fn start(body: &str) -> Target {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let body = Arc::new(Mutex::new(body.to_string()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (body.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut c) = conn else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut req = Vec::new();
                let mut buf = [0u8; 2048];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let body = b.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(resp.as_bytes());
            }
        });
        Target {
            addr,
            body,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }

    fn kill(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(&self.addr);
            let _ = t.join();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Percent-encodes a query for a URL (everything but unreserved characters).
fn enc(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The instant vector of `q` as (labels, value) pairs.
fn query(addr: &str, q: &str) -> Vec<(serde_json::Value, f64)> {
    let r = get(addr, &format!("/api/v1/query?query={}", enc(q))).json();
    assert_eq!(r["status"], "success", "{q}: {r}");
    r["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"].clone(),
                s["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn value(addr: &str, q: &str) -> Option<f64> {
    query(addr, q).first().map(|x| x.1)
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

fn targets(addr: &str) -> serde_json::Value {
    let t = get(addr, "/api/v1/targets").json();
    assert_eq!(t["status"], "success");
    t["data"].clone()
}

fn active_by_pool(addr: &str, pool: &str) -> Vec<serde_json::Value> {
    targets(addr)["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["scrapePool"] == pool)
        .cloned()
        .collect()
}

/// Scrape interval of these tests. A target's series must vanish by its next scrape after the
/// change: one interval, plus slack for a loaded 2-core test machine.
const INTERVAL_S: u64 = 1;
const VANISH_LIMIT: Duration = Duration::from_millis(INTERVAL_S * 1000 + 2500);

#[test]
fn dead_removed_and_unconfigured_targets_go_stale() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let alive = Target::start("tm_alive 1\n");
    let mut victim = Target::start("tm_victim{k=\"a\"} 5\ntm_victim{k=\"b\"} 6\n");
    let filed = Target::start("tm_filed 7\n");
    let sd = dir.path().join("sd.json");
    std::fs::write(
        &sd,
        format!(
            r#"[{{"targets": ["{}"], "labels": {{"src": "file"}}}}]"#,
            filed.addr
        ),
    )
    .unwrap();
    let config = |_: &str| {
        format!(
            "global:\n  scrape_interval: {INTERVAL_S}s\n  scrape_timeout: {INTERVAL_S}s\nscrape_configs:\n\
             - job_name: alive\n  static_configs: [{{targets: ['{}']}}]\n\
             - job_name: victim\n  static_configs: [{{targets: ['{}']}}]\n\
             - job_name: filed\n  file_sd_configs: [{{files: ['{}'], refresh_interval: 1s}}]\n",
            alive.addr,
            victim.addr,
            sd.display()
        )
    };
    let srv = start_with_config(&data, &["--web.enable-lifecycle"], config);
    let addr = srv.addr.clone();
    wait_until("every target scraped", 20, || {
        value(&addr, "tm_alive") == Some(1.0)
            && query(&addr, "tm_victim").len() == 2
            && value(&addr, "tm_filed{src=\"file\"}") == Some(7.0)
    });

    // The victim stops answering: up 0, its series vanish, the others stay.
    victim.kill();
    let took = wait_until("the dead target's series to vanish", 15, || {
        query(&addr, "tm_victim").is_empty()
    });
    eprintln!("dead target's series gone {took:?} after it stopped");
    assert!(took <= VANISH_LIMIT, "took {took:?}");
    assert_eq!(value(&addr, "up{job=\"victim\"}"), Some(0.0));
    // Once the port is closed, lastError reads as in Prometheus.
    let want = format!(
        "Get \"http://{0}/metrics\": dial tcp {0}: connect: connection refused",
        victim.addr
    );
    wait_until("lastError of the dead target", 10, || {
        let v = &active_by_pool(&addr, "victim")[0];
        v["health"] == "down" && v["lastError"] == want.as_str()
    });
    // Hidden by staleness markers, not lost: range functions still see the samples.
    assert_eq!(
        query(&addr, "count_over_time(tm_victim[1m])").len(),
        2,
        "samples kept"
    );
    assert_eq!(value(&addr, "up{job=\"alive\"}"), Some(1.0));
    assert_eq!(value(&addr, "tm_alive"), Some(1.0));

    // The file_sd target is removed from the file: the target goes and its series vanish.
    std::fs::write(&sd, "[]").unwrap();
    let took = wait_until("the removed file_sd target's series to vanish", 15, || {
        query(&addr, "tm_filed").is_empty() && active_by_pool(&addr, "filed").is_empty()
    });
    eprintln!("file_sd target's series gone {took:?} after the file edit");
    // Noticing the edit takes up to refresh_interval (1s); then as for a dead target.
    assert!(
        took <= VANISH_LIMIT + Duration::from_secs(1),
        "took {took:?}"
    );
    assert!(
        query(&addr, "up{job=\"filed\"}").is_empty(),
        "up goes stale too"
    );
    assert_eq!(value(&addr, "tm_alive"), Some(1.0));

    // A reload without the `alive` job: its series vanish too.
    let cfg_path = data.with_extension("yml");
    std::fs::write(
        &cfg_path,
        format!(
            "global:\n  scrape_interval: {INTERVAL_S}s\nscrape_configs:\n\
             - job_name: victim\n  static_configs: [{{targets: ['{}']}}]\n",
            victim.addr
        ),
    )
    .unwrap();
    let r = post_form(&addr, "/-/reload", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let took = wait_until("the unconfigured job's series to vanish", 15, || {
        query(&addr, "tm_alive").is_empty()
    });
    eprintln!("unconfigured job's series gone {took:?} after the reload");
    assert!(took <= VANISH_LIMIT, "took {took:?}");
    assert!(query(&addr, "up{job=\"alive\"}").is_empty());
    drop(srv);
}

#[test]
fn malformed_and_oversized_bodies_fail_only_their_target() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let good = Target::start("# TYPE ok_metric gauge\nok_metric 1\n");
    let bad = Target::start("bad_first 1\nbad_second{ 2\nbad_third 3\n");
    let big_body: String = (0..100)
        .map(|i| format!("big_metric{{i=\"{i}\"}} {i}\n"))
        .collect();
    assert!(big_body.len() > 1024);
    let big = Target::start(&big_body);
    let config = |_: &str| {
        format!(
            "global:\n  scrape_interval: {INTERVAL_S}s\n  scrape_timeout: {INTERVAL_S}s\nscrape_configs:\n\
             - job_name: good\n  static_configs: [{{targets: ['{}']}}]\n\
             - job_name: bad\n  static_configs: [{{targets: ['{}']}}]\n\
             - job_name: big\n  body_size_limit: 1KB\n  static_configs: [{{targets: ['{}']}}]\n\
             - job_name: relabeled\n  static_configs: [{{targets: ['{}', 'drop-me:1'], labels: {{team: a}}}}]\n\
             \x20 relabel_configs: [{{source_labels: [__address__], regex: 'drop-me:.*', action: drop}}]\n",
            good.addr, bad.addr, big.addr, good.addr
        )
    };
    let srv = start_with_config(&data, &[], config);
    let addr = srv.addr.clone();
    wait_until("all targets scraped", 20, || {
        targets(&addr)["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["health"] != "unknown")
            && value(&addr, "ok_metric{job=\"good\"}") == Some(1.0)
    });
    // Give each target a few scrapes.
    std::thread::sleep(Duration::from_secs(2 * INTERVAL_S));

    let b = &active_by_pool(&addr, "bad")[0];
    assert_eq!(b["health"], "down", "{b}");
    let err = b["lastError"].as_str().unwrap();
    assert!(err.contains("line 2"), "names the line: {err}");
    assert!(
        query(&addr, "{__name__=~\"bad_.*\"}").is_empty(),
        "nothing stored"
    );
    assert!(
        query(&addr, "count_over_time({__name__=~\"bad_.*\"}[5m])").is_empty(),
        "not even stale samples"
    );
    assert_eq!(value(&addr, "up{job=\"bad\"}"), Some(0.0));

    let g = &active_by_pool(&addr, "big")[0];
    assert_eq!(g["health"], "down", "{g}");
    assert!(
        g["lastError"]
            .as_str()
            .unwrap()
            .contains("body size limit exceeded"),
        "{g}"
    );
    assert!(query(&addr, "count_over_time(big_metric[5m])").is_empty());
    assert_eq!(value(&addr, "up{job=\"big\"}"), Some(0.0));

    // The good target is unaffected.
    let ok = &active_by_pool(&addr, "good")[0];
    assert_eq!(ok["health"], "up");
    assert_eq!(ok["lastError"], "");
    assert_eq!(value(&addr, "up{job=\"good\"}"), Some(1.0));

    // A fixed body recovers the bad target.
    bad.set("bad_first 1\nbad_second 2\n");
    wait_until("the fixed target's samples", 15, || {
        query(&addr, "{__name__=~\"bad_.*\", job=\"bad\"}").len() == 2
    });
    assert_eq!(active_by_pool(&addr, "bad")[0]["lastError"], "");

    // droppedTargets: the relabel-dropped target with its discovered labels.
    let t = targets(&addr);
    let dropped = t["droppedTargets"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{t}");
    let d = &dropped[0]["discoveredLabels"];
    assert_eq!(d["__address__"], "drop-me:1");
    assert_eq!(d["job"], "relabeled");
    assert_eq!(d["team"], "a");
    assert_eq!(d["__metrics_path__"], "/metrics");
    assert_eq!(d["__scheme__"], "http");
    assert_eq!(t["droppedTargetCounts"]["relabeled"], 1);
    assert_eq!(t["droppedTargetCounts"]["good"], 0);
    assert_eq!(active_by_pool(&addr, "relabeled").len(), 1);
    let active_only = get(&addr, "/api/v1/targets?state=active").json();
    assert_eq!(active_only["data"]["droppedTargets"], serde_json::json!([]));
    assert_eq!(
        active_only["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let dropped_only = get(&addr, "/api/v1/targets?state=dropped&scrapePool=relabeled").json();
    assert_eq!(dropped_only["data"]["activeTargets"], serde_json::json!([]));
    assert_eq!(
        dropped_only["data"]["droppedTargets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        dropped_only["data"]["droppedTargetCounts"],
        serde_json::json!({"relabeled": 1})
    );
    let other_pool = get(&addr, "/api/v1/targets?state=any&scrapePool=good").json();
    assert_eq!(other_pool["data"]["droppedTargets"], serde_json::json!([]));
    assert_eq!(
        other_pool["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    drop(srv);
}

/// Test certificates: a CA, a server certificate for 127.0.0.1 and a client certificate from
/// it, and an unrelated CA, written as PEM files into `dir`; returns the server's rustls config
/// (asking for, not requiring, a client certificate from the CA).
fn tls_files(dir: &std::path::Path) -> Arc<rustls::ServerConfig> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        (p.self_signed(&key).unwrap(), key)
    };
    let leaf = |name: &str, purpose, ca: &(rcgen::Certificate, KeyPair)| {
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        (p.signed_by(&key, &ca.0, &ca.1).unwrap(), key)
    };
    let root = ca("scrape test CA");
    let other = ca("other CA");
    let server = leaf("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth, &root);
    let client = leaf("scraper", ExtendedKeyUsagePurpose::ClientAuth, &root);
    std::fs::write(dir.join("ca.pem"), root.0.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), other.0.pem()).unwrap();
    std::fs::write(dir.join("client.pem"), client.0.pem()).unwrap();
    std::fs::write(dir.join("client.key"), client.1.serialize_pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.0.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(server.1.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.0.der().clone()], key)
        .unwrap();
    Arc::new(cfg)
}

/// What the HTTPS target saw of one request: path, `Authorization`, client certificate.
type Seen = Arc<Mutex<Vec<(String, Option<String>, bool)>>>;

/// An HTTPS target: `/metrics` serves a text body, `/sd` an HTTP SD list naming itself.
/// Stops when `stop` is set (and a connection wakes it).
fn https_target(cfg: Arc<rustls::ServerConfig>, stop: Arc<AtomicBool>) -> (String, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen: Seen = Arc::default();
    let (s2, me) = (seen.clone(), addr.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(tcp) = conn else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
            let Ok(c) = rustls::ServerConnection::new(cfg.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(c, tcp);
            let mut req = Vec::new();
            let mut buf = [0u8; 2048];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            if req.is_empty() {
                continue; // failed handshake (the client refused our certificate)
            }
            let text = String::from_utf8_lossy(&req).to_string();
            let path = text.split(' ').nth(1).unwrap_or("").to_string();
            let auth = text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("authorization")
                    .then(|| v.trim().to_string())
            });
            let client_cert = tls.conn.peer_certificates().is_some();
            s2.lock().unwrap().push((path.clone(), auth, client_cert));
            let (ct, body) = if path == "/sd" {
                (
                    "application/json",
                    format!(r#"[{{"targets": ["{me}"], "labels": {{"via": "https_sd"}}}}]"#),
                )
            } else {
                ("text/plain; version=0.0.4", "tls_metric 42\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(resp.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (addr, seen)
}

#[test]
fn https_targets_and_http_sd_with_tls_config_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = tls_files(dir.path());
    std::fs::write(dir.path().join("password"), "p\n").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (target, seen) = https_target(cfg, stop.clone());
    let config = |_: &str| {
        format!(
            "global:\n  scrape_interval: {INTERVAL_S}s\n  scrape_timeout: {INTERVAL_S}s\nscrape_configs:\n\
             - job_name: mtls\n  scheme: https\n  basic_auth: {{username: u, password_file: password}}\n\
             \x20 tls_config: {{ca_file: ca.pem, cert_file: client.pem, key_file: client.key}}\n\
             \x20 static_configs: [{{targets: ['{target}']}}]\n\
             - job_name: wrongca\n  scheme: https\n  tls_config: {{ca_file: other-ca.pem}}\n\
             \x20 static_configs: [{{targets: ['{target}']}}]\n\
             - job_name: skip\n  scheme: https\n  authorization: {{credentials: tok}}\n\
             \x20 tls_config: {{insecure_skip_verify: true}}\n\
             \x20 static_configs: [{{targets: ['{target}']}}]\n\
             - job_name: sd\n  scheme: https\n  tls_config: {{ca_file: ca.pem}}\n\
             \x20 http_sd_configs:\n  - url: https://{target}/sd\n    refresh_interval: 1s\n\
             \x20   tls_config: {{ca_file: ca.pem}}\n"
        )
    };
    let srv = start_with_config(&data, &[], config);
    let addr = srv.addr.clone();
    wait_until("https targets scraped", 20, || {
        ["mtls", "skip", "sd"]
            .iter()
            .all(|j| value(&addr, &format!("tls_metric{{job=\"{j}\"}}")) == Some(42.0))
            && active_by_pool(&addr, "wrongca")
                .first()
                .is_some_and(|t| t["health"] == "down")
    });
    let w = &active_by_pool(&addr, "wrongca")[0];
    assert!(
        w["lastError"]
            .as_str()
            .unwrap()
            .contains("x509: certificate signed by unknown authority"),
        "{w}"
    );
    assert_eq!(w["scrapeUrl"], format!("https://{target}/metrics"));
    assert_eq!(value(&addr, "up{job=\"wrongca\"}"), Some(0.0));
    assert!(query(&addr, "tls_metric{job=\"wrongca\"}").is_empty());
    let sd = &active_by_pool(&addr, "sd")[0];
    assert_eq!(sd["labels"]["via"], "https_sd");
    assert_eq!(
        sd["discoveredLabels"]["__meta_url"],
        format!("https://{target}/sd")
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(p, a, c)| p == "/metrics" && a.as_deref() == Some("Basic dTpw") && *c),
        "basic auth and the client certificate over TLS: {seen:?}"
    );
    assert!(seen
        .iter()
        .any(|(p, a, c)| p == "/metrics" && a.as_deref() == Some("Bearer tok") && !*c));
    assert!(seen.iter().any(|(p, _, _)| p == "/sd"));
    drop(srv);
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect(&target);
}
