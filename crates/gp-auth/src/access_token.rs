//! Access-token verification on every FHIR request.

use std::collections::HashMap;
use std::sync::Arc;

use gp_fhir::{FhirError, IssueType, SpineCode};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::jwt::{self, shown};
use crate::keys::GatewayKeys;
use crate::scope::ScopeSet;
use crate::unix_now;

/// Longest `Authorization` token accepted; ours are well under 1 KiB.
const MAX_ACCESS_TOKEN_BYTES: usize = 4096;

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The supplier's client id (`sub`).
    pub client_id: String,
    /// The token id (`jti`), for audit.
    pub token_id: String,
    /// Scopes granted when the token was issued.
    pub scopes: ScopeSet,
    /// `exp`, Unix seconds: a cache must not keep the claims past this.
    pub expires_at: u64,
}

/// The access token's JWT claims, as issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AccessTokenClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) client_id: String,
    pub(crate) aud: String,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
    pub(crate) jti: String,
    pub(crate) scope: String,
}

/// Why a request's credentials were refused (401, or 403 once the supplier is known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No `Authorization` header.
    #[error("missing Authorization header: send 'Authorization: Bearer <access token>'")]
    MissingAuthorization,
    /// Another scheme than Bearer, or no token after it.
    #[error("Authorization header must be 'Bearer <access token>'")]
    NotBearer,
    /// Not a well-formed JWT.
    #[error("access token is malformed: {0}")]
    MalformedToken(String),
    /// Signed with an algorithm the gateway does not use.
    #[error("access token algorithm '{0}' is not accepted; this gateway signs with EdDSA")]
    UnsupportedAlgorithm(String),
    /// The `kid` is not one of the gateway's keys.
    #[error("access token was signed by an unknown key (kid '{0}')")]
    UnknownKey(String),
    /// Signature does not verify.
    #[error("access token signature is invalid")]
    BadSignature,
    /// Past `exp`.
    #[error("access token expired at {0} (Unix time); request a new one from the token endpoint")]
    Expired(u64),
    /// `iss` is not this gateway.
    #[error("access token was not issued by this gateway (expected issuer '{0}')")]
    WrongIssuer(String),
    /// `aud` is not this FHIR server.
    #[error("access token audience is not this FHIR server (expected '{0}')")]
    WrongAudience(String),
    /// The token's supplier is no longer registered.
    #[error("supplier '{0}' is not registered")]
    UnknownSupplier(String),
    /// The token's supplier is suspended.
    #[error("supplier '{0}' is suspended")]
    SupplierSuspended(String),
    /// The supplier may not reach this practice.
    #[error("supplier '{client_id}' is not paired with practice {ods}")]
    NotPaired {
        /// Supplier.
        client_id: String,
        /// Practice ODS code.
        ods: String,
    },
}

impl FhirError for AccessError {
    fn status(&self) -> u16 {
        match self {
            Self::SupplierSuspended(_) | Self::NotPaired { .. } => 403,
            _ => 401,
        }
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::AccessDenied
    }
    fn issue_type(&self) -> IssueType {
        match self.status() {
            403 => IssueType::Forbidden,
            _ => IssueType::Login,
        }
    }
    /// RFC 6750: a 401 names the scheme and says the token is what failed.
    fn headers(&self) -> Vec<(&'static str, String)> {
        match self.status() {
            401 => vec![("www-authenticate", "Bearer error=\"invalid_token\"".into())],
            _ => Vec::new(),
        }
    }
}

/// Extracts the token from an `Authorization: Bearer <token>` header value.
pub fn bearer_token(authorization_header: Option<&str>) -> Result<&str, AccessError> {
    let value = authorization_header
        .ok_or(AccessError::MissingAuthorization)?
        .trim();
    let (scheme, token) = value.split_once(' ').ok_or(AccessError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AccessError::NotBearer);
    }
    Ok(token)
}

/// Verifies the gateway's own access tokens: signature (any configured key), issuer,
/// audience and expiry. Cheap to clone. Supplier status is checked separately by
/// [`crate::SupplierRegistry::authorise`], so cached claims still see suspensions.
#[derive(Clone)]
pub struct AccessVerifier {
    issuer: String,
    audience: String,
    leeway: u64,
    keys: Arc<HashMap<String, DecodingKey>>,
}

impl std::fmt::Debug for AccessVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl AccessVerifier {
    /// A verifier for tokens issued under `config` with `keys`.
    pub fn new(config: &AuthConfig, keys: &GatewayKeys) -> Self {
        Self {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.clock_leeway_secs,
            keys: keys.verifying_keys(),
        }
    }

    /// Verifies the `Authorization` header value of a request.
    pub fn verify(&self, authorization_header: Option<&str>) -> Result<AccessClaims, AccessError> {
        self.verify_token(bearer_token(authorization_header)?)
    }

    /// Verifies a bare token (see [`bearer_token`]); for callers caching by token hash.
    pub fn verify_token(&self, token: &str) -> Result<AccessClaims, AccessError> {
        if token.len() > MAX_ACCESS_TOKEN_BYTES {
            return Err(AccessError::MalformedToken(format!(
                "it is longer than {MAX_ACCESS_TOKEN_BYTES} bytes"
            )));
        }
        let raw = jwt::parse(token).map_err(|e| AccessError::MalformedToken(e.describe()))?;
        let alg = raw.header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
        if alg != "EdDSA" {
            return Err(AccessError::UnsupportedAlgorithm(shown(alg)));
        }
        let kid = raw.header.get("kid").and_then(|k| k.as_str()).unwrap_or("");
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| AccessError::UnknownKey(shown(kid)))?;
        match jsonwebtoken::crypto::verify(
            raw.signature,
            raw.message.as_bytes(),
            key,
            Algorithm::EdDSA,
        ) {
            Ok(true) => {}
            _ => return Err(AccessError::BadSignature),
        }
        let claims: AccessTokenClaims =
            serde_json::from_value(serde_json::Value::Object(raw.claims)).map_err(|_| {
                AccessError::MalformedToken("its claims are not the gateway's".into())
            })?;
        if claims.iss != self.issuer {
            return Err(AccessError::WrongIssuer(self.issuer.clone()));
        }
        if claims.aud != self.audience {
            return Err(AccessError::WrongAudience(self.audience.clone()));
        }
        if claims.exp.saturating_add(self.leeway) <= unix_now() {
            return Err(AccessError::Expired(claims.exp));
        }
        let scopes = ScopeSet::parse(&claims.scope)
            .map_err(|e| AccessError::MalformedToken(format!("its scope claim is invalid: {e}")))?;
        Ok(AccessClaims {
            client_id: claims.sub,
            token_id: claims.jti,
            scopes,
            expires_at: claims.exp,
        })
    }
}
