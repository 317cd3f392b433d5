//! The contract between gp-gateway and a GP clinical system.
//!
//! A GP system vendor implements [`Adapter`] (two required methods) in a crate of its
//! own, maps its native records to UK Core with the [`terminology`] helpers, and proves
//! the mapping with the [`harness`]. Adapters see typed requests and return FHIR
//! resources: they never see tokens, suppliers or the gateway's HTTP.

pub mod appointments;
pub mod changes;
pub mod documents;
pub mod endpoint;
pub mod error;
#[cfg(feature = "harness")]
pub mod harness;
pub mod json;
pub mod native;
pub mod paging;
pub mod practice_ids;
pub mod registry;
pub mod terminology;
pub mod time;
pub mod uk_core;
pub mod vital_signs;
pub mod write;
pub mod xml;

use std::fmt;

use async_trait::async_trait;
use gp_fhir::date::DateRange;
use gp_fhir::model::{Organization, Patient, Practitioner, Resource};
use gp_fhir::{NhsNumber, OdsCode};
use serde::{Deserialize, Serialize};

pub use appointments::{
    AppointmentBook, AppointmentChange, AppointmentRequest, BookRequest, Booked, BookedAppointment,
    ChangeAppointmentRequest, PatientAppointmentsRequest, SlotSearchRequest,
};
pub use changes::{ChangeKind, ChangesPage, ChangesRequest, RecordChange};
pub use documents::{
    ContentRequest, DocumentContent, DocumentMeta, DocumentSearchRequest, FileDocumentRequest,
    Filed, NewDocument, UploadContentRequest, Uploaded,
};
pub use error::AdapterError;
pub use registry::{AdapterFactory, GpSystem, Registration, Registry, SystemConfig};
pub use write::{
    Coded, ContactDetails, CreateObservationRequest, Created, HomeAddress, Measurement,
    NewObservation, ReadingDetails, ReadingSupport, UpdateContactRequest, UtcDateTime,
};

/// The clinical areas a patient's record is searched by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ClinicalType {
    AllergyIntolerance,
    MedicationStatement,
    Condition,
    Observation,
    Immunization,
    Encounter,
}

impl ClinicalType {
    /// Every clinical type.
    pub const ALL: &'static [ClinicalType] = &[
        Self::AllergyIntolerance,
        Self::MedicationStatement,
        Self::Condition,
        Self::Observation,
        Self::Immunization,
        Self::Encounter,
    ];

    /// The FHIR resource type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllergyIntolerance => "AllergyIntolerance",
            Self::MedicationStatement => "MedicationStatement",
            Self::Condition => "Condition",
            Self::Observation => "Observation",
            Self::Immunization => "Immunization",
            Self::Encounter => "Encounter",
        }
    }

    /// From the FHIR resource type name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// True when `resource` is of this type.
    pub fn matches(self, resource: &Resource) -> bool {
        resource.resource_type() == self.as_str()
    }
}

impl fmt::Display for ClinicalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a read needs of a patient's record: mapping only that is the same as mapping the
/// whole record and keeping only that, for less work (a Patient read maps no clinical
/// entry; a search maps only the entries of its clinical area). An adapter whose GP
/// system serves the record whole may use it to skip the entries it would throw away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Demographics and every clinical entry.
    Everything,
    /// Demographics only (no clinical entry).
    Demographics,
    /// Demographics and the entries of one clinical area.
    Area(ClinicalType),
}

impl Want {
    /// Whether entries of the FHIR resource type `resource_type` are wanted.
    pub fn takes(self, resource_type: &str) -> bool {
        match self {
            Self::Everything => true,
            Self::Demographics => false,
            Self::Area(area) => area.as_str() == resource_type,
        }
    }
}

/// Context every adapter call carries.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The gateway's request id, to send on as the native system's correlation id.
    pub request_id: String,
    /// W3C `traceparent` to propagate to the native call, when tracing.
    pub traceparent: Option<String>,
}

impl CallContext {
    /// A context with only a request id.
    pub fn new(request_id: impl Into<String>) -> Self {
        Self {
            request_id: request_id.into(),
            traceparent: None,
        }
    }
}

/// Read one patient's demographics.
#[derive(Debug, Clone)]
pub struct PatientRequest {
    pub nhs_number: NhsNumber,
    /// The practice the record locator found the patient registered at.
    pub practice: OdsCode,
    pub context: CallContext,
}

/// Search one clinical area of one patient's record.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub nhs_number: NhsNumber,
    pub practice: OdsCode,
    pub resource_type: ClinicalType,
    /// Only entries whose clinical date overlaps this range (unbounded = all).
    pub date: DateRange,
    /// Page size (≥ 1).
    pub count: u32,
    /// Entries to skip, in the adapter's stable order (most recent first).
    pub offset: u32,
    pub context: CallContext,
}

/// What a patient read returns.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientRecord {
    /// UK Core Patient; `id` is the NHS number. A restricted (sensitive) patient has
    /// `meta.security` code `R`.
    pub patient: Patient,
    /// The registered practice.
    pub organization: Option<Organization>,
    /// The usual GP.
    pub practitioner: Option<Practitioner>,
    /// Opaque version of the demographics, changing whenever they change (the ETag).
    pub version: String,
    /// Sharing flags recorded in the GP system.
    pub flags: PatientFlags,
}

/// Flags a GP system records about sharing a patient's record with third parties.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatientFlags {
    /// Restricted/sensitive record: never released to third-party suppliers.
    pub restricted: bool,
    /// The patient dissents from third-party sharing.
    pub dissent: bool,
}

/// Read one member of a practice's staff: whom a record names as usual GP, author,
/// performer, recorder or participant (`Practitioner/{id}` in what the adapter answers).
#[derive(Debug, Clone)]
pub struct PractitionerRequest {
    /// The practice whose staff the id names.
    pub practice: OdsCode,
    /// The id the adapter gives the person in references (`Practitioner/{id}`).
    pub id: String,
    pub context: CallContext,
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub resources: Vec<Resource>,
    /// Matches across all pages.
    pub total: u32,
}

/// A GP clinical system, as gp-gateway sees it.
///
/// Implementations are shared by every request (`Arc<dyn Adapter>`), so they must be
/// cheap to call concurrently. Every method may be cancelled (the gateway applies its
/// own timeout); errors are [`AdapterError`]s, which the gateway renders as
/// OperationOutcomes naming the GP system.
#[async_trait]
pub trait Adapter: Send + Sync {
    /// The system this adapter speaks to. Called once at start-up.
    fn system(&self) -> GpSystem;

    /// Reads a patient's demographics. Called for `GET /Patient/{nhs}` and before every
    /// search whose demographics the gateway holds no longer (see
    /// [`Adapter::read_patient_and_search`]), so keep it to one native call. A patient the system does not hold at
    /// `req.practice` is [`AdapterError::PatientNotFound`].
    async fn read_patient(&self, req: &PatientRequest) -> Result<PatientRecord, AdapterError>;

    /// Searches one clinical area. Must return entries in a stable order (most recent
    /// first), honour `date`, `count` and `offset`, and report the `total` across all
    /// pages. Entries a clinician marked confidential are still returned with
    /// `meta.security` `R`; the gateway decides what each caller sees.
    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, AdapterError>;

    /// Reads a patient's demographics and searches one clinical area of their record
    /// together: what the gateway calls when it holds neither (an uncached search), so
    /// that one native read can answer both. Must answer exactly what
    /// [`Adapter::read_patient`] and [`Adapter::search`] would (the shared suite checks
    /// it); a patient the system does not hold is [`AdapterError::PatientNotFound`]. The
    /// gateway releases nothing of the page until it has checked the demographics.
    /// Default: both calls, concurrently; override it when one native read holds both
    /// (EMIS's medical record, SystmOne's first page).
    async fn read_patient_and_search(
        &self,
        req: &SearchRequest,
    ) -> Result<(PatientRecord, SearchPage), AdapterError> {
        let patient = PatientRequest {
            nhs_number: req.nhs_number,
            practice: req.practice.clone(),
            context: req.context.clone(),
        };
        let (record, page) = tokio::join!(self.read_patient(&patient), self.search(req));
        // The demographics' error first: it says whether the patient is there at all.
        Ok((record?, page?))
    }

    /// The clinical types [`Adapter::search`] supports. Called once at start-up, to build
    /// the CapabilityStatement. Default: all of them.
    fn supported_types(&self) -> &'static [ClinicalType] {
        ClinicalType::ALL
    }

    /// Records an observation a supplier captured. Must be idempotent on
    /// `req.observation.key`: a create whose key the system has already seen records
    /// nothing and answers the existing entries with `created: false`, even when two
    /// arrive at once. Default: [`AdapterError::NotSupported`].
    async fn create_observation(
        &self,
        req: &CreateObservationRequest,
    ) -> Result<Created, AdapterError> {
        let _ = req;
        Err(AdapterError::NotSupported {
            system: self.system(),
            what: "recording observations".into(),
        })
    }

    /// Which reading details ([`ReadingDetails`]) [`Adapter::create_observation`]
    /// records and its reads give back. Called once at start-up; the shared suite checks
    /// each element claimed round-trips. Default: none.
    fn reading_support(&self) -> ReadingSupport {
        ReadingSupport::default()
    }

    /// Replaces a patient's contact details and preferred language, only if the record
    /// is still at `req.expected_version` ([`AdapterError::VersionConflict`] otherwise).
    /// Returns the new version. Default: [`AdapterError::NotSupported`].
    async fn update_contact(&self, req: &UpdateContactRequest) -> Result<String, AdapterError> {
        let _ = req;
        Err(AdapterError::NotSupported {
            system: self.system(),
            what: "updating contact details".into(),
        })
    }

    /// Reads one member of `req.practice`'s staff by the id the adapter's references give
    /// them (`Patient.generalPractitioner`, an entry's author, performer, recorder or
    /// participant): one native call, cheap enough to make for each person a structured
    /// record names (the gateway caches the answers briefly). `Ok(None)` when the practice
    /// has no such person (a person of another practice included); an unknown practice
    /// is `Ok(None)` too. The Practitioner is UK Core, `id` the one asked for, mapped as
    /// the usual GP in [`PatientRecord::practitioner`] is. Default: [`AdapterError::NotSupported`], so references to
    /// people stay unresolved (the gateway answers `501`) until a vendor adds it.
    async fn read_practitioner(
        &self,
        req: &PractitionerRequest,
    ) -> Result<Option<Practitioner>, AdapterError> {
        let _ = req;
        Err(AdapterError::NotSupported {
            system: self.system(),
            what: "reading practice staff".into(),
        })
    }

    /// Whether this adapter implements the appointment methods below. Called once at
    /// start-up: the CapabilityStatement and OpenAPI document offer `Slot` and
    /// `Appointment` only when some adapter does. The shared suite checks that the answer
    /// agrees with what the methods do. Default: false.
    fn manages_appointments(&self) -> bool {
        false
    }

    /// Reads the slots of `req.practice` starting in `[req.start, req.end)` (at most 14
    /// days), every status, with the sessions they belong to and the clinicians and sites
    /// those sessions name: one native search, called for `GET /Slot` (never cached).
    /// An unknown practice is [`AdapterError::NotFound`]. Default:
    /// [`AdapterError::NotSupported`].
    async fn search_slots(&self, req: &SlotSearchRequest) -> Result<AppointmentBook, AdapterError> {
        let _ = req;
        Err(self.no_appointments())
    }

    /// Books `req.appointment` with the system's own concurrency control, so a slot is
    /// booked at most once however many bookings race for it, from however many
    /// gateways: a slot already taken is [`AdapterError::SlotUnavailable`]; one kept from
    /// third parties, started already, or not adjacent to the others is
    /// [`AdapterError::Unprocessable`]. Idempotent on `req.appointment.key` (answer the
    /// existing appointment with `created: false`). Default: [`AdapterError::NotSupported`].
    async fn book_appointment(&self, req: &BookRequest) -> Result<Booked, AdapterError> {
        let _ = req;
        Err(self.no_appointments())
    }

    /// Reads one appointment, booked or cancelled, however it was booked (through the
    /// gateway or at the practice). `Ok(None)`: no such appointment at the practice.
    /// Default: [`AdapterError::NotSupported`].
    async fn read_appointment(
        &self,
        req: &AppointmentRequest,
    ) -> Result<Option<BookedAppointment>, AdapterError> {
        let _ = req;
        Err(self.no_appointments())
    }

    /// A patient's appointments overlapping the range, booked and cancelled, in time
    /// order. A patient the system does not hold at the practice is
    /// [`AdapterError::PatientNotFound`]. Default: [`AdapterError::NotSupported`].
    async fn search_appointments(
        &self,
        req: &PatientAppointmentsRequest,
    ) -> Result<Vec<BookedAppointment>, AdapterError> {
        let _ = req;
        Err(self.no_appointments())
    }

    /// Amends or cancels an appointment only if it is still at `req.expected_version`
    /// ([`AdapterError::VersionConflict`] otherwise); a cancel frees its slots. A
    /// cancelled appointment cannot change ([`AdapterError::Unprocessable`]); an unknown
    /// one is [`AdapterError::NotFound`]. Returns the appointment as changed. Default:
    /// [`AdapterError::NotSupported`].
    async fn change_appointment(
        &self,
        req: &ChangeAppointmentRequest,
    ) -> Result<BookedAppointment, AdapterError> {
        let _ = req;
        Err(self.no_appointments())
    }

    /// The error every appointment method answers by default.
    #[doc(hidden)]
    fn no_appointments(&self) -> AdapterError {
        AdapterError::NotSupported {
            system: self.system(),
            what: "appointment management".into(),
        }
    }

    /// Whether this adapter implements the document methods below. Called once at
    /// start-up: the CapabilityStatement and OpenAPI document offer `DocumentReference`
    /// and `Binary` only when some adapter does. Default: false.
    fn manages_documents(&self) -> bool {
        false
    }

    /// A patient's documents at the practice (letters, reports, what suppliers filed),
    /// metadata only, newest first, every one (the gateway filters and pages): one native
    /// call. A patient the system does not hold at the practice is
    /// [`AdapterError::PatientNotFound`]. Default: [`AdapterError::NotSupported`].
    async fn search_documents(
        &self,
        req: &DocumentSearchRequest,
    ) -> Result<Vec<DocumentMeta>, AdapterError> {
        let _ = req;
        Err(self.no_documents())
    }

    /// One document's content by its content id ([`DocumentMeta::content_id`] or
    /// [`Uploaded::content_id`]), with the NHS number of the patient it belongs to (the
    /// gateway applies its release rules to that patient before answering). `Ok(None)`:
    /// no such content at the practice. Default: [`AdapterError::NotSupported`].
    async fn read_content(
        &self,
        req: &ContentRequest,
    ) -> Result<Option<DocumentContent>, AdapterError> {
        let _ = req;
        Err(self.no_documents())
    }

    /// Uploads content into the patient's record, not yet filed as a document (FHIR
    /// `POST /Binary`): the system keeps it, unfiled, until a document names it. The
    /// bytes are sent as they are (one `Bytes`, no copy). Default:
    /// [`AdapterError::NotSupported`].
    async fn upload_content(&self, req: &UploadContentRequest) -> Result<Uploaded, AdapterError> {
        let _ = req;
        Err(self.no_documents())
    }

    /// Files a document whose content was uploaded ([`Adapter::upload_content`]) into
    /// the patient's record and the practice's document workflow. Idempotent on
    /// `req.document.key`: a key seen before files nothing and answers the document
    /// with `created: false`. Content of another patient, or filed already under
    /// another key, is [`AdapterError::Unprocessable`]; unknown content is
    /// [`AdapterError::NotFound`]. Default: [`AdapterError::NotSupported`].
    async fn file_document(&self, req: &FileDocumentRequest) -> Result<Filed, AdapterError> {
        let _ = req;
        Err(self.no_documents())
    }

    /// The error every document method answers by default.
    #[doc(hidden)]
    fn no_documents(&self) -> AdapterError {
        AdapterError::NotSupported {
            system: self.system(),
            what: "documents".into(),
        }
    }

    /// Whether this adapter implements [`Adapter::changes_since`]: the gateway polls only
    /// practices whose adapter does (it asks at each poll; keep it a constant). Default:
    /// false.
    fn tracks_changes(&self) -> bool {
        false
    }

    /// The changes to records at `req.practice` after `req.cursor`, oldest first, from
    /// the GP system's own change log: one native call per page (see [`changes`]).
    /// Without a cursor: an empty page whose cursor is the log's current end. A cursor
    /// the system no longer honours is [`AdapterError::Unprocessable`]. Default:
    /// [`AdapterError::NotSupported`].
    async fn changes_since(&self, req: &ChangesRequest) -> Result<ChangesPage, AdapterError> {
        let _ = req;
        Err(AdapterError::NotSupported {
            system: self.system(),
            what: "changes since a cursor".into(),
        })
    }

    /// Readiness probe, called by the gateway's `/_ready` endpoint. Default: always ready.
    async fn ready(&self, _ctx: &CallContext) -> Result<(), AdapterError> {
        Ok(())
    }
}

/// Systems the crate's own tests name (the real ones are declared by their crates).
#[cfg(test)]
pub(crate) mod test_systems {
    use crate::GpSystem;
    pub const EMIS: GpSystem = GpSystem::new("emis", "EMIS Web");
    pub const TPP: GpSystem = GpSystem::new("tpp", "TPP SystmOne");
}
