//! Many local scrape targets in one process, for the scrape benchmark
//! (`bench/scrape_targets.sh`): target `i` listens on `127.0.0.1:<base_port + i>` and serves
//! `/metrics` with `series` series, in OpenMetrics 1.0 when the `Accept` header asks for
//! `application/openmetrics-text`, else in the text format 0.0.4.
//!
//! ```sh
//! cargo run --release -p web --example scrape_bench_targets -- <base_port> <targets> <series>
//! ```
//!
//! The series are 10 metric families (counters and gauges alternately) of `series / 10` series
//! each, labelled `path` and `code`; counter values grow with every scrape of the target, gauges
//! change. Every 60 s it prints to stderr how many scrapes it served in each format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// One target's state.
struct Target {
    id: usize,
    series: usize,
    scrapes: AtomicU64,
    stats: Arc<Stats>,
}

/// Scrapes served, by format.
#[derive(Default)]
struct Stats {
    text: AtomicU64,
    openmetrics: AtomicU64,
    bytes: AtomicU64,
}

const FAMILIES: usize = 10;

fn body(t: &Target, openmetrics: bool) -> String {
    let n = t.scrapes.fetch_add(1, Ordering::Relaxed) + 1;
    let per = t.series.div_ceil(FAMILIES);
    let mut out = String::with_capacity(t.series * 64 + 1024);
    let mut left = t.series;
    for f in 0..FAMILIES {
        if left == 0 {
            break;
        }
        let counter = f % 2 == 0;
        let base = if counter {
            format!("bench_requests_{f}")
        } else {
            format!("bench_inflight_{f}")
        };
        let name = if counter {
            format!("{base}_total")
        } else {
            base.clone()
        };
        let family = if counter && openmetrics { &base } else { &name };
        let kind = if counter { "counter" } else { "gauge" };
        let _ = writeln!(out, "# HELP {family} Synthetic benchmark series {f}.");
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for s in 0..per.min(left) {
            let value = if counter {
                (n * (s as u64 + 1)) as f64
            } else {
                ((n as usize * 7 + s * 13 + t.id) % 1000) as f64 / 4.0
            };
            let _ = writeln!(
                out,
                "{name}{{path=\"/api/v{}/item/{s}\",code=\"{}\",target=\"t{}\"}} {value}",
                s % 3,
                200 + (s % 5),
                t.id
            );
        }
        left -= per.min(left);
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}

async fn metrics(State(t): State<Arc<Target>>, headers: HeaderMap) -> impl IntoResponse {
    let om = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let b = body(&t, om);
    t.stats.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
    let ct = if om {
        t.stats.openmetrics.fetch_add(1, Ordering::Relaxed);
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        t.stats.text.fetch_add(1, Ordering::Relaxed);
        "text/plain; version=0.0.4; charset=utf-8"
    };
    ([(header::CONTENT_TYPE, ct)], b)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: usize| -> anyhow::Result<usize> {
        match args.get(i) {
            Some(s) => s
                .parse()
                .map_err(|e| anyhow::anyhow!("argument {i} ({s:?}): {e}")),
            None => Ok(default),
        }
    };
    let (base, targets, series) = (arg(1, 20000)?, arg(2, 1000)?, arg(3, 1000)?);
    if base + targets > 65536 {
        anyhow::bail!("ports {base}..{} do not fit", base + targets);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stats = Arc::new(Stats::default());
        for id in 0..targets {
            let addr = format!("127.0.0.1:{}", base + id);
            let l = tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|e| anyhow::anyhow!("listen on {addr}: {e}"))?;
            let t = Arc::new(Target {
                id,
                series,
                scrapes: AtomicU64::new(0),
                stats: stats.clone(),
            });
            let app = Router::new().route("/metrics", get(metrics)).with_state(t);
            tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            });
        }
        eprintln!(
            "serving {targets} targets x {series} series on 127.0.0.1:{base}..{}",
            base + targets - 1
        );
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            eprintln!(
                "scrapes served: text {} openmetrics {} bytes {}",
                stats.text.load(Ordering::Relaxed),
                stats.openmetrics.load(Ordering::Relaxed),
                stats.bytes.load(Ordering::Relaxed)
            );
        }
    })
}
