//! The in-process cache of public GraphQL answers, so a hot persisted GET is
//! served from memory without parsing, validating or touching the database.
//!
//! Only answers that may be public are kept (anonymous, no errors, no
//! personal data; see `graph::cache_policy`), and the cache is bounded in
//! bytes. Each entry is tagged with what its answer read (`store::tags`); a
//! write purges the entries tagged with what it changed, at once, on this
//! replica (and, through its notice, on the others).
//!
//! Since writes purge what they change, an answer no write has touched is
//! still the current one past its `max-age`: it is held for `hold` in all
//! (when that is longer), served as if it had been computed again at the
//! last multiple of its `max-age` (the same bytes, the same ETag), while
//! purges can be trusted to arrive. `hold` bounds how long a change made
//! around the server (straight in the database) can go unseen.
//!
//! An answer computed while a write purged what it read is not kept: the
//! request notes a [`Mark`] before it reads anything, and the insert checks
//! the purges since (by tag, in slots of a hash) before and after it stores.
//!
//! With stale-if-error configured, an entry is kept that much longer still:
//! [`ResponseCache::get`] no longer hands it out, but
//! [`ResponseCache::get_stale`] does, for the answer to a request the
//! database cannot serve (RFC 5861's `stale-if-error`).

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;
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
    pub tags: Vec<String>,
    /// The headers of every answer from it, made once, when it is stored.
    pub headers: CachedHeaders,
    pub stored: Instant,
}

/// A kept answer's `Cache-Control`, `ETag` and `Surrogate-Key`: a hit clones
/// them (a reference count each) instead of formatting them again.
#[derive(Debug, Clone)]
pub struct CachedHeaders {
    pub cache_control: HeaderValue,
    pub etag: HeaderValue,
    pub surrogate_key: HeaderValue,
}

impl CachedHeaders {
    fn len(&self) -> usize {
        self.cache_control.len() + self.etag.len() + self.surrogate_key.len()
    }
}

impl Cached {
    /// Seconds since it was stored: the `Age` of a stale answer.
    pub fn age(&self) -> u32 {
        self.stored.elapsed().as_secs().min(u32::MAX as u64) as u32
    }

    /// The `Age` of a fresh answer, so caches in front do not keep it past
    /// its `max-age` in all: counted from when it was stored or, held past
    /// its `max-age`, from the last multiple of it (no write changed it, so
    /// computing it again then would have given these bytes).
    pub fn fresh_age(&self) -> u32 {
        match self.max_age {
            0 => 0,
            max_age => self.age() % max_age,
        }
    }

    fn is_fresh(&self, hold: Duration) -> bool {
        self.stored.elapsed() < self.lifetime(hold)
    }

    fn is_within_max_age(&self) -> bool {
        self.stored.elapsed() < Duration::from_secs(self.max_age.into())
    }

    fn lifetime(&self, hold: Duration) -> Duration {
        Duration::from_secs(self.max_age.into()).max(hold)
    }
}

/// Keeps each entry for its lifetime and then the stale-if-error window.
struct PerEntryTtl {
    hold: Duration,
    stale_for: Duration,
}

impl moka::Expiry<CacheKey, Arc<Cached>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Cached>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.lifetime(self.hold) + self.stale_for)
    }
}

type TagIndex = Arc<Mutex<HashMap<String, HashSet<CacheKey>>>>;

/// Slots the purges are noted in, by a hash of the tag: two tags sharing a
/// slot only make an insert give up when it need not have.
const PURGE_SLOTS: usize = 4096;

/// When tags were last purged, in a sequence of purges.
struct Purges {
    sequence: AtomicU64,
    /// The last purge of a tag of each slot.
    slots: Box<[AtomicU64]>,
    /// The last purge of everything.
    all: AtomicU64,
}

impl Purges {
    fn new() -> Purges {
        Purges {
            sequence: AtomicU64::new(0),
            slots: (0..PURGE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            all: AtomicU64::new(0),
        }
    }

    fn slot(&self, tag: &str) -> &AtomicU64 {
        let mut hasher = DefaultHasher::new();
        tag.hash(&mut hasher);
        &self.slots[(hasher.finish() % PURGE_SLOTS as u64) as usize]
    }

    /// Notes a purge of `tags` (all of them: `None`), before it is done.
    fn note(&self, tags: Option<&[String]>) {
        let now = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        match tags {
            Some(tags) => {
                for tag in tags {
                    self.slot(tag).fetch_max(now, Ordering::SeqCst);
                }
            }
            None => {
                self.all.fetch_max(now, Ordering::SeqCst);
            }
        }
    }

    /// Whether one of `tags` was purged after `mark`.
    fn since(&self, mark: Mark, tags: &[String]) -> bool {
        self.all.load(Ordering::SeqCst) > mark.0
            || tags
                .iter()
                .any(|tag| self.slot(tag).load(Ordering::SeqCst) > mark.0)
    }
}

/// Where the purges stood when a request began to read.
#[derive(Clone, Copy, Debug)]
pub struct Mark(u64);

#[derive(Clone)]
pub struct ResponseCache {
    entries: Cache<CacheKey, Arc<Cached>>,
    by_tag: TagIndex,
    purges: Arc<Purges>,
    hold: Duration,
}

impl ResponseCache {
    /// A cache holding at most `capacity_bytes` of answers, each kept for
    /// its `max-age` or `hold` if that is longer, and `stale_for` past that
    /// (zero: not at all).
    pub fn new(capacity_bytes: u64, hold: Duration, stale_for: Duration) -> ResponseCache {
        let by_tag: TagIndex = Default::default();
        let index = by_tag.clone();
        let entries = Cache::builder()
            .weigher(|_key: &CacheKey, value: &Arc<Cached>| {
                let tags: usize = value.tags.iter().map(String::len).sum();
                (value.body.len() + tags + value.headers.len() + 128)
                    .try_into()
                    .unwrap_or(u32::MAX)
            })
            .max_capacity(capacity_bytes)
            .expire_after(PerEntryTtl { hold, stale_for })
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
        ResponseCache {
            entries,
            by_tag,
            purges: Arc::new(Purges::new()),
            hold,
        }
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

    /// The answer for `key`, while it is fresh: within its `max-age`, or
    /// within the hold if `purges_arrive` (they may not while this replica
    /// does not hear the others' notices).
    pub fn get(&self, key: &CacheKey, purges_arrive: bool) -> Option<Arc<Cached>> {
        self.entries.get(key).filter(|entry| {
            entry.is_within_max_age() || (purges_arrive && entry.is_fresh(self.hold))
        })
    }

    /// The answer for `key`, fresh or within its stale-if-error window.
    pub fn get_stale(&self, key: &CacheKey) -> Option<Arc<Cached>> {
        self.entries.get(key)
    }

    /// Where the purges stand: what a request notes before it reads, for
    /// [`ResponseCache::insert`].
    pub fn mark(&self) -> Mark {
        Mark(self.purges.sequence.load(Ordering::SeqCst))
    }

    /// Keeps `value`, an answer read after `since`, unless what it read was
    /// purged since (it may hold what the write changed).
    pub fn insert(&self, key: CacheKey, value: Cached, since: Mark) {
        if value.max_age == 0 || self.purges.since(since, &value.tags) {
            return;
        }
        let value = Arc::new(value);
        // Stored first, indexed after: storing over an earlier answer of
        // the same key tells the eviction listener to unindex that one,
        // which would unindex this one too if it were indexed already.
        self.entries.insert(key, value.clone());
        {
            let mut index = lock(&self.by_tag);
            for tag in &value.tags {
                index.entry(tag.clone()).or_default().insert(key);
            }
        }
        // A purge noted after the check above may have looked for it
        // before it was indexed: it is dropped here instead.
        if self.purges.since(since, &value.tags) {
            self.entries.invalidate(&key);
        }
    }

    /// Drops every answer tagged with one of `tags`.
    pub fn purge(&self, tags: &[String]) -> usize {
        self.purges.note(Some(tags));
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
        self.purges.note(None);
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
            tags: tags.iter().map(|t| t.to_string()).collect(),
            headers: CachedHeaders {
                cache_control: HeaderValue::from_static("public, max-age=60"),
                etag: HeaderValue::from_static("\"x\""),
                surrogate_key: HeaderValue::from_static("t"),
            },
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
        let cache = ResponseCache::new(1 << 20, Duration::ZERO, Duration::ZERO);
        cache.insert(
            key("a"),
            entry(&["product:1", "products"], 60),
            cache.mark(),
        );
        cache.insert(key("b"), entry(&["product:2"], 60), cache.mark());
        assert_eq!(cache.purge(&["product:1".to_string()]), 1);
        assert!(cache.get(&key("a"), true).is_none());
        assert!(cache.get(&key("b"), true).is_some());
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
        let cache = ResponseCache::new(1 << 20, Duration::ZERO, Duration::ZERO);
        cache.insert(key("a"), entry(&[], 1), cache.mark());
        assert!(cache.get(&key("a"), true).is_some());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(cache.get(&key("a"), true).is_none());
        assert!(cache.get_stale(&key("a")).is_none());
    }

    #[test]
    fn past_its_max_age_an_entry_is_served_only_as_stale_within_the_window() {
        let cache = ResponseCache::new(1 << 20, Duration::ZERO, Duration::from_secs(1));
        cache.insert(key("a"), entry(&[], 1), cache.mark());
        assert!(cache.get(&key("a"), true).is_some());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(cache.get(&key("a"), true).is_none(), "not fresh any more");
        let stale = cache.get_stale(&key("a")).expect("kept for the window");
        assert!(stale.age() >= 1);
        std::thread::sleep(Duration::from_millis(1000));
        assert!(cache.get_stale(&key("a")).is_none(), "dropped after it");
    }

    #[test]
    fn an_answer_no_write_changed_is_held_past_its_max_age_while_purges_arrive() {
        let cache = ResponseCache::new(1 << 20, Duration::from_secs(60), Duration::ZERO);
        cache.insert(key("a"), entry(&["inventory:1"], 1), cache.mark());
        cache.insert(key("b"), entry(&["inventory:2"], 1), cache.mark());
        std::thread::sleep(Duration::from_millis(1100));
        let held = cache.get(&key("a"), true).expect("held");
        assert_eq!(
            held.fresh_age(),
            0,
            "counted from the last multiple of its max-age"
        );
        assert!(held.age() >= 1);
        assert!(
            cache.get(&key("a"), false).is_none(),
            "past its max-age only while purges arrive"
        );
        assert_eq!(cache.purge(&["inventory:1".to_string()]), 1);
        assert!(
            cache.get(&key("a"), true).is_none(),
            "a purge ends the hold"
        );
        assert!(cache.get(&key("b"), true).is_some());
    }

    #[test]
    fn an_answer_stored_twice_is_still_purged() {
        // Two requests for the same new page, both missing the cache, both
        // store it: the second replaces the first, and a purge finds it.
        let cache = ResponseCache::new(1 << 20, Duration::from_secs(60), Duration::ZERO);
        cache.insert(key("a"), entry(&["inventory:1"], 5), cache.mark());
        cache.insert(key("a"), entry(&["inventory:1"], 5), cache.mark());
        assert_eq!(cache.purge(&["inventory:1".to_string()]), 1);
        assert!(cache.get(&key("a"), true).is_none());
    }

    #[test]
    fn the_hold_never_shortens_a_max_age() {
        let cache = ResponseCache::new(1 << 20, Duration::from_secs(1), Duration::ZERO);
        cache.insert(key("a"), entry(&[], 60), cache.mark());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(cache.get(&key("a"), false).is_some());
        assert!(cache.get(&key("a"), true).is_some());
    }

    #[test]
    fn an_answer_read_before_a_purge_of_what_it_read_is_not_kept() {
        let cache = ResponseCache::new(1 << 20, Duration::from_secs(60), Duration::ZERO);
        let before = cache.mark();
        // A write commits and purges while the request is still reading.
        cache.purge(&["inventory:1".to_string()]);
        cache.insert(key("a"), entry(&["product:1", "inventory:1"], 5), before);
        assert!(cache.get(&key("a"), true).is_none());
        // Other tags purged meanwhile do not matter.
        let before = cache.mark();
        cache.purge(&["inventory:2".to_string()]);
        cache.insert(key("b"), entry(&["product:1", "inventory:1"], 5), before);
        assert!(cache.get(&key("b"), true).is_some());
        // Nor does a purge the request began after.
        cache.insert(key("c"), entry(&["inventory:1"], 5), cache.mark());
        assert!(cache.get(&key("c"), true).is_some());
        // Forgetting everything counts for every tag.
        let before = cache.mark();
        cache.purge_all();
        cache.insert(key("d"), entry(&["product:9"], 5), before);
        assert!(cache.get(&key("d"), true).is_none());
    }

    #[test]
    fn racing_purges_never_leave_an_answer_older_than_them() {
        // Writers purge `t` while readers keep answers they began before
        // (each "reads" for a moment between its mark and its insert), and
        // readers go on a little after the last purge: whatever is kept
        // then began after that purge.
        let cache = ResponseCache::new(1 << 24, Duration::from_secs(60), Duration::ZERO);
        let tag = vec!["t".to_string()];
        let purging = std::sync::atomic::AtomicUsize::new(2);
        std::thread::scope(|scope| {
            for reader in 0..4u8 {
                let (cache, purging) = (&cache, &purging);
                scope.spawn(move || {
                    let mut after = 0;
                    for i in 0u32.. {
                        let mark = cache.mark();
                        std::thread::yield_now();
                        let mut value = entry(&["t"], 5);
                        value.headers.etag = HeaderValue::from(mark.0);
                        cache.insert(key(&format!("{reader}-{}", i % 50)), value, mark);
                        if purging.load(Ordering::SeqCst) == 0 {
                            after += 1;
                            if after == 20 {
                                break;
                            }
                        }
                    }
                });
            }
            for _ in 0..2 {
                let (cache, tag, purging) = (&cache, &tag, &purging);
                scope.spawn(move || {
                    for _ in 0..3000 {
                        cache.purge(tag);
                        std::thread::yield_now();
                    }
                    purging.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        let last = cache.mark().0;
        for reader in 0..4u8 {
            for i in 0..50 {
                if let Some(kept) = cache.get(&key(&format!("{reader}-{i}")), true) {
                    let began: u64 = kept.headers.etag.to_str().unwrap().parse().unwrap();
                    assert!(
                        began >= last,
                        "kept an answer begun at {began}, before purge {last}"
                    );
                }
            }
        }
    }
}
