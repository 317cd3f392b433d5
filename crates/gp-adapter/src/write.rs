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
