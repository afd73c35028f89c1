//! Scraping: per-target loops that fetch metrics over HTTP, parse them with [`crate::textparse`]
//! and append them to the storage, as Prometheus's scrape manager does.
//!
//! - [`target`]: the scraper's view of a job ([`ScrapeJob`]) and a target ([`Target`]), and
//!   the health reported by `/api/v1/targets` ([`TargetStatus`]).
//! - [`http`]: the request (content negotiation, timeout, gzip, body size limit).
//! - [`append`]: body to samples (series cache, target labels, metric relabeling, limits,
//!   staleness, synthetic series, metadata).
//! - [`manager`]: the loops ([`ScrapeManager`]).
//! - [`config`]: `prometheus.yml` scrape configs and service discovery to jobs and targets.

pub mod append;
pub mod config;
pub mod http;
pub mod manager;
pub mod target;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

pub use manager::ScrapeManager;
pub use target::{Health, MetricMetadata, MetricRelabel, ScrapeJob, Target, TargetStatus};
