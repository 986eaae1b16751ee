//! The HTTP contract: GraphQL over HTTP, malformed input, limits, headers.

use serde_json::json;

use crate::helpers::{Reply, TestApp, ALLOWED_ORIGIN};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

#[tokio::test]
async fn invalid_json_is_a_400_with_a_code() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.graphql_url())
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_codes(), ["BAD_REQUEST"]);
    assert!(reply.body.get("data").is_none());

    for body in [
        "[1, 2]",
        "\"text\"",
        "{\"query\": 5}",
        "{\"query\": \"{ categories { id } }\", \"variables\": [1]}",
        "{}",
    ] {
        let response = app
            .client
            .post(app.graphql_url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let reply = Reply::from(response).await;
        assert_eq!(reply.status, 400, "{body}");
        assert!(!reply.error_codes()[0].is_empty(), "{body}");
    }
}

#[tokio::test]
async fn unknown_fields_fail_validation_with_the_spec_status_per_media_type() {
    let app = TestApp::spawn().await;
    let body = json!({ "query": "{ product(id: \"1\") { nope } }" });

    let legacy = Reply::from(
        app.client
            .post(app.graphql_url())
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(legacy.status, 200);
    assert_eq!(legacy.error_codes(), ["GRAPHQL_VALIDATION_FAILED"]);
    assert!(legacy.body.get("data").is_none());
    assert!(legacy.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));

    let modern = Reply::from(
        app.client
            .post(app.graphql_url())
            .header("accept", GRAPHQL_RESPONSE)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(modern.status, 400);
    assert_eq!(modern.error_codes(), ["GRAPHQL_VALIDATION_FAILED"]);
    assert!(modern.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with(GRAPHQL_RESPONSE));

    // A field error during execution is still 200 with data.
    let executed = Reply::from(
        app.client
            .post(app.graphql_url())
            .header("accept", GRAPHQL_RESPONSE)
            .json(&json!({ "query": "{ product(id: \"x\") { id } }" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(executed.status, 200);
    assert!(executed.body["data"]["product"].is_null());
}

#[tokio::test]
async fn syntax_errors_and_unknown_operations_have_their_own_codes() {
    let app = TestApp::spawn().await;
    let parse = app.query("{ products(first: ", json!({}), None).await;
    assert_eq!(parse.error_codes(), ["GRAPHQL_PARSE_FAILED"]);

    let response = app
        .client
        .post(app.graphql_url())
        .json(&json!({ "query": "query A { categories { id } } query B { categories { slug } }", "operationName": "C" }))
        .send()
        .await
        .unwrap();
    let unknown = Reply::from(response).await;
    assert_eq!(unknown.error_codes(), ["OPERATION_RESOLUTION_FAILURE"]);

    let mismatched = app
        .query(
            "query($id: ID!) { product(id: $id) { id } }",
            json!({ "id": [1] }),
            None,
        )
        .await;
    assert_eq!(mismatched.error_codes(), ["GRAPHQL_VALIDATION_FAILED"]);
    for error in mismatched.body["errors"].as_array().unwrap() {
        assert!(error["extensions"]["requestId"].is_string());
    }
}

#[tokio::test]
async fn non_json_posts_are_refused_so_forms_cannot_forge_requests() {
    let app = TestApp::spawn().await;
    for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
        let response = app
            .client
            .post(app.graphql_url())
            .header("content-type", content_type)
            .body("query={categories{id}}")
            .send()
            .await
            .unwrap();
        let reply = Reply::from(response).await;
        assert_eq!(reply.status, 415);
        assert_eq!(reply.error_codes(), ["UNSUPPORTED_MEDIA_TYPE"]);
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 1024).await;
    let padding = " ".repeat(2048);
    let response = app
        .client
        .post(app.graphql_url())
        .header("content-type", "application/json")
        .body(format!(
            "{{\"query\": \"{{ categories {{ id }} }}{padding}\"}}"
        ))
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.error_codes(), ["PAYLOAD_TOO_LARGE"]);
}

#[tokio::test]
async fn get_runs_queries_and_refuses_mutations() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.graphql_url())
        .query(&[
            (
                "query",
                "query Cat($slug: String!) { category(slug: $slug) { slug } }",
            ),
            ("variables", "{\"slug\": \"kitchen\"}"),
            ("operationName", "Cat"),
        ])
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body["data"].get("category").is_some());

    let response = app
        .client
        .get(app.graphql_url())
        .query(&[("query", "mutation { placeOrder }")])
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "POST");
    assert_eq!(reply.error_codes(), ["METHOD_NOT_ALLOWED"]);

    let response = app
        .client
        .get(app.graphql_url())
        .query(&[("query", "{ categories { id } }"), ("variables", "{oops")])
        .send()
        .await
        .unwrap();
    assert_eq!(Reply::from(response).await.error_codes(), ["BAD_REQUEST"]);
}

#[tokio::test]
async fn unacceptable_accept_headers_get_406() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.graphql_url())
        .header("accept", "application/xml")
        .json(&json!({ "query": "{ categories { id } }" }))
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    assert_eq!(reply.status, 406);
    assert_eq!(reply.error_codes(), ["NOT_ACCEPTABLE"]);
}

#[tokio::test]
async fn responses_are_compressed_when_asked() {
    let app = TestApp::spawn().await;
    let body = json!({ "query": "{ products(first: 100) { nodes { id title description } } }" });
    for (encoding, expected) in [("gzip", "gzip"), ("br", "br")] {
        let response = app
            .client
            .post(app.graphql_url())
            .header("accept-encoding", encoding)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-encoding"], expected);
    }
    let plain = app
        .client
        .post(app.graphql_url())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_clients() {
    let app = TestApp::spawn().await;
    let generated = app
        .client
        .post(app.graphql_url())
        .json(&json!({ "query": "{ categories { id } }" }))
        .send()
        .await
        .unwrap();
    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let propagated = app
        .client
        .post(app.graphql_url())
        .header("x-request-id", "client-chosen-42")
        .json(&json!({ "query": "{ nope }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(propagated.headers()["x-request-id"], "client-chosen-42");
    let body: serde_json::Value = propagated.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["requestId"],
        "client-chosen-42"
    );

    let health = app
        .client
        .get(format!("{}/health/live", app.url))
        .send()
        .await
        .unwrap();
    assert!(health.headers().contains_key("x-request-id"));
}

/// The `traceparent` a response carries, split into its four fields.
fn traceparent_of(response: &reqwest::Response) -> Vec<String> {
    let value = response.headers()["traceparent"].to_str().unwrap();
    let fields: Vec<String> = value.split('-').map(str::to_string).collect();
    assert_eq!(
        fields.iter().map(String::len).collect::<Vec<_>>(),
        [2, 32, 16, 2],
        "{value}"
    );
    assert_eq!(fields[0], "00");
    fields
}

#[tokio::test]
async fn a_caller_s_trace_continues_here_and_a_bad_traceparent_starts_a_new_one() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT_ID: &str = "00f067aa0ba902b7";
    let app = TestApp::spawn().await;
    let send = |traceparent: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.graphql_url())
            .json(&json!({ "query": "{ categories { id } }" }));
        if let Some(value) = traceparent {
            request = request
                .header("traceparent", value)
                .header("tracestate", "congo=t61rcWkgMzE");
        }
        request.send()
    };

    let continued = send(Some(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ))
    .await
    .unwrap();
    let fields = traceparent_of(&continued);
    assert_eq!(fields[1], TRACE_ID, "the caller's trace");
    assert_ne!(fields[2], PARENT_ID, "this server's own span");
    assert_ne!(fields[2], "0000000000000000");
    assert_eq!(fields[3], "01", "the caller's sampling decision");

    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ] {
        let restarted = send(Some(bad)).await.unwrap();
        let fields = traceparent_of(&restarted);
        assert_ne!(fields[1], TRACE_ID, "{bad}");
        assert_ne!(fields[1], "0".repeat(32), "{bad}");
        assert_eq!(
            restarted.status(),
            200,
            "{bad}: the request itself is served"
        );
    }

    // Without one, every request starts its own trace; non-GraphQL
    // endpoints answer with one too.
    let first = traceparent_of(&send(None).await.unwrap());
    let second = traceparent_of(&send(None).await.unwrap());
    assert_ne!(first[1], second[1]);
    let health = app
        .client
        .get(format!("{}/health/live", app.url))
        .send()
        .await
        .unwrap();
    traceparent_of(&health);
}

#[tokio::test]
async fn cors_allows_configured_origins_only() {
    let app = TestApp::spawn().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.graphql_url())
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
    };
    let allowed = preflight(ALLOWED_ORIGIN).await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        ALLOWED_ORIGIN
    );
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn health_endpoints_answer() {
    let app = TestApp::spawn().await;
    for path in ["/health/live", "/health/ready"] {
        let response = app
            .client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ok");
    }
}

#[tokio::test]
async fn browsers_get_graphiql_with_assets_from_the_binary() {
    let app = TestApp::spawn().await;
    let page = app
        .client
        .get(app.graphql_url())
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.headers().contains_key("content-security-policy"));
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "nothing from a CDN"
    );
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("/graphiql/assets/"))
        .collect();
    assert!(assets.len() >= 3, "{html}");
    for asset in assets {
        let response = app
            .client
            .get(format!("{}{asset}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }

    let disabled = TestApp::spawn_with(|c| c.graphiql = false).await;
    let response = disabled
        .client
        .get(disabled.graphql_url())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), 200);
}
