//! GraphQL over WebSocket on `/graphql`: the `graphql-transport-ws`
//! protocol (the `graphql-ws` library's), implemented here rather than with
//! async-graphql's, which skips the init timeout, duplicate-id refusal,
//! keepalive pings and the protocol's close codes.
//!
//! One task per connection owns the socket and every stream of its
//! operations, so a slow client only slows itself: while its socket does not
//! take messages, its streams are not polled, and the event bus drops events
//! for it (it is then told so) instead of making publishers wait.
//!
//! Close codes: 4400 malformed message, 4401 `subscribe` before
//! `connection_ack`, 4403 a token that does not verify, 4406 a subprotocol
//! other than `graphql-transport-ws`, 4408 no `connection_init` in time, 4409
//! a duplicate subscription id, 4429 a second `connection_init`, 1013 too many
//! connections, 3008 a client silent for a whole keepalive interval after a
//! ping. Too many subscriptions on one connection is an `error` message for
//! that subscription (`TOO_MANY_SUBSCRIPTIONS`); the others go on.
//!
//! Browsers open WebSockets to any origin without CORS, but the token travels
//! in `connection_init`, never in a cookie, so a foreign page gets only what
//! an anonymous client gets.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_graphql::{Response, ServerError, Value, Variables};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, RawQuery, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response as HttpResponse};
use futures::future::{AbortHandle, Abortable};
use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::problem::Problem;
use super::{graphql, AppState};
use crate::auth::Viewer;
use crate::graph::{self, ExecutionStarted, RouterAccess};

/// The subprotocol spoken.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// The error code of a subscription refused for the per-connection bound.
pub const TOO_MANY_SUBSCRIPTIONS: &str = "TOO_MANY_SUBSCRIPTIONS";

/// Bytes read from the socket at a time. tungstenite's default (128 KiB)
/// would be most of an idle connection's memory; messages larger than this
/// still arrive, in several reads.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// The connections open now, bounded server-wide.
#[derive(Clone)]
pub struct Connections(Arc<Semaphore>);

impl Connections {
    pub fn new(max: usize) -> Connections {
        Connections(Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))))
    }

    fn try_open(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

/// `GET /graphql`: a WebSocket upgrade, or else a GraphQL query (or
/// GraphiQL) over plain HTTP.
pub async fn get_graphql_or_upgrade(State(app): State<AppState>, request: Request) -> HttpResponse {
    let (mut parts, _body) = request.into_parts();
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        let raw = parts.uri.query().map(str::to_string);
        return graphql::get_graphql(State(app), parts.headers, RawQuery(raw)).await;
    }
    match WebSocketUpgrade::from_request_parts(&mut parts, &app).await {
        Ok(ws) => accept(app, ws, &parts.headers),
        Err(rejection) => rejection.into_response(),
    }
}

fn accept(app: AppState, ws: WebSocketUpgrade, headers: &HeaderMap) -> HttpResponse {
    let router = graphql::router_access(&app, headers);
    let request_id = graphql::request_id(headers);
    // Kept for the connection's life: only what its operations need.
    let mut client = HeaderMap::new();
    if let Some(name) = headers.get(graphql::CLIENT_NAME) {
        client.insert(graphql::CLIENT_NAME, name.clone());
    }
    // A message is one GraphQL request: the HTTP body limit applies.
    let max_message = app.config.max_body_bytes;
    let ws = ws
        .protocols([PROTOCOL])
        .read_buffer_size(READ_BUFFER_BYTES)
        // Each message is written (and flushed) as it is sent.
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message);
    let speaks_protocol = ws.selected_protocol().is_some();
    // Counted at the upgrade, so the bound holds however fast clients come.
    let permit = app.connections.try_open();
    ws.on_upgrade(move |mut socket| async move {
        if !speaks_protocol {
            close(&mut socket, 4406, "Subprotocol not acceptable").await;
            return;
        }
        let Some(permit) = permit else {
            tracing::warn!("WebSocket connection refused: at the configured maximum");
            close(&mut socket, 1013, "Too many connections: try again later").await;
            return;
        };
        let _open = app.metrics.websocket_opened();
        let connection = Connection {
            app,
            client,
            router,
            request_id,
            viewer: None,
            operations: HashMap::new(),
            streams: SelectAll::new(),
        };
        connection.run(socket).await;
        drop(permit);
    })
}

/// What one operation's stream yields: a result, or `None` at its end.
type Output = (String, Option<Response>);

/// An operation running on the connection.
struct Operation {
    abort: AbortHandle,
    started: ExecutionStarted,
    /// Whether a result was sent: only a first, pre-execution failure is an
    /// `error` message.
    answered: bool,
    /// Counts it in the active-subscriptions gauge while it runs.
    _active: crate::metrics::Active,
}

struct Connection {
    app: AppState,
    /// The upgrade request's client-name header (persisted documents may be
    /// scoped to a client).
    client: HeaderMap,
    router: RouterAccess,
    request_id: String,
    /// Who the connection acts for, once `connection_init` was acknowledged.
    viewer: Option<Viewer>,
    operations: HashMap<String, Operation>,
    streams: SelectAll<Abortable<BoxStream<'static, Output>>>,
}

/// How handling a message ends.
enum Flow {
    Continue,
    /// Close the socket with this code and reason.
    Close(u16, String),
    /// The socket is gone.
    Stop,
}

impl Connection {
    async fn run(mut self, mut socket: WebSocket) {
        let settings = self.app.config.subscriptions;
        let init_deadline = tokio::time::sleep(settings.init_timeout);
        tokio::pin!(init_deadline);
        let mut keepalive =
            tokio::time::interval_at(Instant::now() + settings.keepalive, settings.keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut last_ping: Option<Instant> = None;
        let flow = loop {
            let flow = tokio::select! {
                _ = &mut init_deadline, if self.viewer.is_none() => {
                    Flow::Close(4408, "Connection initialisation timeout".into())
                }
                message = socket.recv() => match message {
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        self.receive(&mut socket, message).await
                    }
                    // Closed by the client, or the transport failed.
                    Some(Err(_)) | None => Flow::Stop,
                },
                Some(output) = self.streams.next(), if !self.streams.is_empty() => {
                    self.deliver(&mut socket, output).await
                }
                _ = keepalive.tick(), if self.viewer.is_some() => {
                    if last_ping.is_some_and(|pinged| last_heard < pinged) {
                        Flow::Close(3008, "Keepalive timeout: no pong".into())
                    } else {
                        last_ping = Some(Instant::now());
                        send(&mut socket, self.write_limit(), json!({ "type": "ping" })).await
                    }
                }
            };
            match flow {
                Flow::Continue => continue,
                other => break other,
            }
        };
        for operation in self.operations.values() {
            operation.abort.abort();
        }
        if let Flow::Close(code, reason) = flow {
            tracing::debug!(code, %reason, "closing a WebSocket connection");
            close(&mut socket, code, &reason).await;
        }
    }

    /// How long a client may take to accept one message: a keepalive
    /// interval.
    fn write_limit(&self) -> Duration {
        self.app.config.subscriptions.keepalive
    }

    async fn receive(&mut self, socket: &mut WebSocket, message: Message) -> Flow {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return Flow::Stop,
            // tungstenite answers WebSocket pings itself.
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
            Message::Binary(_) => return invalid("messages are JSON text, not binary"),
        };
        let Ok(serde_json::Value::Object(mut message)) =
            serde_json::from_str::<serde_json::Value>(text.as_str())
        else {
            return invalid("a message is a JSON object");
        };
        let kind = message
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_string();
        match kind.as_str() {
            "connection_init" => {
                if self.viewer.is_some() {
                    return Flow::Close(4429, "Too many initialisation requests".into());
                }
                match self.authenticate(message.get("payload")) {
                    Ok(viewer) => {
                        self.viewer = Some(viewer);
                        send(
                            socket,
                            self.write_limit(),
                            json!({ "type": "connection_ack" }),
                        )
                        .await
                    }
                    Err(flow) => flow,
                }
            }
            "ping" => {
                let mut pong = json!({ "type": "pong" });
                if let Some(payload) = message.remove("payload") {
                    pong["payload"] = payload;
                }
                send(socket, self.write_limit(), pong).await
            }
            "pong" => Flow::Continue,
            "subscribe" => {
                let Some(viewer) = self.viewer else {
                    return Flow::Close(4401, "Unauthorized".into());
                };
                let Some(id) = operation_id(&message) else {
                    return invalid("`subscribe` needs a non-empty string `id`");
                };
                // Read again from text, as an HTTP body is: `variables` stays
                // JSON text until it is measured against the limits.
                let payload = match message
                    .remove("payload")
                    .filter(serde_json::Value::is_object)
                    .map(|payload| serde_json::from_str(&payload.to_string()))
                {
                    Some(Ok(payload)) => payload,
                    _ => return invalid("`subscribe` needs a `payload` object"),
                };
                self.subscribe(socket, id, payload, viewer).await
            }
            "complete" => {
                let Some(id) = operation_id(&message) else {
                    return invalid("`complete` needs a non-empty string `id`");
                };
                if let Some(operation) = self.operations.remove(&id) {
                    operation.abort.abort();
                }
                Flow::Continue
            }
            _ => invalid("unknown message type"),
        }
    }

    /// The viewer named by the `connection_init` payload's token: anonymous
    /// without one, refused (4403) when it does not verify.
    fn authenticate(&self, payload: Option<&serde_json::Value>) -> Result<Viewer, Flow> {
        let field = |name: &str| payload.and_then(|p| p.get(name)).and_then(|v| v.as_str());
        let verified = if let Some(header) = field("authorization").or(field("Authorization")) {
            self.app.jwt.verify_header(header)
        } else if let Some(token) = field("token") {
            self.app.jwt.verify(token)
        } else {
            return Ok(Viewer::anonymous());
        };
        verified.map_err(|error| {
            tracing::debug!(%error, "WebSocket connection_init with a bad token");
            Flow::Close(4403, "Forbidden".into())
        })
    }

    async fn subscribe(
        &mut self,
        socket: &mut WebSocket,
        id: String,
        payload: graphql::Params,
        viewer: Viewer,
    ) -> Flow {
        if self.operations.contains_key(&id) {
            return Flow::Close(4409, format!("Subscriber for {id} already exists"));
        }
        let max = self.app.config.subscriptions.max_per_connection;
        if self.operations.len() >= max {
            let mut error = ServerError::new(
                format!("at most {max} subscriptions may be active on one connection"),
                None,
            );
            let extensions = error.extensions.get_or_insert_with(Default::default);
            extensions.set("code", TOO_MANY_SUBSCRIPTIONS);
            extensions.set("limit", max as u64);
            return self.refuse(socket, &id, vec![error]).await;
        }
        // The same documents run as over HTTP: persisted ones by id or APQ
        // hash, and in safelist mode registered ones only; variables within
        // the same limits.
        let checked = async {
            let extensions = graphql::read_extensions(payload.extensions.as_deref())?;
            let resolved =
                graphql::resolve_document(&self.app, &self.client, &payload, extensions.as_ref())
                    .await?;
            let variables = graphql::read_variables(&self.app, payload.variables.as_deref())?;
            Ok::<_, Problem>((resolved, variables, extensions))
        };
        let (resolved, variables, extensions) = match checked.await {
            Ok(checked) => checked,
            Err(problem) => {
                let mut error = ServerError::new(problem.message, None);
                let error_extensions = error.extensions.get_or_insert_with(Default::default);
                error_extensions.set("code", problem.code);
                for (key, value) in problem.details {
                    if let Ok(value) = Value::from_json(value) {
                        error_extensions.set(key, value);
                    }
                }
                error_extensions.set("requestId", self.request_id.as_str());
                return self.refuse(socket, &id, vec![error]).await;
            }
        };
        let mut request = async_graphql::Request::new(resolved.query.to_string())
            .variables(Variables::from_json(variables));
        if let Some(registered) = resolved.registered {
            request = request.data(graph::Vetted {
                cost: registered.cost,
            });
        }
        if let Some(name) = payload.operation_name.filter(|n| !n.is_empty()) {
            request = request.operation_name(name);
        }
        for (key, value) in extensions.into_iter().flatten() {
            if let Ok(value) = Value::from_json(value) {
                request.extensions.insert(key, value);
            }
        }
        let (request, scope) = graph::RequestScope::new(
            request,
            &self.app.store,
            viewer,
            self.router,
            &self.app.config.posture,
            // Inline traces (ftv1) are for the router's single results.
            false,
        );
        let mut stream = self.app.schema.execute_stream(request);
        // Poll once now: the subscription field subscribes to its topic
        // before its first await, so once a later message on this socket is
        // handled, the subscription is in place (clients have no other way
        // to know).
        let first = match futures::poll!(stream.next()) {
            Poll::Ready(Some(response)) => Some(response),
            Poll::Ready(None) | Poll::Pending => None,
        };
        let tag = id.clone();
        let end = id.clone();
        let outputs = futures::stream::iter(first)
            .chain(stream)
            .map(move |response| (tag.clone(), Some(response)))
            .chain(futures::stream::once(async move { (end, None) }))
            .boxed();
        let (abort, registration) = AbortHandle::new_pair();
        self.streams.push(Abortable::new(outputs, registration));
        self.operations.insert(
            id,
            Operation {
                abort,
                started: scope.started.clone(),
                answered: false,
                _active: self.app.metrics.subscription_started(),
            },
        );
        Flow::Continue
    }

    /// Sends one result of an operation, or its completion.
    async fn deliver(&mut self, socket: &mut WebSocket, (id, response): Output) -> Flow {
        let Some(operation) = self.operations.get_mut(&id) else {
            // Completed by the client meanwhile.
            return Flow::Continue;
        };
        let Some(mut response) = response else {
            self.operations.remove(&id);
            return send(
                socket,
                self.write_limit(),
                json!({ "id": id, "type": "complete" }),
            )
            .await;
        };
        operation.started.assign_missing_codes(&mut response);
        for error in &mut response.errors {
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("requestId", self.request_id.as_str());
        }
        if !operation.answered && !operation.started.get() && !response.errors.is_empty() {
            // Refused before execution (parse, validation, limits).
            let errors = std::mem::take(&mut response.errors);
            return self.refuse(socket, &id, errors).await;
        }
        operation.answered = true;
        let payload = serde_json::to_value(&response).unwrap_or_else(|error| {
            tracing::error!(%error, "a result that does not serialize");
            json!({ "errors": [{ "message": "Internal server error" }] })
        });
        send(
            socket,
            self.write_limit(),
            json!({ "id": id, "type": "next", "payload": payload }),
        )
        .await
    }

    /// Ends operation `id` with an `error` message (no `complete` follows).
    async fn refuse(&mut self, socket: &mut WebSocket, id: &str, errors: Vec<ServerError>) -> Flow {
        if let Some(operation) = self.operations.remove(id) {
            operation.abort.abort();
        }
        let payload = serde_json::to_value(&errors).unwrap_or_default();
        send(
            socket,
            self.write_limit(),
            json!({ "id": id, "type": "error", "payload": payload }),
        )
        .await
    }
}

fn operation_id(message: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    message
        .get("id")
        .and_then(|id| id.as_str())
        .filter(|id| !id.is_empty())
        .map(str::to_string)
}

/// Sends one protocol message; a client that does not take it within
/// `limit` is given up on.
async fn send(socket: &mut WebSocket, limit: Duration, message: serde_json::Value) -> Flow {
    let text = message.to_string();
    match tokio::time::timeout(limit, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Flow::Continue,
        Ok(Err(_)) | Err(_) => Flow::Stop,
    }
}

fn invalid(reason: &str) -> Flow {
    Flow::Close(4400, reason.to_string())
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    // A close reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}
