//! Query-shape limits: refused before execution, with the limit and the
//! measured value, on POST and GET alike, and configurable.

use serde_json::json;

use commerce_graph::limits::Limit;

use crate::helpers::{Reply, TestApp};

fn nested(depth: usize) -> String {
    // categories { products { nodes { category { products { nodes { … } } } } } }
    let mut query = String::from("{ categories ");
    let mut open = 1;
    for level in 0..depth {
        query.push_str(if level % 2 == 0 {
            "{ products(first: 1) { nodes "
        } else {
            "{ category "
        });
        open += if level % 2 == 0 { 2 } else { 1 };
    }
    query.push_str("{ id }");
    query.push_str(&" }".repeat(open));
    query
}

/// 30 fragments, each spreading the next twice: 2^30 uses of `leaf`.
fn fragment_bomb(operation: &str, on: &str, leaf: &str) -> String {
    let mut query = operation.to_string();
    for i in 0..30 {
        query.push_str(&format!(
            " fragment F{i} on {on} {{ ...F{} ...F{} }}",
            i + 1,
            i + 1
        ));
    }
    query.push_str(&format!(" fragment F30 on {on} {{ {leaf} }}"));
    query
}

async fn refused(app: &TestApp, query: &str) -> Reply {
    let reply = Reply::from(
        app.client
            .post(app.graphql_url())
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.get("data").is_none());
    reply
}

#[tokio::test]
async fn each_limit_has_its_code_limit_and_measured_value() {
    let app = TestApp::spawn_with(|c| {
        c.limits.max_depth = 5;
        c.limits.max_fields = 40;
        c.limits.max_aliases = 3;
        c.limits.max_root_fields = 3;
        c.limits.max_directives = 2;
        c.limits.max_document_bytes = 2_000;
        c.limits.max_tokens = 300;
    })
    .await;
    let aliases = "{ categories { a: id b: id c: id d: id } }";
    let cases = [
        (nested(6), "QUERY_TOO_DEEP", 5),
        (aliases.to_string(), "TOO_MANY_ALIASES", 3),
        (
            format!(
                "{{ categories {{ ...F ...F ...F }} }} fragment F on Category {{ {} }}",
                "id name slug ".repeat(5)
            ),
            "TOO_MANY_FIELDS",
            40,
        ),
        (
            "{ categories { id } products { totalCount } me { id } product(id: \"1\") { id } }"
                .to_string(),
            "TOO_MANY_ROOT_FIELDS",
            3,
        ),
        (
            "{ categories @skip(if: false) @include(if: true) @skip(if: false) { id } }"
                .to_string(),
            "TOO_MANY_DIRECTIVES",
            2,
        ),
        (
            format!("{{ categories {{ id }} }} # {}", "x".repeat(3_000)),
            "DOCUMENT_TOO_LARGE",
            2_000,
        ),
        (
            format!("{{ categories {{ {} }} }}", "id ".repeat(400)),
            "TOO_MANY_TOKENS",
            300,
        ),
    ];
    for (query, code, limit) in cases {
        let reply = refused(&app, &query).await;
        assert_eq!(reply.error_codes(), [code]);
        let extensions = &reply.body["errors"][0]["extensions"];
        assert_eq!(extensions["limit"], limit, "{code}");
        assert!(extensions["measured"].as_u64().unwrap() > limit, "{code}");
    }
    // Just inside every limit: accepted.
    let ok = app.query(&nested(1), json!({}), None).await;
    ok.data();
}

#[tokio::test]
async fn limits_apply_to_get_requests_too() {
    let app = TestApp::spawn_with(|c| c.limits.max_depth = 3).await;
    let response = app
        .get_graphql()
        .query(&[("query", nested(4))])
        .send()
        .await
        .unwrap();
    assert_eq!(
        Reply::from(response).await.error_codes(),
        ["QUERY_TOO_DEEP"]
    );
}

#[tokio::test]
async fn a_fragment_bomb_is_refused_quickly() {
    let app = TestApp::spawn().await;
    let query = fragment_bomb("{ categories { ...F0 } }", "Category", "id");
    let started = std::time::Instant::now();
    let reply = refused(&app, &query).await;
    assert_eq!(reply.error_codes(), ["TOO_MANY_FIELDS"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // The same bomb inside introspection.
    let query = fragment_bomb("{ __schema { types { ...F0 } } }", "__Type", "name");
    let reply = refused(&app, &query).await;
    assert_eq!(reply.error_codes(), ["TOO_MANY_FIELDS"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn the_default_limits_let_the_workloads_and_graphiql_through() {
    let app = TestApp::spawn().await;
    for manifest_query in [
        "{ __schema { types { name fields { name type { name kind ofType { name kind ofType { name kind ofType { name kind ofType { name } } } } } } } } }",
        "{ product(id: \"1\") { title reviews(first: 10) { author { name orders(first: 1) { nodes { items { product { category { name } } } } } } } } }",
    ] {
        app.query(manifest_query, json!({}), Some(&app.admin_token())).await.data();
    }
}

#[tokio::test]
async fn variables_are_bounded_in_size_and_nesting_on_post_and_get() {
    let app = TestApp::spawn_with(|c| {
        c.limits.max_variables_bytes = 200;
        c.limits.max_variables_depth = 3;
    })
    .await;
    let query = "query($slug: String!) { category(slug: $slug) { slug } }";
    let large = json!({ "slug": "k".repeat(300) });
    let deep = json!({ "slug": [[["kitchen"]]] });
    for (variables, code, limit) in [
        (&large, "VARIABLES_TOO_LARGE", 200),
        (&deep, "VARIABLES_TOO_DEEP", 3),
    ] {
        let post = Reply::from(
            app.client
                .post(app.graphql_url())
                .header("accept", "application/graphql-response+json")
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let get = Reply::from(
            app.get_graphql()
                .query(&[("query", query), ("variables", &variables.to_string())])
                .send()
                .await
                .unwrap(),
        )
        .await;
        for reply in [post, get] {
            assert_eq!(reply.error_codes(), [code]);
            let extensions = &reply.body["errors"][0]["extensions"];
            assert_eq!(extensions["limit"], limit, "{code}");
            assert!(extensions["measured"].as_u64().unwrap() > limit, "{code}");
            assert!(reply.body.get("data").is_none());
        }
    }
    // A request error: 400 under application/graphql-response+json (above),
    // 200 for legacy clients.
    let legacy = app.query(query, large, None).await;
    assert_eq!(legacy.status, 200);
    assert_eq!(legacy.error_codes(), ["VARIABLES_TOO_LARGE"]);
    // Inside both limits: accepted.
    let ok = app.query(query, json!({ "slug": "kitchen" }), None).await;
    ok.data();
}

/// Cost of `PRODUCTS` in the model (`src/limits/cost.rs`): the connection 1,
/// plus 10 nodes × (a product 1 + 5 reviews × 1), plus `totalCount` 10.
const PRODUCTS: &str =
    "products(first: 10) { nodes { id title reviews(first: 5) { rating } } totalCount }";
const PRODUCTS_COST: u64 = 1 + 10 * (1 + 5) + 10;

async fn with_cost_extension(app: &TestApp, query: &str, variables: serde_json::Value) -> Reply {
    Reply::from(
        app.client
            .post(app.graphql_url())
            .json(
                &json!({ "query": query, "variables": variables, "extensions": { "cost": true } }),
            )
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_client_may_ask_for_the_cost_and_aliases_count_toward_it() {
    let app = TestApp::spawn().await;
    let one = with_cost_extension(&app, &format!("{{ {PRODUCTS} }}"), json!({})).await;
    one.data();
    let cost = &one.body["extensions"]["cost"];
    assert_eq!(cost["requestedQueryCost"], PRODUCTS_COST, "{}", one.body);
    assert_eq!(cost["maximumQueryCost"], 5_000);

    // An alias is another call of the field.
    let twice = with_cost_extension(
        &app,
        &format!("{{ a: {PRODUCTS} b: {PRODUCTS} }}"),
        json!({}),
    )
    .await;
    twice.data();
    assert_eq!(
        twice.body["extensions"]["cost"]["requestedQueryCost"],
        2 * PRODUCTS_COST
    );

    // The page size comes from the variables when it is one.
    let sized = with_cost_extension(
        &app,
        "query($n: Int!) { products(first: $n) { nodes { id } } }",
        json!({ "n": 40 }),
    )
    .await;
    assert_eq!(sized.body["extensions"]["cost"]["requestedQueryCost"], 41);

    // Not asked for: not sent.
    let plain = app
        .query(&format!("{{ {PRODUCTS} }}"), json!({}), None)
        .await;
    assert!(
        plain.body["extensions"].get("cost").is_none(),
        "{}",
        plain.body
    );
}

#[tokio::test]
async fn an_operation_over_the_cost_limit_is_refused_before_execution() {
    let app = TestApp::spawn_with(|c| c.limits.max_cost = 100).await;
    let reply = refused(&app, &format!("{{ a: {PRODUCTS} b: {PRODUCTS} }}")).await;
    assert_eq!(reply.error_codes(), ["QUERY_TOO_COMPLEX"]);
    let extensions = &reply.body["errors"][0]["extensions"];
    assert_eq!(extensions["limit"], 100);
    assert_eq!(extensions["measured"], 2 * PRODUCTS_COST);
    // One of them fits.
    app.query(&format!("{{ {PRODUCTS} }}"), json!({}), None)
        .await
        .data();
}

#[tokio::test]
async fn a_measure_only_limit_lets_the_operation_run() {
    let app = TestApp::spawn_with(|c| {
        c.limits.max_cost = 100;
        c.limits.max_root_fields = 2;
        c.limits.measure_only = [Limit::Cost].into_iter().collect();
    })
    .await;
    let reply = with_cost_extension(
        &app,
        &format!("{{ a: {PRODUCTS} b: {PRODUCTS} }}"),
        json!({}),
    )
    .await;
    reply.data();
    assert_eq!(
        reply.body["extensions"]["cost"]["requestedQueryCost"],
        2 * PRODUCTS_COST
    );
    // The other limits still refuse.
    let wide = refused(&app, "{ a: __typename b: __typename c: __typename }").await;
    assert_eq!(wide.error_codes(), ["TOO_MANY_ROOT_FIELDS"]);
}

#[tokio::test]
async fn circular_introspection_is_refused() {
    let app = TestApp::spawn().await;
    let reply = refused(
        &app,
        "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }",
    )
    .await;
    assert_eq!(reply.error_codes(), ["INTROSPECTION_TOO_DEEP"]);
    assert_eq!(reply.body["errors"][0]["extensions"]["limit"], 3);
}

/// `_entities`, the router's entry point, meets the same limits: its depth
/// is measured like any field's, and its cost grows with the representations
/// it is sent, so a router cannot be made to fetch without bound.
#[tokio::test]
async fn entities_meet_the_same_limits() {
    let app = TestApp::spawn_with(|c| {
        c.limits.max_depth = 3;
        c.limits.max_cost = 500;
    })
    .await;
    let post = |query: &str, count: usize| {
        let representations: Vec<_> = (1..=count)
            .map(|id| json!({ "__typename": "Product", "id": id.to_string() }))
            .collect();
        app.client
            .post(app.graphql_url())
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": { "r": representations } }))
            .send()
    };
    let deep = "query($r: [_Any!]!) { _entities(representations: $r) { \
                ... on Product { category { products(first: 1) { nodes { id } } } } } }";
    let reply = Reply::from(post(deep, 1).await.unwrap()).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.error_codes(), ["QUERY_TOO_DEEP"]);

    let shallow = "query($r: [_Any!]!) { _entities(representations: $r) { \
                   ... on Product { id title } } }";
    let few = Reply::from(post(shallow, 2).await.unwrap()).await;
    assert_eq!(few.status, 200, "{}", few.body);
    assert_eq!(few.body["data"]["_entities"][1]["id"], "2");
    let many = Reply::from(post(shallow, 1_000).await.unwrap()).await;
    assert_eq!(many.status, 400, "{}", many.body);
    assert_eq!(many.error_codes(), ["QUERY_TOO_COMPLEX"]);
    let extensions = &many.body["errors"][0]["extensions"];
    assert_eq!(extensions["limit"], 500);
    assert!(extensions["measured"].as_u64().unwrap() >= 1_000);
}
