//! Starting and stopping the server: open the store, migrate, seed an empty
//! database when configured, serve until SIGINT/SIGTERM, then drain: no new
//! connections, requests in flight finish within `--shutdown-grace`, then
//! the process exits (0) whatever is left.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::cli::open;
use crate::config::Config;
use crate::http::{router, AppState};
use crate::store::{redact_url, seed, Store};

/// Demo data seeded into an empty database on start.
const START_SEED_SCALE: u32 = 1;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
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
    let grace = config.shutdown_grace;
    let app = router(AppState::start(config, store.clone()).await?);
    let (stopping, mut stop) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutting down: no new connections; draining requests in flight"
        );
        let _ = stopping.send(true);
    };
    let serve = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal);
    // Requests still running when the grace period is over are cut off:
    // their connections are dropped with the runtime.
    let grace_over = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    let drained = tokio::select! {
        served = serve => {
            served.context("serving")?;
            true
        }
        _ = grace_over => false,
    };
    if drained {
        store.close().await;
        tracing::info!("stopped: every request finished");
    } else {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "stopped: requests still running at the end of the grace period were cut off"
        );
    }
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

/// Resolves at SIGTERM or SIGINT. The handlers are installed at once, not
/// when the future is first polled: a signal that comes right after the
/// server logged its address must not find the default action (death) still
/// in place.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
