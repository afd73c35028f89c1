//! The HTTP routes of the server: the API, remote write/read, federation, own metrics and the
//! lifecycle endpoints (`/-/healthy`, `/-/ready`, `/-/reload`, `/-/quit`), with a middleware
//! that counts every request in `prometheus_http_requests_total`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use super::state::SharedState;

/// The complete router over shared state.
pub fn build(state: SharedState) -> Router {
    let prefix = state.args.route_prefix.trim_end_matches('/').to_string();
    let routes = crate::api::routes()
        .merge(crate::remote::routes())
        .route("/federate", get(crate::federate::federate))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/-/reload", any(reload))
        .route("/-/quit", any(quit))
        .merge(crate::ui::router());
    let routes = if prefix.is_empty() {
        routes
    } else {
        Router::new().nest(&prefix, routes)
    };
    routes
        .layer(middleware::from_fn_with_state(state.clone(), ready_gate))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::webconfig::require_auth,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Paths served while the storage is still starting; everything else answers 503 until ready.
fn served_when_not_ready(path: &str) -> bool {
    path.ends_with("/-/healthy")
        || path.ends_with("/-/ready")
        || path.ends_with("/-/quit")
        || path.ends_with("/-/reload")
        || path.ends_with("/metrics")
        || path.contains("/api/v1/status/")
}

async fn ready_gate(State(st): State<SharedState>, req: Request, next: Next) -> Response {
    if st.storage.is_ready() || served_when_not_ready(req.uri().path()) {
        next.run(req).await
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
    }
}

async fn track(State(st): State<SharedState>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().replace("{name}", ":name"))
        .unwrap_or_else(|| "other".to_string());
    let t0 = Instant::now();
    let resp = next.run(req).await;
    st.metrics
        .observe_http(&handler, resp.status().as_u16(), t0.elapsed());
    resp
}

fn text(code: StatusCode, body: &'static str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn healthy() -> Response {
    text(StatusCode::OK, "Prometheus Server is Healthy.\n")
}

async fn ready(State(st): State<SharedState>) -> Response {
    if st.storage.is_ready() {
        text(StatusCode::OK, "Prometheus Server is Ready.\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
    }
}

async fn metrics(State(st): State<SharedState>) -> Response {
    let st2 = st.clone();
    let head = tokio::task::spawn_blocking(move || st2.storage.head_stats())
        .await
        .unwrap_or_default();
    let mut body = st.metrics.render(&head, st.storage.is_ready());
    body.push_str(&st.rules.notifier().render_metrics());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn reload(State(st): State<SharedState>, method: Method) -> Response {
    if method != Method::POST && method != Method::PUT {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only POST or PUT requests allowed",
        );
    }
    if !st.args.enable_lifecycle {
        return text(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.");
    }
    match st.reload_config() {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
    }
}

async fn quit(State(st): State<SharedState>, method: Method) -> Response {
    if method != Method::POST && method != Method::PUT {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only POST or PUT requests allowed",
        );
    }
    if !st.args.enable_lifecycle {
        return text(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.");
    }
    st.request_shutdown();
    text(StatusCode::OK, "Requesting termination... Goodbye!")
}
