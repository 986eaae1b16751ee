//! The server's conventions, and its one async-graphql extension (each
//! extension puts every field on async-graphql's slower resolution path, so
//! there is only one, and most requests run on a copy of the schema without
//! it: [`super::fast_path`], which applies the same conventions around the
//! execution):
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

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextResolve, NextValidation, ResolveInfo,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentSpread, OperationDefinition, OperationType,
    Selection, SelectionSet,
};
use async_graphql::parser::Positioned;
use async_graphql::registry::Registry;
use async_graphql::{
    IntrospectionMode, Name, Request, Response, SchemaEnv, ServerError, ServerResult,
    ValidationResult, Value, Variables,
};

use super::cache_policy::{self, Policy};
use super::error::code;
use super::ftv1::{FieldTiming, InlineTrace};
use super::response_shape::ResponseShape;
use super::{PolicySlot, RequestCost};
use crate::limits::cost::CostModel;
use crate::limits::rate::{Admission, RATE_LIMITED};
use crate::limits::{uses_introspection, Exceeded, Limits};

/// What the document measured, kept until it has run.
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
/// against the limits (before parsing it for the document cache): the text
/// is not checked again, so a measure-only limit logs and counts it once.
#[derive(Clone, Copy, Debug)]
pub struct TextChecked;

/// Whether `request`'s text was measured against the limits already: it is
/// registered ([`Vetted`]) or was checked ([`TextChecked`]).
pub fn text_measured(request: &Request) -> bool {
    [
        std::any::TypeId::of::<Vetted>(),
        std::any::TypeId::of::<TextChecked>(),
    ]
    .iter()
    .any(|ty| request.data.get(ty).is_some())
}

/// Request data of a request run on a transport that streams results
/// (WebSocket, multipart, SSE): only there may a subscription run.
#[derive(Clone, Copy, Debug)]
pub struct Streamed;

/// The code of a subscription sent where results cannot stream (a plain
/// JSON POST).
pub const SUBSCRIPTION_NEEDS_STREAM: &str = "SUBSCRIPTION_NEEDS_STREAM";

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
fn record_operation(name: Option<&str>, operation: &OperationDefinition) {
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

pub(super) fn with_code(error: &mut ServerError, code: &str) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
}

/// What [`prepare`] measured of a request's document, for when it has run.
pub(super) struct Prepared {
    measured: Option<Measured>,
    shape: ResponseShape,
}

impl Prepared {
    /// Execution starts: its cost and cache policy are where the HTTP layer
    /// reads them.
    pub(super) fn started(&self, cost: Option<&RequestCost>, policy: Option<&PolicySlot>) {
        if let (Some(measured), Some(cost)) = (self.measured, cost) {
            cost.set(measured.cost);
        }
        if let (Some(measured), Some(slot)) = (self.measured, policy) {
            slot.set(measured.policy);
        }
    }

    /// Execution ended: the response is given its prescribed shape, and its
    /// cost when the client asked for it.
    pub(super) fn finish(
        &self,
        registry: &Registry,
        operation_name: Option<&str>,
        response: &mut Response,
    ) {
        self.shape.apply(registry, operation_name, response);
        if let Some(measured) = self.measured.filter(|m| m.report) {
            response.extensions.insert(
                COST_EXTENSION.to_string(),
                async_graphql::value!({
                    "requestedQueryCost": measured.cost,
                    "maximumQueryCost": measured.limit,
                }),
            );
        }
    }
}

/// Parses the document (async-graphql then reuses it) and checks the limits
/// before async-graphql's own document walks, one of which expands fragments
/// without memory and would take exponential time on a "fragment bomb". The
/// operation to run is resolved here too, so that what fails before
/// execution is known by its code whichever way the request then runs.
pub(super) fn prepare(
    limits: &Limits,
    model: Option<&CostModel>,
    mut request: Request,
) -> ServerResult<(Request, Prepared)> {
    let has = |ty: std::any::TypeId| request.data.get(&ty).is_some();
    let vetted = has(std::any::TypeId::of::<Vetted>());
    let validate_only = has(std::any::TypeId::of::<ValidateOnly>());
    // Registration validates subscription documents without running them.
    let streamed = validate_only || has(std::any::TypeId::of::<Streamed>());
    if !text_measured(&request) {
        limits.check_text(&request.query).map_err(limit_error)?;
    }
    let introspection_disabled = request.introspection_mode == IntrospectionMode::Disabled;
    let operation_name = request.operation_name.clone();
    let variables = std::mem::take(&mut request.variables);
    let document = request.parsed_query().map_err(|mut e| {
        with_code(&mut e, GRAPHQL_PARSE_FAILED);
        e
    })?;
    // A document registered for later may hold several operations.
    let operation = match operation_of(document, operation_name.as_deref()) {
        Ok(operation) => Some(operation),
        Err(error) if !validate_only => return Err(error),
        Err(_) => None,
    };
    if let Some((name, operation)) = operation {
        record_operation(name, &operation.node);
    }
    if !vetted {
        limits.check_document(document).map_err(limit_error)?;
    }
    if let Some(error) = spread_cycle(document) {
        return Err(error);
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
    let subscription = operation.is_some_and(|(_, op)| op.node.ty == OperationType::Subscription);
    if !streamed && subscription {
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
    let mut measured = None;
    if let Some(model) = model {
        let inspection = limits
            .check_cost(model, document, operation_name.as_deref(), &variables)
            .map_err(limit_error)?;
        let policy = cache_policy::policy(model, document, operation_name.as_deref());
        let report = request
            .extensions
            .get(COST_EXTENSION)
            .is_some_and(|v| *v == Value::Boolean(true));
        measured = Some(Measured {
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
    request.variables = variables;
    Ok((request, Prepared { measured, shape }))
}

/// The operation a request runs and its name, chosen as async-graphql
/// chooses it (an anonymous operation only without a name), with its errors
/// coded.
fn operation_of<'d>(
    document: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> ServerResult<(Option<&'d str>, &'d Positioned<OperationDefinition>)> {
    let found = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), None) => Some((None, op)),
        (DocumentOperations::Multiple(ops), Some(name)) => {
            ops.get_key_value(name).map(|(name, op)| (Some(name), op))
        }
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.iter().next().map(|(name, op)| (Some(name), op))
        }
        _ => None,
    };
    if let Some((name, op)) = found {
        return Ok((name.map(|name| name.as_str()), op));
    }
    let message = match operation_name {
        Some(name) => format!(r#"Unknown operation named "{name}""#),
        None => "Operation name required in request.".to_string(),
    };
    let mut error = ServerError::new(message, None);
    with_code(&mut error, OPERATION_RESOLUTION_FAILURE);
    Err(error)
}

/// A fragment that spreads itself, directly or through others: invalid
/// ("Fragments must not form cycles"). Refused here with the spec's rule, not
/// left to async-graphql's recursion limit, which follows the cycle 32 times
/// and refuses it as it would a document nested too deep.
fn spread_cycle(document: &ExecutableDocument) -> Option<ServerError> {
    fn spreads<'d>(set: &'d SelectionSet, out: &mut Vec<&'d Positioned<FragmentSpread>>) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => spreads(&field.node.selection_set.node, out),
                Selection::InlineFragment(inline) => spreads(&inline.node.selection_set.node, out),
                Selection::FragmentSpread(spread) => out.push(spread),
            }
        }
    }
    /// Depth-first from `name`; `path` holds the fragments being visited.
    fn visit<'d>(
        document: &'d ExecutableDocument,
        name: &'d Name,
        path: &mut Vec<&'d Name>,
        done: &mut HashSet<&'d Name>,
    ) -> Option<ServerError> {
        let fragment = document.fragments.get(name)?;
        path.push(name);
        let mut found = Vec::new();
        spreads(&fragment.node.selection_set.node, &mut found);
        for spread in found {
            let target = &spread.node.fragment_name.node;
            if let Some(start) = path.iter().position(|visiting| *visiting == target) {
                let via: Vec<String> = path[start + 1..]
                    .iter()
                    .map(|name| format!(r#""{name}""#))
                    .collect();
                let mut message = format!(r#"Cannot spread fragment "{target}" within itself"#);
                if !via.is_empty() {
                    message.push_str(&format!(" via {}", via.join(", ")));
                }
                let mut error = ServerError::new(message, Some(spread.pos));
                with_code(&mut error, GRAPHQL_VALIDATION_FAILED);
                return Some(error);
            }
            if !done.contains(target) {
                if let Some(error) = visit(document, target, path, done) {
                    return Some(error);
                }
            }
        }
        path.pop();
        done.insert(name);
        None
    }
    let mut done = HashSet::new();
    document
        .fragments
        .keys()
        .find_map(|name| visit(document, name, &mut Vec::new(), &mut done))
}

/// Request data that catches the schema's environment when the request
/// executes: the fast path borrows the full schema's registry (see
/// [`super::fast_path`]).
#[derive(Clone, Default)]
pub(super) struct EnvSlot(pub(super) Arc<OnceLock<SchemaEnv>>);

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

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let request = match ctx.data::<Limits>() {
            Ok(limits) => {
                let (mut request, prepared) =
                    prepare(limits, ctx.data::<CostModel>().ok(), request)?;
                request.data.insert(prepared);
                request
            }
            Err(_) => request,
        };
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
            started.mark();
        }
        if let Some(slot) = ctx.data_opt::<EnvSlot>() {
            let _ = slot.0.set(ctx.schema_env.clone());
        }
        if let Some(trace) = ctx.data_opt::<Arc<InlineTrace>>() {
            // Set once: this is the request's only execution.
            let _ = self.trace.set(Arc::clone(trace));
        }
        let prepared = ctx.data_opt::<Prepared>();
        if let Some(prepared) = prepared {
            prepared.started(ctx.data_opt::<RequestCost>(), ctx.data_opt::<PolicySlot>());
        }
        let mut response = next.run(ctx, operation_name).await;
        if let Some(prepared) = prepared {
            prepared.finish(&ctx.schema_env.registry, operation_name, &mut response);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(query: &str) -> Option<String> {
        let document = async_graphql::parser::parse_query(query).unwrap();
        spread_cycle(&document).map(|error| error.message)
    }

    #[test]
    fn fragments_that_spread_themselves_are_refused_with_the_way_round() {
        assert_eq!(
            cycle("{ a { ...A } } fragment A on T { x ...A }").as_deref(),
            Some(r#"Cannot spread fragment "A" within itself"#)
        );
        let through = cycle(
            "{ a { ...A } } fragment A on T { ...B } fragment B on T { b { ... on T { ...C } } } \
             fragment C on T { ...A }",
        )
        .unwrap();
        assert!(through.starts_with("Cannot spread fragment"), "{through}");
        assert!(through.contains("within itself via"), "{through}");
    }

    #[test]
    fn shared_and_unknown_fragments_are_not_cycles() {
        assert_eq!(
            cycle(
                "{ a { ...A ...B } } fragment A on T { ...C } fragment B on T { ...C } \
                 fragment C on T { x ...Missing }"
            ),
            None
        );
    }
}
