//! Starting and stopping the server: open the store, migrate, seed an empty
//! database when configured, serve until SIGINT/SIGTERM, then drain requests
//! and close every WebSocket and event stream cleanly.

use std::future::{Future, IntoFuture};
use std::time::Duration;

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
    run(
        listener,
        AppState::new(config, store.clone())?,
        shutdown_signal(),
    )
    .await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Serves `state` on `listener` until `stop` resolves, then shuts down:
/// stops accepting, tells every WebSocket and event stream to send what is
/// on its way and close (WebSockets with 1001 Going Away), lets in-flight
/// requests finish, and waits (a bounded time) for the sockets to close.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let connections = state.connections.clone();
    let told = connections.clone();
    let (draining, drain_started) = tokio::sync::oneshot::channel::<()>();
    let serving = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            stop.await;
            // Now, not after the drain: the drain waits for event streams
            // (they are HTTP responses) but not for WebSockets (upgraded
            // connections are no longer the HTTP server's).
            told.shut_down();
            let _ = draining.send(());
        })
        .into_future();
    // A client that stopped reading would hold its response, and the drain,
    // forever: past the limit the server stops anyway.
    let drain_limit = async {
        if drain_started.await.is_ok() {
            tokio::time::sleep(DRAIN_LIMIT).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = serving => served.context("serving")?,
        _ = drain_limit => tracing::warn!(
            limit_s = DRAIN_LIMIT.as_secs(),
            "requests still running at the drain limit: stopping anyway"
        ),
    }
    let open = connections.closed(SOCKETS_CLOSE_LIMIT).await;
    if open > 0 {
        tracing::warn!(open, "shutting down with connections still open");
    }
    Ok(())
}

/// How long shutdown waits for in-flight HTTP requests and event streams.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How long shutdown waits for WebSockets to send their last messages and
/// close.
const SOCKETS_CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Opens, migrates and (when configured and empty) seeds the database.
pub async fn prepare_store(config: &Config) -> anyhow::Result<Store> {
    let store = open(config).await?;
    store.migrate().await.context("migrating the database")?;
    if config.seed_on_start && store.is_empty().await? {
        let started = std::time::Instant::now();
        let report = seed::seed(&store, START_SEED_SCALE)
            .await
            .context("seeding the empty database")?;
        tracing::info!(%report, elapsed_ms = started.elapsed().as_millis() as u64, "seeded the demo data");
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
