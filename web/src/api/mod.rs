//! The Prometheus HTTP API, `/api/v1/*`: the same paths, parameters, JSON shapes, status codes
//! and error types as Prometheus, so Grafana, promtool and other clients work unchanged.
//!
//! - [`query`] — `query`, `query_range`, `query_exemplars`, `format_query`, `parse_query`
//! - [`series`] — `series`, `labels`, `label/<name>/values`
//! - [`status`] — `status/*`, `metadata`, `targets`, `rules`, `alerts`, … (static or empty)
//! - [`targets`] — `targets`, `targets/metadata`, `scrape_pools`, `metadata` (from the scrape manager)
//! - [`admin`] — `admin/tsdb/{snapshot,delete_series,clean_tombstones}`
//!
//! Blocking work (storage reads, query evaluation) runs on tokio's blocking pool.

pub mod admin;
pub mod engine;
pub mod error;
pub mod json;
pub mod params;
pub mod query;
pub mod series;
pub mod status;
pub mod targets;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::server::state::SharedState;
use error::ApiError;

/// The `/api/v1` routes (remote write/read are added by the server router).
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/query", get(query::query).post(query::query))
        .route(
            "/api/v1/query_range",
            get(query::query_range).post(query::query_range),
        )
        .route(
            "/api/v1/query_exemplars",
            get(query::query_exemplars).post(query::query_exemplars),
        )
        .route(
            "/api/v1/format_query",
            get(query::format_query).post(query::format_query),
        )
        .route(
            "/api/v1/parse_query",
            get(query::parse_query).post(query::parse_query),
        )
        .route(
            "/api/v1/series",
            get(series::series)
                .post(series::series)
                .delete(series::delete_not_allowed),
        )
        .route("/api/v1/labels", get(series::labels).post(series::labels))
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .route("/api/v1/metadata", get(targets::metadata))
        .route("/api/v1/targets", get(targets::targets))
        .route("/api/v1/targets/metadata", get(targets::targets_metadata))
        .route("/api/v1/scrape_pools", get(targets::scrape_pools))
        .route("/api/v1/rules", get(status::rules))
        .route("/api/v1/alerts", get(status::alerts))
        .route("/api/v1/alertmanagers", get(status::alertmanagers))
        .route("/api/v1/features", get(status::features))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/tsdb", get(status::tsdb))
        .route("/api/v1/status/walreplay", get(status::walreplay))
        .route(
            "/api/v1/admin/tsdb/snapshot",
            post(admin::snapshot).put(admin::snapshot),
        )
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(admin::delete_series).put(admin::delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(admin::clean_tombstones).put(admin::clean_tombstones),
        )
        .fallback(not_found)
}

async fn not_found() -> Response {
    (axum::http::StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// A 200 response with a JSON body.
pub fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A success envelope around already-encoded `data`.
pub fn success(data: &str) -> Response {
    json_response(json::success(data, &[], &[]))
}

/// Runs blocking work on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("request handler failed: {e}")))?
}
