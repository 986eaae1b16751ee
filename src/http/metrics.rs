//! `GET /metrics`: the server's metrics in Prometheus' text format.
//!
//! Served on the main port when `--metrics` is on (the default). With
//! `--metrics-token` set it needs `Authorization: Bearer <token>` (what
//! Prometheus sends with `authorization: { credentials: … }`); without one it
//! is open in development and absent in production, where operation names and
//! traffic figures are nobody else's business.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::graphql::constant_time_eq;
use super::AppState;
use crate::config::Profile;
use crate::limits;
use crate::metrics::Snapshot;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match &app.config.metrics_token {
        Some(token) => {
            let sent = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), token.as_bytes()) {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    Json(serde_json::json!({
                        "error": "/metrics needs the metrics token: Authorization: Bearer <token>"
                    })),
                )
                    .into_response();
            }
        }
        None if app.config.profile == Profile::Production => {
            return (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({
                    "error": "/metrics is off in production until a metrics token is configured"
                })),
            )
                .into_response();
        }
        None => {}
    }
    let pool = app.store.pool();
    app.metrics.collect(&Snapshot {
        limit_refusals: limits::refused_counts()
            .into_iter()
            .map(|(limit, n)| (limit.name(), n))
            .collect(),
        limit_measured_only: limits::measured_only_counts()
            .into_iter()
            .filter(|(limit, _)| limit.can_measure_only())
            .map(|(limit, n)| (limit.name(), n))
            .collect(),
        persisted_query_cache: app.registry.cache_counts(),
        apq_cache: app.registry.apq_counts(),
        pool_size: pool.size(),
        pool_idle: pool.num_idle(),
        pool_max: app.config.db_max_connections,
    });
    (
        [
            (header::CONTENT_TYPE, TEXT_FORMAT),
            (header::CACHE_CONTROL, "no-store"),
        ],
        app.metrics.render(),
    )
        .into_response()
}
