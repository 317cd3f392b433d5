//! The supplier's side of the token request: signing a client assertion.
//!
//! Used by the sandbox CLI (`gp-gateway client-assertion`), the end-to-end tests and
//! the conformance kit — the same rules a supplier's own code must follow.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::JWT_BEARER;

/// Why an assertion could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("algorithm '{0}' is not one the gateway accepts (RS512, RS384, ES384)")]
    Algorithm(String),
    #[error("private key cannot be used for {alg}: {message}")]
    Key { alg: String, message: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

/// A supplier's signing identity.
#[derive(Debug, Clone)]
pub struct ClientAssertion {
    pub client_id: String,
    pub kid: String,
    /// `RS512`, `RS384` or `ES384`.
    pub alg: String,
    /// PEM private key.
    pub private_key_pem: Vec<u8>,
}

impl ClientAssertion {
    /// Signs a fresh assertion for `token_url` (unique `jti`, valid for `lifetime_secs`).
    pub fn sign(&self, token_url: &str, lifetime_secs: u64) -> Result<String, AssertionError> {
        let alg = crate::registry::ASSERTION_ALGORITHMS
            .into_iter()
            .find(|a| format!("{a:?}") == self.alg)
            .ok_or_else(|| AssertionError::Algorithm(self.alg.clone()))?;
        let key = match alg {
            Algorithm::ES384 => EncodingKey::from_ec_pem(&self.private_key_pem),
            _ => EncodingKey::from_rsa_pem(&self.private_key_pem),
        }
        .map_err(|e| AssertionError::Key {
            alg: self.alg.clone(),
            message: e.to_string(),
        })?;
        let mut header = Header::new(alg);
        header.kid = Some(self.kid.clone());
        let now = crate::unix_now();
        let claims = Claims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: token_url,
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            exp: now + lifetime_secs,
        };
        jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|e| AssertionError::Sign(e.to_string()))
    }

    /// The form body of a token request carrying a fresh assertion.
    pub fn token_request_body(
        &self,
        token_url: &str,
        scope: Option<&str>,
    ) -> Result<String, AssertionError> {
        let assertion = self.sign(token_url, 240)?;
        let mut body = format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}",
            JWT_BEARER.replace(':', "%3A")
        );
        if let Some(scope) = scope {
            body.push_str("&scope=");
            body.push_str(&scope.replace(' ', "+").replace('/', "%2F"));
        }
        Ok(body)
    }
}
