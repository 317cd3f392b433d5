//! Supplier access for the gateway: the supplier registry, the `/oauth2/token` endpoint
//! (client credentials + `private_key_jwt`), access-token issue and verification, SMART
//! `system/` scopes, practice pairing, the `jti` replay guard and rate limits.
//!
//! It knows no FHIR resources, HTTP server or vendor; errors implement
//! [`gp_fhir::FhirError`] (or render as OAuth2 JSON for the token endpoint).
//!
//! # How the gateway uses it
//!
//! ```no_run
//! # async fn demo(auth_toml: gp_auth::AuthConfig, suppliers: gp_auth::SuppliersConfig)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use std::{path::Path, sync::Arc};
//! use gp_auth::*;
//!
//! // Start-up (and `check-config`, which stops after the pure `validate()` calls).
//! let dir = Path::new("config");
//! let keys = GatewayKeys::load(&auth_toml, dir).map_err(|e| format!("{e:?}"))?;
//! let registry = SupplierRegistry::new(SupplierSet::build(&suppliers, dir).map_err(|e| format!("{e:?}"))?);
//! let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::default());
//! let tokens = TokenService::new(auth_toml, keys, registry.clone(), Arc::new(MemoryReplayStore::default()))
//!     .with_rate_limiter(limiter.clone());
//! let verifier = tokens.verifier();
//!
//! // POST /oauth2/token: body → JSON, status from the error.
//! match tokens.issue_from(b"grant_type=client_credentials&...", None, Some([192, 0, 2, 7].into())).await {
//!     Ok(ok) => { let _body = ok.to_json(); }
//!     Err(e) => { let (_status, _body) = (e.status(), e.to_json()); }
//! }
//!
//! // Every FHIR request: authenticate, authorise, rate limit.
//! let claims = verifier.verify(Some("Bearer eyJ..."))?;      // 401 AccessError
//! let supplier = registry.authorise(&claims)?;               // unknown / suspended
//! supplier.require_client_cert(None)?;                       // 401 when bound to a client cert
//! supplier.require("Observation", Permission::Search)?;     // 403 ScopeError
//! let ods = gp_fhir::OdsCode::parse("B82617")?;
//! supplier.require_paired(&ods)?;                            // 403 AccessError
//! let d = limiter.check(&format!("api:{}", supplier.client_id()), supplier.rate_limit()).await?;
//! if !d.allowed { return Err(RateLimitExceeded::new(format!("supplier {}", supplier.client_id()), &d).into()); }
//!
//! // Reload: build a new set, then swap it in; a suspension applies to live tokens at once.
//! registry.replace(SupplierSet::build(&suppliers, dir).map_err(|e| format!("{e:?}"))?);
//! # Ok(()) }
//! ```
//!
//! # Token endpoint error codes
//!
//! | `error` | status | when |
//! |---|---|---|
//! | `invalid_request` | 400 | malformed form, missing parameter, wrong assertion type, oversized or malformed JWT, `alg` not RS512/RS384/ES384 (incl. `none`, HS*), missing `kid` or claim |
//! | `unsupported_grant_type` | 400 | `grant_type` other than `client_credentials` |
//! | `invalid_client` | 401 | unknown or suspended client, `iss` ≠ `sub`, client bound to a mutual-TLS certificate (`client_cert_sha256`) that the connection did not present, unknown `kid`, key/`alg` mismatch, bad signature |
//! | `invalid_grant` | 400 | authentic assertion not valid here and now: wrong `aud`, expired, lifetime too long, `nbf`/`iat` in the future, replayed `jti` |
//! | `invalid_scope` | 400 | unparsable `scope`, or nothing requested is allowed |
//! | `temporarily_unavailable` | 429 / 503 | token rate limit exceeded, or before any signature check the per-address or per-claimed-client pre-check limit / replay store or limiter unreachable (fail closed) |

mod access_token;
mod client;
mod config;
mod jwks;
mod jwt;
mod keys;
mod ratelimit;
mod registry;
mod replay;
mod scope;
mod token;

pub use access_token::{AccessClaims, AccessError, AccessVerifier, bearer_token};
pub use client::{AssertionError, ClientAssertion};
pub use config::{
    AuthConfig, CertThumbprint, ConfigError, SigningKeyConfig, SupplierConfig, SupplierStatus,
    SuppliersConfig, TokenPrecheck, default_token_rate_limit,
};
pub use keys::GatewayKeys;
pub use ratelimit::{
    MemoryRateLimiter, RateDecision, RateLimit, RateLimitExceeded, RateLimiter, RedisRateLimiter,
};
pub use registry::{
    ASSERTION_ALGORITHMS, ClientCertError, SupplierRegistry, SupplierSet, SupplierView,
};
pub use replay::{MemoryReplayStore, RedisReplayStore, ReplayStore};
pub use scope::{Permission, ScopeError, ScopeParseError, ScopeSet};
pub use token::{JWT_BEARER, OAuthError, TokenResponse, TokenService, smart_configuration};

/// A shared-state store (replay set, rate-limit buckets) failed; callers fail closed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or answered with an error.
    #[error("redis: {0}")]
    Redis(String),
    /// The in-memory store is full of unexpired entries.
    #[error("in-memory store is full ({0} entries)")]
    Full(usize),
    /// A lock was poisoned by a panic elsewhere.
    #[error("in-memory store lock poisoned")]
    Poisoned,
    /// The rate limit given is unusable.
    #[error("invalid rate limit: {0}")]
    InvalidLimit(&'static str),
}

impl StoreError {
    pub(crate) fn redis(e: redis::RedisError) -> Self {
        Self::Redis(e.to_string())
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
