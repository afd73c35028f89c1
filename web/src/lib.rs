//! The `web` crate: everything of the `ignis` binary besides `main` — the Prometheus HTTP API,
//! remote write and read, scraping, rules and alerting, configuration, and the command-line
//! tools. A library so that integration tests use the modules as the binary does.

pub mod api;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod federate;
/// Go float formatting (re-exported from the query crate).
pub mod gofmt;
pub mod notifier;
pub mod relabel;
pub mod remote;
pub mod rules;
pub mod scrape;
pub mod server;
pub mod template;
pub mod textparse;
pub mod ui;
