//! The gateway's configuration: one TOML tree plus the practice registry it names,
//! parsed with `deny_unknown_fields` and validated purely (no network, no secrets read)
//! so `gp-gateway check-config` can run in CI.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use gp_adapter::GpSystem;
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
}

/// `[state]`: rate-limit counters and the assertion replay set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `memory` (one replica) or `redis` (several replicas share one budget and replay set).
    #[serde(default)]
    pub backend: StateBackend,
    /// Redis URL when `backend = "redis"`.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key the gateway writes.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: StateBackend::Memory,
            redis_url: None,
            key_prefix: default_key_prefix(),
        }
    }
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

/// `[server.tls]`: TLS with rustls when present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
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

/// `[systems.*]`: one table per GP system the gateway talks to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemsConfig {
    pub emis: Option<gp_adapter_emis::EmisConfig>,
    pub tpp: Option<gp_adapter_tpp::TppConfig>,
    pub vision: Option<gp_adapter_vision::VisionConfig>,
    pub microtest: Option<gp_adapter_microtest::MicrotestConfig>,
}

impl SystemsConfig {
    /// The systems configured.
    pub fn configured(&self) -> Vec<GpSystem> {
        let present = [
            (GpSystem::Emis, self.emis.is_some()),
            (GpSystem::Tpp, self.tpp.is_some()),
            (GpSystem::Vision, self.vision.is_some()),
            (GpSystem::Microtest, self.microtest.is_some()),
        ];
        present
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(s, _)| s)
            .collect()
    }

    /// Each configured system's own validation problem, if any.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        fn check<E: std::fmt::Display>(
            key: &'static str,
            r: Option<Result<(), E>>,
        ) -> Option<(&'static str, String)> {
            match r {
                Some(Err(e)) => Some((key, e.to_string())),
                _ => None,
            }
        }
        [
            check("systems.emis", self.emis.as_ref().map(|c| c.validate())),
            check("systems.tpp", self.tpp.as_ref().map(|c| c.validate())),
            check("systems.vision", self.vision.as_ref().map(|c| c.validate())),
            check(
                "systems.microtest",
                self.microtest.as_ref().map(|c| c.validate()),
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Points a system at a base URL (the sandbox's simulators).
    pub fn set_base_url(&mut self, system: GpSystem, url: &str) {
        match system {
            GpSystem::Emis => {
                if let Some(c) = self.emis.as_mut() {
                    c.base_url = url.to_owned();
                }
            }
            GpSystem::Tpp => {
                if let Some(c) = self.tpp.as_mut() {
                    c.base_url = url.to_owned();
                }
            }
            GpSystem::Vision => {
                if let Some(c) = self.vision.as_mut() {
                    c.base_url = url.to_owned();
                }
            }
            GpSystem::Microtest => {
                if let Some(c) = self.microtest.as_mut() {
                    c.base_url = url.to_owned();
                }
            }
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
    pub practice: Vec<PracticeEntry>,
}

/// One GP practice and the system its records live in.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
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
    /// Reads `gateway.toml` and the practice registry it names, then validates both.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = read(path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let gateway: GatewayConfig = parse(path, &text)?;
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
        let mut loaded = Self::from_parts(gateway, registry, path, &practices_path, dir)?;
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
        self.suppliers = suppliers;
        self.suppliers_path = path;
        Ok(())
    }

    /// Validates already-parsed parts (the sandbox builds its config in memory).
    pub fn from_parts(
        gateway: GatewayConfig,
        registry: PracticeRegistryFile,
        file: &Path,
        practices_file: &Path,
        dir: PathBuf,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = validate_gateway(&gateway, file);
        let mut practices = BTreeMap::new();
        let configured: HashSet<GpSystem> = gateway.systems.configured().into_iter().collect();
        for (i, p) in registry.practice.into_iter().enumerate() {
            let key = format!("practice[{i}]");
            match OdsCode::parse(&p.ods) {
                Err(e) => errors.push(invalid(
                    practices_file,
                    &format!("{key}.ods"),
                    e.to_string(),
                )),
                Ok(ods) => {
                    if !configured.contains(&p.system) {
                        errors.push(invalid(
                            practices_file,
                            &format!("{key}.system"),
                            format!("practice {ods} uses '{}' but gateway.toml has no [systems.{}] table", p.system.id(), p.system.id()),
                        ));
                    }
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
    if c.server.request_timeout_ms == 0 || c.server.header_read_timeout_ms == 0 {
        errors.push(invalid(
            file,
            "server.request_timeout_ms",
            "timeouts must be greater than zero",
        ));
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
    for (key, problem) in c.systems.problems() {
        errors.push(invalid(file, key, problem));
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
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {}
            _ => errors.push(invalid(
                file,
                "state.redis_url",
                "backend \"redis\" needs redis_url = \"redis://host:port/db\"",
            )),
        }
    }
    if c.systems.configured().is_empty() {
        errors.push(invalid(
            file,
            "systems",
            "no GP system is configured: add at least one [systems.<name>] table",
        ));
    }
    errors
}
