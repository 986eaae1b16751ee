//! The fast path: a request that needs no per-field hook runs on a second
//! copy of the schema, one without the extension.
//!
//! Once a schema has an extension, async-graphql resolves every field, and
//! every item of every list, through the extensions' `resolve` hook: a
//! registry look-up, a context and a boxed future each, even where the hook
//! does nothing. On W2 (100 orders, some 2,500 fields) that was more than
//! half the CPU time. The conventions need that hook only for `_entities`
//! and `_service` (the router secret, the completed SDL) and for requests
//! traced for the router (ftv1 timings), so those run on the full schema.
//! Every other request gets the same conventions around `Schema::execute`:
//! [`conventions::prepare`] before it (limits, cost, the operation), and
//! after it the codes of what async-graphql refused and the response's
//! prescribed shape.

use async_graphql::{Request, Response, SchemaEnv, Value};

use super::conventions::{self, EnvSlot, GRAPHQL_VALIDATION_FAILED};
use super::{AppSchema, RequestScope};
use crate::limits::cost::CostModel;
use crate::limits::Limits;

pub struct FastSchema {
    schema: AppSchema,
    /// The full schema's environment: its registry (the same types) gives
    /// the responses their shape.
    env: SchemaEnv,
    limits: Limits,
    model: CostModel,
}

impl FastSchema {
    /// `schema` is `full` without the extension.
    pub(super) fn new(
        full: &AppSchema,
        schema: AppSchema,
        limits: Limits,
        model: CostModel,
    ) -> FastSchema {
        FastSchema {
            env: environment(full),
            schema,
            limits,
            model,
        }
    }

    /// Whether `request` may run here: it is not traced, and its text names
    /// neither `_entities` nor `_service` (a document that merely mentions
    /// them, in a string or a comment, takes the full path: slower, the same
    /// answer).
    pub fn serves(request: &Request, traced: bool) -> bool {
        !traced
            && !["_entities", "_service"]
                .iter()
                .any(|name| request.query.contains(name))
    }

    /// Runs `request` as the full schema would, for `scope`.
    pub async fn execute(&self, request: Request, scope: &RequestScope) -> Response {
        let (request, prepared) =
            match conventions::prepare(&self.limits, Some(&self.model), request) {
                Ok(prepared) => prepared,
                Err(error) => return Response::from_errors(vec![error]),
            };
        let operation_name = request.operation_name.clone();
        let mut response = self.schema.execute(request).await;
        if refused_before_execution(&response) {
            // The operation was resolved and the limits held: what is left
            // to fail before execution is validation.
            for error in &mut response.errors {
                conventions::with_code(error, GRAPHQL_VALIDATION_FAILED);
            }
            return response;
        }
        scope.started.mark();
        prepared.started(Some(&scope.cost), Some(&scope.cache_policy));
        prepared.finish(&self.env.registry, operation_name.as_deref(), &mut response);
        response
    }
}

/// Whether async-graphql answered without executing: no data and only
/// errors without a path (an error raised by a field always has its path,
/// even when it nulls `data`).
fn refused_before_execution(response: &Response) -> bool {
    response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}

/// The schema's environment, caught by running `{ __typename }` on it.
fn environment(schema: &AppSchema) -> SchemaEnv {
    let slot = EnvSlot::default();
    let response = futures::executor::block_on(
        schema.execute(Request::new("{ __typename }").data(slot.clone())),
    );
    match slot.0.get() {
        Some(env) => env.clone(),
        // The schema is ours and `{ __typename }` valid on it: a failure is
        // a programming error, caught by every test.
        None => panic!(
            "the schema did not run {{ __typename }}: {:?}",
            response.errors
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_untraced_requests_without_federation_fields_take_the_fast_path() {
        let plain = Request::new("{ products(first: 1) { nodes { id } } }");
        assert!(FastSchema::serves(&plain, false));
        assert!(!FastSchema::serves(&plain, true));
        let entities =
            Request::new("query($r: [_Any!]!) { _entities(representations: $r) { __typename } }");
        assert!(!FastSchema::serves(&entities, false));
        let sdl = Request::new("{ _service { sdl } }");
        assert!(!FastSchema::serves(&sdl, false));
    }
}
