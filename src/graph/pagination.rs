//! Page sizes, opaque cursors and IDs: the arguments every listing shares.
//!
//! Cursors are base64url-encoded JSON arrays whose first element names the
//! listing (`["p","PRICE_ASC",1999,42]`). They are opaque to clients; a cursor
//! that does not decode into the expected shape is refused with
//! `INVALID_CURSOR`, never interpreted loosely.

use async_graphql::ID;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::error::ApiError;

/// `first` when a listing is not told.
pub const DEFAULT_PAGE_SIZE: i32 = 20;
/// The largest `first` a connection accepts.
pub const MAX_PAGE_SIZE: i64 = 100;
/// At most this many images per product in one request.
pub const MAX_IMAGES: i64 = 20;

/// Checks a page size argument: `0..=max`, anything else is an error.
pub fn page_size(argument: &'static str, first: i32, max: i64) -> Result<i64, ApiError> {
    let requested = i64::from(first);
    if requested < 0 {
        return Err(ApiError::BadUserInput(format!(
            "`{argument}` must not be negative, got {requested}"
        )));
    }
    if requested > max {
        return Err(ApiError::PageSizeExceeded {
            argument,
            requested,
            max,
        });
    }
    Ok(requested)
}

/// Parses an `ID` argument into a row id.
pub fn parse_id(argument: &'static str, id: &ID) -> Result<i64, ApiError> {
    id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::BadUserInput(format!(
            "`{argument}` must be the decimal id of a row, got {:?}",
            id.as_str()
        ))
    })
}

pub fn encode_cursor(parts: &[Value]) -> String {
    URL_SAFE_NO_PAD.encode(Value::Array(parts.to_vec()).to_string())
}

/// Decodes a cursor of the listing `kind`, returning the parts after the kind.
pub fn decode_cursor(
    argument: &'static str,
    kind: &str,
    cursor: &str,
) -> Result<Vec<Value>, ApiError> {
    let invalid = || ApiError::InvalidCursor { argument };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let Ok(Value::Array(mut parts)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(invalid());
    };
    if parts.first().and_then(Value::as_str) != Some(kind) {
        return Err(invalid());
    }
    parts.remove(0);
    Ok(parts)
}

/// A cursor that holds nothing but a row id (`["o", 42]`).
pub fn encode_id_cursor(kind: &str, id: i64) -> String {
    encode_cursor(&[Value::from(kind), Value::from(id)])
}

pub fn decode_id_cursor(argument: &'static str, kind: &str, cursor: &str) -> Result<i64, ApiError> {
    match decode_cursor(argument, kind, cursor)?.as_slice() {
        [id] => id
            .as_i64()
            .filter(|id| *id > 0)
            .ok_or(ApiError::InvalidCursor { argument }),
        _ => Err(ApiError::InvalidCursor { argument }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_bounded_not_clamped() {
        assert_eq!(page_size("first", 100, 100).unwrap(), 100);
        assert!(matches!(
            page_size("first", 101, 100),
            Err(ApiError::PageSizeExceeded {
                requested: 101,
                max: 100,
                ..
            })
        ));
        assert!(matches!(
            page_size("first", -1, 100),
            Err(ApiError::BadUserInput(_))
        ));
    }

    #[test]
    fn ids_must_be_positive_decimal_numbers() {
        assert_eq!(parse_id("id", &ID::from("42")).unwrap(), 42);
        for bad in ["abc", "", "-3", "0", "1.5", "99999999999999999999"] {
            assert!(parse_id("id", &ID::from(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_foreign_shapes() {
        let cursor = encode_id_cursor("o", 42);
        assert_eq!(decode_id_cursor("after", "o", &cursor).unwrap(), 42);
        assert!(decode_id_cursor("after", "r", &cursor).is_err());
        assert!(decode_id_cursor("after", "o", "not a cursor").is_err());
        assert!(decode_id_cursor("after", "o", &URL_SAFE_NO_PAD.encode("[\"o\"]")).is_err());
        assert!(decode_id_cursor("after", "o", &URL_SAFE_NO_PAD.encode("{}")).is_err());
    }
}
