//! What subscriptions share: publishing an event once a write committed, and
//! turning a topic's events into fresh results.
//!
//! Events carry ids only. Each result is loaded again from the database when
//! its event arrives, so it is the committed state, never a copy made
//! before the commit; and a subscriber that missed events (it was too slow)
//! is told so and sent the current state, which is all it needs to catch up.
//! Over the server's transports, one execution serves every subscriber of the
//! same subscription (`http::subscriptions::fanout`), so an event is loaded
//! once per distinct subscription, not once per subscriber.

use std::future::Future;
use std::sync::Arc;

use async_graphql::{Context, Result};
use futures::{Stream, StreamExt};

use super::error::ApiError;
use super::loader::{loader, store};
use super::ExecutionStarted;
use crate::events::{Delivery, Events, Topic};
use crate::store::Store;

/// Publishes the events the request's writes committed (the store knows
/// which: it recorded them, and on PostgreSQL already sent them inside the
/// transaction). Call it after the store call that committed returned `Ok`.
pub(crate) fn publish_committed(ctx: &Context<'_>) {
    let Ok(store) = store(ctx) else { return };
    let committed = store.take_committed_events();
    match ctx.data::<Events>() {
        Ok(events) => committed.into_iter().for_each(|e| events.committed(e)),
        Err(_) => tracing::error!(?committed, "a schema without an event bus: events lost"),
    }
}

/// Starts a subscription field: marks the operation as executing (its
/// document passed validation and the limits), and turns the request's
/// loader cache off, since every event must be loaded afresh by the result's
/// field resolvers too. Returns the request's store handle, for the stream.
pub(crate) fn begin(ctx: &Context<'_>) -> Result<Store, ApiError> {
    if let Ok(started) = ctx.data::<ExecutionStarted>() {
        started.mark();
    }
    let loader = loader(ctx)?;
    loader.enable_all_cache(false);
    Ok(store(ctx)?.clone())
}

/// For every event on `topics`, the result of a fresh `load`; when events
/// were dropped for this subscriber, an `EVENTS_DROPPED` error first, then
/// the fresh state.
pub(crate) fn watch<T, F, Fut>(
    ctx: &Context<'_>,
    topics: &[Topic],
    load: F,
) -> Result<impl Stream<Item = Result<T>> + Send + 'static, ApiError>
where
    T: Send + 'static,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let events = ctx.data::<Events>().map_err(|_| {
        tracing::error!("a subscription on a schema without an event bus");
        ApiError::Internal
    })?;
    let deliveries = futures::stream::select_all(topics.iter().map(|&t| events.subscribe(t)));
    let load = Arc::new(load);
    Ok(deliveries
        .then(move |delivery| {
            let load = load.clone();
            async move {
                match delivery {
                    Delivery::Event(_) => vec![load().await],
                    Delivery::Lagged(missed) => {
                        vec![Err(ApiError::EventsDropped { missed }.into()), load().await]
                    }
                }
            }
        })
        .flat_map(futures::stream::iter))
}
