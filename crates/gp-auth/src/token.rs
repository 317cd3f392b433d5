//! `POST /oauth2/token`: client credentials with a signed JWT client assertion
//! (SMART Backend Services / NHS API platform "signed JWT authentication").

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::access_token::{AccessTokenClaims, AccessVerifier};
use crate::config::{AuthConfig, SupplierStatus};
use crate::jwt::{self, shown};
use crate::keys::GatewayKeys;
use crate::ratelimit::{RateDecision, RateLimit, RateLimiter};
use crate::registry::{SupplierRegistry, assertion_algorithm};
use crate::replay::ReplayStore;
use crate::scope::ScopeSet;
use crate::unix_now;

/// The only accepted `client_assertion_type`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A successful token response (RFC 6749 §5.1). `Debug` hides the token.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    /// The access token (a JWT signed by the gateway).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Granted scopes, canonical SMART v2, space separated.
    pub scope: String,
    /// The supplier the token was issued to (for the audit trail; not in the body).
    #[serde(skip)]
    pub client_id: String,
    /// The token's `jti` (for the audit trail; not in the body).
    #[serde(skip)]
    pub token_id: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenResponse {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A refused token request, one variant per failed check. `Display` is the
/// `error_description`; it never contains the assertion or any key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The token endpoint was called with another method.
    #[error("use {allowed} for token requests")]
    MethodNotAllowed {
        /// The methods it answers, for the `Allow` header.
        allowed: String,
    },
    /// The request does not say it carries a form.
    #[error("token requests must be application/x-www-form-urlencoded")]
    NotAForm,
    /// The body could not be read: over the size cap, or cut short.
    #[error("{0}")]
    UnreadableBody(String),
    /// The body is not `application/x-www-form-urlencoded`.
    #[error("Request body is not valid application/x-www-form-urlencoded: {0}")]
    MalformedForm(&'static str),
    /// A parameter appears more than once (RFC 6749 §3.2).
    #[error("Duplicate '{0}' parameter")]
    DuplicateParameter(String),
    /// A required parameter is absent or empty.
    #[error("Missing '{0}' parameter")]
    MissingParameter(&'static str),
    /// `grant_type` is not `client_credentials`.
    #[error("Unsupported grant_type '{0}': only 'client_credentials' is supported")]
    UnsupportedGrantType(String),
    /// `client_assertion_type` is not the JWT bearer type.
    #[error(
        "Invalid 'client_assertion_type': must be 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'"
    )]
    WrongAssertionType,
    /// The assertion exceeds the size cap.
    #[error("client_assertion is {size} bytes; at most {max} bytes are accepted")]
    AssertionTooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The assertion is not a well-formed JWS.
    #[error("Malformed JWT in client_assertion: {0}")]
    MalformedJwt(String),
    /// No `alg` header.
    #[error("Missing 'alg' header in client_assertion JWT")]
    MissingAlg,
    /// `alg` not in RS512 / RS384 / ES384 (this is where `none` and HS* end).
    #[error(
        "Invalid 'alg' header in client_assertion JWT: '{0}' is not allowed; use RS512, RS384 or ES384"
    )]
    AlgorithmNotAllowed(String),
    /// No `kid` header.
    #[error("Missing 'kid' header in client_assertion JWT")]
    MissingKid,
    /// A required claim is absent.
    #[error("Missing '{0}' claim in client_assertion JWT")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or shape.
    #[error("Invalid '{claim}' claim in client_assertion JWT: {reason}")]
    InvalidClaim {
        /// Claim name.
        claim: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// `iss` and `sub` differ.
    #[error("Invalid 'iss'/'sub' claims in client_assertion JWT: both must be the client id")]
    IssSubMismatch,
    /// A `client_id` parameter that differs from `iss`.
    #[error("'client_id' parameter does not match the 'iss' claim of client_assertion")]
    ClientIdMismatch,
    /// `iss` names no registered client.
    #[error("Unknown client '{0}' in 'iss' claim of client_assertion JWT")]
    UnknownClient(String),
    /// The client is suspended.
    #[error("Client '{0}' is suspended")]
    SuspendedClient(String),
    /// The client is bound to a mutual-TLS certificate the connection did not present.
    #[error("{0}")]
    ClientCertificate(crate::registry::ClientCertError),
    /// `kid` names no key of this client.
    #[error(
        "Invalid 'kid' header in client_assertion JWT: no public key '{kid}' is registered for client '{client}'"
    )]
    UnknownKid {
        /// The client.
        client: String,
        /// The kid sent.
        kid: String,
    },
    /// The key cannot verify the header's `alg`.
    #[error(
        "Invalid 'alg' header in client_assertion JWT: key '{kid}' is registered for {expected}, not {alg}"
    )]
    KeyAlgorithmMismatch {
        /// The kid.
        kid: String,
        /// The header's alg.
        alg: String,
        /// What the key is for.
        expected: String,
    },
    /// The signature does not verify with the registered key.
    #[error("Invalid signature on client_assertion JWT")]
    BadSignature,
    /// `aud` is not the exact token URL.
    #[error("Invalid 'aud' claim in client_assertion JWT: must be '{0}'")]
    WrongAudience(String),
    /// Past `exp` (+ leeway).
    #[error("client_assertion JWT has expired ('exp' is in the past)")]
    Expired,
    /// `exp` too far ahead.
    #[error("Invalid 'exp' claim in client_assertion JWT: more than {0} seconds in the future")]
    LifetimeTooLong(u64),
    /// `nbf` or `iat` in the future (beyond leeway).
    #[error("Invalid '{0}' claim in client_assertion JWT: it is in the future")]
    NotYetValid(&'static str),
    /// The `jti` was used before (within the assertion's lifetime).
    #[error("Non-unique 'jti' claim in client_assertion JWT: this assertion was already used")]
    ReplayedJti,
    /// The `scope` parameter does not parse.
    #[error("Invalid 'scope' parameter: {0}")]
    BadScope(String),
    /// None of the requested scopes is allowed for this client.
    #[error("None of the requested scopes is allowed for client '{client}'; allowed: {allowed}")]
    NoScopeGranted {
        /// The client.
        client: String,
        /// Its allowed scopes.
        allowed: String,
    },
    /// The client's token request rate was exceeded.
    #[error(
        "Token request rate limit exceeded for client '{client}': retry after {retry_after_secs} s"
    )]
    RateLimited {
        /// The client.
        client: String,
        /// Seconds to wait.
        retry_after_secs: u64,
        /// The decision, for `Retry-After` / `RateLimit` headers.
        decision: RateDecision,
    },
    /// Too many token requests from one peer address, checked before any signature.
    #[error("Too many token requests from this address: retry after {retry_after_secs} s")]
    PeerRateLimited {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// Too many token requests naming one client, from anywhere, checked before any
    /// signature: the requests are not known to come from the client.
    #[error("Too many token requests naming client '{client}': retry after {retry_after_secs} s")]
    ClaimedClientRateLimited {
        /// The client named.
        client: String,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// The replay store or rate limiter is unreachable: fail closed.
    #[error("Token service temporarily unavailable ({0}); retry shortly")]
    StoreUnavailable(&'static str),
    /// Signing the access token failed.
    #[error("Token could not be issued because of a server error")]
    Signing,
}

impl OAuthError {
    /// The OAuth2 `error` code.
    pub fn code(&self) -> &'static str {
        use OAuthError::*;
        match self {
            MethodNotAllowed { .. }
            | NotAForm
            | UnreadableBody(_)
            | MalformedForm(_)
            | DuplicateParameter(_)
            | MissingParameter(_)
            | WrongAssertionType
            | AssertionTooLarge { .. }
            | MalformedJwt(_)
            | MissingAlg
            | AlgorithmNotAllowed(_)
            | MissingKid
            | MissingClaim(_)
            | InvalidClaim { .. } => "invalid_request",
            UnsupportedGrantType(_) => "unsupported_grant_type",
            IssSubMismatch
            | ClientIdMismatch
            | UnknownClient(_)
            | SuspendedClient(_)
            | ClientCertificate(_)
            | UnknownKid { .. }
            | KeyAlgorithmMismatch { .. }
            | BadSignature => "invalid_client",
            WrongAudience(_) | Expired | LifetimeTooLong(_) | NotYetValid(_) | ReplayedJti => {
                "invalid_grant"
            }
            BadScope(_) | NoScopeGranted { .. } => "invalid_scope",
            RateLimited { .. }
            | PeerRateLimited { .. }
            | ClaimedClientRateLimited { .. }
            | StoreUnavailable(_) => "temporarily_unavailable",
            Signing => "server_error",
        }
    }

    /// HTTP status: 401 for `invalid_client`, 405 for another method than the
    /// endpoint's, 429 when rate limited, 503 when a store is down, 500 on signing
    /// failure, otherwise 400.
    pub fn status(&self) -> u16 {
        match self {
            Self::MethodNotAllowed { .. } => 405,
            Self::RateLimited { .. }
            | Self::PeerRateLimited { .. }
            | Self::ClaimedClientRateLimited { .. } => 429,
            Self::StoreUnavailable(_) => 503,
            Self::Signing => 500,
            _ if self.code() == "invalid_client" => 401,
            _ => 400,
        }
    }

    /// Seconds for a `Retry-After` header, when the client should retry later.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited {
                retry_after_secs, ..
            }
            | Self::PeerRateLimited { retry_after_secs }
            | Self::ClaimedClientRateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::StoreUnavailable(_) => Some(1),
            _ => None,
        }
    }

    /// Response headers the refusal needs, as (name, value): `Allow` for another method,
    /// `Retry-After` when the client should come back later, and the client's own
    /// `RateLimit` and `RateLimit-Policy` when its budget refused it. The refusal knows
    /// them, so no call site has to remember to add them.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Self::MethodNotAllowed { allowed } = self {
            out.push(("allow", allowed.clone()));
        }
        if let Some(secs) = self.retry_after_secs() {
            out.push(("retry-after", secs.to_string()));
        }
        if let Self::RateLimited { decision, .. } = self {
            out.push(("ratelimit", decision.ratelimit_header()));
            out.push(("ratelimit-policy", decision.ratelimit_policy_header()));
        }
        out
    }

    /// True when the request was refused by a limit checked before its assertion was
    /// looked at: nothing says it came from the client it names, so it must not be
    /// recorded as that client's attempt.
    pub fn refused_before_authentication(&self) -> bool {
        matches!(
            self,
            Self::PeerRateLimited { .. } | Self::ClaimedClientRateLimited { .. }
        )
    }

    /// `{"error": ..., "error_description": ...}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"error": self.code(), "error_description": self.to_string()}))
            .unwrap_or_default()
    }
}

/// Issues access tokens for client-credentials requests.
pub struct TokenService {
    config: AuthConfig,
    keys: GatewayKeys,
    registry: SupplierRegistry,
    replay: Arc<dyn ReplayStore>,
    limiter: Option<Arc<dyn RateLimiter>>,
    /// Assertion signatures checked so far (the cost the pre-check limits bound).
    signature_checks: AtomicU64,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("token_url", &self.config.token_url)
            .field("keys", &self.keys)
            .finish()
    }
}

struct Form {
    grant_type: Option<String>,
    assertion_type: Option<String>,
    assertion: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
}

impl TokenService {
    /// A token service. `config` should have passed [`AuthConfig::validate`] (as
    /// [`GatewayKeys::load`] ensures).
    pub fn new(
        config: AuthConfig,
        keys: GatewayKeys,
        registry: SupplierRegistry,
        replay: Arc<dyn ReplayStore>,
    ) -> Self {
        Self {
            config,
            keys,
            registry,
            replay,
            limiter: None,
            signature_checks: AtomicU64::new(0),
        }
    }

    /// Applies each supplier's `token_rate_limit` (key `token:<client_id>`) once its
    /// assertion's signature has verified, so only the client itself can spend its budget;
    /// and, before anything in the assertion is checked, the `[auth] token_precheck`
    /// limits per peer address (`pre:peer:<address>`) and per claimed client
    /// (`pre:client:<client_id>`), so forged assertions cost neither a signature check
    /// nor the named client's audit trail once over them.
    pub fn with_rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// A verifier for the tokens this service issues.
    pub fn verifier(&self) -> AccessVerifier {
        AccessVerifier::new(&self.config, &self.keys)
    }

    /// The public JWKS of the gateway's signing keys.
    pub fn jwks(&self) -> Value {
        self.keys.jwks()
    }

    /// `/.well-known/smart-configuration` for this token URL, listing every active
    /// supplier's scopes as `scopes_supported`.
    pub fn smart_configuration(&self, jwks_uri: &str) -> Value {
        smart_configuration(
            &self.config.token_url,
            jwks_uri,
            &self.registry.snapshot().all_scopes(),
        )
    }

    /// Assertion signatures checked since start-up.
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    /// Handles a token request body (`application/x-www-form-urlencoded`) that came
    /// without a client certificate, from an unknown peer.
    pub async fn issue(&self, form_body: &[u8]) -> Result<TokenResponse, OAuthError> {
        self.issue_from(form_body, None, None).await
    }

    /// Handles a token request body. `client_cert` is the fingerprint of the client
    /// certificate its connection presented (mutual TLS), checked against the client's
    /// `client_cert_sha256` binding; `peer` is the address it came from (the client's
    /// own, not a trusted proxy's), charged to the per-peer pre-check limit.
    pub async fn issue_from(
        &self,
        form_body: &[u8],
        client_cert: Option<&crate::config::CertThumbprint>,
        peer: Option<IpAddr>,
    ) -> Result<TokenResponse, OAuthError> {
        // Before anything else: a request over these limits costs one limiter call.
        self.precheck(form_body, peer).await?;
        let form = parse_form(form_body)?;
        match form.grant_type.as_deref() {
            None => return Err(OAuthError::MissingParameter("grant_type")),
            Some("client_credentials") => {}
            Some(other) => return Err(OAuthError::UnsupportedGrantType(shown(other))),
        }
        match form.assertion_type.as_deref() {
            None => return Err(OAuthError::MissingParameter("client_assertion_type")),
            Some(JWT_BEARER) => {}
            Some(_) => return Err(OAuthError::WrongAssertionType),
        }
        let assertion = form
            .assertion
            .ok_or(OAuthError::MissingParameter("client_assertion"))?;
        if assertion.len() > self.config.max_assertion_bytes {
            return Err(OAuthError::AssertionTooLarge {
                size: assertion.len(),
                max: self.config.max_assertion_bytes,
            });
        }
        let raw = jwt::parse(&assertion).map_err(|e| OAuthError::MalformedJwt(e.describe()))?;

        // Header first: the algorithm is checked against the allow-list before any key
        // is looked at, so `none` and HS* (HMAC keyed with a public key) never get near
        // a verifier.
        let alg_name = match raw.header.get("alg") {
            None => return Err(OAuthError::MissingAlg),
            Some(Value::String(a)) => a.as_str(),
            Some(_) => return Err(OAuthError::AlgorithmNotAllowed("(not a string)".into())),
        };
        let alg = assertion_algorithm(alg_name)
            .ok_or_else(|| OAuthError::AlgorithmNotAllowed(shown(alg_name)))?;
        let kid = match raw.header.get("kid") {
            Some(Value::String(k)) if !k.is_empty() => k.as_str(),
            _ => return Err(OAuthError::MissingKid),
        };
        if raw.header.contains_key("crit") {
            return Err(OAuthError::MalformedJwt(
                "the 'crit' header names extensions this server does not support".into(),
            ));
        }

        // Who claims to be calling.
        let iss = string_claim(&raw.claims, "iss")?;
        let sub = string_claim(&raw.claims, "sub")?;
        if iss != sub {
            return Err(OAuthError::IssSubMismatch);
        }
        if let Some(client_id) = &form.client_id
            && client_id != iss
        {
            return Err(OAuthError::ClientIdMismatch);
        }
        let set = self.registry.snapshot();
        let supplier = set
            .get(iss)
            .ok_or_else(|| OAuthError::UnknownClient(shown(iss)))?;
        if supplier.status == SupplierStatus::Suspended {
            return Err(OAuthError::SuspendedClient(supplier.client_id.clone()));
        }
        // The certificate is part of client authentication when the client is bound.
        supplier
            .check_client_cert(client_cert)
            .map_err(OAuthError::ClientCertificate)?;
        let key = supplier
            .keys
            .get(kid)
            .ok_or_else(|| OAuthError::UnknownKid {
                client: supplier.client_id.clone(),
                kid: shown(kid),
            })?;
        if !key.kind.fits(alg) || key.alg.is_some_and(|a| a != alg) {
            let expected = match key.alg {
                Some(a) => format!("{a:?}"),
                None => key.kind.algorithms().to_owned(),
            };
            return Err(OAuthError::KeyAlgorithmMismatch {
                kid: shown(kid),
                alg: alg_name.to_owned(),
                expected,
            });
        }
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        if !key.verifies(alg, raw.message.as_bytes(), raw.signature) {
            return Err(OAuthError::BadSignature);
        }

        // Authentic: now whether it is valid here and now.
        let claims = &raw.claims;
        match claims.get("aud") {
            None => return Err(OAuthError::MissingClaim("aud")),
            Some(Value::String(a)) if *a == self.config.token_url => {}
            Some(Value::Array(a)) if a.len() == 1 && a[0] == self.config.token_url.as_str() => {}
            Some(_) => return Err(OAuthError::WrongAudience(self.config.token_url.clone())),
        }
        let now = unix_now();
        let leeway = self.config.clock_leeway_secs;
        let exp = time_claim(claims, "exp")?.ok_or(OAuthError::MissingClaim("exp"))?;
        if exp.saturating_add(leeway) < now {
            return Err(OAuthError::Expired);
        }
        let max_lifetime = self.config.assertion_max_lifetime_secs;
        if exp > now + max_lifetime + leeway {
            return Err(OAuthError::LifetimeTooLong(max_lifetime));
        }
        for name in ["nbf", "iat"] {
            if let Some(t) = time_claim(claims, name)?
                && t > now + leeway
            {
                return Err(OAuthError::NotYetValid(name));
            }
        }
        let jti = match claims.get("jti") {
            None => return Err(OAuthError::MissingClaim("jti")),
            Some(Value::String(j)) if !j.is_empty() && j.len() <= 256 => j.as_str(),
            Some(_) => {
                return Err(OAuthError::InvalidClaim {
                    claim: "jti",
                    reason: "must be a unique string of 1 to 256 characters, such as a UUID",
                });
            }
        };

        // Scopes: requested ∩ allowed; absent = everything allowed.
        let granted = match form.scope.as_deref().map(str::trim) {
            None | Some("") => supplier.scopes.clone(),
            Some(requested) => ScopeSet::parse(requested)
                .map_err(|e| OAuthError::BadScope(e.to_string()))?
                .intersect(&supplier.scopes),
        };
        if granted.is_empty() {
            return Err(OAuthError::NoScopeGranted {
                client: supplier.client_id.clone(),
                allowed: supplier.scopes.to_string(),
            });
        }

        if let Some(limiter) = &self.limiter {
            let decision = limited(
                limiter.as_ref(),
                &format!("token:{}", supplier.client_id),
                supplier.token_rate_limit,
            )
            .await?;
            if !decision.allowed {
                return Err(OAuthError::RateLimited {
                    client: supplier.client_id.clone(),
                    retry_after_secs: decision.retry_after_secs.max(1),
                    decision,
                });
            }
        }

        // Replay last, so a refused request does not burn its jti. Keyed per client;
        // hashed so key length does not depend on the caller. Kept until exp + leeway.
        let replay_key = format!(
            "{}:{}",
            supplier.client_id,
            hex(&Sha256::digest(jti.as_bytes()))
        );
        match self
            .replay
            .first_use(&replay_key, exp.saturating_add(leeway))
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(OAuthError::ReplayedJti),
            Err(e) => {
                tracing::error!(error = %e, "jti replay store unavailable; refusing token requests");
                return Err(OAuthError::StoreUnavailable("replay store unreachable"));
            }
        }

        let ttl = self.config.access_token_ttl_secs;
        let token_claims = AccessTokenClaims {
            iss: self.config.issuer.clone(),
            sub: supplier.client_id.clone(),
            client_id: supplier.client_id.clone(),
            aud: self.config.audience.clone(),
            exp: now + ttl,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: granted.to_string(),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.keys.active_kid().to_owned());
        let access_token = jsonwebtoken::encode(&header, &token_claims, self.keys.signing_key())
            .map_err(|e| {
                tracing::error!(error = %e, "access token signing failed");
                OAuthError::Signing
            })?;
        tracing::debug!(client_id = %supplier.client_id, scope = %token_claims.scope, "access token issued");
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            scope: token_claims.scope,
            client_id: token_claims.client_id,
            token_id: token_claims.jti,
        })
    }
}

impl TokenService {
    /// The registered client a token request's assertion names (`iss`, else `sub`),
    /// read without verifying anything, and that client's own token limit. `None` for a
    /// malformed request or a name not in the registry, so neither the limiter's keys
    /// nor the audit trail take strings of the caller's choosing.
    pub fn claimed_client(&self, form_body: &[u8]) -> Option<(String, RateLimit)> {
        let form = parse_form(form_body).ok()?;
        let payload = form.assertion?.split('.').nth(1)?.to_owned();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?)
                .ok()?;
        let named = ["iss", "sub"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(Value::as_str))?;
        let set = self.registry.snapshot();
        let supplier = set.get(named)?;
        Some((supplier.client_id.clone(), supplier.token_rate_limit))
    }

    /// The limits checked before any signature: per peer address first, so one
    /// flooding address cannot spend the budget of the client it names; then per
    /// claimed client, which bounds a flood spread over many addresses.
    async fn precheck(&self, form_body: &[u8], peer: Option<IpAddr>) -> Result<(), OAuthError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let limits = self.config.token_precheck;
        if let Some(peer) = peer {
            let decision = limited(
                limiter.as_ref(),
                &format!("pre:peer:{}", peer_key(peer)),
                limits.per_peer,
            )
            .await?;
            if !decision.allowed {
                tracing::warn!(%peer, "token requests from one address over the pre-check limit");
                return Err(OAuthError::PeerRateLimited {
                    retry_after_secs: decision.retry_after_secs.max(1),
                });
            }
        }
        if let Some((client, own)) = self.claimed_client(form_body) {
            let decision = limited(
                limiter.as_ref(),
                &format!("pre:client:{client}"),
                limits.per_client(own),
            )
            .await?;
            if !decision.allowed {
                tracing::warn!(claimed_client = %client, "token requests naming one client over the pre-check limit");
                return Err(OAuthError::ClaimedClientRateLimited {
                    client,
                    retry_after_secs: decision.retry_after_secs.max(1),
                });
            }
        }
        Ok(())
    }
}

/// One limiter check; an unreachable limiter refuses the request (fail closed).
async fn limited(
    limiter: &dyn RateLimiter,
    key: &str,
    limit: RateLimit,
) -> Result<RateDecision, OAuthError> {
    limiter.check(key, limit).await.map_err(|e| {
        tracing::error!(error = %e, "token rate limiter unavailable; refusing token requests");
        OAuthError::StoreUnavailable("rate limiter unreachable")
    })
}

/// The bucket a peer address is charged to: the address itself, or its /64 for IPv6,
/// since one IPv6 host is typically given a whole /64 to choose addresses from.
fn peer_key(peer: IpAddr) -> String {
    match peer {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// `/.well-known/smart-configuration` (SMART App Launch 2.x, backend services subset).
pub fn smart_configuration(token_url: &str, jwks_uri: &str, scopes_supported: &[String]) -> Value {
    json!({
        "token_endpoint": token_url,
        "jwks_uri": jwks_uri,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS512", "RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": scopes_supported,
        "capabilities": ["client-confidential-asymmetric"],
    })
}

fn string_claim<'a>(
    claims: &'a serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, OAuthError> {
    match claims.get(name) {
        None => Err(OAuthError::MissingClaim(name)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(OAuthError::InvalidClaim {
            claim: name,
            reason: "must be a non-empty string",
        }),
    }
}

fn time_claim(
    claims: &serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, OAuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(OAuthError::InvalidClaim {
            claim: name,
            reason: "must be a whole number of seconds since the Unix epoch",
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_form(body: &[u8]) -> Result<Form, OAuthError> {
    let text = std::str::from_utf8(body).map_err(|_| OAuthError::MalformedForm("not UTF-8"))?;
    let mut form = Form {
        grant_type: None,
        assertion_type: None,
        assertion: None,
        scope: None,
        client_id: None,
    };
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name)?;
        let value = percent_decode(value)?;
        let slot = match name.as_str() {
            "grant_type" => &mut form.grant_type,
            "client_assertion_type" => &mut form.assertion_type,
            "client_assertion" => &mut form.assertion,
            "scope" => &mut form.scope,
            "client_id" => &mut form.client_id,
            // RFC 6749 §3.2: unrecognised parameters are ignored.
            _ => continue,
        };
        if slot.is_some() {
            return Err(OAuthError::DuplicateParameter(name));
        }
        // Empty values count as absent (RFC 6749 §3.1).
        if !value.is_empty() {
            *slot = Some(value);
        }
    }
    Ok(form)
}

fn percent_decode(s: &str) -> Result<String, OAuthError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
                let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => return Err(OAuthError::MalformedForm("bad percent-encoding")),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| OAuthError::MalformedForm("percent-decoded value is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f =
            parse_form(b"grant_type=client_credentials&scope=system%2FPatient.rs+system/*.s&x=1")
                .unwrap();
        assert_eq!(f.grant_type.as_deref(), Some("client_credentials"));
        assert_eq!(f.scope.as_deref(), Some("system/Patient.rs system/*.s"));
        assert_eq!(
            parse_form(b"scope=a&scope=b").err(),
            Some(OAuthError::DuplicateParameter("scope".into()))
        );
        assert_eq!(
            parse_form(b"scope=%zz").err(),
            Some(OAuthError::MalformedForm("bad percent-encoding"))
        );
    }

    #[test]
    fn error_json_and_status() {
        let e = OAuthError::MissingKid;
        assert_eq!(e.status(), 400);
        let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"error":"invalid_request","error_description":"Missing 'kid' header in client_assertion JWT"})
        );
        assert_eq!(OAuthError::BadSignature.status(), 401);
        assert_eq!(OAuthError::StoreUnavailable("x").status(), 503);
    }

    #[tokio::test]
    async fn each_refusal_names_the_headers_its_answer_carries() {
        let header = |e: &OAuthError, name: &str| {
            e.headers()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
        };
        let wrong_method = OAuthError::MethodNotAllowed {
            allowed: "POST".into(),
        };
        assert_eq!(wrong_method.status(), 405);
        assert_eq!(wrong_method.code(), "invalid_request");
        assert_eq!(wrong_method.to_string(), "use POST for token requests");
        assert_eq!(header(&wrong_method, "allow").as_deref(), Some("POST"));
        assert_eq!(header(&wrong_method, "retry-after"), None);

        let peer = OAuthError::PeerRateLimited {
            retry_after_secs: 3,
        };
        assert_eq!(header(&peer, "retry-after").as_deref(), Some("3"));
        assert_eq!(header(&peer, "ratelimit"), None);
        let store = OAuthError::StoreUnavailable("redis");
        assert_eq!(header(&store, "retry-after").as_deref(), Some("1"));

        // The client's own budget refused it: its RateLimit state goes with the refusal.
        let limiter = crate::MemoryRateLimiter::default();
        let limit = crate::RateLimit {
            per_second: 0.5,
            burst: 1,
        };
        assert!(limiter.check("c", limit).await.unwrap().allowed);
        let decision = limiter.check("c", limit).await.unwrap();
        let limited = OAuthError::RateLimited {
            client: "demo-consult".into(),
            retry_after_secs: decision.retry_after_secs,
            decision,
        };
        assert_eq!(header(&limited, "retry-after"), Some("2".to_owned()));
        assert_eq!(
            header(&limited, "ratelimit"),
            Some(decision.ratelimit_header())
        );
        assert_eq!(
            header(&limited, "ratelimit-policy"),
            Some(decision.ratelimit_policy_header())
        );
        assert!(OAuthError::BadSignature.headers().is_empty());
    }

    #[test]
    fn peers_are_keyed_by_address_or_ipv6_64() {
        let key = |s: &str| peer_key(s.parse().unwrap());
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7", "IPv4-mapped IPv6");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }
}
