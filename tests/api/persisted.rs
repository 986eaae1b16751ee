//! Persisted documents as clients and operators use them: the APQ protocol,
//! the registry (admin endpoint), document ids, the modes, client scoping.

use commerce_graph::persisted::{unregistered_in_audit, PersistedMode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{Reply, TestApp};

const CATEGORIES: &str = "query Categories { categories { slug } }";
const WORKLOADS: &str = include_str!("../../persisted-queries/workloads.json");
/// ProductPage in `persisted-queries/workloads.json`.
const PRODUCT_PAGE_ID: &str = "c71a9005156b657848932f430700c866a264839ccb96f0d8bd889b406b4c9890";

fn sha256(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

fn apq(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

async fn post(app: &TestApp, body: Value, client: Option<&str>) -> Reply {
    let mut request = app.client.post(app.graphql_url()).json(&body);
    if let Some(client) = client {
        request = request.header("apollographql-client-name", client);
    }
    Reply::from(request.send().await.unwrap()).await
}

async fn get(app: &TestApp, params: &[(&str, String)]) -> Reply {
    Reply::from(app.get_graphql().query(params).send().await.unwrap()).await
}

fn refused_uncached(reply: &Reply, code: &str) {
    assert_eq!(reply.error_codes(), [code], "{}", reply.body);
    assert!(reply.body.get("data").is_none());
    assert_eq!(reply.headers["cache-control"], "no-store");
}

async fn import(app: &TestApp, manifest: &str, client: Option<&str>) -> reqwest::Response {
    let mut url = format!("{}/admin/persisted-queries", app.url);
    if let Some(client) = client {
        url.push_str(&format!("?client={client}"));
    }
    app.client
        .post(url)
        .bearer_auth(app.admin_token())
        .body(manifest.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn apq_round_trip_over_post_and_get() {
    let app = TestApp::spawn().await;
    let hash = sha256(CATEGORIES);
    // The hash alone: unknown, with the message Apollo Client retries on.
    let unknown = post(&app, json!({ "extensions": apq(&hash) }), None).await;
    refused_uncached(&unknown, "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(unknown.status, 200);
    assert_eq!(
        unknown.body["errors"][0]["message"],
        "PersistedQueryNotFound"
    );
    // The retry with the body registers it and runs it.
    let registered = post(
        &app,
        json!({ "query": CATEGORIES, "extensions": apq(&hash) }),
        None,
    )
    .await;
    let slugs = registered.data()["categories"].clone();
    assert!(!slugs.as_array().unwrap().is_empty());
    // From now on the hash is enough, by POST and by GET.
    let by_hash = post(&app, json!({ "extensions": apq(&hash) }), None).await;
    assert_eq!(by_hash.data()["categories"], slugs);
    let extensions = apq(&hash).to_string();
    let by_get = get(&app, &[("extensions", extensions)]).await;
    assert_eq!(by_get.data()["categories"], slugs);
    // The GET form of the first step, for a hash nobody registered.
    let other = apq(&sha256("{ categories { id } }")).to_string();
    refused_uncached(
        &get(&app, &[("extensions", other)]).await,
        "PERSISTED_QUERY_NOT_FOUND",
    );
}

#[tokio::test]
async fn ids_and_bodies_that_disagree_are_refused() {
    let app = TestApp::spawn().await;
    let wrong = post(
        &app,
        json!({ "query": CATEGORIES, "extensions": apq(&sha256("{ __typename }")) }),
        None,
    )
    .await;
    refused_uncached(&wrong, "PERSISTED_QUERY_HASH_MISMATCH");
    // A registered id with another body.
    assert_eq!(import(&app, WORKLOADS, None).await.status(), 200);
    let swapped = post(
        &app,
        json!({ "documentId": PRODUCT_PAGE_ID, "query": CATEGORIES }),
        None,
    )
    .await;
    refused_uncached(&swapped, "PERSISTED_QUERY_HASH_MISMATCH");
    let version = post(
        &app,
        json!({ "extensions": { "persistedQuery": { "version": 2, "sha256Hash": "ab" } } }),
        None,
    )
    .await;
    refused_uncached(&version, "PERSISTED_QUERY_NOT_SUPPORTED");
    // Under the GraphQL response media type these are request errors: 400.
    let strict = Reply::from(
        app.client
            .post(app.graphql_url())
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "extensions": apq(&sha256("{ __typename }")) }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(strict.status, 400);
    refused_uncached(&strict, "PERSISTED_QUERY_NOT_FOUND");
}

#[tokio::test]
async fn registered_documents_run_by_any_of_their_ids() {
    let app = TestApp::spawn().await;
    let imported = import(&app, WORKLOADS, None).await;
    assert_eq!(imported.status(), 200);
    let imported: Value = imported.json().await.unwrap();
    assert_eq!(imported["registered"], 3);
    let variables = json!({ "id": "1" });
    for body in [
        json!({ "documentId": PRODUCT_PAGE_ID, "variables": variables }),
        json!({ "documentId": format!("sha256:{PRODUCT_PAGE_ID}"), "variables": variables }),
        json!({ "doc_id": PRODUCT_PAGE_ID, "variables": variables }),
        json!({ "extensions": apq(PRODUCT_PAGE_ID), "variables": variables }),
    ] {
        let reply = post(&app, body.clone(), None).await;
        assert!(reply.data()["product"]["title"].is_string(), "{body}");
    }
    let by_get = get(
        &app,
        &[
            ("documentId", PRODUCT_PAGE_ID.to_string()),
            ("variables", variables.to_string()),
        ],
    )
    .await;
    assert!(by_get.data()["product"]["title"].is_string());
}

#[tokio::test]
async fn operators_import_list_and_remove_through_the_admin_endpoint() {
    let app = TestApp::spawn().await;
    let url = format!("{}/admin/persisted-queries", app.url);
    // Admins only.
    let anonymous = app.client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let customer = app
        .client
        .get(&url)
        .bearer_auth(app.customer_token(1))
        .send()
        .await
        .unwrap();
    assert_eq!(customer.status(), 403);
    let body: Value = customer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "FORBIDDEN");

    assert_eq!(import(&app, WORKLOADS, None).await.status(), 200);
    let list = |app: &TestApp| {
        let request = app.client.get(&url).bearer_auth(app.admin_token());
        async move {
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            let mut names: Vec<String> = body["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap_or("").to_string())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(list(&app).await, ["AllOrders", "Catalog", "ProductPage"]);

    // One invalid document refuses the whole manifest, and says which and why.
    let manifest = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            { "id": sha256(CATEGORIES), "name": "Categories", "type": "query", "body": CATEGORIES },
            { "id": "bad-1", "name": "Typo", "type": "query", "body": "query Typo { product(id: \"1\") { titel } }" },
            { "id": "bad-2", "name": "Huge", "type": "query",
              "body": "query Huge($n: Int!) { products(first: $n) { nodes { reviews(first: $n) { author { name } } } } }" },
        ]
    });
    let refused = import(&app, &manifest.to_string(), None).await;
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "INVALID_DOCUMENTS");
    let details = refused["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 2);
    assert_eq!(details[0]["name"], "Typo");
    assert!(details[0]["reason"].as_str().unwrap().contains("titel"));
    assert_eq!(details[1]["name"], "Huge");
    assert!(details[1]["reason"]
        .as_str()
        .unwrap()
        .contains("QUERY_TOO_COMPLEX"));
    assert_eq!(list(&app).await, ["AllOrders", "Catalog", "ProductPage"]);

    let malformed = import(&app, "{\"format\": \"something-else\"}", None).await;
    assert_eq!(malformed.status(), 400);
    let malformed: Value = malformed.json().await.unwrap();
    assert_eq!(malformed["error"]["code"], "INVALID_MANIFEST");

    // Removal takes effect at once on this replica.
    let remove = |id: &str| {
        app.client
            .delete(format!("{url}/{id}"))
            .bearer_auth(app.admin_token())
            .send()
    };
    let ran = post(
        &app,
        json!({ "documentId": PRODUCT_PAGE_ID, "variables": { "id": "1" } }),
        None,
    )
    .await;
    ran.data();
    assert_eq!(remove(PRODUCT_PAGE_ID).await.unwrap().status(), 204);
    assert_eq!(remove(PRODUCT_PAGE_ID).await.unwrap().status(), 404);
    assert_eq!(list(&app).await, ["AllOrders", "Catalog"]);
    let gone = post(
        &app,
        json!({ "documentId": PRODUCT_PAGE_ID, "variables": { "id": "1" } }),
        None,
    )
    .await;
    refused_uncached(&gone, "PERSISTED_QUERY_NOT_FOUND");
}

#[tokio::test]
async fn the_safelist_runs_registered_documents_only() {
    let app = TestApp::spawn_with(|c| c.persisted_queries = PersistedMode::Safelist).await;
    assert_eq!(import(&app, WORKLOADS, None).await.status(), 200);
    let variables = json!({ "id": "1" });
    let by_id = post(
        &app,
        json!({ "documentId": PRODUCT_PAGE_ID, "variables": variables }),
        None,
    )
    .await;
    by_id.data();
    // The very text of a registered document is as good as its id.
    let manifest: Value = serde_json::from_str(WORKLOADS).unwrap();
    let body = manifest["operations"][0]["body"].as_str().unwrap();
    post(&app, json!({ "query": body, "variables": variables }), None)
        .await
        .data();
    // Anything else is refused, with its own code for each case.
    refused_uncached(
        &post(&app, json!({ "query": CATEGORIES }), None).await,
        "QUERY_NOT_IN_SAFELIST",
    );
    refused_uncached(
        &post(&app, json!({ "documentId": "nope" }), None).await,
        "PERSISTED_QUERY_NOT_IN_LIST",
    );
    // APQ cannot register a document past the safelist.
    let hash = sha256(CATEGORIES);
    refused_uncached(
        &post(
            &app,
            json!({ "query": CATEGORIES, "extensions": apq(&hash) }),
            None,
        )
        .await,
        "QUERY_NOT_IN_SAFELIST",
    );
    refused_uncached(
        &post(&app, json!({ "extensions": apq(&hash) }), None).await,
        "PERSISTED_QUERY_NOT_IN_LIST",
    );
}

#[tokio::test]
async fn a_document_scoped_to_one_client_does_not_open_doors_for_another() {
    let app = TestApp::spawn_with(|c| c.persisted_queries = PersistedMode::Safelist).await;
    let manifest = json!({ sha256(CATEGORIES): CATEGORIES }).to_string();
    assert_eq!(import(&app, &manifest, Some("ios")).await.status(), 200);
    let request = json!({ "documentId": sha256(CATEGORIES) });
    post(&app, request.clone(), Some("ios")).await.data();
    refused_uncached(
        &post(&app, request.clone(), Some("android")).await,
        "PERSISTED_QUERY_NOT_IN_LIST",
    );
    refused_uncached(
        &post(&app, request, None).await,
        "PERSISTED_QUERY_NOT_IN_LIST",
    );
}

#[tokio::test]
async fn audit_mode_runs_everything_and_counts_what_is_not_registered() {
    let app = TestApp::spawn_with(|c| c.persisted_queries = PersistedMode::Audit).await;
    let before = unregistered_in_audit();
    post(&app, json!({ "query": CATEGORIES }), None)
        .await
        .data();
    assert!(unregistered_in_audit() > before);
}

#[tokio::test]
async fn with_persisted_queries_off_ids_are_refused_and_bodies_run() {
    let app = TestApp::spawn_with(|c| c.persisted_queries = PersistedMode::Off).await;
    let hash = sha256(CATEGORIES);
    refused_uncached(
        &post(
            &app,
            json!({ "query": CATEGORIES, "extensions": apq(&hash) }),
            None,
        )
        .await,
        "PERSISTED_QUERY_NOT_SUPPORTED",
    );
    assert_eq!(
        post(&app, json!({ "extensions": apq(&hash) }), None)
            .await
            .body["errors"][0]["message"],
        "PersistedQueryNotSupported"
    );
    post(&app, json!({ "query": CATEGORIES }), None)
        .await
        .data();
}
