//! What GraphiQL's "Persisted documents" plugin reads: the registered
//! documents, listed for a browser while GraphiQL is on, and enough of each
//! to run it by id as a production client would.

use serde_json::{json, Value};

use crate::helpers::{Reply, TestApp};

const WORKLOADS: &str = include_str!("../../persisted-queries/workloads.json");
const CATEGORIES: &str = "query Categories { categories { slug } }";

async fn import(app: &TestApp, manifest: &str, client: Option<&str>) {
    let mut url = format!("{}/admin/persisted-queries", app.url);
    if let Some(client) = client {
        url.push_str(&format!("?client={client}"));
    }
    let response = app
        .client
        .post(url)
        .bearer_auth(app.admin_token())
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// `GET /graphiql/persisted-documents` as GraphiQL sends it: no token.
async fn listed(app: &TestApp) -> reqwest::Response {
    app.client
        .get(format!("{}/graphiql/persisted-documents", app.url))
        .send()
        .await
        .unwrap()
}

async fn listed_documents(app: &TestApp) -> Vec<Value> {
    let response = listed(app).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    body["documents"].as_array().unwrap().clone()
}

#[tokio::test]
async fn graphiql_lists_the_registered_documents_without_a_token() {
    let app = TestApp::spawn().await;
    assert_eq!(listed_documents(&app).await, Vec::<Value>::new());

    import(&app, WORKLOADS, None).await;
    let relay = json!({ "ios-categories": CATEGORIES }).to_string();
    import(&app, &relay, Some("ios")).await;

    let documents = listed_documents(&app).await;
    let names: Vec<&str> = documents
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["AllOrders", "Catalog", "Categories", "ProductPage"]);
    let manifest: Value = serde_json::from_str(WORKLOADS).unwrap();
    let product_page = &manifest["operations"][0];
    let shown = &documents[3];
    // What the plugin shows and needs, and nothing else.
    let mut fields: Vec<&str> = shown
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    fields.sort();
    assert_eq!(fields, ["body", "client", "cost", "id", "name", "type"]);
    assert_eq!(shown["id"], product_page["id"]);
    assert_eq!(shown["body"], product_page["body"]);
    assert_eq!(shown["type"], "query");
    assert_eq!(shown["client"], Value::Null);
    assert!(shown["cost"].as_i64().unwrap() > 0);
    let scoped = &documents[2];
    assert_eq!(scoped["id"], "ios-categories");
    assert_eq!(scoped["client"], "ios");
}

#[tokio::test]
async fn a_listed_document_runs_by_its_id_and_client() {
    let app = TestApp::spawn().await;
    import(
        &app,
        &json!({ "ios-categories": CATEGORIES }).to_string(),
        Some("ios"),
    )
    .await;
    let documents = listed_documents(&app).await;
    let listed = &documents[0];
    // What the plugin's "Run by id" sends: the id, the variables and the
    // client name of a scoped document, never the text.
    let reply = Reply::from(
        app.client
            .post(app.graphql_url())
            .header(
                "apollographql-client-name",
                listed["client"].as_str().unwrap(),
            )
            .json(&json!({ "documentId": listed["id"], "variables": {} }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(!reply.data()["categories"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_removed_document_leaves_the_list_at_once() {
    let app = TestApp::spawn().await;
    import(&app, WORKLOADS, None).await;
    let catalog = listed_documents(&app)
        .await
        .into_iter()
        .find(|d| d["name"] == "Catalog")
        .unwrap();
    let removed = app
        .client
        .delete(format!(
            "{}/admin/persisted-queries/{}",
            app.url,
            catalog["id"].as_str().unwrap()
        ))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let names: Vec<Value> = listed_documents(&app)
        .await
        .into_iter()
        .map(|d| d["name"].clone())
        .collect();
    assert_eq!(names, ["AllOrders", "ProductPage"]);
}

#[tokio::test]
async fn without_graphiql_there_is_no_list() {
    let app = TestApp::spawn_with(|c| c.graphiql = false).await;
    import(&app, WORKLOADS, None).await;
    let response = listed(&app).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not found");
    assert!(!body.to_string().contains("ProductPage"));
}
