//! Starting and stopping the server: open the store, migrate, seed an empty
//! database when configured, serve until SIGINT/SIGTERM, then drain.

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::cli::open;
use crate::config::Config;
use crate::http::{router, AppState};
use crate::store::{redact_url, seed, Store};

/// Demo data seeded into an empty database on start.
const START_SEED_SCALE: u32 = 1;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let store = prepare_store(&config).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    if config.jwt_secret_is_default {
        tracing::warn!("using the built-in development JWT secret: set COMMERCE_GRAPH_JWT_SECRET outside development");
    }
    tracing::info!(
        %address,
        database = %redact_url(&config.database_url),
        profile = ?config.profile,
        graphiql = config.graphiql,
        "commerce-graph listening: http://{address}/graphql"
    );
    let app = router(AppState::start(config, store.clone()).await?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Opens, migrates and (when configured and empty) seeds the database.
pub async fn prepare_store(config: &Config) -> anyhow::Result<Store> {
    let store = open(config).await?;
    store.migrate().await.context("migrating the database")?;
    if config.seed_on_start && store.is_empty().await? {
        let started = std::time::Instant::now();
        match seed::seed(&store, START_SEED_SCALE).await {
            Ok(report) => {
                tracing::info!(%report, elapsed_ms = started.elapsed().as_millis() as u64, "seeded the demo data");
            }
            // Replicas starting together on one empty PostgreSQL database
            // race to seed it: one wins, the others find its rows.
            Err(error) if !store.is_empty().await? => {
                tracing::info!(%error, "another replica seeded the database");
            }
            Err(error) => return Err(error).context("seeding the empty database"),
        }
    }
    Ok(store)
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: draining requests");
}
