//! W6 of GRAPH.md: many WebSocket clients subscribed to `productUpdated` of
//! one product while its price changes.
//!
//! Starts the release server (`target/release/commerce-graph`, or
//! `COMMERCE_GRAPH_BIN`) on a fresh seeded SQLite database, opens
//! `W6_SUBSCRIBERS` (default 10,000) graphql-transport-ws connections with
//! one subscription each, and prints:
//!
//! - the server's memory per idle connection: the growth of its resident
//!   set (VmRSS) from before the connections opened to after they all
//!   subscribed and sat idle, divided by their number;
//! - for each of `W6_EVENTS` (default 5) `setProductPrice` mutations, sent
//!   one after another once every subscriber had the previous one, the time
//!   until each subscriber has its event (first, p50, p99, max), counted
//!   from the moment the mutation was sent: the commit happens after that,
//!   so these are upper bounds of the time from the commit.
//!
//! Run it with `benches/w6.sh` (raises the open-file limit, builds the
//! release binary, then `cargo bench --bench w6_subscribers`).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const PRODUCT: &str = "7";
const SUBSCRIPTION: &str =
    "subscription($id: ID!) { productUpdated(id: $id) { id price { cents } } }";
/// The pause between two price changes.
const PAUSE: Duration = Duration::from_millis(500);
/// Connections opened at a time.
const OPENING_CONCURRENCY: usize = 200;

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

async fn start_server(bin: &str, secret: &str, max_connections: usize) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let child = Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("commerce.db").display()
        ))
        .env("COMMERCE_GRAPH_JWT_SECRET", secret)
        .env(
            "COMMERCE_GRAPH_WS_MAX_CONNECTIONS",
            max_connections.to_string(),
        )
        .env("COMMERCE_GRAPH_LOG", "warn")
        // All 10,000 subscribers come from one address, one anonymous
        // client: its budget would refuse most of them.
        .env("COMMERCE_GRAPH_RATE_LIMIT", "false")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {bin} (build it with cargo build --release)"))?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    // Seeding the fresh database on start takes a while on a busy machine.
    for _ in 0..3000 {
        let ready = client
            .get(format!("{}/health/ready", server.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(server._dir.path().join("server.log")).unwrap_or_default();
    bail!("the server did not get ready within 300 s:\n{log}")
}

fn admin_token(bin: &str, secret: &str) -> anyhow::Result<String> {
    let output = Command::new(bin)
        .args(["token", "--admin"])
        .env("COMMERCE_GRAPH_JWT_SECRET", secret)
        .output()?;
    if !output.status.success() {
        bail!(
            "commerce-graph token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_string())
}

async fn send(socket: &mut Socket, message: Value) -> anyhow::Result<()> {
    socket
        .send(Message::Text(message.to_string().into()))
        .await?;
    Ok(())
}

/// The next protocol message, answering pings.
async fn next(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .context("no message within 60 s")?
            .context("the socket closed")??;
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(text.as_str())?;
            if value["type"] == "ping" {
                send(socket, json!({ "type": "pong" })).await?;
                continue;
            }
            return Ok(value);
        }
    }
}

/// A connection with one subscription in place (a query sent after it was
/// answered, so the server registered the subscription).
async fn subscriber(ws_url: &str) -> anyhow::Result<Socket> {
    let mut request = ws_url.into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    // Small client buffers too: 10,000 clients live in this process.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    send(&mut socket, json!({ "type": "connection_init" })).await?;
    let ack = next(&mut socket).await?;
    if ack["type"] != "connection_ack" {
        bail!("expected connection_ack, got {ack}");
    }
    send(
        &mut socket,
        json!({ "id": "p", "type": "subscribe",
            "payload": { "query": SUBSCRIPTION, "variables": { "id": PRODUCT } } }),
    )
    .await?;
    send(
        &mut socket,
        json!({ "id": "s", "type": "subscribe", "payload": { "query": "{ __typename }" } }),
    )
    .await?;
    loop {
        let message = next(&mut socket).await?;
        if message["id"] == "s" && message["type"] == "complete" {
            return Ok(socket);
        }
        if message["id"] == "p" || message["type"] == "error" {
            bail!("unexpected message: {message}");
        }
    }
}

/// `n` subscribers, opened `OPENING_CONCURRENCY` at a time.
async fn subscribers_of(ws_url: &str, n: usize) -> anyhow::Result<Vec<Socket>> {
    futures::stream::iter(0..n)
        .map(|_| subscriber(ws_url))
        .buffer_unordered(OPENING_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// When subscribers received their events: what each reader notes, as
/// cheaply as it can, since the readers share the machine with the server.
#[derive(Default)]
struct Arrivals {
    noted: Mutex<Vec<(Instant, i64)>>,
    /// Told when `expected` arrivals are noted.
    all: Notify,
    expected: AtomicUsize,
}

impl Arrivals {
    fn note(&self, cents: i64) {
        let at = Instant::now();
        let mut noted = self.noted();
        noted.push((at, cents));
        if noted.len() == self.expected.load(Ordering::Acquire) {
            self.all.notify_one();
        }
    }

    /// Forgets what was noted and waits for `n` new arrivals.
    fn expect(&self, n: usize) {
        self.noted().clear();
        self.expected.store(n, Ordering::Release);
    }

    fn taken(&self) -> Vec<(Instant, i64)> {
        std::mem::take(&mut *self.noted())
    }

    /// A reader that panicked noted nothing half-way: what is there holds.
    fn noted(&self) -> MutexGuard<'_, Vec<(Instant, i64)>> {
        self.noted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Just the parts of a server message a reader looks at: parsed into these
/// types, not a `Value` tree, to spend little of the machine on it.
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    id: Option<&'a str>,
    payload: Option<Payload>,
}

#[derive(serde::Deserialize)]
struct Payload {
    data: Option<Data>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    product_updated: Product,
}

#[derive(serde::Deserialize)]
struct Product {
    price: Price,
}

#[derive(serde::Deserialize)]
struct Price {
    cents: i64,
}

/// Notes every `productUpdated` event of subscription `p` on `socket` and
/// answers pings, until the socket closes. An event it cannot read is noted
/// with the price -1, which fails the run.
async fn read_events(mut socket: Socket, arrivals: Arc<Arrivals>) {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        match serde_json::from_str::<Incoming>(text.as_str()) {
            Ok(Incoming { kind: "ping", .. }) => {
                if send(&mut socket, json!({ "type": "pong" })).await.is_err() {
                    return;
                }
            }
            Ok(Incoming {
                kind: "next",
                id: Some("p"),
                payload,
            }) => {
                let cents = payload
                    .and_then(|payload| payload.data)
                    .map_or(-1, |data| data.product_updated.price.cents);
                arrivals.note(cents);
            }
            Ok(_) => {}
            Err(_) => arrivals.note(-1),
        }
    }
}

/// Time the threads of process `pid` have been on a CPU so far
/// (`/proc/PID/task/*/schedstat`, nanoseconds): what a burst of work cost,
/// however many threads shared it.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue;
        };
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .context("an unreadable schedstat")?;
    }
    Ok(Duration::from_nanos(total))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// When one price change reached its subscribers.
struct Timing {
    answered: Duration,
    first: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// CPU time the server and this benchmark spent from the send until
    /// every subscriber had the event.
    server_cpu: Duration,
    bench_cpu: Duration,
}

/// Sets the price to `cents` and waits until every subscriber reported
/// that price (each reports through `arrivals`).
async fn price_change(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    cents: i64,
    subscribers: usize,
    arrivals: &Arrivals,
    server: u32,
) -> anyhow::Result<Timing> {
    arrivals.expect(subscribers);
    let cpu_before = (cpu_time(server)?, cpu_time(std::process::id())?);
    let sent = Instant::now();
    let reply: Value = client
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({
            "query": "mutation($id: ID!, $cents: Int!) { setProductPrice(productId: $id, cents: $cents) { id } }",
            "variables": { "id": PRODUCT, "cents": cents },
        }))
        .send()
        .await?
        .json()
        .await?;
    let answered = sent.elapsed();
    if reply.get("errors").is_some() {
        bail!("the price change failed: {reply}");
    }
    let everyone = arrivals.all.notified();
    if tokio::time::timeout(Duration::from_secs(60), everyone)
        .await
        .is_err()
    {
        let noted = arrivals.taken().len();
        bail!(
            "{} of {subscribers} subscribers never got price {cents}",
            subscribers - noted
        );
    }
    let server_cpu = cpu_time(server)? - cpu_before.0;
    let bench_cpu = cpu_time(std::process::id())? - cpu_before.1;
    let mut latencies = Vec::with_capacity(subscribers);
    for (at, got) in arrivals.taken() {
        if got != cents {
            bail!("a subscriber got price {got}, not {cents}");
        }
        latencies.push(at - sent);
    }
    latencies.sort();
    Ok(Timing {
        server_cpu,
        bench_cpu,
        answered,
        first: latencies[0],
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        max: latencies[subscribers - 1],
    })
}

/// The number in environment variable `name`, or `default` when it is unset.
fn number_from_env(name: &str, default: usize) -> anyhow::Result<usize> {
    std::env::var(name).ok().map_or(Ok(default), |n| {
        n.parse()
            .with_context(|| format!("{name} is not a number: {n}"))
    })
}

/// The server's allocator here too: the readers allocate a buffer for every
/// message they receive.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: the 10,000 clients stand for 10,000 devices, not for a
/// process of this one's; on one thread they cost the machine the least
/// (no thread wakes another), which leaves the server the most of it.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is read from arguments.
    let subscribers = number_from_env("W6_SUBSCRIBERS", 10_000)?;
    let events = number_from_env("W6_EVENTS", 5)?.max(1);
    let bin = std::env::var("COMMERCE_GRAPH_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/commerce-graph").into()
    });
    let secret = format!("w6-benchmark-secret-{}", std::process::id());
    let server = start_server(&bin, &secret, subscribers + 1_000).await?;
    let pid = server.child.id();
    let token = admin_token(&bin, &secret)?;
    let ws_url = format!("{}/graphql", server.url.replacen("http://", "ws://", 1));
    let client = reqwest::Client::new();

    // Warm up: the first connections and events allocate what every later
    // one reuses (runtime workers, the schema's caches, the topic).
    let warm = subscribers_of(&ws_url, OPENING_CONCURRENCY).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(pid)?;

    let opening = Instant::now();
    let sockets = subscribers_of(&ws_url, subscribers).await?;
    let opened_in = opening.elapsed();

    // Each subscriber waits for its event (answering pings meanwhile) and
    // notes when it came. Dropping the set ends them.
    let arrivals = Arc::new(Arrivals::default());
    let mut readers = tokio::task::JoinSet::new();
    for socket in sockets {
        readers.spawn(read_events(socket, arrivals.clone()));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kib(pid)?;
    let per_connection = (idle.saturating_sub(before) as f64 * 1024.0) / subscribers as f64;

    println!("W6: {subscribers} graphql-transport-ws subscribers of productUpdated(id: {PRODUCT})");
    println!(
        "  opened and subscribed in {:.1} s",
        opened_in.as_secs_f64()
    );
    println!(
        "  server RSS: {:.1} MiB before, {:.1} MiB with all idle: {:.1} KiB per idle connection",
        before as f64 / 1024.0,
        idle as f64 / 1024.0,
        per_connection / 1024.0
    );
    let mut worst = Duration::ZERO;
    for event in 0..events {
        let cents = 4242 + event as i64;
        let timing = price_change(
            &client,
            &server.url,
            &token,
            cents,
            subscribers,
            &arrivals,
            pid,
        )
        .await?;
        worst = worst.max(timing.max);
        println!(
            "  event {}: setProductPrice answered in {}; received by all {subscribers}, \
             from the mutation's send: first {}, p50 {}, p99 {}, max {}; CPU: server {} \
             ({:.1} µs per subscriber), benchmark {}",
            event + 1,
            ms(timing.answered),
            ms(timing.first),
            ms(timing.p50),
            ms(timing.p99),
            ms(timing.max),
            ms(timing.server_cpu),
            timing.server_cpu.as_secs_f64() * 1e6 / subscribers as f64,
            ms(timing.bench_cpu),
        );
        tokio::time::sleep(PAUSE).await;
    }
    println!("  slowest subscriber over {events} events: {}", ms(worst));
    Ok(())
}
