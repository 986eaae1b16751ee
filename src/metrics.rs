//! What the server counts, for Prometheus (`GET /metrics`, see
//! `http::metrics`): one registry per running server, so two servers in one
//! process (the tests) never mix their figures.
//!
//! Labels are bounded by construction: operation names only of registered
//! documents (anything else is [`UNREGISTERED`]), error codes from
//! [`KNOWN_CODES`] (anything else is `OTHER`), entities from the loaders' key
//! types, limits and tiers from fixed lists.

use std::sync::Arc;

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The operation label of a request whose document is not registered.
pub const UNREGISTERED: &str = "unregistered";

/// Error codes the server gives (the README's table); others count as `OTHER`.
pub const KNOWN_CODES: &[&str] = &[
    "BAD_REQUEST",
    "CSRF_PREVENTED",
    "BATCHING_NOT_SUPPORTED",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "NOT_ACCEPTABLE",
    "METHOD_NOT_ALLOWED",
    "UNAUTHENTICATED",
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "OPERATION_RESOLUTION_FAILURE",
    "QUERY_TOO_COMPLEX",
    "PAGE_SIZE_EXCEEDED",
    "QUERY_TOO_DEEP",
    "INTROSPECTION_TOO_DEEP",
    "TOO_MANY_FIELDS",
    "TOO_MANY_ALIASES",
    "TOO_MANY_ROOT_FIELDS",
    "TOO_MANY_DIRECTIVES",
    "DOCUMENT_TOO_LARGE",
    "DOCUMENT_TOO_NESTED",
    "TOO_MANY_TOKENS",
    "VARIABLES_TOO_LARGE",
    "VARIABLES_TOO_DEEP",
    "INTROSPECTION_DISABLED",
    "REQUEST_TIMEOUT",
    "RATE_LIMITED",
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "OUT_OF_STOCK",
    "IDEMPOTENCY_KEY_REUSED",
    "INVALID_STATUS_TRANSITION",
    "INVALID_CURSOR",
    "FORBIDDEN",
    "PERSISTED_QUERY_NOT_FOUND",
    "PERSISTED_QUERY_NOT_IN_LIST",
    "QUERY_NOT_IN_SAFELIST",
    "PERSISTED_QUERY_HASH_MISMATCH",
    "PERSISTED_QUERY_NOT_SUPPORTED",
    "ROUTER_SECRET_REQUIRED",
    "TOO_MANY_SUBSCRIPTIONS",
    "EVENTS_DROPPED",
    "SERVICE_UNAVAILABLE",
    "INTERNAL_SERVER_ERROR",
];

/// How a GraphQL request over HTTP ended (the `outcome` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Executed without errors (or served from the response cache).
    Ok,
    /// Executed, with errors at some paths.
    FieldErrors,
    /// Refused before execution: malformed, a limit, not registered, a bad token.
    Refused,
    /// Over the client's rate limit.
    RateLimited,
    /// Cancelled at the request deadline.
    Timeout,
    /// Not served: the database is unavailable (503).
    Unavailable,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::FieldErrors => "field_errors",
            Outcome::Refused => "refused",
            Outcome::RateLimited => "rate_limited",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// The server's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Families>);

struct Families {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
    statements: HistogramVec,
    batch_size: HistogramVec,
    cache: IntCounterVec,
    rate_limited: IntCounterVec,
    limit_refusals: IntCounterVec,
    limit_measured_only: IntCounterVec,
    ws_connections: IntGauge,
    subscriptions: IntGauge,
    pool: IntGaugeVec,
    pool_max: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A family's name and help text, registered in `registry`.
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, family: C) -> C {
    // Names are constants, unique within this module: a clash is a
    // programming error a test catches (`Metrics::new` runs in every test).
    registry
        .register(Box::new(family.clone()))
        .unwrap_or_else(|e| panic!("registering a metric: {e}"));
    family
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let family = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    register(registry, family)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let family = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    register(registry, family)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let family = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    register(registry, family)
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let counts = vec![0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 50.0, 100.0];
        let families = Families {
            requests: counter(
                r,
                "graphql_requests_total",
                "GraphQL requests over HTTP, by operation (registered documents' names, else \
                 `unregistered`) and outcome",
                &["operation", "outcome"],
            ),
            duration: histogram(
                r,
                "graphql_request_duration_seconds",
                "Time from reading a GraphQL request to its response, by operation and outcome",
                &["operation", "outcome"],
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            errors: counter(
                r,
                "graphql_errors_total",
                "GraphQL errors sent, by extensions.code",
                &["code"],
            ),
            statements: histogram(
                r,
                "graphql_sql_statements",
                "SQL statements one GraphQL request ran",
                &[],
                counts.clone(),
            ),
            batch_size: histogram(
                r,
                "graphql_dataloader_batch_size",
                "Keys in one DataLoader batch (one SQL statement), by entity (the loader's key)",
                &["entity"],
                vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0],
            ),
            cache: counter(
                r,
                "graphql_cache_requests_total",
                "Look-ups in the server's caches (response, persisted_query, apq, entity: the request-scoped DataLoader cache), by result (hit, miss)",
                &["cache", "result"],
            ),
            rate_limited: counter(
                r,
                "graphql_rate_limited_total",
                "Requests refused with RATE_LIMITED, by tier and reason (cost, concurrency)",
                &["tier", "reason"],
            ),
            limit_refusals: counter(
                r,
                "graphql_limit_refusals_total",
                "Documents a query limit refused, by limit (since the process started)",
                &["limit"],
            ),
            limit_measured_only: counter(
                r,
                "graphql_limit_measure_only_total",
                "Documents past a measure-only limit that ran anyway, by limit (since the \
                 process started)",
                &["limit"],
            ),
            ws_connections: gauge(
                r,
                "graphql_websocket_connections",
                "WebSocket connections open now",
            ),
            subscriptions: gauge(
                r,
                "graphql_subscriptions_active",
                "Operations running on WebSocket connections now",
            ),
            pool: {
                let family = IntGaugeVec::new(
                    Opts::new(
                        "db_pool_connections",
                        "Database connections in the pool, by state (idle, in_use)",
                    ),
                    &["state"],
                )
                .unwrap_or_else(|e| panic!("metric db_pool_connections: {e}"));
                register(r, family)
            },
            pool_max: gauge(
                r,
                "db_pool_max_connections",
                "The most connections the pool may open",
            ),
            registry,
        };
        Metrics(Arc::new(families))
    }

    /// One GraphQL request over HTTP ended.
    pub fn request(
        &self,
        operation: &str,
        outcome: Outcome,
        seconds: f64,
        statements: usize,
        codes: &[&str],
    ) {
        let m = &self.0;
        let labels = [operation, outcome.label()];
        m.requests.with_label_values(&labels).inc();
        m.duration.with_label_values(&labels).observe(seconds);
        m.statements
            .with_label_values::<&str>(&[])
            .observe(statements as f64);
        for code in codes {
            self.error(code);
        }
    }

    /// An error with this code was sent.
    pub fn error(&self, code: &str) {
        let code = if KNOWN_CODES.contains(&code) {
            code
        } else {
            "OTHER"
        };
        self.0.errors.with_label_values(&[code]).inc();
    }

    /// A DataLoader batch of `size` keys of `entity` went out.
    pub fn batch(&self, entity: &'static str, size: usize) {
        self.0
            .batch_size
            .with_label_values(&[entity])
            .observe(size as f64);
    }

    /// A look-up in one of the caches.
    pub fn cache(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.0.cache.with_label_values(&[cache, result]).inc();
    }

    /// `hits` and `misses` look-ups in one of the caches.
    pub fn cache_counts(&self, cache: &'static str, hits: u64, misses: u64) {
        for (result, n) in [("hit", hits), ("miss", misses)] {
            if n > 0 {
                self.0.cache.with_label_values(&[cache, result]).inc_by(n);
            }
        }
    }

    /// Adds `n` to a cache's hit or miss count (counts kept elsewhere,
    /// collected at scrape time).
    fn cache_to(&self, cache: &'static str, result: &'static str, total: u64) {
        let counter = self.0.cache.with_label_values(&[cache, result]);
        counter.inc_by(total.saturating_sub(counter.get()));
    }

    /// A request refused over a rate limit.
    pub fn rate_limited(&self, tier: &str, reason: &'static str) {
        self.0.rate_limited.with_label_values(&[tier, reason]).inc();
    }

    /// A WebSocket connection opened: counted until the guard is dropped.
    pub fn websocket_opened(&self) -> Active {
        Active::new(&self.0.ws_connections)
    }

    /// An operation started on a WebSocket: counted until the guard is dropped.
    pub fn subscription_started(&self) -> Active {
        Active::new(&self.0.subscriptions)
    }

    /// The figures kept elsewhere, read when Prometheus scrapes.
    pub fn collect(&self, snapshot: &Snapshot) {
        let m = &self.0;
        for (limit, total) in &snapshot.limit_refusals {
            let counter = m.limit_refusals.with_label_values(&[limit]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        for (limit, total) in &snapshot.limit_measured_only {
            let counter = m.limit_measured_only.with_label_values(&[limit]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        let (hits, misses) = snapshot.persisted_query_cache;
        self.cache_to("persisted_query", "hit", hits);
        self.cache_to("persisted_query", "miss", misses);
        let (hits, misses) = snapshot.apq_cache;
        self.cache_to("apq", "hit", hits);
        self.cache_to("apq", "miss", misses);
        m.pool
            .with_label_values(&["idle"])
            .set(snapshot.pool_idle as i64);
        m.pool
            .with_label_values(&["in_use"])
            .set((snapshot.pool_size as usize).saturating_sub(snapshot.pool_idle) as i64);
        m.pool_max.set(snapshot.pool_max as i64);
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        // Encoding into memory fails only on a family the encoder cannot
        // print, which none of these is.
        if let Err(error) = TextEncoder::new().encode(&self.0.registry.gather(), &mut text) {
            tracing::error!(%error, "encoding the metrics");
        }
        String::from_utf8(text).unwrap_or_default()
    }
}

/// One thing counted by a gauge while it lasts (a connection, an operation).
pub struct Active(IntGauge);

impl Active {
    fn new(gauge: &IntGauge) -> Active {
        gauge.inc();
        Active(gauge.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Figures other parts of the server keep, handed to [`Metrics::collect`].
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub limit_refusals: Vec<(&'static str, u64)>,
    pub limit_measured_only: Vec<(&'static str, u64)>,
    /// (hits, misses) of the persisted-query registry's memory.
    pub persisted_query_cache: (u64, u64),
    /// (hits, misses) of the APQ store.
    pub apq_cache: (u64, u64),
    pub pool_size: u32,
    pub pool_idle: usize,
    pub pool_max: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_collapse_and_every_family_renders() {
        let metrics = Metrics::new();
        metrics.request(
            UNREGISTERED,
            Outcome::Ok,
            0.01,
            3,
            &["NOT_FOUND", "MADE_UP"],
        );
        metrics.batch("ProductId", 20);
        metrics.cache("response", true);
        metrics.rate_limited("anonymous", "cost");
        metrics.collect(&Snapshot {
            limit_refusals: vec![("depth", 2)],
            persisted_query_cache: (5, 1),
            pool_size: 3,
            pool_idle: 2,
            pool_max: 16,
            ..Default::default()
        });
        let text = metrics.render();
        for line in [
            "graphql_requests_total{operation=\"unregistered\",outcome=\"ok\"} 1",
            "graphql_errors_total{code=\"NOT_FOUND\"} 1",
            "graphql_errors_total{code=\"OTHER\"} 1",
            "graphql_sql_statements_count 1",
            "graphql_dataloader_batch_size_count{entity=\"ProductId\"} 1",
            "graphql_cache_requests_total{cache=\"persisted_query\",result=\"hit\"} 5",
            "graphql_limit_refusals_total{limit=\"depth\"} 2",
            "db_pool_connections{state=\"in_use\"} 1",
            "db_pool_max_connections 16",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        // Collecting the same totals again adds nothing.
        metrics.collect(&Snapshot {
            limit_refusals: vec![("depth", 2)],
            ..Default::default()
        });
        assert!(metrics
            .render()
            .contains("graphql_limit_refusals_total{limit=\"depth\"} 2"));
    }
}
