//! Whether the database is reachable, as one flag every request reads, so
//! that once PostgreSQL is known to be down requests fail at once instead of
//! each waiting the pool's connect timeout (`--db-connect-timeout`, 10 s by
//! default: the pool retries a refused connection until then).
//!
//! A probe on a connection of its own (not the pool's, so a pool busy under
//! load never reads as an outage) runs `SELECT 1` every [`PROBE_INTERVAL`];
//! a failure, or no answer within [`PROBE_TIMEOUT`], marks the database
//! down, the next success marks it up. A request that meets a lost
//! connection wakes the probe at once. While the database is down, store
//! calls fail with [`StoreError::Unavailable`](super::StoreError) without
//! touching the pool, and calls already waiting for a connection give up.
//! SQLite is a file in this process: it has no probe and is never down.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, Connection};
use tokio::sync::{watch, Notify};

/// How often the probe asks.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long the probe waits for a connection or an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The shared flag and the probe's wake-up call.
#[derive(Clone)]
pub struct Health {
    down: Arc<watch::Sender<bool>>,
    suspect: Arc<Notify>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            down: Arc::new(watch::Sender::new(false)),
            suspect: Arc::new(Notify::new()),
        }
    }
}

impl Health {
    pub fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    /// Resolves when the database is (or becomes) down.
    pub async fn went_down(&self) {
        let mut down = self.down.subscribe();
        // The sender lives as long as `self`: the wait cannot fail.
        let _ = down.wait_for(|down| *down).await;
    }

    fn set(&self, down: bool) {
        self.down.send_if_modified(|state| {
            let changed = *state != down;
            *state = down;
            changed
        });
    }

    /// A request met `error`: if it says the connection was lost, the probe
    /// checks now instead of at its next tick.
    pub(super) fn observe(&self, error: &sqlx::Error) {
        if is_connection_failure(error) {
            self.suspect.notify_one();
        }
    }

    /// Probes the database at `url` for as long as the runtime runs.
    pub(super) fn spawn_probe(&self, url: String) {
        let health = self.clone();
        tokio::spawn(async move {
            let mut connection: Option<AnyConnection> = None;
            loop {
                let answered = tokio::time::timeout(PROBE_TIMEOUT, probe(&url, &mut connection))
                    .await
                    .map_err(|_| "no answer in time".to_string())
                    .and_then(|answered| answered.map_err(|e| e.to_string()));
                match answered {
                    Ok(()) => {
                        if health.is_down() {
                            tracing::info!("the database answers again");
                        }
                        health.set(false);
                    }
                    Err(error) => {
                        if !health.is_down() {
                            tracing::error!(%error, "the database is unreachable");
                        }
                        connection = None;
                        health.set(true);
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(PROBE_INTERVAL) => {}
                    _ = health.suspect.notified() => {}
                }
            }
        });
    }
}

/// One `SELECT 1` on the probe's connection, opened first if needed.
async fn probe(url: &str, connection: &mut Option<AnyConnection>) -> Result<(), sqlx::Error> {
    if connection.is_none() {
        *connection = Some(AnyConnection::connect(url).await?);
    }
    match connection {
        Some(connection) => connection.ping().await,
        None => Ok(()),
    }
}

/// Whether `error` means the database cannot be reached (rather than that
/// one statement failed): the connection broke or could not be made, or the
/// server is shutting down or not accepting connections yet.
pub fn is_connection_failure(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 (connection exception), 57P01-57P03 (admin shutdown,
        // crash shutdown, cannot connect now), 3D000 (the database does
        // not exist: dropped under the server).
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P0") || code == "3D000"
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_learn_when_the_database_goes_down() {
        let health = Health::default();
        assert!(!health.is_down());
        let waiter = tokio::spawn({
            let health = health.clone();
            async move { health.went_down().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        health.set(true);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(health.is_down());
        // Already down: no wait at all.
        tokio::time::timeout(Duration::from_secs(5), health.went_down())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_refused_connection_marks_the_database_down() {
        // A port nobody listens on: every connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        sqlx::any::install_default_drivers();
        let health = Health::default();
        health.spawn_probe(format!("postgres://x:y@127.0.0.1:{port}/commerce"));
        tokio::time::timeout(Duration::from_secs(5), health.went_down())
            .await
            .expect("down within 5 s");
    }

    #[test]
    fn only_lost_connections_count_as_an_outage() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_connection_failure(&io));
        assert!(!is_connection_failure(&sqlx::Error::RowNotFound));
        // A pool busy under load is not an outage.
        assert!(!is_connection_failure(&sqlx::Error::PoolTimedOut));
    }
}
