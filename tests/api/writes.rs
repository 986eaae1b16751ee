//! Mutations: orders that are safe to retry and race, stock that never goes
//! negative, a status state machine, and admin-only writes.

use futures::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{Reply, TestApp};

const PLACE: &str = "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { replayed \
    order { id number status total { cents } customer { id } items { quantity unitPrice { cents } product { id } } } } }";

const STOCK: &str =
    "query($id: ID!) { product(id: $id) { price { cents } inventory { warehouse available } } }";

async fn stock(app: &TestApp, product: &str) -> (i64, i64) {
    let reply = app.query(STOCK, json!({ "id": product }), None).await;
    let product = &reply.data()["product"];
    let total = product["inventory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["available"].as_i64().unwrap())
        .sum();
    (total, product["price"]["cents"].as_i64().unwrap())
}

/// Sets a product's total stock to exactly `units` (all in `east`).
async fn set_stock(app: &TestApp, product: &str, units: i64) {
    let admin = app.admin_token();
    let reply = app.query(STOCK, json!({ "id": product }), None).await;
    for level in reply.data()["product"]["inventory"]
        .as_array()
        .unwrap()
        .clone()
    {
        let warehouse = level["warehouse"].as_str().unwrap().to_string();
        let target = if warehouse == "east" { units } else { 0 };
        let delta = target - level["available"].as_i64().unwrap();
        let adjusted = app
            .query(
                "mutation($p: ID!, $w: String!, $d: Int!) { adjustInventory(productId: $p, warehouse: $w, delta: $d) { available } }",
                json!({ "p": product, "w": warehouse, "d": delta }),
                Some(&admin),
            )
            .await;
        assert_eq!(adjusted.data()["adjustInventory"]["available"], target);
    }
}

fn place_input(key: &str, items: Value) -> Value {
    json!({ "input": { "idempotencyKey": key, "items": items } })
}

async fn place(app: &TestApp, customer: i64, key: &str, items: Value) -> Reply {
    app.query(
        PLACE,
        place_input(key, items),
        Some(&app.customer_token(customer)),
    )
    .await
}

/// The distinct orders that `replies` to `placeOrder` name; each must name one.
fn order_ids(replies: &[Reply]) -> std::collections::BTreeSet<String> {
    replies
        .iter()
        .map(|r| {
            r.data()["placeOrder"]["order"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no order in {}", r.body))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn placing_an_order_takes_stock_at_database_prices() {
    let app = TestApp::spawn().await;
    set_stock(&app, "21", 8).await;
    let (before, price) = stock(&app, "21").await;
    let reply = place(
        &app,
        5,
        "k-1",
        json!([{ "productId": "21", "quantity": 3 }]),
    )
    .await;
    let payload = &reply.data()["placeOrder"];
    assert_eq!(payload["replayed"], false);
    let order = &payload["order"];
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["customer"]["id"], "5");
    assert_eq!(order["total"]["cents"], price * 3);
    assert_eq!(order["items"][0]["unitPrice"]["cents"], price);
    // The number is made from the id, as the seeded orders' are.
    let id: i64 = order["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(order["number"], format!("CG-{id:08}"));
    assert_eq!(stock(&app, "21").await.0, before - 3);

    // The answer is what committed: read back, the order is the same.
    let read = app
        .query(
            "query($id: ID!) { order(id: $id) { id number status total { cents } \
             customer { id } items { quantity unitPrice { cents } product { id } } } }",
            json!({ "id": order["id"] }),
            Some(&app.customer_token(5)),
        )
        .await;
    assert_eq!(&read.data()["order"], order);

    // The customer sees it among their orders.
    let mine = app
        .query(
            "{ me { orders(first: 1) { nodes { id } } } }",
            json!({}),
            Some(&app.customer_token(5)),
        )
        .await;
    assert_eq!(mine.data()["me"]["orders"]["nodes"][0]["id"], order["id"]);
}

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_same_order_and_takes_stock_once() {
    let app = TestApp::spawn().await;
    set_stock(&app, "22", 10).await;
    let items = json!([{ "productId": "22", "quantity": 2 }]);
    let first = place(&app, 6, "retry-me", items.clone()).await;
    let again = place(&app, 6, "retry-me", items).await;
    assert_eq!(again.data()["placeOrder"]["replayed"], true);
    assert_eq!(
        first.data()["placeOrder"]["order"]["id"],
        again.data()["placeOrder"]["order"]["id"]
    );
    assert_eq!(stock(&app, "22").await.0, 8);

    // The same key for a different order is refused.
    let reused = place(
        &app,
        6,
        "retry-me",
        json!([{ "productId": "22", "quantity": 1 }]),
    )
    .await;
    assert_eq!(reused.error_codes(), ["IDEMPOTENCY_KEY_REUSED"]);
    // Keys belong to a customer: another customer may use the same text.
    let other = place(
        &app,
        7,
        "retry-me",
        json!([{ "productId": "22", "quantity": 1 }]),
    )
    .await;
    assert_eq!(other.data()["placeOrder"]["replayed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_of_an_order_that_took_the_last_units_returns_that_order() {
    let app = TestApp::spawn().await;
    set_stock(&app, "25", 2).await;
    let items = json!([{ "productId": "25", "quantity": 2 }]);
    let first = place(&app, 9, "last-units", items.clone()).await;
    let again = place(&app, 9, "last-units", items.clone()).await;
    assert_eq!(
        again.data()["placeOrder"]["replayed"],
        true,
        "{}",
        again.body
    );
    assert_eq!(
        first.data()["placeOrder"]["order"]["id"],
        again.data()["placeOrder"]["order"]["id"]
    );
    // Concurrent retries, as a client whose connection dropped sends them.
    set_stock(&app, "26", 1).await;
    let items = json!([{ "productId": "26", "quantity": 1 }]);
    let replies = join_all((0..10).map(|_| place(&app, 9, "last-unit", items.clone()))).await;
    let ids = order_ids(&replies);
    assert_eq!(ids.len(), 1, "one order: {ids:?}");
    assert_eq!(stock(&app, "26").await.0, 0);
    // Another customer asking for the same unit is told it is gone.
    let late = place(&app, 10, "last-unit", items).await;
    assert_eq!(late.error_codes(), ["OUT_OF_STOCK"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_retries_create_exactly_one_order() {
    let app = TestApp::spawn().await;
    set_stock(&app, "23", 100).await;
    let items = json!([{ "productId": "23", "quantity": 1 }]);
    let replies = join_all((0..20).map(|_| place(&app, 8, "one-key", items.clone()))).await;
    let ids = order_ids(&replies);
    assert_eq!(ids.len(), 1, "one order: {ids:?}");
    let created = replies
        .iter()
        .filter(|r| r.data()["placeOrder"]["replayed"] == false)
        .count();
    assert_eq!(created, 1);
    assert_eq!(stock(&app, "23").await.0, 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_buyers_of_ten_units_leave_exactly_ten_sold_and_none_left() {
    let app = TestApp::spawn().await;
    set_stock(&app, "24", 10).await;
    let replies = join_all((0..50).map(|i| {
        let app = &app;
        async move {
            place(
                app,
                100 + i,
                &format!("race-{i}"),
                json!([{ "productId": "24", "quantity": 1 }]),
            )
            .await
        }
    }))
    .await;
    let sold = replies
        .iter()
        .filter(|r| r.body.get("errors").is_none())
        .count();
    let refused: Vec<_> = replies
        .iter()
        .filter(|r| r.body.get("errors").is_some())
        .collect();
    assert_eq!(sold, 10);
    assert!(refused.iter().all(|r| r.error_codes() == ["OUT_OF_STOCK"]));
    assert_eq!(
        refused[0].body["errors"][0]["extensions"]["productId"],
        "24"
    );
    assert_eq!(stock(&app, "24").await.0, 0);
}

/// Racing orders of two products, their lines in either order, for stock
/// split across warehouses: no deadlock, exactly the stock there was is
/// sold, and cancelling every order puts back exactly what each took.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_orders_of_two_products_take_split_stock_exactly_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    set_stock(&app, "28", 30).await;
    set_stock(&app, "29", 1000).await;
    let west = "mutation { adjustInventory(productId: \"28\", warehouse: \"west\", delta: 40) { available } }";
    app.query(west, json!({}), Some(&admin)).await.data();
    let before = app.query(STOCK, json!({ "id": "28" }), None).await;
    let levels = before.data()["product"]["inventory"].clone();
    let replies = join_all((0..100).map(|i| {
        let app = &app;
        let lines = if i % 2 == 0 {
            json!([{ "productId": "28", "quantity": 1 }, { "productId": "29", "quantity": 1 }])
        } else {
            json!([{ "productId": "29", "quantity": 1 }, { "productId": "28", "quantity": 1 }])
        };
        async move { place(app, 200 + i, &format!("split-race-{i}"), lines).await }
    }))
    .await;
    let (sold, refused): (Vec<_>, Vec<_>) = replies
        .into_iter()
        .partition(|r| r.body.get("errors").is_none());
    for reply in &refused {
        assert_eq!(reply.error_codes(), ["OUT_OF_STOCK"], "{}", reply.body);
    }
    assert_eq!(sold.len(), 70, "30 in east and 40 in west");
    assert_eq!(stock(&app, "28").await.0, 0);
    assert_eq!(stock(&app, "29").await.0, 930);

    let cancel = "mutation($id: ID!) { cancelOrder(id: $id) { status } }";
    for (i, reply) in sold.iter().enumerate() {
        let id = &reply.data()["placeOrder"]["order"]["id"];
        let cancelled = app.query(cancel, json!({ "id": id }), Some(&admin)).await;
        assert_eq!(
            cancelled.data()["cancelOrder"]["status"],
            "CANCELLED",
            "order {i}"
        );
    }
    let after = app.query(STOCK, json!({ "id": "28" }), None).await;
    assert_eq!(after.data()["product"]["inventory"], levels);
    assert_eq!(stock(&app, "29").await.0, 1000);
}

#[tokio::test]
async fn an_order_of_two_currencies_is_refused_and_an_unknown_product_named_first() {
    let app = TestApp::spawn().await;
    app.execute_sql("UPDATE products SET currency = 'EUR' WHERE id = 31")
        .await;
    let (before, _) = stock(&app, "30").await;
    let mixed = place(
        &app,
        14,
        "two-currencies",
        json!([{ "productId": "30", "quantity": 1 }, { "productId": "31", "quantity": 1 }]),
    )
    .await;
    assert_eq!(mixed.error_codes(), ["BAD_USER_INPUT"], "{}", mixed.body);
    assert_eq!(stock(&app, "30").await.0, before, "nothing taken");
    let unknown = place(
        &app,
        14,
        "two-currencies-and-a-ghost",
        json!([
            { "productId": "30", "quantity": 1 },
            { "productId": "31", "quantity": 1 },
            { "productId": "999999", "quantity": 1 }
        ]),
    )
    .await;
    assert_eq!(unknown.error_codes(), ["NOT_FOUND"], "{}", unknown.body);
}

#[tokio::test]
async fn an_order_takes_all_its_lines_or_none() {
    let app = TestApp::spawn().await;
    set_stock(&app, "25", 5).await;
    set_stock(&app, "26", 1).await;
    let reply = place(
        &app,
        9,
        "all-or-none",
        json!([{ "productId": "25", "quantity": 2 }, { "productId": "26", "quantity": 2 }]),
    )
    .await;
    assert_eq!(reply.error_codes(), ["OUT_OF_STOCK"]);
    assert_eq!(reply.body["errors"][0]["extensions"]["productId"], "26");
    assert_eq!(stock(&app, "25").await.0, 5, "nothing taken");
    assert_eq!(stock(&app, "26").await.0, 1);
    // The key was not consumed by the failed attempt.
    set_stock(&app, "26", 2).await;
    let retried = place(
        &app,
        9,
        "all-or-none",
        json!([{ "productId": "25", "quantity": 2 }, { "productId": "26", "quantity": 2 }]),
    )
    .await;
    assert_eq!(retried.data()["placeOrder"]["replayed"], false);
}

#[tokio::test]
async fn stock_taken_across_warehouses_comes_back_on_cancel() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    set_stock(&app, "27", 3).await;
    app.query(
        "mutation { adjustInventory(productId: \"27\", warehouse: \"west\", delta: 2) { available } }",
        json!({}),
        Some(&admin),
    )
    .await
    .data();
    let reply = place(
        &app,
        10,
        "split",
        json!([{ "productId": "27", "quantity": 4 }]),
    )
    .await;
    let id = reply.data()["placeOrder"]["order"]["id"].clone();
    assert_eq!(stock(&app, "27").await.0, 1);

    let stranger = app
        .query(
            "mutation($id: ID!) { cancelOrder(id: $id) { status } }",
            json!({ "id": id }),
            Some(&app.customer_token(11)),
        )
        .await;
    assert_eq!(stranger.error_codes(), ["FORBIDDEN"]);

    let cancel = "mutation($id: ID!) { cancelOrder(id: $id) { status } }";
    let cancelled = app
        .query(cancel, json!({ "id": id }), Some(&app.customer_token(10)))
        .await;
    assert_eq!(cancelled.data()["cancelOrder"]["status"], "CANCELLED");
    let levels = app.query(STOCK, json!({ "id": "27" }), None).await;
    let inventory = levels.data()["product"]["inventory"].clone();
    assert_eq!(
        inventory,
        json!([{ "warehouse": "east", "available": 3 }, { "warehouse": "west", "available": 2 }])
    );

    let twice = app
        .query(cancel, json!({ "id": id }), Some(&app.customer_token(10)))
        .await;
    assert_eq!(twice.error_codes(), ["INVALID_STATUS_TRANSITION"]);
    assert_eq!(stock(&app, "27").await.0, 5, "restored once");
}

#[tokio::test]
async fn every_illegal_status_transition_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    set_stock(&app, "28", 50).await;
    let statuses = ["PENDING", "PAID", "SHIPPED", "DELIVERED", "CANCELLED"];
    let legal = [
        ("PENDING", "PAID"),
        ("PAID", "SHIPPED"),
        ("SHIPPED", "DELIVERED"),
        ("PENDING", "CANCELLED"),
        ("PAID", "CANCELLED"),
    ];
    // The path that reaches each status from PENDING.
    let path_to = |status: &str| -> Vec<&str> {
        match status {
            "PENDING" => vec![],
            "PAID" => vec!["PAID"],
            "SHIPPED" => vec!["PAID", "SHIPPED"],
            "DELIVERED" => vec!["PAID", "SHIPPED", "DELIVERED"],
            _ => vec!["CANCELLED"],
        }
    };
    let update = "mutation($id: ID!, $s: OrderStatus!) { updateOrderStatus(id: $id, status: $s) { status } }";
    let mut n = 0;
    for from in statuses {
        for to in statuses {
            n += 1;
            let placed = place(
                &app,
                12,
                &format!("sm-{n}"),
                json!([{ "productId": "28", "quantity": 1 }]),
            )
            .await;
            let id = placed.data()["placeOrder"]["order"]["id"].clone();
            for step in path_to(from) {
                let moved = app
                    .query(update, json!({ "id": id, "s": step }), Some(&admin))
                    .await;
                assert_eq!(moved.data()["updateOrderStatus"]["status"], step);
            }
            let reply = app
                .query(update, json!({ "id": id, "s": to }), Some(&admin))
                .await;
            if legal.contains(&(from, to)) {
                assert_eq!(
                    reply.data()["updateOrderStatus"]["status"],
                    to,
                    "{from} -> {to}"
                );
            } else {
                assert_eq!(
                    reply.error_codes(),
                    ["INVALID_STATUS_TRANSITION"],
                    "{from} -> {to}"
                );
                assert_eq!(reply.body["errors"][0]["extensions"]["from"], from);
            }
        }
    }
}

#[tokio::test]
async fn invalid_inputs_name_the_field_at_fault() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!([{ "productId": "1", "quantity": 0 }]),
            "input.items[0].quantity",
        ),
        (
            json!([{ "productId": "1", "quantity": 1001 }]),
            "input.items[0].quantity",
        ),
        (
            json!([{ "productId": "x", "quantity": 1 }]),
            "input.items[0].productId",
        ),
        (
            json!([{ "productId": "1", "quantity": 1 }, { "productId": "1", "quantity": 1 }]),
            "input.items[1].productId",
        ),
        (json!([]), "input.items"),
        (
            json!((0..101)
                .map(|i| json!({ "productId": (i + 1).to_string(), "quantity": 1 }))
                .collect::<Vec<_>>()),
            "input.items",
        ),
    ];
    for (items, field) in cases {
        let reply = place(&app, 13, "bad", items).await;
        assert_eq!(reply.error_codes(), ["BAD_USER_INPUT"], "{field}");
        assert_eq!(reply.body["errors"][0]["extensions"]["field"], field);
    }
    let empty_key = place(&app, 13, " ", json!([{ "productId": "1", "quantity": 1 }])).await;
    assert_eq!(
        empty_key.body["errors"][0]["extensions"]["field"],
        "input.idempotencyKey"
    );
    let unknown = place(
        &app,
        13,
        "ghost",
        json!([{ "productId": "999999", "quantity": 1 }]),
    )
    .await;
    assert_eq!(unknown.error_codes(), ["NOT_FOUND"]);

    let review = "mutation($r: Int!, $t: String!) { addReview(input: { productId: \"1\", rating: $r, text: $t }) { id } }";
    let token = app.customer_token(13);
    let bad_rating = app
        .query(review, json!({ "r": 6, "t": "fine" }), Some(&token))
        .await;
    assert_eq!(
        bad_rating.body["errors"][0]["extensions"]["field"],
        "input.rating"
    );
    let empty = app
        .query(review, json!({ "r": 4, "t": "   " }), Some(&token))
        .await;
    assert_eq!(empty.body["errors"][0]["extensions"]["field"], "input.text");
    let long = app
        .query(
            review,
            json!({ "r": 4, "t": "x".repeat(2001) }),
            Some(&token),
        )
        .await;
    assert_eq!(long.body["errors"][0]["extensions"]["field"], "input.text");

    let price = app
        .query(
            "mutation { setProductPrice(productId: \"1\", cents: 0) { id } }",
            json!({}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(price.body["errors"][0]["extensions"]["field"], "cents");
    let negative = app
        .query("mutation { adjustInventory(productId: \"1\", warehouse: \"east\", delta: -100000) { available } }", json!({}), Some(&app.admin_token()))
        .await;
    assert_eq!(negative.error_codes(), ["BAD_USER_INPUT"]);
}

#[tokio::test]
async fn admin_writes_need_an_admin_and_orders_need_a_customer() {
    let app = TestApp::spawn().await;
    let writes = [
        "mutation { setProductPrice(productId: \"1\", cents: 999) { id } }",
        "mutation { adjustInventory(productId: \"1\", warehouse: \"east\", delta: 1) { available } }",
        "mutation { updateOrderStatus(id: \"1\", status: PAID) { id } }",
    ];
    for write in writes {
        let anonymous = app.query(write, json!({}), None).await;
        assert_eq!(anonymous.error_codes(), ["UNAUTHENTICATED"], "{write}");
        let customer = app
            .query(write, json!({}), Some(&app.customer_token(1)))
            .await;
        assert_eq!(customer.error_codes(), ["FORBIDDEN"], "{write}");
    }
    let operator = place_input("op", json!([{ "productId": "1", "quantity": 1 }]));
    let reply = app.query(PLACE, operator, Some(&app.admin_token())).await;
    assert_eq!(reply.error_codes(), ["FORBIDDEN"]);
    let anonymous = app
        .query(
            PLACE,
            place_input("anon", json!([{ "productId": "1", "quantity": 1 }])),
            None,
        )
        .await;
    assert_eq!(anonymous.error_codes(), ["UNAUTHENTICATED"]);
}

#[tokio::test]
async fn new_prices_apply_to_new_orders_and_reviews_count() {
    let app = TestApp::spawn().await;
    set_stock(&app, "29", 10).await;
    let admin = app.admin_token();
    let priced = app
        .query("mutation { setProductPrice(productId: \"29\", cents: 1234) { price { amount cents } } }", json!({}), Some(&admin))
        .await;
    assert_eq!(
        priced.data()["setProductPrice"]["price"],
        json!({ "amount": "12.34", "cents": 1234 })
    );
    let order = place(
        &app,
        14,
        "priced",
        json!([{ "productId": "29", "quantity": 2 }]),
    )
    .await;
    assert_eq!(order.data()["placeOrder"]["order"]["total"]["cents"], 2468);

    let count = |reply: &Reply| reply.data()["product"]["reviewCount"].as_i64().unwrap();
    let before = app
        .query("{ product(id: \"29\") { reviewCount } }", json!({}), None)
        .await;
    let added = app
        .query(
            "mutation { addReview(input: { productId: \"29\", rating: 5, text: \" Lovely \" }) { text rating author { id } product { id } } }",
            json!({}),
            Some(&app.customer_token(14)),
        )
        .await;
    assert_eq!(
        added.data()["addReview"],
        json!({ "text": "Lovely", "rating": 5, "author": { "id": "14" }, "product": { "id": "29" } })
    );
    let after = app
        .query("{ product(id: \"29\") { reviewCount } }", json!({}), None)
        .await;
    assert_eq!(count(&after), count(&before) + 1);
}
