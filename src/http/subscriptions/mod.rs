//! Subscriptions (and any other operation) over long-lived transports: the
//! two WebSocket protocols on `GET /graphql` ([`websocket`]), and Apollo's
//! multipart protocol and Server-Sent Events on `POST /graphql`
//! ([`over_http`]).
//!
//! What the transports share lives here: the bound on open connections, the
//! shutdown signal every connection watches, and [`start`], which runs one
//! operation and tells a refusal before execution (parse, validation,
//! limits) from its results, so each transport only frames them.

pub mod over_http;
pub mod websocket;

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_graphql::{Response, ServerError, Value};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::problem::Problem;
use super::AppState;
use crate::auth::Viewer;
use crate::graph::{self, RouterAccess};

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
    /// Refused before execution (parse, validation, limits, safelist): no
    /// result follows.
    Refused(Vec<ServerError>),
    /// A result (of a query once, of a subscription per event).
    Next(Response),
}

/// Runs `request` for `viewer` as a stream of [`Outcome`]s, every error
/// with a code and the request id. The stream is polled once here: a
/// subscription field subscribes to its topic before its first await, so
/// once `start` returns, events published are seen.
pub(super) async fn start(
    app: &AppState,
    request: async_graphql::Request,
    viewer: Viewer,
    router: RouterAccess,
    request_id: &str,
) -> BoxStream<'static, Outcome> {
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
        Poll::Ready(Some(response)) => Some(response),
        Poll::Ready(None) | Poll::Pending => None,
    };
    let request_id = request_id.to_string();
    let mut answered = false;
    futures::stream::iter(first)
        .chain(stream)
        .map(move |mut response| {
            started.assign_missing_codes(&mut response);
            for error in &mut response.errors {
                error
                    .extensions
                    .get_or_insert_with(Default::default)
                    .set("requestId", request_id.as_str());
            }
            let refused = !answered && !started.get() && !response.errors.is_empty();
            answered = true;
            if refused {
                Outcome::Refused(std::mem::take(&mut response.errors))
            } else {
                Outcome::Next(response)
            }
        })
        .boxed()
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
pub(super) fn result_json(response: &Response) -> serde_json::Value {
    serde_json::to_value(response).unwrap_or_else(|error| {
        tracing::error!(%error, "a result that does not serialize");
        serde_json::json!({ "errors": [{ "message": "Internal server error",
            "extensions": { "code": graph::code::INTERNAL_SERVER_ERROR } }] })
    })
}
