//! What operators rely on, through HTTP: `/metrics` moves when requests are
//! made and is closed when it should be; rate limits by cost refuse a greedy
//! client with 429 and the IETF fields while others go on; readiness tells
//! when the database is gone.

use std::time::Duration;

use commerce_graph::config::Profile;
use commerce_graph::limits::rate::TierLimits;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Reply, TestApp};

const WORKLOADS: &str = include_str!("../../persisted-queries/workloads.json");
/// ProductPage in `persisted-queries/workloads.json` (registered cost 32).
const PRODUCT_PAGE_ID: &str = "c71a9005156b657848932f430700c866a264839ccb96f0d8bd889b406b4c9890";
/// Costs 1 + 10 × (1 + 5 × 1) = 61.
const LISTING: &str = "{ products(first: 10) { nodes { id reviews(first: 5) { rating } } } }";

async fn metrics(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    response.text().await.unwrap()
}

/// The value of the sample `series` (name and labels, as Prometheus prints
/// them), or 0 when it is not there yet.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0.0)
}

async fn import_workloads(app: &TestApp) {
    let response = app
        .client
        .post(format!("{}/admin/persisted-queries", app.url))
        .bearer_auth(app.admin_token())
        .body(WORKLOADS)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

async fn post(app: &TestApp, body: Value, token: Option<&str>) -> Reply {
    let mut request = app.client.post(app.graphql_url()).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Reply::from(request.send().await.unwrap()).await
}

#[tokio::test]
async fn metrics_move_when_requests_are_made() {
    let app = TestApp::spawn().await;
    import_workloads(&app).await;
    let before = metrics(&app).await;

    // An ad-hoc query (twice: the second is a response-cache hit), a
    // registered document by id, a document that does not validate.
    for _ in 0..2 {
        app.query(
            "{ products(first: 3) { nodes { id title } } }",
            json!({}),
            None,
        )
        .await
        .data();
    }
    post(
        &app,
        json!({ "documentId": PRODUCT_PAGE_ID, "variables": { "id": "1" } }),
        None,
    )
    .await
    .data();
    let invalid = app.query("{ nope }", json!({}), None).await;
    assert_eq!(invalid.error_codes(), ["GRAPHQL_VALIDATION_FAILED"]);

    let after = metrics(&app).await;
    assert!(after.contains("# TYPE graphql_request_duration_seconds histogram"));
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        moved("graphql_requests_total{operation=\"unregistered\",outcome=\"ok\"}"),
        2.0
    );
    assert_eq!(
        moved("graphql_requests_total{operation=\"ProductPage\",outcome=\"ok\"}"),
        1.0
    );
    assert_eq!(
        moved("graphql_requests_total{operation=\"unregistered\",outcome=\"refused\"}"),
        1.0
    );
    assert_eq!(
        moved("graphql_errors_total{code=\"GRAPHQL_VALIDATION_FAILED\"}"),
        1.0
    );
    assert_eq!(
        moved("graphql_request_duration_seconds_count{operation=\"ProductPage\",outcome=\"ok\"}"),
        1.0
    );
    assert!(moved("graphql_sql_statements_count") >= 4.0);
    assert!(moved("graphql_sql_statements_sum") >= 5.0, "{after}");
    assert!(moved("graphql_dataloader_batch_size_count{entity=\"ImagesOf\"}") >= 1.0);
    assert_eq!(
        moved("graphql_cache_requests_total{cache=\"response\",result=\"hit\"}"),
        1.0
    );
    assert!(moved("graphql_cache_requests_total{cache=\"response\",result=\"miss\"}") >= 1.0);
    assert!(
        sample(
            &after,
            "graphql_cache_requests_total{cache=\"persisted_query\",result=\"miss\"}"
        ) >= 1.0
    );
    assert_eq!(sample(&after, "db_pool_max_connections"), 4.0);
    assert!(after.contains("db_pool_connections{state=\"idle\"}"));
    // Operation names of unregistered documents never become labels.
    assert!(!after.contains("operation=\"{"));
}

#[tokio::test]
async fn the_request_scoped_entity_cache_counts_its_hits_and_misses() {
    let app = TestApp::spawn().await;
    let before = metrics(&app).await;
    // Product 1 is asked for twice and loaded once; product 2 and product
    // 1's category are loaded: 4 look-ups, 1 hit, 3 misses.
    app.query(
        "{ a: product(id: \"1\") { title } b: product(id: \"1\") { category { name } } \
         c: product(id: \"2\") { title } }",
        json!({}),
        None,
    )
    .await
    .data();
    let after = metrics(&app).await;
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(
        moved("graphql_cache_requests_total{cache=\"entity\",result=\"hit\"}"),
        1.0
    );
    assert_eq!(
        moved("graphql_cache_requests_total{cache=\"entity\",result=\"miss\"}"),
        3.0
    );
}

#[tokio::test]
async fn websocket_connections_and_subscriptions_are_gauged() {
    let app = TestApp::spawn().await;
    let url = format!("{}/graphql", app.url.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = |message: Value| Message::Text(message.to_string().into());
    socket
        .send(send(json!({ "type": "connection_init" })))
        .await
        .unwrap();
    socket
        .send(send(json!({ "id": "1", "type": "subscribe", "payload": {
            "query": "subscription { productUpdated(id: \"1\") { id } }" } })))
        .await
        .unwrap();
    // A second operation, answered at once: once its result is here, the
    // subscription sent before it is in place.
    socket
        .send(send(
            json!({ "id": "2", "type": "subscribe", "payload": { "query": "{ __typename }" } }),
        ))
        .await
        .unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["id"] == "2" && value["type"] == "complete" {
                break;
            }
        }
    }
    let open = metrics(&app).await;
    assert_eq!(sample(&open, "graphql_websocket_connections"), 1.0);
    assert_eq!(sample(&open, "graphql_subscriptions_active"), 1.0);

    socket.close(None).await.unwrap();
    // The server notices the close on its own time: ask until it has.
    let mut closed = String::new();
    for _ in 0..100 {
        closed = metrics(&app).await;
        if sample(&closed, "graphql_websocket_connections") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sample(&closed, "graphql_websocket_connections"), 0.0);
    assert_eq!(sample(&closed, "graphql_subscriptions_active"), 0.0);
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set_and_are_off_in_production_without() {
    let token = "metrics-token-0123456789";
    let app = TestApp::spawn_with(|config| config.metrics_token = Some(token.into())).await;
    let url = format!("{}/metrics", app.url);
    let anonymous = app.client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let scraper = app
        .client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(scraper.status(), 200);

    let production = TestApp::spawn_with(|config| config.profile = Profile::Production).await;
    let response = production
        .client
        .get(format!("{}/metrics", production.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let off = TestApp::spawn_with(|config| config.metrics = false).await;
    let response = off
        .client
        .get(format!("{}/metrics", off.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// Customers get `capacity` points, `restore_rate` restored per second, 2
/// requests in flight.
async fn small_budgets(capacity: u64, restore_rate: u64) -> TestApp {
    TestApp::spawn_with(|config| {
        config.rate_limits.customer = TierLimits {
            capacity,
            restore_rate,
            max_concurrent: 2,
        };
    })
    .await
}

/// `r`, the points left, in a `RateLimit` field.
fn remaining(reply: &Reply) -> u64 {
    let field = reply.headers["ratelimit"].to_str().unwrap();
    let r = field.split(';').find_map(|p| p.strip_prefix("r=")).unwrap();
    r.parse().unwrap()
}

fn with_cost(query: &str) -> Value {
    json!({ "query": query, "extensions": { "cost": true } })
}

#[tokio::test]
async fn a_client_over_its_budget_gets_429_and_another_is_unaffected() {
    let app = small_budgets(100, 1).await;
    let greedy = app.customer_token(1);
    let other = app.customer_token(2);

    let first = post(&app, with_cost(LISTING), Some(&greedy)).await;
    first.data();
    let cost = &first.body["extensions"]["cost"];
    assert_eq!(cost["requestedQueryCost"], 61);
    assert_eq!(cost["throttleStatus"]["maximumAvailable"], 100);
    assert_eq!(cost["throttleStatus"]["restoreRate"], 1);
    let available = cost["throttleStatus"]["currentlyAvailable"]
        .as_u64()
        .unwrap();
    assert!((39..=40).contains(&available), "{available}");
    assert_eq!(
        first.headers["ratelimit-policy"],
        "\"customer\";q=100;w=100"
    );
    assert!(first.headers["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"customer\";r="));
    assert!((39..=40).contains(&remaining(&first)));

    let refused = post(&app, with_cost(LISTING), Some(&greedy)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.error_codes(), ["RATE_LIMITED"]);
    assert!(refused.body.get("data").is_none());
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((20..=22).contains(&retry), "{retry}");
    assert_eq!(
        refused.headers["ratelimit-policy"],
        "\"customer\";q=100;w=100"
    );
    assert!((39..=40).contains(&remaining(&refused)));
    let extensions = &refused.body["errors"][0]["extensions"];
    assert_eq!(extensions["throttleStatus"]["maximumAvailable"], 100);
    assert!(extensions["requestId"].is_string());

    // Another customer, and an anonymous client, have their own buckets.
    post(&app, with_cost(LISTING), Some(&other)).await.data();
    post(&app, with_cost(LISTING), None).await.data();

    let text = metrics(&app).await;
    assert_eq!(
        sample(
            &text,
            "graphql_rate_limited_total{reason=\"cost\",tier=\"customer\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "graphql_requests_total{operation=\"unregistered\",outcome=\"rate_limited\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn registered_documents_spend_their_registered_cost_and_cost_reports_stay_private() {
    let app = small_budgets(100, 1).await;
    import_workloads(&app).await;
    let token = app.customer_token(3);
    let page = json!({ "documentId": PRODUCT_PAGE_ID, "variables": { "id": "1" },
                       "extensions": { "cost": true } });
    let available = |reply: &Reply| {
        reply.data();
        reply.body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
            .as_u64()
            .unwrap()
    };
    // 32 points a time, whatever the variables (1 point a second comes back).
    let first = available(&post(&app, page.clone(), Some(&token)).await);
    assert!((68..=69).contains(&first), "{first}");
    let second = available(&post(&app, page.clone(), Some(&token)).await);
    assert!(
        (31..=32).contains(&(first - second)),
        "{first} then {second}"
    );
    let third = available(&post(&app, page, Some(&token)).await);
    assert!(
        (31..=32).contains(&(second - third)),
        "{second} then {third}"
    );
    // An anonymous answer that reports the bucket is not public, and is
    // never a response-cache hit.
    for _ in 0..2 {
        let anonymous = post(&app, with_cost("{ categories { slug } }"), None).await;
        assert!(anonymous.headers["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private"));
        assert_eq!(anonymous.statements(), 1);
    }
}

/// Sends a POST's headers and half its body, leaving the request in flight.
async fn half_sent(app: &TestApp, token: &str) -> tokio::net::TcpStream {
    let body = json!({ "query": "{ __typename }" }).to_string();
    let address = app.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         authorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        body.len(),
        &body[..10]
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[tokio::test]
async fn requests_in_flight_are_bounded_per_client() {
    let app = small_budgets(10_000, 100).await;
    let token = app.customer_token(4);
    let body = json!({ "query": "{ __typename }" }).to_string();
    let mut slow = vec![half_sent(&app, &token).await, half_sent(&app, &token).await];
    // Once both slow requests are in, a third from the same client is one
    // too many; until then it may still get through.
    let mut refused = None;
    for _ in 0..100 {
        let reply = post(&app, json!({ "query": "{ __typename }" }), Some(&token)).await;
        if reply.status == 429 {
            refused = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("a third request in flight is refused");
    assert_eq!(refused.error_codes(), ["RATE_LIMITED"]);
    assert_eq!(refused.headers["retry-after"], "1");
    // Another client is not held up.
    post(
        &app,
        json!({ "query": "{ __typename }" }),
        Some(&app.customer_token(5)),
    )
    .await
    .data();
    // The slow ones finish, and the client may send again.
    for stream in &mut slow {
        stream.write_all(&body.as_bytes()[10..]).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    post(&app, json!({ "query": "{ __typename }" }), Some(&token))
        .await
        .data();
}

#[tokio::test]
async fn readiness_flips_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    assert_eq!(app.readiness().await.0, 200);
    app.lose_database().await;
    let (status, body) = app.readiness().await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["failed"], "database", "{body}");
    // Liveness is about the process, which is fine.
    let live = format!("{}/health/live", app.url);
    assert_eq!(app.client.get(&live).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn behind_a_proxy_anonymous_clients_are_told_apart_by_the_address_it_appended() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limits.anonymous = TierLimits {
            capacity: 100,
            restore_rate: 1,
            max_concurrent: 4,
        };
        config.rate_limits.address_header = Some("x-forwarded-for".into());
    })
    .await;
    let from = |forwarded: &'static str| {
        let app = &app;
        async move {
            let request = app
                .client
                .post(app.graphql_url())
                .header("x-forwarded-for", forwarded)
                // Asking for the cost keeps the response cache out of it.
                .json(&with_cost(LISTING));
            Reply::from(request.send().await.unwrap()).await
        }
    };
    from("203.0.113.1").await.data();
    assert_eq!(from("203.0.113.1").await.status, 429);
    // A forged entry before the proxy's own changes nothing.
    assert_eq!(from("198.51.100.9, 203.0.113.1").await.status, 429);
    from("203.0.113.2").await.data();
}
