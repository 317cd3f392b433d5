//! The reference adapter for Vision (INPS/Cegedim): reads a patient's pipe-delimited
//! extract rows over the native API (`client`) and maps them to UK Core R4 (`mapping`),
//! giving the same FHIR shape as the EMIS Web adapter for the same facts; writes
//! observations and contact details back as Vision's own delimited rows.
//!
//! Anatomy every vendor crate copies: `config.rs` (serde config, pure validation),
//! `client.rs` (native calls and native errors), `mapping.rs` (pure native → FHIR),
//! `error.rs` (native data errors), and this file wiring them into [`Adapter`]. Vision
//! adds `extract.rs`, the delimited-row reader its format needs, and `appointments.rs`,
//! `documents.rs` and `changes.rs`, the appointment book's, documents' and change log's
//! native calls and mapping.

/// Vision: `[systems.vision]` in config, `vision` in the practice registry.
pub const SYSTEM: GpSystem = GpSystem::new("vision", "Vision");

pub mod appointments;
pub mod changes;
pub mod client;
pub mod config;
pub mod documents;
pub mod error;
pub mod extract;
pub mod mapping;

use std::sync::Arc;

use async_trait::async_trait;
use gp_adapter::appointments::AppointmentStatus;
use gp_adapter::{
    Adapter, AdapterError, AdapterFactory, AppointmentBook, AppointmentRequest, BookRequest,
    Booked, BookedAppointment, CallContext, ChangeAppointmentRequest, ChangesPage, ChangesRequest,
    ContentRequest, CreateObservationRequest, Created, DocumentContent, DocumentMeta,
    DocumentSearchRequest, FileDocumentRequest, Filed, GpSystem, PatientAppointmentsRequest,
    PatientRecord, PatientRequest, PractitionerRequest, ReadingSupport, SearchPage, SearchRequest,
    SlotSearchRequest, UpdateContactRequest, UploadContentRequest, Uploaded, Want, paging,
};
use gp_fhir::model::Practitioner;
use gp_fhir::{NhsNumber, OdsCode};

pub use client::VisionClient;
pub use config::{VisionConfig, VisionConfigError};
pub use error::VisionDataError;
pub use mapping::{
    JournalOwner, MappedPatient, map_contact_answer, map_journal, map_journal_for,
    map_journal_page, map_journal_page_for, map_patient, map_practice, map_staff, native_timestamp,
    render_contact, render_observation, written_ids,
};

/// Vision, as gp-gateway sees it.
#[derive(Debug, Clone)]
pub struct VisionAdapter {
    client: VisionClient,
}

/// A patient extract for someone else is never answered.
/// A patient read's answer, from the patient's mapped extract and the practice and
/// staff extracts (the usual GP picked from it).
fn demographics(
    patient: MappedPatient,
    practice: &[u8],
    staff: &[u8],
    ods: &OdsCode,
) -> Result<PatientRecord, AdapterError> {
    let (practice_ods, organization) = map_practice(practice)?;
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
            map_staff(staff, gp)?.ok_or_else(|| VisionDataError::Invalid {
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

/// One clinical area's page, from the journal pages of `patient`: only the area's rows
/// mapped, then ordered and paged like every adapter.
fn area(
    patient: &MappedPatient,
    pages: &[bytes::Bytes],
    req: &SearchRequest,
) -> Result<SearchPage, AdapterError> {
    let owner = JournalOwner {
        pid: patient.pid.clone(),
        nhs_number: req.nhs_number,
        ods: OdsCode::clone(&req.practice),
    };
    let mut resources = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let rows =
            map_journal_page_for(page, &owner, Want::Area(req.resource_type), &mut resources)?;
        // A page that promises more but carries nothing would be followed forever.
        if rows == 0 && i + 1 < pages.len() {
            return Err(VisionDataError::Continuation(format!(
                "page {} has no rows but a continuation token",
                i + 1
            ))
            .into());
        }
    }
    Ok(paging::area(resources, req))
}

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

/// An appointment answer about another appointment is never passed on.
fn answer_about_another(asked: &str, answered: &str) -> AdapterError {
    VisionDataError::Invalid {
        extract: "appointment extract",
        row: 2,
        column: "APPT_ID",
        reason: format!("asked for appointment {asked}, the answer is about {answered}"),
    }
    .into()
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
        demographics(patient, &practice, &staff, ods)
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
        area(&patient, &pages, req)
    }

    /// The four extracts both need, fetched concurrently: the patient extract once.
    async fn read_patient_and_search(
        &self,
        req: &SearchRequest,
    ) -> Result<(PatientRecord, SearchPage), AdapterError> {
        let (ods, nhs, ctx) = (&req.practice, req.nhs_number, &req.context);
        let (patient, practice, staff, pages) = tokio::try_join!(
            self.client.patient(ods, nhs, ctx),
            self.client.practice(ods, ctx),
            self.client.staff(ods, ctx),
            self.client.journal(ods, nhs, ctx),
        )?;
        let patient = map_patient(&patient, ods)?;
        check_is(&patient, nhs)?;
        let page = area(&patient, &pages, req)?;
        Ok((demographics(patient, &practice, &staff, ods)?, page))
    }

    /// One native call: the observation as a journal write extract (a blood pressure is
    /// one BP row), under the request's key. The ids come from the rows Vision answers,
    /// mapped as a search maps them.
    /// One call: the practice's staff extract, the person picked from it.
    fn manages_appointments(&self) -> bool {
        true
    }

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

    /// One native call: the slot extract for the range in local time, an hour wider
    /// either side (the autumn's repeated hour), kept to the range in UTC.
    async fn search_slots(&self, req: &SlotSearchRequest) -> Result<AppointmentBook, AdapterError> {
        let (from, to) = (
            appointments::native_local(appointments::hour_earlier(req.start)),
            appointments::native_local(appointments::hour_later(req.end)),
        );
        let body = self
            .client
            .slots(&req.practice, &from, &to, &req.context)
            .await?;
        let mapped = appointments::map_slots(&body)?;
        Ok(appointments::keep_range(mapped.book, req.start, req.end))
    }

    /// Two native calls: the slots, for the `SEQ` each must still be at, then the
    /// booking row. A slot booked by someone else in between is `SlotUnavailable`.
    async fn book_appointment(&self, req: &BookRequest) -> Result<Booked, AdapterError> {
        let a = &req.appointment;
        let ids_ok = (1..=appointments::MAX_SLOTS).contains(&a.slots.len())
            && a.slots.iter().all(|s| appointments::is_number(s));
        if !ids_ok {
            return Err(AdapterError::Unprocessable {
                system: SYSTEM,
                detail: format!(
                    "a Vision booking names 1 to {} slots, each a Vision slot number",
                    appointments::MAX_SLOTS
                ),
            });
        }
        let body = self
            .client
            .slots_by_id(
                &req.practice,
                &a.slots,
                appointments::Op::Book,
                &req.context,
            )
            .await?;
        let read = appointments::map_slots(&body)?;
        let mut seqs = Vec::with_capacity(a.slots.len());
        for wanted in &a.slots {
            let seq = read
                .book
                .slots
                .iter()
                .zip(&read.seqs)
                .find_map(|(s, seq)| (s.id == *wanted).then_some(*seq))
                .ok_or(VisionDataError::RowCount {
                    extract: "slot extract",
                    found: read.book.slots.len(),
                    expected: "a row for every slot asked for",
                })?;
            seqs.push(seq);
        }
        let (created, answer) = self
            .client
            .book(
                &req.practice,
                appointments::render_booking(a, &seqs),
                &req.context,
            )
            .await?;
        let appointment = appointments::map_one_appointment(&answer, "booking answer")?;
        if appointment.nhs_number != a.nhs_number {
            if created {
                return Err(VisionDataError::Invalid {
                    extract: "booking answer",
                    row: 2,
                    column: "NHS_NUMBER",
                    reason: format!("the booking was for {}", a.nhs_number),
                }
                .into());
            }
            // A key replayed for someone else names another booking, not this one.
            return Err(AdapterError::Unprocessable {
                system: SYSTEM,
                detail: "the booking's identifier was used before for another patient".into(),
            });
        }
        Ok(Booked {
            appointment,
            created,
        })
    }

    /// One native call; an id that is not a Vision number names nothing (no call).
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
        let a = appointments::map_one_appointment(&body, "appointment extract")?;
        if a.id != req.id {
            return Err(answer_about_another(&req.id, &a.id));
        }
        Ok(Some(a))
    }

    /// One native call for the range in local time, an hour wider either side, kept to
    /// the appointments overlapping it in UTC.
    async fn search_appointments(
        &self,
        req: &PatientAppointmentsRequest,
    ) -> Result<Vec<BookedAppointment>, AdapterError> {
        let (from, to) = (
            appointments::native_local(appointments::hour_earlier(req.start)),
            appointments::native_local(appointments::hour_later(req.end)),
        );
        let body = self
            .client
            .patient_appointments(&req.practice, req.nhs_number, &from, &to, &req.context)
            .await?;
        let mut list = appointments::map_appointments(&body, "appointment extract")?;
        if let Some(other) = list.iter().find(|a| a.nhs_number != req.nhs_number) {
            return Err(VisionDataError::Invalid {
                extract: "appointment extract",
                row: 2,
                column: "NHS_NUMBER",
                reason: format!(
                    "appointment {} is {}'s, but {} was asked for",
                    other.id, other.nhs_number, req.nhs_number
                ),
            }
            .into());
        }
        list.retain(|a| a.end > req.start && a.start < req.end);
        list.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
        Ok(list)
    }

    /// One native call: the amend or cancel row with the `SEQ` the version stands for.
    async fn change_appointment(
        &self,
        req: &ChangeAppointmentRequest,
    ) -> Result<BookedAppointment, AdapterError> {
        if !appointments::is_number(&req.id) {
            return Err(AdapterError::NotFound {
                system: SYSTEM,
                what: format!(
                    "appointment '{}'",
                    gp_fhir::text::shown(&req.id.chars().take(56).collect::<String>())
                ),
            });
        }
        let seq = req
            .expected_version
            .parse::<u64>()
            .ok()
            .filter(|_| appointments::is_number(&req.expected_version));
        let Some(seq) = seq else {
            // Every version this adapter hands out is a SEQ: anything else is not a
            // version the appointment can be at.
            return Err(AdapterError::VersionConflict {
                system: SYSTEM,
                detail: format!(
                    "'{}' is not a Vision SEQ",
                    req.expected_version.chars().take(40).collect::<String>()
                ),
            });
        };
        let body = self
            .client
            .change(&req.practice, &req.id, &req.change, seq, &req.context)
            .await?;
        let a = appointments::map_one_appointment(&body, "appointment extract")?;
        if a.id != req.id {
            return Err(answer_about_another(&req.id, &a.id));
        }
        let cancelled = matches!(req.change, gp_adapter::AppointmentChange::Cancel { .. });
        if cancelled && a.status != AppointmentStatus::Cancelled {
            return Err(VisionDataError::Invalid {
                extract: "appointment extract",
                row: 2,
                column: "STATUS",
                reason: "a cancel answered an appointment that is not cancelled".into(),
            }
            .into());
        }
        Ok(a)
    }

    /// Vision holds a reading's date alone, its interpretations (a blood pressure row:
    /// the panel's and each reading's), body site and the clinician who took it; not
    /// other codings, a method or a device.
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

    fn manages_documents(&self) -> bool {
        true
    }

    /// One native call: the patient's document extract, every row mapped or none.
    async fn search_documents(
        &self,
        req: &DocumentSearchRequest,
    ) -> Result<Vec<DocumentMeta>, AdapterError> {
        let body = self
            .client
            .documents(&req.practice, req.nhs_number, &req.context)
            .await?;
        let mut list = documents::map_documents(&body, "document extract", req.nhs_number)?;
        // Newest first; documents created together, the later-numbered first.
        let number = |d: &DocumentMeta| d.id.parse::<u64>().unwrap_or_default();
        list.sort_by_key(|d| std::cmp::Reverse((d.created, number(d))));
        Ok(list)
    }

    /// One native call: the raw content; an id that is not a Vision number names
    /// nothing (no call).
    async fn read_content(
        &self,
        req: &ContentRequest,
    ) -> Result<Option<DocumentContent>, AdapterError> {
        if !appointments::is_number(&req.content_id) {
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

    /// One native call: the bytes as the raw body (not copied), the MIME type as its
    /// `Content-Type`.
    async fn upload_content(&self, req: &UploadContentRequest) -> Result<Uploaded, AdapterError> {
        let body = self
            .client
            .upload(
                &req.practice,
                req.nhs_number,
                &req.content_type,
                req.bytes.clone(),
                &req.context,
            )
            .await?;
        Ok(documents::map_uploaded(
            &body,
            req.nhs_number,
            req.bytes.len(),
        )?)
    }

    /// One native call: the filing row under the document's key. Content that is not a
    /// Vision number is unknown content (no call).
    async fn file_document(&self, req: &FileDocumentRequest) -> Result<Filed, AdapterError> {
        let doc = &req.document;
        if !appointments::is_number(&doc.content_id) {
            return Err(AdapterError::NotFound {
                system: SYSTEM,
                what: format!(
                    "content '{}'",
                    gp_fhir::text::shown(&doc.content_id.chars().take(56).collect::<String>())
                ),
            });
        }
        let (created, answer) = self
            .client
            .file(
                &req.practice,
                req.nhs_number,
                documents::render_filing(doc),
                &req.context,
            )
            .await?;
        let filed = documents::map_documents(&answer, "filing answer", req.nhs_number)?;
        let [document] =
            <[DocumentMeta; 1]>::try_from(filed).map_err(|rows| VisionDataError::RowCount {
                extract: "filing answer",
                found: rows.len(),
                expected: "exactly 1",
            })?;
        Ok(Filed { document, created })
    }

    fn tracks_changes(&self) -> bool {
        true
    }

    /// One native call. Without a cursor: the log's last `SEQ`, as the cursor of an empty
    /// page. With one (`vision.{ODS}.{SEQ}`, checked to be this adapter's for this
    /// practice): up to [`changes::PAGE_ROWS`] changes after its `SEQ`.
    async fn changes_since(&self, req: &ChangesRequest) -> Result<ChangesPage, AdapterError> {
        let ods = &req.practice;
        let after = match &req.cursor {
            None => None,
            Some(c) => Some(changes::parse_cursor(c, ods)?),
        };
        let response = self
            .client
            .changes(ods, after, changes::PAGE_ROWS, &req.context)
            .await?;
        let Some(after) = after else {
            let last = changes::map_end(&response)?;
            return Ok(ChangesPage {
                changes: Vec::new(),
                cursor: changes::render_cursor(ods, last),
                more: false,
            });
        };
        let page = changes::map_changes(&response, after, changes::PAGE_ROWS)?;
        Ok(ChangesPage {
            changes: page.changes,
            cursor: changes::render_cursor(ods, page.last),
            more: page.more,
        })
    }

    async fn ready(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        self.client.health(ctx).await
    }
}
