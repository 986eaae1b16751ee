//! Subscriptions (and any other operation) over long-lived transports: the
//! two WebSocket protocols on `GET /graphql` ([`websocket`]), and Apollo's
//! multipart protocol and Server-Sent Events on `POST /graphql`
//! ([`over_http`]).
//!
//! What the transports share lives here: the bound on open connections, the
//! shutdown signal every connection watches, and [`run`], which runs one
//! operation (a subscription shared with every subscriber of the same one,
//! see [`fanout`]), spends its cost from the client's bucket, and tells a
//! refusal before execution (parse, validation, limits, rate limit) from its
//! results, rendered to JSON, so each transport only frames them.

mod fanout;
pub mod over_http;
pub mod websocket;

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use async_graphql::{Response, ServerError, Value};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::problem::Problem;
use super::{graphql, throttle, AppState};
use crate::auth::Viewer;
use crate::graph::{self, ApiError, RouterAccess};
use crate::limits::rate::{Admission, Throttled};

pub use fanout::Fanout;
pub use websocket::get_graphql_or_upgrade;

/// The error code of a subscription refused for the per-connection bound.
pub const TOO_MANY_SUBSCRIPTIONS: &str = "TOO_MANY_SUBSCRIPTIONS";

/// How long results that are on their way when the server shuts down may
/// take to be sent, one after another, before the connection is closed.
const SHUTDOWN_QUIET: Duration = Duration::from_millis(250);
/// The most a connection spends sending what was on its way at shutdown.
const SHUTDOWN_FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// The long-lived connections open now (WebSockets and HTTP event streams),
/// bounded server-wide, and the signal that tells them the server is
/// shutting down. Cheap to clone.
#[derive(Clone)]
pub struct Connections {
    open: Arc<Semaphore>,
    max: usize,
    shutdown: Arc<watch::Sender<bool>>,
}

impl Connections {
    pub fn new(max: usize) -> Connections {
        // `closed` waits for every permit at once, in a u32.
        let max = max.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        Connections {
            open: Arc::new(Semaphore::new(max)),
            max,
            shutdown: Arc::new(watch::channel(false).0),
        }
    }

    /// A place for one more connection, unless the server is at its bound
    /// or shutting down.
    fn try_open(&self) -> Option<OwnedSemaphorePermit> {
        if *self.shutdown.borrow() {
            return None;
        }
        self.open.clone().try_acquire_owned().ok()
    }

    fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.shutdown.subscribe())
    }

    /// Tells every connection to send what it has on its way and close
    /// (WebSockets with 1001 Going Away; event streams end as their
    /// protocol ends a stream).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits until every connection has closed, or `limit` has passed;
    /// returns how many are still open.
    pub async fn closed(&self, limit: Duration) -> usize {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        match tokio::time::timeout(limit, self.open.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => self.max - self.open.available_permits(),
        }
    }
}

/// One connection's view of the shutdown signal.
struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    /// Resolves once the server is shutting down.
    async fn requested(&mut self) {
        if self.0.wait_for(|&down| down).await.is_err() {
            // The state (and its sender) is gone: nothing will ever ask.
            std::future::pending::<()>().await;
        }
    }
}

/// What one operation yields, as transports send it.
pub(super) enum Outcome {
    /// Refused before execution (parse, validation, limits, safelist, rate
    /// limit): no result follows.
    Refused(Vec<ServerError>),
    /// A result (of a query once, of a subscription per event), as JSON.
    Next(Arc<str>),
}

/// One operation a client sent, ready to run.
pub(super) struct Operation {
    pub prepared: graphql::Prepared,
    /// It is a subscription (see [`classify`]): only those are shared.
    pub subscription: bool,
    pub viewer: Viewer,
    pub router: RouterAccess,
    /// The client's bucket, which pays for the operation.
    pub meter: Option<Admission>,
}

/// Measures an unregistered document's text against the limits (before
/// anything parses it: a registered one was measured at registration), and
/// tells which kind of operation it would run. A document that does not
/// parse is reported by execution, with its code.
pub(super) fn classify(
    app: &AppState,
    prepared: &mut graphql::Prepared,
) -> Result<Option<OperationType>, Problem> {
    if prepared.registered.is_none() {
        app.config
            .limits
            .check_text(&prepared.query)
            .map_err(|exceeded| Problem::exceeded(&exceeded))?;
        prepared.text_checked = true;
    }
    let name = prepared.operation_name.clone();
    Ok(prepared
        .request(app)
        .parsed_query()
        .ok()
        .and_then(|document| graphql::operation_type(document, name.as_deref())))
}

/// Runs `operation` as a stream of [`Outcome`]s, every error with a code
/// and the request id. A subscription that another subscriber already runs
/// for the same viewer is joined, and pays what its first subscriber paid;
/// any other operation runs here, and pays its measured cost (a registered
/// document its registered cost, before it runs). A subscription is in
/// place once `run` returns: its execution was polled once, and a
/// subscription field subscribes to its topic before its first await.
pub(super) async fn run(app: &AppState, operation: Operation, request_id: &str) -> Outcomes {
    let Operation {
        mut prepared,
        subscription,
        viewer,
        router,
        meter,
    } = operation;
    let mut request = prepared.take_request(app);
    let graphql::Prepared {
        variables,
        extensions,
        registered,
        ..
    } = prepared;
    let registered_cost = registered.as_ref().map(|registered| registered.cost);
    let key = subscription.then(|| fanout::Key {
        query: request.query.clone(),
        operation_name: request.operation_name.clone(),
        variables: variables.to_string(),
        extensions: extensions.to_string(),
        registered: registered_cost.is_some(),
        viewer,
        router,
    });
    if let Some((member, cost)) = key.as_ref().and_then(|key| app.fanout.join(key)) {
        if let Some(meter) = &meter {
            if let Err(throttled) = meter.spend(cost.unwrap_or(1)) {
                return refused(rate_limited(app, meter, &throttled, request_id));
            }
        }
        return shared(member, request_id);
    }
    if let Some(meter) = &meter {
        match registered_cost {
            // A registered document's cost is known: paid before it runs.
            Some(cost) => {
                if let Err(throttled) = meter.spend(cost) {
                    return refused(rate_limited(app, meter, &throttled, request_id));
                }
            }
            // Any other is paid once measured (see `graph::conventions`).
            None => request = request.data(meter.clone()),
        }
    }
    let (request, scope) = graph::RequestScope::new(
        request.data(graph::Streamed),
        &app.store,
        viewer,
        router,
        &app.config.posture,
        // Inline traces (ftv1) are for the router's single results.
        false,
    );
    let started = scope.started.clone();
    let mut stream = app.schema.execute_stream(request);
    let first = match futures::poll!(stream.next()) {
        Poll::Pending => {
            if let Some(key) = key {
                // In place and waiting for events: shared from now on.
                let cost = registered_cost.or_else(|| meter.as_ref().and_then(Admission::cost));
                let results = stream
                    .map(move |mut response| {
                        started.assign_missing_codes(&mut response);
                        fanout::Rendered {
                            errors: !response.errors.is_empty(),
                            json: render(&response),
                        }
                    })
                    .boxed();
                return shared(app.fanout.lead(key, results, cost), request_id);
            }
            None
        }
        Poll::Ready(first) => first,
    };
    match first {
        Some(mut response) if !started.get() && !response.errors.is_empty() => {
            started.assign_missing_codes(&mut response);
            let throttled = meter
                .as_ref()
                .and_then(|meter| Some((meter, meter.spent()?.err()?)));
            refused(match throttled {
                Some((meter, throttled)) => rate_limited(app, meter, &throttled, request_id),
                None => with_request_id(response.errors, request_id),
            })
        }
        first => {
            let first = first.map(|response| own(response, &started, request_id));
            Outcomes(Source::Own(
                futures::stream::iter(first)
                    .chain(own_results(stream, started, request_id))
                    .boxed(),
            ))
        }
    }
}

/// The results of an execution of one subscriber's own.
fn own_results(
    stream: impl futures::Stream<Item = Response> + Send + 'static,
    started: graph::ExecutionStarted,
    request_id: &str,
) -> BoxStream<'static, Outcome> {
    let request_id = request_id.to_string();
    stream
        .map(move |response| own(response, &started, &request_id))
        .boxed()
}

fn own(mut response: Response, started: &graph::ExecutionStarted, request_id: &str) -> Outcome {
    started.assign_missing_codes(&mut response);
    response.errors = with_request_id(std::mem::take(&mut response.errors), request_id);
    Outcome::Next(render(&response))
}

/// The results of a shared execution as one subscriber receives them: the
/// shared JSON, or, when it carries errors, a copy with this subscriber's
/// request id in them.
fn shared(member: fanout::Member, request_id: &str) -> Outcomes {
    Outcomes(Source::Shared {
        member,
        request_id: request_id.to_string(),
        then: None,
    })
}

/// What one operation yields, one [`Outcome`] at a time. A stream, but a
/// subscriber of a shared execution is polled here directly rather than
/// through a chain of boxed adapters: with thousands of subscribers, each
/// layer is a cold allocation touched on every event.
pub(super) struct Outcomes(Source);

enum Source {
    Shared {
        member: fanout::Member,
        request_id: String,
        /// The second of two outcomes one event gave.
        then: Option<Outcome>,
    },
    Own(BoxStream<'static, Outcome>),
}

impl futures::Stream for Outcomes {
    type Item = Outcome;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Outcome>> {
        let (member, request_id, then) = match &mut self.get_mut().0 {
            Source::Own(stream) => return stream.poll_next_unpin(cx),
            Source::Shared {
                member,
                request_id,
                then,
            } => (member, request_id, then),
        };
        if let Some(outcome) = then.take() {
            return Poll::Ready(Some(outcome));
        }
        let outcome = match std::task::ready!(member.poll_next(cx)) {
            None => None,
            Some(fanout::Received::Result(result)) => Some(personal(result, request_id)),
            Some(fanout::Received::Dropped { missed, latest }) => {
                let error: async_graphql::Error = ApiError::EventsDropped { missed }.into();
                let mut told = ServerError::new(error.message, None);
                told.extensions = error.extensions;
                let told = Response::from_errors(with_request_id(vec![told], request_id));
                *then = latest.map(|latest| personal(latest, request_id));
                Some(Outcome::Next(render(&told)))
            }
        };
        Poll::Ready(outcome)
    }
}

fn personal(result: fanout::Rendered, request_id: &str) -> Outcome {
    if !result.errors {
        return Outcome::Next(result.json);
    }
    let Ok(mut json) = serde_json::from_str::<serde_json::Value>(&result.json) else {
        return Outcome::Next(result.json);
    };
    if let Some(errors) = json.get_mut("errors").and_then(|e| e.as_array_mut()) {
        for error in errors.iter_mut().filter_map(|e| e.as_object_mut()) {
            let extensions = error
                .entry("extensions")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(extensions) = extensions.as_object_mut() {
                extensions.insert("requestId".into(), request_id.into());
            }
        }
    }
    Outcome::Next(json.to_string().into())
}

fn refused(errors: Vec<ServerError>) -> Outcomes {
    Outcomes(Source::Own(
        futures::stream::iter([Outcome::Refused(errors)]).boxed(),
    ))
}

fn with_request_id(mut errors: Vec<ServerError>, request_id: &str) -> Vec<ServerError> {
    for error in &mut errors {
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("requestId", request_id);
    }
    errors
}

/// The error refusing an operation over its client's rate limit, with
/// when to retry and the bucket.
fn rate_limited(
    app: &AppState,
    meter: &Admission,
    throttled: &Throttled,
    request_id: &str,
) -> Vec<ServerError> {
    problem_errors(throttle::problem(app, meter.tier(), throttled), request_id)
}

/// A refusal of the HTTP layer (the document, its variables, the safelist)
/// as the GraphQL errors a stream reports it with.
pub(super) fn problem_errors(problem: Problem, request_id: &str) -> Vec<ServerError> {
    let mut error = ServerError::new(problem.message, None);
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", problem.code);
    for (key, value) in problem.details {
        if let Ok(value) = Value::from_json(value) {
            extensions.set(key, value);
        }
    }
    extensions.set("requestId", request_id);
    vec![error]
}

/// The error refusing a subscription beyond the per-connection bound.
pub(super) fn too_many_subscriptions(max: usize, request_id: &str) -> Vec<ServerError> {
    let mut error = ServerError::new(
        format!("at most {max} subscriptions may be active on one connection"),
        None,
    );
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", TOO_MANY_SUBSCRIPTIONS);
    extensions.set("limit", max as u64);
    extensions.set("requestId", request_id);
    vec![error]
}

/// A result as JSON; one that cannot be serialized becomes an internal
/// error rather than nothing.
fn render(response: &Response) -> Arc<str> {
    serde_json::to_string(response)
        .unwrap_or_else(|error| {
            tracing::error!(%error, "a result that does not serialize");
            serde_json::json!({ "errors": [{ "message": "Internal server error",
                "extensions": { "code": graph::code::INTERNAL_SERVER_ERROR } }] })
            .to_string()
        })
        .into()
}
