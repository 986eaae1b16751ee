//! The errors resolvers return, each with a stable `extensions.code`.
//!
//! `ApiError` deliberately does not implement `Display`: async-graphql converts
//! any `Display` type into an error carrying its text, which would let a database
//! message reach a client through a stray `?`. This type converts only through
//! the `From` below, which sets the code and keeps internal details in the log.

use async_graphql::ErrorExtensions;

use crate::store::{StoreError, WriteError};

/// The stable codes of errors raised while resolving fields.
pub mod code {
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const INVALID_CURSOR: &str = "INVALID_CURSOR";
    pub const PAGE_SIZE_EXCEEDED: &str = "PAGE_SIZE_EXCEEDED";
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const OUT_OF_STOCK: &str = "OUT_OF_STOCK";
    pub const IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";
    pub const INVALID_STATUS_TRANSITION: &str = "INVALID_STATUS_TRANSITION";
    pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";
    pub const EVENTS_DROPPED: &str = "EVENTS_DROPPED";
    pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";
}

#[derive(Clone, Debug)]
pub enum ApiError {
    /// An argument the schema accepts but the server cannot use (an ID that is
    /// not a number, a negative page size).
    BadUserInput(String),
    /// Like `BadUserInput`, naming the input field at fault
    /// (`input.items[2].quantity`).
    InvalidField {
        field: String,
        message: String,
    },
    NotFound(String),
    OutOfStock {
        product_id: i64,
    },
    IdempotencyKeyReused,
    InvalidStatusTransition {
        from: String,
        to: &'static str,
    },
    /// A cursor this server did not issue, or one issued for another listing.
    InvalidCursor {
        argument: &'static str,
    },
    /// A page size above the field's maximum: refused, not silently clamped.
    PageSizeExceeded {
        argument: &'static str,
        requested: i64,
        max: i64,
    },
    Unauthenticated(&'static str),
    Forbidden(&'static str),
    /// A subscriber fell behind and missed events; the state sent next is
    /// the current one.
    EventsDropped {
        missed: u64,
    },
    /// The database cannot be reached now; the same request may work later.
    Unavailable,
    /// Something broke below the API; details are in the server log only.
    Internal,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadUserInput(_) | ApiError::InvalidField { .. } => code::BAD_USER_INPUT,
            ApiError::NotFound(_) => code::NOT_FOUND,
            ApiError::OutOfStock { .. } => code::OUT_OF_STOCK,
            ApiError::IdempotencyKeyReused => code::IDEMPOTENCY_KEY_REUSED,
            ApiError::InvalidStatusTransition { .. } => code::INVALID_STATUS_TRANSITION,
            ApiError::InvalidCursor { .. } => code::INVALID_CURSOR,
            ApiError::PageSizeExceeded { .. } => code::PAGE_SIZE_EXCEEDED,
            ApiError::Unauthenticated(_) => code::UNAUTHENTICATED,
            ApiError::Forbidden(_) => code::FORBIDDEN,
            ApiError::EventsDropped { .. } => code::EVENTS_DROPPED,
            ApiError::Unavailable => code::SERVICE_UNAVAILABLE,
            ApiError::Internal => code::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::BadUserInput(message) | ApiError::NotFound(message) => message.clone(),
            ApiError::InvalidField { field, message } => format!("`{field}`: {message}"),
            ApiError::OutOfStock { product_id } => {
                format!("not enough stock of product {product_id} for this order")
            }
            ApiError::IdempotencyKeyReused => "this idempotency key was already used for a \
                 different order; use a new key for a new order"
                .to_string(),
            ApiError::InvalidStatusTransition { from, to } => {
                format!("an order cannot move from {from} to {to}")
            }
            ApiError::InvalidCursor { argument } => format!(
                "`{argument}` is not a cursor issued by this server for this listing; \
                 use a `cursor` or `endCursor` from a previous page"
            ),
            ApiError::PageSizeExceeded {
                argument,
                requested,
                max,
            } => format!("`{argument}` may be at most {max}, got {requested}"),
            ApiError::Unauthenticated(message) | ApiError::Forbidden(message) => {
                (*message).to_string()
            }
            ApiError::EventsDropped { missed } => format!(
                "this subscription fell behind and {missed} events were dropped; \
                 the next result is the current state"
            ),
            ApiError::Unavailable => UNAVAILABLE_MESSAGE.to_string(),
            ApiError::Internal => "Internal server error".to_string(),
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        let extended = async_graphql::Error::new(error.message()).extend_with(|_, e| {
            e.set("code", error.code());
        });
        match error {
            ApiError::PageSizeExceeded {
                argument,
                requested,
                max,
            } => extended.extend_with(|_, e| {
                e.set("argument", argument);
                e.set("limit", max);
                e.set("requested", requested);
            }),
            ApiError::InvalidCursor { argument } => {
                extended.extend_with(|_, e| e.set("argument", argument))
            }
            ApiError::InvalidField { field, .. } => {
                extended.extend_with(|_, e| e.set("field", field.as_str()))
            }
            ApiError::OutOfStock { product_id } => {
                extended.extend_with(|_, e| e.set("productId", product_id.to_string()))
            }
            ApiError::InvalidStatusTransition { from, to } => extended.extend_with(|_, e| {
                e.set("from", from.as_str());
                e.set("to", to);
            }),
            _ => extended,
        }
    }
}

/// What a client is told when the database cannot be reached.
pub const UNAVAILABLE_MESSAGE: &str = "the service is temporarily unavailable; retry later";

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            tracing::warn!(error = %error, "the database is unavailable");
            return ApiError::Unavailable;
        }
        tracing::error!(error = %error, "store failure while resolving a request");
        ApiError::Internal
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::NotFound { what, id } => {
                ApiError::NotFound(format!("{what} {id} does not exist"))
            }
            WriteError::OutOfStock { product_id } => ApiError::OutOfStock { product_id },
            WriteError::KeyReused => ApiError::IdempotencyKeyReused,
            WriteError::InvalidTransition { from, to } => {
                ApiError::InvalidStatusTransition { from, to }
            }
            WriteError::NegativeStock {
                warehouse,
                available,
                ..
            } => ApiError::InvalidField {
                field: "delta".into(),
                message: format!("stock in {warehouse} would fall below zero (it is {available})"),
            },
            WriteError::MixedCurrencies => ApiError::InvalidField {
                field: "input.items".into(),
                message: "the products of one order must share a currency".into(),
            },
            WriteError::Store(error) => ApiError::from(error),
        }
    }
}
