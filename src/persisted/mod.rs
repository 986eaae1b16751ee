//! Persisted documents: automatic persisted queries (Apollo's APQ protocol)
//! and the operator registry of trusted documents, and how a request's id
//! or body is resolved to the document it runs under the configured mode.

pub mod manifest;
mod registry;
mod resolve;

pub use registry::{
    ImportError, PersistedQueryRegistry, Registered, Rejected, FOUND_TTL, MISSING_TTL,
};
pub use resolve::{
    code, resolve, unregistered_in_audit, DocumentRef, PersistedError, PersistedMode, Resolution,
    Resolved,
};
