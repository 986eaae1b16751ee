//! The load benchmark: GRAPH.md's workloads W1–W5 against the release server
//! on a database seeded at scale 10, side by side with the Apollo Server peer
//! (`../shared/peers/apollo-server/`) and a bare axum handler (the ceiling).
//!
//! `bash benches/run.sh` starts PostgreSQL for the peer and runs this;
//! `cargo bench --bench load` alone measures this server and the ceiling (and
//! the peer when `BENCH_PEER_DATABASE_URL` names its database). It prints a
//! Markdown table and writes it to `target/bench/load.md`.
//!
//! Each workload runs on every target in turn (this server, the peer, round
//! after round), for a fixed time at a fixed concurrency, after a warm-up.
//! The machine is shared and noisy: ratios from one run hold better than the
//! absolute figures. The load generator runs on the same machine (one tokio
//! worker thread), so every target is measured through the same client.
//!
//! Settings (environment): `BENCH_DURATION` seconds per workload and target
//! (10), `BENCH_WARMUP` seconds (2), `BENCH_CONCURRENCY` requests in flight
//! (32), `BENCH_ROUNDS` (1), `BENCH_WORKLOADS` (`W1,W2,W3,W4,W5,W5H`; W5H is W5
//! with every order for one product, a flash sale),
//! `BENCH_DATABASE_URL` (this server's database; default a fresh SQLite file
//! seeded at scale 10), `BENCH_PEER_DATABASE_URL` (the peer's PostgreSQL
//! database, already holding the GRAPH.md tables), `BENCH_OUT`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_graph::auth::JwtKeys;
use serde_json::{json, Value};

const SERVER: &str = env!("CARGO_BIN_EXE_commerce-graph");
const SECRET: &str = "load-benchmark-secret-load-benchmark-secret";
/// Rows at scale 10 (GRAPH.md).
const PRODUCTS: u64 = 10_000;
const CATEGORIES: u64 = 200;
const CUSTOMERS: i64 = 20_000;
/// The product every W5H order buys.
const HOT_PRODUCT: u64 = 7;

const W1: &str =
    "query ProductPage($id: ID!) { product(id: $id) { title price { amount currency } \
    inventory { available warehouse } images(first: 5) { url alt } \
    reviews(first: 10) { rating author { name verified } text } } }";
const W2: &str = "query AllOrders { orders(first: 100) { nodes { id customer { name } items { \
    product { title price { amount currency } } } } } }";
const W3: &str = "query Catalog($c: ID!) { products(first: 20, filter: { categoryId: $c }) { \
    nodes { id title price { amount currency } averageRating inventory { available } } \
    pageInfo { endCursor hasNextPage } } }";
const W5: &str = "mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) { \
    order { id status total { amount currency } } } }";

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--ceiling") {
        let port: u16 = args.next().and_then(|p| p.parse().ok()).expect("a port");
        let body = std::fs::read(args.next().expect("a body file")).expect("the body file");
        return ceiling(port, body);
    }
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let table = runtime.block_on(run(settings));
    println!("{table}");
}

struct Settings {
    duration: Duration,
    warmup: Duration,
    concurrency: usize,
    rounds: usize,
    workloads: Vec<Workload>,
    database_url: Option<String>,
    peer_database_url: Option<String>,
    out: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str, default: u64| {
            var(name).map_or(default, |v| {
                v.parse().unwrap_or_else(|_| panic!("{name}={v}"))
            })
        };
        let workloads = var("BENCH_WORKLOADS").unwrap_or_else(|| "W1,W2,W3,W4,W5,W5H".into());
        Settings {
            duration: Duration::from_secs(number("BENCH_DURATION", 10)),
            warmup: Duration::from_secs(number("BENCH_WARMUP", 2)),
            concurrency: number("BENCH_CONCURRENCY", 32) as usize,
            rounds: number("BENCH_ROUNDS", 1) as usize,
            workloads: workloads
                .split(',')
                .map(|name| Workload::parse(name.trim()))
                .collect(),
            database_url: var("BENCH_DATABASE_URL"),
            peer_database_url: var("BENCH_PEER_DATABASE_URL"),
            out: var("BENCH_OUT").map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/load.md"),
                PathBuf::from,
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Workload {
    W1,
    W2,
    W3,
    W4,
    W5,
    /// W5 with every order for one product: a flash sale, where orders
    /// queue for the same stock rows.
    W5Hot,
}

impl Workload {
    fn parse(name: &str) -> Workload {
        match name {
            "W1" => Workload::W1,
            "W2" => Workload::W2,
            "W3" => Workload::W3,
            "W4" => Workload::W4,
            "W5" => Workload::W5,
            "W5H" => Workload::W5Hot,
            other => panic!("unknown workload {other:?}: W1 to W5, W5H"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Workload::W1 => "W1 product page (POST)",
            Workload::W2 => "W2 100 orders, admin (POST)",
            Workload::W3 => "W3 catalog listing (POST)",
            Workload::W4 => "W4 W3 persisted, GET, cached",
            Workload::W5 => "W5 placeOrder (POST)",
            Workload::W5Hot => "W5H placeOrder, one product (POST)",
        }
    }
}

/// A server under load: this one, the peer or the ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Ours,
    Peer,
    Ceiling,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Ours => "commerce-graph",
            Kind::Peer => "Apollo Server peer",
            Kind::Ceiling => "bare axum (ceiling)",
        }
    }
}

struct Target {
    kind: Kind,
    url: String,
    process: Child,
    /// Bearer tokens: the admin's, and one per customer in a small pool.
    admin: String,
    customers: Vec<String>,
}

impl Drop for Target {
    fn drop(&mut self) {
        // The peer is a process group (its cluster's workers): end them all.
        // `--` first: procps' kill reads `-TERM -PID` as `-TERM -1` (every
        // process this user may signal).
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &format!("-{}", self.process.id())])
            .stdin(Stdio::null())
            .status();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One measurement: a workload on a target.
#[derive(Default, Clone)]
struct Figures {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    statements: u64,
    with_statements: u64,
    peak_rss_kib: u64,
    /// CPU time the server's processes used over the measurement, in
    /// `/proc`'s clock ticks.
    cpu_ticks: u64,
    first_error: Option<String>,
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[rank]) / 1000.0
    }

    /// Milliseconds of the server's CPU per request: on a shared, noisy
    /// machine a steadier measure of its own work than its throughput.
    fn cpu_ms_per_request(&self) -> f64 {
        self.cpu_ticks as f64 * 1000.0 / USER_HZ as f64 / self.requests.max(1) as f64
    }

    fn statements_per_request(&self) -> Option<f64> {
        (self.with_statements > 0).then(|| self.statements as f64 / self.with_statements as f64)
    }

    fn merge(&mut self, other: Figures) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
        self.statements += other.statements;
        self.with_statements += other.with_statements;
        self.peak_rss_kib = self.peak_rss_kib.max(other.peak_rss_kib);
        self.cpu_ticks += other.cpu_ticks;
        self.first_error = self.first_error.take().or(other.first_error);
    }
}

async fn run(settings: Settings) -> String {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(settings.concurrency * 2)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");

    let database_url = match &settings.database_url {
        Some(url) => url.clone(),
        None => {
            let url = format!("sqlite://{}", scratch.path().join("bench.db").display());
            eprintln!("seeding {url} at scale 10");
            let started = Instant::now();
            let status = Command::new(SERVER)
                .args(["seed", "--scale", "10", "--database-url", &url])
                .env("COMMERCE_GRAPH_LOG", "warn")
                .stdin(Stdio::null())
                .status()
                .expect("commerce-graph seed");
            assert!(status.success(), "seeding failed");
            eprintln!("seeded in {:.1} s", started.elapsed().as_secs_f64());
            url
        }
    };
    let ours = start_ours(&client, &database_url).await;
    let peer = match &settings.peer_database_url {
        Some(url) => Some(start_peer(&client, url).await),
        None => {
            eprintln!("BENCH_PEER_DATABASE_URL is not set: the peer is not measured");
            None
        }
    };
    let mut targets = vec![ours];
    targets.extend(peer);

    let mut results: HashMap<(Workload, Kind), Figures> = HashMap::new();
    for round in 0..settings.rounds {
        for &workload in &settings.workloads {
            for target in &targets {
                eprintln!(
                    "round {}: {} on {}",
                    round + 1,
                    workload.describe(),
                    target.kind.label()
                );
                let figures = measure(&client, target, workload, &settings).await;
                results
                    .entry((workload, target.kind))
                    .or_default()
                    .merge(figures);
            }
        }
    }

    // The ceiling: a bare handler answering W4's bytes, measured like W4.
    let mut ceiling_figures = None;
    if settings.workloads.contains(&Workload::W4) {
        let w4_body = client
            .get(w4_url(&targets[0], 1))
            .header("apollo-require-preflight", "true")
            .send()
            .await
            .expect("W4 from this server")
            .bytes()
            .await
            .expect("W4's body");
        let body_file = scratch.path().join("w4.json");
        std::fs::write(&body_file, &w4_body).expect("W4's body on disk");
        let ceiling = start_ceiling(&client, &body_file).await;
        eprintln!("the ceiling: {} bytes like W4", w4_body.len());
        let mut figures = Figures::default();
        for _ in 0..settings.rounds {
            figures.merge(measure(&client, &ceiling, Workload::W4, &settings).await);
        }
        ceiling_figures = Some((figures, w4_body.len()));
    }
    let peer_database = settings.peer_database_url.is_some();
    let table = render(
        &settings,
        &results,
        ceiling_figures.as_ref(),
        &database_url,
        peer_database,
    );
    if let Some(parent) = settings.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&settings.out, &table).expect("the table on disk");
    eprintln!("written to {}", settings.out.display());
    table
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a: SocketAddr| a.port())
        .expect("a free port")
}

/// Waits until `url` answers `{ __typename }`.
async fn wait_ready(client: &reqwest::Client, url: &str, process: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = process.try_wait() {
            panic!("{what} exited before it was ready: {status}");
        }
        let answer = client
            .post(url)
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not answer within 120 s");
}

async fn start_ours(client: &reqwest::Client, database_url: &str) -> Target {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("persisted-queries/workloads.json");
    let common = [
        ("COMMERCE_GRAPH_DATABASE_URL", database_url),
        ("COMMERCE_GRAPH_PROFILE", "production"),
        ("COMMERCE_GRAPH_JWT_SECRET", SECRET),
        ("COMMERCE_GRAPH_LOG", "warn"),
    ];
    let status = Command::new(SERVER)
        .args(["persisted", "import"])
        .arg(&manifest)
        .envs(common)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("commerce-graph persisted import");
    assert!(status.success(), "registering the workloads failed");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut process = Command::new(SERVER)
        .args(["serve", "--listen", &listen])
        .envs(common)
        // Production, but W1–W3 are sent as text as the peer gets them.
        .env("COMMERCE_GRAPH_PERSISTED_QUERIES", "apq")
        .env("COMMERCE_GRAPH_EXPOSE_SQL_STATEMENTS", "true")
        .env("COMMERCE_GRAPH_SEED_ON_START", "false")
        // One load generator is one client: its budget would measure the
        // rate limiter (the peer has none), not the server.
        .env("COMMERCE_GRAPH_RATE_LIMIT", "false")
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("commerce-graph serve");
    let url = format!("http://{listen}/graphql");
    wait_ready(client, &url, &mut process, "commerce-graph").await;
    let keys = JwtKeys::hs256(SECRET.as_bytes());
    let day = Duration::from_secs(86_400);
    Target {
        kind: Kind::Ours,
        url,
        process,
        admin: keys.mint(None, true, day),
        customers: (1..=64)
            .map(|i| keys.mint(Some(i * (CUSTOMERS / 64)), false, day))
            .collect(),
    }
}

async fn start_peer(client: &reqwest::Client, database_url: &str) -> Target {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/apollo-server/run.sh");
    let port = free_port();
    let mut process = Command::new("bash")
        .arg(&script)
        .env("DATABASE_URL", database_url)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("the peer's run.sh");
    let url = format!("http://127.0.0.1:{port}/graphql");
    wait_ready(client, &url, &mut process, "the peer").await;
    Target {
        kind: Kind::Peer,
        url,
        process,
        admin: "admin".into(),
        customers: (1..=64)
            .map(|i| format!("customer:{}", i * (CUSTOMERS / 64)))
            .collect(),
    }
}

async fn start_ceiling(client: &reqwest::Client, body_file: &Path) -> Target {
    let port = free_port();
    let mut process = Command::new(std::env::current_exe().expect("this benchmark"))
        .args(["--ceiling", &port.to_string()])
        .arg(body_file)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("the ceiling server");
    let url = format!("http://127.0.0.1:{port}/graphql");
    wait_ready(client, &url, &mut process, "the ceiling").await;
    Target {
        kind: Kind::Ceiling,
        url,
        process,
        admin: String::new(),
        customers: Vec::new(),
    }
}

/// The ceiling's process: axum answering every request with W4's bytes, on
/// a runtime like the server's (one worker per core).
fn ceiling(port: u16, body: Vec<u8>) {
    use axum::http::header;
    let body = axum::body::Bytes::from(body);
    let handler = move || {
        let body = body.clone();
        async move {
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "public, max-age=60"),
                ],
                body,
            )
        }
    };
    let app = axum::Router::new().route("/graphql", axum::routing::any(handler));
    tokio::runtime::Runtime::new()
        .expect("a tokio runtime")
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("the ceiling's port");
            axum::serve(listener, app).await.expect("serving");
        });
}

fn w4_url(target: &Target, category: u64) -> String {
    let hash = sha256_hex(W3);
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let variables = json!({ "c": category.to_string() });
    let mut url = reqwest::Url::parse(&target.url).expect("a URL");
    url.query_pairs_mut()
        .append_pair("operationName", "Catalog")
        .append_pair("variables", &variables.to_string())
        .append_pair("extensions", &extensions.to_string());
    url.into()
}

fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// A small deterministic generator: every run sends the same requests.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Builds one request of `workload` for `target`.
fn request(
    client: &reqwest::Client,
    target: &Target,
    workload: Workload,
    rng: &mut Rng,
    sequence: u64,
) -> reqwest::RequestBuilder {
    let post = |body: Value| client.post(&target.url).json(&body);
    match workload {
        Workload::W1 => post(json!({
            "query": W1,
            "variables": { "id": (rng.below(PRODUCTS) + 1).to_string() },
        })),
        Workload::W2 => post(json!({ "query": W2 })).bearer_auth(&target.admin),
        Workload::W3 => post(json!({
            "query": W3,
            "variables": { "c": (rng.below(CATEGORIES) + 1).to_string() },
        })),
        Workload::W4 => client
            .get(w4_url(target, rng.below(CATEGORIES) + 1))
            .header("apollo-require-preflight", "true"),
        Workload::W5 | Workload::W5Hot => {
            let customer = &target.customers[rng.below(target.customers.len() as u64) as usize];
            let product = match workload {
                Workload::W5Hot => HOT_PRODUCT,
                _ => rng.below(PRODUCTS) + 1,
            };
            post(json!({
                "query": W5,
                "variables": { "input": {
                    "items": [{ "productId": product.to_string(), "quantity": 1 }],
                    "idempotencyKey": format!("bench-{}-{sequence}", std::process::id()),
                } },
            }))
            .bearer_auth(customer)
        }
    }
}

/// Registers W3's hash with an APQ server that does not know it yet, as
/// Apollo Client does after `PERSISTED_QUERY_NOT_FOUND`.
async fn register_w4(client: &reqwest::Client, target: &Target) {
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(W3) } });
    let _ = client
        .post(&target.url)
        .json(&json!({ "query": W3, "variables": { "c": "1" }, "extensions": extensions }))
        .send()
        .await;
}

/// Gives W5H's product enough stock in its first warehouse that no order of
/// the run is refused for stock.
async fn restock_hot_product(client: &reqwest::Client, target: &Target) {
    let reply: Value = client
        .post(&target.url)
        .bearer_auth(&target.admin)
        .json(&json!({
            "query": "mutation($p: ID!, $w: String!) { adjustInventory(productId: $p, \
                      warehouse: $w, delta: 1000000) { available } }",
            "variables": { "p": HOT_PRODUCT.to_string(), "w": "east" },
        }))
        .send()
        .await
        .expect("restocking W5H's product")
        .json()
        .await
        .expect("a JSON answer to adjustInventory");
    assert!(
        reply["data"]["adjustInventory"]["available"].is_number(),
        "restocking W5H's product: {reply}"
    );
}

/// Runs `workload` on `target`: a warm-up, then the measured period.
async fn measure(
    client: &reqwest::Client,
    target: &Target,
    workload: Workload,
    settings: &Settings,
) -> Figures {
    if workload == Workload::W4 && target.kind != Kind::Ceiling {
        register_w4(client, target).await;
    }
    if workload == Workload::W5Hot {
        restock_hot_product(client, target).await;
    }
    let _ = load(
        client,
        target,
        workload,
        settings.warmup,
        settings.concurrency,
        1,
    )
    .await;
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        let pid = target.process.id();
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(tree_rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let cpu_before = tree_cpu_ticks(target.process.id());
    let mut figures = load(
        client,
        target,
        workload,
        settings.duration,
        settings.concurrency,
        2,
    )
    .await;
    figures.cpu_ticks = tree_cpu_ticks(target.process.id()).saturating_sub(cpu_before);
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    figures.peak_rss_kib = peak.load(Ordering::Relaxed);
    figures
}

/// `concurrency` loops sending requests back to back for `duration`.
async fn load(
    client: &reqwest::Client,
    target: &Target,
    workload: Workload,
    duration: Duration,
    concurrency: usize,
    seed: u64,
) -> Figures {
    // Each call numbers its requests apart from every other call's, so that
    // no idempotency key of W5 or W5H is sent twice by this process.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let started = Instant::now();
    let deadline = started + duration;
    let loops = (0..concurrency).map(|worker| {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (seed << 32) ^ (worker as u64 + 1));
        async move {
            let mut figures = Figures::default();
            let mut sequence = (call << 40) | ((worker as u64) << 24);
            while Instant::now() < deadline {
                sequence += 1;
                let sent = Instant::now();
                let outcome = request(client, target, workload, &mut rng, sequence)
                    .send()
                    .await;
                let statements = outcome.as_ref().ok().and_then(|response| {
                    response
                        .headers()
                        .get("x-sql-statements")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                });
                let problem = match outcome {
                    Ok(response) if response.status().is_success() => {
                        match response.bytes().await {
                            Ok(body) => answer_problem(&body),
                            Err(error) => Some(error.to_string()),
                        }
                    }
                    Ok(response) => Some(format!("HTTP {}", response.status())),
                    Err(error) => Some(error.to_string()),
                };
                figures
                    .latencies_us
                    .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                figures.requests += 1;
                if let Some(problem) = problem {
                    figures.errors += 1;
                    figures.first_error.get_or_insert(problem);
                }
                if let Some(statements) = statements {
                    figures.statements += statements;
                    figures.with_statements += 1;
                }
            }
            figures
        }
    });
    let mut total = Figures::default();
    for figures in futures::future::join_all(loops).await {
        total.merge(figures);
    }
    total.elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    total
}

/// Why an answer does not count as a success: errors, or no data. The body
/// is checked to be JSON throughout, but only its top level is kept: a W2
/// answer has some 2,500 values, and building them all cost the harness
/// more CPU than some servers spend answering (the CPU both share).
fn answer_problem(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        data: Option<HashMap<String, serde::de::IgnoredAny>>,
        errors: Option<Vec<Value>>,
    }
    let Ok(answer) = serde_json::from_slice::<Answer>(body) else {
        return Some("a body that is not JSON with an object or null for data".into());
    };
    if let Some(error) = answer.errors.as_ref().and_then(|e| e.first()) {
        return Some(error.to_string());
    }
    match answer.data {
        Some(_) => None,
        None => Some("no data".into()),
    }
}

/// The resident memory of `pid` and its descendants (the peer's workers).
fn tree_rss_kib(pid: u32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))?;
            line.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// `/proc` counts CPU time in USER_HZ ticks, 100 a second on Linux.
const USER_HZ: u64 = 100;

/// The CPU time (user and system) `pid` and its descendants have used.
fn tree_cpu_ticks(pid: u32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // utime and stime.
            Some(stat_field(&stat, 14)? + stat_field(&stat, 15)?)
        })
        .sum()
}

/// Field `number` of a `/proc/PID/stat` line, counted from 1 as proc(5)
/// does: "pid (comm) state ppid …". The comm may hold spaces, so the fields
/// are counted after its closing parenthesis, from the state (field 3).
fn stat_field(stat: &str, number: usize) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace()
        .nth(number.checked_sub(3)?)?
        .parse()
        .ok()
}

/// `pid` and its descendants.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // The parent's pid (ppid).
            let parent = stat_field(&stat, 4).and_then(|p| u32::try_from(p).ok());
            if let Some(parent) = parent {
                children.entry(parent).or_default().push(child);
            }
        }
    }
    let mut tree = Vec::new();
    let mut stack = vec![pid];
    while let Some(pid) = stack.pop() {
        tree.push(pid);
        stack.extend(children.get(&pid).into_iter().flatten());
    }
    tree
}

fn render(
    settings: &Settings,
    results: &HashMap<(Workload, Kind), Figures>,
    ceiling: Option<&(Figures, usize)>,
    database_url: &str,
    peer: bool,
) -> String {
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let backend = if database_url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let _ = writeln!(
        out,
        "Load benchmark: {}s per workload and server after a {}s warm-up, {} requests in \
         flight, {} round(s), {} cores shared by the servers and the load generator.\n\
         commerce-graph on {backend} (scale 10){}.\n",
        settings.duration.as_secs(),
        settings.warmup.as_secs(),
        settings.concurrency,
        settings.rounds,
        cores,
        if peer {
            "; the peer on PostgreSQL (scale 10)"
        } else {
            "; the peer was not run"
        },
    );
    let _ = writeln!(
        out,
        "| workload | server | req/s | p50 ms | p99 ms | errors | SQL/req | CPU ms/req | \
         peak RSS MiB | throughput ×peer | p99 ÷peer |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for &workload in &settings.workloads {
        let peer_figures = results.get(&(workload, Kind::Peer));
        for kind in [Kind::Ours, Kind::Peer] {
            let Some(figures) = results.get(&(workload, kind)) else {
                continue;
            };
            let (ratio, p99_ratio) = match (kind, peer_figures) {
                (Kind::Ours, Some(peer)) => (
                    format!("{:.1}×", figures.rps() / peer.rps()),
                    format!(
                        "{:.2}",
                        figures.percentile_ms(0.99) / peer.percentile_ms(0.99)
                    ),
                ),
                _ => ("".into(), "".into()),
            };
            row(
                &mut out,
                workload.describe(),
                kind,
                figures,
                &ratio,
                &p99_ratio,
            );
        }
    }
    if let Some((figures, bytes)) = ceiling {
        let w4 = results.get(&(Workload::W4, Kind::Ours));
        let share = w4.map_or(String::new(), |w4| {
            format!("W4 at {:.0}%", 100.0 * w4.rps() / figures.rps())
        });
        row(
            &mut out,
            &format!("ceiling: {bytes} bytes, GET"),
            Kind::Ceiling,
            figures,
            &share,
            "",
        );
    }
    for ((workload, kind), figures) in results {
        if let Some(error) = &figures.first_error {
            let _ = writeln!(
                out,
                "\n{} on {}: {} errors; the first: {}",
                workload.describe(),
                kind.label(),
                figures.errors,
                error.chars().take(300).collect::<String>()
            );
        }
    }
    out
}

fn row(out: &mut String, what: &str, kind: Kind, figures: &Figures, ratio: &str, p99: &str) {
    let statements = figures
        .statements_per_request()
        .map_or("–".to_string(), |s| format!("{s:.2}"));
    let _ = writeln!(
        out,
        "| {what} | {} | {:.0} | {:.2} | {:.2} | {} | {statements} | {:.3} | {:.0} | {ratio} | \
         {p99} |",
        kind.label(),
        figures.rps(),
        figures.percentile_ms(0.50),
        figures.percentile_ms(0.99),
        figures.errors,
        figures.cpu_ms_per_request(),
        figures.peak_rss_kib as f64 / 1024.0,
    );
}
