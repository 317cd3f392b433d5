//! Write-back: what a supplier captured, in a vendor-neutral shape an adapter turns into
//! one native write. The gateway has already validated the FHIR resource against UK Core,
//! checked the codes and units and normalised the time to UTC, so adapters only render
//! the native request and report what the GP system answered.

use gp_fhir::{NhsNumber, OdsCode};

use crate::CallContext;
pub use crate::time::UtcDateTime;

/// One measured value: a SNOMED CT concept, its value and UCUM unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// SNOMED CT concept id of what was measured (e.g. 271649006 systolic blood pressure).
    pub snomed: String,
    /// SNOMED CT term.
    pub display: String,
    pub value: f64,
    /// UCUM unit code (`mm[Hg]`, `kg`, `cm`, `/min`, `kg/m2`).
    pub unit: String,
    /// How the value compares with normal (FHIR `interpretation`, e.g. v3
    /// ObservationInterpretation `H`, `L`, `N`), when the supplier gave one.
    pub interpretation: Option<Coded>,
}

/// One code as a supplier sent it: `system`, `code`, `display`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Coded {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
}

impl Coded {
    /// The FHIR coding.
    pub fn coding(&self) -> gp_fhir::model::Coding {
        gp_fhir::model::Coding {
            system: Some(self.system.clone()),
            code: Some(self.code.clone()),
            display: self.display.clone(),
            ..Default::default()
        }
    }

    /// The FHIR CodeableConcept of this one coding.
    pub fn concept(&self) -> gp_fhir::model::CodeableConcept {
        gp_fhir::model::CodeableConcept {
            coding: vec![self.coding()],
            text: None,
        }
    }
}

/// What a reading carries beyond its code, value and time, each element only when the
/// supplier gave it. The gateway sends an element only to a GP system whose
/// [`ReadingSupport`] says it holds it (it refuses the write otherwise), so an adapter
/// records every element it receives, natively, and gives it back on every read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadingDetails {
    /// The effective time is a calendar date only (FHIR `effectiveDateTime` of
    /// `YYYY-MM-DD`): [`NewObservation::effective`] is that date at 00:00, and the GP
    /// system records the date alone, so it reads back as the date.
    pub date_only: bool,
    /// The supplier's other codings of what was measured (LOINC `8867-4`, a device
    /// code), in the order sent: kept where the system can hold them
    /// ([`ReadingSupport::original_codings`]), read back after the SNOMED CT coding.
    pub original_codings: Vec<Coded>,
    /// Whole-reading interpretation (for a blood pressure, the panel's).
    pub interpretation: Option<Coded>,
    /// Where on the body (SNOMED CT), e.g. 368209003 right arm.
    pub body_site: Option<Coded>,
    /// How it was measured (SNOMED CT).
    pub method: Option<Coded>,
    /// The device, as its display text (the GP system holds text, not a Device resource).
    pub device: Option<String>,
    /// A member of the practice's staff who took the reading: the id
    /// [`crate::Adapter::read_practitioner`] answers for them (checked by the gateway),
    /// recorded as the entry's clinician and read back as `performer`.
    pub performer: Option<String>,
}

/// Which [`ReadingDetails`] a GP system holds with a reading. The gateway refuses a
/// reading carrying an element its patient's GP system does not hold, naming the element,
/// rather than drop it. Default: none (the SNOMED CT code, value, time and identifier only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadingSupport {
    /// A date without a time of day.
    pub date_only: bool,
    pub original_codings: bool,
    /// Interpretation of the reading and of each measurement.
    pub interpretation: bool,
    pub body_site: bool,
    pub method: bool,
    pub device: bool,
    pub performer: bool,
}

/// An observation a supplier captured (a home blood pressure reading, a weight).
#[derive(Debug, Clone, PartialEq)]
pub struct NewObservation {
    /// Opaque idempotency key (1 to 64 ASCII letters, digits or hyphens; the gateway sends
    /// 64 hex digits, a hash of the supplier and the resource's identifier): a retried create
    /// with the same key must not record anything twice. The GP system stores it with
    /// the entries and answers the existing entries when it sees the key again.
    pub key: String,
    /// The supplier's own identifier of the reading (`system`, `value`), which the GP
    /// system keeps with the entries (every reader of them sees it). `None`: none given.
    pub identifier: Option<(String, String)>,
    /// SNOMED CT concept of the whole observation: the measurement's own concept, or a
    /// panel (75367002 blood pressure) whose parts are in `measurements`.
    pub snomed: String,
    pub display: String,
    /// When it was measured.
    pub effective: UtcDateTime,
    /// One measurement, or the panel's parts (systolic then diastolic for blood pressure).
    pub measurements: Vec<Measurement>,
    /// What the reading carries beyond code, value and time.
    pub details: ReadingDetails,
}

/// SNOMED CT blood pressure panel (whose parts are systolic and diastolic).
pub const BLOOD_PRESSURE_PANEL: &str = "75367002";

/// `create` an observation in a patient's record.
#[derive(Debug, Clone)]
pub struct CreateObservationRequest {
    pub nhs_number: NhsNumber,
    pub practice: OdsCode,
    pub observation: NewObservation,
    pub context: CallContext,
}

/// What the GP system did with a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Ids of the native entries holding the observation, in measurement order. The
    /// first is the id of the Observation [`crate::Adapter::search`] returns for it: a
    /// blood pressure is one panel Observation, whichever entries hold it (see
    /// [`crate::vital_signs`]).
    pub ids: Vec<String>,
    /// False when the key had been seen before and nothing new was recorded.
    pub created: bool,
}

/// A home address, as the lines, town, county and postcode GP systems hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HomeAddress {
    /// One to three lines: house name/number and street, then locality.
    pub lines: Vec<String>,
    pub town: String,
    pub county: String,
    pub postcode: String,
}

/// The contact details and communication preference a supplier may update. Each field
/// is the complete new value (`None` = the patient has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactDetails {
    pub home_phone: Option<String>,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub address: Option<HomeAddress>,
    /// Preferred language, a UK Core HumanLanguage code (`en`, `cy`, `pl`, …).
    pub language: Option<String>,
}

/// `update` a patient's contact details.
#[derive(Debug, Clone)]
pub struct UpdateContactRequest {
    pub nhs_number: NhsNumber,
    pub practice: OdsCode,
    /// The demographics version ([`crate::PatientRecord::version`]) the update was made
    /// against: the GP system must refuse it (`VersionConflict`) if its record changed since.
    pub expected_version: String,
    pub details: ContactDetails,
    pub context: CallContext,
}
