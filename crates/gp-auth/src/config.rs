//! Configuration types (serde, `deny_unknown_fields`) and their pure validation.
//!
//! `validate()` needs no files, network or secrets, so `check-config` can run in CI; the
//! `build`/`load` steps that read key files live in [`crate::registry`] and [`crate::keys`].

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ratelimit::RateLimit;
use crate::scope::ScopeSet;

/// The supplier registry file: practice groups and suppliers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppliersConfig {
    /// Named lists of practice ODS codes, referenced from `practices` as `group:NAME`.
    #[serde(default)]
    pub practice_groups: BTreeMap<String, Vec<String>>,
    /// The accredited suppliers.
    #[serde(default)]
    pub suppliers: Vec<SupplierConfig>,
}

/// Whether a supplier may obtain and use tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SupplierStatus {
    /// Normal operation.
    Active,
    /// No new tokens, and tokens already issued are refused at once.
    Suspended,
}

/// One accredited supplier application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupplierConfig {
    /// OAuth2 client id: the `iss`/`sub` of its client assertions.
    pub client_id: String,
    /// Human-readable name (logs, audit, the booking organisation's name).
    pub name: String,
    /// The supplier's own ODS code: the booking organisation recorded in the GP system
    /// with every appointment it books (a supplier without one cannot book).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ods_code: Option<String>,
    /// `active` or `suspended`.
    pub status: SupplierStatus,
    /// An operator client (the service desk) rather than a supplier: may search every
    /// supplier's audit trail. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub operator: bool,
    /// The supplier's public JWKS inline (`{"keys":[...]}`); exclusive with `jwks_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Path of the supplier's public JWKS file, relative to the registry file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// SMART `system/` scopes the supplier may be granted.
    pub scopes: Vec<String>,
    /// Practices it may reach: ODS codes or `group:NAME`.
    pub practices: Vec<String>,
    /// FHIR API rate limit.
    pub rate_limit: RateLimit,
    /// Token endpoint rate limit.
    #[serde(default = "default_token_rate_limit")]
    pub token_rate_limit: RateLimit,
    /// SHA-256 fingerprint of the client certificate the supplier must present over
    /// mutual TLS (64 hex digits; `openssl x509 -fingerprint -sha256`'s colon form is
    /// accepted too). When set, its token requests and API calls over a connection
    /// without that certificate are refused, as the NHS Spine requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_sha256: Option<String>,
}

/// The SHA-256 fingerprint of a DER X.509 certificate: how a supplier's mutual-TLS
/// client certificate is bound to its registry entry (RFC 8705's `x5t#S256`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertThumbprint([u8; 32]);

impl CertThumbprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(der).into())
    }

    /// Parses 64 hex digits, optionally separated by `:` in pairs; case-insensitive.
    pub fn parse(s: &str) -> Result<Self, String> {
        let hex: Vec<u8> = s.trim().bytes().filter(|b| *b != b':').collect();
        if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(
                "must be the certificate's SHA-256 fingerprint: 64 hex digits (colons allowed)"
                    .into(),
            );
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out[i] = digit(pair[0]) << 4 | digit(pair[1]);
        }
        Ok(Self(out))
    }
}

impl std::fmt::Display for CertThumbprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for CertThumbprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertThumbprint({self})")
    }
}

/// Default token endpoint limit: a token lives 5 minutes, so one a second is generous.
pub fn default_token_rate_limit() -> RateLimit {
    RateLimit {
        per_second: 1.0,
        burst: 5,
    }
}

/// The gateway's own token settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The exact token endpoint URL suppliers put in their assertions' `aud`.
    pub token_url: String,
    /// `iss` of the access tokens the gateway issues (its base URL).
    pub issuer: String,
    /// `aud` of the access tokens (the FHIR base URL).
    pub audience: String,
    /// Access token lifetime. 15 minutes by default: long enough that a client library
    /// refreshing a few minutes before expiry (medplum: 300 s) holds a usable token, and
    /// within the NHS pattern's short-lived tokens.
    #[serde(default = "default_access_token_ttl")]
    pub access_token_ttl_secs: u64,
    /// Gateway signing keys (Ed25519); all verify, `active_kid` signs.
    pub signing_keys: Vec<SigningKeyConfig>,
    /// The `kid` of the key that signs new tokens.
    pub active_kid: String,
    /// Longest accepted client assertion lifetime (`exp` − now).
    #[serde(default = "default_300")]
    pub assertion_max_lifetime_secs: u64,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway")]
    pub clock_leeway_secs: u64,
    /// Largest accepted `client_assertion`, in bytes.
    #[serde(default = "default_max_assertion")]
    pub max_assertion_bytes: usize,
    /// Limits on token requests applied before any signature is checked.
    #[serde(default)]
    pub token_precheck: TokenPrecheck,
}

/// Limits a token request meets before its assertion's signature is checked, keyed by
/// what the request says rather than what it proves: its peer address and the client
/// it claims to be. They keep a flood of forged assertions from costing a signature
/// check each and from filling a real supplier's audit trail.
///
/// The per-client limit is a trade-off: anyone can spend it by naming the client, so
/// it is a multiple of the client's own `token_rate_limit` (an honest client meets its
/// own limit first) and the per-peer limit is the main defence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPrecheck {
    /// Token requests from one peer address (one IPv6 /64), whoever they claim to be.
    #[serde(default = "default_precheck_per_peer")]
    pub per_peer: RateLimit,
    /// Token requests naming one registered client, from anywhere: this many times
    /// that client's `token_rate_limit` (both rate and burst), 2 to 1000.
    #[serde(default = "default_precheck_client_factor")]
    pub per_client_factor: u32,
}

impl Default for TokenPrecheck {
    fn default() -> Self {
        Self {
            per_peer: default_precheck_per_peer(),
            per_client_factor: default_precheck_client_factor(),
        }
    }
}

impl TokenPrecheck {
    /// The pre-check limit of a client whose own token limit is `own`.
    pub fn per_client(&self, own: RateLimit) -> RateLimit {
        let factor = self.per_client_factor.max(1);
        RateLimit {
            per_second: own.per_second * f64::from(factor),
            burst: own.burst.saturating_mul(factor),
        }
    }
}

/// Default per-peer pre-check: a token lives minutes, so 2 a second from one address
/// (20 at once) leaves room for hundreds of instances behind one NAT, while one address
/// spends at most a fifth of a claimed client's default pre-check burst.
fn default_precheck_per_peer() -> RateLimit {
    RateLimit {
        per_second: 2.0,
        burst: 20,
    }
}

/// Default per-client pre-check: twenty times the client's own token limit (20 a second,
/// 100 at once for the default), so locking a client out takes a flood from more than
/// ten addresses at their per-peer rate.
fn default_precheck_client_factor() -> u32 {
    20
}

/// One gateway signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// Key id, published in the JWKS and put in each token's header.
    pub kid: String,
    /// PKCS#8 PEM file of the Ed25519 private key (relative to the config directory).
    pub private_key_pem: PathBuf,
}

fn default_300() -> u64 {
    300
}
fn default_access_token_ttl() -> u64 {
    900
}
fn default_leeway() -> u64 {
    30
}
fn default_max_assertion() -> usize {
    8 * 1024
}

/// A configuration problem, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A supplier entry is wrong.
    #[error("supplier '{supplier}', key '{key}': {problem}")]
    Supplier {
        /// Its client id (or `#<index>` when the id itself is missing).
        supplier: String,
        /// The offending key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// Two suppliers share a client id.
    #[error("supplier '{0}' is defined more than once (client_id must be unique)")]
    DuplicateClientId(String),
    /// A practice group is wrong.
    #[error("practice_groups.{group}: {problem}")]
    PracticeGroup {
        /// Group name.
        group: String,
        /// What is wrong.
        problem: String,
    },
    /// The auth settings are wrong.
    #[error("auth, key '{key}': {problem}")]
    Auth {
        /// The offending key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

pub(crate) fn supplier_err(
    supplier: &str,
    key: &'static str,
    problem: impl Into<String>,
) -> ConfigError {
    ConfigError::Supplier {
        supplier: supplier.to_owned(),
        key,
        problem: problem.into(),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl SuppliersConfig {
    /// Checks everything that needs no file: ids, groups, ODS codes, scopes, limits and
    /// inline JWKS. `jwks_file` contents are checked by [`crate::SupplierSet::build`].
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        for (group, codes) in &self.practice_groups {
            if !valid_name(group) {
                errors.push(ConfigError::PracticeGroup {
                    group: group.clone(),
                    problem: "group names use letters, digits, '-', '_' and '.'".into(),
                });
            }
            for code in codes {
                if let Err(e) = gp_fhir::OdsCode::parse(code) {
                    errors.push(ConfigError::PracticeGroup {
                        group: group.clone(),
                        problem: e.to_string(),
                    });
                }
            }
        }
        let mut ids = HashSet::new();
        let mut bound = HashSet::new();
        for (i, s) in self.suppliers.iter().enumerate() {
            let id = if s.client_id.is_empty() {
                format!("#{i}")
            } else {
                s.client_id.clone()
            };
            if !valid_name(&s.client_id) {
                errors.push(supplier_err(
                    &id,
                    "client_id",
                    "must be 1 to 128 letters, digits, '-', '_' or '.'",
                ));
            } else if !ids.insert(s.client_id.as_str()) {
                errors.push(ConfigError::DuplicateClientId(s.client_id.clone()));
            }
            if s.name.trim().is_empty() {
                errors.push(supplier_err(&id, "name", "must not be empty"));
            }
            if let Some(Err(e)) = s.ods_code.as_deref().map(gp_fhir::OdsCode::parse) {
                errors.push(supplier_err(&id, "ods_code", e.to_string()));
            }
            match (&s.jwks, &s.jwks_file) {
                (Some(_), Some(_)) => errors.push(supplier_err(
                    &id,
                    "jwks",
                    "give either 'jwks' or 'jwks_file', not both",
                )),
                (None, None) => errors.push(supplier_err(
                    &id,
                    "jwks",
                    "missing: give the public keys inline ('jwks') or as a file ('jwks_file')",
                )),
                (Some(inline), None) => {
                    if let Err(problem) = crate::jwks::parse_jwks(inline) {
                        errors.push(supplier_err(&id, "jwks", problem));
                    }
                }
                (None, Some(path)) => {
                    if path.as_os_str().is_empty() {
                        errors.push(supplier_err(&id, "jwks_file", "must not be empty"));
                    }
                }
            }
            if let Err(e) = ScopeSet::parse_all(s.scopes.iter().map(String::as_str)) {
                errors.push(supplier_err(&id, "scopes", e.to_string()));
            }
            // An operator client reads no patient data, so it may be paired with no practice.
            if s.practices.is_empty() && !s.operator {
                errors.push(supplier_err(
                    &id,
                    "practices",
                    "is empty: list ODS codes or 'group:NAME' the supplier may reach",
                ));
            }
            for p in &s.practices {
                if let Some(group) = p.strip_prefix("group:") {
                    if !self.practice_groups.contains_key(group) {
                        errors.push(supplier_err(
                            &id,
                            "practices",
                            format!("unknown practice group '{group}' (not in practice_groups)"),
                        ));
                    }
                } else if let Err(e) = gp_fhir::OdsCode::parse(p) {
                    errors.push(supplier_err(&id, "practices", e.to_string()));
                }
            }
            if let Some(problem) = s.rate_limit.problem() {
                errors.push(supplier_err(&id, "rate_limit", problem));
            }
            if let Some(problem) = s.token_rate_limit.problem() {
                errors.push(supplier_err(&id, "token_rate_limit", problem));
            }
            if let Some(fingerprint) = &s.client_cert_sha256 {
                match CertThumbprint::parse(fingerprint) {
                    Err(problem) => errors.push(supplier_err(&id, "client_cert_sha256", problem)),
                    // One certificate identifies one supplier.
                    Ok(t) if !bound.insert(t) => errors.push(supplier_err(
                        &id,
                        "client_cert_sha256",
                        "is already bound to another supplier",
                    )),
                    Ok(_) => {}
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl AuthConfig {
    /// Checks the settings without reading the key files.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut err = |key, problem: &str| {
            errors.push(ConfigError::Auth {
                key,
                problem: problem.to_owned(),
            })
        };
        for (key, url) in [
            ("token_url", &self.token_url),
            ("issuer", &self.issuer),
            ("audience", &self.audience),
        ] {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.contains('#') || url.contains(char::is_whitespace) {
                err(
                    key,
                    "must be an absolute http(s) URL without fragment or spaces",
                );
            }
        }
        if !(1..=3600).contains(&self.access_token_ttl_secs) {
            err("access_token_ttl_secs", "must be between 1 and 3600");
        }
        if !(1..=3600).contains(&self.assertion_max_lifetime_secs) {
            err("assertion_max_lifetime_secs", "must be between 1 and 3600");
        }
        if self.clock_leeway_secs > 300 {
            err("clock_leeway_secs", "must be at most 300");
        }
        if !(512..=65536).contains(&self.max_assertion_bytes) {
            err("max_assertion_bytes", "must be between 512 and 65536");
        }
        if let Some(problem) = self.token_precheck.per_peer.problem() {
            err("token_precheck.per_peer", problem);
        }
        // Below 2 an honest client would meet the pre-check (which anyone can spend)
        // before its own limit.
        if !(2..=1000).contains(&self.token_precheck.per_client_factor) {
            err(
                "token_precheck.per_client_factor",
                "must be between 2 and 1000",
            );
        }
        if self.signing_keys.is_empty() {
            err("signing_keys", "at least one signing key is needed");
        }
        let mut kids = HashSet::new();
        for k in &self.signing_keys {
            if !valid_name(&k.kid) {
                err(
                    "signing_keys",
                    "each kid must be 1 to 128 letters, digits, '-', '_' or '.'",
                );
            } else if !kids.insert(k.kid.as_str()) {
                err("signing_keys", "kids must be unique");
            }
        }
        if !kids.contains(self.active_kid.as_str()) {
            err("active_kid", "must be the kid of one of signing_keys");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supplier() -> SupplierConfig {
        SupplierConfig {
            client_id: "acme".into(),
            name: "Acme".into(),
            ods_code: None,
            status: SupplierStatus::Active,
            operator: false,
            jwks: None,
            jwks_file: Some("acme.jwks.json".into()),
            scopes: vec!["system/Patient.rs".into()],
            practices: vec!["group:north".into(), "B82617".into()],
            rate_limit: RateLimit {
                per_second: 5.0,
                burst: 10,
            },
            token_rate_limit: default_token_rate_limit(),
            client_cert_sha256: None,
        }
    }

    #[test]
    fn client_certificate_bindings_are_fingerprints_bound_once() {
        let hex = "AB".repeat(32);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(
            CertThumbprint::parse(&hex).unwrap(),
            CertThumbprint::parse(&colons).unwrap()
        );
        assert_eq!(
            CertThumbprint::parse(&hex).unwrap().to_string(),
            "ab".repeat(32)
        );
        let mut a = supplier();
        a.client_cert_sha256 = Some(hex.clone());
        let mut b = supplier();
        b.client_id = "other".into();
        b.practices = vec!["B82617".into()];
        b.client_cert_sha256 = Some(colons);
        let mut c = supplier();
        c.client_id = "short".into();
        c.practices = vec!["B82617".into()];
        c.client_cert_sha256 = Some("abc123".into());
        let mut groups = BTreeMap::new();
        groups.insert("north".to_owned(), vec!["B82617".to_owned()]);
        let cfg = SuppliersConfig {
            practice_groups: groups,
            suppliers: vec![a, b, c],
        };
        let errors: Vec<String> = cfg
            .validate()
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errors,
            vec![
                "supplier 'other', key 'client_cert_sha256': is already bound to another supplier",
                "supplier 'short', key 'client_cert_sha256': must be the certificate's SHA-256 fingerprint: 64 hex digits (colons allowed)",
            ]
        );
        assert!(CertThumbprint::parse(&"g".repeat(64)).is_err());
    }

    #[test]
    fn errors_name_the_supplier_and_key() {
        let mut bad = supplier();
        bad.scopes = vec!["patient/Patient.rs".into()];
        bad.practices = vec!["group:nowhere".into(), "B8".into()];
        bad.jwks = Some(serde_json::json!({"keys": []}));
        let cfg = SuppliersConfig {
            practice_groups: BTreeMap::new(),
            suppliers: vec![supplier(), bad],
        };
        let errors: Vec<String> = cfg
            .validate()
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(errors.contains(
            &"supplier 'acme' is defined more than once (client_id must be unique)".to_string()
        ));
        assert!(errors.contains(
            &"supplier 'acme', key 'jwks': give either 'jwks' or 'jwks_file', not both".to_string()
        ));
        assert!(errors.contains(&"supplier 'acme', key 'practices': unknown practice group 'nowhere' (not in practice_groups)".to_string()));
        assert!(errors.contains(&"supplier 'acme', key 'practices': ODS code 'B8' must be 3 to 10 letters and digits".to_string()));
        assert!(errors.iter().any(|e| e.starts_with("supplier 'acme', key 'scopes': scope 'patient/Patient.rs'")));
    }

    #[test]
    fn toml_shape_denies_unknown_keys() {
        let err = toml_like(
            r#"{"suppliers":[{"client_id":"a","name":"A","status":"active","jwks_file":"x","scopes":[],"practices":[],"rate_limit":{"per_second":1,"burst":1},"colour":"red"}]}"#,
        );
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    fn toml_like(json: &str) -> String {
        serde_json::from_str::<SuppliersConfig>(json)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn auth_config_checks_active_kid_and_ranges() {
        let cfg = AuthConfig {
            token_url: "https://gw.example/oauth2/token".into(),
            issuer: "https://gw.example".into(),
            audience: "ftp://gw.example/FHIR/R4".into(),
            access_token_ttl_secs: 0,
            signing_keys: vec![SigningKeyConfig {
                kid: "k1".into(),
                private_key_pem: "k1.pem".into(),
            }],
            active_kid: "k2".into(),
            assertion_max_lifetime_secs: 300,
            clock_leeway_secs: 30,
            max_assertion_bytes: 8192,
            token_precheck: TokenPrecheck {
                per_peer: RateLimit {
                    per_second: 0.0,
                    burst: 1,
                },
                per_client_factor: 1,
            },
        };
        let errors: Vec<String> = cfg
            .validate()
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errors,
            vec![
                "auth, key 'audience': must be an absolute http(s) URL without fragment or spaces",
                "auth, key 'access_token_ttl_secs': must be between 1 and 3600",
                "auth, key 'token_precheck.per_peer': per_second must be a positive number",
                "auth, key 'token_precheck.per_client_factor': must be between 2 and 1000",
                "auth, key 'active_kid': must be the kid of one of signing_keys",
            ]
        );
    }

    #[test]
    fn access_tokens_live_fifteen_minutes_unless_configured() {
        let minimal = serde_json::json!({
            "token_url": "https://gw.example/oauth2/token",
            "issuer": "https://gw.example",
            "audience": "https://gw.example/FHIR/R4",
            "signing_keys": [{"kid": "k1", "private_key_pem": "k1.pem"}],
            "active_kid": "k1",
        });
        let cfg: AuthConfig = serde_json::from_value(minimal.clone()).unwrap();
        assert_eq!(cfg.access_token_ttl_secs, 900);
        let mut set = minimal;
        set["access_token_ttl_secs"] = 600.into();
        let cfg: AuthConfig = serde_json::from_value(set).unwrap();
        assert_eq!(cfg.access_token_ttl_secs, 600);
    }
}
