//! The operator registry (trusted documents) and the APQ store.
//!
//! Registered documents live in the database, so every replica sees the same
//! list, and are cached here: a hit is served from memory, an unknown id is
//! remembered briefly so a flood of bad ids does not reach the database.
//! Each document is checked once, when it is registered (the schema, the
//! limits, its worst-case cost); requests that use it skip those checks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use moka::future::Cache;

use super::manifest::{sha256_hex, ManifestDocument};
use crate::graph::{self, AppSchema};
use crate::limits::cost::CostModel;
use crate::limits::{Exceeded, Limit, Limits};
use crate::store::{PersistedDocumentRow, Store, StoreError};

/// How long a registry hit is served from memory. A document removed on
/// another replica (or with the CLI) stops being served within this time;
/// on the replica that removed it, at once.
pub const FOUND_TTL: Duration = Duration::from_secs(60);
/// How long an unknown id is remembered as unknown. A document registered on
/// another replica is usable here within this time.
pub const MISSING_TTL: Duration = Duration::from_secs(5);
/// Memory the APQ store may hold (document text), in bytes.
const APQ_CAPACITY_BYTES: u64 = 32 * 1024 * 1024;

/// A registered document, as requests use it.
#[derive(Clone, Debug)]
pub struct Registered {
    pub id: String,
    pub client: String,
    pub name: Option<String>,
    pub body: Arc<str>,
    pub sha256: String,
    /// Its worst-case cost, computed at registration.
    pub cost: u64,
}

impl From<PersistedDocumentRow> for Registered {
    fn from(row: PersistedDocumentRow) -> Self {
        Registered {
            id: row.id,
            client: row.client,
            name: row.name,
            body: row.body.into(),
            sha256: row.sha256,
            cost: row.cost.max(0) as u64,
        }
    }
}

/// Why a document of a manifest cannot be registered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    pub id: String,
    pub name: Option<String>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} document(s) of the manifest are invalid; nothing was registered", .0.len())]
    Invalid(Vec<Rejected>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct PersistedQueryRegistry {
    store: Store,
    schema: AppSchema,
    limits: Limits,
    model: Arc<CostModel>,
    /// (client, key) → the document it names.
    found: Cache<(String, String), Arc<Registered>>,
    /// (client, key) known not to be registered.
    missing: Cache<(String, String), ()>,
    /// Automatic persisted queries: SHA-256 → text, in this replica only.
    apq: Cache<String, Arc<str>>,
    /// Look-ups answered from memory (a document, or a known unknown id),
    /// and look-ups that went to the database: for the metrics.
    memory_hits: Arc<AtomicU64>,
    memory_misses: Arc<AtomicU64>,
    /// APQ hashes found, and not found (the client then sends the body).
    apq_hits: Arc<AtomicU64>,
    apq_misses: Arc<AtomicU64>,
}

impl PersistedQueryRegistry {
    pub fn new(store: Store, schema: AppSchema, limits: Limits) -> PersistedQueryRegistry {
        PersistedQueryRegistry {
            store,
            schema,
            limits,
            model: Arc::new(graph::cost_model()),
            found: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(FOUND_TTL)
                .build(),
            missing: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(MISSING_TTL)
                .build(),
            apq: Cache::builder()
                .weigher(|key: &String, body: &Arc<str>| {
                    (key.len() + body.len()).try_into().unwrap_or(u32::MAX)
                })
                .max_capacity(APQ_CAPACITY_BYTES)
                .build(),
            memory_hits: Default::default(),
            memory_misses: Default::default(),
            apq_hits: Default::default(),
            apq_misses: Default::default(),
        }
    }

    /// (look-ups answered from memory, look-ups that read the database).
    pub fn cache_counts(&self) -> (u64, u64) {
        (
            self.memory_hits.load(Ordering::Relaxed),
            self.memory_misses.load(Ordering::Relaxed),
        )
    }

    /// (APQ hashes found, APQ hashes not found).
    pub fn apq_counts(&self) -> (u64, u64) {
        (
            self.apq_hits.load(Ordering::Relaxed),
            self.apq_misses.load(Ordering::Relaxed),
        )
    }

    /// The document a client (by `apollographql-client-name`, `""` when it
    /// sent none) refers to by `key`: a registered id or a body's SHA-256.
    /// A document scoped to the client wins over one registered for all.
    pub async fn lookup(
        &self,
        key: &str,
        client: &str,
    ) -> Result<Option<Arc<Registered>>, StoreError> {
        let cache_key = (client.to_string(), key.to_string());
        if let Some(found) = self.found.get(&cache_key).await {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(found));
        }
        if self.missing.contains_key(&cache_key) {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        self.memory_misses.fetch_add(1, Ordering::Relaxed);
        let rows = self.store.persisted_documents_by_key(key, client).await?;
        match rows.into_iter().next() {
            Some(row) => {
                let found = Arc::new(Registered::from(row));
                self.found.insert(cache_key, found.clone()).await;
                Ok(Some(found))
            }
            None => {
                self.missing.insert(cache_key, ()).await;
                Ok(None)
            }
        }
    }

    /// Checks every document of a manifest and registers them all in one
    /// transaction, or none if any is invalid (each invalid one is reported
    /// with its name and why).
    pub async fn import(
        &self,
        documents: &[ManifestDocument],
        client: Option<&str>,
    ) -> Result<Vec<PersistedDocumentRow>, ImportError> {
        let mut rows = Vec::with_capacity(documents.len());
        let mut rejected = Vec::new();
        for document in documents {
            match self.check(&document.body).await {
                Ok((operation_type, operation_name, cost)) => rows.push(PersistedDocumentRow {
                    id: document.id.clone(),
                    client: client.unwrap_or_default().to_string(),
                    sha256: sha256_hex(&document.body),
                    name: document.name.clone().or(operation_name),
                    operation_type: operation_type.to_string(),
                    body: document.body.clone(),
                    cost: cost.min(i64::MAX as u64) as i64,
                    registered_at: String::new(),
                }),
                Err(reason) => rejected.push(Rejected {
                    id: document.id.clone(),
                    name: document.name.clone(),
                    reason,
                }),
            }
        }
        if !rejected.is_empty() {
            return Err(ImportError::Invalid(rejected));
        }
        self.store.register_documents(&rows).await?;
        self.forget();
        let mut registered = self.store.persisted_documents().await?;
        registered.retain(|r| rows.iter().any(|n| n.id == r.id && n.client == r.client));
        Ok(registered)
    }

    pub async fn list(&self) -> Result<Vec<PersistedDocumentRow>, StoreError> {
        self.store.persisted_documents().await
    }

    /// Removes a document (for one client, or for all). Returns the rows removed.
    pub async fn remove(&self, id: &str, client: Option<&str>) -> Result<u64, StoreError> {
        let removed = self.store.remove_persisted_document(id, client).await?;
        self.forget();
        Ok(removed)
    }

    pub async fn apq_get(&self, sha256: &str) -> Option<Arc<str>> {
        let found = self.apq.get(sha256).await;
        let counter = if found.is_some() {
            &self.apq_hits
        } else {
            &self.apq_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub async fn apq_put(&self, sha256: String, body: Arc<str>) {
        self.apq.insert(sha256, body).await;
    }

    /// Drops what this replica remembers of the registry, after a change
    /// (here, or on another replica: its notice says so).
    pub fn forget(&self) {
        self.found.invalidate_all();
        self.missing.invalidate_all();
    }

    /// What a registration checks: one operation, the limits, the schema and
    /// the worst-case cost. Returns the operation's type, name and cost.
    async fn check(&self, body: &str) -> Result<(&'static str, Option<String>, u64), String> {
        let refused = |e: Exceeded| format!("{} ({})", e.message(), e.code);
        self.limits.check_text(body).map_err(refused)?;
        let document = async_graphql::parser::parse_query(body)
            .map_err(|e| format!("not valid GraphQL syntax: {e} (GRAPHQL_PARSE_FAILED)"))?;
        let (name, operation) = match &document.operations {
            DocumentOperations::Single(operation) => (None, operation),
            DocumentOperations::Multiple(operations) if operations.len() == 1 => {
                let (name, operation) = operations.iter().next().expect("one operation");
                (Some(name.to_string()), operation)
            }
            DocumentOperations::Multiple(_) => {
                return Err("a persisted document holds exactly one operation".into())
            }
        };
        self.limits.check_document(&document).map_err(refused)?;
        graph::validate(&self.schema, body)
            .await
            .map_err(|errors| {
                let messages: Vec<String> = errors.into_iter().map(|e| e.message).collect();
                format!("{} (GRAPHQL_VALIDATION_FAILED)", messages.join("; "))
            })?;
        let cost = self.model.measure_worst_case(&operation.node, &document);
        if cost > self.limits.max_cost {
            self.limits
                .enforce(Err(Exceeded::new(Limit::Cost, self.limits.max_cost, cost)))
                .map_err(|e| {
                    format!(
                        "its worst-case cost (every page size given by a variable at its \
                         maximum) is {}, more than the {} allowed (QUERY_TOO_COMPLEX)",
                        e.measured, e.limit
                    )
                })?;
        }
        let kind = match operation.node.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        };
        Ok((kind, name, cost))
    }
}
