//! A quick engine benchmark over synthetic in-memory data:
//! `cargo run --release -p query --example bench -- [series] [hours]`.

use std::time::Instant;

use query::{Engine, EngineOptions};
use tsdb::querier::{MemQueryable, VecSeries};
use tsdb::Labels;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let hours: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(6);
    let scrape = 15_000i64;
    let end = hours * 3_600_000;
    let t0 = Instant::now();
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let labels = Labels::from_pairs(&[
            ("__name__", "http_requests_total".to_string()),
            ("job", format!("job-{}", i % 10)),
            ("instance", format!("host-{}", i / 10)),
            ("code", ["200", "404", "500"][i % 3].to_string()),
        ]);
        let samples = (0..=end / scrape)
            .map(|k| (k * scrape, (k * (1 + i as i64 % 7)) as f64))
            .collect();
        v.push(VecSeries { labels, samples });
    }
    let q = MemQueryable::new(v);
    println!("built {n} series x {}h in {:.2?}", hours, t0.elapsed());
    let e = Engine::new(EngineOptions::default());
    let only = std::env::var("Q").ok();
    for query in [
        "sum by (job) (rate(http_requests_total[5m]))",
        "sum(rate(http_requests_total[5m]))",
        "http_requests_total / on(instance, job, code) http_requests_total",
        "topk(5, rate(http_requests_total[5m]))",
        "avg_over_time(http_requests_total[10m])",
    ] {
        if only.as_deref().is_some_and(|o| o != query) {
            continue;
        }
        let t = Instant::now();
        let r = e.range_query(&q, query, 0, end, 60_000).unwrap();
        let npts = match &r.value {
            query::Value::Matrix(m) => m.iter().map(|s| s.floats.len()).sum::<usize>(),
            _ => 0,
        };
        println!("{:>10.2?}  {npts:>9} points  {query}", t.elapsed());
    }
}
