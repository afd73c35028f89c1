//! The `ignis` binary: a Prometheus-compatible server and its command-line tools.
//!
//! `ignis` alone (or `ignis server`) starts the server; `ignis tsdb …` holds the block tools
//! that mirror `promtool tsdb` (see [`cli`]).

mod api;
mod cli;
mod config;
mod discovery;
mod federate;
mod relabel;
mod rules;
mod template;
// Go float formatting: `%g` for the tools now, `'f'` for the HTTP API later.
#[allow(dead_code)]
mod gofmt;
// The text-format parsers are shared by backfilling (now) and scraping (later); parts of their
// API are not called by the binary yet.
mod remote;
// The scraper's API is wired into the server by the server module.
#[allow(dead_code)]
mod scrape;
mod server;
#[allow(dead_code)]
mod textparse;

use clap::Parser as _;

fn main() {
    let args = cli::Cli::parse();
    std::process::exit(cli::run(args));
}
