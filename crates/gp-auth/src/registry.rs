//! The supplier registry: compiled supplier entries, swappable at runtime.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};

use gp_fhir::OdsCode;

use crate::access_token::{AccessClaims, AccessError};
use crate::config::{
    CertThumbprint, ConfigError, SupplierConfig, SupplierStatus, SuppliersConfig, supplier_err,
};
use crate::ratelimit::RateLimit;
use crate::scope::{Permission, ScopeError, ScopeSet};

pub use crate::jwks::ASSERTION_ALGORITHMS;
pub(crate) use crate::jwks::{SupplierKey, assertion_algorithm, parse_jwks};

/// A compiled supplier entry.
pub(crate) struct Supplier {
    pub(crate) client_id: String,
    pub(crate) name: String,
    /// Its own ODS code: the booking organisation of its appointments.
    pub(crate) ods_code: Option<OdsCode>,
    pub(crate) status: SupplierStatus,
    pub(crate) operator: bool,
    pub(crate) keys: HashMap<String, SupplierKey>,
    pub(crate) scopes: ScopeSet,
    pub(crate) practices: HashSet<OdsCode>,
    pub(crate) rate_limit: RateLimit,
    pub(crate) token_rate_limit: RateLimit,
    /// The mutual-TLS client certificate it must call with, when bound.
    pub(crate) client_cert: Option<CertThumbprint>,
}

impl Supplier {
    /// Checks the connection's client certificate against the supplier's binding; a
    /// supplier without one may call with any certificate, or none.
    pub(crate) fn check_client_cert(
        &self,
        presented: Option<&CertThumbprint>,
    ) -> Result<(), ClientCertError> {
        match (&self.client_cert, presented) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(ClientCertError::Missing(self.client_id.clone())),
            (Some(bound), Some(p)) if bound == p => Ok(()),
            (Some(_), Some(_)) => Err(ClientCertError::Mismatch(self.client_id.clone())),
        }
    }
}

/// A supplier bound to a client certificate called over a connection without that
/// certificate (RFC 8705 semantics: refused as unauthenticated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientCertError {
    /// No client certificate was presented on the connection.
    #[error("supplier '{0}' is bound to a client certificate: call over mutual TLS presenting it")]
    Missing(String),
    /// A certificate was presented, but not the one registered for the supplier.
    #[error("the client certificate presented is not the one registered for supplier '{0}'")]
    Mismatch(String),
}

impl gp_fhir::FhirError for ClientCertError {
    fn status(&self) -> u16 {
        401
    }
    fn spine_code(&self) -> gp_fhir::SpineCode {
        gp_fhir::SpineCode::AccessDenied
    }
    fn issue_type(&self) -> gp_fhir::IssueType {
        gp_fhir::IssueType::Security
    }
    /// RFC 6750: the token alone is not enough, so it is what failed.
    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![("www-authenticate", "Bearer error=\"invalid_token\"".into())]
    }
}

/// An immutable, validated set of suppliers: what a [`SupplierRegistry`] serves.
pub struct SupplierSet {
    suppliers: HashMap<String, Arc<Supplier>>,
}

impl std::fmt::Debug for SupplierSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<_> = self.suppliers.keys().collect();
        ids.sort();
        f.debug_struct("SupplierSet")
            .field("suppliers", &ids)
            .finish()
    }
}

impl SupplierSet {
    /// Validates `config`, reads `jwks_file`s (relative paths against `base_dir`) and
    /// compiles the suppliers. Every problem found is returned, each naming supplier and key.
    pub fn build(config: &SuppliersConfig, base_dir: &Path) -> Result<Self, Vec<ConfigError>> {
        config.validate()?;
        let mut errors = Vec::new();
        let mut suppliers = HashMap::new();
        for s in &config.suppliers {
            match compile(config, s, base_dir) {
                Ok(sup) => {
                    suppliers.insert(s.client_id.clone(), Arc::new(sup));
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Self { suppliers })
        } else {
            Err(errors)
        }
    }

    /// An empty set (no supplier can get a token).
    pub fn empty() -> Self {
        Self {
            suppliers: HashMap::new(),
        }
    }

    /// The display name of supplier `client_id` (as registered), if known.
    pub fn name_of(&self, client_id: &str) -> Option<&str> {
        self.suppliers.get(client_id).map(|s| s.name.as_str())
    }

    /// Number of suppliers.
    pub fn len(&self) -> usize {
        self.suppliers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.suppliers.is_empty()
    }

    /// Union of every active supplier's allowed scopes (for `scopes_supported`).
    pub fn all_scopes(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .suppliers
            .values()
            .filter(|s| s.status == SupplierStatus::Active)
            .flat_map(|s| {
                s.scopes
                    .to_string()
                    .split(' ')
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter(|s| !s.is_empty())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    pub(crate) fn get(&self, client_id: &str) -> Option<&Arc<Supplier>> {
        self.suppliers.get(client_id)
    }
}

fn compile(
    config: &SuppliersConfig,
    s: &SupplierConfig,
    base_dir: &Path,
) -> Result<Supplier, ConfigError> {
    let id = s.client_id.as_str();
    let keys = match (&s.jwks, &s.jwks_file) {
        (Some(inline), _) => parse_jwks(inline).map_err(|p| supplier_err(id, "jwks", p))?,
        (None, Some(path)) => {
            let full = base_dir.join(path);
            let text = std::fs::read_to_string(&full).map_err(|e| {
                supplier_err(
                    id,
                    "jwks_file",
                    format!("cannot read {}: {e}", full.display()),
                )
            })?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                supplier_err(
                    id,
                    "jwks_file",
                    format!("{} is not JSON: {e}", full.display()),
                )
            })?;
            parse_jwks(&json)
                .map_err(|p| supplier_err(id, "jwks_file", format!("{}: {p}", full.display())))?
        }
        (None, None) => return Err(supplier_err(id, "jwks", "missing")),
    };
    let scopes = ScopeSet::parse_all(s.scopes.iter().map(String::as_str))
        .map_err(|e| supplier_err(id, "scopes", e.to_string()))?;
    let mut practices = HashSet::new();
    for p in &s.practices {
        let codes: Vec<&String> = match p.strip_prefix("group:") {
            Some(group) => config
                .practice_groups
                .get(group)
                .map(|g| g.iter().collect())
                .unwrap_or_default(),
            None => vec![p],
        };
        for code in codes {
            practices.insert(
                OdsCode::parse(code).map_err(|e| supplier_err(id, "practices", e.to_string()))?,
            );
        }
    }
    let client_cert = s
        .client_cert_sha256
        .as_deref()
        .map(CertThumbprint::parse)
        .transpose()
        .map_err(|p| supplier_err(id, "client_cert_sha256", p))?;
    let ods_code = s
        .ods_code
        .as_deref()
        .map(OdsCode::parse)
        .transpose()
        .map_err(|e| supplier_err(id, "ods_code", e.to_string()))?;
    Ok(Supplier {
        client_cert,
        client_id: s.client_id.clone(),
        name: s.name.clone(),
        ods_code,
        status: s.status,
        operator: s.operator,
        keys,
        scopes,
        practices,
        rate_limit: s.rate_limit,
        token_rate_limit: s.token_rate_limit,
    })
}

/// The live supplier registry: a cheap, cloneable handle whose [`SupplierSet`] can be
/// swapped at runtime ([`replace`](Self::replace)); readers hold the lock only to clone an `Arc`.
#[derive(Debug, Clone)]
pub struct SupplierRegistry {
    current: Arc<RwLock<Arc<SupplierSet>>>,
}

impl SupplierRegistry {
    /// A registry serving `set`.
    pub fn new(set: SupplierSet) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(set))),
        }
    }

    /// Swaps in a new set; requests already holding the old snapshot finish with it.
    pub fn replace(&self, set: SupplierSet) {
        let new = Arc::new(set);
        match self.current.write() {
            Ok(mut guard) => *guard = new,
            // A writer never panics while holding the lock; recover the guard regardless.
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// The current set.
    pub fn snapshot(&self) -> Arc<SupplierSet> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Checks a verified access token's supplier against the *current* registry, so a
    /// suspension or removal applies at once, even to cached tokens. The returned view's
    /// scopes are the token's scopes narrowed to what the supplier is allowed now.
    pub fn authorise(&self, claims: &AccessClaims) -> Result<SupplierView, AccessError> {
        let set = self.snapshot();
        let supplier = set
            .get(&claims.client_id)
            .ok_or_else(|| AccessError::UnknownSupplier(claims.client_id.clone()))?;
        if supplier.status == SupplierStatus::Suspended {
            return Err(AccessError::SupplierSuspended(claims.client_id.clone()));
        }
        Ok(SupplierView {
            granted: claims.scopes.intersect(&supplier.scopes),
            supplier: Arc::clone(supplier),
        })
    }
}

impl SupplierRegistry {
    /// The supplier `client_id` as the *current* registry holds it, with every scope it
    /// is registered for: what background work done on its behalf (a notification
    /// delivered to it) may release. A suspended or removed supplier is refused, as its
    /// requests would be.
    pub fn view_of(&self, client_id: &str) -> Result<SupplierView, AccessError> {
        let set = self.snapshot();
        let supplier = set
            .get(client_id)
            .ok_or_else(|| AccessError::UnknownSupplier(client_id.to_owned()))?;
        if supplier.status == SupplierStatus::Suspended {
            return Err(AccessError::SupplierSuspended(client_id.to_owned()));
        }
        Ok(SupplierView {
            granted: supplier.scopes.clone(),
            supplier: Arc::clone(supplier),
        })
    }
}

/// An authorised supplier, as the request pipeline sees it.
#[derive(Clone)]
pub struct SupplierView {
    supplier: Arc<Supplier>,
    granted: ScopeSet,
}

impl std::fmt::Debug for SupplierView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupplierView")
            .field("client_id", &self.supplier.client_id)
            .field("granted", &self.granted.to_string())
            .finish()
    }
}

impl SupplierView {
    /// OAuth2 client id.
    pub fn client_id(&self) -> &str {
        &self.supplier.client_id
    }

    /// An operator client (may search every supplier's audit trail).
    pub fn is_operator(&self) -> bool {
        self.supplier.operator
    }

    /// Display name.
    pub fn name(&self) -> &str {
        &self.supplier.name
    }

    /// The supplier's own ODS code, as the registry holds it (the booking organisation
    /// of the appointments it books); `None`: it has none and cannot book.
    pub fn ods_code(&self) -> Option<&OdsCode> {
        self.supplier.ods_code.as_ref()
    }

    /// Scopes this request may use (token scopes ∩ currently allowed scopes).
    pub fn scopes(&self) -> &ScopeSet {
        &self.granted
    }

    /// Fails with a 403 naming the missing scope unless `interaction` on `resource_type`
    /// is granted.
    pub fn require(&self, resource_type: &str, interaction: Permission) -> Result<(), ScopeError> {
        self.granted.require(resource_type, interaction)
    }

    /// Whether the supplier may reach practice `ods` (groups expanded).
    pub fn paired_with(&self, ods: &OdsCode) -> bool {
        self.supplier.practices.contains(ods)
    }

    /// Like [`paired_with`](Self::paired_with), as a 403 error.
    pub fn require_paired(&self, ods: &OdsCode) -> Result<(), AccessError> {
        if self.paired_with(ods) {
            Ok(())
        } else {
            Err(AccessError::NotPaired {
                client_id: self.supplier.client_id.clone(),
                ods: ods.to_string(),
            })
        }
    }

    /// The FHIR API rate limit for this supplier.
    pub fn rate_limit(&self) -> RateLimit {
        self.supplier.rate_limit
    }

    /// The token endpoint rate limit for this supplier.
    pub fn token_rate_limit(&self) -> RateLimit {
        self.supplier.token_rate_limit
    }

    /// Fails with a 401 when the supplier is bound to a client certificate and the
    /// request's connection did not present it (`presented`: the connection's
    /// certificate fingerprint, `None` without mutual TLS). Checked against the current
    /// registry, so a new binding applies to tokens already issued.
    pub fn require_client_cert(
        &self,
        presented: Option<&CertThumbprint>,
    ) -> Result<(), ClientCertError> {
        self.supplier.check_client_cert(presented)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::EncodingKey;
    use jsonwebtoken::{Algorithm, DecodingKey};

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sandbox");
        std::fs::read(path.join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
    }

    fn key(supplier: &str) -> SupplierKey {
        let jwks = serde_json::from_slice(&fixture(&format!("{supplier}.jwks.json"))).unwrap();
        parse_jwks(&jwks).unwrap().into_values().next().unwrap()
    }

    fn sign(supplier: &str, alg: Algorithm, message: &[u8]) -> String {
        let pem = fixture(&format!("{supplier}.private.pem"));
        jsonwebtoken::crypto::sign(message, &EncodingKey::from_rsa_pem(&pem).unwrap(), alg).unwrap()
    }

    /// ring's verdicts on RSA assertions, against jsonwebtoken's own (`rust_crypto`) on the
    /// same signatures: both accept exactly the genuine ones.
    #[test]
    fn rsa_signatures_are_checked_as_jsonwebtoken_checks_them() {
        let consult = key("demo-consult");
        let public = DecodingKey::from_rsa_pem(&fixture("demo-consult.public.pem")).unwrap();
        let message = b"eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJkZW1vLWNvbnN1bHQifQ";
        for alg in [Algorithm::RS384, Algorithm::RS512] {
            let good = sign("demo-consult", alg, message);
            let mut flipped = good.clone().into_bytes();
            let last = flipped.len() - 2;
            flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
            let flipped = String::from_utf8(flipped).unwrap();
            let other_alg = if alg == Algorithm::RS384 {
                Algorithm::RS512
            } else {
                Algorithm::RS384
            };
            let cases: [(&str, &[u8], Algorithm, &str, bool); 7] = [
                ("genuine", message, alg, &good, true),
                (
                    "other message",
                    b"eyJhbGciOiJSUzM4NCJ9.e30",
                    alg,
                    &good,
                    false,
                ),
                ("altered signature", message, alg, &flipped, false),
                ("other alg", message, other_alg, &good, false),
                ("not base64url", message, alg, "not+base64/", false),
                ("empty signature", message, alg, "", false),
                (
                    "another supplier's key",
                    message,
                    alg,
                    &sign("demo-booking", alg, message),
                    false,
                ),
            ];
            for (what, msg, check_alg, sig, want) in cases {
                assert_eq!(
                    consult.verifies(check_alg, msg, sig),
                    want,
                    "{alg:?}: {what}"
                );
                let theirs = jsonwebtoken::crypto::verify(sig, msg, &public, check_alg);
                assert_eq!(
                    theirs.unwrap_or(false),
                    want,
                    "{alg:?}: {what} (jsonwebtoken)"
                );
            }
        }
        // A modulus written with a leading zero octet is the same key.
        let good = sign("demo-consult", Algorithm::RS384, message);
        let mut jwks: serde_json::Value =
            serde_json::from_slice(&fixture("demo-consult.jwks.json")).unwrap();
        let n = jwks["keys"][0]["n"].as_str().unwrap();
        let mut padded = vec![0u8];
        padded.extend(URL_SAFE_NO_PAD.decode(n).unwrap());
        jwks["keys"][0]["n"] = URL_SAFE_NO_PAD.encode(&padded).into();
        let padded_key = parse_jwks(&jwks).unwrap().into_values().next().unwrap();
        assert!(padded_key.verifies(Algorithm::RS384, message, &good));
        // An RSA key never verifies for an algorithm of another family.
        for alg in [
            Algorithm::ES384,
            Algorithm::PS384,
            Algorithm::HS384,
            Algorithm::EdDSA,
        ] {
            assert!(!consult.verifies(alg, message, &good), "{alg:?}");
        }
    }
}
