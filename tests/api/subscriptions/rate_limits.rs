//! Subscriptions pay for their documents from the same per-client bucket as
//! HTTP requests: over the limit, that one subscription is refused with
//! `RATE_LIMITED` (when to retry, and the bucket, in its extensions), and
//! the connection and its other subscriptions go on.

use std::time::Duration;

use commerce_graph::limits::rate::TierLimits;
use serde_json::{json, Value};

use super::over_http::stream;
use super::{connected, next, next_within, open_with, send, set_price, subscribe, PRICE};
use crate::helpers::TestApp;

/// Customers hold 20 points, restored at 1 a second: a few subscriptions'
/// worth (far more than a second passes while a test subscribes).
async fn small_budgets() -> TestApp {
    TestApp::spawn_with(|config| {
        config.rate_limits.customer = TierLimits {
            capacity: 20,
            restore_rate: 1,
            max_concurrent: 2,
        };
    })
    .await
}

fn bearer(token: &str) -> Value {
    json!({ "authorization": format!("Bearer {token}") })
}

/// The messages answering what was sent before: the server handles a
/// socket's messages in order, so they come before the end (`complete`, or
/// a refusal: it pays too) of a query sent after them.
async fn answers(socket: &mut super::Socket, start: &str) -> Vec<Value> {
    send(
        socket,
        json!({ "id": "last", "type": start, "payload": { "query": "{ __typename }" } }),
    )
    .await;
    let mut messages = Vec::new();
    loop {
        let message = next(socket).await;
        if message["id"] != "last" {
            messages.push(message);
        } else if message["type"] == "complete" || message["type"] == "error" {
            return messages;
        }
    }
}

fn assert_rate_limited(error: &Value) {
    let extensions = &error["extensions"];
    assert_eq!(extensions["code"], "RATE_LIMITED", "{error}");
    assert!(extensions["retryAfter"].as_u64().unwrap() >= 1, "{error}");
    assert_eq!(extensions["throttleStatus"]["maximumAvailable"], 20);
    assert_eq!(extensions["throttleStatus"]["restoreRate"], 1);
    assert!(extensions["requestId"].is_string(), "{error}");
}

#[tokio::test]
async fn subscribing_over_the_budget_is_refused_and_the_connection_goes_on() {
    let app = small_budgets().await;
    let token = app.customer_token(1);
    let mut socket = connected(&app, bearer(&token)).await;
    for n in 0..20 {
        subscribe(&mut socket, &format!("s{n}"), PRICE, json!({ "id": "3" })).await;
    }
    let refusals = answers(&mut socket, "subscribe").await;
    assert!(
        !refusals.is_empty(),
        "twenty subscriptions within 20 points"
    );
    assert!(refusals.len() < 20, "not even the first was let in");
    for refusal in &refusals {
        assert_eq!(refusal["type"], "error", "{refusal}");
        assert_rate_limited(&refusal["payload"][0]);
    }
    let refused: Vec<&str> = refusals.iter().map(|r| r["id"].as_str().unwrap()).collect();

    // The others were let in, on a connection still open.
    set_price(&app, "3", 4321).await;
    let mut expected: Vec<String> = (0..20)
        .map(|n| format!("s{n}"))
        .filter(|id| !refused.contains(&id.as_str()))
        .collect();
    let mut served = Vec::new();
    for _ in 0..expected.len() {
        let message = next(&mut socket).await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(
            message["payload"]["data"]["productUpdated"]["price"]["cents"],
            4321
        );
        served.push(message["id"].as_str().unwrap().to_string());
    }
    served.sort();
    expected.sort();
    assert_eq!(served, expected);

    // The bucket is the client's, not the connection's: a second socket of
    // the same customer is refused too, and another customer is not.
    let mut again = connected(&app, bearer(&token)).await;
    subscribe(&mut again, "late", PRICE, json!({ "id": "3" })).await;
    let refusal = next(&mut again).await;
    assert_eq!(refusal["type"], "error", "{refusal}");
    assert_rate_limited(&refusal["payload"][0]);
    let mut other = connected(&app, bearer(&app.customer_token(2))).await;
    subscribe(&mut other, "mine", PRICE, json!({ "id": "3" })).await;
    assert_eq!(next_within(&mut other, Duration::from_secs(1)).await, None);
}

#[tokio::test]
async fn the_legacy_protocol_and_event_streams_pay_from_the_same_bucket() {
    let app = small_budgets().await;
    let token = app.customer_token(1);
    let mut socket = open_with(&app, "graphql-ws").await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": bearer(&token) }),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "connection_ack");
    for n in 0..20 {
        send(
            &mut socket,
            json!({ "id": format!("s{n}"), "type": "start",
                "payload": { "query": PRICE, "variables": { "id": "3" } } }),
        )
        .await;
    }
    let refusals = answers(&mut socket, "start").await;
    assert!(!refusals.is_empty() && refusals.len() < 20, "{refusals:?}");
    for refusal in &refusals {
        // The legacy `error` carries one error.
        assert_eq!(refusal["type"], "error", "{refusal}");
        assert_rate_limited(&refusal["payload"]);
    }

    // The bucket is empty for this customer's event streams too.
    let mut events = stream(
        &app,
        "text/event-stream",
        PRICE,
        json!({ "id": "3" }),
        Some(&token),
    )
    .await;
    let (event, data) = events.next_event().await.unwrap();
    assert_eq!(event, "next");
    let result: Value = serde_json::from_str(&data).unwrap();
    assert_rate_limited(&result["errors"][0]);
    assert_eq!(events.next_event().await.unwrap().0, "complete");
}
