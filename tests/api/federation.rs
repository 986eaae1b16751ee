//! The federation subgraph surface: `_service { sdl }` and `_entities`.

use serde_json::{json, Value};

use crate::helpers::{Reply, TestApp};

#[tokio::test]
async fn service_sdl_is_federation_v2_and_matches_the_checked_in_schema() {
    let app = TestApp::spawn().await;
    let reply = app.query("{ _service { sdl } }", json!({}), None).await;
    let sdl = reply.data()["_service"]["sdl"].as_str().unwrap();
    assert!(sdl.contains("extend schema @link("));
    assert!(sdl.contains("url: \"https://specs.apollo.dev/federation/v2."));
    for entity in ["Product", "Customer", "Order"] {
        let declaration = sdl
            .lines()
            .find(|line| line.starts_with(&format!("type {entity} ")))
            .unwrap();
        assert!(
            declaration.contains("@key(fields: \"id\")"),
            "{entity} is an entity"
        );
    }
    // Federation's auth directives, imported from the spec, on personal data.
    // Federation's auth and demand-control directives, imported from the
    // spec (v2.9 has @cost and @listSize), never defined locally.
    let imports = sdl
        .lines()
        .find(|line| line.trim_start().starts_with("import: ["))
        .unwrap();
    for directive in ["@authenticated", "@requiresScopes", "@cost", "@listSize"] {
        assert!(
            imports.contains(&format!("\"{directive}\"")),
            "{directive} imported"
        );
        assert!(!sdl.contains(&format!("directive {directive}")));
    }
    assert!(sdl.contains("url: \"https://specs.apollo.dev/federation/v2.9\""));
    assert!(sdl.contains(
        "sort: ProductSort! = ID_ASC): ProductConnection! @listSize(slicingArguments: [\"first\"]"
    ));
    assert!(sdl.contains("type Order @authenticated"));
    assert!(sdl.contains("@requiresScopes(scopes: [[\"admin\"]])"));
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/schema.graphql"
    ))
    .unwrap();
    assert!(
        checked_in.trim_end() == sdl.trim_end(),
        "schema/schema.graphql is out of date: run `cargo run -- schema > schema/schema.graphql`"
    );
}

#[tokio::test]
async fn the_schema_command_prints_the_checked_in_sdl() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_commerce-graph"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/schema.graphql"
    ))
    .unwrap();
    assert!(
        String::from_utf8(output.stdout).unwrap() == checked_in,
        "schema/schema.graphql is out of date: run `cargo run -- schema > schema/schema.graphql`"
    );
}

#[tokio::test]
async fn fifty_product_representations_resolve_in_one_statement() {
    let app = TestApp::spawn().await;
    let mut representations: Vec<_> = (1..=50)
        .map(|id| json!({ "__typename": "Product", "id": id.to_string() }))
        .collect();
    representations.reverse();
    let reply = app
        .query(
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { id title } } }",
            json!({ "r": representations }),
            None,
        )
        .await;
    let entities = reply.data()["_entities"].as_array().unwrap();
    assert_eq!(entities.len(), 50);
    // In the order of the representations.
    for (entity, id) in entities.iter().zip((1..=50).rev()) {
        assert_eq!(entity["id"], id.to_string());
        assert!(entity["title"].is_string());
    }
    assert_eq!(reply.statements(), 1);
}

#[tokio::test]
async fn entities_resolve_by_sku_and_unknown_ids_are_null_with_an_error() {
    let app = TestApp::spawn().await;
    let sku = app
        .query("{ product(id: \"9\") { sku } }", json!({}), None)
        .await
        .data()["product"]["sku"]
        .clone();
    let reply = app
        .query(
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { id } ... on Customer { name } } }",
            json!({ "r": [
                { "__typename": "Product", "sku": sku },
                { "__typename": "Product", "id": "999999" },
                { "__typename": "Customer", "id": "12" },
                { "__typename": "Customer", "id": "twelve" },
            ] }),
            None,
        )
        .await;
    let entities = reply.body["data"]["_entities"].as_array().unwrap();
    assert_eq!(entities[0]["id"], "9");
    assert!(entities[1].is_null());
    assert!(entities[2]["name"].is_string());
    assert!(entities[3].is_null());
    let mut codes = reply.error_codes();
    codes.sort();
    assert_eq!(codes, ["BAD_USER_INPUT", "NOT_FOUND"]);
    let errors = reply.body["errors"].as_array().unwrap();
    let missing = errors
        .iter()
        .find(|e| e["extensions"]["code"] == "NOT_FOUND")
        .unwrap();
    assert_eq!(missing["extensions"]["representation"], "Product:999999");
    assert_eq!(missing["path"], json!(["_entities"]));
}

#[tokio::test]
async fn order_entities_obey_the_same_rules_as_the_order_field() {
    let app = TestApp::spawn().await;
    let owner: i64 = app
        .query(
            "{ order(id: \"1\") { customer { id } } }",
            json!({}),
            Some(&app.admin_token()),
        )
        .await
        .data()["order"]["customer"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let own_order = app
        .query(
            "{ me { orders(first: 1) { nodes { id } } } }",
            json!({}),
            Some(&app.customer_token(owner % 2000 + 1)),
        )
        .await
        .data()["me"]["orders"]["nodes"][0]["id"]
        .clone();
    let query = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Order { id total { amount } } } }";
    let variables = json!({ "r": [{ "__typename": "Order", "id": "1" }, { "__typename": "Order", "id": own_order }] });

    let anonymous = app.query(query, variables.clone(), None).await;
    assert_eq!(
        anonymous.error_codes(),
        ["UNAUTHENTICATED", "UNAUTHENTICATED"]
    );
    assert!(!anonymous.body.to_string().contains("amount"));

    // One representation refused does not fail the others.
    let mixed = app
        .query(
            query,
            variables.clone(),
            Some(&app.customer_token(owner % 2000 + 1)),
        )
        .await;
    assert_eq!(mixed.error_codes(), ["FORBIDDEN"]);
    assert!(mixed.body["data"]["_entities"][0].is_null());
    assert_eq!(mixed.body["data"]["_entities"][1]["id"], own_order);

    let admin = app.query(query, variables, Some(&app.admin_token())).await;
    assert_eq!(admin.data()["_entities"][0]["id"], "1");
}

#[tokio::test]
async fn with_a_router_secret_only_the_router_reaches_entities_and_the_sdl() {
    const SECRET: &str = "router-secret-0123456789";
    let app = TestApp::spawn_with(|c| c.router_secret = Some(SECRET.into())).await;
    let entities = json!({
        "query": "query($r: [_Any!]!) { _entities(representations: $r) { ... on Product { id } } }",
        "variables": { "r": [{ "__typename": "Product", "id": "1" }] },
    });
    let service = json!({ "query": "{ _service { sdl } }" });
    for body in [&entities, &service] {
        let direct = Reply::from(
            app.client
                .post(app.graphql_url())
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(direct.error_codes(), ["ROUTER_SECRET_REQUIRED"], "{body}");
        assert!(!direct.body.to_string().contains("\"sdl\":\""));
        let wrong = Reply::from(
            app.client
                .post(app.graphql_url())
                .header("x-router-secret", "router-secret-guess")
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(wrong.error_codes(), ["ROUTER_SECRET_REQUIRED"]);
        let routed = Reply::from(
            app.client
                .post(app.graphql_url())
                .header("x-router-secret", SECRET)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        routed.data();
    }
    // Ordinary queries do not need it.
    app.query("{ categories { id } }", json!({}), None)
        .await
        .data();
}

#[tokio::test]
async fn the_router_gets_cache_hints_and_tags_for_entities_and_root_fields() {
    const SECRET: &str = "router-secret-0123456789";
    let app = TestApp::spawn_with(|c| c.router_secret = Some(SECRET.into())).await;
    let send = |body: Value| {
        app.client
            .post(app.graphql_url())
            .header("x-router-secret", SECRET)
            .json(&body)
            .send()
    };
    let entities = Reply::from(
        send(json!({
            "query": "query($representations: [_Any!]!) { _entities(representations: $representations) { ... on Product { title price { amount } } } }",
            "variables": { "representations": [
                { "__typename": "Product", "id": "2" },
                { "__typename": "Product", "id": "1" },
            ] },
        }))
        .await
        .unwrap(),
    )
    .await;
    entities.data();
    assert_eq!(entities.headers["cache-control"], "public, max-age=60");
    assert_eq!(
        entities.body["extensions"]["apolloEntityCacheTags"],
        json!([
            ["product:2", "inventory:2", "reviews:2"],
            ["product:1", "inventory:1", "reviews:1"],
        ])
    );
    let root = Reply::from(
        send(json!({ "query": "{ product(id: \"3\") { title } }" }))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        root.body["extensions"]["apolloCacheTags"],
        json!(["product:3"])
    );
    // Personal entities: no hints, no tags, nothing stored.
    let orders = Reply::from(
        send(json!({
            "query": "query($r: [_Any!]!) { _entities(representations: $r) { ... on Order { id } } }",
            "variables": { "r": [{ "__typename": "Order", "id": "1" }] },
        }))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(orders.headers["cache-control"], "no-store");
    assert!(orders.body.get("extensions").is_none(), "{}", orders.body);
    // Other callers never see the tags.
    let client = app
        .query("{ product(id: \"3\") { title } }", json!({}), None)
        .await;
    assert!(client.body.get("extensions").is_none());
}
