//! Signing deliveries the Standard Webhooks way (standardwebhooks.com), with its
//! asymmetric scheme: headers `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1a,<base64 Ed25519 signature>` over `{id}.{timestamp}.{body}`.
//! The public key is in the gateway's JWKS (`/oauth2/jwks`) under its own `kid`, apart
//! from the access-token keys.

use base64::Engine;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// The delivery signing key.
pub struct Signer {
    kid: String,
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

/// The three Standard Webhooks headers of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub id: String,
    pub timestamp: i64,
    /// `v1a,<base64>`.
    pub signature: String,
}

impl Signer {
    /// Loads a PKCS#8 PEM Ed25519 private key. Errors never quote the key.
    pub fn from_pem(kid: &str, pem: &[u8]) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("holds no PEM private key: {e}"))?;
        let PrivateKeyDer::Pkcs8(der) = der else {
            return Err("is not a PKCS#8 private key (openssl genpkey -algorithm ed25519)".into());
        };
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map_err(|e| format!("is not an Ed25519 key: {e}"))?;
        Ok(Self {
            kid: kid.to_owned(),
            key,
        })
    }

    /// Signs one delivery of `body` under message id `id` at `timestamp`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Signed {
        let mut content = Vec::with_capacity(id.len() + 24 + body.len());
        content.extend_from_slice(id.as_bytes());
        content.push(b'.');
        content.extend_from_slice(timestamp.to_string().as_bytes());
        content.push(b'.');
        content.extend_from_slice(body);
        let sig = self.key.sign(&content);
        Signed {
            id: id.to_owned(),
            timestamp,
            signature: format!(
                "v1a,{}",
                base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
            ),
        }
    }

    /// The public key as a JWK (`OKP`/`Ed25519`), for the JWKS.
    pub fn jwk(&self) -> serde_json::Value {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.key.public_key());
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA",
            "use": "sig", "key_ops": ["verify"]
        })
    }

    /// The raw public key.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }
}

/// Checks a `webhook-signature` header (any of its space-separated `v1a,` entries) for
/// `id`, `timestamp` and `body` against an Ed25519 public key: what a receiver does.
pub fn verify(public_key: &[u8], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let content = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    let key = UnparsedPublicKey::new(&ED25519, public_key);
    header.split(' ').any(|entry| {
        entry
            .strip_prefix("v1a,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|sig| key.verify(&content, &sig).is_ok())
    })
}

/// Adds the delivery key to a JWKS document (`{"keys": [...]}`), as bytes.
pub fn with_key(jwks: &[u8], signer: &Signer) -> Vec<u8> {
    let mut doc: serde_json::Value =
        serde_json::from_slice(jwks).unwrap_or_else(|_| serde_json::json!({ "keys": [] }));
    if let Some(keys) = doc
        .get_mut("keys")
        .and_then(serde_json::Value::as_array_mut)
    {
        keys.push(signer.jwk());
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TEST-ONLY: the sandbox's delivery key.
    const PEM: &[u8] = include_bytes!("../../../../fixtures/sandbox/webhook-signing-ed25519.pem");

    #[test]
    fn a_signature_verifies_for_its_message_only() {
        let s = Signer::from_pem("webhook-1", PEM).unwrap();
        let body = br#"{"resourceType":"Bundle"}"#;
        let signed = s.sign("msg_1", 1_765_000_000, body);
        assert!(signed.signature.starts_with("v1a,"));
        let key = s.public_key();
        assert!(verify(key, "msg_1", "1765000000", body, &signed.signature));
        assert!(!verify(key, "msg_2", "1765000000", body, &signed.signature));
        assert!(!verify(key, "msg_1", "1765000001", body, &signed.signature));
        assert!(!verify(
            key,
            "msg_1",
            "1765000000",
            b"{}",
            &signed.signature
        ));
        let v1 = signed.signature.replace("v1a,", "v1,");
        assert!(
            !verify(key, "msg_1", "1765000000", body, &v1),
            "only v1a is Ed25519"
        );
        // Several signatures (key rotation): any one that verifies is enough.
        let both = format!("v1a,AAAA {}", signed.signature);
        assert!(verify(key, "msg_1", "1765000000", body, &both));
    }

    #[test]
    fn the_jwk_is_the_public_half_and_joins_the_jwks() {
        let s = Signer::from_pem("webhook-1", PEM).unwrap();
        let jwks = with_key(br#"{"keys":[{"kid":"gw-1"}]}"#, &s);
        let doc: serde_json::Value = serde_json::from_slice(&jwks).unwrap();
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1]["kid"], "webhook-1");
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(keys[1]["x"].as_str().unwrap())
            .unwrap();
        assert_eq!(x, s.public_key());
        assert!(keys[1].get("d").is_none(), "never the private key");
    }

    #[test]
    fn keys_that_are_not_ed25519_pkcs8_are_refused_without_quoting_them() {
        assert!(Signer::from_pem("k", b"not a key").is_err());
        let e = Signer::from_pem(
            "k",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(!e.contains("AAAA"), "{e}");
    }
}
