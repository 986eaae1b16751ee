//! The command line: `serve`, `migrate`, `seed`, `schema`, `token`, `persisted`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

use crate::config::{Config, Settings};
use crate::persisted::{manifest, ImportError, PersistedQueryRegistry};
use crate::store::{redact_url, seed, Backend, PersistedDocumentRow, Store};
use crate::{graph, server};

#[derive(Parser, Debug)]
#[command(
    name = "commerce-graph",
    version,
    about = "A GraphQL federation subgraph for a product/order graph"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the graph over HTTP (migrates, and seeds an empty database in
    /// development).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Fill an empty database with deterministic demo data.
    Seed {
        /// Size of the data: 1 is 1,000 products, 10 is 10,000.
        #[arg(long, default_value_t = 1)]
        scale: u32,
    },
    /// Print the subgraph SDL (Federation v2) on stdout.
    Schema,
    /// Print a bearer token signed with the configured secret.
    Token {
        /// The customer id the token names.
        #[arg(long)]
        customer: Option<i64>,
        /// Give the token the `admin` scope.
        #[arg(long)]
        admin: bool,
        /// How long the token is valid: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Check the configuration (flags, environment, file) and exit: 0 if
    /// the server would start with it, 1 with the reason if not.
    CheckConfig,
    /// Manage the registry of persisted documents production clients may send.
    Persisted {
        #[command(subcommand)]
        command: PersistedCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum PersistedCommand {
    /// Register every document of a manifest (Apollo's persisted-query
    /// manifest or Relay's persisted-queries.json), or none if any is invalid.
    Import {
        /// The manifest file (`-` for standard input).
        file: PathBuf,
        /// Only requests with this `apollographql-client-name` may use them.
        #[arg(long)]
        client: Option<String>,
    },
    /// Print the registered documents: id, client, type, name, cost.
    List {
        /// Print them as JSON, bodies included.
        #[arg(long)]
        json: bool,
    },
    /// Remove a document (for every client, or for one).
    Remove {
        id: String,
        #[arg(long)]
        client: Option<String>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::resolve(&cli.settings)?;
    let telemetry = crate::telemetry::init(config.log_format, config.otlp_endpoint.as_deref())?;
    let result = command(cli.command, config).await;
    telemetry.shutdown();
    result
}

async fn command(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            check(&config)?;
            server::serve(config).await
        }
        Command::CheckConfig => {
            check(&config)?;
            println!("{}", summary(&config));
            println!("the configuration is valid");
            Ok(())
        }
        Command::Migrate => {
            let store = open(&config).await?;
            store.migrate().await.context("migrating the database")?;
            eprintln!("migrated {}", redact_url(&config.database_url));
            Ok(())
        }
        Command::Seed { scale } => {
            let store = open(&config).await?;
            store.migrate().await.context("migrating the database")?;
            let report = seed::seed(&store, scale).await.context("seeding")?;
            eprintln!("seeded {}: {report}", redact_url(&config.database_url));
            Ok(())
        }
        Command::Schema => {
            print!(
                "{}",
                graph::subgraph_sdl(&graph::build_schema(
                    config.limits,
                    config.posture,
                    Default::default()
                ))
            );
            Ok(())
        }
        Command::Token {
            customer,
            admin,
            ttl,
        } => {
            if customer.is_none() && !admin {
                bail!("give --customer ID, --admin, or both");
            }
            if customer.is_some_and(|id| id <= 0) {
                bail!("--customer must be a positive customer id");
            }
            let keys = config.jwt_keys()?;
            if !keys.can_mint() {
                bail!("minting a token needs the HS256 secret (--jwt-secret); public keys only check tokens");
            }
            println!("{}", keys.mint(customer, admin, ttl));
            Ok(())
        }
        Command::Persisted { command } => persisted(&config, command).await,
    }
}

async fn persisted(config: &Config, command: PersistedCommand) -> anyhow::Result<()> {
    let store = open(config).await?;
    store.migrate().await.context("migrating the database")?;
    let schema = graph::build_schema(config.limits, config.posture, Default::default());
    let registry = PersistedQueryRegistry::new(store, schema, config.limits);
    match command {
        PersistedCommand::Import { file, client } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let documents = manifest::parse(&text)
                .with_context(|| format!("reading the manifest {}", file.display()))?;
            match registry.import(&documents, client.as_deref()).await {
                Ok(registered) => {
                    for row in &registered {
                        eprintln!(
                            "registered {} {} (cost {})",
                            row.id,
                            row.name.as_deref().unwrap_or("(unnamed)"),
                            row.cost
                        );
                    }
                    eprintln!("{} document(s) registered", registered.len());
                    Ok(())
                }
                Err(ImportError::Invalid(rejected)) => {
                    for r in &rejected {
                        eprintln!(
                            "invalid: {} {}: {}",
                            r.id,
                            r.name.as_deref().unwrap_or("(unnamed)"),
                            r.reason
                        );
                    }
                    bail!(
                        "{} of {} document(s) are invalid; nothing was registered",
                        rejected.len(),
                        documents.len()
                    )
                }
                Err(ImportError::Store(e)) => Err(e).context("registering the documents"),
            }
        }
        PersistedCommand::List { json } => {
            let rows = registry.list().await.context("listing the registry")?;
            if json {
                let rows: Vec<serde_json::Value> = rows.iter().map(document_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for row in rows {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        row.id,
                        if row.client.is_empty() {
                            "*"
                        } else {
                            &row.client
                        },
                        row.operation_type,
                        row.name.as_deref().unwrap_or("-"),
                        row.cost
                    );
                }
            }
            Ok(())
        }
        PersistedCommand::Remove { id, client } => {
            let removed = registry.remove(&id, client.as_deref()).await?;
            if removed == 0 {
                bail!("no registered document has the id {id:?}");
            }
            eprintln!("removed {id} ({removed} registration(s))");
            Ok(())
        }
    }
}

/// A registered document as the CLI and the admin endpoint print it.
pub fn document_json(row: &PersistedDocumentRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "client": if row.client.is_empty() { None } else { Some(&row.client) },
        "sha256": row.sha256,
        "name": row.name,
        "type": row.operation_type,
        "body": row.body,
        "cost": row.cost,
        "registeredAt": row.registered_at,
    })
}

/// What `Config::resolve` cannot check without reading files: the token
/// keys load, the database URL names a backend.
fn check(config: &Config) -> anyhow::Result<()> {
    config.jwt_keys().context("the JWT keys")?;
    Backend::from_url(&config.database_url).context("database_url")?;
    Ok(())
}

/// The settings that matter to an operator, secrets left out.
fn summary(config: &Config) -> String {
    let rate = &config.rate_limits;
    let clients: Vec<String> = rate
        .clients
        .iter()
        .map(|(name, limits)| format!("{name}={limits}"))
        .collect();
    [
        format!("profile: {:?}", config.profile).to_lowercase(),
        format!("listen: {}", config.listen),
        format!("database: {}", redact_url(&config.database_url)),
        format!("persisted queries: {:?}", config.persisted_queries).to_lowercase(),
        format!(
            "metrics: {}",
            match (config.metrics, &config.metrics_token, config.profile) {
                (false, _, _) => "off",
                (true, Some(_), _) => "on, token required",
                (true, None, crate::config::Profile::Production) => "off until a token is set",
                (true, None, _) => "on, open",
            }
        ),
        if rate.enabled {
            format!(
                "rate limits: anonymous {}, customer {}, admin {}{}",
                rate.anonymous,
                rate.customer,
                rate.admin,
                if clients.is_empty() {
                    String::new()
                } else {
                    format!(", clients {}", clients.join(" "))
                }
            )
        } else {
            "rate limits: off".to_string()
        },
        format!("shutdown grace: {} ms", config.shutdown_grace.as_millis()),
    ]
    .join("\n")
}

pub(crate) async fn open(config: &Config) -> anyhow::Result<Store> {
    Store::connect(&config.database_url, &config.pool_settings())
        .await
        .with_context(|| format!("opening {}", redact_url(&config.database_url)))
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text).map_err(|e| format!("a token's lifetime: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_like_people_write_them() {
        assert_eq!(parse_ttl("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
