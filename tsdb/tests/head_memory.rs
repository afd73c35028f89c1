//! Resident memory per head series at 1M series (ignored by default; run with
//! `cargo test -p tsdb --release --test head_memory -- --ignored --nocapture`).

use tsdb::head::Head;
use tsdb::labels::Labels;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore]
fn rss_per_series_at_1m_series() {
    const N: usize = 1_000_000;
    const SAMPLES: i64 = 10;
    let before = rss_kib();
    let head = Head::in_memory();
    let mut refs = vec![0u64; N];
    for t in 0..SAMPLES {
        // one commit per 10k series, like scrapes of many targets
        for (batch, rs) in refs.chunks_mut(10_000).enumerate() {
            let mut app = head.appender();
            for (j, r) in rs.iter_mut().enumerate() {
                let i = batch * 10_000 + j;
                let labels = if t == 0 {
                    // 8 labels, typical of a node_exporter/kube scrape target
                    Labels::from_pairs(&[
                        ("__name__", format!("metric_{}", i % 500).as_str()),
                        ("job", "node"),
                        (
                            "instance",
                            &format!("10.0.{}.{}:9100", (i / 250) % 256, i % 250),
                        ),
                        ("env", if i % 2 == 0 { "prod" } else { "staging" }),
                        ("region", ["eu-west-1", "us-east-1", "ap-south-1"][i % 3]),
                        ("pod", &format!("pod-{}", i / 100)),
                        ("container", "app"),
                        ("id", &format!("{i}")),
                    ])
                } else {
                    Labels::empty()
                };
                *r = app
                    .append(
                        (t > 0).then_some(*r),
                        &labels,
                        t * 15_000,
                        i as f64 + t as f64,
                    )
                    .unwrap();
            }
            app.commit().unwrap();
        }
    }
    let after = rss_kib();
    let per = (after - before) as f64 * 1024.0 / N as f64;
    println!(
        "series={} samples/series={} rss_before={} KiB rss_after={} KiB => {:.0} bytes/series",
        head.num_series(),
        SAMPLES,
        before,
        after,
        per
    );
    assert_eq!(head.num_series(), N as u64);
}
