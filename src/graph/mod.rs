//! The GraphQL schema: one module per domain (catalog, customers, orders),
//! merged into one Query; federation v2 entities; error codes for every error;
//! inline traces for the federation router.

mod batching;
pub mod cache_policy;
pub mod catalog;
mod conventions;
pub mod customers;
mod demand;
mod error;
mod fast_path;
mod federation;
pub mod ftv1;
mod live;
mod loader;
pub mod orders;
mod pagination;
mod response_shape;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{
    IntrospectionMode, MergedObject, MergedSubscription, Request, Response, SDLExportOptions,
    Schema, ServerError, Value,
};
use batching::{RequestActivity, Tracked};
use ftv1::InlineTrace;

pub use conventions::{
    text_measured, ExecutionStarted, RouterAccess, Streamed, TextChecked, Vetted,
};
pub use error::{code, ApiError, UNAVAILABLE_MESSAGE};
pub use fast_path::FastSchema;
pub use loader::{request_loader, RequestLoader};

use crate::auth::Viewer;
use crate::events::Events;
use crate::limits::cost::CostModel;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::store::Store;

#[derive(MergedObject, Default)]
pub struct Query(
    catalog::CatalogQuery,
    customers::CustomerQuery,
    orders::OrderQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(orders::OrderMutation, catalog::CatalogMutation);

#[derive(MergedSubscription, Default)]
pub struct Subscription(catalog::CatalogSubscription, orders::OrderSubscription);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Who may introspect the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Introspection {
    /// Everyone (development).
    On,
    /// Callers with a valid token only (production): anonymous probing
    /// cannot recover the schema.
    Authenticated,
    /// Nobody (`_service { sdl }` still answers the router).
    Off,
}

/// How much the schema tells about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posture {
    pub introspection: Introspection,
    /// "Did you mean …?" in validation errors.
    pub suggestions: bool,
    /// A request running longer is cancelled (its futures, and with them its
    /// database work, are dropped) and answered with `REQUEST_TIMEOUT`.
    pub request_timeout: Duration,
}

impl Default for Posture {
    fn default() -> Self {
        Posture {
            introspection: Introspection::On,
            suggestions: true,
            request_timeout: Duration::from_secs(10),
        }
    }
}

fn schema_builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .enable_federation()
    // The router routes subscriptions to the subgraphs whose SDL has them.
    .enable_subscription_in_federation()
}

/// The costs of this schema's fields (see [`demand`]).
pub fn cost_model() -> CostModel {
    let sdl = schema_builder().finish().sdl();
    // The rules table is checked against the schema by a test; a mismatch
    // here is a programming error caught before any release.
    CostModel::new(&sdl, demand::RULES).unwrap_or_else(|e| panic!("the cost rules: {e}"))
}

/// The schema, publishing its writes' events on `events` (and subscribing
/// its subscriptions there).
pub fn build_schema(limits: Limits, posture: Posture, events: Events) -> AppSchema {
    configured(posture, events)
        .data(limits)
        .data(cost_model())
        .extension(conventions::Conventions)
        .finish()
}

/// `full` (from [`build_schema`] with the same settings) without its
/// extension, for the requests that need no per-field hook. The limits and
/// the cost model go with the fast schema rather than in its data (only the
/// extension reads them there); the model is `full`'s, not measured again.
pub fn build_fast_schema(
    full: &AppSchema,
    limits: Limits,
    posture: Posture,
    events: Events,
) -> FastSchema {
    let model = full.data::<CostModel>().cloned().unwrap_or_else(cost_model);
    FastSchema::new(full, configured(posture, events).finish(), limits, model)
}

/// What both schemas have: the events their writes publish, and the posture.
fn configured(
    posture: Posture,
    events: Events,
) -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    let builder = schema_builder().data(events);
    if posture.suggestions {
        builder
    } else {
        builder.disable_suggestions()
    }
}

/// The subgraph SDL (`_service { sdl }`, `schema/schema.graphql`): Federation v2
/// with `@link`, ending in one newline.
pub fn subgraph_sdl(schema: &AppSchema) -> String {
    let sdl = schema.sdl_with_options(SDLExportOptions::new().federation());
    format!("{}\n", federation::complete_sdl(&sdl).trim_end())
}

/// Checks `body` against the schema (parse and validation, with the limits)
/// without running it. The errors are the ones a client would get.
pub async fn validate(schema: &AppSchema, body: &str) -> Result<(), Vec<ServerError>> {
    let response = schema
        .execute(Request::new(body).data(conventions::ValidateOnly))
        .await;
    let valid = response.errors.len() == 1
        && response.errors[0]
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            == Some(&Value::from(conventions::VALIDATED));
    if valid {
        Ok(())
    } else {
        Err(response.errors)
    }
}

/// The estimated cost of a request's operation, once its document was
/// measured.
#[derive(Clone, Default)]
pub struct RequestCost(Arc<AtomicU64>);

impl RequestCost {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, cost: u64) {
        self.0.store(cost, Ordering::Relaxed);
    }
}

/// The cache policy of a request's document, once it was measured.
#[derive(Clone, Default)]
pub struct PolicySlot(Arc<std::sync::Mutex<Option<cache_policy::Policy>>>);

impl PolicySlot {
    /// `None` when the document never got as far as being measured.
    pub fn get(&self) -> Option<cache_policy::Policy> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, policy: cache_policy::Policy) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(policy);
    }
}

/// What one request's execution owns: its store handle (and statement
/// counter), whether execution started, its cost, and its batching activity.
pub struct RequestScope {
    pub store: Store,
    pub started: ExecutionStarted,
    pub cost: RequestCost,
    pub cache_policy: PolicySlot,
    activity: RequestActivity,
    trace: Option<Arc<InlineTrace>>,
    timeout: Duration,
    timed_out: std::sync::atomic::AtomicBool,
}

/// The error of a request cancelled at its deadline.
pub const REQUEST_TIMEOUT: &str = "REQUEST_TIMEOUT";

impl RequestScope {
    /// Attaches what a request's resolvers need: who is asking, and a fresh
    /// DataLoader over a store handle whose statement counter is the request's.
    /// With `inline_trace` (the router asked for ftv1) the request is traced,
    /// unless a router secret is configured and the request lacks it: traces
    /// reveal timings.
    pub fn new(
        mut request: Request,
        store: &Store,
        viewer: Viewer,
        router: RouterAccess,
        posture: &Posture,
        inline_trace: bool,
    ) -> (Request, RequestScope) {
        let trace = (inline_trace && router != RouterAccess::Missing)
            .then(|| Arc::new(InlineTrace::start()));
        let scope = RequestScope {
            store: store.scoped(),
            started: ExecutionStarted::default(),
            cost: RequestCost::default(),
            cache_policy: PolicySlot::default(),
            activity: RequestActivity::default(),
            timeout: posture.request_timeout,
            timed_out: Default::default(),
            trace: trace.clone(),
        };
        let introspection = match posture.introspection {
            Introspection::On => true,
            Introspection::Authenticated => viewer.is_authenticated(),
            Introspection::Off => false,
        };
        if !introspection {
            request.introspection_mode = IntrospectionMode::Disabled;
        }
        if let Some(trace) = trace {
            request.data.insert(trace);
        }
        // The HTTP layer hands the server's metrics in the request's data.
        let metrics = request
            .data
            .get(&std::any::TypeId::of::<Metrics>())
            .and_then(|metrics| metrics.downcast_ref::<Metrics>())
            .cloned();
        let request = request
            .data(viewer)
            .data(router)
            .data(request_loader(
                scope.store.clone(),
                scope.activity.clone(),
                metrics,
            ))
            .data(scope.started.clone())
            .data(scope.cost.clone())
            .data(scope.cache_policy.clone());
        (request, scope)
    }

    /// Runs the request, tracking its activity so loader batches go out when
    /// it is idle, and gives every error a code. Past the deadline the
    /// execution is dropped, which cancels its pending statements.
    pub async fn execute(
        &self,
        schema: &AppSchema,
        fast: &FastSchema,
        request: Request,
    ) -> Response {
        let run = async {
            if FastSchema::serves(&request, self.trace.is_some()) {
                fast.execute(request, self).await
            } else {
                schema.execute(request).await
            }
        };
        let run = Tracked::new(run, self.activity.clone());
        let mut response = match tokio::time::timeout(self.timeout, run).await {
            Ok(response) => response,
            Err(_) => {
                self.timed_out.store(true, Ordering::Relaxed);
                tracing::warn!(
                    timeout_ms = self.timeout.as_millis() as u64,
                    "request cancelled at its deadline"
                );
                let mut error = ServerError::new(
                    format!(
                        "the request ran longer than the server's {} ms limit and was cancelled",
                        self.timeout.as_millis()
                    ),
                    None,
                );
                error
                    .extensions
                    .get_or_insert_with(Default::default)
                    .set("code", REQUEST_TIMEOUT);
                Response::from_errors(vec![error])
            }
        };
        self.started.assign_missing_codes(&mut response);
        if let Some(trace) = &self.trace {
            trace.finish(&mut response);
        }
        response
    }

    /// Whether the request was cancelled at its deadline.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_field_has_a_cost_rule() {
        // `cost_model` fails on rules naming fields the schema lacks; a list
        // without a rule would be costed at a guessed size.
        assert_eq!(cost_model().undescribed_lists(), Vec::<String>::new());
    }
}
