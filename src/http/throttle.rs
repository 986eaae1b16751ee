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
    if let Some(id) = viewer.customer_id {
        return format!("customer:{id}");
    }
    if viewer.admin {
        return "operator".to_string();
    }
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
    let client_name = headers
        .get(CLIENT_NAME)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let tier = limits.tier(client_name, viewer.is_authenticated(), viewer.admin);
    let client = identity(app, headers, viewer);
    app.rate_limiter
        .admit(&client, tier.clone())
        .map(Some)
        .map_err(|throttled| (tier, throttled))
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
    app.metrics.rate_limited(&tier.name, throttled.reason());
    tracing::info!(
        tier = %tier.name,
        reason = throttled.reason(),
        "request refused: over the client's rate limit"
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
    let mut response = problem.into_response(request_id, content_type);
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
