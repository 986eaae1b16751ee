//! The in-process cache of public GraphQL answers, so a hot persisted GET is
//! served from memory without parsing, validating or touching the database.
//!
//! Only answers that may be public are kept (anonymous, no errors, no
//! personal data; see `graph::cache_policy`), each for its own `max-age`,
//! and the cache is bounded in bytes. Each entry is tagged with what its
//! answer read (`store::tags`); a write purges the entries tagged with what
//! it changed, at once, on this replica.
//!
//! With stale-if-error configured, an entry is kept that much longer than
//! its `max-age`: [`ResponseCache::get`] no longer hands it out, but
//! [`ResponseCache::get_stale`] does, for the answer to a request the
//! database cannot serve (RFC 5861's `stale-if-error`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

/// What identifies an answer: everything that can change it.
pub type CacheKey = [u8; 32];

/// A kept answer.
#[derive(Debug)]
pub struct Cached {
    pub body: Bytes,
    pub content_type: &'static str,
    pub max_age: u32,
    pub etag: String,
    pub tags: Vec<String>,
    pub stored: Instant,
}

impl Cached {
    /// Seconds since it was stored (the `Age` header), so caches in front
    /// do not keep it longer than its `max-age` in all.
    pub fn age(&self) -> u32 {
        self.stored.elapsed().as_secs().min(u32::MAX as u64) as u32
    }

    fn is_fresh(&self) -> bool {
        self.stored.elapsed() < Duration::from_secs(self.max_age.into())
    }
}

/// Keeps each entry for its `max-age` and then the stale-if-error window.
struct PerEntryTtl {
    stale_for: Duration,
}

impl moka::Expiry<CacheKey, Arc<Cached>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Cached>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(value.max_age.into()) + self.stale_for)
    }
}

type TagIndex = Arc<Mutex<HashMap<String, HashSet<CacheKey>>>>;

#[derive(Clone)]
pub struct ResponseCache {
    entries: Cache<CacheKey, Arc<Cached>>,
    by_tag: TagIndex,
}

impl ResponseCache {
    /// A cache holding at most `capacity_bytes` of answers, each kept for
    /// `stale_for` past its `max-age` (zero: not at all).
    pub fn new(capacity_bytes: u64, stale_for: Duration) -> ResponseCache {
        let by_tag: TagIndex = Default::default();
        let index = by_tag.clone();
        let entries = Cache::builder()
            .weigher(|_key: &CacheKey, value: &Arc<Cached>| {
                let tags: usize = value.tags.iter().map(String::len).sum();
                (value.body.len() + tags + 128)
                    .try_into()
                    .unwrap_or(u32::MAX)
            })
            .max_capacity(capacity_bytes)
            .expire_after(PerEntryTtl { stale_for })
            .eviction_listener(move |key: Arc<CacheKey>, value: Arc<Cached>, _cause| {
                let mut index = lock(&index);
                for tag in &value.tags {
                    if let Some(keys) = index.get_mut(tag) {
                        keys.remove(&*key);
                        if keys.is_empty() {
                            index.remove(tag);
                        }
                    }
                }
            })
            .build();
        ResponseCache { entries, by_tag }
    }

    /// The key of a request's answer: its document, operation, variables,
    /// response media type and request extensions.
    pub fn key(
        query: &str,
        operation_name: Option<&str>,
        variables: &serde_json::Value,
        extensions: &serde_json::Value,
        content_type: &str,
    ) -> CacheKey {
        let mut hasher = Sha256::new();
        // Length-prefixed parts: no two different requests hash the same text.
        for part in [
            query,
            operation_name.unwrap_or(""),
            &variables.to_string(),
            &extensions.to_string(),
            content_type,
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.finalize().into()
    }

    /// The answer for `key`, while it is fresh.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Cached>> {
        self.entries.get(key).filter(|entry| entry.is_fresh())
    }

    /// The answer for `key`, fresh or within its stale-if-error window.
    pub fn get_stale(&self, key: &CacheKey) -> Option<Arc<Cached>> {
        self.entries.get(key)
    }

    pub fn insert(&self, key: CacheKey, value: Cached) {
        if value.max_age == 0 {
            return;
        }
        {
            let mut index = lock(&self.by_tag);
            for tag in &value.tags {
                index.entry(tag.clone()).or_default().insert(key);
            }
        }
        self.entries.insert(key, Arc::new(value));
    }

    /// Drops every answer tagged with one of `tags`.
    pub fn purge(&self, tags: &[String]) -> usize {
        let keys: HashSet<CacheKey> = {
            let index = lock(&self.by_tag);
            tags.iter()
                .filter_map(|t| index.get(t))
                .flatten()
                .copied()
                .collect()
        };
        for key in &keys {
            self.entries.invalidate(key);
        }
        keys.len()
    }

    /// Drops every answer (when purges may have been missed).
    pub fn purge_all(&self) {
        self.entries.invalidate_all();
    }
}

fn lock(index: &TagIndex) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<CacheKey>>> {
    index.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tags: &[&str], max_age: u32) -> Cached {
        Cached {
            body: Bytes::from_static(b"{}"),
            content_type: "application/json",
            max_age,
            etag: "\"x\"".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            stored: Instant::now(),
        }
    }

    fn key(query: &str) -> CacheKey {
        ResponseCache::key(
            query,
            None,
            &serde_json::json!({}),
            &serde_json::Value::Null,
            "j",
        )
    }

    #[test]
    fn purging_a_tag_drops_exactly_the_entries_that_read_it() {
        let cache = ResponseCache::new(1 << 20, Duration::ZERO);
        cache.insert(key("a"), entry(&["product:1", "products"], 60));
        cache.insert(key("b"), entry(&["product:2"], 60));
        assert_eq!(cache.purge(&["product:1".to_string()]), 1);
        assert!(cache.get(&key("a")).is_none());
        assert!(cache.get(&key("b")).is_some());
    }

    #[test]
    fn keys_differ_by_every_part() {
        let variables = serde_json::json!({ "id": "1" });
        let base = ResponseCache::key("q", Some("A"), &variables, &serde_json::Value::Null, "j");
        assert_ne!(
            base,
            ResponseCache::key("q", Some("B"), &variables, &serde_json::Value::Null, "j")
        );
        assert_ne!(
            base,
            ResponseCache::key(
                "q",
                Some("A"),
                &serde_json::json!({}),
                &serde_json::Value::Null,
                "j"
            )
        );
        assert_ne!(
            base,
            ResponseCache::key("q", Some("A"), &variables, &serde_json::Value::Null, "g")
        );
        // No ambiguity between where one part ends and the next begins.
        assert_ne!(
            ResponseCache::key("ab", Some("c"), &variables, &serde_json::Value::Null, "j"),
            ResponseCache::key("a", Some("bc"), &variables, &serde_json::Value::Null, "j")
        );
    }

    #[test]
    fn an_entry_lives_for_its_max_age() {
        let cache = ResponseCache::new(1 << 20, Duration::ZERO);
        cache.insert(key("a"), entry(&[], 1));
        assert!(cache.get(&key("a")).is_some());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(cache.get(&key("a")).is_none());
        assert!(cache.get_stale(&key("a")).is_none());
    }

    #[test]
    fn past_its_max_age_an_entry_is_served_only_as_stale_within_the_window() {
        let cache = ResponseCache::new(1 << 20, Duration::from_secs(1));
        cache.insert(key("a"), entry(&[], 1));
        assert!(cache.get(&key("a")).is_some());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(cache.get(&key("a")).is_none(), "not fresh any more");
        let stale = cache.get_stale(&key("a")).expect("kept for the window");
        assert!(stale.age() >= 1);
        std::thread::sleep(Duration::from_millis(1000));
        assert!(cache.get_stale(&key("a")).is_none(), "dropped after it");
    }
}
