//! The reference adapter for TPP SystmOne: reads a patient's PatientRecord XML over the
//! native API, page by page (`client`), and maps it to UK Core R4 (`mapping`); writes
//! supplier measurements (CTV3-coded events) and contact details back; keeps the
//! practice's appointment book (`appointments`: slots, booking, amend, cancel), the
//! patient's documents (`documents`: list, raw content, upload, filing) and the
//! organisation's change log (`changes`: what changed in its records since a cursor).
//!
//! Same anatomy as every vendor crate: `config.rs` (serde config, pure validation),
//! `client.rs` (native calls and native errors), `mapping.rs` (pure native → FHIR),
//! `error.rs` (native data errors), `appointments.rs`, `documents.rs` and `changes.rs`
//! (the appointment book's, the documents' and the change log's native calls and
//! mapping), and this file wiring them into [`Adapter`].

/// TPP SystmOne: `[systems.tpp]` in config, `tpp` in the practice registry.
pub const SYSTEM: GpSystem = GpSystem::new("tpp", "TPP SystmOne");

pub mod appointments;
pub mod changes;
pub mod client;
pub mod config;
pub mod documents;
pub mod error;
pub mod mapping;

use std::sync::Arc;

use async_trait::async_trait;
use gp_adapter::documents::{
    ContentRequest, DocumentContent, DocumentMeta, DocumentSearchRequest, FileDocumentRequest,
    Filed, UploadContentRequest, Uploaded,
};
use gp_adapter::write::ReadingSupport;
use gp_adapter::{
    Adapter, AdapterError, AdapterFactory, AppointmentBook, AppointmentChange, AppointmentRequest,
    BookRequest, Booked, BookedAppointment, CallContext, ChangeAppointmentRequest, ChangesPage,
    ChangesRequest, CreateObservationRequest, Created, GpSystem, PatientAppointmentsRequest,
    PatientRecord, PatientRequest, PractitionerRequest, SearchPage, SearchRequest,
    SlotSearchRequest, UpdateContactRequest, Want, paging,
};
use gp_fhir::model::Practitioner;
use gp_fhir::{NhsNumber, OdsCode};

pub use client::TppClient;
pub use config::{TppConfig, TppConfigError};
pub use error::TppDataError;
pub use mapping::{
    MappedRecord, RecordPage, assemble, map_page, map_page_for, map_record, map_record_for,
};

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

    /// Fetches one page and maps what `want` asks of it.
    async fn page(
        &self,
        nhs: NhsNumber,
        ods: &OdsCode,
        number: u32,
        ctx: &CallContext,
        want: Want,
    ) -> Result<RecordPage, AdapterError> {
        let body = self.client.record_page(ods, nhs, number, ctx).await?;
        map_page_for(&body, want).map_err(|e| e.on_page(number).into())
    }

    /// Fetches every page, maps what `want` asks of them and joins them, and checks it
    /// is the record that was asked for.
    async fn record(
        &self,
        nhs: NhsNumber,
        ods: &OdsCode,
        ctx: &CallContext,
        want: Want,
    ) -> Result<MappedRecord, AdapterError> {
        let size = self.client.page_size();
        let first = self.page(nhs, ods, 1, ctx, want).await?;
        let needed = mapping::pages_to_fetch(&first, size)?;
        let mut pages = Vec::with_capacity(needed as usize);
        pages.push(first);
        // Sequential on purpose: pages are small, and a failing page stops the walk.
        for number in 2..=needed {
            pages.push(self.page(nhs, ods, number, ctx, want).await?);
        }
        let record = assemble(pages, size)?;
        is_asked_for(record.nhs_number, &record.ods, nhs, ods)?;
        Ok(record)
    }

    /// The patient's demographics, from the record's first page only: every page carries
    /// them, so a Patient read neither fetches the rest of the record nor maps an event.
    async fn demographics(
        &self,
        nhs: NhsNumber,
        ods: &OdsCode,
        ctx: &CallContext,
    ) -> Result<RecordPage, AdapterError> {
        let first = self.page(nhs, ods, 1, ctx, Want::Demographics).await?;
        mapping::check_first(&first.paging, self.client.page_size())?;
        is_asked_for(first.nhs_number, &first.ods, nhs, ods)?;
        Ok(first)
    }
}

impl TppAdapter {
    /// The demographics and one clinical area's page, from one walk of the record's pages.
    async fn area(&self, req: &SearchRequest) -> Result<(PatientRecord, SearchPage), AdapterError> {
        let r = self
            .record(
                req.nhs_number,
                &req.practice,
                &req.context,
                Want::Area(req.resource_type),
            )
            .await?;
        let patient = PatientRecord {
            patient: r.patient,
            organization: Some(r.organization),
            practitioner: r.practitioner,
            version: r.version,
            flags: r.flags,
        };
        Ok((patient, paging::area(r.clinical, req)))
    }
}

/// A record for someone else, or from another practice, must never be answered.
fn is_asked_for(
    got_nhs: NhsNumber,
    got_ods: &OdsCode,
    nhs: NhsNumber,
    ods: &OdsCode,
) -> Result<(), TppDataError> {
    if got_nhs != nhs {
        return Err(TppDataError::Invalid {
            path: "Patient/Identity/NHSNumber".into(),
            reason: format!("the record is for {got_nhs}, but {nhs} was requested"),
        });
    }
    if got_ods != ods {
        return Err(TppDataError::Invalid {
            path: "OrganisationID".into(),
            reason: format!("the record is from organisation {got_ods}, but {ods} was requested"),
        });
    }
    Ok(())
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
            .demographics(req.nhs_number, &req.practice, &req.context)
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
        Ok(self.area(req).await?.1)
    }

    /// The record's pages answer both: every page carries the demographics.
    async fn read_patient_and_search(
        &self,
        req: &SearchRequest,
    ) -> Result<(PatientRecord, SearchPage), AdapterError> {
        self.area(req).await
    }

    /// One `RecordEventsRequest` holding one CTV3-coded event per measurement, keyed by
    /// the observation's idempotency key (SystmOne answers the same EventUIDs for a key
    /// it has seen). The instant is sent in UTC, SystmOne's wire convention.
    fn manages_appointments(&self) -> bool {
        true
    }

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

    /// Date-only readings, interpretations (each reading's and a blood pressure's own),
    /// body site, method and the clinician who took it; no device, no other codings.
    fn reading_support(&self) -> ReadingSupport {
        mapping::READING_SUPPORT
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

    /// One native slot search; the answer must be the practice's own book.
    async fn search_slots(&self, req: &SlotSearchRequest) -> Result<AppointmentBook, AdapterError> {
        // An empty range holds no slots; SystmOne would refuse it as a bad parameter.
        if req.end <= req.start {
            return Ok(AppointmentBook::default());
        }
        let body = self
            .client
            .slots_in_range(&req.practice, req.start, req.end, &req.context)
            .await?;
        Ok(appointments::map_slot_search(&body, &req.practice)?.book)
    }

    /// Two native calls: the slots are read for their `Version`s, then booked naming
    /// them, so a slot booked by anyone in between is refused (`SlotUnavailable`) rather
    /// than booked twice. A retried key answers its first booking, whatever the slots'
    /// state now.
    async fn book_appointment(&self, req: &BookRequest) -> Result<Booked, AdapterError> {
        let a = &req.appointment;
        if let Some(bad) = a.slots.iter().find(|id| !appointments::is_number(id)) {
            return Err(AdapterError::Unprocessable {
                system: SYSTEM,
                detail: format!(
                    "slot '{}' is not a SystmOne slot id",
                    gp_fhir::text::shown(bad)
                ),
            });
        }
        if a.slots.is_empty() || a.slots.len() > appointments::MAX_SLOTS {
            return Err(AdapterError::Unprocessable {
                system: SYSTEM,
                detail: format!(
                    "SystmOne books 1 to {} slots at a time, not {}",
                    appointments::MAX_SLOTS,
                    a.slots.len()
                ),
            });
        }
        // Each slot once: a slot named twice is the booking's fault, which SystmOne
        // answers (not adjacent), not a reason to refuse the read.
        let mut unique = a.slots.clone();
        unique.sort_unstable();
        unique.dedup();
        let read = self
            .client
            .slots_by_id(&req.practice, &unique, &req.context)
            .await?;
        let read = appointments::map_slot_search(&read, &req.practice)?;
        let versions = a
            .slots
            .iter()
            .map(|id| {
                read.versions
                    .get(id)
                    .copied()
                    .ok_or_else(|| TppDataError::Invalid {
                        path: "SlotSearchResponse/Slots".into(),
                        reason: format!("slot {id} was asked for but not answered"),
                    })
            })
            .collect::<Result<Vec<u64>, TppDataError>>()?;
        let body = appointments::render_booking(a, &versions);
        let (created, answer) = self
            .client
            .book(&req.practice, a.nhs_number, body, &req.context)
            .await?;
        let (appointment, created) = appointments::map_book_response(&answer, created)?;
        // A key reused for another patient must not hand out their appointment.
        if appointment.nhs_number != a.nhs_number {
            return Err(TppDataError::Invalid {
                path: "BookAppointmentResponse/Appointment/NHSNumber".into(),
                reason: format!(
                    "the booking is for {}, but {} was asked for",
                    appointment.nhs_number, a.nhs_number
                ),
            }
            .into());
        }
        Ok(Booked {
            appointment,
            created,
        })
    }

    /// An id that is not a SystmOne AppointmentID names no appointment: no call is made.
    async fn read_appointment(
        &self,
        req: &AppointmentRequest,
    ) -> Result<Option<BookedAppointment>, AdapterError> {
        if !appointments::is_number(&req.id) {
            return Ok(None);
        }
        let Some(body) = self
            .client
            .appointment(&req.practice, &req.id, &req.context)
            .await?
        else {
            return Ok(None);
        };
        let a = appointments::map_appointment_document(&body)?;
        same_appointment(&a, &req.id)?;
        Ok(Some(a))
    }

    async fn search_appointments(
        &self,
        req: &PatientAppointmentsRequest,
    ) -> Result<Vec<BookedAppointment>, AdapterError> {
        let body = self
            .client
            .patient_appointments(
                &req.practice,
                req.nhs_number,
                req.start,
                req.end,
                &req.context,
            )
            .await?;
        Ok(appointments::map_patient_appointments(
            &body,
            req.nhs_number,
        )?)
    }

    /// One native call with `If-Match: {Version}`; a version SystmOne never gave (not a
    /// number) cannot be the appointment's current one, so it is a `VersionConflict`
    /// without a call.
    async fn change_appointment(
        &self,
        req: &ChangeAppointmentRequest,
    ) -> Result<BookedAppointment, AdapterError> {
        if !appointments::is_number(&req.id) {
            return Err(AdapterError::NotFound {
                system: SYSTEM,
                what: format!("such appointment at {}", req.practice),
            });
        }
        let version: u64 = req
            .expected_version
            .parse()
            .ok()
            .filter(|_| appointments::is_number(&req.expected_version))
            .ok_or_else(|| AdapterError::VersionConflict {
                system: SYSTEM,
                detail: format!(
                    "'{}' is not a SystmOne appointment Version, so not the appointment's version",
                    gp_fhir::text::shown(&req.expected_version)
                ),
            })?;
        if let AppointmentChange::Cancel { reason } = &req.change
            && reason.trim().is_empty()
        {
            return Err(AdapterError::Unprocessable {
                system: SYSTEM,
                detail: "a cancellation needs a reason".into(),
            });
        }
        let body = self
            .client
            .change_appointment(&req.practice, &req.id, version, &req.change, &req.context)
            .await?;
        let a = appointments::map_appointment_document(&body)?;
        same_appointment(&a, &req.id)?;
        Ok(a)
    }

    fn manages_documents(&self) -> bool {
        true
    }

    /// One native list, which must be the patient's at the practice.
    async fn search_documents(
        &self,
        req: &DocumentSearchRequest,
    ) -> Result<Vec<DocumentMeta>, AdapterError> {
        let body = self
            .client
            .documents(&req.practice, req.nhs_number, &req.context)
            .await?;
        Ok(documents::map_documents(
            &body,
            req.nhs_number,
            &req.practice,
        )?)
    }

    /// An id that is not a SystmOne ContentID names no content: no call is made.
    async fn read_content(
        &self,
        req: &ContentRequest,
    ) -> Result<Option<DocumentContent>, AdapterError> {
        if !documents::is_native_id(&req.content_id) {
            return Ok(None);
        }
        let Some(response) = self
            .client
            .content(&req.practice, &req.content_id, &req.context)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(documents::map_content(response)?))
    }

    /// The bytes are the request body as they are (a refcount clone of the `Bytes`).
    async fn upload_content(&self, req: &UploadContentRequest) -> Result<Uploaded, AdapterError> {
        let body = self
            .client
            .upload_content(
                &req.practice,
                req.nhs_number,
                &req.content_type,
                req.bytes.clone(),
                &req.context,
            )
            .await?;
        Ok(documents::map_upload_response(&body)?)
    }

    /// A content id that is not a SystmOne ContentID names no content (`NotFound`, no
    /// call made); otherwise one `FileDocumentRequest` keyed by the document's key.
    async fn file_document(&self, req: &FileDocumentRequest) -> Result<Filed, AdapterError> {
        let d = &req.document;
        if !documents::is_native_id(&d.content_id) {
            return Err(AdapterError::NotFound {
                system: SYSTEM,
                what: format!(
                    "such document content ('{}' is not a SystmOne ContentID)",
                    gp_fhir::text::shown(&d.content_id)
                ),
            });
        }
        let body = documents::render_file_request(d);
        let (created, answer) = self
            .client
            .file_document(&req.practice, req.nhs_number, body, &req.context)
            .await?;
        Ok(documents::map_file_response(
            &answer,
            created,
            req.nhs_number,
            d,
        )?)
    }

    fn tracks_changes(&self) -> bool {
        true
    }

    /// One `GET …/changes` per page: without a cursor, where the organisation's log
    /// stands; with one, up to `page_size` changes after it.
    async fn changes_since(&self, req: &ChangesRequest) -> Result<ChangesPage, AdapterError> {
        changes::changes_since(&self.client, req).await
    }

    async fn ready(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        self.client.health(ctx).await
    }
}

/// An answer about another appointment than the one asked for is never passed on.
fn same_appointment(a: &BookedAppointment, id: &str) -> Result<(), TppDataError> {
    if a.id == id {
        Ok(())
    } else {
        Err(TppDataError::Invalid {
            path: "Appointment/@AppointmentID".into(),
            reason: format!("appointment {id} was asked for, the answer is {}", a.id),
        })
    }
}
