//! `gp-gateway sandbox`: the gateway and a simulator of every GP system in one
//! process on loopback, over a deterministic synthetic population, with demo
//! suppliers — what a start-up develops against.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use gp_sim::{Population, PopulationSpec, SimHandle, SimStore, SystemKind};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::{
    ConfigErrors, GatewayConfig, LoadedConfig, PracticeEntry, PracticeRecord, PracticeRegistryFile,
};
use crate::server::ServerHandle;

/// The sandbox's configuration, compiled in (see `config/sandbox/gateway.toml`).
pub const SANDBOX_CONFIG: &str = include_str!("../../../config/sandbox/gateway.toml");
/// The demo suppliers (TEST-ONLY keys and registry, see fixtures/sandbox/README.md).
const SUPPLIERS: &str = include_str!("../../../fixtures/sandbox/suppliers.toml");
const GATEWAY_SIGNING_KEY: &[u8] =
    include_bytes!("../../../fixtures/sandbox/gateway-signing-ed25519.pem");
/// Signs the sandbox's notification deliveries (TEST-ONLY).
const WEBHOOK_SIGNING_KEY: &[u8] =
    include_bytes!("../../../fixtures/sandbox/webhook-signing-ed25519.pem");
/// client id, JWKS, private key.
const DEMO_KEYS: [(&str, &str, &str); 5] = [
    (
        "demo-booking",
        include_str!("../../../fixtures/sandbox/demo-booking.jwks.json"),
        include_str!("../../../fixtures/sandbox/demo-booking.private.pem"),
    ),
    (
        "demo-monitoring",
        include_str!("../../../fixtures/sandbox/demo-monitoring.jwks.json"),
        include_str!("../../../fixtures/sandbox/demo-monitoring.private.pem"),
    ),
    (
        "demo-consult",
        include_str!("../../../fixtures/sandbox/demo-consult.jwks.json"),
        include_str!("../../../fixtures/sandbox/demo-consult.private.pem"),
    ),
    (
        "demo-operator",
        include_str!("../../../fixtures/sandbox/demo-operator.jwks.json"),
        include_str!("../../../fixtures/sandbox/demo-operator.private.pem"),
    ),
    (
        "demo-suspended",
        include_str!("../../../fixtures/sandbox/demo-suspended.jwks.json"),
        include_str!("../../../fixtures/sandbox/demo-suspended.private.pem"),
    ),
];

/// Seed of the demo population unless `--seed` says otherwise.
pub const DEFAULT_SEED: u64 = 20_261_123;

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox config: {0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("{0}")]
    Build(#[from] crate::app::BuildError),
    #[error("--print-manifest needs a fixed port (the manifest names the URL); got {0}")]
    EphemeralPort(SocketAddr),
    #[error("sandbox fixtures: {0}")]
    Fixture(String),
}

/// The sandbox manifest: what a developer or the conformance kit needs to call it.
/// Keys are a contract (see README): add, never rename.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub base_url: String,
    pub token_url: String,
    pub suppliers: Vec<ManifestSupplier>,
    pub patients: Vec<gp_sim::ManifestPatient>,
    /// Practices served, with their GP system.
    pub practices: Vec<PracticeEntry>,
    /// Base URLs of the running simulators (empty for `--print-manifest`).
    pub simulators: std::collections::BTreeMap<String, String>,
    /// The demo notification receiver (`null` for `--print-manifest`).
    pub receiver: Option<ManifestReceiver>,
}

/// The sandbox's demo notification receiver in the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestReceiver {
    /// Subscribe with this as `channel.endpoint`.
    pub url: String,
    /// `GET` it for what arrived (JSON, oldest first; `?since=N` for those after the Nth).
    pub inbox: String,
}

/// A demo supplier in the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestSupplier {
    pub client_id: String,
    pub kid: String,
    pub alg: String,
    /// Path of the private key file (PEM).
    pub private_key_pem: String,
    pub scopes: Vec<String>,
    pub practices: Vec<String>,
    /// `active` or `suspended` (refused every token: what SEC-SUS-01 checks).
    pub status: gp_auth::SupplierStatus,
    /// An operator client (the service desk): searches every supplier's audit trail.
    pub operator: bool,
}

/// The demo population.
pub fn population(seed: u64) -> Population {
    Population::generate(seed, &PopulationSpec::sandbox())
}

/// Where the compiled-in sandbox config comes from, for error messages.
const SANDBOX_CONFIG_PATH: &str = "config/sandbox/gateway.toml";

/// The compiled-in sandbox config, parsed.
fn base_config() -> Result<GatewayConfig, ConfigErrors> {
    toml::from_str(SANDBOX_CONFIG).map_err(|e| {
        ConfigErrors::from(crate::config::ConfigError::Parse {
            file: SANDBOX_CONFIG_PATH.into(),
            message: e.to_string(),
        })
    })
}

/// Builds the sandbox configuration for a listen address and simulator URLs.
pub fn config(
    listen: SocketAddr,
    pds_url: &str,
    system_urls: &[(SystemKind, String)],
    population: &Population,
) -> Result<LoadedConfig, ConfigErrors> {
    let file = Path::new(SANDBOX_CONFIG_PATH);
    let mut gateway = base_config()?;
    gateway.server.listen = listen.to_string();
    gateway.server.public_base_url = format!("http://{listen}");
    if let Some(auth) = gateway.auth.as_mut() {
        auth.token_url = format!("http://{listen}/oauth2/token");
        auth.issuer = format!("http://{listen}");
        auth.audience = format!("http://{listen}{}", gateway.server.fhir_base_path);
    }
    gateway.locator.pds_base_url = pds_url.to_owned();
    // Each sandbox run keeps its own audit trail, so parallel test sandboxes never share one.
    gateway.audit.sqlite_path = std::env::temp_dir()
        .join("gp-gateway-sandbox")
        .join(format!("audit-{}.sqlite", uuid::Uuid::new_v4()));
    let practice = population
        .practices
        .iter()
        .map(|p| PracticeRecord {
            ods: p.ods.clone(),
            name: p.name.clone(),
            system: p.system.id().to_owned(),
        })
        .collect();
    let mut loaded = LoadedConfig::from_parts(
        gateway,
        PracticeRegistryFile { practice },
        &crate::systems::builtin(),
        file,
        Path::new("(sandbox population)"),
        ".".into(),
    )?;
    // Each simulated system's adapter is pointed at its simulator.
    for (kind, url) in system_urls {
        let Some(system) = loaded
            .systems
            .values_mut()
            .find(|s| s.system().id() == kind.id())
        else {
            return Err(ConfigErrors::from(crate::config::ConfigError::Invalid {
                file: file.to_owned(),
                key: format!("systems.{}", kind.id()),
                problem: "the sandbox simulates this system but has no table for it".into(),
            }));
        };
        system.set_base_url(url);
    }
    loaded.set_suppliers(suppliers(population, &loaded)?, None)?;
    Ok(loaded)
}

/// The demo suppliers, paired with the population's practices: `sandbox-north` is the
/// first practice of each GP system, `sandbox-south` the second, `sandbox-all` all.
fn suppliers(
    population: &Population,
    cfg: &LoadedConfig,
) -> Result<gp_auth::SuppliersConfig, ConfigErrors> {
    let file = Path::new("fixtures/sandbox/suppliers.toml");
    let parse_err = |message: String| {
        ConfigErrors::from(crate::config::ConfigError::Parse {
            file: file.to_owned(),
            message,
        })
    };
    let mut registry: gp_auth::SuppliersConfig =
        toml::from_str(SUPPLIERS).map_err(|e| parse_err(e.to_string()))?;
    let served: Vec<&gp_sim::Practice> = population
        .practices
        .iter()
        .filter(|p| cfg.practices.keys().any(|o| o.as_str() == p.ods))
        .collect();
    let nth = |n: usize| -> Vec<String> {
        population
            .systems()
            .into_iter()
            .filter_map(|s| served.iter().filter(|p| p.system == s).nth(n))
            .map(|p| p.ods.clone())
            .collect()
    };
    registry.practice_groups.insert(
        "sandbox-all".into(),
        served.iter().map(|p| p.ods.clone()).collect(),
    );
    registry
        .practice_groups
        .insert("sandbox-north".into(), nth(0));
    registry
        .practice_groups
        .insert("sandbox-south".into(), nth(1));
    for supplier in &mut registry.suppliers {
        let (_, jwks, _) = DEMO_KEYS
            .iter()
            .find(|(id, _, _)| *id == supplier.client_id)
            .ok_or_else(|| {
                parse_err(format!(
                    "no embedded key for supplier {}",
                    supplier.client_id
                ))
            })?;
        supplier.jwks = Some(serde_json::from_str(jwks).map_err(|e| parse_err(e.to_string()))?);
        supplier.jwks_file = None;
    }
    Ok(registry)
}

/// Writes the demo suppliers' private keys where the manifest says they are.
fn write_keys(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, SandboxError> {
    let fixture = |e: std::io::Error| SandboxError::Fixture(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fixture)?;
    let mut out = Vec::new();
    for (client_id, _, pem) in DEMO_KEYS {
        let path = dir.join(format!("{client_id}.private.pem"));
        write_whole(&path, pem.as_bytes()).map_err(fixture)?;
        out.push((client_id.to_owned(), path));
    }
    Ok(out)
}

/// Puts `contents` at `path` (owner-only) so that a reader never sees it part-written:
/// every sandbox on the machine (each test, each `gp-gateway` run) writes the same key
/// files, which another may be reading at that moment. Written beside it under a name
/// of this process's own, then renamed over it; left alone when already in place.
fn write_whole(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|held| held == contents) {
        return Ok(());
    }
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    let staged = path.with_file_name(name);
    std::fs::write(&staged, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&staged, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&staged);
    })
}

/// A demo supplier's signing identity (TEST-ONLY keys).
pub fn demo_identity(client_id: &str) -> Result<gp_auth::ClientAssertion, SandboxError> {
    let (_, jwks, pem) = DEMO_KEYS
        .iter()
        .find(|(id, _, _)| *id == client_id)
        .ok_or_else(|| {
            SandboxError::Fixture(format!(
                "'{client_id}' is not a sandbox demo supplier ({})",
                DEMO_KEYS.map(|(id, _, _)| id).join(", ")
            ))
        })?;
    let jwks: serde_json::Value =
        serde_json::from_str(jwks).map_err(|e| SandboxError::Fixture(e.to_string()))?;
    let field = |k: &str| {
        jwks.pointer(&format!("/keys/0/{k}"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    Ok(gp_auth::ClientAssertion {
        client_id: client_id.to_owned(),
        kid: field("kid"),
        alg: field("alg"),
        private_key_pem: pem.as_bytes().to_vec(),
    })
}

/// Where the demo keys are written: a fixed per-user temp folder.
pub fn keys_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("gp-gateway-sandbox-keys")
}

fn manifest_suppliers(
    cfg: &LoadedConfig,
    keys: &[(String, std::path::PathBuf)],
) -> Vec<ManifestSupplier> {
    cfg.suppliers
        .suppliers
        .iter()
        .map(|s| {
            let jwk = s.jwks.as_ref().and_then(|j| j.pointer("/keys/0"));
            let field = |k: &str| {
                jwk.and_then(|j| j.get(k))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let practices = s
                .practices
                .iter()
                .flat_map(|p| match p.strip_prefix("group:") {
                    Some(g) => cfg
                        .suppliers
                        .practice_groups
                        .get(g)
                        .cloned()
                        .unwrap_or_default(),
                    None => vec![p.clone()],
                })
                .collect();
            ManifestSupplier {
                client_id: s.client_id.clone(),
                kid: field("kid"),
                alg: field("alg"),
                private_key_pem: keys
                    .iter()
                    .find(|(id, _)| *id == s.client_id)
                    .map(|(_, p)| p.display().to_string())
                    .unwrap_or_default(),
                scopes: s.scopes.clone(),
                practices,
                status: s.status,
                operator: s.operator,
            }
        })
        .collect()
}

fn gateway_keys(cfg: &LoadedConfig) -> Result<gp_auth::GatewayKeys, SandboxError> {
    let kid = cfg
        .gateway
        .auth
        .as_ref()
        .map(|a| a.active_kid.clone())
        .unwrap_or_default();
    gp_auth::GatewayKeys::from_pems(&kid, &[(kid.clone(), GATEWAY_SIGNING_KEY.to_vec())])
        .map_err(|e| SandboxError::Fixture(e.to_string()))
}

/// The manifest for a sandbox listening on `listen`; writes the demo keys it names.
pub fn manifest(
    listen: SocketAddr,
    population: &Population,
    cfg: &LoadedConfig,
) -> Result<Manifest, SandboxError> {
    let origin = format!("http://{listen}");
    let keys = write_keys(&keys_dir())?;
    Ok(Manifest {
        base_url: format!("{origin}{}", cfg.gateway.server.fhir_base_path),
        token_url: format!("{origin}/oauth2/token"),
        suppliers: manifest_suppliers(cfg, &keys),
        patients: population.manifest_patients(),
        practices: cfg.practices.values().cloned().collect(),
        simulators: Default::default(),
        receiver: None,
    })
}

/// A running sandbox.
pub struct Sandbox {
    pub server: ServerHandle,
    /// The admin listener: `/metrics` and the probes.
    pub admin: ServerHandle,
    pub simulators: Vec<(String, SimHandle)>,
    pub store: SimStore,
    pub app: Arc<App>,
    pub manifest: Manifest,
    /// The configuration it runs with.
    pub config: LoadedConfig,
    /// The demo notification receiver.
    pub receiver: crate::notify::receiver::Receiver,
}

/// The running sandbox's supplier registry, as TOML (to edit and reload).
pub fn current_suppliers(sandbox: &Sandbox) -> Result<String, String> {
    toml::to_string(&sandbox.config.suppliers).map_err(|e| e.to_string())
}

impl Sandbox {
    /// Stops the gateway, then the simulators.
    pub async fn shutdown(self) {
        let deadline = std::time::Duration::from_secs(5);
        self.server.shutdown(deadline).await;
        self.admin.shutdown(deadline).await;
        self.receiver.stop();
        for (_, sim) in self.simulators {
            sim.shutdown().await;
        }
    }
}

async fn loopback() -> Result<TcpListener, SandboxError> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| SandboxError::Bind("127.0.0.1:0".into(), e))
}

/// Starts the simulators and the gateway. `listen` may use port 0 (tests).
pub async fn start(listen: SocketAddr, seed: u64) -> Result<Sandbox, SandboxError> {
    start_with_audit(listen, seed, None).await
}

/// As [`start`], with the audit trail in `audit` instead of a fresh SQLite file (tests
/// point it at PostgreSQL).
pub async fn start_with_audit(
    listen: SocketAddr,
    seed: u64,
    audit: Option<crate::audit::AuditConfig>,
) -> Result<Sandbox, SandboxError> {
    start_with(
        listen,
        seed,
        Options {
            audit,
            ..Options::default()
        },
    )
    .await
}

/// What a test changes in the sandbox's configuration.
#[derive(Default)]
pub struct Options {
    /// The audit trail, instead of a fresh SQLite file.
    pub audit: Option<crate::audit::AuditConfig>,
    /// A layer over every GP system's adapter (see [`start_layered`]).
    pub layer: Option<AdapterLayer>,
    /// `[terminology]` (absolute paths): map files instead of the embedded maps.
    pub terminology: Option<crate::terminology::TerminologyConfig>,
}

/// As [`start`], with `options`.
pub async fn start_with(
    listen: SocketAddr,
    seed: u64,
    options: Options,
) -> Result<Sandbox, SandboxError> {
    start_inner(listen, seed, options).await
}

/// Puts a layer between the gateway and each GP system's adapter.
pub type AdapterLayer =
    Box<dyn Fn(Arc<dyn gp_adapter::Adapter>) -> Arc<dyn gp_adapter::Adapter> + Send + Sync>;

/// As [`start`], with `layer` over every GP system's adapter: tests make a GP system
/// answer what the simulators never do (a record restricted by one of its two markers
/// only, an entry labelled with another confidentiality code) and check what the
/// gateway releases.
pub async fn start_layered(
    listen: SocketAddr,
    seed: u64,
    layer: AdapterLayer,
) -> Result<Sandbox, SandboxError> {
    start_with(
        listen,
        seed,
        Options {
            layer: Some(layer),
            ..Options::default()
        },
    )
    .await
}

async fn start_inner(
    listen: SocketAddr,
    seed: u64,
    options: Options,
) -> Result<Sandbox, SandboxError> {
    let Options {
        audit,
        layer,
        terminology,
    } = options;
    let population = population(seed);
    let store = SimStore::new(population.clone());
    let pds = gp_sim::start_pds(store.clone(), loopback().await?)
        .await
        .map_err(|e| SandboxError::Bind("PDS".into(), e))?;
    let mut simulators: Vec<(SystemKind, SimHandle)> = Vec::new();
    for kind in population.systems() {
        let handle = gp_sim::start(kind, store.clone(), loopback().await?)
            .await
            .map_err(|e| SandboxError::Bind(kind.id().to_owned(), e))?;
        simulators.push((kind, handle));
    }
    let urls: Vec<(SystemKind, String)> =
        simulators.iter().map(|(k, h)| (*k, h.base_url())).collect();
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| SandboxError::Bind(listen.to_string(), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| SandboxError::Bind(listen.to_string(), e))?;
    let mut cfg = config(
        bound,
        &format!("{}/personal-demographics/FHIR/R4", pds.base_url()),
        &urls,
        &population,
    )?;
    if let Some(audit) = audit {
        cfg.gateway.audit = audit;
    }
    if terminology.is_some() {
        cfg.gateway.terminology = terminology;
    }
    let mut manifest = manifest(bound, &population, &cfg)?;
    manifest.simulators.insert("pds".into(), pds.base_url());
    for (kind, url) in &urls {
        manifest.simulators.insert(kind.id().into(), url.clone());
    }
    let mut app =
        App::build_with(&cfg, Some(gateway_keys(&cfg)?), Some(WEBHOOK_SIGNING_KEY)).await?;
    let keys = app
        .notifier
        .as_ref()
        .map(|n| vec![n.signer.public_key().to_vec()])
        .unwrap_or_default();
    let receiver = crate::notify::receiver::Receiver::start(loopback().await?, keys, true)
        .map_err(|e| SandboxError::Bind("the demo receiver".into(), e))?;
    manifest.receiver = Some(ManifestReceiver {
        url: receiver.url(),
        inbox: format!("http://{}/", receiver.addr),
    });
    if let Some(layer) = &layer {
        for adapter in app.adapters.values_mut() {
            *adapter = layer(adapter.clone());
        }
    }
    app.sandbox_manifest = Some(bytes::Bytes::from(
        serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
    ));
    let app = Arc::new(app);
    // Tests run many sandboxes at once on ephemeral ports: their admin listeners too.
    let admin_listen = if listen.port() == 0 {
        "127.0.0.1:0".to_owned()
    } else {
        cfg.gateway.admin.listen.clone()
    };
    let admin_listener = TcpListener::bind(&admin_listen)
        .await
        .map_err(|e| SandboxError::Bind(admin_listen.clone(), e))?;
    let admin = crate::server::start_admin(app.clone(), admin_listener, &cfg.gateway.server)
        .map_err(|e| SandboxError::Bind(admin_listen, e))?;
    let server = crate::server::start(app.clone(), listener, &cfg.gateway.server, None)
        .map_err(|e| SandboxError::Bind(bound.to_string(), e))?;
    if let Some(t) = &cfg.gateway.terminology {
        crate::terminology::spawn_reload(
            t,
            &cfg.dir,
            app.records.clone(),
            app.metrics.clone(),
            server.stopping(),
        );
    }
    Ok(Sandbox {
        server,
        admin,
        simulators: std::iter::once(("pds".to_owned(), pds))
            .chain(simulators.into_iter().map(|(k, h)| (k.id().to_owned(), h)))
            .collect(),
        store,
        app,
        manifest,
        config: cfg,
        receiver,
    })
}

/// The manifest `--print-manifest` prints, without starting anything.
pub fn print_manifest(listen: SocketAddr, seed: u64) -> Result<Manifest, SandboxError> {
    if listen.port() == 0 {
        return Err(SandboxError::EphemeralPort(listen));
    }
    let population = population(seed);
    let cfg = config(
        listen,
        "http://127.0.0.1/pds",
        &population
            .systems()
            .into_iter()
            .map(|k| (k, format!("http://127.0.0.1/{}", k.id())))
            .collect::<Vec<_>>(),
        &population,
    )?;
    manifest(listen, &population, &cfg)
}

/// The sandbox's default listen address, from its config file.
pub fn default_listen() -> Result<SocketAddr, ConfigErrors> {
    base_config()?.server.listen.parse().map_err(|_| {
        ConfigErrors::from(crate::config::ConfigError::Invalid {
            file: SANDBOX_CONFIG_PATH.into(),
            key: "server.listen".into(),
            problem: "not a socket address".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gp_auth::SupplierStatus::{Active, Suspended};

    /// Sandboxes started side by side (the test run starts dozens) rewrite the same key
    /// files while the conformance kit reads them: a reader must always find a whole
    /// key. (A plain truncate-and-write let the kit read an empty file: InvalidKeyFormat.)
    #[test]
    fn a_key_file_being_rewritten_is_always_read_whole() {
        let dir = std::env::temp_dir().join(format!("gp-sandbox-keys-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("demo.private.pem");
        let (a, b) = (vec![b'a'; 4096], vec![b'b'; 3000]);
        write_whole(&path, &a).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..400 {
                    write_whole(&path, if i % 2 == 0 { &b } else { &a }).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || reads < 100 {
                let held = std::fs::read(&path).unwrap();
                assert!(
                    held == a || held == b,
                    "read a part-written key ({} bytes)",
                    held.len()
                );
                reads += 1;
            }
        });
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no staged file is left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_manifest_names_each_suppliers_status_and_operator_role() {
        let manifest = print_manifest("127.0.0.1:18080".parse().unwrap(), DEFAULT_SEED).unwrap();
        let roles: Vec<(&str, gp_auth::SupplierStatus, bool)> = manifest
            .suppliers
            .iter()
            .map(|s| (s.client_id.as_str(), s.status, s.operator))
            .collect();
        assert_eq!(
            roles,
            [
                ("demo-booking", Active, false),
                ("demo-monitoring", Active, false),
                ("demo-consult", Active, false),
                ("demo-operator", Active, true),
                ("demo-suspended", Suspended, false),
            ]
        );
        // Every demo supplier's key is embedded and written where the manifest says.
        for s in &manifest.suppliers {
            assert!(!s.kid.is_empty(), "{}", s.client_id);
            assert!(Path::new(&s.private_key_pem).is_file(), "{}", s.client_id);
        }
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["suppliers"][4]["status"], "suspended");
        assert_eq!(json["suppliers"][3]["operator"], true);
        assert!(demo_identity("demo-suspended").is_ok());
        let e = demo_identity("nobody").err().unwrap();
        assert!(e.to_string().contains("demo-suspended"), "{e}");
    }
}
