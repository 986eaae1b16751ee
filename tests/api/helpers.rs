//! Spawns the real server on a random port with its own seeded database, and
//! talks to it over HTTP like a client.
//!
//! The database is SQLite (a copy of a seeded file) unless
//! `COMMERCE_GRAPH_TEST_DATABASE_URL` names a PostgreSQL server
//! (`postgres://user:password@host:port/postgres`, a role that may create
//! databases): then each test gets a database of its own, created from a
//! seeded template and dropped when the test ends, so tests stay parallel and
//! isolated. A test that cannot reach that server fails; it never falls back
//! to SQLite.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use commerce_graph::auth::JwtKeys;
use commerce_graph::config::{Config, LogFormat, Profile, Settings};
use commerce_graph::http::AppState;
use commerce_graph::server::prepare_store;
use commerce_graph::store::{seed, PoolSettings, Store};
use serde_json::{json, Value};

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef";
pub const ALLOWED_ORIGIN: &str = "https://shop.example";

pub struct TestApp {
    pub url: String,
    /// The running server's state, for tests that reach below HTTP.
    pub state: AppState,
    pub client: reqwest::Client,
    jwt: JwtKeys,
    /// The test's database, removed when the first server ends (a replica
    /// started by [`TestApp::replica`] shares it and holds none).
    _database: Option<TestDatabase>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<bool>>>,
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
        let database = TestDatabase::seeded().await;
        let url = database.url().to_string();
        TestApp::spawn_on(url, Some(database), configure).await
    }

    /// A second server on this one's database, as a second replica behind a
    /// load balancer would be (it must end before this one).
    pub async fn replica(&self) -> TestApp {
        TestApp::spawn_on(self.state.config.database_url.clone(), None, |_| {}).await
    }

    async fn spawn_on(
        database_url: String,
        database: Option<TestDatabase>,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        // Every setting not named here keeps its development default, so a new
        // setting needs no change here.
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url,
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
        let state = AppState::start(config, store).await.unwrap();
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
            _database: database,
        }
    }

    /// Takes the database away from under the running server: the SQLite
    /// file is removed, or the PostgreSQL database dropped (its connections
    /// ended).
    pub async fn lose_database(&self) {
        if let Some(TestDatabase::Postgres {
            admin_url, name, ..
        }) = &self._database
        {
            let mut admin = admin_connection(admin_url).await;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
            return;
        }
        let path = self
            .state
            .config
            .database_url
            .trim_start_matches("sqlite://")
            .to_string();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }

    /// Runs `sql` on the server's database, as an operator at a SQL prompt.
    pub async fn execute_sql(&self, sql: &str) {
        use sqlx::Connection as _;
        let mut connection = sqlx::AnyConnection::connect(&self.state.config.database_url)
            .await
            .unwrap();
        sqlx::query(sql).execute(&mut connection).await.unwrap();
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

    /// `/health/ready`'s status and body.
    pub async fn readiness(&self) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}/health/ready", self.url))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
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

/// The environment variable that puts the tests on PostgreSQL.
pub const POSTGRES_URL_VARIABLE: &str = "COMMERCE_GRAPH_TEST_DATABASE_URL";

/// A database of one test's own, removed when the test ends.
pub enum TestDatabase {
    Sqlite {
        url: String,
        _dir: tempfile::TempDir,
    },
    Postgres {
        url: String,
        /// The server's maintenance database, where this one is dropped from.
        admin_url: String,
        name: String,
    },
}

/// Unique database names within this process (the pid makes them unique
/// across processes).
static DATABASE_COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl TestDatabase {
    /// Whether the tests run on PostgreSQL.
    pub fn postgres_url() -> Option<String> {
        std::env::var(POSTGRES_URL_VARIABLE)
            .ok()
            .filter(|url| !url.is_empty())
    }

    /// A copy of the scale-1 demo data.
    pub async fn seeded() -> TestDatabase {
        match TestDatabase::postgres_url() {
            None => {
                let dir = tempfile::tempdir().unwrap();
                let db = dir.path().join("commerce.db");
                std::fs::copy(template_database().await, &db).unwrap();
                TestDatabase::Sqlite {
                    url: format!("sqlite://{}", db.display()),
                    _dir: dir,
                }
            }
            Some(admin_url) => {
                let template = postgres_template(&admin_url).await;
                TestDatabase::create_postgres(admin_url, Some(&template)).await
            }
        }
    }

    /// A database with nothing in it (not even the tables).
    pub async fn empty() -> TestDatabase {
        match TestDatabase::postgres_url() {
            None => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/nested/commerce.db", dir.path().display());
                TestDatabase::Sqlite { url, _dir: dir }
            }
            Some(admin_url) => TestDatabase::create_postgres(admin_url, None).await,
        }
    }

    /// [`TestDatabase::empty`] for tests without a runtime.
    pub fn empty_blocking() -> TestDatabase {
        block_on_thread(TestDatabase::empty())
    }

    pub fn url(&self) -> &str {
        match self {
            TestDatabase::Sqlite { url, .. } | TestDatabase::Postgres { url, .. } => url,
        }
    }

    async fn create_postgres(admin_url: String, template: Option<&str>) -> TestDatabase {
        let name = format!(
            "cg_test_{}_{}_{}",
            std::process::id(),
            DATABASE_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let statement = match template {
            Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
            None => format!("CREATE DATABASE {name}"),
        };
        let mut admin = admin_connection(&admin_url).await;
        sqlx::query(&statement)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        TestDatabase::Postgres {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres {
            admin_url, name, ..
        } = self
        {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // FORCE ends the connections the test's server still holds.
            let dropped = block_on_thread(async move {
                let mut admin = admin_connection(&admin_url).await;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("dropping {name}: {e}"))
            });
            if let Err(error) = dropped {
                eprintln!("{error}");
            }
        }
    }
}

/// Runs `future` to completion on a runtime of its own, on a thread of its
/// own (from a `Drop`, or a test without a runtime).
fn block_on_thread<T: Send + 'static>(
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    })
    .join()
    .unwrap()
}

async fn admin_connection(admin_url: &str) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!("{POSTGRES_URL_VARIABLE} is set but PostgreSQL cannot be reached: {e}")
        })
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let authority_start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (base, query) = match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let host_end = base[authority_start..]
        .find('/')
        .map(|i| authority_start + i)
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..host_end])
}

/// A hash of what the seeded data depends on: the backend's migrations and
/// the seed code.
fn seed_inputs_hash(migrations: &str) -> u64 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(root.join("migrations").join(migrations))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    inputs.push(root.join("src/store/seed.rs"));
    for path in inputs {
        std::fs::read(&path).unwrap().hash(&mut hasher);
    }
    hasher.finish()
}

/// The seeded template database on PostgreSQL, built once per change of
/// migrations or seed code. An advisory lock makes concurrent tests (and test
/// processes) wait for the one that builds it.
async fn postgres_template(admin_url: &str) -> String {
    const TEMPLATE_LOCK: i64 = 0x00C0_FFEE_5EED;
    let template = format!("cg_template_{:016x}", seed_inputs_hash("postgres"));
    let mut admin = admin_connection(admin_url).await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(TEMPLATE_LOCK)
        .execute(&mut admin)
        .await
        .unwrap();
    let (exists,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(&template)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    if exists == 0 {
        let building = format!("{template}_building");
        for statement in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            sqlx::query(&statement).execute(&mut admin).await.unwrap();
        }
        let store = Store::connect(
            &with_database(admin_url, &building),
            &PoolSettings::with_max_connections(1),
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        seed::seed(&store, 1).await.unwrap();
        store.close().await;
        // The builder's connection may take a moment to end on the server
        // (on a loaded machine, longer): it is ended, then waited for.
        let rename = format!("ALTER DATABASE {building} RENAME TO {template}");
        let mut attempts = 0;
        while let Err(error) = sqlx::query(&rename).execute(&mut admin).await {
            attempts += 1;
            assert!(attempts < 120, "{rename}: {error}");
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&building)
            .execute(&mut admin)
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(TEMPLATE_LOCK)
        .execute(&mut admin)
        .await
        .unwrap();
    template
}

/// A scale-1 seeded SQLite database, built once per change of migrations or
/// seed code and copied for each test (seeding takes longer than a test).
async fn template_database() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-databases");
    std::fs::create_dir_all(&dir).unwrap();
    let template = dir.join(format!("scale1-{:016x}.db", seed_inputs_hash("sqlite")));
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
    let store = Store::connect(
        &format!("sqlite://{}", building.display()),
        &PoolSettings::with_max_connections(1),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    seed::seed(&store, 1).await.unwrap();
    store.checkpoint().await.unwrap();
    store.close().await;
    std::fs::rename(&building, &template).unwrap();
    template
}
