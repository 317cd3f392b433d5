//! Shared support for the fuzz targets: the sandbox fixtures, a token service over the
//! demo suppliers, and signing helpers so the fuzzer also reaches the checks that run
//! only after a signature has verified (claims, times, scopes).

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use gp_auth::{
    AccessVerifier, AuthConfig, GatewayKeys, ReplayStore, StoreError, SupplierRegistry,
    SupplierSet, SuppliersConfig, TokenService,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

/// The token URL (`aud` of client assertions) of the fuzzed token service.
pub const TOKEN_URL: &str = "https://gw.fuzz/oauth2/token";
/// Issuer and audience of the access tokens it issues.
pub const ISSUER: &str = "https://gw.fuzz";
pub const AUDIENCE: &str = "https://gw.fuzz/FHIR/R4";
/// The demo supplier whose key signs fuzzed assertions: (client id, kid, alg, key file).
pub const SIGNER: (&str, &str, Algorithm, &str) = (
    "demo-monitoring",
    "demo-monitoring-2025-01",
    Algorithm::ES384,
    "demo-monitoring.private.pem",
);

/// `fixtures/sandbox`, where the demo suppliers' registry and keys live.
pub fn sandbox_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/sandbox")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(sandbox_dir().join(name))
        .unwrap_or_else(|e| panic!("fixtures/sandbox/{name}: {e}"))
}

/// A replay store that has never seen any `jti`: replay is not what is fuzzed, and a
/// real store would fill up over millions of runs.
struct NeverSeen;

#[async_trait::async_trait]
impl ReplayStore for NeverSeen {
    async fn first_use(&self, _key: &str, _expires_at_unix: u64) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// The gateway's token service over the sandbox's demo suppliers, and a runtime to
/// drive it.
pub struct Auth {
    pub tokens: TokenService,
    pub verifier: AccessVerifier,
    pub runtime: tokio::runtime::Runtime,
    assertion_key: EncodingKey,
    gateway_key: EncodingKey,
}

/// Built once per fuzzing process (key parsing is slow).
pub static AUTH: LazyLock<Auth> = LazyLock::new(|| {
    let cfg: AuthConfig = toml::from_str(&format!(
        r#"
        token_url = "{TOKEN_URL}"
        issuer = "{ISSUER}"
        audience = "{AUDIENCE}"
        active_kid = "gw-1"
        signing_keys = [{{ kid = "gw-1", private_key_pem = "gateway-signing-ed25519.pem" }}]
        "#
    ))
    .expect("auth config parses");
    let suppliers: SuppliersConfig =
        toml::from_str(&String::from_utf8_lossy(&fixture("suppliers.toml")))
            .expect("fixtures/sandbox/suppliers.toml parses");
    let keys = GatewayKeys::load(&cfg, &sandbox_dir()).expect("gateway keys load");
    let registry = SupplierRegistry::new(
        SupplierSet::build(&suppliers, &sandbox_dir()).expect("demo suppliers build"),
    );
    let tokens = TokenService::new(cfg, keys, registry, Arc::new(NeverSeen));
    let verifier = tokens.verifier();
    Auth {
        tokens,
        verifier,
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime"),
        assertion_key: EncodingKey::from_ec_pem(&fixture(SIGNER.3)).expect("ES384 key"),
        gateway_key: EncodingKey::from_ed_pem(&fixture("gateway-signing-ed25519.pem"))
            .expect("Ed25519 key"),
    }
});

impl Auth {
    /// `claims` signed as the demo supplier [`SIGNER`] would sign a client assertion.
    pub fn sign_assertion(&self, claims: &Map<String, Value>) -> String {
        let mut header = Header::new(SIGNER.2);
        header.kid = Some(SIGNER.1.to_owned());
        jsonwebtoken::encode(&header, claims, &self.assertion_key).expect("ES384 signs")
    }

    /// `claims` signed with the gateway's own access-token key.
    pub fn sign_access_token(&self, claims: &Map<String, Value>) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("gw-1".to_owned());
        jsonwebtoken::encode(&header, claims, &self.gateway_key).expect("EdDSA signs")
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Seeds cannot hold a fixed `exp` (it would be expired by the next run), so small
/// whole numbers in `exp`, `nbf` and `iat` are read as offsets from now; anything else
/// (large, negative beyond a day, fractional, not a number) reaches the parser as is.
pub fn times_from_now(claims: &mut Map<String, Value>) {
    let now = unix_now();
    for name in ["exp", "nbf", "iat"] {
        if let Some(v) = claims.get_mut(name)
            && let Some(offset) = v.as_i64()
            && (-86_400..1_000_000_000).contains(&offset)
        {
            *v = Value::from(now.saturating_add(offset));
        }
    }
}

/// Splits a fuzz input into a mode byte and the rest.
pub fn mode(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(m, rest)| (*m, rest))
}
