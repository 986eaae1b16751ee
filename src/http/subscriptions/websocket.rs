//! GraphQL over WebSocket on `/graphql`, in both protocols clients speak,
//! chosen by `Sec-WebSocket-Protocol`: `graphql-transport-ws` (the
//! `graphql-ws` library's; preferred when a client offers both) and the
//! legacy `graphql-ws` of `subscriptions-transport-ws`. Implemented here
//! rather than with async-graphql's, which skips the init timeout,
//! duplicate-id refusal, keepalive pings and the protocol's close codes.
//!
//! One task per connection owns the socket and every stream of its
//! operations, so a slow client only slows itself: while its socket does not
//! take messages, its streams are not polled, and the ring of shared results
//! (see `fanout`) drops results for it (it is then told so) instead of
//! making the execution, or the publishers, wait.
//!
//! Close codes, both protocols: 4401 an operation before `connection_ack`,
//! 4403 a token that does not verify, 4406 neither subprotocol, 4408 no
//! `connection_init` in time, 4429 a second `connection_init`, 1013 too many
//! connections, 3008 a client silent for a whole keepalive interval after a
//! ping, 1001 the server is shutting down (after the results on their way
//! were sent). `graphql-transport-ws` only: 4400 a malformed message, 4409 a
//! duplicate subscription id. The legacy protocol has no close codes of its
//! own: there a malformed message is answered with `connection_error` (and
//! the connection goes on), an unknown one with `error`, a reused id
//! replaces the operation (as its reference server does), a bad token gets
//! `connection_error` before the 4403 close, and `connection_terminate`
//! closes with 1000. Too many subscriptions on one connection is an `error`
//! message for that subscription (`TOO_MANY_SUBSCRIPTIONS`); the others go
//! on.
//!
//! Keepalive: `graphql-transport-ws` pings with its `ping` message and
//! expects `pong`; the legacy protocol sends `ka` (right after the ack, then
//! every interval), which clients never answer, so a WebSocket ping frame
//! goes with it, and its pong proves the client alive.
//!
//! Browsers open WebSockets to any origin without CORS, but the token travels
//! in `connection_init`, never in a cookie, so a foreign page gets only what
//! an anonymous client gets.

use std::task::Poll;
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use async_graphql::ServerError;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, RawQuery, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response as HttpResponse};
use futures::StreamExt;
use serde_json::json;
use tokio::time::Instant;

use super::{Outcome, Outcomes, ShutdownSignal, SHUTDOWN_FLUSH_LIMIT, SHUTDOWN_QUIET};
use crate::auth::Viewer;
use crate::graph::RouterAccess;
use crate::http::{graphql, throttle, AppState};
use crate::limits::rate::Admission;

/// The subprotocol of the `graphql-ws` library.
pub const PROTOCOL: &str = "graphql-transport-ws";
/// The subprotocol of the legacy `subscriptions-transport-ws` library.
pub const LEGACY_PROTOCOL: &str = "graphql-ws";

/// Bytes read from the socket at a time. tungstenite's default (128 KiB)
/// would be most of an idle connection's memory, and it zeroes this many
/// bytes before every read, the one that finds nothing after each event
/// sent too. Messages larger than this still arrive, in several reads.
const READ_BUFFER_BYTES: usize = 2 * 1024;

/// Which protocol a connection speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    /// `graphql-transport-ws`.
    TransportWs,
    /// `graphql-ws` (`subscriptions-transport-ws`).
    Legacy,
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
    // Read now: the peer's address is known only while the request is.
    let payer = throttle::SocketClient::of(&app, headers);
    // Kept for the connection's life: only what its operations need.
    let mut client = HeaderMap::new();
    if let Some(name) = headers.get(graphql::CLIENT_NAME) {
        client.insert(graphql::CLIENT_NAME, name.clone());
    }
    // A message is one GraphQL request: the HTTP body limit applies.
    let max_message = app.config.max_body_bytes;
    let ws = ws
        .protocols([PROTOCOL, LEGACY_PROTOCOL])
        .read_buffer_size(READ_BUFFER_BYTES)
        // Each message is written (and flushed) as it is sent.
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message);
    let protocol = ws
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .map(|p| {
            if p == PROTOCOL {
                Protocol::TransportWs
            } else {
                Protocol::Legacy
            }
        });
    // Counted at the upgrade, so the bound holds however fast clients come.
    let permit = app.connections.try_open();
    let shutdown = app.connections.shutdown_signal();
    ws.on_upgrade(move |mut socket| async move {
        let Some(protocol) = protocol else {
            close(&mut socket, 4406, "Subprotocol not acceptable").await;
            return;
        };
        let Some(permit) = permit else {
            tracing::warn!("WebSocket connection refused: at the configured maximum");
            close(&mut socket, 1013, "Too many connections: try again later").await;
            return;
        };
        let _open = app.metrics.websocket_opened();
        let connection = Connection {
            app,
            protocol,
            client,
            router,
            request_id,
            payer,
            viewer: None,
            bucket: None,
            operations: Vec::new(),
            turn: 0,
        };
        connection.run(socket, shutdown).await;
        drop(permit);
    })
}

/// What one of the connection's operations yielded: the operation (its
/// place in [`Connection::operations`]) and an outcome, or `None` at its end.
type Output = (usize, Option<Outcome>);

/// An operation running on the connection.
struct Operation {
    id: String,
    /// What its results are sent with: `{"id":…,"type":"next","payload":`
    /// (`"data"` in the legacy protocol), made once.
    prefix: String,
    outcomes: Outcomes,
    /// Counts it in the active-subscriptions gauge while it runs.
    _active: crate::metrics::Active,
}

struct Connection {
    app: AppState,
    protocol: Protocol,
    /// The upgrade request's client-name header (persisted documents may be
    /// scoped to a client).
    client: HeaderMap,
    router: RouterAccess,
    request_id: String,
    /// Who the client is for the rate limits.
    payer: throttle::SocketClient,
    /// Who the connection acts for, once `connection_init` was acknowledged.
    viewer: Option<Viewer>,
    /// The rate-limit bucket its operations pay from, from then on.
    bucket: Option<Admission>,
    /// Its operations, each polled by this task directly: at most
    /// `--ws-max-subscriptions`, so a scan is cheaper than an index (and
    /// one subscription, the common case, costs one poll per wake-up).
    operations: Vec<Operation>,
    /// Where the next poll of the operations starts, so that a busy one
    /// does not starve those after it.
    turn: usize,
}

/// How handling a message ends.
enum Flow {
    Continue,
    /// Close the socket with this code and reason.
    Close(u16, String),
    /// The server is shutting down: send what is on its way, then close.
    GoingAway,
    /// The socket is gone.
    Stop,
}

/// A client message, in either protocol's words.
enum Kind {
    Init,
    Ping,
    Pong,
    Subscribe,
    Stop,
    Terminate,
    Unknown,
}

impl Connection {
    async fn run(mut self, mut socket: WebSocket, mut shutdown: ShutdownSignal) {
        let settings = self.app.config.subscriptions;
        let init_deadline = tokio::time::sleep(settings.init_timeout);
        tokio::pin!(init_deadline);
        let mut keepalive =
            tokio::time::interval_at(Instant::now() + settings.keepalive, settings.keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut last_ping: Option<Instant> = None;
        // Made once, not on every turn of the loop: each new one would
        // register with the signal again.
        let shutdown = shutdown.requested();
        tokio::pin!(shutdown);
        let flow = loop {
            // In this order, so that a connection woken by a result sends it
            // on the first branch and polls its socket once before it sleeps
            // again (a result sent makes the loop turn, and every branch is
            // polled on each turn). A client is not starved by its results:
            // they come at most as fast as events, and a subscriber that
            // falls behind is skipped ahead (see `fanout`).
            let flow = tokio::select! {
                biased;
                _ = &mut shutdown => Flow::GoingAway,
                _ = &mut init_deadline, if self.viewer.is_none() => {
                    Flow::Close(4408, "Connection initialisation timeout".into())
                }
                output = std::future::poll_fn(|cx| self.poll_outputs(cx)),
                    if !self.operations.is_empty() => {
                    self.deliver(&mut socket, output).await
                }
                message = socket.recv() => match message {
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        // Boxed: handling a message (a subscribe prepares and
                        // starts an operation) takes far more state than the
                        // connection keeps while it waits, and every idle
                        // connection would hold room for it.
                        Box::pin(self.receive(&mut socket, message)).await
                    }
                    // Closed by the client, or the transport failed.
                    Some(Err(_)) | None => Flow::Stop,
                },
                _ = keepalive.tick(), if self.viewer.is_some() => {
                    if last_ping.is_some_and(|pinged| last_heard < pinged) {
                        Flow::Close(3008, "Keepalive timeout: no pong".into())
                    } else {
                        last_ping = Some(Instant::now());
                        self.keep_alive(&mut socket).await
                    }
                }
            };
            match flow {
                Flow::Continue => continue,
                other => break other,
            }
        };
        let flow = match flow {
            Flow::GoingAway => {
                tracing::debug!("server shutting down: flushing a WebSocket connection");
                // Boxed, as `receive` is: only a shutdown needs its state.
                match Box::pin(self.flush(&mut socket)).await {
                    Flow::Continue => Flow::Close(1001, "Server shutting down".into()),
                    other => other,
                }
            }
            other => other,
        };
        // Leaving shared executions before the close handshake.
        self.operations.clear();
        if let Flow::Close(code, reason) = flow {
            tracing::debug!(code, %reason, "closing a WebSocket connection");
            close(&mut socket, code, &reason).await;
        }
    }

    /// Sends the results that are on their way: each that comes within a
    /// short quiet period of the last, within an overall limit.
    async fn flush(&mut self, socket: &mut WebSocket) -> Flow {
        let limit = Instant::now() + SHUTDOWN_FLUSH_LIMIT;
        while !self.operations.is_empty() {
            let until = (Instant::now() + SHUTDOWN_QUIET).min(limit);
            let next = std::future::poll_fn(|cx| self.poll_outputs(cx));
            match tokio::time::timeout_at(until, next).await {
                Ok(output) => match self.deliver(socket, output).await {
                    Flow::Continue => continue,
                    other => return other,
                },
                Err(_) => break,
            }
        }
        Flow::Continue
    }

    /// The next outcome of any operation, polled in turn from where the
    /// last poll left off.
    fn poll_outputs(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Output> {
        let count = self.operations.len();
        for step in 0..count {
            let index = (self.turn + step) % count;
            if let Poll::Ready(outcome) = self.operations[index].outcomes.poll_next_unpin(cx) {
                self.turn = index + 1;
                return Poll::Ready((index, outcome));
            }
        }
        Poll::Pending
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.operations
            .iter()
            .position(|operation| operation.id == id)
    }

    /// How long a client may take to accept one message: a keepalive
    /// interval.
    fn write_limit(&self) -> Duration {
        self.app.config.subscriptions.keepalive
    }

    async fn send(&mut self, socket: &mut WebSocket, message: serde_json::Value) -> Flow {
        send(
            socket,
            self.write_limit(),
            Message::Text(message.to_string().into()),
        )
        .await
    }

    async fn keep_alive(&mut self, socket: &mut WebSocket) -> Flow {
        match self.protocol {
            Protocol::TransportWs => self.send(socket, json!({ "type": "ping" })).await,
            Protocol::Legacy => match self.send(socket, json!({ "type": "ka" })).await {
                Flow::Continue => {
                    send(
                        socket,
                        self.write_limit(),
                        Message::Ping(Default::default()),
                    )
                    .await
                }
                other => other,
            },
        }
    }

    fn kind(&self, name: &str) -> Kind {
        match (self.protocol, name) {
            (_, "connection_init") => Kind::Init,
            (Protocol::TransportWs, "ping") => Kind::Ping,
            (Protocol::TransportWs, "pong") => Kind::Pong,
            (Protocol::TransportWs, "subscribe") | (Protocol::Legacy, "start") => Kind::Subscribe,
            (Protocol::TransportWs, "complete") | (Protocol::Legacy, "stop") => Kind::Stop,
            (Protocol::Legacy, "connection_terminate") => Kind::Terminate,
            _ => Kind::Unknown,
        }
    }

    async fn receive(&mut self, socket: &mut WebSocket, message: Message) -> Flow {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return Flow::Stop,
            // tungstenite answers WebSocket pings itself.
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
            Message::Binary(_) => {
                return self
                    .unreadable(socket, "messages are JSON text, not binary")
                    .await
            }
        };
        let Ok(serde_json::Value::Object(mut message)) =
            serde_json::from_str::<serde_json::Value>(text.as_str())
        else {
            return self.unreadable(socket, "a message is a JSON object").await;
        };
        let name = message
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("")
            .to_string();
        match self.kind(&name) {
            Kind::Init => {
                if self.viewer.is_some() {
                    return Flow::Close(4429, "Too many initialisation requests".into());
                }
                let Some(viewer) = self.authenticate(message.get("payload")) else {
                    if self.protocol == Protocol::Legacy {
                        let refusal = json!({ "type": "connection_error", "payload": {
                            "message": "the token in connection_init does not verify",
                            "extensions": { "code": "UNAUTHENTICATED" },
                        } });
                        if let flow @ (Flow::Stop | Flow::Close(..)) =
                            self.send(socket, refusal).await
                        {
                            return flow;
                        }
                    }
                    return Flow::Close(4403, "Forbidden".into());
                };
                self.viewer = Some(viewer);
                self.bucket = self.payer.meter(&self.app, &viewer);
                match self.send(socket, json!({ "type": "connection_ack" })).await {
                    // The legacy protocol's first keepalive follows the ack.
                    Flow::Continue if self.protocol == Protocol::Legacy => {
                        self.send(socket, json!({ "type": "ka" })).await
                    }
                    flow => flow,
                }
            }
            Kind::Ping => {
                let mut pong = json!({ "type": "pong" });
                if let Some(payload) = message.remove("payload") {
                    pong["payload"] = payload;
                }
                self.send(socket, pong).await
            }
            Kind::Pong => Flow::Continue,
            Kind::Subscribe => {
                let Some(viewer) = self.viewer else {
                    return Flow::Close(4401, "Unauthorized".into());
                };
                let Some(id) = operation_id(&message) else {
                    return self
                        .invalid(socket, None, "an operation needs a non-empty string `id`")
                        .await;
                };
                // Read again from text, as an HTTP body is: `variables` stays
                // JSON text until it is measured against the limits.
                let payload = match message
                    .remove("payload")
                    .filter(serde_json::Value::is_object)
                    .map(|payload| serde_json::from_str(&payload.to_string()))
                {
                    Some(Ok(payload)) => payload,
                    _ => {
                        return self
                            .invalid(socket, Some(&id), "an operation needs a `payload` object")
                            .await
                    }
                };
                self.subscribe(socket, id, payload, viewer).await
            }
            Kind::Stop => {
                let Some(id) = operation_id(&message) else {
                    return self
                        .invalid(
                            socket,
                            None,
                            "ending an operation needs its non-empty string `id`",
                        )
                        .await;
                };
                let Some(index) = self.position(&id) else {
                    return Flow::Continue;
                };
                self.operations.swap_remove(index);
                match self.protocol {
                    Protocol::TransportWs => Flow::Continue,
                    // The legacy protocol confirms a `stop` with `complete`.
                    Protocol::Legacy => {
                        self.send(socket, json!({ "id": id, "type": "complete" }))
                            .await
                    }
                }
            }
            Kind::Terminate => Flow::Close(1000, "Terminated by the client".into()),
            Kind::Unknown => {
                let id = operation_id(&message);
                self.invalid(socket, id.as_deref(), "unknown message type")
                    .await
            }
        }
    }

    /// A message that is not JSON at all: the modern protocol closes (4400),
    /// the legacy one answers with `connection_error` and goes on.
    async fn unreadable(&mut self, socket: &mut WebSocket, reason: &str) -> Flow {
        match self.protocol {
            Protocol::TransportWs => Flow::Close(4400, reason.to_string()),
            Protocol::Legacy => {
                self.send(
                    socket,
                    json!({ "type": "connection_error", "payload": { "message": reason } }),
                )
                .await
            }
        }
    }

    /// A message of the wrong shape: the modern protocol closes (4400), the
    /// legacy one answers with `error` and goes on.
    async fn invalid(&mut self, socket: &mut WebSocket, id: Option<&str>, reason: &str) -> Flow {
        match self.protocol {
            Protocol::TransportWs => Flow::Close(4400, reason.to_string()),
            Protocol::Legacy => {
                self.send(
                    socket,
                    json!({ "id": id, "type": "error", "payload": { "message": reason } }),
                )
                .await
            }
        }
    }

    /// The viewer named by the `connection_init` payload's token: anonymous
    /// without one, `None` when it does not verify.
    fn authenticate(&self, payload: Option<&serde_json::Value>) -> Option<Viewer> {
        let field = |name: &str| payload.and_then(|p| p.get(name)).and_then(|v| v.as_str());
        let verified = if let Some(header) = field("authorization").or(field("Authorization")) {
            self.app.jwt.verify_header(header)
        } else if let Some(token) = field("token") {
            self.app.jwt.verify(token)
        } else {
            return Some(Viewer::anonymous());
        };
        verified
            .map_err(|error| tracing::debug!(%error, "WebSocket connection_init with a bad token"))
            .ok()
    }

    async fn subscribe(
        &mut self,
        socket: &mut WebSocket,
        id: String,
        payload: graphql::Params,
        viewer: Viewer,
    ) -> Flow {
        if let Some(previous) = self.position(&id) {
            match self.protocol {
                Protocol::TransportWs => {
                    return Flow::Close(4409, format!("Subscriber for {id} already exists"));
                }
                // The legacy reference server replaces the operation.
                Protocol::Legacy => {
                    self.operations.swap_remove(previous);
                }
            }
        }
        let max = self.app.config.subscriptions.max_per_connection;
        if self.operations.len() >= max {
            let errors = super::too_many_subscriptions(max, &self.request_id);
            return self.refuse(socket, &id, errors).await;
        }
        // The same documents run as over HTTP (POST): persisted ones by id or
        // APQ hash, and in safelist mode registered ones only; variables
        // within the same limits.
        let prepared = graphql::prepare(&self.app, &self.client, payload, &Method::POST).await;
        let classified = prepared.and_then(|mut prepared| {
            let ty = super::classify(&self.app, &mut prepared)?;
            Ok((prepared, ty))
        });
        let (prepared, ty) = match classified {
            Ok(classified) => classified,
            Err(problem) => {
                let errors = super::problem_errors(problem, &self.request_id);
                return self.refuse(socket, &id, errors).await;
            }
        };
        let operation = super::Operation {
            prepared,
            subscription: ty == Some(OperationType::Subscription),
            viewer,
            router: self.router,
            // Each operation's own record of what it spent.
            meter: self.bucket.as_ref().map(Admission::meter),
        };
        let outcomes = super::run(&self.app, operation, &self.request_id).await;
        let kind = match self.protocol {
            Protocol::TransportWs => "next",
            Protocol::Legacy => "data",
        };
        let prefix = format!(
            "{{\"id\":{},\"type\":\"{kind}\",\"payload\":",
            serde_json::Value::from(id.as_str())
        );
        self.operations.push(Operation {
            id,
            prefix,
            outcomes,
            _active: self.app.metrics.subscription_started(),
        });
        Flow::Continue
    }

    /// Sends one outcome of an operation, or its completion.
    async fn deliver(&mut self, socket: &mut WebSocket, (index, outcome): Output) -> Flow {
        match outcome {
            None => {
                let id = self.operations.swap_remove(index).id;
                self.send(socket, json!({ "id": id, "type": "complete" }))
                    .await
            }
            Some(Outcome::Refused(errors)) => {
                let id = self.operations[index].id.clone();
                self.refuse(socket, &id, errors).await
            }
            Some(Outcome::Next(result)) => {
                // The result's JSON as rendered once for all its subscribers.
                let prefix = &self.operations[index].prefix;
                let mut message = String::with_capacity(prefix.len() + result.len() + 1);
                message.push_str(prefix);
                message.push_str(&result);
                message.push('}');
                send(socket, self.write_limit(), Message::Text(message.into())).await
            }
        }
    }

    /// Ends operation `id` with an `error` message (no `complete` follows):
    /// its errors in `graphql-transport-ws`, the first one in the legacy
    /// protocol, whose `error` carries one error.
    async fn refuse(&mut self, socket: &mut WebSocket, id: &str, errors: Vec<ServerError>) -> Flow {
        if let Some(index) = self.position(id) {
            self.operations.swap_remove(index);
        }
        let payload = match self.protocol {
            Protocol::TransportWs => serde_json::to_value(&errors).unwrap_or_default(),
            Protocol::Legacy => errors
                .first()
                .and_then(|error| serde_json::to_value(error).ok())
                .unwrap_or_default(),
        };
        self.send(
            socket,
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

/// Sends one WebSocket message; a client that does not take it within
/// `limit` is given up on.
async fn send(socket: &mut WebSocket, limit: Duration, message: Message) -> Flow {
    let sending = socket.send(message);
    tokio::pin!(sending);
    // Most messages are taken at once: only one that waits starts a timer.
    let sent = match futures::poll!(&mut sending) {
        Poll::Ready(sent) => sent,
        Poll::Pending => match tokio::time::timeout(limit, sending).await {
            Ok(sent) => sent,
            Err(_) => return Flow::Stop,
        },
    };
    match sent {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Stop,
    }
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
