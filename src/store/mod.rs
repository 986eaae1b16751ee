//! The store: every SQL statement the server runs lives under this module.
//!
//! Resolvers never build SQL; they ask the request's DataLoader, which calls the
//! functions here, one statement per batch. The SQL is written to run unchanged on
//! SQLite (the embedded default) and PostgreSQL: `$n` placeholders, row-value
//! comparisons for keyset pagination, window functions for per-parent lists.
//! Where the engines cannot share a statement (SQLite's pragmas, PostgreSQL's
//! row locks and sequences), the code branches on [`Backend`] here, never above.
//! Each [`Store`] handle counts the statements it executes, so a request's cost in
//! round trips is observable (the `x-sql-statements` header and the tests).

pub mod batch;
mod catalog;
mod customers;
pub mod health;
pub mod notices;
mod orders;
mod persisted;
mod rows;
pub mod seed;
mod sql;
pub mod tags;
mod writes;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Connection, Encode, Executor, FromRow, Type};

pub use catalog::{ProductFilter, ProductPage, ProductSort, SortValue};
pub use orders::OrderPage;
pub use rows::*;
pub use sql::Sql;
pub use writes::{allowed_predecessors, request_hash, NewOrderLine, Placed, WriteError};

/// Bound parameters per statement for `IN (…)` lists: far below SQLite's limit
/// (32,766) and PostgreSQL's (65,535), large enough that a DataLoader batch
/// (at most 1,000 keys) is always one statement.
pub const MAX_IDS_PER_STATEMENT: usize = 1000;

/// Which database engine a URL points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Config(format!(
                "unsupported database URL scheme in {:?}: use sqlite://PATH or postgres://…",
                redact_url(url)
            )))
        }
    }
}

/// A failure below the GraphQL layer. Its text is for logs, never for clients:
/// the graph layer turns it into `INTERNAL_SERVER_ERROR` without details.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The database is known to be down (see [`health`]): nothing was sent.
    #[error("the database is unavailable")]
    Unavailable,
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("row {table}#{id}: {problem}")]
    Corrupt {
        table: &'static str,
        id: i64,
        problem: String,
    },
}

impl StoreError {
    /// Whether the failure is the database's absence (down, or no
    /// connection free in time), which a client may retry later, rather
    /// than a fault of the request or of the server.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable => true,
            StoreError::Database(e) => {
                health::is_connection_failure(e) || matches!(e, sqlx::Error::PoolTimedOut)
            }
            _ => false,
        }
    }
}

/// How long a connection that answered its release ping is handed out
/// without being pinged again (see [`Store::connect`]).
const TRUSTED_IDLE: Duration = Duration::from_secs(1);

/// How the pool opens and uses connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections open at most.
    pub max_connections: u32,
    /// Longest wait for a connection, opening a new one included.
    pub connect_timeout: Duration,
    /// Longest one statement may run (PostgreSQL's `statement_timeout`;
    /// SQLite has no such setting).
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

impl PoolSettings {
    /// The defaults with `max_connections` connections (tools and tests).
    pub fn with_max_connections(max_connections: u32) -> Self {
        PoolSettings {
            max_connections,
            ..Default::default()
        }
    }
}

/// A handle on the database. Cheap to clone; clones share the pool and the
/// statement counter, [`Store::scoped`] makes a handle with a fresh counter.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    statements: Arc<AtomicUsize>,
    tags: tags::TagLog,
    committed: notices::CommittedEvents,
    health: health::Health,
}

impl Store {
    /// Opens a pool on `url`. For SQLite the file (and its folder) is created if
    /// missing, and every connection runs in WAL mode with a busy timeout so that
    /// concurrent readers never see `database is locked`. On PostgreSQL every
    /// connection gets the configured statement timeout.
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let statement_timeout_ms = settings.statement_timeout.as_millis().max(1);
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.connect_timeout)
            // sqlx pings a connection when it comes back to the pool, and by
            // default again when it is taken out: a round trip per statement
            // outside a transaction. One that answered its release ping a
            // moment ago is trusted; one idle for longer (a database restart
            // may have cut it) is pinged, and replaced if it does not answer.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < TRUSTED_IDLE {
                        return Ok(true);
                    }
                    conn.ping().await?;
                    Ok(true)
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                        }
                        Backend::Postgres => {
                            // A number, not a bound parameter: SET takes none.
                            conn.execute(
                                format!("SET statement_timeout = {statement_timeout_ms}").as_str(),
                            )
                            .await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url);
        // Opening the first connection is bounded too: an unreachable server
        // fails the start instead of hanging it.
        let pool = tokio::time::timeout(settings.connect_timeout, pool)
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        Ok(Store {
            pool,
            backend,
            statements: Arc::new(AtomicUsize::new(0)),
            tags: Default::default(),
            committed: Default::default(),
            health: Default::default(),
        })
    }

    /// A handle on the same pool whose statement counter starts at zero: one per
    /// GraphQL request.
    pub fn scoped(&self) -> Store {
        Store {
            pool: self.pool.clone(),
            backend: self.backend,
            statements: Arc::new(AtomicUsize::new(0)),
            tags: Default::default(),
            committed: Default::default(),
            health: self.health.clone(),
        }
    }

    /// What this handle (a request's) read and wrote, as cache tags.
    pub fn tags(&self) -> &tags::TagLog {
        &self.tags
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many SQL statements this handle (and its clones) has executed.
    pub fn statements(&self) -> usize {
        self.statements.load(Ordering::Relaxed)
    }

    /// Applies the migrations that have not run yet. On PostgreSQL sqlx
    /// takes an advisory lock first: replicas starting at once migrate one
    /// after the other.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// Whether the catalog has no products yet (a fresh database to seed).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let row: (i64,) = self
            .fetch_one(Sql::new(
                "SELECT COUNT(*) FROM (SELECT id FROM products LIMIT 1) AS t",
            ))
            .await?;
        Ok(row.0 == 0)
    }

    /// Whether the database is known to be down (see [`health`]).
    pub fn is_down(&self) -> bool {
        self.health.is_down()
    }

    /// Starts probing the PostgreSQL database at `url` (nothing on SQLite):
    /// from then on an outage makes store calls fail at once.
    pub fn probe_health(&self, url: &str) {
        if self.backend == Backend::Postgres {
            self.health.spawn_probe(url.to_string());
        }
    }

    /// Runs a database call unless the database is known to be down, and
    /// gives up on it if the database goes down meanwhile (a call waiting
    /// for a connection would otherwise wait the whole connect timeout).
    async fn guarded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        if self.health.is_down() {
            return Err(StoreError::Unavailable);
        }
        tokio::select! {
            result = call => result.map_err(|error| {
                self.health.observe(&error);
                StoreError::Database(error)
            }),
            () = self.health.went_down() => Err(StoreError::Unavailable),
        }
    }

    /// Opens a transaction (see [`Store::guarded`]).
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        self.guarded(self.pool.begin()).await
    }

    /// Opens a transaction that will write whatever it reads first: on
    /// SQLite it takes the write lock at once (`BEGIN IMMEDIATE`, waiting
    /// out the busy timeout), so that a read before its first write cannot
    /// leave it unable to write; PostgreSQL's rows lock as they are written.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => self.guarded(self.pool.begin_with("BEGIN IMMEDIATE")).await,
            Backend::Postgres => self.begin().await,
        }
    }

    /// Runs a trivial statement: the readiness probe.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: (i64,) = self.fetch_one(Sql::new("SELECT 1")).await?;
        Ok(())
    }

    /// The migrations this binary embeds that the database has not applied
    /// (successfully): the readiness probe's second question.
    pub async fn missing_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<(i64,)> = self
            .fetch_all(Sql::new(
                "SELECT version FROM _sqlx_migrations WHERE success = TRUE",
            ))
            .await?;
        Ok(self
            .migrator()
            .iter()
            .map(|migration| migration.version)
            .filter(|version| !applied.iter().any(|(applied,)| applied == version))
            .collect())
    }

    fn migrator(&self) -> sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        }
    }

    /// Writes SQLite's write-ahead log back into the main file, so that the
    /// file alone is a complete copy of the database (tests copy it).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    fn count_statement(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        batch::note_statement();
    }

    pub(crate) async fn fetch_all<T>(&self, sql: Sql) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        self.count_statement();
        let (text, args) = sql.finish();
        self.guarded(sqlx::query_as_with(&text, args).fetch_all(&self.pool))
            .await
    }

    /// The rows of one statement per [`MAX_IDS_PER_STATEMENT`] of `keys`, in
    /// order. `statement` writes each one's text around its `IN (…)` list,
    /// whose placeholders (`$1, $2, …`) are bound first; it may bind more.
    pub(crate) async fn fetch_in_chunks<K, T>(
        &self,
        keys: &[K],
        statement: impl Fn(&mut Sql, &str),
    ) -> Result<Vec<T>, StoreError>
    where
        K: Clone + Encode<'static, Any> + Type<Any> + Send + 'static,
        T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_IDS_PER_STATEMENT) {
            let mut sql = Sql::new("");
            let list = sql.bind_list(chunk);
            statement(&mut sql, &list);
            out.extend(self.fetch_all(sql).await?);
        }
        Ok(out)
    }

    pub(crate) async fn fetch_one<T>(&self, sql: Sql) -> Result<T, StoreError>
    where
        T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        self.count_statement();
        let (text, args) = sql.finish();
        self.guarded(sqlx::query_as_with(&text, args).fetch_one(&self.pool))
            .await
    }
}

/// Makes sure the SQLite file can be created: its folder exists and the URL asks
/// for read-write-create mode.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Config(
            "an in-memory SQLite database is not shared between connections: give a file path"
                .into(),
        ));
    }
    if let Some(parent) = Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
    }
    let query = if query.split('&').any(|p| p.starts_with("mode=")) {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// The URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Current time as stored in timestamp columns: RFC 3339, UTC, milliseconds.
pub fn now_timestamp() -> String {
    format_timestamp(chrono::Utc::now())
}

pub fn format_timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_url_gets_create_mode_and_keeps_other_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/db.sqlite");
        let url = format!("sqlite://{}", path.display());
        assert_eq!(
            prepare_sqlite_url(&url).unwrap(),
            format!("sqlite://{}?mode=rwc", path.display())
        );
        assert!(path.parent().unwrap().is_dir());
        let url = format!("sqlite://{}?mode=ro", path.display());
        assert!(prepare_sqlite_url(&url).unwrap().ends_with("?mode=ro"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:secret@db:5432/commerce"),
            "postgres://app:***@db:5432/commerce"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[tokio::test]
    async fn a_database_that_never_answers_fails_the_connect_after_its_timeout() {
        // Accepts TCP connections (the kernel's backlog) and never speaks.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("postgres://x:y@{}/commerce", silent.local_addr().unwrap());
        let settings = PoolSettings {
            connect_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        assert!(Store::connect(&url, &settings).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    /// On PostgreSQL (when the tests run there): the statement timeout is
    /// every connection's `statement_timeout`.
    #[tokio::test]
    async fn postgres_cancels_a_statement_past_the_statement_timeout() {
        let Ok(url) = std::env::var("COMMERCE_GRAPH_TEST_DATABASE_URL") else {
            return;
        };
        let settings = PoolSettings {
            statement_timeout: Duration::from_millis(200),
            ..PoolSettings::with_max_connections(1)
        };
        let store = Store::connect(&url, &settings).await.unwrap();
        let slow: Result<(i32,), _> = store
            .fetch_one(Sql::new("SELECT 1 FROM (SELECT pg_sleep(3)) AS t"))
            .await;
        match slow {
            Err(StoreError::Database(sqlx::Error::Database(e))) => {
                // query_canceled
                assert_eq!(e.code().as_deref(), Some("57014"), "{e}");
            }
            other => panic!("not cancelled: {other:?}"),
        }
        let quick: (i32,) = store.fetch_one(Sql::new("SELECT 1")).await.unwrap();
        assert_eq!(quick.0, 1);
    }

    #[tokio::test]
    async fn a_list_longer_than_one_statement_takes_is_read_in_statements_of_its_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/chunks.db", dir.path().display());
        let store = Store::connect(&url, &PoolSettings::with_max_connections(1))
            .await
            .unwrap();
        let numbers = "WITH RECURSIVE n(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM n \
                       WHERE id < 3000) SELECT id FROM n";
        let ids: Vec<i64> = (1..=2 * MAX_IDS_PER_STATEMENT as i64 + 1).collect();
        let before = store.statements();
        let rows: Vec<(i64, i64)> = store
            .fetch_in_chunks(&ids, |sql, list| {
                let doubled = sql.bind(2_i64);
                sql.push(&format!(
                    "SELECT id, id * {doubled} FROM ({numbers}) AS t WHERE id IN ({list}) \
                     ORDER BY id"
                ));
            })
            .await
            .unwrap();
        assert_eq!(store.statements() - before, 3);
        let expected: Vec<(i64, i64)> = ids.iter().map(|&id| (id, 2 * id)).collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn unknown_schemes_are_refused() {
        assert!(Backend::from_url("mysql://x").is_err());
        assert_eq!(Backend::from_url("sqlite://x").unwrap(), Backend::Sqlite);
    }
}
