//! The web UI: a small Prometheus-style interface served from the binary.
//!
//! Every page (`/`, `/query`, `/graph`, `/targets`, `/tsdb-status`, `/status`) answers the same
//! HTML document, built once from the embedded assets in `assets/` (`index.html` with the
//! stylesheet `app.css` and the script `app.js` inlined, so the page needs no further request
//! and works under any `--web.route-prefix`). The script picks the view from the last path
//! segment and reads its state from the query string the way Prometheus's UI does:
//! `g0.expr`, `g0.tab` (`0`/`graph` or `1`/`table`), `g0.range_input` (`1h`, `30m`, `2d`),
//! `g0.end_input` (`YYYY-MM-DD HH:MM[:SS]`, UTC), `g0.moment_input`, `g0.step_input` (seconds)
//! and `g0.stacked` (`0`/`1`). The assets are also served alone under `/static/` for
//! inspection. Nothing here needs a build step: the assets are plain HTML, CSS and JavaScript.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");

/// The paths that answer the UI page.
pub const PAGES: [&str; 6] = [
    "/",
    "/query",
    "/graph",
    "/targets",
    "/tsdb-status",
    "/status",
];

/// The UI routes, mergeable into the server's router over any state.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut r = Router::new();
    for p in PAGES {
        r = r.route(p, get(page));
    }
    r.route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
}

/// The page with the stylesheet and the script inlined.
fn page_html() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        INDEX_HTML
            .replace("/*APP_CSS*/", APP_CSS)
            .replace("/*APP_JS*/", APP_JS)
    })
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page_html(),
    )
        .into_response()
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[test]
    fn page_inlines_assets() {
        let p = page_html();
        assert!(p.contains("<nav") && p.contains("api/v1/"));
        assert!(!p.contains("/*APP_JS*/") && !p.contains("/*APP_CSS*/"));
        assert!(p.contains(APP_JS.trim()) && p.contains(APP_CSS.trim()));
    }

    #[tokio::test]
    async fn every_page_answers_html() {
        for p in PAGES {
            let resp = router::<()>()
                .oneshot(Request::get(p).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{p}");
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE],
                "text/html; charset=utf-8"
            );
        }
        let resp = router::<()>()
            .oneshot(Request::get("/static/app.js").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
