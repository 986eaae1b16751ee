//! GraphiQL, served from the binary: the page and its assets are compiled in
//! (`assets/graphiql/`, vendored by `scripts/vendor-graphiql.sh`), so it works
//! offline and under a strict Content-Security-Policy; nothing is loaded from
//! a CDN.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Part of every asset URL, so a new build never meets a stale cached asset
/// (assets are cached for a year).
const ASSET_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-graphiql-3.9.0");

/// Where the page can load from: only this server. GraphiQL sets inline style
/// attributes, hence `'unsafe-inline'` for styles (never for scripts).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        (
            $name,
            $content_type,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/graphiql/",
                $name
            ))
            .as_slice(),
        )
    };
}

/// The only files served: a fixed table, so no path can reach anything else.
const ASSETS: [(&str, &str, &[u8]); 5] = [
    asset!("graphiql.min.js", "text/javascript; charset=utf-8"),
    asset!("graphiql.min.css", "text/css; charset=utf-8"),
    asset!("react.production.min.js", "text/javascript; charset=utf-8"),
    asset!(
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("init.js", "text/javascript; charset=utf-8"),
];

/// Routes serving the assets under `/graphiql/assets/{file}`.
pub fn asset_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/graphiql/assets/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such GraphiQL asset").into_response(),
    }
}

/// The GraphiQL page.
pub fn page() -> Response {
    let v = ASSET_VERSION;
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>commerce-graph · GraphiQL</title>
<link rel="stylesheet" href="/graphiql/assets/graphiql.min.css?v={v}">
<style>html, body, #graphiql {{ height: 100%; margin: 0; }}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="/graphiql/assets/react.production.min.js?v={v}"></script>
<script src="/graphiql/assets/react-dom.production.min.js?v={v}"></script>
<script src="/graphiql/assets/graphiql.min.js?v={v}"></script>
<script src="/graphiql/assets/init.js?v={v}"></script>
</body>
</html>
"#
    );
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn get_asset(path: &str) -> Response {
        asset_routes::<()>()
            .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn assets_are_served_with_their_types_and_unknown_names_are_404() {
        let js = get_asset("/graphiql/assets/graphiql.min.js").await;
        assert_eq!(js.status(), StatusCode::OK);
        assert!(js.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
        let css = get_asset("/graphiql/assets/graphiql.min.css").await;
        assert!(css.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css"));
        for missing in [
            "/graphiql/assets/nope.js",
            "/graphiql/assets/..%2FCargo.toml",
        ] {
            assert_eq!(get_asset(missing).await.status(), StatusCode::NOT_FOUND);
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let response = page();
        assert!(response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        let init = std::str::from_utf8(ASSETS[4].2).unwrap();
        assert!(!init.contains("http://") && !init.contains("https://"));
    }
}
