//! The running gateway's shared state, built from a validated configuration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gp_adapter::{Adapter, ClinicalType, GpSystem};
use gp_fhir::search::PagingLimits;
use gp_fhir::{NhsNumber, OdsCode};

use crate::config::{AccessMode, LoadedConfig, PracticeEntry};
use crate::error::GatewayError;
use crate::locator::{Location, Locator, PdsLocator};

/// Record entries whose patient is remembered for reads by id (about 50 bytes each in
/// `entries::Remembered`, so some 10 MiB); the least recently answered go first.
const ENTRIES_REMEMBERED: u64 = 200_000;

/// Everything a request needs, shared by all connections.
pub struct App {
    /// Public URL of the FHIR base (`https://host/FHIR/R4`): every link starts with it.
    pub public_base: String,
    /// Path of the FHIR base (`/FHIR/R4`).
    pub fhir_base_path: String,
    /// The configured public origin.
    pub public_origin: String,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<crate::forwarded::Cidr>,
    pub paging: PagingLimits,
    pub max_body_bytes: usize,
    /// `[documents]`: content served inline, and the largest filed.
    pub documents: crate::config::DocumentsConfig,
    /// Largest request head (request line + headers) answered; see `head::check_head`.
    pub max_header_bytes: usize,
    pub request_timeout: Duration,
    pub access: AccessMode,
    pub practices: BTreeMap<OdsCode, PracticeEntry>,
    pub adapters: BTreeMap<GpSystem, Arc<dyn Adapter>>,
    pub locator: Arc<dyn Locator>,
    /// NHS number → location, so PDS is not asked on every request.
    pub locations: crate::locator::Locations,
    /// GP system reads, per patient.
    pub records: Arc<crate::cache::RecordCache>,
    /// The patient of each record entry answered, for reads by id.
    pub entries: crate::entries::EntryIndex,
    /// Practice staff read from the GP systems, briefly.
    pub staff: crate::people::StaffCache,
    /// Tells other replicas when a write makes their cached copy stale.
    pub invalidator: crate::invalidate::Invalidator,
    /// The CapabilityStatement, generated once.
    pub capability: bytes::Bytes,
    /// False once shutdown begins: readiness fails first so load balancers drain us.
    pub accepting: AtomicBool,
    /// The sandbox manifest, served at `/_sandbox/manifest` (sandbox only).
    pub sandbox_manifest: Option<bytes::Bytes>,
    /// Supplier access (absent in the sandbox's open mode).
    pub auth: Option<crate::auth::AuthState>,
    /// The audit trail.
    pub audit: Arc<dyn crate::audit::AuditStore>,
    /// This replica's name, in its audit rows.
    pub replica: String,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Change notifications (`[notifications]`), when configured.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
}

/// Why the gateway could not be assembled from a valid config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("adapter for {0} could not be created: {1}")]
    Adapter(GpSystem, String),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Notify(#[from] crate::notify::NotifySetupError),
    #[error("terminology: {0}")]
    Terminology(#[from] gp_adapter::terminology::LoadError),
}

impl App {
    /// Builds adapters, locator, caches and supplier access. The only network call is
    /// connecting to Redis when `[state] backend = "redis"`.
    pub async fn build(cfg: &LoadedConfig) -> Result<Self, BuildError> {
        Self::build_with_keys(cfg, None).await
    }

    /// As [`App::build`], with the gateway's signing keys supplied (the sandbox embeds them).
    pub async fn build_with_keys(
        cfg: &LoadedConfig,
        keys: Option<gp_auth::GatewayKeys>,
    ) -> Result<Self, BuildError> {
        Self::build_with(cfg, keys, None).await
    }

    /// As [`App::build_with_keys`], with the notification signing key's PEM supplied
    /// (the sandbox embeds it) instead of read from `[notifications] signing_key`.
    pub async fn build_with(
        cfg: &LoadedConfig,
        keys: Option<gp_auth::GatewayKeys>,
        webhook_key: Option<&[u8]>,
    ) -> Result<Self, BuildError> {
        let g = &cfg.gateway;
        crate::terminology::install(g.terminology.as_ref(), &cfg.dir).await?;
        let mut adapters: BTreeMap<GpSystem, Arc<dyn Adapter>> = BTreeMap::new();
        for (system, config) in &cfg.systems {
            let adapter = config
                .build()
                .map_err(|e| BuildError::Adapter(*system, e))?;
            adapters.insert(*system, adapter);
        }
        let locator = Arc::new(PdsLocator::new(
            &g.locator.pds_base_url,
            Duration::from_millis(g.locator.timeout_ms),
        ));
        let audit = crate::audit::open(&g.audit, &cfg.dir).await?;
        let mut app = Self::assemble(cfg, adapters, locator, audit);
        if g.state.backend == crate::config::StateBackend::Redis {
            let url = g
                .state
                .redis_connection_url(&cfg.dir)
                .map_err(|e| BuildError::Auth(crate::auth::AuthSetupError::State(e)))?;
            app.invalidator = crate::invalidate::Invalidator::redis(
                &url,
                &g.state.key_prefix,
                app.records.clone(),
            )
            .await
            .map_err(|e| BuildError::Auth(crate::auth::AuthSetupError::State(e)))?;
            app.entries = crate::entries::EntryIndex::new(ENTRIES_REMEMBERED)
                .shared(&url, &g.state.key_prefix)
                .await
                .map_err(|e| BuildError::Auth(crate::auth::AuthSetupError::State(e)))?;
        }
        if g.access.mode == AccessMode::Oauth {
            app.auth = Some(crate::auth::AuthState::build(cfg, keys).await?);
        }
        if let Some(n) = &g.notifications {
            let pem = match webhook_key {
                Some(pem) => pem.to_vec(),
                None => {
                    let path = cfg.dir.join(&n.signing_key);
                    std::fs::read(&path).map_err(|e| {
                        crate::notify::NotifySetupError::Key(format!(
                            "cannot read {}: {e}",
                            path.display()
                        ))
                    })?
                }
            };
            let notifier = crate::notify::Notifier::new(
                n.clone(),
                app.audit.as_ref(),
                &pem,
                &app.public_base,
                &cfg.dir,
            )?;
            // Receivers verify deliveries with the key published beside the token keys.
            if let Some(auth) = app.auth.as_mut() {
                auth.jwks =
                    bytes::Bytes::from(crate::notify::sign::with_key(&auth.jwks, &notifier.signer));
            }
            app.notifier = Some(Arc::new(notifier));
        }
        Ok(app)
    }

    /// Assembles the state from parts (tests substitute adapters and locators).
    pub fn assemble(
        cfg: &LoadedConfig,
        adapters: BTreeMap<GpSystem, Arc<dyn Adapter>>,
        locator: Arc<dyn Locator>,
        audit: Arc<dyn crate::audit::AuditStore>,
    ) -> Self {
        let g = &cfg.gateway;
        let public_base = format!("{}{}", g.server.public_base_url, g.server.fhir_base_path);
        let mut clinical: Vec<ClinicalType> = adapters
            .values()
            .flat_map(|a| a.supported_types().iter().copied())
            .collect();
        clinical.sort();
        clinical.dedup();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        // Every GP system, ours or a vendor's, sits behind its own bulkhead and breaker.
        let adapters: BTreeMap<GpSystem, Arc<dyn Adapter>> = adapters
            .into_iter()
            .map(|(system, inner)| {
                let guarded: Arc<dyn Adapter> = Arc::new(crate::resilience::Resilient::new(
                    inner,
                    g.resilience,
                    metrics.clone(),
                ));
                (system, guarded)
            })
            .collect();
        let today = time::OffsetDateTime::now_utc().date().to_string();
        let capability = crate::capability::capability_statement(
            &public_base,
            &clinical,
            adapters.values().any(|a| a.manages_appointments()),
            adapters.values().any(|a| a.manages_documents()),
            g.notifications.is_some(),
            &today,
            g.auth
                .as_ref()
                .filter(|_| g.access.mode == AccessMode::Oauth)
                .map(|a| a.token_url.as_str()),
        );
        Self {
            public_base,
            fhir_base_path: g.server.fhir_base_path.clone(),
            public_origin: g.server.public_base_url.clone(),
            // Validated on load: an unparsable entry cannot reach here.
            trusted_proxies: g
                .server
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::forwarded::Cidr::parse(p).ok())
                .collect(),
            paging: PagingLimits {
                default_count: g.search.default_count,
                max_count: g.search.max_count,
            },
            max_body_bytes: g.server.max_body_bytes,
            documents: g.documents,
            max_header_bytes: g.server.max_header_bytes,
            request_timeout: Duration::from_millis(g.server.request_timeout_ms),
            access: g.access.mode,
            practices: cfg.practices.clone(),
            adapters,
            locator,
            locations: crate::locator::Locations::new(
                g.locator.cache_max_entries,
                g.locator.cache_ttl_secs,
            ),
            records: Arc::new(crate::cache::RecordCache::new(g.cache, metrics.clone())),
            entries: crate::entries::EntryIndex::new(ENTRIES_REMEMBERED),
            staff: crate::people::StaffCache::default(),
            invalidator: crate::invalidate::Invalidator::local(),
            capability: bytes::Bytes::from(serde_json::to_vec(&capability).unwrap_or_default()),
            accepting: AtomicBool::new(true),
            sandbox_manifest: None,
            auth: None,
            audit,
            replica: crate::audit::replica_name(),
            metrics,
            notifier: None,
        }
    }

    /// Finds the patient's practice and the adapter of its GP system. A patient PDS
    /// does not know, and one registered at a practice this gateway does not serve,
    /// are both "not found" to the caller.
    pub async fn locate(
        &self,
        nhs: NhsNumber,
        request_id: &str,
    ) -> Result<(Location, &PracticeEntry, Arc<dyn Adapter>), GatewayError> {
        let not_found =
            || GatewayError::NotFound(format!("no patient record found for NHS number {nhs}"));
        let cached = self.locations.get(nhs);
        self.metrics.cache("locator", cached.is_some());
        let location = match cached {
            Some(hit) => hit,
            None => {
                let found = self
                    .locator
                    .locate(nhs, request_id)
                    .await
                    .map_err(|e| GatewayError::LocatorUnavailable(e.to_string()))?;
                let Some(found) = found else {
                    tracing::debug!(reason = "not-registered", "patient not located");
                    return Err(not_found());
                };
                self.locations.insert(nhs, &found);
                found
            }
        };
        let Some(practice) = self.practices.get(&location.practice) else {
            tracing::debug!(reason = "practice-not-served", practice = %location.practice, "patient not located");
            return Err(not_found());
        };
        let adapter = self
            .adapters
            .get(&practice.system)
            .cloned()
            .ok_or_else(|| {
                GatewayError::NoAdapter(location.practice.to_string(), practice.system.to_string())
            })?;
        Ok((location, practice, adapter))
    }

    /// Marks the gateway as draining: readiness fails from now on.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// Whether the gateway is accepting new work.
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }
}
