//! `/graphql` over HTTP, following the GraphQL-over-HTTP specification:
//! POST with `application/json`, GET with query parameters (queries only),
//! `application/graphql-response+json` (with its status codes) or
//! `application/json` (always 200 for a GraphQL result) by `Accept`.
//! Browsers asking for HTML get GraphiQL.
//!
//! Everything a request carries is checked here before GraphQL sees it: the
//! media types, CSRF (a request a foreign page could send without a CORS
//! preflight is refused), the shape of the parameters, and the size and
//! nesting of `variables`, measured on the JSON text before it is parsed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{ServerError, Value, Variables};
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::problem::{codes, Problem, Refused};
use super::response_cache::{Cached, CachedHeaders, ResponseCache};
use super::subscriptions::over_http;
use super::{graphiql, throttle, AppState, REQUEST_ID};
use crate::auth::Viewer;
use crate::graph::{self, RouterAccess};
use crate::limits::rate::{Admission, RATE_LIMITED};
use crate::metrics::{self, Outcome};
use crate::persisted;

/// The header the federation router sends the shared secret in.
const ROUTER_SECRET: &str = "x-router-secret";
/// The header a federation router asks for an inline trace with (`ftv1`).
const INCLUDE_TRACE: &str = "apollo-federation-include-trace";
/// The request headers an answer depends on, for caches in front: the media
/// type, the token, the client name (registered documents may be scoped to
/// one client), and the router's trace request, which changes the body too
/// (`extensions.ftv1`). `accept-encoding` is named here so that compression
/// adds no second `Vary` header (see `http::one_vary_header`).
const VARY_ON: &str = "accept, accept-encoding, authorization, apollographql-client-name, \
                       apollo-federation-include-trace";

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// The response media type the client accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum MediaType {
    /// `application/graphql-response+json`: request errors get 4xx statuses.
    GraphqlResponse,
    /// `application/json`: every GraphQL result is 200.
    Json,
}

impl MediaType {
    pub(super) fn content_type(self) -> &'static str {
        match self {
            MediaType::GraphqlResponse => GRAPHQL_RESPONSE_JSON,
            MediaType::Json => JSON,
        }
    }

    /// Reads `Accept`. No header (or an empty one) means `application/json`,
    /// what legacy clients expect; a header naming neither JSON type nor a
    /// wildcard is not acceptable. Each type gets the quality of the most
    /// specific range that matches it; on a tie, the type the client named
    /// wins, and between two wildcards `application/json` does (a legacy
    /// client sending `*/*` expects it).
    pub(super) fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Some(MediaType::Json);
        };
        if accept.trim().is_empty() {
            return Some(MediaType::Json);
        }
        // (specificity, quality in thousandths) of the range that applies.
        let mut graphql: Option<(u8, u16)> = None;
        let mut json: Option<(u8, u16)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let quality = parts
                .find_map(|p| {
                    let (key, value) = p.split_once('=')?;
                    key.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| value.trim().parse::<f32>().unwrap_or(1.0))
                })
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            let quality = (quality * 1000.0).round() as u16;
            let (for_graphql, for_json) = match essence.as_str() {
                "application/graphql-response+json" => (Some(2), None),
                "application/json" => (None, Some(2)),
                "application/*" => (Some(1), Some(1)),
                "*/*" => (Some(0), Some(0)),
                _ => (None, None),
            };
            for (slot, specificity) in [(&mut graphql, for_graphql), (&mut json, for_json)] {
                if let Some(specificity) = specificity {
                    if slot.is_none_or(|current| (specificity, quality) > current) {
                        *slot = Some((specificity, quality));
                    }
                }
            }
        }
        let graphql = graphql.filter(|(_, q)| *q > 0);
        let json = json.filter(|(_, q)| *q > 0);
        match (graphql, json) {
            (None, None) => None,
            (Some(_), None) => Some(MediaType::GraphqlResponse),
            (None, Some(_)) => Some(MediaType::Json),
            (Some((gs, gq)), Some((js, jq))) => {
                let graphql_wins = gq > jq || (gq == jq && (gs > js || (gs == js && gs == 2)));
                Some(if graphql_wins {
                    MediaType::GraphqlResponse
                } else {
                    MediaType::Json
                })
            }
        }
    }
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The parameters of a GraphQL request, from a JSON body or a query string.
/// Unknown keys are ignored, as the GraphQL-over-HTTP spec asks. `variables`
/// and `extensions` stay JSON text until they are measured and checked.
#[derive(Deserialize, Debug, Default)]
pub(super) struct Params {
    pub query: Option<String>,
    #[serde(rename = "operationName")]
    pub operation_name: Option<String>,
    pub variables: Option<Box<RawValue>>,
    pub extensions: Option<Box<RawValue>>,
    /// A persisted document's id (the GraphQL-over-HTTP proposal).
    #[serde(rename = "documentId")]
    pub document_id: Option<String>,
    /// A persisted document's id (Relay).
    pub doc_id: Option<String>,
}

/// Headers a browser sends cross-origin only after a CORS preflight, which
/// lets the server's CORS policy refuse the request before it is sent:
/// `x-graphql-csrf` (ours), and Apollo's two, which Apollo's clients send.
pub const CSRF_HEADERS: [&str; 3] = [
    "x-graphql-csrf",
    "apollo-require-preflight",
    "x-apollo-operation-name",
];

/// The content types a browser may send cross-origin without a preflight.
const SIMPLE_CONTENT_TYPES: [&str; 3] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
];

pub(super) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn bad_request(message: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
}

pub async fn post_graphql(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let response = post(app.clone(), headers, body).await;
    observe(&app, started, &response);
    response
}

async fn post(app: AppState, headers: HeaderMap, body: Body) -> Response {
    let request_id = request_id(&headers);
    // A client that takes results as an event stream (Apollo's multipart
    // protocol, Server-Sent Events) gets its subscriptions that way.
    let stream = over_http::Transport::negotiate(&headers);
    let media = MediaType::negotiate(&headers);
    if media.is_none() && stream.is_none() {
        return not_acceptable().into_response(&request_id, JSON);
    }
    let content_type = media.unwrap_or(MediaType::Json).content_type();
    if app.config.csrf_prevention && !preflighted(&headers) {
        return csrf_prevented().into_response(&request_id, content_type);
    }
    // Before the body is read: a client's uploads count as in flight.
    let caller = match admit(&app, &headers, &request_id, content_type) {
        Ok(caller) => caller,
        Err(refusal) => return *refusal,
    };
    let params = match read_post(&app, &headers, body).await {
        Ok(params) => params,
        Err(problem) => return problem.into_response(&request_id, content_type),
    };
    match (stream, media) {
        (Some(transport), media) => {
            over_http::execute(
                &app,
                &headers,
                params,
                transport,
                media,
                &request_id,
                caller,
            )
            .await
        }
        (None, Some(media)) => {
            execute(
                &app,
                &headers,
                params,
                Method::POST,
                media,
                &request_id,
                caller,
            )
            .await
        }
        (None, None) => not_acceptable().into_response(&request_id, JSON),
    }
}

/// Who is asking, and their admission under the rate limits.
pub(super) struct Caller {
    pub viewer: Viewer,
    pub admission: Option<Admission>,
}

/// Reads the token (refusing a bad one) and lets the client in, unless it
/// is over its rate limit; names the client in the request's span.
fn admit(
    app: &AppState,
    headers: &HeaderMap,
    request_id: &str,
    content_type: &'static str,
) -> Result<Caller, Box<Response>> {
    let viewer = authenticate(app, headers)
        .map_err(|problem| Box::new(problem.into_response(request_id, content_type)))?;
    let span = tracing::Span::current();
    for (field, header) in [
        ("client_name", CLIENT_NAME),
        ("client_version", CLIENT_VERSION),
    ] {
        if let Some(value) = headers.get(header).and_then(|v| v.to_str().ok()) {
            span.record(field, value);
        }
    }
    let admission = throttle::admit(app, headers, &viewer).map_err(|(tier, throttled)| {
        Box::new(throttle::refusal(
            app,
            &tier,
            &throttled,
            request_id,
            content_type,
        ))
    })?;
    Ok(Caller { viewer, admission })
}

pub async fn get_graphql(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let started = Instant::now();
    let response = get(app.clone(), headers, raw).await;
    observe(&app, started, &response);
    response
}

async fn get(app: AppState, headers: HeaderMap, raw: Option<String>) -> Response {
    let request_id = request_id(&headers);
    let raw = raw.unwrap_or_default();
    if app.config.graphiql && accepts_html(&headers) && !raw.contains("query=") {
        return graphiql::page();
    }
    let Some(media) = MediaType::negotiate(&headers) else {
        return not_acceptable().into_response(&request_id, JSON);
    };
    if app.config.csrf_prevention && !preflighted(&headers) {
        return csrf_prevented().into_response(&request_id, media.content_type());
    }
    let caller = match admit(&app, &headers, &request_id, media.content_type()) {
        Ok(caller) => caller,
        Err(refusal) => return *refusal,
    };
    match read_get(&raw) {
        Ok(params) => {
            execute(
                &app,
                &headers,
                params,
                Method::GET,
                media,
                &request_id,
                caller,
            )
            .await
        }
        Err(problem) => problem.into_response(&request_id, media.content_type()),
    }
}

/// `/graphql` with a method other than GET and POST (CORS preflights are
/// answered by the CORS layer before they get here).
pub async fn other_method(headers: HeaderMap) -> Response {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "send GraphQL requests with POST, or queries with GET",
    )
    .with_header(header::ALLOW, "GET, POST")
    .into_response(&request_id(&headers), JSON)
}

/// What a GraphQL request came to, left in its response's extensions for
/// [`observe`].
#[derive(Clone)]
struct Observed {
    /// The registered document's name, or [`metrics::UNREGISTERED`].
    operation: String,
    outcome: Outcome,
    statements: usize,
    codes: Vec<String>,
}

/// Counts a GraphQL request in the metrics: what `execute` left in the
/// response, or the code of a refusal before it (GraphiQL's page is no
/// GraphQL request and is not counted).
fn observe(app: &AppState, started: Instant, response: &Response) {
    let seconds = started.elapsed().as_secs_f64();
    if let Some(observed) = response.extensions().get::<Observed>() {
        let codes: Vec<&str> = observed.codes.iter().map(String::as_str).collect();
        app.metrics.request(
            &observed.operation,
            observed.outcome,
            seconds,
            observed.statements,
            &codes,
        );
    } else if let Some(Refused(code)) = response.extensions().get::<Refused>() {
        let outcome = if *code == RATE_LIMITED {
            Outcome::RateLimited
        } else {
            Outcome::Refused
        };
        app.metrics
            .request(metrics::UNREGISTERED, outcome, seconds, 0, &[code]);
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

/// Whether a browser could only have sent this request after a CORS
/// preflight: it has a content type that is not one of the three "simple"
/// ones (Apollo Client sends `application/json` even on GET), or a non-empty
/// [`CSRF_HEADERS`] header. Apollo Server's `preventCsrf` rule, with our
/// header added, applied to GET and POST alike: a GET without a content type
/// needs the header, as in Apollo Server (the header does not stop a CDN
/// from caching the response; only browsers preflight).
fn preflighted(headers: &HeaderMap) -> bool {
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        // Bytes, not text: a browser may put non-ASCII bytes in a parameter
        // of a simple content type.
        let essence = content_type
            .as_bytes()
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let simple = SIMPLE_CONTENT_TYPES
            .iter()
            .any(|simple| essence.eq_ignore_ascii_case(simple.as_bytes()));
        if !simple {
            return true;
        }
    }
    CSRF_HEADERS
        .iter()
        .any(|name| headers.get(*name).is_some_and(|value| !value.is_empty()))
}

fn csrf_prevented() -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        codes::CSRF_PREVENTED,
        format!(
            "this request was refused as a possible cross-site request forgery: send \
             `content-type: application/json` or a non-empty {} header",
            CSRF_HEADERS.join(" or ")
        ),
    )
}

async fn read_post(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Params, Problem> {
    // Only JSON bodies, CSRF header or not: a form or text body is no
    // request format of GraphQL over HTTP, and refusing it keeps a forged
    // form harmless even with CSRF prevention turned off.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let unsupported = |message: String| {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::UNSUPPORTED_MEDIA_TYPE,
            message,
        )
    };
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(unsupported(format!(
            "POST bodies must be application/json, got {:?}",
            if content_type.is_empty() {
                "nothing"
            } else {
                content_type
            }
        )));
    }
    // JSON is UTF-8; a body declared in another charset would be misread.
    let charset = parts.find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    });
    if let Some(charset) = charset {
        if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
            return Err(unsupported(format!(
                "POST bodies must be UTF-8, got charset {charset:?}"
            )));
        }
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
    parse_body(&bytes)
}

/// Reads a POST body. serde_json skips what it does not keep (unknown keys,
/// `variables`, `extensions`) without recursing, so no nesting of the body
/// can exhaust the stack; `variables` is parsed later, once measured.
fn parse_body(bytes: &[u8]) -> Result<Params, Problem> {
    let not_json =
        |e: serde_json::Error| bad_request(format!("the request body is not valid JSON: {e}"));
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                bad_request(format!("the request body is not a GraphQL request: {e}"))
            }
            _ => not_json(e),
        }),
        Some(b'[') => {
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(not_json)?;
            Err(Problem::new(
                StatusCode::BAD_REQUEST,
                codes::BATCHING_NOT_SUPPORTED,
                "batched requests (a JSON array) are not accepted; send one operation per request",
            ))
        }
        _ => {
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(not_json)?;
            Err(bad_request(
                "the request body must be a JSON object with a `query`",
            ))
        }
    }
}

/// Reads a GET query string. Decoded strictly: a parameter given twice, or
/// not UTF-8 once percent-decoded, is refused rather than guessed at.
fn read_get(raw: &str) -> Result<Params, Problem> {
    let mut query = None;
    let mut operation_name = None;
    let mut variables = None;
    let mut extensions = None;
    let mut document_id = None;
    let mut doc_id = None;
    for pair in raw.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)
            .ok_or_else(|| bad_request("the query string is not UTF-8 once percent-decoded"))?;
        let slot = match key.as_str() {
            "query" => &mut query,
            "operationName" => &mut operation_name,
            "variables" => &mut variables,
            "extensions" => &mut extensions,
            "documentId" => &mut document_id,
            "doc_id" => &mut doc_id,
            _ => continue,
        };
        if slot.is_some() {
            return Err(bad_request(format!(
                "the `{key}` parameter is given more than once"
            )));
        }
        let value = percent_decode(value).ok_or_else(|| {
            bad_request(format!(
                "the `{key}` parameter is not UTF-8 once percent-decoded"
            ))
        })?;
        *slot = Some(value);
    }
    let json = |name: &str, text: Option<String>| {
        text.filter(|t| !t.trim().is_empty())
            .map(RawValue::from_string)
            .transpose()
            .map_err(|e| bad_request(format!("the `{name}` parameter is not valid JSON: {e}")))
    };
    Ok(Params {
        query,
        operation_name,
        variables: json("variables", variables)?,
        extensions: json("extensions", extensions)?,
        document_id,
        doc_id,
    })
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a
/// space; a `%` not followed by two hex digits stands for itself), or `None`
/// when the bytes are not UTF-8.
fn percent_decode(component: &str) -> Option<String> {
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let bytes = component.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                decoded.push(b' ');
                i += 1;
            }
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    decoded.push((high * 16 + low) as u8);
                    i += 3;
                }
                _ => {
                    decoded.push(b'%');
                    i += 1;
                }
            },
            byte => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// The header a client names itself in (Apollo's convention); registered
/// documents may be scoped to one client.
pub(super) const CLIENT_NAME: &str = "apollographql-client-name";
/// The header a client gives its version in.
const CLIENT_VERSION: &str = "apollographql-client-version";

/// The document the request runs: its `query`, or the persisted document its
/// APQ hash, `documentId` or `doc_id` names, under the configured mode.
/// Refusals are never cached (`no-store`): the same id may work once the
/// client sends the body, or once the document is registered.
pub(super) async fn resolve_document(
    app: &AppState,
    headers: &HeaderMap,
    params: &Params,
    extensions: Option<&JsonObject>,
) -> Result<persisted::Resolved, Problem> {
    let bad = |message: &str| Problem::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message);
    let apq =
        match extensions.and_then(|e| e.get("persistedQuery")) {
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
        Err(persisted::Resolution::Store(error)) if error.is_unavailable() => {
            tracing::warn!(%error, "persisted-query registry lookup");
            Err(Problem::unavailable())
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
pub(super) fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<Viewer, Problem> {
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
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        difference |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    difference == 0
}

/// Which kind of operation the request would run, if the operation can be
/// selected (otherwise execution reports why).
pub(super) fn operation_type(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<OperationType> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        _ => None,
    }
}

pub(super) type JsonObject = serde_json::Map<String, serde_json::Value>;

/// Reads `extensions`: an object or null. It is parsed whole (it carries the
/// APQ hash and the client's flags), so serde_json's recursion limit (128)
/// bounds its nesting, with a clean error past it.
pub(super) fn read_extensions(
    extensions: Option<&RawValue>,
) -> Result<Option<JsonObject>, Problem> {
    let Some(raw) = extensions else {
        return Ok(None);
    };
    match serde_json::from_str(raw.get()) {
        Ok(serde_json::Value::Object(object)) => Ok(Some(object)),
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(_) => Err(bad_request("`extensions` must be a JSON object")),
        Err(e) => Err(bad_request(format!("`extensions` cannot be read: {e}"))),
    }
}

/// Reads `variables`: measured against the limits on its JSON text, then
/// parsed, to an object or null (absent or null `variables` is no variables).
pub(super) fn read_variables(
    app: &AppState,
    variables: Option<&RawValue>,
) -> Result<serde_json::Value, Problem> {
    let Some(raw) = variables else {
        return Ok(serde_json::Value::Null);
    };
    let text = raw.get().trim();
    app.config
        .limits
        .check_variables(text)
        .map_err(|exceeded| Problem::exceeded(&exceeded))?;
    match text.as_bytes().first() {
        Some(b'{') => serde_json::from_str(text)
            .map_err(|e| bad_request(format!("`variables` cannot be read: {e}"))),
        _ if text == "null" => Ok(serde_json::Value::Null),
        _ => Err(bad_request("`variables` must be a JSON object")),
    }
}

/// What the registry says of a registered document.
pub(super) struct Registration {
    id: String,
    name: Option<String>,
    pub cost: u64,
}

/// A request ready to run, with the JSON the response cache keys it by.
/// The async-graphql request itself is built only when it runs (see
/// [`Prepared::request`]): an answer from the response cache needs none of it.
pub(super) struct Prepared {
    /// The document's text: the one sent, or the persisted one.
    pub query: Arc<str>,
    pub operation_name: Option<String>,
    pub variables: serde_json::Value,
    pub extensions: serde_json::Value,
    /// The registered document, if it is one.
    pub registered: Option<Registration>,
    /// The client asked for the cost (`"extensions": {"cost": true}`).
    pub reports_cost: bool,
    /// Its text was measured against the limits (a registered one was,
    /// when it was registered).
    pub text_checked: bool,
    /// A GET's document, parsed (from [`AppState::documents`]).
    document: Option<Arc<ExecutableDocument>>,
    /// Not parsed yet (a POST): parsed from [`AppState::documents`] only if
    /// it runs.
    unparsed: bool,
    /// The request, once [`Prepared::request`] built it.
    built: Option<async_graphql::Request>,
}

impl Prepared {
    /// The async-graphql request this runs as, its document attached (see
    /// [`attach_document`]): built the first time it is asked for.
    pub fn request(&mut self, app: &AppState) -> &mut async_graphql::Request {
        let request = self.take_request(app);
        self.built.insert(request)
    }

    /// The request, to run (see [`Prepared::request`]).
    pub fn take_request(&mut self, app: &AppState) -> async_graphql::Request {
        if let Some(request) = self.built.take() {
            return request;
        }
        let mut request = async_graphql::Request::new(self.query.to_string())
            .variables(Variables::from_json(self.variables.clone()));
        if let Some(registered) = &self.registered {
            request = request.data(graph::Vetted {
                cost: registered.cost,
            });
        }
        if self.text_checked {
            request = request.data(graph::TextChecked);
        }
        if let Some(name) = &self.operation_name {
            request = request.operation_name(name);
        }
        if let serde_json::Value::Object(extensions) = &self.extensions {
            for (key, value) in extensions {
                if let Ok(value) = Value::from_json(value.clone()) {
                    request.extensions.insert(key.clone(), value);
                }
            }
        }
        attach_document(
            app,
            &mut request,
            self.document.take(),
            std::mem::take(&mut self.unparsed),
        );
        request
    }
}

/// Checks the parameters and reads the request: the document (sent, or
/// persisted), its variables, operation name and extensions. A GET's
/// document is measured and parsed here, to refuse a mutation before it runs:
/// the limits on the text come first, so nothing unmeasured reaches the
/// parser (a registered document was measured when it was registered).
pub(super) async fn prepare(
    app: &AppState,
    headers: &HeaderMap,
    params: Params,
    method: &Method,
) -> Result<Prepared, Problem> {
    let extensions = read_extensions(params.extensions.as_deref())?;
    let resolved = resolve_document(app, headers, &params, extensions.as_ref()).await?;
    let variables = read_variables(app, params.variables.as_deref())?;
    let operation_name = params.operation_name.filter(|n| !n.is_empty());
    let mut document = None;
    let mut text_checked = false;
    if *method == Method::GET {
        if resolved.registered.is_none() {
            app.config
                .limits
                .check_text(&resolved.query)
                .map_err(|exceeded| Problem::exceeded(&exceeded))?;
            text_checked = true;
        }
        // The parsed document goes to async-graphql if the request runs; a
        // document that does not parse is reported by execution, with its code.
        document = app.documents.parse(&resolved.query).ok();
        let ty = document
            .as_deref()
            .and_then(|document| operation_type(document, operation_name.as_deref()));
        if matches!(
            ty,
            Some(OperationType::Mutation | OperationType::Subscription)
        ) {
            return Err(Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                codes::METHOD_NOT_ALLOWED,
                "only queries may be sent with GET; send mutations with POST",
            )
            .with_header(header::ALLOW, "POST"));
        }
    }
    let reports_cost = extensions
        .as_ref()
        .and_then(|e| e.get("cost"))
        .is_some_and(|cost| *cost == serde_json::Value::Bool(true));
    Ok(Prepared {
        query: resolved.query,
        operation_name,
        variables,
        extensions: extensions.map_or(serde_json::Value::Null, serde_json::Value::Object),
        registered: resolved.registered.as_ref().map(|registered| Registration {
            id: registered.id.clone(),
            name: registered.name.clone(),
            cost: registered.cost,
        }),
        reports_cost,
        text_checked,
        unparsed: document.is_none() && *method != Method::GET,
        document,
        built: None,
    })
}

/// Hands a request about to run its parsed document: `document`, a GET's,
/// or, when `unparsed` (a POST), the one [`AppState::documents`] keeps for
/// its text, parsed now or when the text came before. A text not measured
/// yet is measured first, and one over the limits on text is not parsed:
/// execution refuses it, as it refuses one that does not parse, each with
/// its code.
fn attach_document(
    app: &AppState,
    request: &mut async_graphql::Request,
    document: Option<Arc<ExecutableDocument>>,
    unparsed: bool,
) {
    let document = match document {
        Some(document) => Some(document),
        None if unparsed => {
            if !graph::text_measured(request) {
                if app.config.limits.check_text(&request.query).is_err() {
                    return;
                }
                request.data.insert(graph::TextChecked);
            }
            app.documents.parse(&request.query).ok()
        }
        None => None,
    };
    if let Some(document) = document {
        request.set_parsed_query(ExecutableDocument::clone(&document));
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
    caller: Caller,
) -> Response {
    let content_type = media.content_type();
    match prepare(app, headers, params, &method).await {
        Ok(prepared) => respond(app, headers, caller, prepared, media, request_id).await,
        Err(problem) => problem.into_response(request_id, content_type),
    }
}

/// Runs a prepared request for the caller and answers it as one JSON
/// result, with its caching headers.
pub(super) async fn respond(
    app: &AppState,
    headers: &HeaderMap,
    Caller { viewer, admission }: Caller,
    mut prepared: Prepared,
    media: MediaType,
    request_id: &str,
) -> Response {
    let content_type = media.content_type();
    let viewer_is_authenticated = viewer.is_authenticated();
    let span = tracing::Span::current();
    let reports_cost = prepared.reports_cost;
    let registered_cost = prepared.registered.as_ref().map(|r| r.cost);
    let operation = match &prepared.registered {
        Some(registration) => {
            span.record("document_id", registration.id.as_str());
            registration
                .name
                .clone()
                .unwrap_or_else(|| registration.id.clone())
        }
        None => metrics::UNREGISTERED.to_string(),
    };
    // The bucket's state is the client's own: an answer that reports it is
    // never served from, nor kept in, a shared cache.
    let reports_throttle = reports_cost && admission.is_some();
    let router = router_access(app, headers);
    let inline_trace = headers.get(INCLUDE_TRACE).is_some_and(|v| v == "ftv1");
    // Anonymous answers may come from (and go to) the response cache, but
    // not a traced one: its trace is of this run, and for the router only.
    let cache_key = (!viewer_is_authenticated
        && !inline_trace
        && !reports_throttle
        && app.config.response_cache_bytes > 0)
        .then(|| {
            ResponseCache::key(
                &prepared.query,
                prepared.operation_name.as_deref(),
                &prepared.variables,
                &prepared.extensions,
                // The router may be answered what others are refused.
                &format!("{content_type};{router:?}"),
            )
        });
    if let Some(key) = &cache_key {
        let hit = app.response_cache.get(key, app.listening.is_listening());
        app.metrics.cache("response", hit.is_some());
        if let Some(hit) = hit {
            // Served as a CDN would serve it: nothing spent from the bucket.
            let mut response = cached_response(app, headers, &hit, hit.fresh_age());
            response.extensions_mut().insert(Observed {
                operation,
                outcome: Outcome::Ok,
                statements: 0,
                codes: Vec::new(),
            });
            return response;
        }
    }
    // What a request gets when the database cannot serve it.
    let unavailable = |operation| {
        unavailable(
            app,
            headers,
            cache_key.as_ref(),
            request_id,
            content_type,
            operation,
        )
    };
    // Once the database is known to be down, nothing waits for it.
    if app.store.is_down() {
        return unavailable(operation);
    }
    let mut request = prepared.take_request(app);
    if let Some(admission) = &admission {
        match registered_cost {
            // A registered document's cost is known: paid before it runs.
            Some(cost) => {
                if let Err(throttled) = admission.spend(cost) {
                    let mut response = throttle::refusal(
                        app,
                        admission.tier(),
                        &throttled,
                        request_id,
                        content_type,
                    );
                    response.extensions_mut().insert(Observed {
                        operation,
                        outcome: Outcome::RateLimited,
                        statements: 0,
                        codes: vec![RATE_LIMITED.to_string()],
                    });
                    return response;
                }
            }
            // Any other is paid once measured (see `graph::conventions`).
            None => request = request.data(admission.clone()),
        }
    }
    request = request.data(app.metrics.clone());
    let entity_keys = representations(&prepared.variables);
    // Before anything is read: an answer that a write purged meanwhile is
    // not kept.
    let marked = app.response_cache.mark();
    let (request, scope) = graph::RequestScope::new(
        request,
        &app.store,
        viewer,
        router,
        &app.config.posture,
        inline_trace,
    );
    let mut response = scope.execute(&app.schema, &app.fast_schema, request).await;
    for error in &mut response.errors {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("requestId", request_id);
    }
    if let Some(admission) = &admission {
        if let Some(Err(throttled)) = admission.spent() {
            let mut refusal =
                throttle::refusal(app, admission.tier(), &throttled, request_id, content_type);
            refusal.extensions_mut().insert(Observed {
                operation,
                outcome: Outcome::RateLimited,
                statements: scope.store.statements(),
                codes: vec![RATE_LIMITED.to_string()],
            });
            return refusal;
        }
        if reports_cost {
            add_throttle_status(&mut response.extensions, &admission.status());
        }
    }
    let codes: Vec<String> = response
        .errors
        .iter()
        .filter_map(|e| e.extensions.as_ref()?.get("code"))
        .map(|code| match code {
            Value::String(code) => code.clone(),
            other => other.to_string(),
        })
        .collect();
    // The database went away while this ran, and nothing could be served.
    if is_unavailable(&response.data, &codes) {
        return unavailable(operation);
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
        viewer_is_authenticated || reports_throttle,
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
    let cache_control_value = HeaderValue::from_str(&cache_control_header(app, cache_control));
    if let Ok(value) = &cache_control_value {
        out.insert(header::CACHE_CONTROL, value.clone());
    }
    let etag_value = etag.as_deref().map(HeaderValue::from_str);
    if let Some(Ok(value)) = &etag_value {
        out.insert(header::ETAG, value.clone());
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
    // A public answer is cacheable, so it has its ETag (`etag_value`).
    if let CacheControl::Public(max_age) = cache_control {
        let read = tags.tags_read();
        let surrogate_key = HeaderValue::from_str(&read.join(" "));
        if let Ok(value) = &surrogate_key {
            out.insert(SURROGATE_KEY, value.clone());
        }
        // Every header is kept as sent (tags and ETags are header-safe text,
        // so none was left out above).
        if let (Some(key), false, Ok(cache_control), Some(Ok(etag)), Ok(surrogate_key)) = (
            cache_key,
            not_modified,
            cache_control_value,
            etag_value,
            surrogate_key,
        ) {
            app.response_cache.insert(
                key,
                Cached {
                    body: body_bytes,
                    content_type,
                    max_age,
                    tags: read,
                    headers: CachedHeaders {
                        cache_control,
                        etag,
                        surrogate_key,
                    },
                    stored: std::time::Instant::now(),
                },
                marked,
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
    // A shared cache would hand one client's bucket to others: only answers
    // that are not public tell it.
    if let (Some(admission), false) = (&admission, cache_control.is_public()) {
        throttle::add_headers(out, admission.tier(), &admission.status());
    }
    let outcome = if timed_out {
        Outcome::Timeout
    } else if !executed {
        Outcome::Refused
    } else if codes.is_empty() {
        Outcome::Ok
    } else {
        Outcome::FieldErrors
    };
    http.extensions_mut().insert(Observed {
        operation,
        outcome,
        statements: scope.store.statements(),
        codes,
    });
    http
}

/// Puts the bucket in `extensions.cost.throttleStatus`, where Shopify's API
/// reports it, beside the cost the extension reported.
fn add_throttle_status(
    extensions: &mut BTreeMap<String, Value>,
    status: &crate::limits::rate::ThrottleStatus,
) {
    let Ok(status) = Value::from_json(throttle::throttle_status_json(status)) else {
        return;
    };
    let cost = extensions
        .entry("cost".to_string())
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(cost) = cost {
        cost.insert(async_graphql::Name::new("throttleStatus"), status);
    }
}

/// The cache tags of a cacheable answer (Fastly's and others' header for
/// purging by tag).
const SURROGATE_KEY: &str = "surrogate-key";
/// The tags a write changed: what a CDN in front should purge.
const PURGE_KEYS: &str = "x-purge-surrogate-keys";

/// An answer from the response cache: no parsing, no database.
fn cached_response(app: &AppState, headers: &HeaderMap, hit: &Cached, age: u32) -> Response {
    let not_modified = if_none_match(headers, hit.headers.etag.to_str().unwrap_or_default());
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
    out.insert(header::CACHE_CONTROL, hit.headers.cache_control.clone());
    out.insert(header::ETAG, hit.headers.etag.clone());
    out.insert(header::AGE, HeaderValue::from(age));
    out.insert(SURROGATE_KEY, hit.headers.surrogate_key.clone());
    out.insert(header::VARY, HeaderValue::from_static(VARY_ON));
    if app.config.expose_sql_statements {
        out.insert("x-sql-statements", HeaderValue::from(0));
    }
    http
}

/// Whether a result is only the database's absence: every error says
/// `SERVICE_UNAVAILABLE`, and no field has a value.
fn is_unavailable(data: &Value, codes: &[String]) -> bool {
    let empty = match data {
        Value::Null => true,
        Value::Object(fields) => fields.values().all(|v| *v == Value::Null),
        _ => false,
    };
    empty
        && !codes.is_empty()
        && codes
            .iter()
            .all(|code| code == graph::code::SERVICE_UNAVAILABLE)
}

/// The answer to a request the database cannot serve: a cached public
/// answer past its `max-age` but within the stale-if-error window (marked
/// by its `Age` and a `Warning: 110`), else 503 `SERVICE_UNAVAILABLE` with
/// `Retry-After`, without `data`, like any result the server could not
/// produce (see the 504 of a request past its deadline).
fn unavailable(
    app: &AppState,
    headers: &HeaderMap,
    cache_key: Option<&[u8; 32]>,
    request_id: &str,
    content_type: &'static str,
    operation: String,
) -> Response {
    let stale = cache_key
        .filter(|_| !app.config.stale_if_error.is_zero())
        .and_then(|key| app.response_cache.get_stale(key));
    let (mut response, outcome, codes) = match stale {
        Some(hit) => {
            let mut response = cached_response(app, headers, &hit, hit.age());
            response.headers_mut().insert(
                header::WARNING,
                HeaderValue::from_static("110 - \"Response is Stale\""),
            );
            (response, Outcome::Ok, Vec::new())
        }
        None => (
            Problem::unavailable().into_response(request_id, content_type),
            Outcome::Unavailable,
            vec![graph::code::SERVICE_UNAVAILABLE.to_string()],
        ),
    };
    response.extensions_mut().insert(Observed {
        operation,
        outcome,
        statements: 0,
        codes,
    });
    response
}

/// `Cache-Control` as sent: a public answer also tells caches in front how
/// long they may serve it stale while the server fails (RFC 5861).
fn cache_control_header(app: &AppState, cache_control: CacheControl) -> String {
    let window = app.config.stale_if_error.as_secs();
    match cache_control {
        CacheControl::Public(_) if window > 0 => {
            format!("{cache_control}, stale-if-error={window}")
        }
        _ => cache_control.to_string(),
    }
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

    fn is_public(self) -> bool {
        matches!(self, CacheControl::Public(_))
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
        let ty = |query: &str, name: Option<&str>| {
            let document = async_graphql::parser::parse_query(query).unwrap();
            operation_type(&document, name)
        };
        let doc = "query A { a } mutation B { b }";
        assert_eq!(ty(doc, Some("B")), Some(OperationType::Mutation));
        assert_eq!(ty(doc, Some("A")), Some(OperationType::Query));
        assert_eq!(ty(doc, Some("C")), None);
        assert_eq!(ty(doc, None), None);
        assert_eq!(ty("{ a }", None), Some(OperationType::Query));
    }
}
