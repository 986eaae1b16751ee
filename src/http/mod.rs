//! The HTTP transport: the axum router, its layers (request id, W3C trace
//! context, CORS, compression, tracing) and the small endpoints (health).
//! The GraphQL endpoint itself is in [`graphql`].

mod admin;
mod documents;
pub mod graphiql;
pub mod graphql;
mod metrics;
mod notices;
mod problem;
pub mod response_cache;
mod subscriptions;
mod throttle;
pub mod trace_context;

use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{extract::State, Json, Router};
use tower::util::MapResponseLayer;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::JwtKeys;
use crate::config::Config;
use crate::events::Events;
use crate::graph::{self, AppSchema};
use crate::persisted::PersistedQueryRegistry;
use crate::store::{Backend, Store};
use anyhow::Context as _;
use trace_context::{TraceContext, TRACEPARENT, TRACESTATE};

pub use problem::codes;

/// What every handler shares: one pointer to [`Shared`], so cloning it (axum
/// clones it for every extractor and middleware of every request) is one
/// atomic increment, not one per cache and channel it holds.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The server's parts, behind [`AppState`].
pub struct Shared {
    pub schema: AppSchema,
    /// `schema` without its extension: most requests run here (see
    /// `graph::FastSchema`).
    pub fast_schema: Arc<graph::FastSchema>,
    pub store: Store,
    pub jwt: Arc<JwtKeys>,
    pub config: Arc<Config>,
    pub registry: PersistedQueryRegistry,
    pub response_cache: response_cache::ResponseCache,
    /// Documents, parsed once per text (see `documents`).
    pub documents: documents::DocumentCache,
    /// What writes publish and subscriptions watch.
    pub events: Events,
    /// WebSocket connections and HTTP event streams open now (bounded by
    /// the configuration), and the signal that closes them at shutdown.
    pub connections: subscriptions::Connections,
    /// The subscriptions' executions, each shared by all its subscribers.
    pub fanout: subscriptions::Fanout,
    /// What the server counts, for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Clients' token buckets and requests in flight.
    pub rate_limiter: crate::limits::rate::RateLimiter,
    /// Whether the other replicas' notices are heard now.
    pub listening: notices::Listening,
}

impl AppState {
    /// The state of a server on `store`; on PostgreSQL it also listens for
    /// the notices of every replica's writes (see [`notices`]).
    pub async fn start(config: Config, store: Store) -> anyhow::Result<AppState> {
        let state = AppState::new(config, store)?;
        if state.store.backend() == Backend::Postgres {
            state.store.probe_health(&state.config.database_url);
            notices::follow(&state)
                .await
                .context("listening for the other replicas' notices")?;
        }
        Ok(state)
    }

    fn new(config: Config, store: Store) -> anyhow::Result<AppState> {
        let buffer = config.subscriptions.event_buffer;
        let events = match store.backend() {
            Backend::Sqlite => Events::local(buffer),
            Backend::Postgres => Events::fed_by_database(buffer),
        };
        let schema = graph::build_schema(config.limits, config.posture, events.clone());
        let fast_schema = Arc::new(graph::build_fast_schema(
            &schema,
            config.limits,
            config.posture,
            events.clone(),
        ));
        Ok(AppState(Arc::new(Shared {
            connections: subscriptions::Connections::new(config.subscriptions.max_connections),
            fanout: subscriptions::Fanout::new(buffer),
            metrics: crate::metrics::Metrics::new(),
            rate_limiter: crate::limits::rate::RateLimiter::new(config.rate_limits.clone()),
            events,
            registry: PersistedQueryRegistry::new(store.clone(), schema.clone(), config.limits),
            response_cache: response_cache::ResponseCache::new(
                config.response_cache_bytes,
                config.response_cache_hold,
                config.stale_if_error,
            ),
            documents: Default::default(),
            listening: Default::default(),
            schema,
            fast_schema,
            jwt: Arc::new(config.jwt_keys()?),
            store,
            config: Arc::new(config),
        })))
    }
}

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let cors = cors_layer(&state.config.cors_origins);
    let mut routes = Router::new();
    if state.config.metrics {
        routes = routes.route("/metrics", get(metrics::metrics));
    }
    routes
        .route(
            "/graphql",
            get(subscriptions::get_graphql_or_upgrade)
                .post(graphql::post_graphql)
                .fallback(graphql::other_method),
        )
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .merge(graphiql::routes())
        .merge(admin::routes())
        .fallback(not_found)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(throttle::remember_peer))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(axum::middleware::from_fn(trace_context::propagate))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(MapResponseLayer::new(one_vary_header))
                .layer(cors)
                .layer(CompressionLayer::new()),
        )
}

/// The span every request is logged in: its request id, and where it stands
/// in the distributed trace (set by [`trace_context::propagate`], an outer
/// layer), so its log lines can be found from the caller's trace.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let trace = request.extensions().get::<TraceContext>();
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
        trace_id = %trace.map(TraceContext::trace_id_hex).unwrap_or_default(),
        parent_span_id = %trace.map(TraceContext::parent_id_hex).unwrap_or_default(),
        span_id = %trace.map(TraceContext::span_id_hex).unwrap_or_default(),
        tracestate = trace.and_then(|t| t.tracestate.as_deref()),
        // Filled in by the GraphQL handler and its extension, when known.
        operation_name = tracing::field::Empty,
        operation_type = tracing::field::Empty,
        document_id = tracing::field::Empty,
        client_name = tracing::field::Empty,
        client_version = tracing::field::Empty,
    );
    if let Some(trace) = trace {
        crate::telemetry::continue_trace(&span, trace);
    }
    span
}

/// CORS: browsers on other origins may call the API only when configured.
/// Without configured origins no CORS headers are sent, so only same-origin
/// pages (GraphiQL) can read responses.
fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            REQUEST_ID,
            TRACEPARENT,
            TRACESTATE,
            HeaderName::from_static("apollographql-client-name"),
            HeaderName::from_static("apollographql-client-version"),
            // The headers that pass CSRF prevention must pass the preflight.
            HeaderName::from_static(graphql::CSRF_HEADERS[0]),
            HeaderName::from_static(graphql::CSRF_HEADERS[1]),
            HeaderName::from_static(graphql::CSRF_HEADERS[2]),
        ])
        .expose_headers([REQUEST_ID, TRACEPARENT])
        .max_age(std::time::Duration::from_secs(600))
        // Only `Access-Control-Allow-Origin` depends on the request (the
        // allowed methods and headers are fixed lists), and a short `Vary`
        // is one shared caches honour (see `one_vary_header`).
        .vary([header::ORIGIN])
}

/// Joins the `Vary` headers of a response into one: the GraphQL handler,
/// compression and CORS each add theirs, and some shared caches read only
/// one of several (nginx before 1.23 keeps the last), which would let a CDN
/// serve one client's variant (gzip, another media type, another client's
/// documents) to another.
fn one_vary_header<B>(mut response: axum::http::Response<B>) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    if headers.get_all(header::VARY).iter().count() > 1 {
        let mut names: Vec<String> = Vec::new();
        for value in headers.get_all(header::VARY) {
            for name in value.to_str().unwrap_or("").split(',') {
                let name = name.trim().to_ascii_lowercase();
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        if let Ok(joined) = HeaderValue::from_str(&names.join(", ")) {
            headers.insert(header::VARY, joined);
        }
    }
    response
}

/// The process is up.
async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// How long the readiness probe waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The process can serve: the database answers in time, every migration
/// this binary embeds is applied, and (PostgreSQL) the other replicas'
/// notices are heard. A 503 names the check that failed:
/// `{"status":"unavailable","failed":"migrations","reason":"…"}`.
async fn ready(State(state): State<AppState>) -> Response {
    match readiness(&state).await {
        Ok(()) => Json(serde_json::json!({
            "status": "ok",
            "checks": { "database": "ok", "migrations": "ok", "notices": "ok" },
        }))
        .into_response(),
        Err((failed, reason)) => {
            tracing::warn!(failed, %reason, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "status": "unavailable",
                    "failed": failed,
                    "reason": reason,
                })),
            )
                .into_response()
        }
    }
}

/// The first readiness check that fails, and why.
async fn readiness(state: &AppState) -> Result<(), (&'static str, String)> {
    let database = |reason: &str| ("database", reason.to_string());
    // Open connections keep reading a deleted SQLite file, but what they
    // write is lost, and a restart would start empty.
    if let Some(path) = sqlite_path(&state.config.database_url) {
        if !std::path::Path::new(path).exists() {
            return Err(database("the SQLite file is gone"));
        }
    }
    if state.store.is_down() {
        return Err(database("unreachable"));
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "the database does not answer");
            return Err(database("unreachable"));
        }
        Err(_) => return Err(database("no answer in time")),
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.missing_migrations()).await {
        Ok(Ok(missing)) if missing.is_empty() => {}
        Ok(Ok(missing)) => {
            let versions: Vec<String> = missing.iter().map(i64::to_string).collect();
            return Err((
                "migrations",
                format!("not applied: {}", versions.join(", ")),
            ));
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "reading the applied migrations");
            return Err(("migrations", "cannot read the applied migrations".into()));
        }
        Err(_) => return Err(database("no answer in time")),
    }
    if !state.listening.is_listening() {
        return Err((
            "notices",
            "not listening for the other replicas' notices".into(),
        ));
    }
    Ok(())
}

/// The file of a `sqlite://PATH[?options]` URL.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?.trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty()).then_some(path)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "not found", "endpoints": ["/graphql", "/health/live", "/health/ready", "/metrics"] })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_request_span_names_the_trace_and_both_spans() {
        let mut request = axum::http::Request::get("/graphql")
            .header(
                trace_context::TRACEPARENT,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header(trace_context::TRACESTATE, "congo=t61rcWkgMzE")
            .header(REQUEST_ID, "req-1")
            .body(())
            .unwrap();
        let context = TraceContext::from_headers(request.headers());
        let span_id = context.span_id_hex();
        request.extensions_mut().insert(context);

        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            request_span(&request).in_scope(|| tracing::info!("served"));
        });
        let line = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        for field in [
            "request_id=req-1".to_string(),
            "trace_id=4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
            "parent_span_id=00f067aa0ba902b7".to_string(),
            format!("span_id={span_id}"),
            "tracestate=\"congo=t61rcWkgMzE\"".to_string(),
        ] {
            assert!(line.contains(&field), "{field} in {line}");
        }
    }
}
