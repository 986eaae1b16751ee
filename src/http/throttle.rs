//! Rate limiting at the HTTP edge (the buckets themselves are in
//! [`crate::limits::rate`]): who the client is, which tier it is in, and how
//! a refusal and the bucket's state are told.
//!
//! A client is its token's subject (a customer, or the operator), else the
//! configured API-key header, else its address (the peer's, or the last one a
//! proxy in front appended to the configured header). A refusal is HTTP 429 with
//! `Retry-After` and the IETF draft's `RateLimit-Policy` and `RateLimit`
//! fields, and a GraphQL error with the code `RATE_LIMITED`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::graphql::CLIENT_NAME;
use super::problem::Problem;
use super::AppState;
use crate::auth::Viewer;
use crate::limits::rate::{
    whole_seconds, Admission, ThrottleStatus, Throttled, Tier, RATE_LIMITED,
};

tokio::task_local! {
    /// The address of the peer whose request is being handled.
    static PEER: Option<IpAddr>;
}

/// Makes the peer's address (from axum's `ConnectInfo`, when the server is
/// run with it) known to the handlers of the request.
pub async fn remember_peer(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    PEER.scope(peer, next.run(request)).await
}

fn peer() -> Option<IpAddr> {
    PEER.try_with(|peer| *peer).ok().flatten()
}

pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Who is asking, for the buckets.
fn identity(app: &AppState, headers: &HeaderMap, viewer: &Viewer) -> String {
    signed_in(viewer).unwrap_or_else(|| unsigned(app, headers))
}

/// The client a token names: a customer, or the operator.
fn signed_in(viewer: &Viewer) -> Option<String> {
    if let Some(id) = viewer.customer_id {
        return Some(format!("customer:{id}"));
    }
    viewer.admin.then(|| "operator".to_string())
}

/// The client of a request without a token: its API key, else its address.
fn unsigned(app: &AppState, headers: &HeaderMap) -> String {
    if let Some(header) = &app.config.rate_limits.api_key_header {
        if let Some(key) = headers.get(header.as_str()) {
            // Only a digest is kept in memory.
            use sha2::{Digest, Sha256};
            let digest = format!("{:x}", Sha256::digest(key.as_bytes()));
            return format!("key:{}", &digest[..32]);
        }
    }
    if let Some(header) = &app.config.rate_limits.address_header {
        if let Some(address) = forwarded_address(headers, header) {
            return format!("address:{address}");
        }
    }
    match peer() {
        Some(address) => format!("address:{address}"),
        None => "address:unknown".to_string(),
    }
}

/// The last address in `header` (of its last occurrence): the one the proxy
/// in front appended. What a client wrote there itself comes before it, so
/// a forged entry changes nothing.
fn forwarded_address(headers: &HeaderMap, header: &str) -> Option<IpAddr> {
    let value = headers.get_all(header).iter().next_back()?.to_str().ok()?;
    value.rsplit(',').next()?.trim().parse().ok()
}

/// Lets the request in (counted as in flight until the admission is
/// dropped), or refuses it: the client has too many requests in flight.
/// `None` when rate limiting is off.
pub fn admit(
    app: &AppState,
    headers: &HeaderMap,
    viewer: &Viewer,
) -> Result<Option<Admission>, (Tier, Throttled)> {
    let limits = app.rate_limiter.limits();
    if !limits.enabled {
        return Ok(None);
    }
    let tier = limits.tier(
        client_name(headers),
        viewer.is_authenticated(),
        viewer.admin,
    );
    let client = identity(app, headers, viewer);
    app.rate_limiter
        .admit(&client, tier.clone())
        .map(Some)
        .map_err(|throttled| (tier, throttled))
}

fn client_name(headers: &HeaderMap) -> &str {
    headers
        .get(CLIENT_NAME)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The client of a WebSocket, as far as its upgrade request tells: read
/// while the request is handled (the peer's address is known only then),
/// completed by the viewer `connection_init` names.
#[derive(Clone, Debug)]
pub struct SocketClient {
    /// Who the client is when no token names it.
    unsigned: String,
    /// Its `apollographql-client-name`, which may choose its tier.
    name: String,
}

impl SocketClient {
    pub fn of(app: &AppState, headers: &HeaderMap) -> SocketClient {
        SocketClient {
            unsigned: unsigned(app, headers),
            name: client_name(headers).to_string(),
        }
    }

    /// The bucket the connection's operations pay from, for `viewer`;
    /// `None` when rate limiting is off.
    pub fn meter(&self, app: &AppState, viewer: &Viewer) -> Option<Admission> {
        let limits = app.rate_limiter.limits();
        if !limits.enabled {
            return None;
        }
        let tier = limits.tier(&self.name, viewer.is_authenticated(), viewer.admin);
        let client = signed_in(viewer).unwrap_or_else(|| self.unsigned.clone());
        Some(app.rate_limiter.meter(&client, tier))
    }
}

/// The refusal: 429, `Retry-After` (when waiting can help), the bucket in
/// the `RateLimit` fields and in the error's extensions.
pub fn refusal(
    app: &AppState,
    tier: &Tier,
    throttled: &Throttled,
    request_id: &str,
    content_type: &'static str,
) -> Response {
    let mut response = problem(app, tier, throttled).into_response(request_id, content_type);
    let headers = response.headers_mut();
    if let Some(wait) = throttled.retry_after() {
        headers.insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(whole_seconds(wait)),
        );
    }
    add_headers(headers, tier, &throttled.status());
    response
}

/// The refusal as a problem (counted and logged): `RATE_LIMITED`, when to
/// retry (`retryAfter`, in seconds, when waiting can help) and the bucket
/// (`throttleStatus`). HTTP answers it with 429; a subscription over a
/// stream gets it as the error of that subscription.
pub fn problem(app: &AppState, tier: &Tier, throttled: &Throttled) -> Problem {
    app.metrics.rate_limited(&tier.name, throttled.reason());
    tracing::info!(
        tier = %tier.name,
        reason = throttled.reason(),
        "refused: over the client's rate limit"
    );
    let mut problem = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        RATE_LIMITED,
        throttled.message(),
    )
    .no_store();
    if let Some(wait) = throttled.retry_after() {
        problem
            .details
            .push(("retryAfter", whole_seconds(wait).into()));
    }
    problem
        .details
        .push(("throttleStatus", throttle_status_json(&throttled.status())));
    problem
}

/// The IETF draft fields (draft-ietf-httpapi-ratelimit-headers): the policy
/// (`q` points, refilled over `w` seconds) and the bucket now (`r` points
/// remaining, full again in `t` seconds).
pub fn add_headers(headers: &mut HeaderMap, tier: &Tier, status: &ThrottleStatus) {
    let name = tier.name.replace(['"', '\\'], "");
    let window = whole_seconds(std::time::Duration::from_secs_f64(
        tier.limits.capacity as f64 / tier.limits.restore_rate as f64,
    ));
    let policy = format!("\"{name}\";q={};w={window}", tier.limits.capacity);
    let now = format!(
        "\"{name}\";r={};t={}",
        status.currently_available, status.seconds_to_full
    );
    for (header, value) in [(RATE_LIMIT_POLICY, policy), (RATE_LIMIT, now)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header, value);
        }
    }
}

/// Shopify's `throttleStatus`.
pub fn throttle_status_json(status: &ThrottleStatus) -> serde_json::Value {
    serde_json::json!({
        "maximumAvailable": status.maximum_available,
        "currentlyAvailable": status.currently_available,
        "restoreRate": status.restore_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_address_is_the_one_the_proxy_appended() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 10.0.0.7"),
        );
        assert_eq!(
            forwarded_address(&headers, "x-forwarded-for"),
            Some("10.0.0.7".parse().unwrap())
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("2001:db8::1"));
        assert_eq!(
            forwarded_address(&headers, "x-forwarded-for"),
            Some("2001:db8::1".parse().unwrap())
        );
        headers.insert("x-forwarded-for", HeaderValue::from_static("nonsense"));
        assert_eq!(forwarded_address(&headers, "x-forwarded-for"), None);
    }
}
