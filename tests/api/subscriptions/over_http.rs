//! Subscriptions over plain HTTP: Apollo's multipart protocol and
//! Server-Sent Events (`graphql-sse`, distinct connections mode), with the
//! HTTP requests' authorization, CSRF prevention, limits and bounds.

use std::time::Duration;

use serde_json::{json, Value};

use super::{pending_order, set_price, ORDER, PRICE};
use crate::helpers::TestApp;

const MULTIPART: &str = "multipart/mixed;subscriptionSpec=\"1.0\", application/json";
const SSE: &str = "text/event-stream";

/// An open streaming response, read as its chunks come.
pub(super) struct HttpStream {
    pub response: reqwest::Response,
    buffer: String,
}

impl HttpStream {
    /// Reads one more chunk; false at the end of the body.
    async fn fill(&mut self) -> bool {
        let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
            .await
            .expect("a chunk within 10 s")
            .expect("the body reads");
        match chunk {
            Some(bytes) => {
                self.buffer.push_str(std::str::from_utf8(&bytes).unwrap());
                true
            }
            None => false,
        }
    }

    /// The next multipart part's JSON, or `None` at the closing delimiter.
    pub async fn next_part(&mut self) -> Option<Value> {
        const DELIMITER: &str = "\r\n--graphql";
        loop {
            if let Some(rest) = self.buffer.strip_prefix(DELIMITER) {
                if rest.starts_with("--") {
                    return None;
                }
                if let Some(end) = rest.find(DELIMITER) {
                    let part = rest[..end].to_string();
                    self.buffer = rest[end..].to_string();
                    let (headers, body) = part.split_once("\r\n\r\n").unwrap();
                    assert!(
                        headers
                            .to_ascii_lowercase()
                            .contains("content-type: application/json"),
                        "{headers}"
                    );
                    return Some(serde_json::from_str(body).unwrap());
                }
            }
            assert!(
                self.fill().await,
                "ended without `--graphql--`: {:?}",
                self.buffer
            );
        }
    }

    /// The next multipart part that is not a heartbeat.
    pub async fn next_payload(&mut self) -> Option<Value> {
        loop {
            match self.next_part().await {
                Some(part) if part == json!({}) => continue,
                other => return other,
            }
        }
    }

    /// The next SSE event (comments skipped) as (event, data), or `None`
    /// at the end of the body.
    pub async fn next_event(&mut self) -> Option<(String, String)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block = self.buffer[..end].to_string();
                self.buffer.drain(..end + 2);
                let mut event = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event = Some(name.trim().to_string());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                match event {
                    Some(event) => return Some((event, data)),
                    None => continue,
                }
            }
            if !self.fill().await {
                assert_eq!(self.buffer, "", "a partial event at the end");
                return None;
            }
        }
    }
}

/// POSTs `query` asking for `accept`, as a client of this server does.
pub(super) async fn post(
    app: &TestApp,
    accept: &str,
    query: &str,
    variables: Value,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.graphql_url())
        .header("accept", accept)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

pub(super) async fn stream(
    app: &TestApp,
    accept: &str,
    query: &str,
    variables: Value,
    token: Option<&str>,
) -> HttpStream {
    let response = post(app, accept, query, variables, token).await;
    assert_eq!(response.status(), 200);
    HttpStream {
        response,
        buffer: String::new(),
    }
}

#[tokio::test]
async fn multipart_subscribers_get_heartbeats_and_the_new_price() {
    let app = TestApp::spawn_with(|config| {
        config.subscriptions.keepalive = Duration::from_millis(200);
    })
    .await;
    let mut events = stream(&app, MULTIPART, PRICE, json!({ "id": "3" }), None).await;
    assert_eq!(
        events.response.headers()["content-type"],
        "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\""
    );
    assert_eq!(events.response.headers()["cache-control"], "no-store");
    // A heartbeat: an empty object.
    assert_eq!(events.next_part().await, Some(json!({})));

    set_price(&app, "3", 4321).await;
    let part = events.next_payload().await.unwrap();
    assert_eq!(
        part,
        json!({ "payload": { "data": { "productUpdated": { "id": "3", "price": { "cents": 4321 } } } } })
    );
}

#[tokio::test]
async fn multipart_refusals_are_transport_errors_and_queries_stay_json() {
    // Deep enough for the admin's order listing, not for the document below.
    let app = TestApp::spawn_with(|config| config.limits.max_depth = 4).await;
    let mut events = stream(
        &app,
        MULTIPART,
        "subscription { productUpdated(id: \"1\") { category { products { nodes { id } } } } }",
        json!({}),
        None,
    )
    .await;
    let part = events.next_part().await.unwrap();
    assert_eq!(part["payload"], Value::Null, "{part}");
    assert_eq!(part["errors"][0]["extensions"]["code"], "QUERY_TOO_DEEP");
    assert_eq!(events.next_part().await, None);

    // Not the owner: the result carries the error, and the stream ends.
    let (order, owner) = pending_order(&app).await;
    let token = app.customer_token(owner + 1);
    let mut events = stream(&app, MULTIPART, ORDER, json!({ "id": order }), Some(&token)).await;
    let part = events.next_payload().await.unwrap();
    assert_eq!(
        part["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{part}"
    );
    assert_eq!(events.next_payload().await, None);

    // A query from a client that takes JSON too is answered as JSON.
    let reply = post(
        &app,
        MULTIPART,
        "{ product(id: \"1\") { id } }",
        json!({}),
        None,
    )
    .await;
    assert!(reply.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["data"]["product"]["id"], "1");
}

#[tokio::test]
async fn http_subscriptions_meet_the_http_rules() {
    let app = TestApp::spawn().await;
    // A token that does not verify: 401, as for any HTTP request.
    let reply = post(
        &app,
        MULTIPART,
        PRICE,
        json!({ "id": "1" }),
        Some("not-a-token"),
    )
    .await;
    assert_eq!(reply.status(), 401);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");

    // A body a foreign page could send without a preflight: CSRF.
    for accept in [MULTIPART, SSE] {
        let reply = app
            .client
            .post(app.graphql_url())
            .header("accept", accept)
            .header("content-type", "text/plain")
            .body(json!({ "query": PRICE, "variables": { "id": "1" } }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 400, "{accept}");
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "CSRF_PREVENTED");
    }
}

#[tokio::test]
async fn sse_subscribers_get_next_events_and_complete() {
    let app = TestApp::spawn().await;
    let mut events = stream(&app, SSE, PRICE, json!({ "id": "4" }), None).await;
    assert_eq!(
        events.response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    set_price(&app, "4", 999).await;
    let (event, data) = events.next_event().await.unwrap();
    assert_eq!(event, "next");
    let result: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(result["data"]["productUpdated"]["price"]["cents"], 999);

    // The owner's order, over SSE with the bearer token.
    let (order, owner) = pending_order(&app).await;
    let token = app.customer_token(owner);
    let mut mine = stream(&app, SSE, ORDER, json!({ "id": order }), Some(&token)).await;
    app.query(
        "mutation($id: ID!) { updateOrderStatus(id: $id, status: PAID) { status } }",
        json!({ "id": order }),
        Some(&app.admin_token()),
    )
    .await
    .data();
    let (event, data) = mine.next_event().await.unwrap();
    assert_eq!(event, "next");
    let result: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(result["data"]["orderStatusChanged"]["status"], "PAID");

    // A document that does not validate: a `next` with the errors, then
    // `complete`, as the protocol asks.
    let mut invalid = stream(&app, SSE, "subscription { nope }", json!({}), None).await;
    let (event, data) = invalid.next_event().await.unwrap();
    assert_eq!(event, "next");
    let result: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        result["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    assert_eq!(
        invalid.next_event().await,
        Some(("complete".into(), String::new()))
    );
    assert_eq!(invalid.next_event().await, None);

    // A query from a client that takes only event streams: one `next`.
    let mut query = stream(&app, SSE, "{ product(id: \"2\") { id } }", json!({}), None).await;
    let (event, data) = query.next_event().await.unwrap();
    assert_eq!(event, "next");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap()["data"]["product"]["id"],
        "2"
    );
    assert_eq!(query.next_event().await.unwrap().0, "complete");
}

#[tokio::test]
async fn event_streams_count_against_the_connection_bound() {
    let app = TestApp::spawn_with(|config| {
        config.subscriptions.max_connections = 1;
        // Heartbeats find a departed client soon.
        config.subscriptions.keepalive = Duration::from_millis(100);
    })
    .await;
    let open = stream(&app, SSE, PRICE, json!({ "id": "1" }), None).await;
    let reply = post(&app, MULTIPART, PRICE, json!({ "id": "1" }), None).await;
    assert_eq!(reply.status(), 503);
    assert!(reply.headers().contains_key("retry-after"));
    let body: Value = reply.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "TOO_MANY_CONNECTIONS"
    );

    // A closed stream frees its place.
    drop(open);
    let mut freed = false;
    for _ in 0..100 {
        let reply = post(&app, SSE, PRICE, json!({ "id": "1" }), None).await;
        if reply.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "the freed place was never given out");
}
