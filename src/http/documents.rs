//! Parsed documents, kept by their text.
//!
//! A GET is parsed before anything else is done with it, to refuse a mutation
//! with 405, and that came before the response cache was asked: a cached
//! persisted query (W4) spent more time in async-graphql's parser than in
//! everything else it did. The same texts come back again and again
//! (persisted documents, CDN misses of the same URL, an app's few queries
//! POSTed by every client), so each is parsed once and its document kept, as
//! Apollo Server keeps its parsed documents: GETs before the response cache
//! is asked, POSTs and subscriptions only when they run. Only documents that
//! parse are kept, and only texts that passed the limits on text reach the
//! parser.

use std::sync::Arc;

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::ServerError;
use moka::sync::Cache;

/// What the cache may hold, weighed as the documents' text times
/// [`PARSED_PER_TEXT_BYTE`]: a few thousand typical documents.
const CAPACITY_BYTES: u64 = 32 * 1024 * 1024;

/// A parsed document takes several times the memory of its text (nodes,
/// positions, names).
const PARSED_PER_TEXT_BYTE: usize = 8;

#[derive(Clone)]
pub struct DocumentCache(Cache<Arc<str>, Arc<ExecutableDocument>>);

impl DocumentCache {
    pub fn new() -> DocumentCache {
        DocumentCache(
            Cache::builder()
                .max_capacity(CAPACITY_BYTES)
                .weigher(|text: &Arc<str>, _| {
                    u32::try_from(text.len() * PARSED_PER_TEXT_BYTE).unwrap_or(u32::MAX)
                })
                .build(),
        )
    }

    /// The document of `text`, parsed now or the last time it came.
    pub fn parse(&self, text: &str) -> Result<Arc<ExecutableDocument>, ServerError> {
        if let Some(document) = self.0.get(text) {
            return Ok(document);
        }
        let document = Arc::new(async_graphql::parser::parse_query(text)?);
        self.0.insert(Arc::from(text), Arc::clone(&document));
        Ok(document)
    }
}

impl Default for DocumentCache {
    fn default() -> Self {
        DocumentCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_parsed_once_and_errors_are_not_kept() {
        let cache = DocumentCache::new();
        let first = cache.parse("{ categories { id } }").unwrap();
        let again = cache.parse("{ categories { id } }").unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert!(cache.parse("{ categories {").is_err());
        cache.0.run_pending_tasks();
        assert_eq!(cache.0.entry_count(), 1);
    }
}
