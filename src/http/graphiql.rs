//! GraphiQL, served from the binary: the page and its assets are compiled in
//! (`assets/graphiql/`, vendored by `scripts/vendor-graphiql.sh`), so it works
//! offline and under a strict Content-Security-Policy; nothing is loaded from
//! a CDN.
//!
//! GraphiQL also lists the registered persisted documents
//! (`GET /graphiql/persisted-documents`, read by the "Persisted documents"
//! plugin of `init.js`), so frontend teams explore the documents production
//! allows.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::store::PersistedDocumentRow;

/// Part of every asset URL, so a new build never meets a stale cached asset
/// (assets are cached for a year). The GraphiQL version must match the pin in
/// `scripts/vendor-graphiql.sh`; a unit test checks that it does.
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

/// GraphiQL's routes: its assets and the registered documents it lists.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/graphiql/persisted-documents", get(persisted_documents))
        .merge(asset_routes())
}

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

/// The registered documents, for GraphiQL's "Persisted documents" plugin:
/// `{"documents": [{id, name, type, client, body, cost}]}` sorted by name.
///
/// Served only while GraphiQL is (404 otherwise, as for an unknown path), and
/// without a token: GraphiQL being on is the gate (it is off in production
/// unless the operator turns it on), and these are the documents clients
/// ship in their own code anyway. Never cached: a registration or removal
/// shows at the next refresh.
async fn persisted_documents(State(app): State<AppState>) -> Response {
    if !app.config.graphiql {
        return super::not_found().await;
    }
    let mut rows = match app.registry.list().await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::error!(%error, "listing persisted documents for GraphiQL");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CACHE_CONTROL, "no-store")],
                Json(json!({ "error": "the registry could not be read; see the server log" })),
            )
                .into_response();
        }
    };
    rows.sort_by(|a, b| (&a.name, &a.client, &a.id).cmp(&(&b.name, &b.client, &b.id)));
    let documents: Vec<_> = rows.iter().map(listed_document).collect();
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "documents": documents })),
    )
        .into_response()
}

/// What GraphiQL shows of a document and needs to run it by id. `client` is
/// `null` for a document every client may use, else the
/// `apollographql-client-name` a request must send.
fn listed_document(row: &PersistedDocumentRow) -> serde_json::Value {
    json!({
        "id": row.id,
        "name": row.name,
        "type": row.operation_type,
        "client": (!row.client.is_empty()).then_some(&row.client),
        "body": row.body,
        "cost": row.cost,
    })
}

/// The GraphiQL page (200, `text/html; charset=utf-8`) with a strict
/// Content-Security-Policy header and `cache-control: no-cache`: the page is
/// tiny and must follow the binary's version, while the assets it names carry
/// that version in their URLs and are cached for good.
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
    use axum::body::{to_bytes, Body};
    use tower::ServiceExt;

    async fn get_asset(path: &str) -> Response {
        asset_routes::<()>()
            .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body_text(response: Response) -> String {
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn header_text(response: &Response, name: header::HeaderName) -> &str {
        response.headers()[name].to_str().unwrap()
    }

    fn asset_bytes(name: &str) -> &'static [u8] {
        ASSETS.iter().find(|(n, _, _)| *n == name).unwrap().2
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_type_and_cached_for_good() {
        for (name, content_type, bytes) in ASSETS {
            let response = get_asset(&format!("/graphiql/assets/{name}")).await;
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(header_text(&response, header::CONTENT_TYPE), content_type);
            assert_eq!(
                header_text(&response, header::CACHE_CONTROL),
                "public, max-age=31536000, immutable"
            );
            assert!(
                !bytes.is_empty(),
                "{name} is empty: run scripts/vendor-graphiql.sh"
            );
            assert_eq!(body_text(response).await.as_bytes(), bytes, "{name}");
        }
        let js = get_asset("/graphiql/assets/graphiql.min.js").await;
        assert!(header_text(&js, header::CONTENT_TYPE).starts_with("text/javascript"));
        let css = get_asset("/graphiql/assets/graphiql.min.css").await;
        assert!(header_text(&css, header::CONTENT_TYPE).starts_with("text/css"));
    }

    #[tokio::test]
    async fn unknown_names_and_path_tricks_are_404() {
        for missing in [
            "/graphiql/assets/nope.js",
            "/graphiql/assets/LICENSE-graphiql",
            "/graphiql/assets/..%2FCargo.toml",
            "/graphiql/assets/..%2F..%2FCargo.toml",
            "/graphiql/assets/%2E%2E%2F%2E%2E%2FCargo.toml",
            "/graphiql/assets/../../Cargo.toml",
            "/graphiql/assets/init.js%00",
            "/graphiql/assets/",
        ] {
            assert_eq!(
                get_asset(missing).await.status(),
                StatusCode::NOT_FOUND,
                "{missing}"
            );
        }
    }

    #[tokio::test]
    async fn the_page_is_html_under_a_strict_policy() {
        let response = page();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_text(&response, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(header_text(&response, header::CACHE_CONTROL), "no-cache");
        let csp = header_text(&response, header::CONTENT_SECURITY_POLICY);
        for directive in [
            "default-src 'self'",
            "script-src 'self';",
            "connect-src 'self'",
            "img-src 'self' data:",
            "style-src 'self' 'unsafe-inline'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} missing from {csp}");
        }
        // Scripts only from files: an inline script would need 'unsafe-inline'.
        let script_src = csp
            .split(';')
            .find(|d| d.trim().starts_with("script-src"))
            .unwrap();
        assert!(!script_src.contains("unsafe"), "{script_src}");
    }

    #[tokio::test]
    async fn the_page_loads_nothing_from_elsewhere() {
        let html = body_text(page()).await;
        let init = std::str::from_utf8(asset_bytes("init.js")).unwrap();
        for text in [html.as_str(), init] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn") && !text.contains("src=\"//"));
        }
        // No inline script: every <script> names a file.
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=").count()
        );
        // Every asset the page names exists and carries the version.
        let mut named = 0;
        for reference in html.split("/graphiql/assets/").skip(1) {
            let (name, rest) = reference.split_once('?').unwrap();
            assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{name}");
            assert!(rest.starts_with(&format!("v={ASSET_VERSION}\"")), "{name}");
            named += 1;
        }
        assert_eq!(named, 5);
    }

    #[test]
    fn the_asset_version_names_the_vendored_graphiql() {
        let script = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/vendor-graphiql.sh"
        ));
        let pinned = script
            .lines()
            .find_map(|line| line.strip_prefix("GRAPHIQL="))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap();
        assert!(
            ASSET_VERSION.ends_with(&format!("-graphiql-{pinned}")),
            "{ASSET_VERSION} vs graphiql {pinned} in scripts/vendor-graphiql.sh"
        );
    }
}
