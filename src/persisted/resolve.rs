//! From what a request sent (a query, an APQ hash, a document id) to the
//! document it runs, under the configured [`PersistedMode`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::manifest::sha256_hex;
use super::{PersistedQueryRegistry, Registered};
use crate::store::StoreError;

/// Which documents the server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersistedMode {
    /// Full documents only: persisted-query ids are refused.
    Off,
    /// Any document, APQ, and registered ids (the development default).
    Apq,
    /// Like `apq`, and every document that is not registered is logged and
    /// counted, so operators see what a safelist would refuse.
    Audit,
    /// Registered documents only (by id, or a body identical to one).
    Safelist,
}

impl PersistedMode {
    fn allows_unregistered(self) -> bool {
        !matches!(self, PersistedMode::Safelist)
    }
}

/// Codes of the persisted-document errors (all sent with `no-store`).
pub mod code {
    /// An APQ hash or document id this server does not know; an APQ client
    /// retries with the body (the code and the message Apollo Client's
    /// persisted-queries link looks for).
    pub const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
    /// Persisted queries are off, or the APQ version is not 1.
    pub const PERSISTED_QUERY_NOT_SUPPORTED: &str = "PERSISTED_QUERY_NOT_SUPPORTED";
    /// Safelist mode: the id is not registered (for this client).
    pub const PERSISTED_QUERY_NOT_IN_LIST: &str = "PERSISTED_QUERY_NOT_IN_LIST";
    /// Safelist mode: a full document that is not registered.
    pub const QUERY_NOT_IN_SAFELIST: &str = "QUERY_NOT_IN_SAFELIST";
    /// The id and the body sent together disagree.
    pub const PERSISTED_QUERY_HASH_MISMATCH: &str = "PERSISTED_QUERY_HASH_MISMATCH";
    /// Neither a query nor an id (or two ids that disagree).
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
}

/// What a request named its document by, besides its `query`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentRef {
    /// `extensions.persistedQuery`: its `version` and `sha256Hash`.
    pub apq: Option<(i64, String)>,
    /// `documentId` (the GraphQL-over-HTTP proposal; a `sha256:` prefix is
    /// dropped) or `doc_id` (Relay).
    pub document_id: Option<String>,
}

impl DocumentRef {
    pub fn is_empty(&self) -> bool {
        self.apq.is_none() && self.document_id.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistedError {
    pub code: &'static str,
    pub message: String,
}

impl PersistedError {
    fn new(code: &'static str, message: impl Into<String>) -> PersistedError {
        PersistedError {
            code,
            message: message.into(),
        }
    }
}

/// The document a request runs.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub query: Arc<str>,
    /// Set when it is a registered document (checked at registration).
    pub registered: Option<Arc<Registered>>,
}

static UNREGISTERED_IN_AUDIT: AtomicU64 = AtomicU64::new(0);

/// Documents run in audit mode that are not registered, since start.
pub fn unregistered_in_audit() -> u64 {
    UNREGISTERED_IN_AUDIT.load(Ordering::Relaxed)
}

pub async fn resolve(
    registry: &PersistedQueryRegistry,
    mode: PersistedMode,
    query: Option<String>,
    reference: &DocumentRef,
    client: &str,
) -> Result<Resolved, Resolution> {
    let query = query.filter(|q| !q.is_empty());
    if mode == PersistedMode::Off && !reference.is_empty() {
        return Err(PersistedError::new(
            code::PERSISTED_QUERY_NOT_SUPPORTED,
            "PersistedQueryNotSupported",
        )
        .into());
    }
    let key = key_of(reference)?;
    let Some(key) = key else {
        let Some(query) = query else {
            return Err(PersistedError::new(
                code::BAD_REQUEST,
                "the request has no `query` (nor a persisted-query id)",
            )
            .into());
        };
        return by_body(registry, mode, query.into(), client).await;
    };
    if let Some(registered) = registry.lookup(&key, client).await? {
        if let Some(query) = &query {
            if **query != *registered.body {
                return Err(mismatch(&key).into());
            }
        }
        return Ok(Resolved {
            query: registered.body.clone(),
            registered: Some(registered),
        });
    }
    match query {
        Some(query) => {
            // An id the registry does not know, with a body: an APQ
            // registration, if the id is the body's hash.
            let hash = sha256_hex(&query);
            if hash != key {
                return Err(mismatch(&key).into());
            }
            let resolved = by_body(registry, mode, query.into(), client).await?;
            if resolved.registered.is_none() {
                registry.apq_put(hash, resolved.query.clone()).await;
            }
            Ok(resolved)
        }
        None if mode.allows_unregistered() => match registry.apq_get(&key).await {
            Some(query) => {
                audit(mode, &query);
                Ok(Resolved {
                    query,
                    registered: None,
                })
            }
            None => Err(PersistedError::new(
                code::PERSISTED_QUERY_NOT_FOUND,
                "PersistedQueryNotFound",
            )
            .into()),
        },
        None => Err(PersistedError::new(
            code::PERSISTED_QUERY_NOT_IN_LIST,
            format!("the persisted document {key:?} is not registered for this client"),
        )
        .into()),
    }
}

/// Why a request's document could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum Resolution {
    #[error("{}", .0.message)]
    Refused(PersistedError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<PersistedError> for Resolution {
    fn from(error: PersistedError) -> Self {
        Resolution::Refused(error)
    }
}

fn mismatch(key: &str) -> PersistedError {
    PersistedError::new(
        code::PERSISTED_QUERY_HASH_MISMATCH,
        format!("the query sent is not the document {key:?} names"),
    )
}

/// The one id a request names its document by, if any.
fn key_of(reference: &DocumentRef) -> Result<Option<String>, PersistedError> {
    let apq = match &reference.apq {
        Some((1, hash)) => Some(hash.to_ascii_lowercase()),
        Some((version, _)) => {
            return Err(PersistedError::new(
                code::PERSISTED_QUERY_NOT_SUPPORTED,
                format!("persisted-query version {version} is not supported (only 1)"),
            ))
        }
        None => None,
    };
    let document_id = reference
        .document_id
        .as_deref()
        .map(|id| id.strip_prefix("sha256:").unwrap_or(id).to_string());
    match (apq, document_id) {
        (Some(a), Some(d)) if a != d => Err(PersistedError::new(
            code::BAD_REQUEST,
            "`extensions.persistedQuery` and `documentId` name different documents",
        )),
        (a, d) => Ok(a.or(d)),
    }
}

/// A request that sent only a body.
async fn by_body(
    registry: &PersistedQueryRegistry,
    mode: PersistedMode,
    query: Arc<str>,
    client: &str,
) -> Result<Resolved, Resolution> {
    if mode == PersistedMode::Apq || mode == PersistedMode::Off {
        return Ok(Resolved {
            query,
            registered: None,
        });
    }
    let registered = registry.lookup(&sha256_hex(&query), client).await?;
    match registered {
        Some(registered) => Ok(Resolved {
            query,
            registered: Some(registered),
        }),
        None if mode == PersistedMode::Audit => {
            audit(mode, &query);
            Ok(Resolved {
                query,
                registered: None,
            })
        }
        None => Err(PersistedError::new(
            code::QUERY_NOT_IN_SAFELIST,
            "this server runs registered documents only, and this one is not registered",
        )
        .into()),
    }
}

fn audit(mode: PersistedMode, query: &str) {
    if mode == PersistedMode::Audit {
        UNREGISTERED_IN_AUDIT.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            sha256 = %sha256_hex(query),
            "audit: a document that is not registered ran (a safelist would refuse it)"
        );
    }
}
