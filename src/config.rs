//! Configuration, from (lowest to highest precedence) built-in defaults, an
//! optional TOML file (`--config`), `COMMERCE_GRAPH_*` environment variables
//! and command-line flags. The defaults run on a laptop: listen on
//! 127.0.0.1:4000, SQLite under `./data/`, seed an empty database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::graph::{Introspection, Posture};
use crate::limits::rate::{RateLimits, TierLimits};
use crate::limits::{Limit, LimitSet, Limits, MOST_VARIABLES_DEPTH};
use crate::persisted::PersistedMode;
use crate::store::PoolSettings;

/// The JWT secret used when none is configured, in development only.
pub const DEVELOPMENT_JWT_SECRET: &str = "commerce-graph-development-secret-not-for-production";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Readable logs, GraphiQL on, a development JWT secret if none is given,
    /// the demo data seeded into an empty database.
    Development,
    /// JSON logs, GraphiQL off unless enabled, a JWT secret required, nothing
    /// seeded.
    Production,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings every subcommand shares. Each flag also reads its environment
/// variable; each can also be set in the `--config` file (same names, with
/// underscores: `database_url = "…"`).
#[derive(Args, Debug, Default, Clone)]
pub struct Settings {
    /// TOML file with settings (flags and environment variables override it).
    #[arg(
        long,
        global = true,
        env = "COMMERCE_GRAPH_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:4000].
    #[arg(
        long,
        global = true,
        env = "COMMERCE_GRAPH_LISTEN",
        value_name = "ADDR"
    )]
    pub listen: Option<SocketAddr>,

    /// sqlite://PATH or postgres://… [default: sqlite://data/commerce.db].
    #[arg(
        long,
        global = true,
        env = "COMMERCE_GRAPH_DATABASE_URL",
        value_name = "URL"
    )]
    pub database_url: Option<String>,

    /// development or production [default: development].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_PROFILE")]
    pub profile: Option<Profile>,

    /// HS256 secret for bearer tokens (production needs it, a public key or a
    /// JWKS file).
    #[arg(
        long,
        global = true,
        env = "COMMERCE_GRAPH_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA for RS256, P-256 EC for ES256) that checks tokens.
    #[arg(
        long,
        global = true,
        env = "COMMERCE_GRAPH_JWT_PUBLIC_KEY",
        value_name = "FILE"
    )]
    pub jwt_public_key: Option<PathBuf>,

    /// JWKS file whose RS256/ES256 keys check tokens (by `kid`).
    #[arg(
        long,
        global = true,
        env = "COMMERCE_GRAPH_JWT_JWKS_FILE",
        value_name = "FILE"
    )]
    pub jwt_jwks_file: Option<PathBuf>,

    /// Database connections in the pool [default: 16].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,

    /// Longest wait for a database connection, opening one included, e.g.
    /// 5s [default: 10s].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_DB_CONNECT_TIMEOUT", value_parser = parse_duration)]
    pub db_connect_timeout: Option<Duration>,

    /// Longest one SQL statement may run on PostgreSQL before the database
    /// cancels it, e.g. 5s [default: 5s].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_DB_STATEMENT_TIMEOUT", value_parser = parse_duration)]
    pub db_statement_timeout: Option<Duration>,

    /// Largest request body accepted, in bytes [default: 1048576].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Origins allowed to call the API from browsers, comma-separated, or `*`
    /// [default: none: same origin only].
    #[arg(
        long,
        global = true,
        env = "COMMERCE_GRAPH_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Option<Vec<String>>,

    /// Serve GraphiQL at GET /graphql to browsers [default: on in development].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_GRAPHIQL")]
    pub graphiql: Option<bool>,

    /// Which documents run: off, apq (any document, APQ and registered ids),
    /// audit (as apq, logging what is not registered) or safelist
    /// (registered documents only) [default: apq in development, safelist in
    /// production].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_PERSISTED_QUERIES")]
    pub persisted_queries: Option<PersistedMode>,

    /// Longest `max-age` any response may carry, in seconds, whatever its
    /// fields' hints say [default: none].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_CACHE_AGE")]
    pub max_cache_age: Option<u32>,

    /// Memory for the in-process cache of public answers, in bytes; 0 turns
    /// it off [default: 67108864].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_RESPONSE_CACHE_BYTES")]
    pub response_cache_bytes: Option<u64>,

    /// How long the in-process cache may keep a public answer that no write
    /// has changed, in all, when that is longer than its `max-age` (writes
    /// purge what they change); it bounds how long a change made straight
    /// in the database can go unseen. 0 or off keeps each answer for its
    /// `max-age` only [default: 60s].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_RESPONSE_CACHE_HOLD", value_parser = parse_window)]
    pub response_cache_hold: Option<Duration>,

    /// How long past its `max-age` a public answer may still be served
    /// while the database is unavailable (the in-process cache, and
    /// `stale-if-error` in `Cache-Control` for CDNs), e.g. 5m; 0 or off
    /// turns it off [default: off].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_STALE_IF_ERROR", value_parser = parse_window)]
    pub stale_if_error: Option<Duration>,

    /// Seed the demo data into an empty database when serving
    /// [default: on in development].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_SEED_ON_START")]
    pub seed_on_start: Option<bool>,

    /// Log as text or json [default: text in development, json in production].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Deepest nesting of fields a query may have [default: 12].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_DEPTH")]
    pub max_depth: Option<usize>,

    /// Most field selections in an operation, fragments counted per use
    /// [default: 1000].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_FIELDS")]
    pub max_fields: Option<usize>,

    /// Most aliased fields in an operation, fragments counted per use
    /// [default: 30].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_ALIASES")]
    pub max_aliases: Option<usize>,

    /// Most fields at the root of an operation [default: 20].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_ROOT_FIELDS")]
    pub max_root_fields: Option<usize>,

    /// Most directives on one field or fragment [default: 10].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_DIRECTIVES")]
    pub max_directives: Option<usize>,

    /// Largest query document, in bytes [default: 32768].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_DOCUMENT_BYTES")]
    pub max_document_bytes: Option<usize>,

    /// Most lexical tokens in a query document [default: 5000].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_TOKENS")]
    pub max_tokens: Option<usize>,

    /// Largest `variables` JSON of a request, in bytes [default: 262144].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_VARIABLES_BYTES")]
    pub max_variables_bytes: Option<usize>,

    /// Deepest nesting of arrays and objects in `variables`, at most 100
    /// [default: 32].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_VARIABLES_DEPTH")]
    pub max_variables_depth: Option<usize>,

    /// Refuse requests a browser could send cross-origin without a CORS
    /// preflight: no content type or a "simple" one, and none of
    /// `x-graphql-csrf`, `apollo-require-preflight`, `x-apollo-operation-name`
    /// [default: on].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_CSRF_PREVENTION")]
    pub csrf_prevention: Option<bool>,

    /// Most points of estimated cost an operation may have (a list costs its
    /// page size times its elements) [default: 5000].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_COST")]
    pub max_cost: Option<u64>,

    /// Deepest nesting of list fields inside introspection [default: 3].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_MAX_INTROSPECTION_DEPTH")]
    pub max_introspection_depth: Option<usize>,

    /// Limits that only measure (log and count, never refuse), comma-separated:
    /// depth, fields, aliases, root-fields, directives, document-bytes, tokens,
    /// introspection-depth, page-size, cost, variables-bytes, variables-depth,
    /// or all [default: none].
    #[arg(
        long,
        global = true,
        env = "COMMERCE_GRAPH_LIMITS_MEASURE_ONLY",
        value_delimiter = ','
    )]
    pub limits_measure_only: Option<Vec<String>>,

    /// Who may introspect the schema: on, authenticated or off
    /// [default: on in development, authenticated in production].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_INTROSPECTION")]
    pub introspection: Option<Introspection>,

    /// "Did you mean …?" suggestions in validation errors
    /// [default: on in development, off in production].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_SUGGESTIONS")]
    pub suggestions: Option<bool>,

    /// Longest a request may run before it is cancelled, e.g. 10s or 500ms
    /// [default: 10s].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_REQUEST_TIMEOUT", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,

    /// Shared secret the federation router sends in `x-router-secret`; when
    /// set, `_entities` and `_service` are refused without it.
    #[arg(
        long,
        global = true,
        env = "COMMERCE_GRAPH_ROUTER_SECRET",
        hide_env_values = true
    )]
    pub router_secret: Option<String>,

    /// Send `x-sql-statements` (statements the request ran) with each GraphQL
    /// response [default: on in development].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_EXPOSE_SQL_STATEMENTS")]
    pub expose_sql_statements: Option<bool>,

    /// Most WebSocket (subscription) connections open at once; the next is
    /// closed with 1013 [default: 10000].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_WS_MAX_CONNECTIONS")]
    pub ws_max_connections: Option<usize>,

    /// Most subscriptions active on one WebSocket connection [default: 100].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_WS_MAX_SUBSCRIPTIONS")]
    pub ws_max_subscriptions: Option<usize>,

    /// How long a new WebSocket connection has to send `connection_init`
    /// before it is closed with 4408, e.g. 10s [default: 10s].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_WS_INIT_TIMEOUT", value_parser = parse_duration)]
    pub ws_init_timeout: Option<Duration>,

    /// How often the server pings a WebSocket client; one that sends
    /// nothing (not even a pong) for that long after a ping is closed
    /// [default: 15s].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_WS_KEEPALIVE", value_parser = parse_duration)]
    pub ws_keepalive: Option<Duration>,

    /// Events a subscriber may fall behind by before it misses some (and is
    /// told so) [default: 16].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_EVENT_BUFFER")]
    pub event_buffer: Option<usize>,

    /// Serve Prometheus metrics at GET /metrics [default: on].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_METRICS")]
    pub metrics: Option<bool>,

    /// Bearer token /metrics asks for; without one /metrics is open in
    /// development and off in production.
    #[arg(
        long,
        global = true,
        env = "COMMERCE_GRAPH_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,

    /// Meter clients by cost: a token bucket per client and a bound on its
    /// requests in flight [default: on].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_RATE_LIMIT")]
    pub rate_limit: Option<bool>,

    /// Anonymous clients' budget, CAPACITY/RATE/CONCURRENT (points, points
    /// restored per second, requests in flight) [default: 5000/250/16].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_RATE_LIMIT_ANONYMOUS", value_parser = TierLimits::parse)]
    pub rate_limit_anonymous: Option<TierLimits>,

    /// Customers' budget (a token naming a customer) [default: 10000/500/32].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_RATE_LIMIT_CUSTOMER", value_parser = TierLimits::parse)]
    pub rate_limit_customer: Option<TierLimits>,

    /// Admins' budget (a token with the admin scope) [default: 50000/2500/64].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_RATE_LIMIT_ADMIN", value_parser = TierLimits::parse)]
    pub rate_limit_admin: Option<TierLimits>,

    /// Budgets by `apollographql-client-name`, comma-separated
    /// NAME=CAPACITY/RATE/CONCURRENT [default: none].
    #[arg(
        long,
        global = true,
        env = "COMMERCE_GRAPH_RATE_LIMIT_CLIENTS",
        value_delimiter = ','
    )]
    pub rate_limit_clients: Option<Vec<String>>,

    /// Header naming the client (an API key a gateway in front checked) when
    /// no token does; else clients are told apart by address [default: none].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_RATE_LIMIT_API_KEY_HEADER")]
    pub rate_limit_api_key_header: Option<String>,

    /// Header in which the proxy in front appends the client's address
    /// (`x-forwarded-for`); its last entry names anonymous clients. Set it
    /// only when every request comes through such a proxy [default: none:
    /// the peer's address].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_RATE_LIMIT_ADDRESS_HEADER")]
    pub rate_limit_address_header: Option<String>,

    /// Clients whose buckets are kept at once; past it the least recently
    /// seen are dropped [default: 100000].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_RATE_LIMIT_MAX_CLIENTS")]
    pub rate_limit_max_clients: Option<u64>,

    /// OTLP/HTTP URL spans are exported to (a collector's traces URL, e.g.
    /// http://127.0.0.1:4318/v1/traces); needs a build with the `otel`
    /// feature [default: none].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// After SIGTERM or SIGINT, how long requests in flight may take to
    /// finish before they are cut off [default: 25s].
    #[arg(long, global = true, env = "COMMERCE_GRAPH_SHUTDOWN_GRACE", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
}

/// The same settings as read from the `--config` file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    profile: Option<Profile>,
    jwt_secret: Option<String>,
    jwt_public_key: Option<PathBuf>,
    jwt_jwks_file: Option<PathBuf>,
    db_max_connections: Option<u32>,
    db_connect_timeout: Option<String>,
    db_statement_timeout: Option<String>,
    max_body_bytes: Option<usize>,
    cors_origins: Option<Vec<String>>,
    graphiql: Option<bool>,
    persisted_queries: Option<PersistedMode>,
    max_cache_age: Option<u32>,
    response_cache_bytes: Option<u64>,
    response_cache_hold: Option<String>,
    stale_if_error: Option<String>,
    seed_on_start: Option<bool>,
    log_format: Option<LogFormat>,
    expose_sql_statements: Option<bool>,
    router_secret: Option<String>,
    max_depth: Option<usize>,
    max_fields: Option<usize>,
    max_aliases: Option<usize>,
    max_root_fields: Option<usize>,
    max_directives: Option<usize>,
    max_document_bytes: Option<usize>,
    max_tokens: Option<usize>,
    max_variables_bytes: Option<usize>,
    max_variables_depth: Option<usize>,
    csrf_prevention: Option<bool>,
    max_cost: Option<u64>,
    max_introspection_depth: Option<usize>,
    limits_measure_only: Option<Vec<String>>,
    introspection: Option<Introspection>,
    suggestions: Option<bool>,
    request_timeout: Option<String>,
    ws_max_connections: Option<usize>,
    ws_max_subscriptions: Option<usize>,
    ws_init_timeout: Option<String>,
    ws_keepalive: Option<String>,
    event_buffer: Option<usize>,
    metrics: Option<bool>,
    metrics_token: Option<String>,
    rate_limit: Option<bool>,
    rate_limit_anonymous: Option<String>,
    rate_limit_customer: Option<String>,
    rate_limit_admin: Option<String>,
    rate_limit_clients: Option<Vec<String>>,
    rate_limit_api_key_header: Option<String>,
    rate_limit_address_header: Option<String>,
    rate_limit_max_clients: Option<u64>,
    shutdown_grace: Option<String>,
    otlp_endpoint: Option<String>,
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub profile: Profile,
    /// HS256 secret: the configured one, or in development the built-in one.
    pub jwt_secret: Option<String>,
    /// True when `jwt_secret` is the built-in development secret.
    pub jwt_secret_is_default: bool,
    pub jwt_public_key: Option<PathBuf>,
    pub jwt_jwks_file: Option<PathBuf>,
    pub db_max_connections: u32,
    /// Longest wait for a database connection.
    pub db_connect_timeout: Duration,
    /// Longest one statement may run (PostgreSQL).
    pub db_statement_timeout: Duration,
    pub max_body_bytes: usize,
    pub cors_origins: Vec<String>,
    pub graphiql: bool,
    /// Which documents run (see [`PersistedMode`]).
    pub persisted_queries: PersistedMode,
    /// Caps every response's `max-age` (seconds).
    pub max_cache_age: Option<u32>,
    /// Memory of the response cache (0: off).
    pub response_cache_bytes: u64,
    /// How long the response cache keeps an answer no write has changed,
    /// when longer than its `max-age` (zero: its `max-age` only).
    pub response_cache_hold: Duration,
    /// How long past `max-age` a public answer may be served while the
    /// database is unavailable (zero: not at all).
    pub stale_if_error: Duration,
    pub seed_on_start: bool,
    pub log_format: LogFormat,
    pub expose_sql_statements: bool,
    /// The secret the router must send for `_entities` and `_service`.
    pub router_secret: Option<String>,
    /// Limits on a query's shape and cost.
    pub limits: Limits,
    /// What the schema tells about itself, and the request deadline.
    pub posture: Posture,
    /// Refuse requests a foreign web page could send without a CORS
    /// preflight (see `http::graphql`).
    pub csrf_prevention: bool,
    /// Bounds and timers of subscriptions over WebSocket.
    pub subscriptions: SubscriptionSettings,
    /// Whether `/metrics` is served.
    pub metrics: bool,
    /// The bearer token `/metrics` asks for.
    pub metrics_token: Option<String>,
    /// Budgets of clients, by tier.
    pub rate_limits: RateLimits,
    /// How long requests in flight may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Where spans are exported (a build with the `otel` feature).
    pub otlp_endpoint: Option<String>,
}

/// Bounds and timers of subscriptions over WebSocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionSettings {
    /// Connections open at once, server-wide.
    pub max_connections: usize,
    /// Active subscriptions on one connection.
    pub max_per_connection: usize,
    /// Time a connection has to send `connection_init`.
    pub init_timeout: Duration,
    /// Ping interval, and how long a pinged client may stay silent.
    pub keepalive: Duration,
    /// Events a subscriber may fall behind by.
    pub event_buffer: usize,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        SubscriptionSettings {
            max_connections: 10_000,
            max_per_connection: 100,
            init_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            event_buffer: 16,
        }
    }
}

impl Config {
    /// The keys bearer tokens are checked (and, with a secret, minted) with.
    pub fn jwt_keys(&self) -> anyhow::Result<crate::auth::JwtKeys> {
        crate::auth::JwtKeys::from_config(
            self.jwt_secret.as_deref().map(str::as_bytes),
            self.jwt_public_key.as_deref(),
            self.jwt_jwks_file.as_deref(),
        )
    }

    /// How the store's pool opens and uses connections.
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.db_max_connections,
            connect_timeout: self.db_connect_timeout,
            statement_timeout: self.db_statement_timeout,
        }
    }

    /// Resolves flags and environment (already merged by clap in `settings`)
    /// over the config file over the defaults.
    pub fn resolve(settings: &Settings) -> anyhow::Result<Config> {
        let file = match &settings.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let profile = settings
            .profile
            .or(file.profile)
            .unwrap_or(Profile::Development);
        let development = profile == Profile::Development;
        let jwt_secret = settings.jwt_secret.clone().or(file.jwt_secret);
        let router_secret = settings
            .router_secret
            .clone()
            .or(file.router_secret.clone());
        if router_secret.as_ref().is_some_and(|s| s.len() < 16) {
            bail!("the router secret must be at least 16 bytes long");
        }
        if let Some(secret) = &jwt_secret {
            if secret.len() < 16 {
                bail!("the JWT secret must be at least 16 bytes long");
            }
        }
        let jwt_public_key = settings.jwt_public_key.clone().or(file.jwt_public_key);
        let jwt_jwks_file = settings.jwt_jwks_file.clone().or(file.jwt_jwks_file);
        let has_public_keys = jwt_public_key.is_some() || jwt_jwks_file.is_some();
        if jwt_secret.is_none() && !has_public_keys && !development {
            bail!(
                "the production profile needs a JWT secret (COMMERCE_GRAPH_JWT_SECRET or \
                 --jwt-secret), a public key (--jwt-public-key) or a JWKS file (--jwt-jwks-file)"
            );
        }
        let max_variables_depth = settings
            .max_variables_depth
            .or(file.max_variables_depth)
            .unwrap_or(Limits::default().max_variables_depth);
        if max_variables_depth > MOST_VARIABLES_DEPTH {
            bail!(
                "max_variables_depth is at most {MOST_VARIABLES_DEPTH} \
                 (the JSON parser refuses deeper nesting)"
            );
        }
        let request_timeout = match (settings.request_timeout, &file.request_timeout) {
            (Some(timeout), _) => Some(timeout),
            (None, Some(text)) => {
                Some(parse_duration(text).map_err(|e| anyhow::anyhow!("request_timeout: {e}"))?)
            }
            (None, None) => None,
        };
        let duration =
            |name: &str, flag: Option<Duration>, text: &Option<String>| match (flag, text) {
                (Some(value), _) => Ok(Some(value)),
                (None, Some(text)) => parse_duration(text)
                    .map(Some)
                    .map_err(|e| anyhow::anyhow!("{name}: {e}")),
                (None, None) => Ok(None),
            };
        let subscriptions = {
            let defaults = SubscriptionSettings::default();
            SubscriptionSettings {
                max_connections: settings
                    .ws_max_connections
                    .or(file.ws_max_connections)
                    .unwrap_or(defaults.max_connections),
                max_per_connection: settings
                    .ws_max_subscriptions
                    .or(file.ws_max_subscriptions)
                    .unwrap_or(defaults.max_per_connection),
                init_timeout: duration(
                    "ws_init_timeout",
                    settings.ws_init_timeout,
                    &file.ws_init_timeout,
                )?
                .unwrap_or(defaults.init_timeout),
                keepalive: duration("ws_keepalive", settings.ws_keepalive, &file.ws_keepalive)?
                    .unwrap_or(defaults.keepalive),
                event_buffer: settings
                    .event_buffer
                    .or(file.event_buffer)
                    .unwrap_or(defaults.event_buffer)
                    .max(1),
            }
        };
        let pool_defaults = PoolSettings::default();
        let db_connect_timeout = duration(
            "db_connect_timeout",
            settings.db_connect_timeout,
            &file.db_connect_timeout,
        )?
        .unwrap_or(pool_defaults.connect_timeout);
        let db_statement_timeout = duration(
            "db_statement_timeout",
            settings.db_statement_timeout,
            &file.db_statement_timeout,
        )?
        .unwrap_or(pool_defaults.statement_timeout);
        let response_cache_hold = match (settings.response_cache_hold, &file.response_cache_hold) {
            (Some(window), _) => window,
            (None, Some(text)) => {
                parse_window(text).map_err(|e| anyhow::anyhow!("response_cache_hold: {e}"))?
            }
            (None, None) => Duration::from_secs(60),
        };
        let stale_if_error = match (settings.stale_if_error, &file.stale_if_error) {
            (Some(window), _) => window,
            (None, Some(text)) => {
                parse_window(text).map_err(|e| anyhow::anyhow!("stale_if_error: {e}"))?
            }
            (None, None) => Duration::ZERO,
        };
        let measure_only = parse_limit_names(
            settings
                .limits_measure_only
                .as_deref()
                .or(file.limits_measure_only.as_deref())
                .unwrap_or_default(),
        )?;
        let posture = Posture {
            introspection: settings.introspection.or(file.introspection).unwrap_or(
                if development {
                    Introspection::On
                } else {
                    Introspection::Authenticated
                },
            ),
            suggestions: settings
                .suggestions
                .or(file.suggestions)
                .unwrap_or(development),
            request_timeout: request_timeout.unwrap_or(Posture::default().request_timeout),
        };
        let tier = |name: &str, flag: Option<TierLimits>, text: &Option<String>, default| match (
            flag, text,
        ) {
            (Some(limits), _) => Ok(limits),
            (None, Some(text)) => {
                TierLimits::parse(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))
            }
            (None, None) => Ok(default),
        };
        let rate_limits = {
            let defaults = RateLimits::default();
            let mut clients = Vec::new();
            for entry in settings
                .rate_limit_clients
                .as_deref()
                .or(file.rate_limit_clients.as_deref())
                .unwrap_or_default()
                .iter()
                .map(|e| e.trim())
                .filter(|e| !e.is_empty())
            {
                let Some((name, spec)) = entry.split_once('=') else {
                    bail!("rate_limit_clients: {entry:?} is not NAME=CAPACITY/RATE/CONCURRENT");
                };
                let limits = TierLimits::parse(spec)
                    .map_err(|e| anyhow::anyhow!("rate_limit_clients: {}: {e}", name.trim()))?;
                clients.push((name.trim().to_string(), limits));
            }
            let header = |name: &str, value: Option<String>| -> anyhow::Result<Option<String>> {
                let value = value
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty());
                if let Some(header) = &value {
                    if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                        bail!("{name}: {header:?} is not a header name");
                    }
                }
                Ok(value)
            };
            let api_key_header = header(
                "rate_limit_api_key_header",
                settings
                    .rate_limit_api_key_header
                    .clone()
                    .or(file.rate_limit_api_key_header),
            )?;
            let address_header = header(
                "rate_limit_address_header",
                settings
                    .rate_limit_address_header
                    .clone()
                    .or(file.rate_limit_address_header),
            )?;
            RateLimits {
                enabled: settings.rate_limit.or(file.rate_limit).unwrap_or(true),
                anonymous: tier(
                    "rate_limit_anonymous",
                    settings.rate_limit_anonymous,
                    &file.rate_limit_anonymous,
                    defaults.anonymous,
                )?,
                customer: tier(
                    "rate_limit_customer",
                    settings.rate_limit_customer,
                    &file.rate_limit_customer,
                    defaults.customer,
                )?,
                admin: tier(
                    "rate_limit_admin",
                    settings.rate_limit_admin,
                    &file.rate_limit_admin,
                    defaults.admin,
                )?,
                clients,
                api_key_header,
                address_header,
                max_clients: settings
                    .rate_limit_max_clients
                    .or(file.rate_limit_max_clients)
                    .unwrap_or(defaults.max_clients),
            }
        };
        let metrics_token = settings
            .metrics_token
            .clone()
            .or(file.metrics_token)
            .filter(|t| !t.is_empty());
        if metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            bail!("metrics_token must be at least 16 bytes (COMMERCE_GRAPH_METRICS_TOKEN)");
        }
        let shutdown_grace = duration(
            "shutdown_grace",
            settings.shutdown_grace,
            &file.shutdown_grace,
        )?
        .unwrap_or(Duration::from_secs(25));
        Ok(Config {
            posture,
            subscriptions,
            metrics: settings.metrics.or(file.metrics).unwrap_or(true),
            metrics_token,
            rate_limits,
            shutdown_grace,
            otlp_endpoint: settings
                .otlp_endpoint
                .clone()
                .or(file.otlp_endpoint)
                .filter(|e| !e.trim().is_empty()),
            listen: settings
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4000))),
            database_url: settings
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or_else(|| "sqlite://data/commerce.db".to_string()),
            profile,
            jwt_secret_is_default: jwt_secret.is_none() && development,
            jwt_secret: jwt_secret
                .or_else(|| development.then(|| DEVELOPMENT_JWT_SECRET.to_string())),
            jwt_public_key,
            jwt_jwks_file,
            db_max_connections: settings
                .db_max_connections
                .or(file.db_max_connections)
                .unwrap_or(pool_defaults.max_connections),
            db_connect_timeout,
            db_statement_timeout,
            max_body_bytes: settings
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(1024 * 1024),
            cors_origins: settings
                .cors_origins
                .clone()
                .or(file.cors_origins)
                .unwrap_or_default()
                .into_iter()
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            graphiql: settings.graphiql.or(file.graphiql).unwrap_or(development),
            max_cache_age: settings.max_cache_age.or(file.max_cache_age),
            response_cache_bytes: settings
                .response_cache_bytes
                .or(file.response_cache_bytes)
                .unwrap_or(64 * 1024 * 1024),
            response_cache_hold,
            stale_if_error,
            persisted_queries: settings
                .persisted_queries
                .or(file.persisted_queries)
                .unwrap_or(if development {
                    PersistedMode::Apq
                } else {
                    PersistedMode::Safelist
                }),
            seed_on_start: settings
                .seed_on_start
                .or(file.seed_on_start)
                .unwrap_or(development),
            log_format: settings
                .log_format
                .or(file.log_format)
                .unwrap_or(if development {
                    LogFormat::Text
                } else {
                    LogFormat::Json
                }),
            router_secret,
            limits: {
                let defaults = Limits::default();
                Limits {
                    max_cost: settings
                        .max_cost
                        .or(file.max_cost)
                        .unwrap_or(defaults.max_cost),
                    max_introspection_depth: settings
                        .max_introspection_depth
                        .or(file.max_introspection_depth)
                        .unwrap_or(defaults.max_introspection_depth),
                    measure_only,
                    max_depth: settings
                        .max_depth
                        .or(file.max_depth)
                        .unwrap_or(defaults.max_depth),
                    max_fields: settings
                        .max_fields
                        .or(file.max_fields)
                        .unwrap_or(defaults.max_fields),
                    max_aliases: settings
                        .max_aliases
                        .or(file.max_aliases)
                        .unwrap_or(defaults.max_aliases),
                    max_root_fields: settings
                        .max_root_fields
                        .or(file.max_root_fields)
                        .unwrap_or(defaults.max_root_fields),
                    max_directives: settings
                        .max_directives
                        .or(file.max_directives)
                        .unwrap_or(defaults.max_directives),
                    max_document_bytes: settings
                        .max_document_bytes
                        .or(file.max_document_bytes)
                        .unwrap_or(defaults.max_document_bytes),
                    max_tokens: settings
                        .max_tokens
                        .or(file.max_tokens)
                        .unwrap_or(defaults.max_tokens),
                    max_variables_bytes: settings
                        .max_variables_bytes
                        .or(file.max_variables_bytes)
                        .unwrap_or(defaults.max_variables_bytes),
                    max_variables_depth,
                }
            },
            csrf_prevention: settings
                .csrf_prevention
                .or(file.csrf_prevention)
                .unwrap_or(true),
            expose_sql_statements: settings
                .expose_sql_statements
                .or(file.expose_sql_statements)
                .unwrap_or(development),
        })
    }
}

/// Reads `depth,cost` (or `all`) into a set of limits.
fn parse_limit_names(names: &[String]) -> anyhow::Result<LimitSet> {
    let mut set = LimitSet::default();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if name == "all" {
            return Ok(LimitSet::all());
        }
        let Some(limit) = Limit::parse(name) else {
            let known: Vec<&str> = Limit::ALL
                .iter()
                .filter(|l| l.can_measure_only())
                .map(|l| l.name())
                .collect();
            bail!(
                "unknown limit {name:?} in limits_measure_only: use {} or all",
                known.join(", ")
            );
        };
        set.insert(limit);
    }
    Ok(set)
}

/// Reads a duration written like people write them: `500ms`, `10s`, `30m`,
/// `12h`, `7d`, or a bare number of seconds. Zero is not a duration here.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 90s, 30m, 12h or 7d"))?;
    let millis = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        unit => return Err(format!("unknown unit {unit:?}: use ms, s, m, h or d")),
    };
    if number == 0 {
        return Err("the duration must be longer than 0".into());
    }
    Ok(Duration::from_millis(number.saturating_mul(millis)))
}

/// A duration that may be off: `0` or `off`, else as [`parse_duration`].
pub fn parse_window(text: &str) -> Result<Duration, String> {
    match text.trim() {
        "0" | "off" => Ok(Duration::ZERO),
        text => parse_duration(text),
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_measure_only_limits_read_like_people_write_them() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err() && parse_duration("fast").is_err());
        assert_eq!(parse_window("off").unwrap(), Duration::ZERO);
        assert_eq!(parse_window("5m").unwrap(), Duration::from_secs(300));
        let settings = Settings {
            limits_measure_only: Some(vec!["depth".into(), " cost".into()]),
            ..Default::default()
        };
        let set = Config::resolve(&settings).unwrap().limits.measure_only;
        assert!(set.contains(Limit::Depth) && set.contains(Limit::Cost));
        assert!(!set.contains(Limit::Aliases));
        let settings = Settings {
            limits_measure_only: Some(vec!["detph".into()]),
            ..Default::default()
        };
        let error = Config::resolve(&settings).unwrap_err().to_string();
        assert!(error.contains("detph"), "{error}");
    }

    #[test]
    fn defaults_run_on_a_laptop() {
        let config = Config::resolve(&Settings::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(config.database_url, "sqlite://data/commerce.db");
        assert_eq!(config.profile, Profile::Development);
        assert!(config.graphiql && config.seed_on_start && config.jwt_secret_is_default);
        assert!(config.cors_origins.is_empty());
        assert!(config.csrf_prevention);
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.stale_if_error, Duration::ZERO);
    }

    #[test]
    fn variables_limits_are_configurable_within_what_the_parser_allows() {
        let settings = Settings {
            max_variables_bytes: Some(1_000),
            max_variables_depth: Some(4),
            csrf_prevention: Some(false),
            ..Default::default()
        };
        let config = Config::resolve(&settings).unwrap();
        assert_eq!(config.limits.max_variables_bytes, 1_000);
        assert_eq!(config.limits.max_variables_depth, 4);
        assert!(!config.csrf_prevention);
        let settings = Settings {
            max_variables_depth: Some(MOST_VARIABLES_DEPTH + 1),
            ..Default::default()
        };
        assert!(Config::resolve(&settings).is_err());
        let settings = Settings {
            limits_measure_only: Some(vec!["variables-bytes".into(), "variables-depth".into()]),
            ..Default::default()
        };
        let set = Config::resolve(&settings).unwrap().limits.measure_only;
        assert!(set.contains(Limit::VariablesBytes) && set.contains(Limit::VariablesDepth));
        // The nesting guard protects the stack: it always refuses.
        let settings = Settings {
            limits_measure_only: Some(vec!["document-nesting".into()]),
            ..Default::default()
        };
        assert!(Config::resolve(&settings).is_err());
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:5000\"\ndatabase_url = \"sqlite://file.db\"\ngraphiql = false\n",
        )
        .unwrap();
        let settings = Settings {
            config: Some(path),
            database_url: Some("sqlite://flag.db".into()),
            ..Default::default()
        };
        let config = Config::resolve(&settings).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(config.database_url, "sqlite://flag.db");
        assert!(!config.graphiql);
    }

    #[test]
    fn database_pool_settings_come_from_flags_or_the_file() {
        let config = Config::resolve(&Settings::default()).unwrap();
        assert_eq!(config.pool_settings(), PoolSettings::default());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "db_max_connections = 40\ndb_connect_timeout = \"3s\"\ndb_statement_timeout = \"750ms\"\n",
        )
        .unwrap();
        let settings = Settings {
            config: Some(path.clone()),
            db_statement_timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let pool = Config::resolve(&settings).unwrap().pool_settings();
        assert_eq!(pool.max_connections, 40);
        assert_eq!(pool.connect_timeout, Duration::from_secs(3));
        assert_eq!(pool.statement_timeout, Duration::from_secs(2));
        std::fs::write(&path, "db_statement_timeout = \"soon\"\n").unwrap();
        let settings = Settings {
            config: Some(path),
            ..Default::default()
        };
        let error = format!("{:#}", Config::resolve(&settings).unwrap_err());
        assert!(error.contains("db_statement_timeout"), "{error}");
    }

    #[test]
    fn rate_limit_tiers_and_operations_keys_come_from_flags_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "rate_limit_customer = \"200/20/4\"\nrate_limit_clients = [\"ios=300/30/6\"]\n\
             shutdown_grace = \"3s\"\nmetrics_token = \"0123456789abcdef\"\n\
             stale_if_error = \"90s\"\nresponse_cache_hold = \"off\"\n",
        )
        .unwrap();
        let settings = Settings {
            config: Some(path),
            rate_limit_admin: Some(TierLimits::parse("900/90/9").unwrap()),
            rate_limit_api_key_header: Some("X-Api-Key".into()),
            ..Default::default()
        };
        let config = Config::resolve(&settings).unwrap();
        let rate = &config.rate_limits;
        assert_eq!(rate.customer.to_string(), "200/20/4");
        assert_eq!(rate.admin.to_string(), "900/90/9");
        assert_eq!(rate.anonymous, RateLimits::default().anonymous);
        assert_eq!(rate.clients[0].0, "ios");
        assert_eq!(rate.api_key_header.as_deref(), Some("x-api-key"));
        assert_eq!(config.shutdown_grace, Duration::from_secs(3));
        assert_eq!(config.stale_if_error, Duration::from_secs(90));
        assert_eq!(config.response_cache_hold, Duration::ZERO);
        assert!(config.metrics && config.metrics_token.is_some());

        let defaults = Config::resolve(&Settings::default()).unwrap();
        assert_eq!(defaults.shutdown_grace, Duration::from_secs(25));
        assert_eq!(defaults.response_cache_hold, Duration::from_secs(60));
        assert!(defaults.rate_limits.enabled && defaults.metrics_token.is_none());
        let settings = Settings {
            rate_limit_api_key_header: Some("bad header".into()),
            ..Default::default()
        };
        assert!(Config::resolve(&settings).is_err());
    }

    #[test]
    fn production_needs_a_real_secret_and_unknown_file_keys_are_errors() {
        let settings = Settings {
            profile: Some(Profile::Production),
            ..Default::default()
        };
        assert!(Config::resolve(&settings).is_err());
        let settings = Settings {
            profile: Some(Profile::Production),
            jwt_secret: Some("0123456789abcdef0123".into()),
            ..Default::default()
        };
        let config = Config::resolve(&settings).unwrap();
        assert!(!config.graphiql && !config.seed_on_start);
        assert_eq!(config.persisted_queries, PersistedMode::Safelist);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.posture.introspection, Introspection::Authenticated);
        assert!(!config.posture.suggestions);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:5000\"\n").unwrap();
        let settings = Settings {
            config: Some(path),
            ..Default::default()
        };
        assert!(Config::resolve(&settings).is_err());
    }
}
