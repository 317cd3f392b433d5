//! Shared test support: the sandbox fixtures, a token service over them, and helpers
//! that sign client assertions and access tokens the way a supplier (or an attacker) would.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gp_auth::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const TOKEN_URL: &str = "https://gw.test/oauth2/token";
pub const ISSUER: &str = "https://gw.test";
pub const AUDIENCE: &str = "https://gw.test/FHIR/R4";

pub fn sandbox() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sandbox")
}

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(sandbox().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn suppliers_config() -> SuppliersConfig {
    let text = String::from_utf8(read("suppliers.toml")).unwrap();
    toml::from_str(&text).expect("fixtures/sandbox/suppliers.toml parses")
}

pub fn auth_config() -> AuthConfig {
    toml::from_str(&format!(
        r#"
        token_url = "{TOKEN_URL}"
        issuer = "{ISSUER}"
        audience = "{AUDIENCE}"
        active_kid = "gw-1"
        signing_keys = [{{ kid = "gw-1", private_key_pem = "gateway-signing-ed25519.pem" }}]
        "#
    ))
    .unwrap()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub struct Harness {
    pub tokens: TokenService,
    pub registry: SupplierRegistry,
    pub verifier: AccessVerifier,
}

pub fn harness() -> Harness {
    harness_with(suppliers_config(), Arc::new(MemoryReplayStore::default()))
}

pub fn harness_with(suppliers: SuppliersConfig, replay: Arc<dyn ReplayStore>) -> Harness {
    let cfg = auth_config();
    let keys = GatewayKeys::load(&cfg, &sandbox()).unwrap();
    let registry = SupplierRegistry::new(SupplierSet::build(&suppliers, &sandbox()).unwrap());
    let tokens = TokenService::new(cfg, keys, registry.clone(), replay);
    let verifier = tokens.verifier();
    Harness {
        tokens,
        registry,
        verifier,
    }
}

/// The three demo suppliers: (client id, kid, alg, private key file).
pub const BOOKING: (&str, &str, Algorithm, &str) = (
    "demo-booking",
    "demo-booking-2025-01",
    Algorithm::RS512,
    "demo-booking.private.pem",
);
pub const MONITORING: (&str, &str, Algorithm, &str) = (
    "demo-monitoring",
    "demo-monitoring-2025-01",
    Algorithm::ES384,
    "demo-monitoring.private.pem",
);
pub const CONSULT: (&str, &str, Algorithm, &str) = (
    "demo-consult",
    "demo-consult-2025-01",
    Algorithm::RS384,
    "demo-consult.private.pem",
);

pub fn encoding_key(alg: Algorithm, file: &str) -> EncodingKey {
    let pem = read(file);
    match alg {
        Algorithm::ES384 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    }
}

/// Well-formed assertion claims for `client`.
pub fn claims(client: &str) -> Value {
    let now = now();
    json!({
        "iss": client, "sub": client, "aud": TOKEN_URL,
        "exp": now + 120, "iat": now, "jti": uuid::Uuid::new_v4().to_string(),
    })
}

pub fn sign(supplier: (&str, &str, Algorithm, &str), claims: &Value) -> String {
    let (_, kid, alg, file) = supplier;
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &encoding_key(alg, file)).unwrap()
}

/// A valid assertion for one of the demo suppliers.
pub fn assertion(supplier: (&str, &str, Algorithm, &str)) -> String {
    sign(supplier, &claims(supplier.0))
}

/// Builds a JWT from raw parts, unsigned unless `signature` is given.
pub fn raw_jwt(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        signature
    )
}

fn enc(s: &str) -> String {
    s.replace('%', "%25")
        .replace('/', "%2F")
        .replace(' ', "+")
        .replace('&', "%26")
        .replace('=', "%3D")
}

/// A token request body.
pub fn form(assertion: &str, scope: Option<&str>) -> Vec<u8> {
    let mut body = format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={}",
        enc(JWT_BEARER),
        assertion
    );
    if let Some(s) = scope {
        body.push_str(&format!("&scope={}", enc(s)));
    }
    body.into_bytes()
}

/// Asserts a refusal's OAuth2 error code, description and status, and that the JSON body
/// carries exactly those.
pub fn assert_refused(err: &OAuthError, code: &str, description: &str, status: u16) {
    assert_eq!(err.code(), code, "code of: {err}");
    assert_eq!(err.to_string(), description);
    assert_eq!(err.status(), status, "status of: {err}");
    let body: Value = serde_json::from_slice(&err.to_json()).unwrap();
    assert_eq!(
        body,
        json!({"error": code, "error_description": description})
    );
}
