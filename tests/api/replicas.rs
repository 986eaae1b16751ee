//! Two replicas on one PostgreSQL database, as behind a load balancer: a
//! write on one reaches the subscribers, the response cache and the
//! persisted-document cache of the other through the notice its transaction
//! sent. On SQLite (one process, one replica) these tests have nothing to
//! prove and return at once; `.ci/postgres.sh` runs them on PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::{Reply, TestApp, TestDatabase};
use crate::subscriptions::{connected, next, next_within, set_price, settle, subscribe, PRICE};

/// The pair of replicas, or `None` on SQLite.
async fn two_replicas() -> Option<(TestApp, TestApp)> {
    TestDatabase::postgres_url()?;
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    Some((a, b))
}

/// Polls `check` until it holds, for at most 3 s (a notice takes a round
/// trip through the database).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(3);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within 3 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_subscriber_on_one_replica_hears_of_a_write_on_the_other() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let mut socket = connected(&a, json!({})).await;
    subscribe(&mut socket, "price", PRICE, json!({ "id": "12" })).await;
    settle(&mut socket).await;

    set_price(&b, "12", 4_321).await;
    let event = next(&mut socket).await;
    assert_eq!(event["id"], "price");
    assert_eq!(
        event["payload"]["data"]["productUpdated"]["price"]["cents"], 4_321,
        "{event}"
    );
    // Once: the writer's replica does not publish it a second time.
    assert!(next_within(&mut socket, Duration::from_millis(500))
        .await
        .is_none());
}

#[tokio::test]
async fn a_write_that_failed_sends_no_event() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let mut socket = connected(&a, json!({})).await;
    subscribe(&mut socket, "price", PRICE, json!({ "id": "7" })).await;
    settle(&mut socket).await;

    // More than any warehouse holds: refused, nothing committed.
    let refused = b
        .query(
            "mutation { placeOrder(input: { idempotencyKey: \"too-much\", \
             items: [{ productId: \"7\", quantity: 1000 }] }) { order { id } } }",
            json!({}),
            Some(&b.customer_token(3)),
        )
        .await;
    assert_eq!(refused.error_codes(), ["OUT_OF_STOCK"], "{}", refused.body);
    assert!(next_within(&mut socket, Duration::from_millis(700))
        .await
        .is_none());

    // A write that commits is heard.
    set_price(&b, "7", 777).await;
    let event = next(&mut socket).await;
    assert_eq!(
        event["payload"]["data"]["productUpdated"]["price"]["cents"],
        777
    );
}

#[tokio::test]
async fn an_order_on_one_replica_is_heard_with_its_stock_on_the_other() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let stock = "{ product(id: \"9\") { inventory { warehouse available } } }";
    let before = a.query(stock, json!({}), None).await.data()["product"]["inventory"].clone();
    let mut socket = connected(&a, json!({})).await;
    subscribe(
        &mut socket,
        "stock",
        "subscription { inventoryChanged(productId: \"9\") { warehouse available } }",
        json!({}),
    )
    .await;
    settle(&mut socket).await;

    let placed = b
        .query(
            "mutation { placeOrder(input: { idempotencyKey: \"heard-on-a\", \
             items: [{ productId: \"9\", quantity: 2 }] }) { order { id } } }",
            json!({}),
            Some(&b.customer_token(3)),
        )
        .await;
    placed.data();
    let event = next_within(&mut socket, Duration::from_secs(5))
        .await
        .expect("A hears of B's order");
    let after = event["payload"]["data"]["inventoryChanged"].clone();
    let total = |levels: &serde_json::Value| -> i64 {
        levels
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["available"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(total(&after), total(&before) - 2, "{before} then {after}");
    // A's cached stock was purged by the same notice.
    assert_eq!(
        a.query(stock, json!({}), None).await.data()["product"]["inventory"],
        after
    );
}

async fn cached_price(app: &TestApp, id: &str) -> (i64, usize) {
    let query = format!("{{ product(id: \"{id}\") {{ price {{ cents }} }} }}");
    let response = app
        .get_graphql()
        .query(&[("query", query)])
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    let cents = reply.data()["product"]["price"]["cents"].as_i64().unwrap();
    (cents, reply.statements())
}

#[tokio::test]
async fn a_price_change_on_one_replica_purges_the_others_cached_answer() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let (before, _) = cached_price(&a, "21").await;
    // The second ask is answered from A's response cache.
    assert_eq!(cached_price(&a, "21").await, (before, 0));

    set_price(&b, "21", before + 1).await;
    // Products are cached for 60 s: only the purge makes A answer anew.
    eventually("A serves the new price", || async {
        cached_price(&a, "21").await.0 == before + 1
    })
    .await;
}

#[tokio::test]
async fn a_document_registered_on_one_replica_is_served_by_the_other_at_once() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let body = "query Replicated { categories { slug } }";
    let id = format!("{:x}", Sha256::digest(body.as_bytes()));
    let run = |app: &TestApp| {
        let request = app
            .client
            .post(app.graphql_url())
            .json(&json!({ "documentId": id }));
        async move { Reply::from(request.send().await.unwrap()).await }
    };
    // A remembers the id as unknown (for 5 s, unless told otherwise).
    assert_eq!(run(&a).await.error_codes(), ["PERSISTED_QUERY_NOT_FOUND"]);

    let manifest = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [{ "id": id, "name": "Replicated", "type": "query", "body": body }],
    });
    let imported = b
        .client
        .post(format!("{}/admin/persisted-queries", b.url))
        .bearer_auth(b.admin_token())
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200);
    let started = Instant::now();
    eventually("A serves the registered document", || async {
        run(&a).await.body["data"]["categories"].is_array()
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "before the miss expired"
    );

    // A removal on B stops A serving it (it had it cached for 60 s).
    let removed = b
        .client
        .delete(format!("{}/admin/persisted-queries/{id}", b.url))
        .bearer_auth(b.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    eventually("A stops serving the removed document", || async {
        let reply: Reply = run(&a).await;
        reply.error_codes() == ["PERSISTED_QUERY_NOT_FOUND"]
    })
    .await;
}
