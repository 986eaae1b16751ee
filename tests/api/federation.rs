//! The federation subgraph surface: `_service { sdl }`, `_entities` and the
//! inline trace (`ftv1`) for the router.

use base64::Engine;
use commerce_graph::graph::ftv1::proto;
use prost::Message;
use serde_json::{json, Value};

use crate::helpers::{Reply, TestApp};

const ROUTER_SECRET: &str = "router-secret-0123456789";

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
async fn contract_tags_follow_the_access_rules() {
    // Contracts filter by tag: excluding `internal` leaves the customer-facing
    // API, excluding `personal` too leaves the anonymous catalog. A field
    // gets the tag of the rule that guards it, so a new guarded field cannot
    // leak into a contract by a forgotten tag.
    let app = TestApp::spawn().await;
    let reply = app.query("{ _service { sdl } }", json!({}), None).await;
    let sdl = reply.data()["_service"]["sdl"].as_str().unwrap();
    let types = sdl.split("extend schema @link(").next().unwrap();
    let fields: Vec<&str> = types
        .lines()
        .filter(|line| line.starts_with('\t') && line.contains(": "))
        .collect();
    let mut tagged = (0, 0);
    for field in fields {
        let admin = field.contains("@requiresScopes(scopes: [[\"admin\"]])");
        let internal = field.contains("@tag(name: \"internal\")");
        assert_eq!(admin, internal, "{field}");
        let signed_in = field.contains("@authenticated");
        let personal = field.contains("@tag(name: \"personal\")");
        assert_eq!(signed_in, personal, "{field}");
        tagged = (
            tagged.0 + usize::from(internal),
            tagged.1 + usize::from(personal),
        );
    }
    assert_eq!(tagged, (4, 7), "(internal, personal) fields");
    assert!(
        sdl.contains("\"@tag\""),
        "imported from the federation spec"
    );
    assert!(!sdl.contains("directive @tag"));
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
    let app = TestApp::spawn_with(|c| c.router_secret = Some(ROUTER_SECRET.into())).await;
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
                .header("x-router-secret", ROUTER_SECRET)
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

/// POSTs `query` as the router would, asking for an inline trace (the body
/// is the one [`TestApp::query`] sends, so both share response-cache keys).
async fn traced(app: &TestApp, query: &str, router_secret: Option<&str>) -> Reply {
    let mut request = app
        .client
        .post(app.graphql_url())
        .header("apollo-federation-include-trace", "ftv1")
        .json(&json!({ "query": query, "variables": {} }));
    if let Some(secret) = router_secret {
        request = request.header("x-router-secret", secret);
    }
    Reply::from(request.send().await.unwrap()).await
}

fn decode_ftv1(reply: &Reply) -> proto::Trace {
    let encoded = reply.body["extensions"]["ftv1"]
        .as_str()
        .unwrap_or_else(|| panic!("no ftv1 in {:#}", reply.body));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    proto::Trace::decode(bytes.as_slice()).unwrap()
}

fn child<'a>(node: &'a proto::Node, response_name: &str) -> &'a proto::Node {
    let id = Some(proto::NodeId::ResponseName(response_name.into()));
    node.child
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no {response_name} under {node:#?}"))
}

fn element(node: &proto::Node, index: u32) -> &proto::Node {
    let id = Some(proto::NodeId::Index(index));
    node.child
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no element {index} under {node:#?}"))
}

#[tokio::test]
async fn the_router_gets_an_inline_trace_of_every_field_with_its_errors() {
    let app = TestApp::spawn_with(|c| c.router_secret = Some(ROUTER_SECRET.into())).await;
    let query =
        "{ product(id: \"3\") { name: title reviews(first: 2) { rating author { email } } } }";
    let reply = traced(&app, query, Some(ROUTER_SECRET)).await;
    // Anonymous: each author's email is an error at its path.
    assert!(reply.body["data"]["product"]["reviews"][1]["rating"].is_i64());
    let trace = decode_ftv1(&reply);

    let (start, end) = (trace.start_time.unwrap(), trace.end_time.unwrap());
    assert!((end.seconds, end.nanos) >= (start.seconds, start.nanos));
    assert!(trace.duration_ns > 0);
    let root = trace.root.unwrap();
    assert!(root.id.is_none() && root.error.is_empty());

    let product = child(&root, "product");
    assert_eq!(
        (product.parent_type.as_str(), product.r#type.as_str()),
        ("Query", "Product")
    );
    assert!(product.start_time <= product.end_time && product.end_time <= trace.duration_ns);
    let name = child(product, "name");
    assert_eq!(
        name.original_field_name, "title",
        "an alias keeps its field name"
    );
    assert_eq!(
        (name.parent_type.as_str(), name.r#type.as_str()),
        ("Product", "String!")
    );
    let reviews = child(product, "reviews");
    assert_eq!(reviews.r#type, "[Review!]!");
    assert_eq!(
        reviews.original_field_name, "",
        "no alias, no original name"
    );
    assert_eq!(reviews.child.len(), 2, "one node per list element");
    // A field ends when its resolver returns, before its children start.
    for index in 0..2 {
        let review = element(reviews, index);
        assert!(
            review.r#type.is_empty(),
            "an element carries only its index"
        );
        let rating = child(review, "rating");
        assert_eq!(rating.r#type, "Int!");
        assert!(reviews.end_time <= rating.start_time);
        let email = child(child(review, "author"), "email");
        assert_eq!(email.parent_type, "Customer");
        assert_eq!(email.error.len(), 1, "{email:#?}");
        let error = &email.error[0];
        assert!(!error.message.is_empty());
        assert_eq!(error.location.len(), 1);
        assert!(error.location[0].line == 1 && error.location[0].column > 1);
        let json: serde_json::Value = serde_json::from_str(&error.json).unwrap();
        assert_eq!(
            json["path"],
            json!(["product", "reviews", index, "author", "email"])
        );
        assert_eq!(json["message"], error.message.as_str());
    }
}

#[tokio::test]
async fn no_inline_trace_without_the_header_or_for_callers_other_than_the_router() {
    let app = TestApp::spawn_with(|c| c.router_secret = Some(ROUTER_SECRET.into())).await;
    let query = "{ product(id: \"3\") { title } }";
    let untrusted = traced(&app, query, None).await;
    let guessed = traced(&app, query, Some("router-secret-guess")).await;
    let unasked = Reply::from(
        app.client
            .post(app.graphql_url())
            .header("x-router-secret", ROUTER_SECRET)
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    for reply in [untrusted, guessed, unasked] {
        assert!(reply.data()["product"]["title"].is_string());
        assert!(
            reply.body["extensions"].get("ftv1").is_none(),
            "{:#}",
            reply.body
        );
    }

    // Without a configured secret every caller is treated as the router, as
    // for `_entities`. The response cache neither answers a traced request
    // nor keeps its answer for others.
    let open = TestApp::spawn().await;
    let cached = open.query(query, json!({}), None).await;
    assert_eq!(cached.headers["cache-control"], "public, max-age=60");
    let trace = decode_ftv1(&traced(&open, query, None).await);
    let after = open.query(query, json!({}), None).await;
    assert!(after.body.get("extensions").is_none(), "{:#}", after.body);
    assert_eq!(
        child(trace.root.as_ref().unwrap(), "product").r#type,
        "Product"
    );
}
