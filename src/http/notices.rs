//! Keeps this replica in step with the others (PostgreSQL): every write's
//! notice, sent inside its transaction (`store::notices`), is heard here and
//! applied to what this replica keeps in memory: its subscribers get the
//! events, its response cache drops the answers tagged with what changed,
//! and a registry change makes it forget the persisted documents it cached.
//! The writer's own replica hears its notices too (its purge is then done
//! twice, harmlessly; its events arrive only this way).

use futures::StreamExt;

use super::AppState;
use crate::store::notices::{self, Heard};
use crate::store::StoreError;

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
        Heard::Reconnecting => {
            // Notices sent while the connection was down are lost: drop
            // everything they could have purged.
            tracing::warn!(
                "the notice connection was lost: forgetting cached answers and documents"
            );
            state.response_cache.purge_all();
            state.registry.forget();
        }
    }
}
