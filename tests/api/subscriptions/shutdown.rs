//! Graceful shutdown: every subscriber is sent what is on its way, then
//! told the server is going away in its protocol's words, and the server
//! exits.

use serde_json::json;

use super::over_http::stream;
use super::{close_code, connected, next, open_with, send, settle, subscribe, PRICE};
use crate::helpers::TestApp;

#[tokio::test]
async fn at_shutdown_every_subscriber_gets_its_event_then_the_going_away_close() {
    let mut app = TestApp::spawn().await;
    let mut modern = connected(&app, json!({})).await;
    subscribe(&mut modern, "1", PRICE, json!({ "id": "6" })).await;
    settle(&mut modern).await;

    let mut legacy = open_with(&app, "graphql-ws").await;
    send(&mut legacy, json!({ "type": "connection_init" })).await;
    assert_eq!(next(&mut legacy).await["type"], "connection_ack");
    send(
        &mut legacy,
        json!({ "id": "1", "type": "start", "payload": { "query": PRICE, "variables": { "id": "6" } } }),
    )
    .await;
    send(
        &mut legacy,
        json!({ "id": "q", "type": "start", "payload": { "query": "{ __typename }" } }),
    )
    .await;
    assert_eq!(next(&mut legacy).await["id"], "q");
    assert_eq!(next(&mut legacy).await["type"], "complete");

    let accept = "multipart/mixed;subscriptionSpec=\"1.0\", application/json";
    let mut multipart = stream(&app, accept, PRICE, json!({ "id": "6" }), None).await;
    let mut sse = stream(&app, "text/event-stream", PRICE, json!({ "id": "6" }), None).await;

    // An event on its way as the server is told to stop.
    app.state
        .events
        .publish(commerce_graph::events::Event::ProductUpdated { product_id: 6 });
    app.shut_down().await;

    let event = next(&mut modern).await;
    assert_eq!(
        event["payload"]["data"]["productUpdated"]["id"], "6",
        "{event}"
    );
    assert_eq!(close_code(&mut modern).await, 1001);

    let event = next(&mut legacy).await;
    assert_eq!(event["type"], "data", "{event}");
    assert_eq!(close_code(&mut legacy).await, 1001);

    let part = multipart.next_payload().await.unwrap();
    assert_eq!(
        part["payload"]["data"]["productUpdated"]["id"], "6",
        "{part}"
    );
    let last = multipart.next_payload().await.unwrap();
    assert_eq!(last["payload"], serde_json::Value::Null, "{last}");
    assert_eq!(last["errors"][0]["extensions"]["code"], "SHUTTING_DOWN");
    assert_eq!(multipart.next_payload().await, None);

    // SSE: the event, then the end of the stream without `complete`, so
    // the client reconnects.
    assert_eq!(sse.next_event().await.unwrap().0, "next");
    assert_eq!(sse.next_event().await, None);
}
