//! `/graphql` over HTTP, following the GraphQL-over-HTTP specification:
//! POST with `application/json`, GET with query parameters (queries only),
//! `application/graphql-response+json` (with its status codes) or
//! `application/json` (always 200 for a GraphQL result) by `Accept`.
//! Browsers asking for HTML get GraphiQL.

use std::collections::BTreeMap;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{ServerError, Value, Variables};
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::problem::{codes, Problem};
use super::response_cache::{Cached, ResponseCache};
use super::{graphiql, AppState, REQUEST_ID};
use crate::auth::Viewer;
use crate::graph::{self, RouterAccess};
use crate::persisted;

/// The header the federation router sends the shared secret in.
const ROUTER_SECRET: &str = "x-router-secret";
/// The header a federation router asks for an inline trace with (`ftv1`).
const INCLUDE_TRACE: &str = "apollo-federation-include-trace";
/// The request headers an answer depends on, for caches in front: the router's
/// trace request changes the body too (`extensions.ftv1`).
const VARY_ON: &str = "accept, authorization, apollo-federation-include-trace";

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// The response media type the client accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MediaType {
    /// `application/graphql-response+json`: request errors get 4xx statuses.
    GraphqlResponse,
    /// `application/json`: every GraphQL result is 200.
    Json,
}

impl MediaType {
    fn content_type(self) -> &'static str {
        match self {
            MediaType::GraphqlResponse => GRAPHQL_RESPONSE_JSON,
            MediaType::Json => JSON,
        }
    }

    /// Reads `Accept`. No header (or an empty one) means `application/json`,
    /// what legacy clients expect; a header naming neither JSON type nor a
    /// wildcard is not acceptable.
    fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Some(MediaType::Json);
        };
        if accept.trim().is_empty() {
            return Some(MediaType::Json);
        }
        let mut json = false;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            if refused {
                continue;
            }
            match essence.as_str() {
                "application/graphql-response+json" => return Some(MediaType::GraphqlResponse),
                "application/json" | "application/*" | "*/*" => json = true,
                _ => {}
            }
        }
        json.then_some(MediaType::Json)
    }
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The parameters of a GraphQL request, from a JSON body or a query string.
/// Unknown keys are ignored, as the GraphQL-over-HTTP spec asks.
#[derive(Deserialize, Debug, Default)]
pub(super) struct Params {
    pub query: Option<String>,
    #[serde(rename = "operationName")]
    pub operation_name: Option<String>,
    pub variables: Option<serde_json::Value>,
    pub extensions: Option<serde_json::Value>,
    /// A persisted document's id (the GraphQL-over-HTTP proposal).
    #[serde(rename = "documentId")]
    pub document_id: Option<String>,
    /// A persisted document's id (Relay).
    pub doc_id: Option<String>,
}

/// The same parameters in a GET query string, where `variables` and
/// `extensions` are JSON text.
#[derive(Deserialize, Debug, Default)]
struct QueryString {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
    #[serde(rename = "documentId")]
    document_id: Option<String>,
    doc_id: Option<String>,
}

pub(super) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub async fn post_graphql(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let request_id = request_id(&headers);
    let Some(media) = MediaType::negotiate(&headers) else {
        return not_acceptable().into_response(&request_id, JSON);
    };
    match read_post(&app, &headers, body).await {
        Ok(params) => execute(&app, &headers, params, Method::POST, media, &request_id).await,
        Err(problem) => problem.into_response(&request_id, media.content_type()),
    }
}

pub async fn get_graphql(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let request_id = request_id(&headers);
    let raw = raw.unwrap_or_default();
    if app.config.graphiql && accepts_html(&headers) && !raw.contains("query=") {
        return graphiql::page();
    }
    let Some(media) = MediaType::negotiate(&headers) else {
        return not_acceptable().into_response(&request_id, JSON);
    };
    match read_get(&raw) {
        Ok(params) => execute(&app, &headers, params, Method::GET, media, &request_id).await,
        Err(problem) => problem.into_response(&request_id, media.content_type()),
    }
}

fn not_acceptable() -> Problem {
    Problem::new(
        StatusCode::NOT_ACCEPTABLE,
        codes::NOT_ACCEPTABLE,
        "responses are application/graphql-response+json or application/json; \
         the Accept header allows neither",
    )
}

async fn read_post(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Params, Problem> {
    // Only JSON bodies: a form-encoded or text/plain POST is a "simple"
    // request a foreign page can send without a CORS preflight (CSRF).
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "POST bodies must be application/json, got {:?}",
                if content_type.is_empty() {
                    "nothing"
                } else {
                    content_type
                }
            ),
        ));
    }
    let limit = app.config.max_body_bytes;
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // A body that exceeds the limit while streaming is cut off here, whatever
    // Content-Length claimed.
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_REQUEST,
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    match value {
        serde_json::Value::Object(_) => serde_json::from_value(value).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                codes::BAD_REQUEST,
                format!("the request body is not a GraphQL request: {e}"),
            )
        }),
        serde_json::Value::Array(_) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            codes::BATCHING_NOT_SUPPORTED,
            "batched requests (a JSON array) are not accepted; send one operation per request",
        )),
        _ => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_REQUEST,
            "the request body must be a JSON object with a `query`",
        )),
    }
}

fn read_get(raw: &str) -> Result<Params, Problem> {
    let bad = |message: String| Problem::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message);
    let query: QueryString = serde_urlencoded::from_str(raw)
        .map_err(|e| bad(format!("the query string is malformed: {e}")))?;
    let json = |name: &str, text: Option<String>| -> Result<Option<serde_json::Value>, Problem> {
        text.filter(|t| !t.is_empty())
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| bad(format!("the `{name}` parameter is not valid JSON: {e}")))
    };
    Ok(Params {
        query: query.query,
        operation_name: query.operation_name,
        variables: json("variables", query.variables)?,
        extensions: json("extensions", query.extensions)?,
        document_id: query.document_id,
        doc_id: query.doc_id,
    })
}

/// The header a client names itself in (Apollo's convention); registered
/// documents may be scoped to one client.
pub(super) const CLIENT_NAME: &str = "apollographql-client-name";

/// The document the request runs: its `query`, or the persisted document its
/// APQ hash, `documentId` or `doc_id` names, under the configured mode.
/// Refusals are never cached (`no-store`): the same id may work once the
/// client sends the body, or once the document is registered.
pub(super) async fn resolve_document(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<persisted::Resolved, Problem> {
    let bad = |message: &str| Problem::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message);
    let apq =
        match params
            .extensions
            .as_ref()
            .and_then(|e| e.get("persistedQuery"))
        {
            None => None,
            Some(persisted) => {
                let version = persisted.get("version").and_then(|v| v.as_i64());
                let hash = persisted.get("sha256Hash").and_then(|v| v.as_str());
                match (version, hash) {
                    (Some(version), Some(hash)) => Some((version, hash.to_string())),
                    _ => return Err(bad(
                        "`extensions.persistedQuery` needs a numeric `version` and a `sha256Hash`",
                    )
                    .no_store()),
                }
            }
        };
    let document_id = match (&params.document_id, &params.doc_id) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad("`documentId` and `doc_id` name different documents").no_store())
        }
        (a, b) => a.clone().or_else(|| b.clone()),
    };
    let reference = persisted::DocumentRef { apq, document_id };
    let client = headers
        .get(CLIENT_NAME)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let query = params.query.clone().filter(|q| !q.trim().is_empty());
    match persisted::resolve(
        &app.registry,
        app.config.persisted_queries,
        query,
        &reference,
        client,
    )
    .await
    {
        Ok(resolved) => Ok(resolved),
        Err(persisted::Resolution::Refused(refused))
            if refused.code == persisted::code::BAD_REQUEST =>
        {
            // Not a well-formed GraphQL-over-HTTP request at all.
            Err(
                Problem::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, refused.message)
                    .no_store(),
            )
        }
        Err(persisted::Resolution::Refused(refused)) => {
            // A request error, like a document that does not validate: 200
            // under application/json, 400 under the GraphQL response type
            // (the caller sets the media type; see `Problem::request_error`).
            Err(Problem::request_error(refused.code, refused.message).no_store())
        }
        Err(persisted::Resolution::Store(error)) => {
            tracing::error!(%error, "persisted-query registry lookup");
            Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                graph::code::INTERNAL_SERVER_ERROR,
                "Internal server error",
            )
            .no_store())
        }
    }
}

/// Reads the bearer token, if any. A token that is present but invalid is an
/// error: never silently anonymous.
fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<Viewer, Problem> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Viewer::anonymous());
    };
    let value = value.to_str().unwrap_or("");
    app.jwt.verify_header(value).map_err(|e| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHENTICATED,
            e.to_string(),
        )
        .with_header(header::WWW_AUTHENTICATE, "Bearer")
    })
}

/// Whether the request carries the router secret (when one is configured).
pub(super) fn router_access(app: &AppState, headers: &HeaderMap) -> RouterAccess {
    let Some(secret) = &app.config.router_secret else {
        return RouterAccess::Open;
    };
    let sent = headers
        .get(ROUTER_SECRET)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if constant_time_eq(sent, secret.as_bytes()) {
        RouterAccess::Verified
    } else {
        RouterAccess::Missing
    }
}

/// Compares without returning early, so the time taken does not tell how
/// much of a guessed secret was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        difference |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}

/// Which kind of operation the request would run, if its document parses
/// and the operation can be selected (otherwise execution reports why).
fn operation_type(query: &str, operation_name: Option<&str>) -> Option<OperationType> {
    let document = async_graphql::parser::parse_query(query).ok()?;
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        _ => None,
    }
}

#[derive(Serialize)]
struct Body_<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: &'a Vec<ServerError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extensions: &'a BTreeMap<String, Value>,
}

async fn execute(
    app: &AppState,
    headers: &HeaderMap,
    params: Params,
    method: Method,
    media: MediaType,
    request_id: &str,
) -> Response {
    let content_type = media.content_type();
    let viewer = match authenticate(app, headers) {
        Ok(viewer) => viewer,
        Err(problem) => return problem.into_response(request_id, content_type),
    };
    let resolved = match resolve_document(app, headers, &params).await {
        Ok(resolved) => resolved,
        Err(problem) => return problem.into_response(request_id, content_type),
    };
    let query = resolved.query.to_string();
    let variables_json = params.variables.clone().unwrap_or(serde_json::Value::Null);
    let variables = match params.variables {
        None | Some(serde_json::Value::Null) => Variables::default(),
        Some(value @ serde_json::Value::Object(_)) => Variables::from_json(value),
        Some(_) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                codes::BAD_REQUEST,
                "`variables` must be a JSON object",
            )
            .into_response(request_id, content_type)
        }
    };
    if method == Method::GET {
        let ty = operation_type(&query, params.operation_name.as_deref());
        if matches!(
            ty,
            Some(OperationType::Mutation | OperationType::Subscription)
        ) {
            return Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                codes::METHOD_NOT_ALLOWED,
                "only queries may be sent with GET; send mutations with POST",
            )
            .with_header(header::ALLOW, "POST")
            .into_response(request_id, content_type);
        }
    }

    let router = router_access(app, headers);
    let inline_trace = headers.get(INCLUDE_TRACE).is_some_and(|v| v == "ftv1");
    // Anonymous answers may come from (and go to) the response cache, but
    // not a traced one: its trace is of this run, and for the router only.
    let cache_key = (!viewer.is_authenticated()
        && !inline_trace
        && app.config.response_cache_bytes > 0)
        .then(|| {
            ResponseCache::key(
                &query,
                params.operation_name.as_deref(),
                &variables_json,
                params
                    .extensions
                    .as_ref()
                    .unwrap_or(&serde_json::Value::Null),
                // The router may be answered what others are refused.
                &format!("{content_type};{router:?}"),
            )
        });
    if let Some(hit) = cache_key.and_then(|key| app.response_cache.get(&key)) {
        return cached_response(app, headers, &hit);
    }

    let entity_keys = representations(&variables_json);
    let mut request = async_graphql::Request::new(query).variables(variables);
    if let Some(registered) = resolved.registered {
        request = request.data(graph::Vetted {
            cost: registered.cost,
        });
    }
    if let Some(name) = params.operation_name.filter(|n| !n.is_empty()) {
        request = request.operation_name(name);
    }
    if let Some(serde_json::Value::Object(extensions)) = params.extensions {
        for (key, value) in extensions {
            if let Ok(value) = Value::from_json(value) {
                request.extensions.insert(key, value);
            }
        }
    }
    let viewer_is_authenticated = viewer.is_authenticated();
    let (request, scope) = graph::RequestScope::new(
        request,
        &app.store,
        viewer,
        router,
        &app.config.posture,
        inline_trace,
    );
    let mut response = scope.execute(&app.schema, request).await;
    for error in &mut response.errors {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("requestId", request_id);
    }

    // A request refused before execution (parse, validation, operation
    // selection) has no `data` entry at all, per the spec.
    // A request cancelled at its deadline has no result to give: a server
    // failure (504, as routers answer a timed-out subgraph), without `data`.
    let timed_out = scope.timed_out();
    let executed = scope.started.get() && !timed_out;
    let status = if timed_out {
        StatusCode::GATEWAY_TIMEOUT
    } else if !executed && media == MediaType::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let policy = scope.cache_policy.get().map(|mut policy| {
        if let Some(cap) = app.config.max_cache_age {
            policy.max_age = policy.max_age.min(cap);
        }
        policy
    });
    let cache_control = cache_control(
        policy,
        executed && response.errors.is_empty(),
        viewer_is_authenticated,
    );
    if router == RouterAccess::Verified && cache_control.is_cacheable() {
        add_router_cache_tags(&mut response.extensions, &scope.store, &entity_keys);
    }
    let body = Body_ {
        errors: &response.errors,
        data: executed.then_some(&response.data),
        extensions: &response.extensions,
    };
    let bytes = match serde_json::to_vec(&body) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "cannot serialize a GraphQL response");
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                graph::code::INTERNAL_SERVER_ERROR,
                "Internal server error",
            )
            .into_response(request_id, content_type);
        }
    };
    let etag = cache_control.is_cacheable().then(|| etag(&bytes));
    let not_modified = etag
        .as_deref()
        .is_some_and(|tag| if_none_match(headers, tag));
    let body_bytes = Bytes::from(bytes);
    let mut http = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (status, body_bytes.clone()).into_response()
    };
    let out = http.headers_mut();
    if !not_modified {
        out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Ok(value) = HeaderValue::from_str(&cache_control.to_string()) {
        out.insert(header::CACHE_CONTROL, value);
    }
    if let Some(tag) = etag.as_deref().and_then(|t| HeaderValue::from_str(t).ok()) {
        out.insert(header::ETAG, tag);
    }
    let tags = scope.store.tags();
    let written = tags.tags_written();
    if !written.is_empty() {
        let purged = app.response_cache.purge(&written);
        tracing::debug!(tags = ?written, purged, "purged cached answers");
        if let Ok(value) = HeaderValue::from_str(&written.join(" ")) {
            // What a CDN in front should purge too.
            out.insert(PURGE_KEYS, value);
        }
    }
    if let (CacheControl::Public(max_age), Some(tag)) = (cache_control, etag) {
        let read = tags.tags_read();
        if let Ok(value) = HeaderValue::from_str(&read.join(" ")) {
            out.insert(SURROGATE_KEY, value);
        }
        if let (Some(key), false) = (cache_key, not_modified) {
            app.response_cache.insert(
                key,
                Cached {
                    body: body_bytes,
                    content_type,
                    max_age,
                    etag: tag,
                    tags: read,
                    stored: std::time::Instant::now(),
                },
            );
        }
    }
    out.insert(header::VARY, HeaderValue::from_static(VARY_ON));
    if app.config.expose_sql_statements {
        out.insert(
            "x-sql-statements",
            HeaderValue::from(scope.store.statements()),
        );
    }
    http
}

/// The cache tags of a cacheable answer (Fastly's and others' header for
/// purging by tag).
const SURROGATE_KEY: &str = "surrogate-key";
/// The tags a write changed: what a CDN in front should purge.
const PURGE_KEYS: &str = "x-purge-surrogate-keys";

/// An answer from the response cache: no parsing, no database.
fn cached_response(app: &AppState, headers: &HeaderMap, hit: &Cached) -> Response {
    let not_modified = if_none_match(headers, &hit.etag);
    let mut http = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, hit.body.clone()).into_response()
    };
    let out = http.headers_mut();
    if !not_modified {
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(hit.content_type),
        );
    }
    let cache_control = CacheControl::Public(hit.max_age).to_string();
    for (name, value) in [
        (header::CACHE_CONTROL, cache_control),
        (header::ETAG, hit.etag.clone()),
        (header::AGE, hit.age().to_string()),
        (
            header::HeaderName::from_static(SURROGATE_KEY),
            hit.tags.join(" "),
        ),
        (header::VARY, VARY_ON.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.insert(name, value);
        }
    }
    if app.config.expose_sql_statements {
        out.insert("x-sql-statements", HeaderValue::from(0));
    }
    http
}

/// `(typename, id)` of each representation an `_entities` request sends:
/// the variable routers name `representations`, else the first list of
/// objects with a `__typename`.
fn representations(variables: &serde_json::Value) -> Vec<(String, String)> {
    let is_representations = |v: &serde_json::Value| {
        v.as_array()
            .is_some_and(|items| items.first().is_some_and(|i| i.get("__typename").is_some()))
    };
    let Some(serde_json::Value::Array(list)) = variables.get("representations").or_else(|| {
        variables
            .as_object()
            .and_then(|o| o.values().find(|v| is_representations(v)))
    }) else {
        return Vec::new();
    };
    list.iter()
        .map(|r| {
            let typename = r.get("__typename").and_then(|t| t.as_str()).unwrap_or("");
            let id = match r.get("id") {
                Some(serde_json::Value::String(id)) => id.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            (typename.to_string(), id)
        })
        .collect()
}

/// The cache tags in the form Apollo Router's response cache reads from a
/// subgraph: `apolloCacheTags` for the root fields (what the answer read)
/// and, for `_entities`, `apolloEntityCacheTags` (one list per
/// representation, in order), so the router can keep entities and purge
/// them by the same tags the server and CDNs use.
fn add_router_cache_tags(
    extensions: &mut BTreeMap<String, Value>,
    store: &crate::store::Store,
    entities: &[(String, String)],
) {
    use crate::store::tags;
    let read: Vec<Value> = store
        .tags()
        .tags_read()
        .into_iter()
        .map(Value::from)
        .collect();
    if entities.is_empty() {
        extensions.insert("apolloCacheTags".into(), Value::List(read));
        return;
    }
    let per_entity = entities
        .iter()
        .map(|(typename, id)| {
            let id: Option<i64> = id.parse().ok();
            let names = match (typename.as_str(), id) {
                ("Product", Some(id)) => {
                    vec![tags::product(id), tags::inventory(id), tags::reviews(id)]
                }
                ("Customer", Some(id)) => vec![tags::customer(id)],
                _ => Vec::new(),
            };
            Value::List(names.into_iter().map(Value::from).collect())
        })
        .collect();
    extensions.insert("apolloEntityCacheTags".into(), Value::List(per_entity));
}

/// The `Cache-Control` of a GraphQL response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CacheControl {
    Public(u32),
    Private(u32),
    NoStore,
}

impl CacheControl {
    fn is_cacheable(self) -> bool {
        !matches!(self, CacheControl::NoStore)
    }
}

impl std::fmt::Display for CacheControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheControl::Public(age) => write!(f, "public, max-age={age}"),
            CacheControl::Private(age) => write!(f, "private, max-age={age}"),
            CacheControl::NoStore => f.write_str("no-store"),
        }
    }
}

/// From the document's policy to the header: an answer with errors (or
/// refused) is never stored, nor one with personal data, and an answer to
/// an authenticated request is at most private (its token may change what
/// it sees).
fn cache_control(
    policy: Option<graph::cache_policy::Policy>,
    clean: bool,
    authenticated: bool,
) -> CacheControl {
    match policy {
        Some(policy) if clean && policy.is_cacheable() => {
            if authenticated {
                CacheControl::Private(policy.max_age)
            } else {
                CacheControl::Public(policy.max_age)
            }
        }
        _ => CacheControl::NoStore,
    }
}

/// A strong validator of the response body.
fn etag(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let hex = format!("{:x}", Sha256::digest(body));
    format!("\"{}\"", &hex[..32])
}

/// Whether `If-None-Match` names `tag` (or is `*`); weak tags compare by
/// their opaque part, as RFC 9110 asks for `If-None-Match`.
fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_is_never_public_for_errors_personal_data_or_tokens() {
        use graph::cache_policy::Policy;
        let catalog = Some(Policy {
            max_age: 60,
            personal: false,
        });
        let personal = Some(Policy {
            max_age: 0,
            personal: true,
        });
        assert_eq!(
            cache_control(catalog, true, false),
            CacheControl::Public(60)
        );
        assert_eq!(
            cache_control(catalog, true, true),
            CacheControl::Private(60)
        );
        assert_eq!(cache_control(catalog, false, false), CacheControl::NoStore);
        assert_eq!(cache_control(personal, true, false), CacheControl::NoStore);
        assert_eq!(cache_control(None, true, false), CacheControl::NoStore);
        assert_eq!(CacheControl::Public(5).to_string(), "public, max-age=5");
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(if_none_match(&headers, "\"b\""));
        assert!(if_none_match(&headers, "\"a\""));
        assert!(!if_none_match(&headers, "\"c\""));
        assert!(!if_none_match(&HeaderMap::new(), "\"a\""));
    }

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn accept_header_picks_the_media_type() {
        assert_eq!(
            MediaType::negotiate(&HeaderMap::new()),
            Some(MediaType::Json)
        );
        assert_eq!(
            MediaType::negotiate(&accept(
                "application/graphql-response+json, application/json;q=0.9"
            )),
            Some(MediaType::GraphqlResponse)
        );
        assert_eq!(MediaType::negotiate(&accept("*/*")), Some(MediaType::Json));
        assert_eq!(MediaType::negotiate(&accept("text/html")), None);
        assert_eq!(
            MediaType::negotiate(&accept(
                "application/graphql-response+json;q=0, application/json"
            )),
            Some(MediaType::Json)
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"router-secret", b"router-secret"));
        assert!(!constant_time_eq(b"router-secre", b"router-secret"));
        assert!(!constant_time_eq(b"router-secret!", b"router-secret"));
        assert!(!constant_time_eq(b"", b"router-secret"));
    }

    #[test]
    fn operation_type_follows_the_selected_operation() {
        let doc = "query A { a } mutation B { b }";
        assert_eq!(
            operation_type(doc, Some("B")),
            Some(OperationType::Mutation)
        );
        assert_eq!(operation_type(doc, Some("A")), Some(OperationType::Query));
        assert_eq!(operation_type(doc, None), None);
        assert_eq!(operation_type("{ a }", None), Some(OperationType::Query));
        assert_eq!(operation_type("{", None), None);
    }
}
