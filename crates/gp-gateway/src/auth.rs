//! Supplier access wired into the gateway: the token endpoints and the per-request
//! authenticate → authorise → rate-limit step. The rules live in gp-auth; this module
//! owns the HTTP side and the validated-token cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gp_auth::{
    AccessClaims, AccessVerifier, GatewayKeys, MemoryRateLimiter, MemoryReplayStore, OAuthError,
    RateDecision, RateLimiter, RedisRateLimiter, RedisReplayStore, ReplayStore, SupplierRegistry,
    SupplierSet, TokenService,
};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use sha2::{Digest, Sha256};

use crate::config::{LoadedConfig, StateBackend};
use crate::respond::json;

/// Most validated tokens kept in the cache.
const TOKEN_CACHE_ENTRIES: u64 = 100_000;
/// Largest token request body read.
pub const MAX_TOKEN_REQUEST_BYTES: usize = 16 * 1024;

/// Why supplier access could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("[auth]: {0}")]
    Config(String),
    #[error("[state]: {0}")]
    State(String),
}

/// Supplier access state.
pub struct AuthState {
    pub tokens: TokenService,
    pub verifier: AccessVerifier,
    pub registry: SupplierRegistry,
    pub limiter: Arc<dyn RateLimiter>,
    /// SHA-256 of a token → its verified claims: the hot path skips signature checks.
    pub cache: moka::future::Cache<[u8; 32], AccessClaims>,
    pub jwks: Bytes,
    pub smart_configuration: Bytes,
    /// Where the supplier registry came from, for reloads.
    pub suppliers_path: Option<PathBuf>,
    pub dir: PathBuf,
}

fn joined(errors: Vec<gp_auth::ConfigError>) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl AuthState {
    /// Loads keys and suppliers and connects the shared-state stores.
    pub async fn build(
        cfg: &LoadedConfig,
        keys: Option<GatewayKeys>,
    ) -> Result<Self, AuthSetupError> {
        let g = &cfg.gateway;
        let auth = g
            .auth
            .clone()
            .ok_or_else(|| AuthSetupError::Config("missing".into()))?;
        let keys = match keys {
            Some(k) => k,
            None => {
                GatewayKeys::load(&auth, &cfg.dir).map_err(|e| AuthSetupError::Config(joined(e)))?
            }
        };
        let set = SupplierSet::build(&cfg.suppliers, &cfg.dir)
            .map_err(|e| AuthSetupError::Config(joined(e)))?;
        let registry = SupplierRegistry::new(set);
        let (limiter, replay): (Arc<dyn RateLimiter>, Arc<dyn ReplayStore>) = match g.state.backend
        {
            StateBackend::Memory => (
                Arc::new(MemoryRateLimiter::default()),
                Arc::new(MemoryReplayStore::default()),
            ),
            StateBackend::Redis => {
                let url = g
                    .state
                    .redis_connection_url(&cfg.dir)
                    .map_err(AuthSetupError::State)?;
                let prefix = &g.state.key_prefix;
                let limiter = RedisRateLimiter::connect(&url, format!("{prefix}rl:"))
                    .await
                    .map_err(|e| AuthSetupError::State(e.to_string()))?;
                let replay = RedisReplayStore::connect(&url, format!("{prefix}jti:"))
                    .await
                    .map_err(|e| AuthSetupError::State(e.to_string()))?;
                (Arc::new(limiter), Arc::new(replay))
            }
        };
        let ttl = Duration::from_secs(auth.access_token_ttl_secs.max(1));
        let jwks_uri = format!("{}{}", g.server.public_base_url, crate::routes::JWKS_PATH);
        let tokens = TokenService::new(auth, keys, registry.clone(), replay)
            .with_rate_limiter(limiter.clone());
        let jwks = Bytes::from(serde_json::to_vec(&tokens.jwks()).unwrap_or_default());
        let smart_configuration = Bytes::from(
            serde_json::to_vec(&tokens.smart_configuration(&jwks_uri)).unwrap_or_default(),
        );
        Ok(Self {
            verifier: tokens.verifier(),
            tokens,
            registry,
            limiter,
            cache: moka::future::Cache::builder()
                .max_capacity(TOKEN_CACHE_ENTRIES)
                .time_to_live(ttl)
                .build(),
            jwks,
            smart_configuration,
            suppliers_path: cfg.suppliers_path.clone(),
            dir: cfg.dir.clone(),
        })
    }

    /// Verifies a bearer token, from the cache when it was verified before.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
    ) -> Result<AccessClaims, gp_auth::AccessError> {
        let token = gp_auth::bearer_token(authorization)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.cache.get(&key).await {
            if claims.expires_at > unix_now() {
                return Ok(claims);
            }
            self.cache.invalidate(&key).await;
        }
        let claims = self.verifier.verify_token(token)?;
        self.cache.insert(key, claims.clone()).await;
        Ok(claims)
    }

    /// Re-reads the supplier registry file and swaps it in. On any error the running
    /// registry is kept. Returns the number of suppliers now registered.
    pub fn reload_suppliers(&self) -> Result<usize, String> {
        let path = self
            .suppliers_path
            .as_ref()
            .ok_or("no suppliers_file configured")?;
        self.reload_from(path)
    }

    /// Swaps in the supplier registry read from `path` (relative JWKS paths resolve
    /// against the config directory). On any error the running registry is kept.
    pub fn reload_from(&self, path: &std::path::Path) -> Result<usize, String> {
        let cfg = crate::config::load_suppliers(path).map_err(|e| e.to_string())?;
        cfg.validate().map_err(joined)?;
        let set = SupplierSet::build(&cfg, &self.dir).map_err(joined)?;
        let n = set.len();
        self.registry.replace(set);
        Ok(n)
    }

    /// `POST /oauth2/token`. `client_cert` is the fingerprint of the client certificate
    /// the request's connection presented (mutual TLS), for suppliers bound to one;
    /// `peer` the address the request came from (the client's, not a trusted proxy's).
    /// `facts` gets what the token row records: the registered client the assertion
    /// names (issued or refused), the issued token's id, or the OAuth2 error code.
    pub async fn token_endpoint(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        client_cert: Option<&gp_auth::CertThumbprint>,
        peer: Option<std::net::IpAddr>,
        facts: &crate::context::RequestFacts,
    ) -> Response<Full<Bytes>> {
        let media = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != "application/x-www-form-urlencoded" {
            return refusal(&OAuthError::NotAForm);
        }
        // Read without verifying anything: only so that the row of a refused request (bad
        // signature, expired assertion…) shows which registered supplier it claimed to be.
        let claimed = self.tokens.claimed_client(body);
        match self.tokens.issue_from(body, client_cert, peer).await {
            Ok(ok) => {
                facts.caller(&ok.client_id, &ok.token_id);
                tracing::info!(scope = %ok.scope, "access token issued");
                json(StatusCode::OK, ok.to_json())
            }
            Err(e) => {
                // A request refused before its assertion was looked at is not the named
                // supplier's attempt: attributed, a flood of forgeries naming a supplier
                // would read as that supplier's behaviour in its assessment.
                if let Some((client, _)) = claimed.filter(|_| !e.refused_before_authentication()) {
                    facts.client(&client);
                }
                facts.outcome(e.code());
                tracing::info!(
                    error = e.code(),
                    status = e.status(),
                    "token request refused"
                );
                refusal(&e)
            }
        }
    }
}

/// Adds the IETF `RateLimit` headers describing a decision.
pub fn rate_limit_headers(resp_headers: &mut http::HeaderMap, decision: &RateDecision) {
    if let Ok(v) = HeaderValue::from_str(&decision.ratelimit_header()) {
        resp_headers.insert("ratelimit", v);
    }
    if let Ok(v) = HeaderValue::from_str(&decision.ratelimit_policy_header()) {
        resp_headers.insert("ratelimit-policy", v);
    }
    if let Some(v) = decision
        .retry_after()
        .and_then(|r| HeaderValue::from_str(&r).ok())
    {
        resp_headers.insert(header::RETRY_AFTER, v);
    }
}

/// The one place a refused token request becomes an answer: the OAuth2 JSON error
/// (RFC 6749 §5.2), with the headers the refusal names ([`OAuthError::headers`]).
pub fn refusal(e: &OAuthError) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = json(status, e.to_json());
    crate::respond::add_headers(&mut resp, e.headers());
    resp
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(resp: &'a Response<Full<Bytes>>, name: &str) -> Option<&'a str> {
        resp.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn refused_token_requests_carry_the_headers_their_error_names_with_no_call_site_adding_them() {
        let wrong_method = refusal(&OAuthError::MethodNotAllowed {
            allowed: "POST".into(),
        });
        assert_eq!(wrong_method.status(), 405);
        assert_eq!(header(&wrong_method, "allow"), Some("POST"));
        assert_eq!(
            header(&wrong_method, "content-type"),
            Some("application/json")
        );

        let flooded = refusal(&OAuthError::PeerRateLimited {
            retry_after_secs: 2,
        });
        assert_eq!(flooded.status(), 429);
        assert_eq!(header(&flooded, "retry-after"), Some("2"));
        assert_eq!(header(&flooded, "allow"), None);

        let down = refusal(&OAuthError::StoreUnavailable("replay store"));
        assert_eq!(down.status(), 503);
        assert_eq!(header(&down, "retry-after"), Some("1"));

        let bad = refusal(&OAuthError::NotAForm);
        assert_eq!(bad.status(), 400);
        assert!(bad.headers().get("retry-after").is_none());
    }
}
