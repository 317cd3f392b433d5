//! The reference adapter for EMIS Web: reads a patient's whole EMIS Open MedicalRecord
//! XML over the native API (`client`) and maps it to UK Core R4 (`mapping`); files
//! supplier observations and contact-detail updates back through the same API; keeps
//! the practice's appointment book (`appointments`): slot searches, bookings, amends
//! and cancels with EMIS's own concurrency control; the patient's documents
//! (`documents`): lists, attachment downloads and uploads, and filing; and the practice's
//! change log (`changes`): what changed in its records since a cursor.
//!
//! Anatomy every vendor crate copies: `config.rs` (serde config, pure validation),
//! `client.rs` (native calls and native errors), `mapping.rs` (pure native → FHIR),
//! `error.rs` (native data errors), `appointments.rs`, `documents.rs` and `changes.rs`
//! (each capability's calls and mapping), and this file wiring them into [`Adapter`].

/// The EMIS Open MedicalRecord namespace; every element is in it. At the crate's root:
/// the mapping reads it and the errors name it.
pub const NS: &str = "http://www.e-mis.com/emisopen/MedicalRecord";

/// EMIS Web: `[systems.emis]` in config, `emis` in the practice registry.
pub const SYSTEM: GpSystem = GpSystem::new("emis", "EMIS Web");

pub mod appointments;
pub mod changes;
pub mod client;
pub mod config;
pub mod documents;
pub mod error;
pub mod mapping;

use std::sync::Arc;

use async_trait::async_trait;
use gp_adapter::{
    Adapter, AdapterError, AdapterFactory, AppointmentBook, AppointmentRequest, BookRequest,
    Booked, BookedAppointment, CallContext, ChangeAppointmentRequest, ChangesPage, ChangesRequest,
    ContentRequest, CreateObservationRequest, Created, DocumentContent, DocumentMeta,
    DocumentSearchRequest, FileDocumentRequest, Filed, GpSystem, PatientAppointmentsRequest,
    PatientRecord, PatientRequest, PractitionerRequest, ReadingSupport, SearchPage, SearchRequest,
    SlotSearchRequest, UpdateContactRequest, UploadContentRequest, Uploaded, paging,
};
use gp_fhir::model::Practitioner;
use gp_fhir::{NhsNumber, OdsCode};

pub use client::EmisClient;
pub use config::{EmisConfig, EmisConfigError};
pub use error::EmisDataError;
pub use mapping::{MappedRecord, Want, map_record, map_record_for};

/// EMIS Web, as gp-gateway sees it.
#[derive(Debug, Clone)]
pub struct EmisAdapter {
    client: EmisClient,
}

impl EmisAdapter {
    /// Validates `config` and builds the adapter (no network I/O until the first call).
    pub fn new(config: EmisConfig) -> Result<Self, EmisConfigError> {
        Ok(Self {
            client: EmisClient::new(&config)?,
        })
    }

    /// Fetches and maps the whole record, and checks it is the record that was asked for.
    async fn record(
        &self,
        nhs: NhsNumber,
        ods: &OdsCode,
        ctx: &CallContext,
        want: Want,
    ) -> Result<MappedRecord, AdapterError> {
        let body = self.client.medical_record(ods, nhs, ctx).await?;
        let record = map_record_for(&body, want)?;
        // A record for someone else, or from another practice, must never be answered.
        if record.nhs_number != nhs {
            return Err(EmisDataError::Invalid {
                path: "Registration/NhsNumber".into(),
                reason: format!(
                    "the record is for {}, but {nhs} was requested",
                    record.nhs_number
                ),
            }
            .into());
        }
        if record.ods != *ods {
            return Err(EmisDataError::Invalid {
                path: "Organisation/OdsCode".into(),
                reason: format!(
                    "the record is from practice {}, but {ods} was requested",
                    record.ods
                ),
            }
            .into());
        }
        Ok(record)
    }
}

impl EmisAdapter {
    /// The demographics and one clinical area's page, from one MedicalRecord read.
    async fn area(&self, req: &SearchRequest) -> Result<(PatientRecord, SearchPage), AdapterError> {
        let r = self
            .record(
                req.nhs_number,
                &req.practice,
                &req.context,
                Want::Area(req.resource_type),
            )
            .await?;
        let (patient, clinical) = r.into_parts();
        Ok((patient, paging::area(clinical, req)))
    }
}

impl MappedRecord {
    /// The record's demographics as a Patient read answers them, and its clinical entries.
    fn into_parts(self) -> (PatientRecord, Vec<gp_fhir::model::Resource>) {
        let patient = PatientRecord {
            patient: self.patient,
            organization: Some(self.organization),
            practitioner: self.practitioner,
            version: self.version,
            flags: self.flags,
        };
        (patient, self.clinical)
    }
}

/// How the gateway builds this adapter from `[systems.emis]` (registered once, in
/// `gp_gateway::systems::builtin`, or by a binary of your own: see docs/adding-a-gp-system.md §4).
impl AdapterFactory for EmisAdapter {
    const SYSTEM: GpSystem = SYSTEM;
    type Config = EmisConfig;

    fn validate(config: &EmisConfig) -> Result<(), String> {
        config.validate(SYSTEM).map_err(|e| e.to_string())
    }

    fn set_base_url(config: &mut EmisConfig, url: &str) {
        url.clone_into(&mut config.base_url);
    }

    fn build(config: &EmisConfig) -> Result<Arc<dyn Adapter>, String> {
        let adapter = Self::new(config.clone()).map_err(|e| e.to_string())?;
        Ok(Arc::new(adapter))
    }
}

#[async_trait]
impl Adapter for EmisAdapter {
    fn system(&self) -> GpSystem {
        SYSTEM
    }

    async fn read_patient(&self, req: &PatientRequest) -> Result<PatientRecord, AdapterError> {
        let r = self
            .record(
                req.nhs_number,
                &req.practice,
                &req.context,
                Want::Demographics,
            )
            .await?;
        Ok(r.into_parts().0)
    }

    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, AdapterError> {
        Ok(self.area(req).await?.1)
    }

    /// One MedicalRecord read answers both: its head is the demographics.
    async fn read_patient_and_search(
        &self,
        req: &SearchRequest,
    ) -> Result<(PatientRecord, SearchPage), AdapterError> {
        self.area(req).await
    }

    fn manages_appointments(&self) -> bool {
        true
    }

    async fn read_practitioner(
        &self,
        req: &PractitionerRequest,
    ) -> Result<Option<Practitioner>, AdapterError> {
        gp_adapter::native::read_staff(SYSTEM, &req.id, |guid| async move {
            let body = self
                .client
                .person(&req.practice, &guid, &req.context)
                .await?;
            Ok(Some(mapping::map_person_document(&body)?))
        })
        .await
    }

    async fn create_observation(
        &self,
        req: &CreateObservationRequest,
    ) -> Result<Created, AdapterError> {
        let batch = mapping::render_observation_batch(&req.observation)?;
        // EMIS files the batch at most once per ExternalKey, so a retry is answered with
        // the first filing's GUIDs and `200`.
        let (created, body) = self
            .client
            .file_observations(&req.practice, req.nhs_number, batch, &req.context)
            .await?;
        Ok(Created {
            ids: mapping::parse_batch_result(&body)?,
            created,
        })
    }

    /// What EMIS Web holds with a reading: a date without a time (`DatePart` `YMD`),
    /// interpretations, body site and the clinician who took it (`AuthorID`); no method,
    /// device or codings beyond its own.
    fn reading_support(&self) -> ReadingSupport {
        ReadingSupport {
            date_only: true,
            interpretation: true,
            body_site: true,
            performer: true,
            original_codings: false,
            method: false,
            device: false,
        }
    }

    async fn update_contact(&self, req: &UpdateContactRequest) -> Result<String, AdapterError> {
        let update = mapping::render_contact_details(&req.expected_version, &req.details)?;
        let body = self
            .client
            .update_contact_details(&req.practice, req.nhs_number, update, &req.context)
            .await?;
        mapping::parse_contact_result(&body)
    }

    async fn search_slots(&self, req: &SlotSearchRequest) -> Result<AppointmentBook, AdapterError> {
        appointments::search_slots(&self.client, req).await
    }

    async fn book_appointment(&self, req: &BookRequest) -> Result<Booked, AdapterError> {
        appointments::book(&self.client, req).await
    }

    async fn read_appointment(
        &self,
        req: &AppointmentRequest,
    ) -> Result<Option<BookedAppointment>, AdapterError> {
        appointments::read(&self.client, req).await
    }

    async fn search_appointments(
        &self,
        req: &PatientAppointmentsRequest,
    ) -> Result<Vec<BookedAppointment>, AdapterError> {
        appointments::list(&self.client, req).await
    }

    async fn change_appointment(
        &self,
        req: &ChangeAppointmentRequest,
    ) -> Result<BookedAppointment, AdapterError> {
        appointments::change(&self.client, req).await
    }

    fn manages_documents(&self) -> bool {
        true
    }

    async fn search_documents(
        &self,
        req: &DocumentSearchRequest,
    ) -> Result<Vec<DocumentMeta>, AdapterError> {
        documents::search(&self.client, req).await
    }

    async fn read_content(
        &self,
        req: &ContentRequest,
    ) -> Result<Option<DocumentContent>, AdapterError> {
        documents::read_content(&self.client, req).await
    }

    async fn upload_content(&self, req: &UploadContentRequest) -> Result<Uploaded, AdapterError> {
        documents::upload(&self.client, req).await
    }

    async fn file_document(&self, req: &FileDocumentRequest) -> Result<Filed, AdapterError> {
        documents::file(&self.client, req).await
    }

    fn tracks_changes(&self) -> bool {
        true
    }

    /// One `GET …/changes` per page: without a cursor, where the practice's log stands;
    /// with one, up to [`changes::PAGE_SIZE`] changes after it.
    async fn changes_since(&self, req: &ChangesRequest) -> Result<ChangesPage, AdapterError> {
        changes::changes_since(&self.client, req).await
    }

    async fn ready(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        self.client.health(ctx).await
    }
}
