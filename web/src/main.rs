//! The `ignis` binary: a Prometheus-compatible server and its command-line tools.

fn main() -> anyhow::Result<()> {
    Ok(())
}
