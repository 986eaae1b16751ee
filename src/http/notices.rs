//! Keeps this replica in step with the others (PostgreSQL): every write's
//! notice, sent inside its transaction (`store::notices`), is heard here and
//! applied to what this replica keeps in memory: its subscribers get the
//! events, its response cache drops the answers tagged with what changed,
//! and a registry change makes it forget the persisted documents it cached.
//! The writer's own replica hears its notices too (its purge is then done
//! twice, harmlessly; its events arrive only this way).
//!
//! When the notice connection is lost (PostgreSQL stopped, the connection
//! cut), notices sent meanwhile are missed: once a new connection listens,
//! every cached answer and document is dropped. They are kept until then,
//! so that while the database is down stale-if-error still has answers to
//! serve (no write commits while it is down, so none is missed), and the
//! replica reads as not ready (`/health/ready`) until it listens again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;

use super::AppState;
use crate::store::notices::{self, Heard};
use crate::store::StoreError;

/// Whether this replica hears the others' notices now.
#[derive(Clone)]
pub struct Listening(Arc<AtomicBool>);

impl Default for Listening {
    fn default() -> Self {
        // SQLite has no one else to hear: always in step.
        Listening(Arc::new(AtomicBool::new(true)))
    }
}

impl Listening {
    pub fn is_listening(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, listening: bool) {
        self.0.store(listening, Ordering::Relaxed);
    }
}

/// Starts listening (the LISTEN is in place when this returns, so no write
/// committed afterwards is missed), then applies notices in a task of its
/// own for as long as the runtime runs.
pub async fn follow(state: &AppState) -> Result<(), StoreError> {
    let heard = notices::listen(&state.config.database_url).await?;
    let state = state.clone();
    tokio::spawn(async move {
        let mut heard = std::pin::pin!(heard);
        while let Some(heard) = heard.next().await {
            apply(&state, heard);
        }
        tracing::error!("no longer listening for other replicas' notices");
    });
    Ok(())
}

fn apply(state: &AppState, heard: Heard) {
    match heard {
        Heard::Notice(notice) => {
            for event in notice.events() {
                state.events.publish(event);
            }
            if !notice.purge.is_empty() {
                let purged = state.response_cache.purge(&notice.purge);
                tracing::debug!(tags = ?notice.purge, purged, "purged by a notice");
            }
            if notice.registry {
                state.registry.forget();
            }
        }
        Heard::Lost => {
            tracing::warn!("the notice connection was lost: listening again");
            state.listening.set(false);
        }
        Heard::Listening => {
            // Notices sent while the connection was down are lost: drop
            // everything they could have purged.
            tracing::info!("listening for notices again: forgetting cached answers and documents");
            state.response_cache.purge_all();
            state.registry.forget();
            state.listening.set(true);
        }
    }
}
