//! An example GP system: Acme Clinical, a fictional system with a JSON API, joined to
//! gp-gateway from this one crate, without changing the gateway (see README.md).
//!
//! The anatomy every adapter crate shares: `config.rs` (the `[systems.acme]` table,
//! validated purely), `client.rs` (native calls and native errors), `mapping.rs` (pure
//! native → UK Core), `error.rs` (native data errors), and this file wiring them into
//! [`Adapter`] and [`AdapterFactory`]. `sim.rs` (feature `sim`) simulates the native API.

pub mod client;
pub mod config;
pub mod error;
pub mod mapping;
#[cfg(feature = "sim")]
pub mod sim;

use std::sync::Arc;

use async_trait::async_trait;
use gp_adapter::endpoint::EndpointError;
use gp_adapter::{
    Adapter, AdapterError, AdapterFactory, CallContext, ClinicalType, GpSystem, PatientRecord,
    PatientRequest, PractitionerRequest, SearchPage, SearchRequest, paging,
};
use gp_fhir::model::Practitioner;

pub use client::AcmeClient;
pub use config::AcmeConfig;
pub use error::AcmeDataError;
pub use mapping::{List, map_list, map_patient};

/// Acme Clinical: `[systems.acme]` in config, `acme` in the practice registry.
pub const SYSTEM: GpSystem = GpSystem::new("acme", "Acme Clinical");

/// Acme Clinical, as gp-gateway sees it. Read-only: write-back keeps the trait's
/// `NotSupported` defaults.
#[derive(Debug, Clone)]
pub struct AcmeAdapter {
    client: AcmeClient,
}

impl AcmeAdapter {
    /// Validates `config` and builds the adapter (no network I/O until the first call).
    pub fn new(config: &AcmeConfig) -> Result<Self, EndpointError> {
        Ok(Self {
            client: AcmeClient::new(config)?,
        })
    }
}

/// How the gateway reads `[systems.acme]` and builds this adapter, once registered:
/// `gp_gateway::systems::builtin().with(Registration::of::<AcmeAdapter>())`.
impl AdapterFactory for AcmeAdapter {
    const SYSTEM: GpSystem = SYSTEM;
    type Config = AcmeConfig;

    fn validate(config: &AcmeConfig) -> Result<(), String> {
        config.validate(SYSTEM).map_err(|e| e.to_string())
    }

    fn set_base_url(config: &mut AcmeConfig, url: &str) {
        url.clone_into(&mut config.base_url);
    }

    fn build(config: &AcmeConfig) -> Result<Arc<dyn Adapter>, String> {
        let adapter = Self::new(config).map_err(|e| e.to_string())?;
        Ok(Arc::new(adapter))
    }
}

#[async_trait]
impl Adapter for AcmeAdapter {
    fn system(&self) -> GpSystem {
        SYSTEM
    }

    /// One native call: the patient document carries the practice and usual GP.
    async fn read_patient(&self, req: &PatientRequest) -> Result<PatientRecord, AdapterError> {
        let (nhs, ods) = (req.nhs_number, &req.practice);
        let body = self.client.patient(ods, nhs, &req.context).await?;
        Ok(map_patient(&body, nhs, ods)?)
    }

    /// Acme answers a whole list; the page, date filter and order are cut here.
    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, AdapterError> {
        let Some(list) = List::of(req.resource_type) else {
            return Err(AdapterError::NotSupported {
                system: SYSTEM,
                what: format!("searching {}", req.resource_type),
            });
        };
        let (nhs, ods) = (req.nhs_number, &req.practice);
        let body = self.client.list(ods, nhs, list, &req.context).await?;
        Ok(paging::page(map_list(&body, list, nhs)?, req))
    }

    fn supported_types(&self) -> &'static [ClinicalType] {
        List::SERVED
    }

    /// One native call: the practice's clinician document.
    async fn read_practitioner(
        &self,
        req: &PractitionerRequest,
    ) -> Result<Option<Practitioner>, AdapterError> {
        gp_adapter::native::read_staff(SYSTEM, &req.id, |id| async move {
            let body = self
                .client
                .clinician(&req.practice, &id, &req.context)
                .await?;
            Ok(Some(mapping::map_clinician_document(&body)?))
        })
        .await
    }

    async fn ready(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        self.client.health(ctx).await
    }
}
