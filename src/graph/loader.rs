//! The request's DataLoader: one per GraphQL request, never shared between
//! requests (so nothing cached for one viewer can reach another).
//!
//! A single `DataLoader<StoreLoader>` serves every relation: async-graphql
//! batches per key type, so each key type below (declared beside the GraphQL
//! type it loads) is its own batch and its own SQL statement. Every batch runs
//! in a `loader_batch` span (entity, batch size, statements) under the
//! request's span, and is counted in the metrics.
//!
//! The loader's cache is the server's entity cache: an entity a request
//! already loaded (or a write fed it) is not loaded again. It lives as long
//! as the request, so it can never serve one viewer's data to another, or a
//! stale row after a write committed elsewhere. Its hits and misses are
//! counted when the request ends (`graphql_cache_requests_total{cache="entity"}`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use async_graphql::Context;
use tracing::Instrument as _;

use super::batching::RequestActivity;
use super::error::ApiError;
use crate::auth::Viewer;
use crate::metrics::Metrics;
use crate::store::batch::counting_statements;
use crate::store::{Store, MAX_IDS_PER_STATEMENT};

pub struct StoreLoader {
    pub(crate) store: Store,
}

/// The [`StoreLoader`] as requests use it: each batch observed.
pub struct ObservedLoader {
    pub(crate) inner: StoreLoader,
    metrics: Option<Metrics>,
    /// Keys loaded from the store: the entity cache's misses.
    loaded: AtomicU64,
}

impl<K> Loader<K> for ObservedLoader
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    StoreLoader: Loader<K>,
{
    type Value = <StoreLoader as Loader<K>>::Value;
    type Error = <StoreLoader as Loader<K>>::Error;

    async fn load(&self, keys: &[K]) -> Result<HashMap<K, Self::Value>, Self::Error> {
        let entity = entity::<K>();
        let span = tracing::info_span!(
            "loader_batch",
            entity,
            batch_size = keys.len(),
            statements = tracing::field::Empty
        );
        let (loaded, statements) = counting_statements(self.inner.load(keys))
            .instrument(span.clone())
            .await;
        span.record("statements", statements);
        self.loaded.fetch_add(keys.len() as u64, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.batch(entity, keys.len());
        }
        loaded
    }
}

/// The name of a loader's key type (`ProductId`, `ReviewsOf`): what a batch
/// loads, a bounded label.
fn entity<K>() -> &'static str {
    let name = std::any::type_name::<K>();
    name.rsplit("::").next().unwrap_or(name)
}

/// The request's DataLoader, counting the look-ups it answers.
pub struct RequestLoader {
    loader: DataLoader<ObservedLoader, HashMapCache>,
    /// Every `load_one`: the entity cache's look-ups.
    lookups: AtomicU64,
    metrics: Option<Metrics>,
}

impl RequestLoader {
    /// The value of `key`, from the request's cache or in the next batch.
    pub async fn load_one<K>(
        &self,
        key: K,
    ) -> Result<Option<<StoreLoader as Loader<K>>::Value>, <StoreLoader as Loader<K>>::Error>
    where
        K: Send + Sync + Hash + Eq + Clone + 'static,
        StoreLoader: Loader<K>,
    {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        self.loader.load_one(key).await
    }

    /// The values of `keys` found, from the request's cache or in the next
    /// batch: one wait for a whole list instead of one per key.
    pub async fn load_many<K>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<HashMap<K, <StoreLoader as Loader<K>>::Value>, <StoreLoader as Loader<K>>::Error>
    where
        K: Send + Sync + Hash + Eq + Clone + 'static,
        StoreLoader: Loader<K>,
    {
        let keys: Vec<K> = keys.into_iter().collect();
        self.lookups.fetch_add(keys.len() as u64, Ordering::Relaxed);
        self.loader.load_many(keys).await
    }

    /// Puts a value the request already holds (a write's result) in the
    /// cache, so reading it back costs no statement.
    pub async fn feed_one<K>(&self, key: K, value: <StoreLoader as Loader<K>>::Value)
    where
        K: Send + Sync + Hash + Eq + Clone + 'static,
        StoreLoader: Loader<K>,
    {
        self.loader.feed_one(key, value).await
    }

    /// Turns the cache on or off for every key type (a subscription loads
    /// every event afresh).
    pub fn enable_all_cache(&self, enable: bool) {
        self.loader.enable_all_cache(enable)
    }

    pub fn loader(&self) -> &ObservedLoader {
        self.loader.loader()
    }
}

impl Drop for RequestLoader {
    fn drop(&mut self) {
        if let Some(metrics) = &self.metrics {
            let misses = self.loader().loaded.load(Ordering::Relaxed);
            let lookups = self.lookups.load(Ordering::Relaxed);
            // A key asked for twice before its batch went out is loaded once:
            // the second look-up is a hit.
            metrics.cache_counts("entity", lookups.saturating_sub(misses), misses);
        }
    }
}

/// A fresh loader over `store` (which should be a request-scoped handle, so its
/// statement counter belongs to the request). Its batches are sent when the
/// request's execution, tracked by `activity`, goes idle (see `batching`),
/// not after a fixed delay, in the span of the resolver that asked first.
pub fn request_loader(
    store: Store,
    activity: RequestActivity,
    metrics: Option<Metrics>,
) -> RequestLoader {
    let spawner = move |batch: futures::future::BoxFuture<'static, ()>| {
        let activity = activity.clone();
        tokio::spawn(
            async move {
                activity.settled().await;
                batch.await;
            }
            .instrument(tracing::Span::current()),
        )
    };
    let observed = ObservedLoader {
        inner: StoreLoader { store },
        metrics: metrics.clone(),
        loaded: AtomicU64::new(0),
    };
    let loader = DataLoader::with_cache(observed, spawner, HashMapCache::default())
        .delay(Duration::ZERO)
        // A full batch goes out at once and is still one statement.
        .max_batch_size(MAX_IDS_PER_STATEMENT);
    RequestLoader {
        loader,
        lookups: AtomicU64::new(0),
        metrics,
    }
}

/// The request's loader. Every request built by the HTTP layer carries one.
pub(crate) fn loader<'a>(ctx: &Context<'a>) -> Result<&'a RequestLoader, ApiError> {
    ctx.data::<RequestLoader>().map_err(|_| {
        tracing::error!("a request reached the resolvers without its DataLoader");
        ApiError::Internal
    })
}

/// The request's store handle (the loader's, so statements are counted).
pub(crate) fn store<'a>(ctx: &Context<'a>) -> Result<&'a Store, ApiError> {
    Ok(&loader(ctx)?.loader().inner.store)
}

pub(crate) fn viewer(ctx: &Context<'_>) -> Viewer {
    ctx.data::<Viewer>().copied().unwrap_or_default()
}

/// Requires the viewer to be `customer_id` or an admin.
pub(crate) fn require_owner_or_admin(viewer: Viewer, customer_id: i64) -> Result<(), ApiError> {
    if viewer.may_see_customer(customer_id) {
        Ok(())
    } else if viewer.is_authenticated() {
        Err(ApiError::Forbidden(
            "only the customer it belongs to or an admin may see this",
        ))
    } else {
        Err(ApiError::Unauthenticated(
            "sign in (send a bearer token) to see this",
        ))
    }
}

/// The customer placing an order or writing a review.
pub(crate) fn require_customer(ctx: &Context<'_>) -> Result<i64, ApiError> {
    let viewer = viewer(ctx);
    match viewer.customer_id {
        Some(id) => Ok(id),
        None if viewer.is_authenticated() => Err(ApiError::Forbidden(
            "this needs a customer's token (an operator token names no customer)",
        )),
        None => Err(ApiError::Unauthenticated(
            "sign in (send a bearer token) to do this",
        )),
    }
}

pub(crate) fn require_admin(ctx: &Context<'_>) -> Result<(), ApiError> {
    let viewer = viewer(ctx);
    if viewer.admin {
        Ok(())
    } else if viewer.is_authenticated() {
        Err(ApiError::Forbidden("only admins may do this"))
    } else {
        Err(ApiError::Unauthenticated(
            "sign in with an admin token to do this",
        ))
    }
}

/// Splits keys that carry parameters (`first`, `after`, a filter) into groups
/// with equal parameters, so each group is one statement over all its parents.
/// Groups come out in the order their first key came in.
pub(crate) fn group_by_params<K, P>(
    keys: &[K],
    split: impl Fn(&K) -> (i64, P),
) -> Vec<(P, Vec<i64>)>
where
    P: Eq + Hash + Clone,
{
    let mut index: HashMap<P, usize> = HashMap::new();
    let mut groups: Vec<(P, Vec<i64>)> = Vec::new();
    for key in keys {
        let (parent, params) = split(key);
        match index.get(&params) {
            Some(&i) => groups[i].1.push(parent),
            None => {
                index.insert(params.clone(), groups.len());
                groups.push((params, vec![parent]));
            }
        }
    }
    groups
}

/// Distributes child rows to their parents' keys; every key gets an entry, so a
/// parent without children loads as an empty list rather than "missing".
pub(crate) fn collect_children<K, R>(
    keys: impl IntoIterator<Item = K>,
    rows: impl IntoIterator<Item = R>,
    key_of: impl Fn(&R) -> K,
) -> HashMap<K, Vec<R>>
where
    K: Eq + Hash,
{
    let mut map: HashMap<K, Vec<R>> = keys.into_iter().map(|k| (k, Vec::new())).collect();
    for row in rows {
        if let Some(children) = map.get_mut(&key_of(&row)) {
            children.push(row);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_labelled_by_their_key_type() {
        assert_eq!(entity::<super::super::catalog::ProductId>(), "ProductId");
    }

    #[test]
    fn keys_with_equal_params_share_a_group() {
        let keys = [(1, 10), (2, 5), (3, 10)];
        let groups = group_by_params(&keys, |&(id, first)| (id, first));
        assert_eq!(groups, vec![(10, vec![1, 3]), (5, vec![2])]);
    }

    #[test]
    fn parents_without_children_get_empty_lists() {
        let map = collect_children([1, 2], [(1, 'a'), (1, 'b'), (9, 'z')], |r| r.0);
        assert_eq!(map[&1].len(), 2);
        assert!(map[&2].is_empty());
        assert!(!map.contains_key(&9));
    }
}
