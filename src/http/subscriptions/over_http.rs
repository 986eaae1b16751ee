//! Subscriptions over plain HTTP, for clients and proxies that cannot do
//! WebSocket: `POST /graphql` with `Accept: multipart/mixed;
//! subscriptionSpec="1.0"` (Apollo's multipart subscription protocol, which
//! Apollo Client, Kotlin and iOS speak) or `Accept: text/event-stream` (the
//! `graphql-sse` protocol's distinct connections mode).
//!
//! The request is an HTTP GraphQL request in every other way: the same
//! CSRF prevention, body limit, bearer token, persisted-document rules and
//! limits, and refusals at the HTTP level (a bad token, a forged request,
//! a body too large) are the same JSON answers with their statuses. What
//! the stream carries:
//!
//! - multipart: parts of `application/json` separated by `--graphql`;
//!   a result is `{"payload":{…}}`, a heartbeat `{}` every few seconds
//!   (the keepalive setting, at most 5 s), and a refusal before execution
//!   or the server shutting down is `{"payload":null,"errors":[…]}`, after
//!   which the stream ends (`--graphql--`).
//! - SSE: `event: next` with a result (a refusal before execution is a
//!   `next` with its errors, as the protocol asks), `event: complete` at
//!   the end, and a comment line as heartbeat. At shutdown the stream ends
//!   without `complete`, so clients reconnect as after a dropped connection.
//!
//! A query or mutation sent with these `Accept` headers is answered as
//! JSON when the client accepts JSON too, else as a stream of one result.
//! Open streams count against the same bound as WebSocket connections.

use std::time::Duration;

use async_graphql::parser::types::OperationType;
use async_graphql::ServerError;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Interval};

use super::{Outcome, ShutdownSignal, SHUTDOWN_FLUSH_LIMIT, SHUTDOWN_QUIET};
use crate::http::graphql::{self, MediaType, Params};
use crate::http::problem::{codes, Problem};
use crate::http::AppState;
use crate::limits::rate::Admission;

/// The longest pause between two heartbeats.
const MAX_HEARTBEAT: Duration = Duration::from_secs(5);

/// The error code of a stream ended because the server is shutting down.
pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";

const MULTIPART_TYPE: &str = "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"";
const SSE_TYPE: &str = "text/event-stream; charset=utf-8";

/// The event-stream transport a client asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    /// Apollo's multipart subscription protocol.
    Multipart,
    /// Server-Sent Events, `graphql-sse` distinct connections mode.
    Sse,
}

impl Transport {
    /// The first event-stream type `Accept` names (with a quality above 0):
    /// `multipart/mixed` only with `subscriptionSpec=1.0` (a bare one asks
    /// for incremental delivery, which this server does not do).
    pub fn negotiate(headers: &HeaderMap) -> Option<Transport> {
        let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
        accept.split(',').find_map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut spec = None;
            let mut quality = 1.0f32;
            for parameter in parts {
                let Some((key, value)) = parameter.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "subscriptionspec" => spec = Some(value.to_string()),
                    "q" => quality = value.parse().unwrap_or(1.0),
                    _ => {}
                }
            }
            if quality <= 0.0 {
                return None;
            }
            match essence.as_str() {
                "multipart/mixed" if spec.as_deref() == Some("1.0") => Some(Transport::Multipart),
                "text/event-stream" => Some(Transport::Sse),
                _ => None,
            }
        })
    }

    fn content_type(self) -> &'static str {
        match self {
            Transport::Multipart => MULTIPART_TYPE,
            Transport::Sse => SSE_TYPE,
        }
    }

    /// What the stream starts with: the first boundary, or a comment that
    /// gets the headers through buffering proxies.
    fn opening(self) -> &'static str {
        match self {
            Transport::Multipart => "\r\n--graphql",
            Transport::Sse => ":\n\n",
        }
    }

    fn part(self, json: &impl std::fmt::Display) -> String {
        match self {
            Transport::Multipart => {
                format!(
                    "\r\ncontent-type: application/json; charset=utf-8\r\n\r\n{json}\r\n--graphql"
                )
            }
            Transport::Sse => format!("event: next\ndata: {json}\n\n"),
        }
    }

    /// A result (its JSON as rendered once for all its subscribers).
    fn result(self, result: &str) -> String {
        match self {
            Transport::Multipart => self.part(&format_args!("{{\"payload\":{result}}}")),
            Transport::Sse => self.part(&result),
        }
    }

    fn heartbeat(self) -> String {
        match self {
            Transport::Multipart => self.part(&json!({})),
            Transport::Sse => ":\n\n".to_string(),
        }
    }

    /// The end of a stream whose operation completed.
    fn complete(self) -> &'static str {
        match self {
            Transport::Multipart => "--\r\n",
            Transport::Sse => "event: complete\ndata:\n\n",
        }
    }

    /// A refusal before execution, and the end of the stream.
    fn refusal(self, errors: &[ServerError]) -> String {
        let errors = serde_json::to_value(errors).unwrap_or_default();
        match self {
            Transport::Multipart => {
                self.part(&json!({ "payload": null, "errors": errors })) + self.complete()
            }
            Transport::Sse => self.part(&json!({ "errors": errors })) + self.complete(),
        }
    }

    /// The end of a stream at shutdown.
    fn going_away(self, request_id: &str) -> String {
        match self {
            Transport::Multipart => {
                let error = json!({
                    "message": "the server is shutting down: subscribe again",
                    "extensions": { "code": SHUTTING_DOWN, "requestId": request_id },
                });
                self.part(&json!({ "payload": null, "errors": [error] })) + self.complete()
            }
            Transport::Sse => String::new(),
        }
    }
}

/// A POST whose client takes an event stream: subscriptions stream; other
/// operations are answered as JSON if the client takes JSON too.
pub(in crate::http) async fn execute(
    app: &AppState,
    headers: &HeaderMap,
    params: Params,
    transport: Transport,
    media: Option<MediaType>,
    request_id: &str,
    caller: graphql::Caller,
) -> Response {
    let problem_type = media.unwrap_or(MediaType::Json).content_type();
    let mut prepared = match graphql::prepare(app, headers, params, &Method::POST).await {
        Ok(prepared) => prepared,
        // A document that cannot run is reported in the stream, as the
        // protocols ask; a malformed request is an HTTP error.
        Err(problem) if problem.request_error => {
            let errors = super::problem_errors(problem, request_id);
            return refused(transport, &errors);
        }
        Err(problem) => return problem.into_response(request_id, problem_type),
    };
    // Which kind of operation it is decides the transport: the text is
    // measured before it is parsed, as for a GET (and as execution would).
    let ty = match super::classify(app, &mut prepared) {
        Ok(ty) => ty,
        Err(problem) => return refused(transport, &super::problem_errors(problem, request_id)),
    };
    let subscription = ty == Some(OperationType::Subscription);
    if let (Some(media), false) = (media, subscription) {
        return graphql::respond(app, headers, caller, prepared, media, request_id).await;
    }
    // A stream is not a request in flight for the rate limiter (like a
    // WebSocket, it may stay open for hours), but it pays for its operation
    // from the same bucket.
    let graphql::Caller { viewer, admission } = caller;
    let meter = admission.as_ref().map(Admission::meter);
    drop(admission);
    let Some(permit) = app.connections.try_open() else {
        tracing::warn!("event stream refused: at the configured maximum of connections");
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::TOO_MANY_CONNECTIONS,
            "too many open subscriptions on this server: try again later",
        )
        .with_header(header::RETRY_AFTER, "5")
        .into_response(request_id, problem_type);
    };
    let operation = super::Operation {
        prepared,
        subscription,
        viewer,
        router: graphql::router_access(app, headers),
        meter,
    };
    let outcomes = super::run(app, operation, request_id).await;
    let period = app.config.subscriptions.keepalive.min(MAX_HEARTBEAT);
    let feed = Feed {
        transport,
        outcomes,
        heartbeat: tokio::time::interval_at(Instant::now() + period, period),
        shutdown: app.connections.shutdown_signal(),
        phase: Phase::Opening,
        request_id: request_id.to_string(),
        _permit: permit,
    };
    stream_response(transport, Body::from_stream(feed.into_stream()))
}

fn refused(transport: Transport, errors: &[ServerError]) -> Response {
    let body = format!("{}{}", transport.opening(), transport.refusal(errors));
    stream_response(transport, Body::from(body))
}

fn stream_response(transport: Transport, body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(transport.content_type()),
    );
    // Events are personal and of the moment: never cached.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx would otherwise hold events back in its buffer.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

enum Phase {
    Opening,
    Streaming,
    Done,
}

/// One stream's state, as its body yields it.
struct Feed {
    transport: Transport,
    outcomes: super::Outcomes,
    heartbeat: Interval,
    shutdown: ShutdownSignal,
    phase: Phase,
    request_id: String,
    /// Its place among the open connections, given back when the body is
    /// dropped (the stream ended, or the client went away).
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    fn into_stream(self) -> BoxStream<'static, Result<Bytes, std::convert::Infallible>> {
        futures::stream::unfold(self, |mut feed| async move {
            let chunk = feed.next_chunk().await?;
            Some((Ok(Bytes::from(chunk)), feed))
        })
        .boxed()
    }

    async fn next_chunk(&mut self) -> Option<String> {
        let transport = self.transport;
        match self.phase {
            Phase::Opening => {
                self.phase = Phase::Streaming;
                return Some(transport.opening().to_string());
            }
            Phase::Done => return None,
            Phase::Streaming => {}
        }
        tokio::select! {
            biased;
            _ = self.shutdown.requested() => {
                self.phase = Phase::Done;
                Some(self.flush().await)
            }
            outcome = self.outcomes.next() => match outcome {
                Some(Outcome::Next(result)) => Some(transport.result(&result)),
                Some(Outcome::Refused(errors)) => {
                    self.phase = Phase::Done;
                    Some(transport.refusal(&errors))
                }
                None => {
                    self.phase = Phase::Done;
                    Some(transport.complete().to_string())
                }
            },
            _ = self.heartbeat.tick() => Some(transport.heartbeat()),
        }
    }

    /// At shutdown: the results on their way (each within a short quiet
    /// period of the last), then the end of the stream.
    async fn flush(&mut self) -> String {
        let transport = self.transport;
        let mut chunk = String::new();
        let limit = Instant::now() + SHUTDOWN_FLUSH_LIMIT;
        loop {
            let until = (Instant::now() + SHUTDOWN_QUIET).min(limit);
            match tokio::time::timeout_at(until, self.outcomes.next()).await {
                Ok(Some(Outcome::Next(result))) => chunk += &transport.result(&result),
                Ok(Some(Outcome::Refused(errors))) => return chunk + &transport.refusal(&errors),
                Ok(None) => return chunk + transport.complete(),
                Err(_) => return chunk + &transport.going_away(&self.request_id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, value.parse().unwrap());
        headers
    }

    #[test]
    fn accept_names_the_event_stream_transport() {
        let apollo = accept("multipart/mixed;subscriptionSpec=\"1.0\", application/json");
        assert_eq!(Transport::negotiate(&apollo), Some(Transport::Multipart));
        let unquoted = accept("multipart/mixed; boundary=\"graphql\"; subscriptionSpec=1.0");
        assert_eq!(Transport::negotiate(&unquoted), Some(Transport::Multipart));
        let sse = accept("text/event-stream");
        assert_eq!(Transport::negotiate(&sse), Some(Transport::Sse));
        // Incremental delivery, another spec version, a refused type, JSON.
        for other in [
            "multipart/mixed;deferSpec=20220824",
            "multipart/mixed;subscriptionSpec=2.0",
            "text/event-stream;q=0, application/json",
            "application/json",
        ] {
            assert_eq!(Transport::negotiate(&accept(other)), None, "{other}");
        }
    }
}
