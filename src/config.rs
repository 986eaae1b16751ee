//! Configuration, from (lowest to highest precedence) built-in defaults, an
//! optional TOML file (`--config`), `COMMERCE_GRAPH_*` environment variables
//! and command-line flags. The defaults run on a laptop: listen on
//! 127.0.0.1:4000, SQLite under `./data/`, seed an empty database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::limits::{Limits, VariablesLimits};

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
    max_body_bytes: Option<usize>,
    cors_origins: Option<Vec<String>>,
    graphiql: Option<bool>,
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
    pub max_body_bytes: usize,
    pub cors_origins: Vec<String>,
    pub graphiql: bool,
    pub seed_on_start: bool,
    pub log_format: LogFormat,
    pub expose_sql_statements: bool,
    /// The secret the router must send for `_entities` and `_service`.
    pub router_secret: Option<String>,
    /// Limits on a query's shape.
    pub limits: Limits,
    /// Limits on a request's `variables`.
    pub variables_limits: VariablesLimits,
    /// Refuse requests a foreign web page could send without a CORS
    /// preflight (see `http::graphql`).
    pub csrf_prevention: bool,
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
        let variables_limits = {
            let defaults = VariablesLimits::default();
            VariablesLimits {
                max_bytes: settings
                    .max_variables_bytes
                    .or(file.max_variables_bytes)
                    .unwrap_or(defaults.max_bytes),
                max_depth: settings
                    .max_variables_depth
                    .or(file.max_variables_depth)
                    .unwrap_or(defaults.max_depth),
            }
        };
        if variables_limits.max_depth > VariablesLimits::MOST_DEPTH {
            bail!(
                "max_variables_depth is at most {} (the JSON parser refuses deeper nesting)",
                VariablesLimits::MOST_DEPTH
            );
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
        Ok(Config {
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
                .unwrap_or(16),
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
                }
            },
            variables_limits,
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

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_on_a_laptop() {
        let config = Config::resolve(&Settings::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(config.database_url, "sqlite://data/commerce.db");
        assert_eq!(config.profile, Profile::Development);
        assert!(config.graphiql && config.seed_on_start && config.jwt_secret_is_default);
        assert!(config.cors_origins.is_empty());
        assert!(config.csrf_prevention);
        assert_eq!(config.variables_limits, VariablesLimits::default());
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
        assert_eq!(config.variables_limits.max_bytes, 1_000);
        assert_eq!(config.variables_limits.max_depth, 4);
        assert!(!config.csrf_prevention);
        let settings = Settings {
            max_variables_depth: Some(VariablesLimits::MOST_DEPTH + 1),
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
        assert_eq!(config.log_format, LogFormat::Json);

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
