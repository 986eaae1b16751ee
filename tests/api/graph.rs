//! The graph's data and its cost in SQL statements (no N+1).

use serde_json::json;

use crate::helpers::TestApp;

const W1: &str =
    "query ProductPage($id: ID!) { product(id: $id) { title price { amount currency } \
    inventory { available warehouse } images(first: 5) { url alt } \
    reviews(first: 10) { rating author { name verified } text } } }";

const W3: &str = "query Catalog($c: ID!, $after: String) { products(first: 20, after: $after, \
    filter: { categoryId: $c }) { nodes { id title price { amount currency } averageRating \
    inventory { available } } pageInfo { endCursor hasNextPage } } }";

fn w2(first: u32) -> String {
    format!(
        "{{ orders(first: {first}) {{ nodes {{ id customer {{ name }} \
         items {{ product {{ title price {{ amount currency }} }} }} }} }} }}"
    )
}

#[tokio::test]
async fn w1_product_page_loads_every_relation_in_at_most_six_statements() {
    let app = TestApp::spawn().await;
    let reply = app.query(W1, json!({ "id": "17" }), None).await;
    let product = &reply.data()["product"];
    assert!(product["title"].as_str().unwrap().len() > 3);
    assert_eq!(product["price"]["currency"], "USD");
    assert!(product["price"]["amount"].as_str().unwrap().contains('.'));
    let warehouses: Vec<_> = product["inventory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["warehouse"].as_str().unwrap())
        .collect();
    assert_eq!(warehouses, ["east", "west"]);
    assert_eq!(product["images"].as_array().unwrap().len(), 3);
    let reviews = product["reviews"].as_array().unwrap();
    assert!(!reviews.is_empty() && reviews.len() <= 10);
    for review in reviews {
        assert!(review["author"]["name"].as_str().unwrap().len() > 1);
        assert!((1..=5).contains(&review["rating"].as_i64().unwrap()));
    }
    assert!(
        reply.statements() <= 6,
        "W1 ran {} statements",
        reply.statements()
    );
}

#[tokio::test]
async fn w2_orders_run_in_four_statements_whatever_the_page_size() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let small = app.query(&w2(10), json!({}), Some(&admin)).await;
    let large = app.query(&w2(100), json!({}), Some(&admin)).await;
    assert_eq!(
        small.data()["orders"]["nodes"].as_array().unwrap().len(),
        10
    );
    let orders = large.data()["orders"]["nodes"].as_array().unwrap();
    assert_eq!(orders.len(), 100);
    for order in orders {
        assert!(order["customer"]["name"].is_string());
        let items = order["items"].as_array().unwrap();
        assert!((1..=6).contains(&items.len()), "{order}");
        assert!(items[0]["product"]["title"].is_string());
    }
    assert!(
        large.statements() <= 4,
        "W2 ran {} statements",
        large.statements()
    );
    assert_eq!(small.statements(), large.statements());
}

#[tokio::test]
async fn w3_catalog_listing_pages_through_a_category_without_gaps_or_repeats() {
    let app = TestApp::spawn().await;
    let first = app.query(W3, json!({ "c": "3" }), None).await;
    let page = &first.data()["products"];
    assert_eq!(page["nodes"].as_array().unwrap().len(), 20);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert!(
        first.statements() <= 3,
        "W3 ran {} statements",
        first.statements()
    );

    let mut seen = std::collections::BTreeSet::new();
    let mut after = serde_json::Value::Null;
    loop {
        let reply = app
            .query(W3, json!({ "c": "3", "after": after }), None)
            .await;
        let page = &reply.data()["products"];
        for node in page["nodes"].as_array().unwrap() {
            let id: i64 = node["id"].as_str().unwrap().parse().unwrap();
            assert!(seen.insert(id), "product {id} listed twice");
        }
        if page["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    let count = app
        .query(
            "{ products(first: 0, filter: { categoryId: \"3\" }) { totalCount } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(
        count.data()["products"]["totalCount"].as_u64().unwrap() as usize,
        seen.len()
    );
    // Ascending ids: keyset order by id.
    let ids: Vec<_> = seen.iter().copied().collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn sorted_listings_keep_their_order_across_pages() {
    let app = TestApp::spawn().await;
    let query = "query($after: String) { products(first: 40, after: $after, sort: PRICE_DESC, \
        filter: { minPriceCents: 1000, maxPriceCents: 20000 }) { edges { cursor node { price { cents } } } \
        pageInfo { endCursor hasNextPage hasPreviousPage } } }";
    let first = app.query(query, json!({}), None).await;
    let page = &first.data()["products"];
    assert_eq!(page["pageInfo"]["hasPreviousPage"], false);
    let cursor = page["pageInfo"]["endCursor"].clone();
    let second = app.query(query, json!({ "after": cursor }), None).await;
    assert_eq!(
        second.data()["products"]["pageInfo"]["hasPreviousPage"],
        true
    );
    let prices: Vec<i64> = [&first, &second]
        .iter()
        .flat_map(|r| r.data()["products"]["edges"].as_array().unwrap().clone())
        .map(|e| e["node"]["price"]["cents"].as_i64().unwrap())
        .collect();
    assert_eq!(prices.len(), 80);
    assert!(prices.windows(2).all(|w| w[0] >= w[1]), "{prices:?}");
    assert!(prices.iter().all(|p| (1000..=20000).contains(p)));
}

#[tokio::test]
async fn per_parent_lists_are_one_statement_for_all_parents() {
    let app = TestApp::spawn().await;
    let query = "{ products(first: 100) { nodes { reviews(first: 10) { author { name } } \
        images(first: 2) { url } reviewCount } } }";
    let reply = app.query(query, json!({}), None).await;
    let nodes = reply.data()["products"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 100);
    assert!(nodes
        .iter()
        .all(|n| n["images"].as_array().unwrap().len() == 2));
    // products, reviews, images, review stats, authors.
    assert!(
        reply.statements() <= 5,
        "ran {} statements",
        reply.statements()
    );

    let nested = app
        .query(
            "{ categories { name products(first: 3) { totalCount nodes { title category { slug } } } } }",
            json!({}),
            None,
        )
        .await;
    let categories = nested.data()["categories"].as_array().unwrap();
    assert_eq!(categories.len(), 20);
    assert!(categories
        .iter()
        .all(|c| c["products"]["nodes"].as_array().unwrap().len() == 3));
    // categories, their products, the counts, the products' categories.
    assert!(
        nested.statements() <= 4,
        "ran {} statements",
        nested.statements()
    );
}

#[tokio::test]
async fn reviews_continue_after_a_review_cursor() {
    let app = TestApp::spawn().await;
    let query = "query($after: String) { product(id: \"5\") { reviewCount reviews(first: 3, after: $after) { id cursor } } }";
    let first = app.query(query, json!({}), None).await;
    let reviews = first.data()["product"]["reviews"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(reviews.len(), 3);
    let after = reviews[2]["cursor"].clone();
    let next = app.query(query, json!({ "after": after }), None).await;
    let next_ids: Vec<i64> = next.data()["product"]["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let last: i64 = reviews[2]["id"].as_str().unwrap().parse().unwrap();
    assert!(
        next_ids.iter().all(|id| *id < last),
        "newest first, after the cursor"
    );
}

#[tokio::test]
async fn lookups_by_sku_and_slug_find_what_listings_show() {
    let app = TestApp::spawn().await;
    let listed = app
        .query(
            "{ products(first: 1) { nodes { id sku category { slug } } } }",
            json!({}),
            None,
        )
        .await;
    let node = listed.data()["products"]["nodes"][0].clone();
    let found = app
        .query(
            "query($sku: String!, $slug: String!) { productBySku(sku: $sku) { id } category(slug: $slug) { slug } missing: product(id: \"999999\") { id } }",
            json!({ "sku": node["sku"], "slug": node["category"]["slug"] }),
            None,
        )
        .await;
    assert_eq!(found.data()["productBySku"]["id"], node["id"]);
    assert_eq!(found.data()["category"]["slug"], node["category"]["slug"]);
    assert!(found.data()["missing"].is_null());
}

#[tokio::test]
async fn page_sizes_over_the_maximum_are_refused_not_clamped() {
    let app = TestApp::spawn().await;
    // Refused before execution: no `data`, the limit and what was asked for.
    let reply = app
        .query("{ products(first: 101) { nodes { id } } }", json!({}), None)
        .await;
    assert_eq!(reply.error_codes(), ["PAGE_SIZE_EXCEEDED"]);
    assert!(reply.body.get("data").is_none(), "{}", reply.body);
    let extensions = &reply.body["errors"][0]["extensions"];
    assert_eq!(extensions["limit"], 100);
    assert_eq!(extensions["measured"], 101);
    // A page size passed in a variable is checked the same way.
    let through_variable = app
        .query(
            "query($n: Int!) { category(slug: \"games\") { products(first: $n) { nodes { id } } } }",
            json!({ "n": 500 }),
            None,
        )
        .await;
    assert_eq!(through_variable.error_codes(), ["PAGE_SIZE_EXCEEDED"]);
    assert_eq!(
        through_variable.body["errors"][0]["extensions"]["measured"],
        500
    );
    let negative = app
        .query("{ products(first: -1) { nodes { id } } }", json!({}), None)
        .await;
    assert_eq!(negative.error_codes(), ["BAD_USER_INPUT"]);
}

#[tokio::test]
async fn foreign_cursors_and_non_numeric_ids_are_clear_errors() {
    let app = TestApp::spawn().await;
    let forged = app
        .query(
            "{ products(first: 5, after: \"not-a-cursor\") { nodes { id } } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(forged.error_codes(), ["INVALID_CURSOR"]);

    let by_price = app
        .query(
            "{ products(first: 1, sort: PRICE_ASC) { pageInfo { endCursor } } }",
            json!({}),
            None,
        )
        .await;
    let cursor = by_price.data()["products"]["pageInfo"]["endCursor"].clone();
    let other_sort = app
        .query(
            "query($after: String) { products(first: 1, after: $after, sort: TITLE_ASC) { nodes { id } } }",
            json!({ "after": cursor }),
            None,
        )
        .await;
    assert_eq!(other_sort.error_codes(), ["INVALID_CURSOR"]);

    let bad_id = app
        .query("{ product(id: \"abc\") { id } }", json!({}), None)
        .await;
    assert_eq!(bad_id.error_codes(), ["BAD_USER_INPUT"]);
    assert!(bad_id.body["data"]["product"].is_null());
}

/// Most requests run on a copy of the schema without async-graphql's
/// extension (`graph::FastSchema`); a document that names `_service`, even
/// in a comment, runs on the full schema. Both answer alike, byte for byte:
/// the same fields in the same order, the same nulls for errored fields, the
/// same codes, the same cost.
#[tokio::test]
async fn the_fast_path_answers_as_the_full_schema_does() {
    let app = TestApp::spawn().await;
    let documents = [
        // Fragments, aliases, nested lists; `orders` refused to anonymous
        // callers and `null` in its place.
        "query Page($id: ID!) { product(id: $id) { ...Card name: title \
         reviews(first: 3) { rating author { name } } } orders(first: 1) { nodes { id } } \
         categories { id } } fragment Card on Product { price { currency amount } title }",
        // A validation error.
        "{ product(id: \"1\") { nope } }",
        // Two operations and no name to choose.
        "query A { categories { id } } query B { categories { slug } }",
        // Deeper than the limit (12).
        "{ categories { products(first: 1) { nodes { category { products(first: 1) { nodes { \
         category { products(first: 1) { nodes { category { products(first: 1) { nodes { \
         id } } } } } } } } } } } } }",
    ];
    for document in documents {
        let answer = |text: String| {
            let body = json!({ "query": text, "variables": { "id": "17" }, "extensions": { "cost": true } });
            let request = app.client.post(app.graphql_url()).json(&body);
            async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                // As sent, to compare the order of the fields too; the
                // request's id and the client's bucket differ each time.
                let text = response.text().await.unwrap();
                (
                    status,
                    blank(&blank(&text, "requestId"), "currentlyAvailable"),
                )
            }
        };
        let fast = answer(document.to_string()).await;
        let full = answer(format!("{document}\n# _service")).await;
        assert_eq!(fast, full, "{document}");
        let fast: serde_json::Value = serde_json::from_str(&fast.1).unwrap();
        assert!(fast["errors"].is_array() || fast["data"]["product"]["title"].is_string());
    }
}

/// `text` with the value of every `"key":` replaced by `0`.
fn blank(text: &str, key: &str) -> String {
    let marker = format!("\"{key}\":");
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&marker) {
        out.push_str(&rest[..at + marker.len()]);
        rest = &rest[at + marker.len()..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        out.push('0');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
