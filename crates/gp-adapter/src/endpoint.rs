//! The settings every adapter has for reaching its GP system's native API (base URL,
//! timeouts, body cap, the CA bundle for `https://`, and credentials): defaults, limits
//! and pure validation, shared so each vendor's config section accepts and refuses the
//! same values with the same messages.
//!
//! Vendor configs keep the fields flat in their own struct (serde's
//! `deny_unknown_fields` does not combine with `flatten`) and use the default functions
//! here in `#[serde(default = "…")]`; the credentials are one shared sub-table,
//! [`AuthConfig`] (`[systems.<id>.auth]`). [`Endpoint`] borrows the fields to validate
//! (no I/O, no secrets read) and then build the [`NativeClient`] (reading the PEM and
//! secret files, and secret environment variables).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::GpSystem;
use crate::native::{
    ApiKey, NativeAuth, NativeClient, NativeClientError, NativeTls, OAuthClientCredentials,
    TlsInput, check_base_url, is_https,
};

/// Default TCP connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1000;
/// Default whole-request timeout (connect, headers and body).
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5000;
/// Default cap on one native response, in bytes.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Longest timeout accepted: beyond this a hung GP system ties up gateway capacity.
pub const MAX_TIMEOUT_MS: u64 = 120_000;
/// Smallest record cap accepted.
pub const MIN_RECORD_BYTES: usize = 1024;
/// Largest record cap accepted (a whole GP record is a few MB at most).
pub const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// `#[serde(default)]` for `connect_timeout_ms`.
pub fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

/// `#[serde(default)]` for `request_timeout_ms`.
pub fn default_request_timeout_ms() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_MS
}

/// `#[serde(default)]` for `max_record_bytes`.
pub fn default_max_record_bytes() -> usize {
    DEFAULT_MAX_RECORD_BYTES
}

/// What is wrong with a system's endpoint settings. Messages name the field as it is
/// written under `[systems.<id>]` (`emis.request_timeout_ms …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{}.base_url: {source}", .system.id())]
    BaseUrl {
        system: GpSystem,
        source: NativeClientError,
    },
    #[error("{}.{field} is {value} ms; it must be between 1 and {MAX_TIMEOUT_MS}", .system.id())]
    TimeoutOutOfRange {
        system: GpSystem,
        field: &'static str,
        value: u64,
    },
    #[error(
        "{id}.connect_timeout_ms ({connect}) must not exceed {id}.request_timeout_ms ({request})",
        id = .system.id()
    )]
    ConnectExceedsRequest {
        system: GpSystem,
        connect: u64,
        request: u64,
    },
    #[error(
        "{}.max_record_bytes is {value}; it must be between {MIN_RECORD_BYTES} and {MAX_RECORD_BYTES}",
        .system.id()
    )]
    RecordCapOutOfRange { system: GpSystem, value: usize },
    /// A TLS or credentials setting (`ca_file`, `auth.*`) that is wrong, or whose file or
    /// environment variable cannot be read when the client is built. Never the secret.
    #[error("{}.{field}: {reason}", .system.id())]
    Access {
        system: GpSystem,
        field: &'static str,
        reason: String,
    },
}

/// `[systems.<id>.auth]`: how the adapter authenticates to its GP system, by `kind`.
/// Secrets are never written in the config: each is read from a file (one line, a
/// trailing newline ignored; relative to the gateway config's directory) or an
/// environment variable, when the adapter is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// A key sent in a header of every call.
    ApiKey {
        /// The header, e.g. `X-API-Key`.
        header: String,
        /// File holding the key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_file: Option<PathBuf>,
        /// Environment variable holding the key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_env: Option<String>,
    },
    /// OAuth 2.0 client credentials: a bearer token from `token_url`, the client
    /// authenticating with HTTP Basic. An `https://` token URL is verified with `ca_file`.
    OauthClientCredentials {
        token_url: String,
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret_file: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret_env: Option<String>,
        /// Space-separated scopes to ask for; none when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
    /// Mutual TLS: this client certificate chain (PEM, leaf first) and its private key
    /// (PEM) are presented on the TLS handshake. Needs an `https://` base URL.
    MutualTls {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

impl AuthConfig {
    /// Resolves the files it names against `dir` (the gateway config's directory).
    pub fn resolve_files(&mut self, dir: &Path) {
        let join = |p: &mut PathBuf| *p = dir.join(&*p);
        match self {
            Self::ApiKey { key_file, .. } => key_file.iter_mut().for_each(join),
            Self::OauthClientCredentials {
                client_secret_file, ..
            } => client_secret_file.iter_mut().for_each(join),
            Self::MutualTls {
                cert_file,
                key_file,
            } => {
                join(cert_file);
                join(key_file);
            }
        }
    }
}

/// Resolves an adapter config's relative file paths (`ca_file` and those of `auth`)
/// against `dir`, the gateway config's directory; absolute paths stay as they are.
pub fn resolve_files(dir: &Path, ca_file: &mut Option<PathBuf>, auth: &mut Option<AuthConfig>) {
    if let Some(f) = ca_file {
        *f = dir.join(&*f);
    }
    if let Some(a) = auth {
        a.resolve_files(dir);
    }
}

/// Where a secret is read from: exactly one of a file and an environment variable.
fn secret_source(
    file_field: &'static str,
    file: Option<&Path>,
    env_field: &'static str,
    env: Option<&str>,
) -> Result<(), (&'static str, String)> {
    match (file, env) {
        (Some(_), Some(_)) => Err((
            file_field,
            format!("give {file_field} or {env_field}, not both"),
        )),
        (None, None) => Err((
            file_field,
            format!("the secret is read from {file_field} or {env_field}; give one"),
        )),
        (Some(f), None) if f.as_os_str().is_empty() => {
            Err((file_field, "must not be empty".to_owned()))
        }
        (None, Some(e)) if e.is_empty() || e.contains(['=', '\0']) => Err((
            env_field,
            format!("'{e}' is not an environment variable name"),
        )),
        _ => Ok(()),
    }
}

/// Reads a secret from its file (one line, a trailing newline ignored) or environment
/// variable. Errors name where, never the secret.
fn read_secret(file: Option<&Path>, env: Option<&str>) -> Result<String, String> {
    let secret = match (file, env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            text.trim_end_matches(['\r', '\n']).to_owned()
        }
        (None, Some(name)) => std::env::var(name)
            .map_err(|_| format!("environment variable {name} is not set or not UTF-8"))?,
        (None, None) => return Err("no secret source".to_owned()),
    };
    if secret.is_empty() || secret.contains(['\r', '\n']) {
        return Err(match file {
            Some(path) => format!("{} must hold exactly one non-empty line", path.display()),
            None => "the environment variable must hold one non-empty line".to_owned(),
        });
    }
    Ok(secret)
}

/// The settings every native API's `[systems.<id>]` table holds: where it is, how long
/// to wait, how much to read, and how to trust and authenticate to it. An adapter whose
/// table needs nothing more uses it as its config (`pub type AcmeConfig =
/// EndpointConfig;`); one that does (TPP's `page_size`) declares these fields beside its
/// own and builds an [`Endpoint`] from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Base URL of the native API, e.g. `http://127.0.0.1:9001`.
    pub base_url: String,
    /// TCP connect timeout.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Whole-request timeout (connect, headers and body).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Largest native answer accepted, in bytes.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// CA bundle (PEM) an `https://` base URL's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `[systems.<id>.auth]`: API key, OAuth client credentials or mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
}

impl EndpointConfig {
    /// Settings for `base_url` with every default.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            ca_file: None,
            auth: None,
        }
    }

    /// These settings as `system`'s endpoint, to validate or build its client from.
    pub fn endpoint(&self, system: GpSystem) -> Endpoint<'_> {
        Endpoint {
            system,
            base_url: &self.base_url,
            connect_timeout_ms: self.connect_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
            max_record_bytes: self.max_record_bytes,
            ca_file: self.ca_file.as_deref(),
            auth: self.auth.as_ref(),
        }
    }

    /// Checks the settings without any I/O, naming `system` in the message
    /// (`emis.request_timeout_ms is 0 ms; …`); the first problem found is returned.
    pub fn validate(&self, system: GpSystem) -> Result<(), EndpointError> {
        self.endpoint(system).validate()
    }
}

/// A view of one system's endpoint settings, borrowed from its vendor config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint<'a> {
    pub system: GpSystem,
    pub base_url: &'a str,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_record_bytes: usize,
    /// The CA bundle (PEM) an `https://` system's certificate must chain to.
    pub ca_file: Option<&'a Path>,
    pub auth: Option<&'a AuthConfig>,
}

impl Endpoint<'_> {
    /// Checks the settings without any I/O; the first problem found is returned.
    pub fn validate(&self) -> Result<(), EndpointError> {
        let system = self.system;
        check_base_url(self.base_url)
            .map_err(|source| EndpointError::BaseUrl { system, source })?;
        for (field, value) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if value == 0 || value > MAX_TIMEOUT_MS {
                return Err(EndpointError::TimeoutOutOfRange {
                    system,
                    field,
                    value,
                });
            }
        }
        if self.connect_timeout_ms > self.request_timeout_ms {
            return Err(EndpointError::ConnectExceedsRequest {
                system,
                connect: self.connect_timeout_ms,
                request: self.request_timeout_ms,
            });
        }
        if !(MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&self.max_record_bytes) {
            return Err(EndpointError::RecordCapOutOfRange {
                system,
                value: self.max_record_bytes,
            });
        }
        self.check_access()
            .map_err(|(field, reason)| EndpointError::Access {
                system,
                field,
                reason,
            })
    }

    /// `ca_file` and `auth`, checked without reading anything.
    fn check_access(&self) -> Result<(), (&'static str, String)> {
        let https = is_https(self.base_url);
        match self.ca_file {
            Some(f) if f.as_os_str().is_empty() => {
                return Err(("ca_file", "must not be empty".to_owned()));
            }
            Some(_) if !https => {
                return Err((
                    "ca_file",
                    "is set, but base_url is http:// (TLS is used for https:// only)".to_owned(),
                ));
            }
            None if https => {
                return Err((
                    "ca_file",
                    "an https:// base_url needs the CA bundle (PEM) the system's certificate \
                     must chain to; no built-in trust roots are used"
                        .to_owned(),
                ));
            }
            _ => {}
        }
        match self.auth {
            None => Ok(()),
            Some(AuthConfig::ApiKey {
                header,
                key_file,
                key_env,
            }) => {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err((
                        "auth.header",
                        format!("'{header}' is not a valid header name"),
                    ));
                }
                let reserved = [
                    "host",
                    "content-type",
                    "content-length",
                    "x-correlation-id",
                    "traceparent",
                ];
                if reserved.iter().any(|r| header.eq_ignore_ascii_case(r)) {
                    return Err((
                        "auth.header",
                        format!("'{header}' is a header the client sets itself"),
                    ));
                }
                secret_source(
                    "auth.key_file",
                    key_file.as_deref(),
                    "auth.key_env",
                    key_env.as_deref(),
                )
            }
            Some(AuthConfig::OauthClientCredentials {
                token_url,
                client_id,
                client_secret_file,
                client_secret_env,
                scope,
            }) => {
                check_base_url(token_url).map_err(|e| ("auth.token_url", e.to_string()))?;
                if is_https(token_url) && self.ca_file.is_none() {
                    return Err((
                        "auth.token_url",
                        "an https:// token URL is verified with ca_file, which is not set"
                            .to_owned(),
                    ));
                }
                if client_id.trim().is_empty() {
                    return Err(("auth.client_id", "must not be empty".to_owned()));
                }
                if scope.as_deref().is_some_and(|s| s.trim().is_empty()) {
                    return Err(("auth.scope", "must not be empty when given".to_owned()));
                }
                secret_source(
                    "auth.client_secret_file",
                    client_secret_file.as_deref(),
                    "auth.client_secret_env",
                    client_secret_env.as_deref(),
                )
            }
            Some(AuthConfig::MutualTls {
                cert_file,
                key_file,
            }) => {
                if !https {
                    return Err((
                        "auth.kind",
                        "mutual_tls needs an https:// base_url".to_owned(),
                    ));
                }
                for (field, path) in [("auth.cert_file", cert_file), ("auth.key_file", key_file)] {
                    if path.as_os_str().is_empty() {
                        return Err((field, "must not be empty".to_owned()));
                    }
                }
                Ok(())
            }
        }
    }

    /// Validates, then builds the [`NativeClient`]: reads the CA bundle, client
    /// certificate and secrets the settings name (no network I/O until the first call).
    /// A vendor with credentials of its own replaces the configured ones with
    /// [`NativeClient::with_auth`].
    pub fn client(&self) -> Result<NativeClient, EndpointError> {
        self.validate()?;
        let system = self.system;
        let access = |field: &'static str| {
            move |reason: String| EndpointError::Access {
                system,
                field,
                reason,
            }
        };
        let tls = match self.ca_file {
            None => None,
            Some(ca_file) => {
                let identity = match self.auth {
                    Some(AuthConfig::MutualTls {
                        cert_file,
                        key_file,
                    }) => Some((cert_file.as_path(), key_file.as_path())),
                    _ => None,
                };
                let tls = NativeTls::from_files(ca_file, identity).map_err(|e| {
                    let field = match e.input {
                        TlsInput::CaBundle => "ca_file",
                        TlsInput::ClientCert => "auth.cert_file",
                        TlsInput::ClientKey => "auth.key_file",
                    };
                    access(field)(e.reason)
                })?;
                Some(tls)
            }
        };
        let client = |base_url: &str, field: &'static str| {
            NativeClient::new(
                system,
                base_url,
                Duration::from_millis(self.connect_timeout_ms),
                Duration::from_millis(self.request_timeout_ms),
                self.max_record_bytes,
                tls.as_ref(),
            )
            .map_err(|e| access(field)(e.to_string()))
        };
        let native = client(self.base_url, "base_url")?;
        let auth: Arc<dyn NativeAuth> = match self.auth {
            None | Some(AuthConfig::MutualTls { .. }) => return Ok(native),
            Some(AuthConfig::ApiKey {
                header,
                key_file,
                key_env,
            }) => {
                let key_field = if key_file.is_some() {
                    "auth.key_file"
                } else {
                    "auth.key_env"
                };
                let key = read_secret(key_file.as_deref(), key_env.as_deref())
                    .map_err(access(key_field))?;
                Arc::new(ApiKey::new(header, &key).map_err(access(key_field))?)
            }
            Some(AuthConfig::OauthClientCredentials {
                token_url,
                client_id,
                client_secret_file,
                client_secret_env,
                scope,
            }) => {
                let secret_field = if client_secret_file.is_some() {
                    "auth.client_secret_file"
                } else {
                    "auth.client_secret_env"
                };
                let secret =
                    read_secret(client_secret_file.as_deref(), client_secret_env.as_deref())
                        .map_err(access(secret_field))?;
                let token_endpoint = client(token_url, "auth.token_url")?;
                Arc::new(
                    OAuthClientCredentials::new(
                        token_endpoint,
                        client_id,
                        &secret,
                        scope.as_deref(),
                    )
                    .map_err(access(secret_field))?,
                )
            }
        };
        Ok(native.with_auth(auth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(system: GpSystem, base_url: &str) -> Endpoint<'_> {
        Endpoint {
            system,
            base_url,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            ca_file: None,
            auth: None,
        }
    }

    #[test]
    fn defaults_are_valid() {
        for system in [crate::test_systems::EMIS, crate::test_systems::TPP] {
            assert!(endpoint(system, "http://127.0.0.1:9001").validate().is_ok());
            assert!(endpoint(system, "http://127.0.0.1:9001").client().is_ok());
        }
        assert_eq!(
            (
                default_connect_timeout_ms(),
                default_request_timeout_ms(),
                default_max_record_bytes()
            ),
            (1000, 5000, 16 * 1024 * 1024)
        );
    }

    #[test]
    fn messages_name_the_system_and_field() {
        let mut e = endpoint(crate::test_systems::TPP, "ftp://tpp.example");
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .starts_with("tpp.base_url: base URL 'ftp://tpp.example'")
        );
        e.base_url = "http://127.0.0.1:1";
        e.connect_timeout_ms = 200_000;
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "tpp.connect_timeout_ms is 200000 ms; it must be between 1 and 120000"
        );
        e.connect_timeout_ms = 1000;
        e.request_timeout_ms = 500;
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "tpp.connect_timeout_ms (1000) must not exceed tpp.request_timeout_ms (500)"
        );
        e.request_timeout_ms = 5000;
        e.max_record_bytes = 1023;
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "tpp.max_record_bytes is 1023; it must be between 1024 and 268435456"
        );
        e.max_record_bytes = 1024;
        assert!(e.validate().is_ok());
    }

    fn auth(json: &str) -> AuthConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn auth_tables_parse_by_kind_and_refuse_unknown_fields() {
        assert_eq!(
            auth(r#"{"kind": "api_key", "header": "X-API-Key", "key_env": "EMIS_KEY"}"#),
            AuthConfig::ApiKey {
                header: "X-API-Key".into(),
                key_file: None,
                key_env: Some("EMIS_KEY".into())
            }
        );
        assert!(matches!(
            auth(r#"{"kind": "oauth_client_credentials", "token_url": "https://t/token",
                "client_id": "c", "client_secret_file": "s", "scope": "a b"}"#),
            AuthConfig::OauthClientCredentials { scope: Some(s), .. } if s == "a b"
        ));
        assert!(matches!(
            auth(r#"{"kind": "mutual_tls", "cert_file": "c.pem", "key_file": "k.pem"}"#),
            AuthConfig::MutualTls { .. }
        ));
        for bad in [
            r#"{"kind": "api_key", "header": "h", "key": "inline secrets are refused"}"#,
            r#"{"kind": "basic", "user": "u"}"#,
            r#"{"header": "h", "key_env": "K"}"#,
        ] {
            assert!(serde_json::from_str::<AuthConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_and_auth_are_checked_naming_the_field() {
        let ca = Path::new("ca.pem");
        let check = |url: &str, ca_file: Option<&Path>, a: Option<&AuthConfig>| {
            let mut e = endpoint(crate::test_systems::EMIS, url);
            e.ca_file = ca_file;
            e.auth = a;
            e.validate().err().map(|e| e.to_string())
        };
        assert_eq!(check("https://emis.example", Some(ca), None), None);
        assert_eq!(
            check("https://emis.example", None, None).as_deref(),
            Some(
                "emis.ca_file: an https:// base_url needs the CA bundle (PEM) the system's \
                 certificate must chain to; no built-in trust roots are used"
            )
        );
        assert_eq!(
            check("http://127.0.0.1:1", Some(ca), None).as_deref(),
            Some("emis.ca_file: is set, but base_url is http:// (TLS is used for https:// only)")
        );
        assert_eq!(
            check("https://emis.example", Some(Path::new("")), None).as_deref(),
            Some("emis.ca_file: must not be empty")
        );

        let key = |file: Option<&str>, env: Option<&str>| AuthConfig::ApiKey {
            header: "X-API-Key".into(),
            key_file: file.map(PathBuf::from),
            key_env: env.map(str::to_owned),
        };
        let http = "http://127.0.0.1:1";
        assert_eq!(check(http, None, Some(&key(Some("k"), None))), None);
        assert_eq!(check(http, None, Some(&key(None, Some("K")))), None);
        assert_eq!(
            check(http, None, Some(&key(Some("k"), Some("K")))).as_deref(),
            Some("emis.auth.key_file: give auth.key_file or auth.key_env, not both")
        );
        assert_eq!(
            check(http, None, Some(&key(None, None))).as_deref(),
            Some(
                "emis.auth.key_file: the secret is read from auth.key_file or auth.key_env; give one"
            )
        );
        assert_eq!(
            check(http, None, Some(&key(None, Some("A=B")))).as_deref(),
            Some("emis.auth.key_env: 'A=B' is not an environment variable name")
        );
        for (header, why) in [
            ("X API Key", "'X API Key' is not a valid header name"),
            (
                "Traceparent",
                "'Traceparent' is a header the client sets itself",
            ),
        ] {
            let a = AuthConfig::ApiKey {
                header: header.into(),
                key_file: Some("k".into()),
                key_env: None,
            };
            assert_eq!(
                check(http, None, Some(&a)),
                Some(format!("emis.auth.header: {why}"))
            );
        }

        let oauth = |token_url: &str, client_id: &str, scope: Option<&str>| {
            AuthConfig::OauthClientCredentials {
                token_url: token_url.into(),
                client_id: client_id.into(),
                client_secret_file: None,
                client_secret_env: Some("SECRET".into()),
                scope: scope.map(str::to_owned),
            }
        };
        let https = "https://emis.example";
        assert_eq!(
            check(
                https,
                Some(ca),
                Some(&oauth("https://auth.example/token", "c", None))
            ),
            None
        );
        assert!(
            check(
                https,
                Some(ca),
                Some(&oauth("auth.example/token", "c", None))
            )
            .unwrap()
            .starts_with("emis.auth.token_url: base URL 'auth.example/token' is not valid")
        );
        assert_eq!(
            check(
                http,
                None,
                Some(&oauth("https://auth.example/token", "c", None))
            )
            .as_deref(),
            Some(
                "emis.auth.token_url: an https:// token URL is verified with ca_file, which is not set"
            )
        );
        assert_eq!(
            check(
                http,
                None,
                Some(&oauth("http://127.0.0.1:2/token", " ", None))
            )
            .as_deref(),
            Some("emis.auth.client_id: must not be empty")
        );
        assert_eq!(
            check(
                http,
                None,
                Some(&oauth("http://127.0.0.1:2/token", "c", Some("")))
            )
            .as_deref(),
            Some("emis.auth.scope: must not be empty when given")
        );

        let mtls = AuthConfig::MutualTls {
            cert_file: "c.pem".into(),
            key_file: "k.pem".into(),
        };
        assert_eq!(check(https, Some(ca), Some(&mtls)), None);
        assert_eq!(
            check(http, None, Some(&mtls)).as_deref(),
            Some("emis.auth.kind: mutual_tls needs an https:// base_url")
        );
    }

    #[test]
    fn relative_files_resolve_against_the_config_directory() {
        let dir = Path::new("/etc/gp-gateway");
        let mut ca = Some(PathBuf::from("certs/ca.pem"));
        let mut a = Some(AuthConfig::MutualTls {
            cert_file: "certs/client.pem".into(),
            key_file: "/run/secrets/client.key".into(),
        });
        resolve_files(dir, &mut ca, &mut a);
        assert_eq!(ca, Some(PathBuf::from("/etc/gp-gateway/certs/ca.pem")));
        assert_eq!(
            a,
            Some(AuthConfig::MutualTls {
                cert_file: "/etc/gp-gateway/certs/client.pem".into(),
                key_file: "/run/secrets/client.key".into(),
            })
        );
    }

    #[test]
    fn secrets_are_one_line_and_errors_never_show_them() {
        let dir = std::env::temp_dir().join(format!("gp-adapter-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "hunter2\r\n").unwrap();
        assert_eq!(read_secret(Some(&file), None).unwrap(), "hunter2");
        std::fs::write(&file, "hunter2\nsecond line\n").unwrap();
        let err = read_secret(Some(&file), None).unwrap_err();
        assert!(err.ends_with("must hold exactly one non-empty line") && !err.contains("hunter2"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            read_secret(Some(&dir.join("gone")), None)
                .unwrap_err()
                .starts_with("cannot read ")
        );
    }
}
