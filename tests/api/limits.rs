//! Query-shape limits: refused before execution, with the limit and the
//! measured value, on POST and GET alike, and configurable.

use serde_json::json;

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
        c.variables_limits.max_bytes = 200;
        c.variables_limits.max_depth = 3;
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
