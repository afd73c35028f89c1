//! Acceptance (issue 5): ignis and Prometheus 2.42 scrape the same `prometheus-node-exporter`
//! side by side and store the same series with the same values.
//!
//! To compare *the same scrapes*, a caching proxy in this test sits in front of node_exporter.
//! It keeps, per exposition format, a sequence of bodies fetched from node_exporter: the k-th
//! scrape of each server gets the k-th body, fetched once when the first server asks for it. So
//! both servers parse identical bodies in the same order, whatever their scrape offsets. Two
//! jobs scrape it: `node_text` (text format 0.0.4) and `node_om` (the proxy asks node_exporter
//! for OpenMetrics 1.0 and passes on what it gets: Debian's node_exporter 1.5 has no OpenMetrics
//! and answers in the text format), every 1 s for `IGNIS_NODE_EXPORTER_SECS` seconds (default 20; the
//! issue's 10-minute run is `IGNIS_NODE_EXPORTER_SECS=600`).
//!
//! After that time the proxy freezes: it stops fetching, lets each server catch up to the last
//! body fetched, then serves that last body again (so neither server's trailing scrapes bring
//! anything new). Then both are queried at the same evaluation time with `/api/v1/series` and a
//! range selector over the whole run: the series sets must be equal (synthetic `up`/`scrape_*`
//! series included), and each series' values in order (timestamps ignored) must be equal over
//! the common length, each side holding at least all frozen bodies but one (one scrape of
//! difference at the end). `scrape_duration_seconds` is compared by presence and count only: it
//! is each server's own timing.

#[path = "server_common.rs"]
mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TEXT_ACCEPT: &str = "text/plain;version=0.0.4";
const OM_ACCEPT: &str = "application/openmetrics-text;version=1.0.0";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// node_exporter on a loopback port; killed on drop.
struct NodeExporter {
    child: Child,
    addr: String,
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node_exporter() -> NodeExporter {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus-node-exporter (Debian package prometheus-node-exporter)");
    let ne = NodeExporter { child, addr };
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::request(&ne.addr, "GET", "/metrics", None, &[])
        .map(|r| r.status)
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "node_exporter did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    ne
}

/// A body with its content type.
type Body = Arc<(String, Vec<u8>)>;

/// The bodies of one format: `bodies[i]` is body number `base + i`.
#[derive(Default)]
struct Sequence {
    base: usize,
    bodies: VecDeque<Body>,
}

/// The caching proxy's state.
struct Proxy {
    upstream: String,
    seqs: Mutex<HashMap<&'static str, Sequence>>,
    /// Next body index per (scraper, format).
    next: Mutex<HashMap<(String, &'static str), usize>>,
    stop: AtomicBool,
    /// Once frozen: the number of bodies per format; later scrapes get the last one again.
    frozen: Mutex<Option<HashMap<&'static str, usize>>>,
    /// Upstream fetches per format.
    fetched: Mutex<HashMap<&'static str, usize>>,
}

impl Proxy {
    /// Stops fetching: returns the number of bodies per format.
    fn freeze(&self) -> HashMap<&'static str, usize> {
        let seqs = self.seqs.lock().unwrap();
        let counts: HashMap<&'static str, usize> = seqs
            .iter()
            .map(|(f, s)| (*f, s.base + s.bodies.len()))
            .collect();
        *self.frozen.lock().unwrap() = Some(counts.clone());
        counts
    }

    /// Whether every scraper has had `counts` bodies of each format.
    fn caught_up(&self, counts: &HashMap<&'static str, usize>) -> bool {
        let next = self.next.lock().unwrap();
        next.len() == 2 * counts.len() && next.iter().all(|((_, f), n)| *n >= counts[f])
    }

    fn body(&self, who: &str, fmt: &'static str) -> Body {
        let idx = {
            let mut next = self.next.lock().unwrap();
            let n = next.entry((who.to_string(), fmt)).or_insert(0);
            *n += 1;
            *n - 1
        };
        let mut seqs = self.seqs.lock().unwrap();
        let idx = match self.frozen.lock().unwrap().as_ref() {
            Some(f) => idx.min(f.get(fmt).copied().unwrap_or(1).max(1) - 1),
            None => idx,
        };
        let seq = seqs.entry(fmt).or_default();
        while seq.base + seq.bodies.len() <= idx {
            let accept = if fmt == "om" { OM_ACCEPT } else { TEXT_ACCEPT };
            let r = common::request(
                &self.upstream,
                "GET",
                "/metrics",
                None,
                &[("Accept", accept)],
            )
            .expect("fetch node_exporter");
            assert_eq!(r.status, 200, "node_exporter: {}", r.text());
            let ct = r.header("content-type").unwrap_or("text/plain").to_string();
            seq.bodies.push_back(Arc::new((ct, r.body)));
            *self.fetched.lock().unwrap().entry(fmt).or_default() += 1;
        }
        let body = seq.bodies[idx - seq.base].clone();
        // Drop bodies both scrapers have had.
        let next = self.next.lock().unwrap();
        let counts: Vec<usize> = next
            .iter()
            .filter(|((_, f), _)| *f == fmt)
            .map(|(_, n)| *n)
            .collect();
        if counts.len() == 2 {
            let min = counts.into_iter().min().unwrap_or(0);
            while seq.base + 1 < min && seq.bodies.len() > 1 {
                seq.bodies.pop_front();
                seq.base += 1;
            }
        }
        body
    }
}

/// Serves `/metrics?who=<scraper>&fmt=<text|om>` from the proxy, one thread per connection.
fn start_proxy(proxy: Arc<Proxy>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            if proxy.stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(conn) = conn else { continue };
            let p = proxy.clone();
            std::thread::spawn(move || serve_conn(conn, &p));
        }
    });
    addr
}

fn serve_conn(mut conn: TcpStream, proxy: &Proxy) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
        }
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                .unwrap_or("")
                .to_string()
        };
        let fmt: &'static str = if param("fmt") == "om" { "om" } else { "text" };
        let body = proxy.body(&param("who"), fmt);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
            body.0,
            body.1.len()
        );
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(&body.1).is_err() {
            return;
        }
    }
}

fn scrape_config(proxy: &str, who: &str) -> String {
    let mut s =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for fmt in ["text", "om"] {
        s.push_str(&format!(
            "  - job_name: node_{fmt}\n    params:\n      who: [{who}]\n      fmt: [{fmt}]\n    \
             static_configs:\n      - targets: ['{proxy}']\n"
        ));
    }
    s
}

/// Series (as sorted label text) to its values in time order, from a range-selector query.
fn stored(addr: &str, range_s: u64, time: f64) -> BTreeMap<String, Vec<f64>> {
    let q = format!("{{job=~\"node_.*\"}}[{range_s}s]");
    let path = format!(
        "/api/v1/query?time={time}&query={}",
        form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    );
    let r = common::get(addr, &path);
    assert_eq!(r.status, 200, "{addr}: {}", r.text());
    let j = r.json();
    let mut out = BTreeMap::new();
    for s in j["data"]["result"].as_array().expect("matrix") {
        let key = labels_key(&s["metric"]);
        let vals = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| parse_value(p[1].as_str().unwrap()))
            .collect();
        out.insert(key, vals);
    }
    out
}

fn labels_key(metric: &serde_json::Value) -> String {
    let m: BTreeMap<&str, &str> = metric
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    format!("{m:?}")
}

fn parse_value(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        s => s.parse().unwrap_or_else(|_| panic!("bad value {s:?}")),
    }
}

fn series_set(addr: &str, start: f64, end: f64) -> Vec<String> {
    let path = format!(
        "/api/v1/series?match[]={}&start={start}&end={end}",
        form_urlencoded::byte_serialize(b"{job=~\"node_.*\"}").collect::<String>()
    );
    let r = common::get(addr, &path);
    assert_eq!(r.status, 200, "{addr}: {}", r.text());
    let mut v: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(labels_key)
        .collect();
    v.sort();
    v
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

#[test]
fn ignis_and_prometheus_store_the_same_node_exporter_samples() {
    let secs: u64 = std::env::var("IGNIS_NODE_EXPORTER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let ne = start_node_exporter();
    let proxy = Arc::new(Proxy {
        upstream: ne.addr.clone(),
        seqs: Mutex::new(HashMap::new()),
        next: Mutex::new(HashMap::new()),
        stop: AtomicBool::new(false),
        frozen: Mutex::new(None),
        fetched: Mutex::new(HashMap::new()),
    });
    let proxy_addr = start_proxy(proxy.clone());

    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ignis = common::start_with_config(&dir.path().join("ignis"), &[], |_| {
        scrape_config(&proxy_addr, "ignis")
    });
    let prom = common::start_prometheus(
        &dir.path().join("prom"),
        &scrape_config(&proxy_addr, "prom"),
    );
    std::thread::sleep(Duration::from_secs(secs));
    let counts = proxy.freeze();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proxy.caught_up(&counts) {
        assert!(
            Instant::now() < deadline,
            "scrapers did not catch up to {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let range = (end - start) as u64 + 120;
    let a = stored(&ignis.addr, range, end);
    let b = stored(&prom.addr, range, end);
    let sa = series_set(&ignis.addr, start - 60.0, end + 60.0);
    let sb = series_set(&prom.addr, start - 60.0, end + 60.0);
    proxy.stop.store(true, Ordering::Relaxed);
    drop(prom);
    drop(ignis);
    drop(ne);

    let fetched = proxy.fetched.lock().unwrap().clone();
    let content_types: Vec<(&str, String)> = proxy
        .seqs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(f, s)| Some((*f, s.bodies.back()?.0.clone())))
        .collect();
    eprintln!("content types served: {content_types:?}");
    eprintln!(
        "{secs}s: ignis {} series, prometheus {} series; node_exporter bodies fetched {fetched:?}",
        a.len(),
        b.len()
    );
    assert!(a.len() > 100, "ignis stored too few series: {}", a.len());

    // Same series set.
    let mut problems = Vec::new();
    for k in a.keys().filter(|k| !b.contains_key(*k)) {
        problems.push(format!("only in ignis: {k}"));
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        problems.push(format!("only in Prometheus: {k}"));
    }
    let only = |x: &[String], y: &[String]| -> Vec<String> {
        x.iter().filter(|k| !y.contains(k)).cloned().collect()
    };
    assert!(
        sa == sb,
        "/api/v1/series differs: only in ignis {:?}, only in Prometheus {:?}",
        only(&sa, &sb),
        only(&sb, &sa)
    );
    for name in [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ] {
        let has = |m: &BTreeMap<String, Vec<f64>>| {
            m.keys()
                .filter(|k| k.contains(&format!("\"__name__\": \"{name}\"")))
                .count()
        };
        assert_eq!(has(&a), 2, "ignis: {name} per job");
        assert_eq!(has(&b), 2, "Prometheus: {name} per job");
    }

    // Same values, scrape by scrape.
    let mut compared = 0usize;
    for (k, va) in &a {
        let Some(vb) = b.get(k) else { continue };
        let job_bodies = if k.contains("node_om") {
            counts["om"]
        } else {
            counts["text"]
        };
        // A series present in every body has at least all the frozen scrapes but one.
        if k.contains("\"__name__\": \"up\"")
            && (va.len() + 1 < job_bodies || vb.len() + 1 < job_bodies)
        {
            problems.push(format!(
                "{k}: {} samples in ignis, {} in Prometheus, {job_bodies} bodies",
                va.len(),
                vb.len()
            ));
        }
        if k.contains("\"__name__\": \"scrape_duration_seconds\"") {
            continue;
        }
        let n = va.len().min(vb.len());
        if let Some(i) = (0..n).find(|&i| !same(va[i], vb[i])) {
            problems.push(format!(
                "{k}: sample #{i} differs: ignis {} Prometheus {}",
                va[i], vb[i]
            ));
        }
        compared += n;
    }
    eprintln!("compared {compared} samples; {} problems", problems.len());
    assert!(
        problems.is_empty(),
        "{} differences, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        compared >= a.len() * (secs as usize / 2).max(1),
        "too few samples compared: {compared}"
    );
}
