//! The gateway's own Ed25519 signing keys (sign access tokens, publish the JWKS).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::json;

use crate::config::{AuthConfig, ConfigError};

/// Loaded gateway keys: the active one signs, all of them verify (rotation by `kid`).
#[derive(Clone)]
pub struct GatewayKeys {
    active_kid: String,
    signing: Arc<EncodingKey>,
    verifying: Arc<HashMap<String, DecodingKey>>,
    /// `(kid, x)` of each key, in configuration order.
    public: Arc<Vec<(String, String)>>,
}

impl std::fmt::Debug for GatewayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.public.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("GatewayKeys")
            .field("active_kid", &self.active_kid)
            .field("kids", &kids)
            .finish()
    }
}

fn auth_err(problem: String) -> ConfigError {
    ConfigError::Auth {
        key: "signing_keys",
        problem,
    }
}

impl GatewayKeys {
    /// Validates `config` and reads its PEM files (relative paths against `base_dir`).
    pub fn load(config: &AuthConfig, base_dir: &Path) -> Result<Self, Vec<ConfigError>> {
        config.validate()?;
        let mut pems = Vec::new();
        for k in &config.signing_keys {
            let path = base_dir.join(&k.private_key_pem);
            let pem = std::fs::read(&path).map_err(|e| {
                vec![auth_err(format!(
                    "kid '{}': cannot read {}: {e}",
                    k.kid,
                    path.display()
                ))]
            })?;
            pems.push((k.kid.clone(), pem));
        }
        Self::from_pems(&config.active_kid, &pems).map_err(|e| vec![e])
    }

    /// Builds the keys from `(kid, PKCS#8 PEM)` pairs; `active_kid` must be among them.
    pub fn from_pems(active_kid: &str, pems: &[(String, Vec<u8>)]) -> Result<Self, ConfigError> {
        let mut signing = None;
        let mut verifying = HashMap::new();
        let mut public = Vec::new();
        for (kid, pem) in pems {
            let key = EncodingKey::from_ed_pem(pem).map_err(|e| {
                auth_err(format!(
                    "kid '{kid}' is not an Ed25519 PKCS#8 PEM private key: {e}"
                ))
            })?;
            let jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)
                .map_err(|e| auth_err(format!("kid '{kid}': cannot derive the public key: {e}")))?;
            let AlgorithmParameters::OctetKeyPair(params) = jwk.algorithm else {
                return Err(auth_err(format!("kid '{kid}' is not an Ed25519 key")));
            };
            let decoding = DecodingKey::from_ed_components(&params.x)
                .map_err(|e| auth_err(format!("kid '{kid}': bad public key: {e}")))?;
            if verifying.insert(kid.clone(), decoding).is_some() {
                return Err(auth_err(format!("kid '{kid}' appears twice")));
            }
            public.push((kid.clone(), params.x));
            if kid == active_kid {
                signing = Some(key);
            }
        }
        let signing = signing.ok_or_else(|| ConfigError::Auth {
            key: "active_kid",
            problem: format!("no signing key has kid '{active_kid}'"),
        })?;
        Ok(Self {
            active_kid: active_kid.to_owned(),
            signing: Arc::new(signing),
            verifying: Arc::new(verifying),
            public: Arc::new(public),
        })
    }

    /// The public JWKS (`{"keys":[{"kty":"OKP","crv":"Ed25519",...}]}`).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .public
            .iter()
            .map(|(kid, x)| {
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"})
            })
            .collect();
        json!({ "keys": keys })
    }

    pub(crate) fn active_kid(&self) -> &str {
        &self.active_kid
    }

    pub(crate) fn signing_key(&self) -> &EncodingKey {
        &self.signing
    }

    pub(crate) fn verifying_keys(&self) -> Arc<HashMap<String, DecodingKey>> {
        Arc::clone(&self.verifying)
    }
}
