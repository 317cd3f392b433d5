//! The reference adapter for Microtest Evolution: finds the patient in the Evolution v2
//! JSON API's patient index, reads demographics and pages of clinical entries over the
//! native API (`client`) and maps them to UK Core R4 (`mapping`), the same FHIR as EMIS.
//!
//! Anatomy every vendor crate copies: `config.rs` (serde config, pure validation),
//! `client.rs` (native calls and native errors), `mapping.rs` (pure native → FHIR),
//! `error.rs` (native data errors), `appointments.rs` (the appointment book's calls and
//! mapping), `documents.rs` (documents' calls and mapping), `changes.rs` (the change
//! feed's call and mapping), and this file wiring them into [`Adapter`].

/// Microtest Evolution: `[systems.microtest]` in config, `microtest` in the practice registry.
pub const SYSTEM: GpSystem = GpSystem::new("microtest", "Microtest Evolution");

pub mod appointments;
pub mod changes;
pub mod client;
pub mod config;
pub mod documents;
pub mod error;
pub mod mapping;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use gp_adapter::documents::{
    ContentRequest, DocumentContent, DocumentMeta, DocumentSearchRequest, FileDocumentRequest,
    Filed, UploadContentRequest, Uploaded,
};
use gp_adapter::{
    Adapter, AdapterError, AdapterFactory, AppointmentBook, AppointmentRequest, BookRequest,
    Booked, BookedAppointment, CallContext, ChangeAppointmentRequest, ChangesPage, ChangesRequest,
    CreateObservationRequest, Created, GpSystem, PatientAppointmentsRequest, PatientRecord,
    PatientRequest, PractitionerRequest, ReadingSupport, SearchPage, SearchRequest,
    SlotSearchRequest, UpdateContactRequest, paging,
};
use gp_fhir::model::Practitioner;
use gp_fhir::{NhsNumber, OdsCode};

pub use client::MicrotestClient;
pub use config::{MicrotestConfig, MicrotestConfigError};
pub use error::MicrotestDataError;
pub use mapping::{
    EntryType, MappedPage, MappedPatient, map_clinician, map_entries, map_patient, native_datetime,
    native_last_modified, parse_contact_updated, parse_patient_index, parse_recorded,
    render_contact_request, render_entries_request,
};

/// Most pages one search follows: 10,000 pages of 200 is far beyond any GP record, so
/// hitting it means the cursors go round in circles.
pub const MAX_PAGES: usize = 10_000;

/// Microtest Evolution, as gp-gateway sees it.
#[derive(Debug, Clone)]
pub struct MicrotestAdapter {
    client: MicrotestClient,
}

impl MicrotestAdapter {
    /// Validates `config` and builds the adapter (no network I/O until the first call).
    pub fn new(config: MicrotestConfig) -> Result<Self, MicrotestConfigError> {
        Ok(Self {
            client: MicrotestClient::new(&config)?,
        })
    }

    /// The patient document of `patient_id` (the Evolution id of `nhs` at `ods`), and the
    /// usual clinician it names: what a patient read answers.
    async fn demographics(
        &self,
        nhs: NhsNumber,
        ods: &OdsCode,
        ctx: &CallContext,
        patient_id: &str,
    ) -> Result<PatientRecord, AdapterError> {
        let body = self.client.patient(ods, patient_id, ctx).await?;
        let p = map_patient(&body)?;
        // A record for someone else, or from another site, must never be answered.
        if p.nhs_number != nhs {
            return Err(MicrotestDataError::Invalid {
                path: "nhs_number".into(),
                reason: format!(
                    "the patient document is for {}, but {nhs} was requested",
                    p.nhs_number
                ),
            }
            .into());
        }
        if p.ods != *ods {
            return Err(MicrotestDataError::Invalid {
                path: "site.ods_code".into(),
                reason: format!(
                    "the patient is registered at {}, but {ods} was requested",
                    p.ods
                ),
            }
            .into());
        }
        let practitioner = match &p.usual_clinician_id {
            None => None,
            Some(id) => {
                // A clinician the patient document names but the site does not know is
                // bad native data, not a missing patient.
                let body = self.client.clinician(ods, id, ctx).await?.ok_or_else(|| {
                    MicrotestDataError::Invalid {
                        path: "usual_clinician_id".into(),
                        reason: format!("clinician {id} is not known at site {ods}"),
                    }
                })?;
                let practitioner = map_clinician(&body)?;
                if practitioner.id != *id {
                    return Err(MicrotestDataError::Invalid {
                        path: "clinician_id".into(),
                        reason: format!(
                            "the clinician document is for {}, but {id} was requested",
                            practitioner.id
                        ),
                    }
                    .into());
                }
                Some(practitioner)
            }
        };
        Ok(PatientRecord {
            patient: p.patient,
            organization: Some(p.organization),
            practitioner,
            version: p.version,
            flags: p.flags,
        })
    }

    /// The Evolution patient id of `nhs` at `ods`, from the patient index.
    async fn patient_id(
        &self,
        nhs: NhsNumber,
        ods: &OdsCode,
        ctx: &CallContext,
    ) -> Result<String, AdapterError> {
        let body = self.client.patient_index(ods, nhs, ctx).await?;
        parse_patient_index(&body, nhs, ods)?.ok_or(AdapterError::PatientNotFound)
    }

    /// Every entry of `kind`, following cursors to the last page, mapped.
    async fn all_entries(
        &self,
        req: &SearchRequest,
        patient_id: &str,
    ) -> Result<Vec<gp_fhir::model::Resource>, AdapterError> {
        let kind = EntryType::for_clinical(req.resource_type);
        let broken = |reason: String| -> AdapterError {
            MicrotestDataError::BrokenCursor {
                what: kind.as_str().to_owned(),
                reason,
            }
            .into()
        };
        let mut resources = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen: HashSet<String> = HashSet::new();
        let mut native = 0u64;
        for _ in 0..MAX_PAGES {
            let body = self
                .client
                .entries(
                    &req.practice,
                    patient_id,
                    kind,
                    cursor.as_deref(),
                    &req.context,
                )
                .await?;
            let page = map_entries(&body, kind, req.nhs_number, &req.practice)?;
            native += page.entries as u64;
            resources.extend(page.resources);
            match page.next_cursor {
                None => {
                    return match page.total {
                        Some(total) if total != native => Err(broken(format!(
                            "the pages held {native} entries but total says {total}"
                        ))),
                        _ => Ok(resources),
                    };
                }
                Some(_) if page.entries == 0 => {
                    return Err(broken("an empty page has a next_cursor".into()));
                }
                Some(next) => {
                    if !seen.insert(next.clone()) {
                        return Err(broken(format!(
                            "next_cursor '{next}' repeats a page already read"
                        )));
                    }
                    cursor = Some(next);
                }
            }
        }
        Err(broken(format!("still more pages after {MAX_PAGES}")))
    }
}

/// How the gateway builds this adapter from `[systems.microtest]` (registered once, in
/// `gp_gateway::systems::builtin`).
impl AdapterFactory for MicrotestAdapter {
    const SYSTEM: GpSystem = SYSTEM;
    type Config = MicrotestConfig;

    fn validate(config: &MicrotestConfig) -> Result<(), String> {
        config.validate(SYSTEM).map_err(|e| e.to_string())
    }

    fn set_base_url(config: &mut MicrotestConfig, url: &str) {
        url.clone_into(&mut config.base_url);
    }

    fn build(config: &MicrotestConfig) -> Result<Arc<dyn Adapter>, String> {
        let adapter = Self::new(config.clone()).map_err(|e| e.to_string())?;
        Ok(Arc::new(adapter))
    }
}

#[async_trait]
impl Adapter for MicrotestAdapter {
    fn system(&self) -> GpSystem {
        SYSTEM
    }

    async fn read_patient(&self, req: &PatientRequest) -> Result<PatientRecord, AdapterError> {
        let (nhs, ods, ctx) = (req.nhs_number, &req.practice, &req.context);
        let patient_id = self.patient_id(nhs, ods, ctx).await?;
        self.demographics(nhs, ods, ctx, &patient_id).await
    }

    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, AdapterError> {
        let patient_id = self
            .patient_id(req.nhs_number, &req.practice, &req.context)
            .await?;
        let resources = self.all_entries(req, &patient_id).await?;
        Ok(paging::page(resources, req))
    }

    /// The patient is looked up once; the patient document and the entries are then
    /// read concurrently.
    async fn read_patient_and_search(
        &self,
        req: &SearchRequest,
    ) -> Result<(PatientRecord, SearchPage), AdapterError> {
        let (nhs, ods, ctx) = (req.nhs_number, &req.practice, &req.context);
        let patient_id = self.patient_id(nhs, ods, ctx).await?;
        let (record, resources) = tokio::try_join!(
            self.demographics(nhs, ods, ctx, &patient_id),
            self.all_entries(req, &patient_id),
        )?;
        Ok((record, paging::page(resources, req)))
    }

    /// One call: the site's clinician document.
    fn manages_appointments(&self) -> bool {
        true
    }

    async fn read_practitioner(
        &self,
        req: &PractitionerRequest,
    ) -> Result<Option<Practitioner>, AdapterError> {
        gp_adapter::native::read_staff(SYSTEM, &req.id, |id| async move {
            match self
                .client
                .clinician(&req.practice, &id, &req.context)
                .await?
            {
                Some(body) => Ok(Some(map_clinician(&body)?)),
                None => Ok(None),
            }
        })
        .await
    }

    /// One `POST …/entries` with the observation's key as `Idempotency-Key`: Evolution
    /// records it once however often it is retried and answers the same entry ids.
    async fn create_observation(
        &self,
        req: &CreateObservationRequest,
    ) -> Result<Created, AdapterError> {
        let (ods, ctx, o) = (&req.practice, &req.context, &req.observation);
        // Rendered first: a measurement Evolution cannot hold fails without any I/O.
        let body = render_entries_request(req.nhs_number, o)?;
        let patient_id = self.patient_id(req.nhs_number, ods, ctx).await?;
        let (created, answer) = self
            .client
            .record_entries(ods, &patient_id, &o.key, body, ctx)
            .await?;
        let ids = parse_recorded(&answer, o.measurements.len())?;
        Ok(Created { ids, created })
    }

    /// Evolution holds every reading detail: a date alone, the supplier's codings,
    /// interpretations, body site, method, device and the practice clinician who took it.
    fn reading_support(&self) -> ReadingSupport {
        ReadingSupport {
            date_only: true,
            original_codings: true,
            interpretation: true,
            body_site: true,
            method: true,
            device: true,
            performer: true,
        }
    }

    /// One `PUT …/contact` carrying the expected version as Evolution's `last_modified`;
    /// a stale one is Evolution's `409 RECORD_MODIFIED`, i.e. `VersionConflict`.
    async fn update_contact(&self, req: &UpdateContactRequest) -> Result<String, AdapterError> {
        let (ods, ctx) = (&req.practice, &req.context);
        let Some(last_modified) = native_last_modified(&req.expected_version) else {
            // Not an instant, so not a version of this record: it cannot be current.
            return Err(AdapterError::VersionConflict {
                system: SYSTEM,
                detail: format!(
                    "'{}' is not a Microtest Evolution record version",
                    req.expected_version.chars().take(40).collect::<String>()
                ),
            });
        };
        let body = render_contact_request(req.nhs_number, &last_modified, &req.details)?;
        let patient_id = self.patient_id(req.nhs_number, ods, ctx).await?;
        let answer = self
            .client
            .update_contact(ods, &patient_id, body, ctx)
            .await?;
        Ok(parse_contact_updated(&answer, &patient_id)?)
    }

    /// Every page of `GET …/slots` for the range, following `next_cursor` to the end.
    async fn search_slots(&self, req: &SlotSearchRequest) -> Result<AppointmentBook, AdapterError> {
        self.book_slots(&req.practice, req.start, req.end, &req.context)
            .await
    }

    /// The patient index, then one `POST …/appointments` under the key as
    /// `Idempotency-Key`: Evolution books a slot once however the requests race.
    async fn book_appointment(&self, req: &BookRequest) -> Result<Booked, AdapterError> {
        let (appointment, created) = self
            .book(&req.practice, &req.appointment, &req.context)
            .await?;
        Ok(Booked {
            appointment,
            created,
        })
    }

    /// One `GET …/appointments/{id}`.
    async fn read_appointment(
        &self,
        req: &AppointmentRequest,
    ) -> Result<Option<BookedAppointment>, AdapterError> {
        self.one_appointment(&req.practice, &req.id, &req.context)
            .await
    }

    /// The patient index, then one `GET …/patients/{id}/appointments`.
    async fn search_appointments(
        &self,
        req: &PatientAppointmentsRequest,
    ) -> Result<Vec<BookedAppointment>, AdapterError> {
        self.patient_appointments(
            &req.practice,
            req.nhs_number,
            (req.start, req.end),
            &req.context,
        )
        .await
    }

    /// One `PATCH …/appointments/{id}` or `POST …/{id}/cancel` carrying the expected
    /// version; a stale one is Evolution's `409 RECORD_MODIFIED`, i.e. `VersionConflict`.
    async fn change_appointment(
        &self,
        req: &ChangeAppointmentRequest,
    ) -> Result<BookedAppointment, AdapterError> {
        self.change(
            &req.practice,
            &req.id,
            &req.expected_version,
            &req.change,
            &req.context,
        )
        .await
    }

    fn manages_documents(&self) -> bool {
        true
    }

    /// Every page of `GET …/documents?nhs_number=…` (one call for most patients).
    async fn search_documents(
        &self,
        req: &DocumentSearchRequest,
    ) -> Result<Vec<DocumentMeta>, AdapterError> {
        self.all_documents(&req.practice, req.nhs_number, &req.context)
            .await
    }

    /// One `GET …/document-contents/{id}`: the raw bytes.
    async fn read_content(
        &self,
        req: &ContentRequest,
    ) -> Result<Option<DocumentContent>, AdapterError> {
        self.one_content(&req.practice, &req.content_id, &req.context)
            .await
    }

    /// One `POST …/document-contents` with the bytes as the body, not copied.
    async fn upload_content(&self, req: &UploadContentRequest) -> Result<Uploaded, AdapterError> {
        let answer = self
            .client
            .upload_content(
                &req.practice,
                req.nhs_number,
                &req.content_type,
                &req.bytes,
                &req.context,
            )
            .await?;
        Ok(documents::parse_uploaded(&answer, req.nhs_number)?)
    }

    /// One `POST …/documents` under the key as `Idempotency-Key`: Evolution files it
    /// once however often it is retried and answers the same document.
    async fn file_document(&self, req: &FileDocumentRequest) -> Result<Filed, AdapterError> {
        self.file(req).await
    }

    fn tracks_changes(&self) -> bool {
        true
    }

    /// One `GET …/changes`: without a cursor the feed's end, with one (Evolution's own,
    /// refused by Evolution if it did not issue it for this site) the next
    /// [`changes::PAGE_SIZE`] changes.
    async fn changes_since(&self, req: &ChangesRequest) -> Result<ChangesPage, AdapterError> {
        self.change_page(&req.practice, req.cursor.as_deref(), &req.context)
            .await
    }

    async fn ready(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        self.client.health(ctx).await
    }
}
