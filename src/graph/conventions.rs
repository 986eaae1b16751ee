//! The server's one async-graphql extension (each extension puts every field
//! on async-graphql's slower resolution path, so there is only one):
//!
//! - it gives every error async-graphql itself raises a stable
//!   `extensions.code`: `GRAPHQL_PARSE_FAILED`, `GRAPHQL_VALIDATION_FAILED`,
//!   or `OPERATION_RESOLUTION_FAILURE` (unknown or ambiguous operation name),
//!   the codes Apollo clients already understand; errors raised during
//!   execution without a code become `INTERNAL_SERVER_ERROR`;
//! - it completes `_service { sdl }` with what async-graphql does not print
//!   (see [`super::federation`]);
//! - it enforces the configured [`Limits`] on every document, before
//!   validation (size and tokens before parsing, the shape right after), and
//!   spends the document's cost from the client's rate-limit bucket;
//! - when the operator configured a router secret, it refuses `_entities`
//!   and `_service` to requests that do not carry it, so nobody bypasses the
//!   router's own checks by calling the subgraph directly;
//! - it gives the response the shape the specification prescribes: fields
//!   in the order the query selected them, errored fields `null`, carried up
//!   to the nearest nullable parent (see [`super::response_shape`]);
//! - when the request is traced for the router, it times every field for the
//!   inline trace (see [`super::ftv1`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextResolve, NextValidation, ResolveInfo,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    IntrospectionMode, Request, Response, ServerError, ServerResult, ValidationResult, Value,
    Variables,
};

use super::cache_policy::{self, Policy};
use super::error::code;
use super::ftv1::{FieldTiming, InlineTrace};
use super::response_shape::ResponseShape;
use super::{PolicySlot, RequestCost};
use crate::limits::cost::CostModel;
use crate::limits::rate::{Admission, RATE_LIMITED};
use crate::limits::{uses_introspection, Exceeded, Limits};

/// What the document measured, handed from `prepare_request` to `execute`.
#[derive(Clone, Copy)]
struct Measured {
    cost: u64,
    /// How long the answer may be cached, from the fields selected.
    policy: Policy,
    limit: u64,
    /// The client asked for the cost in the response.
    report: bool,
}

/// The error of an introspection query from a caller who may not introspect.
pub const INTROSPECTION_DISABLED: &str = "INTROSPECTION_DISABLED";

/// The request extension a client sets (`"extensions": {"cost": true}`) to
/// get the estimated cost of its operation back in the response's
/// `extensions.cost`, as Shopify's API reports it.
const COST_EXTENSION: &str = "cost";

/// Request data of a registered persisted document: it was checked against
/// the limits when it was registered, so the checks of its text and shape
/// are skipped (the cost is still measured, with the request's variables).
#[derive(Clone, Copy, Debug)]
pub struct Vetted {
    /// Its worst-case cost, from registration.
    pub cost: u64,
}

/// Request data of a document whose text the HTTP layer already checked
/// against the limits (a GET, parsed early to refuse mutations): the text is
/// not checked again, so a measure-only limit logs and counts it once.
#[derive(Clone, Copy, Debug)]
pub struct TextChecked;

/// Request data of a request run on a transport that streams results
/// (WebSocket, multipart, SSE): only there may a subscription run.
#[derive(Clone, Copy, Debug)]
pub struct Streamed;

/// The code of a subscription sent where results cannot stream (a plain
/// JSON POST).
pub const SUBSCRIPTION_NEEDS_STREAM: &str = "SUBSCRIPTION_NEEDS_STREAM";

/// Whether the operation a request would run is a subscription.
fn selects_subscription(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let ty = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        _ => None,
    };
    ty == Some(OperationType::Subscription)
}

/// Request data that makes a request stop after validation: how a document
/// is checked against the schema without running it (persisted-document
/// registration). A valid document ends with the one error [`VALIDATED`].
#[derive(Clone, Copy)]
pub struct ValidateOnly;

/// The code of the error that ends a [`ValidateOnly`] request whose document
/// is valid. Never sent to clients.
pub const VALIDATED: &str = "VALIDATED";

pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
pub const OPERATION_RESOLUTION_FAILURE: &str = "OPERATION_RESOLUTION_FAILURE";

/// Set once execution starts, so errors without a code can be told apart:
/// before execution they concern the operation's selection, after it they
/// are unexpected.
#[derive(Clone, Default)]
pub struct ExecutionStarted(Arc<AtomicBool>);

impl ExecutionStarted {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Records that execution started. async-graphql runs no `execute`
    /// hook for subscriptions, so their root fields call this.
    pub(crate) fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Adds a code to each error of `response` that has none.
    pub fn assign_missing_codes(&self, response: &mut Response) {
        let fallback = if self.get() {
            code::INTERNAL_SERVER_ERROR
        } else {
            OPERATION_RESOLUTION_FAILURE
        };
        for error in &mut response.errors {
            with_code(error, fallback);
        }
    }
}

/// Names the operation about to run in the request's span (the HTTP layer's
/// `http` span declares the fields): its name and type, never its variables.
fn record_operation(document: &ExecutableDocument, operation_name: Option<&str>) {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some((operation_name, &op.node)),
        (DocumentOperations::Multiple(ops), Some(name)) => {
            ops.get(name).map(|op| (Some(name), &op.node))
        }
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops
            .iter()
            .next()
            .map(|(name, op)| (Some(name.as_str()), &op.node)),
        _ => None,
    };
    let Some((name, operation)) = operation else {
        return;
    };
    let span = tracing::Span::current();
    if let Some(name) = name {
        span.record("operation_name", name);
    }
    span.record(
        "operation_type",
        match operation.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        },
    );
}

/// A limit the document broke, as a request error with the limit and the
/// measured value.
fn limit_error(exceeded: Exceeded) -> ServerError {
    let mut error = ServerError::new(exceeded.message(), None);
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", exceeded.code);
    extensions.set("limit", exceeded.limit);
    extensions.set("measured", exceeded.measured);
    error
}

fn with_code(error: &mut ServerError, code: &str) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
}

pub const ROUTER_SECRET_REQUIRED: &str = "ROUTER_SECRET_REQUIRED";

/// Whether the request came through the router, as far as the subgraph can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouterAccess {
    /// No router secret is configured: anyone may call every field.
    Open,
    /// The request carried the configured secret.
    Verified,
    /// A secret is configured and the request did not carry it.
    Missing,
}

pub(super) struct Conventions;

impl ExtensionFactory for Conventions {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestConventions::default())
    }
}

/// The extension as async-graphql creates it for each request.
#[derive(Default)]
struct RequestConventions {
    /// The request's inline trace, if it has one: looked up once when
    /// execution starts, so that a field of an untraced request costs one
    /// atomic load, not a look-up in the request's data.
    trace: OnceLock<Arc<InlineTrace>>,
}

#[async_trait::async_trait]
impl Extension for RequestConventions {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        // Ends the field's trace node when dropped, whichever way this returns.
        let _timing = self
            .trace
            .get()
            .and_then(|trace| FieldTiming::start(trace, &info));
        let federation_field =
            info.parent_type == "Query" && matches!(info.name, "_entities" | "_service");
        if federation_field && ctx.data::<RouterAccess>().ok() == Some(&RouterAccess::Missing) {
            let mut error = ServerError::new(
                format!(
                    "`{}` is only answered to the federation router: send the router secret",
                    info.name
                ),
                Some(info.field.name.pos),
            );
            with_code(&mut error, ROUTER_SECRET_REQUIRED);
            return Err(error);
        }
        let is_service_sdl = info.parent_type == "_Service" && info.name == "sdl";
        let value = next.run(ctx, info).await?;
        Ok(match value {
            Some(Value::String(sdl)) if is_service_sdl => {
                Some(Value::String(super::federation::complete_sdl(&sdl)))
            }
            other => other,
        })
    }

    /// Parses the document (async-graphql then reuses it) and checks the
    /// limits before async-graphql's own document walks, one of which expands
    /// fragments without memory and would take exponential time on a
    /// "fragment bomb".
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(limits) = ctx.data::<Limits>() {
            let vetted = request
                .data
                .get(&std::any::TypeId::of::<Vetted>())
                .is_some();
            let text_checked = request
                .data
                .get(&std::any::TypeId::of::<TextChecked>())
                .is_some();
            // Registration validates subscription documents without running them.
            let streamed = [
                std::any::TypeId::of::<Streamed>(),
                std::any::TypeId::of::<ValidateOnly>(),
            ]
            .iter()
            .any(|ty| request.data.get(ty).is_some());
            if !vetted && !text_checked {
                limits.check_text(&request.query).map_err(limit_error)?;
            }
            let introspection_disabled = request.introspection_mode == IntrospectionMode::Disabled;
            let operation_name = request.operation_name.clone();
            let variables = std::mem::take(&mut request.variables);
            let document = request.parsed_query().map_err(|mut e| {
                with_code(&mut e, GRAPHQL_PARSE_FAILED);
                e
            })?;
            record_operation(document, operation_name.as_deref());
            if !vetted {
                limits.check_document(document).map_err(limit_error)?;
            }
            if introspection_disabled && uses_introspection(document) {
                let mut error = ServerError::new(
                    "introspection is not available to this caller; \
                     the schema is published to authenticated clients",
                    None,
                );
                with_code(&mut error, INTROSPECTION_DISABLED);
                return Err(error);
            }
            if !streamed && selects_subscription(document, operation_name.as_deref()) {
                let mut error = ServerError::new(
                    "subscriptions need a transport that streams: a WebSocket \
                     (graphql-transport-ws or graphql-ws), or a POST accepting \
                     multipart/mixed;subscriptionSpec=\"1.0\" or text/event-stream",
                    None,
                );
                with_code(&mut error, SUBSCRIPTION_NEEDS_STREAM);
                return Err(error);
            }
            let shape = ResponseShape::new(document.clone(), variables.clone());
            if let Ok(model) = ctx.data::<CostModel>() {
                let inspection = limits
                    .check_cost(model, document, operation_name.as_deref(), &variables)
                    .map_err(limit_error)?;
                let policy = cache_policy::policy(model, document, operation_name.as_deref());
                let report = request
                    .extensions
                    .get(COST_EXTENSION)
                    .is_some_and(|v| *v == Value::Boolean(true));
                request.data.insert(Measured {
                    cost: inspection.cost,
                    policy,
                    limit: limits.max_cost,
                    report,
                });
                // The client's bucket pays for what the document costs
                // (a registered document was paid for before it got here).
                let admission = request
                    .data
                    .get(&std::any::TypeId::of::<Admission>())
                    .and_then(|admission| admission.downcast_ref::<Admission>());
                if let Some(admission) = admission {
                    if let Err(throttled) = admission.spend(inspection.cost) {
                        let mut error = ServerError::new(throttled.message(), None);
                        with_code(&mut error, RATE_LIMITED);
                        return Err(error);
                    }
                }
            }
            request.data.insert(shape);
            request.variables = variables;
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|mut e| {
            with_code(&mut e, GRAPHQL_PARSE_FAILED);
            e
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.map_err(|mut errors| {
            for e in &mut errors {
                with_code(e, GRAPHQL_VALIDATION_FAILED);
            }
            errors
        })?;
        if ctx.data_opt::<ValidateOnly>().is_some() {
            let mut stop = ServerError::new("valid", None);
            with_code(&mut stop, VALIDATED);
            return Err(vec![stop]);
        }
        Ok(result)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Ok(started) = ctx.data::<ExecutionStarted>() {
            started.0.store(true, Ordering::Relaxed);
        }
        if let Some(trace) = ctx.data_opt::<Arc<InlineTrace>>() {
            // Set once: this is the request's only execution.
            let _ = self.trace.set(Arc::clone(trace));
        }
        let measured = ctx.data_opt::<Measured>().copied();
        if let (Some(measured), Some(cost)) = (measured, ctx.data_opt::<RequestCost>()) {
            cost.set(measured.cost);
        }
        if let (Some(measured), Some(slot)) = (measured, ctx.data_opt::<PolicySlot>()) {
            slot.set(measured.policy);
        }
        let mut response = next.run(ctx, operation_name).await;
        if let Some(shape) = ctx.data_opt::<ResponseShape>() {
            shape.apply(&ctx.schema_env.registry, operation_name, &mut response);
        }
        if let Some(measured) = measured.filter(|m| m.report) {
            response.extensions.insert(
                COST_EXTENSION.to_string(),
                async_graphql::value!({
                    "requestedQueryCost": measured.cost,
                    "maximumQueryCost": measured.limit,
                }),
            );
        }
        response
    }
}
