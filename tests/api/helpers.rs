//! Spawns the real server on a random port with its own seeded SQLite
//! database, and talks to it over HTTP like a client.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use commerce_graph::auth::JwtKeys;
use commerce_graph::config::{Config, LogFormat, Profile, Settings};
use commerce_graph::http::AppState;
use commerce_graph::server::prepare_store;
use commerce_graph::store::{seed, Store};
use serde_json::{json, Value};

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef";
pub const ALLOWED_ORIGIN: &str = "https://shop.example";

pub struct TestApp {
    pub url: String,
    /// The running server's state, for tests that reach below HTTP.
    pub state: AppState,
    pub client: reqwest::Client,
    jwt: JwtKeys,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// A GraphQL response as a client sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// SQL statements the request ran (the `x-sql-statements` header).
    pub fn statements(&self) -> usize {
        self.headers["x-sql-statements"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The `extensions.code` of every error, in order.
    pub fn error_codes(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Panics with the body if the response has errors.
    pub fn data(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {:#}",
            self.body
        );
        &self.body["data"]
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("commerce.db");
        copy_database(&template_database().await, &db);
        // Every setting not named here keeps its development default, so a new
        // setting needs no change here.
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: format!("sqlite://{}", db.display()),
            profile: Profile::Development,
            jwt_secret: Some(JWT_SECRET.into()),
            jwt_secret_is_default: false,
            db_max_connections: 4,
            max_body_bytes: 64 * 1024,
            cors_origins: vec![ALLOWED_ORIGIN.into()],
            graphiql: true,
            seed_on_start: false,
            log_format: LogFormat::Text,
            expose_sql_statements: true,
            ..Config::resolve(&Settings::default()).unwrap()
        };
        configure(&mut config);
        let store = prepare_store(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(config, store).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(commerce_graph::server::run(
            listener,
            state.clone(),
            async move {
                // A dropped TestApp leaves the server running to the end
                // of the test, as before.
                if stopped.await.is_err() {
                    std::future::pending::<()>().await;
                }
            },
        ));
        TestApp {
            url,
            state,
            stop: Some(stop),
            served: Some(served),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            jwt: JwtKeys::hs256(JWT_SECRET.as_bytes()),
            _dir: dir,
        }
    }

    /// Shuts the server down as SIGTERM does, and waits until it stopped.
    pub async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            tokio::time::timeout(Duration::from_secs(20), served)
                .await
                .expect("the server stops within 20 s")
                .expect("the server task did not panic")
                .expect("the server stopped cleanly");
        }
    }

    pub fn admin_token(&self) -> String {
        self.jwt.mint(None, true, Duration::from_secs(600))
    }

    pub fn customer_token(&self, customer_id: i64) -> String {
        self.jwt
            .mint(Some(customer_id), false, Duration::from_secs(600))
    }

    pub fn graphql_url(&self) -> String {
        format!("{}/graphql", self.url)
    }

    /// A GET of `/graphql` as a client of this server sends it: with the
    /// header that passes CSRF prevention.
    pub fn get_graphql(&self) -> reqwest::RequestBuilder {
        self.client
            .get(self.graphql_url())
            .header("x-graphql-csrf", "1")
    }

    /// POSTs a query as JSON, with an optional bearer token.
    pub async fn query(&self, query: &str, variables: Value, token: Option<&str>) -> Reply {
        let mut request = self
            .client
            .post(self.graphql_url())
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Reply::from(request.send().await.unwrap()).await
    }
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// A scale-1 seeded database, built once per change of migrations or seed code
/// and copied for each test (seeding takes longer than a test).
async fn template_database() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(root.join("migrations/sqlite"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    inputs.push(root.join("src/store/seed.rs"));
    for path in inputs {
        std::fs::read(&path).unwrap().hash(&mut hasher);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-databases");
    std::fs::create_dir_all(&dir).unwrap();
    let template = dir.join(format!("scale1-{:016x}.db", hasher.finish()));
    if template.exists() {
        return template;
    }
    // Build under a unique name and rename: concurrent test processes may both
    // build it, and each rename leaves a complete file.
    let building = dir.join(format!(
        "building-{}-{:?}.db",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&building);
    let store = Store::connect(&format!("sqlite://{}", building.display()), 1)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    seed::seed(&store, 1).await.unwrap();
    store.checkpoint().await.unwrap();
    store.close().await;
    std::fs::rename(&building, &template).unwrap();
    template
}

fn copy_database(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
}
