//! Tests of scraping: the append step against an in-memory storage, and whole loops against
//! local HTTP targets on 127.0.0.1.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tsdb::chunkenc::{is_stale_nan, ValueType};
use tsdb::labels::{Labels, MatchType, Matcher};

use super::append::ScrapeState;
use super::target::{Health, ScrapeJob};
use super::ScrapeManager;
use crate::server::mem_storage::MemStorage;
use crate::server::storage::{SharedStorage, Storage};

const TEXT: &str = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\",method=\"get\"} 1027\nhttp_requests_total{code=\"400\",method=\"post\"} 3\n# TYPE temp gauge\ntemp 21.5\n";
const OM: &str = "# TYPE http_requests counter\n# HELP http_requests Requests.\nhttp_requests_total{code=\"200\"} 5\n# TYPE room_temp_celsius gauge\n# UNIT room_temp_celsius celsius\nroom_temp_celsius 20.25\n# EOF\n";
const TEXT_CT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OM_CT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every stored series with its samples.
fn dump(s: &dyn Storage) -> BTreeMap<String, Vec<(i64, f64)>> {
    let q = s.queryable().querier(i64::MIN, i64::MAX).unwrap();
    let m = Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap();
    let mut out = BTreeMap::new();
    for series in q.select(true, None, &[m]) {
        let series = series.unwrap();
        let mut it = series.iter();
        let mut v = Vec::new();
        while it.next() == ValueType::Float {
            v.push(it.at());
        }
        let ls = series.labels();
        let rest = ls.without_metric_name().to_string();
        out.insert(format!("{}{rest}", ls.metric_name().unwrap_or("")), v);
    }
    out
}

fn target_labels() -> Labels {
    Labels::from_pairs(&[("instance", "t:1"), ("job", "j")])
}

fn job() -> ScrapeJob {
    ScrapeJob::new("j")
}

#[test]
fn text_scrape_appends_samples_with_target_labels_and_report() {
    let s = MemStorage::new();
    let mut st = ScrapeState::new(target_labels());
    let c = st
        .scrape(&s, &job(), Ok((TEXT_CT, TEXT.as_bytes())), 1000, 0.25)
        .unwrap();
    assert_eq!((c.total, c.added, c.series_added), (3, 3, 3));
    let d = dump(&s);
    assert_eq!(
        d[r#"http_requests_total{code="200", instance="t:1", job="j", method="get"}"#],
        vec![(1000, 1027.0)]
    );
    assert_eq!(d[r#"temp{instance="t:1", job="j"}"#], vec![(1000, 21.5)]);
    let r = |n: &str| d[&format!(r#"{n}{{instance="t:1", job="j"}}"#)].clone();
    assert_eq!(r("up"), vec![(1000, 1.0)]);
    assert_eq!(r("scrape_duration_seconds"), vec![(1000, 0.25)]);
    assert_eq!(r("scrape_samples_scraped"), vec![(1000, 3.0)]);
    assert_eq!(
        r("scrape_samples_post_metric_relabeling"),
        vec![(1000, 3.0)]
    );
    assert_eq!(r("scrape_series_added"), vec![(1000, 3.0)]);
    assert_eq!(d.len(), 8);
    // Second scrape: cached series, nothing added.
    let c = st
        .scrape(&s, &job(), Ok((TEXT_CT, TEXT.as_bytes())), 2000, 0.1)
        .unwrap();
    assert_eq!((c.total, c.added, c.series_added), (3, 3, 0));
    let d = dump(&s);
    assert_eq!(
        d[r#"temp{instance="t:1", job="j"}"#],
        vec![(1000, 21.5), (2000, 21.5)]
    );
    let m = st.take_metadata_if_changed().unwrap();
    assert_eq!(m["http_requests_total"].kind, "counter");
    assert_eq!(m["http_requests_total"].help, "Requests.");
    assert_eq!(m["temp"].kind, "gauge");
    assert!(st.take_metadata_if_changed().is_none());
}

#[test]
fn openmetrics_scrape_by_content_type_with_unit_metadata() {
    let s = MemStorage::new();
    let mut st = ScrapeState::new(target_labels());
    let c = st
        .scrape(&s, &job(), Ok((OM_CT, OM.as_bytes())), 5000, 0.0)
        .unwrap();
    assert_eq!(c.added, 2);
    let d = dump(&s);
    assert_eq!(
        d[r#"http_requests_total{code="200", instance="t:1", job="j"}"#],
        vec![(5000, 5.0)]
    );
    let m = st.take_metadata_if_changed().unwrap();
    assert_eq!(m["room_temp_celsius"].unit, "celsius");
    assert_eq!(m["http_requests"].kind, "counter");
    // The same body as text/plain is a parse error: `# EOF` is only a comment there, but the
    // OpenMetrics-only `# UNIT` line is not; either way OpenMetrics was chosen by type above.
    let s2 = MemStorage::new();
    let mut st2 = ScrapeState::new(target_labels());
    let r = st2.scrape(&s2, &job(), Ok((OM_CT, TEXT.as_bytes())), 1, 0.0);
    assert!(
        r.unwrap_err().msg.contains("EOF"),
        "OpenMetrics requires # EOF"
    );
}

#[test]
fn openmetrics_exemplars_are_parsed_but_not_stored() {
    let s = MemStorage::new();
    let mut st = ScrapeState::new(target_labels());
    let body = "# TYPE rpc counter\nrpc_total{code=\"ok\"} 17 # {trace_id=\"abc123\"} 0.5 1700000000.5\n# TYPE lat histogram\nlat_bucket{le=\"0.1\"} 3 # {trace_id=\"def\"} 0.07\nlat_bucket{le=\"+Inf\"} 4\nlat_count 4\nlat_sum 0.9\n# EOF\n";
    let c = st
        .scrape(&s, &job(), Ok((OM_CT, body.as_bytes())), 7000, 0.0)
        .unwrap();
    assert_eq!(c.total, 5);
    let d = dump(&s);
    assert_eq!(
        d[r#"rpc_total{code="ok", instance="t:1", job="j"}"#],
        vec![(7000, 17.0)],
        "the sample keeps its own value and the scrape time, not the exemplar's"
    );
    assert_eq!(
        d[r#"lat_bucket{instance="t:1", job="j", le="0.1"}"#],
        vec![(7000, 3.0)]
    );
    assert!(
        !d.keys().any(|k| k.contains("trace_id")),
        "exemplars are not stored as series: {d:?}"
    );
    // A malformed exemplar still fails the scrape (it is parsed, not skipped).
    let bad = "# TYPE rpc counter\nrpc_total 1 # {trace_id=\"x\" 0.5\n# EOF\n";
    assert!(st
        .scrape(&s, &job(), Ok((OM_CT, bad.as_bytes())), 8000, 0.0)
        .is_err());
}

#[test]
fn malformed_body_fails_the_scrape_and_stores_nothing() {
    let s = MemStorage::new();
    let mut st = ScrapeState::new(target_labels());
    let body = "good_metric 1\nbad metric{ 2\nother 3\n";
    let f = st
        .scrape(&s, &job(), Ok((TEXT_CT, body.as_bytes())), 1000, 0.0)
        .unwrap_err();
    assert!(f.msg.starts_with("line 2:"), "{}", f.msg);
    let d = dump(&s);
    assert!(!d.keys().any(|k| k.starts_with("good_metric")), "{d:?}");
    assert_eq!(d[r#"up{instance="t:1", job="j"}"#], vec![(1000, 0.0)]);
    // Invalid UTF-8 is an error too.
    let f = st
        .scrape(&s, &job(), Ok((TEXT_CT, b"a 1\nb\xff 2\n")), 2000, 0.0)
        .unwrap_err();
    assert!(f.msg.contains("UTF-8"), "{}", f.msg);
}

#[test]
fn disappearing_series_and_failed_scrapes_get_staleness_markers() {
    let s = MemStorage::new();
    let mut st = ScrapeState::new(target_labels());
    let j = job();
    st.scrape(&s, &j, Ok((TEXT_CT, b"a 1\nb 2\n")), 1000, 0.0)
        .unwrap();
    st.scrape(&s, &j, Ok((TEXT_CT, b"a 1\n")), 2000, 0.0)
        .unwrap();
    let d = dump(&s);
    let b = &d[r#"b{instance="t:1", job="j"}"#];
    assert_eq!(b.len(), 2);
    assert!(b[1].0 == 2000 && is_stale_nan(b[1].1));
    // b comes back, then the target fails: every live series is marked stale once.
    st.scrape(&s, &j, Ok((TEXT_CT, b"a 1\nb 3\n")), 3000, 0.0)
        .unwrap();
    st.scrape(&s, &j, Err("connection refused".into()), 4000, 0.0)
        .unwrap_err();
    st.scrape(&s, &j, Err("connection refused".into()), 5000, 0.0)
        .unwrap_err();
    let d = dump(&s);
    for name in ["a", "b"] {
        let v = &d[&format!(r#"{name}{{instance="t:1", job="j"}}"#)];
        let last = v.last().unwrap();
        assert!(last.0 == 4000 && is_stale_nan(last.1), "{name}: {v:?}");
    }
    assert_eq!(
        d[r#"up{instance="t:1", job="j"}"#].last(),
        Some(&(5000, 0.0))
    );
    // A parse failure after a good scrape marks the previous series stale as well.
    st.scrape(&s, &j, Ok((TEXT_CT, b"a 1\n")), 6000, 0.0)
        .unwrap();
    st.scrape(&s, &j, Ok((TEXT_CT, b"a 2\n}")), 7000, 0.0)
        .unwrap_err();
    let d = dump(&s);
    let a = &d[r#"a{instance="t:1", job="j"}"#];
    assert_eq!(a[a.len() - 2], (6000, 1.0));
    assert!(a[a.len() - 1].0 == 7000 && is_stale_nan(a[a.len() - 1].1));
    // Stopping the target marks its series and the report series stale.
    st.scrape(&s, &j, Ok((TEXT_CT, b"a 1\n")), 8000, 0.0)
        .unwrap();
    st.stop(&s, 9000);
    let d = dump(&s);
    for name in ["a", "up", "scrape_duration_seconds"] {
        let v = &d[&format!(r#"{name}{{instance="t:1", job="j"}}"#)];
        let last = v.last().unwrap();
        assert!(last.0 == 9000 && is_stale_nan(last.1), "{name}: {v:?}");
    }
}

#[test]
fn explicit_timestamps_are_honored_and_not_tracked_for_staleness() {
    let s = MemStorage::new();
    let mut st = ScrapeState::new(target_labels());
    let mut j = job();
    st.scrape(&s, &j, Ok((TEXT_CT, b"a 1 500\nb 2\n")), 1000, 0.0)
        .unwrap();
    st.scrape(&s, &j, Ok((TEXT_CT, b"")), 2000, 0.0).unwrap();
    let d = dump(&s);
    assert_eq!(d[r#"a{instance="t:1", job="j"}"#], vec![(500, 1.0)]);
    assert_eq!(d[r#"b{instance="t:1", job="j"}"#].len(), 2);
    j.honor_timestamps = false;
    st.scrape(&s, &j, Ok((TEXT_CT, b"a 3 600\n")), 3000, 0.0)
        .unwrap();
    let d = dump(&s);
    assert_eq!(
        d[r#"a{instance="t:1", job="j"}"#].last(),
        Some(&(3000, 3.0))
    );
}

#[test]
fn target_labels_conflicts_honor_labels_and_metric_relabel() {
    let body = b"m{job=\"other\",exported_job=\"x\",k=\"v\"} 1\ndropme 2\n";
    let s = MemStorage::new();
    let mut st = ScrapeState::new(target_labels());
    let mut j = job();
    j.metric_relabel = Some(Arc::new(|ls: &Labels| {
        (ls.metric_name() != Some("dropme")).then(|| ls.clone())
    }));
    let c = st.scrape(&s, &j, Ok((TEXT_CT, body)), 1000, 0.0).unwrap();
    assert_eq!((c.total, c.added), (2, 1));
    let d = dump(&s);
    assert!(
        d.contains_key(
            r#"m{exported_exported_job="other", exported_job="x", instance="t:1", job="j", k="v"}"#
        ),
        "{:?}",
        d.keys()
    );
    assert!(!d.keys().any(|k| k.starts_with("dropme")));
    assert_eq!(
        d[r#"scrape_samples_post_metric_relabeling{instance="t:1", job="j"}"#],
        vec![(1000, 1.0)]
    );
    let s = MemStorage::new();
    let mut st = ScrapeState::new(target_labels());
    let mut j = job();
    j.honor_labels = true;
    st.scrape(&s, &j, Ok((TEXT_CT, b"m{job=\"other\"} 1\n")), 1000, 0.0)
        .unwrap();
    assert!(dump(&s).contains_key(r#"m{instance="t:1", job="other"}"#));
}

#[test]
fn limits_fail_the_whole_scrape() {
    let body = b"a 1\nb 2\nc{x=\"a-long-value\"} 3\n";
    let run = |f: &dyn Fn(&mut ScrapeJob)| {
        let s = MemStorage::new();
        let mut st = ScrapeState::new(target_labels());
        let mut j = job();
        f(&mut j);
        let r = st.scrape(&s, &j, Ok((TEXT_CT, body)), 1000, 0.0);
        let stored = dump(&s)
            .keys()
            .filter(|k| k.starts_with(['a', 'b', 'c']))
            .count();
        (r.map_err(|f| f.msg), stored)
    };
    let (r, n) = run(&|j| j.sample_limit = 2);
    assert_eq!(r.unwrap_err(), "sample limit exceeded (limit 2)");
    assert_eq!(n, 0);
    let (r, n) = run(&|j| j.sample_limit = 3);
    assert!(r.is_ok());
    assert_eq!(n, 3);
    let (r, n) = run(&|j| j.label_limit = 3);
    assert!(r
        .unwrap_err()
        .starts_with("label_limit exceeded (metric: c"));
    assert_eq!(n, 0);
    let (r, _) = run(&|j| j.label_value_length_limit = 5);
    assert!(r
        .unwrap_err()
        .starts_with("label_value_length_limit exceeded"));
    let (r, _) = run(&|j| j.label_name_length_limit = 4);
    assert!(r
        .unwrap_err()
        .starts_with("label_name_length_limit exceeded"));
}

// ---- loops against local HTTP targets ----

/// What a local target serves: status, content type, body, gzip.
#[derive(Clone)]
struct Serve {
    status: u16,
    ct: &'static str,
    body: String,
    gzip: bool,
}

async fn start_target(serve: Arc<Mutex<Serve>>) -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let serve = serve.clone();
            async move {
                let s = serve.lock().clone();
                let accept = headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                assert!(accept.starts_with("application/openmetrics-text;version=1.0.0"));
                let mut body = s.body.into_bytes();
                let mut resp_headers = vec![(header::CONTENT_TYPE, s.ct.to_string())];
                if s.gzip {
                    use std::io::Write as _;
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    enc.write_all(&body).unwrap();
                    body = enc.finish().unwrap();
                    resp_headers.push((header::CONTENT_ENCODING, "gzip".to_string()));
                }
                let mut r = (StatusCode::from_u16(s.status).unwrap(), body).into_response();
                for (k, v) in resp_headers {
                    r.headers_mut().insert(k, v.parse().unwrap());
                }
                r
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

fn fast_job(name: &str) -> ScrapeJob {
    let mut j = ScrapeJob::new(name);
    j.interval = Duration::from_millis(100);
    j.timeout = Duration::from_millis(500);
    j
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 3s");
}

fn target(addr: &str) -> Labels {
    Labels::from_pairs(&[("__address__", addr)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_scrape_both_formats_and_report_health() {
    let mem = Arc::new(MemStorage::new());
    let storage: SharedStorage = mem.clone();
    let text = Arc::new(Mutex::new(Serve {
        status: 200,
        ct: TEXT_CT,
        body: TEXT.to_string(),
        gzip: true,
    }));
    let om = Arc::new(Mutex::new(Serve {
        status: 200,
        ct: OM_CT,
        body: OM.to_string(),
        gzip: false,
    }));
    let (a1, _t1) = start_target(text.clone()).await;
    let (a2, _t2) = start_target(om.clone()).await;
    let m = ScrapeManager::new(storage);
    m.apply_config(&[fast_job("j")]);
    m.set_targets("j", vec![target(&a1), target(&a2)]);
    wait_for(|| {
        let ts = m.targets();
        ts.len() == 2 && ts.iter().all(|t| t.health == Health::Up)
    })
    .await;
    let d = dump(&*mem);
    assert!(d.contains_key(&format!(r#"temp{{instance="{a1}", job="j"}}"#)));
    assert!(d.contains_key(&format!(r#"room_temp_celsius{{instance="{a2}", job="j"}}"#)));
    let t = m.targets();
    assert!(t
        .iter()
        .all(|t| t.last_error.is_empty() && t.last_scrape.is_some()));
    assert!(t
        .iter()
        .any(|t| t.scrape_url == format!("http://{a1}/metrics")));
    let md = m.metadata();
    assert!(md.iter().any(|(_, md)| md
        .get("room_temp_celsius")
        .is_some_and(|m| m.unit == "celsius")));

    // A malformed body on one target: down with a clear error; the other stays up.
    om.lock().body = "room_temp 1\nroom_temp{ 2\n# EOF\n".to_string();
    wait_for(|| m.targets().iter().any(|t| t.health == Health::Down)).await;
    let t = m.targets();
    let bad = t.iter().find(|t| t.health == Health::Down).unwrap();
    assert!(bad.last_error.starts_with("line 2:"), "{}", bad.last_error);
    assert!(bad.scrape_url.contains(&a2));
    // Over the body size limit: also a failed scrape.
    let mut j = fast_job("j");
    j.body_size_limit = 50;
    m.apply_config(&[j]);
    wait_for(|| {
        m.targets()
            .iter()
            .any(|t| t.scrape_url.contains(&a1) && t.last_error.contains("body size limit"))
    })
    .await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_going_away_gets_up_zero_and_staleness_markers() {
    let mem = Arc::new(MemStorage::new());
    let storage: SharedStorage = mem.clone();
    let serve = Arc::new(Mutex::new(Serve {
        status: 200,
        ct: TEXT_CT,
        body: "a 1\n".to_string(),
        gzip: false,
    }));
    let (addr, server) = start_target(serve.clone()).await;
    let m = ScrapeManager::new(storage);
    m.apply_config(&[fast_job("j")]);
    m.set_targets("j", vec![target(&addr)]);
    wait_for(|| m.targets().iter().all(|t| t.health == Health::Up)).await;
    // The target stops answering: up 0, `a` stale.
    server.abort();
    let _ = server.await;
    wait_for(|| m.targets().iter().all(|t| t.health == Health::Down)).await;
    let key = format!(r#"a{{instance="{addr}", job="j"}}"#);
    let up_key = format!(r#"up{{instance="{addr}", job="j"}}"#);
    let d = dump(&*mem);
    assert!(is_stale_nan(d[&key].last().unwrap().1), "{:?}", d[&key]);
    assert_eq!(d[&up_key].last().unwrap().1, 0.0);
    assert!(!m.targets()[0].last_error.is_empty());

    // A target removed from discovery: every series including `up` gets a marker.
    let (addr2, _s2) = start_target(serve.clone()).await;
    m.set_targets("j", vec![target(&addr2)]);
    wait_for(|| m.targets().iter().all(|t| t.health == Health::Up)).await;
    m.set_targets("j", vec![]);
    m.wait_stopped().await;
    assert!(m.targets().is_empty());
    let d = dump(&*mem);
    for n in ["a", "up", "scrape_samples_scraped"] {
        let k = format!(r#"{n}{{instance="{addr2}", job="j"}}"#);
        assert!(is_stale_nan(d[&k].last().unwrap().1), "{k}: {:?}", d[&k]);
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_yml_static_targets_with_relabeling() {
    let mem = Arc::new(MemStorage::new());
    let storage: SharedStorage = mem.clone();
    let serve = Arc::new(Mutex::new(Serve {
        status: 200,
        ct: TEXT_CT,
        body: "keep_me 1\ngo_drop_me 2\n".to_string(),
        gzip: false,
    }));
    let (addr, _srv) = start_target(serve).await;
    let yml = format!(
        "scrape_configs:\n- job_name: node\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\n  static_configs:\n  - targets: ['{addr}']\n    labels: {{env: test}}\n  relabel_configs:\n  - {{target_label: team, replacement: infra}}\n  metric_relabel_configs:\n  - {{source_labels: [__name__], regex: 'go_.*', action: drop}}\n"
    );
    let cfg = crate::config::Config::parse(&yml, "prometheus.yml").unwrap();
    let m = ScrapeManager::new(storage);
    m.apply_prometheus_config(&cfg, std::path::Path::new("."));
    wait_for(|| m.targets().iter().any(|t| t.health == Health::Up)).await;
    let t = &m.targets()[0];
    assert_eq!(
        t.labels,
        Labels::from_pairs(&[
            ("env", "test"),
            ("instance", &addr),
            ("job", "node"),
            ("team", "infra")
        ])
    );
    assert_eq!(t.discovered_labels.get("team"), None);
    assert_eq!(t.discovered_labels.get("__address__"), Some(addr.as_str()));
    assert_eq!(t.scrape_interval, Duration::from_millis(100));
    let d = dump(&*mem);
    let key = format!(r#"keep_me{{env="test", instance="{addr}", job="node", team="infra"}}"#);
    assert!(d.contains_key(&key), "{:?}", d.keys());
    assert!(!d.keys().any(|k| k.starts_with("go_drop_me")));
    // Reloading the same file keeps the loop; removing the job stops it with markers.
    m.apply_prometheus_config(&cfg, std::path::Path::new("."));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(m.targets().len(), 1);
    let empty = crate::config::Config::parse("scrape_configs: []\n", "p.yml").unwrap();
    m.apply_prometheus_config(&empty, std::path::Path::new("."));
    m.wait_stopped().await;
    assert!(m.targets().is_empty());
    let d = dump(&*mem);
    assert!(is_stale_nan(d[&key].last().unwrap().1));
    m.stop().await;
}

/// One logged append: reference passed in, labels, reference returned.
type AppendLog = Mutex<Vec<(Option<u64>, Labels, Option<u64>)>>;

/// A storage wrapper that logs every append (reference passed in, labels, reference returned)
/// and, with `use_refs` false, hides references from the inner storage (every append goes by
/// labels, the path before the scrape cache kept references).
struct RefSpy<S> {
    inner: Arc<S>,
    use_refs: bool,
    record: bool,
    log: AppendLog,
}

struct SpyAppender<'a> {
    inner: Box<dyn crate::server::storage::StorageAppender + 'a>,
    use_refs: bool,
    log: Option<&'a AppendLog>,
}

impl crate::server::storage::StorageAppender for SpyAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) -> tsdb::Result<()> {
        self.append_ref(None, labels, t, v).map(|_| ())
    }
    fn append_ref(
        &mut self,
        series_ref: Option<u64>,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> tsdb::Result<Option<u64>> {
        let got = if self.use_refs {
            self.inner.append_ref(series_ref, labels, t, v)?
        } else {
            self.inner.append(labels, t, v)?;
            None
        };
        if let Some(log) = self.log {
            log.lock().push((series_ref, labels.clone(), got));
        }
        Ok(got)
    }
    fn commit(self: Box<Self>) -> tsdb::Result<()> {
        self.inner.commit()
    }
    fn rollback(self: Box<Self>) -> tsdb::Result<()> {
        self.inner.rollback()
    }
}

impl<S: Storage> Storage for RefSpy<S> {
    fn queryable(&self) -> &dyn tsdb::querier::Queryable {
        self.inner.queryable()
    }
    fn appender(&self) -> Box<dyn crate::server::storage::StorageAppender + '_> {
        Box::new(SpyAppender {
            inner: self.inner.appender(),
            use_refs: self.use_refs,
            log: self.record.then_some(&self.log),
        })
    }
    fn snapshot(&self, d: &std::path::Path, skip: bool) -> tsdb::Result<()> {
        self.inner.snapshot(d, skip)
    }
    fn delete(&self, mint: i64, maxt: i64, m: &[Matcher]) -> tsdb::Result<()> {
        self.inner.delete(mint, maxt, m)
    }
    fn clean_tombstones(&self) -> tsdb::Result<()> {
        self.inner.clean_tombstones()
    }
    fn head_stats(&self) -> crate::server::storage::HeadStats {
        self.inner.head_stats()
    }
}

fn db_storage(dir: &std::path::Path) -> Arc<crate::server::db_storage::DbStorage> {
    let db = tsdb::db::Db::open(dir, tsdb::db::Options::default()).unwrap();
    crate::server::db_storage::DbStorage::new(db)
}

/// The scrape cache passes the storage's series reference on every later append (samples,
/// staleness markers, report series), each only for the labels it was returned for; after
/// the head truncated the series away the cached references fall back to the labels, so the
/// samples land in the right series, and the new references are cached.
#[test]
fn cached_series_refs_are_reused_and_survive_head_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let s = RefSpy {
        inner: db_storage(dir.path()),
        use_refs: true,
        record: true,
        log: Mutex::new(Vec::new()),
    };
    let mut st = ScrapeState::new(target_labels());
    let scrape = |st: &mut ScrapeState, body: &str, t: i64| {
        st.scrape(&s, &job(), Ok((TEXT_CT, body.as_bytes())), t, 0.5)
            .unwrap();
        std::mem::take(&mut *s.log.lock())
    };
    // Every append returns a reference; the first scrape has none to pass.
    let first = scrape(&mut st, "a 1\nb 2\nc 3\n", 1000);
    assert_eq!(first.len(), 8);
    assert!(first
        .iter()
        .all(|(given, _, got)| given.is_none() && got.is_some()));
    let refs: std::collections::HashMap<Labels, u64> = first
        .iter()
        .map(|(_, ls, got)| (ls.clone(), got.unwrap()))
        .collect();
    // The second scrape (c gone: a staleness marker) passes each series' own reference.
    let second = scrape(&mut st, "b 20\na 10\n", 2000);
    assert_eq!(second.len(), 8);
    for (given, ls, got) in &second {
        assert_eq!(*given, Some(refs[ls]), "{ls}");
        assert_eq!(*got, Some(refs[ls]), "{ls}");
    }
    // The head drops every series (all samples are older than 3000): the cached references
    // are gone from it.
    let head = s.inner.db().unwrap().head();
    head.truncate(3000).unwrap();
    assert_eq!(head.num_series(), 0);
    // Series created meanwhile take new references.
    let mut app = s.inner.appender();
    let other = Labels::from_pairs(&[("__name__", "other"), ("x", "y")]);
    app.append(&other, 3000, 42.0).unwrap();
    app.commit().unwrap();
    let third = scrape(&mut st, "a 100\nb 200\n", 4000);
    let mut new_refs = std::collections::HashMap::new();
    for (given, ls, got) in &third {
        assert_eq!(*given, Some(refs[ls]), "{ls}");
        let got = got.unwrap();
        assert_ne!(got, refs[ls], "{ls}: a new series after truncation");
        new_refs.insert(ls.clone(), got);
    }
    // The new references are cached and used next time.
    let fourth = scrape(&mut st, "a 1000\n", 5000);
    for (given, ls, _) in &fourth {
        assert_eq!(*given, Some(new_refs[ls]), "{ls}");
    }
    let d = dump(&s);
    let a = &d[r#"a{instance="t:1", job="j"}"#];
    assert_eq!(a, &vec![(4000, 100.0), (5000, 1000.0)]);
    let b = &d[r#"b{instance="t:1", job="j"}"#];
    assert_eq!(b[0], (4000, 200.0));
    assert!(is_stale_nan(b[1].1) && b[1].0 == 5000);
    assert_eq!(d[r#"other{x="y"}"#], vec![(3000, 42.0)]);
    assert_eq!(
        d[r#"scrape_samples_scraped{instance="t:1", job="j"}"#],
        vec![(4000, 2.0), (5000, 1.0)]
    );
    assert!(!d.contains_key(r#"c{instance="t:1", job="j"}"#));
}

/// A storage that accepts and drops everything, to time the scrape path alone.
struct NullStorage(tsdb::querier::MemQueryable);

struct NullAppender;

impl crate::server::storage::StorageAppender for NullAppender {
    fn append(&mut self, labels: &Labels, _t: i64, v: f64) -> tsdb::Result<()> {
        std::hint::black_box((labels, v));
        Ok(())
    }
    fn commit(self: Box<Self>) -> tsdb::Result<()> {
        Ok(())
    }
    fn rollback(self: Box<Self>) -> tsdb::Result<()> {
        Ok(())
    }
}

impl Storage for NullStorage {
    fn queryable(&self) -> &dyn tsdb::querier::Queryable {
        &self.0
    }
    fn appender(&self) -> Box<dyn crate::server::storage::StorageAppender + '_> {
        Box::new(NullAppender)
    }
    fn snapshot(&self, _: &std::path::Path, _: bool) -> tsdb::Result<()> {
        Ok(())
    }
    fn delete(&self, _: i64, _: i64, _: &[Matcher]) -> tsdb::Result<()> {
        Ok(())
    }
    fn clean_tombstones(&self) -> tsdb::Result<()> {
        Ok(())
    }
    fn head_stats(&self) -> crate::server::storage::HeadStats {
        Default::default()
    }
}

/// A node_exporter-like body: `families` families of 10 series with 2 labels each.
fn bench_body(families: usize, om: bool) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for f in 0..families {
        let _ = writeln!(
            s,
            "# HELP fam{f}_seconds_total Seconds spent in family {f}."
        );
        let _ = writeln!(
            s,
            "# TYPE fam{f}_seconds{} counter",
            if om { "" } else { "_total" }
        );
        for i in 0..10 {
            let _ = writeln!(
                s,
                "fam{f}_seconds_total{{cpu=\"{i}\",mode=\"idle\"}} {}.{}",
                1000 + f * 7 + i,
                i * 13
            );
        }
    }
    if om {
        s.push_str("# EOF\n");
    }
    s
}

/// Parse and full-scrape rates on one core: `cargo test -p web --release --bin ignis --
/// --ignored --nocapture scrape_parse_rate`.
#[test]
#[ignore = "measurement, not a check"]
fn scrape_parse_rate() {
    use crate::textparse::{Entry, OpenMetricsParser, PromTextParser};
    let storage = NullStorage(Default::default());
    for (name, om, ct) in [
        ("text 0.0.4", false, TEXT_CT),
        ("OpenMetrics 1.0", true, OM_CT),
    ] {
        let body = bench_body(1000, om);
        let samples = 10_000u64;
        let rounds = 50u32;
        // Parse only (labels iterated, as on a cache miss).
        let t0 = std::time::Instant::now();
        for _ in 0..rounds {
            let mut n = 0u64;
            if om {
                let mut p = OpenMetricsParser::new(&body);
                while let Some(e) = p.next_entry().unwrap() {
                    if let Entry::Series(s) = e {
                        n += p.labels().count() as u64 + s.value as u64 % 2;
                    }
                }
            } else {
                let mut p = PromTextParser::new(&body);
                while let Some(e) = p.next_entry().unwrap() {
                    if let Entry::Series(s) = e {
                        n += p.labels().count() as u64 + s.value as u64 % 2;
                    }
                }
            }
            std::hint::black_box(n);
        }
        let parse = (samples * u64::from(rounds)) as f64 / t0.elapsed().as_secs_f64();
        // Steady-state scrape: parse, cache hit, append, staleness check, report.
        let mut st = ScrapeState::new(target_labels());
        let j = job();
        st.scrape(&storage, &j, Ok((ct, body.as_bytes())), 0, 0.0)
            .unwrap();
        let t0 = std::time::Instant::now();
        for r in 1..=rounds {
            st.scrape(
                &storage,
                &j,
                Ok((ct, body.as_bytes())),
                i64::from(r) * 15_000,
                0.0,
            )
            .unwrap();
        }
        let scrape = (samples * u64::from(rounds)) as f64 / t0.elapsed().as_secs_f64();
        // First scrape of a new target: every series a cache miss.
        let t0 = std::time::Instant::now();
        for _ in 0..5 {
            let mut st = ScrapeState::new(target_labels());
            st.scrape(&storage, &j, Ok((ct, body.as_bytes())), 0, 0.0)
                .unwrap();
        }
        let cold = (samples * 5) as f64 / t0.elapsed().as_secs_f64();
        println!(
            "{name}: parse {:.2} M samples/s, scrape (cached) {:.2} M samples/s, first scrape (uncached) {:.2} M samples/s",
            parse / 1e6,
            scrape / 1e6,
            cold / 1e6
        );
        // Steady-state scrape into the on-disk database (head + WAL), appending by cached
        // series reference and, as before references were cached, by labels.
        for use_refs in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let db = RefSpy {
                inner: db_storage(dir.path()),
                use_refs,
                record: false,
                log: Mutex::new(Vec::new()),
            };
            let mut st = ScrapeState::new(target_labels());
            st.scrape(&db, &j, Ok((ct, body.as_bytes())), 0, 0.0)
                .unwrap();
            let t0 = std::time::Instant::now();
            for r in 1..=rounds {
                st.scrape(
                    &db,
                    &j,
                    Ok((ct, body.as_bytes())),
                    i64::from(r) * 15_000,
                    0.0,
                )
                .unwrap();
            }
            let rate = (samples * u64::from(rounds)) as f64 / t0.elapsed().as_secs_f64();
            println!(
                "{name}: scrape (cached) into Db {}: {:.2} M samples/s",
                if use_refs {
                    "by series ref"
                } else {
                    "by labels"
                },
                rate / 1e6
            );
        }
    }
}
