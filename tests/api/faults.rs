//! What clients and load balancers see when the database fails: readiness
//! names the check that failed (migrations here; the database's loss is in
//! `operations.rs`); on
//! PostgreSQL, once the database is gone requests fail at once with
//! `SERVICE_UNAVAILABLE` (503, `Retry-After`), and with stale-if-error a
//! cached public answer is still served, marked stale. `.ci/outage.sh`
//! stops and restarts a real PostgreSQL server for the rest.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Reply, TestApp, TestDatabase};

#[tokio::test]
async fn readiness_fails_on_a_migration_the_database_has_not_applied() {
    let app = TestApp::spawn().await;
    let (status, body) = app.readiness().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["migrations"], "ok");

    // As if this binary ran on a database an older one migrated.
    app.execute_sql("DELETE FROM _sqlx_migrations WHERE version = 3")
        .await;
    let (status, body) = app.readiness().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["failed"], "migrations");
    assert_eq!(body["reason"], "not applied: 3");
}

const PRODUCT: &str = "query Product($id: ID!) { product(id: $id) { id title } }";

/// Polls readiness until it is 503, for at most 5 s; returns how long it took.
async fn until_unready(app: &TestApp) -> Duration {
    let started = Instant::now();
    while app.readiness().await.0 != 503 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not 503 within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// PostgreSQL only: SQLite is a file in the process, never "down" (its
/// loss is the readiness test above).
#[tokio::test]
async fn without_its_database_the_server_fails_fast_and_serves_stale_public_answers() {
    if TestDatabase::postgres_url().is_none() {
        return;
    }
    let app = TestApp::spawn_with(|config| {
        config.stale_if_error = Duration::from_secs(60);
        // Answers go stale after a second, not a product's 60 s.
        config.max_cache_age = Some(1);
    })
    .await;
    let cached = app.query(PRODUCT, json!({ "id": "7" }), None).await;
    assert_eq!(cached.data()["product"]["id"], "7");
    assert_eq!(
        cached.headers["cache-control"],
        "public, max-age=1, stale-if-error=60"
    );

    app.lose_database().await;
    let flipped = until_unready(&app).await;
    println!("readiness 503 after {flipped:?}");

    let started = Instant::now();
    let refused = app.query(PRODUCT, json!({ "id": "8" }), None).await;
    let took = started.elapsed();
    println!("an uncached query failed in {took:?}");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.error_codes(), ["SERVICE_UNAVAILABLE"]);
    assert_eq!(refused.headers["retry-after"], "5");
    assert_eq!(refused.headers["cache-control"], "no-store");
    assert!(refused.body.get("data").is_none(), "{}", refused.body);
    let message = refused.body["errors"][0]["message"].as_str().unwrap();
    assert!(
        !message.contains("database") && !message.contains("sql"),
        "{message}"
    );
    // Well under the 10 s connect timeout the pool would wait.
    assert!(took < Duration::from_secs(2), "{took:?}");

    let mutation = app
        .query(
            "mutation { setProductPrice(productId: \"7\", cents: 100) { id } }",
            json!({}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(mutation.error_codes(), ["SERVICE_UNAVAILABLE"]);

    // Past its max-age, within the window: served, and marked stale. Not
    // held as current: the notice connection went with the database, so
    // another replica's purge could have been missed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale: Reply = app.query(PRODUCT, json!({ "id": "7" }), None).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, cached.body);
    assert_eq!(stale.headers["warning"], "110 - \"Response is Stale\"");
    let age: u64 = stale.headers["age"].to_str().unwrap().parse().unwrap();
    assert!(age >= 1, "age {age}");
}
