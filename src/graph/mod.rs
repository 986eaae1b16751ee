//! The GraphQL schema: one module per domain (catalog, customers, orders),
//! merged into one Query; federation v2 entities; error codes for every error;
//! inline traces for the federation router.

mod batching;
pub mod catalog;
mod conventions;
pub mod customers;
mod error;
mod federation;
pub mod ftv1;
mod loader;
pub mod orders;
mod pagination;

use std::sync::Arc;

use async_graphql::{EmptySubscription, MergedObject, Request, Response, SDLExportOptions, Schema};
use batching::{RequestActivity, Tracked};
use ftv1::InlineTrace;

pub use conventions::{ExecutionStarted, RouterAccess};
pub use error::{code, ApiError};
pub use loader::{request_loader, RequestLoader};

use crate::auth::Viewer;
use crate::limits::Limits;
use crate::store::Store;

#[derive(MergedObject, Default)]
pub struct Query(
    catalog::CatalogQuery,
    customers::CustomerQuery,
    orders::OrderQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(orders::OrderMutation, catalog::CatalogMutation);

pub type AppSchema = Schema<Query, Mutation, EmptySubscription>;

pub fn build_schema(limits: Limits) -> AppSchema {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .data(limits)
        .enable_federation()
        .extension(conventions::Conventions)
        .finish()
}

/// The subgraph SDL (`_service { sdl }`, `schema/schema.graphql`): Federation v2
/// with `@link`, ending in one newline.
pub fn subgraph_sdl(schema: &AppSchema) -> String {
    let sdl = schema.sdl_with_options(SDLExportOptions::new().federation());
    format!("{}\n", federation::complete_sdl(&sdl).trim_end())
}

/// What one request's execution owns: its store handle (and statement
/// counter), whether execution started, and its batching activity.
pub struct RequestScope {
    pub store: Store,
    pub started: ExecutionStarted,
    activity: RequestActivity,
    trace: Option<Arc<InlineTrace>>,
}

impl RequestScope {
    /// Attaches what a request's resolvers need: who is asking, and a fresh
    /// DataLoader over a store handle whose statement counter is the request's.
    /// With `inline_trace` (the router asked for ftv1) the request is traced,
    /// unless a router secret is configured and the request lacks it: traces
    /// reveal timings.
    pub fn new(
        request: Request,
        store: &Store,
        viewer: Viewer,
        router: RouterAccess,
        inline_trace: bool,
    ) -> (Request, RequestScope) {
        let trace = (inline_trace && router != RouterAccess::Missing)
            .then(|| Arc::new(InlineTrace::start()));
        let scope = RequestScope {
            store: store.scoped(),
            started: ExecutionStarted::default(),
            activity: RequestActivity::default(),
            trace: trace.clone(),
        };
        let request = match trace {
            Some(trace) => request.data(trace),
            None => request,
        };
        let request = request
            .data(viewer)
            .data(router)
            .data(request_loader(scope.store.clone(), scope.activity.clone()))
            .data(scope.started.clone());
        (request, scope)
    }

    /// Runs the request, tracking its activity so loader batches go out when
    /// it is idle, and gives every error a code.
    pub async fn execute(&self, schema: &AppSchema, request: Request) -> Response {
        let mut response = Tracked::new(schema.execute(request), self.activity.clone()).await;
        self.started.assign_missing_codes(&mut response);
        if let Some(trace) = &self.trace {
            trace.finish(&mut response);
        }
        response
    }
}
