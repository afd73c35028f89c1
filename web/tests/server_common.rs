//! Shared helpers of the end-to-end tests: start the real `ignis` binary on a free loopback
//! port (killed when the handle drops) and a minimal HTTP/1.1 client over `TcpStream`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared fixtures folder.
pub fn shared_dir() -> PathBuf {
    std::env::var("IGNIS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")))
}

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Server {
    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Starts a real Prometheus (`/usr/bin/prometheus`) with config text `config` and its data in
/// `dir`, waiting until it is ready.
pub fn start_prometheus(dir: &Path, config: &str) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, config).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = dir.join("prometheus.log");
    let logf = std::fs::File::create(&log).expect("create log file");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .expect("start prometheus");
    let srv = Server { child, addr, log };
    wait_ready(&srv);
    srv
}

fn wait_ready(srv: &Server) {
    wait_ready_with(srv, &[])
}

fn wait_ready_with(srv: &Server, headers: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = request(&srv.addr, "GET", "/-/ready", None, headers) {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server did not become ready: {}",
            std::fs::read_to_string(&srv.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `ignis` with `data_dir` and extra flags, waiting until `/-/ready` answers 200.
pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
    start_with_headers(data_dir, extra, &[])
}

/// Starts ignis with a configuration file: `config` gets the server's own `127.0.0.1:<port>`
/// address and returns the file's text, written to `<data_dir>.yml`.
pub fn start_with_config(
    data_dir: &Path,
    extra: &[&str],
    config: impl FnOnce(&str) -> String,
) -> Server {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = data_dir.with_extension("yml");
    std::fs::write(&cfg, config(&addr)).expect("write config");
    let log = data_dir.with_extension("log");
    let logf = std::fs::File::create(&log).expect("create log file");
    let child = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .arg(format!("--storage.tsdb.path={}", data_dir.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--config.file={}", cfg.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .expect("start ignis");
    let srv = Server { child, addr, log };
    wait_ready(&srv);
    srv
}

/// Like [`start`], sending `headers` (e.g. credentials) with the readiness probe.
pub fn start_with_headers(data_dir: &Path, extra: &[&str], headers: &[(&str, &str)]) -> Server {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = data_dir.with_extension("log");
    let logf = std::fs::File::create(&log).expect("create log file");
    // No scrape jobs: the embedded default would scrape localhost:9090, which is not this
    // server and may be something else entirely.
    let cfg = data_dir.with_extension("empty.yml");
    std::fs::write(&cfg, "scrape_configs: []\n").expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .arg(format!("--storage.tsdb.path={}", data_dir.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--config.file={}", cfg.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .expect("start ignis");
    let srv = Server { child, addr, log };
    wait_ready_with(&srv, headers);
    srv
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some(b) = body {
        s.write_all(b)?;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| std::io::Error::other("bad chunk"))?;
        let size_str = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// GET a path.
pub fn get(addr: &str, path: &str) -> Response {
    request(addr, "GET", path, None, &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// POST a form.
pub fn post_form(addr: &str, path: &str, form: &str) -> Response {
    request(
        addr,
        "POST",
        path,
        Some(form.as_bytes()),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    )
    .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// Copies a directory tree.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}
