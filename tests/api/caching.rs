//! HTTP caching of GraphQL answers: `Cache-Control` from the fields'
//! hints, `ETag` and `304 Not Modified`, and never public when personal.

use serde_json::json;

use crate::helpers::{Reply, TestApp};

async fn get(app: &TestApp, query: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.get_graphql().query(&[("query", query)]);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn catalog_answers_are_public_for_their_shortest_hint() {
    let app = TestApp::spawn().await;
    let categories = get(&app, "{ categories { slug } }", None).await;
    assert_eq!(header(&categories, "cache-control"), "public, max-age=300");
    let vary = header(&categories, "vary");
    assert!(
        vary.contains("authorization") && vary.contains("accept"),
        "{vary}"
    );
    let listing = get(
        &app,
        "{ products(first: 3) { nodes { title inventory { available } } } }",
        None,
    )
    .await;
    assert_eq!(header(&listing, "cache-control"), "public, max-age=5");
    let product = get(
        &app,
        "{ product(id: \"1\") { title reviews(first: 2) { author { name } } } }",
        None,
    )
    .await;
    assert_eq!(header(&product, "cache-control"), "public, max-age=60");
}

#[tokio::test]
async fn personal_failed_and_authenticated_answers_are_not_public() {
    let app = TestApp::spawn().await;
    let token = app.customer_token(1);
    let me = get(&app, "{ me { name } }", Some(&token)).await;
    assert_eq!(header(&me, "cache-control"), "no-store");
    assert!(header(&me, "etag").is_empty());
    // A public field next to a personal one.
    let mixed = get(&app, "{ categories { slug } me { email } }", Some(&token)).await;
    assert_eq!(header(&mixed, "cache-control"), "no-store");
    // The catalog seen with a token: only the client may keep it.
    let signed_in = get(&app, "{ categories { slug } }", Some(&token)).await;
    assert_eq!(header(&signed_in, "cache-control"), "private, max-age=300");
    // Any error: nothing stored.
    let failed = get(&app, "{ me { name } }", None).await;
    assert_eq!(header(&failed, "cache-control"), "no-store");
    let invalid = get(&app, "{ categories { nope } }", None).await;
    assert_eq!(header(&invalid, "cache-control"), "no-store");
    // Writes and introspection are never cached.
    let reply = Reply::from(
        app.client
            .post(app.graphql_url())
            .bearer_auth(&token)
            .json(&json!({ "query": "mutation { addReview(input: { productId: \"1\", rating: 5, text: \"ok\" }) { id } }" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.headers["cache-control"], "no-store", "{}", reply.body);
    let schema = get(&app, "{ __schema { queryType { name } } }", None).await;
    assert_eq!(header(&schema, "cache-control"), "no-store");
}

#[tokio::test]
async fn etags_let_clients_revalidate_with_304() {
    let app = TestApp::spawn().await;
    let query = "{ categories { slug } }";
    let first = get(&app, query, None).await;
    let tag = header(&first, "etag");
    assert!(tag.starts_with('"') && tag.len() == 34, "{tag}");
    let body = first.text().await.unwrap();
    let again = get(&app, query, None).await;
    assert_eq!(header(&again, "etag"), tag, "the same answer, the same tag");

    let revalidated = app
        .get_graphql()
        .query(&[("query", query)])
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert_eq!(header(&revalidated, "etag"), tag);
    assert_eq!(header(&revalidated, "cache-control"), "public, max-age=300");
    assert!(revalidated.text().await.unwrap().is_empty());

    let changed = app
        .get_graphql()
        .query(&[("query", query)])
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.text().await.unwrap(), body);
}

#[tokio::test]
async fn operators_can_cap_every_max_age() {
    let app = TestApp::spawn_with(|c| c.max_cache_age = Some(2)).await;
    let categories = get(&app, "{ categories { slug } }", None).await;
    assert_eq!(header(&categories, "cache-control"), "public, max-age=2");
    let off = TestApp::spawn_with(|c| c.max_cache_age = Some(0)).await;
    let categories = get(&off, "{ categories { slug } }", None).await;
    assert_eq!(header(&categories, "cache-control"), "no-store");
}

/// What a CDN keeps and revalidates is the bytes: the same query must give
/// the same body (and ETag) every time, with its fields in the order the
/// query selected them, whichever resolver finished first.
#[tokio::test]
async fn answers_keep_the_selection_order_so_the_etag_is_stable() {
    // Every answer computed afresh, not served from the response cache.
    let app = TestApp::spawn_with(|c| c.response_cache_bytes = 0).await;
    // Two batched loaders (inventory, images) and a fragment, so fields
    // finish in varying order.
    let query = "query ($id: ID!) { product(id: $id) { title ...Shown inventory { warehouse available } \
                 images(first: 3) { url alt } price { currency amount } reviews(first: 5) { rating text } } } \
                 fragment Shown on Product { averageRating images(first: 3) { url } }";
    let expected = [
        "\"title\"",
        "\"averageRating\"",
        "\"images\"",
        "\"inventory\"",
        "\"price\"",
        "\"reviews\"",
    ];
    let mut first: Option<(String, String)> = None;
    for _ in 0..25 {
        let response = app
            .get_graphql()
            .query(&[("query", query), ("variables", r#"{"id":"3"}"#)])
            .send()
            .await
            .unwrap();
        let tag = header(&response, "etag");
        let body = response.text().await.unwrap();
        let positions: Vec<usize> = expected
            .iter()
            .map(|key| body.find(key).unwrap_or_else(|| panic!("{key} in {body}")))
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "fields out of the selection order: {body}"
        );
        let inventory = &body[body.find("\"inventory\"").unwrap()..];
        assert!(
            inventory.find("\"warehouse\"") < inventory.find("\"available\""),
            "{body}"
        );
        let price = &body[body.find("\"price\"").unwrap()..];
        assert!(
            price.find("\"currency\"") < price.find("\"amount\""),
            "{body}"
        );
        match &first {
            None => first = Some((body, tag)),
            Some((body0, tag0)) => {
                assert_eq!(&body, body0);
                assert_eq!(&tag, tag0);
            }
        }
    }
}

/// A shared cache must key a kept answer by every request header it depends
/// on, and some read only one `Vary` header of several (nginx before 1.23
/// takes the last, and ignores one longer than 128 bytes): so one header
/// names them all. `apollographql-client-name` is among them because
/// registered documents may be scoped to a client.
#[tokio::test]
async fn one_vary_header_names_every_request_header_the_answer_depends_on() {
    let app = TestApp::spawn().await;
    let response = app
        .get_graphql()
        .query(&[("query", "{ categories { slug name } }")])
        .header("accept-encoding", "gzip")
        .header("origin", crate::helpers::ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "content-encoding"), "gzip");
    let vary: Vec<_> = response.headers().get_all("vary").iter().collect();
    assert_eq!(vary.len(), 1, "{vary:?}");
    let vary = vary[0].to_str().unwrap();
    let names: Vec<_> = vary.split(',').map(str::trim).collect();
    for name in [
        "accept",
        "accept-encoding",
        "authorization",
        "apollographql-client-name",
        "origin",
    ] {
        assert!(names.contains(&name), "{name} in {vary}");
    }
    assert!(vary.len() <= 128, "{vary}");
}

const PRODUCT_PAGE: &str =
    "{ product(id: \"1\") { title price { amount } inventory { available } } }";

fn statements(response: &reqwest::Response) -> usize {
    header(response, "x-sql-statements").parse().unwrap()
}

#[tokio::test]
async fn a_hot_public_answer_is_served_from_memory_without_the_database() {
    let app = TestApp::spawn().await;
    let first = get(&app, PRODUCT_PAGE, None).await;
    assert!(statements(&first) > 0);
    let keys = header(&first, "surrogate-key");
    for tag in ["product:1", "inventory:1"] {
        assert!(keys.split(' ').any(|k| k == tag), "{keys}");
    }
    let etag = header(&first, "etag");
    let vary = header(&first, "vary");
    let body = first.text().await.unwrap();

    let second = get(&app, PRODUCT_PAGE, None).await;
    assert_eq!(statements(&second), 0, "served from the response cache");
    // The same headers as when it was computed.
    assert_eq!(header(&second, "etag"), etag);
    assert_eq!(header(&second, "surrogate-key"), keys);
    assert_eq!(header(&second, "vary"), vary);
    assert_eq!(header(&second, "cache-control"), "public, max-age=5");
    assert!(header(&second, "age").parse::<u32>().unwrap() <= 5);
    assert_eq!(second.text().await.unwrap(), body);

    // A token bypasses the shared cache: the answer may depend on who asks.
    let signed_in = get(&app, PRODUCT_PAGE, Some(&app.customer_token(1))).await;
    assert!(statements(&signed_in) > 0);
}

#[tokio::test]
async fn a_price_change_purges_the_answers_that_contain_the_product() {
    let app = TestApp::spawn().await;
    let other = "{ product(id: \"2\") { title price { amount } } }";
    let before: serde_json::Value = get(&app, PRODUCT_PAGE, None).await.json().await.unwrap();
    get(&app, other, None).await;
    assert_eq!(statements(&get(&app, PRODUCT_PAGE, None).await), 0);

    let change = Reply::from(
        app.client
            .post(app.graphql_url())
            .bearer_auth(app.admin_token())
            .json(&json!({ "query": "mutation { setProductPrice(productId: \"1\", cents: 123456) { id } }" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    change.data();
    let purge = change.headers["x-purge-surrogate-keys"].to_str().unwrap();
    assert!(purge.split(' ').any(|k| k == "product:1"), "{purge}");

    let after = get(&app, PRODUCT_PAGE, None).await;
    assert!(statements(&after) > 0, "the stale answer is gone");
    let after: serde_json::Value = after.json().await.unwrap();
    assert_ne!(after, before);
    assert_eq!(after["data"]["product"]["price"]["amount"], "1234.56");
    // What did not contain the product stays cached.
    assert_eq!(statements(&get(&app, other, None).await), 0);
}

async fn adjust_stock(app: &TestApp, product: &str, delta: i64) {
    let reply = app
        .query(
            "mutation($p: ID!, $d: Int!) { adjustInventory(productId: $p, warehouse: \"east\", delta: $d) { available } }",
            json!({ "p": product, "d": delta }),
            Some(&app.admin_token()),
        )
        .await;
    reply.data();
}

fn stock(body: &serde_json::Value) -> i64 {
    body["data"]["product"]["inventory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|level| level["available"].as_i64().unwrap())
        .sum()
}

/// Writes purge what they change, so an answer none changed is still the
/// current one past its `max-age`: held (60 s by default), and served as
/// freshly computed (`Age` from the last multiple of its `max-age`).
#[tokio::test]
async fn an_answer_no_write_changed_is_held_past_its_max_age_until_one_does() {
    let app = TestApp::spawn_with(|c| c.max_cache_age = Some(1)).await;
    let first = get(&app, PRODUCT_PAGE, None).await;
    assert!(statements(&first) > 0);
    let etag = header(&first, "etag");
    let before: serde_json::Value = first.json().await.unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let held = get(&app, PRODUCT_PAGE, None).await;
    assert_eq!(statements(&held), 0, "held past its max-age");
    assert_eq!(header(&held, "cache-control"), "public, max-age=1");
    assert_eq!(header(&held, "age"), "0");
    assert_eq!(header(&held, "etag"), etag);
    assert_eq!(held.json::<serde_json::Value>().await.unwrap(), before);

    adjust_stock(&app, "1", 3).await;
    let after = get(&app, PRODUCT_PAGE, None).await;
    assert!(statements(&after) > 0, "the write ended the hold");
    let after: serde_json::Value = after.json().await.unwrap();
    assert_eq!(stock(&after), stock(&before) + 3);
}

#[tokio::test]
async fn without_a_hold_an_answer_is_kept_for_its_max_age_only() {
    let app = TestApp::spawn_with(|c| {
        c.max_cache_age = Some(1);
        c.response_cache_hold = std::time::Duration::ZERO;
    })
    .await;
    assert!(statements(&get(&app, PRODUCT_PAGE, None).await) > 0);
    assert_eq!(statements(&get(&app, PRODUCT_PAGE, None).await), 0);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert!(statements(&get(&app, PRODUCT_PAGE, None).await) > 0);
}
