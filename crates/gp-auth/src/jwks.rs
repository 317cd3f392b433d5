//! Suppliers' public keys: a JWKS read into keys by `kid`, each checked for what it may
//! verify (RSA of 2048 bits or more for RS384/RS512, EC P-384 for ES384), and the
//! signature check itself. A leaf: the config checks and the registry both use it.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use ring::signature::RsaPublicKeyComponents;

/// Client assertion algorithms accepted (SMART Backend Services; NHS uses RS512).
pub const ASSERTION_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::RS512, Algorithm::RS384, Algorithm::ES384];

/// The allowed assertion algorithm named `name` (exact, case-sensitive as RFC 7518).
pub(crate) fn assertion_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS512" => Some(Algorithm::RS512),
        "RS384" => Some(Algorithm::RS384),
        "ES384" => Some(Algorithm::ES384),
        _ => None,
    }
}

/// Key type of a supplier public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// RSA, for RS384 / RS512.
    Rsa,
    /// EC on P-384, for ES384.
    EcP384,
}

impl KeyKind {
    pub(crate) fn fits(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Self::Rsa, Algorithm::RS384 | Algorithm::RS512) | (Self::EcP384, Algorithm::ES384)
        )
    }

    pub(crate) fn algorithms(self) -> &'static str {
        match self {
            Self::Rsa => "RS384/RS512",
            Self::EcP384 => "ES384",
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Rsa => "an RSA key",
            Self::EcP384 => "an EC P-384 key",
        }
    }
}

/// One registered supplier public key.
#[derive(Clone)]
pub(crate) struct SupplierKey {
    pub(crate) kind: KeyKind,
    /// The JWK's `alg`, when it pins one.
    pub(crate) alg: Option<Algorithm>,
    key: PublicKey,
}

/// The key in the form its signatures are checked with.
#[derive(Clone)]
enum PublicKey {
    /// Checked with ring: its RSA verification takes about a tenth of the instructions of
    /// the pure-Rust RSA behind jsonwebtoken's `rust_crypto` backend, which was most of a
    /// token request's cost.
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// Checked with jsonwebtoken.
    Ec(DecodingKey),
}

impl SupplierKey {
    /// Whether `signature` (base64url, a JWT's third part) is this key's signature of
    /// `message` (the JWT's `header.payload`) with `alg`; false for an `alg` the key
    /// cannot use.
    pub(crate) fn verifies(&self, alg: Algorithm, message: &[u8], signature: &str) -> bool {
        match &self.key {
            PublicKey::Rsa(rsa) => {
                let params = match alg {
                    Algorithm::RS384 => &ring::signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &ring::signature::RSA_PKCS1_2048_8192_SHA512,
                    _ => return false,
                };
                URL_SAFE_NO_PAD
                    .decode(signature)
                    .is_ok_and(|sig| rsa.verify(params, message, &sig).is_ok())
            }
            PublicKey::Ec(key) => {
                matches!(
                    jsonwebtoken::crypto::verify(signature, message, key, alg),
                    Ok(true)
                )
            }
        }
    }
}

/// Parses a JWKS into keys by `kid`; errors are phrased for a config file.
pub(crate) fn parse_jwks(jwks: &serde_json::Value) -> Result<HashMap<String, SupplierKey>, String> {
    let keys = jwks
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("must be a JWKS object with a 'keys' array")?;
    if keys.is_empty() {
        return Err("the JWKS has no keys".into());
    }
    let mut out = HashMap::new();
    for (i, jwk) in keys.iter().enumerate() {
        let field = |name: &str| jwk.get(name).and_then(|v| v.as_str());
        let kid = field("kid")
            .filter(|k| !k.is_empty())
            .ok_or_else(|| format!("keys[{i}] has no 'kid' (needed to select the key)"))?;
        if jwk.get("d").is_some() {
            return Err(format!(
                "key '{kid}' contains private key material ('d'): register only the public key"
            ));
        }
        if let Some(usage) = field("use")
            && usage != "sig"
        {
            return Err(format!("key '{kid}' has use '{usage}'; it must be 'sig'"));
        }
        let alg = match field("alg") {
            None => None,
            Some(a) => Some(assertion_algorithm(a).ok_or_else(|| {
                format!("key '{kid}' has alg '{a}'; allowed: RS512, RS384, ES384")
            })?),
        };
        let b64 = |name: &str| -> Result<Vec<u8>, String> {
            let v = field(name).ok_or_else(|| format!("key '{kid}' has no '{name}'"))?;
            URL_SAFE_NO_PAD
                .decode(v)
                .map_err(|_| format!("key '{kid}': '{name}' is not base64url"))
        };
        let (kind, key) = match field("kty") {
            Some("RSA") => {
                // Big-endian integers; a leading zero octet (which RFC 7518 forbids but some
                // tools write) is dropped, as ring reads only the minimal form.
                let unpadded = |v: Vec<u8>| match v.iter().position(|&b| b != 0) {
                    Some(first) => v[first..].to_vec(),
                    None => Vec::new(),
                };
                let n = unpadded(b64("n")?);
                let e = unpadded(b64("e")?);
                if n.len() < 256 {
                    return Err(format!(
                        "key '{kid}' is a {}-bit RSA key; at least 2048 bits are required",
                        n.len() * 8
                    ));
                }
                (
                    KeyKind::Rsa,
                    PublicKey::Rsa(RsaPublicKeyComponents { n, e }),
                )
            }
            Some("EC") => {
                if field("crv") != Some("P-384") {
                    return Err(format!("key '{kid}' must use curve P-384 (for ES384)"));
                }
                let (x, y) = (b64("x")?, b64("y")?);
                if x.len() != 48 || y.len() != 48 {
                    return Err(format!("key '{kid}': P-384 coordinates must be 48 bytes"));
                }
                let mut point = Vec::with_capacity(97);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (
                    KeyKind::EcP384,
                    PublicKey::Ec(DecodingKey::from_ec_der(&point)),
                )
            }
            Some(other) => {
                return Err(format!(
                    "key '{kid}' has kty '{other}'; allowed: RSA, EC (P-384)"
                ));
            }
            None => return Err(format!("key '{kid}' has no 'kty'")),
        };
        if let Some(a) = alg
            && !kind.fits(a)
        {
            return Err(format!(
                "key '{kid}' declares alg {a:?}, which {} cannot use",
                kind.describe()
            ));
        }
        if out
            .insert(kid.to_owned(), SupplierKey { kind, alg, key })
            .is_some()
        {
            return Err(format!("kid '{kid}' appears twice"));
        }
    }
    Ok(out)
}
