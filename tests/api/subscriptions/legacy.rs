//! The legacy `subscriptions-transport-ws` protocol (subprotocol
//! `graphql-ws`) on the same `/graphql`, with the same authorization,
//! limits, safelist and bounds as `graphql-transport-ws`.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{
    close_code, next, next_within, open_offering, open_with, send, set_price, Socket, ORDER, PRICE,
};
use crate::helpers::TestApp;

const LEGACY: &str = "graphql-ws";

async fn legacy(app: &TestApp) -> Socket {
    open_with(app, LEGACY).await
}

/// A legacy socket past `connection_init`: the ack, then a first `ka`.
async fn connected(app: &TestApp, init: Value) -> Socket {
    let mut socket = legacy(app).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": init }),
    )
    .await;
    let ack = next_raw(&mut socket).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    assert_eq!(next_raw(&mut socket).await["type"], "ka");
    socket
}

/// The next text message, keepalives included.
async fn next_raw(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

async fn start(socket: &mut Socket, id: &str, query: &str, variables: Value) {
    send(
        socket,
        json!({ "id": id, "type": "start", "payload": { "query": query, "variables": variables } }),
    )
    .await;
}

/// Waits until the operations started before it are in place (a query's
/// `data` and `complete` come after them).
async fn settle(socket: &mut Socket) {
    start(socket, "settle", "{ __typename }", json!({})).await;
    let data = next(socket).await;
    assert_eq!(
        (data["id"].as_str(), data["type"].as_str()),
        (Some("settle"), Some("data")),
        "{data}"
    );
    assert_eq!(data["payload"]["data"]["__typename"], "Query");
    let complete = next(socket).await;
    assert_eq!(complete, json!({ "id": "settle", "type": "complete" }));
}

#[tokio::test]
async fn a_legacy_client_gets_the_new_price_and_stop_completes() {
    let app = TestApp::spawn().await;
    let mut socket = connected(&app, json!({})).await;
    start(&mut socket, "1", PRICE, json!({ "id": "3" })).await;
    settle(&mut socket).await;

    set_price(&app, "3", 4321).await;
    let message = next(&mut socket).await;
    assert_eq!(message["type"], "data", "{message}");
    assert_eq!(message["id"], "1");
    assert_eq!(
        message["payload"]["data"]["productUpdated"],
        json!({ "id": "3", "price": { "cents": 4321 } })
    );

    // `stop` is confirmed with `complete`; nothing more arrives.
    send(&mut socket, json!({ "id": "1", "type": "stop" })).await;
    assert_eq!(
        next(&mut socket).await,
        json!({ "id": "1", "type": "complete" })
    );
    set_price(&app, "3", 1234).await;
    assert_eq!(
        next_within(&mut socket, Duration::from_millis(300)).await,
        None
    );

    // `connection_terminate` closes normally.
    send(&mut socket, json!({ "type": "connection_terminate" })).await;
    assert_eq!(close_code(&mut socket).await, 1000);
}

#[tokio::test]
async fn offered_both_protocols_the_server_speaks_the_modern_one() {
    let app = TestApp::spawn().await;
    for offered in [
        "graphql-transport-ws, graphql-ws",
        "graphql-ws, graphql-transport-ws",
    ] {
        let (_socket, chosen) = open_offering(&app, offered).await;
        assert_eq!(chosen, "graphql-transport-ws", "offered {offered}");
    }
    // Neither (a client offering none): accepted, then closed with 4406.
    let url = format!("{}/graphql", app.url.replacen("http://", "ws://", 1));
    let (mut neither, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(close_code(&mut neither).await, 4406);
}

#[tokio::test]
async fn legacy_connections_are_authorized_like_queries() {
    let app = TestApp::spawn().await;
    let (order, owner) = super::pending_order(&app).await;

    let mut stranger = connected(
        &app,
        json!({ "authorization": format!("Bearer {}", app.customer_token(owner + 1)) }),
    )
    .await;
    start(&mut stranger, "1", ORDER, json!({ "id": order })).await;
    let refused = next(&mut stranger).await;
    assert_eq!(refused["type"], "data", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"],
        "FORBIDDEN"
    );
    assert_eq!(next(&mut stranger).await["type"], "complete");

    let mut owner_socket = connected(&app, json!({ "token": app.customer_token(owner) })).await;
    start(&mut owner_socket, "mine", ORDER, json!({ "id": order })).await;
    settle(&mut owner_socket).await;
    app.query(
        "mutation($id: ID!) { updateOrderStatus(id: $id, status: PAID) { status } }",
        json!({ "id": order }),
        Some(&app.admin_token()),
    )
    .await
    .data();
    let message = next(&mut owner_socket).await;
    assert_eq!(
        message["payload"]["data"]["orderStatusChanged"],
        json!({ "id": order, "status": "PAID" })
    );

    // A token that does not verify: `connection_error`, then 4403.
    let mut forged = legacy(&app).await;
    send(
        &mut forged,
        json!({ "type": "connection_init", "payload": { "authorization": "Bearer not-a-token" } }),
    )
    .await;
    let error = next_raw(&mut forged).await;
    assert_eq!(error["type"], "connection_error", "{error}");
    assert_eq!(error["payload"]["extensions"]["code"], "UNAUTHENTICATED");
    assert_eq!(close_code(&mut forged).await, 4403);
}

#[tokio::test]
async fn legacy_refusals_are_error_messages_and_the_connection_goes_on() {
    let app = TestApp::spawn_with(|config| {
        config.limits.max_depth = 3;
        config.subscriptions.max_per_connection = 2;
    })
    .await;
    let mut socket = connected(&app, json!({})).await;

    // A document beyond the limits: `error` with the error (one, as the
    // protocol's `error` carries).
    start(
        &mut socket,
        "deep",
        "subscription { productUpdated(id: \"1\") { category { products { nodes { id } } } } }",
        json!({}),
    )
    .await;
    let message = next(&mut socket).await;
    assert_eq!(
        (message["type"].as_str(), message["id"].as_str()),
        (Some("error"), Some("deep")),
        "{message}"
    );
    assert_eq!(message["payload"]["extensions"]["code"], "QUERY_TOO_DEEP");

    // Not JSON: `connection_error`; an unknown type: `error`.
    socket.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next(&mut socket).await["type"], "connection_error");
    send(&mut socket, json!({ "type": "subscribe", "id": "x" })).await;
    let unknown = next(&mut socket).await;
    assert_eq!(
        (unknown["type"].as_str(), unknown["id"].as_str()),
        (Some("error"), Some("x"))
    );

    // The bound on subscriptions per connection holds.
    start(&mut socket, "1", PRICE, json!({ "id": "1" })).await;
    start(&mut socket, "2", PRICE, json!({ "id": "2" })).await;
    start(&mut socket, "3", PRICE, json!({ "id": "4" })).await;
    let message = next(&mut socket).await;
    assert_eq!(message["id"], "3", "{message}");
    assert_eq!(
        message["payload"]["extensions"]["code"],
        "TOO_MANY_SUBSCRIPTIONS"
    );

    // Reusing an id replaces the operation, as the reference server does.
    start(&mut socket, "1", PRICE, json!({ "id": "5" })).await;
    send(&mut socket, json!({ "id": "2", "type": "stop" })).await;
    assert_eq!(
        next(&mut socket).await,
        json!({ "id": "2", "type": "complete" })
    );
    settle(&mut socket).await;
    set_price(&app, "1", 111).await;
    set_price(&app, "5", 555).await;
    let message = next(&mut socket).await;
    assert_eq!(message["id"], "1");
    assert_eq!(
        message["payload"]["data"]["productUpdated"]["id"], "5",
        "{message}"
    );
}

#[tokio::test]
async fn legacy_close_codes_timeouts_and_the_safelist() {
    let app = TestApp::spawn_with(|config| {
        config.subscriptions.init_timeout = Duration::from_millis(300);
        config.subscriptions.keepalive = Duration::from_millis(200);
        config.persisted_queries = commerce_graph::persisted::PersistedMode::Safelist;
    })
    .await;

    let mut silent = legacy(&app).await;
    assert_eq!(close_code(&mut silent).await, 4408);

    let mut eager = legacy(&app).await;
    start(&mut eager, "1", PRICE, json!({ "id": "1" })).await;
    assert_eq!(close_code(&mut eager).await, 4401);

    let mut socket = connected(&app, json!({})).await;
    start(&mut socket, "1", PRICE, json!({ "id": "1" })).await;
    let message = next(&mut socket).await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(
        message["payload"]["extensions"]["code"],
        "QUERY_NOT_IN_SAFELIST"
    );

    // Keepalives come every interval; a client that answers no WebSocket
    // ping (it reads nothing, so its library sends no pong) is closed.
    assert_eq!(next_raw(&mut socket).await["type"], "ka");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(close_code(&mut socket).await, 3008);
}
