//! Starting and stopping the server: open the store, migrate, seed an empty
//! database when configured, serve until SIGINT/SIGTERM, then drain: no new
//! connections, every WebSocket and event stream closes cleanly, requests in
//! flight finish within `--shutdown-grace`, then the process exits (0)
//! whatever is left.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
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
    let state = AppState::start(config, store.clone()).await?;
    if run(listener, state, shutdown).await? {
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

/// Serves `state` on `listener` until `stop` resolves, then shuts down:
/// stops accepting, tells every WebSocket and event stream to send what is
/// on its way and close (WebSockets with 1001 Going Away), lets in-flight
/// requests finish within the configured grace period, and waits (a bounded
/// time) for the sockets to close. True when every request finished.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<bool> {
    let grace = state.config.shutdown_grace;
    let connections = state.connections.clone();
    let told = connections.clone();
    let (draining, drain_started) = tokio::sync::oneshot::channel::<()>();
    let serving = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        stop.await;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutting down: no new connections; draining requests in flight"
        );
        // Now, not after the drain: the drain waits for event streams
        // (they are HTTP responses) but not for WebSockets (upgraded
        // connections are no longer the HTTP server's).
        told.shut_down();
        let _ = draining.send(());
    })
    .into_future();
    // Requests still running when the grace period is over are cut off
    // (their connections are dropped with the runtime); so is a client that
    // stopped reading its event stream.
    let grace_over = async {
        if drain_started.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let drained = tokio::select! {
        served = serving => {
            served.context("serving")?;
            true
        }
        _ = grace_over => false,
    };
    let open = connections.closed(SOCKETS_CLOSE_LIMIT).await;
    if open > 0 {
        tracing::warn!(open, "shutting down with connections still open");
    }
    Ok(drained)
}

/// How long shutdown waits for WebSockets to send their last messages and
/// close.
const SOCKETS_CLOSE_LIMIT: Duration = Duration::from_secs(5);

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
