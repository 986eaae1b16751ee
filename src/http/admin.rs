//! The operators' HTTP endpoint for the persisted-document registry, for
//! deploy pipelines (the CLI's `persisted` commands over HTTP). Every call
//! needs a bearer token with the `admin` scope.
//!
//! - `GET /admin/persisted-queries`: the registered documents;
//! - `POST /admin/persisted-queries[?client=NAME]`: import a manifest (the
//!   body; Apollo or Relay format), all or nothing;
//! - `DELETE /admin/persisted-queries/{id}[?client=NAME]`: remove one.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::cli::document_json;
use crate::persisted::{manifest, ImportError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/persisted-queries",
            get(list).post(import).fallback(method_not_allowed),
        )
        .route(
            "/admin/persisted-queries/{id}",
            delete(remove).fallback(method_not_allowed),
        )
}

#[derive(Deserialize)]
struct ClientParam {
    client: Option<String>,
}

/// An error of this endpoint: `{"error": {"code", "message"}}`, and details.
fn failure(status: StatusCode, code: &str, message: &str, details: serde_json::Value) -> Response {
    let mut body = json!({ "error": { "code": code, "message": message } });
    if !details.is_null() {
        body["error"]["details"] = details;
    }
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// The refusal for a caller without the admin scope, if it has none.
fn refuse_unless_admin(app: &AppState, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = token else {
        return Some(failure(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "the registry needs a bearer token with the admin scope",
            serde_json::Value::Null,
        ));
    };
    match app.jwt.verify_header(token) {
        Ok(viewer) if viewer.admin => None,
        Ok(_) => Some(failure(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "the registry needs the admin scope",
            serde_json::Value::Null,
        )),
        Err(e) => Some(failure(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            &e.to_string(),
            serde_json::Value::Null,
        )),
    }
}

fn internal(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "persisted-query registry");
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_SERVER_ERROR",
        "the registry could not be read or written; see the server log",
        serde_json::Value::Null,
    )
}

async fn list(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refuse_unless_admin(&app, &headers) {
        return refused;
    }
    match app.registry.list().await {
        Ok(rows) => {
            let documents: Vec<_> = rows.iter().map(document_json).collect();
            (
                [(header::CACHE_CONTROL, "no-store")],
                Json(json!({ "documents": documents })),
            )
                .into_response()
        }
        Err(e) => internal(e),
    }
}

async fn import(
    State(app): State<AppState>,
    Query(params): Query<ClientParam>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(refused) = refuse_unless_admin(&app, &headers) {
        return refused;
    }
    let documents = match manifest::parse(&body) {
        Ok(documents) => documents,
        Err(e) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "INVALID_MANIFEST",
                &e.to_string(),
                serde_json::Value::Null,
            )
        }
    };
    match app
        .registry
        .import(&documents, params.client.as_deref())
        .await
    {
        Ok(rows) => {
            let documents: Vec<_> = rows.iter().map(document_json).collect();
            (
                [(header::CACHE_CONTROL, "no-store")],
                Json(json!({ "registered": documents.len(), "documents": documents })),
            )
                .into_response()
        }
        Err(ImportError::Invalid(rejected)) => failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_DOCUMENTS",
            &format!(
                "{} of {} document(s) are invalid; nothing was registered",
                rejected.len(),
                documents.len()
            ),
            json!(rejected),
        ),
        Err(ImportError::Store(e)) => internal(e),
    }
}

async fn remove(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<ClientParam>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refuse_unless_admin(&app, &headers) {
        return refused;
    }
    match app.registry.remove(&id, params.client.as_deref()).await {
        Ok(0) => failure(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("no registered document has the id {id:?}"),
            serde_json::Value::Null,
        ),
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(e),
    }
}

async fn method_not_allowed() -> Response {
    failure(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "use GET or POST on /admin/persisted-queries, DELETE on /admin/persisted-queries/{id}",
        serde_json::Value::Null,
    )
}
