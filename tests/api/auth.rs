//! Who may see what: orders and personal customer fields.

use serde_json::json;

use crate::helpers::TestApp;

/// The customer who placed order `id`, as an admin sees it.
async fn owner_of(app: &TestApp, id: &str) -> i64 {
    let reply = app
        .query(
            "query($id: ID!) { order(id: $id) { customer { id } } }",
            json!({ "id": id }),
            Some(&app.admin_token()),
        )
        .await;
    reply.data()["order"]["customer"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_customer_sees_their_own_order_and_not_anothers() {
    let app = TestApp::spawn().await;
    let owner = owner_of(&app, "1").await;
    let query = "query($id: ID!) { order(id: $id) { id number status total { amount } items { quantity lineTotal { cents } } } }";

    let own = app
        .query(
            query,
            json!({ "id": "1" }),
            Some(&app.customer_token(owner)),
        )
        .await;
    assert_eq!(own.data()["order"]["id"], "1");
    assert!(own.data()["order"]["number"].is_string());

    let stranger = app
        .query(
            query,
            json!({ "id": "1" }),
            Some(&app.customer_token(owner % 2000 + 1)),
        )
        .await;
    assert_eq!(stranger.error_codes(), ["FORBIDDEN"]);
    assert!(stranger.body["data"]["order"].is_null());
    assert!(!stranger.body.to_string().contains("number\":\""));

    let anonymous = app.query(query, json!({ "id": "1" }), None).await;
    assert_eq!(anonymous.error_codes(), ["UNAUTHENTICATED"]);
    assert!(anonymous.body["data"]["order"].is_null());
}

#[tokio::test]
async fn listing_all_orders_needs_an_admin() {
    let app = TestApp::spawn().await;
    let query = "{ orders(first: 1) { nodes { id } } }";
    let anonymous = app.query(query, json!({}), None).await;
    assert_eq!(anonymous.error_codes(), ["UNAUTHENTICATED"]);
    assert_eq!(anonymous.body["data"], json!({ "orders": null }));
    let customer = app
        .query(query, json!({}), Some(&app.customer_token(3)))
        .await;
    assert_eq!(customer.error_codes(), ["FORBIDDEN"]);
    let admin = app.query(query, json!({}), Some(&app.admin_token())).await;
    assert_eq!(admin.data()["orders"]["nodes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn personal_fields_of_review_authors_stay_private_on_nested_paths() {
    let app = TestApp::spawn().await;
    let query = "{ product(id: \"1\") { reviews(first: 1) { author { id name email orders(first: 1) { totalCount } } } } }";
    let as_admin = app.query(query, json!({}), Some(&app.admin_token())).await;
    let author = &as_admin.data()["product"]["reviews"][0]["author"];
    assert!(
        author["email"].as_str().unwrap().contains('@'),
        "admins see emails"
    );
    let author_id: i64 = author["id"].as_str().unwrap().parse().unwrap();

    let stranger = author_id % 2000 + 1;
    let reply = app
        .query(query, json!({}), Some(&app.customer_token(stranger)))
        .await;
    let author = &reply.body["data"]["product"]["reviews"][0]["author"];
    assert!(author["name"].is_string(), "public fields still resolve");
    // Present as null (GraphQL's "Handling Field Errors"), not left out.
    assert_eq!(author.get("email"), Some(&json!(null)));
    assert_eq!(author.get("orders"), Some(&json!(null)));
    assert_eq!(reply.error_codes(), ["FORBIDDEN", "FORBIDDEN"]);
    let paths: Vec<_> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].clone())
        .collect();
    assert_eq!(
        paths[0],
        json!(["product", "reviews", 0, "author", "email"])
    );

    // The author themself sees both.
    let own = app
        .query(query, json!({}), Some(&app.customer_token(author_id)))
        .await;
    let author = &own.data()["product"]["reviews"][0]["author"];
    assert!(author["email"].as_str().unwrap().contains('@'));
    assert!(author["orders"]["totalCount"].is_number());
}

#[tokio::test]
async fn a_failed_field_is_null_in_place_and_a_failed_non_null_field_nulls_its_parent() {
    let app = TestApp::spawn().await;
    // Every selected field of the author is refused: the author is still
    // there (it is `Customer!`), with the refused field null.
    let reply = app
        .query(
            "{ product(id: \"1\") { reviews(first: 1) { author { email } } } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(reply.error_codes(), ["UNAUTHENTICATED"]);
    assert_eq!(
        reply.body["data"],
        json!({ "product": { "reviews": [{ "author": { "email": null } }] } })
    );
    assert_eq!(
        reply.body["errors"][0]["path"],
        json!(["product", "reviews", 0, "author", "email"])
    );

    // `adjustInventory` is `InventoryLevel!` at the root: failed, it makes
    // `data` null, whatever the other root fields resolved to.
    let reply = app
        .query(
            "mutation { setProductPrice(productId: \"1\", cents: 1999) { id } \
             adjustInventory(productId: \"999999\", warehouse: \"x\", delta: 1) { available } }",
            json!({}),
            Some(&app.admin_token()),
        )
        .await;
    assert_eq!(reply.error_codes(), ["NOT_FOUND"]);
    assert_eq!(reply.body.get("data"), Some(&json!(null)));
}

#[tokio::test]
async fn me_is_the_signed_in_customer() {
    let app = TestApp::spawn().await;
    let query = "{ me { id email orders(first: 100) { totalCount nodes { customer { id } } } } }";
    let reply = app
        .query(query, json!({}), Some(&app.customer_token(42)))
        .await;
    let me = &reply.data()["me"];
    assert_eq!(me["id"], "42");
    let orders = me["orders"]["nodes"].as_array().unwrap();
    assert_eq!(
        orders.len() as u64,
        me["orders"]["totalCount"].as_u64().unwrap().min(100)
    );
    assert!(orders.iter().all(|o| o["customer"]["id"] == "42"));

    let anonymous = app.query(query, json!({}), None).await;
    assert_eq!(anonymous.error_codes(), ["UNAUTHENTICATED"]);
}

#[tokio::test]
async fn a_bad_token_is_refused_with_401_not_treated_as_anonymous() {
    let app = TestApp::spawn().await;
    for authorization in ["Bearer not.a.token", "Basic dXNlcjpwYXNz"] {
        let response = app
            .client
            .post(app.graphql_url())
            .header("authorization", authorization)
            .json(&json!({ "query": "{ categories { id } }" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn the_token_command_mints_tokens_the_server_accepts() {
    let app = TestApp::spawn().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_commerce-graph"))
        .args(["token", "--customer", "7", "--ttl", "10m"])
        .env("COMMERCE_GRAPH_JWT_SECRET", crate::helpers::JWT_SECRET)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap();
    let reply = app
        .query("{ me { id } }", json!({}), Some(token.trim()))
        .await;
    assert_eq!(reply.data()["me"]["id"], "7");
}

#[tokio::test]
async fn rs256_tokens_signed_by_the_configured_key_are_accepted() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let public_key = fixtures.join("rsa-public.pem");
    let app = TestApp::spawn_with(|c| c.jwt_public_key = Some(public_key)).await;
    let private = std::fs::read(fixtures.join("rsa-private.pem")).unwrap();
    let claims = json!({ "sub": "31", "exp": 4_000_000_000u64, "iat": 1 });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&private).unwrap(),
    )
    .unwrap();
    let reply = app.query("{ me { id } }", json!({}), Some(&token)).await;
    assert_eq!(reply.data()["me"]["id"], "31");
    // The HS256 secret keeps working beside it.
    let hs = app
        .query("{ me { id } }", json!({}), Some(&app.customer_token(32)))
        .await;
    assert_eq!(hs.data()["me"]["id"], "32");
}

#[tokio::test]
async fn no_path_leads_a_customer_to_another_customers_orders() {
    let app = TestApp::spawn().await;
    let owner = owner_of(&app, "1").await;
    let stranger = app.customer_token(owner % 2000 + 1);
    let owner_id = owner.to_string();
    // Every door into order 1 or its customer's private fields.
    let paths = [
        ("{ order(id: \"1\") { id total { cents } } }", json!({})),
        ("{ orders(first: 5) { nodes { id } } }", json!({})),
        (
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Order { id total { cents } } } }",
            json!({ "r": [{ "__typename": "Order", "id": "1" }] }),
        ),
        (
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Customer { email orders(first: 5) { nodes { id } } } } }",
            json!({ "r": [{ "__typename": "Customer", "id": owner_id }] }),
        ),
        (
            "query($id: ID!) { order(id: $id) { customer { orders(first: 5) { nodes { id } } } } }",
            json!({ "id": "1" }),
        ),
        (
            "mutation { cancelOrder(id: \"1\") { id } }",
            json!({}),
        ),
    ];
    for (query, variables) in paths {
        let reply = app.query(query, variables, Some(&stranger)).await;
        let codes = reply.error_codes();
        assert!(
            !codes.is_empty() && codes.iter().all(|c| c == "FORBIDDEN"),
            "{query}: {codes:?}"
        );
        let text = reply.body["data"].to_string();
        assert!(
            !text.contains("\"cents\":") && !text.contains('@'),
            "{query} leaked {text}"
        );
        assert!(
            !text.contains("\"id\":\"1\""),
            "{query} leaked order 1: {text}"
        );
    }
    // The order is untouched by the refused cancellation.
    let status = app
        .query(
            "{ order(id: \"1\") { status } }",
            json!({}),
            Some(&app.customer_token(owner)),
        )
        .await;
    assert_ne!(status.data()["order"]["status"], "CANCELLED");
}
