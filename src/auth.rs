//! Who is asking: bearer JWTs turned into a [`Viewer`].
//!
//! Tokens are JWTs: HS256 with the configured secret, and RS256 or ES256
//! checked against a configured public key (PEM) or a JWKS file (read once at
//! start; nothing is fetched over the network). `sub` is the customer id (a
//! decimal string); the space-separated `scope` claim may hold `admin`, which
//! makes the bearer an operator. An operator token may name no customer (`sub`
//! is then not a number). Anything else that is not a valid, unexpired token is
//! refused: a request never silently falls back to anonymous because its token
//! was bad. The key is chosen by the token's `alg` (and `kid`) among the keys
//! configured for that algorithm only, so an HS256 token can never be checked
//! against a public key.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The identity a request runs as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
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

/// A key that checks tokens of one algorithm.
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The keys tokens are signed and checked with.
pub struct JwtKeys {
    /// HS256: signs (the `token` command) and checks.
    secret: Option<(EncodingKey, DecodingKey)>,
    /// RS256 / ES256 public keys: check only.
    public: Vec<VerifyingKey>,
}

fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.leeway = 30;
    validation
}

impl JwtKeys {
    pub fn hs256(secret: &[u8]) -> JwtKeys {
        JwtKeys {
            secret: Some((
                EncodingKey::from_secret(secret),
                DecodingKey::from_secret(secret),
            )),
            public: Vec::new(),
        }
    }

    /// Keys from configuration: an optional HS256 secret, an optional public
    /// key file (PEM, RSA for RS256 or P-256 EC for ES256) and an optional
    /// JWKS file.
    pub fn from_config(
        secret: Option<&[u8]>,
        public_key: Option<&Path>,
        jwks: Option<&Path>,
    ) -> anyhow::Result<JwtKeys> {
        let mut keys = match secret {
            Some(secret) => JwtKeys::hs256(secret),
            None => JwtKeys {
                secret: None,
                public: Vec::new(),
            },
        };
        if let Some(path) = public_key {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the JWT public key {}", path.display()))?;
            let (algorithm, key) = match DecodingKey::from_rsa_pem(&pem) {
                Ok(key) => (Algorithm::RS256, key),
                Err(_) => (
                    Algorithm::ES256,
                    DecodingKey::from_ec_pem(&pem).map_err(|_| {
                        anyhow::anyhow!("{} is not an RSA or EC public key in PEM", path.display())
                    })?,
                ),
            };
            keys.public.push(VerifyingKey {
                kid: None,
                algorithm,
                key,
            });
        }
        if let Some(path) = jwks {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the JWKS file {}", path.display()))?;
            let set: JwkSet = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JWKS document", path.display()))?;
            for jwk in &set.keys {
                let algorithm = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => continue,
                };
                let key = DecodingKey::from_jwk(jwk)
                    .with_context(|| format!("a key of {} is not usable", path.display()))?;
                keys.public.push(VerifyingKey {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key,
                });
            }
        }
        Ok(keys)
    }

    /// Checks a token and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Viewer, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let candidates: Vec<&DecodingKey> = match header.alg {
            Algorithm::HS256 => self.secret.iter().map(|(_, key)| key).collect(),
            Algorithm::RS256 | Algorithm::ES256 => self
                .public
                .iter()
                .filter(|k| k.algorithm == header.alg)
                .filter(|k| k.kid.is_none() || header.kid.is_none() || k.kid == header.kid)
                .map(|k| &k.key)
                .collect(),
            _ => Vec::new(),
        };
        let validation = validation(header.alg);
        let mut outcome = Err(AuthError::Invalid);
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    outcome = Ok(data);
                    break;
                }
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    outcome = Err(AuthError::Expired);
                }
                Err(_) => {}
            }
        }
        let data = outcome?;
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

    /// Whether tokens can be minted (an HS256 secret is configured).
    pub fn can_mint(&self) -> bool {
        self.secret.is_some()
    }

    /// Mints an HS256 token (the `token` command, and tests); empty without
    /// a secret.
    pub fn mint(&self, customer_id: Option<i64>, admin: bool, ttl: Duration) -> String {
        let Some((encoding, _)) = &self.secret else {
            return String::new();
        };
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
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding).unwrap_or_default()
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

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/jwt")
            .join(name)
    }

    fn signed(
        algorithm: Algorithm,
        kid: Option<&str>,
        private_pem: &str,
        sub: &str,
        exp: u64,
    ) -> String {
        let pem = std::fs::read(fixture(private_pem)).unwrap();
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_string);
        let claims = Claims {
            sub: sub.into(),
            iat: 1,
            exp,
            scope: "admin".into(),
        };
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    const FAR: u64 = 4_000_000_000;

    #[test]
    fn public_keys_check_rs256_and_es256_tokens() {
        let rsa = JwtKeys::from_config(None, Some(&fixture("rsa-public.pem")), None).unwrap();
        let token = signed(Algorithm::RS256, None, "rsa-private.pem", "9", FAR);
        assert_eq!(rsa.verify(&token).unwrap().customer_id, Some(9));
        let ec_token = signed(Algorithm::ES256, None, "ec-private.pem", "9", FAR);
        assert_eq!(rsa.verify(&ec_token), Err(AuthError::Invalid));
        assert!(!rsa.can_mint());

        let ec = JwtKeys::from_config(None, Some(&fixture("ec-public.pem")), None).unwrap();
        assert!(ec.verify(&ec_token).unwrap().admin);
        let expired = signed(Algorithm::ES256, None, "ec-private.pem", "9", 2);
        assert_eq!(ec.verify(&expired), Err(AuthError::Expired));
    }

    #[test]
    fn a_jwks_file_checks_tokens_by_kid() {
        let keys = JwtKeys::from_config(
            Some(b"secret-secret-secret"),
            None,
            Some(&fixture("jwks.json")),
        )
        .unwrap();
        let rsa = signed(Algorithm::RS256, Some("rsa-1"), "rsa-private.pem", "3", FAR);
        let ec = signed(Algorithm::ES256, Some("ec-1"), "ec-private.pem", "4", FAR);
        assert_eq!(keys.verify(&rsa).unwrap().customer_id, Some(3));
        assert_eq!(keys.verify(&ec).unwrap().customer_id, Some(4));
        let wrong_kid = signed(Algorithm::RS256, Some("ec-1"), "rsa-private.pem", "3", FAR);
        assert_eq!(keys.verify(&wrong_kid), Err(AuthError::Invalid));
        // The HS256 secret still works beside them.
        assert!(keys.verify(&keys.mint(Some(5), false, HOUR)).is_ok());
    }

    #[test]
    fn an_hs256_token_is_never_checked_against_a_public_key() {
        // The classic confusion: sign HS256 with the public key's bytes.
        let public = std::fs::read(fixture("rsa-public.pem")).unwrap();
        let forged = JwtKeys::hs256(&public).mint(Some(1), true, HOUR);
        let keys = JwtKeys::from_config(None, Some(&fixture("rsa-public.pem")), None).unwrap();
        assert_eq!(keys.verify(&forged), Err(AuthError::Invalid));
    }

    #[test]
    fn a_non_admin_token_must_name_a_customer() {
        let keys = JwtKeys::hs256(b"secret");
        let token = keys.mint(None, false, HOUR);
        assert_eq!(keys.verify(&token), Err(AuthError::BadSubject));
    }
}
