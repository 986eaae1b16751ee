//! Subscriptions over a real WebSocket (graphql-transport-ws): events arrive
//! with the committed state, authorization is the queries', and the
//! protocol's close codes are the ones the graphql-ws library expects.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::TestApp;

mod legacy;
mod over_http;
mod rate_limits;
mod shutdown;

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) const PRICE: &str =
    "subscription($id: ID!) { productUpdated(id: $id) { id price { cents } } }";
pub(crate) const SET_PRICE: &str =
    "mutation($id: ID!, $cents: Int!) { setProductPrice(productId: $id, cents: $cents) { id } }";

pub(crate) async fn open(app: &TestApp) -> Socket {
    open_with(app, "graphql-transport-ws").await
}

/// A WebSocket to `/graphql` speaking `protocol`.
async fn open_with(app: &TestApp, protocol: &str) -> Socket {
    let (socket, chosen) = open_offering(app, protocol).await;
    assert_eq!(chosen, protocol);
    socket
}

/// A WebSocket to `/graphql` offering the subprotocols `offered`, and the
/// one the server chose.
async fn open_offering(app: &TestApp, offered: &str) -> (Socket, String) {
    let url = format!("{}/graphql", app.url.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", offered.parse().unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (socket, chosen)
}

pub(crate) async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next protocol message (answering the server's pings and skipping
/// the legacy protocol's keepalives on the way), or `None` when nothing came
/// within `wait`.
pub(crate) async fn next_within(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(wait, socket.next()).await.ok()??;
        match message.unwrap() {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["type"] == "ping" {
                    send(socket, json!({ "type": "pong" })).await;
                    continue;
                }
                if value["type"] == "ka" {
                    continue;
                }
                return Some(value);
            }
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

pub(crate) async fn next(socket: &mut Socket) -> Value {
    next_within(socket, Duration::from_secs(30))
        .await
        .expect("a message within 30 s")
}

/// The close code the server ends the socket with.
async fn close_code(socket: &mut Socket) -> u16 {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closed within 10 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) => return u16::from(CloseCode::Status),
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    }
}

/// A socket past `connection_init`, with `init` as its payload.
pub(crate) async fn connected(app: &TestApp, init: Value) -> Socket {
    let mut socket = open(app).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": init }),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "connection_ack");
    socket
}

pub(crate) async fn subscribe(socket: &mut Socket, id: &str, query: &str, variables: Value) {
    send(
        socket,
        json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }),
    )
    .await;
}

/// Waits until the subscriptions sent before it are in place: the server
/// handles a socket's messages in order, and registers a subscription
/// before it handles the next message.
pub(crate) async fn settle(socket: &mut Socket) {
    subscribe(socket, "settle", "{ __typename }", json!({})).await;
    let mut seen = Vec::new();
    loop {
        let message = next(socket).await;
        if message["id"] == "settle" && message["type"] == "complete" {
            break;
        }
        seen.push(message);
    }
    assert!(
        seen.iter().all(|m| m["id"] == "settle"),
        "unexpected: {seen:?}"
    );
}

pub(crate) async fn set_price(app: &TestApp, id: &str, cents: i64) {
    let reply = app
        .query(
            SET_PRICE,
            json!({ "id": id, "cents": cents }),
            Some(&app.admin_token()),
        )
        .await;
    reply.data();
}

#[tokio::test]
async fn a_price_change_over_http_reaches_the_subscriber_with_the_new_price() {
    let app = TestApp::spawn().await;
    let mut socket = connected(&app, json!({})).await;
    subscribe(&mut socket, "1", PRICE, json!({ "id": "3" })).await;
    settle(&mut socket).await;

    set_price(&app, "3", 4321).await;

    let message = next(&mut socket).await;
    assert_eq!(message["type"], "next");
    assert_eq!(message["id"], "1");
    assert_eq!(
        message["payload"]["data"]["productUpdated"],
        json!({ "id": "3", "price": { "cents": 4321 } })
    );

    // After the client completes it, nothing more arrives.
    send(&mut socket, json!({ "id": "1", "type": "complete" })).await;
    settle(&mut socket).await;
    set_price(&app, "3", 1234).await;
    assert_eq!(
        next_within(&mut socket, Duration::from_millis(300)).await,
        None
    );
}

#[tokio::test]
async fn stock_changes_reach_inventory_and_product_subscribers() {
    let app = TestApp::spawn().await;
    let mut socket = connected(&app, json!({})).await;
    subscribe(
        &mut socket,
        "stock",
        "subscription { inventoryChanged(productId: \"5\") { warehouse available } }",
        json!({}),
    )
    .await;
    settle(&mut socket).await;
    let reply = app
        .query(
            "mutation { adjustInventory(productId: \"5\", warehouse: \"new-one\", delta: 7) { available } }",
            json!({}),
            Some(&app.admin_token()),
        )
        .await;
    reply.data();
    let message = next(&mut socket).await;
    let levels = message["payload"]["data"]["inventoryChanged"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        levels.contains(&json!({ "warehouse": "new-one", "available": 7 })),
        "{levels:?}"
    );
}

async fn pending_order(app: &TestApp) -> (String, i64) {
    let reply = app
        .query(
            "{ orders(first: 1, status: PENDING) { nodes { id customer { id } } } }",
            json!({}),
            Some(&app.admin_token()),
        )
        .await;
    let order = &reply.data()["orders"]["nodes"][0];
    (
        order["id"].as_str().unwrap().to_string(),
        order["customer"]["id"].as_str().unwrap().parse().unwrap(),
    )
}

const ORDER: &str = "subscription($id: ID!) { orderStatusChanged(orderId: $id) { id status } }";

#[tokio::test]
async fn the_owner_watches_an_order_move_and_another_customer_is_refused() {
    let app = TestApp::spawn().await;
    let (order, owner) = pending_order(&app).await;

    let mut stranger = connected(
        &app,
        json!({ "authorization": format!("Bearer {}", app.customer_token(owner + 1)) }),
    )
    .await;
    subscribe(&mut stranger, "1", ORDER, json!({ "id": order })).await;
    let refused = next(&mut stranger).await;
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"],
        "FORBIDDEN"
    );
    assert_eq!(next(&mut stranger).await["type"], "complete");

    let mut anonymous = connected(&app, json!({})).await;
    subscribe(&mut anonymous, "1", ORDER, json!({ "id": order })).await;
    let refused = next(&mut anonymous).await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );

    // The `token` form of the payload works too.
    let mut owner_socket = connected(&app, json!({ "token": app.customer_token(owner) })).await;
    subscribe(&mut owner_socket, "mine", ORDER, json!({ "id": order })).await;
    settle(&mut owner_socket).await;
    let reply = app
        .query(
            "mutation($id: ID!) { updateOrderStatus(id: $id, status: PAID) { status } }",
            json!({ "id": order }),
            Some(&app.admin_token()),
        )
        .await;
    reply.data();
    let message = next(&mut owner_socket).await;
    assert_eq!(
        message["payload"]["data"]["orderStatusChanged"],
        json!({ "id": order, "status": "PAID" })
    );
}

#[tokio::test]
async fn the_protocol_close_codes() {
    let app = TestApp::spawn_with(|config| {
        config.subscriptions.init_timeout = Duration::from_millis(300);
    })
    .await;

    // No connection_init in time.
    let mut silent = open(&app).await;
    assert_eq!(close_code(&mut silent).await, 4408);

    // Subscribing before the acknowledgement.
    let mut eager = open(&app).await;
    subscribe(&mut eager, "1", PRICE, json!({ "id": "1" })).await;
    assert_eq!(close_code(&mut eager).await, 4401);

    // A token that does not verify.
    let mut forged = open(&app).await;
    send(
        &mut forged,
        json!({ "type": "connection_init", "payload": { "authorization": "Bearer not-a-token" } }),
    )
    .await;
    assert_eq!(close_code(&mut forged).await, 4403);

    // Two active subscriptions with one id.
    let mut twice = connected(&app, json!({})).await;
    subscribe(&mut twice, "same", PRICE, json!({ "id": "1" })).await;
    subscribe(&mut twice, "same", PRICE, json!({ "id": "2" })).await;
    assert_eq!(close_code(&mut twice).await, 4409);

    // A second connection_init.
    let mut again = connected(&app, json!({})).await;
    send(&mut again, json!({ "type": "connection_init" })).await;
    assert_eq!(close_code(&mut again).await, 4429);

    // Not a protocol message.
    let mut garbled = connected(&app, json!({})).await;
    send(&mut garbled, json!({ "type": "start", "id": "1" })).await;
    assert_eq!(close_code(&mut garbled).await, 4400);
}

#[tokio::test]
async fn the_server_pings_and_answers_pings() {
    let app = TestApp::spawn_with(|config| {
        config.subscriptions.keepalive = Duration::from_millis(200);
    })
    .await;
    let mut socket = connected(&app, json!({})).await;
    send(&mut socket, json!({ "type": "ping" })).await;
    // The server's own pings are answered (and skipped) by `next`.
    assert_eq!(next(&mut socket).await["type"], "pong");
    let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ping: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
    assert_eq!(ping["type"], "ping");

    // A client that stops answering is closed.
    assert_eq!(close_code(&mut socket).await, 3008);
}

#[tokio::test]
async fn subscription_documents_obey_the_limits() {
    let app = TestApp::spawn_with(|config| config.limits.max_depth = 3).await;
    let mut socket = connected(&app, json!({})).await;
    subscribe(
        &mut socket,
        "deep",
        "subscription { productUpdated(id: \"1\") { category { products { nodes { id } } } } }",
        json!({}),
    )
    .await;
    let message = next(&mut socket).await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["id"], "deep");
    assert_eq!(
        message["payload"][0]["extensions"]["code"],
        "QUERY_TOO_DEEP"
    );

    // An invalid document is an error message too; the connection goes on.
    subscribe(&mut socket, "bad", "subscription { nope }", json!({})).await;
    let message = next(&mut socket).await;
    assert_eq!(message["type"], "error");
    assert_eq!(
        message["payload"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
}

#[tokio::test]
async fn connections_and_subscriptions_per_connection_are_bounded() {
    let app = TestApp::spawn_with(|config| {
        config.subscriptions.max_connections = 2;
        config.subscriptions.max_per_connection = 1;
    })
    .await;
    let mut first = connected(&app, json!({})).await;
    let _second = connected(&app, json!({})).await;
    let mut third = open(&app).await;
    assert_eq!(close_code(&mut third).await, 1013);

    subscribe(&mut first, "1", PRICE, json!({ "id": "1" })).await;
    subscribe(&mut first, "2", PRICE, json!({ "id": "2" })).await;
    let message = next(&mut first).await;
    assert_eq!(message["type"], "error");
    assert_eq!(message["id"], "2");
    assert_eq!(
        message["payload"][0]["extensions"]["code"],
        "TOO_MANY_SUBSCRIPTIONS"
    );

    // A closed connection frees its place.
    drop(first);
    let mut retry = None;
    for _ in 0..50 {
        let mut socket = open(&app).await;
        send(&mut socket, json!({ "type": "connection_init" })).await;
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.as_str().contains("connection_ack") => {
                retry = Some(socket);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(retry.is_some(), "the freed place was never given out");
}

#[tokio::test]
async fn a_thousand_subscribers_of_one_product_all_get_one_price_change() {
    const SUBSCRIBERS: usize = 1000;
    // Waits are generous: the machine may be busy with other builds, and
    // only what arrives is asserted, never how fast.
    const PATIENCE: Duration = Duration::from_secs(120);
    let app = TestApp::spawn().await;
    let sockets = futures::stream::iter(0..SUBSCRIBERS)
        .map(|_| async {
            let mut socket = connected(&app, json!({})).await;
            subscribe(&mut socket, "p", PRICE, json!({ "id": "9" })).await;
            settle(&mut socket).await;
            socket
        })
        .buffer_unordered(50)
        .collect::<Vec<_>>()
        .await;
    // Anonymous viewers of one product share one execution.
    assert_eq!(app.state.fanout.executions(), 1);

    set_price(&app, "9", 777).await;

    let received = futures::future::join_all(sockets.into_iter().map(|mut socket| async move {
        let message = next_within(&mut socket, PATIENCE).await;
        let one = message.as_ref().is_some_and(|message| {
            message["id"] == "p"
                && message["payload"]["data"]["productUpdated"]["price"]["cents"] == 777
        });
        // Exactly one: nothing else follows (waiting longer could only
        // make this fail for a real extra message).
        let after = next_within(&mut socket, Duration::from_millis(200)).await;
        (one && after.is_none())
            .then_some(socket)
            .ok_or((message, after))
    }))
    .await;
    let failed: Vec<_> = received.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {SUBSCRIBERS} subscribers did not get exactly the one event; first: {:?}",
        failed.len(),
        failed.first()
    );

    // The last subscriber leaving ends the shared execution.
    drop(received);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.state.fanout.executions() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.state.fanout.executions(), 0);
}

#[tokio::test]
async fn a_subscription_posted_for_one_json_result_is_refused_with_a_code() {
    let app = TestApp::spawn().await;
    let reply = app.query(PRICE, json!({ "id": "1" }), None).await;
    assert_eq!(reply.error_codes(), vec!["SUBSCRIPTION_NEEDS_STREAM"]);
    assert!(reply.body.get("data").is_none(), "{}", reply.body);
}

#[tokio::test]
async fn the_safelist_holds_over_websocket_too() {
    let app = TestApp::spawn_with(|config| {
        config.persisted_queries = commerce_graph::persisted::PersistedMode::Safelist;
    })
    .await;
    let mut socket = connected(&app, json!({})).await;
    subscribe(&mut socket, "1", PRICE, json!({ "id": "1" })).await;
    let message = next(&mut socket).await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(
        message["payload"][0]["extensions"]["code"],
        "QUERY_NOT_IN_SAFELIST"
    );
}

#[tokio::test]
async fn a_subscriber_that_fell_behind_is_told_and_sent_the_current_state() {
    use commerce_graph::auth::Viewer;
    use commerce_graph::events::Event;
    use commerce_graph::graph::{RequestScope, RouterAccess};

    let app = TestApp::spawn_with(|config| config.subscriptions.event_buffer = 1).await;
    let state = &app.state;
    let request = async_graphql::Request::new(PRICE)
        .variables(async_graphql::Variables::from_json(json!({ "id": "9" })))
        .data(commerce_graph::graph::Streamed);
    let (request, _scope) = RequestScope::new(
        request,
        &state.store,
        Viewer::anonymous(),
        RouterAccess::Open,
        &state.config.posture,
        false,
    );
    let mut results = state.schema.execute_stream(request);
    // Nothing yet, but the subscription is in place.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), results.next())
            .await
            .is_err()
    );

    set_price(&app, "9", 555).await;
    // Two more events while the subscriber reads nothing: with a buffer of
    // one, the first two are dropped for it.
    state
        .events
        .publish(Event::ProductUpdated { product_id: 9 });
    state
        .events
        .publish(Event::ProductUpdated { product_id: 9 });

    let told = results.next().await.unwrap();
    assert_eq!(
        told.errors[0]
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .cloned(),
        Some(async_graphql::Value::from("EVENTS_DROPPED"))
    );
    let current = results.next().await.unwrap().data.into_json().unwrap();
    assert_eq!(
        current["productUpdated"]["price"]["cents"], 555,
        "{current}"
    );
    let last = results.next().await.unwrap().data.into_json().unwrap();
    assert_eq!(last["productUpdated"]["price"]["cents"], 555);
}
