//! The gateway's configuration: one TOML tree plus the practice registry it names,
//! parsed with `deny_unknown_fields` and validated purely (no network, no secrets read)
//! so `gp-gateway check-config` can run in CI.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use gp_adapter::{GpSystem, Registry, SystemConfig};
use gp_fhir::OdsCode;
use serde::Deserialize;

/// A configuration problem, naming the file, the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {message}")]
    Read { file: PathBuf, message: String },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: {key}: {problem}")]
    Invalid {
        file: PathBuf,
        key: String,
        problem: String,
    },
}

/// Several problems found at once (validation reports them all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// `config/gateway.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub server: ServerConfig,
    #[serde(default)]
    pub search: SearchConfig,
    pub locator: LocatorConfig,
    /// Path of the practice registry, relative to this file.
    pub practices_file: PathBuf,
    #[serde(default)]
    pub systems: SystemsConfig,
    #[serde(default)]
    pub access: AccessConfig,
    /// Path of the supplier registry (gp-auth format), relative to this file.
    #[serde(default)]
    pub suppliers_file: Option<PathBuf>,
    /// `[auth]`: the token endpoint and the gateway's signing keys.
    #[serde(default)]
    pub auth: Option<gp_auth::AuthConfig>,
    /// `[state]`: where state shared between replicas lives.
    #[serde(default)]
    pub state: StateConfig,
    /// `[cache]`: reuse of GP system reads.
    #[serde(default)]
    pub cache: crate::cache::CacheConfig,
    /// `[audit]`: the audit trail every request is recorded in.
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// `[resilience]`: bulkhead, circuit breaker and read retries per GP system.
    #[serde(default)]
    pub resilience: crate::resilience::ResilienceConfig,
    /// `[telemetry]`: OpenTelemetry trace export. Default: nothing exported.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// `[admin]`: the operators' listener (`/metrics`, probes), apart from suppliers'.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[documents]`: the sizes of documents served and filed.
    #[serde(default)]
    pub documents: DocumentsConfig,
    /// `[notifications]`: subscriptions and their deliveries. Absent: none offered.
    #[serde(default)]
    pub notifications: Option<crate::notify::NotificationsConfig>,
    /// `[terminology]`: the national map files to SNOMED CT. Absent: the curated maps
    /// built into the gateway.
    #[serde(default)]
    pub terminology: Option<crate::terminology::TerminologyConfig>,
}

/// `[documents]`: how large a document's content may be, served or filed.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsConfig {
    /// Content larger than this (bytes) is listed but not served: its DocumentReference
    /// has no `attachment.url` and a placeholder title, and `GET /Binary/{id}` refuses it.
    #[serde(default = "default_max_inline")]
    pub max_inline_bytes: u64,
    /// The largest content a supplier may file (bytes): a raw `POST /Binary` body, or the
    /// decoded `attachment.data` of a `POST /DocumentReference` (whose JSON body may be
    /// the base64 of this plus 64 KiB).
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: usize,
}

fn default_max_inline() -> u64 {
    5 * 1024 * 1024
}

fn default_max_upload() -> usize {
    10 * 1024 * 1024
}

impl Default for DocumentsConfig {
    fn default() -> Self {
        Self {
            max_inline_bytes: default_max_inline(),
            max_upload_bytes: default_max_upload(),
        }
    }
}

/// `[admin]`: a second listener for operational endpoints that are not for suppliers:
/// `/metrics` is served only here; `/_health` and `/_ready` here and on the main port
/// (load balancers probe that one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Socket address; loopback by default, so only the host (or the pod: a sidecar, or
    /// the kubelet and Prometheus through the pod IP when set to `0.0.0.0:9091`) reaches it.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9091".into()
}

/// `[state]`: rate-limit counters and the assertion replay set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `memory` (one replica) or `redis` (several replicas share one budget and replay set).
    #[serde(default)]
    pub backend: StateBackend,
    /// Redis URL when `backend = "redis"`. Keep the password out of it: use
    /// `redis_password_file`.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// File holding the Redis password (relative to this file; one line, trailing
    /// newline ignored), e.g. a mounted Kubernetes secret. Read at start-up only, never by
    /// `check-config`; the URL must then carry no password of its own.
    #[serde(default)]
    pub redis_password_file: Option<PathBuf>,
    /// Prefix of every Redis key the gateway writes.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: StateBackend::Memory,
            redis_url: None,
            redis_password_file: None,
            key_prefix: default_key_prefix(),
        }
    }
}

impl StateConfig {
    /// The Redis URL to connect with: `redis_url`, with the password from
    /// `redis_password_file` (relative to `dir`) put in its user-info when one is named.
    /// Errors name the file, never the password.
    pub fn redis_connection_url(&self, dir: &Path) -> Result<String, String> {
        let url = self.redis_url.clone().unwrap_or_default();
        let Some(file) = &self.redis_password_file else {
            return Ok(url);
        };
        let path = dir.join(file);
        let password = read_secret(&path)?;
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("state.redis_url is not a redis:// URL")?;
        // `redis://[user@]host…`: the password joins the user (empty for Redis < 6 AUTH).
        let (user, host) = match rest.split_once('@') {
            Some((user, host)) => (user, host),
            None => ("", rest),
        };
        Ok(format!(
            "{scheme}://{user}:{}@{host}",
            percent_encode_userinfo(&password)
        ))
    }
}

pub use crate::secrets::read_secret;

/// Percent-encodes everything but RFC 3986 unreserved characters, for URL user-info.
fn percent_encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn default_key_prefix() -> String {
    "gp-gateway:".into()
}

/// Shared-state backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    #[default]
    Memory,
    Redis,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Socket address to listen on.
    pub listen: String,
    /// The public origin suppliers call (`https://host[:port]`), used in every link,
    /// `fullUrl` and `Location`: never an internal address.
    pub public_base_url: String,
    /// Path under which the FHIR API is served.
    #[serde(default = "default_fhir_base")]
    pub fhir_base_path: String,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_max_header")]
    pub max_header_bytes: usize,
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed: an HTTP/1.1
    /// keep-alive connection between requests, an HTTP/2 connection with no open stream
    /// (pings do not count). Before its first request a connection gets the shorter of
    /// this and `header_read_timeout_ms` (a silent connection holds a descriptor for
    /// nothing). Longer than a load balancer's own idle timeout (AWS ALB: 60 s), so the
    /// balancer closes first.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// Most connections open at once; a new one over the cap is closed at once, so a
    /// flood cannot take the file descriptors real requests need.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most connections open at once from one IP address. Peers in `trusted_proxies`
    /// are exempt (a load balancer carries many clients); `max_connections` still holds.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Reverse proxies (IP networks) whose `Forwarded` / `X-Forwarded-*` headers decide
    /// the origin written in links. Empty: always `public_base_url`.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

fn default_fhir_base() -> String {
    "/FHIR/R4".into()
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_max_header() -> usize {
    16 * 1024
}
fn default_request_timeout() -> u64 {
    15_000
}
fn default_header_timeout() -> u64 {
    5_000
}
fn default_idle_timeout() -> u64 {
    75_000
}
fn default_max_connections() -> usize {
    4_096
}
fn default_max_connections_per_peer() -> usize {
    256
}

/// `[server.tls]`: TLS with rustls when present (TLS 1.2 and 1.3, AEAD cipher suites
/// with ECDHE only; see `server::CIPHER_SUITES`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (relative to this file).
    pub cert_file: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often the certificate and key files are checked for a change (modification
    /// time and size), and a new pair loaded without a restart; 0 = only on SIGHUP.
    /// A pair that does not load (unreadable, or key not matching the certificate) is
    /// refused with an error in the log and the running one keeps serving.
    #[serde(default = "default_tls_reload")]
    pub reload_interval_secs: u64,
    /// PEM file of the CA certificate(s) supplier client certificates must chain to.
    /// Set: the server asks for a client certificate (mutual TLS), and suppliers with a
    /// `client_cert_sha256` binding can only call over a connection presenting it.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `optional` (default with `client_ca_file`): a client certificate, when sent, must
    /// chain to `client_ca_file` and be valid, but suppliers without a binding may
    /// connect without one; `required`: every connection must present one.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
}

impl TlsConfig {
    /// A TLS config with these files and every other setting at its default.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            reload_interval_secs: default_tls_reload(),
            client_ca_file: None,
            client_auth: None,
        }
    }
}

fn default_tls_reload() -> u64 {
    5
}

/// Whether a TLS client must present a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Verified when presented; connections without one are allowed.
    #[default]
    Optional,
    /// Every connection must present a valid client certificate.
    Required,
}

/// `[search]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    pub default_count: u32,
    pub max_count: u32,
}

impl Default for SearchConfig {
    fn default() -> Self {
        let d = gp_fhir::search::PagingLimits::default();
        Self {
            default_count: d.default_count,
            max_count: d.max_count,
        }
    }
}

/// `[locator]`: where the gateway finds a patient's registered practice.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocatorConfig {
    /// Base URL of the Personal Demographics Service FHIR API.
    pub pds_base_url: String,
    #[serde(default = "default_locator_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_locator_ttl")]
    pub cache_ttl_secs: u64,
    #[serde(default = "default_locator_entries")]
    pub cache_max_entries: u64,
}

fn default_locator_timeout() -> u64 {
    3_000
}
fn default_locator_ttl() -> u64 {
    300
}
fn default_locator_entries() -> u64 {
    100_000
}

/// `[systems.<id>]`: one table per GP system the gateway talks to, each read by the
/// factory registered under that id (see [`crate::systems`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct SystemsConfig(pub BTreeMap<String, toml::Table>);

impl SystemsConfig {
    /// Reads each table through its system's factory. Each problem is keyed
    /// `systems.<id>`: an id no factory is registered under, a table its factory
    /// cannot read, or a setting it refuses.
    pub fn resolve(
        &self,
        registry: &Registry,
    ) -> (BTreeMap<GpSystem, SystemConfig>, Vec<(String, String)>) {
        let mut systems = BTreeMap::new();
        let mut problems = Vec::new();
        for (id, table) in &self.0 {
            let key = format!("systems.{id}");
            let read = serde_json::to_value(table)
                .map_err(|e| e.to_string())
                .and_then(|value| registry.configure(id, value));
            match read {
                Ok(config) => {
                    systems.insert(config.system(), config);
                }
                Err(problem) => problems.push((key, problem)),
            }
        }
        (systems, problems)
    }

    /// Resolves the file paths the tables name against `dir`, the directory of
    /// gateway.toml, as every other file it names: any setting whose name ends in
    /// `_file` (`ca_file`, `auth.cert_file`, …), in a table or a table within it, is a
    /// path, and a relative one is joined to `dir`.
    pub fn resolve_files(&mut self, dir: &Path) {
        fn walk(table: &mut toml::Table, dir: &Path) {
            for (key, value) in table.iter_mut() {
                match value {
                    toml::Value::String(path) if key.ends_with("_file") => {
                        *path = dir.join(&*path).to_string_lossy().into_owned();
                    }
                    toml::Value::Table(inner) => walk(inner, dir),
                    _ => {}
                }
            }
        }
        for table in self.0.values_mut() {
            walk(table, dir);
        }
    }
}

/// `[access]`: how FHIR routes are protected.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// `open` serves FHIR routes without a token: accepted only by `gp-gateway sandbox`.
    #[serde(default)]
    pub mode: AccessMode,
}

/// Access mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    /// Bearer tokens from `/oauth2/token` are required.
    #[default]
    Oauth,
    /// No token needed: sandbox only.
    Open,
}

/// The practice registry file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PracticeRegistryFile {
    #[serde(default)]
    pub practice: Vec<PracticeRecord>,
}

/// One GP practice as the registry file lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PracticeRecord {
    pub ods: String,
    pub name: String,
    /// The id of its GP system, as in `[systems.<id>]`.
    pub system: String,
}

/// One GP practice the gateway serves, and the system its records live in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PracticeEntry {
    pub ods: String,
    pub name: String,
    pub system: GpSystem,
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub gateway: GatewayConfig,
    pub practices: BTreeMap<OdsCode, PracticeEntry>,
    /// Each configured GP system's settings, read by its registered factory.
    pub systems: BTreeMap<GpSystem, SystemConfig>,
    /// The supplier registry (empty when access is open).
    pub suppliers: gp_auth::SuppliersConfig,
    /// Where the supplier registry was read from, for reloads.
    pub suppliers_path: Option<PathBuf>,
    /// The directory relative paths are resolved against.
    pub dir: PathBuf,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: path.to_owned(),
        message: e.to_string(),
    })
}

fn parse<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.to_owned(),
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

impl LoadedConfig {
    /// Reads `gateway.toml` and the practice registry it names, then validates both;
    /// each `[systems.<id>]` table is read by the factory `systems` registers as `id`.
    pub fn load(path: &Path, systems: &Registry) -> Result<Self, ConfigErrors> {
        let text = read(path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut gateway: GatewayConfig = parse(path, &text)?;
        gateway.systems.resolve_files(&dir);
        let practices_path = dir.join(&gateway.practices_file);
        let practices_text = read(&practices_path)?;
        let registry: PracticeRegistryFile = parse(&practices_path, &practices_text)?;
        let (suppliers, suppliers_path) = match &gateway.suppliers_file {
            Some(f) => {
                let p = dir.join(f);
                (load_suppliers(&p)?, Some(p))
            }
            None => (gp_auth::SuppliersConfig::default(), None),
        };
        let mut loaded = Self::from_parts(gateway, registry, systems, path, &practices_path, dir)?;
        loaded.set_suppliers(suppliers, suppliers_path)?;
        Ok(loaded)
    }

    /// Sets and validates the supplier registry.
    pub fn set_suppliers(
        &mut self,
        suppliers: gp_auth::SuppliersConfig,
        path: Option<PathBuf>,
    ) -> Result<(), ConfigErrors> {
        let file = path.clone().unwrap_or_else(|| PathBuf::from("(suppliers)"));
        if let Err(errors) = suppliers.validate() {
            return Err(ConfigErrors(
                errors
                    .into_iter()
                    .map(|e| invalid(&file, "suppliers", e.to_string()))
                    .collect(),
            ));
        }
        let mutual_tls = self
            .gateway
            .server
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
        if !mutual_tls {
            // A bound supplier could never connect: say so now rather than at its first call.
            let bound: Vec<ConfigError> = suppliers
                .suppliers
                .iter()
                .filter(|s| s.client_cert_sha256.is_some())
                .map(|s| {
                    invalid(
                        &file,
                        "suppliers",
                        format!(
                            "supplier '{}' has client_cert_sha256 but gateway.toml has no [server.tls] client_ca_file (mutual TLS is off)",
                            s.client_id
                        ),
                    )
                })
                .collect();
            if !bound.is_empty() {
                return Err(ConfigErrors(bound));
            }
        }
        self.suppliers = suppliers;
        self.suppliers_path = path;
        Ok(())
    }

    /// Validates already-parsed parts (the sandbox builds its config in memory).
    pub fn from_parts(
        gateway: GatewayConfig,
        registry: PracticeRegistryFile,
        systems: &Registry,
        file: &Path,
        practices_file: &Path,
        dir: PathBuf,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = validate_gateway(&gateway, file);
        let (configured, problems) = gateway.systems.resolve(systems);
        for (key, problem) in problems {
            errors.push(invalid(file, &key, problem));
        }
        let mut practices = BTreeMap::new();
        for (i, p) in registry.practice.into_iter().enumerate() {
            let key = format!("practice[{i}]");
            match OdsCode::parse(&p.ods) {
                Err(e) => errors.push(invalid(
                    practices_file,
                    &format!("{key}.ods"),
                    e.to_string(),
                )),
                Ok(ods) => {
                    let Some(system) = configured.keys().find(|s| s.id() == p.system) else {
                        if gateway.systems.0.contains_key(&p.system) {
                            // Its table is there but wrong: that error is already listed.
                            continue;
                        }
                        errors.push(invalid(
                            practices_file,
                            &format!("{key}.system"),
                            format!(
                                "practice {ods} uses '{}' but gateway.toml has no [systems.{}] table",
                                p.system, p.system
                            ),
                        ));
                        continue;
                    };
                    let p = PracticeEntry {
                        ods: p.ods,
                        name: p.name,
                        system: *system,
                    };
                    if practices.insert(ods.clone(), p).is_some() {
                        errors.push(invalid(
                            practices_file,
                            &format!("{key}.ods"),
                            format!("practice {ods} is listed twice"),
                        ));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(Self {
                gateway,
                practices,
                systems: configured,
                suppliers: gp_auth::SuppliersConfig::default(),
                suppliers_path: None,
                dir,
            })
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// Reads a supplier registry file (gp-auth format).
pub fn load_suppliers(path: &Path) -> Result<gp_auth::SuppliersConfig, ConfigErrors> {
    let text = read(path)?;
    Ok(parse(path, &text)?)
}

fn invalid(file: &Path, key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_owned(),
        key: key.to_owned(),
        problem: problem.into(),
    }
}

fn check_url(errors: &mut Vec<ConfigError>, file: &Path, key: &str, url: &str) {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        errors.push(invalid(file, key, format!("'{url}' is not an http(s) URL")));
    }
}

fn validate_gateway(c: &GatewayConfig, file: &Path) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(t) = &c.terminology {
        for (key, problem) in t.problems() {
            errors.push(invalid(file, key, problem));
        }
    }
    if c.server.listen.parse::<std::net::SocketAddr>().is_err() {
        errors.push(invalid(
            file,
            "server.listen",
            format!(
                "'{}' is not a socket address such as 0.0.0.0:8443",
                c.server.listen
            ),
        ));
    }
    check_url(
        &mut errors,
        file,
        "server.public_base_url",
        &c.server.public_base_url,
    );
    if c.server.public_base_url.ends_with('/') {
        errors.push(invalid(
            file,
            "server.public_base_url",
            "must not end with '/'",
        ));
    }
    let base = &c.server.fhir_base_path;
    if !base.starts_with('/') || base.ends_with('/') || base.contains("//") {
        errors.push(invalid(
            file,
            "server.fhir_base_path",
            format!("'{base}' must start with '/' and not end with one"),
        ));
    }
    if !(1024..=64 * 1024 * 1024).contains(&c.server.max_body_bytes) {
        errors.push(invalid(
            file,
            "server.max_body_bytes",
            "must be between 1024 and 67108864",
        ));
    }
    if !(1024..=256 * 1024 * 1024).contains(&c.documents.max_inline_bytes) {
        errors.push(invalid(
            file,
            "documents.max_inline_bytes",
            "must be between 1024 and 268435456",
        ));
    }
    if !(1024..=256 * 1024 * 1024).contains(&c.documents.max_upload_bytes) {
        errors.push(invalid(
            file,
            "documents.max_upload_bytes",
            "must be between 1024 and 268435456",
        ));
    }
    if !(8192..=1024 * 1024).contains(&c.server.max_header_bytes) {
        errors.push(invalid(
            file,
            "server.max_header_bytes",
            "must be between 8192 and 1048576",
        ));
    }
    for (i, p) in c.server.trusted_proxies.iter().enumerate() {
        if let Err(problem) = crate::forwarded::Cidr::parse(p) {
            errors.push(invalid(
                file,
                &format!("server.trusted_proxies[{i}]"),
                problem,
            ));
        }
    }
    if let Some(tls) = &c.server.tls {
        for (key, path) in [
            ("server.tls.cert_file", Some(&tls.cert_file)),
            ("server.tls.key_file", Some(&tls.key_file)),
            ("server.tls.client_ca_file", tls.client_ca_file.as_ref()),
        ] {
            if path.is_some_and(|p| p.as_os_str().is_empty()) {
                errors.push(invalid(file, key, "must not be empty"));
            }
        }
        if tls.client_auth.is_some() && tls.client_ca_file.is_none() {
            errors.push(invalid(
                file,
                "server.tls.client_auth",
                "needs client_ca_file: the CA supplier client certificates must chain to",
            ));
        }
        if tls.reload_interval_secs > 86_400 {
            errors.push(invalid(
                file,
                "server.tls.reload_interval_secs",
                "must be at most 86400 (0 = reload on SIGHUP only)",
            ));
        }
    }
    if c.server.request_timeout_ms == 0 || c.server.header_read_timeout_ms == 0 {
        errors.push(invalid(
            file,
            "server.request_timeout_ms",
            "timeouts must be greater than zero",
        ));
    }
    if !(100..=3_600_000).contains(&c.server.idle_timeout_ms) {
        errors.push(invalid(
            file,
            "server.idle_timeout_ms",
            "must be between 100 and 3600000",
        ));
    }
    if !(1..=1_000_000).contains(&c.server.max_connections) {
        errors.push(invalid(
            file,
            "server.max_connections",
            "must be between 1 and 1000000",
        ));
    }
    if c.server.max_connections_per_peer == 0
        || c.server.max_connections_per_peer > c.server.max_connections
    {
        errors.push(invalid(
            file,
            "server.max_connections_per_peer",
            "must be between 1 and max_connections",
        ));
    }
    match (
        c.admin.listen.parse::<std::net::SocketAddr>(),
        c.server.listen.parse::<std::net::SocketAddr>(),
    ) {
        (Err(_), _) => errors.push(invalid(
            file,
            "admin.listen",
            format!(
                "'{}' is not a socket address such as 127.0.0.1:9091",
                c.admin.listen
            ),
        )),
        // Both on one port could never bind (port 0 picks a free one for each).
        (Ok(admin), Ok(main))
            if admin.port() != 0
                && admin.port() == main.port()
                && (admin.ip() == main.ip()
                    || admin.ip().is_unspecified()
                    || main.ip().is_unspecified()) =>
        {
            errors.push(invalid(
                file,
                "admin.listen",
                format!("'{}' is the port server.listen uses", c.admin.listen),
            ))
        }
        _ => {}
    }
    if c.search.default_count == 0
        || c.search.default_count > c.search.max_count
        || c.search.max_count > 1000
    {
        errors.push(invalid(
            file,
            "search",
            "need 1 <= default_count <= max_count <= 1000",
        ));
    }
    check_url(
        &mut errors,
        file,
        "locator.pds_base_url",
        &c.locator.pds_base_url,
    );
    if c.locator.timeout_ms == 0 {
        errors.push(invalid(
            file,
            "locator.timeout_ms",
            "must be greater than zero",
        ));
    }
    for (key, problem) in c.audit.problems() {
        errors.push(invalid(file, key, problem));
    }
    for (key, problem) in c.resilience.problems() {
        errors.push(invalid(file, key, problem));
    }
    for (key, problem) in c.telemetry.problems() {
        errors.push(invalid(file, key, problem));
    }
    if let Some(n) = &c.notifications {
        for (key, problem) in n.problems() {
            errors.push(invalid(file, key, problem));
        }
    }
    if c.access.mode == AccessMode::Oauth {
        match &c.auth {
            None => errors.push(invalid(
                file,
                "auth",
                "access.mode is \"oauth\" but there is no [auth] section",
            )),
            Some(auth) => {
                if let Err(problems) = auth.validate() {
                    errors.extend(
                        problems
                            .into_iter()
                            .map(|e| invalid(file, "auth", e.to_string())),
                    );
                }
            }
        }
        if c.suppliers_file.is_none() {
            errors.push(invalid(
                file,
                "suppliers_file",
                "access.mode is \"oauth\" but no supplier registry is named",
            ));
        }
    }
    if c.state.backend == StateBackend::Redis {
        match &c.state.redis_url {
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                let userinfo = url
                    .split_once("://")
                    .and_then(|(_, rest)| rest.split('/').next())
                    .and_then(|authority| authority.rsplit_once('@'))
                    .map(|(userinfo, _)| userinfo);
                if c.state.redis_password_file.is_some()
                    && userinfo.is_some_and(|u| u.contains(':'))
                {
                    errors.push(invalid(
                        file,
                        "state.redis_password_file",
                        "redis_url already carries a password: give it once, in the file",
                    ));
                }
            }
            _ => errors.push(invalid(
                file,
                "state.redis_url",
                "backend \"redis\" needs redis_url = \"redis://host:port/db\"",
            )),
        }
    }
    if c.state.redis_password_file.is_some() && c.state.backend != StateBackend::Redis {
        errors.push(invalid(
            file,
            "state.redis_password_file",
            "is only used with backend = \"redis\"",
        ));
    }
    if c.systems.0.is_empty() {
        errors.push(invalid(
            file,
            "systems",
            "no GP system is configured: add at least one [systems.<name>] table",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn example() -> LoadedConfig {
        LoadedConfig::load(
            Path::new("../../config/gateway.toml"),
            &crate::systems::builtin(),
        )
        .unwrap()
    }

    fn problems(c: &GatewayConfig) -> Vec<String> {
        validate_gateway(c, Path::new("gateway.toml"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn tls_options_are_checked() {
        let mut cfg = example();
        assert_eq!(problems(&cfg.gateway), Vec::<String>::new());
        let tls = cfg.gateway.server.tls.as_mut().unwrap();
        tls.client_auth = Some(ClientAuth::Required);
        tls.cert_file = PathBuf::new();
        tls.reload_interval_secs = 100_000;
        assert_eq!(
            problems(&cfg.gateway),
            vec![
                "gateway.toml: server.tls.cert_file: must not be empty",
                "gateway.toml: server.tls.client_auth: needs client_ca_file: the CA supplier client certificates must chain to",
                "gateway.toml: server.tls.reload_interval_secs: must be at most 86400 (0 = reload on SIGHUP only)",
            ]
        );
    }

    #[test]
    fn connection_limits_and_the_admin_listener_are_checked() {
        let mut cfg = example();
        assert_eq!(cfg.gateway.admin.listen, "127.0.0.1:9091");
        let server = &mut cfg.gateway.server;
        server.idle_timeout_ms = 50;
        server.max_connections = 0;
        cfg.gateway.admin.listen = "0.0.0.0:8443".into();
        assert_eq!(
            problems(&cfg.gateway),
            vec![
                "gateway.toml: server.idle_timeout_ms: must be between 100 and 3600000",
                "gateway.toml: server.max_connections: must be between 1 and 1000000",
                "gateway.toml: server.max_connections_per_peer: must be between 1 and max_connections",
                "gateway.toml: admin.listen: '0.0.0.0:8443' is the port server.listen uses",
            ]
        );
        cfg.gateway.admin.listen = "localhost".into();
        assert_eq!(
            problems(&cfg.gateway).last().unwrap(),
            "gateway.toml: admin.listen: 'localhost' is not a socket address such as 127.0.0.1:9091"
        );
        let err = toml::from_str::<AdminConfig>("listen = \"127.0.0.1:9\"\nport = 9").unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn document_limits_are_read_and_checked() {
        let mut cfg = example();
        // The shipped example spells out the defaults.
        assert_eq!(cfg.gateway.documents.max_inline_bytes, 5 * 1024 * 1024);
        assert_eq!(cfg.gateway.documents.max_upload_bytes, 10 * 1024 * 1024);
        cfg.gateway.documents.max_inline_bytes = 10;
        cfg.gateway.documents.max_upload_bytes = 1024 * 1024 * 1024;
        assert_eq!(
            problems(&cfg.gateway),
            vec![
                "gateway.toml: documents.max_inline_bytes: must be between 1024 and 268435456",
                "gateway.toml: documents.max_upload_bytes: must be between 1024 and 268435456",
            ]
        );
        let d: DocumentsConfig = toml::from_str("max_inline_bytes = 2048").unwrap();
        assert_eq!(d.max_upload_bytes, 10 * 1024 * 1024);
        assert!(toml::from_str::<DocumentsConfig>("max_bytes = 1").is_err());
    }

    #[test]
    fn tls_toml_shape() {
        let tls: TlsConfig = toml::from_str(
            "cert_file = \"c.pem\"\nkey_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"\nclient_auth = \"required\"",
        )
        .unwrap();
        assert_eq!(tls.client_auth, Some(ClientAuth::Required));
        assert_eq!(tls.reload_interval_secs, 5);
        let err = toml::from_str::<TlsConfig>(
            "cert_file = \"c.pem\"\nkey_file = \"k.pem\"\nclient_auth = \"sometimes\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
    }

    #[test]
    fn supplier_certificate_bindings_need_mutual_tls_and_a_fingerprint() {
        let mut cfg = example();
        let mut suppliers = cfg.suppliers.clone();
        suppliers.suppliers[0].client_cert_sha256 = Some("ab".repeat(32));
        let err = cfg
            .set_suppliers(suppliers.clone(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "has client_cert_sha256 but gateway.toml has no [server.tls] client_ca_file"
            ),
            "{err}"
        );

        cfg.gateway.server.tls.as_mut().unwrap().client_ca_file = Some("ca.pem".into());
        cfg.set_suppliers(suppliers.clone(), None).unwrap();

        suppliers.suppliers[0].client_cert_sha256 = Some("ab".repeat(31));
        let err = cfg.set_suppliers(suppliers, None).unwrap_err().to_string();
        assert!(err.contains("key 'client_cert_sha256': must be the certificate's SHA-256 fingerprint: 64 hex digits"), "{err}");
    }

    #[test]
    fn redis_password_file_is_checked_and_kept_out_of_errors() {
        let mut cfg = example();
        cfg.gateway.state.redis_password_file = Some("redis-password".into());
        assert_eq!(problems(&cfg.gateway), Vec::<String>::new());
        cfg.gateway.state.redis_url = Some("redis://:hunter2@redis:6379/0".into());
        assert_eq!(
            problems(&cfg.gateway),
            vec![
                "gateway.toml: state.redis_password_file: redis_url already carries a password: give it once, in the file"
            ]
        );
        cfg.gateway.state.backend = StateBackend::Memory;
        cfg.gateway.state.redis_url = None;
        assert_eq!(
            problems(&cfg.gateway),
            vec!["gateway.toml: state.redis_password_file: is only used with backend = \"redis\""]
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("redis-password"), "p@ss:w/rd%\n").unwrap();
        let state = StateConfig {
            backend: StateBackend::Redis,
            redis_url: Some("redis://gateway@redis:6379/0".into()),
            redis_password_file: Some("redis-password".into()),
            key_prefix: default_key_prefix(),
        };
        assert_eq!(
            state.redis_connection_url(dir.path()).unwrap(),
            "redis://gateway:p%40ss%3Aw%2Frd%25@redis:6379/0"
        );
        std::fs::write(
            dir.path().join("redis-password"),
            "hunter-one\nhunter-two\n",
        )
        .unwrap();
        let err = state.redis_connection_url(dir.path()).unwrap_err();
        assert!(
            err.contains("redis-password") && !err.contains("hunter"),
            "{err}"
        );
    }

    #[test]
    fn systems_carry_tls_and_auth_with_files_relative_to_the_config() {
        let mut systems: SystemsConfig = toml::from_str(
            r#"
            [emis]
            base_url = "https://emis.example:9443"
            ca_file = "certs/emis-ca.pem"
            [emis.auth]
            kind = "mutual_tls"
            cert_file = "certs/gateway.pem"
            key_file = "/run/secrets/gateway.key"

            [microtest]
            base_url = "http://127.0.0.1:9004"
            [microtest.auth]
            kind = "oauth_client_credentials"
            token_url = "https://auth.example/token"
            client_id = "gp-gateway"
            client_secret_env = "MICROTEST_SECRET"
            "#,
        )
        .unwrap();
        systems.resolve_files(Path::new("/etc/gp-gateway"));
        let (configured, problems) = systems.resolve(&crate::systems::builtin());
        let emis = configured
            .get(&gp_adapter_emis::SYSTEM)
            .and_then(|c| c.get::<gp_adapter_emis::EmisConfig>())
            .unwrap();
        assert_eq!(
            emis.ca_file.as_deref(),
            Some(Path::new("/etc/gp-gateway/certs/emis-ca.pem"))
        );
        assert_eq!(
            emis.auth,
            Some(gp_adapter::endpoint::AuthConfig::MutualTls {
                cert_file: "/etc/gp-gateway/certs/gateway.pem".into(),
                key_file: "/run/secrets/gateway.key".into(),
            })
        );
        assert_eq!(
            problems,
            vec![(
                "systems.microtest".to_owned(),
                "microtest.auth.token_url: an https:// token URL is verified with ca_file, which is not set".to_owned()
            )]
        );
        let inline = "[tpp]\nbase_url = \"http://h\"\n[tpp.auth]\nkind = \"api_key\"\nheader = \"X-Key\"\nkey = \"s3cret\"\n";
        let inline: SystemsConfig = toml::from_str(inline).unwrap();
        let (_, problems) = inline.resolve(&crate::systems::builtin());
        assert_eq!(problems.len(), 1, "secrets are never inline: {problems:?}");
        assert!(
            problems[0].1.contains("unknown field `key`"),
            "{problems:?}"
        );
    }
}
