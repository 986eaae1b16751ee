//! Micro-benchmarks of work every request does before execution: parsing a
//! document and measuring it against the limits, counting its tokens,
//! estimating its cost, and the same for a hostile "fragment bomb" that must
//! be refused cheaply; what rate limiting and the metrics add; and the work
//! after execution: the response cache's key, serializing a response.
//!
//! `cargo bench --bench hot_paths` prints the figures.

use commerce_graph::limits::{count_tokens, Limits};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const W1: &str =
    "query ProductPage($id: ID!) { product(id: $id) { title price { amount currency } \
    inventory { available warehouse } images(first: 5) { url alt } \
    reviews(first: 10) { rating author { name verified } text } } }";

const W2: &str = "{ orders(first: 100) { nodes { id customer { name } items { product { title \
    price { amount currency } } } } } }";

fn fragment_bomb(levels: usize) -> String {
    let mut query = String::from("{ categories { ...F0 } }");
    for i in 0..levels {
        query.push_str(&format!(
            " fragment F{i} on Category {{ ...F{} ...F{} }}",
            i + 1,
            i + 1
        ));
    }
    query.push_str(&format!(" fragment F{levels} on Category {{ id }}"));
    query
}

fn limits(c: &mut Criterion) {
    let limits = Limits::default();
    for (name, query) in [
        ("W1", W1.to_string()),
        ("W2", W2.to_string()),
        ("bomb-30", fragment_bomb(30)),
    ] {
        c.bench_function(&format!("parse + limits {name}"), |b| {
            b.iter(|| {
                let outcome = limits.check_text(black_box(&query)).and_then(|()| {
                    let document = async_graphql::parser::parse_query(&query).expect("parses");
                    limits.check_document(&document)
                });
                black_box(outcome.is_ok())
            })
        });
    }
    c.bench_function("count tokens W1", |b| {
        b.iter(|| count_tokens(black_box(W1), usize::MAX))
    });
}

fn cost(c: &mut Criterion) {
    let model = commerce_graph::graph::cost_model();
    let variables = async_graphql::Variables::from_json(serde_json::json!({ "id": "1" }));
    for (name, query) in [
        ("W1", W1.to_string()),
        ("W2", W2.to_string()),
        ("bomb-30", fragment_bomb(30)),
    ] {
        let document = async_graphql::parser::parse_query(&query).expect("parses");
        c.bench_function(&format!("cost {name}"), |b| {
            b.iter(|| black_box(model.measure(black_box(&document), None, &variables).cost))
        });
    }
}

/// What rate limiting adds to a request: finding the client's bucket
/// (among 10,000 others), counting it in flight, spending its cost.
fn rate_limit(c: &mut Criterion) {
    use commerce_graph::limits::rate::{RateLimiter, RateLimits, Tier};
    let limits = RateLimits::default();
    let tier = Tier {
        name: "customer".into(),
        limits: limits.customer,
    };
    let limiter = RateLimiter::new(limits);
    let clients: Vec<String> = (0..10_000).map(|i| format!("customer:{i}")).collect();
    let mut next = 0;
    c.bench_function("rate limit: admit + spend", |b| {
        b.iter(|| {
            next = (next + 1) % clients.len();
            let admission = limiter
                .admit(black_box(&clients[next]), tier.clone())
                .expect("admitted");
            black_box(admission.spend(32).is_ok())
        })
    });
    let metrics = commerce_graph::metrics::Metrics::new();
    for i in 0..1_000 {
        metrics.request(
            "ProductPage",
            commerce_graph::metrics::Outcome::Ok,
            0.01,
            4,
            &[],
        );
        metrics.batch("ProductId", i % 100);
    }
    c.bench_function("metrics: render", |b| {
        b.iter(|| black_box(metrics.render().len()))
    });
}

/// W2's answer as the server builds it: 100 orders of 3 items each.
fn w2_response() -> async_graphql::Response {
    let orders: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            let items: Vec<serde_json::Value> = (0..3)
                .map(|j| {
                    serde_json::json!({ "product": {
                        "title": format!("Product {i}-{j} with a longer title"),
                        "price": { "amount": "129.99", "currency": "EUR" },
                    } })
                })
                .collect();
            serde_json::json!({ "id": i.to_string(), "customer": { "name": format!("Customer {i}") }, "items": items })
        })
        .collect();
    let data = serde_json::json!({ "orders": { "nodes": orders } });
    async_graphql::Response::new(async_graphql::Value::from_json(data).expect("a value"))
}

/// The response cache's key of a persisted GET (what every W4 hit
/// computes), and serializing responses of W1's and W2's sizes.
fn responses(c: &mut Criterion) {
    use commerce_graph::http::response_cache::ResponseCache;
    let variables = serde_json::json!({ "id": "1234" });
    let extensions = serde_json::json!({
        "persistedQuery": { "version": 1, "sha256Hash": "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38" }
    });
    c.bench_function("cache key W4", |b| {
        b.iter(|| {
            black_box(ResponseCache::key(
                black_box(W1),
                Some("ProductPage"),
                &variables,
                &extensions,
                "application/graphql-response+json",
            ))
        })
    });
    let w1 = async_graphql::Response::new(
        async_graphql::Value::from_json(serde_json::json!({ "product": {
            "title": "Product 1234", "price": { "amount": "19.99", "currency": "EUR" },
            "inventory": [{ "available": 12, "warehouse": "north" }, { "available": 0, "warehouse": "south" }],
            "images": (0..5).map(|i| serde_json::json!({ "url": format!("https://img.example/1234/{i}.jpg"), "alt": "A product" })).collect::<Vec<_>>(),
            "reviews": (0..10).map(|i| serde_json::json!({ "rating": 4, "author": { "name": format!("Customer {i}"), "verified": true }, "text": "Does what it says." })).collect::<Vec<_>>(),
        } }))
        .expect("a value"),
    );
    for (name, response) in [("W1", w1), ("W2", w2_response())] {
        c.bench_function(&format!("serialize {name} response"), |b| {
            b.iter(|| {
                black_box(
                    serde_json::to_vec(black_box(&response))
                        .expect("serializes")
                        .len(),
                )
            })
        });
    }
}

criterion_group!(benches, limits, cost, rate_limit, responses);
criterion_main!(benches);
