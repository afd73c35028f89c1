//! The web UI in a real browser: the `ignis` binary serves a copy of the Prometheus 2.42
//! fixture blocks, headless Chromium loads the graph page (expression, tab and time range from
//! the URL, no clicking) and its screenshot must show the graph's line colours spread across
//! the plot; `--dump-dom` of the table view must list the series. Without `/usr/bin/chromium`
//! the tests fail under `CI=true` and skip with a printed reason otherwise.

#[path = "server_common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The graph's first line colours (the palette at the top of `web/src/ui/assets/app.js`).
const LINE_COLOURS: [[u8; 3]; 4] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
];

const EXPR: &str = "sum by (method) (rate(http_requests_total[5m]))";

/// `Some(path)` if Chromium is there; `None` (after printing why) if the test may skip.
fn chromium() -> Option<&'static str> {
    if Path::new(CHROMIUM).exists() {
        return Some(CHROMIUM);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{CHROMIUM} is missing and CI=true: install it (apt-get install -y chromium)");
    }
    eprintln!("skipping: {CHROMIUM} is not installed (apt-get install -y chromium)");
    None
}

fn run_chromium(bin: &str, profile: &Path, extra: &[&str], url: &str) -> Output {
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=15000",
            "--window-size=1200,800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn serve_fixture(tmp: &Path) -> common::Server {
    let data = tmp.join("data");
    common::copy_dir(
        &common::shared_dir().join("fixtures/prometheus-2.42/blocks"),
        &data,
    );
    common::start(&data, &["--storage.tsdb.retention.time=100y"])
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn page_url(addr: &str, tab: &str) -> String {
    format!(
        "http://{addr}/graph?g0.expr={}&g0.tab={tab}&g0.range_input=8h&g0.end_input={}&g0.moment_input={}",
        enc(EXPR),
        enc("2024-01-01 08:00:00"),
        enc("2024-01-01 04:00:07"),
    )
}

/// Pixels within `tol` (per channel) of a line colour, how many x columns they cover, and how
/// many distinct line colours appear.
fn line_pixels(png_path: &PathBuf, tol: i32) -> (usize, usize, usize) {
    let dec = png::Decoder::new(std::fs::File::open(png_path).expect("open screenshot"));
    let mut reader = dec.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected png colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut cols = vec![false; w];
    let mut count = 0;
    let mut colours_seen = [false; LINE_COLOURS.len()];
    for y in 0..h {
        for x in 0..w {
            let p = &buf[(y * w + x) * channels..][..3];
            for (i, c) in LINE_COLOURS.iter().enumerate() {
                if (0..3).all(|k| (p[k] as i32 - c[k] as i32).abs() <= tol) {
                    count += 1;
                    cols[x] = true;
                    colours_seen[i] = true;
                }
            }
        }
    }
    let ncols = cols.iter().filter(|&&b| b).count();
    let ncolours = colours_seen.iter().filter(|&&b| b).count();
    (count, ncols, ncolours)
}

#[test]
fn graph_tab_draws_lines_in_the_screenshot() {
    let Some(bin) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let srv = serve_fixture(tmp.path());
    // The series the graph should draw, straight from the API.
    let want = common::get(
        &srv.addr,
        &format!(
            "/api/v1/query_range?query={}&start=1704067200&end=1704096000&step=115",
            enc(EXPR)
        ),
    )
    .json();
    let nseries = want["data"]["result"].as_array().map_or(0, |a| a.len());
    assert!(nseries >= 2, "fixture query gave {want}");

    let shot = tmp.path().join("graph.png");
    run_chromium(
        bin,
        &tmp.path().join("profile"),
        &[&format!("--screenshot={}", shot.display())],
        &page_url(&srv.addr, "0"),
    );
    let (count, ncols, ncolours) = line_pixels(&shot, 12);
    // Lines across the plot: the legend swatches alone cover a few columns and ~100 pixels each.
    assert!(
        ncols > 600,
        "line colours cover only {ncols} columns ({count} pixels) of {}",
        shot.display()
    );
    assert!(count > 1500, "only {count} line-coloured pixels");
    assert_eq!(
        ncolours,
        nseries.min(LINE_COLOURS.len()),
        "one colour per series"
    );
    if let Ok(dir) = std::env::var("IGNIS_UI_SCREENSHOT_DIR") {
        let _ = std::fs::copy(&shot, Path::new(&dir).join("ui_graph.png"));
    }
}

#[test]
fn empty_expression_draws_no_lines() {
    let Some(bin) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let srv = serve_fixture(tmp.path());
    let shot = tmp.path().join("empty.png");
    let url = format!("http://{}/graph?g0.tab=0&g0.range_input=8h", srv.addr);
    run_chromium(
        bin,
        &tmp.path().join("profile"),
        &[&format!("--screenshot={}", shot.display())],
        &url,
    );
    let (_, ncols, _) = line_pixels(&shot, 12);
    // The Execute button is blue but not the graph's blue; nothing else may match widely.
    assert!(ncols < 200, "line colours in {ncols} columns with no query");
}

#[test]
fn table_tab_lists_the_series() {
    let Some(bin) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let srv = serve_fixture(tmp.path());
    let want = common::get(
        &srv.addr,
        &format!("/api/v1/query?query={}&time=1704081607", enc(EXPR)),
    )
    .json();
    let result = want["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!result.is_empty(), "fixture query gave {want}");
    let out = run_chromium(
        bin,
        &tmp.path().join("profile"),
        &["--dump-dom"],
        &page_url(&srv.addr, "1"),
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("id=\"result-table\""),
        "no result table: {dom}"
    );
    for s in &result {
        let method = s["metric"]["method"].as_str().unwrap();
        let label = format!("{{method=&quot;{method}&quot;}}");
        let label2 = format!("{{method=\"{method}\"}}");
        assert!(
            dom.contains(&label) || dom.contains(&label2),
            "series {method} missing from the table: {dom}"
        );
        let value = s["value"][1].as_str().unwrap();
        assert!(dom.contains(value), "value {value} missing: {dom}");
    }
    assert!(!dom.contains("class=\"alert error\""), "error shown: {dom}");
}

#[test]
fn status_pages_render_api_data() {
    let Some(bin) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let srv = serve_fixture(tmp.path());
    for (page, marker) in [
        ("tsdb-status", "id=\"head-stats\""),
        ("status", "id=\"buildinfo\""),
        ("targets", "<h2>Targets</h2>"),
    ] {
        let out = run_chromium(
            bin,
            &tmp.path().join(format!("profile-{page}")),
            &["--dump-dom"],
            &format!("http://{}/{page}", srv.addr),
        );
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(dom.contains(marker), "{page}: no {marker}: {dom}");
        assert!(
            !dom.contains("class=\"alert error\""),
            "{page}: error shown: {dom}"
        );
    }
    // The TSDB page shows the head's numbers from the API.
    let want = common::get(&srv.addr, "/api/v1/status/tsdb").json();
    let nseries = &want["data"]["headStats"]["numSeries"];
    let out = run_chromium(
        bin,
        &tmp.path().join("profile-tsdb2"),
        &["--dump-dom"],
        &format!("http://{}/tsdb-status", srv.addr),
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(&format!("<th>Number of Series</th><td>{nseries}</td>")),
        "{dom}"
    );
    assert!(!dom.contains("NaN-NaN"), "unformatted time: {dom}");
}
