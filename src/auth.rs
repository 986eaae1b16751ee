//! Who is asking: bearer JWTs turned into a [`Viewer`].
//!
//! Tokens are HS256 JWTs signed with the configured secret. `sub` is the
//! customer id (a decimal string); the space-separated `scope` claim may hold
//! `admin`, which makes the bearer an operator. An operator token may name no
//! customer (`sub` is then not a number). Anything else that is not a valid,
//! unexpired token is refused: a request never silently falls back to
//! anonymous because its token was bad.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The identity a request runs as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Viewer {
    /// The customer the token names, if any.
    pub customer_id: Option<i64>,
    pub admin: bool,
}

impl Viewer {
    pub fn anonymous() -> Viewer {
        Viewer::default()
    }

    pub fn is_authenticated(&self) -> bool {
        self.customer_id.is_some() || self.admin
    }

    /// Whether the viewer may see data that belongs to `customer_id`.
    pub fn may_see_customer(&self, customer_id: i64) -> bool {
        self.admin || self.customer_id == Some(customer_id)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    scope: String,
}

/// Why a presented token was refused. The text is safe to show to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token is not a valid token signed by this server")]
    Invalid,
    #[error("the bearer token's `sub` is not a customer id")]
    BadSubject,
}

/// The keys tokens are signed and checked with.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn hs256(secret: &[u8]) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Checks a token and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Viewer, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?;
        let admin = data.claims.scope.split_whitespace().any(|s| s == "admin");
        let customer_id = data.claims.sub.parse::<i64>().ok().filter(|id| *id > 0);
        if customer_id.is_none() && !admin {
            return Err(AuthError::BadSubject);
        }
        Ok(Viewer { customer_id, admin })
    }

    /// Reads an `Authorization` header value.
    pub fn verify_header(&self, value: &str) -> Result<Viewer, AuthError> {
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::NotBearer);
        }
        self.verify(token.trim())
    }

    /// Mints a token (the `token` command, and tests).
    pub fn mint(&self, customer_id: Option<i64>, admin: bool, ttl: Duration) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: customer_id.map_or_else(|| "operator".to_string(), |id| id.to_string()),
            iat: now,
            exp: now + ttl.as_secs(),
            scope: if admin { "admin".into() } else { String::new() },
        };
        // Encoding with an HMAC key cannot fail for serializable claims.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn minted_tokens_verify_to_their_viewer() {
        let keys = JwtKeys::hs256(b"secret");
        let customer = keys.mint(Some(7), false, HOUR);
        assert_eq!(
            keys.verify_header(&format!("Bearer {customer}")).unwrap(),
            Viewer {
                customer_id: Some(7),
                admin: false
            }
        );
        let operator = keys.mint(None, true, HOUR);
        assert_eq!(
            keys.verify(&operator).unwrap(),
            Viewer {
                customer_id: None,
                admin: true
            }
        );
    }

    #[test]
    fn foreign_expired_and_malformed_tokens_are_refused() {
        let keys = JwtKeys::hs256(b"secret");
        let other = JwtKeys::hs256(b"other").mint(Some(7), true, HOUR);
        assert_eq!(keys.verify(&other), Err(AuthError::Invalid));
        assert_eq!(keys.verify("abc.def.ghi"), Err(AuthError::Invalid));
        assert_eq!(keys.verify_header("Basic abc"), Err(AuthError::NotBearer));
        let expired = Claims {
            sub: "7".into(),
            iat: 1,
            exp: 2,
            scope: String::new(),
        };
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(keys.verify(&expired), Err(AuthError::Expired));
    }

    #[test]
    fn a_non_admin_token_must_name_a_customer() {
        let keys = JwtKeys::hs256(b"secret");
        let token = keys.mint(None, false, HOUR);
        assert_eq!(keys.verify(&token), Err(AuthError::BadSubject));
    }
}
