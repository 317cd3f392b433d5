//! The reference adapter for TPP SystmOne: reads a patient's PatientRecord XML over the
//! native API, page by page (`client`), and maps it to UK Core R4 (`mapping`); writes
//! supplier measurements (CTV3-coded events) and contact details back.
//!
//! Same anatomy as every vendor crate: `config.rs` (serde config, pure validation),
//! `client.rs` (native calls and native errors), `mapping.rs` (pure native → FHIR),
//! `error.rs` (native data errors), and this file wiring them into [`Adapter`].

/// TPP SystmOne: `[systems.tpp]` in config, `tpp` in the practice registry.
pub const SYSTEM: GpSystem = GpSystem::new("tpp", "TPP SystmOne");

pub mod client;
pub mod config;
pub mod error;
pub mod mapping;

use std::sync::Arc;

use async_trait::async_trait;
use gp_adapter::{
    Adapter, AdapterError, AdapterFactory, CallContext, CreateObservationRequest, Created,
    GpSystem, PatientRecord, PatientRequest, PractitionerRequest, SearchPage, SearchRequest,
    UpdateContactRequest, paging,
};
use gp_fhir::model::Practitioner;
use gp_fhir::{NhsNumber, OdsCode};

pub use client::TppClient;
pub use config::{TppConfig, TppConfigError};
pub use error::TppDataError;
pub use mapping::{MappedRecord, RecordPage, assemble, map_page, map_record};

/// TPP SystmOne, as gp-gateway sees it.
#[derive(Debug, Clone)]
pub struct TppAdapter {
    client: TppClient,
}

impl TppAdapter {
    /// Validates `config` and builds the adapter (no network I/O until the first call).
    pub fn new(config: TppConfig) -> Result<Self, TppConfigError> {
        Ok(Self {
            client: TppClient::new(&config)?,
        })
    }

    /// Fetches and maps one page.
    async fn page(
        &self,
        nhs: NhsNumber,
        ods: &OdsCode,
        number: u32,
        ctx: &CallContext,
    ) -> Result<RecordPage, AdapterError> {
        let body = self.client.record_page(ods, nhs, number, ctx).await?;
        map_page(&body).map_err(|e| e.on_page(number).into())
    }

    /// Fetches every page, maps and joins them, and checks it is the record that was
    /// asked for.
    async fn record(
        &self,
        nhs: NhsNumber,
        ods: &OdsCode,
        ctx: &CallContext,
    ) -> Result<MappedRecord, AdapterError> {
        let size = self.client.page_size();
        let first = self.page(nhs, ods, 1, ctx).await?;
        let needed = mapping::pages_to_fetch(&first, size)?;
        let mut pages = Vec::with_capacity(needed as usize);
        pages.push(first);
        // Sequential on purpose: pages are small, and a failing page stops the walk.
        for number in 2..=needed {
            pages.push(self.page(nhs, ods, number, ctx).await?);
        }
        let record = assemble(pages, size)?;
        // A record for someone else, or from another practice, must never be answered.
        if record.nhs_number != nhs {
            return Err(TppDataError::Invalid {
                path: "Patient/Identity/NHSNumber".into(),
                reason: format!(
                    "the record is for {}, but {nhs} was requested",
                    record.nhs_number
                ),
            }
            .into());
        }
        if record.ods != *ods {
            return Err(TppDataError::Invalid {
                path: "OrganisationID".into(),
                reason: format!(
                    "the record is from organisation {}, but {ods} was requested",
                    record.ods
                ),
            }
            .into());
        }
        Ok(record)
    }
}

/// How the gateway builds this adapter from `[systems.tpp]` (registered once, in
/// `gp_gateway::systems::builtin`).
impl AdapterFactory for TppAdapter {
    const SYSTEM: GpSystem = SYSTEM;
    type Config = TppConfig;

    fn validate(config: &TppConfig) -> Result<(), String> {
        config.validate().map_err(|e| e.to_string())
    }

    fn set_base_url(config: &mut TppConfig, url: &str) {
        url.clone_into(&mut config.base_url);
    }

    fn build(config: &TppConfig) -> Result<Arc<dyn Adapter>, String> {
        let adapter = Self::new(config.clone()).map_err(|e| e.to_string())?;
        Ok(Arc::new(adapter))
    }
}

#[async_trait]
impl Adapter for TppAdapter {
    fn system(&self) -> GpSystem {
        SYSTEM
    }

    async fn read_patient(&self, req: &PatientRequest) -> Result<PatientRecord, AdapterError> {
        let r = self
            .record(req.nhs_number, &req.practice, &req.context)
            .await?;
        Ok(PatientRecord {
            patient: r.patient,
            organization: Some(r.organization),
            practitioner: r.practitioner,
            version: r.version,
            flags: r.flags,
        })
    }

    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, AdapterError> {
        let r = self
            .record(req.nhs_number, &req.practice, &req.context)
            .await?;
        let wanted = r
            .clinical
            .into_iter()
            .filter(|res| req.resource_type.matches(res))
            .collect();
        Ok(paging::page(wanted, req))
    }

    /// One `RecordEventsRequest` holding one CTV3-coded event per measurement, keyed by
    /// the observation's idempotency key (SystmOne answers the same EventUIDs for a key
    /// it has seen). The instant is sent in UTC, SystmOne's wire convention.
    async fn read_practitioner(
        &self,
        req: &PractitionerRequest,
    ) -> Result<Option<Practitioner>, AdapterError> {
        gp_adapter::native::read_staff(SYSTEM, &req.id, |uid| async move {
            let body = self
                .client
                .staff_member(&req.practice, &uid, &req.context)
                .await?;
            Ok(Some(mapping::map_staff_document(&body)?))
        })
        .await
    }

    async fn create_observation(
        &self,
        req: &CreateObservationRequest,
    ) -> Result<Created, AdapterError> {
        let body = mapping::render_record_events(&req.observation)?;
        let (status, answer) = self
            .client
            .record_events(&req.practice, req.nhs_number, body, &req.context)
            .await?;
        Ok(mapping::parse_record_events_response(&answer, status)?)
    }

    /// One `ContactDetailsUpdate` made against `LastUpdated` = the expected version;
    /// SystmOne's `409 RECORD_MODIFIED` is a `VersionConflict`.
    async fn update_contact(&self, req: &UpdateContactRequest) -> Result<String, AdapterError> {
        let body = mapping::render_contact_update(&req.expected_version, &req.details)?;
        let answer = self
            .client
            .update_contact(&req.practice, req.nhs_number, body, &req.context)
            .await?;
        Ok(mapping::parse_contact_update_response(&answer)?)
    }

    async fn ready(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        self.client.health(ctx).await
    }
}
