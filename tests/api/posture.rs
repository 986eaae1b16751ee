//! The production posture (no introspection for anonymous clients, no field
//! suggestions) and the request deadline, as a client sees them.

use std::time::Duration;

use commerce_graph::config::Profile;
use commerce_graph::graph::{Introspection, Posture};
use serde_json::json;

use crate::helpers::TestApp;

const INTROSPECTION: &str = "{ __schema { queryType { name } } }";
const MISSPELT: &str = "{ product(id: \"1\") { titl } }";

async fn production() -> TestApp {
    TestApp::spawn_with(|c| {
        c.profile = Profile::Production;
        c.posture = Posture {
            introspection: Introspection::Authenticated,
            suggestions: false,
            ..c.posture
        };
    })
    .await
}

#[tokio::test]
async fn production_hides_the_schema_from_anonymous_clients() {
    let app = production().await;
    let anonymous = app.query(INTROSPECTION, json!({}), None).await;
    assert_eq!(anonymous.error_codes(), ["INTROSPECTION_DISABLED"]);
    assert!(anonymous.body.get("data").is_none());
    // `__typename` is not introspection: clients and routers rely on it.
    app.query("{ __typename categories { __typename } }", json!({}), None)
        .await
        .data();
    // Signed-in clients (and GraphiQL with a token) still see the schema.
    let token = app.customer_token(1);
    let signed_in = app.query(INTROSPECTION, json!({}), Some(&token)).await;
    assert_eq!(signed_in.data()["__schema"]["queryType"]["name"], "Query");

    // No "Did you mean …?" to rebuild the schema from.
    let probe = app.query(MISSPELT, json!({}), None).await;
    assert_eq!(probe.error_codes(), ["GRAPHQL_VALIDATION_FAILED"]);
    let message = probe.body["errors"][0]["message"].as_str().unwrap();
    assert!(!message.contains("Did you mean"), "{message}");
}

#[tokio::test]
async fn development_keeps_introspection_and_suggestions() {
    let app = TestApp::spawn().await;
    app.query(INTROSPECTION, json!({}), None).await.data();
    let probe = app.query(MISSPELT, json!({}), None).await;
    let message = probe.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("Did you mean \"title\"?"), "{message}");
}

#[tokio::test]
async fn introspection_can_be_turned_off_for_everyone() {
    let app = TestApp::spawn_with(|c| c.posture.introspection = Introspection::Off).await;
    let admin = app
        .query(INTROSPECTION, json!({}), Some(&app.admin_token()))
        .await;
    assert_eq!(admin.error_codes(), ["INTROSPECTION_DISABLED"]);
}

#[tokio::test]
async fn a_request_past_its_deadline_is_cancelled_with_a_clear_error() {
    let app = TestApp::spawn_with(|c| {
        c.posture.request_timeout = Duration::from_millis(1);
        c.limits.max_cost = u64::MAX;
        // Its cost is past any bucket too.
        c.rate_limits.enabled = false;
    })
    .await;
    // Thousands of rows across several batches: far more than a millisecond.
    let heavy = "{ products(first: 100) { nodes { reviews(first: 100) { author { orders(first: 100) { nodes { items { product { title } } } } } } } } }";
    let reply = app.query(heavy, json!({}), Some(&app.admin_token())).await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.error_codes(), ["REQUEST_TIMEOUT"]);
    assert!(reply.body.get("data").is_none());
    let message = reply.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("1 ms"), "{message}");
}
