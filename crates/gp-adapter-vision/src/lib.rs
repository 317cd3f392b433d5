//! The reference adapter for Vision (INPS/Cegedim): reads a patient's pipe-delimited
//! extract rows over the native API (`client`) and maps them to UK Core R4 (`mapping`),
//! giving the same FHIR shape as the EMIS Web adapter for the same facts; writes
//! observations and contact details back as Vision's own delimited rows.
//!
//! Anatomy every vendor crate copies: `config.rs` (serde config, pure validation),
//! `client.rs` (native calls and native errors), `mapping.rs` (pure native → FHIR),
//! `error.rs` (native data errors), and this file wiring them into [`Adapter`]. Vision
//! adds `extract.rs`, the delimited-row reader its format needs.

/// Vision: `[systems.vision]` in config, `vision` in the practice registry.
pub const SYSTEM: GpSystem = GpSystem::new("vision", "Vision");

pub mod client;
pub mod config;
pub mod error;
pub mod extract;
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

pub use client::VisionClient;
pub use config::{VisionConfig, VisionConfigError};
pub use error::VisionDataError;
pub use mapping::{
    JournalOwner, MappedPatient, map_contact_answer, map_journal, map_journal_page, map_patient,
    map_practice, map_staff, native_timestamp, render_contact, render_observation, written_ids,
};

/// Vision, as gp-gateway sees it.
#[derive(Debug, Clone)]
pub struct VisionAdapter {
    client: VisionClient,
}

/// A patient extract for someone else is never answered.
fn check_is(patient: &MappedPatient, nhs: NhsNumber) -> Result<(), AdapterError> {
    if patient.nhs_number == nhs {
        return Ok(());
    }
    Err(VisionDataError::Invalid {
        extract: "patient extract",
        row: 2,
        column: "NHS_NUMBER",
        reason: format!(
            "the extract is for {}, but {nhs} was requested",
            patient.nhs_number
        ),
    }
    .into())
}

impl VisionAdapter {
    /// Validates `config` and builds the adapter (no network I/O until the first call).
    pub fn new(config: VisionConfig) -> Result<Self, VisionConfigError> {
        Ok(Self {
            client: VisionClient::new(&config)?,
        })
    }
}

/// How the gateway builds this adapter from `[systems.vision]` (registered once, in
/// `gp_gateway::systems::builtin`).
impl AdapterFactory for VisionAdapter {
    const SYSTEM: GpSystem = SYSTEM;
    type Config = VisionConfig;

    fn validate(config: &VisionConfig) -> Result<(), String> {
        config.validate(SYSTEM).map_err(|e| e.to_string())
    }

    fn set_base_url(config: &mut VisionConfig, url: &str) {
        url.clone_into(&mut config.base_url);
    }

    fn build(config: &VisionConfig) -> Result<Arc<dyn Adapter>, String> {
        let adapter = Self::new(config.clone()).map_err(|e| e.to_string())?;
        Ok(Arc::new(adapter))
    }
}

#[async_trait]
impl Adapter for VisionAdapter {
    fn system(&self) -> GpSystem {
        SYSTEM
    }

    /// Three native calls, made concurrently: patient, practice and staff extracts.
    async fn read_patient(&self, req: &PatientRequest) -> Result<PatientRecord, AdapterError> {
        let (ods, ctx) = (&req.practice, &req.context);
        let (patient, practice, staff) = tokio::try_join!(
            self.client.patient(ods, req.nhs_number, ctx),
            self.client.practice(ods, ctx),
            self.client.staff(ods, ctx),
        )?;
        let patient = map_patient(&patient, ods)?;
        check_is(&patient, req.nhs_number)?;
        let (practice_ods, organization) = map_practice(&practice)?;
        if practice_ods != *ods {
            return Err(VisionDataError::Invalid {
                extract: "practice extract",
                row: 2,
                column: "ODS_CODE",
                reason: format!("the extract is for {practice_ods}, but {ods} was requested"),
            }
            .into());
        }
        let practitioner = match &patient.usual_gp {
            None => None,
            Some(gp) => Some(
                map_staff(&staff, gp)?.ok_or_else(|| VisionDataError::Invalid {
                    extract: "patient extract",
                    row: 2,
                    column: "GP_USUAL",
                    reason: format!("{gp} is not in the practice's staff extract"),
                })?,
            ),
        };
        Ok(PatientRecord {
            patient: patient.patient,
            organization: Some(organization),
            practitioner,
            version: patient.version,
            flags: patient.flags,
        })
    }

    /// The patient extract (to tie journal rows to the patient) and every journal page,
    /// fetched concurrently; then filtered, ordered and paged like every adapter.
    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, AdapterError> {
        let (ods, nhs, ctx) = (&req.practice, req.nhs_number, &req.context);
        let (patient, pages) = tokio::try_join!(
            self.client.patient(ods, nhs, ctx),
            self.client.journal(ods, nhs, ctx),
        )?;
        let patient = map_patient(&patient, ods)?;
        check_is(&patient, nhs)?;
        let owner = JournalOwner {
            pid: patient.pid,
            nhs_number: nhs,
            ods: OdsCode::clone(ods),
        };
        let mut resources = Vec::new();
        for (i, page) in pages.iter().enumerate() {
            let rows = map_journal_page(page, &owner, &mut resources)?;
            // A page that promises more but carries nothing would be followed forever.
            if rows == 0 && i + 1 < pages.len() {
                return Err(VisionDataError::Continuation(format!(
                    "page {} has no rows but a continuation token",
                    i + 1
                ))
                .into());
            }
        }
        resources.retain(|r| req.resource_type.matches(r));
        Ok(paging::page(resources, req))
    }

    /// One native call: the observation as a journal write extract (a blood pressure is
    /// one BP row), under the request's key. The ids come from the rows Vision answers,
    /// mapped as a search maps them.
    /// One call: the practice's staff extract, the person picked from it.
    async fn read_practitioner(
        &self,
        req: &PractitionerRequest,
    ) -> Result<Option<Practitioner>, AdapterError> {
        gp_adapter::native::read_staff(SYSTEM, &req.id, |id| async move {
            let staff = self.client.staff(&req.practice, &req.context).await?;
            Ok(map_staff(&staff, &id)?)
        })
        .await
    }

    async fn create_observation(
        &self,
        req: &CreateObservationRequest,
    ) -> Result<Created, AdapterError> {
        let body = render_observation(&req.observation)?;
        let (created, answer) = self
            .client
            .record(
                &req.practice,
                req.nhs_number,
                &req.observation.key,
                body,
                &req.context,
            )
            .await?;
        let ids = written_ids(&answer, req.nhs_number, &req.practice)?;
        Ok(Created { ids, created })
    }

    /// One native call: the complete new contact details with the `LAST_MODIFIED` the
    /// version stands for; Vision refuses it (`VersionConflict`) if the record changed.
    async fn update_contact(&self, req: &UpdateContactRequest) -> Result<String, AdapterError> {
        let Some(last_modified) = native_timestamp(&req.expected_version) else {
            // Every version this adapter hands out is an instant: anything else is not
            // a version the record can be at.
            return Err(AdapterError::VersionConflict {
                system: SYSTEM,
                detail: format!(
                    "'{}' is not a Vision record version",
                    req.expected_version.chars().take(40).collect::<String>()
                ),
            });
        };
        let body = render_contact(&req.details, &last_modified)?;
        let answer = self
            .client
            .update_contact(&req.practice, req.nhs_number, body, &req.context)
            .await?;
        Ok(map_contact_answer(&answer, req.nhs_number)?)
    }

    async fn ready(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        self.client.health(ctx).await
    }
}
